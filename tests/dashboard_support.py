"""Test support for the web dashboard: signing in, reading forms, following its event stream, request links."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.types import CallToolResult, TextContent

from approval_server.web_auth import SESSION_COOKIE
from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess, wait_for_pending
from tests.whatsapp_support import PUBLIC_URL, text_of

DASHBOARD_TOKEN = "dashboard-token-0123456789abcdef"
TOOL = "permissions__approve"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_LINK = re.compile(re.escape(PUBLIC_URL) + r"/r/(\S+)")

Call = asyncio.Task[CallToolResult]
MCP = Client[StreamableHttpTransport]


def browser(server: ServerProcess, **headers: str) -> httpx.AsyncClient:
    """A client with no session and no token, that does not follow redirects."""
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


@asynccontextmanager
async def signed_in(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a dashboard session, obtained through the login URL."""
    async with browser(server) as http:
        response = await http.get("/login", params={"token": DASHBOARD_TOKEN})
        assert response.status_code == 303, response.text
        assert http.cookies.get(SESSION_COOKIE)
        yield http


def csrf_of(html: str) -> str:
    """The CSRF token of the forms on a page; every form on it carries the same one."""
    tokens: set[str] = set(_CSRF.findall(html))
    assert len(tokens) == 1, f"expected one CSRF token on the page, found {tokens}"
    return tokens.pop()


async def page_csrf(http: httpx.AsyncClient, path: str = "/") -> str:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


def answer_of(result: CallToolResult) -> dict[str, Any]:
    """What the agent reads: the one text block of the tool result, as JSON."""
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    answer: dict[str, Any] = json.loads(block.text)
    return answer


async def answer(call: Call, within: float = 15) -> dict[str, Any]:
    return answer_of(await asyncio.wait_for(call, within))


async def ask(
    mcp: MCP, api: httpx.AsyncClient, tool_input: Mapping[str, Any], tool_name: str = "Bash", **extra: Any
) -> tuple[Call, dict[str, Any]]:
    """Start an MCP permission call (it waits) and return it with its pending request as the API shows it."""
    arguments = {"tool_name": tool_name, "input": dict(tool_input), **extra}
    call = asyncio.create_task(mcp.call_tool_mcp(TOOL, arguments))
    pending = await wait_for_pending(api, {"tool_name": tool_name, "input": dict(tool_input)})
    return call, pending


async def still_pending(api: httpx.AsyncClient, request_id: str, call: Call | None = None) -> dict[str, Any]:
    """Assert that nothing was decided: the request is pending, no answer was recorded, the agent still waits."""
    row: dict[str, Any] = (await api.get(f"/api/requests/{request_id}")).json()
    assert row["status"] == "pending", row
    assert row["answers"] == [], row["answers"]
    if call is not None:
        assert not call.done()
    return row


class EventStream:
    """The dashboard's server-sent events, read from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def _next(self) -> tuple[str, str]:
        kind, data = "message", list[str]()
        async for line in self._lines:
            if line == "":
                if data:
                    return kind, "\n".join(data)
                kind = "message"
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
        raise AssertionError("the event stream ended")

    async def until(
        self, kind: str, match: Callable[[dict[str, Any]], bool] = lambda _: True, within: float = 15
    ) -> dict[str, Any]:
        """The next event of `kind` whose data matches, skipping the others."""
        async with asyncio.timeout(within):
            while True:
                got, data = await self._next()
                if got == kind:
                    parsed: dict[str, Any] = json.loads(data)
                    if match(parsed):
                        return parsed


async def link_for(fake: FakeTwilio, number: str, request_id: str, within: float = 15) -> str:
    """The request link (`{PUBLIC_URL}/r/<token>`) that the WhatsApp message about `request_id` gave `number`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for message in fake.sent:
            text = text_of(message)
            if message.to == f"whatsapp:{number}" and request_id in text and (found := _LINK.search(text)):
                return found.group(0)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no request link for {request_id} sent to {number}")


def local(link: str, server: ServerProcess) -> str:
    """A link as sent (under PUBLIC_URL), pointed at the local server instead."""
    assert link.startswith(f"{PUBLIC_URL}/r/")
    return server.url + link.removeprefix(PUBLIC_URL)
