"""How requests and their answers are recorded: the statements of the store's busiest path, built once, and the
rows of `requests` and `answers` as the project's objects, both ways."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from approval_server.models import Answer, ApprovalRequest, Remember, Status
from approval_server.notices import NOTICE_CHANNEL, OUTCOME_FIELDS
from approval_server.store.tables import answers, requests

# What became of an answer (the `outcome` of its row in `answers`).
APPLIED = "applied"
TOO_LATE = "too_late"
NOT_DELIVERED = "not_delivered"  # its agent was no longer waiting: it changed nothing (see `handover`)
HANDED_OVER = "handed_over"  # given on one replica for an agent waiting on another, which has not taken it yet


def row_to_request(row: sa.Row[Any]) -> ApprovalRequest:
    return ApprovalRequest(
        id=row.id,
        tool_name=row.tool_name,
        input=row.input,
        tool_use_id=row.tool_use_id,
        extra=row.extra,
        client=row.client,
        agent=row.agent,
        session=row.session,
        cwd=row.cwd,
        agent_kind=row.agent_kind,
        agent_version=row.agent_version,
        editable=row.editable,
        rendered=row.rendered,
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=Status(row.status),
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decided_via=row.decided_via,
        reason=row.reason,
        updated_input=row.updated_input,
        remembered=row.remembered,
    )


def answer_row(request_id: str, answer: Answer, at: datetime, outcome: str) -> dict[str, Any]:
    """An answer as its row in `answers`."""
    return {
        "request_id": request_id,
        "at": at,
        "status": answer.status.value,
        "actor": answer.actor,
        "channel": answer.channel,
        "message": answer.message,
        "updated_input": answer.updated_input,
        "outcome": outcome,
        "remember": answer.remember.text if answer.remember else None,
    }


def row_to_answer(row: sa.Row[Any]) -> Answer:
    """An answer as its row in `answers` recorded it."""
    remember = Remember.parse(row.remember) if row.remember else None
    return Answer(Status(row.status), row.actor, row.channel, row.message, row.updated_input, remember)


# The statements of the busiest path (a request recorded, then decided), built once: then SQLAlchemy neither builds
# them nor works out their cache keys again on every call, which costs more than the database's own work.
GET = requests.select().where(requests.c.id == sa.bindparam("request_id"))
INSERT = requests.insert()
INSERT_AND_ANNOUNCE = INSERT.returning(sa.func.pg_notify(NOTICE_CHANNEL, sa.bindparam("notice", type_=sa.Text)))
# Closes a pending request; the winner gets the row back, and on PostgreSQL the announcement goes out with it.
DECIDE = (
    requests.update()
    .where(requests.c.id == sa.bindparam("request_id"), requests.c.status == Status.PENDING.value)
    .values({name: sa.bindparam(f"new_{name}", type_=requests.c[name].type) for name in OUTCOME_FIELDS})
    .returning(*requests.c)
)
DECIDE_AND_ANNOUNCE = DECIDE.returning(sa.func.pg_notify(NOTICE_CHANNEL, sa.bindparam("notice", type_=sa.Text)))
RECORD_ANSWER = answers.insert()
# An offered answer (see `handover`), locked by the replica that applies it, so that its withdrawal waits, then finds
# it taken; or found withdrawn, and left alone.
CLAIM_OFFER = (
    sa.select(answers.c.id)
    .where(answers.c.id == sa.bindparam("answer_id"), answers.c.outcome == HANDED_OVER)
    .with_for_update()
)

# Fair share (see `fair_share`): a pending request is let wait for a human, taking a place in its share, only while
# its share and its token are under their limits. One statement checks and takes, so no two racing requests both
# take the last place: SQLite runs it under its write lock, PostgreSQL after the lock below.
_waiting = requests.alias("waiting")
_WAITING = (_waiting.c.status == Status.PENDING.value, _waiting.c.share.is_not(None))
_IN_SHARE = _waiting.c.share == sa.bindparam("the_share")
_FOR_TOKEN = _waiting.c.credential == sa.bindparam("the_credential")
ADMIT = (
    requests.update()
    .where(
        requests.c.id == sa.bindparam("request_id"),
        requests.c.status == Status.PENDING.value,
        sa.select(sa.func.count()).where(*_WAITING, _IN_SHARE).scalar_subquery() < sa.bindparam("per_agent"),
        sa.select(sa.func.count()).where(*_WAITING, _FOR_TOKEN).scalar_subquery() < sa.bindparam("per_token"),
    )
    .values(share=sa.bindparam("the_share"), credential=sa.bindparam("the_credential"))
)
WAITING_NOW = sa.select(
    sa.func.count().filter(_IN_SHARE).label("in_share"), sa.func.count().filter(_FOR_TOKEN).label("for_token")
).where(*_WAITING)
# One lock for every admission, on every replica: held to the end of the transaction that takes a place.
ADMISSION_LOCK = sa.select(sa.func.pg_advisory_xact_lock(0x617070726F76616C))
