"""A local fake of ntfy's publish API, for the ntfy channel, and the phone app that presses its buttons.

No package gives a real ntfy server here (Debian has none; ntfy is a Go program), so this fake serves, on one
127.0.0.1 port from a background thread (`LoopbackServer`, as the Twilio fake does), the parts of ntfy the channel
uses, in ntfy's wire format, with ntfy's checks in ntfy's order (from ntfy's `server/server.go`, v2.13, and the
update / clear / delete API of v2.16):

* ``POST``/``PUT /`` — publish as JSON (``{"topic", "title", "message", "priority", "tags", "click", "icon",
  "actions", "markdown", "sequence_id", …}``); the fields become the headers of a publish to the topic;
* ``POST``/``PUT /<topic>`` — publish with headers (``X-Title``, ``X-Priority``, ``X-Tags``, ``X-Click``,
  ``X-Actions`` (JSON form only), ``X-Markdown``, ``X-Sequence-ID``) and the body as the message;
* ``POST``/``PUT /<topic>/<sequence id>``, ``PUT /<topic>/<sequence id>/clear``, ``DELETE /<topic>/<sequence id>`` —
  update, clear and delete a notification (ntfy 2.16 and later; ``FakeNtfy(sequence_ids=False)`` is an older
  server: these paths are 404, and a ``sequence_id`` is ignored, so an "update" is one more notification);
* ``GET /<topic>/auth`` — ``{"success": true}`` when the caller may read the topic (403 if not);
* ``GET /v1/health`` — ``{"healthy": true}``.

Checks, each answered as ntfy answers (``{"code", "http", "error", "link"}``): a token ntfy does not know is 401
(40101) before anything else, whatever the topic; a JSON body that is not JSON is 400 (40024), one over twice the
message limit 413 (41303); a topic not 1–64 of ``[-_A-Za-z0-9]`` is 400 (40009), a reserved one (``docs``, ``v1``, …)
400 (40010); injected rate limits 429; a topic the caller may not write 403 (40301); a bad priority 400 (40007);
actions that are not a JSON array of at most 3 valid buttons 400 (40018); a message that is not UTF-8 400 (40011).
A message over the limit (4,096 bytes) is, as on ntfy, no longer a message: it becomes a file attachment
(``attachment.txt``, the notification saying "You received a file: …"), or 400 (40014) when attachments are off.
Leading and trailing white space of the title and the message are trimmed, as ntfy's ``TrimSpace`` does.

Access, as ntfy with an auth file: ``default_access`` for anonymous publishers (``"read-write"`` as on ntfy.sh, or
``"deny-all"``), ``deny_anonymous(pattern)`` for topics anonymous users may not write, and ``add_token(user, write=
(pattern, …))`` for an access token (``tk_`` and 29 lower-case letters or digits) that may write those topics.
``FakeNtfy(auth=False)`` is a server without an auth file: an ``Authorization`` header is ignored.

What a subscriber's phone would show, and what its buttons do:

* ``fake.published`` — every message accepted, in order (`Published`: its JSON as ntfy answered it, and the
  request's ``Authorization`` header); ``fake.requests`` — every request and its answer;
* ``fake.shown(topic)`` — the notifications in the phone's drawer now: an update replaces the notification of its
  sequence id, a clear or delete (or a pressed button with ``clear``) removes it;
* ``await fake.press(message, "Approve")`` — does what the ntfy Android app does for an ``http`` action button: the
  request with the action's method (``POST`` when none), URL, headers and body, ``User-Agent: ntfy/…``, no
  ``Content-Type``; a 2xx with ``clear`` removes the notification. The URL's public origin is mapped to a loopback
  one (``route(public_origin, deliver_to)``); anything else that is not loopback is refused (`NonLoopbackError`).

Failure injection: ``fail_next(42901)`` (the next publish answers 429 "too many requests"; any ntfy code), and
``refuse_connections()`` / ``accept_connections()``.

Choices where ntfy's behaviour is not in the source the fake was written from: an invalid sequence id (not 1–64 of
``[-_A-Za-z0-9]``, ntfy 2.16's rule for them as for topics) is 400 with the topic's code, 40009; actions in ntfy's
"simple" header form are refused with 40018 (the channel only sends JSON).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fake_twilio import LoopbackFake, LoopbackServer, NonLoopbackError

MESSAGE_LIMIT = 4096  # ntfy's DefaultMessageSizeLimit, in bytes
ACTIONS_MAX = 3
TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
DISALLOWED_TOPICS = ("docs", "static", "file", "app", "metrics", "account", "settings", "signup", "login", "v1")
EMPTY_MESSAGE = "triggered"
APP_USER_AGENT = "ntfy/1.22.2 (fake; Android)"
DOCS = "https://ntfy.sh/docs/publish/"

ERRORS: dict[int, tuple[int, str, str]] = {
    40007: (400, "invalid priority parameter", DOCS + "#message-priority"),
    40009: (400, "invalid request: topic invalid", ""),
    40010: (400, "invalid request: topic name is not allowed", ""),
    40011: (400, "invalid request: message must be UTF-8 encoded", ""),
    40014: (400, "invalid request: attachments not allowed", "https://ntfy.sh/docs/config/#attachments"),
    40018: (400, "invalid request: actions invalid", DOCS + "#action-buttons"),
    40021: (400, "invalid request: icon URL is invalid", DOCS + "#icons"),
    40024: (400, "invalid request: request body must be valid JSON", ""),
    40101: (401, "unauthorized", DOCS + "#authentication"),
    40301: (403, "forbidden", DOCS + "#authentication"),
    40401: (404, "page not found", ""),
    41303: (413, "JSON body too large", ""),
    42901: (429, "limit reached: too many requests", DOCS + "#limitations"),
    42908: (429, "limit reached: daily message quota reached", DOCS + "#limitations"),
    50001: (500, "internal server error", ""),
}
_PRIORITIES = {"": 0, "1": 1, "min": 1, "2": 2, "low": 2, "3": 3, "default": 3, "4": 4, "high": 4}
_PRIORITIES.update({"5": 5, "max": 5, "urgent": 5})
# The fields of a JSON publish and the header each becomes (ntfy's `transformBodyJSON`).
_JSON_HEADERS = {
    "title": "x-title",
    "priority": "x-priority",
    "click": "x-click",
    "icon": "x-icon",
    "markdown": "x-markdown",
    "sequence_id": "x-sequence-id",
    "cache": "x-cache",
    "firebase": "x-firebase",
}

# Other names ntfy reads the same headers by (its `readParam` aliases).
_ALIASES = {
    **dict.fromkeys(("title", "ti", "t"), "x-title"),
    **dict.fromkeys(("priority", "prio", "p"), "x-priority"),
    **dict.fromkeys(("tags", "tag", "ta"), "x-tags"),
    **dict.fromkeys(("actions", "action"), "x-actions"),
    **dict.fromkeys(("markdown", "md"), "x-markdown"),
    **dict.fromkeys(("sequence-id", "sid"), "x-sequence-id"),
    "click": "x-click",
    "icon": "x-icon",
}


class NtfyError(Exception):
    """An error answer of ntfy's: `code` is ntfy's own (40101), its HTTP status the first three digits' meaning."""

    def __init__(self, code: int, detail: str = "") -> None:
        status, text, link = ERRORS[code]
        self.status = status
        self.body: dict[str, Any] = {"code": code, "http": status, "error": f"{text}; {detail}" if detail else text}
        if link:
            self.body["link"] = link
        super().__init__(self.body["error"])


def _random_id(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_token() -> str:
    """An access token as ntfy makes them: `tk_` and 29 lower-case letters or digits."""
    return "tk_" + _random_id(29, string.ascii_lowercase + string.digits)


def _matches(pattern: str, topic: str) -> bool:
    """ntfy's topic patterns: `*` stands for any run of characters."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), topic) is not None


@dataclass(frozen=True)
class Action:
    id: str
    action: str
    label: str
    clear: bool
    url: str = ""
    method: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass(frozen=True)
class Published:
    """One message ntfy accepted: `json` is what it answered (and what subscribers receive)."""

    json: dict[str, Any]
    authorization: str | None

    @property
    def id(self) -> str:
        return str(self.json["id"])

    @property
    def topic(self) -> str:
        return str(self.json["topic"])

    @property
    def event(self) -> str:
        return str(self.json["event"])

    @property
    def title(self) -> str:
        return str(self.json.get("title", ""))

    @property
    def message(self) -> str:
        return str(self.json.get("message", ""))

    @property
    def sequence_id(self) -> str:
        """The notification this message is (an update replaces the one of its sequence id); its id when none."""
        return str(self.json.get("sequence_id") or self.json["id"])

    @property
    def actions(self) -> list[Action]:
        return [Action(**action) for action in self.json.get("actions", [])]

    def action(self, label: str) -> Action:
        found = [action for action in self.actions if action.label == label]
        if len(found) != 1:
            raise LookupError(f"{len(found)} actions labelled {label!r} in {self.json}")
        return found[0]


@dataclass(frozen=True)
class Recorded:
    """One request the fake received, and its answer."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status_code: int
    answer: dict[str, Any]


@dataclass(frozen=True)
class Press:
    """A button pressed on the phone: the request the app made and what it got back."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    status_code: int
    text: str
    cleared: bool


class FakeNtfy(LoopbackFake):
    """A fake ntfy server on a free loopback port; works the same from sync and async tests."""

    def __init__(
        self,
        *,
        auth: bool = True,
        default_access: str = "read-write",
        sequence_ids: bool = True,
        attachments: bool = True,
        message_limit: int = MESSAGE_LIMIT,
        host: str = "127.0.0.1",
    ) -> None:
        if default_access not in ("read-write", "deny-all"):
            raise ValueError("default_access is read-write or deny-all")
        self.auth = auth
        self.default_access = default_access
        self.sequence_ids = sequence_ids
        self.attachments = attachments
        self.message_limit = message_limit
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, tuple[str, ...]]] = {}  # token → (user, topic patterns it may write)
        self._anonymous_denied: list[str] = []
        self._failures: list[int] = []
        self._published: list[Published] = []
        self._requests: list[Recorded] = []
        self._gone: set[tuple[str, str]] = set()  # (topic, sequence id) cleared or deleted on the phone
        self._routes: dict[str, str] = {}  # public origin → loopback origin
        self._server = LoopbackServer(self._app(), name="fake-ntfy", host=host)

    # -- lifecycle -------------------------------------------------------------------------

    def refuse_connections(self) -> None:
        """Stop listening (the port is kept): publishing then fails to connect."""
        self._server.stop()

    def accept_connections(self) -> None:
        self._server.start()

    # -- configuration ---------------------------------------------------------------------

    def add_token(self, user: str, write: tuple[str, ...] = (), token: str | None = None) -> str:
        """An access token of `user`, who may write the topics matching `write` (`*` as in ntfy's ACL)."""
        made = token or new_token()
        with self._lock:
            self._tokens[made] = (user, write)
        return made

    def deny_anonymous(self, *patterns: str) -> None:
        """Anonymous publishers may not write these topics (`ntfy access everyone <pattern> deny`)."""
        with self._lock:
            self._anonymous_denied.extend(patterns)

    def fail_next(self, code: int = 42901, times: int = 1) -> None:
        """The next `times` publishes that get past the topic checks fail with ntfy's error `code`."""
        with self._lock:
            self._failures.extend([code] * times)

    def route(self, public_origin: str, deliver_to: str) -> None:
        """Buttons whose URL is under `public_origin` reach `deliver_to` (a loopback origin) instead."""
        self._routes[public_origin.rstrip("/")] = deliver_to.rstrip("/")

    # -- what was sent, and the phone ------------------------------------------------------

    @property
    def published(self) -> list[Published]:
        with self._lock:
            return list(self._published)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def on(self, topic: str) -> list[Published]:
        """The messages published to `topic`, in order."""
        return [message for message in self.published if message.topic == topic]

    def shown(self, topic: str) -> list[Published]:
        """The notifications of `topic` in the phone's drawer now, oldest first: one per sequence id, its latest."""
        latest: dict[str, Published] = {}
        for message in self.on(topic):
            latest.pop(message.sequence_id, None)  # an update moves to the top, as the app shows it
            latest[message.sequence_id] = message
        with self._lock:
            gone = set(self._gone)
        return [message for sid, message in latest.items() if message.event == "message" and (topic, sid) not in gone]

    def local_url(self, url: str) -> str:
        """`url` with its public origin mapped to loopback; `NonLoopbackError` for anywhere else."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin in self._routes:
            local = urlsplit(self._routes[origin])
            parts = parts._replace(scheme=local.scheme, netloc=local.netloc)
        host = parts.hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise NonLoopbackError(f"the fake presses buttons only on loopback, not {url}")
        return urlunsplit(parts)

    async def press(self, message: Published, label: str, client: httpx.AsyncClient | None = None) -> Press:
        """Press the `http` button `label` of `message` as the ntfy app does."""
        action = message.action(label)
        if action.action != "http":
            raise ValueError(f"{label!r} is a {action.action} action, not http")
        method = action.method or "POST"
        headers = {"User-Agent": APP_USER_AGENT, **action.headers}
        content = action.body.encode() if action.body or method not in ("GET", "HEAD") else None
        own = client is None
        http = client or httpx.AsyncClient(timeout=15)
        try:
            response = await http.request(method, self.local_url(action.url), headers=headers, content=content)
        finally:
            if own:
                await http.aclose()
        cleared = action.clear and response.is_success
        if cleared:
            with self._lock:
                self._gone.add((message.topic, message.sequence_id))
        sent = {name.lower(): value for name, value in response.request.headers.items()}
        return Press(method, action.url, sent, action.body, response.status_code, response.text, cleared)

    # -- the server ------------------------------------------------------------------------

    def _app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            user = self._authenticate(headers.get("authorization", ""))
            answer = self._route(request.method, request.url.path, headers, body, user)
            status = 200
        except NtfyError as exc:
            answer, status = exc.body, exc.status
        with self._lock:
            self._requests.append(Recorded(request.method, request.url.path, headers, body, status, answer))
        return JSONResponse(answer, status_code=status)

    def _authenticate(self, authorization: str) -> str | None:
        """The user the header names: None (anonymous) without one; 401 for a token ntfy does not know."""
        value = authorization.strip()
        if not self.auth or not value.lower().startswith(("basic ", "bearer ")):
            return None
        if value.lower().startswith("bearer "):
            with self._lock:
                known = self._tokens.get(value[7:].strip())
            if known is not None:
                return known[0]
        raise NtfyError(40101)  # the fake has no passwords: any Basic auth is unknown

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes, user: str | None) -> dict[str, Any]:
        parts = path.strip("/").split("/") if path.strip("/") else []
        if method == "GET" and path == "/v1/health":
            return {"healthy": True}
        if method == "GET" and len(parts) == 2 and parts[1] == "auth" and TOPIC.fullmatch(parts[0]):
            if not self._may_write(user, parts[0]):  # the fake's grants are read-write, as `ntfy access … rw`
                raise NtfyError(40301)
            return {"success": True}
        if method in ("POST", "PUT") and path == "/":
            topic, params, text = self._from_json(body)
            return self._publish(user, topic, {**params, "authorization": headers.get("authorization", "")}, text)
        params = {_ALIASES.get(name, name): value for name, value in headers.items()}
        if method in ("POST", "PUT") and len(parts) == 1 and TOPIC.fullmatch(parts[0]):
            return self._publish(user, parts[0], params, body)
        if self.sequence_ids and len(parts) in (2, 3) and TOPIC.fullmatch(parts[0]):
            topic, sid = parts[0], parts[1]
            if method in ("POST", "PUT") and len(parts) == 2:
                return self._publish(user, topic, {**params, "x-sequence-id": sid}, body)
            if (method, parts[2:]) in (("PUT", ["clear"]), ("DELETE", [])):
                return self._close(user, topic, sid, "message_clear" if parts[2:] else "message_delete")
        raise NtfyError(40401)

    def _from_json(self, body: bytes) -> tuple[str, dict[str, str], bytes]:
        """ntfy's `transformBodyJSON`: the topic, the fields as headers, and the message as the body."""
        if len(body) > 2 * self.message_limit:
            raise NtfyError(41303)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise NtfyError(40024) from None
        if not isinstance(data, dict):
            raise NtfyError(40024)
        topic = data.get("topic")
        if not isinstance(topic, str) or not TOPIC.fullmatch(topic):
            raise NtfyError(40009)
        params: dict[str, str] = {}
        for name, header in _JSON_HEADERS.items():
            value = data.get(name)
            if value not in (None, "", 0, False):
                params[header] = "yes" if value is True else str(value)
        if data.get("tags"):
            params["x-tags"] = ",".join(str(tag) for tag in data["tags"])
        if data.get("actions"):
            params["x-actions"] = json.dumps(data["actions"])
        message = data.get("message")
        text = message if isinstance(message, str) and message else EMPTY_MESSAGE
        return topic, params, text.encode()

    def _check_topic(self, user: str | None, topic: str) -> None:
        if not TOPIC.fullmatch(topic):
            raise NtfyError(40009)
        if topic in DISALLOWED_TOPICS:
            raise NtfyError(40010)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise NtfyError(failure)
        if not self._may_write(user, topic):
            raise NtfyError(40301)

    def _may_write(self, user: str | None, topic: str) -> bool:
        if not self.auth:
            return True
        with self._lock:
            if user is not None:
                granted = [patterns for name, patterns in self._tokens.values() if name == user]
                if any(_matches(pattern, topic) for patterns in granted for pattern in patterns):
                    return True
            if any(_matches(pattern, topic) for pattern in self._anonymous_denied):
                return False
        return self.default_access == "read-write"

    def _publish(self, user: str | None, topic: str, params: Mapping[str, str], body: bytes) -> dict[str, Any]:
        self._check_topic(user, topic)
        message: dict[str, Any] = {
            "id": _random_id(12),
            "time": int(time.time()),
            "expires": int(time.time()) + 12 * 3600,
            "event": "message",
            "topic": topic,
        }
        title = params.get("x-title", "").strip()
        if title:
            message["title"] = title
        try:
            priority = _PRIORITIES[params.get("x-priority", "").strip().lower()]
        except KeyError:
            raise NtfyError(40007) from None
        if priority:
            message["priority"] = priority
        tags = [tag.strip() for tag in params.get("x-tags", "").split(",") if tag.strip()]
        if tags:
            message["tags"] = tags
        for name in ("click", "icon"):
            value = params.get(f"x-{name}", "").strip()
            if name == "icon" and value and not re.match(r"^https?://", value):
                raise NtfyError(40021)
            if value:
                message[name] = value
        actions = params.get("x-actions", "").strip()
        if actions:
            message["actions"] = _parse_actions(actions)
        if params.get("x-markdown", "").lower() in ("1", "yes", "true"):
            message["content_type"] = "text/markdown"
        sid = params.get("x-sequence-id", "").strip()
        if sid and self.sequence_ids:
            if not TOPIC.fullmatch(sid):
                raise NtfyError(40009, "sequence ID invalid")
            message["sequence_id"] = sid
        if len(body) > self.message_limit:  # ntfy's case 7: no longer a message but a file
            if not self.attachments:
                raise NtfyError(40014)
            message["attachment"] = {"name": "attachment.txt", "type": "text/plain; charset=utf-8", "size": len(body)}
            message["message"] = "You received a file: attachment.txt"
        else:
            try:
                text = body.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise NtfyError(40011) from None
            message["message"] = text or EMPTY_MESSAGE
        with self._lock:
            self._published.append(Published(message, params.get("authorization") or None))
            self._gone.discard((topic, sid or message["id"]))
        return message

    def _close(self, user: str | None, topic: str, sid: str, event: str) -> dict[str, Any]:
        """Clear or delete the notification `sid` of `topic` on every subscriber (ntfy 2.16)."""
        self._check_topic(user, topic)
        if not TOPIC.fullmatch(sid):
            raise NtfyError(40009, "sequence ID invalid")
        message = {"id": _random_id(12), "time": int(time.time()), "event": event, "topic": topic}
        message["sequence_id"] = sid
        with self._lock:
            self._published.append(Published(message, None))
            self._gone.add((topic, sid))
        return message


def _parse_actions(text: str) -> list[dict[str, Any]]:
    """ntfy's `parseActions` for the JSON form: at most 3 buttons, each view, broadcast or http, with a label,
    a URL for view and http, no body with GET or HEAD."""
    if not text.startswith("["):
        raise NtfyError(40018, "the fake reads only the JSON form of actions")
    try:
        given = json.loads(text)
    except ValueError as exc:
        raise NtfyError(40018, f"JSON error: {exc}") from None
    if not isinstance(given, list) or not all(isinstance(item, dict) for item in given):
        raise NtfyError(40018, "JSON error: not an array of objects")
    if len(given) > ACTIONS_MAX:
        raise NtfyError(40018, f"only {ACTIONS_MAX} actions allowed")
    actions = []
    for item in given:
        kind = str(item.get("action", "")).lower()
        method = str(item.get("method", "")).upper()
        action = {
            "id": _random_id(10),
            "action": kind,
            "label": str(item.get("label", "")),
            "clear": bool(item.get("clear", False)),
        }
        for name in ("url", "body"):
            if item.get(name):
                action[name] = str(item[name])
        if method:
            action["method"] = method
        if item.get("headers"):
            action["headers"] = {str(key): str(value) for key, value in dict(item["headers"]).items()}
        if kind not in ("view", "broadcast", "http"):
            detail = f"parameter 'action' cannot be '{kind}', valid values are 'view', 'broadcast' and 'http'"
            raise NtfyError(40018, detail)
        if not action["label"]:
            raise NtfyError(40018, "parameter 'label' is required")
        if kind in ("view", "http") and not action.get("url"):
            raise NtfyError(40018, f"parameter 'url' is required for action '{kind}'")
        if kind == "http" and method in ("GET", "HEAD") and action.get("body"):
            raise NtfyError(40018, f"parameter 'body' cannot be set if method is {method}")
        actions.append(action)
    return actions
