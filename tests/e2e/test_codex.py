"""End to end: the real `codex` CLI (the pinned @openai/codex) against the fake Responses API, with the hook that
`approval-server connect codex` merges into its config.toml and trusts, started as `connect` prints.

The fake model asks to run each command outside the sandbox (an escalation: what Codex asks approval for). Its
automatic reviewer (what decides when no hook gives a verdict) answers ALLOW to anything: so a test that expects a
call blocked passes only if the hook itself blocked it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from pydantic import HttpUrl

from approval_server.agents import agent_for
from approval_server.agents.codex_setup import listed_hooks
from approval_server.agents.setup import CRASHED, Target, write_plan
from approval_server.entry.client_config import ClientSettings
from tests.connect_support import cli, printed_command
from tests.e2e.agent_cli import CliResult, require
from tests.e2e.codex_cli import (
    BARE_PATH,
    BIN_DIR,
    CODEX_BIN,
    CODEX_VERSION,
    headless,
    provider_config,
    run_codex,
)
from tests.e2e.fake_openai_responses import JUSTIFICATION, CustomCall, FakeResponses, Turn, shell
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

CODEX = agent_for("codex")
CONNECT_PATH = f"{BIN_DIR}:{BARE_PATH}"  # `connect` finds codex on PATH to trust the hook


@pytest.fixture(autouse=True)
def require_codex() -> None:
    require(CODEX_BIN)


@dataclass
class Setup:
    """One user: HOME (the server's, where `serve` wrote client.env), Codex's home, a project folder, the fake."""

    home: Path
    codex_home: Path
    work: Path
    fake: FakeResponses

    @property
    def config(self) -> Path:
        return self.codex_home / "config.toml"

    def connect(self, *args: str) -> list[str]:
        """`approval-server connect codex` as the user runs it; the headless command line it printed."""
        done = cli("connect", "codex", *args, home=self.home, cwd=self.work, PATH=CONNECT_PATH, **self.env)
        assert done.returncode == 0, done.stderr
        assert "The hook is trusted" in done.stdout, done.stdout
        return headless(printed_command(done.stdout, "codex exec"), self.work)

    @property
    def env(self) -> dict[str, str]:
        return {"CODEX_HOME": str(self.codex_home)}

    async def run(self, argv: list[str], **env: str) -> CliResult:
        return await run_codex(argv, home=self.home, cwd=self.work, env=self.env | env)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Callable[..., Setup]]:
    """Factory: `setup(script, home=…, model=…, config=…)` writes the user's config.toml naming the fake."""
    fakes: list[FakeResponses] = []

    def make(script: list[Turn], home: Path | None = None, model: str = "fake-model", config: str = "") -> Setup:
        fake = FakeResponses(script).start()
        fakes.append(fake)
        made = Setup(home or tmp_path / "home", tmp_path / "codex", tmp_path / "work", fake)
        for folder in (made.home, made.codex_home, made.work):
            folder.mkdir(parents=True, exist_ok=True)
        made.config.write_text(provider_config(fake.base_url, model) + config)
        return made

    yield make
    for fake in fakes:
        fake.stop()


@pytest.fixture
def codex_server(start_server: Callable[..., ServerProcess], tmp_path: Path) -> Callable[..., ServerProcess]:
    """The server, knowing where Codex keeps its files (so it guards them)."""
    return lambda **env: start_server(CODEX_HOME=str(tmp_path / "codex"), **env)


async def answered(server: ServerProcess, run: Any, body: dict[str, Any]) -> tuple[dict[str, Any], CliResult]:
    """Wait for the run's request, answer it through the API with `body`; the request and the run's result."""
    async with server.api() as api:
        task = asyncio.create_task(run)
        pending = await wait_for_pending(api, within=60)
        response = await api.post(f"/api/requests/{pending['id']}/decision", json=body)
        assert response.status_code == 200, response.text
        return pending, await task


def client_settings(url: str, **settings: Any) -> ClientSettings:
    return ClientSettings(approval_url=HttpUrl(url), **settings)


def in_process_hook(target: Target, codex_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`connect codex` for a target the CLI cannot make (a broken hook, a short timeout): plan, trust and write."""
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.setenv("PATH", f"{BIN_DIR}:{os.environ['PATH']}")
    write_plan(CODEX.connect(target), lambda line: None)


async def test_connect_trusts_its_hook_an_approved_command_runs_and_a_denied_one_does_not(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup], tmp_path: Path
) -> None:
    approved, denied = tmp_path / "approved", tmp_path / "denied"
    server = codex_server()
    user = setup([[shell(f"touch {approved}", "call_ok")], [shell(f"touch {denied}", "call_no")]], server.data_dir)
    argv = user.connect("--agent", "laptop")
    assert argv[2:6] == ["--approve-for-me", "--ignore-rules", "-c", "features.hooks=true"]
    assert "[model_providers.fake]" in user.config.read_text()  # the user's own config is kept
    assert len(list(user.codex_home.glob("config.toml.bak-*"))) == 1
    (ours,) = [hook for hook in listed_hooks(str(CODEX_BIN), user.codex_home) if "approval_server" in hook["command"]]
    assert (ours["trustStatus"], ours["matcher"], ours["timeoutSec"]) == ("trusted", "*", 300 + 60)
    async with server.api() as api:
        run = asyncio.create_task(user.run(argv))
        first = await wait_for_pending(api, within=60)
        await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "allow", "actor": "alice"})
        second = await wait_for_pending(api, {"input": {"command": f"touch {denied}", "description": JUSTIFICATION}})
        no = {"decision": "deny", "actor": "alice", "message": "not from this laptop"}
        await api.post(f"/api/requests/{second['id']}/decision", json=no)
        result = await run
    assert result.returncode == 0, result.describe()
    assert approved.exists()
    assert "Process exited with code 0" in user.fake.tool_output("call_ok")
    assert not denied.exists()
    assert "not from this laptop" in user.fake.tool_output("call_no")
    assert user.fake.reviews == []  # the hook decided both; Codex's own reviewer was never asked
    assert first["input"] == {"command": f"touch {approved}", "description": JUSTIFICATION}  # the model's words
    assert (first["tool_name"], first["agent_kind"], first["agent"], first["editable"]) == (
        "Bash",
        "codex",
        "laptop",
        False,
    )
    assert first["client"] == f"Codex CLI {CODEX_VERSION}, PermissionRequest hook"
    assert first["agent_version"].startswith(f"{CODEX_VERSION}-")  # the platform package's: 0.169.0-linux-x64
    assert (first["cwd"], first["session"]) == (str(user.work), second["session"])
    assert first["session"]


async def test_rules_decide_for_codex_with_no_human_and_codexs_own_files_are_out_of_reach(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup], tmp_path: Path
) -> None:
    """The owner's policy allows one command and denies another; the built-in rule denies a call that names
    Codex's config.toml (which holds the hook and its trust)."""
    allowed, denied, config = tmp_path / "allowed", tmp_path / "denied", tmp_path / "codex" / "config.toml"
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "policy.toml").write_text(
        f'[agent."nightly".permissions]\nallow = ["Bash(touch {allowed})"]\ndeny = ["Bash(touch {denied})"]\n\n'
        f'[agent."nightly".permissions.messages]\n"Bash(touch {denied})" = "That file belongs to the owner."\n'
    )
    server = codex_server()
    unhook = f"printf '[features]\\nhooks = false\\n' >> {config}"
    script = [[shell(f"touch {allowed}", "call_ok")], [shell(f"touch {denied}", "call_no")], [shell(unhook, "call_x")]]
    user = setup(script, home=server.data_dir)
    result = await user.run(user.connect("--agent", "nightly"))
    assert result.returncode == 0, result.describe()
    assert allowed.exists()
    assert not denied.exists()
    assert user.fake.tool_output("call_no").count("That file belongs to the owner (policy rule Bash(touch ") == 1
    assert "own files" in user.fake.tool_output("call_x")
    assert "hooks = false" not in config.read_text()
    async with server.api() as api:
        rows = {row["input"]["command"]: row for row in (await api.get("/api/requests")).json()["requests"]}
    assert rows[f"touch {allowed}"]["decided_via"] == "policy"
    assert [rows[command]["status"] for command in (f"touch {denied}", unhook)] == ["denied", "denied"]
    assert all(row["decided_via"] == "policy" for row in rows.values())
    assert user.fake.reviews == []


async def test_nothing_runs_when_the_server_is_stopped(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup], tmp_path: Path
) -> None:
    marker = tmp_path / "never"
    server = codex_server()
    user = setup([[shell(f"touch {marker}", "call_x")]], home=server.data_dir)
    argv = user.connect()
    server.stop()
    result = await user.run(argv)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "Cannot reach approval-server" in user.fake.tool_output("call_x")
    assert user.fake.reviews == []


async def test_a_trusted_projects_codex_folder_cannot_switch_the_hook_off_with_the_printed_flags(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup], tmp_path: Path
) -> None:
    """A project the user trusted loads its .codex/: `[features] hooks = false` there turns every hook off, and its
    rules can allow a command outright. The printed flags outrank both; without them the command runs unasked."""
    marker = tmp_path / "project"
    server = codex_server()
    user = setup([[shell(f"touch {marker}", "call_p")]], home=server.data_dir)
    user.config.write_text(user.config.read_text() + f'\n[projects."{user.work}"]\ntrust_level = "trusted"\n')
    await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(user.work)], check=True)
    (user.work / ".codex" / "rules").mkdir(parents=True)
    (user.work / ".codex" / "config.toml").write_text("[features]\nhooks = false\ncodex_hooks = false\n")
    (user.work / ".codex" / "rules" / "allow.rules").write_text('prefix_rule(pattern=["touch"], decision="allow")\n')
    argv = user.connect()
    body = {"decision": "deny", "actor": "alice", "message": "asked after all"}
    _, result = await answered(server, user.run(argv), body)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert "asked after all" in user.fake.tool_output("call_p")
    plain = [str(CODEX_BIN), "exec", "--approve-for-me", "--skip-git-repo-check", "--json", "-C", str(user.work), "go"]
    unflagged = await user.run(plain)
    assert unflagged.returncode == 0, unflagged.describe()
    assert marker.exists()  # the hole the flags close: no hook, no reviewer, nobody asked
    async with server.api() as api:
        assert len((await api.get("/api/requests")).json()["requests"]) == 1


async def test_a_hook_whose_cli_cannot_start_blocks(
    codex_server: Callable[..., ServerProcess],
    setup: Callable[..., Setup],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dataclass(frozen=True)
    class BrokenInterpreter(Target):
        def hook_command(self, kind: str) -> str:
            return super().hook_command(kind).replace(sys.executable, "/nonexistent/python3", 1)

    marker = tmp_path / "never"
    server = codex_server()
    user = setup([[shell(f"touch {marker}", "call_x")]], home=server.data_dir)
    in_process_hook(BrokenInterpreter(client_settings(server.url), MCP_TOKEN), user.codex_home, monkeypatch)
    assert "/nonexistent/python3" in user.config.read_text()
    result = await user.run(headless(["codex", "exec", "--approve-for-me"], user.work))
    assert not marker.exists(), result.describe()
    assert CRASHED in user.fake.tool_output("call_x")
    assert user.fake.reviews == []


class BadServer(ThreadingHTTPServer):
    """An approval server that answers `how`: garbage, 500, or nothing for a minute."""

    daemon_threads = True

    def __init__(self, how: str) -> None:
        self.how = how
        super().__init__(("127.0.0.1", 0), _BadHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _BadHandler(BaseHTTPRequestHandler):
    server: BadServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.server.how == "slow":
            time.sleep(60)
        status, body = (500, b'{"detail": "boom"}') if self.server.how == "500" else (200, b"<html>not JSON")
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.mark.parametrize("how", ["garbage", "500", "slow"])
async def test_a_server_that_answers_garbage_an_error_or_too_late_blocks(
    how: str, setup: Callable[..., Setup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slow`: the hook's client gives up at the expiry (1 s here) + 30 s, before Codex's timeout (expiry + 60 s)."""
    marker = tmp_path / "never"
    user = setup([[shell(f"touch {marker}", "call_x")]])
    bad = BadServer(how)
    try:
        settings = client_settings(bad.url, approval_timeout_seconds=1)
        in_process_hook(Target(settings, MCP_TOKEN), user.codex_home, monkeypatch)
        argv = headless(["codex", "exec", "--approve-for-me"], user.work)
        result = await user.run(argv, APPROVAL_MCP_TOKEN=MCP_TOKEN, APPROVAL_TIMEOUT_SECONDS="1")
    finally:
        bad.shutdown()
        bad.server_close()
    assert not marker.exists(), result.describe()
    assert "could not decide" in user.fake.tool_output("call_x")
    assert user.fake.reviews == []


async def test_the_servers_expiry_deny_comes_before_codexs_hook_timeout(
    codex_server: Callable[..., ServerProcess],
    setup: Callable[..., Setup],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hook timeout shorter than the wait lets Codex kill the hook, and its reviewer runs the command; `connect`
    writes the expiry + 60 s, so the server's deny at the expiry arrives first."""

    @dataclass(frozen=True)
    class ShortTimeout(Target):
        @property
        def hook_timeout(self) -> int:
            return 2

    killed, expired = tmp_path / "killed", tmp_path / "expired"
    server = codex_server(APPROVAL_TIMEOUT_SECONDS="5")
    user = setup([[shell(f"touch {killed}", "call_k")]], home=server.data_dir)
    in_process_hook(ShortTimeout(client_settings(server.url), MCP_TOKEN), user.codex_home, monkeypatch)
    short = await user.run(headless(["codex", "exec", "--approve-for-me"], user.work))
    assert killed.exists(), short.describe()  # the hazard: no verdict, and the reviewer allowed it
    assert len(user.fake.reviews) == 1
    user.fake.script = [[shell(f"touch {expired}", "call_e")]]
    started = time.monotonic()
    result = await user.run(user.connect())
    assert not expired.exists(), result.describe()
    assert "No answer within 5 seconds" in user.fake.tool_output("call_e")
    assert 5 <= time.monotonic() - started < 60
    assert len(user.fake.reviews) == 1


async def test_a_patch_outside_the_workspace_asks_as_apply_patch(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup], tmp_path: Path
) -> None:
    """apply_patch keeps its name and the whole patch (docs/agents/codex.md); the sandbox's /tmp is left out here,
    so that a file in the test's folder is outside what Codex writes unasked."""
    target = tmp_path / "patched.txt"
    patch = f"*** Begin Patch\n*** Add File: {target}\n+hello\n*** End Patch\n"
    server = codex_server()
    tmp_excluded = "\n[sandbox_workspace_write]\nexclude_slash_tmp = true\nexclude_tmpdir_env_var = true\n"
    user = setup([[CustomCall("apply_patch", patch, "call_patch")]], server.data_dir, "gpt-5.5", tmp_excluded)
    body = {"decision": "deny", "actor": "alice", "message": "no patches there"}
    pending, result = await answered(server, user.run(user.connect()), body)
    assert result.returncode == 0, result.describe()
    assert not target.exists()
    assert pending["tool_name"] == "apply_patch"
    assert pending["input"] == {"command": patch.strip()}
    assert "no patches there" in user.fake.tool_output("call_patch")


async def test_a_pre_tool_use_hook_can_deny_and_its_allow_only_lets_codex_go_on(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup]
) -> None:
    """A PreToolUse hook (set up by hand) sees sandboxed calls too; an approval answers {} (no objection)."""
    server = codex_server()
    script = [[shell("touch ran", "call_ok", escalate=False)], [shell("touch blocked", "call_no", escalate=False)]]
    user = setup(script, home=server.data_dir)
    command = Target(client_settings(server.url), MCP_TOKEN).hook_command("codex")
    hook = {"matcher": "*", "hooks": [{"type": "command", "command": command, "timeout": 360}]}
    user.config.write_text(user.config.read_text() + "\n" + tomlkit.dumps({"hooks": {"PreToolUse": [hook]}}))
    argv = headless(["codex", "exec", "--approve-for-me", "--dangerously-bypass-hook-trust"], user.work)
    async with server.api() as api:
        task = asyncio.create_task(user.run(argv))
        first = await wait_for_pending(api, {"input": {"command": "touch ran"}}, within=60)
        await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "allow"})
        second = await wait_for_pending(api, {"input": {"command": "touch blocked"}}, within=60)
        await api.post(f"/api/requests/{second['id']}/decision", json={"decision": "deny", "message": "pre-denied"})
        result = await task
    assert result.returncode == 0, result.describe()
    assert (user.work / "ran").exists()
    assert not (user.work / "blocked").exists()
    assert "pre-denied" in user.fake.tool_output("call_no")
    assert first["client"] == f"Codex CLI {CODEX_VERSION}, PreToolUse hook"


async def test_doctor_says_when_codex_no_longer_trusts_the_hook(
    codex_server: Callable[..., ServerProcess], setup: Callable[..., Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = codex_server()
    user = setup([], home=server.data_dir)
    user.connect()
    monkeypatch.setenv("CODEX_HOME", str(user.codex_home))
    monkeypatch.setenv("PATH", f"{BIN_DIR}:{os.environ['PATH']}")
    said: list[str] = []
    CODEX.doctor(None, lambda line: said.append(f"ok {line}"), lambda line: said.append(f"FIX {line}"), said.append)
    trusted, under_tmp, fail_open = said
    assert trusted.startswith("ok Codex trusts the hook")
    assert under_tmp == (  # true of this test's Codex home: a sandboxed call could rewrite it unasked
        f"FIX Codex: {user.config} is under /tmp, which Codex's sandbox lets the agent write without asking"
    )
    assert fail_open.startswith("Codex: what still runs without the gate")
    user.config.write_text(user.config.read_text().replace("timeout = 360", "timeout = 361"))
    lapsed = await asyncio.to_thread(cli, "doctor", home=user.home, cwd=user.work, PATH=CONNECT_PATH, **user.env)
    (line,) = [line for line in lapsed.stdout.splitlines() if "changed since it was trusted" in line]
    assert line.startswith("  FIX   Codex:")
    assert "skips it without a word" in line
    assert "approval-server connect codex" in line
