"""A closing the database cannot record yet, and a decision that no agent is waiting for, on both backends.

- A request that expires, or whose agent goes away, while the database is locked (see `locked`): its agent is denied
  at once with the right message, `/healthz` answers 503 while the closing is unrecorded, no allow is ever applied,
  and once the lock is released the row is recorded `expired` (or `cancelled`) with its reason and `/healthz` is
  200 again, within seconds.
- A pending row whose agent is not waiting on any server (as a crash leaves it): a decision is refused, 409
  `not_delivered`, and the row is closed `abandoned`, never `allowed`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from approval_server.models import new_request_id
from approval_server.store.tables import requests
from tests.databases import POSTGRESQL
from tests.faults.test_store_faults import LOCK_WAIT, MARGIN, PRE_TOOL_USE, TOOL, locked
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending, wait_for_status
from tests.test_replicas import replica_id

TIMEOUT = 3  # APPROVAL_TIMEOUT_SECONDS: time enough to lock the database before the expiry, on a loaded machine
RECORDED_WITHIN = 6.0  # once the database is back: a retry every 2 s at most, on a loaded machine


async def admitted(database_url: str, request_id: str, within: float = 10) -> None:
    """Returns once the server has let the request wait for a human (its fair share taken, the last thing written
    about it before it closes), so that a lock taken now holds up its closing and nothing else."""
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    query = sa.select(requests.c.share).where(requests.c.id == request_id)
    deadline = time.monotonic() + within
    try:
        while True:
            with engine.connect() as connection:
                if connection.execute(query).scalar_one_or_none() is not None:
                    return
            assert time.monotonic() < deadline, f"request {request_id} not let wait within {within} s"
            await asyncio.sleep(0.05)
    finally:
        engine.dispose()


async def healthy_again(server: ServerProcess, within: float = RECORDED_WITHIN) -> httpx.Response:
    """`/healthz`, once it answers 200 (or at the end of `within`)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anyone:
        while True:
            health = await anyone.get("/healthz")
            if health.status_code == 200 or time.monotonic() > deadline:
                return health
            await asyncio.sleep(0.2)


def allows_applied(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in row["answers"] if (a["status"], a["outcome"]) == ("allowed", "applied")]


def assert_unavailable(health: httpx.Response) -> None:
    assert health.status_code == 503, health.text
    body = health.json()
    assert body["status"] == "unavailable"
    assert isinstance(body["reason"], str)
    assert body["reason"]


async def test_an_expiry_while_the_database_is_locked_denies_at_once_and_is_recorded_once_it_is_back(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(APPROVAL_TIMEOUT_SECONDS=str(TIMEOUT))
    async with server.mcp() as mcp, server.api() as api:
        started = time.monotonic()
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "make deploy"}}))
        pending = await wait_for_pending(api)
        decision = f"/api/requests/{pending['id']}/decision"
        await admitted(database_url, pending["id"])
        with locked(database_url):
            assert time.monotonic() - started < TIMEOUT, "locked too late: the request may have expired already"
            # The expiry's closing waits one lock wait at most, fails, and the agent is denied all the same.
            try:
                result = await asyncio.wait_for(call, started + TIMEOUT + LOCK_WAIT + MARGIN - time.monotonic())
            except TimeoutError:  # the call is cancelled: nothing is left running once the test ends
                raise AssertionError(f"the agent was not answered by the expiry ({TIMEOUT} s) + a lock wait") from None
            denied_after = time.monotonic() - started
            answer = json.loads(result.content[0].text)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as anyone:  # it may wait for the lock
                health = await anyone.get("/healthz")
            late = await api.post(decision, json={"decision": "allow"})
        print(f"\ndenied {denied_after:.2f} s after the call (expiry {TIMEOUT} s, lock wait {LOCK_WAIT:g} s)")
        # Released: an allow now finds the expiry recorded (409 request_closed), or no agent waiting (not_delivered).
        after = await api.post(decision, json={"decision": "allow"})
        row = await wait_for_status(api, pending["id"], "expired", within=RECORDED_WITHIN)
        healthy = await healthy_again(server)

    assert answer["behavior"] == "deny"
    assert answer["message"].startswith(
        f"No answer within {TIMEOUT} seconds (approval request {pending['id']} expired)"
    )
    assert TIMEOUT - 0.5 < denied_after < TIMEOUT + LOCK_WAIT + MARGIN
    assert_unavailable(health)
    assert late.status_code in (409, 503), late.text  # 503: the lock held it up
    if late.status_code == 409:
        assert late.json()["error"] == "not_delivered"
    assert after.status_code == 409, after.text
    assert after.json()["error"] in ("not_delivered", "request_closed")
    assert (row["decided_by"], row["decided_via"]) == ("approval-server", "timeout")
    assert f"no answer within {TIMEOUT} seconds" in row["reason"]
    assert allows_applied(row) == []
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})


async def test_an_agent_gone_while_the_database_is_locked_is_recorded_cancelled_once_it_is_back(
    server: ServerProcess, database_url: str
) -> None:
    async with server.api() as api, httpx.AsyncClient(base_url=server.url, timeout=30) as agent:
        call = asyncio.create_task(
            agent.post("/api/hook", json=PRE_TOOL_USE, headers={"Authorization": f"Bearer {MCP_TOKEN}"})
        )
        pending = await wait_for_pending(api)
        await admitted(database_url, pending["id"])
        with locked(database_url):
            call.cancel()  # the hook goes away: its connection is closed
            with contextlib.suppress(asyncio.CancelledError):
                await call
            await asyncio.sleep(LOCK_WAIT + 2)  # the closing's first try has failed
            health = await agent.get("/healthz")
        row = await wait_for_status(api, pending["id"], "cancelled", within=RECORDED_WITHIN)
        healthy = await healthy_again(server)
    assert_unavailable(health)
    assert row["decided_by"] == "approval-server"
    assert "the agent went away" in row["reason"]
    assert allows_applied(row) == []
    assert healthy.status_code == 200, healthy.text


async def test_a_decision_no_agent_waits_for_is_refused_and_its_request_abandoned(
    server: ServerProcess, database_url: str
) -> None:
    """One server: a pending row it holds (on PostgreSQL, under its own lease) while no agent waits for it."""
    request_id, now = new_request_id(), datetime.now(UTC)
    orphan = {
        "id": request_id,
        "tool_name": "Bash",
        "input": {"command": "make deploy"},
        "extra": {},
        "rendered": "make deploy",
        "created_at": now,
        "expires_at": now + timedelta(minutes=5),
        "status": "pending",
        "replica": replica_id(server) if POSTGRESQL else None,
    }
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(requests.insert().values(orphan))
    finally:
        engine.dispose()
    async with server.api() as api:
        refused = await api.post(f"/api/requests/{request_id}/decision", json={"decision": "allow"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "not_delivered"
        assert isinstance(refused.json()["detail"], str)
        assert refused.json()["detail"]
        row = await wait_for_status(api, request_id, "abandoned", within=RECORDED_WITHIN)
    assert "waiting" in row["reason"]
    assert allows_applied(row) == []
