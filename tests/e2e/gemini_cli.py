"""Run the pinned, real `gemini` CLI (Gemini CLI 0.61.0) headless against `fake_gemini`, as `connect gemini` says.

The environment is built from scratch: `PATH`, `LANG`, `TMPDIR`, the user's `HOME` (where `serve` and `connect`
wrote their files), the fake model API (`GOOGLE_GEMINI_BASE_URL`, `GEMINI_API_KEY`) and
`GEMINI_CLI_TRUST_WORKSPACE=true` (an untrusted folder stops a headless run with exit 55). Gemini reaches the fake
only with `security.auth.selectedType` = `gemini-api-key` in its settings (`offline_settings`); otherwise the base
URL selects a "gateway" sign-in it refuses. When the run ends, its process group and every process carrying its
`RUN_MARKER` are killed, as `claude_cli` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.e2e.agent_cli import CliResult, run_cli
from tests.e2e.claude_cli import E2E_DIR

GEMINI_BIN = E2E_DIR / "node_modules" / ".bin" / "gemini"
GEMINI_VERSION = json.loads((E2E_DIR / "package.json").read_text())["dependencies"]["@google/gemini-cli"]
# What the user's ~/.gemini/settings.json holds before `connect`: the API key sign-in, nothing sent anywhere else.
OFFLINE_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


def offline_settings(home: Path) -> Path:
    """Write the user's Gemini settings for an offline run; returns the file."""
    path = home / ".gemini" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(OFFLINE_SETTINGS, indent=2))
    return path


async def run_gemini(
    argv: Sequence[str],
    *,
    base_url: str,
    home: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 90,  # noqa: ASYNC109 - on expiry the process group is killed, not just the await
) -> CliResult:
    """Run `argv` (a `gemini …` line, such as the one `connect` prints; `gemini` is the pinned binary) with
    `-o stream-json`, without blocking the event loop."""
    if not base_url.startswith("http://127."):
        raise ValueError(f"refusing a non-loopback GOOGLE_GEMINI_BASE_URL: {base_url!r}")
    assert argv[0] == "gemini", argv
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "HOME": str(home),
        "GEMINI_API_KEY": "fake-key",
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        **(env or {}),
    }
    return await run_cli([str(GEMINI_BIN), *argv[1:], "-o", "stream-json"], cwd=cwd, env=environment, timeout=timeout)
