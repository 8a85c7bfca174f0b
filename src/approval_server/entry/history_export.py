"""The history exported as a file: JSON Lines (the exact records) or CSV (for a spreadsheet), written a batch of
rows at a time."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from approval_server.models import ApprovalRequest

EXPORT_BATCH = 500


def jsonl(rows: list[ApprovalRequest], first: bool) -> str:
    return "".join(json.dumps(row.to_json(), ensure_ascii=False) + "\n" for row in rows)


CSV_COLUMNS = [
    "id",
    "status",
    "tool_name",
    "created_at",
    "expires_at",
    "decided_at",
    "decided_by",
    "decided_via",
    "reason",
    "client",
    "tool_use_id",
    "input",
    "updated_input",
    "rendered",
]


def _cell(value: Any) -> str:
    """A CSV cell; JSON for structures. A text starting like a formula gets a leading `'`, so a spreadsheet opening
    the export shows it instead of running it (the JSON Lines export is the exact record)."""
    text = value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(rows: list[ApprovalRequest], first: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if first:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        record = row.to_json()
        writer.writerow([_cell(record[column]) for column in CSV_COLUMNS])
    return out.getvalue()
