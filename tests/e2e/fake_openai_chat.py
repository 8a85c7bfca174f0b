"""A scripted fake of the OpenAI Chat Completions API (`POST /v1/chat/completions`, streamed), for the real
`opencode` driving an `@ai-sdk/openai-compatible` provider whose `baseURL` is this fake.

Stateless like the real API: OpenCode resends the conversation each turn, so the fake picks the next scripted turn
from the number of assistant messages in the request. A turn is a list of tool calls; once the script is used up (or
for a request that offers no tools, such as OpenCode's title request) it answers plain text. Every request is
recorded, and `tool_results()` reads the `role: "tool"` messages OpenCode sent back.

Serve it with `claude_cli.serve_asgi(fake.app())` on the test's event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake model makes: OpenCode's tool name (`bash`, `write`, …) and its arguments."""

    name: str
    arguments: Mapping[str, Any]
    id: str


Turn = Sequence[ToolCall]


def bash(command: str, id: str, description: str = "fake model runs this") -> ToolCall:
    return ToolCall("bash", {"command": command, "description": description}, id)


@dataclass
class FakeOpenAIChat:
    """Scripted, recording fake of `POST /v1/chat/completions`; anything else is a 404."""

    script: Sequence[Turn] = ()
    final_text: str = "Done."
    requests: list[dict[str, Any]] = field(default_factory=list)  # the JSON bodies, in arrival order

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(CHAT_PATH, self._chat, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    def tool_results(self) -> dict[str, str]:
        """Each tool call's result as OpenCode sent it back (`role: "tool"` messages), by the call's id."""
        found: dict[str, str] = {}
        for body in self.requests:
            for message in body.get("messages") or []:
                if isinstance(message, dict) and message.get("role") == "tool":
                    content = message.get("content")
                    if isinstance(content, list):  # content parts
                        content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
                    found.setdefault(str(message.get("tool_call_id")), str(content))
        return found

    async def _not_found(self, request: Request) -> Response:
        return JSONResponse({"error": {"message": f"fake: no route {request.url.path}"}}, status_code=404)

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        messages = body.get("messages") or []
        turn = sum(1 for message in messages if isinstance(message, dict) and message.get("role") == "assistant")
        calls: Sequence[ToolCall] = ()
        if body.get("tools") and turn < len(self.script):
            calls = self.script[turn]
        model = str(body.get("model") or "fake-model")
        return StreamingResponse(self._stream(model, calls), media_type="text/event-stream")

    async def _stream(self, model: str, calls: Sequence[ToolCall]) -> AsyncIterator[str]:
        """The chunks a streamed completion sends: a role, the tool calls' deltas (or text), the finish, [DONE]."""
        base: dict[str, Any] = {"id": f"chatcmpl-fake-{time.monotonic_ns()}", "object": "chat.completion.chunk"}
        base |= {"model": model, "created": int(time.time())}

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return f"data: {json.dumps(base | {'choices': [choice]} | extra)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for index, call in enumerate(calls):
            function = {"name": call.name, "arguments": json.dumps(dict(call.arguments))}
            yield chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": function}]})
        if not calls:
            yield chunk({"content": self.final_text})
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        yield chunk({}, "tool_calls" if calls else "stop", usage=usage)
        yield "data: [DONE]\n\n"
