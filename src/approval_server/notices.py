"""What one replica tells the others about a request, through PostgreSQL's `NOTIFY` (see `replicas`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from approval_server.models import ApprovalRequest, Status

NOTICE_CHANNEL = "approval_server"
KINDS = ("created", "closed", "unreachable", "handover", "handed")
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (its default build).
MAX_PAYLOAD_BYTES = 7999
# What a "closed" notice carries of the row, so that the replica whose caller waits can answer it without reading the
# row back; everything else about the request it holds already.
OUTCOME_FIELDS = ("status", "decided_at", "decided_by", "decided_via", "reason", "updated_input", "remembered")


@dataclass(frozen=True)
class Notice:
    kind: str  # one of KINDS
    request_id: str
    origin: str  # the replica that sent it
    detail: str | None = None

    def to_payload(self) -> str:
        """The payload to send: without its detail when the whole would be too long for `NOTIFY`, so a "closed"
        notice for a large edit goes out all the same and its receiver reads the row instead."""
        payload = json.dumps({"kind": self.kind, "id": self.request_id, "origin": self.origin, "detail": self.detail})
        if self.detail is not None and len(payload.encode()) > MAX_PAYLOAD_BYTES:
            return dataclasses.replace(self, detail=None).to_payload()
        return payload

    @classmethod
    def from_payload(cls, payload: str) -> Notice | None:
        """The notice in a payload, or None for anything this version does not understand."""
        try:
            data: Any = json.loads(payload)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            return None
        request_id, origin, detail = data.get("id"), data.get("origin"), data.get("detail")
        if not isinstance(request_id, str) or not isinstance(origin, str):
            return None
        return cls(data["kind"], request_id, origin, detail if isinstance(detail, str) else None)


def outcome_detail(outcome: Mapping[str, Any]) -> str:
    """The detail of a "closed" notice: the request's columns of `OUTCOME_FIELDS` as they were written."""
    fields = {name: outcome[name] for name in OUTCOME_FIELDS}
    fields["decided_at"] = outcome["decided_at"].isoformat()
    return json.dumps(fields, ensure_ascii=False)


def with_outcome(request: ApprovalRequest, detail: str | None) -> ApprovalRequest | None:
    """`request` as a "closed" notice's detail says it ended, or None when the detail does not say (an older
    replica, a payload that was too long, takeover): then the row must be read."""
    try:
        fields: Any = json.loads(detail) if detail else None
        if not isinstance(fields, dict) or set(fields) != set(OUTCOME_FIELDS):
            return None
        status = Status(fields["status"])
        decided_at = datetime.fromisoformat(fields["decided_at"]) if fields["decided_at"] else None
    except (json.JSONDecodeError, ValueError, TypeError):
        return None
    texts = (fields["decided_by"], fields["decided_via"], fields["reason"])
    if status is Status.PENDING or decided_at is None or decided_at.tzinfo is None:
        return None
    if not all(text is None or isinstance(text, str) for text in texts):
        return None
    if not (fields["updated_input"] is None or isinstance(fields["updated_input"], dict)):
        return None
    if fields["remembered"] not in (None, "session", "timed"):
        return None
    return dataclasses.replace(request, **fields | {"status": status, "decided_at": decided_at})
