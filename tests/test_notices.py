"""What replicas tell each other: a "closed" notice carries the outcome, so the replica whose caller waits answers it
without reading the row; whatever the notice cannot say, the row says."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from approval_server.models import Answer, ApprovalRequest, Remember, Status, ToolCall
from approval_server.notices import (
    MAX_PAYLOAD_BYTES,
    NOTICE_CHANNEL,
    OUTCOME_FIELDS,
    Notice,
    outcome_detail,
    with_outcome,
)
from approval_server.store import Store
from tests.databases import ONLY_POSTGRESQL, POSTGRESQL

NOW = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def opened() -> ApprovalRequest:
    call = ToolCall("Bash", {"command": "make deploy"}, "toolu_1", {}, "claude-code", agent="ci")
    return ApprovalRequest.open(call, "make deploy", NOW, 300)


def outcome(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": "allowed",
        "decided_at": NOW + timedelta(seconds=5),
        "decided_by": "alice",
        "decided_via": "api",
        "reason": "looks right ⟨ok⟩",
        "updated_input": {"command": "make deploy --dry-run"},
        "remembered": "session",
    }
    return fields | changes


def test_the_outcome_fields_are_columns_of_a_request() -> None:
    assert set(OUTCOME_FIELDS) <= {field.name for field in dataclasses.fields(ApprovalRequest)}


def test_a_closed_notice_carries_the_outcome_through_its_payload() -> None:
    request = opened()
    notice = Notice("closed", request.id, "replica-b", outcome_detail(outcome()))
    heard = Notice.from_payload(notice.to_payload())
    assert heard == notice
    assert heard is not None
    closed = with_outcome(request, heard.detail)
    assert closed == dataclasses.replace(
        request,
        status=Status.ALLOWED,
        decided_at=NOW + timedelta(seconds=5),
        decided_by="alice",
        decided_via="api",
        reason="looks right ⟨ok⟩",
        updated_input={"command": "make deploy --dry-run"},
        remembered="session",
    )


def test_a_payload_too_long_for_notify_goes_without_its_detail() -> None:
    big = outcome(updated_input={"content": "é" * 5000})  # 10,000 bytes in UTF-8
    payload = Notice("closed", "abcd2345", "replica-b", outcome_detail(big)).to_payload()
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    heard = Notice.from_payload(payload)
    assert heard == Notice("closed", "abcd2345", "replica-b", None)
    assert with_outcome(opened(), None) is None  # so the receiver reads the row


@pytest.mark.parametrize(
    "detail",
    [
        None,
        "",
        "not json",
        "[]",
        json.dumps({"status": "allowed"}),  # fields missing
        outcome_detail(outcome(status="pending")),
        outcome_detail(outcome(status="maybe")),
        outcome_detail(outcome()).replace("+00:00", ""),  # a time without its zone
        outcome_detail(outcome(decided_by=7)),
        outcome_detail(outcome(updated_input=["rm", "-rf"])),
        outcome_detail(outcome(remembered="forever")),
        json.dumps(json.loads(outcome_detail(outcome())) | {"input": {"command": "curl x | sh"}}),  # an extra field
    ],
)
def test_a_detail_that_does_not_say_exactly_how_it_ended_is_not_used(detail: str | None) -> None:
    assert with_outcome(opened(), detail) is None


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(database_url, replica="replica-b")
    store.migrate()
    yield store
    await store.aclose()


@pytest.mark.skipif(not POSTGRESQL, reason=ONLY_POSTGRESQL)
async def test_the_store_announces_a_creation_and_only_the_winning_answer(store: Store) -> None:
    request = opened()
    async with await psycopg.AsyncConnection.connect(store.libpq_url, autocommit=True) as listening:
        await listening.execute(f"LISTEN {NOTICE_CHANNEL}")
        await store.insert(request)
        at = NOW + timedelta(seconds=5)
        edit = {"command": "make deploy --dry-run"}
        allow = Answer(Status.ALLOWED, "alice", "api", "fine", edit, Remember("session"))
        assert (await store.resolve(request.id, allow, at))[0] is True
        assert (await store.resolve(request.id, Answer(Status.DENIED, "bob", "api"), at))[0] is False
        notices = []
        async for message in listening.notifies(timeout=1):
            notices.append(Notice.from_payload(message.payload))
    assert [(n.kind, n.request_id, n.origin) for n in notices if n] == [
        ("created", request.id, "replica-b"),
        ("closed", request.id, "replica-b"),
    ]
    row = await store.get(request.id)
    assert notices[1] is not None
    assert with_outcome(request, notices[1].detail) == row  # exactly the row, with no read
