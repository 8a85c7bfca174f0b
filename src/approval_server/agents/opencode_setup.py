"""`approval-server connect opencode` and `doctor`'s OpenCode checks.

OpenCode asks only for what its `permission` configuration says "ask", and by default that is nothing but folders
outside the project: a command, an edit, a fetch all run unasked. `connect` therefore writes `"*": "ask"` (so a tool
OpenCode adds later asks too) and "ask" for the permissions that act (`GATED`) into the user's OpenCode
configuration, keeping the user's other keys, and leaves reads and searches inside the project allowed, as
OpenCode's defaults have them.

What OpenCode 1.18.33 reads, later winning (read in its bundle, checked in tests/e2e/test_opencode.py): the user's
`$XDG_CONFIG_HOME/opencode/` `config.json`, `opencode.json`, `opencode.jsonc`; `$OPENCODE_CONFIG`; every
`opencode.json[c]` from the project up to its git root; `.opencode/` folders there (agents, commands and plugins,
which run inside OpenCode); `~/.opencode/`; `$OPENCODE_CONFIG_CONTENT`; `/etc/opencode/` (root's); last
`$OPENCODE_PERMISSION`. An agent's own `permission` (`agent.build.permission`) is applied after the top-level one.
So a repository can allow everything (observed: `{"agent": {"build": {"permission": {"bash": "allow"}}}}` runs a
command unasked even under `OPENCODE_PERMISSION`), and the only way to stop it is to start OpenCode with
`OPENCODE_DISABLE_PROJECT_CONFIG=1`, which skips the project's files and folders (and its AGENTS.md): the command
`connect` prints.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shlex
from pathlib import Path
from typing import Any

import httpx

from approval_server.agents.setup import Plan, Report, Target, json_text, read_json_object
from approval_server.entry.agent_setup import own_command
from approval_server.entry.client import ApiClient
from approval_server.errors import ApprovalServerError, ConfigError

OPENCODE_URL = "http://127.0.0.1:4096"  # where `connect` says to start `opencode serve`, and `doctor` looks
GATED = ("bash", "edit", "webfetch", "websearch", "codesearch", "external_directory")
LIVE_CHECKED = GATED[:5]  # all but external_directory (see `unasked`)
# Read-only tools inside the project stay allowed, as OpenCode's defaults have them (`.env` files ask).
IN_PROJECT: dict[str, Any] = {
    "read": {"*": "allow", "*.env": "ask", "*.env.*": "ask", "*.env.example": "allow"},
    **dict.fromkeys(("glob", "grep", "list", "todowrite", "todoread", "question"), "allow"),
}
USER_FILES = ("config.json", "opencode.json", "opencode.jsonc")  # the order OpenCode reads them in
SERVE = "OPENCODE_DISABLE_PROJECT_CONFIG=1 opencode serve --port 4096"
FAILS_OPEN = (
    "OpenCode fails open when it is started without OPENCODE_DISABLE_PROJECT_CONFIG=1 in a repository whose "
    "opencode.json or .opencode/ allows a permission or loads a plugin, with `opencode run --auto`, or with "
    "permissions your own agent settings allow; the TUI started on its own asks you in the terminal instead of "
    "approval-server. Without a bridge nothing runs: the session waits."
)


def config_dir() -> Path:
    """OpenCode's user configuration folder (`opencode debug paths`)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "opencode"


def guarded_paths() -> list[Path]:
    """The folders whose files decide what OpenCode asks (its configuration, agents and plugins)."""
    return [config_dir(), Path.home() / ".opencode"]


def target_file() -> Path:
    """The user file OpenCode reads last (`opencode.jsonc`, which OpenCode itself creates), else `opencode.json`."""
    jsonc = config_dir() / "opencode.jsonc"
    return jsonc if jsonc.exists() else config_dir() / "opencode.json"


def permission_for(existing: object) -> dict[str, Any]:
    """`permission` with everything asking but reads and searches inside the project; the user's entries for other
    permissions are kept (after `"*"`, so they still apply), theirs for the gated ones replaced."""
    user = existing if isinstance(existing, dict) else {}
    kept = {key: value for key, value in user.items() if key != "*" and key not in GATED}
    return {"*": "ask", **IN_PROJECT, **kept, **dict.fromkeys(GATED, "ask")}


def _merged(*configs: dict[str, Any]) -> dict[str, Any]:
    """Configurations merged as OpenCode merges them: objects key by key, anything else replaced."""
    result: dict[str, Any] = {}
    for config in configs:
        for key, value in config.items():
            before = result.get(key)
            result[key] = _merged(before, value) if isinstance(before, dict) and isinstance(value, dict) else value
    return result


def _allows(value: object) -> bool:
    return value == "allow" or (isinstance(value, dict) and "allow" in value.values())


def lets_through(config: dict[str, Any]) -> list[str]:
    """What in an OpenCode configuration lets a gated permission be used without asking anyone."""
    found = []
    permission = config.get("permission")
    rules = permission if isinstance(permission, dict) else {"*": permission}
    for key in GATED:
        value = rules.get(key, rules.get("*"))
        if value is None:
            found.append(f"permission.{key} is not set, and OpenCode's default for it is allow")
        elif _allows(value):
            found.append(f"permission.{key} is {json.dumps(value)}")
    for section in ("agent", "mode"):
        agents = config.get(section)
        for name, agent in (agents if isinstance(agents, dict) else {}).items():
            own = agent.get("permission") if isinstance(agent, dict) else None
            own = own if isinstance(own, dict) else {"*": own} if own else {}
            found += [f"{section}.{name}.permission.{key} is {json.dumps(own[key])}" for key in own if _opens(key, own)]
    return found


def _opens(key: str, rules: dict[str, Any]) -> bool:
    return any(fnmatch.fnmatchcase(gated, key) for gated in GATED) and _allows(rules[key])


def user_configs(
    replacing: dict[Path, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[Path], list[str]]:
    """The user's OpenCode configuration as OpenCode merges it (with `replacing`'s files as they are to be), the
    files read, and those that could not be."""
    files = [config_dir() / name for name in USER_FILES]
    files += [Path.home() / ".opencode" / name for name in ("opencode.json", "opencode.jsonc")]
    configs, read, unreadable = [], [], []
    for path in files:
        if path in (replacing or {}) or path.exists():
            try:
                configs.append((replacing or {}).get(path) or read_json_object(path))
                read.append(path)
            except ConfigError:
                unreadable.append(f"{path} (comments or trailing commas? it is not plain JSON)")
    return _merged(*configs), read, unreadable


def _check_server(target: Target) -> None:
    try:
        with ApiClient(target.settings.url, target.mcp_token, timeout=5) as api:
            refused = not api.accepts_token(for_hooks=True)
    except ApprovalServerError as exc:
        raise ConfigError(f"nothing written: {exc}") from None
    if refused:
        raise ConfigError(f"nothing written: the server at {target.settings.url} refuses the MCP token this CLI found")


def plan(target: Target) -> Plan:
    """The user's OpenCode configuration with the asks in it, and how to start OpenCode with the bridge."""
    _check_server(target)
    path = target_file()
    config = read_json_object(path)  # a JSONC file with comments is refused here, never rewritten without them
    config["permission"] = permission_for(config.get("permission"))
    left = lets_through(user_configs({path: config})[0])
    bridge = own_command("bridge", "opencode", "--opencode-url", OPENCODE_URL, "--url", target.settings.url)
    bridge += ["--agent", target.name] if target.name else []
    lines = [
        "OpenCode now asks before it runs a command, edits a file, fetches or searches the web, touches a folder "
        "outside the project, or uses any other tool; reads and searches inside the project run.",
        f"1. Start OpenCode's server in your project, without the project's own configuration (a repository's "
        f"opencode.json or .opencode/ could allow everything or load a plugin):\n  cd your-project && {SERVE}",
        f"2. In another terminal, the bridge, which asks approval-server about each of its asks:\n  "
        f"{shlex.join(bridge)}",
        f"3. Work in it:  opencode attach {OPENCODE_URL}  (or its web UI). Export the same OPENCODE_SERVER_PASSWORD "
        "for opencode serve and the bridge, so that other users' programs cannot answer OpenCode's asks.",
        FAILS_OPEN,
    ]
    lines += [f"Warning: your own OpenCode settings still let this through unasked: {item}" for item in left]
    return Plan({path: json_text(config)}, lines, private=False)


def opencode_auth() -> httpx.BasicAuth | None:
    """The credentials `opencode serve` takes from its environment (OPENCODE_SERVER_PASSWORD), if set here."""
    password = os.environ.get("OPENCODE_SERVER_PASSWORD")
    if not password:
        return None
    return httpx.BasicAuth(os.environ.get("OPENCODE_SERVER_USERNAME") or "opencode", password)


def unasked(agent: dict[str, Any]) -> list[str]:
    """The permissions an agent's effective rules (OpenCode's `GET /agent`) let through unasked, all of it or for
    some patterns: the last rule that matches wins, and nothing matching means "ask". Folders outside the project
    are left to the configuration check: OpenCode allows its own folders there."""
    rules = [rule for rule in agent.get("permission") or [] if isinstance(rule, dict)]
    found = []
    for permission in LIVE_CHECKED:
        matching = [rule for rule in rules if fnmatch.fnmatchcase(permission, str(rule.get("permission")))]
        whole = [index for index, rule in enumerate(matching) if rule.get("pattern") == "*"]
        if whole and matching[whole[-1]].get("action") == "allow":
            found.append(f"{permission} (all of it)")
            continue
        after = matching[whole[-1] + 1 :] if whole else matching
        found += [f"{permission} {rule.get('pattern')}" for rule in after if rule.get("action") == "allow"]
    return found


def bridges_running() -> list[int]:
    """The process ids of this user's `approval-server bridge opencode` processes (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            if not entry.name.isdigit() or entry.stat().st_uid != os.getuid():
                continue
            words = (entry / "cmdline").read_bytes().split(b"\0")
            if b"approval_server" in b" ".join(words) and b"bridge" in words and b"opencode" in words:
                found.append(int(entry.name))
    return found


def doctor(ok: Report, problem: Report, note: Report, url: str = OPENCODE_URL) -> None:
    """The user's OpenCode configuration, the OpenCode server at `url` and whether a bridge runs."""
    config, read, unreadable = user_configs()
    for item in unreadable:
        note(f"OpenCode: cannot read {item}: check it asks as `connect opencode` writes it")
    if not read and not unreadable:
        note("OpenCode is not set up to ask (approval-server connect opencode)")
        return
    if left := lets_through(config):
        problem(f"OpenCode's settings let this run unasked: {'; '.join(left)} (approval-server connect opencode)")
    else:
        ok(f"OpenCode's settings ({', '.join(map(str, read))}) ask before {', '.join(GATED)} and any other tool")
    try:
        with httpx.Client(base_url=url, auth=opencode_auth(), timeout=5, trust_env=False) as http:
            version = http.get("/global/health").raise_for_status().json().get("version")
            agents = http.get("/agent").raise_for_status().json()
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        note(f"no OpenCode server answers at {url} ({exc.__class__.__name__}); start it with  {SERVE}")
    else:
        opened = [f"{agent.get('name')}: {', '.join(items)}" for agent in agents if (items := unasked(agent))]
        if opened:
            problem(f"the OpenCode {version} server at {url} lets its agents act unasked: {'; '.join(opened)}")
        else:
            ok(f"the OpenCode {version} server at {url} asks before its agents act")
    if Path("/proc").is_dir():
        pids = bridges_running()
        if pids:
            ok(f"an OpenCode bridge is running (pid {', '.join(map(str, pids))})")
        else:
            problem("no `approval-server bridge opencode` is running: OpenCode's asks wait, and nothing runs")
    note(FAILS_OPEN)
