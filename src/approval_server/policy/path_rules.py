"""`Read(…)` and `Edit(…)` rules: gitignore-style path patterns with Claude Code's anchors, matched with wcmatch,
and the path a tool call touches (lexically, and through symlinks where the server sees the agent's folder).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from dataclasses import dataclass

from wcmatch import glob

from approval_server.policy.rule import Rule, RuleError

_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.FORCEUNIX


@dataclass(frozen=True)
class _PathRule:
    rule: Rule
    relative: bool  # anchored at the request's working directory
    prefix: str  # its leading literal segments: it matches nothing outside (relative to the cwd when `relative`)


@dataclass(frozen=True)
class Target:
    """The path a tool call touches, absolute and relative to the working directory, as far as they are known."""

    absolute: str | None
    relative: str | None
    cwd_known: bool
    searched: bool  # Grep: the contents of everything below the path are read
    allowable: bool  # no `..`, no `~`, nothing that could leave the path


def _normalise(path: str) -> str:
    clean = posixpath.normpath(path)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def _inside(path: str, directory: str) -> bool:
    return directory in ("", "/") or path == directory or path.startswith(directory + "/")


def _related(one: str, other: str) -> bool:
    """One path is the other or inside it: a rule whose matches start at `one` may cover something under `other`."""
    return _inside(one, other) or _inside(other, one)


def working_directory(cwd: str | None) -> str | None:
    """The working directory if it is usable: absolute, with no `..`."""
    if not cwd or not cwd.startswith("/") or "\0" in cwd or ".." in cwd.split("/"):
        return None
    return _normalise(cwd)


def path_target(raw: object, cwd: str | None, home: str, *, searched: bool = False, allowable: bool = True) -> Target:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        return Target(None, None, cwd is not None, searched, False)
    if raw == "~" or raw.startswith("~/"):
        raw, allowable = home + raw[1:], False  # the tool may or may not expand `~`: deny rules see it expanded
    allowable = allowable and ".." not in raw.split("/")  # symlinks make `a/link/..` lexically unknowable
    if raw.startswith("/"):
        absolute: str | None = _normalise(raw)
        relative = None
        if cwd is not None and absolute is not None and _inside(absolute, cwd):
            relative = absolute[len(cwd) :].lstrip("/")
    else:
        relative = posixpath.normpath(raw)
        relative = "" if relative == "." else None if relative.split("/")[0] == ".." else relative
        absolute = _normalise(f"{cwd}/{raw}") if cwd is not None else None
        if relative is None and cwd is not None and absolute is not None and _inside(absolute, cwd):
            relative = absolute[len(cwd) :].lstrip("/")  # `../proj/.env` from /proj is `.env`
    return Target(absolute, relative, cwd is not None, searched, allowable)


def real_target(target: Target, cwd: str | None, home: str) -> Target | None:
    """Where the target really is, if a symlink takes it elsewhere and the server sees the agent's folder (the same
    machine): rules are checked against both, so a link inside an allowed folder allows nothing outside it."""
    if target.absolute is None or cwd is None or not os.path.isdir(cwd):
        return None
    try:
        real, real_cwd = os.path.realpath(target.absolute, strict=False), os.path.realpath(cwd)
    except (OSError, ValueError):  # a loop or an unreadable folder: allow nothing through it
        return Target(None, None, True, target.searched, False)
    if real == target.absolute and real_cwd == cwd:
        return None
    return path_target(real, real_cwd, home, searched=target.searched, allowable=target.allowable)


def _path_pattern(spec: str, base_dir: str, home: str) -> tuple[str, bool, str]:
    """A `Read(…)`/`Edit(…)` specifier as a wcmatch pattern, whether it is relative to the cwd, and its prefix.

    Anchors as in Claude Code: `//p` absolute, `~/p` the home directory, `/p` the directory of the policy file (as for a
    file passed to `claude --settings`), `p` or `./p` the request's working directory. As in gitignore, a pattern with
    no `/` but a trailing one matches at any depth, and a rule matching a directory matches everything inside it.
    """
    if spec.startswith("//"):
        anchor, rest = "/", spec[2:]
    elif spec == "~" or spec.startswith("~/"):
        anchor, rest = home, spec[2:]
    elif spec.startswith("/"):
        anchor, rest = base_dir, spec[1:]
    else:
        anchor, rest = "", spec.removeprefix("./")
        if not spec.startswith("./") and "/" not in rest.rstrip("/"):
            rest = "**/" + rest
    rest = rest.rstrip("/") or "**"
    segments = rest.split("/")
    if any(segment in (".", "..") for segment in segments) or rest.startswith("/"):
        raise RuleError("a path pattern may not contain `.` or `..` segments or empty ones")
    if spec.startswith("!"):
        raise RuleError("negated (`!`) patterns are not supported; use a deny or ask rule")
    literal = []
    for segment in segments:
        if re.search(r"[*?\[\\]", segment):
            break
        literal.append(segment)
    if anchor == "":
        return rest, True, "/".join(literal)
    root = anchor.rstrip("/")
    return f"{glob.escape(root)}/{rest}", False, "/".join([root, *literal]) or "/"


@functools.lru_cache(maxsize=4096)
def _path_regex(spec: str, base_dir: str, home: str) -> tuple[str, bool, str, str | None]:
    """A path rule's regex, whether it is relative, its prefix, and the name if it is a bare name (cached: an agent's
    table repeats the global rules, and wcmatch takes 0.5 ms a pattern)."""
    pattern, relative, prefix = _path_pattern(spec, base_dir, home)
    name = pattern[3:] if relative and pattern.startswith("**/") and "/" not in pattern[3:] else None
    # The pattern, everything under what it matches, and for `dir/**` the directory itself.
    alternatives = [name] if name else [pattern, pattern + "/**"] + ([pattern[:-3]] if pattern.endswith("/**") else [])
    try:
        regex = "|".join(glob.translate(alternatives, flags=_GLOB_FLAGS)[0])
    except Exception as exc:  # wcmatch raises ValueError and friends on patterns it rejects
        raise RuleError(f"not a valid glob pattern: {exc}") from None
    return regex, relative, prefix, name


_Combined = tuple[re.Pattern[str] | None, list[_PathRule]]
_compile = functools.lru_cache(maxsize=256)(re.compile)  # re's own cache is too small for 1,000 rules


def _combine(entries: list[tuple[_PathRule, str]], flags: int) -> _Combined:
    """One regex for many rules; the named group that matched tells which rule."""
    regex = "|".join(f"(?P<r{index}>{pattern})" for index, (_, pattern) in enumerate(entries))
    return (_compile(regex, flags) if entries else None), [path_rule for path_rule, _ in entries]


def _first(combined: _Combined, path: str) -> Rule | None:
    regex, path_rules = combined
    found = regex.fullmatch(path) if regex is not None else None
    return path_rules[int(found.lastgroup[1:])].rule if found and found.lastgroup else None


class PathSet:
    """The path rules of one family (Read or Edit) for one action.

    Absolute and relative patterns become one regex each. A bare name (`.env`, `*.key`: gitignore's "at any depth")
    covers a path when any segment of it matches, so names are looked up segment by segment instead: wcmatch's regex
    for a leading `**/` backtracks at every character, which made 60 such deny rules cost 0.2 ms a call.

    Deny and ask rules ignore case (`Read(.env)` covers `.ENV`, which is the same file on macOS and Windows file
    systems): a restriction may over-match, an allow rule may not.
    """

    def __init__(self) -> None:
        self.rules: list[_PathRule] = []
        self._names: dict[str, Rule] = {}
        self._entries: dict[str, list[tuple[_PathRule, str]]] = {"absolute": [], "relative": [], "names": []}
        self._combined: dict[str, _Combined] = {}
        self._fold = False

    def add(self, rule: Rule, spec: str, base_dir: str, home: str) -> None:
        regex, relative, prefix, name = _path_regex(spec, base_dir, home)
        path_rule = _PathRule(rule, relative, prefix)
        self.rules.append(path_rule)
        self._fold = rule.action != "allow"
        if name and not re.search(r"[*?\[\\]", name):
            self._names.setdefault(name.casefold() if self._fold else name, rule)
        else:
            self._entries["names" if name else "relative" if relative else "absolute"].append((path_rule, regex))

    def freeze(self) -> None:
        flags = re.IGNORECASE if self._fold else 0
        self._combined = {kind: _combine(entries, flags) for kind, entries in self._entries.items()}

    def _named(self, relative: str) -> Rule | None:
        for segment in relative.split("/") if relative else ():
            if rule := self._names.get(segment.casefold() if self._fold else segment) or _first(
                self._combined["names"], segment
            ):
                return rule
        return None

    def match(self, target: Target) -> Rule | None:
        """A rule that covers the target."""
        if target.absolute is not None and (rule := _first(self._combined["absolute"], target.absolute)):
            return rule
        if target.relative is None:
            return None
        return self._named(target.relative) or _first(self._combined["relative"], target.relative)

    def possible(self, target: Target) -> Rule | None:
        """A rule that may cover the target though it does not match: a path or cwd is unknown, or it covers files
        inside the folder a Grep searches. (Glob and LS list names only, so a rule inside their folder does not count.)
        """
        if not self.rules:
            return None
        if target.absolute is None and target.relative is None:
            return self.rules[0].rule
        if target.absolute is not None and not target.cwd_known and not target.searched:
            # Some working directory could make a relative rule cover the path: try every one.
            parts = target.absolute.strip("/")
            if rule := self._named(parts):
                return rule
            segments = parts.split("/")
            for start in range(len(segments)):
                if rule := _first(self._combined["relative"], "/".join(segments[start:])):
                    return rule
        for path_rule in self.rules:
            if not path_rule.relative:
                if target.absolute is None or (target.searched and _related(path_rule.prefix, target.absolute)):
                    return path_rule.rule
            elif target.relative is not None:
                if target.searched and _related(path_rule.prefix, target.relative):
                    return path_rule.rule
            elif target.searched and not target.cwd_known:
                return path_rule.rule
        return None
