"""The dashboard's decision form: the answer it asks for (approve, approve for a while or for the session, deny,
approve with changes), or `Refused`, the dashboard's word for a form or a page that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.datastructures import FormData

from approval_server import strict_json
from approval_server.models import Answer, ApprovalRequest, Remember, Status

MAX_MESSAGE = 2000
DURATIONS = {"15m": "15 minutes", "30m": "30 minutes", "1h": "1 hour", "2h": "2 hours", "8h": "8 hours"}


class Refused(Exception):
    """A form or a page refused, nothing changed: shown as a page with `status_code`, `title` and `detail`."""

    def __init__(self, status_code: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


def answer_from_form(form: FormData, row: ApprovalRequest, actor: str, channel: str) -> Answer:
    """The answer a decision form asks for. Raises `Refused` (nothing changed) for a bad form."""
    decision = form.get("decision")
    message = form.get("message")
    message = message.strip() if isinstance(message, str) and message.strip() else None
    if message is not None and len(message) > MAX_MESSAGE:
        raise Refused(400, "Message too long", f"The message is over {MAX_MESSAGE} characters; nothing changed.")
    if decision == "deny":
        return Answer(Status.DENIED, actor, channel, message)
    if decision == "allow_session":
        return Answer(Status.ALLOWED, actor, channel, message, remember=Remember("session"))
    if decision == "allow":
        duration = form.get("remember")
        if duration is None:
            return Answer(Status.ALLOWED, actor, channel, message)
        if duration not in DURATIONS:
            raise Refused(400, "Bad form", "Choose one of the durations offered; nothing changed.")
        return Answer(Status.ALLOWED, actor, channel, message, remember=Remember.parse(str(duration)))
    if decision == "edit":
        text = form.get("updated_input")
        try:
            edited = strict_json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError as exc:
            raise Refused(
                400, "Edited input is not valid JSON", f"{exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from None
        except strict_json.NotJSON as exc:
            raise Refused(400, "Edited input is not valid JSON", f"{exc}.") from None
        except RecursionError:
            raise Refused(400, "Edited input is not valid JSON", "It is nested too deeply.") from None
        if not isinstance(edited, dict):
            raise Refused(400, "Edited input is not valid", "It must be a JSON object, like the original.")
        return Answer(Status.ALLOWED, actor, channel, message, updated_input=edited if edited != row.input else None)
    raise Refused(400, "Bad form", "Choose approve, allow for session, deny or approve with changes.")
