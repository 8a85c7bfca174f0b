"""Tests of the e2e harness itself: the fake Anthropic API and the CLI runner."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import FastMCP
from fastmcp.tools import Tool, ToolResult
from mcp.types import TextContent
from pydantic import PrivateAttr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.e2e.claude_cli import (
    DEFAULT_PERMISSION_TOOL,
    run_claude,
    run_claude_async,
    run_pids,
    serve_asgi,
    write_mcp_config,
)
from tests.e2e.fake_anthropic import Block, FakeAnthropic, text, tool_use

MakeFake = Callable[..., FakeAnthropic]


def test_fake_records_and_404s_unknown_paths(fake_anthropic: MakeFake) -> None:
    fake = fake_anthropic([[text("hello")]])
    with httpx.Client(base_url=fake.base_url) as client:
        missing = client.post("/v1/messages/count_tokens", json={"messages": []})
        answer = client.post("/v1/messages", json={"model": "m", "messages": []})
    assert missing.status_code == 404
    assert missing.json()["type"] == "error"
    assert answer.status_code == 200
    assert answer.json()["content"] == [{"type": "text", "text": "hello"}]
    assert [r.path for r in fake.unexpected_requests] == ["/v1/messages/count_tokens"]
    assert len(fake.messages_requests) == 1


@pytest.mark.usefixtures("require_claude")
def test_text_only_turn(fake_anthropic: MakeFake, work_dir: Path, run_dir: Path) -> None:
    fake = fake_anthropic([[text("Hello from the fake model.")]])

    result = run_claude(
        "say hello",
        base_url=fake.base_url,
        cwd=work_dir,
        permission_tool=None,
        run_dir=run_dir,
    )

    assert result.returncode == 0, result.describe()
    assert result.result is not None, result.describe()
    assert result.result["subtype"] == "success"
    assert result.result["result"] == "Hello from the fake model."
    assert result.permission_denials == []
    assert len(fake.messages_requests) == 1
    assert fake.unexpected_requests == []
    assert fake.messages_requests[0].body["stream"] is True


@pytest.mark.usefixtures("require_claude")
def test_timeout_kills_the_process_group(fake_anthropic: MakeFake, work_dir: Path, run_dir: Path) -> None:
    fake = fake_anthropic()

    result = run_claude(
        "hi",
        base_url=fake.base_url,
        cwd=work_dir,
        permission_tool=None,
        run_dir=run_dir,
        timeout=0.2,
    )

    assert result.timed_out
    assert result.returncode == -signal.SIGKILL


class StubApprove(Tool):
    """A stand-in permission tool: records each call, answers from a queue."""

    _calls: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _answers: asyncio.Queue[dict[str, Any]] = PrivateAttr(default_factory=asyncio.Queue)
    _called: asyncio.Event = PrivateAttr(default_factory=asyncio.Event)

    @classmethod
    def create(cls) -> StubApprove:
        schema = {
            "type": "object",
            "properties": {
                "tool_name": {"type": "string"},
                "input": {"type": "object"},
                "tool_use_id": {"type": "string"},
            },
            "required": ["tool_name", "input"],
        }
        return cls(name="permissions__approve", description="Approve.", parameters=schema)

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self._calls

    async def wait_called(self) -> None:
        """Return once the CLI has called the tool."""
        await self._called.wait()

    def answer(self, decision: dict[str, Any]) -> None:
        """Queue the JSON answer for the next (or the waiting) call."""
        self._answers.put_nowait(decision)

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        self._calls.append(arguments)
        self._called.set()
        decision = await self._answers.get()
        return ToolResult(content=[TextContent(type="text", text=json.dumps(decision))])


def approval_app(tool: StubApprove, seen_auth: list[str]) -> ASGIApp:
    """A FastMCP HTTP app serving ``tool`` at /mcp that records Authorization headers."""
    mcp = FastMCP("approval-server")
    mcp.add_tool(tool)
    inner = mcp.http_app(path="/mcp")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen_auth.append(Headers(scope=scope).get("authorization", ""))
        await inner(scope, receive, send)

    return app


def bash_script(command: str) -> list[list[Block]]:
    return [[text("On it."), tool_use("Bash", {"command": command, "description": "mark"})]]


@pytest.mark.usefixtures("require_claude")
@pytest.mark.asyncio
async def test_permission_tool_deny_reaches_model(
    fake_anthropic: MakeFake, work_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "outside" / "marker"
    marker.parent.mkdir()
    command = f"echo hi > {marker}"
    fake = fake_anthropic(bash_script(command))
    tool = StubApprove.create()
    tool.answer({"behavior": "deny", "message": "nope"})
    seen_auth: list[str] = []

    async with serve_asgi(approval_app(tool, seen_auth)) as url:
        config = write_mcp_config(tmp_path / "mcp.json", f"{url}/mcp", token="test-token", timeout_ms=60_000)
        result = await run_claude_async(
            "write the marker",
            base_url=fake.base_url,
            cwd=work_dir,
            mcp_config=config,
            permission_tool=DEFAULT_PERMISSION_TOOL,
            run_dir=run_dir,
        )

    assert result.returncode == 0, result.describe()
    assert not marker.exists()
    assert result.init is not None
    servers = {s["name"]: s["status"] for s in result.init["mcp_servers"]}
    assert servers == {"approval-server": "connected"}
    assert seen_auth
    assert set(seen_auth) == {"Bearer test-token"}
    assert tool.calls == [
        {
            "tool_name": "Bash",
            "input": {"command": command, "description": "mark"},
            "tool_use_id": "toolu_e2e_0_0",
        }
    ]
    denied = fake.tool_result("toolu_e2e_0_0")
    assert (denied.content, denied.is_error) == ("nope", True)
    assert [d["tool_use_id"] for d in result.permission_denials] == ["toolu_e2e_0_0"]
    assert len(fake.messages_requests) == 2
    assert fake.unexpected_requests == []
    assert (result.run_dir / "debug.log").is_file()


@pytest.mark.usefixtures("require_claude")
@pytest.mark.asyncio
async def test_decision_made_while_claude_waits(
    fake_anthropic: MakeFake, work_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    """The shape of a real e2e test: claude blocks on the tool until the test decides."""
    marker = tmp_path / "outside" / "marker"
    marker.parent.mkdir()
    fake = fake_anthropic(bash_script(f"echo hi > {marker}"))
    tool = StubApprove.create()

    async with serve_asgi(approval_app(tool, [])) as url:
        config = write_mcp_config(tmp_path / "mcp.json", f"{url}/mcp", timeout_ms=60_000)
        run = asyncio.create_task(
            run_claude_async(
                "go",
                base_url=fake.base_url,
                cwd=work_dir,
                mcp_config=config,
                run_dir=run_dir,
            )
        )
        called = asyncio.create_task(tool.wait_called())
        await asyncio.wait({run, called}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert called.done(), (await run).describe()
        assert not marker.exists()
        tool.answer({"behavior": "allow", "updatedInput": tool.calls[0]["input"]})
        result = await run

    assert result.returncode == 0, result.describe()
    assert marker.read_text() == "hi\n"
    ran = fake.tool_result("toolu_e2e_0_0")
    assert (ran.content, ran.is_error) == ("(Bash completed with no output)", False)
    assert result.permission_denials == []


@pytest.mark.usefixtures("require_claude")
async def test_cancel_kills_bash_children_outside_the_group(
    fake_anthropic: MakeFake, work_dir: Path, run_dir: Path
) -> None:
    """Bash commands run in their own session; cancelling must still kill them."""
    sleeper = 'python3 -c "import time; time.sleep(120)"'
    run_id = f"cancel-{os.getpid()}-{time.monotonic_ns()}"
    fake = fake_anthropic([[tool_use("Bash", {"command": sleeper, "description": "wait"})]])
    run = asyncio.create_task(
        run_claude_async(
            "wait",
            base_url=fake.base_url,
            cwd=work_dir,
            permission_tool=None,
            extra_args=["--allowedTools", "Bash"],
            run_dir=run_dir,
            run_id=run_id,
        )
    )
    children: list[int] = []
    async with asyncio.timeout(30):
        while not children:
            await asyncio.sleep(0.1)
            children = [p for p in run_pids(run_id) if b"time.sleep(120)" in _cmdline(p)]
    assert os.getsid(children[0]) != os.getsid(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert run_pids(run_id) == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
