"""A local fake of Twilio (Messages + Content API + webhooks) for the WhatsApp channel.

The fake serves, on one 127.0.0.1 port from a background thread, the parts of Twilio's
REST API the WhatsApp channel uses, in Twilio's wire format, so the real ``twilio``
client can be pointed at it:

* ``GET /2010-04-01/Accounts/{AccountSid}.json`` (the account itself)
* ``POST/GET /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``GET …/Messages/{Sid}.json``
* ``GET /v2/Channels/Senders?Channel=whatsapp`` (messaging.twilio.com: the account's WhatsApp senders; the
  shared Sandbox number is not one of them, as on Twilio)
* ``POST/GET /v1/Content``, ``GET/DELETE /v1/Content/{HX…}``,
  ``POST /v1/Content/{HX…}/ApprovalRequests/whatsapp``, ``GET /v1/Content/{HX…}/ApprovalRequests``,
  ``GET /v1/ContentAndApprovals``

It checks HTTP Basic auth (account SID + auth token, or an API key SID + secret), validates
sends like Twilio (error JSON ``{"code","message","more_info","status"}``), records every
request, and plays the Twilio side of the webhooks: status callbacks for the messages it
accepted and inbound WhatsApp messages / quick-reply taps, signed with
``X-Twilio-Signature`` exactly as Twilio signs them (HMAC-SHA1 with the account auth token
over the *public* URL + sorted params).

Pointing the real client at it (what the product does with ``TWILIO_API_BASE_URL``)::

    with FakeTwilio() as fake:
        client = Client(fake.account_sid, fake.auth_token)
        client.api.base_url = fake.base_url       # Messages (api.twilio.com)
        client.content.base_url = fake.base_url   # Content API (content.twilio.com)
        client.messaging.base_url = fake.base_url # Senders API (messaging.twilio.com)
        # or simply: client = fake.client()
        m = client.messages.create(from_=fake.sender, to="whatsapp:+15551234567", body="hi")
        assert fake.sent[0].sid == m.sid

Webhooks. Twilio signs the URL configured in its console (e.g. ``https://abc.ngrok.app/twilio``)
but the request reaches the local server (``http://127.0.0.1:8000/twilio``). The fake
therefore keeps a *public* URL (what it signs) and a loopback *deliver_to* URL (where it
POSTs)::

    fake.configure_webhook("https://abc123.ngrok.app/twilio-webhook", deliver_to=server.url + "/twilio-webhook")

``configure_webhook`` also routes every other URL under the public origin (e.g. a
``StatusCallback`` of ``https://abc123.ngrok.app/twilio-status``) to the same loopback origin;
:meth:`FakeTwilio.add_route` adds more prefixes. Delivery to anything that is not loopback
is refused (``NonLoopbackError``).

Building and delivering webhooks is split in two, so the same API serves async tests, sync
code and hostile variants:

* builders (sync, no I/O) return a frozen :class:`Webhook`: :meth:`FakeTwilio.inbound_message`,
  :meth:`FakeTwilio.button_tap`, :meth:`FakeTwilio.status_callback`, :meth:`FakeTwilio.raw_webhook`;
* :class:`Webhook` variants: ``.unsigned()``, ``.forged()``, ``.with_signature(s)``,
  ``.with_params({...})`` (tampered, signature kept), ``.signed_with(token, url=…)``,
  ``.as_account(account_sid, token)`` (another account, signed with its token);
* delivery: ``await fake.deliver(webhook, client=None)`` (httpx.AsyncClient; pass a shared
  client for bulk sends) or ``fake.deliver_sync(webhook)``. Both return the server's
  :class:`WebhookResponse` (status, headers, body) and record a :class:`WebhookDelivery`.
  Delivering the same :class:`Webhook` twice is a replay (same MessageSid, same signature,
  same ``I-Twilio-Idempotency-Token``).
* async shortcuts: ``await fake.send_inbound(...)``, ``await fake.tap_button(...)``,
  ``await fake.send_status(sid, "failed", error_code=63015)``.

Example: a signed quick-reply tap on the buttons of the message the product sent::

    response = await fake.tap_button(from_="+15551234567", replied_to=fake.sent[-1].sid,
                                     payload="approve", title="Approve")
    assert response.status_code == 200

Status callbacks. Each accepted message gets a plan (by default ``queued → sent → delivered``;
``queued → failed`` or ``queued → sent → undelivered`` with an ``ErrorCode`` when a failure is
injected). With ``auto_callbacks=True`` (default) the fake runs the plan in the background
right after answering 201, updating the Message resource and POSTing each status to the
message's ``StatusCallback`` (if any). With ``auto_callbacks=False`` nothing happens until the
test calls ``await fake.run_status_plan(sid)`` / ``fake.run_status_plan_sync(sid)`` or sends
single statuses with ``await fake.send_status(...)`` / ``fake.deliver_sync(fake.status_callback(...))``.
``await fake.drain()`` / ``fake.drain_sync()`` waits until background plans are done. With
``fake.callbacks_before_response = True`` each plan is delivered before the 201 goes out, as when
Twilio's callbacks overtake its answer to the send.

Failure injection::

    fake.fail_next_send(63016)                         # next create -> HTTP 400, code 63016
    fake.fail_sends(20429, http_status=429, times=None)  # every create -> 429 / 20429
    fake.refuse_freeform(63016)                        # sends without ContentSid fail
    fake.refuse_templates(63021)                       # sends with ContentSid fail
    fake.refuse_content("HX…", 21655)                  # sends with that one ContentSid fail
    fake.fail_delivery(to="+15551234567", error_code=63015)  # accepted (201), then callback "failed"
    fake.fail_sends(20500, http_status=500)            # Twilio's own failure
    fake.hang_sends(60, to="+15551234567")             # creates answered only after 60 s (``fake.hung`` lists them)
    fake.clear_failures()                              # also lets the creates held by hang_sends go at once
    fake.refuse_connections()                          # stop listening, port kept: connections are refused
    fake.set_sender_status(fake.sender, "OFFLINE")     # how the Senders API lists a sender
    fake.accept_connections()                          # listen again on the same port

``FakeTwilio(enforce_session_window=True)`` models WhatsApp's 24-hour window: a free-form send
(or an unapproved template) to a number with no recent inbound message is accepted, then fails
with 63016 (building an inbound message, or ``open_session(number)``, opens the window).
``fake.env()`` gives ``TWILIO_*`` variables for a product process.

Choices where Twilio's behaviour is not documented (see the module constants):
a path AccountSid that is not the authenticated account answers **404 / 20404**, like any
unknown resource; Content API validation errors answer 400 with code 20001; an unknown or
malformed ContentSid answers 21655.

The real client against this fake (twilio 9.13, aiohttp 3.14), see tests/test_fake_twilio.py:
``AsyncTwilioHttpClient`` works for Messages with the ``base_url`` override, but it must be
constructed inside a running event loop, and every request emits two aiohttp
``DeprecationWarning``s (``BasicAuth``, ``auth=``) that pytest's ``filterwarnings = error``
turns into failures; ``contents.create_async`` through it sends a form-encoded body labelled
``application/json`` (the fake, like Twilio, rejects it), so create templates with the sync client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import hmac
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from twilio.request_validator import RequestValidator

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "DEFAULT_SENDER",
    "ERROR_MESSAGES",
    "SANDBOX_SENDER",
    "ContentTemplate",
    "FailureRule",
    "FakeTwilio",
    "HangRule",
    "LoopbackServer",
    "Message",
    "NonLoopbackError",
    "RecordedRequest",
    "Webhook",
    "WebhookDelivery",
    "WebhookResponse",
    "error_body",
    "is_loopback_url",
    "sign",
]

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "f4ce" * 8
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
DEFAULT_SENDER = "whatsapp:+14155238886"  # Twilio's shared WhatsApp Sandbox number
SANDBOX_SENDER = DEFAULT_SENDER
MAX_BODY = 1600
MAX_QUICK_REPLIES = 10
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_TEMPLATE_BODY = 1024
APPROVAL_CATEGORIES = ("UTILITY", "MARKETING", "AUTHENTICATION")
CONTENT_TYPES = (
    "twilio/text",
    "twilio/media",
    "twilio/location",
    "twilio/list-picker",
    "twilio/call-to-action",
    "twilio/quick-reply",
    "twilio/card",
    "twilio/catalog",
    "twilio/carousel",
    "twilio/flows",
    "twilio/schedule",
    "whatsapp/card",
    "whatsapp/authentication",
    "whatsapp/flows",
)
CONTENT_VALIDATION_CODE = 20001  # the fake's choice: the Content API's own code is undocumented

ERROR_MESSAGES: dict[int, str] = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    21211: "Invalid 'To' Phone Number: {to}",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21654: "ContentSid Required",
    21655: "The ContentSid is Invalid",
    21656: "The ContentVariables Parameter is invalid",
    21910: "Invalid From and To pair. From and To should be of the same channel",
    63007: "Twilio could not find a Channel with the specified From address",
    63015: "Channel Sandbox can only send messages to phone numbers that have joined the Sandbox",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    ),
    63018: "Rate limit exceeded for Channel",
    63021: "Channel invalid content error",
    63024: "Invalid message recipient",
}
_HTTP_STATUS: dict[int, int] = {20003: 401, 20004: 405, 20404: 404, 20429: 429}

_SID_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_ACCOUNT = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)\.json$")
_MESSAGES = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$")
_MESSAGE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")
_CONTENT = re.compile(r"^/v1/Content/(?P<sid>[^/]+)$")
_APPROVAL_CREATE = re.compile(r"^/v1/Content/(?P<sid>[^/]+)/ApprovalRequests/whatsapp$")
_APPROVAL_FETCH = re.compile(r"^/v1/Content/(?P<sid>[^/]+)/ApprovalRequests$")
_FORM = "application/x-www-form-urlencoded"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

FailureKind = Literal["any", "freeform", "template"]


# -- helpers ---------------------------------------------------------------------------


def sign(token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with form ``params`` (Twilio's HMAC-SHA1)."""
    return str(RequestValidator(token).compute_signature(url, dict(params or {})))


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs whose host is ``localhost`` or a loopback IP address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class NonLoopbackError(ValueError):
    """The fake refuses to deliver a webhook anywhere but loopback."""


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else email.utils.format_datetime(moment)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _bare(address: str) -> str:
    """``whatsapp:+1555…`` -> ``+1555…`` (other channel prefixes too)."""
    return address.split(":", 1)[1] if ":" in address else address


def _channel(address: str) -> str:
    return address.split(":", 1)[0] if ":" in address else "sms"


def _whatsapp(number: str) -> str:
    return number if number.startswith("whatsapp:") else "whatsapp:" + number


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _first(form: Mapping[str, list[str]]) -> dict[str, str]:
    return {key: values[0] for key, values in form.items() if values}


def _parse_form(raw: bytes) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(key, []).append(value)
    return form


def error_body(code: int, *, status: int | None = None, message: str | None = None, **fmt: str) -> dict[str, Any]:
    """Twilio's legacy error JSON for ``code`` (message from :data:`ERROR_MESSAGES` unless given)."""
    text = message if message is not None else ERROR_MESSAGES.get(code, f"Error {code}")
    with contextlib.suppress(KeyError, IndexError):
        text = text.format(**fmt)
    return {
        "code": code,
        "message": text,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status if status is not None else _HTTP_STATUS.get(code, 400),
    }


def _query_int(value: str | None, default: int, name: str) -> int:
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise _TwilioError(20001, message=f"Invalid {name}") from None


class _TwilioError(Exception):
    def __init__(self, code: int, *, status: int | None = None, message: str | None = None, **fmt: str) -> None:
        super().__init__(code)
        self.body = error_body(code, status=status, message=message, **fmt)

    @property
    def status(self) -> int:
        return int(self.body["status"])


# -- loopback server ---------------------------------------------------------------------


class LoopbackServer:
    """Serve an ASGI app with uvicorn on a free loopback port from a daemon thread.

    ``loop`` is the server's event loop while it runs (for ``run_coroutine_threadsafe``).
    """

    def __init__(self, app: ASGIApp, *, name: str = "loopback-server", host: str = "127.0.0.1") -> None:
        self.app = app
        self.name = name
        self.host = host
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if not self.port:
            raise RuntimeError(f"{self.name} is not running")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Bind a free port (the same one when started again) and serve in a daemon thread; returns once accepting."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))  # a free port the first time; the same one when started again
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)

        async def serve() -> None:
            # uvicorn's serve() polls should_exit every 0.1 s and sleeps 0.1 s in shutdown(); doing
            # what it does ourselves (load config, lifespan, startup; then close) makes stop() take ms.
            self.loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            config.load()
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[sock])
            if not server.started:
                return
            await self._stopping.wait()
            for listener in server.servers:
                listener.close()
            for connection in list(server.server_state.connections):
                connection.shutdown()
            for _ in range(400):  # up to 2 s for requests in flight
                if not (server.server_state.connections or server.server_state.tasks):
                    break
                await asyncio.sleep(0.005)

        thread = threading.Thread(target=asyncio.run, args=(serve(),), name=self.name, daemon=True)
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop the server thread (idempotent); requests in flight get up to 2 s to finish."""
        server, thread, loop, stopping = self._server, self._thread, self.loop, self._stopping
        if server is not None:
            server.should_exit = True
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self.loop = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LoopbackFake:
    """A fake service served by its `LoopbackServer`: started and stopped with it, or used as a context manager."""

    _server: LoopbackServer

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: what the server's setting for the service's API is set to."""
        return self._server.base_url

    def start(self, timeout: float = 10.0) -> Self:
        self._server.start(timeout)
        return self

    def stop(self) -> None:
        """Stop serving; background work still running (status callbacks, webhooks) is cancelled."""
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the fake's REST side received, and what it answered."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    form: dict[str, list[str]]
    """The parsed form body (empty unless form-encoded); repeated names keep every value."""
    json: Any
    """The parsed JSON body (``None`` unless the body was JSON)."""
    status_code: int
    auth_user: str | None
    """The Basic-auth user name presented (``None`` if there was no Basic auth)."""

    @property
    def params(self) -> dict[str, str]:
        """The form body, first value of each name."""
        return _first(self.form)


@dataclass
class Message:
    """A message the fake accepted (``POST …/Messages.json`` answered 201). Mutable: status moves on."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str | None
    content_sid: str | None
    content_variables: dict[str, str] | None
    status_callback: str | None
    messaging_service_sid: str | None
    form: dict[str, list[str]]
    """Every form field as sent."""
    date_created: datetime
    status: str = "queued"
    error_code: int | None = None
    error_message: str | None = None
    date_updated: datetime | None = None
    date_sent: datetime | None = None
    history: list[str] = field(default_factory=lambda: ["queued"])
    """Every status the message went through, in order (repeats of the current status not added)."""
    plan: list[tuple[str, int | None]] = field(default_factory=list)
    """Statuses still to come (status, ErrorCode)."""

    @property
    def is_template(self) -> bool:
        return self.content_sid is not None

    @property
    def params(self) -> dict[str, str]:
        return _first(self.form)

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """The Message resource as Twilio's 2010 API renders it."""
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body or "",
            "date_created": _rfc2822(self.date_created),
            "date_sent": _rfc2822(self.date_sent),
            "date_updated": _rfc2822(self.date_updated or self.date_created),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
            "to": self.to,
            "uri": f"{base}.json",
        }


@dataclass
class ContentTemplate:
    """A content template the fake holds (created through the API or :meth:`FakeTwilio.add_content`)."""

    sid: str
    account_sid: str
    friendly_name: str | None
    language: str
    variables: dict[str, str]
    types: dict[str, Any]
    date_created: datetime
    date_updated: datetime
    approval: dict[str, Any] | None = None
    """The WhatsApp approval request (``name, category, status, …``), if one was submitted."""

    @property
    def approval_status(self) -> str:
        return "unsubmitted" if self.approval is None else str(self.approval.get("status", ""))

    @property
    def quick_replies(self) -> list[dict[str, Any]]:
        """The ``twilio/quick-reply`` actions (empty if there is no quick-reply type)."""
        quick = self.types.get("twilio/quick-reply")
        actions = quick.get("actions") if isinstance(quick, dict) else None
        return [a for a in actions if isinstance(a, dict)] if isinstance(actions, list) else []

    def to_json(self, base_url: str) -> dict[str, Any]:
        url = f"{base_url}/v1/Content/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "date_created": _iso(self.date_created),
            "date_updated": _iso(self.date_updated),
            "friendly_name": self.friendly_name,
            "language": self.language,
            "links": {
                "approval_create": f"{url}/ApprovalRequests/whatsapp",
                "approval_fetch": f"{url}/ApprovalRequests",
            },
            "sid": self.sid,
            "types": self.types,
            "url": url,
            "variables": self.variables,
        }


@dataclass
class FailureRule:
    """An injected failure; the first matching rule (in insertion order) applies to a send.

    ``asynchronous=False``: the create answers ``http_status`` with error ``code`` and nothing is sent.
    ``asynchronous=True``: the create answers 201 and the message then goes ``delivery_status`` with
    ``ErrorCode=code`` (in the status callbacks and on the resource).
    """

    code: int
    http_status: int = 400
    message: str | None = None
    asynchronous: bool = False
    delivery_status: Literal["failed", "undelivered"] = "failed"
    to: str | None = None
    kind: FailureKind = "any"
    times: int | None = None
    """How many more sends this rule fails (``None``: no limit)."""
    content_sid: str | None = None
    """Only sends of this content template (``None``: any send)."""

    def matches(self, to: str, is_template: bool, content_sid: str | None = None) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.to is not None and _bare(self.to) != _bare(to):
            return False
        if self.content_sid is not None and self.content_sid != content_sid:
            return False
        return self.kind == "any" or (self.kind == "template") == is_template


@dataclass
class HangRule:
    """Matching creates are held ``seconds`` before they are answered (as usual, or by a failure rule):
    a Twilio that does not answer. ``released`` (set by :meth:`FakeTwilio.clear_failures`) lets them go."""

    seconds: float
    to: str | None = None
    times: int | None = None
    """How many more creates this rule holds (``None``: no limit)."""
    released: bool = False

    def matches(self, to: str) -> bool:
        if self.released or (self.times is not None and self.times <= 0):
            return False
        return self.to is None or _bare(self.to) == _bare(to)


# -- webhooks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResponse:
    """What the server answered to a webhook."""

    status_code: int
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Webhook:
    """A request Twilio would make to the product: signed over ``url``, POSTed to ``deliver_to``.

    ``params`` is the form body; ``body`` (when set) replaces it with raw bytes.
    ``signature=None`` sends no ``X-Twilio-Signature`` header.
    """

    kind: Literal["inbound", "status", "raw"]
    url: str
    deliver_to: str
    params: Mapping[str, str]
    signature: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = _FORM

    @property
    def message_sid(self) -> str | None:
        return self.params.get("MessageSid")

    def encoded(self) -> bytes:
        """The request body as sent."""
        if self.body is not None:
            return self.body
        return urlencode(list(self.params.items())).encode()

    def request_headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type, **dict(self.headers)}
        if self.signature is not None:
            headers["X-Twilio-Signature"] = self.signature
        return headers

    def unsigned(self) -> Webhook:
        """The same request without an ``X-Twilio-Signature`` header."""
        return replace(self, signature=None)

    def with_signature(self, signature: str) -> Webhook:
        """The same request with any signature header value (``""`` included)."""
        return replace(self, signature=signature)

    def forged(self) -> Webhook:
        """The same request with a well-formed but wrong signature."""
        return replace(self, signature=base64.b64encode(secrets.token_bytes(20)).decode())

    def with_params(self, changes: Mapping[str, str | None]) -> Webhook:
        """Tampered: params changed (``None`` removes one), the original signature kept."""
        params = dict(self.params)
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = value
        return replace(self, params=params)

    def signed_with(self, token: str, *, url: str | None = None) -> Webhook:
        """Re-signed with ``token`` over ``url`` (default: this webhook's public URL)."""
        target = url if url is not None else self.url
        if self.body is not None and self.content_type.startswith(_FORM):
            params = _first(_parse_form(self.body))
        else:
            params = dict(self.params)
        return replace(self, signature=sign(token, target, params))

    def as_account(self, account_sid: str, token: str) -> Webhook:
        """From another Twilio account: ``AccountSid`` replaced, signed with that account's token."""
        return self.with_params({"AccountSid": account_sid}).signed_with(token)


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook the fake POSTed (or tried to)."""

    webhook: Webhook
    response: WebhookResponse | None
    error: str | None
    """Why there is no response (connection refused, timeout, non-loopback target…)."""
    at: float = field(default_factory=time.monotonic)


# -- the fake ----------------------------------------------------------------------------


class FakeTwilio(LoopbackFake):
    """Fake Twilio REST API + webhook sender on a free loopback port.

    Works the same from sync and async tests: it serves (and runs automatic status
    callbacks) on its own thread and event loop.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        api_key: tuple[str, str] | None = None,
        senders: Sequence[str] | None = (DEFAULT_SENDER,),
        public_webhook_url: str | None = None,
        deliver_to: str | None = None,
        auto_callbacks: bool = True,
        callback_statuses: Sequence[str] = ("queued", "sent", "delivered"),
        callback_delay: float = 0.01,
        enforce_session_window: bool = False,
        session_window: timedelta = timedelta(hours=24),
        webhook_timeout: float = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        """
        :param api_key: an (``SK…`` key SID, secret) pair also accepted for REST auth.
        :param senders: the WhatsApp senders of the account; a ``From`` not in it gets 63007
            (``None`` accepts any). ``senders[0]`` is the ``To`` of inbound messages.
        :param auto_callbacks: run each message's status plan in the background after the 201.
        :param callback_statuses: the plan of a successful message.
        :param enforce_session_window: model WhatsApp's 24-hour window: a free-form send (or a
            template whose approval is not ``approved``) to a number with no inbound message in
            the last ``session_window`` is accepted and then fails with 63016.
        """
        if not account_sid.startswith("AC"):
            raise ValueError("account_sid must be an AC… SID")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_key = api_key
        self.senders = list(senders) if senders is not None else None
        self.auto_callbacks = auto_callbacks
        # Twilio's status callbacks can overtake its answer to the send: with this set, each message's whole plan is
        # delivered before the 201 goes out.
        self.callbacks_before_response = False
        self.callback_statuses = list(callback_statuses)
        self.callback_delay = callback_delay
        self.enforce_session_window = enforce_session_window
        self.session_window = session_window
        self.webhook_timeout = webhook_timeout
        self.channel_install_sid = _new_sid("XE")
        # The account as ``GET /2010-04-01/Accounts/{sid}.json`` shows it.
        self.account_name = "My first Twilio account"
        self.account_status = "active"
        self.account_type = "Full"
        self._sender_sids: dict[str, str] = {}
        self._sender_status: dict[str, str] = {}
        self.public_webhook_url: str | None = None
        self._routes: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._messages: dict[str, Message] = {}
        self._contents: dict[str, ContentTemplate] = {}
        self._failures: list[FailureRule] = []
        self._hangs: list[HangRule] = []
        self._hung: list[str] = []
        self._deliveries: list[WebhookDelivery] = []
        self._last_inbound: dict[str, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: set[str] = set()  # messages whose automatic plan has not finished
        self._server = LoopbackServer(self._app(), name="fake-twilio", host=host)
        if public_webhook_url is not None or deliver_to is not None:
            if public_webhook_url is None or deliver_to is None:
                raise ValueError("give both public_webhook_url and deliver_to")
            self.configure_webhook(public_webhook_url, deliver_to)

    # -- the account -----------------------------------------------------------------

    @property
    def sender(self) -> str:
        """The account's (first) WhatsApp sender, e.g. ``whatsapp:+14155238886``."""
        return self.senders[0] if self.senders else DEFAULT_SENDER

    def client(self, http_client: Any = None) -> Any:
        """A real ``twilio.rest.Client`` for this account, pointed at the fake (both domains)."""
        from twilio.rest import Client

        # A non-empty environment: with {} (falsy) the library would read TWILIO_EDGE/REGION from os.environ.
        client = Client(self.account_sid, self.auth_token, http_client=http_client, environment={"_": ""})
        client.api.base_url = self.base_url
        client.content.base_url = self.base_url
        client.messaging.base_url = self.base_url
        return client

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a product process using this fake (``TWILIO_API_BASE_URL`` etc.)."""
        return {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_WHATSAPP_FROM": _bare(self.sender),
            "TWILIO_API_BASE_URL": self.base_url,
            **extra,
        }

    # -- state for assertions --------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[Message]:
        """Messages accepted (201), in order. The objects are live: their status moves on."""
        with self._lock:
            return list(self._messages.values())

    def message(self, sid: str) -> Message:
        with self._lock:
            return self._messages[sid]

    @property
    def contents(self) -> list[ContentTemplate]:
        """Content templates currently held (deleted ones are gone)."""
        with self._lock:
            return list(self._contents.values())

    def content(self, sid: str) -> ContentTemplate:
        with self._lock:
            return self._contents[sid]

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """Every webhook the fake POSTed or tried to (inbound, status, raw), in order."""
        with self._lock:
            return list(self._deliveries)

    @property
    def callbacks(self) -> list[WebhookDelivery]:
        """The status-callback deliveries, in order."""
        return [d for d in self.deliveries if d.webhook.kind == "status"]

    def reset(self) -> None:
        """Forget requests, messages, contents, failures, deliveries and sessions."""
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self._contents.clear()
            self._failures.clear()
            for rule in self._hangs:
                rule.released = True
            self._hangs.clear()
            self._hung.clear()
            self._deliveries.clear()
            self._last_inbound.clear()
            self._pending.clear()

    # -- configuration ---------------------------------------------------------------

    def configure_webhook(self, public_webhook_url: str, deliver_to: str) -> None:
        """Set the inbound webhook: Twilio signs ``public_webhook_url`` and the fake POSTs to
        the loopback ``deliver_to``. Other URLs under the public origin (status callbacks)
        are routed to the ``deliver_to`` origin."""
        if not is_loopback_url(deliver_to):
            raise NonLoopbackError(f"refusing non-loopback delivery URL {deliver_to!r}")
        self.public_webhook_url = public_webhook_url
        self.add_route(public_webhook_url, deliver_to)
        self.add_route(_origin(public_webhook_url), _origin(deliver_to))

    def add_route(self, public_prefix: str, local_prefix: str) -> None:
        """Deliver webhooks for URLs starting with ``public_prefix`` to ``local_prefix`` + rest."""
        if not is_loopback_url(local_prefix):
            raise NonLoopbackError(f"refusing non-loopback delivery URL {local_prefix!r}")
        with self._lock:
            self._routes = [r for r in self._routes if r[0] != public_prefix]
            self._routes.append((public_prefix, local_prefix))
            self._routes.sort(key=lambda r: len(r[0]), reverse=True)

    def local_url(self, public_url: str) -> str:
        """Where a webhook for ``public_url`` is delivered; raises :class:`NonLoopbackError`."""
        with self._lock:
            routes = list(self._routes)
        for public, local in routes:
            if public_url == public or public_url.startswith(public.rstrip("/") + "/"):
                return local + public_url[len(public) :]
            if public_url.startswith(public + "?"):
                return local + public_url[len(public) :]
        if is_loopback_url(public_url):
            return public_url
        raise NonLoopbackError(f"no loopback route for {public_url!r} (see FakeTwilio.add_route)")

    def add_content(
        self,
        *,
        friendly_name: str = "approval_request",
        language: str = "en",
        variables: Mapping[str, str] | None = None,
        types: Mapping[str, Any] | None = None,
        approval_status: str | None = "approved",
    ) -> ContentTemplate:
        """Seed a content template (default: quick reply Approve/Deny, approved for WhatsApp)."""
        now = _now()
        template = ContentTemplate(
            sid=_new_sid("HX"),
            account_sid=self.account_sid,
            friendly_name=friendly_name,
            language=language,
            variables=dict(variables or {"1": "ls -la", "2": "abc123"}),
            types=dict(
                types
                or {
                    "twilio/quick-reply": {
                        "body": "Approve {{1}}? Request {{2}}.",
                        "actions": [{"title": "Approve", "id": "approve"}, {"title": "Deny", "id": "deny"}],
                    },
                    "twilio/text": {"body": "Approve {{1}}? Reply YES or NO. Request {{2}}."},
                }
            ),
            date_created=now,
            date_updated=now,
        )
        if approval_status is not None:
            template.approval = self._approval_json(template, friendly_name, "UTILITY", approval_status)
        with self._lock:
            self._contents[template.sid] = template
        return template

    def set_approval(self, content_sid: str, status: str, *, rejection_reason: str = "") -> None:
        """Move a template's WhatsApp approval to ``status`` (e.g. ``approved``, ``rejected``)."""
        with self._lock:
            template = self._contents[content_sid]
            if template.approval is None:
                template.approval = self._approval_json(template, template.friendly_name or "", "UTILITY", status)
            template.approval["status"] = status
            template.approval["rejection_reason"] = rejection_reason

    def set_sender_status(self, sender: str, status: str) -> None:
        """How the Senders API lists ``sender`` (``ONLINE`` by default; e.g. ``OFFLINE``, ``PENDING_VERIFICATION``)."""
        with self._lock:
            self._sender_status[_whatsapp(_bare(sender))] = status

    def open_session(self, number: str) -> None:
        """Record an inbound message from ``number`` now (opens the 24-hour window)."""
        with self._lock:
            self._last_inbound[_bare(number)] = _now()

    def close_session(self, number: str) -> None:
        with self._lock:
            self._last_inbound.pop(_bare(number), None)

    # -- failure injection -----------------------------------------------------------

    def fail_sends(
        self,
        code: int,
        *,
        http_status: int | None = None,
        message: str | None = None,
        times: int | None = None,
        to: str | None = None,
        kind: FailureKind = "any",
        content_sid: str | None = None,
    ) -> FailureRule:
        """Make matching creates fail synchronously (``times=None``: until cleared)."""
        rule = FailureRule(
            code=code,
            http_status=http_status if http_status is not None else _HTTP_STATUS.get(code, 400),
            message=message,
            to=to,
            kind=kind,
            times=times,
            content_sid=content_sid,
        )
        with self._lock:
            self._failures.append(rule)
        return rule

    def fail_next_send(
        self, code: int, *, http_status: int | None = None, message: str | None = None, to: str | None = None
    ) -> FailureRule:
        """Make the next (matching) create fail synchronously once."""
        return self.fail_sends(code, http_status=http_status, message=message, times=1, to=to)

    def refuse_freeform(
        self, code: int = 63016, *, asynchronous: bool = False, http_status: int | None = None
    ) -> FailureRule:
        """Sends without ``ContentSid`` fail (the 24-hour window is closed)."""
        if asynchronous:
            return self.fail_delivery(error_code=code, kind="freeform")
        return self.fail_sends(code, http_status=http_status, kind="freeform")

    def refuse_templates(
        self, code: int = 63016, *, asynchronous: bool = False, http_status: int | None = None
    ) -> FailureRule:
        """Sends with a ``ContentSid`` fail (e.g. 63016, 63021)."""
        if asynchronous:
            return self.fail_delivery(error_code=code, kind="template")
        return self.fail_sends(code, http_status=http_status, kind="template")

    def refuse_content(self, content_sid: str, code: int = 21655, *, http_status: int | None = None) -> FailureRule:
        """Sends of the template ``content_sid`` fail with ``code`` (e.g. 21655, 21656, 63021, 63027); others go."""
        return self.fail_sends(code, http_status=http_status, kind="template", content_sid=content_sid)

    def fail_delivery(
        self,
        *,
        to: str | None = None,
        error_code: int = 63016,
        status: Literal["failed", "undelivered"] = "failed",
        kind: FailureKind = "any",
        times: int | None = None,
    ) -> FailureRule:
        """Matching sends are accepted (201) and then fail: callbacks carry ``status`` + ``ErrorCode``."""
        rule = FailureRule(code=error_code, asynchronous=True, delivery_status=status, to=to, kind=kind, times=times)
        with self._lock:
            self._failures.append(rule)
        return rule

    def hang_sends(self, seconds: float, *, to: str | None = None, times: int | None = None) -> HangRule:
        """Hold matching creates ``seconds`` before answering them (``times=None``: until cleared)."""
        rule = HangRule(seconds=seconds, to=to, times=times)
        with self._lock:
            self._hangs.append(rule)
        return rule

    @property
    def hung(self) -> list[str]:
        """The ``To`` of every create a :meth:`hang_sends` rule held, in arrival order."""
        with self._lock:
            return list(self._hung)

    def clear_failures(self) -> None:
        """Forget every injected failure; creates held by :meth:`hang_sends` are answered at once."""
        with self._lock:
            self._failures.clear()
            for rule in self._hangs:
                rule.released = True
            self._hangs.clear()

    def refuse_connections(self) -> None:
        """Stop listening, keeping the port: every connection is refused until :meth:`accept_connections`."""
        self._server.stop()

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        self._server.start()

    # -- webhook builders ------------------------------------------------------------

    def inbound_message(
        self,
        *,
        from_: str,
        body: str,
        profile_name: str = "Approver",
        to: str | None = None,
        message_sid: str | None = None,
        message_type: str = "text",
        extra: Mapping[str, str] | None = None,
        url: str | None = None,
        open_session: bool = True,
    ) -> Webhook:
        """An inbound WhatsApp text from ``from_`` (E.164, with or without ``whatsapp:``),
        signed for the configured public webhook URL (or ``url``). ``extra`` adds or overrides
        fields. With ``open_session`` (default) building it opens the sender's 24-hour window."""
        number = _bare(from_)
        sid = message_sid or _new_sid("SM")
        profile = {"ProfileName": profile_name, "WaId": number.lstrip("+")}
        params = {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ProfileName": profile_name,
            "MessageType": message_type,
            "SmsSid": sid,
            "WaId": number.lstrip("+"),
            "SmsStatus": "received",
            "Body": body,
            "To": _whatsapp(_bare(to)) if to else self.sender,
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": _whatsapp(number),
            "ApiVersion": API_VERSION,
        }
        context: dict[str, str] = dict(profile)
        if extra:
            params.update(extra)
            if "ButtonText" in extra:
                context = {"ButtonText": extra["ButtonText"], **profile}
        params["ChannelMetadata"] = json.dumps({"type": "whatsapp", "data": {"context": context}})
        if open_session:
            self.open_session(number)
        return self._signed("inbound", url or self._inbound_url(), params)

    def button_tap(
        self,
        *,
        from_: str,
        replied_to: str,
        payload: str,
        title: str,
        message_type: Literal["interactive", "button"] = "interactive",
        profile_name: str = "Approver",
        to: str | None = None,
        message_sid: str | None = None,
        extra: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> Webhook:
        """A quick-reply tap on the buttons of outbound message ``replied_to``: ``Body`` and
        ``ButtonText`` are the title, ``ButtonPayload`` the action id."""
        with self._lock:
            original = self._messages.get(replied_to)
        replied_sender = original.from_ if original is not None else (_whatsapp(_bare(to)) if to else self.sender)
        fields = {
            "ButtonText": title,
            "ButtonPayload": payload,
            "OriginalRepliedMessageSid": replied_to,
            "OriginalRepliedMessageSender": replied_sender,
            **dict(extra or {}),
        }
        return self.inbound_message(
            from_=from_,
            body=title,
            profile_name=profile_name,
            to=to,
            message_sid=message_sid,
            message_type=message_type,
            extra=fields,
            url=url,
        )

    def status_callback(
        self, message_sid: str, status: str, *, error_code: int | None = None, url: str | None = None
    ) -> Webhook:
        """The status callback Twilio sends for ``message_sid`` reaching ``status``, signed for
        the message's ``StatusCallback`` (or ``url``). Building it updates the stored message
        (status, error code, dates), as Twilio updates the resource before calling back."""
        with self._lock:
            message = self._messages[message_sid]
            self._set_status(message, status, error_code)
            target = url or message.status_callback
            params = self._callback_params(message, status, error_code)
        if target is None:
            raise ValueError(f"message {message_sid} has no StatusCallback; pass url=")
        return self._signed("status", target, params)

    def raw_webhook(
        self,
        body: bytes | str,
        *,
        content_type: str = _FORM,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> Webhook:
        """Arbitrary bytes POSTed to the inbound webhook (unsigned unless ``signature``)."""
        raw = body.encode() if isinstance(body, str) else body
        public = url or self._inbound_url()
        return Webhook(
            kind="raw",
            url=public,
            deliver_to=self.local_url(public),
            params={},
            signature=signature,
            headers=dict(headers or {}),
            body=raw,
            content_type=content_type,
        )

    # -- webhook delivery ------------------------------------------------------------

    async def deliver(self, webhook: Webhook, *, client: httpx.AsyncClient | None = None) -> WebhookResponse:
        """POST ``webhook`` from the caller's event loop; returns the server's response.

        Pass a shared ``client`` for many deliveries. Network errors propagate (and are recorded).
        """
        self._check_target(webhook)
        if client is None:
            async with self._async_client() as own:
                return await self._post(webhook, own)
        return await self._post(webhook, client)

    def deliver_sync(self, webhook: Webhook, *, client: httpx.Client | None = None) -> WebhookResponse:
        """POST ``webhook`` from sync code (blocking); returns the server's response."""
        self._check_target(webhook)
        if client is None:
            with self._sync_client() as own:
                return self._post_sync(webhook, own)
        return self._post_sync(webhook, client)

    async def send_inbound(self, *, from_: str, body: str, **kwargs: Any) -> WebhookResponse:
        """Build and deliver :meth:`inbound_message`."""
        return await self.deliver(self.inbound_message(from_=from_, body=body, **kwargs))

    async def tap_button(
        self, *, from_: str, replied_to: str, payload: str, title: str, **kwargs: Any
    ) -> WebhookResponse:
        """Build and deliver :meth:`button_tap`."""
        return await self.deliver(
            self.button_tap(from_=from_, replied_to=replied_to, payload=payload, title=title, **kwargs)
        )

    async def send_status(
        self, message_sid: str, status: str, *, error_code: int | None = None, url: str | None = None
    ) -> WebhookResponse:
        """Build and deliver :meth:`status_callback`."""
        return await self.deliver(self.status_callback(message_sid, status, error_code=error_code, url=url))

    async def run_status_plan(self, message_sid: str) -> list[WebhookDelivery]:
        """Play the rest of a message's status plan now (from the caller's loop)."""
        async with self._async_client() as client:
            return await self._run_plan(message_sid, client)

    def run_status_plan_sync(self, message_sid: str) -> list[WebhookDelivery]:
        """Play the rest of a message's status plan now (blocking)."""
        results: list[WebhookDelivery] = []
        with self._sync_client() as client:
            while (step := self._next_step(message_sid)) is not None:
                webhook = self._apply_step(message_sid, *step)
                if webhook is not None:
                    results.append(self._record_sync(webhook, client))
        return results

    async def drain(self, within: float = 10.0) -> None:
        """Wait (up to ``within`` seconds) until no automatic status plan is running."""
        deadline = time.monotonic() + within
        while self._busy():
            if time.monotonic() > deadline:
                raise TimeoutError("status callbacks still running")
            await asyncio.sleep(0.01)

    def drain_sync(self, within: float = 10.0) -> None:
        """Blocking :meth:`drain`."""
        deadline = time.monotonic() + within
        while self._busy():
            if time.monotonic() > deadline:
                raise TimeoutError("status callbacks still running")
            time.sleep(0.01)

    # -- webhook internals -----------------------------------------------------------

    def _inbound_url(self) -> str:
        if self.public_webhook_url is None:
            raise RuntimeError("no webhook configured: call configure_webhook(public_url, deliver_to)")
        return self.public_webhook_url

    def _signed(self, kind: Literal["inbound", "status", "raw"], url: str, params: dict[str, str]) -> Webhook:
        headers = {
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "X-Home-Region": "us1",
        }
        return Webhook(
            kind=kind,
            url=url,
            deliver_to=self.local_url(url),
            params=params,
            signature=sign(self.auth_token, url, params),
            headers=headers,
        )

    def _check_target(self, webhook: Webhook) -> None:
        if not is_loopback_url(webhook.deliver_to):
            raise NonLoopbackError(f"refusing non-loopback delivery URL {webhook.deliver_to!r}")

    # Loopback only, so no proxies from the environment and no CA bundle (loading it costs ~30 ms of CPU).
    def _async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(trust_env=False, verify=False, timeout=self.webhook_timeout)

    def _sync_client(self) -> httpx.Client:
        return httpx.Client(trust_env=False, verify=False, timeout=self.webhook_timeout)

    def _remember(self, delivery: WebhookDelivery) -> WebhookDelivery:
        with self._lock:
            self._deliveries.append(delivery)
        return delivery

    async def _post(self, webhook: Webhook, client: httpx.AsyncClient) -> WebhookResponse:
        try:
            answer = await client.post(webhook.deliver_to, content=webhook.encoded(), headers=webhook.request_headers())
        except httpx.HTTPError as exc:
            self._remember(WebhookDelivery(webhook, None, f"{type(exc).__name__}: {exc}"))
            raise
        response = WebhookResponse(
            answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content
        )
        self._remember(WebhookDelivery(webhook, response, None))
        return response

    def _post_sync(self, webhook: Webhook, client: httpx.Client) -> WebhookResponse:
        try:
            answer = client.post(webhook.deliver_to, content=webhook.encoded(), headers=webhook.request_headers())
        except httpx.HTTPError as exc:
            self._remember(WebhookDelivery(webhook, None, f"{type(exc).__name__}: {exc}"))
            raise
        response = WebhookResponse(
            answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content
        )
        self._remember(WebhookDelivery(webhook, response, None))
        return response

    async def _record_async(self, webhook: Webhook, client: httpx.AsyncClient) -> WebhookDelivery:
        """Deliver without raising: failures are recorded (what Twilio does with callback errors)."""
        if not is_loopback_url(webhook.deliver_to):
            return self._remember(WebhookDelivery(webhook, None, "refused: non-loopback target"))
        with contextlib.suppress(httpx.HTTPError):
            await self._post(webhook, client)
        with self._lock:
            return self._deliveries[-1]

    def _record_sync(self, webhook: Webhook, client: httpx.Client) -> WebhookDelivery:
        if not is_loopback_url(webhook.deliver_to):
            return self._remember(WebhookDelivery(webhook, None, "refused: non-loopback target"))
        with contextlib.suppress(httpx.HTTPError):
            self._post_sync(webhook, client)
        with self._lock:
            return self._deliveries[-1]

    def _next_step(self, message_sid: str) -> tuple[str, int | None] | None:
        with self._lock:
            message = self._messages.get(message_sid)
            if message is None or not message.plan:
                return None
            return message.plan.pop(0)

    def _apply_step(self, message_sid: str, status: str, error_code: int | None) -> Webhook | None:
        with self._lock:
            message = self._messages[message_sid]
            self._set_status(message, status, error_code)
            target = message.status_callback
            params = self._callback_params(message, status, error_code)
        if target is None:
            return None
        try:
            return self._signed("status", target, params)
        except NonLoopbackError:
            return Webhook("status", target, target, params, sign(self.auth_token, target, params))

    async def _run_plan(self, message_sid: str, client: httpx.AsyncClient) -> list[WebhookDelivery]:
        results: list[WebhookDelivery] = []
        while (step := self._next_step(message_sid)) is not None:
            if self.callback_delay:
                await asyncio.sleep(self.callback_delay)
            webhook = self._apply_step(message_sid, *step)
            if webhook is not None:
                results.append(await self._record_async(webhook, client))
        return results

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._pending)

    async def _spawn_plan(self, message_sid: str) -> None:
        """Runs in the server loop, after the 201 went out (a Starlette background task)."""

        async def run() -> None:
            async with self._async_client() as client:
                await self._run_plan(message_sid, client)

        task = asyncio.get_running_loop().create_task(run())
        with self._lock:
            self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            with self._lock:
                self._tasks.discard(finished)
                self._pending.discard(message_sid)

        task.add_done_callback(done)

    def _set_status(self, message: Message, status: str, error_code: int | None) -> None:
        now = _now()
        if message.history[-1:] != [status]:
            message.history.append(status)
        message.status = status
        message.date_updated = now
        if status in ("sent", "delivered", "read", "undelivered") and message.date_sent is None:
            message.date_sent = now
        if error_code is not None:
            message.error_code = error_code
            message.error_message = ERROR_MESSAGES.get(error_code, f"Error {error_code}")

    def _callback_params(self, message: Message, status: str, error_code: int | None) -> dict[str, str]:
        params = {
            "ChannelPrefix": _channel(message.to),
            "ApiVersion": API_VERSION,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "ChannelInstallSid": self.channel_install_sid,
            "To": message.to,
            "From": message.from_,
            "MessageSid": message.sid,
            "StructuredMessage": "false",
            "AccountSid": message.account_sid,
            "ChannelToAddress": _bare(message.to),
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if status == "delivered":
            params["EventType"] = "DELIVERED"
        elif status == "read":
            params["EventType"] = "READ"
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
            params["ChannelStatusMessage"] = ERROR_MESSAGES.get(error_code, f"Error {error_code}")
        return params

    # -- REST app --------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=_ALL_METHODS)])

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        form = _parse_form(raw) if content_type.startswith(_FORM) else {}
        parsed_json: Any = None
        if raw and "json" in content_type:
            try:
                parsed_json = json.loads(raw)
            except ValueError:
                parsed_json = None
        user = self._basic_user(request)
        if request.method == "POST" and _MESSAGES.match(request.url.path):
            await self._hold(_first(form).get("To", ""))
        try:
            response = self._dispatch(request, form, parsed_json, raw, user)
        except _TwilioError as exc:
            response = JSONResponse(exc.body, status_code=exc.status)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        if self.callbacks_before_response and response.background is not None:
            background, response.background = response.background, None
            await background()
            await self.drain()
        response.headers["Twilio-Request-Id"] = _new_sid("RQ")
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=raw,
            form=form,
            json=parsed_json,
            status_code=response.status_code,
            auth_user=user[0] if user else None,
        )
        with self._lock:
            self._requests.append(recorded)
        return response

    async def _hold(self, to: str) -> None:
        """Wait as the first :meth:`hang_sends` rule matching ``to`` says (until it is released)."""
        with self._lock:
            rule = next((r for r in self._hangs if r.matches(to)), None)
            if rule is None:
                return
            if rule.times is not None:
                rule.times -= 1
            self._hung.append(to)
        deadline = time.monotonic() + rule.seconds
        while time.monotonic() < deadline and not rule.released:  # noqa: ASYNC110 (released from the test's thread)
            await asyncio.sleep(0.01)

    @staticmethod
    def _basic_user(request: Request) -> tuple[str, str] | None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        return (name, password) if sep else None

    def _authenticated(self, user: tuple[str, str] | None) -> bool:
        if user is None:
            return False
        pairs = [(self.account_sid, self.auth_token)]
        if self.api_key is not None:
            pairs.append(self.api_key)
        ok = False
        for name, secret in pairs:
            ok |= hmac.compare_digest(user[0].encode(), name.encode()) & hmac.compare_digest(
                user[1].encode(), secret.encode()
            )
        return ok

    def _dispatch(
        self, request: Request, form: dict[str, list[str]], body: Any, raw: bytes, user: tuple[str, str] | None
    ) -> Response:
        if not self._authenticated(user):
            raise _TwilioError(20003)
        path, method = request.url.path, request.method
        base = str(request.base_url).rstrip("/")
        Handler = Callable[[Mapping[str, str]], Response]
        routes: list[tuple[re.Pattern[str] | str, dict[str, Handler]]] = [
            (_ACCOUNT, {"GET": lambda m: self._fetch_account(m["account"], path)}),
            ("/v2/Channels/Senders", {"GET": lambda m: self._list_senders(request, base)}),
            (
                _MESSAGES,
                {
                    "POST": lambda m: self._create_message(m["account"], form),
                    "GET": lambda m: self._list_messages(m["account"], request),
                },
            ),
            (_MESSAGE, {"GET": lambda m: self._fetch_message(m["account"], m["sid"], path)}),
            (
                "/v1/Content",
                {
                    "POST": lambda m: self._create_content(body, raw, base),
                    "GET": lambda m: self._list_contents(request, base),
                },
            ),
            (
                _CONTENT,
                {
                    "GET": lambda m: JSONResponse(self._get_content(m["sid"], path).to_json(base)),
                    "DELETE": lambda m: self._delete_content(m["sid"], path),
                },
            ),
            (_APPROVAL_CREATE, {"POST": lambda m: self._create_approval(m["sid"], body, path)}),
            (_APPROVAL_FETCH, {"GET": lambda m: self._fetch_approval(m["sid"], path, base)}),
            ("/v1/ContentAndApprovals", {"GET": lambda m: self._list_content_and_approvals(request, base)}),
        ]
        for pattern, handlers in routes:
            if isinstance(pattern, str):
                match: Mapping[str, str] | None = {} if path == pattern else None
            else:
                found = pattern.match(path)
                match = found.groupdict() if found else None
            if match is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                raise _TwilioError(20004)
            return handler(match)
        raise _TwilioError(20404, path=path)

    # -- Account and senders -----------------------------------------------------------

    def _fetch_account(self, account: str, path: str) -> Response:
        self._check_account(account, path)
        created = _rfc2822(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        base = f"/{API_VERSION}/Accounts/{account}"
        return JSONResponse(
            {
                "auth_token": self.auth_token,
                "date_created": created,
                "date_updated": created,
                "friendly_name": self.account_name,
                "owner_account_sid": account,
                "sid": account,
                "status": self.account_status,
                "subresource_uris": {"messages": f"{base}/Messages.json"},
                "type": self.account_type,
                "uri": f"{base}.json",
            }
        )

    def _list_senders(self, request: Request, base: str) -> Response:
        channel = request.query_params.get("Channel")
        if not channel:
            raise _TwilioError(CONTENT_VALIDATION_CODE, message="Missing required parameter Channel")
        with self._lock:
            records = []
            for sender in self.senders or []:
                if sender == SANDBOX_SENDER or _channel(sender) != channel.lower():
                    continue
                sid = self._sender_sids.setdefault(sender, _new_sid("XE"))
                records.append(
                    {
                        "sid": sid,
                        "status": self._sender_status.get(sender, "ONLINE"),
                        "sender_id": sender,
                        "configuration": {"waba_id": "1234567890", "verification_method": "sms"},
                        "webhook": {"callback_url": None, "callback_method": "POST"},
                        "profile": {"name": "Approval server"},
                        "properties": {"quality_rating": "HIGH", "messaging_limit": "1K"},
                        "offline_reasons": None,
                        "url": f"{base}/v2/Channels/Senders/{sid}",
                    }
                )
        return self._page(request, base, "senders", records)

    # -- Messages --------------------------------------------------------------------

    def _check_account(self, account: str, path: str) -> None:
        if account != self.account_sid:
            raise _TwilioError(20404, path=path)

    def _create_message(self, account: str, form: dict[str, list[str]]) -> Response:
        self._check_account(account, f"/{API_VERSION}/Accounts/{account}/Messages.json")
        params = _first(form)
        to = params.get("To", "")
        from_ = params.get("From")
        service = params.get("MessagingServiceSid")
        body = params.get("Body")
        content_sid = params.get("ContentSid")
        callback = params.get("StatusCallback")
        if not to:
            raise _TwilioError(21604)
        if not from_ and not service:
            raise _TwilioError(21603)
        sender = from_ or self.sender
        if not _E164.match(_bare(to)):
            raise _TwilioError(21211, to=to)
        if _channel(sender) != _channel(to):
            raise _TwilioError(21910)
        if from_ and self.senders is not None and from_ not in self.senders:
            raise _TwilioError(63007)
        if not body and not content_sid and not params.get("MediaUrl"):
            raise _TwilioError(21602)
        if body is not None and len(body) > MAX_BODY:
            raise _TwilioError(21617)
        variables = self._content_variables(form, content_sid)
        template: ContentTemplate | None = None
        if content_sid is not None:
            with self._lock:
                template = self._contents.get(content_sid)
            if template is None or not _SID_HEX.match(content_sid[2:]) or not content_sid.startswith("HX"):
                raise _TwilioError(21655)
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.hostname or "_" in parts.hostname:
                raise _TwilioError(21609)
        is_template = content_sid is not None
        with self._lock:
            rule = next((r for r in self._failures if r.matches(to, is_template, content_sid)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
            in_session = self._in_session(to)
        if rule is not None and not rule.asynchronous:
            raise _TwilioError(rule.code, status=rule.http_status, message=rule.message, to=to)
        plan = self._plan_for(rule, is_template, template, in_session)
        now = _now()
        message = Message(
            sid=_new_sid("SM"),
            account_sid=self.account_sid,
            to=to,
            from_=sender,
            body=body,
            content_sid=content_sid,
            content_variables=variables,
            status_callback=callback,
            messaging_service_sid=service,
            form=form,
            date_created=now,
            date_updated=now,
            plan=plan,
        )
        with self._lock:
            self._messages[message.sid] = message
            if self.auto_callbacks:
                self._pending.add(message.sid)
            payload = message.to_json()
        task = BackgroundTask(self._spawn_plan, message.sid) if self.auto_callbacks else None
        return JSONResponse(payload, status_code=201, background=task)

    def _in_session(self, to: str) -> bool:
        last = self._last_inbound.get(_bare(to))
        return last is not None and _now() - last <= self.session_window

    def _plan_for(
        self, rule: FailureRule | None, is_template: bool, template: ContentTemplate | None, in_session: bool
    ) -> list[tuple[str, int | None]]:
        statuses = list(self.callback_statuses)
        failure: tuple[str, int] | None = None
        if rule is not None:
            failure = (rule.delivery_status, rule.code)
        elif self.enforce_session_window and not in_session:
            approved = template is not None and template.approval_status == "approved"
            if not is_template or not approved:
                failure = ("failed", 63016)
        if failure is None:
            return [(s, None) for s in statuses]
        status, code = failure
        keep = ("queued", "accepted", "sending") if status == "failed" else ("queued", "accepted", "sending", "sent")
        return [(s, None) for s in statuses if s in keep] + [(status, code)]

    @staticmethod
    def _content_variables(form: dict[str, list[str]], content_sid: str | None) -> dict[str, str] | None:
        values = form.get("ContentVariables")
        if values is None:
            return None
        if content_sid is None:
            raise _TwilioError(21654)
        if len(values) != 1:
            raise _TwilioError(21656)
        try:
            parsed = json.loads(values[0])
        except ValueError:
            raise _TwilioError(21656) from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
            raise _TwilioError(21656)
        return {str(k): str(v) for k, v in parsed.items()}

    def _fetch_message(self, account: str, sid: str, path: str) -> Response:
        self._check_account(account, path)
        with self._lock:
            message = self._messages.get(sid)
            if message is None:
                raise _TwilioError(20404, path=path)
            return JSONResponse(message.to_json())

    def _list_messages(self, account: str, request: Request) -> Response:
        self._check_account(account, request.url.path)
        query = request.query_params
        size = _query_int(query.get("PageSize"), 50, "PageSize")
        with self._lock:
            messages = [
                m
                for m in reversed(self._messages.values())
                if (not query.get("To") or m.to == query["To"]) and (not query.get("From") or m.from_ == query["From"])
            ]
            records = [m.to_json() for m in messages[:size]]
        uri = f"/{API_VERSION}/Accounts/{account}/Messages.json?PageSize={size}&Page=0"
        return JSONResponse(
            {
                "messages": records,
                "end": max(len(records) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    # -- Content API -----------------------------------------------------------------

    def _get_content(self, sid: str, path: str) -> ContentTemplate:
        with self._lock:
            template = self._contents.get(sid)
        if template is None:
            raise _TwilioError(20404, path=path)
        return template

    def _delete_content(self, sid: str, path: str) -> Response:
        with self._lock:
            if self._contents.pop(sid, None) is None:
                raise _TwilioError(20404, path=path)
        return Response(status_code=204)

    def _create_content(self, body: Any, raw: bytes, base: str) -> Response:
        def invalid(message: str) -> _TwilioError:
            return _TwilioError(CONTENT_VALIDATION_CODE, message=message)

        if not isinstance(body, dict):
            raise invalid("Invalid JSON body" if raw else "Missing request body")
        language = body.get("language")
        types = body.get("types")
        variables = body.get("variables", {})
        friendly_name = body.get("friendly_name")
        if not isinstance(language, str) or not language:
            raise invalid("Missing required parameter language in the post body")
        if not isinstance(types, dict) or not types:
            raise invalid("Missing required parameter types in the post body")
        if friendly_name is not None and not isinstance(friendly_name, str):
            raise invalid("friendly_name must be a string")
        if not isinstance(variables, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
        ):
            raise invalid("variables must be an object of string values")
        for name, spec in types.items():
            if name not in CONTENT_TYPES:
                raise invalid(f"Unknown content type {name}")
            if not isinstance(spec, dict):
                raise invalid(f"{name} must be an object")
        text = types.get("twilio/text")
        if isinstance(text, dict):
            text_body = text.get("body")
            if not isinstance(text_body, str) or not text_body or len(text_body) > MAX_BODY:
                raise invalid("twilio/text body is required (at most 1600 characters)")
        quick = types.get("twilio/quick-reply")
        if isinstance(quick, dict):
            self._check_quick_reply(quick, invalid)
        now = _now()
        template = ContentTemplate(
            sid=_new_sid("HX"),
            account_sid=self.account_sid,
            friendly_name=friendly_name,
            language=language,
            variables=dict(variables),
            types=types,
            date_created=now,
            date_updated=now,
        )
        with self._lock:
            self._contents[template.sid] = template
        return JSONResponse(template.to_json(base), status_code=201)

    @staticmethod
    def _check_quick_reply(quick: dict[str, Any], invalid: Callable[[str], _TwilioError]) -> None:
        quick_body = quick.get("body")
        if not isinstance(quick_body, str) or not quick_body or len(quick_body) > MAX_TEMPLATE_BODY:
            raise invalid("twilio/quick-reply body is required (at most 1024 characters)")
        actions = quick.get("actions")
        if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_QUICK_REPLIES:
            raise invalid(f"twilio/quick-reply actions must hold 1 to {MAX_QUICK_REPLIES} actions")
        for action in actions:
            if not isinstance(action, dict):
                raise invalid("quick-reply action must be an object")
            title, action_id, kind = action.get("title"), action.get("id"), action.get("type")
            if not isinstance(title, str) or not title or len(title) > MAX_BUTTON_TITLE:
                raise invalid(f"quick-reply title is required (at most {MAX_BUTTON_TITLE} characters)")
            if action_id is not None and (not isinstance(action_id, str) or len(action_id) > MAX_BUTTON_ID):
                raise invalid(f"quick-reply id must be a string of at most {MAX_BUTTON_ID} characters")
            if kind is not None and kind != "QUICK_REPLY":
                raise invalid("quick-reply action type must be QUICK_REPLY")

    def _page(self, request: Request, base: str, key: str, records: list[dict[str, Any]]) -> Response:
        query = request.query_params
        size = max(1, min(_query_int(query.get("PageSize"), 50, "PageSize"), 1000))
        page = _query_int(query.get("Page"), 0, "Page")
        token = query.get("PageToken")
        start = _query_int(token[2:] if token.startswith("PT") else "x", 0, "PageToken") if token else page * size
        chunk = records[start : start + size]
        path = request.url.path

        def url(number: int, offset: int) -> str:
            return f"{base}{path}?PageSize={size}&Page={number}&PageToken=PT{offset}"

        meta = {
            "page": page,
            "page_size": size,
            "first_page_url": f"{base}{path}?PageSize={size}&Page=0",
            "previous_page_url": url(page - 1, max(start - size, 0)) if page > 0 else None,
            "url": url(page, start),
            "next_page_url": url(page + 1, start + size) if start + size < len(records) else None,
            "key": key,
        }
        return JSONResponse({key: chunk, "meta": meta})

    def _list_contents(self, request: Request, base: str) -> Response:
        with self._lock:
            records = [t.to_json(base) for t in self._contents.values()]
        return self._page(request, base, "contents", records)

    def _list_content_and_approvals(self, request: Request, base: str) -> Response:
        with self._lock:
            records = []
            for template in self._contents.values():
                record = template.to_json(base)
                for dropped in ("url", "links"):
                    record.pop(dropped)
                record["approval_requests"] = dict(template.approval or {})
                records.append(record)
        return self._page(request, base, "contents", records)

    def _approval_json(self, template: ContentTemplate, name: str, category: str, status: str) -> dict[str, Any]:
        content_type = next(iter(template.types), "twilio/text")
        return {
            "name": name,
            "category": category,
            "content_type": content_type,
            "status": status,
            "rejection_reason": "",
            "allow_category_change": True,
        }

    def _create_approval(self, sid: str, body: Any, path: str) -> Response:
        template = self._get_content(sid, path)
        if not isinstance(body, dict):
            raise _TwilioError(CONTENT_VALIDATION_CODE, message="Missing request body")
        name, category = body.get("name"), body.get("category")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,512}", name):
            raise _TwilioError(CONTENT_VALIDATION_CODE, message="name is required: lowercase letters, digits and _")
        if category not in APPROVAL_CATEGORIES:
            raise _TwilioError(
                CONTENT_VALIDATION_CODE, message=f"category must be one of {', '.join(APPROVAL_CATEGORIES)}"
            )
        with self._lock:
            if any(t.approval and t.approval.get("name") == name for t in self._contents.values()):
                raise _TwilioError(CONTENT_VALIDATION_CODE, message=f"Template name {name} already exists")
            template.approval = self._approval_json(template, name, str(category), "received")
            payload = dict(template.approval)
        return JSONResponse(payload, status_code=201)

    def _fetch_approval(self, sid: str, path: str, base: str) -> Response:
        template = self._get_content(sid, path)
        with self._lock:
            whatsapp = dict(template.approval or {})
        return JSONResponse(
            {
                "sid": template.sid,
                "account_sid": template.account_sid,
                "whatsapp": whatsapp,
                "url": f"{base}/v1/Content/{sid}/ApprovalRequests",
            }
        )
