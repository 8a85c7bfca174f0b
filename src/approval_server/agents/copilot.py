"""GitHub Copilot CLI's `preToolUse` hook, in the user-level `~/.copilot/settings.json`.

Observed with Copilot CLI 1.0.102 run offline against a local model API (tests/e2e/test_copilot.py,
docs/agents/copilot.md):

- Input (camelCase event names): `{"sessionId", "timestamp", "cwd", "toolName", "toolArgs"}`, for every tool call,
  whatever `--allow-all-tools` / `--yolo` say. User-level hooks run first, in order, each seeing the arguments an
  earlier one changed; the first deny ends the call, so a later (repository) hook's allow cannot undo it.
- Answer: `{"permissionDecision": "allow" | "deny", "permissionDecisionReason", "modifiedArgs"}`. An allow runs the
  call without Copilot's own prompt, with `modifiedArgs` in place of the arguments: an approver's edit runs.
- Exit 1 or 2 denies; no output, output that is not JSON and a hook killed at its `timeoutSec` decide nothing, and
  Copilot's own rules go on (with `--yolo` the call runs): the hook command always prints a decision.

`permissionRequest` is not used: a repository's `preToolUse` allow skips it, and a later `permissionRequest` hook's
allow overrides its deny (both observed). A `permissionRequest` payload is refused, which the hook command turns
into a deny that Copilot reads as one under either event.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approval_server import strict_json
from approval_server.agents import AgentHook, Failure, Question, canonical
from approval_server.decision import Decision
from approval_server.errors import ConfigError
from approval_server.models import JSONObject, ToolCall

if TYPE_CHECKING:
    from approval_server.agents.setup import Plan, Report, Target

EVENT = "preToolUse"
# Copilot's tools → Claude Code's names and input keys, so one policy file decides for both. Every other key stays.
TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "bash": ("Bash", {}),
    "view": ("Read", {"path": "file_path"}),
    "create": ("Write", {"path": "file_path", "file_text": "content"}),
    "edit": ("Edit", {"path": "file_path", "old_str": "old_string", "new_str": "new_string"}),
    "grep": ("Grep", {"paths": "path"}),
    "glob": ("Glob", {"paths": "path"}),
    "web_fetch": ("WebFetch", {}),
}
TRUST_RISK = (
    "a folder Copilot trusts (its trust prompt, --trust-folder, COPILOT_ALLOW_ALL=true) can switch this hook off "
    "with disableAllHooks in its .github/copilot/settings.json, and runs hooks of its own: docs/agents/copilot.md"
)


def copilot_home() -> Path:
    """Where Copilot keeps its user settings: `$COPILOT_HOME`, else `~/.copilot`."""
    home = os.environ.get("COPILOT_HOME")
    return Path(home) if home else Path.home() / ".copilot"


def settings_file() -> Path:
    return copilot_home() / "settings.json"


def _common(tool: str, args: JSONObject) -> tuple[str, JSONObject]:
    """Claude Code's name and keys for a Copilot tool. The tool keeps its own name and keys when one of Claude Code's
    keys is there already (`{"path": …, "file_path": …}`: which one Copilot uses, the policy must not guess) or
    `paths` lists several folders (Grep and Glob search one)."""
    if tool not in TOOLS or isinstance(args.get("paths"), list):
        return tool, args
    name, keys = TOOLS[tool]
    if any(new in args for new in keys.values()):
        return tool, args
    return name, canonical(args, keys)


def _copilot_args(tool: str, shown_as: str, tool_input: JSONObject) -> JSONObject | None:
    """The arguments Copilot is to run for an allow of `tool_input` (in Claude Code's keys when `shown_as` is Claude
    Code's name); None when an approver's edit holds one of Copilot's keys as well."""
    if tool not in TOOLS or TOOLS[tool][0] != shown_as:
        return tool_input
    keys = TOOLS[tool][1]
    if any(old in tool_input for old in keys):
        return None
    return canonical(tool_input, {new: old for old, new in keys.items()})


class CopilotHook(AgentHook):
    kind = "copilot"
    title = "Copilot CLI"
    takes_edits = True  # `modifiedArgs` replaces the arguments (observed)
    # The native binary that runs the hook belongs to its platform's package.
    packages = (
        "@github/copilot",
        *(
            f"@github/copilot-{platform}"
            for platform in (
                "linux-x64",
                "linux-arm64",
                "linuxmusl-x64",
                "linuxmusl-arm64",
                "darwin-x64",
                "darwin-arm64",
                "win32-x64",
                "win32-arm64",
            )
        ),
    )

    def parse(self, payload: Any) -> Question:
        where = strict_json.problem(payload)
        if where is not None:
            raise ValueError(f"not JSON: {where}")
        if not isinstance(payload, dict):
            raise ValueError("not a Copilot CLI preToolUse hook input (not a JSON object)")
        if payload.get("hookName", EVENT) != EVENT or "hook_event_name" in payload:
            event = payload.get("hookName") or payload.get("hook_event_name")
            raise ValueError(
                f"a Copilot CLI {event} hook input: only preToolUse is asked (approval-server connect copilot)"
            )
        tool, args = payload.get("toolName"), payload.get("toolArgs")
        if not isinstance(tool, str) or not tool:
            raise ValueError("not a Copilot CLI preToolUse hook input (no toolName)")
        if not isinstance(args, dict):
            raise ValueError(f"toolArgs of {tool} is not a JSON object")
        cwd, session = payload.get("cwd"), payload.get("sessionId")
        if cwd is not None and not (isinstance(cwd, str) and cwd.startswith("/")):
            raise ValueError(f"cwd {cwd!r} is not an absolute path")
        name, tool_input = _common(tool, args)
        call = ToolCall(
            tool_name=name,
            input=tool_input,
            extra={key: value for key, value in payload.items() if key != "toolArgs"},
            session=session if isinstance(session, str) else None,
            cwd=cwd,
        )
        return Question(call, EVENT)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        if decision.behavior == "deny":
            return {"permissionDecision": "deny", "permissionDecisionReason": decision.message}
        call = question.call
        tool_input = call.input if decision.updated_input is None else decision.updated_input
        args = _copilot_args(str(call.extra.get("toolName")), call.tool_name, tool_input)
        if args is None:
            message = "The edited input names a key both as Copilot CLI and as Claude Code call it, so it was denied."
            return {"permissionDecision": "deny", "permissionDecisionReason": message}
        reason = "approved through approval-server"
        return {"permissionDecision": "allow", "permissionDecisionReason": reason, "modifiedArgs": args}

    def failure(self, event: str | None, why: str) -> Failure:
        """A deny in both of Copilot's answer formats (preToolUse's and permissionRequest's, whichever event runs the
        hook), and exit 2, which Copilot reads as a deny under either even without the JSON."""
        message = f"approval-server could not decide ({why}), so the action was denied."
        deny = {"permissionDecision": "deny", "permissionDecisionReason": message, "behavior": "deny"}
        return Failure(deny | {"message": message}, message, 2)

    def connect(self, target: Target) -> Plan:
        from approval_server.agents.setup import Plan, json_text, read_json_object, set_hooks

        path = settings_file()
        config = read_json_object(path)
        hooks = config.setdefault("hooks", {})
        if not isinstance(hooks, dict) or not isinstance(hooks.get(EVENT, []), list):
            raise ConfigError(f"{path}: `hooks.{EVENT}` is not a list of hooks: fix or move it, then run connect again")
        entry = {"type": "command", "bash": target.hook_command(self.kind), "timeoutSec": target.hook_timeout}
        set_hooks(hooks, EVENT, [entry], _command_of)  # last: it sees, and approves, the arguments that will run
        lines = [
            f"Copilot CLI asks approval-server before every tool call (preToolUse hook in {path}), also with "
            "--allow-all-tools or --yolo; a hook that fails denies.",
            "Start it as usual:  copilot   or   copilot -p 'your prompt'",
            f"Careful: {TRUST_RISK}. In prompt mode, leave out --trust-folder and COPILOT_ALLOW_ALL=true.",
        ]
        if config.get("disableAllHooks", False) is not False:
            del config["disableAllHooks"]
            lines.append(f"disableAllHooks was set in {path}: removed, or no hook would run.")
        return Plan({path: json_text(config)}, lines)

    def doctor(self, target: Target | None, ok: Report, problem: Report, note: Report) -> None:
        from approval_server.agents.setup import read_json_object

        path = settings_file()
        try:
            config = read_json_object(path)
        except ConfigError as exc:
            problem(f"Copilot CLI: {exc}")
            return
        hooks = config.get("hooks")
        entries = hooks.get(EVENT) if isinstance(hooks, dict) else None
        ours = [item for item in entries or [] if _is_ours(item)]
        if not ours:
            return
        timeout = min(_seconds(item.get("timeoutSec", item.get("timeout", 30))) for item in ours)
        if config.get("disableAllHooks") is True:
            problem(f"Copilot CLI: {path} says disableAllHooks, so no hook runs: run  approval-server connect copilot")
        elif target is not None and timeout < target.hook_timeout:
            problem(
                f"Copilot CLI: the hook's timeoutSec ({timeout:g} s) is shorter than the expiry and its margin "
                f"({target.hook_timeout} s): a call Copilot stops waiting for is not denied, it goes to Copilot's own "
                "rules (with --yolo it runs). Run  approval-server connect copilot"
            )
        else:
            ok(f"Copilot CLI: {path} asks approval-server before every tool call")
        trusted = _trusted_folders(copilot_home() / "config.json")
        if trusted:
            note(
                f"Copilot CLI trusts {len(trusted)} folder(s) ({', '.join(trusted[:3])}{', …' if trusted[3:] else ''})"
            )
        note(f"Copilot CLI: {TRUST_RISK}")

    def guarded_paths(self) -> list[Path]:
        """All of Copilot's user folder (its settings and hooks, `config.json`'s trusted folders, the plugins that
        bring hooks) and the cache its binary runs its own code from, unchecked (observed): a change to any of them
        would switch the gate off for the next session."""
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "copilot"
        extra = [os.environ.get(name) for name in ("COPILOT_CACHE_HOME", "COPILOT_PKG_CACHE_HOME")]
        return [copilot_home(), Path.home() / ".copilot", cache, *(Path(value) for value in extra if value)]


def _command_of(item: Any) -> Any:
    return (item.get("bash") or item.get("command")) if isinstance(item, dict) else None


def _is_ours(item: Any) -> bool:
    from approval_server.agents.setup import is_ours

    return is_ours(_command_of(item))


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _trusted_folders(path: Path) -> list[str]:
    """`trustedFolders` in Copilot's own `config.json` (JSON after `//` comment lines); [] when it cannot be read."""
    try:
        text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("//"))
        folders = json.loads(text).get("trustedFolders")
    except (OSError, ValueError, AttributeError):
        return []
    return [str(folder) for folder in folders] if isinstance(folders, list) else []


AGENT = CopilotHook()
