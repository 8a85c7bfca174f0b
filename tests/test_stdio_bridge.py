"""`approval-server stdio` forwards to the running server, so any channel's answer reaches the waiting call."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

TOOL = "permissions__approve"


def bridge(server: ServerProcess, token: str = MCP_TOKEN) -> Client[StdioTransport]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(server.data_dir),
        "APPROVAL_DATA_DIR": str(server.data_dir),
        "APPROVAL_MCP_TOKEN": token,
    }
    args = ["-I", "-m", "approval_server", "stdio", "--url", server.url]  # as `mcp-config --stdio` prints it
    transport = StdioTransport(command=sys.executable, args=args, env=env)
    return Client(transport)


async def test_the_bridge_forwards_calls_and_answers(server: ServerProcess) -> None:
    progress: list[Any] = []

    async def on_progress(*args: Any) -> None:
        progress.append(args)

    async with bridge(server) as mcp, server.api() as api:
        tools = await mcp.list_tools()
        assert [tool.name for tool in tools] == [TOOL, "hook"]
        arguments = {"tool_name": "Bash", "input": {"command": "echo bridged"}, "tool_use_id": "b1"}
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, arguments))
        pending = await wait_for_pending(api, {"tool_use_id": "b1"}, within=30)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        result = await call
    assert result.structured_content is None
    assert len(result.content) == 1
    assert json.loads(result.content[0].text) == {"behavior": "allow", "updatedInput": {"command": "echo bridged"}}


async def test_the_bridge_with_a_wrong_token_serves_nothing(server: ServerProcess) -> None:
    async with bridge(server, token="wrong-token-wrong-token") as mcp:
        assert await mcp.list_tools() == []
        result = await mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}})
    assert result.is_error is True
    async with server.api() as api:
        assert (await api.get("/api/requests")).json()["requests"] == []
