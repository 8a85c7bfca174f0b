"""A server killed (SIGKILL) with agents waiting and allows in flight, on both backends: once a server runs again on
the same database every request is closed, every agent that received an allow finds its request recorded `allowed`,
and at most one request per round is recorded `allowed` whose agent never received the allow. No answer is a 500,
and the new server serves as usual. Also a graceful stop (SIGTERM) with many agents waiting: each is denied, told
why, and every request is closed.

Each round, AGENTS hooks wait on one server, DECISIONS allows are posted at once, and the server is killed as soon as
KILL_AFTER of them have been answered 200. A new server on the same database closes what the dead one left pending
(SQLite: at start-up; PostgreSQL: by taking over the requests of the dead server once its lease runs out, or at
start-up) and serves the next round. Each round prints how many requests were recorded `allowed` without their agent
receiving the allow (see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from tests.faults.test_store_faults import PRE_TOOL_USE
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

ROUNDS = 3
AGENTS = 100
DECISIONS = 30
KILL_AFTER = 3  # 200s answered to the allows before the kill: the others are in flight
LEASE = "2"  # PostgreSQL: a live server takes over the requests of a dead one 2 s after its last renewal
# Every agent waits at once, each in a session of its own, all with one token.
ENV = {"APPROVAL_LEASE_SECONDS": LEASE, "APPROVAL_MAX_PENDING_PER_TOKEN": str(10 * AGENTS)}


def hook_input(command: str) -> dict[str, Any]:
    return PRE_TOOL_USE | {"session_id": command, "tool_input": {"command": command}}


def agents_client(server: ServerProcess) -> httpx.AsyncClient:
    """One client for every agent's hook, each on a connection of its own."""
    limits = httpx.Limits(max_connections=AGENTS + 10, max_keepalive_connections=AGENTS + 10)
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {MCP_TOKEN}"}, limits=limits, timeout=60
    )


async def wait_as_agent(agents: httpx.AsyncClient, command: str) -> httpx.Response | None:
    """The hook's answer; None when none came (its server died)."""
    try:
        return await agents.post("/api/hook", json=hook_input(command))
    except httpx.TransportError:
        return None


def decision_of(response: httpx.Response | None) -> str | None:
    """What the agent was told ("allow" or "deny"), or None when it got no hook answer."""
    if response is None or response.status_code != 200:
        return None
    decided: str = response.json()["hookSpecificOutput"]["permissionDecision"]
    return decided


async def all_pending(api: httpx.AsyncClient, commands: Sequence[str], within: float = 30) -> dict[str, str]:
    """Command → request id, once every one of `commands` waits."""
    wanted, deadline = set(commands), time.monotonic() + within
    while True:
        rows = (await api.get("/api/requests", params={"status": "pending", "limit": 1000})).json()["requests"]
        found = {row["input"]["command"]: row["id"] for row in rows if row["input"]["command"] in wanted}
        if len(found) == len(wanted):
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {len(wanted)} requests pending after {within} s"
        await asyncio.sleep(0.1)


async def rows_once_none_pending(api: httpx.AsyncClient, within: float = 20) -> dict[str, dict[str, Any]]:
    """Command → row, once no request is pending any more."""
    deadline = time.monotonic() + within
    while True:
        rows = (await api.get("/api/requests", params={"limit": 1000})).json()["requests"]
        pending = [row["id"] for row in rows if row["status"] == "pending"]
        if not pending:
            return {row["input"]["command"]: row for row in rows}
        assert time.monotonic() < deadline, f"{len(pending)} request(s) still pending after {within} s: {pending}"
        await asyncio.sleep(0.2)


async def allow_then_kill(server: ServerProcess, request_ids: Sequence[str]) -> list[httpx.Response | None]:
    """Post an allow for each of `request_ids` at once; SIGKILL the server once KILL_AFTER are answered 200."""
    answered: list[httpx.Response] = []

    async with server.api() as api:

        async def allow(request_id: str) -> httpx.Response | None:
            try:
                response = await api.post(f"/api/requests/{request_id}/decision", json={"decision": "allow"})
            except httpx.TransportError:
                return None
            answered.append(response)
            if sum(r.status_code == 200 for r in answered) == KILL_AFTER:
                server.kill()
            return response

        responses = await asyncio.gather(*(allow(request_id) for request_id in request_ids))
    if server.process is not None and server.process.poll() is None:  # fewer than KILL_AFTER allows went through
        server.kill()
    return responses


async def serves_normally(server: ServerProcess, command: str) -> None:
    async with server.api() as api:
        call = asyncio.create_task(api.post("/api/hook", json=hook_input(command)))
        pending = await wait_for_pending(api, {"input": {"command": command}})
        decided = await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        answered = await asyncio.wait_for(call, 10)
    assert decided.status_code == 200, decided.text
    assert decision_of(answered) == "allow"


async def test_sigkill_with_allows_in_flight_leaves_every_request_closed_and_no_allow_unreceived_but_one(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(**ENV)
    unreceived_per_round = []
    for round_ in range(ROUNDS):
        commands = [f"deploy {round_}-{agent}" for agent in range(AGENTS)]
        async with agents_client(server) as agents, server.api() as api:
            waiting = [asyncio.create_task(wait_as_agent(agents, command)) for command in commands]
            ids = await all_pending(api, commands)
            decisions = await allow_then_kill(server, [ids[command] for command in commands[:DECISIONS]])
            hooked = await asyncio.gather(*waiting)

        server = start_server(**ENV)
        async with server.api() as api:
            rows = await rows_once_none_pending(api)
        told = {command: decision_of(response) for command, response in zip(commands, hooked, strict=True)}
        received = {command for command, decided in told.items() if decided == "allow"}
        allowed = {command for command in commands if rows[command]["status"] == "allowed"}
        decided_200 = {
            command
            for command, response in zip(commands, decisions, strict=False)
            if response is not None and response.status_code == 200
        }
        unreceived = allowed - received
        print(
            f"\nround {round_ + 1}: {len(decided_200)} of {DECISIONS} allows answered 200, {len(allowed)} requests "
            f"recorded allowed, {len(received)} allows received by their agent, {len(unreceived)} recorded allowed "
            "without their agent receiving it"
        )
        unreceived_per_round.append(len(unreceived))

        answered = [r for r in [*decisions, *hooked] if r is not None]
        assert [r.text for r in answered if r.status_code == 500] == []
        assert {rows[command]["status"] for command in commands} <= {"allowed", "abandoned"}
        assert received <= allowed
        assert decided_200 <= allowed
        assert set(told.values()) <= {"allow", None}  # no agent was denied: each was allowed or lost its server
        await serves_normally(server, f"after the restart {round_ + 1}")
    print(f"\nrecorded allowed without their agent receiving it, per round: {unreceived_per_round}")
    assert max(unreceived_per_round) <= 1, unreceived_per_round


async def test_sigterm_with_many_agents_waiting_denies_each_saying_why(
    start_server: Callable[..., ServerProcess],
) -> None:
    """tests/test_restart.py stops a server with one MCP call waiting; here a hundred hooks wait at once."""
    server = start_server(**ENV)
    commands = [f"build {agent}" for agent in range(AGENTS)]
    async with agents_client(server) as agents, server.api() as api:
        waiting = [asyncio.create_task(wait_as_agent(agents, command)) for command in commands]
        await all_pending(api, commands)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        hooked = await asyncio.wait_for(asyncio.gather(*waiting), 15)
        await asyncio.to_thread(server.process.wait, 15)

    assert [response.status_code if response else None for response in hooked] == [200] * AGENTS
    for response in hooked:
        assert response is not None
        output = response.json()["hookSpecificOutput"]
        assert output["permissionDecision"] == "deny"
        assert output["permissionDecisionReason"].startswith("approval-server is shutting down")
    server = start_server(**ENV)
    async with server.api() as api:
        rows = await rows_once_none_pending(api, within=5)
    assert {(rows[command]["status"], rows[command]["decided_by"]) for command in commands} == {
        ("denied", "approval-server")
    }
