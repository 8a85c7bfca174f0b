"""OpenCode (`opencode-ai`): a `permission.asked` event of `opencode serve` turned into a tool call, and a decision
turned into the reply OpenCode takes on `POST /permission/{id}/reply`.

OpenCode has no hook that can answer (observed with 1.18.33: the plugin hook `permission.ask` is never called, and
`opencode run` rejects every ask itself). Its server publishes each ask on its event stream and waits for a reply
as long as it takes; `approval-server bridge opencode` (`opencode_bridge`) listens there, posts each ask to
`/api/hook/opencode` as `{"type": "permission.asked", "properties": {…}, "directory": …, "worktree": …}` (the
event, and the instance's folders from OpenCode's `GET /path`), and replies with what it gets back.

An ask is for a permission, not a tool (observed payloads in docs/agents/opencode.md). They are translated so that
the policy's rules for the same action apply:

- `bash` → `Bash` {command, …}; `edit` (asked by OpenCode's edit, write and patch tools alike, with the whole diff
  and never the new text) → `Edit` {file_path, diff}; `webfetch` → `WebFetch`; `websearch` → `WebSearch`; `glob`,
  `grep`, `todowrite` → `Glob`, `Grep`, `TodoWrite`; `read` → `Read` {file_path} (OpenCode names the file relative
  to the worktree).
- `external_directory` is asked before a tool touches a folder outside the project. Asked for a shell command it
  carries the whole command, and it *is* that command's question: `Bash` {command, directories, patterns}, so the
  policy decides it as it decides the command (the bridge then answers the `bash` ask OpenCode makes next for the
  same call and command with the same allow, rather than asking again). Asked for a file tool it is `Read`
  {file_path, parentDir}: the access it grants; a write asks again with its diff. Either way the request's client
  says `external_directory permission`, so the approver sees what was asked.
- Any other permission keeps its own name (an MCP tool's is `<server>_<tool>`, which cannot be split reliably), with
  OpenCode's metadata and the patterns asked for as its input; the policy asks a human unless a rule names it.

The reply is `once` or `reject` with the reason. Never `always`: OpenCode would stop asking for the ask's `always`
patterns (`*` for every edit), so a remembered answer is the server's grant instead. An approver's edit cannot be
applied (OpenCode runs what it asked about), so requests are not editable.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from approval_server import strict_json
from approval_server.agents import AgentHook, Question
from approval_server.decision import Decision
from approval_server.models import JSONObject, ToolCall

if TYPE_CHECKING:
    from approval_server.agents.setup import Plan, Report, Target

KIND = "opencode"
EVENT = "permission.asked"
# OpenCode's permission → the canonical tool, for those whose metadata is already that tool's input.
# The second item: the key it must hold as a string (None: none needed).
SAME_INPUT: dict[str, tuple[str, str | None]] = {
    "webfetch": ("WebFetch", "url"),
    "websearch": ("WebSearch", "query"),
    "glob": ("Glob", "pattern"),
    "grep": ("Grep", "pattern"),
    "todowrite": ("TodoWrite", None),
}


class ToolRef(BaseModel):
    model_config = ConfigDict(extra="allow")

    messageID: str | None = None  # OpenCode's names
    callID: str | None = None


class Ask(BaseModel):
    """The `properties` of a `permission.asked` event (OpenCode's `PermissionRequest`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    sessionID: str = Field(min_length=1)
    permission: str = Field(min_length=1, max_length=200)
    patterns: list[str] = Field(default_factory=list)
    metadata: JSONObject = Field(default_factory=dict)
    always: list[str] = Field(default_factory=list)
    tool: ToolRef | None = None


class AskEvent(BaseModel):
    """What the bridge posts: the event, and the folders of the OpenCode instance that asked."""

    model_config = ConfigDict(extra="allow")

    type: Literal["permission.asked"]
    properties: Ask
    directory: str | None = None
    worktree: str | None = None


def _absolute(value: str | None, name: str) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError(f"{name} {value!r} is not an absolute path")
    return value


def _needs(metadata: JSONObject, key: str, permission: str) -> str:
    value = metadata.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"an ask for {permission!r} without metadata.{key}: nothing to show the approver")
    return value


def canonical(ask: Ask, worktree: str | None) -> tuple[str, JSONObject]:
    """The tool name and input the approver and the policy see for an ask (see the module's docstring)."""
    metadata = dict(ask.metadata)
    permission = ask.permission
    if permission == "bash" or (permission == "external_directory" and "command" in metadata):
        command = _needs(metadata, "command", permission)
        return "Bash", {"command": command, **metadata}
    if permission == "external_directory":
        path = _needs(metadata, "filepath", permission)
        del metadata["filepath"]
        return "Read", {"file_path": path, **metadata}
    if permission == "edit":
        path = _needs(metadata, "filepath", permission)
        del metadata["filepath"]
        return "Edit", {"file_path": path, **metadata}
    if permission == "read" and worktree and len(ask.patterns) == 1 and not ask.patterns[0].startswith("mcp:"):
        return "Read", {"file_path": posixpath.normpath(posixpath.join(worktree, ask.patterns[0])), **metadata}
    if permission in SAME_INPUT:
        tool, required = SAME_INPUT[permission]
        if required is None or isinstance(metadata.get(required), str):
            return tool, metadata
    return permission, {"patterns": ask.patterns, **metadata}


def parse_event(payload: Any) -> Question:
    """The question in a posted `permission.asked` event. Raises `ValueError` with a readable message."""
    where = strict_json.problem(payload)
    if where is not None:
        raise ValueError(f"not JSON: {where}")
    try:
        event = AskEvent.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"not an OpenCode permission.asked event ({problems})") from None
    directory = _absolute(event.directory, "directory")
    worktree = _absolute(event.worktree, "worktree")
    ask = event.properties
    tool_name, tool_input = canonical(ask, worktree)
    extra: JSONObject = {"type": event.type, **ask.model_dump(exclude={"metadata"}, exclude_none=True)}
    extra |= {key: value for key, value in (("directory", directory), ("worktree", worktree)) if value is not None}
    call = ToolCall(
        tool_name=tool_name,
        input=tool_input,
        tool_use_id=ask.tool.callID if ask.tool else None,
        extra=extra,
        session=ask.sessionID,
        cwd=directory,
        agent_kind=KIND,
    )
    return Question(call, ask.permission)


class OpenCodeHook(AgentHook):
    kind = KIND
    title = "OpenCode"
    takes_edits = False
    packages = ("opencode-ai",)

    def parse(self, payload: Any) -> Question:
        return parse_event(payload)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        """`once` for an allow, `reject` with the reason (which OpenCode hands the model) for a deny."""
        if decision.behavior == "allow":
            return {"reply": "once"}
        return {"reply": "reject", "message": decision.message or "denied by approval-server"}

    def client(self, event: str, version: str | None) -> str:
        return f"{self.title}{f' {version}' if version else ''}, {event} permission"

    def connect(self, target: Target) -> Plan:
        from approval_server.agents.opencode_setup import plan  # the HTTP client and checks load only here

        return plan(target)

    def doctor(self, target: Target | None, ok: Report, problem: Report, note: Report) -> None:
        from approval_server.agents.opencode_setup import doctor

        doctor(ok, problem, note)

    def guarded_paths(self) -> list[Path]:
        from approval_server.agents.opencode_setup import guarded_paths

        return guarded_paths()

    def bridge(self) -> Callable[..., None]:
        from approval_server.agents.opencode_bridge import bridge

        return bridge


AGENT = OpenCodeHook()
