"""Remembered allowances: "allow this again for the rest of the session" and "allow this for 30 minutes".

An approver's allow can carry a `Remember`. The request is allowed, and a `Grant` is recorded: later calls with the
same `Pattern` from the same scope are allowed with no human until the grant ends or is revoked.

- "the same again" is the same Bash command (exactly), the same file for the file tools, the same host for
  WebFetch (as the agent's runtime reads it, and only when no parser reads another: see `weburl`), and the same
  input for any other tool and any other URL. Nothing broader: the approver saw one command.
- a session grant's scope is the agent session: the hook's `session_id`, or over MCP (where every call is a
  connection of its own) the agent's name and working directory. It also goes back to Claude Code as
  `updatedPermissions`, where a rule of Claude Code's says exactly the same (Bash commands), so Claude Code stops
  asking by itself. A temporary grant (`ALLOW <id> 30m`) covers the agent's name, whichever session asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from approval_server.models import ApprovalRequest, GrantKind, JSONObject, Remember, ToolCall, new_request_id
from approval_server.weburl import web_host

# Claude Code gives no signal when a session ends; a session grant ends after a long working day at the latest.
SESSION_LIFETIME = timedelta(hours=24)
_FILE_TOOLS = {
    "Read": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "Write": "file_path",
    "NotebookEdit": "notebook_path",
}


@dataclass(frozen=True)
class Pattern:
    """What "the same again" means for one tool call."""

    key: str  # equal keys (for one tool) are the same again
    rule: str  # the same, in Claude Code's rule syntax, as people read it
    claude_rule: JSONObject | None  # the rule Claude Code itself is given, where one says exactly this
    same: str  # "the same again" in a few words, beside a request that shows the call in full


def pattern_for(tool_name: str, tool_input: JSONObject) -> Pattern:
    if tool_name == "Bash" and isinstance(command := tool_input.get("command"), str):
        claude_rule = {"toolName": "Bash", "ruleContent": command}
        return Pattern(command, f"Bash({command})", claude_rule, "this exact command")
    field = _FILE_TOOLS.get(tool_name)
    if field and isinstance(path := tool_input.get(field), str) and path.startswith("/"):
        # An absolute path is written `//path` in Claude Code's rules (`/path` is relative to the settings file).
        return Pattern(path, f"{tool_name}(/{path})", None, f"{tool_name} on this file")
    exact = json.dumps(tool_input, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if tool_name == "WebFetch":
        web = web_host(tool_input.get("url"))
        if web.host is not None:
            return Pattern(web.host, f"WebFetch(domain:{web.host})", None, f"WebFetch from {web.host}")
        return Pattern(
            exact, "WebFetch with exactly this input", None, f"this exact call (not its host: {web.explanation})"
        )
    return Pattern(exact, f"{tool_name} with exactly this input", None, "this exact call")


def session_scope(agent: str | None, session: str | None, cwd: str | None) -> str | None:
    """The agent session a call belongs to, or None when nothing identifies it (an unnamed agent over MCP)."""
    if session:
        return f"session:{session}"
    if agent or cwd:
        return "agent+cwd:" + json.dumps([agent, cwd])
    return None


def agent_scope(agent: str | None) -> str:
    return f"agent:{agent or ''}"


def scopes_for(call: ToolCall) -> list[str]:
    """Every scope whose grants may allow `call`."""
    session = session_scope(call.agent, call.session, call.cwd)
    return [agent_scope(call.agent), *([session] if session else [])]


@dataclass(frozen=True)
class Grant:
    id: str
    kind: GrantKind
    scope: str
    tool_name: str
    key: str
    rule: str
    request_id: str
    agent: str | None
    session: str | None
    cwd: str | None
    created_at: datetime
    expires_at: datetime
    created_by: str
    created_via: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @classmethod
    def for_request(
        cls, row: ApprovalRequest, remember: Remember, actor: str, channel: str, at: datetime
    ) -> Grant | None:
        """The grant an allow with `remember` makes, or None when no scope identifies the agent's session."""
        pattern = pattern_for(row.tool_name, row.effective_input)
        if remember.duration is None:
            scope = session_scope(row.agent, row.session, row.cwd)
            lifetime = SESSION_LIFETIME
        else:
            scope, lifetime = agent_scope(row.agent), remember.duration
        if scope is None:
            return None
        return cls(
            id=new_request_id(),
            kind=remember.kind,
            scope=scope,
            tool_name=row.tool_name,
            key=pattern.key,
            rule=pattern.rule,
            request_id=row.id,
            agent=row.agent,
            session=row.session if remember.kind == "session" else None,
            cwd=row.cwd if remember.kind == "session" else None,
            created_at=at,
            expires_at=at + lifetime,
            created_by=actor,
            created_via=channel,
        )

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    @property
    def label(self) -> str:
        """How a decision made by this grant is recorded (`decided_by`)."""
        return f"grant {self.id} allow {self.rule}"

    @property
    def reason(self) -> str:
        """Why a request this grant allowed was allowed (`reason`)."""
        return f"allowed again: {self.created_by} allowed the same via {self.created_via} (request {self.request_id})"

    @property
    def covers(self) -> str:
        """Who this grant allows, in words."""
        agent = f"agent {self.agent}" if self.agent else "unnamed agents"
        if self.kind == "timed":
            return agent
        if self.session:
            return f"session {self.session}"
        return f"{agent} in {self.cwd}" if self.cwd else agent

    def to_json(self) -> JSONObject:
        return {
            "id": self.id,
            "kind": self.kind,
            "tool_name": self.tool_name,
            "rule": self.rule,
            "covers": self.covers,
            "request_id": self.request_id,
            "agent": self.agent,
            "session": self.session,
            "cwd": self.cwd,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "created_by": self.created_by,
            "created_via": self.created_via,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
        }


def session_pattern(row: ApprovalRequest) -> Pattern | None:
    """What "allow for session" would remember for a pending request, or None when nothing could."""
    pattern = pattern_for(row.tool_name, row.input)
    if session_scope(row.agent, row.session, row.cwd) or pattern.claude_rule is not None:
        return pattern
    return None


def remembered_text(row: ApprovalRequest, grants: list[Grant]) -> str | None:
    """What an allow remembered, in a sentence for the approver; None when it remembered nothing."""
    if row.remembered is None:
        return None
    pattern = pattern_for(row.tool_name, row.effective_input)
    if grants:
        grant = grants[0]
        until = f"until {grant.expires_at:%H:%M} UTC" if grant.kind == "timed" else "for up to 24 hours"
        return (
            f"{grant.rule} is allowed again for {grant.covers}, {until} (grant {grant.id}: revoke it on the dashboard)."
        )
    if pattern.claude_rule is not None:
        return f"Claude Code allows {pattern.rule} again for the rest of its session."
    return (
        "Nothing could remember it: the agent has no name, directory or session to remember it for "
        "(name it in the MCP config, see the README)."
    )
