"""Copilot CLI: its preToolUse payloads become the common tool call, and its answers are Copilot's; `connect
copilot` merges the hook into ~/.copilot/settings.json; the written hook, run as Copilot runs it, asks the server
and blocks on every failure; the agent cannot name Copilot's own files; `doctor` says what it found.

The payloads are the ones Copilot CLI 1.0.102 sent its hooks in the runs of tests/e2e/test_copilot.py (offline,
against the fake Anthropic API): `{"sessionId", "timestamp", "cwd", "toolName", "toolArgs"}` for `preToolUse`,
and `{"hookName": "permissionRequest", …, "toolInput", "permissionSuggestions"}` for `permissionRequest`."""

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
from tests.connect_support import QuickStartServer, cli, quick_start

COPILOT = agent_for("copilot")
SESSION = "740cbbe6-941b-4102-b593-a4f1c93d2cf3"


def pre_tool_use(tool: str, args: Any) -> dict[str, Any]:
    return {"sessionId": SESSION, "timestamp": 1796616203015, "cwd": "/srv/app", "toolName": tool, "toolArgs": args}


SHELL = pre_tool_use("bash", {"command": "touch /srv/app/marker", "description": "make marker"})
PERMISSION_REQUEST = {
    "hookName": "permissionRequest",
    "sessionId": SESSION,
    "timestamp": 1796616203042,
    "cwd": "/srv/app",
    "toolName": "bash",
    "toolInput": {"command": "touch /srv/app/marker"},
    "permissionSuggestions": [],
}


def test_copilot_is_one_of_the_agents() -> None:
    assert agents()["copilot"] is COPILOT
    assert (COPILOT.title, COPILOT.takes_edits) == ("Copilot CLI", True)
    assert {"@github/copilot", "@github/copilot-linux-x64"} <= set(COPILOT.packages)


@pytest.mark.parametrize(
    ("tool", "args", "name", "tool_input"),
    [
        ("bash", SHELL["toolArgs"], "Bash", SHELL["toolArgs"]),
        (
            "view",
            {"path": "/etc/hostname", "view_range": [1, 2]},
            "Read",
            {"file_path": "/etc/hostname", "view_range": [1, 2]},
        ),
        (
            "create",
            {"path": "/srv/app/a.txt", "file_text": "hi\n"},
            "Write",
            {"file_path": "/srv/app/a.txt", "content": "hi\n"},
        ),
        (
            "edit",
            {"path": "a.py", "old_str": "1", "new_str": "2"},
            "Edit",
            {"file_path": "a.py", "old_string": "1", "new_string": "2"},
        ),
        (
            "grep",
            {"pattern": "hello", "paths": "src", "-i": True},
            "Grep",
            {"pattern": "hello", "path": "src", "-i": True},
        ),
        ("glob", {"pattern": "**/*.py"}, "Glob", {"pattern": "**/*.py"}),
        (
            "web_fetch",
            {"url": "https://example.com", "max_length": 5000},
            "WebFetch",
            {"url": "https://example.com", "max_length": 5000},
        ),
        # Several folders: Grep searches one, so it keeps its own name (and every string of it is checked).
        ("grep", {"pattern": "x", "paths": ["a", "b"]}, "grep", {"pattern": "x", "paths": ["a", "b"]}),
        # One of Claude Code's keys already there: which one Copilot uses is not guessed.
        (
            "create",
            {"path": "/a", "file_path": "/b", "file_text": "x"},
            "create",
            {"path": "/a", "file_path": "/b", "file_text": "x"},
        ),
        ("write_bash", {"shellId": "0", "input": "y\n"}, "write_bash", {"shellId": "0", "input": "y\n"}),
    ],
)
def test_a_payload_becomes_the_common_tool_call(tool: str, args: Any, name: str, tool_input: dict[str, Any]) -> None:
    question = COPILOT.parse(pre_tool_use(tool, args))
    assert (question.call.tool_name, question.call.input) == (name, tool_input)
    assert (question.call.session, question.call.cwd, question.event) == (SESSION, "/srv/app", "preToolUse")
    assert question.call.extra == {
        "sessionId": SESSION,
        "timestamp": 1796616203015,
        "cwd": "/srv/app",
        "toolName": tool,
    }


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (PERMISSION_REQUEST, "permissionRequest hook input: only preToolUse"),
        ({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {}}, "PreToolUse hook input"),
        ({k: v for k, v in SHELL.items() if k != "toolName"}, "no toolName"),
        (SHELL | {"toolArgs": '{"command": "ls"}'}, "toolArgs of bash is not a JSON object"),
        (SHELL | {"cwd": "relative/dir"}, "absolute"),
        ([SHELL], "not a JSON object"),
    ],
)
def test_a_bad_payload_is_refused(payload: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        COPILOT.parse(payload)


def test_an_allow_carries_the_arguments_in_copilots_keys_and_a_deny_its_reason() -> None:
    shell = COPILOT.parse(SHELL)
    assert COPILOT.answer(shell, Decision(behavior="allow", updated_input=shell.call.input)) == {
        "permissionDecision": "allow",
        "permissionDecisionReason": "approved through approval-server",
        "modifiedArgs": SHELL["toolArgs"],
    }
    assert COPILOT.answer(shell, Decision.deny("not now")) == {
        "permissionDecision": "deny",
        "permissionDecisionReason": "not now",
    }
    write = COPILOT.parse(pre_tool_use("create", {"path": "/srv/app/a.txt", "file_text": "hi\n"}))
    edited = Decision(behavior="allow", updated_input={"file_path": "/srv/app/b.txt", "content": "bye\n"})
    assert COPILOT.answer(write, edited)["modifiedArgs"] == {"path": "/srv/app/b.txt", "file_text": "bye\n"}
    twice = Decision(behavior="allow", updated_input={"file_path": "/srv/app/a.txt", "content": "", "path": "/etc/x"})
    assert COPILOT.answer(write, twice)["permissionDecision"] == "deny"
    own = COPILOT.parse(pre_tool_use("grep", {"pattern": "x", "paths": ["a", "b"]}))
    assert COPILOT.answer(own, Decision(behavior="allow", updated_input=own.call.input))["modifiedArgs"] == {
        "pattern": "x",
        "paths": ["a", "b"],
    }


def test_a_failure_denies_under_either_event_and_exits_2() -> None:
    failure = COPILOT.failure(None, "server down")
    assert failure.code == 2
    assert failure.stdout is not None
    assert (failure.stdout["permissionDecision"], failure.stdout["behavior"]) == ("deny", "deny")
    assert "server down" in failure.stdout["permissionDecisionReason"]
    assert failure.stdout["message"] == failure.stdout["permissionDecisionReason"]


def settings_of(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / ".copilot" / "settings.json").read_text()))


def our_hook(home: Path) -> dict[str, Any]:
    (entry,) = [item for item in settings_of(home)["hooks"]["preToolUse"] if "approval_server" in item.get("bash", "")]
    return dict(entry)


async def connected(server: QuickStartServer, cwd: Path) -> str:
    """`connect copilot` for the user who runs `server`; the hook command it wrote."""
    result = await asyncio.to_thread(cli, "connect", "copilot", home=server.home, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return str(our_hook(server.home)["bash"])


async def test_connect_merges_the_hook_last_and_keeps_the_users_own(tmp_path: Path, database_url: str) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        settings = server.home / ".copilot" / "settings.json"
        settings.parent.mkdir(parents=True)
        mine = {"type": "command", "bash": "./hooks/audit.sh", "timeoutSec": 5}
        user = {"banner": "never", "disableAllHooks": True, "hooks": {"preToolUse": [mine], "postToolUse": [mine]}}
        settings.write_text(json.dumps(user))
        result = await asyncio.to_thread(cli, "connect", "copilot", home=server.home, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "disableAllHooks was set" in result.stdout
        config = settings_of(server.home)
        assert (config["banner"], config["hooks"]["postToolUse"]) == ("never", [mine])
        assert "disableAllHooks" not in config
        assert config["hooks"]["preToolUse"][0] == mine  # ours comes last: it approves the arguments that will run
        assert our_hook(server.home) == config["hooks"]["preToolUse"][1]
        assert our_hook(server.home)["timeoutSec"] == 300 + 60  # the expiry and a margin: the server's deny first
        assert our_hook(server.home)["bash"].endswith(f"{shlex.quote(CRASHED)} >&2; exit 2; }}")
        (backup,) = settings.parent.glob("settings.json.bak-*")
        assert json.loads(backup.read_text()) == user
        again = await asyncio.to_thread(cli, "connect", "copilot", home=server.home, cwd=tmp_path)
        assert "already says this" in again.stdout
        assert len(settings_of(server.home)["hooks"]["preToolUse"]) == 2


async def test_connect_leaves_a_settings_file_it_cannot_merge(tmp_path: Path, database_url: str) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        settings = server.home / ".copilot" / "settings.json"
        settings.parent.mkdir(parents=True)
        settings.write_text('{"hooks": {"preToolUse": {"bash": "x"}}}')
        result = await asyncio.to_thread(cli, "connect", "copilot", home=server.home, cwd=tmp_path)
        assert result.returncode != 0
        assert "hooks.preToolUse` is not a list" in result.stderr
        assert settings.read_text() == '{"hooks": {"preToolUse": {"bash": "x"}}}'


async def test_the_written_hook_asks_the_server_and_answers_as_copilot_reads_it(
    tmp_path: Path, database_url: str
) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        command = await connected(server, tmp_path)
        allow = {"decision": "allow", "actor": "alice"}
        pending, run = await hook_answered(server, command, SHELL, server.home, allow, server.api_token)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["modifiedArgs"] == SHELL["toolArgs"]
        assert (pending["tool_name"], pending["agent_kind"], pending["session"]) == ("Bash", "copilot", SESSION)
        assert pending["client"] == "Copilot CLI, preToolUse hook"  # no Copilot above this hook: no version
        deny = {"decision": "deny", "actor": "alice", "message": "not on a Friday"}
        _, run = await hook_answered(server, command, SHELL, server.home, deny, server.api_token)
        assert json.loads(run.stdout)["permissionDecision"] == "deny"
        assert "not on a Friday" in json.loads(run.stdout)["permissionDecisionReason"]


async def test_the_hook_blocks_when_the_server_is_gone_the_input_is_wrong_or_the_cli_breaks(
    tmp_path: Path, database_url: str
) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        command = await connected(server, tmp_path)
        refused = await asyncio.to_thread(run_hook, command, PERMISSION_REQUEST, server.home)
        assert (refused.returncode, json.loads(refused.stdout)["behavior"]) == (2, "deny")
        assert "only preToolUse" in json.loads(refused.stdout)["message"]
    down = await asyncio.to_thread(run_hook, command, SHELL, server.home)
    assert (down.returncode, json.loads(down.stdout)["permissionDecision"]) == (2, "deny")
    assert "could not decide" in json.loads(down.stdout)["permissionDecisionReason"]
    garbage = await asyncio.to_thread(run_hook, command, "{not json", server.home)
    assert garbage.returncode == 2
    interpreter = shlex.split(command)[0]
    broken = await asyncio.to_thread(
        run_hook, command.replace(interpreter, "/nonexistent/python3", 1), SHELL, server.home
    )
    assert broken.returncode == 2
    assert CRASHED in broken.stderr


async def test_the_agent_cannot_name_copilots_own_files(tmp_path: Path, database_url: str) -> None:
    """Its settings and hooks, the trusted folders in config.json, and the cache its binary runs its code from: the
    server denies a call that names them, unasked."""
    commands = [
        "echo '{}' > ~/.copilot/settings.json",
        "cp evil.json ~/.copilot/hooks/allow.json",
        "python3 -c 'print(1)' >> ~/.copilot/config.json",
        "echo 'process.exit(0)' >> ~/.cache/copilot/pkg/linux-x64/1.0.102/index.js",
    ]
    with quick_start(tmp_path / "data", database_url) as server:
        hook = await connected(server, tmp_path)
        for command in commands:
            run = await asyncio.to_thread(run_hook, hook, pre_tool_use("bash", {"command": command}), server.home)
            assert json.loads(run.stdout)["permissionDecision"] == "deny", command
            assert "own files" in json.loads(run.stdout)["permissionDecisionReason"]


async def test_doctor_says_what_the_copilot_hook_can_and_cannot_do(tmp_path: Path, database_url: str) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        before = await asyncio.to_thread(cli, "doctor", home=server.home, cwd=tmp_path)
        assert "Copilot CLI" not in before.stdout  # not set up: nothing to say
        await connected(server, tmp_path)
        (server.home / ".copilot" / "config.json").write_text(
            '// This file is managed automatically.\n{"trustedFolders": ["/srv/app"]}\n'
        )
        found = await asyncio.to_thread(cli, "doctor", home=server.home, cwd=tmp_path)
        assert "ok    Copilot CLI: " in found.stdout
        assert "asks approval-server before every tool call" in found.stdout
        assert "Copilot CLI trusts 1 folder(s) (/srv/app)" in found.stdout
        assert "can switch this hook off" in found.stdout
        config = settings_of(server.home)
        settings = server.home / ".copilot" / "settings.json"
        settings.write_text(json.dumps(config | {"disableAllHooks": True}))
        off = await asyncio.to_thread(cli, "doctor", home=server.home, cwd=tmp_path)
        assert "FIX   Copilot CLI: " in off.stdout
        assert "says disableAllHooks" in off.stdout
        our_hook_entry = config["hooks"]["preToolUse"][0] | {"timeoutSec": 30}
        settings.write_text(json.dumps(config | {"hooks": {"preToolUse": [our_hook_entry]}}))
        short = await asyncio.to_thread(cli, "doctor", home=server.home, cwd=tmp_path)
        assert "timeoutSec (30 s) is shorter than the expiry" in short.stdout
