"""Run the pinned, real `claude` CLI offline against a fake Anthropic API.

``run_claude`` (blocking) and ``run_claude_async`` (asyncio) start
``tests/e2e/node_modules/.bin/claude -p …`` with an environment built from scratch
(nothing inherited but ``PATH``, ``LANG`` and ``TMPDIR``), stdin at ``/dev/null``, in its
own process group. When the run ends, times out or is cancelled, that group is killed,
and so is every process that inherited the run's ``APPROVAL_E2E_RUN_ID`` (the CLI starts
Bash commands in a session of their own, outside its group).

An async test that serves MCP or answers approvals on its own event loop must use
``run_claude_async`` (or ``asyncio.to_thread(run_claude, …)``): the blocking form would
stall the loop.

Install the CLI once with ``npm install`` in ``tests/e2e`` (``scripts/test`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

__all__ = [
    "CLAUDE_BIN",
    "DEFAULT_PERMISSION_TOOL",
    "ClaudeResult",
    "ClaudeRun",
    "claude_available",
    "mcp_http_config",
    "run_claude",
    "run_claude_async",
    "run_pids",
    "serve_asgi",
    "write_mcp_config",
]

E2E_DIR = Path(__file__).resolve().parent
CLAUDE_BIN = E2E_DIR / "node_modules" / ".bin" / "claude"
CLAUDE_VERSION = json.loads((E2E_DIR / "package.json").read_text())["dependencies"]["@anthropic-ai/claude-code"]
SERVER_NAME = "approval-server"
DEFAULT_PERMISSION_TOOL = f"mcp__{SERVER_NAME}__permissions__approve"
RUN_MARKER = "APPROVAL_E2E_RUN_ID"
"""Env variable given to each CLI run; its children inherit it, so cleanup finds them."""


def claude_available() -> bool:
    """True when the pinned CLI is installed (``npm install`` in tests/e2e)."""
    return CLAUDE_BIN.exists() and os.access(CLAUDE_BIN, os.X_OK)


# -- MCP config -----------------------------------------------------------------------


def mcp_http_config(
    url: str,
    *,
    token: str | None = None,
    timeout_ms: int | None = None,
    name: str = SERVER_NAME,
) -> dict[str, Any]:
    """``{"mcpServers": {name: {"type": "http", "url", "headers"?, "timeout"?}}}``."""
    server: dict[str, Any] = {"type": "http", "url": url}
    if token is not None:
        server["headers"] = {"Authorization": f"Bearer {token}"}
    if timeout_ms is not None:
        server["timeout"] = timeout_ms
    return {"mcpServers": {name: server}}


def write_mcp_config(
    path: Path,
    url: str,
    *,
    token: str | None = None,
    timeout_ms: int | None = None,
    name: str = SERVER_NAME,
) -> Path:
    """Write :func:`mcp_http_config` as JSON to ``path`` and return the path."""
    config = mcp_http_config(url, token=token, timeout_ms=timeout_ms, name=name)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


# -- results --------------------------------------------------------------------------


@dataclass
class ClaudeResult:
    """What one ``claude -p`` run produced."""

    argv: list[str]
    run_dir: Path
    """Holds ``home/`` (the CLI's HOME), ``stdout.jsonl``, ``stderr.txt``, ``debug.log``."""
    run_id: str
    returncode: int
    timed_out: bool
    duration_s: float
    stdout: str
    stderr: str
    debug_log: str
    events: list[dict[str, Any]] = field(default_factory=list)
    """The stream-json lines of stdout that parsed as JSON objects, in order."""

    @property
    def result(self) -> dict[str, Any] | None:
        """The final ``{"type": "result", …}`` event, if the CLI printed one."""
        results = self.events_of("result")
        return results[-1] if results else None

    @property
    def init(self) -> dict[str, Any] | None:
        """The ``system``/``init`` event (tools, ``mcp_servers``, ``permissionMode``)."""
        for event in self.events:
            if event.get("type") == "system" and event.get("subtype") == "init":
                return event
        return None

    @property
    def permission_denials(self) -> list[dict[str, Any]]:
        """``result.permission_denials``: ``[{"tool_name", "tool_use_id", "tool_input"}]``."""
        result = self.result or {}
        denials = result.get("permission_denials") or []
        return [d for d in denials if isinstance(d, dict)]

    def events_of(self, type_: str) -> list[dict[str, Any]]:
        """The events whose ``type`` is ``type_`` (``assistant``, ``user``, …)."""
        return [e for e in self.events if e.get("type") == type_]

    def describe(self, tail: int = 3000) -> str:
        """A summary for assertion messages: exit status plus output tails."""
        return (
            f"claude exited {self.returncode} (timed_out={self.timed_out}, "
            f"{self.duration_s:.1f}s)\n--- stderr ---\n{self.stderr[-tail:]}\n"
            f"--- stdout ---\n{self.stdout[-tail:]}\n--- debug log ---\n{self.debug_log[-tail:]}"
        )


def _kill(kill: Callable[[int, int], None], target: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(target, signal.SIGKILL)


def run_pids(run_id: str) -> list[int]:
    """PIDs of the live processes of one run: those whose environment holds ``RUN_MARKER=run_id``."""
    needle = f"{RUN_MARKER}={run_id}".encode()
    pids: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for name in entries:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(name))
    return pids


def _parse_events(stdout: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


# -- preparing a run -------------------------------------------------------------------


@dataclass
class ClaudeRun:
    """A prepared invocation: argv, env, cwd and where its output goes.

    Built by :meth:`prepare`; ``run_claude``/``run_claude_async`` are the usual entry
    points. ``stdout_path`` can be read while the CLI runs to watch stream-json events.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    run_dir: Path
    stdout_path: Path
    stderr_path: Path
    debug_path: Path
    timeout: float

    @classmethod
    def prepare(
        cls,
        prompt: str,
        *,
        base_url: str,
        cwd: Path,
        mcp_config: Path | None = None,
        permission_tool: str | None = DEFAULT_PERMISSION_TOOL,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        run_dir: Path | None = None,
        timeout: float = 60.0,
        run_id: str | None = None,
        claude_bin: Path = CLAUDE_BIN,
    ) -> ClaudeRun:
        """Build argv and env.

        ``run_dir`` holds HOME and the logs; pass a pytest ``tmp_path`` subfolder. If
        omitted, a new temp dir is made and left in place for inspection.
        """
        if not base_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            raise ValueError(f"refusing a non-loopback ANTHROPIC_BASE_URL: {base_url!r}")
        if run_dir is None:
            run_dir = Path(tempfile.mkdtemp(prefix="claude-e2e-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        home = run_dir / "home"
        home.mkdir(exist_ok=True)
        debug_path = run_dir / "debug.log"
        argv = [
            str(claude_bin),
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--debug-file",
            str(debug_path),
            "--strict-mcp-config",
        ]
        if mcp_config is not None:
            argv += ["--mcp-config", str(mcp_config)]
        if permission_tool is not None:
            argv += ["--permission-prompt-tool", permission_tool]
        argv += list(extra_args)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        env.update(extra_env or {})
        env[RUN_MARKER] = run_id or uuid.uuid4().hex
        return cls(
            argv=argv,
            env=env,
            cwd=cwd,
            run_dir=run_dir,
            stdout_path=run_dir / "stdout.jsonl",
            stderr_path=run_dir / "stderr.txt",
            debug_path=debug_path,
            timeout=timeout,
        )

    @property
    def run_id(self) -> str:
        """This run's ``RUN_MARKER`` value (see :func:`run_pids`)."""
        return self.env[RUN_MARKER]

    def events_so_far(self) -> list[dict[str, Any]]:
        """The stream-json events printed up to now (safe while the CLI runs)."""
        try:
            return _parse_events(self.stdout_path.read_text("utf-8", "replace"))
        except FileNotFoundError:
            return []

    def kill_all(self, pgid: int) -> None:
        """SIGKILL the CLI's process group and every process carrying this run's marker.

        The CLI starts each Bash command in a new session (observed with 2.1.328), so
        killing its process group alone leaves them running; they inherit the CLI's
        environment, hence the ``RUN_MARKER`` variable that finds them here.
        """
        _kill(os.killpg, pgid)
        for _ in range(3):
            pids = run_pids(self.run_id)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    _kill(os.killpg, os.getpgid(pid))
                _kill(os.kill, pid)
            time.sleep(0.05)

    def collect(self, returncode: int, timed_out: bool, duration_s: float) -> ClaudeResult:
        """Read the output files into a :class:`ClaudeResult`."""

        def read(path: Path) -> str:
            try:
                return path.read_text("utf-8", "replace")
            except FileNotFoundError:
                return ""

        stdout = read(self.stdout_path)
        return ClaudeResult(
            argv=self.argv,
            run_dir=self.run_dir,
            run_id=self.run_id,
            returncode=returncode,
            timed_out=timed_out,
            duration_s=duration_s,
            stdout=stdout,
            stderr=read(self.stderr_path),
            debug_log=read(self.debug_path),
            events=_parse_events(stdout),
        )


# -- running ---------------------------------------------------------------------------


def run_claude(prompt: str, **options: Any) -> ClaudeResult:
    """Run ``claude -p prompt`` to completion (or ``timeout`` s) from synchronous code.

    Takes the keyword arguments of :func:`run_claude_async`, which does the work.
    """
    return asyncio.run(run_claude_async(prompt, **options))


async def run_claude_async(
    prompt: str,
    *,
    base_url: str,
    cwd: Path,
    mcp_config: Path | None = None,
    permission_tool: str | None = DEFAULT_PERMISSION_TOOL,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    run_dir: Path | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - on expiry the process group is killed, not just the await
    run_id: str | None = None,
) -> ClaudeResult:
    """Run ``claude -p prompt`` to completion (or ``timeout`` s) without blocking the event loop.

    ``permission_tool=None`` omits ``--permission-prompt-tool``; ``mcp_config=None``
    omits ``--mcp-config`` (``--strict-mcp-config`` is always passed).
    Run it as a task (``asyncio.create_task``) to act on the server meanwhile.
    Cancelling the task kills the CLI and its children.
    """
    run = ClaudeRun.prepare(
        prompt,
        base_url=base_url,
        cwd=cwd,
        mcp_config=mcp_config,
        permission_tool=permission_tool,
        extra_args=extra_args,
        extra_env=extra_env,
        run_dir=run_dir,
        timeout=timeout,
        run_id=run_id,
    )
    started = time.monotonic()
    timed_out = False
    with run.stdout_path.open("wb") as out, run.stderr_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *run.argv,
            cwd=run.cwd,
            env=run.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            returncode = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            run.kill_all(proc.pid)
            returncode = await proc.wait()
        except BaseException:
            run.kill_all(proc.pid)
            await asyncio.shield(proc.wait())
            raise
        run.kill_all(proc.pid)
    return run.collect(returncode, timed_out, time.monotonic() - started)


# -- serving an ASGI app (an MCP server) on loopback inside a test ---------------------


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in the current event loop.

    Yields the base URL (``http://127.0.0.1:<port>``); the app's lifespan runs, which a
    FastMCP ``http_app()`` needs. Pair with :func:`run_claude_async`.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            server.force_exit = True
            await task
        sock.close()
