"""End to end: a Claude Agent SDK application whose `can_use_tool` is `approval_server.sdk.can_use_tool`, driving
the real pinned `claude` binary against the fake Anthropic API: the same broker, policy, grants and audit decide."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage
from claude_agent_sdk import __version__ as sdk_version

from approval_server.sdk import can_use_tool
from tests.e2e.claude_cli import CLAUDE_BIN
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import MCP_TOKEN, ServerProcess, free_port, wait_for_pending

MakeFake = Callable[..., FakeAnthropic]
pytestmark = pytest.mark.usefixtures("require_claude")


async def run_app(fake: FakeAnthropic, url: str, work_dir: Path, home: Path, token: str = MCP_TOKEN) -> ResultMessage:
    """The application: one prompt, every permission question to approval-server; its final result."""
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    options = ClaudeAgentOptions(
        cli_path=CLAUDE_BIN,
        cwd=work_dir,
        setting_sources=[],
        can_use_tool=can_use_tool(url, token, agent="release-bot", cwd=str(work_dir), timeout=60),
        env={
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": fake.base_url,
            "ANTHROPIC_API_KEY": "sk-dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
    )
    result: ResultMessage | None = None
    async with asyncio.timeout(120), ClaudeSDKClient(options) as client:
        await client.query("do the task")
        async for message in client.receive_response():
            if isinstance(message, ResultMessage):
                result = message
    assert result is not None
    return result


async def answered(
    server: ServerProcess, fake: FakeAnthropic, work_dir: Path, home: Path, bodies: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run the application and answer its questions in turn with `bodies`; the requests as they were pending."""
    app = asyncio.create_task(run_app(fake, server.url, work_dir, home))
    seen: list[dict[str, Any]] = []
    async with server.api() as api:
        for body in bodies:
            pending = await wait_for_pending(api, within=60)
            while pending["id"] in {row["id"] for row in seen}:
                pending = await wait_for_pending(api, within=60)
            seen.append(pending)
            response = await api.post(f"/api/requests/{pending['id']}/decision", json=body)
            assert response.status_code == 200, response.text
    await app
    return seen


async def test_an_approved_call_runs_and_a_denied_one_does_not(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    ran, refused = tmp_path / "ran", tmp_path / "refused"
    fake = fake_anthropic(
        [
            [tool_use("Bash", {"command": f"touch {ran}", "description": "make a file"}, id="toolu_yes")],
            [tool_use("Bash", {"command": f"touch {refused}", "description": "another"}, id="toolu_no")],
        ]
    )
    allow, deny = {"decision": "allow", "actor": "alice"}, {"decision": "deny", "actor": "alice", "message": "no"}
    first, second = await answered(server, fake, work_dir, tmp_path / "home", [allow, deny])
    assert ran.exists()
    assert not refused.exists()
    assert fake.tool_result("toolu_yes").is_error is False
    assert fake.tool_result("toolu_no").is_error is True
    assert "Denied by" in fake.tool_result("toolu_no").content
    assert (first["agent_kind"], first["agent_version"], first["agent"]) == (
        "claude-agent-sdk",
        sdk_version,
        "release-bot",
    )
    assert (first["tool_use_id"], first["cwd"], first["editable"]) == ("toolu_yes", str(work_dir), True)
    assert first["session"] == second["session"]  # one callback, one session


async def test_an_edited_input_is_what_runs_and_an_allow_for_the_session_asks_once(
    server: ServerProcess, fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    asked, edited, log = tmp_path / "asked", tmp_path / "edited", work_dir / "log"
    again = {"command": "touch log", "description": "make the log"}  # in the working directory, as Claude Code asks
    fake = fake_anthropic(
        [
            [tool_use("Bash", {"command": f"touch {asked}", "description": "make a file"}, id="toolu_e")],
            [tool_use("Bash", again, id="toolu_1")],
            [tool_use("Bash", again, id="toolu_2")],
        ]
    )
    edit = {"decision": "allow", "actor": "alice", "updated_input": {"command": f"touch {edited}"}}
    session = {"decision": "allow", "actor": "alice", "remember": "session"}
    await answered(server, fake, work_dir, tmp_path / "home", [edit, session])
    assert (asked.exists(), edited.exists()) == (False, True)
    assert log.exists()
    async with server.api() as api:
        rows = (await api.get("/api/requests")).json()["requests"]
    assert len(rows) == 2  # the SDK added the rule to its session: the repeat never came
    assert fake.tool_result("toolu_2").is_error is False


async def test_the_policy_decides_with_no_human_and_a_stopped_server_denies(
    start_server: Callable[..., ServerProcess], fake_anthropic: MakeFake, tmp_path: Path, work_dir: Path
) -> None:
    allowed, denied, unreached = tmp_path / "allowed", tmp_path / "denied", tmp_path / "unreached"
    data = tmp_path / "data"
    data.mkdir()
    (data / "policy.toml").write_text(
        f'[agent."release-bot".permissions]\nallow = ["Bash(touch {allowed})"]\ndeny = ["Bash(touch {denied})"]\n'
    )
    server = start_server()
    fake = fake_anthropic(
        [
            [tool_use("Bash", {"command": f"touch {allowed}", "description": "a"}, id="toolu_a")],
            [tool_use("Bash", {"command": f"touch {denied}", "description": "b"}, id="toolu_d")],
        ]
    )
    await run_app(fake, server.url, work_dir, tmp_path / "home")
    assert (allowed.exists(), denied.exists()) == (True, False)
    assert "policy rule" in fake.tool_result("toolu_d").content
    gone = fake_anthropic([[tool_use("Bash", {"command": f"touch {unreached}", "description": "c"}, id="toolu_g")]])
    await run_app(gone, f"http://127.0.0.1:{free_port()}", work_dir, tmp_path / "home")
    assert not unreached.exists()
    assert "approval-server could not decide" in gone.tool_result("toolu_g").content
