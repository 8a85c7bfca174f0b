"""For the PostgreSQL fault tests: a cluster of a test's own, to stop and start again under a running server (the one
scripts/postgres.sh starts serves every other test and must stay up), and agents that wait for a human.

The cluster is made the way scripts/postgres.sh makes its own (Debian's binaries, run as the postgres user when root,
loopback only on a free port, a random password), in a temporary directory deleted at the end."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from approval_server.store import Store
from tests.support import free_port

USER = "approval"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL under /usr/lib/postgresql: scripts/test installs it (apt-get)")
    return Path(found[-1])


class Cluster:
    """initdb'd on creation; `start` and `stop` (immediate: a crash, as far as its clients can tell) any number of
    times on the same data directory and port; `remove` at the end."""

    def __init__(self) -> None:
        self._bin = _bin_dir()
        self._as: list[str] = []
        self.dir = Path(tempfile.mkdtemp(prefix="approval-pg-"))
        self.port = free_port()
        self._password = secrets.token_hex(16)
        (self.dir / "password").write_text(self._password + "\n")
        if os.getuid() == 0:  # PostgreSQL refuses to run as root
            self._as = ["runuser", "-u", "postgres", "--"]
            owner = pwd.getpwnam("postgres")
            for path in (self.dir, self.dir / "password"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb", "-D", str(self.dir / "data"), "-U", USER, f"--pwfile={self.dir / 'password'}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as, str(self._bin / program), *args], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            log = self.dir / "server.log"
            raise RuntimeError(
                f"{program} failed: {result.stdout}{result.stderr}{log.read_text() if log.exists() else ''}"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}:{self._password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync off (only an OS crash loses anything then), but commits are synchronous: an immediate stop must not
        # lose a commit the server was told of.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories= -c max_connections=200 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.dir / "data"), "-w", "-l", str(self.dir / "server.log"), "-o", options
        )

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.dir / "data"), "-m", "immediate", "-w")

    def running(self) -> bool:
        status = subprocess.run(
            [*self._as, str(self._bin / "pg_ctl"), "status", "-D", str(self.dir / "data")],
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def new_database(self) -> str:
        """The URL of a new database on this cluster, migrated as `approval-server db upgrade` does."""
        name = f"test_{secrets.token_hex(8)}"
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f"CREATE DATABASE {name}"))
        finally:
            admin.dispose()
        store = Store(self.url(name))
        try:
            store.migrate()
        finally:
            store.close()
        return self.url(name)

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def hook_input(command: str, session: str) -> dict[str, Any]:
    """A PreToolUse hook's input for `Bash(command)`: each agent its own session, so the fair share lets many wait."""
    return {
        "session_id": session,
        "cwd": "/srv/app",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command},
    }


async def all_waiting(database_url: str, count: int, within: float = 10) -> None:
    """Returns once `count` requests wait for a human: recorded, and let wait by the fair share (which records whose
    share each takes), so that nothing more is written about them until they close."""
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    query = sa.text("SELECT count(*) FROM requests WHERE status = 'pending' AND share IS NOT NULL")
    deadline = time.monotonic() + within
    try:
        while True:
            with engine.connect() as connection:
                waiting = connection.execute(query).scalar_one()
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"only {waiting} of {count} agents wait for a human"
            await asyncio.sleep(0.05)
    finally:
        engine.dispose()
