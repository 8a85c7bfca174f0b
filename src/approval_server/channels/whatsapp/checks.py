"""The WhatsApp settings checked live against Twilio's API: the account, the sender, the content template.

`approval-server setup whatsapp` and `setup-template` stop at the first failure (exit 2); `doctor` reports each. A
refusal by Twilio and a Twilio that cannot be reached alike become one line that says what to do (`TwilioProblem`),
never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from approval_server.channels.whatsapp.settings import WhatsAppSettings
from approval_server.errors import ConfigError

SANDBOX = "whatsapp:+14155238886"  # Twilio's shared WhatsApp Sandbox number: not a sender of any one account
TIMEOUT = 10.0  # seconds, for each call to Twilio
CREDENTIALS_HINT = "The account SID and auth token do not go together: copy both again from the Twilio Console"
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class TwilioProblem(ConfigError):
    """A check against Twilio failed; the message is one line that says what to do."""


class TwilioUnreachable(TwilioProblem):
    """Twilio could not be reached at all: nothing was checked."""


def twilio_client(account_sid: str, auth_token: str, api_base_url: str | None = None) -> Client:
    """A Twilio client whose every call gives up after `TIMEOUT`; `api_base_url` (TWILIO_API_BASE_URL) replaces
    Twilio's hosts, for a local stand-in of its API."""
    client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=TIMEOUT))
    if api_base_url:
        base = api_base_url.rstrip("/")
        client.api.base_url = base
        client.content.base_url = base
        client.messaging.base_url = base
    return client


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _refusal(exc: TwilioException) -> tuple[int | None, str]:
    """Twilio's error code and message in `exc`, whichever way the library raised it."""
    if isinstance(exc, TwilioRestException):
        _, _, message = str(exc.msg).partition(": ")  # "Unable to fetch record: <Twilio's message>"
        return exc.code, message or str(exc.msg)
    code = getattr(exc, "code", None)
    if code is not None:  # TwilioServiceException (RFC 9457 errors)
        return int(code), str(getattr(exc, "detail", None) or getattr(exc, "title", ""))
    response = exc.args[1] if len(exc.args) > 1 else None  # a page that could not be fetched: its response
    text = getattr(response, "text", "")
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        body = json.loads(text)
        return body.get("code"), str(body.get("message", ""))
    return getattr(response, "status_code", None), str(exc.args[0] if exc.args else exc)


def _unreachable_why(exc: OSError) -> str:
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1).strip().lower()
    if isinstance(exc, TimeoutError) or "timeout" in exc.__class__.__name__.lower():
        return f"no answer within {TIMEOUT:g} s"
    return exc.__class__.__name__


@contextlib.contextmanager
def talking(client: Client, doing: str, hints: Mapping[int, str] | None = None) -> Iterator[None]:
    """Run calls to Twilio that `doing` describes ("check the account"); turn any failure into a `TwilioProblem`:
    the hint for its error code, if any, else what was refused, then Twilio's own words."""
    try:
        yield
    except TwilioException as exc:
        code, message = _refusal(exc)
        hint = {20003: CREDENTIALS_HINT, **(hints or {})}.get(code or 0) or f"Twilio refused to {doing}"
        said = f": {_one_line(message)}" if message else ""
        raise TwilioProblem(f"{hint} (Twilio error {code}{said}).") from None
    except OSError as exc:  # requests' connection errors and timeouts are OSErrors
        host = client.api.base_url
        raise TwilioUnreachable(
            f"Cannot reach Twilio ({host}: {_unreachable_why(exc)}) to {doing}: check this machine's network "
            "connection and proxy."
        ) from None


def check_account(client: Client, account_sid: str) -> str:
    """Fetch the account: the credentials work, and it can send. Returns what it is, for an `ok` line."""
    with talking(client, "check the account", {20404: CREDENTIALS_HINT}):
        account = client.api.v2010.accounts(account_sid).fetch()
    if account.status != "active":
        raise TwilioProblem(f"The Twilio account {account_sid} is {account.status}: it cannot send messages.")
    trial = " (a trial account: it sends only to the numbers verified in it)" if account.type == "Trial" else ""
    return f"Twilio account {account_sid} ({_one_line(account.friendly_name or '')}) answers and is active{trial}"


def check_sender(client: Client, sender: str) -> str:
    """The sender is a WhatsApp sender of the account, online (the Sandbox number is taken as it is)."""
    number = sender.removeprefix("whatsapp:")
    if sender == SANDBOX:
        return (
            f"sender {number} is the Twilio Sandbox: each approver must first send it the `join <code>` shown in the "
            "Twilio Console (Messaging, Try it out), again every 3 days"
        )
    with talking(client, "list the account's WhatsApp senders"):
        senders = {s.sender_id: s.status for s in client.messaging.v2.channels_senders.list(channel="whatsapp")}
    if sender not in senders:
        known = ", ".join(s.removeprefix("whatsapp:") for s in senders) or "none"
        raise TwilioProblem(
            f"{number} is not a WhatsApp sender of this Twilio account (its senders: {known}): set "
            "TWILIO_WHATSAPP_FROM to one of them, or to the Sandbox number +14155238886."
        )
    if senders[sender] != "ONLINE":
        raise TwilioProblem(
            f"The WhatsApp sender {number} is {senders[sender]}, not ONLINE: it cannot send until Twilio and Meta "
            "have approved it (Twilio Console, Messaging, Senders)."
        )
    return f"sender {number} is a WhatsApp sender of this account, online"


def check_content(client: Client, content_sid: str) -> str:
    """The content template exists in the account, with buttons."""
    missing = (
        f"TWILIO_CONTENT_SID={content_sid} is not a content template of this Twilio account: run  approval-server "
        "setup-template  to create it, or remove the setting to send plain text"
    )
    with talking(client, f"read the content template {content_sid}", {20404: missing, 21655: missing}):
        content = client.content.v1.contents(content_sid).fetch()
    if "twilio/quick-reply" not in (content.types or {}):
        return f"template {content_sid} ({content.friendly_name}) exists, but has no buttons: replies are typed"
    return f"template {content_sid} ({content.friendly_name}) exists, with Approve / Deny buttons"


def report(
    whatsapp: WhatsAppSettings, ok: Callable[[str], None], problem: Callable[[str], None], note: Callable[[str], None]
) -> None:
    """`doctor`'s WhatsApp lines: the settings, then each live check against Twilio."""
    buttons = "with Approve / Deny buttons" if whatsapp.content_sid else "as plain text (run setup-template)"
    ok(f"WhatsApp: {len(whatsapp.approvers)} approver(s), {buttons}; Twilio must call {whatsapp.webhook_url}")
    client = twilio_client(whatsapp.account_sid, whatsapp.auth_token, whatsapp.api_base_url)
    try:
        ok(check_account(client, whatsapp.account_sid))
    except TwilioUnreachable as exc:
        problem(f"{exc} The sender and the template were not checked.")
        return
    except TwilioProblem as exc:
        problem(str(exc))
        return
    checks: list[Callable[[], str]] = [lambda: check_sender(client, whatsapp.sender)]
    if whatsapp.content_sid:
        sid = whatsapp.content_sid
        checks.append(lambda: check_content(client, sid))
    for check in checks:
        try:
            ok(check())
        except TwilioProblem as exc:
            problem(str(exc))
