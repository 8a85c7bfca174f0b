"""Nothing is lost on a restart: a request pending when the server died is `abandoned`, history intact."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, wait_for_pending, wait_for_status

TOOL = "permissions__approve"


async def test_sigkill_during_a_wait_leaves_an_abandoned_row(tmp_path: Path, database_url: str) -> None:
    lease = {"APPROVAL_LEASE_SECONDS": "1"}  # PostgreSQL: another server takes a dead one's requests over after it
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, env=lease)
    server.start()
    try:
        async with server.api() as api:
            async with server.mcp() as mcp:
                done = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "one"}}))
                first = await wait_for_pending(api)
                await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "allow", "message": "fine"})
                await done
            pending: dict[str, Any] = {}

            async def wait_while_the_server_dies() -> None:
                async with server.mcp() as mcp:
                    call = mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "two"}})
                    waiting = asyncio.create_task(call)
                    pending.update(await wait_for_pending(api))
                    server.kill()
                    await asyncio.wait_for(waiting, 30)

            # The transport's own error, from the call or from closing the session on a dead server.
            with pytest.raises(Exception):  # noqa: B017, PT011
                await wait_while_the_server_dies()
            second = pending
    finally:
        server.stop()

    restarted = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, port=server.port, env=lease)
    restarted.start()
    try:
        async with restarted.api() as api:
            # At once on SQLite; on PostgreSQL once the dead server's lease ran out.
            await wait_for_status(api, second["id"], "abandoned")
            rows = {row["id"]: row for row in (await api.get("/api/requests")).json()["requests"]}
            first_row = (await api.get(f"/api/requests/{first['id']}")).json()
    finally:
        restarted.stop()
    assert set(rows) == {first["id"], second["id"]}
    assert rows[second["id"]]["status"] == "abandoned"
    assert rows[second["id"]]["input"] == {"command": "two"}
    assert first_row["status"] == "allowed"
    assert first_row["reason"] == "fine"
    assert [a["outcome"] for a in first_row["answers"]] == ["applied"]
    assert "abandoned" in restarted.log()


async def test_a_graceful_stop_denies_waiting_requests_with_a_reason(server: ServerProcess) -> None:
    async with server.api() as api, server.mcp() as mcp:
        waiting = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
        pending = await wait_for_pending(api)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        result = await asyncio.wait_for(waiting, 10)
        await asyncio.to_thread(server.process.wait, 10)
    answer = json.loads(result.content[0].text)
    assert answer["behavior"] == "deny"
    assert answer["message"].startswith("approval-server is shutting down")
    server.start()
    async with server.api() as api:
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert row["status"] == "denied"
    assert row["decided_by"] == "approval-server"
