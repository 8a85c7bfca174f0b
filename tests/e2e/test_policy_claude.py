"""End to end: the real `claude` CLI and the owner's policy file; no human is asked about what the rules decide."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.claude_cli import run_claude_async
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import MCP_TOKEN, ServerProcess

MakeFake = Callable[..., FakeAnthropic]
pytestmark = pytest.mark.usefixtures("require_claude")


def agent_config(server: ServerProcess, path: Path, agent: str) -> Path:
    """The MCP config `approval-server mcp-config --agent` prints, as a user would save it."""
    result = subprocess.run(
        [sys.executable, "-m", "approval_server", "mcp-config", "--agent", agent],
        cwd=server.data_dir,
        env=server.environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    config = json.loads(result.stdout)
    assert config["mcpServers"]["approval-server"]["headers"]["Authorization"] == f"Bearer {MCP_TOKEN}"
    path.write_text(result.stdout)
    return path


async def test_allow_and_deny_rules_decide_for_the_real_cli_with_no_human(
    start_server: Callable[..., ServerProcess], fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    data = tmp_path / "data"
    data.mkdir()
    (data / "policy.toml").write_text(
        f'[permissions]\ndeny = ["Bash(rm:*)"]\n\n[agent."nightly".permissions]\nallow = ["Bash(touch {allowed})"]\n'
        f'deny = ["Bash(touch {denied})"]\n\n[agent."nightly".permissions.messages]\n'
        f'"Bash(touch {denied})" = "That file belongs to the owner."\n'
    )
    server = start_server()
    fake = fake_anthropic(
        [
            [tool_use("Bash", {"command": f"touch {allowed}", "description": "allowed by a rule"}, id="toolu_ok")],
            [tool_use("Bash", {"command": f"touch {denied}", "description": "denied by a rule"}, id="toolu_no")],
        ]
    )
    result = await run_claude_async(
        "touch the files",
        base_url=fake.base_url,
        cwd=work_dir,
        mcp_config=agent_config(server, tmp_path / "mcp.json", "nightly"),
        run_dir=tmp_path / "run",
        extra_env={"PWD": str(work_dir)},  # as a shell sets it; the harness passes no other variable
        timeout=120,
    )
    async with server.api() as api:
        rows = (await api.get("/api/requests")).json()["requests"]
    assert result.returncode == 0, result.describe()
    assert allowed.exists(), fake.tool_result("toolu_ok")
    assert not denied.exists()
    assert fake.tool_result("toolu_ok").is_error is False
    refused = fake.tool_result("toolu_no")
    assert refused.is_error is True
    assert refused.content.startswith("That file belongs to the owner (policy rule Bash(touch ")
    by_id = {row["tool_use_id"]: row for row in rows}
    assert by_id["toolu_ok"]["decided_via"] == "policy"
    assert by_id["toolu_ok"]["agent"] == "nightly"
    assert by_id["toolu_ok"]["cwd"] == str(work_dir)  # Claude Code filled in ${PWD} from its environment
    assert by_id["toolu_no"]["status"] == "denied"
    assert all(row["status"] != "pending" for row in rows)
