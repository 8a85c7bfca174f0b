"""Cursor's agent hooks (`~/.cursor/hooks.json`): `preToolUse`, `beforeShellExecution` and `beforeMCPExecution`.

Not run here: Cursor's agent is not published on a package registry this project can install from, so this module
follows the payloads and answers Cursor documents (cursor.com/docs/hooks, "Hooks"; the hook schema as quoted by
cupcake.eqtylab.io/reference/harnesses/cursor) and is tested against those payloads only (tests/test_agent_cursor.py).

- Input: `hook_event_name`, `conversation_id`, `generation_id`, `workspace_roots`, `cursor_version`, and per event
  `command` + `cwd` (shell), `tool_name` + `tool_input` (a JSON string) + `url` or `command` (MCP), or `tool_name` +
  `tool_input` (preToolUse, every tool: `Shell`, `Read`, `Write`, `StrReplace`, `Delete`, `Glob`, `Grep`, …).
- Answer: `{"permission": "allow" | "deny", "user_message": …, "agent_message": …}`.
- A hook that fails or times out lets the action run unless its entry says `"failClosed": true`, which `connect
  cursor` always writes, with the CLI's own deny on every failure besides.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from approval_server import strict_json
from approval_server.agents import AgentHook, Failure, Question, canonical
from approval_server.decision import Decision
from approval_server.errors import ConfigError
from approval_server.models import JSONObject, ToolCall, plain_version

if TYPE_CHECKING:
    from approval_server.agents.setup import Plan, Report, Target

EVENTS = ("preToolUse", "beforeShellExecution", "beforeMCPExecution")
# Cursor's tool names and input keys → Claude Code's, so one policy file decides for both.
TOOLS = {"Shell": "Bash", "StrReplace": "Edit"}
KEYS = {"path": "file_path", "contents": "content"}


def hooks_file() -> Path:
    return Path.home() / ".cursor" / "hooks.json"


def _object(value: Any, what: str) -> JSONObject:
    if isinstance(value, str):
        try:
            value = strict_json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError(f"{what} is a string that is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _call(payload: JSONObject, event: str) -> tuple[str, JSONObject]:
    if event == "beforeShellExecution":
        if not isinstance(payload.get("command"), str):
            raise ValueError("beforeShellExecution without a command")
        return "Bash", {"command": payload["command"]}
    tool = payload.get("tool_name")
    if not isinstance(tool, str) or not tool:
        raise ValueError(f"{event} without a tool_name")
    tool_input = _object(payload.get("tool_input", {}), "tool_input")
    if event == "beforeMCPExecution":  # Cursor names the server by its URL or command, not by a name
        server = {key: payload[key] for key in ("url", "command") if isinstance(payload.get(key), str)}
        return f"mcp__cursor__{tool}", tool_input | {"mcp_server": server} if server else tool_input
    return TOOLS.get(tool, tool), canonical(tool_input, KEYS)


class CursorHook(AgentHook):
    kind = "cursor"
    title = "Cursor"

    def parse(self, payload: Any) -> Question:
        where = strict_json.problem(payload)
        if where is not None:
            raise ValueError(f"not JSON: {where}")
        if not isinstance(payload, dict) or payload.get("hook_event_name") not in EVENTS:
            raise ValueError(f"not a Cursor {', '.join(EVENTS)} hook input")
        event = payload["hook_event_name"]
        tool_name, tool_input = _call(payload, event)
        cwd = payload.get("cwd")
        roots = payload.get("workspace_roots")
        if not isinstance(cwd, str) and isinstance(roots, list) and roots and isinstance(roots[0], str):
            cwd = roots[0]
        if isinstance(cwd, str) and not cwd.startswith("/"):
            raise ValueError(f"cwd {cwd!r} is not an absolute path")
        version = payload.get("cursor_version")
        call = ToolCall(
            tool_name=tool_name,
            input=tool_input,
            extra={key: value for key, value in payload.items() if key not in ("tool_input", "command")},
            session=payload.get("conversation_id") if isinstance(payload.get("conversation_id"), str) else None,
            cwd=cwd if isinstance(cwd, str) else None,
            agent_version=plain_version(version if isinstance(version, str) else None),
        )
        return Question(call, event)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        if decision.behavior == "allow":
            return {"permission": "allow"}
        return {"permission": "deny", "user_message": decision.message, "agent_message": decision.message}

    def failure(self, event: str | None, why: str) -> Failure:
        """A deny on stdout and exit 2: Cursor blocks on either (and on any failure, with `failClosed`)."""
        message = f"approval-server could not decide ({why}), so the action was denied."
        return Failure({"permission": "deny", "user_message": message, "agent_message": message}, message, 2)

    def connect(self, target: Target) -> Plan:
        from approval_server.agents.setup import Plan, json_text, read_json_object, set_hooks

        path = hooks_file()
        config = read_json_object(path)
        config.setdefault("version", 1)
        hooks = config.setdefault("hooks", {})
        entry = {"command": target.hook_command(self.kind), "timeout": target.hook_timeout, "failClosed": True}
        set_hooks(hooks, "preToolUse", [entry], lambda item: item.get("command") if isinstance(item, dict) else None)
        lines = [
            "Cursor asks approval-server before every tool call (preToolUse), failing closed.",
            "Not verified with Cursor itself (it cannot run here): see docs/agents/cursor.md.",
            "A repository's .cursor/hooks.json outranks this user-level file when the two answers differ; only "
            "Cursor's enterprise hooks file outranks a project's.",
        ]
        return Plan({path: json_text(config)}, lines)

    def doctor(self, target: Target | None, ok: Report, problem: Report, note: Report) -> None:
        from approval_server.agents.setup import is_ours, read_json_object

        path = hooks_file()
        try:
            hooks = read_json_object(path).get("hooks")
        except ConfigError as exc:
            problem(f"Cursor: {exc}")
            return
        entries = hooks.get("preToolUse") if isinstance(hooks, dict) else None
        ours = [item for item in entries or [] if isinstance(item, dict) and is_ours(item.get("command"))]
        if not ours:
            return
        if all(item.get("failClosed") is True for item in ours):
            ok(f"Cursor: {path} asks approval-server before every tool call, failing closed")
        else:
            problem(f"Cursor: {path} has an approval-server hook that fails open: run  approval-server connect cursor")
        note("Cursor: a repository's .cursor/hooks.json outranks the user-level hook (docs/agents/cursor.md)")

    def guarded_paths(self) -> list[Path]:
        return [hooks_file()]


AGENT = CursorHook()
