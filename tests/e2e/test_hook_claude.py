"""End to end: the real `claude` CLI with `approval-server hook` in its settings and no permission tool, as an
interactive session is set up: the same broker, channels and audit decide."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.claude_cli import CLAUDE_VERSION, ClaudeResult, run_claude_async, write_mcp_config
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

MakeFake = Callable[..., FakeAnthropic]
pytestmark = pytest.mark.usefixtures("require_claude")


def hook_settings(server: ServerProcess, event: str) -> str:
    """The settings `approval-server hook-config` prints: the command by absolute path, a timeout above the
    expiry, and every failure blocking (a hook that fails or times out is otherwise ignored)."""
    command = [sys.executable, "-m", "approval_server", "hook-config", "--agent", "laptop", "--event", event]
    env = {"PATH": os.environ["PATH"], "HOME": str(server.data_dir)}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def start(
    fake: FakeAnthropic, server: ServerProcess, tmp_path: Path, work_dir: Path, event: str
) -> asyncio.Task[ClaudeResult]:
    return asyncio.create_task(
        run_claude_async(
            "write the marker",
            base_url=fake.base_url,
            cwd=work_dir,
            mcp_config=None,
            permission_tool=None,
            extra_args=["--settings", hook_settings(server, event)],
            # The user's own config folder, where `serve` wrote the server's URL and tokens.
            extra_env={"XDG_CONFIG_HOME": str(server.data_dir / ".config"), "PWD": str(work_dir)},
            run_dir=tmp_path / "run",
            timeout=120,
        )
    )


async def decide_through_hook(
    fake: FakeAnthropic,
    server: ServerProcess,
    tmp_path: Path,
    work_dir: Path,
    event: str,
    decision: dict[str, str],
    marker: Path,
) -> tuple[dict[str, Any], ClaudeResult]:
    """Run the CLI with the hook, answer its request on the API with `decision`; the request and the run's result."""
    async with server.api() as api:
        run = start(fake, server, tmp_path, work_dir, event)
        pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
        assert not await asyncio.to_thread(marker.exists)
        await api.post(f"/api/requests/{pending['id']}/decision", json=decision)
        return pending, await run


@pytest.mark.parametrize("event", ["PreToolUse", "PermissionRequest"])
async def test_a_hook_asks_the_server_and_approve_runs_the_command(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path, event: str
) -> None:
    marker = tmp_path / "approved"
    fake = fake_anthropic([[tool_use("Bash", {"command": f"echo ok > {marker}", "description": "x"}, id="toolu_h")]])
    body = {"decision": "allow", "actor": "alice"}
    pending, result = await decide_through_hook(fake, server, tmp_path, work_dir, event, body, marker)
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "ok\n"
    assert fake.tool_result("toolu_h").is_error is False
    assert pending["client"] == f"Claude Code {CLAUDE_VERSION}, {event} hook"
    assert (pending["agent_kind"], pending["editable"]) == ("claude-code", True)
    assert pending["agent"] == "laptop"
    assert pending["cwd"] == str(work_dir)
    assert pending["session"]  # the hook's session_id: one per Claude Code session
    assert pending["extra"]["hook_event_name"] == event


@pytest.mark.parametrize("event", ["PreToolUse", "PermissionRequest"])
async def test_a_hook_deny_stops_the_command_and_the_model_reads_why(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path, event: str
) -> None:
    marker = tmp_path / "denied"
    fake = fake_anthropic([[tool_use("Bash", {"command": f"echo no > {marker}", "description": "x"}, id="toolu_d")]])
    body = {"decision": "deny", "message": "not from this laptop", "actor": "alice"}
    _, result = await decide_through_hook(fake, server, tmp_path, work_dir, event, body, marker)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    seen = fake.tool_result("toolu_d")
    assert seen.is_error is True
    assert "not from this laptop" in seen.content


async def test_a_hook_that_cannot_reach_the_server_blocks(
    fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server()
    server.stop()  # nothing listens on its port any more
    marker = tmp_path / "never"
    fake = fake_anthropic([[tool_use("Bash", {"command": f"echo x > {marker}", "description": "x"}, id="toolu_x")]])
    result = await start(fake, server, tmp_path, work_dir, "PreToolUse")
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    seen = fake.tool_result("toolu_x")
    assert seen.is_error is True
    assert "Cannot reach approval-server" in seen.content


async def test_an_mcp_tool_hook_needs_no_script(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    """`"type": "mcp_tool"` calls the server's `hook` tool over the MCP connection Claude Code already has."""
    fields = ("tool_name", "tool_input", "tool_use_id", "session_id", "cwd")
    hook_input = {"hook_event_name": "PreToolUse"} | {name: f"${{{name}}}" for name in fields}
    entry = {"type": "mcp_tool", "server": "approval-server", "tool": "hook", "input": hook_input}
    settings = {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [entry | {"onFailure": "block"}]}]}}
    marker = tmp_path / "approved"
    fake = fake_anthropic([[tool_use("Bash", {"command": f"echo ok > {marker}", "description": "x"}, id="toolu_m")]])
    async with server.api() as api:
        run = asyncio.create_task(
            run_claude_async(
                "write the marker",
                base_url=fake.base_url,
                cwd=work_dir,
                mcp_config=write_mcp_config(
                    tmp_path / "mcp.json", f"{server.url}/mcp", token=MCP_TOKEN, timeout_ms=330_000
                ),
                permission_tool=None,
                extra_args=["--settings", json.dumps(settings)],
                run_dir=tmp_path / "run",
                timeout=120,
            )
        )
        pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        result = await run
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "ok\n"
    assert pending["input"] == {"command": f"echo ok > {marker}", "description": "x"}
    assert pending["tool_use_id"] == "toolu_m"
    assert pending["cwd"] == str(work_dir)
