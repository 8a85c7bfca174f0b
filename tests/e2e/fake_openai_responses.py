"""A scripted fake of the OpenAI Responses API for driving the real `codex` CLI offline.

Codex (0.169.0, a custom provider with `wire_api = "responses"`) POSTs `{base_url}/responses` with `stream: true`
and reads server-sent events: `response.created`, `response.output_item.added` / `.done` for each output item (a
`function_call` {call_id, name, arguments} or an assistant `message`), then `response.completed` with the usage.
It is stateless as the real API is used by Codex (`store: false`): every request carries the whole conversation in
`input`, the tool results as `function_call_output` items, so the fake picks the next scripted turn from the number
of assistant turns already in it. Once the script is used up it says `final_text`.

Codex's automatic review (the "guardian", what decides an escalation no hook answered under `--approve-for-me`) is
a `/responses` call too, asking for JSON of a fixed schema (`text.format` of type `json_schema`). The fake answers
every one of them with `guardian` ("allow" by default): a test that expects a call blocked then passes only if the
hook itself blocked it. Every request (any method, any path) is recorded; anything but `POST /v1/responses` gets 404.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

RESPONSES_PATH = "/v1/responses"
JUSTIFICATION = "the fake model wants to run this"
GuardianOutcome = Literal["allow", "deny"]


@dataclass(frozen=True)
class Text:
    """An assistant message."""

    text: str


@dataclass(frozen=True)
class FunctionCall:
    """A function call the model makes: `name` is Codex's tool (`exec_command`, `apply_patch`, …)."""

    name: str
    arguments: Mapping[str, Any]
    call_id: str


@dataclass(frozen=True)
class CustomCall:
    """A call of a free-form tool: Codex's `apply_patch` takes the patch itself as its `input`."""

    name: str
    input: str
    call_id: str


Item = Text | FunctionCall | CustomCall
Turn = Sequence[Item]


def shell(command: str, call_id: str, *, escalate: bool = True) -> FunctionCall:
    """`exec_command`, by default asking to run outside the sandbox: the call Codex puts to the PermissionRequest
    hook (one that stays in the sandbox never asks)."""
    arguments: dict[str, Any] = {"cmd": command}
    if escalate:
        arguments |= {"sandbox_permissions": "require_escalated", "justification": JUSTIFICATION}
    return FunctionCall("exec_command", arguments, call_id)


@dataclass(frozen=True)
class Recorded:
    """One HTTP request the fake received."""

    method: str
    path: str
    body: Any

    @property
    def input(self) -> list[dict[str, Any]]:
        items = self.body.get("input") if isinstance(self.body, dict) else None
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    @property
    def is_guardian(self) -> bool:
        """An automatic review: a request for JSON of a schema, not a turn of the session."""
        text = self.body.get("text") if isinstance(self.body, dict) else None
        form = text.get("format") if isinstance(text, dict) else None
        return isinstance(form, dict) and form.get("type") == "json_schema"


def assistant_turns(items: Sequence[Mapping[str, Any]]) -> int:
    """The model's turns so far: runs of consecutive assistant items (function calls, assistant messages)."""
    turns, previous = 0, False
    for item in items:
        kind = item.get("type")
        mine = kind in ("function_call", "custom_tool_call") or (kind == "message" and item.get("role") == "assistant")
        if mine and not previous:
            turns += 1
        previous = mine
    return turns


def _sse(data: Mapping[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


class FakeResponses:
    """Scripted, recording fake of `POST /v1/responses` on a free loopback port, served from its own thread."""

    def __init__(
        self, script: Sequence[Turn] = (), *, final_text: str = "Done.", guardian: GuardianOutcome = "allow"
    ) -> None:
        self.script = [list(turn) for turn in script]
        self.final_text = final_text
        self.guardian = guardian
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._count = 0

    @property
    def base_url(self) -> str:
        """The provider's `base_url` for Codex's config: `http://127.0.0.1:<port>/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._socket = sock
        config = uvicorn.Config(self._app(), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Responses API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- what was received ---------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def turns(self) -> list[Recorded]:
        """The session's own requests (no automatic reviews, nothing unexpected)."""
        return [r for r in self.requests if r.path == RESPONSES_PATH and not r.is_guardian]

    @property
    def reviews(self) -> list[Recorded]:
        """The automatic reviews (guardian) Codex asked for."""
        return [r for r in self.requests if r.path == RESPONSES_PATH and r.is_guardian]

    def tool_output(self, call_id: str) -> str:
        """What Codex told the model a call gave (`function_call_output.output`); KeyError if it never did."""
        for request in self.turns:
            for item in request.input:
                kind = item.get("type")
                if kind in ("function_call_output", "custom_tool_call_output") and item.get("call_id") == call_id:
                    output = item.get("output")
                    return output if isinstance(output, str) else json.dumps(output)
        raise KeyError(call_id)

    # -- the app -------------------------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        return Starlette(
            routes=[
                Route(RESPONSES_PATH, self._responses, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=methods),
            ]
        )

    async def _record(self, request: Request) -> Recorded:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = Recorded(request.method, request.url.path, body)
        with self._lock:
            self._requests.append(recorded)
            self._count += 1
        return recorded

    async def _not_found(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"error": {"message": f"fake: no route {request.url.path}"}}, status_code=404)

    async def _responses(self, request: Request) -> Response:
        recorded = await self._record(request)
        if recorded.is_guardian:
            review = {
                "risk_level": "low",
                "user_authorization": "high",
                "outcome": self.guardian,
                "rationale": f"the fake guardian says {self.guardian}",
            }
            items: list[Item] = [Text(json.dumps(review))]
        else:
            turn = assistant_turns(recorded.input)
            items = self.script[turn] if turn < len(self.script) else [Text(self.final_text)]
        with self._lock:
            response_id = f"resp_fake_{self._count}"
        return StreamingResponse(self._events(response_id, items), media_type="text/event-stream")

    @staticmethod
    async def _events(response_id: str, items: Sequence[Item]) -> AsyncIterator[str]:
        yield _sse({"type": "response.created", "response": {"id": response_id}})
        for index, item in enumerate(items):
            body: dict[str, Any]
            if isinstance(item, Text):
                content = [{"type": "output_text", "text": item.text, "annotations": []}]
                body = {"type": "message", "id": f"msg_{response_id}_{index}", "role": "assistant", "content": content}
            elif isinstance(item, CustomCall):
                body = {
                    "type": "custom_tool_call",
                    "id": f"ctc_{response_id}_{index}",
                    "call_id": item.call_id,
                    "name": item.name,
                    "input": item.input,
                }
            else:
                body = {
                    "type": "function_call",
                    "id": f"fc_{response_id}_{index}",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": json.dumps(item.arguments),
                }
            yield _sse({"type": "response.output_item.added", "output_index": index, "item": body})
            yield _sse({"type": "response.output_item.done", "output_index": index, "item": body})
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }
        yield _sse({"type": "response.completed", "response": {"id": response_id, "usage": usage}})
