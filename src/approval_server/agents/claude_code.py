"""Claude Code's hooks: a hook's input turned into a tool call, and a decision turned into the hook's output.

Hooks let interactive sessions use the same approvals: `approval-server hook` (a `command` hook) posts the hook's
stdin to `/api/hook` (or an `http` hook does it itself); headless sessions ask the MCP tool (`mcp_tool`). Two
events are understood (observed with Claude Code 2.1.328, see docs/hooks.md):

- `PermissionRequest` fires only when Claude Code would ask the user; its answer is
  `{"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow", …}}}`.
- `PreToolUse` fires for every tool use; its answer is
  `{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow" | "deny", …}}`.

An allow always carries the input as recorded and shown (or the approver's edit) as `updatedInput`, as the
permission tool does, so what runs is what was approved. A `PermissionRequest` allow "for the session" also carries
`updatedPermissions` (Claude Code honours it there, observed with 2.1.328); `PreToolUse` has no such field, so the
server's grant answers the repeats.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from approval_server import strict_json
from approval_server.agents import AgentHook, Failure, Question
from approval_server.decision import Decision
from approval_server.models import JSONObject, ToolCall

if TYPE_CHECKING:
    from approval_server.agents.setup import Plan, Target

HookEvent = Literal["PreToolUse", "PermissionRequest"]
KIND = "claude-code"


class HookInput(BaseModel):
    """The fields of a hook's stdin this server uses; the rest is kept in the record's `extra`."""

    model_config = ConfigDict(extra="allow")

    hook_event_name: HookEvent
    tool_name: str = Field(min_length=1)
    tool_input: JSONObject
    tool_use_id: str | None = None
    session_id: str | None = None
    cwd: str | None = None


def parse_hook_input(payload: Any, agent: str | None = None) -> tuple[HookEvent, ToolCall]:
    """The event and the tool call in a hook's input. `tool_input` may be a JSON string (an `mcp_tool` hook's
    `${tool_input}` is interpolated as one). Raises `ValueError` with a readable message."""
    where = strict_json.problem(payload)
    if where is not None:
        raise ValueError(f"not JSON: {where}")
    if isinstance(payload, dict) and isinstance(payload.get("tool_input"), str):
        try:
            payload = payload | {"tool_input": strict_json.loads(payload["tool_input"])}
        except strict_json.NotJSON as exc:
            raise ValueError(f"tool_input is a string that is not JSON ({exc})") from None
        except (ValueError, RecursionError):
            raise ValueError("tool_input is a string that is not JSON") from None
    try:
        hook = HookInput.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"not a PreToolUse or PermissionRequest hook input ({problems})") from None
    if hook.cwd is not None and not hook.cwd.startswith("/"):
        raise ValueError(f"cwd {hook.cwd!r} is not an absolute path")
    extra = {"hook_event_name": hook.hook_event_name, **(hook.model_extra or {})}
    call = ToolCall(
        tool_name=hook.tool_name,
        input=hook.tool_input,
        tool_use_id=hook.tool_use_id,
        extra=extra,
        client=f"Claude Code, {hook.hook_event_name} hook",
        agent=agent,
        session=hook.session_id,
        cwd=hook.cwd,
        agent_kind=KIND,
    )
    return hook.hook_event_name, call


def hook_output(event: HookEvent, decision: Decision) -> JSONObject:
    """What the hook prints for `decision`."""
    if event == "PermissionRequest":
        return {"hookSpecificOutput": {"hookEventName": event, "decision": decision.to_json()}}
    output: JSONObject = {"hookEventName": event, "permissionDecision": decision.behavior}
    if decision.behavior == "allow":
        output |= {
            "permissionDecisionReason": "approved through approval-server",
            "updatedInput": decision.updated_input,
        }
    else:
        output["permissionDecisionReason"] = decision.message
    return {"hookSpecificOutput": output}


def failure_output(event: HookEvent | None, why: str) -> JSONObject | None:
    """The deny a hook prints when it cannot get an answer; None when the event is not known (then exit 2)."""
    if event is None:
        return None
    return hook_output(event, Decision.deny(f"approval-server could not decide ({why}), so the action was denied."))


class ClaudeCodeHook(AgentHook):
    kind = KIND
    title = "Claude Code"
    takes_edits = True
    packages = ("@anthropic-ai/claude-code",)

    def parse(self, payload: Any) -> Question:
        event, call = parse_hook_input(payload)
        return Question(call, event)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        event: HookEvent = "PermissionRequest" if question.event == "PermissionRequest" else "PreToolUse"
        return hook_output(event, decision)

    def connect(self, target: Target) -> Plan:
        from approval_server.agents.claude_code_setup import plan  # the MCP client and checks load only here

        return plan(target)

    def guarded_paths(self) -> list[Path]:
        """The user's own Claude Code settings, which `--setting-sources user` still loads: a rule written there
        (`permissions.allow`) would let a call run unasked."""
        return [Path.home() / ".claude" / "settings.json", Path.home() / ".claude.json"]

    def failure(self, event: str | None, why: str) -> Failure:
        """A deny Claude Code reads as one; exit 2 (which blocks) when the event is not known. Exit 1 would let the
        call run."""
        known: HookEvent | None = event if event in ("PreToolUse", "PermissionRequest") else None  # type: ignore[assignment]
        output = failure_output(known, why)
        if output is None:
            return super().failure(event, why)
        return Failure(output, "", 0)


AGENT = ClaudeCodeHook()
