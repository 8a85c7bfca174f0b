"""What one replica tells the others about a request, through PostgreSQL's `NOTIFY` (see `replicas`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

NOTICE_CHANNEL = "approval_server"
KINDS = ("created", "closed", "unreachable")


@dataclass(frozen=True)
class Notice:
    kind: str  # one of KINDS
    request_id: str
    origin: str  # the replica that sent it
    detail: str | None = None

    def to_payload(self) -> str:
        return json.dumps({"kind": self.kind, "id": self.request_id, "origin": self.origin, "detail": self.detail})

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
