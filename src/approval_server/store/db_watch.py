"""The SQLite database file, watched: deleted or replaced under a running server, it is lost, and the server says so.

SQLite goes on writing into a file that was deleted (the descriptors it holds still reach it) and opens whatever
file is at its path for its next connection. Without a watch, a server whose data directory was deleted records new
requests and answers into a file nobody will ever read, reports them recorded, and after a restart starts an empty
database. So the store checks, as each transaction begins and once it has committed, that the file at the
database's path is still the one opened at start-up (its device and inode: `os.stat` of the path against the
`os.fstat` of a descriptor held open for the purpose, which also keeps the inode from being reused). A loss is for
good: the server denies every call and refuses every answer until it is restarted, when the data directory's record
(`db_record`) refuses to begin an empty database in its place. `DatabaseWatch` looks every second, so that a loss
is logged and acted on even when no request comes.

A check is one `os.stat`: 1.3 µs on the 2-core machine, so 2.7 µs a transaction against the 130-550 µs of an SQLite
read or insert (the difference was lost in the noise of measuring them with and without the watch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
REMIND_SECONDS = 60.0


class DatabaseFile:
    """The database file opened at start-up. `check` tells whether the file at its path is still that one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._where = os.fspath(path)
        # Held open so that the file's inode cannot be reused by another while the server runs, and never closed
        # while the database's connections are open: closing any descriptor of a file drops every POSIX lock the
        # process holds on it, SQLite's included.
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        opened = os.fstat(self._fd)
        self._identity = (opened.st_dev, opened.st_ino)
        self._lost: str | None = None

    def check(self) -> str | None:
        """Why the database is lost (in words an agent may read: no path), or None while the file is the one opened.
        Once lost, it stays lost."""
        if self._lost is None:
            self._lost = self._why_lost()
        return self._lost

    def _why_lost(self) -> str | None:
        try:
            now = os.stat(self._where)
        except FileNotFoundError:
            return "its database file (or the folder holding it) was deleted while it ran"
        except OSError as exc:
            return f"its database file can no longer be reached ({exc.strerror})"
        if (now.st_dev, now.st_ino) != self._identity:
            return "its database file was replaced by another while it ran"
        return None

    def close(self) -> None:
        """Release the descriptor, once the database's connections are closed."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class DatabaseWatch:
    """Looks at the database file every `CHECK_SECONDS`, and once more as the server stops. On a loss it logs an
    ERROR, calls `on_lost` (the broker denies the requests that wait, the data directory's record notes the loss),
    then logs an ERROR again every `REMIND_SECONDS` for as long as the server runs."""

    def __init__(self, file: DatabaseFile, on_lost: Callable[[str], None]) -> None:
        self._file = file
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self._acted = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._act()  # a loss a request found in the last second is still told

    async def _watch(self) -> None:
        interval = CHECK_SECONDS
        while True:
            await asyncio.sleep(interval)
            if self._acted:
                logger.error(
                    "the database is still lost (%s: %s): every call is denied until a restart",
                    self._file.path,
                    self._file.check(),
                )
            elif self._act():
                interval = REMIND_SECONDS

    def _act(self) -> bool:
        """Whether the database is lost; the first time it is found so, tell it and act on it."""
        why = self._file.check()
        if why is None or self._acted:
            return why is not None
        self._acted = True
        logger.error(
            "THE DATABASE IS LOST: %s (%s). Nothing can be recorded any more: every new call is denied, the requests "
            "that waited are denied, answers are refused and /healthz answers 503. Stop the server, restore the "
            "database from a backup, and start it again (docs/reliability.md).",
            why,
            self._file.path,
        )
        try:
            self._on_lost(why)
        except Exception:
            logger.exception("could not act on the lost database")
        return True
