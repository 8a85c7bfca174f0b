"""What `approval-server connect <agent>` shares between agents: the hook command every agent runs, and writing an
agent's own configuration file without losing what the user already has in it.

The hook command runs this installation's CLI by absolute path in isolated mode (`agent_setup.own_command`), so
neither `PATH`, `PYTHONPATH` nor the agent's project can put another program in its place, and it is wrapped so that
a crash of the CLI itself (a broken install, a signal) still exits 2, which every agent reads as a block: an agent
that gets exit 1 or no output either runs the call (Gemini CLI) or asks someone else (Codex CLI).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approval_server.entry.agent_setup import HOOK_MARGIN_SECONDS, own_command
from approval_server.entry.client_config import ClientSettings, write_private
from approval_server.errors import ConfigError

Report = Callable[[str], None]
CRASHED = "approval-server hook failed, so the action was denied"


@dataclass(frozen=True)
class Target:
    """The running server an agent is connected to, and the name the owner gives the agent."""

    settings: ClientSettings
    mcp_token: str
    name: str | None = None

    def hook_argv(self, kind: str) -> list[str]:
        """This installation's `hook` command for `kind`, by absolute path, with the server's URL."""
        return own_command("hook", kind, "--url", self.settings.url, *(["--agent", self.name] if self.name else []))

    def hook_command(self, kind: str) -> str:
        """The hook as a shell command line that exits 2 whatever happens to the CLI."""
        return f"{shlex.join(self.hook_argv(kind))} || {{ echo {shlex.quote(CRASHED)} >&2; exit 2; }}"

    @property
    def hook_timeout(self) -> int:
        """Seconds an agent must give the hook: the expiry and a margin, so the server's deny comes first."""
        return int(self.settings.approval_timeout_seconds) + HOOK_MARGIN_SECONDS


@dataclass
class Plan:
    """What `connect` writes (each file's whole new text) and then says."""

    files: dict[Path, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    private: bool = True  # written mode 0600 (the file holds a token or decides where questions go)


def is_ours(command: object) -> bool:
    """Whether a hook command is one `connect` wrote: those are replaced, every other entry is kept."""
    return isinstance(command, str) and "approval_server" in command and " hook" in command


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path` ({} when there is no file); a file that is not one is an error, not overwritten."""
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        problem = f"{path} is not JSON that can be merged ({exc}): fix or move it, then run connect again"
        raise ConfigError(problem) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} does not hold a JSON object: fix or move it, then run connect again")
    return value


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def set_hooks(hooks: dict[str, Any], event: str, entries: list[dict[str, Any]], command_of: Callable[..., Any]) -> None:
    """Under `hooks[event]`, drop the entries whose command `is_ours` and add `entries`; keep the rest in order.
    `command_of(entry)` finds an entry's command (agents nest them differently)."""
    kept = [entry for entry in hooks.get(event) or [] if not is_ours(command_of(entry))]
    hooks[event] = kept + entries


def backup(path: Path) -> Path:
    """Copy `path` aside before it is changed: `<name>.bak-<UTC time>`, same mode."""
    copy = path.with_name(f"{path.name}.bak-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    shutil.copy2(path, copy)
    return copy


def write_plan(plan: Plan, echo: Report) -> None:
    """Write each file, keeping a backup of one that existed with other contents."""
    for path, text in plan.files.items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            echo(f"{path} already says this: left as it is.")
            continue
        saved = backup(path) if path.exists() else None
        if plan.private or saved is None:
            write_private(path, text)
        else:
            mode = path.stat().st_mode & 0o777
            write_private(path, text)
            os.chmod(path, mode)
        echo(f"Wrote {path}" + (f" (the old one is {saved})" if saved else " (mode 0600)") + ".")


def print_plan(plan: Plan, echo: Report) -> None:
    for path, text in plan.files.items():
        echo(f"# {path}{' (mode 0600)' if plan.private else ''}\n{text}")
