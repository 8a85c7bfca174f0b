"""The store: one row per request, leaving `pending` exactly once, safe under concurrent writers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from approval_server.models import Answer, ApprovalRequest, Remember, Status, ToolCall
from approval_server.store import Store
from tests.databases import POSTGRESQL


def make_request(n: int) -> ApprovalRequest:
    call = ToolCall("Bash", {"command": f"echo {n}", "description": "ünïcode ⟨ok⟩"}, f"t{n}", {"new": n}, "test")
    return ApprovalRequest.open(call, f"rendered {n}", datetime.now(UTC), 300)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    await store.aclose()


async def test_a_request_round_trips_exactly(store: Store) -> None:
    request = make_request(1)
    await store.insert(request)
    assert await store.get(request.id) == request
    assert await store.get("missing") is None


@pytest.mark.skipif(POSTGRESQL, reason="WAL is SQLite's journal mode; PostgreSQL has no such setting")
async def test_sqlite_runs_in_wal_mode(store: Store, database_url: str) -> None:
    await store.insert(make_request(1))
    connection = sqlite3.connect(sa.make_url(database_url).database or "")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


async def test_migrate_twice_is_harmless(store: Store) -> None:
    request = make_request(1)
    await store.insert(request)
    store.migrate()
    assert await store.get(request.id) == request


async def test_resolve_applies_once_and_records_every_answer(store: Store) -> None:
    request = make_request(1)
    await store.insert(request)
    now = datetime.now(UTC)
    first = await store.resolve(request.id, Answer(Status.ALLOWED, "alice", "api", "ok", {"command": "ls"}), now)
    second = await store.resolve(request.id, Answer(Status.DENIED, "bob", "api", "no"), now)
    assert first[0] is True
    assert second[0] is False
    row = second[1]
    assert row is not None
    assert (row.status, row.decided_by, row.updated_input) == (Status.ALLOWED, "alice", {"command": "ls"})
    assert [a["outcome"] for a in await store.answers_for(request.id)] == ["applied", "too_late"]
    assert await store.resolve("missing", Answer(Status.DENIED, "x", "api"), now) == (False, None)


# U+0000, which PostgreSQL's text cannot hold, next to the mark that stands for it there, and that mark as typed.
HIDDEN = "a\x00b \u2400 \u24000 \x00\u2400"


async def test_every_text_keeps_a_nul_character_exactly(store: Store) -> None:
    call = ToolCall(
        f"mcp__x{HIDDEN}",
        {"command": f"echo {HIDDEN}", HIDDEN: [HIDDEN]},
        f"toolu_{HIDDEN}",
        {"extra": HIDDEN},
        f"client{HIDDEN}",
        session=f"s{HIDDEN}",
        cwd=f"/repo{HIDDEN}",
    )
    request = ApprovalRequest.open(call, f"shown {HIDDEN}", datetime.now(UTC), 300)
    lookalike = ApprovalRequest.open(
        ToolCall("Bash", {"command": "x"}, "toolu_lookalike"), "a\u24000b", datetime.now(UTC), 300
    )
    await store.insert(request)
    await store.insert(lookalike)
    assert await store.get(request.id) == request
    edit = {"command": f"echo {HIDDEN} --safe"}
    answer = Answer(Status.ALLOWED, f"alice{HIDDEN}", f"api{HIDDEN}", f"ok {HIDDEN}", edit, Remember("session"))
    won, row = await store.resolve(request.id, answer, datetime.now(UTC))
    assert won
    assert row is not None
    assert row == await store.get(request.id)
    assert (row.decided_by, row.decided_via, row.reason, row.updated_input) == (
        f"alice{HIDDEN}",
        f"api{HIDDEN}",
        f"ok {HIDDEN}",
        edit,
    )
    (recorded,) = await store.answers_for(request.id)
    assert (recorded["actor"], recorded["message"]) == (f"alice{HIDDEN}", f"ok {HIDDEN}")
    (grant,) = await store.grants_from(request.id)
    assert grant.session == f"s{HIDDEN}"
    # Texts that differ only by U+0000 against its stand-in never compare alike.
    assert [r.id for r in (await store.search(text="a\x00b", limit=10))[0]] == [request.id]
    assert [r.id for r in (await store.search(text="a\u24000b", limit=10))[0]] == [lookalike.id]
    assert [r.id for r in (await store.search(tool=f"mcp__x{HIDDEN}", limit=10))[0]] == [request.id]
    assert (await store.search(tool=f"mcp__x{HIDDEN.replace(chr(0), chr(0x2400) + '0')}", limit=10))[0] == []
    assert await store.get("a\x00") is None


async def test_concurrent_writers_lose_nothing(database_url: str) -> None:
    """Several store instances (as several processes would) insert and race to resolve the same rows."""
    stores = [Store(database_url) for _ in range(4)]
    stores[0].migrate()
    requests = [make_request(n) for n in range(200)]
    await asyncio.gather(*(stores[n % 4].insert(r) for n, r in enumerate(requests)))
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(
            stores[k].resolve(r.id, Answer(Status.ALLOWED if k % 2 else Status.DENIED, f"actor{k}", "api"), now)
            for r in requests
            for k in range(4)
        )
    )
    assert sum(applied for applied, _ in results) == 200
    rows = await stores[0].recent(limit=1000)
    assert len(rows) == 200
    assert all(row.status in (Status.ALLOWED, Status.DENIED) for row in rows)
    for request in requests[:20]:
        answers = await stores[1].answers_for(request.id)
        assert sorted(a["outcome"] for a in answers) == ["applied", "too_late", "too_late", "too_late"]
    for store in stores:
        await store.aclose()


async def test_concurrent_threads_with_their_own_loops(store: Store, database_url: str) -> None:
    errors: list[BaseException] = []

    async def write(offset: int) -> None:
        writing = Store(database_url)
        try:
            for n in range(offset, offset + 50):
                await writing.insert(make_request(n))
        finally:
            await writing.aclose()

    def writer(offset: int) -> None:
        try:
            asyncio.run(write(offset))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    assert errors == []
    assert len(await store.recent(limit=1000)) == 200


async def test_abandon_pending_closes_only_pending_rows(store: Store) -> None:
    open_request, closed_request = make_request(1), make_request(2)
    await store.insert(open_request)
    await store.insert(closed_request)
    await store.resolve(closed_request.id, Answer(Status.DENIED, "alice", "api"), datetime.now(UTC))
    abandoned = await store.abandon_pending(datetime.now(UTC), "approval-server")
    assert [(row.id, row.status) for row in abandoned] == [(open_request.id, Status.ABANDONED)]
    row = await store.get(open_request.id)
    assert row is not None
    assert row.status is Status.ABANDONED
    closed = await store.get(closed_request.id)
    assert closed is not None
    assert closed.status is Status.DENIED


async def test_failures_reported_at_once_see_each_other(store: Store, database_url: str) -> None:
    """Two messages of one request fail at the same moment: at least one report must find both failed."""
    other = Store(database_url)
    try:
        for n in range(30):
            request = make_request(n)
            await store.insert(request)
            now = datetime.now(UTC)
            await store.record_outbound(f"SMa{n}", request.id, "whatsapp", "+14155550100", "sent", now)
            await store.record_outbound(f"SMb{n}", request.id, "whatsapp", "+14155550101", "sent", now)
            reports = await asyncio.gather(
                store.report_delivery(f"SMa{n}", "failed", "63015", now),
                other.report_delivery(f"SMb{n}", "failed", "63015", now),
            )
            assert any(all(m.status == "failed" for m in messages) for messages in reports), reports
    finally:
        await other.aclose()


async def test_a_failure_reported_before_its_send_is_recorded_is_kept_for_it(store: Store, database_url: str) -> None:
    """The report and the send's record race (on two replicas, say): one of them always learns of the failure."""
    other = Store(database_url)
    try:
        request = make_request(1)
        await store.insert(request)
        now = datetime.now(UTC)
        assert await other.report_delivery("SMearly", "failed", "63015", now, keep_unknown=True) == []
        assert await other.report_delivery("SMnotkept", "failed", "63015", now) == []
        assert await store.outbound("SMearly") is None  # no request's message yet
        recorded = await store.record_outbound("SMearly", request.id, "whatsapp", "+14155550100", "queued", now)
        assert (recorded.status, recorded.error_code) == ("failed", "63015")
        assert await store.outbound("SMearly") == recorded
        plain = await store.record_outbound("SMnotkept", request.id, "whatsapp", "+14155550101", "queued", now)
        assert plain.status == "queued"
        for n in range(30):
            sid = f"SMrace{n}"
            sent, reported = await asyncio.gather(
                store.record_outbound(sid, request.id, "whatsapp", "+14155550100", "queued", now),
                other.report_delivery(sid, "failed", "63015", now, keep_unknown=True),
            )
            learned = sent.status == "failed" or any(m.sid == sid and m.status == "failed" for m in reported)
            assert learned, (sent, reported)
    finally:
        await other.aclose()
