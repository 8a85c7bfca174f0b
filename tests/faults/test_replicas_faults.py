"""Replicas under faults: decisions posted to B for agents waiting on replica A, killed or alive, and replicas whose
wall clocks are off.

- A killed (SIGKILL) with agents waiting: an allow posted to B meanwhile is 409 not_delivered, never recorded
  `allowed`; the rows end `abandoned` once A's lease runs out.
- A alive, many decisions racing on B and C: each agent gets exactly what was recorded.
- Clocks (libfaketime): leases, takeover and grants go by PostgreSQL's clock, so a replica whose clock is 30 s
  behind does not look dead, a dead replica's requests are taken over on time whatever the survivor's clock says, and
  a grant lasts its time on the database's clock whichever replica made it or checks it.
"""

from __future__ import annotations

import asyncio
import email.utils
import glob
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.databases import ONLY_POSTGRESQL, POSTGRESQL
from tests.faults.pg_cluster import all_waiting, hook_input
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending, wait_for_status

pytestmark = pytest.mark.skipif(not POSTGRESQL, reason=ONLY_POSTGRESQL)

AGENTS = 20
LEASE = 2.0
CONFIRM = 3.0  # how long B waits for A to confirm a handed-over decision
MARGIN = 1.5  # a loaded machine


def libfaketime() -> str:
    """Debian's libfaketime (scripts/faketime.sh installs it and exports APPROVAL_TEST_LIBFAKETIME), or a skip."""
    found = os.environ.get("APPROVAL_TEST_LIBFAKETIME") or next(
        iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), ""
    )
    if not found:
        pytest.skip("libfaketime is not installed (Debian's libfaketime; scripts/faketime.sh installs it)")
    return found


def skewed(offset: str) -> dict[str, str]:
    """The environment of a replica whose wall clock is `offset` ("-30s") off; its monotonic clock is left alone."""
    return {"LD_PRELOAD": libfaketime(), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def clock_offset(server: ServerProcess) -> float:
    """How far the server's wall clock is from the test's, in seconds, as its HTTP Date header tells (to 1 s)."""
    served = email.utils.parsedate_to_datetime(httpx.get(f"{server.url}/healthz").headers["date"])
    return (served - datetime.now(UTC)).total_seconds()


def start_skewed(start_server: Callable[..., ServerProcess], offset: float, **env: str) -> ServerProcess:
    server = start_server(**skewed(f"{offset:+g}s"), **env)
    assert abs(clock_offset(server) - offset) < 3, "libfaketime did not move the server's clock"
    return server


def answer(outcome: Any) -> dict[str, Any]:
    """The hook's output, from an agent's completed request."""
    assert isinstance(outcome, httpx.Response), outcome
    assert outcome.status_code == 200, outcome.text
    output: dict[str, Any] = outcome.json()["hookSpecificOutput"]
    return output


async def still_pending_for(api: httpx.AsyncClient, request_id: str, seconds: float) -> None:
    """The request stays pending for `seconds` (looked at twice a second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = (await api.get(f"/api/requests/{request_id}")).json()
        assert row["status"] == "pending", f"{row['status']} by {row['decided_via']}: {row['reason']}"
        await asyncio.sleep(0.5)


async def test_allows_posted_to_b_for_the_agents_of_a_killed_replica_are_not_delivered_and_end_abandoned(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    """The decisions reach B within A's lease, when nothing but A's silence says it is dead (a lease long enough for
    B's wait for A's confirmation to end first)."""
    lease = 8.0
    a, b = (start_server(APPROVAL_LEASE_SECONDS=f"{lease:g}") for _ in range(2))
    async with a.api(MCP_TOKEN) as hooks, b.api() as api:
        agents = [
            asyncio.create_task(hooks.post("/api/hook", json=hook_input(f"make deploy-{n}", f"agent-{n}")))
            for n in range(AGENTS)
        ]
        await all_waiting(database_url, AGENTS)
        ids = [row["id"] for row in (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]]
        a.kill()
        killed = time.monotonic()
        await asyncio.gather(*agents, return_exceptions=True)  # their server is gone
        decided = await asyncio.gather(
            *(api.post(f"/api/requests/{i}/decision", json={"decision": "allow", "actor": "bo"}) for i in ids)
        )
        answered_within = time.monotonic() - killed
        print(
            f"\ndecisions on B answered within {answered_within:.2f} s of the kill: "
            f"{sorted({(r.status_code, r.json().get('error', r.json().get('status'))) for r in decided})}"
        )
        for response in decided:
            assert (response.status_code, response.json().get("error")) == (409, "not_delivered"), response.text
        assert answered_within < CONFIRM + MARGIN
        rows = [await wait_for_status(api, i, "abandoned", within=lease * 2 + MARGIN) for i in ids]
    for row in rows:
        assert (row["decided_via"], row["decided_by"]) == ("takeover", "approval-server")


async def test_decisions_racing_on_b_and_c_for_agents_on_live_a_each_reach_their_agent_as_recorded(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    """For each agent an allow with an edit on B and a deny on C, all at once: one wins, and the agent gets it."""
    a, b, c = (start_server(APPROVAL_LEASE_SECONDS=f"{LEASE:g}") for _ in range(3))
    async with a.api(MCP_TOKEN) as hooks, b.api() as api_b, c.api() as api_c:
        agents = [
            asyncio.create_task(hooks.post("/api/hook", json=hook_input(f"make deploy-{n}", f"agent-{n}")))
            for n in range(AGENTS)
        ]
        await all_waiting(database_url, AGENTS)
        pending = (await api_b.get("/api/requests", params={"status": "pending"})).json()["requests"]
        number_of = {row["id"]: int(row["input"]["command"].removeprefix("make deploy-")) for row in pending}

        def allow(n: int) -> dict[str, Any]:
            return {"decision": "allow", "actor": "bo", "updated_input": {"command": f"make deploy-{n} --dry-run"}}

        def deny(n: int) -> dict[str, Any]:
            return {"decision": "deny", "actor": "cy", "message": f"not deploy {n}"}

        decisions = await asyncio.gather(
            *(api_b.post(f"/api/requests/{i}/decision", json=allow(n)) for i, n in number_of.items()),
            *(api_c.post(f"/api/requests/{i}/decision", json=deny(n)) for i, n in number_of.items()),
        )
        answers = [answer(outcome) for outcome in await asyncio.wait_for(asyncio.gather(*agents), 10)]
        rows = {i: (await api_b.get(f"/api/requests/{i}")).json() for i in number_of}
    on_b, on_c = decisions[:AGENTS], decisions[AGENTS:]
    allowed = sum(response.status_code == 200 for response in on_b)
    print(f"\n{allowed} allowed on B, {AGENTS - allowed} denied on C")
    for (request_id, n), by_b, by_c in zip(number_of.items(), on_b, on_c, strict=True):
        assert sorted([by_b.status_code, by_c.status_code]) == [200, 409], (by_b.text, by_c.text)
        row, said = rows[request_id], answers[n]
        if by_b.status_code == 200:
            assert (row["status"], row["decided_by"]) == ("allowed", 'owner (says: "bo")')
            assert (said["permissionDecision"], said["updatedInput"]) == ("allow", allow(n)["updated_input"])
        else:
            assert (row["status"], row["decided_by"]) == ("denied", 'owner (says: "cy")')
            assert said["permissionDecision"] == "deny"
            assert f"not deploy {n}" in said["permissionDecisionReason"]


async def test_a_replica_whose_clock_is_behind_keeps_its_waiting_agent(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    """A's clock 30 s behind: its lease, renewed by PostgreSQL's clock, stays good, so B and C do not abandon its
    agent, and a decision on B reaches it."""
    a = start_skewed(start_server, -30, APPROVAL_LEASE_SECONDS=f"{LEASE:g}")
    b, _ = (start_server(APPROVAL_LEASE_SECONDS=f"{LEASE:g}") for _ in range(2))
    async with a.api(MCP_TOKEN) as hooks, b.api() as api:
        agent = asyncio.create_task(hooks.post("/api/hook", json=hook_input("make deploy", "agent-0")))
        await all_waiting(database_url, 1)
        pending = await wait_for_pending(api)
        await still_pending_for(api, pending["id"], 3.5 * LEASE)
        decided = await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "actor": "bo"})
        assert decided.status_code == 200, decided.text
        assert answer(await asyncio.wait_for(agent, 10))["permissionDecision"] == "allow"


@pytest.mark.parametrize("offset", [30, -30], ids=["survivor ahead", "survivor behind"])
async def test_a_dead_replicas_agent_is_abandoned_on_time_whatever_the_survivors_clock(
    start_server: Callable[..., ServerProcess], database_url: str, offset: float
) -> None:
    """B's clock 30 s off: while A lives B leaves its request alone; once A is killed B takes it over within about two
    leases (A's last renewal, a lease, and B's next look), not 30 s early or late."""
    a = start_server(APPROVAL_LEASE_SECONDS=f"{LEASE:g}")
    b = start_skewed(start_server, offset, APPROVAL_LEASE_SECONDS=f"{LEASE:g}")
    async with a.api(MCP_TOKEN) as hooks, b.api() as api:
        agent = asyncio.create_task(hooks.post("/api/hook", json=hook_input("make deploy", "agent-0")))
        await all_waiting(database_url, 1)
        pending = await wait_for_pending(api)
        await still_pending_for(api, pending["id"], 2 * LEASE)
        a.kill()
        killed = time.monotonic()
        await asyncio.gather(agent, return_exceptions=True)  # its server is gone
        row = await wait_for_status(api, pending["id"], "abandoned", within=2 * LEASE + MARGIN)
    print(f"\nabandoned {time.monotonic() - killed:.2f} s after the kill")
    assert row["decided_via"] == "takeover"


async def test_a_grant_lasts_its_time_on_the_databases_clock_whichever_replica_makes_or_checks_it(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    """ "Allow for 1 minute" given through A, whose clock is 90 s behind, still allows the same call on B (right
    clock) and on C (90 s ahead) at once, and ends 1 minute after it was given by PostgreSQL's clock. (A lease longer
    than the skews: only the grant's clock is under test.)"""
    lease = {"APPROVAL_LEASE_SECONDS": "300"}
    a = start_skewed(start_server, -90, **lease)
    b = start_server(**lease)
    c = start_skewed(start_server, 90, **lease)
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        async with a.api(MCP_TOKEN) as hooks_a, a.api() as api_a, b.api(MCP_TOKEN) as hooks_b, b.api() as api_b:
            agent = asyncio.create_task(hooks_a.post("/api/hook", json=hook_input("npm test", "agent-0")))
            await all_waiting(database_url, 1)
            pending = await wait_for_pending(api_a)
            body = {"decision": "allow", "actor": "ops", "remember": "1m"}
            decided = await api_a.post(f"/api/requests/{pending['id']}/decision", json=body)
            with engine.connect() as connection:
                database_now: datetime = connection.execute(sa.text("SELECT now()")).scalar_one()
            assert decided.status_code == 200, decided.text
            assert answer(await asyncio.wait_for(agent, 10))["permissionDecision"] == "allow"
            (grant,) = decided.json()["grants"]
            ends_in = datetime.fromisoformat(grant["expires_at"]) - database_now
            in_force_on_b = [g["id"] for g in (await api_b.get("/api/grants")).json()["grants"]]
            print(f"\nthe grant ends {ends_in.total_seconds():.1f} s after it was given, by PostgreSQL's clock")
            assert abs(ends_in - timedelta(minutes=1)) < timedelta(seconds=5)
            assert in_force_on_b == [grant["id"]]
            # The same call, from other agents, on B and on C: allowed by the grant, nobody asked.
            async with c.api(MCP_TOKEN) as hooks_c:
                for name, hooks in (("B", hooks_b), ("C", hooks_c)):
                    again = hooks.post("/api/hook", json=hook_input("npm test", f"agent-on-{name}"))
                    try:
                        output = answer(await asyncio.wait_for(again, 5))
                    except TimeoutError:
                        raise AssertionError(f"{name} asked a human: the grant was not in force there") from None
                    assert output["permissionDecision"] == "allow", output
    finally:
        engine.dispose()
