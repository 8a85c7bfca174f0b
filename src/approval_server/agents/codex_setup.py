"""`approval-server connect codex` and `doctor`'s Codex checks: the hook in Codex's config.toml, and its trust.

`connect` merges one `PermissionRequest` hook (matcher `*`: every tool Codex asks about) into `$CODEX_HOME/config.toml`
(default `~/.codex`), keeping the user's own tables, comments and hooks (tomlkit edits the file in place). Codex
runs a user-level hook only once it is trusted: `hooks.state."<key>".trusted_hash` must equal the hash Codex makes
of the hook's event, matcher, command and timeout; an untrusted hook, or a trusted one whose command changed since,
is skipped without a word and the model's own reviewer decides instead. Only Codex knows its hash, so `connect`
asks `codex app-server` (JSON-RPC: `initialize`, `initialized`, `hooks/list`) for the hash of the same hook in a
scratch `CODEX_HOME` (the hash names no path), and writes the state next to the hook, under the key Codex gives a
hook by file, event and position (`<real config.toml>:permission_request:<group>:<handler>`). `doctor` asks
`hooks/list` on the real home whether Codex trusts it.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table

from approval_server.agents.setup import Plan, Report, Target, is_ours
from approval_server.errors import ConfigError

EVENT = "PermissionRequest"
KEY_EVENT = "permission_request"  # how a trust key names the event
PROMPT = "your prompt"
# Flags for every start: a trusted project's .codex/config.toml outranks the user's file, and can switch hooks off
# (`[features] hooks = false`); its .codex/rules can allow commands with no one asked. Flags outrank both.
HEADLESS = ["codex", "exec", "--approve-for-me", "--ignore-rules", "-c", "features.hooks=true"]
INTERACTIVE = ["codex", "--sandbox", "workspace-write", "--ask-for-approval", "on-request", "-c", "features.hooks=true"]
FAIL_OPEN = (
    "Codex: what still runs without the gate (docs/agents/codex.md): calls its sandbox allows never ask (reading "
    "files, writing in the workspace, /tmp and $TMPDIR); in a project you marked trusted, its .codex/config.toml "
    "can switch hooks off unless codex runs with -c features.hooks=true, and its .codex/rules allow commands "
    "unasked unless it runs with --ignore-rules (codex exec only: the interactive codex has no such flag); if "
    "CODEX_HOME lies inside a folder the sandbox may write (codex started in your home folder), the agent can rewrite "
    "config.toml unasked, after which Codex skips the hook without a word; and --dangerously-bypass-approvals-and-"
    "sandbox or --ask-for-approval never turn approval off."
)


def codex_home() -> Path:
    """Where Codex keeps its configuration: `$CODEX_HOME`, as Codex reads it, or `~/.codex`."""
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")


def config_path() -> Path:
    return codex_home() / "config.toml"


class AppServer:
    """`codex app-server`: Codex's JSON-RPC over stdin/stdout, one JSON object a line, for what only Codex knows."""

    def __init__(self, codex: str, home: Path, timeout: float = 30) -> None:
        self._argv = [codex, "app-server"]
        self._env = os.environ | {"CODEX_HOME": str(home)}
        self._timeout = timeout
        self._buffer = b""
        self._next = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AppServer:
        try:
            self._process = subprocess.Popen(  # noqa: S603 (the codex found on the user's own PATH)
                self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self._env
            )
        except OSError as exc:
            raise ConfigError(f"could not start {self._argv[0]} app-server ({exc})") from None
        self.call("initialize", {"clientInfo": {"name": "approval-server", "version": "1"}})
        self._send({"method": "initialized"})
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message).encode() + b"\n")
            self._process.stdin.flush()
        except OSError as exc:
            raise ConfigError(f"codex app-server stopped ({exc})") from None

    def _line(self, deadline: float) -> bytes:
        # select() and os.read() rather than readline(): a wait that can end, whatever codex prints or withholds.
        assert self._process is not None
        assert self._process.stdout is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready = select.select([self._process.stdout], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise ConfigError(f"codex app-server did not answer within {self._timeout:g} s")
            chunk = os.read(self._process.stdout.fileno(), 65536)
            if not chunk:
                raise ConfigError("codex app-server stopped before it answered")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """The result of one request; notifications in between are skipped."""
        self._next += 1
        self._send({"id": self._next, "method": method, "params": params})
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                message = json.loads(self._line(deadline))
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("id") == self._next:
                if "error" in message:
                    raise ConfigError(f"codex app-server refused {method}: {message['error']}")
                return message.get("result")


def listed_hooks(codex: str, home: Path) -> list[dict[str, Any]]:
    """Every hook Codex loads from `home` (and no project: the list is asked for `home` itself), as `hooks/list`
    reports each: `key`, `command`, `timeoutSec`, `enabled`, `currentHash`, `trustStatus`, …"""
    with AppServer(codex, home) as server:
        result = server.call("hooks/list", {"cwds": [str(home)]})
    try:
        return [hook for entry in result["data"] for hook in entry["hooks"] if isinstance(hook, dict)]
    except (KeyError, TypeError):
        raise ConfigError(f"codex app-server answered hooks/list with {str(result)[:200]}") from None


def read_config(path: Path) -> tomlkit.TOMLDocument:
    """The user's config.toml (empty when there is none); one that is not TOML is an error, never overwritten."""
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, TOMLKitError, ValueError) as exc:
        problem = f"{path} is not TOML that can be merged ({exc}): fix or move it, then run connect again"
        raise ConfigError(problem) from None


def _ours(group: Any) -> bool:
    handlers = group.get("hooks") if isinstance(group, dict) else None
    return (
        isinstance(handlers, list)
        and bool(handlers)
        and all(isinstance(handler, dict) and is_ours(handler.get("command")) for handler in handlers)
    )


def our_groups(config: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The PermissionRequest groups `connect` wrote, with their positions."""
    hooks = config.get("hooks")
    groups = hooks.get(EVENT) if isinstance(hooks, dict) else None
    return [(index, group) for index, group in enumerate(groups or []) if _ours(group)]


def hook_group(target: Target) -> dict[str, Any]:
    handler = {"type": "command", "command": target.hook_command("codex"), "timeout": target.hook_timeout}
    return {"matcher": "*", "hooks": [handler]}


def merge(config: tomlkit.TOMLDocument, group: dict[str, Any], path: Path) -> int:
    """Put `group` where an earlier `connect` put ours (every other group keeps its position, so the user's own
    trusted hooks keep their keys), or after the user's; returns its position."""
    hooks = config.get("hooks")
    if hooks is None:
        hooks = config["hooks"] = tomlkit.table(is_super_table=True)
    groups = hooks.get(EVENT) if isinstance(hooks, Table) else None
    if groups is None and isinstance(hooks, Table):
        groups = hooks[EVENT] = tomlkit.aot()
    if not isinstance(hooks, Table) or not isinstance(groups, AoT):
        raise ConfigError(f"{path}: hooks.{EVENT} is not a list of tables: fix or move it, then run connect again")
    table = tomlkit.table()
    table["matcher"] = group["matcher"]
    handlers = tomlkit.aot()
    handlers.append(tomlkit.item(group["hooks"][0]))
    table["hooks"] = handlers
    found = [index for index, _ in our_groups(config)]
    for index in reversed(found[1:]):  # connect writes one: any other is stale
        del groups[index]
    if found:
        groups[found[0]] = table
        return found[0]
    groups.append(table)
    return len(groups) - 1


def trusted_hash(codex: str, group: dict[str, Any]) -> str:
    """The hash Codex makes of this hook: `hooks/list` in a scratch home holding nothing else."""
    with tempfile.TemporaryDirectory(prefix="approval-server-codex-") as scratch:
        home = Path(scratch)
        config = tomlkit.document()
        config["hooks"] = {EVENT: [group]}
        (home / "config.toml").write_text(tomlkit.dumps(config), encoding="utf-8")
        listed = listed_hooks(codex, home)
    hashes = [hook.get("currentHash") for hook in listed if hook.get("command") == group["hooks"][0]["command"]]
    if len(hashes) != 1 or not isinstance(hashes[0], str):
        raise ConfigError(f"codex app-server did not list the hook it was shown ({len(listed)} hook(s) listed)")
    return hashes[0]


def trust_key(path: Path, index: int) -> str:
    return f"{path.resolve()}:{KEY_EVENT}:{index}:0"  # Codex names the file as resolved, symlinks and all


def plan(target: Target) -> Plan:
    path = config_path()
    config = read_config(path)
    group = hook_group(target)
    index = merge(config, group, path)
    codex = shutil.which("codex")
    if codex is not None:
        hooks = config["hooks"]
        assert isinstance(hooks, Table)
        states = hooks.get("state")
        if states is None:
            states = hooks["state"] = tomlkit.table(is_super_table=True)
        if not isinstance(states, Table):
            raise ConfigError(f"{path}: hooks.state is not a table: fix or move it, then run connect again")
        try:
            states[trust_key(path, index)] = {"trusted_hash": trusted_hash(codex, group)}
        except ConfigError as exc:
            raise ConfigError(f"nothing written: {exc}") from None
        trust = f"The hook is trusted (hooks.state in {path}, the hash Codex makes of it, from {codex} app-server)."
    else:
        trust = (
            "NOT TRUSTED YET: Codex skips a hook it has not been told to trust, without a word, and lets the model's "
            "own review decide. `codex` is not on PATH, so its trust could not be written: run this again with "
            "codex on PATH, such as  PATH=/path/to/node_modules/.bin:$PATH approval-server connect codex"
        )
    lines = [
        f"Codex asks approval-server whenever a call needs approval (PermissionRequest, every tool). {trust}\n",
        f"Headless (add --skip-git-repo-check outside a git repository):\n  {shlex.join([*HEADLESS, PROMPT])}",
        f"Interactive:\n  {shlex.join(INTERACTIVE)}\n",
        "Codex asks only for a call that needs approval: a command or patch outside the sandbox (another folder, the "
        "network, or when the model asks to escalate). What its sandbox allows runs without asking: reading files, "
        "writing in the workspace, /tmp and $TMPDIR.",
        "The flags keep a trusted project's .codex/ from switching the hook off or allowing commands by rule; the "
        "interactive codex has no --ignore-rules (docs/agents/codex.md).",
    ]
    return Plan({path: tomlkit.dumps(config)}, lines)


def doctor(target: Target | None, ok: Report, problem: Report, note: Report) -> None:
    path = config_path()
    try:
        ours = our_groups(read_config(path).unwrap())
    except ConfigError as exc:
        problem(f"Codex: {exc}")
        return
    if not ours:
        return
    handlers = [group["hooks"][0] for _, group in ours]
    if target is not None and any(handler.get("command") != target.hook_command("codex") for handler in handlers):
        problem(
            f"Codex: the hook in {path} does not run this installation for this server: approval-server connect codex"
        )
    if target is not None and any(
        not isinstance(handler.get("timeout"), int) or handler["timeout"] < target.hook_timeout for handler in handlers
    ):
        problem(f"Codex: the hook's timeout in {path} is below the expiry: approval-server connect codex")
    _trust(path, ok, problem, note)
    # The sandbox's writable folders besides the workspace: /tmp and $TMPDIR.
    for folder in {Path(tempfile.gettempdir()), Path("/tmp")}:  # noqa: S108 (Codex's own choice of folder)
        if path.resolve().is_relative_to(folder.resolve()):
            problem(f"Codex: {path} is under {folder}, which Codex's sandbox lets the agent write without asking")
    note(FAIL_OPEN)


def _trust(path: Path, ok: Report, problem: Report, note: Report) -> None:
    codex = shutil.which("codex")
    if codex is None:
        note(f"Codex: codex is not on PATH, so whether it trusts the hook in {path} cannot be checked")
        return
    try:
        listed = [hook for hook in listed_hooks(codex, codex_home()) if is_ours(hook.get("command"))]
    except ConfigError as exc:
        problem(f"Codex: {exc}")
        return
    if not listed:
        problem(f"Codex does not load the hook in {path}: approval-server connect codex")
    again = "Run  approval-server connect codex  again (with codex on PATH) to trust it."
    for hook in listed:
        status = hook.get("trustStatus")
        if hook.get("enabled") is False:
            problem(f"Codex: the hook {hook.get('key')} is disabled (hooks.state): Codex never runs it. {again}")
        elif status == "trusted":
            ok(f"Codex trusts the hook in {path}: every call that needs approval asks approval-server")
        elif status == "modified":
            problem(
                f"Codex: the hook changed since it was trusted ({hook.get('key')}): Codex now skips it without a word "
                f"and the model's own review decides. {again}"
            )
        else:
            problem(f"Codex: the hook is not trusted ({status}): Codex skips it without a word. {again}")
