"""`approval-server doctor`: check the configuration and the running server, in plain words."""

from __future__ import annotations

import getpass
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import httpx

from approval_server.agents import agents
from approval_server.agents.setup import Report, Target
from approval_server.config import Settings
from approval_server.entry import claude_check
from approval_server.entry.client_config import client_file, load_client_settings, readable_client_file, remembered_url
from approval_server.entry.configuration import Configuration, load_configuration
from approval_server.entry.security import load_tokens
from approval_server.errors import ApprovalServerError, ConfigError
from approval_server.policy.rule_set import load_rules
from approval_server.store import Store
from approval_server.store.db_record import DatabaseRecord


def _reachable(settings: Settings, env_file: Path) -> str | None:
    """The first of the server's files that the user running this check can read or write, if any."""
    files = [settings.approval_data_dir / name for name in ("api-token", "mcp-token", "dashboard-token")]
    files += [settings.approval_data_dir, env_file]
    for path in files:
        if path.exists() and os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            return str(path)
    return None


def _channels(configuration: Configuration, ok: Report, problem: Report, note: Report) -> None:
    """Each channel's settings, then its own live checks (see `ChannelPlugin.doctor`), and who they reach."""
    on = 0
    for each in configuration.channels:
        if each.error is not None:
            problem(str(each.error))
            continue
        on += each.config is not None
        each.plugin.doctor(each.config, ok, problem, note)
    people = configuration.people
    if len(people):
        ok(f"people: {', '.join(person.name for person in people)}")
    if not on and configuration.settings.public_url is None:
        note("no channel is on and PUBLIC_URL is not set: requests are answered on the dashboard, fine for local use")


def run_checks(
    env_file: Path, echo: Callable[[str], None], *, url: str | None = None, mcp_config: Path | None = None
) -> int:
    """Print one line per check; return the number of problems found."""
    problems = 0

    def ok(text: str) -> None:
        echo(f"  ok    {text}")

    def problem(text: str) -> None:
        nonlocal problems
        problems += 1
        echo(f"  FIX   {text}")

    def note(text: str) -> None:
        echo(f"  note  {text}")

    if env_file.exists():
        ok(f"settings file {env_file} found")
    else:
        note(f"no {env_file}: using the environment and defaults (copy .env.example to .env to change them)")
    try:
        configuration = load_configuration(env_file if env_file.exists() else None)
    except ConfigError as exc:
        problem(str(exc))
        return problems
    settings: Settings = configuration.settings
    expiry = settings.approval_timeout_seconds
    ok(f"settings are valid (port {settings.server_port}, requests expire after {expiry:g} s)")

    mcp_token: str | None = None
    api_token: str | None = None
    try:
        tokens, created = load_tokens(settings)
    except ConfigError as exc:  # the other checks still run
        problem(str(exc))
    else:
        mcp_token, api_token = tokens.mcp, tokens.api
        for name in ("api-token", "mcp-token", "dashboard-token"):
            path = settings.approval_data_dir / name
            if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                problem(f"{path} can be read by other users: run  chmod 600 {path}")
        ok(f"tokens ready in {settings.approval_data_dir}" + (" (created now)" if created else ""))
        if reachable := _reachable(settings, env_file):
            echo(
                f"  warn  {reachable} can be read by this user ({getpass.getuser()}): an agent running as this user "
                "is refused them by the server's built-in rule, but a program the agent starts outside the gate is "
                "not. Strongest: run the server as its own user (deploy/approval-server.service, docs/security.md)."
            )

    try:
        policy_path = settings.policy_path
        if policy_path is None:
            note("no policy file: reads inside the agent's directory run, everything else asks (policy.example.toml)")
        else:
            load_rules(policy_path)
            ok(f"policy file {policy_path} is valid")
    except ConfigError as exc:
        problem(str(exc))

    store = Store(settings.store_url)
    try:
        DatabaseRecord(settings.approval_data_dir).check(store)  # before a migration would create an empty one
        if store.migrates_itself:
            store.migrate()
        revision = store.revision()
        if revision.is_newest:
            ok(f"database {store.describe()} is {revision.describe()}")
        else:
            problem(f"database {store.describe()} is {revision.describe()}")
    except ApprovalServerError as exc:
        problem(f"database: {exc}")
    finally:
        store.close()

    base = url or remembered_url() or settings.local_url  # where `serve` said it listens, --port included
    try:
        with httpx.Client(timeout=3, trust_env=False) as http:
            # With the API token, /healthz also tells the number of waiting requests.
            health = http.get(f"{base}/healthz", headers={"Authorization": f"Bearer {api_token}"})
            mcp = http.get(f"{base}/mcp", headers={"Authorization": f"Bearer {mcp_token}"})
        if health.status_code == 200:
            pending = health.json().get("pending")
            ok(f"server is running at {base}" + (f" ({pending} request(s) waiting)" if pending is not None else ""))
            if api_token is not None and pending is None:
                problem("the server refuses this API token: it was started with another APPROVAL_API_TOKEN or data dir")
            if mcp_token is not None and mcp.status_code == 401:
                problem("the server refuses this MCP token: it was started with another APPROVAL_MCP_TOKEN or data dir")
            elif mcp_token is not None:
                ok("the server accepts the MCP token (approval-server connect claude-code writes Claude Code's config)")
        else:
            problem(f"{base}/healthz answered {health.status_code}: is another program listening there?")
    except httpx.HTTPError:
        problem(f"no server answers at {base}: start it with  approval-server serve")

    _channels(configuration, ok, problem, note)
    if settings.server_host not in ("127.0.0.1", "localhost", "::1"):
        note(f"the server binds {settings.server_host}: other machines can reach it (tokens still required)")
    try:  # where the hook and the approver's commands find the server (never ./.env)
        client = readable_client_file()
        if client is None:
            note(f"no {client_file()}: `serve` writes it on start, `approval-server login` for a server elsewhere")
        else:
            ok(f"client settings {client} (used by the hook and the CLI; only you can write it)")
    except ConfigError as exc:
        problem(str(exc))
    claude_check.run_checks(mcp_config, ok=ok, problem=problem, note=note)
    try:  # each agent's own set-up, against the expiry the hook will meet
        target = Target(load_client_settings(url=base), mcp_token) if mcp_token is not None else None
    except ConfigError:  # reported above, with the client settings
        target = None
    for agent in agents().values():
        agent.doctor(target, ok, problem, note)
    if shutil.which("claude") is None:
        note("the claude CLI is not on PATH (npm install -g @anthropic-ai/claude-code)")
    echo("All checks passed." if not problems else f"{problems} problem(s) to fix.")
    return problems
