"""Run the pinned, real `opencode serve` offline against the fake Chat Completions API, and the bridge beside it.

`OpenCodeServer` starts `tests/e2e/node_modules/.bin/opencode serve` with an environment built from scratch: its own
HOME and XDG folders (the user's configuration in `config_dir`), no model list fetched, no update, no sharing, the
npm registry at a dead local port, and `OPENCODE_DISABLE_PROJECT_CONFIG=1` as `connect opencode` says to start it.
The process group and every process that inherited the run's marker are killed at `stop`.

`start_bridge` runs `approval-server bridge opencode` in a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.claude_cli import RUN_MARKER, run_pids
from tests.support import free_port

E2E_DIR = Path(__file__).resolve().parent
OPENCODE_BIN = E2E_DIR / "node_modules" / ".bin" / "opencode"
OPENCODE_VERSION = json.loads((E2E_DIR / "package.json").read_text())["dependencies"]["opencode-ai"]
BRIDGE = [sys.executable, "-I", "-m", "approval_server", "bridge", "opencode"]


def provider_config(fake_url: str) -> dict[str, Any]:
    """The user configuration keys that point OpenCode at the fake model (`@ai-sdk/openai-compatible` is bundled)."""
    options = {"baseURL": f"{fake_url}/v1", "apiKey": "fake-key"}
    model = {"name": "Fake model", "tool_call": True}
    provider = {"npm": "@ai-sdk/openai-compatible", "name": "Fake", "options": options, "models": {"fake-model": model}}
    return {
        "provider": {"fake": provider},
        "model": "fake/fake-model",
        "small_model": "fake/fake-model",
        "autoupdate": False,
        "share": "disabled",
    }


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class OpenCodeServer:
    """`opencode serve` in `cwd`, with HOME in `home`."""

    home: Path
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "opencode"

    @property
    def log_path(self) -> Path:
        return self.home / f"opencode-serve-{self.port}.log"

    def write_config(self, config: dict[str, Any]) -> Path:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        path = self.config_dir / "opencode.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def environment(self) -> dict[str, str]:
        xdg = {name: self.home / folder for name, folder in (("CONFIG", ".config"), ("DATA", ".local/share"))}
        xdg |= {"CACHE": self.home / ".cache", "STATE": self.home / ".local/state"}
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ["PATH"],
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            **{f"XDG_{name}_HOME": str(path) for name, path in xdg.items()},
            "OPENCODE_DISABLE_MODELS_FETCH": "true",
            "OPENCODE_DISABLE_AUTOUPDATE": "true",
            "OPENCODE_DISABLE_SHARE": "true",
            "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
            "NPM_CONFIG_REGISTRY": "http://127.0.0.1:9/",  # nothing is installed: no plugin is configured
            RUN_MARKER: self.run_id,
            **self.env,
        }

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(OPENCODE_BIN), "serve", "--port", str(self.port), "--hostname", "127.0.0.1", "--print-logs"],
                cwd=self.cwd,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"opencode serve exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):  # it listens before it answers: a short timeout each try
                if httpx.get(f"{self.url}/global/health", timeout=1, auth=self._auth()).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"opencode serve did not answer within {timeout} s:\n{self.log()}")

    def _auth(self) -> tuple[str, str] | None:
        password = self.env.get("OPENCODE_SERVER_PASSWORD")
        return ("opencode", password) if password else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            _kill(self.process.pid)
            self.process.wait()
        for pid in run_pids(self.run_id):
            with contextlib.suppress(OSError):
                _kill(os.getpgid(pid))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, auth=self._auth(), timeout=30)

    async def prompt(self, text: str) -> str:
        """A new session in `cwd`, prompted with `text` (the fake's script decides what follows); its id."""
        async with self.client() as http:
            session = (await http.post("/session", json={})).raise_for_status().json()["id"]
            body = {"parts": [{"type": "text", "text": text}]}
            (await http.post(f"/session/{session}/prompt_async", json=body)).raise_for_status()
        return str(session)

    async def pending(self) -> list[dict[str, Any]]:
        async with self.client() as http:
            asks: list[dict[str, Any]] = (await http.get("/permission")).raise_for_status().json()
        return asks


@contextlib.asynccontextmanager
async def start_bridge(
    opencode: OpenCodeServer, server_url: str, home: Path, *args: str, **env: str
) -> AsyncIterator[Path]:
    """`approval-server bridge opencode` for `opencode`, asking the server at `server_url` with the client settings
    of the user whose HOME is `home` (and `env`); yields its log's path. Killed at the end."""
    log_path = home / f"bridge-{opencode.port}-{time.monotonic_ns()}.log"
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    environment |= {key: value for key, value in opencode.env.items() if key.startswith("OPENCODE_SERVER_")}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *BRIDGE,
            "--opencode-url",
            opencode.url,
            "--url",
            server_url,
            *args,
            env=environment | env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log_path
    finally:
        _kill(process.pid)
        await process.wait()


async def wait_until(check: Any, within: float, what: str) -> Any:
    """The first true value `check()` (a coroutine function) returns, polled until `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")
