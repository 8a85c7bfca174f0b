"""What an Apprise notice says: who asks and from where, the call as shown, and the link where it is decided.

Apprise is given plain text. It escapes that for a service it renders as HTML (Telegram, e-mail, Pushover) and Slack
escapes its own markup in it, but many services render Markdown from plain text all the same (Discord, Mattermost,
Rocket.Chat, …), where `[Approve](https://…)` in a command would show as a link, `||…||` would hide its middle and
`*…*` restyle it. So every text the agent chose (the tool's name, each value of the input, a key it named, its name
and directory: `where`) is shown inside a code span of three backticks, in which no service interprets markup, and
which nothing inside can close (a backtick is shown as `⟨U+0060⟩`, like every hidden character, see `render`). Each
line of a value on several lines is a span of its own after the gutter `┃`, and a key the agent chose follows the
word "Input", so that no line starts with backticks (a fence, in Markdown) and none the agent wrote can pass for a
label. A plain-text service shows the backticks as typed, as
WhatsApp's messages do.

A notice is never cut: an input too long to read on a phone, or a notice longer than its service takes in one
message, only says the input's length, and the input is read whole at the link. A notice is thus never split either,
so that no code span is cut in two and the rest of it read as Markup (Apprise splits only what grows in its own
escaping, into HTML, which shows every character as typed).
"""

from __future__ import annotations

import re

from approval_server.channels.apprise.targets import Target
from approval_server.channels.phone_text import shown_input, too_long_for_the_phone, where
from approval_server.decision import describe_duration
from approval_server.models import ApprovalRequest, Status
from approval_server.render import FENCE, GUTTER, fields, monospace

_INERT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .@+-]*")  # shown as typed: no markup in any format starts with these


def title(request: ApprovalRequest) -> str:
    return f"Approval request {request.id}"


def shown_call(request: ApprovalRequest) -> str:
    """The call as `render_text` lays it out (a label per part of the input, the gutter on each line of a value on
    several), every text the agent chose in a code span."""
    lines = [f"Tool: {monospace(request.tool_name)}"]
    for field in fields(request.tool_name, request.input):
        # A key the agent chose: quoted, on one line (`label`), after a word of ours, so that no line starts a span.
        label = f"Input {FENCE}{field.title}{FENCE}" if field.key else field.title
        values = field.lines()
        spans = [f"{FENCE}{value}{FENCE}" if value else "" for value in values]
        if len(values) == 1 and field.kind != "diff":
            lines.append(f"{label}: {spans[0] or '(empty)'}")
        else:
            lines += [f"{label}:", *(f"{GUTTER} {span}".rstrip() for span in spans)]
    return "\n".join(lines)


def notice(request: ApprovalRequest, target: Target, how: str) -> str:
    """What `target` is sent about `request`: who asks and where, the call as shown, and `how` to decide (the link)."""
    seconds = (request.expires_at - request.created_at).total_seconds()
    footer = f"{how}\nExpires in {describe_duration(seconds)} ({request.expires_at:%H:%M} UTC)."
    head = where(request)
    full = f"{head}\n{shown_call(request)}\n\n{footer}"
    if not too_long_for_the_phone(request) and target.fits(title(request), full):
        return full
    return (
        f"{head}\nTool: {monospace(request.tool_name)}\nThe input ({len(shown_input(request)):,} characters) is too "
        f"long to show here: it is not shown. Read it whole at the link before you decide.\n\n{footer}"
    )


def outcome(request: ApprovalRequest) -> str:
    """How `request` ended, for those who were sent it."""
    if request.status in (Status.ALLOWED, Status.DENIED):
        verb = "approved" if request.status is Status.ALLOWED else "denied"
        who = request.decided_by or "someone"
        shown = who if _INERT.fullmatch(who) else monospace(who)
        return f"Request {request.id} was {verb} by {shown} via {request.decided_via}."
    if request.status is Status.EXPIRED:
        return f"Request {request.id} expired with no answer, so it was denied."
    return f"Request {request.id} is over ({request.status.value}): nothing is left to decide."
