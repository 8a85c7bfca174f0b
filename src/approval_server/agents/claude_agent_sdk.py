"""The Claude Agent SDK's permission callback (`can_use_tool`), asked through `approval_server.sdk`.

The SDK drives the `claude` binary with `--permission-prompt-tool stdio` and calls the application's `can_use_tool`
wherever Claude Code would ask the user. `approval_server.sdk.can_use_tool` posts each question here as
`{tool_name, tool_input, tool_use_id, session_id, cwd, agent_id}` and turns the answer, Claude Code's own permission
result, back into the SDK's `PermissionResultAllow` / `PermissionResultDeny`: edited inputs and "allow for the
session" work as they do for the permission tool.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from approval_server import strict_json
from approval_server.agents import AgentHook, Question
from approval_server.decision import Decision
from approval_server.models import JSONObject, ToolCall

EVENT = "can_use_tool"


class SdkQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_name: str = Field(min_length=1)
    tool_input: JSONObject
    tool_use_id: str | None = None
    session_id: str | None = None
    cwd: str | None = None
    agent_id: str | None = None  # a subagent's id, when a subagent asks


class ClaudeAgentSdk(AgentHook):
    kind = "claude-agent-sdk"
    title = "Claude Agent SDK"
    takes_edits = True

    def parse(self, payload: Any) -> Question:
        where = strict_json.problem(payload)
        if where is not None:
            raise ValueError(f"not JSON: {where}")
        try:
            asked = SdkQuestion.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"not a can_use_tool question ({problems})") from None
        if asked.cwd is not None and not asked.cwd.startswith("/"):
            raise ValueError(f"cwd {asked.cwd!r} is not an absolute path")
        call = ToolCall(
            tool_name=asked.tool_name,
            input=asked.tool_input,
            tool_use_id=asked.tool_use_id,
            extra={"agent_id": asked.agent_id} if asked.agent_id else {},
            session=asked.session_id,
            cwd=asked.cwd,
        )
        return Question(call, EVENT)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        return decision.to_json()

    def client(self, event: str, version: str | None) -> str:
        return f"{self.title}{f' {version}' if version else ''}, can_use_tool"


AGENT = ClaudeAgentSdk()
