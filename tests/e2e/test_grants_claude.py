"""End to end: "Allow for session" with the real `claude` CLI. The approver answers the first of two identical
Bash calls; the second runs with no human asked, whether Claude Code remembers the rule itself (the permission tool,
PermissionRequest hooks) or the server does (PreToolUse hooks see every call)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.claude_cli import ClaudeResult, run_claude_async, write_mcp_config
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

pytestmark = pytest.mark.usefixtures("require_claude")

COMMAND = "touch marker"
ASKED_AGAIN = timedelta(seconds=3)


def twice(fake_anthropic: Any) -> FakeAnthropic:
    """A model that runs the same command in two turns."""
    first = tool_use("Bash", {"command": COMMAND, "description": "make the marker"}, id="toolu_first")
    second = tool_use("Bash", {"command": COMMAND, "description": "make the marker again"}, id="toolu_second")
    fake: FakeAnthropic = fake_anthropic([[first], [second]])
    return fake


async def approve_first_for_session(api: httpx.AsyncClient) -> dict[str, Any]:
    """The approver: "Allow for session" on the first request. Any later request is denied, so a second ask shows."""
    first = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
    body = {"decision": "allow", "remember": "session", "actor": "alice"}
    assert (await api.post(f"/api/requests/{first['id']}/decision", json=body)).status_code == 200
    return first


async def deny_any_other(api: httpx.AsyncClient, first_id: str) -> None:
    """Deny any other request that waits for a human. A request is pending from the moment it is recorded, before the
    server has looked for a grant that allows it; one still pending after ASKED_AGAIN is one the server asked again."""
    while True:
        now = datetime.now(UTC)
        for row in (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]:
            waited = now - datetime.fromisoformat(row["created_at"])
            if row["id"] != first_id and waited >= ASKED_AGAIN:
                await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "deny", "actor": "alice"})
        await asyncio.sleep(0.2)


async def run_with_approver(server: ServerProcess, run: asyncio.Task[ClaudeResult]) -> tuple[ClaudeResult, list[Any]]:
    async with server.api() as api:
        first = await approve_first_for_session(api)
        watcher = asyncio.create_task(deny_any_other(api, first["id"]))
        try:
            result = await run
        finally:
            watcher.cancel()
        rows = (await api.get("/api/requests")).json()["requests"]
    return result, sorted(rows, key=lambda row: row["created_at"])


def assert_both_ran(fake: FakeAnthropic, result: ClaudeResult, work_dir: Path) -> None:
    assert result.returncode == 0, result.describe()
    assert (work_dir / "marker").exists()
    assert fake.tool_result("toolu_first").is_error is False
    assert fake.tool_result("toolu_second").is_error is False, fake.tool_result("toolu_second").content


async def test_the_permission_tool_answer_makes_claude_code_stop_asking(
    server: ServerProcess, fake_anthropic: Any, tmp_path: Path, work_dir: Path
) -> None:
    fake = twice(fake_anthropic)
    mcp = write_mcp_config(tmp_path / "mcp.json", f"{server.url}/mcp", token=MCP_TOKEN, timeout_ms=330_000)
    run = asyncio.create_task(
        run_claude_async(
            "make the marker twice",
            base_url=fake.base_url,
            cwd=work_dir,
            mcp_config=mcp,
            run_dir=tmp_path / "run",
            timeout=120,
        )
    )
    result, rows = await run_with_approver(server, run)
    assert_both_ran(fake, result, work_dir)
    # Claude Code added `Bash(touch marker)` to its session from `updatedPermissions`: the second call never came.
    assert [(row["tool_use_id"], row["decided_by"], row["remembered"]) for row in rows] == [
        ("toolu_first", 'owner (says: "alice")', "session")
    ]


def hook_settings(server: ServerProcess, event: str) -> str:
    command = f"{sys.executable} -I -m approval_server hook --url {server.url}"
    entry = {"type": "command", "command": command, "timeout": 360, "onFailure": "block"}
    return json.dumps({"hooks": {event: [{"matcher": "Bash", "hooks": [entry]}]}})


def run_with_hook(fake: FakeAnthropic, server: ServerProcess, tmp_path: Path, work_dir: Path, event: str) -> Any:
    return asyncio.create_task(
        run_claude_async(
            "make the marker twice",
            base_url=fake.base_url,
            cwd=work_dir,
            mcp_config=None,
            permission_tool=None,
            extra_args=["--settings", hook_settings(server, event)],
            extra_env={"APPROVAL_MCP_TOKEN": MCP_TOKEN, "PWD": str(work_dir)},
            run_dir=tmp_path / "run",
            timeout=120,
        )
    )


async def test_a_pretooluse_hook_session_is_remembered_by_the_server(
    server: ServerProcess, fake_anthropic: Any, tmp_path: Path, work_dir: Path
) -> None:
    fake = twice(fake_anthropic)
    result, rows = await run_with_approver(server, run_with_hook(fake, server, tmp_path, work_dir, "PreToolUse"))
    assert_both_ran(fake, result, work_dir)
    first, second = rows  # a PreToolUse hook sees every call: the server answered the second from its grant
    assert (first["decided_by"], first["remembered"]) == ('owner (says: "alice")', "session")
    assert second["tool_use_id"] == "toolu_second"
    assert second["decided_via"] == "grant"
    assert second["decided_by"].endswith("allow Bash(touch marker)")
    assert second["session"] == first["session"]


async def test_a_permission_request_hook_answer_makes_claude_code_stop_asking(
    server: ServerProcess, fake_anthropic: Any, tmp_path: Path, work_dir: Path
) -> None:
    fake = twice(fake_anthropic)
    result, rows = await run_with_approver(server, run_with_hook(fake, server, tmp_path, work_dir, "PermissionRequest"))
    assert_both_ran(fake, result, work_dir)
    assert [(row["decided_by"], row["remembered"]) for row in rows] == [('owner (says: "alice")', "session")]
