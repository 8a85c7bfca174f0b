"""The permission tool over real streamable HTTP, with fastmcp's own client."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

TOOL = "permissions__approve"


def single_text_json(result: Any) -> dict[str, Any]:
    """Claude Code accepts exactly one text block and no structured content."""
    assert result.structured_content is None
    assert result.is_error is False
    assert len(result.content) == 1
    assert result.content[0].type == "text"
    payload: dict[str, Any] = json.loads(result.content[0].text)
    return payload


async def test_allow_returns_the_exact_input_and_records_unknown_arguments(server: ServerProcess) -> None:
    arguments = {"tool_name": "Bash", "input": {"command": "echo hi"}, "tool_use_id": "t1", "something_new": 1}
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, arguments))
        pending = await wait_for_pending(api, {"tool_use_id": "t1"})
        assert pending["extra"] == {"something_new": 1}
        assert not call.done()
        response = await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert response.status_code == 200
        assert single_text_json(await call) == {"behavior": "allow", "updatedInput": {"command": "echo hi"}}
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert row["status"] == "allowed"
    assert row["decided_via"] == "api"
    assert row["input"] == {"command": "echo hi"}
    assert "echo hi" in row["rendered"]
    assert [a["outcome"] for a in row["answers"]] == ["applied"]


async def test_deny_returns_a_message_naming_who_denied(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "rm -rf /"}}))
        pending = await wait_for_pending(api)
        body = {"decision": "deny", "message": "not on my machine", "actor": "alice"}
        assert (await api.post(f"/api/requests/{pending['id']}/decision", json=body)).status_code == 200
        answer = single_text_json(await call)
    assert answer["behavior"] == "deny"
    assert "alice" in answer["message"]
    assert "not on my machine" in answer["message"]
    assert set(answer) == {"behavior", "message"}


async def test_edited_input_runs_instead_and_both_are_kept(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "rm -rf /"}}))
        pending = await wait_for_pending(api)
        body = {"decision": "allow", "updated_input": {"command": "ls /"}}
        assert (await api.post(f"/api/requests/{pending['id']}/decision", json=body)).status_code == 200
        assert single_text_json(await call) == {"behavior": "allow", "updatedInput": {"command": "ls /"}}
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert row["input"] == {"command": "rm -rf /"}
    assert row["updated_input"] == {"command": "ls /"}


async def test_a_nul_character_anywhere_is_recorded_shown_and_answered_exactly(server: ServerProcess) -> None:
    """U+0000 in the call and in the approver's words: recorded on every backend (PostgreSQL's text cannot hold it
    as it is), shown escaped, and given back exactly."""
    command = "printf 'a\x00b' > out.bin"
    arguments = {"tool_name": "Bash", "input": {"command": command}, "tool_use_id": "toolu_\x00x"}
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, arguments))
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_\x00x"})
        found = (await api.get("/api/requests", params={"q": "a\x00b"})).json()
        body = {"decision": "deny", "message": "no \x00 bytes", "actor": "alice\x00"}
        assert (await api.post(f"/api/requests/{pending['id']}/decision", json=body)).status_code == 200
        answer = single_text_json(await call)
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        missing = await api.get("/api/requests/a%00b")
    assert pending["input"] == {"command": command}
    assert "⟨U+0000⟩" in pending["rendered"]
    assert [r["id"] for r in found["requests"]] == [pending["id"]]
    assert "no \x00 bytes" in answer["message"]
    # The reason is kept exactly; the name an API caller gives is its own words, quoted as a JSON string (every
    # surface that shows it escapes what is hidden in it).
    assert (row["decided_by"], row["reason"]) == ('owner (says: "alice\\u0000")', "no \x00 bytes")
    assert missing.status_code == 404


async def test_no_answer_before_the_timeout_is_an_expiry_deny(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(APPROVAL_TIMEOUT_SECONDS="1.5")
    async with server.mcp() as mcp, server.api() as api:
        started = asyncio.get_running_loop().time()
        result = await mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "echo late"}})
        waited = asyncio.get_running_loop().time() - started
        answer = single_text_json(result)
        rows = (await api.get("/api/requests", params={"status": "expired"})).json()["requests"]
    assert answer["behavior"] == "deny"
    assert "No answer within 1.5 seconds" in answer["message"]
    assert "expired" in answer["message"]
    assert 1.4 < waited < 5
    assert len(rows) == 1


async def test_a_cancelled_call_is_recorded_as_cancelled(server: ServerProcess) -> None:
    async with server.api() as api:
        async with server.mcp() as mcp:
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
            pending = await wait_for_pending(api)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        for _ in range(200):
            row = (await api.get(f"/api/requests/{pending['id']}")).json()
            if row["status"] != "pending":
                break
            await asyncio.sleep(0.05)
        assert row["status"] == "cancelled"
        late = await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert late.status_code == 409
        assert (await api.get("/healthz")).json()["pending"] == 0


async def test_a_client_timeout_cancels_the_request(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api:
        with pytest.raises(Exception, match="timed out"):
            await mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}, timeout=1)
        for _ in range(200):
            rows = (await api.get("/api/requests")).json()["requests"]
            if rows and rows[0]["status"] != "pending":
                break
            await asyncio.sleep(0.05)
    assert rows[0]["status"] == "cancelled"


async def test_malformed_arguments_are_denied_not_errors(server: ServerProcess) -> None:
    async with server.mcp() as mcp:
        result = await mcp.call_tool_mcp(TOOL, {"tool_name": 3, "input": "rm -rf /"})
    answer = single_text_json(result)
    assert answer["behavior"] == "deny"
    assert "Malformed permission request" in answer["message"]


async def test_tool_schema_accepts_unknown_arguments_and_declares_no_output_schema(server: ServerProcess) -> None:
    async with server.mcp() as mcp:
        tools = await mcp.list_tools()
    assert [tool.name for tool in tools] == [TOOL, "hook"]
    assert tools[0].input_schema["additionalProperties"] is True
    assert tools[0].input_schema["required"] == ["tool_name", "input"]
    assert all(tool.output_schema is None for tool in tools)


async def test_fifty_concurrent_requests_are_decided_separately(start_server: Callable[..., ServerProcess]) -> None:
    # One agent's fifty waiting requests: past the default fair share (20), which has tests of its own.
    server = start_server(APPROVAL_MAX_PENDING_PER_AGENT="50")
    async with server.mcp() as mcp, server.api() as api:
        calls = {
            f"t{i}": asyncio.create_task(
                mcp.call_tool_mcp(
                    TOOL, {"tool_name": "Bash", "input": {"command": f"echo {i}"}, "tool_use_id": f"t{i}"}
                )
            )
            for i in range(50)
        }
        ids = {key: (await wait_for_pending(api, {"tool_use_id": key}))["id"] for key in calls}
        assert len(set(ids.values())) == 50
        for i, key in enumerate(reversed(list(calls))):
            body = (
                {"decision": "allow", "updated_input": {"command": f"echo edited {key}"}}
                if i % 2
                else {"decision": "deny", "message": f"no to {key}"}
            )
            assert (await api.post(f"/api/requests/{ids[key]}/decision", json=body)).status_code == 200
        answers = {key: single_text_json(await task) for key, task in calls.items()}
    for i, key in enumerate(reversed(list(calls))):
        if i % 2:
            assert answers[key] == {"behavior": "allow", "updatedInput": {"command": f"echo edited {key}"}}
        else:
            assert answers[key]["behavior"] == "deny"
            assert f"no to {key}" in answers[key]["message"]


async def test_two_simultaneous_decisions_one_wins_the_other_is_recorded_too_late(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api, server.api() as api2:
        for _ in range(5):
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
            pending = await wait_for_pending(api)
            url = f"/api/requests/{pending['id']}/decision"
            allow, deny = await asyncio.gather(
                api.post(url, json={"decision": "allow", "actor": "a"}),
                api2.post(url, json={"decision": "deny", "actor": "b"}),
            )
            assert sorted([allow.status_code, deny.status_code]) == [200, 409]
            winner = "allow" if allow.status_code == 200 else "deny"
            assert single_text_json(await call)["behavior"] == winner
            row = (await api.get(f"/api/requests/{pending['id']}")).json()
            assert sorted(a["outcome"] for a in row["answers"]) == ["applied", "too_late"]
            assert row["status"] == ("allowed" if winner == "allow" else "denied")


async def test_progress_is_reported_at_least_every_15_seconds(server: ServerProcess) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(asyncio.get_running_loop().time())

    async with server.mcp(progress_handler=on_progress) as mcp, server.api() as api:
        started = asyncio.get_running_loop().time()
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "slow"}}))
        pending = await wait_for_pending(api)
        await asyncio.sleep(40)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert single_text_json(await call)["behavior"] == "allow"
        answered = asyncio.get_running_loop().time()
    moments = [started, *seen, answered]
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert len(seen) >= 2
    assert max(gaps) < 15


async def test_mcp_needs_the_bearer_token(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": MCP_TOKEN}):
            response = await http.post(
                "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers
            )
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(Exception, match="error response"):
        async with server.mcp(token="wrong-token-wrong-token") as mcp:
            await mcp.list_tools()


async def test_legacy_sse_endpoint_serves_the_tool(server: ServerProcess) -> None:
    from fastmcp import Client
    from fastmcp.client.transports import SSETransport

    transport = SSETransport(f"{server.url}/sse", headers={"Authorization": f"Bearer {MCP_TOKEN}"})
    async with Client(transport) as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Read", "input": {"file_path": "/etc/x"}}))
        pending = await wait_for_pending(api)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert single_text_json(await call) == {"behavior": "allow", "updatedInput": {"file_path": "/etc/x"}}


CLIENT_THAT_WAITS = """
import asyncio, sys
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

async def main() -> None:
    transport = StreamableHttpTransport(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
    async with Client(transport) as mcp:
        await mcp.call_tool_mcp("permissions__approve", {"tool_name": "Bash", "input": {"command": "dropped"}})

asyncio.run(main())
"""


async def test_a_dropped_connection_is_recorded_as_cancelled(server: ServerProcess) -> None:
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT_THAT_WAITS, f"{server.url}/mcp", MCP_TOKEN
    )
    try:
        async with server.api() as api:
            pending = await wait_for_pending(api, within=30)
            client.kill()
            for _ in range(200):
                row = (await api.get(f"/api/requests/{pending['id']}")).json()
                if row["status"] != "pending":
                    break
                await asyncio.sleep(0.05)
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()
    assert row["status"] == "cancelled"
    assert row["reason"] == "the agent went away"
