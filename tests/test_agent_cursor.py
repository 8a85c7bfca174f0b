"""Cursor: its hook payloads become the common tool call and its answers are Cursor's; `connect cursor` merges a
fail-closed hook into ~/.cursor/hooks.json; the written hook, run as Cursor runs it, asks the server and blocks on
every failure.

Cursor's agent cannot be installed from a registry here, so the payloads are those Cursor documents
(cursor.com/docs/hooks, "Hooks", as of Cursor 2.x; the schema as quoted by cupcake.eqtylab.io/reference/harnesses/
cursor: `hook_event_name`, `conversation_id`, `generation_id`, `workspace_roots`, `cursor_version`, and `command` +
`cwd` for beforeShellExecution, `tool_name` + `tool_input` (a JSON string) + `url` | `command` for
beforeMCPExecution, `tool_name` + `tool_input` for preToolUse; the answer `{"permission", "user_message",
"agent_message"}`, and `failClosed` on a hook entry)."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from approval_server.agents import agent_for, agents
from approval_server.agents.setup import CRASHED
from approval_server.decision import Decision
from tests.agent_hooks import hook_answered, run_hook
from tests.connect_support import cli, quick_start
from tests.support import wait_for_pending

COMMON = {
    "conversation_id": "conv-123",
    "generation_id": "gen-456",
    "workspace_roots": ["/srv/app"],
    "cursor_version": "2.0.77",
    "user_email": "dev@example.com",
}
SHELL = COMMON | {"hook_event_name": "beforeShellExecution", "command": "npm install express", "cwd": "/srv/app"}
MCP = COMMON | {
    "hook_event_name": "beforeMCPExecution",
    "tool_name": "database_query",
    "tool_input": '{"query": "DELETE FROM users"}',
    "url": "http://localhost:3000",
}
CURSOR = agent_for("cursor")


def pre_tool_use(tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return COMMON | {"hook_event_name": "preToolUse", "tool_name": tool, "tool_input": tool_input}


def test_cursor_is_one_of_the_agents() -> None:
    assert agents()["cursor"] is CURSOR
    assert CURSOR.takes_edits is False


@pytest.mark.parametrize(
    ("payload", "tool", "tool_input"),
    [
        (SHELL, "Bash", {"command": "npm install express"}),
        (pre_tool_use("Shell", {"command": "rm -rf dist"}), "Bash", {"command": "rm -rf dist"}),
        (
            pre_tool_use("Write", {"path": "/srv/app/a.txt", "contents": "x"}),
            "Write",
            {"file_path": "/srv/app/a.txt", "content": "x"},
        ),
        (
            pre_tool_use("StrReplace", {"path": "a.py", "old_string": "1", "new_string": "2", "replace_all": True}),
            "Edit",
            {"file_path": "a.py", "old_string": "1", "new_string": "2", "replace_all": True},
        ),
        (pre_tool_use("Delete", {"path": "a.py"}), "Delete", {"file_path": "a.py"}),
        (
            MCP,
            "mcp__cursor__database_query",
            {"query": "DELETE FROM users", "mcp_server": {"url": "http://localhost:3000"}},
        ),
    ],
)
def test_a_payload_becomes_the_common_tool_call(payload: dict[str, Any], tool: str, tool_input: dict[str, Any]) -> None:
    question = CURSOR.parse(payload)
    assert (question.call.tool_name, question.call.input) == (tool, tool_input)
    assert (question.call.session, question.call.cwd) == ("conv-123", "/srv/app")
    assert question.call.agent_version == "2.0.77"
    assert question.event == payload["hook_event_name"]
    assert question.call.extra["workspace_roots"] == ["/srv/app"]


def test_no_key_is_lost_when_a_renamed_one_is_taken() -> None:
    question = CURSOR.parse(pre_tool_use("Write", {"path": "a", "file_path": "b", "contents": "c"}))
    assert question.call.input == {"path": "a", "file_path": "b", "content": "c"}


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (SHELL | {"hook_event_name": "afterShellExecution"}, "not a Cursor"),
        ({k: v for k, v in SHELL.items() if k != "command"}, "without a command"),
        (MCP | {"tool_input": "{not json"}, "not JSON"),
        (pre_tool_use("Shell", {}) | {"tool_input": [1]}, "not a JSON object"),
        (SHELL | {"cwd": "relative/dir"}, "absolute"),
        ([SHELL], "not a Cursor"),
    ],
)
def test_a_bad_payload_is_refused(payload: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CURSOR.parse(payload)


def test_the_answers_are_cursors() -> None:
    question = CURSOR.parse(SHELL)
    assert CURSOR.answer(question, Decision(behavior="allow", updated_input={"command": "x"})) == {
        "permission": "allow"
    }
    assert CURSOR.answer(question, Decision.deny("not now")) == {
        "permission": "deny",
        "user_message": "not now",
        "agent_message": "not now",
    }
    failure = CURSOR.failure("beforeShellExecution", "server down")
    assert failure.code == 2
    assert failure.stdout is not None
    assert failure.stdout["permission"] == "deny"


def written_hook(home: Path) -> dict[str, Any]:
    (entry,) = [
        item
        for item in json.loads((home / ".cursor" / "hooks.json").read_text())["hooks"]["preToolUse"]
        if "approval_server" in item["command"]
    ]
    return dict(entry)


async def test_connect_merges_a_fail_closed_hook_and_keeps_the_users_own(tmp_path: Path, database_url: str) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        hooks = server.home / ".cursor" / "hooks.json"
        hooks.parent.mkdir(parents=True)
        mine = {"command": "./hooks/format.sh"}
        hooks.write_text(json.dumps({"version": 1, "hooks": {"preToolUse": [mine], "afterFileEdit": [mine]}}))
        result = await asyncio.to_thread(cli, "connect", "cursor", home=server.home, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        config = json.loads(hooks.read_text())
        assert config["hooks"]["afterFileEdit"] == [mine]
        assert config["hooks"]["preToolUse"][0] == mine
        entry = written_hook(server.home)
        assert entry["failClosed"] is True
        assert entry["timeout"] == 300 + 60  # the expiry and a margin: the server's deny comes first
        (backup,) = hooks.parent.glob("hooks.json.bak-*")
        assert json.loads(backup.read_text())["hooks"]["preToolUse"] == [mine]
        again = await asyncio.to_thread(cli, "connect", "cursor", home=server.home, cwd=tmp_path)
        assert "already says this" in again.stdout
        assert len(json.loads(hooks.read_text())["hooks"]["preToolUse"]) == 2


async def test_the_written_hook_asks_the_server_and_answers_as_cursor_reads_it(
    tmp_path: Path, database_url: str
) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        assert (await asyncio.to_thread(cli, "connect", "cursor", home=server.home, cwd=tmp_path)).returncode == 0
        command = written_hook(server.home)["command"]
        allow = {"decision": "allow", "actor": "alice"}
        pending, run = await hook_answered(server, command, SHELL, server.home, allow, server.api_token)
        assert (run.returncode, json.loads(run.stdout)) == (0, {"permission": "allow"})
        assert (pending["tool_name"], pending["input"]) == ("Bash", {"command": "npm install express"})
        assert (pending["agent_kind"], pending["agent_version"], pending["editable"]) == ("cursor", "2.0.77", False)
        assert pending["client"] == "Cursor 2.0.77, beforeShellExecution hook"
        listed = await asyncio.to_thread(cli, "requests", home=server.home, cwd=tmp_path)
        (line,) = [line for line in listed.stdout.splitlines() if line.startswith(pending["id"])]
        assert line.split()[5:7] == ["cursor", "npm"]  # the agent's kind, then the command
        shown = await asyncio.to_thread(cli, "show", pending["id"], home=server.home, cwd=tmp_path)
        assert "Agent program: cursor\nIts version: 2.0.77\n" in shown.stdout
        deny = {"decision": "deny", "actor": "alice", "message": "not on a Friday"}
        _, run = await hook_answered(
            server, command, pre_tool_use("Shell", {"command": "ls"}), server.home, deny, server.api_token
        )
        assert "not on a Friday" in json.loads(run.stdout)["agent_message"]


async def test_an_edit_is_refused_for_cursor_which_would_run_the_original(tmp_path: Path, database_url: str) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        assert (await asyncio.to_thread(cli, "connect", "cursor", home=server.home, cwd=tmp_path)).returncode == 0
        running = asyncio.create_task(
            asyncio.to_thread(run_hook, written_hook(server.home)["command"], SHELL, server.home)
        )
        async with server.api(server.api_token) as api:
            pending = await wait_for_pending(api, within=20)
            edited = {"decision": "allow", "actor": "alice", "updated_input": {"command": "npm ci"}}
            response = await api.post(f"/api/requests/{pending['id']}/decision", json=edited)
            assert response.status_code == 400
            assert "cannot run an edited input" in response.json()["detail"]
            as_shown = {"decision": "allow", "actor": "alice", "updated_input": pending["input"]}
            assert (await api.post(f"/api/requests/{pending['id']}/decision", json=as_shown)).status_code == 200
        assert json.loads((await running).stdout) == {"permission": "allow"}


async def test_the_hook_blocks_when_the_server_is_gone_or_the_cli_itself_breaks(
    tmp_path: Path, database_url: str
) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        assert (await asyncio.to_thread(cli, "connect", "cursor", home=server.home, cwd=tmp_path)).returncode == 0
    command = written_hook(server.home)["command"]
    down = await asyncio.to_thread(run_hook, command, SHELL, server.home)
    assert down.returncode == 2
    assert json.loads(down.stdout)["permission"] == "deny"
    assert "could not decide" in json.loads(down.stdout)["agent_message"]
    interpreter = shlex.split(command)[0]
    broken = await asyncio.to_thread(
        run_hook, command.replace(interpreter, "/nonexistent/python3", 1), SHELL, server.home
    )
    assert broken.returncode == 2
    assert CRASHED in broken.stderr
    garbage = await asyncio.to_thread(run_hook, command, "{not json", server.home)
    assert garbage.returncode == 2


async def test_the_agent_cannot_name_its_own_hook_file(tmp_path: Path, database_url: str) -> None:
    """Cursor's hooks file decides whether the gate is asked: the server denies a call that names it, unasked."""
    with quick_start(tmp_path / "data", database_url) as server:
        assert (await asyncio.to_thread(cli, "connect", "cursor", home=server.home, cwd=tmp_path)).returncode == 0
        command = written_hook(server.home)["command"]
        rewrite = pre_tool_use("Shell", {"command": "echo '{}' > ~/.cursor/hooks.json"})
        run = await asyncio.to_thread(run_hook, command, rewrite, server.home)
        assert json.loads(run.stdout)["permission"] == "deny"
        assert "own files" in json.loads(run.stdout)["agent_message"]
