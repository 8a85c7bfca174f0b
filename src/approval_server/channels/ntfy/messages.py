"""What a person's phone shows: the push that asks (the request as WhatsApp shows it, with Approve / Deny / Allow for
session buttons), and the push that replaces it once the request is over.

The text is plain (ntfy's Markdown is off: nothing in it is styled away) and WhatsApp's: who asks and from where,
then every field of the input (`phone_text`, `render`). A request too long for one notification (ntfy's 4,096 bytes,
past which it would make the text a file) is not shown at all, only described: it is approved only on its page, the
notification's click, and its push has a Deny button alone. Which it is is decided from the request alone
(`approvable`), so the answer route decides the same as the push did.

Both pushes of a request carry the same sequence id: ntfy 2.16 and later replace the asking notification with the
outcome; an older server shows the outcome as one more notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from approval_server.channels.phone_text import MAX_SHOWN, NAME_LIMIT, shown_input, too_long_for_the_phone, where
from approval_server.decision import describe_duration
from approval_server.models import ApprovalRequest, Remember, Status
from approval_server.render import monospace, render_whatsapp, visible

ANSWER_PATH = "/ntfy/answer"
MESSAGE_LIMIT = 4096  # bytes of a message's text; past it, ntfy makes the message a file attachment
# Room kept for the footer (the expiry) and the long-form wording: the request's own text gets the rest.
FOOTER_ROOM = 512
TEXT_LIMIT = MESSAGE_LIMIT - FOOTER_ROOM
OUTCOME_PRIORITY = 2  # low: the outcome replaces the push without sounding again
REASON_SHOWN = 300


@dataclass(frozen=True)
class Choice:
    """One button: its label, the body it posts, and the answer it gives."""

    label: str
    status: Status
    remember: Remember | None = None


CHOICES = {
    "approve": Choice("Approve", Status.ALLOWED),
    "deny": Choice("Deny", Status.DENIED),
    "session": Choice("Allow for session", Status.ALLOWED, Remember("session")),
}


def answer_url(public_url: str, request_id: str, token: str) -> str:
    """Where a push's buttons post. The signed link ends the path after `/r/`, as on the request page's own URL, so
    that the log's redaction of request links hides it (see `logs`)."""
    return f"{public_url}{ANSWER_PATH}/{request_id}/r/{token}"


def sequence_id(request_id: str) -> str:
    """The id ntfy knows both pushes of one request by (1–64 of `[-_A-Za-z0-9]`, as a request id always is)."""
    return f"approval-{request_id}"


def _described(request: ApprovalRequest) -> str:
    return f"{where(request)}\n{render_whatsapp(request.tool_name, request.input)}"


def approvable(request: ApprovalRequest) -> bool:
    """Whether the push shows the whole request, so that it may be approved from the notification."""
    return not too_long_for_the_phone(request) and len(_described(request).encode()) <= TEXT_LIMIT


def ask_text(request: ApprovalRequest) -> str:
    """The text of the push that asks: the whole request, or, when it cannot be shown, what it is and why not."""
    seconds = (request.expires_at - request.created_at).total_seconds()
    footer = (
        "🔗 Tap the notification to read it all and answer in a browser.\n"
        f"⏱️ Expires in {describe_duration(seconds)} ({request.expires_at:%H:%M} UTC)"
    )
    if approvable(request):
        return f"{_described(request)}\n\n{footer}"
    shown = shown_input(request)
    why = (
        "The agent's name or directory is too long to show here."
        if too_long_for_the_phone(request) and len(shown) <= MAX_SHOWN
        else f"The input is {len(shown):,} characters long, too long for a notification: it is not shown here."
    )
    tool = monospace(request.tool_name)
    if len(tool) > NAME_LIMIT:
        tool = "(too long to show here: read it on its page)"
    return (
        f"{where(request)}\nTool: {tool}\n⚠️ {why} Approve it only on its page, which shows it whole: tap the "
        f"notification. Deny still works here.\n\n{footer}"
    )


def ask(request: ApprovalRequest, topic: str, page: str, buttons_url: str, priority: int) -> dict[str, Any]:
    """The push that asks `topic`'s person about `request`: `page` is their request page (the click), `buttons_url`
    where the buttons post (each its choice's name as the body)."""
    offered = ("approve", "deny", "session") if approvable(request) else ("deny",)
    actions = [
        {
            "action": "http",
            "label": CHOICES[name].label,
            "url": buttons_url,
            "method": "POST",
            "body": name,
            "clear": True,
        }
        for name in offered
    ]
    return {
        "topic": topic,
        "title": f"Approval request {request.id}",
        "message": ask_text(request),
        "priority": priority,
        "tags": ["lock"],
        "click": page,
        "actions": actions,
        "sequence_id": sequence_id(request.id),
    }


def outcome_text(request: ApprovalRequest) -> tuple[str, str]:
    """How `request` ended, as a title and a line."""
    who = visible(request.decided_by or "someone")
    via = f" on {visible(request.decided_via)}" if request.decided_via else ""
    if request.status is Status.ALLOWED:
        again = {
            "session": " The same is allowed again for this session.",
            "timed": " The same is allowed again for a while.",
        }
        return "approved", f"Approved by {who}{via}.{again.get(request.remembered or '', '')}"
    if request.status is Status.DENIED:
        reason = visible(request.reason or "")
        if len(reason) > REASON_SHOWN:
            reason = reason[:REASON_SHOWN] + "… (the rest on the dashboard)"
        return "denied", f"Denied by {who}{via}." + (f"\n{reason}" if reason else "")
    if request.status is Status.EXPIRED:
        return "expired", "Expired with no answer, so it was denied."
    return request.status.value, f"Over ({request.status.value}): no answer is needed."


def outcome(request: ApprovalRequest, topic: str) -> dict[str, Any]:
    """The push that replaces the asking one once `request` is over: how it ended, without buttons."""
    verb, line = outcome_text(request)
    tags = {"approved": ["white_check_mark"], "denied": ["x"], "expired": ["hourglass"]}
    return {
        "topic": topic,
        "title": f"Request {request.id} {verb}",
        "message": line,
        "priority": OUTCOME_PRIORITY,
        "tags": tags.get(verb, ["information_source"]),
        "sequence_id": sequence_id(request.id),
    }
