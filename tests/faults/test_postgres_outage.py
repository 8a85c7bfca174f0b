"""PostgreSQL stopped under a server while agents wait, then started again: each agent is denied at its expiry with
the expiry's message although nothing can be recorded; /healthz answers 503 and why while the database is down; a
decision meanwhile is refused, never taken; once the database is back every row is recorded `expired` within
seconds, /healthz is 200 again, a late decision changes nothing, and a new request goes through end to end.

The database is on a cluster of this file's own (`pg_cluster`), stopped as if it crashed (`pg_ctl stop -m
immediate`) and started again on the same data directory and port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import ONLY_POSTGRESQL, POSTGRESQL
from tests.faults.pg_cluster import Cluster, all_waiting, hook_input
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

pytestmark = pytest.mark.skipif(not POSTGRESQL, reason=ONLY_POSTGRESQL)

AGENTS = 20
TIMEOUT = 6  # seconds an agent waits
MARGIN = 3.0  # a loaded machine
RECOVERY = 8.0  # "within a few seconds" of the database's return: closings are retried every 2 s at most
EXPIRY_REASON = f"no answer within {TIMEOUT} seconds"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    made.start()
    yield made
    made.remove()


@pytest.fixture
def lone_server(cluster: Cluster, tmp_path: Path) -> Iterator[ServerProcess]:
    """One server on a new database of the cluster: a replica alone, with a short lease."""
    if not cluster.running():  # a failed test may have left it stopped
        cluster.start()
    env = {"APPROVAL_LEASE_SECONDS": "2", "APPROVAL_TIMEOUT_SECONDS": str(TIMEOUT)}
    server = ServerProcess(data_dir=tmp_path / "data", database_url=cluster.new_database(), env=env)
    server.start()
    yield server
    server.stop()


async def health_becomes(http: httpx.AsyncClient, status_code: int, within: float) -> httpx.Response:
    """/healthz once it answers `status_code`, or its last answer after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        response = await http.get("/healthz")
        if response.status_code == status_code or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def rows_once_closed(api: httpx.AsyncClient, ids: list[str], within: float) -> list[dict[str, Any]]:
    """The rows `ids` once none is pending any more, or as they are after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            rows = [(await api.get(f"/api/requests/{request_id}")).json() for request_id in ids]
            if all(row.get("status") not in (None, "pending") for row in rows) or time.monotonic() > deadline:
                return rows
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_agents_waiting_while_postgresql_is_down_are_denied_at_expiry_and_recorded_once_it_is_back(
    cluster: Cluster, lone_server: ServerProcess
) -> None:
    server = lone_server
    async with server.api() as api, server.api(MCP_TOKEN) as hooks, httpx.AsyncClient(base_url=server.url) as anyone:

        async def agent(number: int) -> tuple[dict[str, Any], float]:
            started = time.monotonic()
            response = await hooks.post("/api/hook", json=hook_input(f"make deploy-{number}", f"agent-{number}"))
            assert response.status_code == 200, response.text
            return response.json()["hookSpecificOutput"], time.monotonic() - started

        agents = [asyncio.create_task(agent(number)) for number in range(AGENTS)]
        await all_waiting(server.database_url or "", AGENTS)
        pending = (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]
        id_of = {row["input"]["command"]: row["id"] for row in pending}
        ids = list(id_of.values())

        cluster.stop()
        health_down = await health_becomes(anyone, 503, within=3)
        during = await api.post(f"/api/requests/{ids[0]}/decision", json={"decision": "allow", "actor": "ops"})
        answers = await asyncio.wait_for(asyncio.gather(*agents), TIMEOUT + MARGIN + 5)
        health_after_expiry = await anyone.get("/healthz")

        cluster.start()
        rows = await rows_once_closed(api, ids, within=RECOVERY)
        health_back = await health_becomes(anyone, 200, within=RECOVERY)
        late = await api.post(f"/api/requests/{ids[1]}/decision", json={"decision": "allow", "actor": "ops"})
        recorded = (await api.get("/api/requests", params={"limit": 1000})).json()["requests"]

        print(
            f"\n/healthz while down: {health_down.status_code} {health_down.text}; decision while down: "
            f"{during.status_code} {during.text}; agents answered after {min(a[1] for a in answers):.2f}–"
            f"{max(a[1] for a in answers):.2f} s; rows once back: {sorted({row['status'] for row in rows})}; "
            f"/healthz once back: {health_back.status_code}; late decision: {late.status_code} "
            f"{late.json().get('error', late.json().get('status'))}"
        )
        assert health_down.status_code == 503
        assert health_down.json()["status"] == "unavailable"
        assert health_down.json()["reason"]
        assert during.status_code in (409, 503), during.text
        assert set(during.json()) == {"error", "detail"}
        for number, (output, waited) in enumerate(answers):
            request_id = id_of[f"make deploy-{number}"]
            assert output["permissionDecision"] == "deny"
            said = output["permissionDecisionReason"]
            assert f"No answer within {TIMEOUT} seconds (approval request {request_id} expired)" in said
            assert TIMEOUT - 0.5 < waited < TIMEOUT + MARGIN
        assert health_after_expiry.status_code == 503

        assert [(row["status"], row["reason"]) for row in rows] == [("expired", EXPIRY_REASON)] * AGENTS
        assert (health_back.status_code, health_back.json()) == (200, {"status": "ok"})
        assert late.status_code == 409, late.text
        assert [row["id"] for row in recorded if row["status"] == "allowed"] == []

        # A new request goes through end to end.
        call = asyncio.create_task(hooks.post("/api/hook", json=hook_input("make test", "agent-after")))
        after = await wait_for_pending(api, {"input": {"command": "make test"}})
        allowed = await api.post(f"/api/requests/{after['id']}/decision", json={"decision": "allow"})
        assert allowed.status_code == 200
        assert (await asyncio.wait_for(call, 10)).json()["hookSpecificOutput"]["permissionDecision"] == "allow"
