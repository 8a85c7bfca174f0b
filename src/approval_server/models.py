"""The nouns of the domain: a tool call, the request that records it, an answer to it, and its status."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

JSONObject = dict[str, Any]

# No 0/o, 1/l/i: an id is read on a phone and may be typed back in a text reply.
_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


# An agent's name, as the owner gives it in the MCP config or to the hook: policy rules key on it.
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_agent_name(name: str | None) -> str | None:
    """`name` if it is a valid agent name (None stays None); raises `ValueError` otherwise."""
    if name is not None and not AGENT_NAME.match(name):
        raise ValueError(f"agent name {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'")
    return name or None


# An agent's version as its hook or MCP client reported it: shown, never trusted, so only a short plain word is kept.
AGENT_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")


def plain_version(version: str | None) -> str | None:
    """`version` if it is a short plain word, else None."""
    return version if version and AGENT_VERSION.match(version) else None


GrantKind = Literal["session", "timed"]
MAX_REMEMBER = timedelta(hours=24)
_DURATION = re.compile(r"^(\d{1,4})\s*(m|min|mins|minutes?|h|hr|hrs|hours?)$", re.IGNORECASE)


def new_request_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class Status(StrEnum):
    PENDING = "pending"
    ALLOWED = "allowed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class ToolCall:
    """What the agent asks permission for, exactly as it arrived."""

    tool_name: str
    input: JSONObject
    tool_use_id: str | None = None
    extra: JSONObject = field(default_factory=dict)
    client: str | None = None
    agent: str | None = None  # the name the owner gave the agent (X-Agent-Name, ?agent=)
    session: str | None = None  # one per Claude Code process: the MCP session, or the hook's session_id
    cwd: str | None = None  # the agent's working directory, when it is known
    credential: str | None = None  # the token the caller showed: "mcp" or "api" (None: called in-process)
    agent_kind: str | None = None  # which coding agent asks: "claude-code", "codex", … (see `agents`)
    agent_version: str | None = None  # its version, as read where it runs: shown, never trusted
    editable: bool = True  # whether the agent runs an input the approver edited


# What became of an answer, in words (the `outcome` of its row in the audit trail's `answers`).
OUTCOME_WORDS = {
    "applied": "applied",
    "too_late": "too late, it changed nothing",
    "not_delivered": "not delivered: its agent was no longer waiting, so it changed nothing",
    "handed_over": "handed to the server its agent waits on",
}


@dataclass(frozen=True)
class Remember:
    """What an approver asked to remember with an allow: the session, or a number of minutes."""

    kind: GrantKind
    duration: timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> Remember:
        """`session`, or a duration such as `30m`, `90 min`, `2h` (at most 24 hours). Raises `ValueError`."""
        text = text.strip()
        if text.lower() == "session":
            return cls("session")
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(f"{text!r} is neither 'session' nor a duration such as 30m or 2h")
        number, unit = int(match.group(1)), match.group(2).lower()
        duration = timedelta(hours=number) if unit.startswith("h") else timedelta(minutes=number)
        if not timedelta(minutes=1) <= duration <= MAX_REMEMBER:
            raise ValueError(f"{text!r} is not between 1 minute and 24 hours")
        return cls("timed", duration)

    @property
    def text(self) -> str:
        """What `parse` reads back: `session`, or the duration in minutes (`90m`)."""
        if self.duration is None:
            return "session"
        return f"{round(self.duration.total_seconds() / 60)}m"


@dataclass(frozen=True)
class Answer:
    """One answer to a request, from a human, a policy rule or the server itself."""

    status: Status
    actor: str
    channel: str
    message: str | None = None
    updated_input: JSONObject | None = None
    remember: Remember | None = None  # with an allow: also allow the same again (see `grants`)


@dataclass(frozen=True)
class ApprovalRequest:
    """One row of the audit trail."""

    id: str
    tool_name: str
    input: JSONObject
    tool_use_id: str | None
    extra: JSONObject
    client: str | None
    rendered: str
    created_at: datetime
    expires_at: datetime
    status: Status = Status.PENDING
    agent: str | None = None
    session: str | None = None
    cwd: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    decided_via: str | None = None
    reason: str | None = None
    updated_input: JSONObject | None = None
    remembered: GrantKind | None = None  # the allow also allowed the same again, for the session or a while
    agent_kind: str | None = None
    agent_version: str | None = None
    editable: bool = True

    @classmethod
    def open(cls, call: ToolCall, rendered: str, now: datetime, timeout: float) -> ApprovalRequest:
        return cls(
            id=new_request_id(),
            tool_name=call.tool_name,
            input=call.input,
            tool_use_id=call.tool_use_id,
            extra=call.extra,
            client=call.client,
            agent=call.agent,
            session=call.session,
            cwd=call.cwd,
            agent_kind=call.agent_kind,
            agent_version=call.agent_version,
            editable=call.editable,
            rendered=rendered,
            created_at=now,
            expires_at=now + timedelta(seconds=timeout),
        )

    @property
    def program(self) -> str | None:
        """The agent's kind and version, as one short name: `codex 0.169.0`."""
        return " ".join(part for part in (self.agent_kind, self.agent_version) if part) or None

    @property
    def effective_input(self) -> JSONObject:
        """The input that runs if the request is allowed: the approver's edit, or the original."""
        return self.updated_input if self.updated_input is not None else self.input

    def to_json(self) -> JSONObject:
        return {
            "id": self.id,
            "status": self.status.value,
            "tool_name": self.tool_name,
            "input": self.input,
            "updated_input": self.updated_input,
            "tool_use_id": self.tool_use_id,
            "extra": self.extra,
            "client": self.client,
            "agent": self.agent,
            "session": self.session,
            "cwd": self.cwd,
            "agent_kind": self.agent_kind,
            "agent_version": self.agent_version,
            "editable": self.editable,
            "rendered": self.rendered,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decided_by": self.decided_by,
            "decided_via": self.decided_via,
            "reason": self.reason,
            "remembered": self.remembered,
        }
