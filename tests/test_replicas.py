"""Three replicas on one PostgreSQL database, as processes: any of them takes the call, the decision or the webhook;
a decision wakes the caller on another; nothing is decided twice; a dead replica's requests end `abandoned`."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.databases import ONLY_POSTGRESQL, POSTGRESQL
from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess, wait_for_pending, wait_for_status
from tests.whatsapp_support import ALICE, BOB, PUBLIC_URL, sent_to, text_of, whatsapp_env

pytestmark = pytest.mark.skipif(not POSTGRESQL, reason=ONLY_POSTGRESQL)

TOOL = "permissions__approve"
LEASE = "2"


def bash(command: str) -> dict[str, Any]:
    return {"tool_name": "Bash", "input": {"command": command}}


def answer_of(result: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(result.content[0].text)
    return answer


@pytest.fixture
def replicas(start_server: Callable[..., ServerProcess], fake: FakeTwilio) -> list[ServerProcess]:
    """A, B and C with the same settings; Twilio's webhooks reach C."""
    env = whatsapp_env(fake, APPROVAL_LEASE_SECONDS=LEASE, APPROVAL_WHATSAPP_PER_MINUTE="1000")
    started = [start_server(**env) for _ in range(3)]
    fake.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{started[2].url}/twilio-webhook")
    return started


def replica_id(server: ServerProcess) -> str:
    found = re.search(r"\(replica ([0-9a-z]+), lease", server.log())
    assert found, server.log()
    return found.group(1)


async def test_a_decision_on_b_wakes_the_call_waiting_on_a_and_c_hears_of_it(replicas: list[ServerProcess]) -> None:
    a, b, c = replicas
    async with a.mcp() as mcp, b.api() as api_b, c.api() as api_c, api_c.stream("GET", "/api/events") as events:
        heard: list[tuple[str, str]] = []

        async def listen() -> None:
            """C's event stream until it tells of the decision."""
            kind = ""
            async for line in events.aiter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    heard.append((kind, json.loads(line.removeprefix("data: "))["status"]))
                    if heard[-1] == ("request.closed", "allowed"):
                        return

        listening = asyncio.create_task(listen())
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("make deploy")))
        pending = await wait_for_pending(api_b)
        started = time.monotonic()
        decided = await api_b.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "actor": "bo"})
        answer = answer_of(await asyncio.wait_for(call, 10))
        woke_after = time.monotonic() - started
        await asyncio.wait_for(listening, 5)
    assert decided.status_code == 200
    assert answer == {"behavior": "allow", "updatedInput": {"command": "make deploy"}}
    assert woke_after < 2  # a notice, not the expiry (or any polling)
    assert heard[0] == ("request.created", "pending")  # C's subscribers heard of A's request too


async def test_an_edit_too_long_for_a_notice_reaches_the_call_waiting_on_a_whole(
    replicas: list[ServerProcess],
) -> None:
    """A "closed" notice carries the outcome only when it fits in NOTIFY's 8000 bytes; past that A reads the row."""
    a, b, _ = replicas
    edited = {"command": "printf '%s' " + "é" * 6000 + " > notes.txt"}  # over 12,000 bytes in UTF-8
    async with a.mcp() as mcp, b.api() as api_b:
        for edit in (edited, {"command": "make deploy --dry-run"}):
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("make deploy")))
            pending = await wait_for_pending(api_b)
            body = {"decision": "allow", "actor": "bo", "updated_input": edit}
            assert (await api_b.post(f"/api/requests/{pending['id']}/decision", json=body)).status_code == 200
            assert answer_of(await asyncio.wait_for(call, 10)) == {"behavior": "allow", "updatedInput": edit}


async def test_a_whatsapp_answer_on_c_decides_the_call_waiting_on_a(
    replicas: list[ServerProcess], fake: FakeTwilio
) -> None:
    a, _, c = replicas
    async with a.mcp() as mcp, c.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("terraform apply")))
        pending = await wait_for_pending(api)
        (message,) = await sent_to(fake, ALICE)
        assert pending["id"] in text_of(message)
        assert (await fake.send_inbound(from_=ALICE, body=f"DENY {pending['id']} not today")).status_code == 200
        answer = answer_of(await asyncio.wait_for(call, 10))
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert answer["behavior"] == "deny"
    assert "not today" in answer["message"]
    assert (row["status"], row["decided_by"], row["decided_via"]) == ("denied", ALICE, "whatsapp")


async def test_failures_reported_to_c_before_a_knows_its_messages_deny_the_call_on_a_at_once(
    replicas: list[ServerProcess], fake: FakeTwilio
) -> None:
    """Twilio's failure reports overtake its answers to A's sends and reach C, which cannot know whose they are yet."""
    a, _, c = replicas
    fake.fail_delivery(to=ALICE, error_code=63015)
    fake.fail_delivery(to=BOB, error_code=63015)
    fake.callbacks_before_response = True
    async with a.mcp() as mcp, c.api() as api:
        started = time.monotonic()
        answer = answer_of(await asyncio.wait_for(mcp.call_tool_mcp(TOOL, bash("make deploy")), 10))
        denied_after = time.monotonic() - started
        (row,) = (await api.get("/api/requests")).json()["requests"]
    assert answer["behavior"] == "deny"
    assert f"{ALICE}: message failed (Twilio error 63015)" in answer["message"]
    assert f"{BOB}: message failed (Twilio error 63015)" in answer["message"]
    assert denied_after < 5  # at once, not at the expiry
    assert (row["status"], row["decided_by"]) == ("denied", "approval-server")


async def test_two_decisions_at_once_on_two_replicas_have_one_winner(replicas: list[ServerProcess]) -> None:
    a, b, c = replicas
    async with a.mcp() as mcp, b.api() as api_b, c.api() as api_c:
        for round_ in range(5):
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash(f"deploy {round_}")))
            pending = await wait_for_pending(api_b, {"input": {"command": f"deploy {round_}"}})
            path = f"/api/requests/{pending['id']}/decision"
            allow, deny = await asyncio.gather(
                api_b.post(path, json={"decision": "allow", "actor": "bo"}),
                api_c.post(path, json={"decision": "deny", "actor": "cy", "message": "no"}),
            )
            answer = answer_of(await asyncio.wait_for(call, 10))
            row = (await api_c.get(f"/api/requests/{pending['id']}")).json()
            assert sorted([allow.status_code, deny.status_code]) == [200, 409]
            winner = "allow" if allow.status_code == 200 else "deny"
            assert answer["behavior"] == winner
            assert row["status"] == ("allowed" if winner == "allow" else "denied")
            assert sorted(a["outcome"] for a in row["answers"]) == ["applied", "too_late"]


async def test_a_killed_replica_leaves_its_requests_abandoned_by_another(replicas: list[ServerProcess]) -> None:
    a, b, _ = replicas
    async with b.api() as api:
        pending: dict[str, Any] = {}

        async def wait_while_a_dies() -> None:
            async with a.mcp() as mcp:
                call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("rm -rf /srv/cache")))
                pending.update(await wait_for_pending(api))
                a.kill()
                await asyncio.wait_for(call, 10)

        # The transport's own error, from the call or from closing the session: its server died.
        with pytest.raises(Exception):  # noqa: B017, PT011
            await wait_while_a_dies()
        row = await wait_for_status(api, pending["id"], "abandoned", within=float(LEASE) * 4)
        # Too late now: an answer changes nothing.
        late = await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
    assert late.status_code == 409
    assert row["decided_via"] == "takeover"
    assert row["decided_by"] == "approval-server"
    assert "stopped renewing its lease" in row["reason"]


async def test_a_dropped_listen_connection_is_restored_and_nothing_is_missed(
    replicas: list[ServerProcess], database_url: str
) -> None:
    a, b, _ = replicas
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    drop = sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name").bindparams(
        name=f"approval-server listen {replica_id(a)}"
    )
    try:
        async with a.mcp() as mcp, b.api() as api:
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("git push --force")))
            pending = await wait_for_pending(api)
            with engine.begin() as connection:  # A stops hearing the others: its LISTEN connection is gone
                assert connection.execute(drop).scalar_one() is True
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
            answer = answer_of(await asyncio.wait_for(call, 10))
            # Later decisions reach A on its new connection.
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("git push")))
            pending = await wait_for_pending(api)
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
            later = answer_of(await asyncio.wait_for(call, 10))
    finally:
        engine.dispose()
    assert answer["behavior"] == "deny"
    assert later["behavior"] == "allow"
    assert "lost the connection that hears the other replicas" in a.log()


def test_postgresql_needs_every_token_in_the_settings(database_url: str, tmp_path: Path) -> None:
    environment = ServerProcess(data_dir=tmp_path / "alone", database_url=database_url).environment()
    del environment["APPROVAL_DASHBOARD_TOKEN"]
    result = subprocess.run(
        [sys.executable, "-m", "approval_server", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "every replica must share the same secrets: set APPROVAL_DASHBOARD_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
