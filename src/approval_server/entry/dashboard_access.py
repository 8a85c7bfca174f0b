"""Who may use the dashboard, and how it answers: a session cookie from the dashboard token or a person's own
login link (`/login`, `/logout`), the checks every state-changing form passes (same origin, a CSRF token bound to
the session or link), the limit on wrong tokens, and the pages and fragments rendered from the templates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from approval_server.bodies import read_form
from approval_server.core.broker import Broker
from approval_server.entry.dashboard_templates import templates
from approval_server.entry.decision_form import Refused
from approval_server.errors import BadRequest, TooLarge
from approval_server.people import People
from approval_server.web_auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    WebAuth,
    WrongTokenLimit,
    login_secret_hash,
)

MAX_FORM_BYTES = 2 * 1024 * 1024


def client_address(request: Request) -> str:
    """The connection's peer address (uvicorn puts a proxy's `X-Forwarded-For` there only for FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def safe_next(value: str | None) -> str:
    """Only a path on this server: never `//evil.example` or `https://…`."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


class DashboardAccess:
    """The dashboard's routes share this: what they render with, and who may use them."""

    def __init__(
        self,
        broker: Broker,
        auth: WebAuth,
        people: People | None = None,
        wrong_tokens: WrongTokenLimit | None = None,
    ) -> None:
        self._broker = broker
        self._auth = auth
        self._people = people or People()
        self._templates = templates()
        self._wrong_tokens = wrong_tokens or WrongTokenLimit()

    # -- rendering ------------------------------------------------------------------------------------------

    def _page(self, request: Request, name: str, context: Mapping[str, Any], status_code: int = 200) -> Response:
        base = {
            "request": request,
            "now": datetime.now(UTC),
            "csrf": "",
            "signed_in": False,
            "who": None,
            "action": None,
        }
        return self._templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)

    def _fragment(self, name: str, **context: Any) -> str:
        return self._templates.get_template(name).render(now=datetime.now(UTC), **context)

    def _refusal(self, request: Request, refused: Refused, **context: Any) -> Response:
        response = self._page(
            request, "message.html", {"title": refused.title, "detail": refused.detail, **context}, refused.status_code
        )
        response.headers.update(refused.headers)
        return response

    # -- access ---------------------------------------------------------------------------------------------

    async def _session(self, request: Request) -> Session | None:
        """The request's session: the owner's, or a person's while their login is live and they are still one of
        the people (a revoked login or a person taken out of the people file ends it at once)."""
        session = self._auth.session(request.cookies.get(SESSION_COOKIE))
        if session is None or session.login is None:
            return session
        if session.person is None or self._people.named(session.person) is None:
            return None
        login = await self._broker.store.live_login(session.login)
        return session if login is not None and login.person == session.person else None

    def _signed_in(self, session: Session) -> dict[str, Any]:
        """What every page of a signed-in session shows: who it is, and the CSRF token of its forms."""
        return {"signed_in": True, "csrf": self._auth.csrf_token(session.sid), "who": session.actor}

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
            raise Refused(413, "Too large", "The form is larger than 2 MB; nothing was changed.") from None
        except BadRequest:
            raise Refused(400, "Bad form", "The form could not be read; nothing was changed.") from None

    async def _checked_form(self, request: Request, bound_to: str) -> FormData:
        """The form of a state-changing POST, once it is known to come from this server's own page."""
        if not self._same_origin(request):
            raise Refused(403, "Refused", "This form was posted from another site; nothing was changed.")
        form = await self._form(request)
        given = form.get("csrf")
        if not isinstance(given, str) or not self._auth.csrf_matches(bound_to, given):
            raise Refused(403, "Refused", "The form's security token is missing or wrong; reload the page.")
        return form

    def _check_attempts(self, request: Request) -> None:
        """Raises `Refused` (429) while this client address has had too many wrong tokens (see `WrongTokenLimit`)."""
        wait = self._wrong_tokens.retry_after(client_address(request))
        if wait is not None:
            detail = f"Too many wrong tokens or links from your address; try again in {wait} s."
            raise Refused(429, "Too many attempts", detail, {"retry-after": str(wait)})

    def _set_session(self, response: Response, request: Request, person: str | None, login: str | None) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._auth.new_session(person, login),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    async def login(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        token: str | None = request.query_params.get("token")
        if request.method == "POST":
            if not self._same_origin(request):
                return self._refusal(request, Refused(403, "Refused", "Sign in from this server's own page."))
            try:
                form = await self._form(request)
            except Refused as refused:
                return self._refusal(request, refused)
            given, next_field = form.get("token"), form.get("next")
            token = given if isinstance(given, str) else ""
            next_path = safe_next(next_field if isinstance(next_field, str) else None)
        if token is None:
            return self._page(request, "login.html", {"next": next_path, "error": None})
        try:
            self._check_attempts(request)
        except Refused as refused:
            return self._refusal(request, refused)
        person = login = None
        if not self._auth.token_matches(token.strip()):
            found = await self._broker.store.sign_in(login_secret_hash(token.strip()))
            if found is None or self._people.named(found.person) is None:
                self._wrong_tokens.wrong(client_address(request))
                error = (
                    "That token is not right, or that login link was revoked. Use your own login link, the login URL "
                    "the server printed, or its dashboard-token file."
                )
                return self._page(request, "login.html", {"next": next_path, "error": error}, status_code=401)
            person, login = found.person, found.id
        response = RedirectResponse(next_path, status_code=303)
        self._set_session(response, request, person, login)
        return response

    async def logout(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._login_redirect(request)
        try:
            await self._checked_form(request, session.sid)
        except Refused as refused:
            return self._refusal(request, refused)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response
