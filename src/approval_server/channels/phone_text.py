"""What a person is shown of a request on a phone (WhatsApp, Telegram, a push notification): who asks and from
where, the tool and its input, in parts when long, and nothing at all when too long to read there.

Every message about a request names the agent and its working directory (`where`), each value in monospace on one
line, so that a command from /srv/prod never looks like one from /tmp/sandbox. A request too long to read on the
phone (`too_long_for_the_phone`) is not shown, only described: it is approved only at its link, and an answer from
the phone that would allow it is refused; a deny is accepted, as a deny is always safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from approval_server.decision import describe_duration
from approval_server.models import ApprovalRequest
from approval_server.render import FENCE, for_monospace, monospace, render_whatsapp

# Twilio's limit for a message body is 1,600 characters; a quick-reply template's text is 1,024 with variables, and
# the template's own words take about 100: the request as shown (with its link and expiry) must fit in the rest.
TEMPLATE_TEXT_LIMIT = 900
PART_LIMIT = 1400
# Past this, the input is not split into parts but summarised with its exact length (see `too_long_for_the_phone`).
MAX_SHOWN = 6 * PART_LIMIT
# An agent's name or working directory longer than this, as shown, is not shown: the request is then too long for the
# phone, and the text that says so still fits in a template's.
NAME_LIMIT = 160
# A newline in a name or a directory, shown so that it cannot start a line that looks like a label ("Command:").
NEWLINE = "⟨U+000A⟩"


def _split(text: str, size: int) -> list[str]:
    """Cut `text` into pieces of at most `size` characters, never inside a `⟨U+XXXX⟩` escape."""
    pieces: list[str] = []
    while len(text) > size:
        cut = size
        opening = text.rfind("⟨", 0, cut)
        if opening != -1 and text.find("⟩", opening) >= cut:
            cut = opening
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


def _one_line(value: str) -> str:
    """`value` in a monospace block on one line: a backtick cannot close the block, a newline cannot start a line."""
    return monospace(value).replace("\n", NEWLINE)


def _named(value: str | None, missing: str) -> str:
    if not value:
        return f"({missing})"
    shown = _one_line(value)
    if len(shown) > NAME_LIMIT:
        return "(too long to show here: read it at the link)"
    return shown


def where(request: ApprovalRequest) -> str:
    """Who asks and from where, a line each: the agent's name and program (kind, version, route), and its working
    directory, or that they are unknown."""
    program = f", {_one_line(request.program)}" if request.program else ""  # short: a kind and a plain version
    return f"Agent: {_named(request.agent, 'unnamed')}{program}\nDirectory: {_named(request.cwd, 'unknown')}"


def shown_input(request: ApprovalRequest) -> str:
    """The whole input as the numbered parts show it: indented JSON, made visible for a monospace block."""
    return for_monospace(json.dumps(request.input, ensure_ascii=False, indent=1))


def too_long_for_the_phone(request: ApprovalRequest) -> bool:
    """Whether `request` is too long to be read on the phone: its input past `MAX_SHOWN` characters as shown, or its
    agent's name or directory past `NAME_LIMIT`. WhatsApp then gives only its length and link, and a
    WhatsApp answer that would allow it is refused: it is approved only at the link, which shows it whole.

    Decided from the request alone, when it is sent and when it is answered, so every replica and a restarted server
    decide the same."""
    if len(shown_input(request)) > MAX_SHOWN:
        return True
    return any(value and len(_one_line(value)) > NAME_LIMIT for value in (request.agent, request.cwd))


def too_long_refusal(request: ApprovalRequest, link: str) -> str:
    """What an approver is told when their WhatsApp answer would allow a request too long for the phone."""
    return (
        f"Not applied: request {request.id} is too long to read on the phone, so it cannot be approved from "
        f"WhatsApp. The only way to approve it is its link, which shows it whole: {link}\n"
        f"DENY {request.id} (or the Deny button) still works here: a deny is always safe."
    )


@dataclass(frozen=True)
class RequestText:
    """What WhatsApp shows of a request: its input in numbered parts (each a message, sent first), if it is split,
    and the text of the request's own message (the template's first variable)."""

    parts: list[str]
    shown: str
    approvable: bool  # False: too long for the phone, approved only at its link


def link_footer(request: ApprovalRequest, link: str) -> str:
    """The end of a request's message: the person's own link, and when the request expires."""
    seconds = (request.expires_at - request.created_at).total_seconds()
    return (
        f"🔗 Read it all and answer in a browser: {link}\n"
        f"⏱️ Expires in {describe_duration(seconds)} ({request.expires_at:%H:%M} UTC)"
    )


def request_text(request: ApprovalRequest, footer: str) -> RequestText:
    """The messages about `request`; `footer` (its link and expiry) ends the request's own message. Each names the
    agent and the directory. The request's message fits a template's text (`TEMPLATE_TEXT_LIMIT`) and each part a
    message (`PART_LIMIT`); an input too long for the phone is described, not shown."""
    head = where(request)
    tool = f"Tool: {monospace(request.tool_name)}"
    text = shown_input(request)
    if too_long_for_the_phone(request):
        why = (
            f"The input is {len(text):,} characters long, too long to read on the phone: it is not shown here."
            if len(text) > MAX_SHOWN
            else "The agent's name or directory is too long to show on the phone."
        )
        shown = (
            f"{head}\n{tool}\n⚠️ {why} The only way to approve it is the link below, which shows it whole; an "
            f"approval sent here (a reply, a button, a yes) is refused. DENY {request.id} still works.\n\n{footer}"
        )
        return RequestText([], shown, approvable=False)
    described = f"{head}\n{render_whatsapp(request.tool_name, request.input)}"
    if len(described) + 2 + len(footer) <= TEMPLATE_TEXT_LIMIT:
        return RequestText([], f"{described}\n\n{footer}", approvable=True)
    # Split the text as shown, never inside a `⟨U+XXXX⟩`, and fence each part without escaping it again.
    size = PART_LIMIT - len(_part_head(request.id, 99, 99, head)) - 2 * len(FENCE)
    pieces = _split(text, size)
    parts = [
        _part_head(request.id, number, len(pieces), head) + FENCE + piece + FENCE
        for number, piece in enumerate(pieces, 1)
    ]
    shown = (
        f"{head}\n{tool}\nThe full input ({len(text):,} characters) is in the {len(parts)} numbered messages "
        f"above.\n\n{footer}"
    )
    return RequestText(parts, shown, approvable=True)


def _part_head(request_id: str, number: int, count: int, head: str) -> str:
    return f"Request {request_id}, part {number}/{count} of the input\n{head}\n"
