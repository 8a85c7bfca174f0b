"""Running the server: prepare the store and tokens, print where everything is, serve with uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import uvicorn

from approval_server import __version__
from approval_server.app import create_app
from approval_server.broker import Broker
from approval_server.channels.log import LogChannel
from approval_server.config import Settings
from approval_server.decision import describe_duration
from approval_server.events import EventHub
from approval_server.mcp_tool import SERVER_NAME, TOOL_NAME
from approval_server.policy import AskForEverything
from approval_server.security import load_tokens
from approval_server.store import Store

# Time for the deny answers of the requests just closed to be written before connections close.
RESPONSE_FLUSH_SECONDS = 0.2


class _Server(uvicorn.Server):
    """Uvicorn, denying waiting requests first when asked to stop, so their agents get an answer."""

    def __init__(self, config: uvicorn.Config, broker: Broker) -> None:
        super().__init__(config)
        self._broker = broker

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._broker.shut_down()
        await asyncio.sleep(RESPONSE_FLUSH_SECONDS)
        await super().shutdown(sockets)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def serve(settings: Settings) -> None:
    """Start the server and block until it stops. Raises `ConfigError` / `StoreError` before serving."""
    configure_logging(settings.approval_log_level)
    tokens, created = load_tokens(settings)
    store = Store(settings.database_url)
    store.migrate()
    broker = Broker(
        store=store,
        policy=AskForEverything(),
        channels=[LogChannel()],
        events=EventHub(),
        timeout=settings.approval_timeout_seconds,
    )
    app = create_app(broker, tokens, settings.allowed_hosts)

    url = settings.local_url
    lines = [
        f"approval-server {__version__}",
        f"  MCP (streamable HTTP): {url}/mcp   (legacy SSE: {url}/sse)",
        f"  HTTP API:              {url}/api   health: {url}/healthz",
        f"  Claude Code tool:      mcp__{SERVER_NAME}__{TOOL_NAME}",
        f"  Requests expire after: {describe_duration(settings.approval_timeout_seconds)} (then denied)",
        f"  Database:              {store.describe()}",
    ]
    for path in created:
        token = tokens.api if path.name == "api-token" else tokens.mcp
        lines.append(f"  New {path.name} (kept in {path}, mode 0600): {token}")
    if not created:
        lines.append(f"  Tokens: from the environment or {settings.approval_data_dir} (approval-server mcp-config)")
    lines.append("  Claude Code configuration: approval-server mcp-config > ~/.config/approval-server-mcp.json")
    print("\n".join(lines), file=sys.stderr, flush=True)

    config = uvicorn.Config(
        app,
        host=settings.server_host,
        port=settings.server_port,
        log_level=settings.approval_log_level,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    _Server(config, broker).run()
