"""A scripted fake of the Gemini API (v1beta) for driving the real `gemini` CLI offline.

Gemini CLI 0.61.0 (with `GOOGLE_GEMINI_BASE_URL` pointing here and `GEMINI_API_KEY` set) posts each turn of the
conversation to `/v1beta/models/<model>:streamGenerateContent?alt=sse` and side questions (model routing, the
next-speaker check) to `:generateContent`. Like the real API the fake is stateless: a main turn (a request that
offers the model tools) is picked from the number of `model` turns already in its `contents`; once the script is
used up it says `final_text`. A side question gets a JSON text, which each of them reads as "no opinion".

Every request is recorded, so a test can read what the CLI sent back for a tool call (`function_response`): the
reason of a blocked call reaches the model there. Serve it with `claude_cli.serve_asgi`, in the test's loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# What the model router (a `:generateContent` request with a JSON schema) expects.
ROUTING = {"complexity_reasoning": "a scripted fake", "complexity_score": 1}
_METHOD = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent)$")


@dataclass(frozen=True)
class FunctionCall:
    """A `functionCall` part the fake model sends: `name` is Gemini's tool name (`run_shell_command`)."""

    name: str
    args: Mapping[str, Any]
    id: str | None = None


Part = str | FunctionCall  # a text part, or a tool call
Turn = Sequence[Part]


def call(name: str, args: Mapping[str, Any], id: str | None = None) -> FunctionCall:
    return FunctionCall(name, dict(args), id)


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    path: str
    body: Any

    @property
    def contents(self) -> list[dict[str, Any]]:
        contents = self.body.get("contents") if isinstance(self.body, dict) else None
        return [content for content in contents or [] if isinstance(content, dict)]

    @property
    def tool_names(self) -> list[str]:
        """The tools the CLI offered the model in this request."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        names = []
        for tool in tools or []:
            for declaration in tool.get("functionDeclarations") or [] if isinstance(tool, dict) else []:
                names.append(str(declaration.get("name")))
        return names


def _parts(content: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [part for part in content.get("parts") or [] if isinstance(part, dict)]


class FakeGemini:
    """The ASGI app of the fake, with what it received."""

    def __init__(self, script: Sequence[Turn] = (), *, final_text: str = "Done.") -> None:
        self.script = [list(turn) for turn in script]
        self.final_text = final_text
        self.requests: list[Recorded] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    @property
    def turns(self) -> list[Recorded]:
        """The main turns: the requests that offered the model tools."""
        return [request for request in self.requests if request.tool_names]

    @property
    def unexpected(self) -> list[Recorded]:
        """Requests to anything but the two model methods (each was answered 404)."""
        return [request for request in self.requests if not _METHOD.match(request.path)]

    def function_responses(self) -> dict[str, dict[str, Any]]:
        """Every `functionResponse` the CLI sent back, by the call's id (or name when it had none): its
        `response` object ({"output": …} or {"error": …})."""
        found: dict[str, dict[str, Any]] = {}
        for request in self.turns:
            for content in request.contents:
                for part in _parts(content):
                    response = part.get("functionResponse")
                    if isinstance(response, dict):
                        key = str(response.get("id") or response.get("name"))
                        found.setdefault(key, response.get("response") or {})
        return found

    def function_response(self, key: str) -> dict[str, Any]:
        """The response to one call; raises `KeyError` if none was sent back."""
        return self.function_responses()[key]

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        match = _METHOD.match(request.url.path)
        recorded = Recorded(request.url.path, body)
        self.requests.append(recorded)
        if match is None:
            return JSONResponse({"error": {"code": 404, "message": "fake: no such route"}}, status_code=404)
        if not recorded.tool_names:  # a side question: the model router's, answered "simple"
            parts: list[dict[str, Any]] = [{"text": json.dumps(ROUTING)}]
        else:
            turn = sum(1 for content in recorded.contents if content.get("role") == "model")
            parts = self._parts(turn)
        answer = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1, "totalTokenCount": 11},
            "modelVersion": match["model"],
        }
        if match["method"] == "generateContent":
            return JSONResponse(answer)

        async def events() -> AsyncIterator[str]:
            yield f"data: {json.dumps(answer)}\r\n\r\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def _parts(self, turn: int) -> list[dict[str, Any]]:
        if turn >= len(self.script):
            return [{"text": self.final_text}]
        parts: list[dict[str, Any]] = []
        for index, part in enumerate(self.script[turn]):
            if isinstance(part, str):
                parts.append({"text": part})
            else:
                function_call = {"name": part.name, "args": dict(part.args), "id": part.id or f"call_{turn}_{index}"}
                parts.append({"functionCall": function_call})
        return parts
