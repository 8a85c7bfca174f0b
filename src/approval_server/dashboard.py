"""The web dashboard: the requests waiting for a decision, live, and the searchable audit trail.

Pages are rendered here with Jinja2 (autoescaping on, so an input holding `<script>` is text); the small script in
`static/dashboard.js` only follows server-sent events, inserts the HTML fragments rendered here and counts down.
Like the API, the dashboard is an entry point: decisions go to `Broker.decide`. It is not a channel: it never
reaches anyone by itself, so it does not keep a request alive when every channel that does has failed.

Access: a session cookie obtained with the dashboard token (`/login`), or a signed request link (`/r/<token>`)
sent to one approver, which decides one pending request, once, as that approver. Every form carries a CSRF token
and a cross-site or same-site-but-other-origin POST is refused before it is read.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from markupsafe import Markup, escape
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from approval_server import __version__, strict_json
from approval_server.bodies import read_form
from approval_server.broker import Broker
from approval_server.errors import BadRequest, GrantEnded, NotDelivered, NotFound, RequestClosed, TooLarge
from approval_server.events import Event
from approval_server.grants import pattern_for, remembered_text, session_pattern
from approval_server.models import OUTCOME_WORDS, Answer, ApprovalRequest, Remember, Status
from approval_server.render import Field, fields, json_for_editing, segments
from approval_server.render import name as plain_name
from approval_server.reveal import RTL_CLOSE, RTL_OPEN, Run
from approval_server.reveal import escape as escape_char
from approval_server.web_auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    LinkRefused,
    RequestLink,
    WebAuth,
    WrongTokenLimit,
)

PAGE_SIZE = 50
GRANTS_SHOWN = 200
PENDING_SHOWN = 200  # newest first; past that the page says how many more there are (the history lists them all)
SUMMARY_CHARS = 400
EXPORT_BATCH = 500
MAX_FORM_BYTES = 2 * 1024 * 1024
MAX_MESSAGE = 2000
DASHBOARD_CHANNEL = "dashboard"
LINK_CHANNEL = "web link"
DURATIONS = {"15m": "15 minutes", "30m": "30 minutes", "1h": "1 hour", "2h": "2 hours", "8h": "8 hours"}

_HERE = Path(__file__).parent
_HIDDEN_CHAR = Markup('<span class="hidden-char" title="hidden character">{}</span>')
_MARKED = {
    "escape": _HIDDEN_CHAR,
    "lookalike": Markup('<span class="hidden-char lookalike" title="look-alike character">{}</span>'),
    "spaces": Markup('<span class="hidden-char spaces" title="spaces">{}</span>'),
    "rtl-mark": Markup('<span class="rtl-mark" title="right-to-left text follows or ends">{}</span>'),
    "rtl": Markup('<bdi class="rtl" dir="rtl">{}</bdi>'),
}
_ESCAPE = re.compile(r"(⟨U\+[0-9A-F]{4,6}⟩|⟨\d+ spaces?⟩|⟨rtl⟩|⟨/rtl⟩)")
_SPACES_MARKER = re.compile(r"⟨\d+ spaces?⟩")
MAX_GUTTER_DIGITS = 7  # the stylesheet has a gutter width for values of up to 9,999,999 lines
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # a request link never leaks to another site through a Referer
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """ASGI middleware: the dashboard's pages never run inline script, never load in a frame, never leak a URL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _html(runs: Iterable[Run]) -> Markup:
    """Runs of shown text as HTML: plain text escaped, each marker in the span that sets it apart."""
    return Markup("").join(
        escape(run.text) if run.kind == "plain" else _MARKED[run.kind].format(run.text) for run in runs
    )


def shown(text: str, code: bool = True) -> Markup:
    """`text` made visible (the shared renderer) and HTML-escaped, hidden characters highlighted. `code` is for a
    command, path, URL, key or value; `code=False` for prose (the agent's own words, in their natural order)."""
    return _html(segments(text, code=code))


def _escaped_in(runs: Iterable[Run], chars: str) -> list[Run]:
    """`runs` with each of `chars` in a plain run turned into an escape marker."""
    out: list[Run] = []
    for run in runs:
        if run.kind != "plain" or not any(char in run.text for char in chars):
            out.append(run)
            continue
        for piece in re.split(f"([{re.escape(chars)}])", run.text):
            if len(piece) == 1 and piece in chars:
                out.append(Run(escape_char(piece), "escape"))
            elif piece:
                out.append(Run(piece, "plain"))
    return out


def label(text: str) -> Markup:
    """`render.label` as HTML: agent-written text where a label goes (a key, a directory), on one line, quoted,
    its markers highlighted. The text is exactly `render.label(text)`."""
    return Markup('"') + _html(_escaped_in(segments(text), '\n"')) + Markup('"')


def name(text: str) -> Markup:
    """`render.name` as HTML: a plain name (ASCII letters, digits, `_ . / : @ + -`) as typed, anything else as a
    `label`. The text is exactly `render.name(text)`."""
    return escape(text) if plain_name(text) == text else label(text)


def one_line(text: str) -> Markup:
    """`text` made visible on one line: a line break is shown as `⟨U+000A⟩`, not folded into a space."""
    return _html(_escaped_in(segments(text), "\n"))


@dataclass(frozen=True)
class Line:
    """One line of a value as a page shows it: its number, its HTML, and for a diff what happened to it."""

    number: int
    html: Markup
    change: str = ""  # "add", "del" or "same" in a diff


def _split_lines(runs: Iterable[Run]) -> list[list[Run]]:
    lines: list[list[Run]] = [[]]
    for run in runs:
        if run.kind != "plain" or "\n" not in run.text:
            lines[-1].append(run)
            continue
        first, *rest = run.text.split("\n")
        if first:
            lines[-1].append(Run(first, "plain"))
        lines += [[Run(piece, "plain")] if piece else [] for piece in rest]
    return lines


def text_lines(text: str) -> list[Line]:
    """A code-like value (not from `fields`, such as a record's other fields) line by line."""
    return [Line(number, _html(runs)) for number, runs in enumerate(_split_lines(segments(text)), 1)]


_CHANGES = {"+": "add", "-": "del"}


def field_lines(field: Field) -> list[Line]:
    """A code, JSON or diff field line by line, as `Field.lines()` has them: each line is its own element on the
    page, with its number in a gutter, so a real line break is never taken for a soft wrap, nor a wrap for a break.
    A diff's lines keep their first character (` `, `-`, `+`) as typed."""
    if field.kind == "diff":
        return [
            Line(number, escape(line[:1]) + shown(line[1:]), _CHANGES.get(line[:1], "same"))
            for number, line in enumerate(field.value.split("\n"), 1)
        ]
    return [Line(number, _html(runs)) for number, runs in enumerate(_split_lines(segments(field.value)), 1)]


def gutter_digits(lines: list[Line]) -> int:
    """How many digits the gutter holds (the stylesheet has a width for each)."""
    return min(len(str(len(lines))), MAX_GUTTER_DIGITS)


def escapes_marked(text: str) -> Markup:
    """Text that already went through the renderer (a stored `rendered`), HTML-escaped, its markers highlighted.

    The renderer escapes every `⟨` it finds in an input, so each marker left in such text is one of its own: the
    text between `⟨rtl⟩` and `⟨/rtl⟩` is a right-to-left run, isolated like `shown` isolates it."""
    out: list[Markup] = []
    previous = ""
    for part in _ESCAPE.split(text):
        if _ESCAPE.fullmatch(part):
            kind = "rtl-mark" if part in (RTL_OPEN, RTL_CLOSE) else "spaces" if _SPACES_MARKER.match(part) else "escape"
            out.append(_MARKED[kind].format(part))
        elif previous == RTL_OPEN and part and "\n" not in part:
            out.append(_MARKED["rtl"].format(part))
        else:
            out.append(escape(part))
        previous = part
    return Markup("").join(out)


def summary(text: str, size: int = SUMMARY_CHARS) -> Markup:
    """The start of a stored `rendered` text for a history row, saying exactly how much more the record holds."""
    if len(text) <= size:
        return escapes_marked(text)
    cut = text.rfind("⟨", 0, size)
    end = cut if cut != -1 and text.find("⟩", cut) >= size else size  # never inside a `⟨U+XXXX⟩`
    more = len(text) - end
    return escapes_marked(text[:end]) + Markup(
        '<span class="more">… {:,} more characters: open the record</span>'
    ).format(more)


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("approval_server", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["shown"] = shown
    env.filters["label"] = label
    env.filters["name"] = name
    env.filters["one_line"] = one_line
    env.filters["escapes_marked"] = escapes_marked
    env.filters["summary"] = summary
    env.filters["utc"] = _utc
    env.filters["editable"] = json_for_editing
    env.globals["fields"] = fields
    env.globals["outcome_words"] = OUTCOME_WORDS
    env.globals["field_lines"] = field_lines
    env.globals["text_lines"] = text_lines
    env.globals["gutter_digits"] = gutter_digits
    env.globals["session_pattern"] = session_pattern
    env.globals["remembered_text"] = remembered_text
    env.globals["pattern_for"] = pattern_for
    env.globals["durations"] = DURATIONS
    env.globals["version"] = __version__
    return Jinja2Templates(env=env)


class _Refused(Exception):
    def __init__(self, status_code: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


def _client_address(request: Request) -> str:
    """The connection's peer address (uvicorn puts a proxy's `X-Forwarded-For` there only for FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def _safe_next(value: str | None) -> str:
    """Only a path on this server: never `//evil.example` or `https://…`."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


class Dashboard:
    def __init__(
        self,
        broker: Broker,
        auth: WebAuth,
        approvers: Collection[str] = (),
        wrong_tokens: WrongTokenLimit | None = None,
    ) -> None:
        self._broker = broker
        self._auth = auth
        self._approvers = set(approvers)
        self._templates = _templates()
        self._wrong_tokens = wrong_tokens or WrongTokenLimit()

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/fragments/pending", self.pending_fragment, methods=["GET"]),
            Route("/requests/{request_id}", self.request_page, methods=["GET"]),
            Route("/requests/{request_id}/decision", self.decide, methods=["POST"]),
            Route("/grants", self.grants_page, methods=["GET"]),
            Route("/grants/{grant_id}/revoke", self.revoke, methods=["POST"]),
            Route("/export.{fmt:str}", self.export, methods=["GET"]),
            Route("/r/{token}", self.link, methods=["GET", "POST"]),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]

    # -- rendering ------------------------------------------------------------------------------------------

    def _page(self, request: Request, name: str, context: Mapping[str, Any], status_code: int = 200) -> Response:
        base = {"request": request, "now": datetime.now(UTC), "csrf": "", "signed_in": False, "action": None}
        return self._templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)

    def _fragment(self, name: str, **context: Any) -> str:
        return self._templates.get_template(name).render(now=datetime.now(UTC), **context)

    def _refusal(self, request: Request, refused: _Refused, **context: Any) -> Response:
        response = self._page(
            request, "message.html", {"title": refused.title, "detail": refused.detail, **context}, refused.status_code
        )
        response.headers.update(refused.headers)
        return response

    # -- access ---------------------------------------------------------------------------------------------

    def _session(self, request: Request) -> str | None:
        return self._auth.session_id(request.cookies.get(SESSION_COOKIE))

    @staticmethod
    def _login_redirect(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """False for a POST a browser says came from another site or another origin (another port included).

        Browsers set `Sec-Fetch-Site` themselves and no page can forge it; without it (an older browser), the
        `Origin` header must name this host. A client sending neither is not a browser, and needs the CSRF token."""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site in ("same-origin", "none")
        origin = request.headers.get("origin")
        return origin is None or urlsplit(origin).netloc == request.headers.get("host")

    async def _form(self, request: Request) -> FormData:
        try:
            return await read_form(request, MAX_FORM_BYTES)
        except TooLarge:
            raise _Refused(413, "Too large", "The form is larger than 2 MB; nothing was changed.") from None
        except BadRequest:
            raise _Refused(400, "Bad form", "The form could not be read; nothing was changed.") from None

    async def _checked_form(self, request: Request, bound_to: str) -> FormData:
        """The form of a state-changing POST, once it is known to come from this server's own page."""
        if not self._same_origin(request):
            raise _Refused(403, "Refused", "This form was posted from another site; nothing was changed.")
        form = await self._form(request)
        given = form.get("csrf")
        if not isinstance(given, str) or not self._auth.csrf_matches(bound_to, given):
            raise _Refused(403, "Refused", "The form's security token is missing or wrong; reload the page.")
        return form

    def _check_attempts(self, request: Request) -> None:
        """Raises `_Refused` (429) while this client address has had too many wrong tokens (see `WrongTokenLimit`)."""
        wait = self._wrong_tokens.retry_after(_client_address(request))
        if wait is not None:
            detail = f"Too many wrong tokens or links from your address; try again in {wait} s."
            raise _Refused(429, "Too many attempts", detail, {"retry-after": str(wait)})

    def _set_session(self, response: Response, request: Request) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._auth.new_session(),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    async def login(self, request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        token: str | None = request.query_params.get("token")
        if request.method == "POST":
            if not self._same_origin(request):
                return self._refusal(request, _Refused(403, "Refused", "Sign in from this server's own page."))
            try:
                form = await self._form(request)
            except _Refused as refused:
                return self._refusal(request, refused)
            given, next_field = form.get("token"), form.get("next")
            token = given if isinstance(given, str) else ""
            next_path = _safe_next(next_field if isinstance(next_field, str) else None)
        if token is None:
            return self._page(request, "login.html", {"next": next_path, "error": None})
        try:
            self._check_attempts(request)
        except _Refused as refused:
            return self._refusal(request, refused)
        if not self._auth.token_matches(token.strip()):
            self._wrong_tokens.wrong(_client_address(request))
            error = "That token is not right. Use the login URL the server printed, or its dashboard-token file."
            return self._page(request, "login.html", {"next": next_path, "error": error}, status_code=401)
        response = RedirectResponse(next_path, status_code=303)
        self._set_session(response, request)
        return response

    async def logout(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return self._login_redirect(request)
        try:
            await self._checked_form(request, sid)
        except _Refused as refused:
            return self._refusal(request, refused)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- pages ----------------------------------------------------------------------------------------------

    @staticmethod
    def _filters(request: Request) -> tuple[Status | None, str | None, str | None, int]:
        """The history filters in the query string: status, tool, text, page. Raises `_Refused` for bad values."""
        params = request.query_params
        status_text, page_text = params.get("status", ""), params.get("page", "1")
        try:
            status = Status(status_text) if status_text else None
        except ValueError:
            raise _Refused(400, "Bad filter", f"There is no status {status_text!r}.") from None
        # ASCII digits only (`str.isdigit` is true of "¹", which `int` refuses), and few enough for an SQL offset.
        if not re.fullmatch(r"[0-9]{1,7}", page_text) or int(page_text) < 1:
            raise _Refused(400, "Bad page", "The page must be a whole number from 1 to 9999999.")
        return status, params.get("tool") or None, params.get("q", "").strip() or None, int(page_text)

    async def _history(self, request: Request) -> dict[str, Any]:
        status, tool, text, page = self._filters(request)
        rows, total = await self._broker.store.search(
            status, tool, text, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        status_text = status.value if status else ""
        filters = {key: value for key, value in (("status", status_text), ("tool", tool), ("q", text)) if value}
        return {
            "history": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "filters": filters,
            "statuses": [s.value for s in Status],
            "tools": await self._broker.store.tool_names(),
            "live_history": page == 1 and not filters,
        }

    async def index(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return self._login_redirect(request)
        try:
            history = await self._history(request)
        except _Refused as refused:
            return self._refusal(request, refused, signed_in=True, csrf=self._auth.csrf_token(sid))
        pending, pending_total = await self._broker.store.search(Status.PENDING, limit=PENDING_SHOWN)
        context = {
            "pending": pending,
            "pending_total": pending_total,
            "csrf": self._auth.csrf_token(sid),
            "signed_in": True,
            **history,
        }
        return self._page(request, "index.html", context)

    async def pending_fragment(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return PlainTextResponse("sign in first", status_code=401)
        pending, total = await self._broker.store.search(Status.PENDING, limit=PENDING_SHOWN)
        html = self._fragment("_pending.html", pending=pending, csrf=self._auth.csrf_token(sid), action=None)
        return Response(html, media_type="text/html", headers={"x-pending-total": str(total)})

    async def request_page(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return self._login_redirect(request)
        context = {"signed_in": True, "csrf": self._auth.csrf_token(sid)}
        row = await self._broker.store.get(request.path_params["request_id"])
        if row is None:
            return self._refusal(request, _Refused(404, "Not found", "There is no such request."), **context)
        answers = await self._broker.store.answers_for(row.id)
        grants = await self._broker.store.grants_from(row.id)
        page = {"row": row, "answers": answers, "grants": grants, "action": None, **context}
        return self._page(request, "request.html", page)

    # -- grants ---------------------------------------------------------------------------------------------

    async def grants_page(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return self._login_redirect(request)
        now = datetime.now(UTC)
        grants = await self._broker.store.grants(limit=GRANTS_SHOWN)
        context = {
            "active": [grant for grant in grants if grant.active(now)],
            "ended": [grant for grant in grants if not grant.active(now)],
            "signed_in": True,
            "csrf": self._auth.csrf_token(sid),
        }
        return self._page(request, "grants.html", context)

    async def revoke(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return PlainTextResponse("sign in first", status_code=401)
        context: dict[str, Any] = {"signed_in": True, "csrf": self._auth.csrf_token(sid)}
        try:
            await self._checked_form(request, sid)
            try:
                await self._broker.revoke(request.path_params["grant_id"], f"dashboard session {sid[:8]}")
            except NotFound:
                raise _Refused(404, "Not found", "There is no such grant.") from None
            except GrantEnded:
                raise _Refused(409, "Already ended", "This grant has already ended; nothing changed.") from None
        except _Refused as refused:
            return self._refusal(request, refused, **context)
        return RedirectResponse("/grants", status_code=303)

    # -- decisions ------------------------------------------------------------------------------------------

    @staticmethod
    def _answer(form: FormData, row: ApprovalRequest, actor: str, channel: str) -> Answer:
        """The answer a decision form asks for. Raises `_Refused` (nothing changed) for a bad form."""
        decision = form.get("decision")
        message = form.get("message")
        message = message.strip() if isinstance(message, str) and message.strip() else None
        if message is not None and len(message) > MAX_MESSAGE:
            raise _Refused(400, "Message too long", f"The message is over {MAX_MESSAGE} characters; nothing changed.")
        if decision == "deny":
            return Answer(Status.DENIED, actor, channel, message)
        if decision == "allow_session":
            return Answer(Status.ALLOWED, actor, channel, message, remember=Remember("session"))
        if decision == "allow":
            duration = form.get("remember")
            if duration is None:
                return Answer(Status.ALLOWED, actor, channel, message)
            if duration not in DURATIONS:
                raise _Refused(400, "Bad form", "Choose one of the durations offered; nothing changed.")
            return Answer(Status.ALLOWED, actor, channel, message, remember=Remember.parse(str(duration)))
        if decision == "edit":
            text = form.get("updated_input")
            try:
                edited = strict_json.loads(text) if isinstance(text, str) else None
            except json.JSONDecodeError as exc:
                raise _Refused(
                    400, "Edited input is not valid JSON", f"{exc.msg} at line {exc.lineno}, column {exc.colno}."
                ) from None
            except strict_json.NotJSON as exc:
                raise _Refused(400, "Edited input is not valid JSON", f"{exc}.") from None
            except RecursionError:
                raise _Refused(400, "Edited input is not valid JSON", "It is nested too deeply.") from None
            if not isinstance(edited, dict):
                raise _Refused(400, "Edited input is not valid", "It must be a JSON object, like the original.")
            return Answer(
                Status.ALLOWED, actor, channel, message, updated_input=edited if edited != row.input else None
            )
        raise _Refused(400, "Bad form", "Choose approve, allow for session, deny or approve with changes.")

    async def _apply(self, row: ApprovalRequest, answer: Answer) -> ApprovalRequest:
        try:
            return await self._broker.decide(row.id, answer)
        except RequestClosed:
            now = await self._broker.store.get(row.id)
            state = now.status.value if now else "closed"
            raise _Refused(409, "Already decided", f"Request {row.id} is already {state}; nothing changed.") from None
        except NotDelivered as exc:
            raise _Refused(409, "Not delivered", f"{exc.detail[0].upper()}{exc.detail[1:]}.") from None
        except NotFound:
            raise _Refused(404, "Not found", "There is no such request.") from None

    async def decide(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return PlainTextResponse("sign in first", status_code=401)
        context: dict[str, Any] = {"signed_in": True, "csrf": self._auth.csrf_token(sid)}
        row = None
        try:
            form = await self._checked_form(request, sid)
            row = await self._broker.store.get(request.path_params["request_id"])
            if row is None:
                raise _Refused(404, "Not found", "There is no such request.")
            await self._apply(row, self._answer(form, row, f"dashboard session {sid[:8]}", DASHBOARD_CHANNEL))
        except _Refused as refused:
            return self._refusal(request, refused, row=row, **context)
        next_field = form.get("next")
        return RedirectResponse(_safe_next(next_field if isinstance(next_field, str) else None), status_code=303)

    # -- request links --------------------------------------------------------------------------------------

    async def _link(self, request: Request, token: str) -> tuple[RequestLink, ApprovalRequest]:
        refused = _Refused(
            403, "Link refused", "This link is not valid: it was changed or was not made by this server."
        )
        request_id = self._auth.peek_request_id(token)
        row = await self._broker.store.get(request_id) if request_id else None
        if row is None:
            self._wrong_tokens.wrong(_client_address(request))
            raise refused
        try:
            link = self._auth.read_request_link(token, (row.expires_at - row.created_at).total_seconds())
        except LinkRefused as exc:
            raise _Refused(403, "Link refused", str(exc)) from None
        if link.approver not in self._approvers:
            raise _Refused(403, "Link refused", "This link was made for someone who is no longer an approver.")
        if row.status is not Status.PENDING:
            raise _Refused(410, "Link no longer valid", f"Request {row.id} is already {row.status.value}.")
        return link, row

    async def link(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            self._check_attempts(request)
            link, row = await self._link(request, token)
            csrf_key = f"link:{link.nonce}"
            if request.method == "GET":
                context = {"row": row, "answers": [], "action": f"/r/{token}", "csrf": self._auth.csrf_token(csrf_key)}
                return self._page(request, "request.html", {**context, "approver": link.approver})
            form = await self._checked_form(request, csrf_key)
            answer = self._answer(form, row, link.approver, LINK_CHANNEL)
            if not await self._broker.store.first_sighting(f"link:{link.nonce}", datetime.now(UTC)):
                raise _Refused(410, "Link already used", "This link has already been used to answer.")
            decided = await self._apply(row, answer)
        except _Refused as refused:
            return self._refusal(request, refused)
        verb = "approved" if decided.status is Status.ALLOWED else "denied"
        detail = f"Request {decided.id} is {verb}, as {decided.decided_by}. The agent has its answer."
        return self._page(request, "message.html", {"title": verb.capitalize(), "detail": detail})

    # -- live updates and export ----------------------------------------------------------------------------

    def _event_data(self, event: Event, csrf: str) -> ServerSentEvent:
        row = event.request
        if event.kind == "request.created":
            html = self._fragment("_card.html", row=row, csrf=csrf, action=None)
            return ServerSentEvent(event="created", data=json.dumps({"id": row.id, "html": html}))
        html = self._fragment("_history_row.html", row=row)
        return ServerSentEvent(event="closed", data=json.dumps({"id": row.id, "status": row.status, "html": html}))

    async def events(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return PlainTextResponse("sign in first", status_code=401)
        csrf = self._auth.csrf_token(sid)
        hub = self._broker.events

        async def stream() -> AsyncIterator[ServerSentEvent]:
            async with hub.subscribe() as subscription:
                yield ServerSentEvent(event="ready", data="{}")
                async for event in subscription:
                    yield self._event_data(event, csrf)

        return EventSourceResponse(stream(), ping=15)

    async def export(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return self._login_redirect(request)
        fmt = request.path_params["fmt"]
        writers: dict[str, tuple[str, Callable[[list[ApprovalRequest], bool], str]]] = {
            "jsonl": ("application/x-ndjson", _jsonl),
            "csv": ("text/csv; charset=utf-8", _csv),
        }
        if fmt not in writers:
            return PlainTextResponse("export as .jsonl or .csv", status_code=404)
        try:
            status, tool, text, _ = self._filters(request)
        except _Refused as refused:
            return self._refusal(request, refused, signed_in=True, csrf=self._auth.csrf_token(sid))
        media_type, write = writers[fmt]
        search = self._broker.store.search

        async def body() -> AsyncIterator[str]:
            offset = 0
            while True:
                rows, _ = await search(status, tool, text, limit=EXPORT_BATCH, offset=offset)
                if rows or offset == 0:
                    yield write(rows, offset == 0)
                if len(rows) < EXPORT_BATCH:
                    return
                offset += EXPORT_BATCH

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        disposition = f'attachment; filename="approval-history-{stamp}.{fmt}"'
        headers = {"content-disposition": disposition}
        return StreamingResponse(body(), media_type=media_type, headers=headers)


def _jsonl(rows: list[ApprovalRequest], first: bool) -> str:
    return "".join(json.dumps(row.to_json(), ensure_ascii=False) + "\n" for row in rows)


CSV_COLUMNS = [
    "id",
    "status",
    "tool_name",
    "created_at",
    "expires_at",
    "decided_at",
    "decided_by",
    "decided_via",
    "reason",
    "client",
    "tool_use_id",
    "input",
    "updated_input",
    "rendered",
]


def _cell(value: Any) -> str:
    """A CSV cell; JSON for structures. A text starting like a formula gets a leading `'`, so a spreadsheet opening
    the export shows it instead of running it (the JSON Lines export is the exact record)."""
    text = value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(rows: list[ApprovalRequest], first: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if first:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        record = row.to_json()
        writer.writerow([_cell(record[column]) for column in CSV_COLUMNS])
    return out.getvalue()
