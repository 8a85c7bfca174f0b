"""The ASGI application: one route table for every URL the server answers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastmcp.utilities.lifespan import combine_lifespans
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from approval_server import __version__
from approval_server.core.broker import Broker
from approval_server.core.replicas import Replication
from approval_server.entry import api
from approval_server.entry.dashboard import Dashboard
from approval_server.entry.mcp_tool import build_mcp
from approval_server.entry.security import RequireBearer, Tokens
from approval_server.entry.security_headers import SecurityHeaders
from approval_server.errors import HTTPError, StoreError
from approval_server.store.db_watch import DatabaseWatch

logger = logging.getLogger(__name__)


class Health:
    """`GET /healthz`: `{"status": "ok"}` for anyone (load balancers, Docker), or 503 and why while the database is
    lost (see `db_watch`), does not answer, or has not taken a closing yet (see `unrecorded`); the version and the
    number of waiting requests only with the API token, since they tell a stranger what to attack and when someone is
    waiting."""

    def __init__(self, api_token: str) -> None:
        self._expected = f"Bearer {api_token}".encode()

    async def respond(self, request: Request) -> JSONResponse:
        broker: Broker = request.app.state.broker
        trouble = broker.store.lost() or broker.unrecorded.trouble() or await broker.store.ping()
        body: dict[str, Any] = {"status": "ok"} if trouble is None else {"status": "unavailable", "reason": trouble}
        given = request.headers.get("authorization", "").encode("latin-1")
        if secrets.compare_digest(given, self._expected):
            body |= {"version": __version__, "pending": broker.pending_count}
        return JSONResponse(body, status_code=200 if trouble is None else 503)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPError):
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status_code)
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": "http_error", "detail": exc.detail}, status_code=exc.status_code)


async def _store_error(request: Request, exc: Exception) -> Response:
    """The database failed (locked, down, full): 503, and the connection stays open for the client's next request.
    (An error handled here is answered like any other; only the `Exception` fallback below closes the connection.)"""
    logger.error("database error on %s %s: %s", request.method, request.url.path, exc)
    detail = "the database could not complete the operation; try again later (see the server log)"
    return JSONResponse({"error": "store_unavailable", "detail": detail}, status_code=503)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: 500. Starlette then re-raises it to the server, which closes the connection."""
    logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal_error", "detail": "internal error; see the server log"}, status_code=500)


def create_app(
    broker: Broker,
    tokens: Tokens,
    allowed_hosts: list[str],
    dashboard: Dashboard,
    channel_routes: Sequence[BaseRoute] = (),
    lease_seconds: float | None = None,
    watch: DatabaseWatch | None = None,
) -> Starlette:
    """`channel_routes`: the inbound routes of the channels that are on (their webhooks); `lease_seconds`: on a
    shared database, this server is one replica among others (see `replicas`); `watch`: the database file's, while
    the app runs."""
    mcp = build_mcp(broker)
    mcp_auth = [Middleware(RequireBearer, token=tokens.mcp, realm="MCP")]
    mcp_http = mcp.http_app(path="/mcp", middleware=mcp_auth)
    mcp_sse = mcp.http_app(path="/sse", transport="sse", middleware=mcp_auth)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broker.abandon_pending()
        replication = Replication(broker, lease_seconds) if lease_seconds else None
        if replication is not None:
            await replication.start()
        if watch is not None:
            watch.start()
        try:
            yield
        finally:
            if watch is not None:
                await watch.stop()
            if replication is not None:
                await replication.stop()
            await broker.aclose()
            await broker.store.aclose()

    hook_auth = Middleware(RequireBearer, token=tokens.mcp, other_tokens=(tokens.api,), realm="MCP")
    routes: list[BaseRoute] = [
        Route("/healthz", Health(tokens.api).respond, methods=["GET"]),
        # A hook asks with the MCP token (an agent's, the least it needs) or the API token.
        Route("/api/hook", api.hook, methods=["POST"], middleware=[hook_auth]),
        Route("/api/hook/{kind}", api.hook, methods=["POST"], middleware=[hook_auth]),
        Mount("/api", routes=api.routes, middleware=[Middleware(RequireBearer, token=tokens.api, realm="API")]),
        Route("/mcp", mcp_http),
        Route("/sse", mcp_sse),
        Route("/messages/", mcp_sse),
    ]
    routes += channel_routes
    routes.append(Mount("", routes=dashboard.routes, middleware=[Middleware(SecurityHeaders)]))
    handlers: dict[Any, Any] = {
        HTTPError: _http_error,
        HTTPException: _http_error,
        StoreError: _store_error,
        Exception: _internal_error,
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)],
        exception_handlers=handlers,
        lifespan=combine_lifespans(lifespan, mcp_http.lifespan, mcp_sse.lifespan),
    )
    app.state.broker = broker
    return app
