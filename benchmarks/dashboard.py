"""The web dashboard's two acceptance figures: decision → waiting MCP call, and the history page with a big history.

Everything runs on loopback: the real server (`python -m approval_server serve`, started with the tests'
`ServerProcess`) on a free port, with a temporary data directory whose SQLite database is filled beforehand.

1. History page. Before the server starts, `--history` closed requests (10,000 by default) are written to its
   database, through `Store.migrate()` and SQLAlchemy inserts on the project's tables. They are realistic: Bash,
   Edit, Write, Read, WebFetch and MCP tools, every closed status, the text the server would have stored
   (`render_text`), the answers, and some long inputs (scripts, whole files, big diffs, up to about 100 KB).
   Requests left pending in the database would be marked abandoned when the server starts, so the pending ones
   (`--history-pending`, 5) are real MCP calls that wait while the page is timed. Signed in with httpx
   (`/login?token=…`, which sets the session cookie), `GET /` is timed, from just before the request is sent to
   the last byte of the body, `--repeat` times per case after `--warmup` untimed requests: no filter,
   status=denied, tool=Edit, a text search matching few rows, one matching many, and deep pages. Each page's
   count of matching requests is checked against the generated data. The same search is then timed in this
   process on the same file, through `Store.search` + `Store.tool_names`, to separate the database from the rest.
2. Decision latency. N `permissions__approve` calls (`--pending`, 1000) are opened over streamable HTTP with
   fastmcp's `Client`, spread over `--sessions` client sessions, while a dashboard tab is open (one `GET /events`
   stream, as a browser keeps). Once the API lists all N as pending, the dashboard page is read for the CSRF
   token, then for each request the dashboard's decision form is posted (`POST /requests/{id}/decision`, form
   fields as a browser sends them: mostly allow, every tenth a deny with a message, every tenth an edit), one at
   a time. Each decision is timed from just before the POST is sent to the moment the client holds the MCP answer,
   which is checked. The 303 is not followed. A second round (`--browser-pending`, 1000) decides as a browser
   without the page's script does: the page the 303 names (the whole dashboard) is requested as soon as the 303
   arrives, while the MCP answer is still on its way, and the time until that page is received is reported too.

This process's own garbage collector is kept out of the timings (`gc.freeze()` once the data is set up).

Run: `.venv/bin/python benchmarks/dashboard.py [--pending 1000] [--history 10000]` (about 3 minutes, 1 with
`--browser-pending 0`);
`--help` lists every option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decision_latency import (
    OpenCall,
    ProgressCounter,
    Say,
    _call_tool,
    answer_of,
    machine,
    ms,
    percentile,
    wait_until_pending,
)

from approval_server.decision import SERVER_ACTOR
from approval_server.models import Status, new_request_id
from approval_server.render import render_text
from approval_server.store import Store
from approval_server.store.tables import answers, requests
from tests.support import ServerProcess

DECISION_P99_TARGET_MS = 50.0
HISTORY_P99_TARGET_MS = 200.0
PAGE_SIZE = 50  # approval_server.entry.dashboard.PAGE_SIZE
DASHBOARD_TOKEN = "bench-dashboard-token-" + secrets.token_hex(8)
SEARCH_FEW = "payments-db-7"  # planted in a handful of requests
SEARCH_FEW_ROWS = 7
SEARCH_MANY = "git"
_CSRF = re.compile(r'<input type="hidden" name="csrf" value="([0-9a-f]+)">')
_TOTAL = re.compile(r'<p class="meta">([\d,]+) request')


# ---------------------------------------------------------------------------------------------------------------
# Figures


def settle_client_gc() -> None:
    """Move every object this process holds now (the generated history, the open calls) out of its garbage
    collector's reach, as the server does at start-up: a full collection over them here took 116 ms and landed
    in a timed request."""
    gc.collect()
    gc.freeze()


def load_average() -> str:
    """The 1-minute load average: on a shared machine, what else ran during the measurement."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no samples")
        ordered = sorted(values)
        p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
        return cls(len(ordered), p50, p90, p99, ordered[-1])


# ---------------------------------------------------------------------------------------------------------------
# A realistic history


WORDS = [
    "api", "auth", "billing", "cache", "cli", "config", "core", "db", "deploy", "docs", "events", "export",
    "fixtures", "frontend", "handlers", "http", "jobs", "logging", "metrics", "migrations", "models", "notify",
    "orders", "parser", "payments", "queue", "render", "reports", "routes", "scheduler", "search", "server",
    "session", "settings", "storage", "sync", "templates", "tests", "tokens", "ui", "upload", "users", "utils",
    "webhooks", "worker",
]  # fmt: skip
HOSTS = ["docs.python.org", "developer.mozilla.org", "github.com", "pypi.org", "www.sqlite.org", "example.com"]
APPROVERS = [("whatsapp:+14155550123", "whatsapp"), ("whatsapp:+447700900123", "whatsapp"), ("alice", "api")]
APPROVERS += [("bob (CLI)", "cli"), ("dashboard session 3fj2k9xa", "dashboard"), ("+14155550123", "web link")]
DENY_REASONS = [
    "not on the production box",
    "use the staging database instead",
    "too broad, limit it to the tests directory",
    "no network access from this task",
    None,
]
CLIENTS = ["claude-code 2.1.3", "claude-code 2.1.4", None]


def _code_lines(rng: random.Random, count: int) -> str:
    lines = []
    for _ in range(count):
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        lines.append(
            rng.choice(
                [
                    f"def {a}_{b}(value: int) -> int:",
                    f"    return {a}.{b}(value) + {rng.randint(0, 999)}",
                    f"    if {a} is None:",
                    f"        raise ValueError('{a} {b} missing')",
                    f"import {a}",
                    f"# {a} {b}: keep in step with the {rng.choice(WORDS)} module",
                    f"{a.upper()}_{b.upper()} = {rng.randint(0, 10_000)}",
                ]
            )
        )
    return "\n".join(lines)


def _bash(rng: random.Random) -> dict[str, Any]:
    a, b = rng.choice(WORDS), rng.choice(WORDS)
    if rng.random() < 0.02:  # a long script
        body = _code_lines(rng, rng.randint(40, 1500))
        command = f"cat > scripts/{a}_{b}.py <<'EOF'\n{body}\nEOF\npython scripts/{a}_{b}.py"
        return {"command": command, "description": f"Write and run a {a} {b} script"}
    command = rng.choice(
        [
            "git status",
            f"git diff --stat HEAD~{rng.randint(1, 9)}",
            f"git log --oneline -n {rng.randint(5, 50)} -- src/{a}",
            f"git commit -am 'Fix {a} {b}'",
            f"git push origin feature/{a}-{b}",
            f"npm test -- --grep {a}",
            f"npm install --save-dev {a}-{b}",
            f"pytest -q tests/test_{a}.py -k {b}",
            f"ls -la src/{a}",
            f"rm -rf build/{a} dist/{b}",
            f"docker compose up -d {a}",
            f"curl -s https://api.example.com/v1/{a}/{b}",
            f"kubectl get pods -n {a}",
            f"grep -rn '{b}' src/{a}",
            f"python -m {a}.{b} --dry-run",
            f"make {a} && make {b}",
        ]
    )
    return {"command": command, "description": f"{b.capitalize()} {a}"}


def _edit(rng: random.Random) -> dict[str, Any]:
    a, b = rng.choice(WORDS), rng.choice(WORDS)
    size = rng.randint(150, 400) if rng.random() < 0.03 else rng.randint(1, 12)
    old = _code_lines(rng, size)
    new = _code_lines(rng, size)
    return {"file_path": f"/home/dev/project/src/{a}/{b}.py", "old_string": old, "new_string": new}


def _write(rng: random.Random) -> dict[str, Any]:
    a, b = rng.choice(WORDS), rng.choice(WORDS)
    lines = rng.randint(300, 2500) if rng.random() < 0.05 else rng.randint(5, 80)
    return {"file_path": f"/home/dev/project/src/{a}/{b}.py", "content": _code_lines(rng, lines)}


def _web_fetch(rng: random.Random) -> dict[str, Any]:
    a, b = rng.choice(WORDS), rng.choice(WORDS)
    return {"url": f"https://{rng.choice(HOSTS)}/{a}/{b}.html", "prompt": f"Summarise what it says about {a} {b}"}


def _read(rng: random.Random) -> dict[str, Any]:
    return {"file_path": f"/home/dev/project/src/{rng.choice(WORDS)}/{rng.choice(WORDS)}.py"}


def _mcp_issue(rng: random.Random) -> dict[str, Any]:
    a, b = rng.choice(WORDS), rng.choice(WORDS)
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 400)))
    return {"owner": "acme", "repo": f"{a}-service", "title": f"{b.capitalize()} fails under load", "body": body}


def _mcp_xy(rng: random.Random) -> dict[str, Any]:
    return {"query": f"{rng.choice(WORDS)} {rng.choice(WORDS)}", "limit": rng.randint(1, 100)}


TOOLS: list[tuple[str, float, Callable[[random.Random], dict[str, Any]]]] = [
    ("Bash", 0.50, _bash),
    ("Edit", 0.15, _edit),
    ("Write", 0.08, _write),
    ("Read", 0.08, _read),
    ("WebFetch", 0.08, _web_fetch),
    ("mcp__github__create_issue", 0.05, _mcp_issue),
    ("mcp__x__y", 0.06, _mcp_xy),
]
STATUSES = [
    (Status.ALLOWED, 0.62),
    (Status.DENIED, 0.20),
    (Status.EXPIRED, 0.10),
    (Status.CANCELLED, 0.05),
    (Status.ABANDONED, 0.03),
]


@dataclass
class History:
    """The generated rows, kept to check the counts the pages show."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    input_bytes: int = 0
    largest_input: int = 0

    def matching(self, status: str | None = None, tool: str | None = None, text: str | None = None) -> int:
        """What `Store.search` should count: the same filters, evaluated in Python."""
        needle = text.lower() if text else None
        count = 0
        for row in self.rows:
            if status and row["status"] != status:
                continue
            if tool and row["tool_name"] != tool:
                continue
            if needle is not None:
                searched = (row["id"], row["rendered"], row["decided_by"], row["reason"], row["client"])
                if not any(needle in value.lower() for value in searched if value):
                    continue
            count += 1
        return count


def _closing(rng: random.Random, status: Status, created: datetime) -> tuple[str, str, str | None, datetime]:
    """decided_by, decided_via, reason and decided_at, as the server writes them for `status`."""
    if status is Status.EXPIRED:
        return SERVER_ACTOR, "timeout", "no answer within 5 minutes", created + timedelta(minutes=5)
    if status is Status.CANCELLED:
        return SERVER_ACTOR, "mcp", "the agent went away", created + timedelta(seconds=rng.uniform(1, 290))
    if status is Status.ABANDONED:
        restarted = "the server restarted while the request was waiting"
        return SERVER_ACTOR, "startup", restarted, created + timedelta(minutes=rng.uniform(1, 600))
    actor, channel = rng.choice(APPROVERS)
    reason = rng.choice(DENY_REASONS) if status is Status.DENIED else None
    return actor, channel, reason, created + timedelta(seconds=rng.expovariate(1 / 25))


def generate_history(count: int, seed: int = 20261125) -> History:
    rng = random.Random(seed)
    history = History()
    few = set(rng.sample(range(count), min(SEARCH_FEW_ROWS, count)))
    created = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / max(count, 1)
    ids: set[str] = set()
    tool_weights = [weight for _, weight, _ in TOOLS]
    status_weights = [weight for _, weight in STATUSES]
    for index in range(count):
        created += step * rng.uniform(0.2, 1.8)
        name, _, make_input = rng.choices(TOOLS, tool_weights)[0]
        tool_input = make_input(rng)
        if index in few:
            name = "Bash"
            tool_input = {"command": f"pg_dump -h {SEARCH_FEW} -U app orders > /tmp/orders.sql"}
        status = rng.choices(STATUSES, status_weights)[0][0]
        decided_by, decided_via, reason, decided_at = _closing(rng, status, created)
        updated_input = None
        if status is Status.ALLOWED and name == "Bash" and rng.random() < 0.03:
            updated_input = {**tool_input, "command": tool_input["command"] + " --dry-run"}
        while (request_id := new_request_id()) in ids:
            pass
        ids.add(request_id)
        row = {
            "id": request_id,
            "tool_name": name,
            "input": tool_input,
            "updated_input": updated_input,
            "tool_use_id": "toolu_01" + "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz", k=22)),
            "extra": {},
            "client": rng.choice(CLIENTS),
            "rendered": render_text(name, tool_input),
            "created_at": created,
            "expires_at": created + timedelta(minutes=5),
            "status": status.value,
            "decided_at": decided_at,
            "decided_by": decided_by,
            "decided_via": decided_via,
            "reason": reason,
        }
        size = len(json.dumps(tool_input))
        history.input_bytes += size
        history.largest_input = max(history.largest_input, size)
        history.rows.append(row)
    return history


def fill_database(path: Path, history: History) -> None:
    """Create the schema with the project's migrations, then insert the history and one answer per request."""
    url = f"sqlite:///{path}"
    store = Store(url)
    try:
        store.migrate()
    finally:
        store.close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(requests.insert(), history.rows)
            connection.execute(
                answers.insert(),
                [
                    {
                        "request_id": row["id"],
                        "at": row["decided_at"],
                        "status": row["status"],
                        "actor": row["decided_by"],
                        "channel": row["decided_via"],
                        "message": row["reason"],
                        "updated_input": row["updated_input"],
                        "outcome": "applied",
                    }
                    for row in history.rows
                ],
            )
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------------------------
# The dashboard as a browser uses it


async def log_in(web: httpx.AsyncClient) -> None:
    response = await web.get("/login", params={"token": DASHBOARD_TOKEN})
    if response.status_code != 303 or "approval_session" not in web.cookies:
        raise RuntimeError(f"login answered {response.status_code} without a session cookie")


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    if match is None:
        raise RuntimeError("no CSRF token in the dashboard page")
    return match.group(1)


def total_of(page: str) -> int:
    match = _TOTAL.search(page)
    if match is None:
        raise RuntimeError("no request count in the dashboard page")
    return int(match.group(1).replace(",", ""))


async def timed_get(web: httpx.AsyncClient, params: dict[str, str]) -> tuple[float, str]:
    """`GET /` from just before it is sent to the last byte of the page."""
    sent = time.perf_counter()
    response = await web.get("/", params=params)
    elapsed = time.perf_counter() - sent
    if response.status_code != 200:
        raise RuntimeError(f"GET / {params} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response.text


class EventListener:
    """An open dashboard tab: one `GET /events` stream, counting the events the server sends."""

    def __init__(self, web: httpx.AsyncClient) -> None:
        self.web = web
        self.counts: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async with self.web.stream("GET", "/events", timeout=httpx.Timeout(60, read=None)) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    if kind == "ready":
                        self.ready.set()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# ---------------------------------------------------------------------------------------------------------------
# 1. The history page


@dataclass
class HistoryCase:
    name: str
    params: dict[str, str]
    expected: int
    shown: int = 0
    page_bytes: int = 0
    page: Stats | None = None
    store: Stats | None = None


def history_cases(history: History, pending: int) -> list[HistoryCase]:
    everything = len(history.rows) + pending
    last_page = max(1, -(-everything // PAGE_SIZE))
    deep = min(150, last_page)
    # The pending MCP calls ("echo <n>") count in the unfiltered history only.
    return [
        HistoryCase("no filter", {}, everything),
        HistoryCase("status=denied", {"status": "denied"}, history.matching(status="denied")),
        HistoryCase("tool=Edit", {"tool": "Edit"}, history.matching(tool="Edit")),
        HistoryCase("tool=Write (long inputs)", {"tool": "Write"}, history.matching(tool="Write")),
        HistoryCase(f"q={SEARCH_FEW} (few)", {"q": SEARCH_FEW}, history.matching(text=SEARCH_FEW)),
        HistoryCase(f"q={SEARCH_MANY} (many)", {"q": SEARCH_MANY}, history.matching(text=SEARCH_MANY)),
        HistoryCase(f"page={deep}", {"page": str(deep)}, everything),
        HistoryCase(f"page={last_page} (last)", {"page": str(last_page)}, everything),
        HistoryCase(
            f"tool=Bash&q={SEARCH_MANY}&page=3",
            {"tool": "Bash", "q": SEARCH_MANY, "page": "3"},
            history.matching(tool="Bash", text=SEARCH_MANY),
        ),
    ]


async def time_store(path: Path, case: HistoryCase, repeat: int, warmup: int) -> Stats:
    """The same search, in this process, through the project's Store on the server's database file."""
    store = Store(f"sqlite:///{path}")
    try:
        params = case.params
        status = Status(params["status"]) if "status" in params else None
        page = int(params.get("page", "1"))
        times = []
        for index in range(warmup + repeat):
            started = time.perf_counter()
            await store.search(
                status, params.get("tool"), params.get("q"), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
            )
            await store.tool_names()
            if index >= warmup:
                times.append(time.perf_counter() - started)
        return Stats.of(times)
    finally:
        store.close()


async def run_history(
    args: argparse.Namespace, server: ServerProcess, history: History, clients: Sequence[Client[Any]], say: Say
) -> list[HistoryCase]:
    api = server.api()
    web = httpx.AsyncClient(base_url=server.url, timeout=60)
    calls: list[OpenCall] = []
    async with api, web:
        await log_in(web)
        calls = open_bash_calls(clients, args.history_pending, "history", ProgressCounter())
        try:
            if calls:
                await wait_until_pending(api, calls, args.pending_timeout)
            cases = history_cases(history, len(calls))
            settle_client_gc()
            for case in cases:
                times = []
                page = ""
                for index in range(args.warmup + args.repeat):
                    elapsed, page = await timed_get(web, case.params)
                    if index >= args.warmup:
                        times.append(elapsed)
                case.page = Stats.of(times)
                case.shown = total_of(page)
                case.page_bytes = len(page.encode())
                if case.shown != case.expected:
                    raise RuntimeError(f"{case.name}: the page counts {case.shown} requests, expected {case.expected}")
                say(f"  {case.name}: p50 {ms(case.page.p50)}, p99 {ms(case.page.p99)}")
        finally:
            for call in calls:
                call.task.cancel()
            await asyncio.gather(*(call.task for call in calls), return_exceptions=True)
    for case in cases:
        case.store = await time_store(server.data_dir / "approval.db", case, args.repeat, args.warmup)
    return cases


# ---------------------------------------------------------------------------------------------------------------
# 2. Decision on the dashboard → the waiting MCP call


def open_bash_calls(clients: Sequence[Client[Any]], count: int, tag: str, progress: ProgressCounter) -> list[OpenCall]:
    calls = []
    for index in range(count):
        tool_use_id = f"dash-{tag}-{index}"
        arguments = {"tool_name": "Bash", "input": {"command": f"echo {index}"}, "tool_use_id": tool_use_id}
        task = asyncio.create_task(_call_tool(clients[index % len(clients)], arguments, progress))
        calls.append(OpenCall(tool_use_id, arguments, task))
    return calls


def decision_form(index: int, csrf: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The form a browser posts for the `index`-th decision, and the answer the agent must then receive."""
    if index % 10 == 9:
        message = f"not now ({index})"
        return {"csrf": csrf, "decision": "deny", "message": message}, {"behavior": "deny", "message": message}
    if index % 10 == 4:
        edited = {"command": f"echo {index} --dry-run"}
        form = {"csrf": csrf, "decision": "edit", "updated_input": json.dumps(edited, indent=2)}
        return form, {"behavior": "allow", "updatedInput": edited}
    return {"csrf": csrf, "decision": "allow"}, {"behavior": "allow", "updatedInput": {"command": f"echo {index}"}}


@dataclass
class DecisionRound:
    pending: int
    follow: bool  # as a browser: the 303's page is fetched at once, while the MCP answer is on its way
    open_seconds: float
    page_with_pending: Stats
    page_bytes: int
    latency: Stats
    post: Stats
    reload: Stats | None


async def decision_round(
    args: argparse.Namespace,
    api: httpx.AsyncClient,
    web: httpx.AsyncClient,
    clients: Sequence[Client[Any]],
    count: int,
    follow: bool,
    say: Say,
) -> DecisionRound:
    calls: list[OpenCall] = []
    try:
        started = time.perf_counter()
        calls = open_bash_calls(clients, count, "browser" if follow else "decide", ProgressCounter())
        request_ids = await wait_until_pending(api, calls, args.pending_timeout)
        open_seconds = time.perf_counter() - started
        say(f"  {len(calls)} calls pending after {open_seconds:.1f} s")

        # The page a person opens to decide, with all of them waiting; it also holds the CSRF token.
        page_times, page = [], ""
        for _ in range(3):
            elapsed, page = await timed_get(web, {})
            page_times.append(elapsed)
        csrf = csrf_of(page)
        say(f"  dashboard page with {len(calls)} pending: {ms(min(page_times))} ({len(page) / 1024:.0f} KiB)")
        settle_client_gc()

        latencies, posts, reloads = [], [], []
        for index, call in enumerate(calls):
            request_id = request_ids[call.tool_use_id]
            form, expected = decision_form(index, csrf)
            sent = time.perf_counter()
            response = await web.post(f"/requests/{request_id}/decision", data=form)
            posted = time.perf_counter()
            if response.status_code != 303:
                raise RuntimeError(f"decision on {request_id} answered {response.status_code}: {response.text}")
            reload = asyncio.create_task(web.get(response.headers["location"])) if follow else None
            received, result = await asyncio.wait_for(call.task, 60)
            answer = answer_of(result)
            if expected["behavior"] == "deny":
                ok = answer["behavior"] == "deny" and expected["message"] in answer["message"]
            else:
                ok = answer == expected
            if not ok:
                raise RuntimeError(f"wrong answer for {request_id}: {answer}, expected {expected}")
            latencies.append(received - sent)
            posts.append(posted - sent)
            if reload is not None:
                (await reload).raise_for_status()
                reloads.append(time.perf_counter() - sent)
        say(f"  {len(latencies)} decisions, p99 {ms(Stats.of(latencies).p99)}")
    finally:
        for call in calls:
            call.task.cancel()
        await asyncio.gather(*(call.task for call in calls), return_exceptions=True)
    return DecisionRound(
        pending=len(calls),
        follow=follow,
        open_seconds=open_seconds,
        page_with_pending=Stats.of(page_times),
        page_bytes=len(page.encode()),
        latency=Stats.of(latencies),
        post=Stats.of(posts),
        reload=Stats.of(reloads) if reloads else None,
    )


@dataclass
class DecisionResult:
    rounds: list[DecisionRound]
    events: dict[str, int]


async def run_decisions(
    args: argparse.Namespace, server: ServerProcess, clients: Sequence[Client[Any]], say: Say
) -> DecisionResult:
    api = server.api()
    web = httpx.AsyncClient(base_url=server.url, timeout=60)
    rounds = []
    async with api, web:
        await log_in(web)
        listener = EventListener(web)
        try:
            await asyncio.wait_for(listener.ready.wait(), 10)
            rounds.append(await decision_round(args, api, web, clients, args.pending, False, say))
            if args.browser_pending:
                say(f"decisions as a browser makes them (the 303 followed), {args.browser_pending} pending")
                rounds.append(await decision_round(args, api, web, clients, args.browser_pending, True, say))
            await asyncio.sleep(0.2)  # the last closed events reach the tab
        finally:
            await listener.close()
    return DecisionResult(rounds, dict(listener.counts))


# ---------------------------------------------------------------------------------------------------------------
# Report


def report_lines(
    history: History, cases: Sequence[HistoryCase], decisions: DecisionResult | None, args: argparse.Namespace
) -> Iterator[str]:
    yield ""
    yield (
        f"History page: {len(history.rows):,} closed requests in the database "
        f"({history.input_bytes / 1024 / 1024:.1f} MiB of input, largest {history.largest_input / 1024:.0f} KiB), "
        f"{args.history_pending} pending MCP calls waiting"
    )
    yield f"  GET / signed in, {args.repeat} times per case after {args.warmup} untimed; one at a time"
    yield (
        f"  {'case':<30} {'matches':>8} {'page KiB':>9} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
        f"   {'store p50':>9} {'store p99':>9}"
    )
    for case in cases:
        assert case.page is not None
        assert case.store is not None
        page, store = case.page, case.store
        yield (
            f"  {case.name:<30} {case.shown:>8,} {case.page_bytes / 1024:>9.0f} {ms(page.p50):>8} {ms(page.p90):>8} "
            f"{ms(page.p99):>8} {ms(page.max):>8}   {ms(store.p50):>9} {ms(store.p99):>9}"
        )
    yield "  store = Store.search + Store.tool_names on the same file, in this process (the database part of a page)"
    if decisions is None:
        return
    for d in decisions.rounds:
        yield ""
        how = "posted as a browser does, the 303's page fetched at once" if d.follow else "posted, the 303 not followed"
        yield f"Decision on the dashboard -> waiting MCP call: {d.pending} calls pending, {args.sessions} MCP sessions"
        yield f"  dashboard form {how}; one decision at a time"
        yield (
            f"  all pending after {d.open_seconds:.1f} s; dashboard page with them pending: "
            f"{ms(d.page_with_pending.p50)} (p50 of {d.page_with_pending.count}, {d.page_bytes / 1024:.0f} KiB)"
        )
        rows = [("decision -> MCP answer", d.latency), ("POST round trip (303)", d.post)]
        if d.reload is not None:
            rows.append(("decision -> page reloaded", d.reload))
        yield f"  {'timed from just before the POST':<32} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
        for name, stats in rows:
            yield (f"  {name:<32} {ms(stats.p50):>8} {ms(stats.p90):>8} {ms(stats.p99):>8} {ms(stats.max):>8}")
    yield ""
    yield f"Events received by the open dashboard tab: {json.dumps(decisions.events, sort_keys=True)}"


def summary(cases: Sequence[HistoryCase], decisions: DecisionResult | None) -> tuple[str, bool]:
    parts, met = [], True
    if decisions is not None:
        for d in decisions.rounds:
            p99 = d.latency.p99 * 1000
            ok = p99 < DECISION_P99_TARGET_MS
            met &= ok
            verdict = "PASS" if ok else "FAIL"
            name = "as a browser (303 followed) " if d.follow else "decision->MCP "
            parts.append(f"{name}p99@{d.pending}={p99:.1f}ms (<{DECISION_P99_TARGET_MS:g}) {verdict}")
    worst = max(cases, key=lambda case: case.page.p99 if case.page else 0)
    assert worst.page is not None
    p99 = worst.page.p99 * 1000
    ok = all(case.page is not None and case.page.p99 * 1000 < HISTORY_P99_TARGET_MS for case in cases)
    met &= ok
    parts.append(
        f"history page worst p99={p99:.0f}ms ({worst.name}) (<{HISTORY_P99_TARGET_MS:g}) {'PASS' if ok else 'FAIL'}"
    )
    return "SUMMARY " + "; ".join(parts), met


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--pending", type=int, default=1000, help="MCP calls waiting for a dashboard decision (default 1000)"
    )
    parser.add_argument(
        "--browser-pending",
        type=int,
        default=1000,
        help="then as many calls decided as a browser does, following each 303 to the page at once "
        "(default 1000, about 3 minutes; 0: skip)",
    )
    parser.add_argument(
        "--history", type=int, default=10_000, help="closed requests written to the database (default 10000)"
    )
    parser.add_argument(
        "--history-pending", type=int, default=5, help="MCP calls waiting while the history is timed (default 5)"
    )
    parser.add_argument("--repeat", type=int, default=50, help="timed GET / per history case (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed GET / per history case first (default 5)")
    parser.add_argument(
        "--sessions", type=int, default=20, help="MCP client sessions the calls are spread over (default 20)"
    )
    parser.add_argument("--pending-timeout", type=float, default=120.0, help="seconds to wait for the calls pending")
    parser.add_argument("--server-log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--skip-decisions", action="store_true", help="only the history page")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, database)")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 if an acceptance target is missed")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.pending < 1 or args.pending > 1000:
        parser.error("--pending must be from 1 to 1000 (the API lists at most 1000 pending requests)")
    if not 0 <= args.browser_pending <= 1000:
        parser.error("--browser-pending must be from 0 to 1000")
    if min(args.sessions, args.repeat) < 1 or min(args.history, args.history_pending, args.warmup) < 0:
        parser.error("--sessions and --repeat must be at least 1, the other counts at least 0")
    return args


async def main_async(args: argparse.Namespace) -> int:
    say = Say(args.quiet)
    began = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="approval-bench-dashboard-"))
    print("approval-server dashboard benchmark")
    print(f"  date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  machine: {machine()}")
    print(f"  load average (1 min) at the start: {load_average()}")
    server = ServerProcess(
        data_dir=work_dir / "data",
        env={
            "APPROVAL_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
            "APPROVAL_TIMEOUT_SECONDS": "3600",
            "APPROVAL_LOG_LEVEL": args.server_log_level,
        },
    )
    try:
        say(f"generating {args.history:,} closed requests")
        history = generate_history(args.history)
        server.data_dir.mkdir(parents=True)
        fill_database(server.data_dir / "approval.db", history)
        size = (server.data_dir / "approval.db").stat().st_size
        say(f"  database {size / 1024 / 1024:.1f} MiB; starting the server")
        await asyncio.to_thread(server.start, 60)
        print(f"  server: pid {server.process.pid if server.process else '?'} on {server.url}, log {server.log_path}")
        print(f"  database: {size / 1024 / 1024:.1f} MiB before the server started")
        decisions = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                clients: list[Client[StreamableHttpTransport]] = [
                    await stack.enter_async_context(server.mcp()) for _ in range(args.sessions)
                ]
                say("history page")
                cases = await run_history(args, server, history, clients, say)
                if not args.skip_decisions:
                    say(f"decisions on the dashboard, {args.pending} pending")
                    decisions = await run_decisions(args, server, clients, say)
        except BaseException:
            print(f"server log tail:\n{server.log()[-4000:]}", file=sys.stderr)
            raise
        finally:
            await asyncio.to_thread(server.stop)
        for line in report_lines(history, cases, decisions, args):
            print(line)
        text, met = summary(cases, decisions)
        print("")
        print(f"Load average (1 min) at the end: {load_average()}")
        print(f"Run time: {time.monotonic() - began:.0f} s" + (f"; files kept in {work_dir}" if args.keep else ""))
        print(text)
        return 1 if args.fail_on_miss and not met else 0
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
