"""OpenCode: its `permission.asked` events as tool calls, the replies, the server's route for them, `connect
opencode`, `doctor`'s checks, and the bridge against a small fake of OpenCode's server (the real one runs in
tests/e2e/test_opencode.py). Payloads as observed with opencode-ai 1.18.33."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from approval_server.agents import agent_for
from approval_server.agents import opencode_bridge as bridge_module
from approval_server.agents.opencode import AGENT
from approval_server.agents.opencode_bridge import run_bridge, sse_events
from approval_server.agents.opencode_setup import doctor, guarded_paths, lets_through, permission_for, unasked
from approval_server.decision import Decision
from tests.connect_support import cli
from tests.e2e.claude_cli import serve_asgi
from tests.support import MCP_TOKEN, ServerProcess, free_port, wait_for_pending

WORK = "/home/ada/project"
COMMAND = "touch /tmp/outside/marker"
DIFF = "Index: /home/ada/project/a.txt\n===\n--- a.txt\n+++ a.txt\n@@ -1 +1 @@\n-one\n+two\n"


def ask(permission: str, metadata: dict[str, Any], patterns: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The properties of a `permission.asked` event."""
    return {
        "id": extra.pop("id", f"per_{permission}"),
        "sessionID": extra.pop("sessionID", "ses_1"),
        "permission": permission,
        "patterns": patterns or ["*"],
        "metadata": metadata,
        "always": ["*"],
        "tool": {"messageID": "msg_1", "callID": extra.pop("callID", "call_1")},
        **extra,
    }


def event(properties: dict[str, Any], directory: str | None = WORK, worktree: str | None = WORK) -> dict[str, Any]:
    """What the bridge posts to /api/hook/opencode."""
    return {"type": "permission.asked", "properties": properties, "directory": directory, "worktree": worktree}


BASH = ask("bash", {"command": COMMAND}, [COMMAND])
OUTSIDE = ask(
    "external_directory",
    {"command": COMMAND, "directories": ["/tmp/outside"], "patterns": ["/tmp/outside/*"]},
    ["/tmp/outside/*"],
)


# -- the event as a tool call, and the reply ------------------------------------------------------------------------


def test_a_bash_ask_is_a_bash_call_of_its_session_folder_and_tool_call() -> None:
    question = AGENT.parse(event(BASH))
    call = question.call
    assert (call.tool_name, call.input) == ("Bash", {"command": COMMAND})
    assert (call.session, call.cwd, call.tool_use_id, call.agent_kind) == ("ses_1", WORK, "call_1", "opencode")
    assert question.event == "bash"
    assert (call.extra["permission"], call.extra["patterns"], call.extra["directory"]) == ("bash", [COMMAND], WORK)
    assert "metadata" not in call.extra
    assert AGENT.client(question.event, "1.18.33") == "OpenCode 1.18.33, bash permission"


@pytest.mark.parametrize(
    ("properties", "tool", "tool_input"),
    [
        (OUTSIDE, "Bash", {"command": COMMAND, "directories": ["/tmp/outside"], "patterns": ["/tmp/outside/*"]}),
        (
            ask("external_directory", {"filepath": "/etc/hostname", "parentDir": "/etc"}, ["/etc/*"]),
            "Read",
            {"file_path": "/etc/hostname", "parentDir": "/etc"},
        ),
        (
            ask("edit", {"filepath": f"{WORK}/a.txt", "diff": DIFF}),
            "Edit",
            {"file_path": f"{WORK}/a.txt", "diff": DIFF},
        ),
        (ask("read", {}, ["../../../etc/shadow"]), "Read", {"file_path": "/etc/shadow"}),
        (
            ask("webfetch", {"url": "https://example.com", "format": "text"}),
            "WebFetch",
            {"url": "https://example.com", "format": "text"},
        ),
        (ask("websearch", {"query": "x", "numResults": 3}), "WebSearch", {"query": "x", "numResults": 3}),
        (ask("grep", {"pattern": "TODO", "path": "src"}), "Grep", {"pattern": "TODO", "path": "src"}),
        (ask("github_create_issue", {}), "github_create_issue", {"patterns": ["*"]}),
        (ask("read", {"server": "docs"}, ["mcp:docs:*"]), "read", {"patterns": ["mcp:docs:*"], "server": "docs"}),
        (
            ask("doom_loop", {"tool": "bash", "input": {"command": "ls"}}, ["bash"]),
            "doom_loop",
            {"patterns": ["bash"], "tool": "bash", "input": {"command": "ls"}},
        ),
    ],
)
def test_each_permission_is_the_tool_the_policy_knows_with_nothing_dropped(
    properties: dict[str, Any], tool: str, tool_input: dict[str, Any]
) -> None:
    call = AGENT.parse(event(properties, worktree="/home/ada/project")).call
    assert (call.tool_name, call.input) == (tool, tool_input)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"type": "permission.replied", "properties": BASH}, "not an OpenCode permission.asked event"),
        ({"type": "permission.asked"}, "properties: Field required"),
        (event(ask("bash", {})), "an ask for 'bash' without metadata.command"),
        (event(ask("edit", {"diff": DIFF})), "an ask for 'edit' without metadata.filepath"),
        (event(BASH, directory="project"), "directory 'project' is not an absolute path"),
        (event(ask("bash", {"command": float("nan")})), "not JSON"),
    ],
)
def test_a_bad_event_is_refused_with_the_reason(payload: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        AGENT.parse(payload)


def test_the_reply_is_once_or_reject_with_the_reason_and_never_always() -> None:
    question = AGENT.parse(event(BASH))
    assert AGENT.answer(question, Decision("allow", {"command": COMMAND})) == {"reply": "once"}
    assert AGENT.answer(question, Decision.deny("not today")) == {"reply": "reject", "message": "not today"}
    assert AGENT.takes_edits is False
    assert agent_for("opencode") is AGENT


async def test_the_server_decides_an_ask_and_guards_opencodes_own_configuration(server: ServerProcess) -> None:
    """The route waits for the decision and answers OpenCode's reply; a call naming OpenCode's configuration
    (which says what asks) is denied by the built-in rule, whatever the policy says."""
    hook = {"Authorization": f"Bearer {MCP_TOKEN}", "X-Agent-Version": "1.18.33"}
    config = server.data_dir / ".config" / "opencode" / "opencode.json"  # the server's user's
    async with server.api() as api, httpx.AsyncClient(base_url=server.url, headers=hook, timeout=30) as agent:
        asked = asyncio.create_task(agent.post("/api/hook/opencode", json=event(BASH)))
        pending = await wait_for_pending(api, {"tool_name": "Bash"})
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
        denied = (await asked).json()
        guarded = await agent.post("/api/hook/opencode", json=event(ask("bash", {"command": f"cat {config}"})))
    assert denied["reply"] == "reject"
    assert denied["message"].startswith("Denied by owner via api: no (approval request ")
    assert pending["client"] == "OpenCode 1.18.33, bash permission"
    assert (pending["agent_kind"], pending["editable"], pending["cwd"]) == ("opencode", False, WORK)
    assert guarded.json()["reply"] == "reject"
    assert "does not let an agent read, write, list or name its own files" in guarded.json()["message"]


def test_guarded_paths_follow_xdg_config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert guarded_paths() == [tmp_path / "xdg" / "opencode", tmp_path / "home" / ".opencode"]


# -- connect and doctor ------------------------------------------------------------------------------------------------


def test_the_permission_set_asks_first_and_keeps_the_users_other_entries() -> None:
    written = permission_for({"bash": {"git status": "allow"}, "*": "allow", "mytools_run": "allow", "read": "deny"})
    assert next(iter(written)) == "*"
    assert written["*"] == "ask"
    assert all(written[key] == "ask" for key in ("bash", "edit", "webfetch", "websearch", "external_directory"))
    assert (written["mytools_run"], written["read"], written["glob"]) == ("allow", "deny", "allow")
    assert permission_for("allow") == permission_for(None)
    assert lets_through({"permission": written}) == []


def test_what_lets_an_action_through_is_found_at_every_level() -> None:
    found = lets_through(
        {
            "permission": {"edit": "ask", "bash": {"*": "ask", "git *": "allow"}, "webfetch": "allow"},
            "agent": {"build": {"permission": {"*": "allow"}}, "plan": {"permission": {"read": "allow"}}},
        }
    )
    assert found == [
        'permission.bash is {"*": "ask", "git *": "allow"}',
        'permission.webfetch is "allow"',
        "permission.websearch is not set, and OpenCode's default for it is allow",
        "permission.codesearch is not set, and OpenCode's default for it is allow",
        "permission.external_directory is not set, and OpenCode's default for it is allow",
        'agent.build.permission.* is "allow"',
    ]


def test_connect_writes_into_the_file_opencode_reads_last_and_says_what_still_opens(
    server: ServerProcess, tmp_path: Path
) -> None:
    home = server.data_dir
    folder = home / ".config" / "opencode"
    folder.mkdir(parents=True)
    (folder / "opencode.jsonc").write_text('{\n  "$schema": "https://opencode.ai/config.json"\n}')  # OpenCode's own
    (folder / "config.json").write_text(json.dumps({"agent": {"build": {"permission": {"bash": "allow"}}}}))
    done = cli("connect", "opencode", "--agent", "laptop", home=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = json.loads((folder / "opencode.jsonc").read_text())
    assert written == {"$schema": "https://opencode.ai/config.json", "permission": permission_for(None)}
    assert not (folder / "opencode.json").exists()
    assert 'still let this through unasked: agent.build.permission.bash is "allow"' in done.stdout
    assert f"bridge opencode --opencode-url http://127.0.0.1:4096 --url {server.url} --agent laptop" in done.stdout


def test_connect_never_rewrites_a_file_with_comments(server: ServerProcess, tmp_path: Path) -> None:
    folder = server.data_dir / ".config" / "opencode"
    folder.mkdir(parents=True)
    text = '{\n  // my model\n  "model": "x/y",\n}\n'
    (folder / "opencode.jsonc").write_text(text)
    done = cli("connect", "opencode", home=server.data_dir, cwd=tmp_path)
    assert done.returncode != 0
    assert "is not JSON that can be merged" in done.stderr
    assert (folder / "opencode.jsonc").read_text() == text


def test_connect_writes_nothing_when_the_server_refuses_its_token(server: ServerProcess, tmp_path: Path) -> None:
    done = cli("connect", "opencode", home=server.data_dir, cwd=tmp_path, APPROVAL_MCP_TOKEN="wrong-token-0123456789")
    assert done.returncode != 0
    assert "nothing written" in done.stderr
    assert not (server.data_dir / ".config" / "opencode").exists()


def test_an_agents_effective_rules_are_read_as_opencode_reads_them() -> None:
    def rule(permission: str, action: str, pattern: str = "*") -> dict[str, str]:
        return {"permission": permission, "pattern": pattern, "action": action}

    asking = [rule("*", "allow"), rule("*", "ask"), rule("read", "allow"), rule("bash", "deny", "rm *")]
    assert unasked({"permission": asking}) == []
    assert unasked({"permission": [rule("*", "allow")]}) == [
        f"{name} (all of it)" for name in ("bash", "edit", "webfetch", "websearch", "codesearch")
    ]
    some = [rule("*", "ask"), rule("bash", "allow", "git *"), rule("edit", "ask"), rule("edit", "allow")]
    assert unasked({"permission": some}) == ["bash git *", "edit (all of it)"]


# -- a fake OpenCode server -------------------------------------------------------------------------------------------


@dataclass
class FakeOpenCode:
    """OpenCode's server as the bridge uses it: the event stream, the asks waiting, the replies."""

    directory: str = WORK
    password: str | None = None
    agents: list[dict[str, Any]] = field(default_factory=list)
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    streams: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)
    connections: int = 0
    listings: int = 0  # of the asks waiting (GET /permission)

    def app(self) -> Starlette:
        routes = [
            Route("/global/event", self._events),
            Route("/global/health", lambda _: JSONResponse({"healthy": True, "version": "1.18.33"})),
            Route("/path", lambda _: JSONResponse({"directory": self.directory, "worktree": self.directory})),
            Route("/permission", self._waiting),
            Route("/agent", lambda _: JSONResponse(self.agents)),
            Route("/permission/{id}/reply", self._reply, methods=["POST"]),
        ]
        return Starlette(routes=routes, middleware=[])

    def publish(self, payload: dict[str, Any]) -> None:
        for stream in self.streams:
            stream.put_nowait({"directory": self.directory, "payload": payload})

    def ask(self, properties: dict[str, Any], *, quietly: bool = False) -> None:
        """An ask, published (or only waiting, as while no bridge listens)."""
        self.waiting[properties["id"]] = properties
        if not quietly:
            self.publish({"type": "permission.asked", "properties": properties})

    def answered_elsewhere(self, ask_id: str) -> None:
        del self.waiting[ask_id]
        self.publish({"type": "permission.replied", "properties": {"requestID": ask_id, "reply": "once"}})

    def drop(self) -> None:
        for stream in self.streams:
            stream.put_nowait(None)
        self.streams.clear()

    def _refused(self, request: Request) -> bool:
        if self.password is None:
            return False
        expected = base64.b64encode(f"opencode:{self.password}".encode()).decode()
        return request.headers.get("authorization") != f"Basic {expected}"

    async def _events(self, request: Request) -> Response:
        if self._refused(request):
            return PlainTextResponse("", status_code=401)
        stream: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.streams.append(stream)
        self.connections += 1

        async def body() -> AsyncIterator[str]:
            yield 'data: {"payload": {"type": "server.connected", "properties": {}}}\n\n'
            while (item := await stream.get()) is not None:
                yield f"data: {json.dumps(item)}\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def _waiting(self, request: Request) -> Response:
        self.listings += 1
        return JSONResponse(list(self.waiting.values()))

    async def _reply(self, request: Request) -> Response:
        ask_id = request.path_params["id"]
        body = await request.json()
        self.replies.append((ask_id, body, request.query_params.get("directory")))
        self.waiting.pop(ask_id, None)
        self.publish({"type": "permission.replied", "properties": {"requestID": ask_id, "reply": body["reply"]}})
        return JSONResponse(True)


@dataclass
class FakeGate:
    """approval-server's hook route, answering with `answer`; records what it was sent and who hung up."""

    answer: Callable[[dict[str, Any]], Coroutine[Any, Any, Response]]
    posts: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/hook/opencode", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        body = await request.json()
        self.posts.append((body, dict(request.headers)))
        answering: asyncio.Task[Response] = asyncio.create_task(self.answer(body))
        watching = asyncio.create_task(self._until_disconnected(request))
        done, _ = await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
        answering.cancel()
        watching.cancel()
        if answering in done:
            return answering.result()
        self.hung_up.append(body["properties"]["id"])
        return Response(status_code=499)

    @staticmethod
    async def _until_disconnected(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass


async def until(check: Callable[[], Any], what: str, within: float = 15) -> Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)
    return value


@contextlib.asynccontextmanager
async def bridged(
    answer: Callable[[dict[str, Any]], Coroutine[Any, Any, Response]],
    opencode: FakeOpenCode | None = None,
    *,
    expiry: float = 30,
) -> AsyncIterator[tuple[FakeOpenCode, FakeGate, Callable[[], Awaitable[None]]]]:
    """The bridge between a fake OpenCode and a fake gate; yields them and a function that starts the bridge."""
    opencode = opencode or FakeOpenCode()
    gate = FakeGate(answer)
    tasks: list[asyncio.Task[None]] = []
    async with serve_asgi(opencode.app()) as opencode_url, serve_asgi(gate.app()) as gate_url:

        async def start() -> None:
            tasks.append(asyncio.create_task(run_bridge(opencode_url, gate_url, MCP_TOKEN, expiry, "laptop")))
            await until(lambda: opencode.listings, "the bridge listening")

        try:
            yield opencode, gate, start
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            opencode.drop()


def replying(reply: dict[str, Any]) -> Callable[[dict[str, Any]], Coroutine[Any, Any, Response]]:
    async def answer(_: dict[str, Any]) -> Response:
        return JSONResponse(reply)

    return answer


async def test_the_bridge_posts_each_ask_and_replies_with_the_answer() -> None:
    async with bridged(replying({"reply": "reject", "message": "not now"})) as (opencode, gate, start):
        await start()
        opencode.ask(BASH)
        await until(lambda: opencode.replies, "a reply")
    assert opencode.replies == [("per_bash", {"reply": "reject", "message": "not now"}, WORK)]
    ((body, headers),) = gate.posts
    assert body == event(BASH)
    assert headers["authorization"] == f"Bearer {MCP_TOKEN}"
    assert (headers["x-agent-name"], headers["x-agent-version"]) == ("laptop", "1.18.33")


async def test_asks_waiting_before_the_bridge_starts_are_taken_up() -> None:
    async with bridged(replying({"reply": "once"})) as (opencode, _, start):
        opencode.ask(BASH, quietly=True)
        await start()
        await until(lambda: opencode.replies, "a reply")
    assert opencode.replies == [("per_bash", {"reply": "once"}, WORK)]


async def test_after_the_stream_drops_the_bridge_reconnects_and_takes_up_what_waits() -> None:
    async with bridged(replying({"reply": "once"})) as (opencode, _, start):
        await start()
        opencode.drop()
        opencode.ask(BASH, quietly=True)  # asked while nobody listened
        await until(lambda: opencode.replies, "a reply after reconnecting")
    assert (opencode.connections, opencode.listings) == (2, 2)
    assert [reply[0] for reply in opencode.replies] == ["per_bash"]


async def server_error(_: dict[str, Any]) -> Response:
    return JSONResponse({"detail": "database is down"}, status_code=503)


async def garbage(_: dict[str, Any]) -> Response:
    return PlainTextResponse("<html>")


async def silence(_: dict[str, Any]) -> Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (server_error, 'approval-server answered 503: {"detail":"database is down"}'),
        (garbage, "approval-server's answer is not an OpenCode reply"),
        (replying({"reply": "always"}), "approval-server's answer is not an OpenCode reply"),
        (replying({"reply": "once", "updatedInput": {}}), "approval-server's answer is not an OpenCode reply"),
        (silence, "no answer from approval-server within 0.05 s"),
    ],
)
async def test_without_a_decision_the_bridge_rejects_saying_why(
    answer: Callable[[dict[str, Any]], Coroutine[Any, Any, Response]], why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge_module, "MARGIN_SECONDS", 0)
    async with bridged(answer, expiry=0.05) as (opencode, _, start):
        await start()
        opencode.ask(BASH)
        await until(lambda: opencode.replies, "a reply")
    message = f"approval-server could not decide ({why}), so the action was denied."
    assert opencode.replies == [("per_bash", {"reply": "reject", "message": message}, WORK)]


async def test_an_unreachable_server_is_a_reject() -> None:
    opencode = FakeOpenCode()
    async with serve_asgi(opencode.app()) as url:
        dead = f"http://127.0.0.1:{free_port()}"
        task = asyncio.create_task(run_bridge(url, dead, MCP_TOKEN, 30))
        opencode.ask(BASH, quietly=True)
        await until(lambda: opencode.replies, "a reply")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        opencode.drop()
    ((_, reply, _),) = opencode.replies
    assert reply["reply"] == "reject"
    assert reply["message"].startswith(f"approval-server could not decide (cannot reach approval-server at {dead}")


async def test_an_ask_answered_elsewhere_first_withdraws_its_request() -> None:
    async with bridged(silence) as (opencode, gate, start):
        await start()
        opencode.ask(BASH)
        await until(lambda: gate.posts, "the ask posted")
        opencode.answered_elsewhere("per_bash")
        await until(lambda: gate.hung_up, "the request withdrawn")
    assert gate.hung_up == ["per_bash"]
    assert opencode.replies == []


async def test_the_bash_ask_after_an_allowed_external_directory_ask_for_the_same_call_is_not_asked_again() -> None:
    async with bridged(replying({"reply": "once"})) as (opencode, gate, start):
        await start()
        opencode.ask(OUTSIDE)
        await until(lambda: opencode.replies, "the first reply")
        opencode.ask(BASH | {"id": "per_same"})
        opencode.ask(BASH | {"id": "per_other", "tool": {"messageID": "msg_1", "callID": "call_2"}})
        await until(lambda: len(opencode.replies) == 3, "three replies")
    assert [body["properties"]["id"] for body, _ in gate.posts] == ["per_external_directory", "per_other"]
    assert [reply[1] for reply in opencode.replies] == [{"reply": "once"}] * 3


async def test_the_bridge_sends_opencodes_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "s3cret")
    async with bridged(replying({"reply": "once"}), FakeOpenCode(password="s3cret")) as (opencode, _, start):
        await start()
        opencode.ask(BASH)
        await until(lambda: opencode.replies, "a reply")


async def test_server_sent_events_are_read_as_the_format_says() -> None:
    text = ': a comment\n\ndata: {"a":\ndata: 1}\n\ndata: not json\n\nevent: x\ndata: [1]\n\ndata: {"b": 2}\n\n'
    stream = {"content-type": "text/event-stream"}
    transport = httpx.MockTransport(lambda _: httpx.Response(200, text=text, headers=stream))
    async with httpx.AsyncClient(transport=transport) as http, http.stream("GET", "http://x/") as response:
        assert [value async for value in sse_events(response)] == [{"a": 1}, {"b": 2}]


async def test_a_response_that_is_not_an_event_stream_is_an_error_the_bridge_reconnects_after() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, text='data: {"a": 1}\n\n'))
    async with httpx.AsyncClient(transport=transport) as http, http.stream("GET", "http://x/") as response:
        with pytest.raises(httpx.TransportError):
            [value async for value in sse_events(response)]


# -- doctor ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def user_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("OPENCODE_SERVER_PASSWORD", raising=False)
    return home


def checks(url: str) -> list[str]:
    lines: list[str] = []
    doctor(lambda text: lines.append(f"ok {text}"), lambda text: lines.append(f"FIX {text}"), lines.append, url=url)
    return lines


@pytest.fixture
def a_bridge_process() -> Iterator[None]:
    """A process whose command line is a bridge's, as `doctor` looks for one."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "approval_server", "bridge", "opencode"]
    )
    yield
    process.kill()
    process.wait()


async def test_doctor_finds_what_lets_opencode_act_unasked(user_home: Path) -> None:
    folder = user_home / ".config" / "opencode"
    folder.mkdir(parents=True)
    (folder / "opencode.json").write_text(json.dumps({"permission": {"bash": "allow"}}))
    opencode = FakeOpenCode(
        agents=[{"name": "build", "permission": [{"permission": "*", "pattern": "*", "action": "allow"}]}]
    )
    async with serve_asgi(opencode.app()) as url:
        lines = await asyncio.to_thread(checks, url)
        opencode.drop()
    assert lines[0].startswith('FIX OpenCode\'s settings let this run unasked: permission.bash is "allow"')
    assert lines[1].startswith(f"FIX the OpenCode 1.18.33 server at {url} lets its agents act unasked: build: bash")
    assert lines[2] == "FIX no `approval-server bridge opencode` is running: OpenCode's asks wait, and nothing runs"
    assert lines[3].startswith("OpenCode fails open when it is started without OPENCODE_DISABLE_PROJECT_CONFIG=1")


async def test_doctor_passes_a_set_up_that_asks(user_home: Path, a_bridge_process: None) -> None:
    folder = user_home / ".config" / "opencode"
    folder.mkdir(parents=True)
    (folder / "opencode.json").write_text(json.dumps({"permission": permission_for(None)}))
    rules = [
        {"permission": "*", "pattern": "*", "action": "allow"},
        {"permission": "*", "pattern": "*", "action": "ask"},
    ]
    opencode = FakeOpenCode(agents=[{"name": "build", "permission": rules}])
    async with serve_asgi(opencode.app()) as url:
        lines = await asyncio.to_thread(checks, url)
        dead = await asyncio.to_thread(checks, f"http://127.0.0.1:{free_port()}")
        opencode.drop()
    assert [line.split(" ", 1)[0] for line in lines] == ["ok", "ok", "ok", "OpenCode"]
    assert lines[1] == f"ok the OpenCode 1.18.33 server at {url} asks before its agents act"
    assert lines[2].startswith("ok an OpenCode bridge is running (pid ")
    assert dead[1].startswith("no OpenCode server answers at http://127.0.0.1:")
