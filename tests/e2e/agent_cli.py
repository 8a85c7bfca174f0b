"""Running a pinned agent CLI (tests/e2e/node_modules/.bin) for one test: to its end or a timeout, without
blocking the event loop, and never leaving a process behind, not even a command it started in a session of its
own (each run's processes carry `RUN_MARKER`, see `claude_cli.run_pids`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.claude_cli import RUN_MARKER, run_pids

INSTALL = "npm install --prefix tests/e2e --no-save"


def require(binary: Path) -> None:
    """Fail, never skip, when a pinned CLI is not installed."""
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary.name} CLI not installed: run `{INSTALL}` (scripts/test does)")


@dataclass
class CliResult:
    argv: list[str]
    returncode: int
    timed_out: bool
    duration_s: float
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"{Path(self.argv[0]).name} exited {self.returncode} (timed_out={self.timed_out}, "
            f"{self.duration_s:.1f}s)\n--- stderr ---\n{self.stderr[-3000:]}\n--- stdout ---\n{self.stdout[-3000:]}"
        )


def kill_run(pgid: int, run_id: str) -> None:
    """Kill the run's process group, then any process that carries its marker (a few times: they may be forking)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for _ in range(3):
        pids = run_pids(run_id)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


async def run_cli(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 90,  # noqa: ASYNC109 - on expiry the process group is killed, not just the await
) -> CliResult:
    """Run `argv` with exactly `env` (and the run's marker); cancelling the await kills it too."""
    run_id = uuid.uuid4().hex
    started = time.monotonic()
    timed_out = False
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) | {RUN_MARKER: run_id},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        timed_out = True
        kill_run(process.pid, run_id)
        stdout, stderr = await process.communicate()
    finally:
        kill_run(process.pid, run_id)
    return CliResult(
        list(argv),
        process.returncode if process.returncode is not None else -1,
        timed_out,
        time.monotonic() - started,
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
    )
