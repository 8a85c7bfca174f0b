"""The answer Claude Code receives, derived from a closed request: one place for every deny message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from approval_server.errors import BadRequest
from approval_server.grants import pattern_for
from approval_server.models import ApprovalRequest, JSONObject, Status

SERVER_ACTOR = "approval-server"


def describe_duration(seconds: float) -> str:
    """`300` → `5 minutes`, `90` → `1 minute 30 seconds`, `2.5` → `2.5 seconds`."""
    if seconds < 60:
        return f"{seconds:g} second" + ("" if seconds == 1 else "s")
    minutes, rest = divmod(round(seconds), 60)
    text = f"{minutes} minute" + ("" if minutes == 1 else "s")
    if rest:
        text += f" {rest} second" + ("" if rest == 1 else "s")
    return text


@dataclass(frozen=True)
class Decision:
    """Claude Code's permission result: allow with the exact input to run, or deny with a message.

    An allow "for the session" also carries `updatedPermissions`: the rule Claude Code adds to its session.
    """

    behavior: Literal["allow", "deny"]
    updated_input: JSONObject | None = None
    message: str | None = None
    updated_permissions: list[JSONObject] | None = None

    def to_json(self) -> JSONObject:
        if self.behavior == "deny":
            return {"behavior": "deny", "message": self.message}
        answer: JSONObject = {"behavior": "allow", "updatedInput": self.updated_input}
        if self.updated_permissions:
            answer["updatedPermissions"] = self.updated_permissions
        return answer

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def deny(cls, message: str) -> Decision:
        return cls(behavior="deny", message=message)

    @classmethod
    def for_request(cls, request: ApprovalRequest) -> Decision:
        """The decision a closed request stands for; a request still pending is never an allow."""
        if request.status is Status.ALLOWED:
            return cls(
                behavior="allow", updated_input=request.effective_input, updated_permissions=session_rules(request)
            )
        return cls.deny(deny_message(request))


def session_rules(request: ApprovalRequest) -> list[JSONObject] | None:
    """The rule Claude Code adds to its session for an allow "for the session", where one says exactly the same."""
    if request.remembered != "session":
        return None
    rule = pattern_for(request.tool_name, request.effective_input).claude_rule
    if rule is None:
        return None
    return [{"type": "addRules", "rules": [rule], "behavior": "allow", "destination": "session"}]


def deny_message(request: ApprovalRequest) -> str:
    """Tell the agent what happened and what to do next."""
    ref = f"approval request {request.id}"
    if request.status is Status.EXPIRED:
        waited = describe_duration((request.expires_at - request.created_at).total_seconds())
        return (
            f"No answer within {waited} ({ref} expired), so it was denied for safety. Nobody approved this action: "
            "do not retry it unattended; tell the user it needs their approval."
        )
    if request.status is Status.DENIED and request.decided_via == "policy":
        return f"{request.reason or f'Denied by policy rule {request.decided_by}.'} ({ref})"
    if request.status is Status.DENIED and request.decided_by == SERVER_ACTOR:
        return f"{request.reason or 'Denied for safety'} ({ref})."
    if request.status is Status.DENIED:
        said = f": {request.reason}" if request.reason else " (no reason given)"
        return (
            f"Denied by {request.decided_by} via {request.decided_via}{said} ({ref}). "
            "Do not retry this action unchanged; if it is needed, ask the user how to proceed."
        )
    if request.status in (Status.CANCELLED, Status.ABANDONED):
        return f"The {ref} was {request.status.value} before anyone decided, so it was denied for safety."
    return f"The {ref} has not been decided, so it is denied for safety."


def internal_error(request_id: str | None) -> Decision:
    ref = f" (approval request {request_id})" if request_id else ""
    return Decision.deny(
        f"approval-server had an internal error{ref}, so the action was denied for safety. "
        "Nobody approved it; tell the user and do not retry it unattended."
    )


def unrecordable(why: str) -> str:
    """The deny of a call the server cannot record (its database is lost, or its disk full): `why` says which."""
    return (
        f"approval-server cannot record anything ({why}), so the action was denied before anyone could approve it. "
        "Nobody approved it; tell the user, and do not retry it unattended"
    )


def not_recorded(request_id: str) -> Decision:
    """The deny when the request could not even be recorded: the database failed or was locked."""
    return Decision.deny(
        f"approval-server had an internal error: its database could not record approval request {request_id}, so "
        "the action was denied for safety. Nobody approved it; tell the user and do not retry it unattended."
    )


def store_failed(request_id: str) -> Decision:
    """The deny when the database failed while the request was being decided (it was recorded, then not closed)."""
    return Decision.deny(
        f"approval-server's database failed while it handled approval request {request_id}, so the action was denied "
        "for safety. Nobody approved it; tell the user and do not retry it unattended."
    )


def refuse_uneditable(request: ApprovalRequest | None, edited: JSONObject) -> None:
    """Raise `BadRequest` for an edited input to a request whose agent would run the original instead (see
    `agents`): an approver's edit must be what runs, or nothing."""
    if request is not None and not request.editable and edited != request.input:
        raise BadRequest(
            f"request {request.id}'s agent cannot run an edited input: allow or deny it as shown, or deny it and "
            "tell the agent what to run instead"
        )
