"""The quick start as a newcomer runs it: `approval-server serve --port N` (tokens made by the server in its data
directory, none in its environment), then `approval-server connect claude-code` under the same HOME."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import ServerProcess

PERMISSION_TOOL = "mcp__approval-server__permissions__approve"


@dataclass
class QuickStartServer(ServerProcess):
    """The port comes from `serve --port`, the tokens from the files the server writes on its first start."""

    def __post_init__(self) -> None:
        self.args = ("--port", str(self.port))

    def environment(self) -> dict[str, str]:
        env = super().environment()
        for name in ("SERVER_PORT", "APPROVAL_API_TOKEN", "APPROVAL_MCP_TOKEN"):
            del env[name]
        return env

    @property
    def home(self) -> Path:
        return self.data_dir  # the test server's HOME

    @property
    def mcp_token(self) -> str:
        return (self.data_dir / "mcp-token").read_text().strip()

    @property
    def api_token(self) -> str:
        return (self.data_dir / "api-token").read_text().strip()


@contextlib.contextmanager
def quick_start(data_dir: Path, database_url: str) -> Iterator[QuickStartServer]:
    """The quick start's server: SQLite in its data directory, whatever database the test run has (a PostgreSQL
    server takes its tokens from the settings, never from files it makes)."""
    del database_url
    server = QuickStartServer(data_dir=data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def config_dir(home: Path) -> Path:
    return home / ".config" / "approval-server"


def mcp_path(home: Path) -> Path:
    return config_dir(home) / "claude-code-mcp.json"


def settings_path(home: Path) -> Path:
    return config_dir(home) / "claude-code-settings.json"


def cli(*args: str, home: Path, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI as the user runs it from their shell: only PATH and HOME, plus `env`."""
    cwd.mkdir(parents=True, exist_ok=True)
    environment = {"PATH": os.environ["PATH"], "HOME": str(home)} | env
    return subprocess.run(
        [sys.executable, "-m", "approval_server", *args],
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def printed_command(stdout: str, start: str) -> list[str]:
    """The one printed command line that starts with `start` (such as `claude -p`), split as a shell would."""
    (line,) = (line.strip() for line in stdout.splitlines() if line.strip().startswith(start))
    return shlex.split(line)
