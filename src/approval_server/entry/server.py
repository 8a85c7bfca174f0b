"""Running the server: prepare the store and tokens, print where everything is, serve with uvicorn."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import sys
from pathlib import Path

import uvicorn

from approval_server import SERVER_NAME, TOOL_NAME, __version__
from approval_server.agents import guarded_paths
from approval_server.channels import Channel
from approval_server.channels.log import LogChannel
from approval_server.channels.plugin import ChannelDeps
from approval_server.config import Settings
from approval_server.core.broker import Broker
from approval_server.core.events import EventHub
from approval_server.decision import describe_duration
from approval_server.entry.app import create_app
from approval_server.entry.client_config import remember_server
from approval_server.entry.configuration import Configuration, Configured
from approval_server.entry.connections import (
    REQUEST_SECONDS,
    ConnectionGuard,
    max_connections,
    raise_open_file_limit,
)
from approval_server.entry.dashboard import Dashboard
from approval_server.entry.security import TOKEN_FILES, Tokens, load_tokens
from approval_server.errors import ConfigError
from approval_server.fair_share import Limits
from approval_server.logs import configure_logging, hide
from approval_server.models import new_request_id
from approval_server.policy import RulesPolicy
from approval_server.policy.rule_set import RuleSet, load_rules
from approval_server.policy.self_protect import SelfProtection
from approval_server.store import Store
from approval_server.store.db_record import DatabaseRecord
from approval_server.store.db_watch import DatabaseWatch
from approval_server.web_auth import WebAuth, WrongTokenLimit

logger = logging.getLogger(__name__)

# Time for the deny answers of the requests just closed to be written before connections close.
RESPONSE_FLUSH_SECONDS = 0.2


def policy_status(path: Path | None) -> str:
    if path is None:
        return "built-in default (reads in the working directory run; everything else asks). See policy.example.toml"
    return f"{path.resolve()}"


def people_status(configuration: Configuration) -> str:
    people = configuration.people
    if not len(people):
        return "none configured: requests are answered on the dashboard, with the CLI or the API"
    names = ", ".join(person.name for person in people)
    source = f" ({configuration.settings.people_path})" if configuration.settings.people_path else ""
    return f"{len(people)}: {names}{source}"


class _Server(uvicorn.Server):
    """Uvicorn, denying waiting requests first when asked to stop, so their agents get an answer."""

    def __init__(self, config: uvicorn.Config, broker: Broker) -> None:
        super().__init__(config)
        self._broker = broker

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._broker.shut_down()
        await asyncio.sleep(RESPONSE_FLUSH_SECONDS)
        await super().shutdown(sockets)


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to `host` and `port` (each address `host` names, as uvicorn would bind them), before anything
    is printed: a port in use is one line saying so (a `ConfigError`), never a banner followed by uvicorn's error."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"SERVER_HOST={host} is not an address of this machine ({exc.strerror}).") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # one socket per family, as asyncio binds them
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} is in use by another program: stop it, or choose another port (--port or SERVER_PORT)"
        elif exc.errno == errno.EACCES:
            why = f"port {port} needs privileges: choose one above 1023 (--port or SERVER_PORT)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this machine (--host or SERVER_HOST)"
        else:
            why = exc.strerror or str(exc)
        raise ConfigError(f"Cannot listen on {where}: {why}.") from None
    return sockets


def token_lines(settings: Settings, tokens: Tokens, created: list[Path], url: str) -> list[str]:
    """The banner's lines about the tokens, the dashboard's first: a token's value only when it was created now, with
    the file it is kept in; otherwise where each is, and how to get the dashboard's login URL."""
    values = {"api-token": tokens.api, "mcp-token": tokens.mcp, "dashboard-token": tokens.dashboard}
    new = {path.name: path for path in created}
    if "dashboard-token" in new:
        lines = [f"  Dashboard:             {url}/login?token={tokens.dashboard}"]
    else:
        lines = [f"  Dashboard:             {url}/   (approval-server dashboard prints its login URL)"]
    lines += [f"  New {name} (kept in {path}, mode 0600): {values[name]}" for name, path in new.items()]
    kept = [name for name, setting in TOKEN_FILES.items() if name not in new and getattr(settings, setting) is None]
    configured = [setting.upper() for setting in TOKEN_FILES.values() if getattr(settings, setting) is not None]
    where = [f"kept in {settings.approval_data_dir} ({', '.join(kept)})"] if kept else []
    where += [f"{', '.join(configured)} from the settings"] if configured else []
    if where:
        lines.append(f"  Tokens:                {'; '.join(where)}")
    return lines


def serve(configuration: Configuration, env_file: Path | None = None) -> None:
    """Start the server and block until it stops. Raises `ConfigError` / `StoreError` before serving."""
    settings = configuration.settings
    configuration.on()  # a channel half set up stops the start, before anything is bound
    policy_path = settings.policy_path
    rules = load_rules(policy_path) if policy_path else RuleSet.default()
    configure_logging(settings.approval_log_level)
    sockets = listen(settings.server_host, settings.server_port)
    try:
        _serve_on(sockets, configuration, env_file, policy_path, rules)
    finally:
        for sock in sockets:
            sock.close()


def _serve_on(
    sockets: list[socket.socket],
    configuration: Configuration,
    env_file: Path | None,
    policy_path: Path | None,
    rules: RuleSet,
) -> None:
    settings = configuration.settings
    configured = configuration.on()
    tokens, created = load_tokens(settings)
    secrets = [secret for each in configured for secret in each.plugin.secrets(each.config)]
    hide(tokens.api, tokens.mcp, tokens.dashboard, *secrets)
    store = Store(settings.store_url, replica=new_request_id() if settings.shares_database else None)
    record = DatabaseRecord(settings.approval_data_dir)
    recorded = record.check(store)
    store.prepare()
    record.write(store)
    if recorded is not None and recorded.lost:
        logger.warning("the server that last used the database found that %s; it is back now", recorded.lost)
    auth = WebAuth(tokens.dashboard)
    public_url = str(settings.public_url).rstrip("/") if settings.public_url else None
    deps = ChannelDeps(store, auth, configuration.people, public_url)
    built: list[tuple[Configured, Channel]] = [(each, each.plugin.build(each.config, deps)) for each in configured]
    channels: list[Channel] = [LogChannel(), *(channel for _, channel in built)]
    broker = Broker(
        store=store,
        policy=RulesPolicy(rules, SelfProtection.for_settings(settings, env_file, guarded_paths())),
        channels=channels,
        events=EventHub(),
        timeout=settings.approval_timeout_seconds,
        limits=Limits(settings.approval_max_pending_per_agent, settings.approval_max_pending_per_token),
    )
    routes = [route for each, channel in built for route in each.plugin.routes(channel, broker)]
    dashboard = Dashboard(
        broker, auth, configuration.people, WrongTokenLimit(settings.approval_wrong_tokens_per_minute)
    )
    lease = settings.approval_lease_seconds if store.shared else None

    def lost(why: str) -> None:
        broker.refuse_waiting(why)
        record.note_lost(store, why)

    watch = DatabaseWatch(store.file, lost) if store.file is not None else None
    app = create_app(broker, tokens, settings.allowed_hosts, dashboard, routes, lease_seconds=lease, watch=watch)

    open_files = raise_open_file_limit()
    guard = ConnectionGuard(max_connections(open_files))
    url = settings.local_url
    dashboard_line, *token_info = token_lines(settings, tokens, created, url)
    lines = [
        f"approval-server {__version__}",
        f"  MCP (streamable HTTP): {url}/mcp   (legacy SSE: {url}/sse)",
        dashboard_line,
        f"  HTTP API:              {url}/api   health: {url}/healthz",
        f"  Claude Code tool:      mcp__{SERVER_NAME}__{TOOL_NAME}",
        f"  Requests expire after: {describe_duration(settings.approval_timeout_seconds)} (then denied)",
        f"  Policy:                {policy_status(policy_path)}",
        f"  Database:              {store.describe()}"
        + (f"  (replica {store.replica}, lease {settings.approval_lease_seconds:g} s)" if store.shared else ""),
        *(f"  {each.plugin.title + ':':<23}{each.plugin.status(each.config)}" for each in configuration.channels),
        f"  People:                {people_status(configuration)}",
        f"  Connections:           at most {guard.max_connections} open (open-file limit {open_files or 'none'}); "
        f"each request must arrive whole within {REQUEST_SECONDS:g} s",
        *token_info,
        f"  Client settings:       {remember_server(settings)}",
        "  Claude Code:           approval-server connect claude-code (writes its MCP config and hook settings)",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)

    config = uvicorn.Config(
        app,
        host=settings.server_host,
        port=settings.server_port,
        log_level=settings.approval_log_level,
        log_config=None,  # configured by `logs.configure_logging`, secrets redacted
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
        # Only a configured proxy may say who the client is: the login limit counts wrong tokens per address.
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Slow and numerous clients (see `connections`); the server has no WebSocket route.
        http=guard.protocol_class(),
        ws="none",
        limit_concurrency=guard.max_connections,
    )
    # Everything allocated so far (imports, the app) lives as long as the process: keep it out of every garbage
    # collection, and collect less often, so that a thousand waiting requests cost next to no CPU (benchmarks/).
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    _Server(config, broker).run(sockets)
