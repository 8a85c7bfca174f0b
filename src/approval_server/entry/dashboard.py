"""The web dashboard: the requests waiting for a decision, live, and the searchable audit trail.

Pages are rendered on the server with Jinja2 (`dashboard_templates`: autoescaping on, so an input holding `<script>`
is text); the small script in `static/dashboard.js` only follows server-sent events, inserts the HTML fragments
rendered here and counts down.
Like the API, the dashboard is an entry point: decisions go to `Broker.decide`. It is not a channel: it never
reaches anyone by itself, so it does not keep a request alive when every channel that does has failed.

Access: a session cookie obtained with the dashboard token (`/login`), or a signed request link (`/r/<token>`)
sent to one approver, which decides one pending request, once, as that approver. Every form carries a CSRF token
and a cross-site or same-site-but-other-origin POST is refused before it is read (`dashboard_access`).

This module holds the routes: the pages, the decisions and request links, the event stream and the export. What a
decision form asks for is `decision_form`'s; the export's file formats are `history_export`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from approval_server.core.events import Event
from approval_server.entry.dashboard_access import DashboardAccess, client_address, safe_next
from approval_server.entry.decision_form import Refused, answer_from_form
from approval_server.entry.history_export import EXPORT_BATCH, csv_text, jsonl
from approval_server.errors import GrantEnded, NotDelivered, NotFound, RequestClosed
from approval_server.models import Answer, ApprovalRequest, Status
from approval_server.web_auth import LinkRefused, RequestLink

PAGE_SIZE = 50
GRANTS_SHOWN = 200
PENDING_SHOWN = 200  # newest first; past that the page says how many more there are (the history lists them all)
DASHBOARD_CHANNEL = "dashboard"
LINK_CHANNEL = "web link"

_HERE = Path(__file__).parent


class Dashboard(DashboardAccess):
    """The dashboard's routes (made with `DashboardAccess`'s arguments: the broker, the web auth, the people)."""

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

    # -- pages ----------------------------------------------------------------------------------------------

    @staticmethod
    def _filters(request: Request) -> tuple[Status | None, str | None, str | None, int]:
        """The history filters in the query string: status, tool, text, page. Raises `Refused` for bad values."""
        params = request.query_params
        status_text, page_text = params.get("status", ""), params.get("page", "1")
        try:
            status = Status(status_text) if status_text else None
        except ValueError:
            raise Refused(400, "Bad filter", f"There is no status {status_text!r}.") from None
        # ASCII digits only (`str.isdigit` is true of "¹", which `int` refuses), and few enough for an SQL offset.
        if not re.fullmatch(r"[0-9]{1,7}", page_text) or int(page_text) < 1:
            raise Refused(400, "Bad page", "The page must be a whole number from 1 to 9999999.")
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
        session = await self._session(request)
        if session is None:
            return self._login_redirect(request)
        try:
            history = await self._history(request)
        except Refused as refused:
            return self._refusal(request, refused, **self._signed_in(session))
        pending, pending_total = await self._broker.store.search(Status.PENDING, limit=PENDING_SHOWN)
        context = {
            "pending": pending,
            "pending_total": pending_total,
            **self._signed_in(session),
            **history,
        }
        return self._page(request, "index.html", context)

    async def pending_fragment(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return PlainTextResponse("sign in first", status_code=401)
        pending, total = await self._broker.store.search(Status.PENDING, limit=PENDING_SHOWN)
        html = self._fragment("_pending.html", pending=pending, csrf=self._auth.csrf_token(session.sid), action=None)
        return Response(html, media_type="text/html", headers={"x-pending-total": str(total)})

    async def request_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._login_redirect(request)
        context = self._signed_in(session)
        row = await self._broker.store.get(request.path_params["request_id"])
        if row is None:
            return self._refusal(request, Refused(404, "Not found", "There is no such request."), **context)
        answers = await self._broker.store.answers_for(row.id)
        grants = await self._broker.store.grants_from(row.id)
        page = {"row": row, "answers": answers, "grants": grants, "action": None, **context}
        return self._page(request, "request.html", page)

    # -- grants ---------------------------------------------------------------------------------------------

    async def grants_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._login_redirect(request)
        now = datetime.now(UTC)
        grants = await self._broker.store.grants(limit=GRANTS_SHOWN)
        context = {
            "active": [grant for grant in grants if grant.active(now)],
            "ended": [grant for grant in grants if not grant.active(now)],
            **self._signed_in(session),
        }
        return self._page(request, "grants.html", context)

    async def revoke(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return PlainTextResponse("sign in first", status_code=401)
        context = self._signed_in(session)
        try:
            await self._checked_form(request, session.sid)
            try:
                await self._broker.revoke(request.path_params["grant_id"], session.actor)
            except NotFound:
                raise Refused(404, "Not found", "There is no such grant.") from None
            except GrantEnded:
                raise Refused(409, "Already ended", "This grant has already ended; nothing changed.") from None
        except Refused as refused:
            return self._refusal(request, refused, **context)
        return RedirectResponse("/grants", status_code=303)

    # -- decisions ------------------------------------------------------------------------------------------

    async def _apply(self, row: ApprovalRequest, answer: Answer) -> ApprovalRequest:
        try:
            return await self._broker.decide(row.id, answer)
        except RequestClosed:
            now = await self._broker.store.get(row.id)
            state = now.status.value if now else "closed"
            raise Refused(409, "Already decided", f"Request {row.id} is already {state}; nothing changed.") from None
        except NotDelivered as exc:
            raise Refused(409, "Not delivered", f"{exc.detail[0].upper()}{exc.detail[1:]}.") from None
        except NotFound:
            raise Refused(404, "Not found", "There is no such request.") from None

    async def decide(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return PlainTextResponse("sign in first", status_code=401)
        context = self._signed_in(session)
        row = None
        try:
            form = await self._checked_form(request, session.sid)
            row = await self._broker.store.get(request.path_params["request_id"])
            if row is None:
                raise Refused(404, "Not found", "There is no such request.")
            await self._apply(row, answer_from_form(form, row, session.actor, DASHBOARD_CHANNEL))
        except Refused as refused:
            return self._refusal(request, refused, row=row, **context)
        next_field = form.get("next")
        return RedirectResponse(safe_next(next_field if isinstance(next_field, str) else None), status_code=303)

    # -- request links --------------------------------------------------------------------------------------

    async def _link(self, request: Request, token: str) -> tuple[RequestLink, ApprovalRequest]:
        refused = Refused(403, "Link refused", "This link is not valid: it was changed or was not made by this server.")
        request_id = self._auth.peek_request_id(token)
        row = await self._broker.store.get(request_id) if request_id else None
        if row is None:
            self._wrong_tokens.wrong(client_address(request))
            raise refused
        try:
            link = self._auth.read_request_link(token, (row.expires_at - row.created_at).total_seconds())
        except LinkRefused as exc:
            raise Refused(403, "Link refused", str(exc)) from None
        if self._people.named(link.approver) is None:
            raise Refused(403, "Link refused", "This link was made for someone who is no longer an approver.")
        if row.status is not Status.PENDING:
            raise Refused(410, "Link no longer valid", f"Request {row.id} is already {row.status.value}.")
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
            answer = answer_from_form(form, row, link.approver, LINK_CHANNEL)
            if not await self._broker.store.first_sighting(f"link:{link.nonce}", datetime.now(UTC)):
                raise Refused(410, "Link already used", "This link has already been used to answer.")
            decided = await self._apply(row, answer)
        except Refused as refused:
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
        session = await self._session(request)
        if session is None:
            return PlainTextResponse("sign in first", status_code=401)
        csrf = self._auth.csrf_token(session.sid)
        hub = self._broker.events

        async def stream() -> AsyncIterator[ServerSentEvent]:
            async with hub.subscribe() as subscription:
                yield ServerSentEvent(event="ready", data="{}")
                async for event in subscription:
                    if session.login is not None and await self._session(request) is None:
                        return  # that person's login was revoked: nothing more for this page
                    yield self._event_data(event, csrf)

        return EventSourceResponse(stream(), ping=15)

    async def export(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._login_redirect(request)
        fmt = request.path_params["fmt"]
        writers: dict[str, tuple[str, Callable[[list[ApprovalRequest], bool], str]]] = {
            "jsonl": ("application/x-ndjson", jsonl),
            "csv": ("text/csv; charset=utf-8", csv_text),
        }
        if fmt not in writers:
            return PlainTextResponse("export as .jsonl or .csv", status_code=404)
        try:
            status, tool, text, _ = self._filters(request)
        except Refused as refused:
            return self._refusal(request, refused, **self._signed_in(session))
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
