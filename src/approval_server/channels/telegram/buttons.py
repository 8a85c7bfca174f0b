"""The buttons under a request's Telegram message, and what a press on one may do.

Telegram hands back a pressed button's `callback_data` (at most 64 bytes) with the presser and the message it was
on, but a modified client can send any data it likes. So the data is `<verb>:<request id>:<tag>`, the tag an HMAC
(keyed by a key derived from the bot token) over the verb, the request, the person's user id and a digest of what the
request's message showed (tool, input, agent, program, directory). A press can then do only what a button the server
drew for that person on that request offered: a button on an old message names its own request, never a newer one;
a request too long for the phone is drawn without Approve, so no allow can be made up for it; and one person's
button, replayed by another, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal

from approval_server.models import ApprovalRequest

Verb = Literal["approve", "deny", "session"]
_CODES: dict[Verb, str] = {"approve": "a", "deny": "d", "session": "s"}
_VERBS: dict[str, Verb] = {code: verb for verb, code in _CODES.items()}
LABELS: dict[Verb, str] = {"approve": "✅ Approve", "deny": "❌ Deny", "session": "🔁 Allow for session"}
TAG_BYTES = 16


@dataclass(frozen=True)
class Press:
    """A button's data, read but not yet checked (see `Buttons.valid`)."""

    verb: Verb
    request_id: str
    tag: str


def derive(token: str, purpose: str) -> bytes:
    """A key of its own for `purpose`, derived from the bot token (so no setting more to keep secret)."""
    return hmac.new(token.encode(), f"approval-server telegram {purpose}".encode(), hashlib.sha256).digest()


def shown_digest(request: ApprovalRequest) -> bytes:
    """What the request's message showed, as a digest: the same for the same request on every replica."""
    shown = [request.tool_name, request.input, request.agent, request.program, request.cwd]
    return hashlib.sha256(json.dumps(shown, sort_keys=True, ensure_ascii=False).encode()).digest()


class Buttons:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def verbs(self, approvable: bool) -> list[Verb]:
        """The buttons a request's message has: only Deny when it is approved only at its link."""
        return ["approve", "deny", "session"] if approvable else ["deny"]

    def data(self, verb: Verb, request: ApprovalRequest, user_id: int) -> str:
        return f"{_CODES[verb]}:{request.id}:{self._tag(verb, request, user_id)}"

    @staticmethod
    def parse(data: str | None) -> Press | None:
        parts = (data or "").split(":")
        if len(parts) != 3 or parts[0] not in _VERBS or not parts[1] or not parts[2]:
            return None
        return Press(_VERBS[parts[0]], parts[1], parts[2])

    def valid(self, press: Press, request: ApprovalRequest, user_id: int) -> bool:
        """Whether the server drew this button, for this person, on a message that showed this request."""
        expected = self._tag(press.verb, request, user_id)
        return press.request_id == request.id and hmac.compare_digest(press.tag.encode(), expected.encode())

    def _tag(self, verb: Verb, request: ApprovalRequest, user_id: int) -> str:
        message = b"\0".join([verb.encode(), request.id.encode(), str(user_id).encode(), shown_digest(request)])
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
