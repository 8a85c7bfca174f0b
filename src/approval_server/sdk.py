"""Route a Claude Agent SDK application's permission questions to approval-server.

    from claude_agent_sdk import ClaudeAgentOptions
    from approval_server.sdk import can_use_tool

    options = ClaudeAgentOptions(can_use_tool=can_use_tool(agent="release-bot"))

Every question goes to the running server (`/api/hook/claude-agent-sdk`) and waits for its answer, with the same
semantics as the permission tool: an allow carries the input as shown (or as the approver edited it), a deny its
message, an allow "for the session" the rule the SDK adds to its session. Any failure is a deny that says why.
Needs `pip install 'approval-server[sdk]'`.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
from claude_agent_sdk import (
    PermissionResult,
    PermissionResultAllow,
    PermissionResultDeny,
    PermissionUpdate,
    ToolPermissionContext,
)
from claude_agent_sdk import __version__ as sdk_version
from claude_agent_sdk.types import CanUseTool, PermissionRuleValue

from approval_server.entry.client_config import load_client_settings
from approval_server.entry.security import load_tokens
from approval_server.models import check_agent_name

MARGIN_SECONDS = 30  # past the server's expiry, by which its own deny has come


def _updates(answer: dict[str, Any]) -> list[PermissionUpdate] | None:
    updates = answer.get("updatedPermissions")
    if not updates:
        return None
    return [
        PermissionUpdate(
            type=update["type"],
            rules=[PermissionRuleValue(rule["toolName"], rule.get("ruleContent")) for rule in update["rules"]],
            behavior=update["behavior"],
            destination=update["destination"],
        )
        for update in updates
    ]


def _result(answer: Any) -> PermissionResult:
    if isinstance(answer, dict) and answer.get("behavior") == "allow" and isinstance(answer.get("updatedInput"), dict):
        return PermissionResultAllow(updated_input=answer["updatedInput"], updated_permissions=_updates(answer))
    if isinstance(answer, dict) and answer.get("behavior") == "deny" and isinstance(answer.get("message"), str):
        return PermissionResultDeny(message=answer["message"])
    return PermissionResultDeny(message="approval-server gave an answer that is not one, so the action was denied.")


def can_use_tool(
    url: str | None = None,
    token: str | None = None,
    *,
    agent: str | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
) -> CanUseTool:
    """A `can_use_tool` callback that asks approval-server. `url` and `token` (the MCP token) default to what
    `approval-server serve` or `login` wrote for this user; `agent` names the application in the record and the
    policy; `cwd` is the agent's working directory (default: this process's). One callback is one session: "allow
    for the session" applies to the calls it is asked again."""
    check_agent_name(agent)
    if url is None or token is None:
        settings = load_client_settings(url=url, for_agent=True)
        url = url or settings.url
        token = token or load_tokens(settings)[0].mcp
        timeout = timeout or settings.approval_timeout_seconds + MARGIN_SECONDS
    headers = {"Authorization": f"Bearer {token}", "X-Agent-Version": sdk_version}
    if agent:
        headers["X-Agent-Name"] = agent
    session = uuid.uuid4().hex
    where = os.path.abspath(cwd or os.getcwd())
    wait = timeout or 300 + MARGIN_SECONDS

    async def ask(tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext) -> PermissionResult:
        question = {
            "tool_name": tool_name,
            "tool_input": tool_input,
            "tool_use_id": context.tool_use_id,
            "session_id": session,
            "cwd": where,
            "agent_id": context.agent_id,
        }
        try:
            async with httpx.AsyncClient(timeout=wait, trust_env=False) as http:
                response = await http.post(f"{url}/api/hook/claude-agent-sdk", json=question, headers=headers)
            response.raise_for_status()
            return _result(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            return PermissionResultDeny(message=f"approval-server could not decide ({why}), so the action was denied.")

    return ask
