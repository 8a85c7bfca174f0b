"""Run the pinned, real `codex` CLI (tests/e2e/node_modules/.bin/codex) offline against the fake Responses API.

The user's own config.toml names the fake as the model provider (all traffic to 127.0.0.1); `connect codex` merges
its hook into it. A run gets an environment built from scratch (a bare PATH with node, the HOME given, the fake's
key), stdin at /dev/null, its own process group, and `RUN_MARKER` (as claude_cli.py does), so that whatever it
leaves running is killed when it ends, times out or is cancelled.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.e2e.agent_cli import CliResult, run_cli

E2E_DIR = Path(__file__).resolve().parent
BIN_DIR = E2E_DIR / "node_modules" / ".bin"
CODEX_BIN = BIN_DIR / "codex"
CODEX_VERSION = json.loads((E2E_DIR / "package.json").read_text())["dependencies"]["@openai/codex"]
API_KEY = "fake-openai-key"
# `codex` is a node script: node must be on the run's PATH; the agent CLI and approval-server are not.
NODE_DIR = str(Path(shutil.which("node") or "/usr/bin/node").parent)
BARE_PATH = ":".join(dict.fromkeys([NODE_DIR, "/usr/bin", "/bin"]))


def provider_config(base_url: str, model: str = "fake-model") -> str:
    """What the user has in config.toml before `connect`: the fake as the model provider, nothing phoned home."""
    if not base_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"refusing a non-loopback model provider: {base_url!r}")
    return (
        f'model = "{model}"\nmodel_provider = "fake"\ncheck_for_update_on_startup = false\n\n'
        f'[analytics]\nenabled = false\n\n[model_providers.fake]\nname = "fake"\nbase_url = "{base_url}"\n'
        f'wire_api = "responses"\nenv_key = "FAKE_API_KEY"\n'
    )


def headless(printed: Sequence[str], work: Path, prompt: str = "run the command") -> list[str]:
    """A `codex exec …` line as `connect` printed it, run by the pinned binary on `work` with the test's prompt."""
    assert printed[:2] == ["codex", "exec"], printed
    flags = [word for word in printed[2:] if word != "your prompt"]
    return [str(CODEX_BIN), "exec", *flags, "--skip-git-repo-check", "--json", "-C", str(work), prompt]


async def run_codex(
    argv: Sequence[str],
    *,
    home: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 90,  # noqa: ASYNC109 - on expiry the process group is killed, not just the await
) -> CliResult:
    """Run codex to its end (or `timeout` s) without blocking the event loop; cancelling kills it."""
    environment = {"PATH": BARE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "FAKE_API_KEY": API_KEY}
    return await run_cli(argv, cwd=cwd, env=environment | dict(env or {}), timeout=timeout)
