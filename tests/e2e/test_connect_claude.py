"""End to end, as the README has a newcomer do it: `serve --port`, `connect claude-code`, then the real `claude` CLI
with exactly the files `connect` wrote and exactly the command line it printed; a request approved through the
API runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.connect_support import PERMISSION_TOOL, QuickStartServer, cli, printed_command, quick_start
from tests.e2e.claude_cli import CLAUDE_VERSION, ClaudeResult, run_claude_async
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import wait_for_pending

MakeFake = Callable[..., FakeAnthropic]
pytestmark = pytest.mark.usefixtures("require_claude")


async def approve_through(
    server: QuickStartServer, command: list[str], fake: FakeAnthropic, tmp_path: Path, work_dir: Path
) -> tuple[dict[str, Any], ClaudeResult]:
    """Run `command` (a printed `claude` line, given the test's prompt) and approve its Bash request on the API.
    The CLI runs under the user's HOME, where `serve` and `connect` wrote their files, and a PATH with no
    approval-server on it; the harness adds only its output flags and the fake model API."""
    assert command[0] == "claude"
    rest = command[3:] if command[1] == "-p" else command[1:]  # the harness puts its own `-p <prompt>` first
    async with server.api(server.api_token) as api:
        run = asyncio.create_task(
            run_claude_async(
                "write the marker",
                base_url=fake.base_url,
                cwd=work_dir,
                mcp_config=None,
                permission_tool=None,
                extra_args=rest,
                extra_env={"HOME": str(server.home), "PATH": "/usr/bin:/bin"},
                run_dir=tmp_path / "run",
                timeout=120,
            )
        )
        pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "actor": "alice"})
        return pending, await run


async def test_the_printed_headless_command_with_the_written_config_gets_an_approval(
    tmp_path: Path, work_dir: Path, database_url: str, fake_anthropic: MakeFake
) -> None:
    marker = tmp_path / "approved"
    fake = fake_anthropic([[tool_use("Bash", {"command": f"echo ok > {marker}", "description": "x"}, id="toolu_c")]])
    with quick_start(tmp_path / "data", database_url) as server:
        connected = await asyncio.to_thread(cli, "connect", "claude-code", home=server.home, cwd=work_dir)
        assert connected.returncode == 0, connected.stderr
        command = printed_command(connected.stdout, "claude -p")
        assert command[command.index("--permission-prompt-tool") + 1] == PERMISSION_TOOL
        pending, result = await approve_through(server, command, fake, tmp_path, work_dir)
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "ok\n"
    assert fake.tool_result("toolu_c").is_error is False
    assert pending["tool_use_id"] == "toolu_c"  # asked through the permission tool, not the hook
    assert (pending["client"], pending["agent_kind"]) == (f"claude-code {CLAUDE_VERSION}", "claude-code")


async def test_the_printed_interactive_command_asks_through_the_written_hook(
    tmp_path: Path, work_dir: Path, database_url: str, fake_anthropic: MakeFake
) -> None:
    """The interactive line's settings, in a `-p` run (the harness drives no terminal): the hook runs this
    installation by absolute path, with no approval-server on PATH."""
    marker = tmp_path / "approved"
    fake = fake_anthropic([[tool_use("Bash", {"command": f"echo ok > {marker}", "description": "x"}, id="toolu_i")]])
    with quick_start(tmp_path / "data", database_url) as server:
        connected = await asyncio.to_thread(cli, "connect", "claude-code", home=server.home, cwd=work_dir)
        assert connected.returncode == 0, connected.stderr
        command = printed_command(connected.stdout, "claude --settings")
        pending, result = await approve_through(server, command, fake, tmp_path, work_dir)
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "ok\n"
    # The hook command read the version from the Claude Code that ran it.
    assert pending["client"] == f"Claude Code {CLAUDE_VERSION}, PermissionRequest hook"
    assert pending["extra"]["hook_event_name"] == "PermissionRequest"
