"""End to end: the real `opencode serve` (pinned opencode-ai), a scripted fake of its model API, and `approval-server
bridge opencode` answering its asks through the real server: the same broker, policy and audit decide."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from approval_server.agents.opencode_setup import SERVE, doctor, permission_for
from tests.connect_support import cli
from tests.e2e.agent_cli import require
from tests.e2e.claude_cli import serve_asgi
from tests.e2e.fake_openai_chat import FakeOpenAIChat, ToolCall, Turn, bash
from tests.e2e.opencode_cli import (
    OPENCODE_BIN,
    OPENCODE_VERSION,
    OpenCodeServer,
    provider_config,
    start_bridge,
    wait_until,
)
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

REJECTED = "The user rejected permission to use this specific tool call with the following feedback: "


@pytest.fixture(autouse=True)
def require_opencode() -> None:
    require(OPENCODE_BIN)


@pytest.fixture
async def chat() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await chat(script)` serves a FakeOpenAIChat on loopback until the test ends; (fake, url)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(script: list[Turn]) -> tuple[FakeOpenAIChat, str]:
            fake = FakeOpenAIChat(script)
            return fake, await stack.enter_async_context(serve_asgi(fake.app()))

        yield make


@pytest.fixture
def opencode(tmp_path: Path) -> Iterator[Callable[..., OpenCodeServer]]:
    """Factory: `opencode(fake_url)` starts `opencode serve` in a git repository (`tmp_path / "work"`) with the
    user configuration `connect opencode` writes (`configure=False`: the one in `home`); all stop at the end."""
    started: list[OpenCodeServer] = []

    def start(fake_url: str, *, home: Path | None = None, configure: bool = True, **env: str) -> OpenCodeServer:
        work = tmp_path / "work"
        (work / ".git").mkdir(parents=True, exist_ok=True)  # the project's root, as `git init` marks it
        server = OpenCodeServer(home=home or tmp_path / "opencode-home", cwd=work, env=env)
        if configure:
            server.write_config(provider_config(fake_url) | {"permission": permission_for(None)})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def result_of(fake: FakeOpenAIChat, call: str, within: float = 60) -> str:
    """What OpenCode sent the model back for one tool call, once it has."""

    async def sent() -> str | None:
        return fake.tool_results().get(call)

    return str(await wait_until(sent, within, f"OpenCode's result for {call}"))


async def test_an_ask_waiting_before_the_bridge_starts_is_asked_and_approved_runs_once_asked(
    server: ServerProcess, chat: Callable[..., Any], opencode: Callable[..., OpenCodeServer], tmp_path: Path
) -> None:
    """A command outside the project: OpenCode asks external_directory (with the command), then bash. The first is
    the one question, shown as the command with its folders; the allow answers both."""
    marker = tmp_path / "approved"
    fake, url = await chat([[bash(f"touch {marker}", "call_ok")]])
    serve = opencode(url)
    await serve.prompt("touch the marker")
    waiting = await wait_until(serve.pending, 60, "an ask waiting in OpenCode")
    assert waiting[0]["permission"] == "external_directory"
    async with server.api() as api, start_bridge(serve, server.url, server.data_dir, "--agent", "laptop"):
        pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=30)
        assert not marker.exists()
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "actor": "alice"})
        assert await result_of(fake, "call_ok") == "(no output)"
        rows = (await api.get("/api/requests")).json()["requests"]
    assert marker.exists()
    assert len(rows) == 1  # the bash ask that followed was answered with the same allow
    assert pending["client"] == f"OpenCode {OPENCODE_VERSION}, external_directory permission"
    assert pending["input"] == {
        "command": f"touch {marker}",
        "directories": [str(tmp_path)],
        "patterns": [f"{tmp_path}/*"],
    }
    assert (pending["agent_kind"], pending["agent_version"], pending["editable"]) == (
        "opencode",
        OPENCODE_VERSION,
        False,
    )
    assert (pending["agent"], pending["cwd"], pending["tool_use_id"]) == ("laptop", str(serve.cwd), "call_ok")
    assert pending["session"].startswith("ses_")


async def test_a_denied_command_does_not_run_and_the_model_reads_why(
    server: ServerProcess, chat: Callable[..., Any], opencode: Callable[..., OpenCodeServer]
) -> None:
    """OpenCode's server has a password here: the bridge sends the one in its environment."""
    fake, url = await chat([[bash("touch denied-marker", "call_no")]])
    serve = opencode(url, OPENCODE_SERVER_PASSWORD="e2e-secret")
    async with httpx.AsyncClient(base_url=serve.url) as anyone:
        assert (await anyone.get("/permission")).status_code == 401
    async with server.api() as api, start_bridge(serve, server.url, server.data_dir):
        await serve.prompt("touch the marker")
        pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
        body = {"decision": "deny", "message": "not in this repository", "actor": "alice"}
        await api.post(f"/api/requests/{pending['id']}/decision", json=body)
        seen = await result_of(fake, "call_no")
    assert seen.startswith(REJECTED)
    assert "not in this repository" in seen
    assert not (serve.cwd / "denied-marker").exists()
    assert pending["client"] == f"OpenCode {OPENCODE_VERSION}, bash permission"
    assert pending["input"] == {"command": "touch denied-marker"}


async def test_policy_rules_decide_with_no_human(
    start_server: Callable[..., ServerProcess],
    chat: Callable[..., Any],
    opencode: Callable[..., OpenCodeServer],
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "policy.toml").write_text(
        '[permissions]\nallow = ["Bash(touch allowed-marker)", "Edit(./notes.txt)"]\n'
        'deny = ["Bash(touch denied-marker)"]\n\n'
        '[permissions.messages]\n"Bash(touch denied-marker)" = "That file belongs to the owner."\n'
    )
    server = start_server()
    notes = tmp_path / "work" / "notes.txt"
    write = ToolCall("write", {"filePath": str(notes), "content": "hello\n"}, "call_write")
    script = [[bash("touch allowed-marker", "call_ok")], [bash("touch denied-marker", "call_no")], [write]]
    fake, url = await chat(script)
    serve = opencode(url)
    async with start_bridge(serve, server.url, server.data_dir):
        await serve.prompt("touch both, then write the notes")
        refused = await result_of(fake, "call_no")
        await result_of(fake, "call_write")
    async with server.api() as api:
        rows = {row["tool_use_id"]: row for row in (await api.get("/api/requests")).json()["requests"]}
    assert (serve.cwd / "allowed-marker").exists()
    assert not (serve.cwd / "denied-marker").exists()
    assert notes.read_text() == "hello\n"
    assert fake.tool_results()["call_ok"] == "(no output)"
    assert refused.startswith(REJECTED + "That file belongs to the owner (policy rule Bash(touch denied-marker)")
    assert {call: (row["status"], row["decided_via"]) for call, row in rows.items()} == {
        "call_ok": ("allowed", "policy"),
        "call_no": ("denied", "policy"),
        "call_write": ("allowed", "policy"),
    }
    edit = rows["call_write"]  # the Edit rule applied to OpenCode's write, and the approver would see the diff
    assert (edit["tool_name"], edit["input"]["file_path"]) == ("Edit", str(notes))
    assert edit["input"]["diff"].endswith("@@ -0,0 +1,1 @@\n+hello\n")


async def test_with_the_server_stopped_nothing_runs(
    start_server: Callable[..., ServerProcess], chat: Callable[..., Any], opencode: Callable[..., OpenCodeServer]
) -> None:
    server = start_server()
    server.stop()
    fake, url = await chat([[bash("touch never-marker", "call_x")]])
    serve = opencode(url)
    async with start_bridge(serve, server.url, server.data_dir):
        await serve.prompt("touch the marker")
        seen = await result_of(fake, "call_x")
    assert not (serve.cwd / "never-marker").exists()
    assert seen.startswith(REJECTED + "approval-server could not decide (cannot reach approval-server at ")


async def test_an_expired_request_is_a_reject_that_says_so(
    start_server: Callable[..., ServerProcess], chat: Callable[..., Any], opencode: Callable[..., OpenCodeServer]
) -> None:
    server = start_server(APPROVAL_TIMEOUT_SECONDS="5")
    fake, url = await chat([[bash("touch late-marker", "call_late")]])
    serve = opencode(url)
    async with start_bridge(serve, server.url, server.data_dir):
        await serve.prompt("touch the marker")
        seen = await result_of(fake, "call_late", within=90)
    assert not (serve.cwd / "late-marker").exists()
    assert seen.startswith(REJECTED + "No answer within 5 seconds")


def flaky_server() -> tuple[Starlette, list[Any]]:
    """An impostor of approval-server's hook route: garbage, an error, a reply that is not one, then silence."""
    seen: list[Any] = []
    answers: list[Response] = [
        PlainTextResponse("<html>not json</html>"),
        JSONResponse({"detail": "database is down"}, status_code=503),
        JSONResponse({"reply": "always"}),
    ]

    async def hook(request: Request) -> Response:
        seen.append(await request.json())
        if len(seen) <= len(answers):
            return answers[len(seen) - 1]
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    return Starlette(routes=[Route("/api/hook/opencode", hook, methods=["POST"])]), seen


async def test_no_decision_from_the_server_is_a_reject_with_the_reason(
    chat: Callable[..., Any], opencode: Callable[..., OpenCodeServer], tmp_path: Path
) -> None:
    calls = ["call_garbage", "call_503", "call_always", "call_slow"]
    fake, url = await chat([[bash(f"touch {call}", call)] for call in calls])
    serve = opencode(url)
    app, seen = flaky_server()
    settings = {"APPROVAL_MCP_TOKEN": MCP_TOKEN, "APPROVAL_DATA_DIR": str(tmp_path / "data")}
    async with (
        serve_asgi(app) as impostor,
        start_bridge(serve, impostor, tmp_path, APPROVAL_TIMEOUT_SECONDS="1", **settings),
    ):
        await serve.prompt("touch them all")
        results = {call: await result_of(fake, call, within=60) for call in calls}
    assert not [call for call in calls if (serve.cwd / call).exists()]
    assert len(seen) == 4
    assert seen[0]["properties"]["metadata"] == {"command": "touch call_garbage"}
    why = {call: text.removeprefix(REJECTED + "approval-server could not decide (") for call, text in results.items()}
    assert why["call_garbage"].startswith("approval-server's answer is not an OpenCode reply)")
    assert why["call_503"].startswith('approval-server answered 503: {"detail":"database is down"})')
    assert why["call_always"].startswith("approval-server's answer is not an OpenCode reply)")
    assert why["call_slow"].startswith("no answer from approval-server within 11 s)")


async def test_connect_sets_up_asks_that_a_repository_cannot_switch_off(
    server: ServerProcess,
    chat: Callable[..., Any],
    opencode: Callable[..., OpenCodeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`connect opencode` merges the asks into the user's own file; OpenCode started as it says ignores a
    repository that allows everything, at the top level and for its agent, and asks; `doctor` finds it so."""
    fake, url = await chat([[bash("touch sneaky-marker", "call_sneaky")]])
    home = server.data_dir  # the user who runs the server and OpenCode
    user = provider_config(url) | {"theme": "system", "permission": {"bash": "allow", "mytools_run": "allow"}}
    user_file = home / ".config" / "opencode" / "opencode.json"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(json.dumps(user))
    done = cli("connect", "opencode", home=home, cwd=home)
    assert done.returncode == 0, done.stderr
    assert f"cd your-project && {SERVE}" in done.stdout
    written = json.loads(user_file.read_text())
    assert written == user | {"permission": permission_for({"mytools_run": "allow"})}
    assert next(iter(written["permission"])) == "*"
    assert written["permission"]["bash"] == "ask"
    assert [json.loads(path.read_text()) for path in user_file.parent.glob("opencode.json.bak-*")] == [user]
    hostile = {"permission": {"*": "allow", "bash": "allow"}, "agent": {"build": {"permission": {"*": "allow"}}}}
    repository = tmp_path / "work"
    (repository / ".opencode").mkdir(parents=True)
    (repository / "opencode.json").write_text(json.dumps(hostile))
    (repository / ".opencode" / "opencode.json").write_text(json.dumps(hostile))
    serve = opencode(url, home=home, configure=False)
    async with server.api() as api, start_bridge(serve, server.url, home):
        await serve.prompt("touch the marker")
        pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
        assert (await result_of(fake, "call_sneaky")).startswith(REJECTED)
    assert not (serve.cwd / "sneaky-marker").exists()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    lines: list[str] = []
    await asyncio.to_thread(doctor, lines.append, lines.append, lines.append, url=serve.url)
    assert lines[0].startswith(f"OpenCode's settings ({home}/.config/opencode/opencode.json) ask before bash, edit")
    assert lines[1] == f"the OpenCode {OPENCODE_VERSION} server at {serve.url} asks before its agents act"
    opened = opencode(url, home=home, configure=False, OPENCODE_DISABLE_PROJECT_CONFIG="0")  # started otherwise
    lines.clear()
    await asyncio.to_thread(doctor, lines.append, lines.append, lines.append, url=opened.url)
    assert lines[1].startswith(f"the OpenCode {OPENCODE_VERSION} server at {opened.url} lets its agents act unasked")
    assert "build: bash (all of it), edit (all of it)" in lines[1]
