"""End to end: the real, pinned `claude` CLI asks the real approval-server, a scripted fake model drives it.

Each Bash command writes a marker file outside the CLI's working directory, which makes Claude Code ask
the permission tool; whether the marker exists afterwards tells whether the command ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.claude_cli import ClaudeResult, run_claude_async, write_mcp_config
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import MCP_TOKEN, REPO, ServerProcess, wait_for_pending

MakeFake = Callable[..., FakeAnthropic]
pytestmark = pytest.mark.usefixtures("require_claude")


def bash(command: str, tool_id: str) -> object:
    return tool_use("Bash", {"command": command, "description": "write a marker"}, id=tool_id)


def mcp_config(server: ServerProcess, tmp_path: Path) -> Path:
    return write_mcp_config(tmp_path / "mcp.json", f"{server.url}/mcp", token=MCP_TOKEN, timeout_ms=330_000)


def start_claude(
    fake: FakeAnthropic,
    server: ServerProcess,
    tmp_path: Path,
    work_dir: Path,
    config: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> asyncio.Task[ClaudeResult]:
    """Run the CLI in the background with `config` (default: an HTTP config for `server` with its token)."""
    return asyncio.create_task(
        run_claude_async(
            "write the marker",
            base_url=fake.base_url,
            cwd=work_dir,
            mcp_config=config or mcp_config(server, tmp_path),
            run_dir=tmp_path / "run",
            extra_env=extra_env,
            timeout=120,
        )
    )


async def test_an_approved_command_runs(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    marker = tmp_path / "approved"
    fake = fake_anthropic([[bash(f"echo ok > {marker}", "toolu_a")]])
    async with server.api() as api:
        run = start_claude(fake, server, tmp_path, work_dir)
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_a"}, within=60)
        assert pending["tool_name"] == "Bash"
        assert pending["input"]["command"] == f"echo ok > {marker}"
        assert not marker.exists()
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        result = await run
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "ok\n"
    assert fake.tool_result("toolu_a").is_error is False
    assert result.permission_denials == []


async def test_a_denied_command_does_not_run_and_the_model_reads_why(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    marker = tmp_path / "denied"
    fake = fake_anthropic([[bash(f"echo no > {marker}", "toolu_d")]])
    async with server.api() as api:
        run = start_claude(fake, server, tmp_path, work_dir)
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_d"}, within=60)
        body = {"decision": "deny", "message": "not tonight", "actor": "owner"}
        await api.post(f"/api/requests/{pending['id']}/decision", json=body)
        result = await run
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    seen = fake.tool_result("toolu_d")
    assert seen.is_error is True
    assert seen.content.startswith('Denied by owner (says: "owner") via api: not tonight')
    assert [d["tool_use_id"] for d in result.permission_denials] == ["toolu_d"]


async def test_an_edited_command_runs_instead_of_the_original(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    original, edited = tmp_path / "original", tmp_path / "edited"
    fake = fake_anthropic([[bash(f"echo original > {original}", "toolu_e")]])
    async with server.api() as api:
        run = start_claude(fake, server, tmp_path, work_dir)
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_e"}, within=60)
        new_input = {"command": f"echo edited > {edited}", "description": "edited by the approver"}
        await api.post(
            f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "updated_input": new_input}
        )
        result = await run
    assert result.returncode == 0, result.describe()
    assert not original.exists()
    assert edited.read_text() == "edited\n"


async def test_expiry_denies_with_the_servers_own_message(
    start_server: Callable[..., ServerProcess], fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    server = start_server(APPROVAL_TIMEOUT_SECONDS="3")
    marker = tmp_path / "expired"
    fake = fake_anthropic([[bash(f"echo late > {marker}", "toolu_x")]])
    result = await start_claude(fake, server, tmp_path, work_dir)
    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    seen = fake.tool_result("toolu_x")
    assert seen.is_error is True
    assert seen.content.startswith("No answer within 3 seconds")
    async with server.api() as api:
        rows = (await api.get("/api/requests", params={"status": "expired"})).json()["requests"]
    assert [row["tool_use_id"] for row in rows] == ["toolu_x"]


async def test_with_the_server_stopped_nothing_runs(
    fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path, database_url: str
) -> None:
    stopped = ServerProcess(data_dir=tmp_path / "data", database_url=database_url)  # never started: port closed
    marker = tmp_path / "unguarded"
    fake = fake_anthropic([[bash(f"echo unguarded > {marker}", "toolu_s")]])
    result = await start_claude(fake, stopped, tmp_path, work_dir)
    assert result.returncode != 0
    assert "permissions__approve" in result.stderr
    assert "not found" in result.stderr
    assert not marker.exists()


async def test_two_tool_uses_in_one_turn_are_decided_independently(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    fake = fake_anthropic([[bash(f"echo 1 > {first}", "toolu_1"), bash(f"echo 2 > {second}", "toolu_2")]])
    async with server.api() as api:
        run = start_claude(fake, server, tmp_path, work_dir)
        one = await wait_for_pending(api, {"tool_use_id": "toolu_1"}, within=60)
        await api.post(f"/api/requests/{one['id']}/decision", json={"decision": "allow"})
        two = await wait_for_pending(api, {"tool_use_id": "toolu_2"}, within=60)
        await api.post(f"/api/requests/{two['id']}/decision", json={"decision": "deny", "message": "only one"})
        result = await run
    assert result.returncode == 0, result.describe()
    assert one["id"] != two["id"]
    assert first.read_text() == "1\n"
    assert not second.exists()
    assert fake.tool_result("toolu_1").is_error is False
    assert "only one" in fake.tool_result("toolu_2").content


async def test_the_repositorys_mcp_servers_json_works_as_committed(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    """Claude Code expands ${SERVER_PORT:-8000} and ${APPROVAL_MCP_TOKEN} from its environment."""
    marker = tmp_path / "committed-config"
    fake = fake_anthropic([[bash(f"echo ok > {marker}", "toolu_c")]])
    async with server.api() as api:
        env = {"APPROVAL_MCP_TOKEN": MCP_TOKEN, "SERVER_PORT": str(server.port)}
        run = start_claude(fake, server, tmp_path, work_dir, REPO / "mcp-servers.json", env)
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_c"}, within=60)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        result = await run
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "ok\n"


async def test_claude_code_can_spawn_the_stdio_bridge(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    """The config printed by `approval-server mcp-config --stdio`, used as is."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "APPROVAL_DATA_DIR": str(server.data_dir),
        "SERVER_PORT": str(server.port),
        "APPROVAL_MCP_TOKEN": MCP_TOKEN,
    }
    command = [sys.executable, "-m", "approval_server", "mcp-config", "--stdio"]
    printed = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    config = tmp_path / "stdio.json"
    config.write_text(printed.stdout)
    assert json.loads(printed.stdout)["mcpServers"]["approval-server"]["type"] == "stdio"
    marker = tmp_path / "via-stdio"
    fake = fake_anthropic([[bash(f"echo stdio > {marker}", "toolu_io")]])
    async with server.api() as api:
        run = start_claude(fake, server, tmp_path, work_dir, config)
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_io"}, within=60)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        result = await run
    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "stdio\n"
