"""The policy file through the real server: rules decide at once, every automatic decision is audited."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending
from tests.test_mcp import TOOL, single_text_json

POLICY = """\
[permissions]
allow = ["Bash(npm test)", "Bash(git status:*)"]
deny = ["Bash(rm:*)"]

[permissions.messages]
"Bash(rm:*)" = "Move files to ./trash instead."
"""


def write_policy(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "policy.toml").write_text(text)


async def test_rules_allow_and_deny_at_once_and_are_audited(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    write_policy(tmp_path / "data", POLICY)
    server = start_server()
    async with server.mcp() as mcp, server.api() as api:
        allowed = single_text_json(
            await asyncio.wait_for(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "npm test"}}), 5)
        )
        denied = single_text_json(
            await asyncio.wait_for(
                mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "git status && rm -rf build"}}), 5
            )
        )
        waiting = asyncio.create_task(
            mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "git status; curl x | sh"}})
        )
        rows = (await api.get("/api/requests")).json()["requests"]
        for _ in range(200):
            rows = (await api.get("/api/requests")).json()["requests"]
            if len(rows) == 3:
                break
            await asyncio.sleep(0.02)
        waiting.cancel()
    assert allowed == {"behavior": "allow", "updatedInput": {"command": "npm test"}}
    assert denied["behavior"] == "deny"
    assert denied["message"].startswith("Move files to ./trash instead (policy rule Bash(rm:*), policy.toml:3)")
    by_command = {row["input"]["command"]: row for row in rows}
    assert by_command["npm test"]["status"] == "allowed"
    assert by_command["npm test"]["decided_via"] == "policy"
    assert by_command["npm test"]["decided_by"] == "policy.toml:2 allow Bash(npm test)"
    assert by_command["git status && rm -rf build"]["decided_by"] == "policy.toml:3 deny Bash(rm:*)"
    assert by_command["git status; curl x | sh"]["status"] == "pending"  # a prefix rule never allows a compound


def serve_once(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`approval-server serve` started in `folder`, for settings that must stop it before it serves."""
    return subprocess.run(
        [sys.executable, "-m", "approval_server", "serve", "--port", "1"],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "APPROVAL_DATA_DIR": str(folder / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_policy_file_stops_the_server_naming_the_line(tmp_path: Path) -> None:
    write_policy(tmp_path, '[permissions]\nallow = [\n  "Bash(npm test)",\n  "Bash(git status:*",\n]\n')
    result = serve_once(tmp_path)
    assert result.returncode == 2
    assert "line 4" in result.stderr
    assert "Bash(git status:*" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_policy_file_named_in_the_settings_is_an_error(tmp_path: Path) -> None:
    result = serve_once(tmp_path, POLICY_FILE=str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml does not exist" in result.stderr


def agent_client(server: ServerProcess, headers: dict[str, str], query: str = "") -> Client[StreamableHttpTransport]:
    transport = StreamableHttpTransport(
        f"{server.url}/mcp{query}", headers={"Authorization": f"Bearer {MCP_TOKEN}", **headers}
    )
    return Client(transport)


AGENT_POLICY = """\
[permissions]
allow = ["Bash(git status)"]

[agent."ci-nightly".permissions]
allow = ["Bash(npm ci)"]
"""


async def test_the_agent_is_recorded_and_its_own_rules_apply(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    write_policy(tmp_path / "data", AGENT_POLICY)
    server = start_server()
    npm_ci = {"tool_name": "Bash", "input": {"command": "npm ci"}}
    async with agent_client(server, {"X-Agent-Name": "ci-nightly", "X-Agent-Cwd": "/srv/app"}) as nightly:
        allowed = single_text_json(await asyncio.wait_for(nightly.call_tool_mcp(TOOL, npm_ci), 5))
    async with agent_client(server, {}, "?agent=laptop") as laptop, server.api() as api:
        waiting = asyncio.create_task(laptop.call_tool_mcp(TOOL, npm_ci))
        pending = await wait_for_pending(api, {"agent": "laptop"})
        waiting.cancel()
        rows = (await api.get("/api/requests")).json()["requests"]
    assert allowed["behavior"] == "allow"
    nightly_row = next(row for row in rows if row["agent"] == "ci-nightly")
    assert nightly_row["cwd"] == "/srv/app"
    assert nightly_row["decided_by"] == 'policy.toml:5 agent "ci-nightly" allow Bash(npm ci)'
    assert pending["status"] == "pending"  # another agent does not get ci-nightly's rules


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"X-Agent-Name": "ci nightly; rm"}, "agent name"),
        ({"X-Agent-Name": "a" * 65}, "agent name"),
        ({"X-Agent-Cwd": "relative/dir"}, "absolute path"),
    ],
)
async def test_a_bad_agent_identity_is_denied(server: ServerProcess, headers: dict[str, str], problem: str) -> None:
    async with agent_client(server, headers) as client:
        result = single_text_json(
            await asyncio.wait_for(client.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "ls"}}), 5)
        )
    assert result["behavior"] == "deny"
    assert problem in result["message"]


async def test_reads_inside_the_agents_directory_run_by_default(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    async with agent_client(server, {"X-Agent-Cwd": "/srv/app"}) as client, server.api() as api:
        inside = single_text_json(
            await asyncio.wait_for(
                client.call_tool_mcp(TOOL, {"tool_name": "Read", "input": {"file_path": "/srv/app/README.md"}}), 5
            )
        )
        outside = asyncio.create_task(
            client.call_tool_mcp(TOOL, {"tool_name": "Read", "input": {"file_path": "/etc/shadow"}})
        )
        pending = await wait_for_pending(api, {"tool_name": "Read"})
        outside.cancel()
    assert inside == {"behavior": "allow", "updatedInput": {"file_path": "/srv/app/README.md"}}
    assert pending["input"] == {"file_path": "/etc/shadow"}
