"""`approval-server connect gemini` and `doctor`'s checks of it: a `BeforeTool` hook for every tool in the user's
`~/.gemini/settings.json`, and what a repository can still do to it.

Observed with Gemini CLI 0.61.0 (docs/agents/gemini.md, tests/e2e/test_gemini.py):

- The hook's `timeout` is in milliseconds; above 2^31−1 Node fires the timer at once, the hook is killed before it
  answers, and the call runs. `connect` gives it the expiry and a margin, so the server's deny comes first.
- Gemini merges the system defaults, the user's settings, a trusted folder's `.gemini/settings.json` and the system
  settings, in that order, and applies a folder's file even where it breaks the schema. The folder's file can set
  `hooksConfig.enabled: false` (every hook off), `"hooks": null` (the user's hooks gone) or name a hook in
  `hooksConfig.disabled` (a list the files add up): Gemini then runs every call unasked. The hook's name is
  therefore a secret derived from the MCP token, which the repository cannot know; and only the system settings
  file can undo the rest. Gemini reads it only where root owns it and its folders, so `connect` writes what it should
  hold next to the user's configuration, for root to install: the same hook (Gemini runs a hook that two files name
  alike once) and `hooksConfig.enabled: true`.
- A trusted folder's own hooks, MCP servers and `.env` run or apply without asking anyone (a folder hook may even
  rewrite an approved input): no setting can stop that. Gemini's folder trust is the guard.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from approval_server.agents.setup import Plan, Report, Target, is_ours, json_text, read_json_object
from approval_server.config import user_config_dir
from approval_server.errors import ConfigError

KIND = "gemini"
EVENT = "BeforeTool"  # the hook event asked before every tool call
# Node's setTimeout takes at most 2^31−1 ms; Gemini kills a hook with a larger timeout at once (the call runs).
MAX_TIMEOUT_MS = 2**31 - 1
DEFAULT_TIMEOUT_MS = 60_000  # Gemini's, for a hook without `timeout`
EVERY_TOOL = ("*", ".*", "")
SYSTEM_SETTINGS = {"darwin": "/Library/Application Support/GeminiCli/settings.json"}
SYSTEM_PROPOSAL = "gemini-system-settings.json"  # in the user's configuration folder, for root to install
# How `connect` says to start Gemini: yolo leaves approval-server the only gate (docs/agents/gemini.md says why).
INTERACTIVE = ["gemini", "--approval-mode", "yolo"]
HEADLESS = [*INTERACTIVE, "-p", "your prompt"]


def gemini_home() -> Path:
    """Where Gemini keeps the user's `.gemini` folder: `$GEMINI_CLI_HOME`, else the home directory."""
    return Path(os.environ.get("GEMINI_CLI_HOME") or Path.home())


def settings_path() -> Path:
    return gemini_home() / ".gemini" / "settings.json"


def system_settings_path() -> Path:
    """The settings file that overrides every other (`$GEMINI_CLI_SYSTEM_SETTINGS_PATH`, else the platform's)."""
    default = SYSTEM_SETTINGS.get(sys.platform, "/etc/gemini-cli/settings.json")
    return Path(os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH") or default)


def gemini_files() -> list[Path]:
    """Gemini's files that decide whether the hook runs and what it runs with: the user's and the system's
    settings, the folders it trusts, the user's `.env` (its variables reach the hook) and extensions (they add
    hooks of their own)."""
    folder = gemini_home() / ".gemini"
    trusted = Path(os.environ.get("GEMINI_CLI_TRUSTED_FOLDERS_PATH") or folder / "trustedFolders.json")
    system = system_settings_path()
    defaults = Path(os.environ.get("GEMINI_CLI_SYSTEM_DEFAULTS_PATH") or system.with_name("system-defaults.json"))
    return [folder / "settings.json", trusted, folder / ".env", folder / "extensions", system, defaults]


def hook_name(target: Target) -> str:
    """Our hook's name: what `hooksConfig.disabled` would have to list, so it is derived from the MCP token."""
    digest = hmac.new(target.mcp_token.encode(), b"gemini BeforeTool hook", hashlib.sha256).hexdigest()
    return f"approval-server-{digest[:16]}"


def hook_timeout_ms(target: Target) -> int:
    return min(target.hook_timeout * 1000, MAX_TIMEOUT_MS)


def _object(settings: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = settings.setdefault(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key!r} is not an object: fix or move it, then run connect again")
    return value


def _without_ours(definitions: Any) -> list[Any]:
    """The `BeforeTool` definitions with our hooks taken out (a definition left empty goes too)."""
    kept = []
    for definition in definitions if isinstance(definitions, list) else []:
        hooks = definition.get("hooks") if isinstance(definition, dict) else None
        if not isinstance(hooks, list):
            kept.append(definition)
            continue
        theirs = [hook for hook in hooks if not (isinstance(hook, dict) and is_ours(hook.get("command")))]
        if theirs:
            kept.append(definition | {"hooks": theirs})
    return kept


def merged(settings: dict[str, Any], target: Target, path: Path) -> dict[str, Any]:
    """The user's settings with our hook (for every tool), hooks switched on and ours not disabled; the rest kept."""
    name = hook_name(target)
    hook = {
        "type": "command",
        "name": name,
        "command": target.hook_command(KIND),
        "timeout": hook_timeout_ms(target),
        "description": "approval-server decides whether the tool call runs",
    }
    hooks = _object(settings, "hooks", path)
    hooks[EVENT] = [*_without_ours(hooks.get(EVENT)), {"matcher": "*", "hooks": [hook]}]
    config = _object(settings, "hooksConfig", path)
    config["enabled"] = True
    disabled = config.get("disabled")
    if isinstance(disabled, list):
        config["disabled"] = [entry for entry in disabled if entry != name and not is_ours(entry)]
    return settings


def proposal_path() -> Path:
    return user_config_dir() / SYSTEM_PROPOSAL


def _system_settings() -> dict[str, Any] | None:
    """What the system settings file holds now: {} when there is none, None when it cannot be read."""
    try:
        return read_json_object(system_settings_path())
    except ConfigError:
        return None


def plan(target: Target) -> Plan:
    """The user's Gemini settings with our hook merged in, the system settings root should install, and how to start
    Gemini so that it asks."""
    path, proposal, system = settings_path(), proposal_path(), system_settings_path()
    settings = merged(read_json_object(path), target, path)
    present = _system_settings()
    install = f"sudo install -D -o root -g root -m 644 {shlex.quote(str(proposal))} {shlex.quote(str(system))}"
    if present is None:
        install = f"{system} cannot be read here: merge the hooks and hooksConfig of {proposal} into it by hand"
    lines = [
        f"Gemini CLI asks approval-server before every tool call (a {EVENT} hook in {path}; it waits up to "
        f"{hook_timeout_ms(target) // 1000} s, past the {target.settings.approval_timeout_seconds:g} s expiry).\n",
        f"Headless:\n  {shlex.join(HEADLESS)}",
        f"Interactive:\n  {shlex.join(INTERACTIVE)}",
        "With --approval-mode yolo approval-server alone decides; without it, a headless Gemini offers no shell tool"
        " and an interactive one also asks you at the terminal after approval-server allows.\n",
        "A repository Gemini trusts can switch hooks off in its .gemini/settings.json. To stop it, install the system "
        f"settings in {proposal} as root (root must own the file and its folders, or Gemini ignores it):\n  {install}",
        "Trust only folders whose .gemini/ and .env you have read: Gemini runs their hooks and MCP servers without "
        "asking approval-server (docs/agents/gemini.md).",
    ]
    files = {path: json_text(settings), proposal: json_text(merged(present or {}, target, system))}
    return Plan(files, lines, private=False)


def _root_only(path: Path) -> bool:
    """Whether Gemini reads this system file: it and every folder above it owned by root, writable by no one else."""
    try:
        for place in (path, *path.parents):
            info = place.stat()
            if info.st_uid != 0 or info.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def _our_hooks(settings: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    hooks = settings.get("hooks")
    found = []
    for definition in hooks.get(EVENT) or [] if isinstance(hooks, dict) else []:
        for hook in definition.get("hooks") or [] if isinstance(definition, dict) else []:
            if isinstance(hook, dict) and is_ours(hook.get("command")):
                found.append((definition.get("matcher"), hook))
    return found


def _hook_problems(matcher: Any, hook: dict[str, Any], target: Target | None, disabled: Any) -> list[str]:
    """What is wrong with one of our hooks, in words."""
    found = []
    timeout = hook.get("timeout", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 < timeout <= MAX_TIMEOUT_MS:
        found.append(f"its timeout {timeout!r} is not 1 to {MAX_TIMEOUT_MS} ms: Gemini kills it and runs the call")
    elif target is not None and timeout <= target.settings.approval_timeout_seconds * 1000:
        found.append(
            f"its timeout ({timeout} ms) ends before the expiry ({target.settings.approval_timeout_seconds:g} s): "
            "Gemini kills it and runs the call while the approver still may answer"
        )
    if (matcher or "").strip() not in EVERY_TOOL:
        found.append(f"its matcher {matcher!r} leaves the other tools unasked")
    words = shlex.split(str(hook.get("command")))
    if not words or not (Path(words[0]).is_file() and os.access(words[0], os.X_OK)):
        found.append(f"its program {words[0] if words else ''!r} does not exist: every call is denied")
    if isinstance(disabled, list) and (hook.get("name") or hook.get("command")) in disabled:
        found.append("hooksConfig.disabled names it: Gemini runs every call unasked")
    return found


def check(target: Target | None, ok: Report, problem: Report, note: Report) -> None:
    """`doctor`: the hook `connect` wrote, and the cases where Gemini cannot be made to fail closed."""
    path = settings_path()
    if not path.exists():
        note(f"Gemini CLI: no {path} (approval-server connect gemini sets it up)")
        return
    try:
        settings = read_json_object(path)
    except ConfigError as exc:
        problem(f"Gemini CLI: {exc}")
        return
    ours = _our_hooks(settings)
    if not ours:
        note(f"Gemini CLI: {path} has no approval-server hook (approval-server connect gemini adds it)")
        return
    config = _section(settings, "hooksConfig")
    found = [text for matcher, hook in ours for text in _hook_problems(matcher, hook, target, config.get("disabled"))]
    if len(ours) > 1:
        found.append(f"it holds {len(ours)} approval-server hooks: each call is asked that many times")
    if config.get("enabled") is False:
        found.append("it sets hooksConfig.enabled to false: Gemini runs every call unasked")
    if _section(_section(settings, "security"), "folderTrust").get("enabled") is False:
        found.append(
            "it switches folder trust off: every repository's .gemini/settings.json is loaded, and can switch hooks "
            "off or run hooks of its own"
        )
    for text in found:
        problem(f"Gemini CLI: {path}: {text} (approval-server connect gemini writes a sound hook)")
    if not found:
        ok(f"Gemini CLI asks approval-server before every tool call ({path})")
    _check_system([hook for _, hook in ours], ok, problem, note)
    note(
        "Gemini CLI runs a trusted repository's own hooks and MCP servers, and hands its .env to every hook, without "
        "asking approval-server: trust only folders whose .gemini/ and .env you have read"
    )


def _check_system(mine: list[dict[str, Any]], ok: Report, problem: Report, note: Report) -> None:
    """Whether the system settings keep our hook on: the same hook as the user's, and hooks switched on."""
    system = system_settings_path()
    read = (_system_settings() or {}) if _root_only(system) else {}  # Gemini skips a file root does not own
    theirs = [hook for _, hook in _our_hooks(read)]
    if _section(read, "hooksConfig").get("enabled") is True and theirs == mine and len(mine) == 1:
        ok(f"Gemini CLI: {system} keeps the hook on, whatever a repository's settings say")
    elif theirs and theirs != mine:
        problem(
            f"Gemini CLI: {system} holds another approval-server hook than {settings_path()}: each call is asked "
            f"twice, or of the wrong server (install {proposal_path()} again as root)"
        )
    else:
        note(
            "Gemini CLI cannot be made to fail closed when a repository it trusts switches hooks off in its "
            f".gemini/settings.json: as root, install {proposal_path()} (approval-server connect gemini writes it) "
            f"as {system}"
        )


def _section(settings: dict[str, Any], key: str) -> dict[str, Any]:
    value = settings.get(key)
    return value if isinstance(value, dict) else {}
