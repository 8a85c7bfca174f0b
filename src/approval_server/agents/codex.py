"""OpenAI Codex CLI's command hooks: `PermissionRequest` (the gate `connect codex` writes) and `PreToolUse`.

Observed with Codex CLI 0.169.0 (docs/agents/codex.md, tests/e2e/test_codex.py):

- Codex runs `PermissionRequest` hooks when a call needs approval: a command or patch that asks to leave the sandbox
  (`sandbox_permissions: "require_escalated"`, a write outside the writable folders, network). The input is Claude
  Code's shape: `tool_name` `Bash` with `tool_input` {command, description} (the model's justification), or
  `apply_patch` with {command: the patch}. The answer is `{"hookSpecificOutput": {"hookEventName":
  "PermissionRequest", "decision": {"behavior": "allow"}}}` or a deny with a `message`, which the model reads.
  `updatedInput` is reserved (a hook that sets it fails closed), so Codex runs the input as asked: no edits.
- `PreToolUse` hooks see every call, sandboxed or not, but can only deny: Codex treats `permissionDecision:
  "allow"` as unsupported and goes on as without a hook. So an allow is answered `{}` ("no objection"): the call
  continues through Codex's own approval (its sandbox; an escalation asks the PermissionRequest hook or its own
  reviewer), never as if the server had approved an escalation.
- A hook that exits 2 blocks the call with its stderr as the reason, for either event. Anything else without a
  verdict (exit 1, garbage, a hook killed at its timeout) hands the call to Codex's own reviewer (the model, under
  `exec --approve-for-me`), which may run it: the hook command therefore exits 2 whenever it has no answer (the
  default `failure`), and its wrapper does when the CLI itself cannot start (`Target.hook_command`).

`apply_patch` keeps its own name: one patch may add, delete, move and change several files, and Codex's parser is
lenient (trimmed markers, heredoc wrappers), so turning it into Claude Code's single-file `Edit`/`Write` would take a
second parser that agrees with Codex's in every case; a disagreement would let an `Edit(path)` rule approve a file
the patch does not name. The approver sees the whole patch; a policy decides it by rules naming `apply_patch`, and
self-protection reads every path in it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approval_server.agents import AgentHook, Question
from approval_server.agents.claude_code import parse_hook_input
from approval_server.decision import Decision
from approval_server.models import JSONObject

if TYPE_CHECKING:
    from approval_server.agents.setup import Plan, Report, Target

# npm installs the binary as `@openai/codex` version `0.169.0-linux-x64`: the platform is not the version.
_PLATFORM = re.compile(r"-(?:linux|darwin|win32)-(?:x64|arm64)$")


class CodexHook(AgentHook):
    kind = "codex"
    title = "Codex CLI"
    takes_edits = False
    packages = ("@openai/codex",)

    def parse(self, payload: Any) -> Question:
        """Codex's hook input is Claude Code's: the same fields and events, and `Bash` {command, description}
        already named as the policy names it; every key of the input is kept as it is."""
        event, call = parse_hook_input(payload)
        return Question(dataclasses.replace(call, client=None, agent_kind=self.kind), event)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        if question.event == "PermissionRequest":
            verdict: JSONObject = {"behavior": decision.behavior}  # never `updatedInput`: reserved, fails closed
            if decision.behavior == "deny":
                verdict["message"] = decision.message
            return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": verdict}}
        if decision.behavior == "allow":
            return {}  # PreToolUse cannot allow: no objection, Codex's own approval goes on
        output = {"hookEventName": "PreToolUse", "permissionDecision": "deny"}
        return {"hookSpecificOutput": output | {"permissionDecisionReason": decision.message}}

    def connect(self, target: Target) -> Plan:
        from approval_server.agents.codex_setup import plan  # runs `codex app-server`: loaded only here

        return plan(target)

    def doctor(self, target: Target | None, ok: Report, problem: Report, note: Report) -> None:
        from approval_server.agents.codex_setup import doctor

        doctor(target, ok, problem, note)

    def guarded_paths(self) -> list[Path]:
        """Codex's whole home folder: config.toml and hooks.json (the hook and its trust), the profiles
        (`<name>.config.toml`) and `rules/` (commands allowed without asking) all decide whether the hook runs."""
        from approval_server.agents.codex_setup import codex_home

        return [codex_home()]

    def client(self, event: str, version: str | None) -> str:
        return super().client(event, _PLATFORM.sub("", version) if version else version)


AGENT = CodexHook()
