"""MCP over streamable HTTP spoken by hand, so a test can send bytes no MCP client would (`NaN`, `1e400`, broken JSON).

A real client (fastmcp's `Client`) serialises arguments itself and turns `NaN` into `null`; an adversary need not.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import MCP_TOKEN

PROTOCOL_VERSION = "2025-06-18"


class RawMcp:
    """One initialised MCP session on `/mcp`; `call` posts a `tools/call` whose `arguments` are raw JSON text."""

    def __init__(self, base_url: str, token: str = MCP_TOKEN) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )
        self._next_id = 1

    async def __aenter__(self) -> RawMcp:
        init = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw-mcp", "version": "0"},
        }
        response = await self.post(self._message("initialize", json.dumps(init)))
        assert response.status_code == 200, response.text
        session = response.headers.get("mcp-session-id")
        if session:
            self._http.headers["mcp-session-id"] = session
        self._http.headers["mcp-protocol-version"] = PROTOCOL_VERSION
        notified = await self.post('{"jsonrpc":"2.0","method":"notifications/initialized"}')
        assert notified.status_code in (200, 202), notified.text
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    def _message(self, method: str, params: str) -> str:
        self._next_id += 1
        return f'{{"jsonrpc":"2.0","id":{self._next_id},"method":"{method}","params":{params}}}'

    async def post(self, body: str | bytes) -> httpx.Response:
        return await self._http.post("/mcp", content=body)

    async def call(self, tool: str, arguments: str) -> tuple[httpx.Response, dict[str, Any] | None]:
        """Post a `tools/call` with `arguments` as given; the HTTP response and the JSON-RPC answer to it (None when
        the server answered with no JSON-RPC message, e.g. a 4xx)."""
        response = await self.post(
            self._message("tools/call", f'{{"name":{json.dumps(tool)},"arguments":{arguments}}}')
        )
        return response, rpc_answer(response)


def rpc_answer(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON-RPC response in an HTTP response, plain JSON or a server-sent event stream (progress skipped)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # Server-sent events end lines with CR, LF or CRLF only; `str.splitlines` would also split at U+0085 or U+2028
        # inside the JSON.
        for line in response.text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if "id" in message and ("result" in message or "error" in message):
                    return dict(message)
        return None
    try:
        message = response.json()
    except ValueError:
        return None
    return dict(message) if isinstance(message, dict) and "id" in message else None


def tool_text(answer: dict[str, Any] | None) -> str:
    """The single text block of a tool result."""
    assert answer is not None
    assert "result" in answer, answer
    content = answer["result"]["content"]
    assert len(content) == 1, content
    assert content[0]["type"] == "text", content
    text: str = content[0]["text"]
    return text
