"""What a WhatsApp reply answers: its words, and the one request it can only mean, or why it is refused.

A reply names its request by an id (`APPROVE 7kq2m9xa`, or a button whose id carries it) or by the message it answers
(Twilio's `OriginalRepliedMessageSid`, sent with a button tap or a swipe-reply). A reply that names none (`yes`,
`deny`, `no, use staging`) counts only when the approver's chat leaves no doubt: exactly one request waits, its
message is the last thing they were sent, nothing they were shown closed since, and that message arrived at least
`quiet` seconds ago. (A "yes" typed about an earlier message can cross a new one on its way; the quiet time is the
approver's time to see what arrived.) Anything else is refused with the waiting ids and how to answer.

An id never falls back to another request: a word that names no request but looks like an attempt at one (it holds
a digit, or is close to or the start of an id the approver could have copied) is refused as a mistyped id, with the
waiting ids; only a plain word starts a reason (`DENY database is prod`) or is a duration (`ALLOW 30m`). An id is read
without the punctuation or WhatsApp markup typed or copied around it (`DENY 7kq2m9xa.`, `*7kq2m9xa*`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from approval_server.models import Remember
from approval_server.store import Store
from approval_server.store.outbox import Conversation, Outbox

_ANSWER = re.compile(r"^\s*(approve|allow|yes|always|deny|no)(?:\s+(\S.*?))?\s*$", re.IGNORECASE | re.DOTALL)
_ID_LIKE = re.compile(r"[a-z0-9]{3,12}")
_AROUND_AN_ID = "`*_~.,;:!?'\"()[]{}<>#"  # WhatsApp's markup and punctuation, typed or copied around an id
HOW_TO_ANSWER = (
    "To answer, tap a button or reply APPROVE <id>, DENY <id> (then a reason, if you like), ALWAYS <id> (allow the "
    "same again for the agent's session) or ALLOW <id> 30m (allow the same for 30 minutes)."
)


@dataclass(frozen=True)
class Reply:
    """An approver's message that answers something: `APPROVE 7kq2m9xa`, `deny`, `DENY 7kq2m9xa use staging`,
    `ALWAYS 7kq2m9xa`, `ALLOW 7kq2m9xa 30m`, or a button tap carrying `approve 7kq2m9xa`: any case, spaces around."""

    sender: str
    verb: Literal["allow", "always", "deny"]
    first: str | None  # the first word after the verb, as typed: an id, or where a reason or a duration starts
    rest: str | None  # the words after it
    replied_to: str | None  # the SID of the message it answers, when Twilio says

    @property
    def decision(self) -> Literal["allow", "deny"]:
        return "deny" if self.verb == "deny" else "allow"


def parse_reply(sender: str, body: str, button_payload: str | None, replied_to: str | None) -> Reply | None:
    """The reply in a message (a tap's payload first), or None for a message that is not an answer."""
    match = _ANSWER.match(button_payload or body or "")
    if match is None:
        return None
    word = match.group(1).lower()
    verb: Literal["allow", "always", "deny"] = (
        "deny" if word in ("deny", "no") else "always" if word == "always" else "allow"
    )
    words = (match.group(2) or "").split(maxsplit=1)
    first = words[0] if words else None
    rest = words[1] if len(words) > 1 else None
    return Reply(sender, verb, first, rest, replied_to)


@dataclass(frozen=True)
class Bound:
    """A reply bound to one request: what to record."""

    request_id: str
    decision: Literal["allow", "deny"]
    message: str | None
    remember: Remember | None


class ReplyBinder:
    def __init__(self, store: Store, outbox: Outbox, quiet: float, dashboard_url: str) -> None:
        self._store = store
        self._outbox = outbox
        self._quiet = quiet
        self._dashboard_url = dashboard_url

    async def bind(self, reply: Reply) -> Bound | str:
        """The request `reply` answers, or the text that tells the approver why it was not applied."""
        chat: Conversation | None = None
        typed: str | None = None
        text = " ".join(word for word in (reply.first, reply.rest) if word) or None
        word = reply.first.strip(_AROUND_AN_ID).lower() if reply.first else ""
        if word and await self._store.get(word) is not None:
            typed, text = word, reply.rest
        elif reply.first and not (reply.decision == "allow" and _is_remember(reply.first)):
            chat = await self._outbox.conversation(reply.sender)
            if await self._mistyped_id(word, reply.sender, chat):
                return self._refusal(f"there is no request {reply.first}", chat, _how(reply.verb, None))
        remember: Remember | None = None
        if reply.verb == "always":
            remember = Remember("session")
            if text:
                return f"Not applied: {text}. {HOW_TO_ANSWER}"
        elif reply.verb == "allow" and text:
            try:
                remember = Remember.parse(text)
            except ValueError as exc:
                return f"Not applied: {exc}. {HOW_TO_ANSWER}"
        message = text if reply.decision == "deny" else None
        how = _how(reply.verb, remember)

        replied = await self._store.outbound(reply.replied_to) if reply.replied_to else None
        if replied is not None and replied.recipient != reply.sender:
            replied = None
        if typed and replied and replied.request_id != typed:
            return "Not applied: that reply names one request but answers the message of another."
        if typed or replied:
            request_id = typed or (replied.request_id if replied else "")
            return Bound(request_id, reply.decision, message, remember)
        chat = chat or await self._outbox.conversation(reply.sender)
        if reply.replied_to:
            return self._refusal("the message you answered is not a request's", chat, how)
        why = self._doubt(chat)
        if why is not None:
            return self._refusal(why, chat, how)
        return Bound(chat.waiting[0], reply.decision, message, remember)

    def _doubt(self, chat: Conversation) -> str | None:
        """Why a reply with no id could mean something other than the only waiting request, or None."""
        if chat.waiting_count == 0:
            return "no request is waiting for an answer"
        if chat.waiting_count > 1:
            return "which request?"
        only = chat.waiting[0]
        if chat.sent_at is None or chat.last_at is None:
            return f"request {only} was not sent to you here"
        if chat.last_about != only or chat.closed_since:
            return f"other messages came after request {only}'s"
        age = (datetime.now(UTC) - chat.last_at).total_seconds()
        if age < self._quiet:
            return f"request {only} arrived only {age:.0f} s ago; so that your answer is about what you read, name it"
        return None

    async def _mistyped_id(self, word: str, sender: str, chat: Conversation) -> bool:
        if not _ID_LIKE.fullmatch(word):
            return False
        if any(character.isdigit() for character in word):
            return True
        known = [*chat.waiting, *await self._outbox.recently_sent(sender)]
        if any(len(word) >= 4 and request_id.startswith(word) for request_id in known):
            return True
        return bool(difflib.get_close_matches(word, known, n=1, cutoff=0.7))

    def _refusal(self, why: str, chat: Conversation, how: str) -> str:
        if chat.waiting_count == 1:
            how = how.replace("<id>", chat.waiting[0])
        listed = ", ".join(chat.waiting)
        if chat.waiting_count > len(chat.waiting):
            more = chat.waiting_count - len(chat.waiting)
            listed += f" and {more} more (all on the dashboard: {self._dashboard_url})"
        waiting = f" Waiting: {listed}." if chat.waiting else ""
        end = "" if why.endswith("?") else "."
        return f"Not applied: {why}{end}{waiting} Reply {how}, or tap the button on its message."


def _how(verb: str, remember: Remember | None) -> str:
    if verb == "always":
        return "ALWAYS <id>"
    if remember is not None and remember.kind == "timed":
        return "ALLOW <id> 30m"
    return "APPROVE <id> or DENY <id>"


def _is_remember(word: str) -> bool:
    try:
        Remember.parse(word)
    except ValueError:
        return False
    return True
