"""Who may use the dashboard: the login token, signed session cookies, CSRF tokens, per-approver request links and
each person's own login links.

Every key is derived from the dashboard token, so every process with the same token accepts the same sessions
and links, and changing the token signs everyone out and voids every link already sent. Signing uses
`itsdangerous` (the library behind Starlette's and Flask's sessions), each purpose with its own salt.

A person's login link holds a random secret of its own, not derived from the dashboard token: the store keeps only
its SHA-256 (`login_secret_hash`), and the link works until `approval-server people revoke`. A session made with it
names that person and that login, and is honoured only while the login is live (see `dashboard_access`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_COOKIE = "approval_session"
SESSION_SECONDS = 7 * 24 * 3600
WRONG_TOKENS_PER_MINUTE = 5
OWNER = "owner"  # who a session signed in with the dashboard token decides as


def new_login_secret() -> tuple[str, str, str]:
    """A new person login: its id, the secret its link carries, and the hash of that secret the store keeps."""
    secret = secrets.token_urlsafe(32)
    return secrets.token_hex(6), secret, login_secret_hash(secret)


def login_secret_hash(secret: str) -> str:
    return hashlib.sha256(b"approval-server person login:" + secret.encode()).hexdigest()


class LinkRefused(Exception):
    """A request link that must not be honoured; `str(exc)` says why, in words for the page."""


@dataclass(frozen=True)
class RequestLink:
    """What a valid request link grants: deciding `request_id`, as `approver`, once. `channel`: the channel whose
    own buttons post it (ntfy's), which may then record the answer as theirs; None for a link to open in a browser."""

    request_id: str
    approver: str
    nonce: str
    channel: str | None = None


@dataclass(frozen=True)
class Session:
    """A signed-in browser. `sid` keys its CSRF tokens; `person` and `login` say who signed in with their own link
    (both None: the owner, with the dashboard token)."""

    sid: str
    person: str | None = None
    login: str | None = None

    @property
    def actor(self) -> str:
        """Whom the record names for what this session decides."""
        return self.person or OWNER


class WebAuth:
    def __init__(self, dashboard_token: str) -> None:
        self._token = dashboard_token.encode()
        key = hmac.new(self._token, b"approval-server dashboard keys", hashlib.sha256).digest()
        self._key = key
        self._sessions = URLSafeTimedSerializer(key, salt="dashboard-session")
        self._links = URLSafeTimedSerializer(key, salt="request-link")

    def token_matches(self, given: str) -> bool:
        return secrets.compare_digest(given.encode(), self._token)

    def new_session(self, person: str | None = None, login: str | None = None) -> str:
        """A fresh session cookie value: the owner's, or with `person` and `login`, that person's."""
        data = {"sid": secrets.token_urlsafe(16)}
        if person is not None and login is not None:
            data |= {"p": person, "l": login}
        return self._sessions.dumps(data)

    def session(self, cookie: str | None) -> Session | None:
        """The session in a cookie value, or None if it is missing, forged or older than `SESSION_SECONDS`."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        person, login = data.get("p"), data.get("l")
        if person is None and login is None:
            return Session(data["sid"])
        if isinstance(person, str) and isinstance(login, str):
            return Session(data["sid"], person, login)
        return None

    def csrf_token(self, bound_to: str) -> str:
        """The CSRF token for forms of one session (or one request link): only this server can compute it."""
        return hmac.new(self._key, b"csrf:" + bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, bound_to: str, given: str) -> bool:
        return secrets.compare_digest(self.csrf_token(bound_to).encode(), given.encode())

    def request_link_token(self, request_id: str, approver: str, channel: str | None = None) -> str:
        data = {"r": request_id, "a": approver, "n": secrets.token_urlsafe(12)}
        return self._links.dumps(data | ({"c": channel} if channel is not None else {}))

    def read_request_link(self, token: str, max_age: float) -> RequestLink:
        """Check a link's signature and that it is at most `max_age` seconds old. Raises `LinkRefused`."""
        try:
            data = self._links.loads(token, max_age=max(1, int(max_age) + 1))
        except SignatureExpired:
            raise LinkRefused("This link has expired.") from None
        except BadSignature:
            raise LinkRefused("This link is not valid: it was changed or was not made by this server.") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("r", "a", "n")):
            raise LinkRefused("This link is not valid.")
        channel = data.get("c")
        if channel is not None and not isinstance(channel, str):
            raise LinkRefused("This link is not valid.")
        return RequestLink(request_id=data["r"], approver=data["a"], nonce=data["n"], channel=channel)

    def peek_request_id(self, token: str) -> str | None:
        """The request id a correctly signed link names, before its age can be checked against that request."""
        try:
            data = self._links.loads(token)
        except BadSignature:
            return None
        request_id = data.get("r") if isinstance(data, dict) else None
        return request_id if isinstance(request_id, str) else None


class WrongTokenLimit:
    """At most `per_minute` wrong tokens (login tokens, request links) from one client address in any 60 seconds;
    past that the address is refused until its oldest miss is a minute old. Other addresses are not affected, so an
    attacker cannot lock the owner out from elsewhere.

    Written by hand: a sliding window of a few timestamps per address. A rate-limit package (`limits`) would bring a
    dependency and a timer thread for this one counter. At most `max_addresses` are remembered (the least recently
    seen forgotten first), so a flood of addresses cannot grow memory without bound. Each replica counts its own.
    """

    WINDOW = 60.0

    def __init__(
        self,
        per_minute: int = WRONG_TOKENS_PER_MINUTE,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_minute = per_minute
        self._max_addresses = max_addresses
        self._clock = clock
        self._misses: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        misses = self._misses.get(address)
        if misses is None:
            return deque()
        while misses and misses[0] <= self._clock() - self.WINDOW:
            misses.popleft()
        return misses

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None if it may now."""
        misses = self._recent(address)
        if len(misses) < self._per_minute:
            return None
        return max(1, round(misses[0] + self.WINDOW - self._clock()))

    def wrong(self, address: str) -> None:
        """Count one wrong token from `address`."""
        misses = self._recent(address)
        misses.append(self._clock())
        self._misses[address] = misses
        self._misses.move_to_end(address)
        while len(self._misses) > self._max_addresses:
            self._misses.popitem(last=False)
