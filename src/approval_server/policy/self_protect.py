"""The server's own files, out of the agent's reach: a built-in rule checked before the owner's policy.

The data directory (tokens, SQLite database), the settings file, the user's configuration folder and the policy file
decide what the gate does; an agent that reads a token can answer its own requests, and one that writes the policy
can allow itself anything. Any tool call that names one of them is denied, whatever the owner's rules or an
approver's grants say (both are consulted only after this). One that names a folder holding them in a way that may
reach inside (`grep -r x ~`) asks a human, unless the owner's policy denies it.

A path is compared after `~`, `$HOME` and the request's working directory are applied, `.` and `..` resolved, and
case folded (macOS and Windows file systems ignore case; a deny may over-match). A word with a glob (`*`, `?`, `[`,
`{`) or a variable counts when it could match one of the files. Bash commands are read with the same analysis as
the file rules (`shell.analyse`): every word of every simple command, looked through wrappers and `sh -c`, and every
redirection target. Other tools (MCP, unknown) are searched for the paths in every string of their input.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approval_server.config import DEFAULT_PEOPLE_FILE, DEFAULT_POLICY_FILE, Settings, user_config_dir
from approval_server.policy.rule import Verdict
from approval_server.policy.shell import analyse

RULE = "built-in: protect approval-server's own files"
_REASON = (
    "approval-server does not let an agent read, write, list or name its own files (tokens, database, settings, "
    "policy) ({rule}); no policy rule or grant can change this. Do not retry this action."
)
_OWN_COMMAND_REASON = (
    "approval-server does not let an agent run its own command (it reads the server's tokens and database, so it "
    "could answer requests or make a person's login link) ({rule}); no policy rule or grant can change this. Do not "
    "retry this action."
)
_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_HOME = re.compile(r"\$\{?HOME\}?(?=/|$)")
# What the shell expands that this cannot: `$'…'`, `$"…"`, `$(…)`, `` `…` ``, `~user`; it may be any folder.
_EXPANSION = re.compile(r"\$'[^']*'|\$\"[^\"]*\"|\$\([^)]*\)|`[^`]*`|^~[^/]+")
_BRACES = re.compile(r"\{[^{}]*\}")
_GLOB = re.compile(r"[*?\[]")
# Where a path may start inside a word: `--file=PATH`, `REV:PATH`, `host:PATH`, `if=PATH`.
_SEPARATORS = re.compile(r"[=:,]")
_MAX_STRINGS = 2_000
_MAX_REAL = 2_000  # words resolved through symlinks (each costs system calls): a call with more asks
_PATHLIKE = re.compile(r"[/~$*?\[{]")
_FILE_TOOLS = frozenset({"Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "NotebookRead", "Glob", "Grep", "LS"})
_OWN_NAMES = frozenset({"api-token", "mcp-token", "dashboard-token", "approval.db", "approval-server"})


@dataclass(frozen=True)
class _Match:
    exact: bool  # names a protected file or something inside a protected folder (else: a folder holding one)


def _runs_own_command(tool_name: str, tool_input: object) -> bool:
    """Whether a Bash command may run approval-server's CLI (`approval-server …`, `uv run approval-server …`,
    `python -m approval_server …`, through any wrapper): a word that is the program, or the module after `-m`. An
    agent never needs it (its harness runs the hook), and it would act with the owner's tokens. A folder that has
    the program's name (`cd approval-server`) is refused too: which word a wrapper runs is not always known."""
    if tool_name != "Bash" or not isinstance(tool_input, dict) or not isinstance(tool_input.get("command"), str):
        return False
    for view in analyse(tool_input["command"]).views:
        words = [_fold(word) for word in view.words]
        for at, word in enumerate(words):
            if posixpath.basename(word.rstrip("/")) == "approval-server":
                return True
            module = word.removeprefix("-m") if word.startswith("-m") and word != "-m" else None
            if word == "-m" and at + 1 < len(words):
                module = words[at + 1]
            if module is not None and module.split(".")[0] == "approval_server":
                return True
    return False


class SelfProtection:
    """The server's own paths, and the built-in verdict on a tool call that names one of them."""

    def __init__(self, paths: Iterable[Path | str], home: str | None = None) -> None:
        self._home = home or os.path.expanduser("~")
        found: set[str] = set()
        for path in paths:
            text = os.path.abspath(os.fspath(path))
            found.add(text)
            found.add(os.path.realpath(text))
        self._paths = tuple(sorted(_fold(posixpath.normpath(path)) for path in found if path != "/"))

    @classmethod
    def for_settings(
        cls, settings: Settings, settings_file: Path | None, others: Iterable[Path] = ()
    ) -> SelfProtection:
        """The files of a server started with these settings (and this .env file, if any), and `others`: the
        agents' own files that say where their hooks connect."""
        paths: list[Path] = [settings.approval_data_dir, user_config_dir(), *others]
        paths += [path for path in (settings_file, settings.policy_path, settings.people_path) if path is not None]
        # Also where the default rules and people files would be read from on the next start, while they do not
        # exist: an agent that wrote one there would choose its own rules or approvers.
        paths += [Path(DEFAULT_POLICY_FILE), Path(DEFAULT_PEOPLE_FILE)]
        database = settings.store_url
        if database.startswith("sqlite:///"):
            db = Path(database.removeprefix("sqlite:///"))
            paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        return cls(paths)

    @property
    def paths(self) -> tuple[str, ...]:
        return self._paths

    def check(self, tool_name: str, tool_input: object, cwd: str | None) -> Verdict | None:
        """A deny if the call names a protected path; an ask if it names a folder holding one in a way that may
        reach inside (a Grep or a recursive command over it); None otherwise."""
        if _runs_own_command(tool_name, tool_input):
            return Verdict("deny", RULE, _OWN_COMMAND_REASON.format(rule=RULE))
        folder = False
        places = [cwd, *self._directories(tool_name, tool_input, cwd)]
        near = [place for place in places if place is None or self._near(place)]
        real = tool_name == "Bash" or tool_name in _FILE_TOOLS  # on this machine: symlinks count
        checked: set[str] = set()
        for word in self._words(tool_name, tool_input):
            for candidate in _candidates(word):
                if candidate in checked:
                    continue
                checked.add(candidate)
                # A word with no `/`, `~`, `$` or glob is a child of its folder: it matters only near the files,
                # or (on this machine) as a symlink.
                plain = not real and not _PATHLIKE.search(candidate) and candidate != ".."
                for place in near if plain else places:
                    match = self._match(candidate, place, real=real)
                    if match and match.exact:
                        return Verdict("deny", RULE, _REASON.format(rule=RULE))
                    folder = folder or match is not None
        if real and len(checked) > _MAX_REAL:
            return Verdict("ask", RULE, f"Too many words to check against approval-server's own files ({RULE}).")
        if folder and (tool_name in ("Grep", "Glob") or (tool_name == "Bash" and _recursive(tool_input))):
            return Verdict("ask", RULE, f"It may reach approval-server's own files ({RULE}).")
        return None

    def _near(self, place: str) -> bool:
        """Whether a child of this folder may be a protected path or hold one (or the folder is inside one)."""
        folded = _fold(posixpath.normpath(place)).rstrip("/") + "/"
        return any(protected.startswith(folded) or folded.startswith(protected + "/") for protected in self._paths)

    def _directories(self, tool_name: str, tool_input: object, cwd: str | None) -> list[str]:
        """The folders a Bash command moves to (`cd DIR && cat .env`), where its relative words may also be."""
        if tool_name != "Bash" or not isinstance(tool_input, dict) or not isinstance(tool_input.get("command"), str):
            return []
        places = []
        for view in analyse(tool_input["command"]).views:
            if view.words[0] in ("cd", "pushd"):
                target = _HOME.sub(self._home, view.words[-1] if len(view.words) > 1 else "~")
                target = self._home + target[1:] if target == "~" or target.startswith("~/") else target
                if target.startswith("/") or cwd is not None:
                    places.append(posixpath.normpath(posixpath.join(cwd or "/", target)))
        return places[:20]

    def _words(self, tool_name: str, tool_input: object) -> Iterator[str]:
        if tool_name == "Bash" and isinstance(tool_input, dict) and isinstance(tool_input.get("command"), str):
            command: str = tool_input["command"]
            analysis = analyse(command)
            for view in analysis.views:
                yield from view.words
            for word, _ in analysis.files:
                yield word
            yield from command.split()  # what the parser may have mis-read: the raw words too
            return
        if isinstance(tool_input, dict) and tool_name in _FILE_TOOLS:  # the path, not what is written to it
            base = tool_input.get("path")
            pattern = tool_input.get("pattern")
            if tool_name == "Glob" and isinstance(pattern, str):
                yield pattern if pattern.startswith(("/", "~")) else f"{base or '.'}/{pattern}"
            for key in ("file_path", "notebook_path", "path"):
                if isinstance(value := tool_input.get(key), str):
                    yield value
            if tool_name in ("Glob", "Grep") and base is None:
                yield "."  # they search the working directory
            return
        yield from _strings(tool_input)

    def _match(self, word: str, cwd: str | None, *, real: bool) -> _Match | None:
        word = _HOME.sub(self._home, word)
        if word == "~" or word.startswith("~/"):
            word = self._home + word[1:]
        word = _BRACES.sub("*", _VARIABLE.sub("*", _EXPANSION.sub("*", word)))
        if word.startswith("*") and (found := self._suffix(word)):  # `$'\x7e'/.local/…`: any folder may lead
            return found
        if not word.startswith("/"):
            if cwd is None or not cwd.startswith("/"):
                return self._suffix(word)
            word = f"{cwd}/{word}"
        path = posixpath.normpath(word)
        path = path[1:] if path.startswith("//") else path
        if _GLOB.search(path):
            return _glob_match(_fold(path), self._paths)
        result = None
        for seen in {_fold(path), _fold(_realpath(path) if real else path)}:  # a symlink may lead to them
            for protected in self._paths:
                if seen == protected or seen.startswith(protected + "/"):
                    return _Match(True)
                if protected.startswith(seen.rstrip("/") + "/"):
                    result = _Match(False)
        return result

    def _suffix(self, word: str) -> _Match | None:
        """A relative word with no working directory to place it: it counts if it ends like a protected path."""
        parts = [part for part in _fold(word).split("/") if part not in ("", ".", "..")]
        if not parts:
            return None
        for protected in self._paths:
            for end in range(len(parts), 0, -1):
                head = "/" + "/".join(parts[:end])
                if all(_GLOB.search(part) for part in parts[:end]):  # `$(pwd)/x`: nothing literal to compare
                    break
                if not (fnmatch.fnmatchcase(protected, "*" + head) if _GLOB.search(head) else protected.endswith(head)):
                    continue
                # One bare name is too common to count (`.env`, `policy.toml`), unless it is the server's own.
                if len(parts) > 1 or parts[0] in _OWN_NAMES:
                    return _Match(True)
        return None


def _realpath(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


def _fold(path: str) -> str:
    return path.casefold()


def _candidates(word: str) -> Iterator[str]:
    """The word, and each part of it after `=`, `:` or `,` (an option's value, `REV:PATH`, `host:PATH`)."""
    if not word or "\0" in word:
        return
    yield word
    for found in _SEPARATORS.finditer(word):
        rest = word[found.end() :]
        if rest:
            yield rest


def _glob_match(pattern: str, protected: tuple[str, ...]) -> _Match | None:
    """Whether a glob could match a protected path (or something in it), or a folder holding one. A `**` (Glob's
    any depth; in Bash only with `shopt -s globstar`, which rules never allow) counts as a folder holding one."""
    segments = pattern.strip("/").split("/")
    result = None
    for path in protected:
        parts = path.strip("/").split("/")
        for index, segment in enumerate(segments):
            if index >= len(parts):
                return _Match(True)
            if segment == "**":
                result = _Match(False)
                break
            if not fnmatch.fnmatchcase(parts[index], segment):
                break
        else:
            if len(segments) >= len(parts):
                return _Match(True)
            result = _Match(False)
    return result


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string in a tool's input, and each of its whitespace- or quote-separated parts."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    seen = 0
    while stack and seen < _MAX_STRINGS:
        item, level = stack.pop()
        seen += 1
        if isinstance(item, str):
            yield item
            yield from re.split(r"[\s'\"`<>|;&()]+", item)
        elif isinstance(item, dict) and level < 20:
            stack.extend((key, level + 1) for key in item)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list) and level < 20:
            stack.extend((child, level + 1) for child in item)


def _recursive(tool_input: object) -> bool:
    """A Bash command that may read a whole folder tree: a recursive option, or a program that walks trees."""
    command = tool_input.get("command") if isinstance(tool_input, dict) else None
    if not isinstance(command, str):
        return True
    words = command.split()
    walkers = {"find", "tar", "zip", "rsync", "du", "tree", "rg", "ag", "ack", "scp", "cpio", "7z", "git"}
    return any(
        word in ("-r", "-R", "-a", "--recursive", "-rf", "-fr") or word.rsplit("/", 1)[-1] in walkers for word in words
    ) or bool(re.search(r"\s-[A-Za-z]*[rRa]", command))
