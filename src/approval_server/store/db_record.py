"""The data directory's record of its database, so that a server never begins an empty audit trail where one existed.

SQLite creates an empty database wherever its path points. A database file deleted or lost with a backup restored
without it, or DATABASE_URL (or its absence) pointing at a new path, would each start a new audit trail without a
word, the old one gone. So the server writes `database.json` in its data directory once its database is ready, and
every later start whose SQLite database holds nothing while that record exists is refused (exit 2), with the way out:
restore the database, point DATABASE_URL at it, or begin an empty one on purpose with `approval-server db new`.
A brand-new data directory has no record: it starts as ever. A PostgreSQL database is never created by a server
(`Store.prepare` refuses one with no schema), so only the record is kept for it.

A server that finds its database lost while it runs (`db_watch`) writes the record again, noting the loss, in case
the whole data directory went: the restart then says what happened instead of starting afresh.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from approval_server.errors import ConfigError
from approval_server.store import Store

logger = logging.getLogger(__name__)

RECORD_FILE = "database.json"
NEW_DATABASE_COMMAND = "approval-server db new"


@dataclass(frozen=True)
class Recorded:
    database: str  # its URL, without a password
    since: str  # when this data directory's server first used it
    lost: str | None = None  # what the server that last used it found, and when


class DatabaseRecord:
    """`database.json` in a data directory: which database the server that uses it keeps its audit trail in."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / RECORD_FILE
        self._since: str | None = None  # as last written: the record may go with the data directory

    def read(self) -> Recorded | None:
        """The record, or None when there is none. One that cannot be read still says that a database existed."""
        try:
            fields = json.loads(self.path.read_text(encoding="utf-8"))
            return Recorded(str(fields["database"]), str(fields["since"]), fields.get("lost"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            return Recorded(f"(unknown: {self.path} cannot be read: {exc})", "?")

    def check(self, store: Store) -> Recorded | None:
        """Raise `ConfigError` when a database existed here and the one `store` points at holds nothing (blocking).
        Returns the record as it stands."""
        recorded = self.read()
        if recorded is None or not store.migrates_itself or store.holds_database():
            return recorded
        configured = store.describe()
        lost = f" (the server that last used it found that {recorded.lost})" if recorded.lost else ""
        if recorded.database == configured:
            said = (
                f"The database {configured} is gone: this data directory's record ({self.path}) says the server has "
                f"kept its audit trail there since {recorded.since}{lost}, but it holds nothing now."
            )
            restore = f"Restore it from a backup to {store.path}"
        else:
            said = (
                f"The database configured, {configured}, holds nothing, but this data directory's record "
                f"({self.path}) says the server has kept its audit trail in {recorded.database} since "
                f"{recorded.since}{lost}."
            )
            restore = "If it moved, point DATABASE_URL at it; if it is lost, restore it from a backup"
        raise ConfigError(
            f"{said} Starting would begin an empty audit trail in its place, so the server does not start. "
            f"{restore}; or, to begin an empty database on purpose (the old history stays out of it), run  "
            f"{NEW_DATABASE_COMMAND}  and start the server again."
        )

    def write(self, store: Store, lost: str | None = None) -> None:
        """Record that this data directory's server uses `store`'s database (once it is ready), keeping the date it
        first did; `lost`: what the server found instead. A record that cannot be written is logged, not fatal."""
        recorded = self.read()
        if recorded is not None and recorded.database == store.describe():
            self._since = recorded.since
        self._since = self._since or datetime.now(UTC).isoformat(timespec="seconds")
        record = Recorded(store.describe(), self._since, lost)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.path.with_name(f".{RECORD_FILE}.{os.getpid()}")
            temporary.write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            logger.warning("could not write %s (%s): a lost database will not be noticed at start-up", self.path, exc)

    def note_lost(self, store: Store, why: str) -> None:
        """The server found its database lost: write the record again (the data directory may have gone with it)."""
        self.write(store, f"{why}, at {datetime.now(UTC).isoformat(timespec='seconds')}")
