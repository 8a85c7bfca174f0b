"""End to end with the real `gemini` CLI (0.61.0) against a scripted fake Gemini API, set up as the user would:
`serve`, `connect gemini` under the same HOME, then exactly the `gemini` line it printed, with no approval-server on
PATH. Gemini runs a call unless its hook denies (or exits 2 or more with some text), so every failure of the hook,
the server or the network must end in a deny (docs/agents/gemini.md).

One server is shared by the module (a start and a `connect` cost seconds each): `gate`, with a policy file and
requests that expire after 5 s. Each test runs Gemini in a HOME of its own, a copy of the one `connect` wrote into."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.connect_support import QuickStartServer, cli, printed_command
from tests.e2e.agent_cli import CliResult, require
from tests.e2e.claude_cli import serve_asgi
from tests.e2e.fake_gemini import FakeGemini, Turn, call
from tests.e2e.gemini_cli import GEMINI_BIN, GEMINI_VERSION, offline_settings, run_gemini
from tests.fake_gate import AllowEverything
from tests.support import free_port, wait_for_pending

BARE_PATH = "/usr/bin:/bin"  # node, and no approval-server
WHY = "the fake model wants this"
EXPIRY = 5  # seconds: long enough for a test to answer, short for the one that waits for it
MCP_SERVER = """
from fastmcp import FastMCP

server = FastMCP("issues")


@server.tool
def get_issue(number: int) -> str:
    return f"issue {number} is open"


server.run(show_banner=False)
"""


@pytest.fixture(autouse=True)
def require_gemini() -> None:
    require(GEMINI_BIN)


@dataclass
class Gate:
    server: QuickStartServer
    root: Path  # files a test's commands may touch, known to the policy
    command: list[str]  # the headless line `connect` printed

    def home(self, where: Path, *connect_args: str) -> Path:
        """A user's HOME of its own: the client settings `serve` wrote and the Gemini settings `connect` wrote
        (or, with `connect_args`, that `connect` writes there now)."""
        for folder in (".config", ".gemini"):
            shutil.copytree(self.server.home / folder, where / folder)
        if connect_args:
            connect(where, *connect_args)
        return where


def connect(home: Path, *args: str) -> list[str]:
    """`connect gemini` into the user's offline Gemini settings (kept, with a backup); the headless line it
    printed."""
    settings = home / ".gemini" / "settings.json"
    before = settings.read_text() if settings.exists() else offline_settings(home).read_text()
    result = cli("connect", "gemini", *args, home=home, cwd=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(path.read_text() == before for path in settings.parent.glob("settings.json.bak-*"))
    assert json.loads(settings.read_text())["security"] == json.loads(before)["security"]
    return printed_command(result.stdout, "gemini --approval-mode yolo -p")


@contextlib.contextmanager
def serving(root: Path, **env: str) -> Iterator[Gate]:
    server = QuickStartServer(data_dir=root / "data", env=env)
    server.start()
    try:
        yield Gate(server, root, connect(server.home, "--agent", "laptop"))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    root = tmp_path_factory.mktemp("gate")
    (root / "data").mkdir()
    (root / "data" / "policy.toml").write_text(
        f'[permissions]\nallow = ["Bash(touch {root}/allowed)", "mcp__issues__get_issue"]\n'
        f'deny = ["Bash(touch {root}/denied)"]\n\n[permissions.messages]\n'
        f'"Bash(touch {root}/denied)" = "That file belongs to the owner."\n'
    )
    with serving(root, APPROVAL_TIMEOUT_SECONDS=str(EXPIRY)) as started:
        yield started


def shell(command: str, id: str = "c1") -> Turn:
    return [call("run_shell_command", {"command": command, "description": WHY}, id=id)]


@contextlib.asynccontextmanager
async def model(script: Sequence[Turn]) -> AsyncIterator[tuple[FakeGemini, str]]:
    fake = FakeGemini(script)
    async with serve_asgi(fake.app) as url:
        yield fake, url


def gemini(command: list[str], url: str, home: Path, work: Path, **env: str) -> asyncio.Task[CliResult]:
    """The printed line, given the test's prompt, as a task (so that the test can answer meanwhile)."""
    prompt = command.index("-p") + 1
    argv = [*command[:prompt], "run what you were asked to", *command[prompt + 1 :]]
    return asyncio.create_task(run_gemini(argv, base_url=url, home=home, cwd=work, env={"PATH": BARE_PATH} | env))


async def asked(api: Any, command: str) -> dict[str, Any]:
    return await wait_for_pending(api, {"input": {"command": command, "description": WHY}}, within=60)


def test_doctor_passes_what_connect_wrote_and_says_what_gemini_cannot_close(gate: Gate, tmp_path: Path) -> None:
    owner = {"APPROVAL_DATA_DIR": gate.server.environment()["APPROVAL_DATA_DIR"]}
    doctor = cli("doctor", home=gate.home(tmp_path / "home"), cwd=tmp_path, **owner)
    assert "ok    Gemini CLI asks approval-server before every tool call" in doctor.stdout
    assert "note  Gemini CLI cannot be made to fail closed when a repository it trusts" in doctor.stdout
    assert doctor.returncode == 0, doctor.stdout


async def test_an_approved_command_runs_and_an_edited_one_runs_as_edited(
    gate: Gate, tmp_path: Path, work_dir: Path
) -> None:
    approved, edited, original = tmp_path / "approved", tmp_path / "edited", tmp_path / "original"
    script = [shell(f"touch {approved}", "c1"), shell(f"touch {original}", "c2")]
    async with model(script) as (fake, url), gate.server.api(gate.server.api_token) as api:
        run = gemini(gate.command, url, gate.home(tmp_path / "home"), work_dir)
        first = await asked(api, f"touch {approved}")
        assert not approved.exists()
        await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "allow", "actor": "alice"})
        second = await asked(api, f"touch {original}")
        body = {"decision": "allow", "actor": "alice", "updated_input": {"command": f"touch {edited}"}}
        answered = await api.post(f"/api/requests/{second['id']}/decision", json=body)
        assert answered.status_code == 200, answered.text
        result = await run
    assert result.returncode == 0, result.describe()
    assert approved.exists()
    assert edited.exists()
    assert not original.exists()
    assert first["client"] == f"Gemini CLI {GEMINI_VERSION}, BeforeTool hook"
    assert (first["agent_kind"], first["editable"], first["agent"]) == ("gemini", True, "laptop")
    assert (first["tool_name"], first["cwd"]) == ("Bash", str(work_dir))
    assert first["session"]
    assert first["extra"]["tool_name"] == "run_shell_command"
    assert "Process Group PGID" in fake.function_response("c1")["output"]
    assert "modified by a hook" in fake.function_response("c2")["output"]  # Gemini tells the model
    assert fake.unexpected == []


async def test_a_denied_command_does_not_run_and_the_model_reads_why(
    gate: Gate, tmp_path: Path, work_dir: Path
) -> None:
    marker = tmp_path / "denied"
    async with model([shell(f"touch {marker}")]) as (fake, url), gate.server.api(gate.server.api_token) as api:
        run = gemini(gate.command, url, gate.home(tmp_path / "home"), work_dir)
        pending = await asked(api, f"touch {marker}")
        body = {"decision": "deny", "actor": "alice", "message": "not on a Friday"}
        await api.post(f"/api/requests/{pending['id']}/decision", json=body)
        result = await run
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "not on a Friday" in fake.function_response("c1")["error"]


async def test_the_policy_decides_shell_and_mcp_calls_with_no_human(gate: Gate, tmp_path: Path, work_dir: Path) -> None:
    """One policy file, in Claude Code's names: `run_shell_command` is `Bash`, an MCP tool `mcp__<server>__<tool>`."""
    allowed, denied = gate.root / "allowed", gate.root / "denied"
    (tmp_path / "issues.py").write_text(MCP_SERVER)
    home = gate.home(tmp_path / "home")
    settings = home / ".gemini" / "settings.json"
    servers = {"issues": {"command": sys.executable, "args": [str(tmp_path / "issues.py")]}}
    settings.write_text(json.dumps(json.loads(settings.read_text()) | {"mcpServers": servers}))
    script = [shell(f"touch {allowed}", "c1"), shell(f"touch {denied}", "c2")]
    script.append([call("mcp_issues_get_issue", {"number": 7}, id="c3")])
    async with model(script) as (fake, url), gate.server.api(gate.server.api_token) as api:
        result = await gemini(gate.command, url, home, work_dir)
        rows = (await api.get("/api/requests", params={"limit": 1000})).json()["requests"]
    assert result.returncode == 0, result.describe()
    assert allowed.exists()
    assert not denied.exists()
    assert fake.function_response("c2")["error"].startswith("Tool execution blocked: That file belongs to the owner")
    assert "issue 7 is open" in fake.function_response("c3")["output"]
    mcp = next(row for row in rows if row["tool_name"].startswith("mcp__"))
    ours = [row for row in rows if row["session"] == mcp["session"]]
    assert sorted((row["tool_name"], row["status"], row["decided_via"]) for row in ours) == [
        ("Bash", "allowed", "policy"),
        ("Bash", "denied", "policy"),
        ("mcp__issues__get_issue", "allowed", "policy"),
    ]
    assert mcp["input"] == {"number": 7}
    assert mcp["extra"]["mcp_context"]["server_name"] == "issues"


async def test_with_no_server_listening_nothing_runs(gate: Gate, tmp_path: Path, work_dir: Path) -> None:
    marker = tmp_path / "never"
    home = gate.home(tmp_path / "home", "--url", f"http://127.0.0.1:{free_port()}")
    async with model([shell(f"touch {marker}")]) as (fake, url):
        result = await gemini(gate.command, url, home, work_dir)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "Cannot reach approval-server" in fake.function_response("c1")["error"]


async def test_a_hook_whose_interpreter_is_gone_blocks(gate: Gate, tmp_path: Path, work_dir: Path) -> None:
    """A removed virtualenv: only the wrapper around the command is left to block."""
    marker = tmp_path / "never"
    home = gate.home(tmp_path / "home")
    settings = home / ".gemini" / "settings.json"
    data = json.loads(settings.read_text())
    hook = data["hooks"]["BeforeTool"][0]["hooks"][0]
    hook["command"] = hook["command"].replace(shlex.quote(sys.executable), "/nonexistent/python3", 1)
    assert "/nonexistent/python3" in hook["command"]
    settings.write_text(json.dumps(data))
    async with model([shell(f"touch {marker}")]) as (fake, url):
        result = await gemini(gate.command, url, home, work_dir)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "approval-server hook failed, so the action was denied" in fake.function_response("c1")["error"]


@contextlib.asynccontextmanager
async def impostor(status: int, body: str, delay: float = 0) -> AsyncIterator[str]:
    """Something else listening where the server was: it answers every request with `status` and `body`."""

    async def answer(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(delay)
        return Response(body, status_code=status, media_type="application/json")

    async with serve_asgi(Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])) as url:
        yield url


@pytest.mark.parametrize(
    ("status", "body", "seen"),
    [
        (500, '{"detail": "internal error"}', "answered 500"),
        (200, "<html>a login page</html>", "Expecting value"),
        (200, '{"status": "ok"}', "neither an allow nor a deny"),  # Gemini would run the call on this one
    ],
)
async def test_a_server_that_answers_garbage_is_a_deny(
    gate: Gate, tmp_path: Path, work_dir: Path, status: int, body: str, seen: str
) -> None:
    marker = tmp_path / "never"
    async with impostor(status, body) as other, model([shell(f"touch {marker}")]) as (fake, url):
        home = gate.home(tmp_path / "home", "--url", other)
        result = await gemini(gate.command, url, home, work_dir)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    error = fake.function_response("c1")["error"]
    assert "so the action was denied" in error
    assert seen in error


async def test_a_server_slower_than_the_hook_waits_is_a_deny(gate: Gate, tmp_path: Path, work_dir: Path) -> None:
    """The hook waits for the expiry and 30 s, well inside Gemini's own timeout for it (the expiry and 60 s)."""
    marker = tmp_path / "never"
    async with (
        impostor(200, '{"decision": "allow"}', delay=120) as slow,
        model([shell(f"touch {marker}")]) as (fake, url),
    ):
        home = gate.home(tmp_path / "home", "--url", slow)
        result = await gemini(gate.command, url, home, work_dir)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "ReadTimeout" in fake.function_response("c1")["error"]
    assert result.duration_s > EXPIRY + 30


async def test_the_expiry_deny_reaches_gemini_before_its_hook_timeout(
    gate: Gate, tmp_path: Path, work_dir: Path
) -> None:
    marker = tmp_path / "never"
    home = gate.home(tmp_path / "home")
    (hook,) = json.loads((home / ".gemini" / "settings.json").read_text())["hooks"]["BeforeTool"][0]["hooks"]
    assert hook["timeout"] == (EXPIRY + 60) * 1000  # what `connect` gives the hook: the expiry and a minute
    async with (
        model([shell(f"touch {marker}")]) as (fake, url),
        gate.server.api(gate.server.api_token) as api,
    ):
        result = await gemini(gate.command, url, home, work_dir)
        rows = (await api.get("/api/requests", params={"limit": 1000})).json()["requests"]
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert f"No answer within {EXPIRY} seconds" in fake.function_response("c1")["error"]
    assert [row["status"] for row in rows if row["input"].get("command") == f"touch {marker}"] == ["expired"]


async def test_a_hook_timeout_shorter_than_the_expiry_lets_gemini_run_the_call(
    gate: Gate, tmp_path: Path, work_dir: Path
) -> None:
    """Gemini's own behaviour, and why `connect` sets the timeout (and `doctor` checks it): a hook that Gemini kills
    gives no verdict, and Gemini runs the call."""
    marker = tmp_path / "ran"
    home = gate.home(tmp_path / "home")
    settings = home / ".gemini" / "settings.json"
    data = json.loads(settings.read_text())
    data["hooks"]["BeforeTool"][0]["hooks"][0]["timeout"] = 500
    settings.write_text(json.dumps(data))
    async with model([shell(f"touch {marker}")]) as (_, url):
        result = await gemini(gate.command, url, home, work_dir)
    assert result.returncode == 0, result.describe()
    assert marker.exists()


async def test_a_repository_cannot_redirect_the_hook_or_disable_it_by_name(
    gate: Gate, tmp_path: Path, work_dir: Path
) -> None:
    """A trusted folder's `.env` reaches the hook, and its `.gemini/settings.json` may list hooks to disable by
    name (or command, for a hook without one): the hook still asks the real server, under a name the repository
    cannot know."""
    marker = tmp_path / "never"
    home = gate.home(tmp_path / "home")
    (ours,) = json.loads((home / ".gemini" / "settings.json").read_text())["hooks"]["BeforeTool"][0]["hooks"]
    with AllowEverything() as other:
        (work_dir / ".env").write_text(f"APPROVAL_URL={other.url}\nSERVER_PORT={other.port}\n")
        (work_dir / ".gemini").mkdir()
        guesses = [ours["command"], "approval-server", "approval-hook", "approval-server-hook"]
        (work_dir / ".gemini" / "settings.json").write_text(json.dumps({"hooksConfig": {"disabled": guesses}}))
        async with model([shell(f"touch {marker}")]) as (fake, url), gate.server.api(gate.server.api_token) as api:
            run = gemini(gate.command, url, home, work_dir)
            pending = await asked(api, f"touch {marker}")
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
            result = await run
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "Denied by owner via api: no" in fake.function_response("c1")["error"]
    assert other.requests == []


def root_owned_folder() -> Path | None:
    """A new folder that Gemini accepts system settings from (root owns it and every folder above it, none
    writable by others), or None when this process cannot make one."""
    for base in (Path.home(), Path("/var/lib"), Path("/run")):
        folder = Path(tempfile.mkdtemp(dir=base)) if os.geteuid() == 0 and base.is_dir() else None
        if folder is not None:
            folder.chmod(0o755)
            if all(p.stat().st_uid == 0 and not p.stat().st_mode & 0o022 for p in (folder, *folder.parents)):
                return folder
            folder.rmdir()
    return None


@pytest.mark.parametrize("system_settings", [False, True])
async def test_a_repository_that_switches_hooks_off_is_overruled_only_by_system_settings(
    gate: Gate, tmp_path: Path, work_dir: Path, system_settings: bool
) -> None:
    """A trusted folder's settings drop the user's hooks and switch hooks off. Without the system settings that
    `connect` wrote for root to install, Gemini cannot be made to fail closed against this: the call runs unasked
    (docs/agents/gemini.md says so, and `connect` and `doctor` say how to close it)."""
    marker = tmp_path / "ran"
    (work_dir / ".gemini").mkdir()
    (work_dir / ".gemini" / "settings.json").write_text(json.dumps({"hooks": None, "hooksConfig": {"enabled": False}}))
    home = gate.home(tmp_path / "home")
    env: dict[str, str] = {}
    folder = root_owned_folder() if system_settings else None
    if system_settings and folder is None:
        pytest.skip("Gemini reads system settings only where root owns them: this test needs root (CI runs as root)")
    if folder is not None:
        shutil.copyfile(home / ".config" / "approval-server" / "gemini-system-settings.json", folder / "settings.json")
        (folder / "settings.json").chmod(0o644)
        env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = str(folder / "settings.json")
    try:
        async with model([shell(f"touch {marker}")]) as (_, url), gate.server.api(gate.server.api_token) as api:
            run = gemini(gate.command, url, home, work_dir, **env)
            if system_settings:
                pending = await asked(api, f"touch {marker}")
                await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny"})
            result = await run
    finally:
        if folder is not None:
            shutil.rmtree(folder)
    assert result.returncode == 0, result.describe()
    assert marker.exists() is not system_settings
