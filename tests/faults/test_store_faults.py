"""The database locked by another connection: an agent is denied within one lock wait, nothing is written twice, an
HTTP client gets a JSON 503 on a connection that stays usable, and everything works again once the lock is gone.

SQLite: another connection holds the database's write lock (`BEGIN EXCLUSIVE`), which the server waits for up to its
busy timeout. PostgreSQL: another connection holds `requests` in ACCESS EXCLUSIVE mode, which the server waits for up
to its lock_timeout, the same time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa

from approval_server.store.database import LOCK_WAIT_MS
from tests.dashboard_support import DASHBOARD_TOKEN, page_csrf, signed_in
from tests.databases import POSTGRESQL
from tests.fake_twilio import FakeTwilio
from tests.support import API_TOKEN, MCP_TOKEN, ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE

TOOL = "permissions__approve"
LOCK_WAIT = LOCK_WAIT_MS / 1000
MARGIN = 4.0  # a loaded machine; two lock waits, the failure this guards against, would take 2 × LOCK_WAIT
PRE_TOOL_USE = {
    "session_id": "4bb0",
    "cwd": "/srv/app",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "npm test"},
}


@contextlib.contextmanager
def locked(database_url: str) -> Iterator[None]:
    """Another connection holds what the server must write to, until the block ends (then rolls back)."""
    url = sa.make_url(database_url)
    if POSTGRESQL:
        with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as holder:
            holder.execute("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                holder.rollback()
    else:
        assert url.database is not None
        writer = sqlite3.connect(url.database, isolation_level=None)
        try:
            writer.execute("BEGIN EXCLUSIVE")
            yield
            writer.rollback()
        finally:
            writer.close()


async def sends_recorded(database_url: str, request_id: str, count: int, within: float = 15) -> None:
    """Wait until the server has recorded `count` messages sent for the request (to its approvers)."""
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    query = sa.text("SELECT count(*) FROM outbound_messages WHERE request_id = :id").bindparams(id=request_id)
    deadline = time.monotonic() + within
    try:
        while True:
            with engine.connect() as connection:
                if connection.execute(query).scalar_one() >= count:
                    return
            assert time.monotonic() < deadline, f"fewer than {count} sends recorded for {request_id}"
            await asyncio.sleep(0.05)
    finally:
        engine.dispose()


def one_connection(token: str, server: ServerProcess) -> httpx.AsyncClient:
    """A client that keeps one connection open and uses it for every request."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    )


def local_address(response: httpx.Response) -> Any:
    """The client's end of the connection that carried `response`: the same for every request on one connection."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


async def test_a_locked_database_denies_within_one_lock_wait_and_writes_nothing_twice(
    server: ServerProcess, database_url: str
) -> None:
    async with server.mcp() as mcp, server.api() as api, one_connection(MCP_TOKEN, server) as hooks:
        with locked(database_url):
            started = time.monotonic()
            through_mcp = mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "make deploy"}})
            through_hook = hooks.post("/api/hook", json=PRE_TOOL_USE)
            result, hooked = await asyncio.wait_for(asyncio.gather(through_mcp, through_hook), 3 * LOCK_WAIT)
            waited = time.monotonic() - started
        print(f"\ndenied {waited:.2f} s after the calls (lock wait {LOCK_WAIT:g} s)")
        answer = json.loads(result.content[0].text)
        assert hooked.status_code == 200
        hook_answer = hooked.json()["hookSpecificOutput"]
        assert answer["behavior"] == "deny"
        assert hook_answer["permissionDecision"] == "deny"
        for message in (answer["message"], hook_answer["permissionDecisionReason"]):
            assert "its database could not record approval request" in message
        assert LOCK_WAIT - 1 < waited < LOCK_WAIT + MARGIN
        assert (await api.get("/api/requests")).json()["requests"] == []

        # The lock is gone: everything works again.
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "make"}}))
        pending = await wait_for_pending(api)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert json.loads((await asyncio.wait_for(call, 10)).content[0].text)["behavior"] == "allow"
    log = server.log()
    for message in (answer["message"], hook_answer["permissionDecisionReason"]):
        request_id = re.findall(r"approval request (\w+)", message)[0]
        assert log.count(f"could not record request {request_id}") == 1, log  # the insert, and nothing after it


async def test_a_database_error_is_a_json_503_and_the_connection_serves_the_next_request(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, database_url: str
) -> None:
    """Through the API, the dashboard and Twilio's webhook alike; the API's client sends its next request on the same
    connection."""
    server = start_whatsapp(APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN)
    fake.webhook_timeout = 3 * LOCK_WAIT  # Twilio waits 15 s for a webhook's answer
    async with server.mcp() as mcp, one_connection(API_TOKEN, server) as api, signed_in(server) as dashboard:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "make"}}))
        pending = await wait_for_pending(api)
        await sends_recorded(database_url, pending["id"], 2)  # the lock below must not fall on the sends
        ports = []  # each read at once: once the client is done with a connection, its socket is gone
        form = {"csrf": await page_csrf(dashboard, f"/requests/{pending['id']}"), "decision": "allow"}
        decision = f"/api/requests/{pending['id']}/decision"
        with locked(database_url):
            refused, on_the_dashboard, webhook = await asyncio.gather(
                api.post(decision, json={"decision": "allow"}),
                dashboard.post(f"/requests/{pending['id']}/decision", data=form),
                fake.send_inbound(from_=ALICE, body=f"APPROVE {pending['id']}"),
            )
        ports.append(local_address(refused))
        assert refused.status_code == 503
        assert refused.json() == {
            "error": "store_unavailable",
            "detail": "the database could not complete the operation; try again later (see the server log)",
        }
        assert (on_the_dashboard.status_code, on_the_dashboard.json()) == (503, refused.json())
        assert (webhook.status_code, json.loads(webhook.body)) == (503, refused.json())
        assert not call.done()

        again = await api.post(decision, json={"decision": "allow"})
        ports.append(local_address(again))
        assert again.status_code == 200, again.text
        # The connection that carried the 503 carries the next request.
        assert ports[0] == ports[1]
        assert json.loads((await asyncio.wait_for(call, 10)).content[0].text)["behavior"] == "allow"
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert (row["status"], [a["outcome"] for a in row["answers"]]) == ("allowed", ["applied"])
    assert "Exception in ASGI application" not in server.log()
