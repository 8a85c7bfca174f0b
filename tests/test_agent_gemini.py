"""Gemini CLI's BeforeTool hook: its input in Claude Code's names, the answers it reads, `connect gemini`'s merge into
the user's settings, `doctor`'s checks, and `/api/hook/gemini` through a real server.

The payloads are the ones Gemini CLI 0.61.0 sent in runs against the fake model API (tests/e2e/test_gemini.py);
the tool and argument names are those of its bundle (see `agents/gemini.py`)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from approval_server.agents import agent_for, agents
from approval_server.agents.gemini import AGENT, is_answer
from approval_server.agents.gemini_setup import (
    MAX_TIMEOUT_MS,
    hook_name,
    merged,
    plan,
    proposal_path,
    settings_path,
)
from approval_server.agents.setup import Target
from approval_server.decision import Decision
from approval_server.entry.client_config import load_client_settings
from approval_server.errors import ConfigError
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

SESSION = "de1bafd5-7a8e-4c1f-9d7b-0f3a2c4e5b61"
SHELL: dict[str, Any] = {
    "session_id": SESSION,
    "transcript_path": "/home/u/.gemini/tmp/work/chats/session-2026-12-06T06-06-de1bafd5.jsonl",
    "cwd": "/srv/work",
    "hook_event_name": "BeforeTool",
    "timestamp": "2026-12-06T06:06:40.482Z",
    "tool_name": "run_shell_command",
    "tool_input": {"command": "touch /tmp/marker-gemini", "description": "fake model wants to run this"},
}
MCP: dict[str, Any] = SHELL | {
    "tool_name": "mcp_my_srv_get_issue",
    "tool_input": {"number": 7},
    "mcp_context": {"server_name": "my_srv", "tool_name": "get_issue", "command": "/usr/bin/python3", "args": ["s.py"]},
}


def payload(tool: str, tool_input: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return SHELL | {"tool_name": tool, "tool_input": tool_input} | fields


def test_a_shell_call_becomes_bash_with_its_session_directory_and_the_rest_of_the_payload() -> None:
    question = AGENT.parse(SHELL)
    call = question.call
    assert (question.event, call.tool_name, call.input) == ("BeforeTool", "Bash", SHELL["tool_input"])
    assert (call.session, call.cwd, call.agent_kind) == (SESSION, "/srv/work", "gemini")
    assert call.extra == {key: value for key, value in SHELL.items() if key != "tool_input"}
    assert agents()["gemini"] is agent_for("gemini") is AGENT


EDIT = {"file_path": "/w/a", "old_string": "a", "new_string": "b", "instruction": "i", "allow_multiple": True}


@pytest.mark.parametrize(
    ("tool", "given", "name"),
    [
        ("write_file", {"file_path": "/w/a.txt", "content": "x"}, "Write"),
        ("replace", EDIT, "Edit"),
        ("read_file", {"file_path": "/w/a", "start_line": 3}, "Read"),
        ("glob", {"pattern": "*.py", "dir_path": "src"}, "Glob"),
        ("grep_search", {"pattern": "TODO", "dir_path": "/w", "include_pattern": "*.py"}, "Grep"),
        ("list_directory", {"dir_path": "/w", "ignore": ["*.o"]}, "LS"),
        ("web_fetch", {"prompt": "summarise https://example.com"}, "WebFetch"),
        ("google_web_search", {"query": "gemini hooks"}, "WebSearch"),
        ("write_todos", {"todos": [{"description": "x", "status": "pending"}]}, "TodoWrite"),
        ("read_many_files", {"include": ["**/*.md"]}, "read_many_files"),
        ("mcp_my_srv_get_issue", {"number": 7}, "mcp_my_srv_get_issue"),  # no mcp_context: not split
    ],
)
def test_gemini_tools_get_claude_code_names_and_keep_every_key(tool: str, given: dict[str, Any], name: str) -> None:
    """Only Glob, Grep and LS change a key: their `dir_path` is Claude Code's `path`."""
    call = AGENT.parse(payload(tool, given)).call
    assert (call.tool_name, call.input) == (name, {("path" if k == "dir_path" else k): v for k, v in given.items()})
    assert call.extra["tool_name"] == tool


def test_an_mcp_tool_is_named_from_its_context_even_when_the_server_name_has_underscores() -> None:
    call = AGENT.parse(MCP).call
    assert (call.tool_name, call.input) == ("mcp__my_srv__get_issue", {"number": 7})
    assert call.extra["mcp_context"]["server_name"] == "my_srv"


@pytest.mark.parametrize(("dir_path", "cwd"), [("build", "/srv/work/build"), ("/opt/x/../y", "/opt/y")])
def test_a_shell_call_in_another_folder_says_where_it_runs(dir_path: str, cwd: str) -> None:
    call = AGENT.parse(payload("run_shell_command", {"command": "make", "dir_path": dir_path})).call
    assert (call.cwd, call.input["dir_path"]) == (cwd, dir_path)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (SHELL | {"hook_event_name": "AfterTool"}, "hook_event_name"),
        (SHELL | {"tool_input": "ls"}, "tool_input"),
        (SHELL | {"tool_name": ""}, "tool_name"),
        (SHELL | {"cwd": "work"}, "not an absolute path"),
        (SHELL | {"tool_input": {"command": float("nan")}}, "not JSON"),
        (payload("glob", {"pattern": "*", "dir_path": "/secret", "path": "/w"}), "'path', which stands for"),
        (payload("list_directory", {"path": "/w"}), "list_directory input has 'path'"),  # Gemini lists its dir_path
        (payload("web_fetch", {"prompt": "get https://b.example", "url": "https://a.example"}), "does not read"),
        ([SHELL], "not a Gemini CLI BeforeTool hook input"),
    ],
)
def test_a_bad_hook_input_is_refused(given: object, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        AGENT.parse(given)


def test_the_answers_are_gemini_cli_s_and_an_edit_goes_back_in_its_own_keys() -> None:
    shell = AGENT.parse(SHELL)
    glob = AGENT.parse(payload("glob", {"pattern": "*.py", "dir_path": "src"}))
    assert AGENT.answer(shell, Decision("allow", updated_input=SHELL["tool_input"])) == {"decision": "allow"}
    assert AGENT.answer(shell, Decision.deny("not tonight")) == {"decision": "deny", "reason": "not tonight"}
    edited = AGENT.answer(shell, Decision("allow", updated_input={"command": "ls"}))
    assert edited == {
        "decision": "allow",
        "hookSpecificOutput": {"hookEventName": "BeforeTool", "tool_input": {"command": "ls"}},
    }
    narrowed = AGENT.answer(glob, Decision("allow", updated_input={"pattern": "*.py", "path": "src/app"}))
    assert narrowed["hookSpecificOutput"]["tool_input"] == {"pattern": "*.py", "dir_path": "src/app"}
    both = AGENT.answer(glob, Decision("allow", updated_input={"pattern": "*", "path": "a", "dir_path": "b"}))
    assert (both["decision"], "cannot be given to Gemini CLI" in both["reason"]) == ("deny", True)
    for answer in (edited, narrowed, both, {"decision": "allow"}):
        assert is_answer(answer)
        assert AGENT.checked_answer(answer) == answer


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"status": "ok"},
        "allow",
        ["allow"],
        {"decision": "deny"},
        {"decision": "deny", "reason": ""},
        {"decision": "block", "reason": "x"},
        {"decision": "allow", "systemMessage": "hi"},
        {"decision": "allow", "hookSpecificOutput": {"tool_input": "ls"}},
        {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow"}},
    ],
)
def test_an_answer_gemini_would_not_read_as_meant_fails_the_hook_closed(garbage: object) -> None:
    """Gemini runs the call on JSON without a deny: the hook command prints only an answer `hook_output` gives."""
    with pytest.raises(ValueError, match="neither an allow nor a deny"):
        AGENT.checked_answer(garbage)


def test_any_agent_s_hook_command_prints_only_a_json_object_from_the_server() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        agent_for("claude-code").checked_answer(["allow"])
    assert agent_for("claude-code").checked_answer({"hookSpecificOutput": {}}) == {"hookSpecificOutput": {}}


def test_with_no_decision_the_hook_prints_a_deny_and_exits_2() -> None:
    failure = AGENT.failure(None, "server down")
    reason = "approval-server could not decide (server down), so the action was denied."
    assert (failure.stdout, failure.stderr, failure.code) == ({"decision": "deny", "reason": reason}, reason, 2)
    assert AGENT.client("BeforeTool", "0.61.0") == "Gemini CLI 0.61.0, BeforeTool hook"


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    """A user's HOME with no Gemini settings yet, and a server whose requests expire after 300 s."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("GEMINI_CLI_HOME", "GEMINI_CLI_SYSTEM_SETTINGS_PATH", "GEMINI_CLI_TRUSTED_FOLDERS_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APPROVAL_TIMEOUT_SECONDS", "300")
    return Target(load_client_settings(url="http://127.0.0.1:8123"), "mcp-token-1", "laptop")


def ours(settings: dict[str, Any]) -> list[dict[str, Any]]:
    groups = settings["hooks"]["BeforeTool"]
    return [hook for group in groups for hook in group["hooks"] if "approval_server" in hook["command"]]


def test_connect_merges_one_hook_for_every_tool_and_keeps_the_users_settings(target: Target) -> None:
    path = settings_path()
    theirs = {"type": "command", "name": "lint", "command": "lint-hook"}
    old = {"type": "command", "command": f"{sys.executable} -I -m approval_server hook gemini --url http://old"}
    user: dict[str, Any] = {
        "model": {"name": "gemini-2.5-pro"},
        "hooks": {
            "BeforeTool": [{"matcher": "write_file", "hooks": [theirs, old]}, {"matcher": "*", "hooks": [old]}],
            "AfterTool": [{"hooks": [theirs]}],
        },
        "hooksConfig": {"enabled": False, "disabled": ["lint", hook_name(target), old["command"]]},
    }
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(user))
    made = plan(target)
    written = json.loads(made.files[path])
    assert written["model"] == user["model"]
    assert written["hooks"]["AfterTool"] == user["hooks"]["AfterTool"]
    assert written["hooks"]["BeforeTool"][0] == {"matcher": "write_file", "hooks": [theirs]}
    assert written["hooksConfig"] == {"enabled": True, "disabled": ["lint"]}
    (hook,) = ours(written)
    assert written["hooks"]["BeforeTool"][-1] == {"matcher": "*", "hooks": [hook]}
    assert (hook["type"], hook["name"], hook["timeout"]) == ("command", hook_name(target), 360_000)
    assert hook["command"] == target.hook_command("gemini")
    words = ["-I", "-m", "approval_server", "hook", "gemini", "--url", "http://127.0.0.1:8123", "--agent", "laptop"]
    assert shlex.split(hook["command"])[:10] == [sys.executable, *words]
    assert "mcp-token-1" not in made.files[path]
    assert hook["name"] not in "\n".join(made.lines)
    assert made.private is False  # the user's own file keeps its mode
    # For root to install as the system settings: the same hook (Gemini runs it once) and hooks switched on.
    system = json.loads(made.files[proposal_path()])
    assert system == {"hooks": {"BeforeTool": [{"matcher": "*", "hooks": [hook]}]}, "hooksConfig": {"enabled": True}}
    path.write_text(made.files[path])
    assert plan(target).files[path] == made.files[path]  # connecting again changes nothing


def test_the_hook_name_is_secret_and_the_timeout_never_overflows(target: Target) -> None:
    other = Target(target.settings, "mcp-token-2")
    assert hook_name(target).startswith("approval-server-")
    assert hook_name(target) != hook_name(other)
    slow = Target(target.settings.model_copy(update={"approval_timeout_seconds": 3_000_000}), "t")
    (hook,) = ours(merged({}, slow, settings_path()))
    assert hook["timeout"] == MAX_TIMEOUT_MS == 2**31 - 1


def test_connect_says_how_to_start_gemini_and_what_it_cannot_close(target: Target) -> None:
    text = "\n".join(plan(target).lines)
    assert "gemini --approval-mode yolo -p 'your prompt'" in text
    assert f"sudo install -D -o root -g root -m 644 {proposal_path()} /etc/gemini-cli/settings.json" in text
    assert "Trust only folders whose .gemini/ and .env you have read" in text


@pytest.mark.parametrize("text", ["{not json", "[]", '{"hooks": []}', '{"hooksConfig": "off"}'])
def test_connect_leaves_settings_it_cannot_merge_alone(target: Target, text: str) -> None:
    settings_path().parent.mkdir(parents=True)
    settings_path().write_text(text)
    with pytest.raises(ConfigError, match="fix or move it"):
        plan(target)


def test_gemini_cli_home_moves_the_settings_and_the_guarded_files(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_CLI_HOME", str(tmp_path / "gh"))
    monkeypatch.setenv("GEMINI_CLI_SYSTEM_SETTINGS_PATH", str(tmp_path / "sys" / "settings.json"))
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "settings.json").write_text('{"general": {"vimMode": true}}')
    made = plan(target)
    assert list(made.files) == [tmp_path / "gh" / ".gemini" / "settings.json", proposal_path()]
    assert json.loads(made.files[proposal_path()])["general"] == {"vimMode": True}  # the system file's, kept
    assert AGENT.guarded_paths() == [
        tmp_path / "gh" / ".gemini" / "settings.json",
        tmp_path / "gh" / ".gemini" / "trustedFolders.json",
        tmp_path / "gh" / ".gemini" / ".env",
        tmp_path / "gh" / ".gemini" / "extensions",
        tmp_path / "sys" / "settings.json",
        tmp_path / "sys" / "system-defaults.json",
    ]


def doctor(target: Target | None) -> tuple[list[str], list[str], list[str]]:
    found: tuple[list[str], list[str], list[str]] = ([], [], [])
    AGENT.doctor(target, found[0].append, found[1].append, found[2].append)
    return found


def connected(target: Target, change: Callable[[dict[str, Any]], None] = lambda settings: None) -> None:
    settings = merged({}, target, settings_path())
    change(settings)
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(json.dumps(settings))


def test_doctor_passes_the_hook_connect_wrote_and_says_what_gemini_cannot_close(target: Target) -> None:
    assert doctor(target)[2] == [f"Gemini CLI: no {settings_path()} (approval-server connect gemini sets it up)"]
    connected(target)
    ok, problems, notes = doctor(target)
    assert problems == []
    assert ok == [f"Gemini CLI asks approval-server before every tool call ({settings_path()})"]
    assert any("cannot be made to fail closed when a repository it trusts switches hooks off" in n for n in notes)
    assert any("runs a trusted repository's own hooks and MCP servers" in note for note in notes)


HOOK, GROUP, CONFIG = ("hooks", "BeforeTool", 0, "hooks", 0), ("hooks", "BeforeTool", 0), ("hooksConfig",)
OURS = object()  # stands for our hook itself (or, in a list, its name)


@pytest.mark.parametrize(
    ("where", "key", "value", "problem"),
    [
        (HOOK, "timeout", 3_000_000_000, "is not 1 to 2147483647 ms"),
        (HOOK, "timeout", 0, "is not 1 to 2147483647 ms"),
        (HOOK, "timeout", None, "ends before the expiry"),  # Gemini's default: 60 s
        (HOOK, "timeout", 200_000, "ends before the expiry (300 s)"),
        (GROUP, "matcher", "run_shell_command", "leaves the other tools"),
        (HOOK, "command", "/nowhere/python -m approval_server hook gemini", "does not exist"),
        (CONFIG, "disabled", [OURS], "disabled names it"),
        (CONFIG, "enabled", False, "hooksConfig.enabled to false"),
        (("hooks",), "BeforeTool", [OURS, OURS], "2 approval-server hooks"),
        ((), "security", {"folderTrust": {"enabled": False}}, "switches folder trust off"),
    ],
)
def test_doctor_finds_what_would_let_gemini_run_a_call_unasked(
    target: Target, where: tuple[Any, ...], key: str, value: Any, problem: str
) -> None:
    def change(settings: dict[str, Any]) -> None:
        place: Any = settings
        for step in where:
            place = place[step]
        group = settings["hooks"]["BeforeTool"][0]
        if value is None:
            del place[key]
        elif isinstance(value, list) and OURS in value:
            place[key] = [group["hooks"][0]["name"] if key == "disabled" else group for _ in value]
        else:
            place[key] = value

    connected(target, change)
    ok, problems, _ = doctor(target)
    assert any(problem in text for text in problems), problems
    assert not any("asks approval-server before every tool call" in text for text in ok)


def test_doctor_counts_on_the_system_settings_only_where_gemini_reads_them(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected(target)
    system = tmp_path / "etc" / "settings.json"
    system.parent.mkdir()
    system.write_text(plan(target).files[proposal_path()])
    monkeypatch.setenv("GEMINI_CLI_SYSTEM_SETTINGS_PATH", str(system))
    _, _, notes = doctor(target)  # under /tmp, which everyone may write: Gemini skips it
    assert any("cannot be made to fail closed" in note and str(proposal_path()) in note for note in notes)
    monkeypatch.setattr("approval_server.agents.gemini_setup._root_only", lambda path: path == system)
    ok, problems, _ = doctor(target)
    assert f"Gemini CLI: {system} keeps the hook on, whatever a repository's settings say" in ok
    assert problems == []
    system.write_text(json.dumps(merged({}, Target(target.settings, "another-token"), system)))
    _, problems, _ = doctor(target)
    assert any("holds another approval-server hook" in problem for problem in problems)


async def test_the_hook_endpoint_records_a_gemini_call_and_answers_as_gemini_reads(server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {MCP_TOKEN}", "X-Agent-Name": "laptop", "X-Agent-Version": "0.61.0"}
    async with server.api() as api:
        edited = asyncio.create_task(api.post("/api/hook/gemini", json=SHELL, headers=headers))
        pending = await wait_for_pending(api, {"agent_kind": "gemini"})
        body = {"decision": "allow", "updated_input": {"command": "touch /tmp/other"}}
        await api.post(f"/api/requests/{pending['id']}/decision", json=body)
        denied = asyncio.create_task(api.post("/api/hook/gemini", json=MCP, headers=headers))
        second = await wait_for_pending(api, {"tool_name": "mcp__my_srv__get_issue"})
        await api.post(f"/api/requests/{second['id']}/decision", json={"decision": "deny", "message": "no"})
        bad = await api.post("/api/hook/gemini", json=SHELL | {"hook_event_name": "PreToolUse"}, headers=headers)
        answers = (await edited).json(), (await denied).json()
    assert answers[0] == {
        "decision": "allow",
        "hookSpecificOutput": {"hookEventName": "BeforeTool", "tool_input": {"command": "touch /tmp/other"}},
    }
    assert answers[1]["decision"] == "deny"
    assert answers[1]["reason"].startswith("Denied by owner via api: no")
    assert (pending["client"], pending["agent"], pending["editable"]) == (
        "Gemini CLI 0.61.0, BeforeTool hook",
        "laptop",
        True,
    )
    assert (pending["tool_name"], pending["cwd"], pending["session"]) == ("Bash", "/srv/work", SESSION)
    assert bad.status_code == 400


async def test_the_server_denies_unasked_what_would_unhook_gemini(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """The user's Gemini settings are among the server's own files (the server's HOME is its data directory here),
    and the rules docs/agents/gemini.md suggests keep the agent from writing a repository's `.gemini/` and `.env`."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "policy.toml").write_text('[permissions]\ndeny = ["Edit(.gemini)", "Edit(.env)"]\n')
    server = start_server()
    calls = [
        payload("run_shell_command", {"command": "sed -i s/hooks/x/ ~/.gemini/settings.json"}),
        payload("write_file", {"file_path": "/srv/work/.gemini/settings.json", "content": "{}"}),
        payload("run_shell_command", {"command": 'echo \'{"hooksConfig":{"enabled":false}}\' > .gemini/settings.json'}),
        payload("replace", {"file_path": "/srv/work/.env", "old_string": "A=1", "new_string": "LD_PRELOAD=x.so"}),
    ]
    async with server.api() as api:
        answers = [(await api.post("/api/hook/gemini", json=call)).json() for call in calls]
        rows = (await api.get("/api/requests")).json()["requests"]
    assert [answer["decision"] for answer in answers] == ["deny"] * 4
    assert "does not let an agent read, write, list or name its own files" in answers[0]["reason"]
    assert {(row["status"], row["decided_via"]) for row in rows} == {("denied", "policy")}
