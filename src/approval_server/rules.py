"""Policy rules: what runs without a human, in Claude Code's permission-rule syntax, read from a TOML file.

The file mirrors the `permissions` block of Claude Code's settings (`allow`, `deny` and `ask` lists of rule strings),
plus `[agent."<name>".permissions]` tables that add rules for one agent; `policy.example.toml` documents both. A
`RuleSet` answers `evaluate(tool_name, tool_input, agent=…, cwd=…)` with a `Verdict`: a matching deny rule wins over a
matching ask rule, which wins over an allow rule, and anything unmatched asks. Evaluation is pure and synchronous;
the only I/O is reading the file.

Where Claude Code's documentation leaves room, this module takes the stricter reading (each case is noted where it is
decided). A Bash command is allowed only if a real shell parser (bashlex) splits it into simple commands that are each
allowed, and it holds nothing whose effect the text does not show: expansions, assignments, redirections to files,
heredocs, function definitions. A path is allowed only when it is lexically inside an allowed pattern, has no `..`
and (where the server sees the folder) does not leave it through a symlink; deny and ask path rules ignore case.
A URL is allowed only when its host parses one way (see `weburl`).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wcmatch import glob

from approval_server.errors import ConfigError
from approval_server.shell import CONTROL, PATTERN_CHARS, Analysis, Argv, analyse
from approval_server.verdict import Verdict
from approval_server.weburl import host_named, web_host

Action = Literal["allow", "deny", "ask"]
ACTIONS_BY_PRECEDENCE: tuple[Action, ...] = ("deny", "ask", "allow")
_RESTRICTIONS = ACTIONS_BY_PRECEDENCE[:2]  # what any part of a call may trigger

# Built-in tools that take a path, and the input field that holds it. `Read(path)` rules cover the first family and
# `Edit(path)` rules the second, as in Claude Code; so do the bare `Read` and `Edit` rules.
READ_TOOLS = {"Read": "file_path", "NotebookRead": "notebook_path", "Glob": "path", "Grep": "path", "LS": "path"}
EDIT_TOOLS = {"Edit": "file_path", "MultiEdit": "file_path", "Write": "file_path", "NotebookEdit": "notebook_path"}
_FAMILY = {**dict.fromkeys(READ_TOOLS, "Read"), **dict.fromkeys(EDIT_TOOLS, "Edit")}

# With no policy file: reads inside the agent's working directory, and the agent's own to-do list. Nothing else.
DEFAULT_ALLOW = ("Read(./**)", "TodoWrite")

_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.FORCEUNIX


@dataclass(frozen=True)
class Rule:
    """One rule string as written, with where it came from."""

    text: str
    action: Action
    source: str  # "policy.toml:12", or "default" for the built-in rules
    agent: str | None = None
    message: str | None = None

    @property
    def label(self) -> str:
        """How the audit trail names the rule: `policy.toml:12 deny Bash(rm:*)`."""
        agent = f' agent "{self.agent}"' if self.agent is not None else ""
        return f"{self.source}{agent} {self.action} {self.text}"


class _RuleError(ValueError):
    """A rule string that cannot be used; the loader adds the file and line."""


def _verdict(rule: Rule) -> Verdict:
    if rule.action != "deny":
        return Verdict(action=rule.action, rule=rule.label)
    where = rule.source + (f', agent "{rule.agent}"' if rule.agent is not None else "")
    lead = rule.message.rstrip(". ") if rule.message else "The owner's policy does not allow this"
    return Verdict(
        action="deny",
        rule=rule.label,
        reason=f"{lead} (policy rule {rule.text}, {where}). Do not retry this action unchanged.",
    )


def _ask(reason: str | None = None) -> Verdict:
    """An ask with no rule; the reason tells the human why nothing could allow it."""
    return Verdict(action="ask", reason=reason)


@functools.lru_cache(maxsize=4096)
def _bash_pattern(spec: str) -> tuple[re.Pattern[str], bool, str | None]:
    """A Bash rule's pattern: its regex over NUL-joined words, whether it is exact, and its literal first word.

    Claude Code matches the command text; this matches the words the shell passes (quotes removed, whitespace between
    words ignored), so `Bash(npm test)` allows `npm  test` and `'npm' test` but not `npm test x`. `*` matches any text
    and may span words; a trailing ` *` (or its equivalent `:*`) also matches nothing, but only after a whole word, so
    `Bash(ls *)` allows `ls` and `ls -la`, not `lsof`. A `*` is always a wildcard, even quoted.
    """
    text = spec[:-2] + " *" if spec.endswith(":*") else spec
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise _RuleError(str(exc).lower()) from None
    if not tokens:
        raise _RuleError("the command pattern is empty")
    if any(token and not token.strip("();<>|&") for token in tokens):
        raise _RuleError(
            "a Bash rule matches one simple command, without operators or redirections: write one rule per command "
            "(each part of a compound command must be allowed on its own; 2>&1 and >/dev/null are always accepted)"
        )
    pieces = []
    for index, word in enumerate(tokens):
        if word == "*" and index == len(tokens) - 1 and index > 0:
            pieces.append("(?:\0.*)?")
            break
        if index:
            pieces.append("\0")
        pieces.append(".*".join(re.escape(part) for part in word.split("*")))
    exact = not any("*" in token for token in tokens)
    return re.compile("".join(pieces), re.DOTALL), exact, None if "*" in tokens[0] else tokens[0]


@dataclass(frozen=True)
class _BashRule:
    rule: Rule
    regex: re.Pattern[str]
    exact: bool


# ---------------------------------------------------------------------------------------------------------------
# Paths: gitignore-style patterns with Claude Code's anchors, matched with wcmatch


@dataclass(frozen=True)
class _PathRule:
    rule: Rule
    relative: bool  # anchored at the request's working directory
    prefix: str  # its leading literal segments: it matches nothing outside (relative to the cwd when `relative`)


@dataclass(frozen=True)
class _Target:
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


def _directory(cwd: str | None) -> str | None:
    """The working directory if it is usable: absolute, with no `..`."""
    if not cwd or not cwd.startswith("/") or "\0" in cwd or ".." in cwd.split("/"):
        return None
    return _normalise(cwd)


def _target(raw: object, cwd: str | None, home: str, *, searched: bool = False, allowable: bool = True) -> _Target:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        return _Target(None, None, cwd is not None, searched, False)
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
    return _Target(absolute, relative, cwd is not None, searched, allowable)


def _real(target: _Target, cwd: str | None, home: str) -> _Target | None:
    """Where the target really is, if a symlink takes it elsewhere and the server sees the agent's folder (the same
    machine): rules are checked against both, so a link inside an allowed folder allows nothing outside it."""
    if target.absolute is None or cwd is None or not os.path.isdir(cwd):
        return None
    try:
        real, real_cwd = os.path.realpath(target.absolute, strict=False), os.path.realpath(cwd)
    except (OSError, ValueError):  # a loop or an unreadable folder: allow nothing through it
        return _Target(None, None, True, target.searched, False)
    if real == target.absolute and real_cwd == cwd:
        return None
    return _target(real, real_cwd, home, searched=target.searched, allowable=target.allowable)


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
        raise _RuleError("a path pattern may not contain `.` or `..` segments or empty ones")
    if spec.startswith("!"):
        raise _RuleError("negated (`!`) patterns are not supported; use a deny or ask rule")
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
        raise _RuleError(f"not a valid glob pattern: {exc}") from None
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


class _PathSet:
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

    def match(self, target: _Target) -> Rule | None:
        """A rule that covers the target."""
        if target.absolute is not None and (rule := _first(self._combined["absolute"], target.absolute)):
            return rule
        if target.relative is None:
            return None
        return self._named(target.relative) or _first(self._combined["relative"], target.relative)

    def possible(self, target: _Target) -> Rule | None:
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


# ---------------------------------------------------------------------------------------------------------------
# WebFetch


def _domain_pattern(value: str) -> str | re.Pattern[str]:
    """`domain:` as documented by Claude Code: exact host; `*.x` any subdomain of x at any depth, not x itself; a `*`
    elsewhere matches within one label, so `example.*` matches `example.org` but not `example.evil.com`."""
    value = value.strip().lower().removesuffix(".")
    labels = value.split(".")
    if not all(re.fullmatch(r"[a-z0-9_*-]+", label) for label in labels):
        raise _RuleError("not a domain name (write an ASCII name, in punycode if need be: domain:example.com)")
    if "*" not in value:
        if (host := host_named(value)) != value:
            raise _RuleError(f"the agent reads this host as {host}: write domain:{host}" if host else "not a host")
        return value
    head = r"(?:[^.]+\.)+" if labels[0] == "*" and len(labels) > 1 else ""
    body = labels[1:] if head else labels
    return re.compile(head + r"\.".join("[^.]*".join(map(re.escape, label.split("*"))) for label in body))


# ---------------------------------------------------------------------------------------------------------------
# Rule parsing and indexing

_RULE = re.compile(r"(?P<tool>[^()]+?)(?:\((?P<spec>.*)\))?", re.DOTALL)
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.*-]+")
_PATH_ALIASES = {
    **dict.fromkeys(("Write", "MultiEdit", "NotebookEdit"), "Edit"),
    **dict.fromkeys(("Glob", "Grep", "LS", "NotebookRead"), "Read"),
}


class _Index:
    """The rules of one action in one table, indexed for matching."""

    def __init__(self) -> None:
        self.tools: dict[str, Rule] = {}
        self.tool_globs: list[tuple[re.Pattern[str], Rule]] = []
        self.servers: dict[str, Rule] = {}
        self.bash_by_word: dict[str, list[_BashRule]] = {}
        self.bash_wild: list[_BashRule] = []
        self.paths = {"Read": _PathSet(), "Edit": _PathSet()}
        self.domains: dict[str, Rule] = {}
        self.domain_globs: list[tuple[re.Pattern[str], Rule]] = []

    def add(self, rule: Rule, base_dir: str, home: str) -> None:
        parsed = _RULE.fullmatch(rule.text)
        if parsed is None or not _TOOL_NAME.fullmatch(parsed["tool"]):
            raise _RuleError("expected Tool or Tool(specifier), e.g. Bash(npm test), Read(./src/**), mcp__server")
        tool, spec = parsed["tool"], parsed["spec"]
        if spec is not None and CONTROL.search(spec):
            raise _RuleError("control characters are not allowed in a rule")
        if "*" in tool:
            self._add_tool_glob(rule, tool, spec)
        elif spec is None and tool.startswith("mcp__") and "__" not in tool[len("mcp__") :]:
            self.servers.setdefault(tool[len("mcp__") :], rule)
        elif spec is None or spec == "*" or (tool == "WebFetch" and spec.strip() == "domain:*"):
            for name in READ_TOOLS if tool == "Read" else EDIT_TOOLS if tool == "Edit" else (tool,):
                self.tools.setdefault(name, rule)
        elif tool.startswith("mcp__"):
            raise _RuleError("an MCP rule names a server or a tool, without parentheses")
        elif tool == "Bash":
            regex, exact, first = _bash_pattern(spec)
            bash_rule = _BashRule(rule, regex, exact)
            (self.bash_by_word.setdefault(first, []) if first is not None else self.bash_wild).append(bash_rule)
        elif tool in ("Read", "Edit"):
            self.paths[tool].add(rule, spec, base_dir, home)
        elif tool in _PATH_ALIASES:
            family = _PATH_ALIASES[tool]
            raise _RuleError(f"Claude Code never matches {tool}(path); write {family}({spec}), which covers {tool}")
        elif tool == "WebFetch":
            if not spec.startswith("domain:"):
                raise _RuleError("a WebFetch rule takes domain:<host>, e.g. WebFetch(domain:example.com)")
            domain = _domain_pattern(spec[len("domain:") :])
            if isinstance(domain, str):
                self.domains.setdefault(domain, rule)
            else:
                self.domain_globs.append((domain, rule))
        else:
            raise _RuleError(
                f"{tool} rules take no specifier here (supported: Bash, Read, Edit, WebFetch); write {tool}"
            )

    def _add_tool_glob(self, rule: Rule, tool: str, spec: str | None) -> None:
        """`mcp__*`, `mcp__server__get_*`: allowed only after a literal `mcp__<server>__`, as in Claude Code."""
        if spec is not None:
            raise _RuleError("a tool-name pattern takes no specifier")
        server = re.fullmatch(r"mcp__([^*]+?)__(.*)", tool)
        if rule.action == "allow" and server is None:
            raise _RuleError("an allow rule may use * in the tool name only after mcp__<server>__")
        if server is not None and server[2] == "*":
            self.servers.setdefault(server[1], rule)
        else:
            self.tool_globs.append((re.compile(".*".join(map(re.escape, tool.split("*"))), re.DOTALL), rule))

    def freeze(self) -> None:
        for path_set in self.paths.values():
            path_set.freeze()

    def tool(self, name: str) -> Rule | None:
        """A rule that names the whole tool (or its server)."""
        if rule := self.tools.get(name):
            return rule
        server, separator, _ = name.removeprefix("mcp__").partition("__")
        if name.startswith("mcp__") and separator and (rule := self.servers.get(server)):
            return rule
        return next((rule for regex, rule in self.tool_globs if regex.fullmatch(name)), None)

    def bash(self, argv: Argv, *, exact_only: bool = False) -> Rule | None:
        candidates: list[_BashRule] = self.bash_by_word.get(argv.words[0], [])
        for bash_rule in (*candidates, *self.bash_wild):
            if (bash_rule.exact or not exact_only) and bash_rule.regex.fullmatch(argv.joined):
                return bash_rule.rule
        return None

    def domain(self, host: str) -> Rule | None:
        if rule := self.domains.get(host):
            return rule
        return next((rule for regex, rule in self.domain_globs if regex.fullmatch(host)), None)


_Table = dict[Action, _Index]


# ---------------------------------------------------------------------------------------------------------------
# The rule set


class RuleSet:
    """The rules of a policy file, or the built-in default, ready to evaluate tool calls.

    An agent's table holds the global rules and the agent's own, so its rules add to the global ones and cannot
    override a global deny.
    """

    def __init__(self, tables: dict[str | None, _Table], home: str) -> None:
        self._tables = tables
        self._home = home

    @classmethod
    def default(cls) -> RuleSet:
        """Reads inside the agent's working directory and `TodoWrite` are allowed; everything else asks."""
        home = os.path.expanduser("~")
        table: _Table = {action: _Index() for action in ACTIONS_BY_PRECEDENCE}
        for text in DEFAULT_ALLOW:
            table["allow"].add(Rule(text, "allow", "default"), "/", home)
        for index in table.values():
            index.freeze()
        return cls({None: table}, home)

    @classmethod
    def from_toml(cls, text: str, path: Path | str = "policy.toml") -> RuleSet:
        """Rules from TOML text; `path` names the file in messages and anchors `/path` patterns at its directory.

        Raises `ConfigError` naming the file and the line of every problem found.
        """
        return _Loader(Path(path), text).load()

    def evaluate(
        self, tool_name: str, tool_input: dict[str, Any], *, agent: str | None = None, cwd: str | None = None
    ) -> Verdict:
        """The verdict on one tool call: deny wins over ask, ask over allow, and anything unmatched asks.

        `agent` picks the `[agent."<name>"]` table (if the file has one); `cwd` is the agent's working directory,
        which relative path patterns need: without it, they never allow.
        """
        table = self._tables.get(agent, self._tables[None])
        inputs = tool_input if isinstance(tool_input, dict) else {}
        directory = _directory(cwd)
        if tool_name == "Bash":
            return self._bash(table, inputs.get("command"), directory)
        if tool_name in _FAMILY:
            return self._path(table, tool_name, inputs, directory)
        if tool_name == "WebFetch":
            return self._web(table, inputs.get("url"))
        for action in ACTIONS_BY_PRECEDENCE:
            if rule := table[action].tool(tool_name):
                return _verdict(rule)
        return _ask()

    # In each of these, every kind of deny rule is tried before any ask rule, and every ask rule before any allow.

    def _bash(self, table: _Table, command: object, cwd: str | None) -> Verdict:
        analysis = analyse(command) if isinstance(command, str) else None
        files = self._file_targets(analysis, cwd) if analysis else []
        for action in _RESTRICTIONS:
            if rule := table[action].tool("Bash"):
                return _verdict(rule)
            # Any part of the command, looked through wrappers, `sh -c` and `eval`, or any file it names.
            for view in analysis.views if analysis else ():
                if rule := table[action].bash(view):
                    return _verdict(rule)
            if verdict := self._file_rule(table[action], files):
                return verdict
        if analysis is None:
            return _ask("The Bash call has no command.")
        for word, _, target in files:
            for action in _RESTRICTIONS:
                for family in ("Read", "Edit"):
                    if rule := table[action].paths[family].possible(target):
                        return _ask(f"Not allowed automatically: `{word}` may be covered by {rule.label}.")
        if rule := table["allow"].tool("Bash"):
            return _verdict(rule)
        if analysis.hazard:
            return _ask(f"Not allowed automatically: {analysis.hazard}.")
        labels = []
        for argv, exact_only in analysis.allow:
            rule = table["allow"].bash(argv, exact_only=exact_only)
            if rule is None:
                only = " (only a rule without * can allow it)" if exact_only else ""
                return _ask(f"No allow rule matches `{shlex.join(argv.words)}`{only}.")
            labels.append(rule.label)
        return Verdict(action="allow", rule="; ".join(dict.fromkeys(labels)))

    def _file_targets(self, analysis: Analysis, cwd: str | None) -> list[tuple[str, bool, _Target]]:
        """The files a command names (`cat .env`, `> ~/.bashrc`), which Read and Edit deny/ask rules also cover."""
        base = None if analysis.changes_dir else cwd
        targets = []
        for word, certain in analysis.files:
            target = _target(None if PATTERN_CHARS.search(word) else word, base, self._home)
            real = _real(target, base, self._home)
            targets += [(word, certain, target)] + ([(word, certain, real)] if real else [])
        return targets

    @staticmethod
    def _file_rule(index: _Index, files: list[tuple[str, bool, _Target]]) -> Verdict | None:
        """A rule of this action covering a named file; a word that may be a pattern (`grep .env x`) only asks."""
        for word, certain, target in files:
            for family in ("Read", "Edit"):
                if rule := index.paths[family].match(target):
                    if certain:
                        return _verdict(rule)
                    return _ask(f"Not allowed automatically: `{word}` may name a file {rule.label} covers.")
        return None

    def _path(self, table: _Table, tool_name: str, inputs: dict[str, Any], cwd: str | None) -> Verdict:
        family = _FAMILY[tool_name]
        raw = inputs.get(READ_TOOLS.get(tool_name) or EDIT_TOOLS[tool_name])
        if raw is None and tool_name in ("Glob", "Grep"):
            raw = cwd or "."  # they search the working directory by default
        pattern = inputs.get("pattern") if tool_name == "Glob" else None
        contained = pattern is None or (
            isinstance(pattern, str) and not pattern.startswith(("/", "~")) and ".." not in pattern.split("/")
        )
        seen = _target(raw, cwd, self._home, searched=tool_name == "Grep", allowable=contained)
        targets = [seen, *filter(None, [_real(seen, cwd, self._home)])]
        # A Read deny rule also blocks the Edit tool on the same path, as in Claude Code (v2.1.208 and later).
        checks: tuple[tuple[Action, str], ...] = (("deny", family), ("ask", family))
        if tool_name in ("Edit", "MultiEdit"):
            checks = (("deny", family), ("deny", "Read"), ("ask", family))
        for action, checked in checks:
            for target in targets:
                if rule := table[action].tool(tool_name) or table[action].paths[checked].match(target):
                    return _verdict(rule)
        for action, checked in checks:
            for target in targets:
                if rule := table[action].paths[checked].possible(target):
                    return _ask(f"Not allowed automatically: {rule.label} may cover what this touches.")
        if rule := table["allow"].tool(tool_name):
            return _verdict(rule)
        allowed = [table["allow"].paths[family].match(target) if target.allowable else None for target in targets]
        if all(allowed) and allowed[0]:
            return _verdict(allowed[0])
        if allowed[0]:
            return _ask("Not allowed automatically: a symbolic link takes this path out of the folder its rule allows.")
        return _ask()

    def _web(self, table: _Table, url: object) -> Verdict:
        """The URL's host as the agent's runtime reads it (`weburl`). A deny or ask rule matches a host that any
        parser reads in it; a domain rule allows only a host that every parser reads alike."""
        web = web_host(url)
        for action in _RESTRICTIONS:
            index = table[action]
            if rule := index.tool("WebFetch") or next(filter(None, map(index.domain, web.readings)), None):
                return _verdict(rule)
        if web.host is None:
            return _ask(f"Not allowed automatically: {web.explanation}.")
        rule = table["allow"].tool("WebFetch") or table["allow"].domain(web.host)
        return _verdict(rule) if rule else _ask()


def load_rules(path: Path | str) -> RuleSet:
    """The rules in the policy file at `path`, or `RuleSet.default()` when there is no such file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RuleSet.default()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the policy file {path}: {exc}") from None
    return RuleSet.from_toml(text, path)


# ---------------------------------------------------------------------------------------------------------------
# Loading: tomllib reads the file; the line numbers it does not give for a value are found in the source


_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEYS = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"\s*\[\[?\s*({_KEYS})\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(rf"\s*({_KEYS})\s*=")
_LITERAL = re.compile(r"""\"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|#""")
_SECTION_KEYS = ("allow", "deny", "ask", "default", "messages")


def _key_path(text: str) -> tuple[str, ...]:
    """`agent."ci-nightly".permissions` → ("agent", "ci-nightly", "permissions")."""
    try:
        node: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return ()
    keys = []
    while isinstance(node, dict):
        ((key, node),) = node.items()
        keys.append(key)
    return tuple(keys)


def _decode(literal: str) -> str | None:
    if literal.startswith("'"):
        return literal[1:-1]
    try:
        value = tomllib.loads(f"v = {literal}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"' for key in path)


class _Locator:
    """The line of each key and string of the source, by the key path it is under (single-line strings only)."""

    def __init__(self, text: str) -> None:
        self._keys: dict[tuple[str, ...], int] = {}
        self._strings: dict[tuple[tuple[str, ...], str], int] = {}
        self._anywhere: dict[str, int] = {}
        table: tuple[str, ...] = ()
        key: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), 1):
            if header := _HEADER.match(line):
                table, key = _key_path(header[1]), ()
                self._keys.setdefault(table, number)
                continue
            rest = line
            if assignment := _ASSIGNMENT.match(line):
                key, rest = _key_path(assignment[1]), line[assignment.end() :]
                self._keys.setdefault(table + key, number)
            for literal in _LITERAL.finditer(rest):
                if literal[0] == "#":
                    break
                if (value := _decode(literal[0])) is not None:
                    self._strings.setdefault((table + key, value), number)
                    self._anywhere.setdefault(value, number)

    def line(self, path: tuple[str, ...], value: str | None = None) -> int | None:
        """The line of `value` under `path`, else of `value` anywhere, else of `path` or the nearest key above it."""
        if value is not None and (number := self._strings.get((path, value)) or self._anywhere.get(value)):
            return number
        while path:
            if path in self._keys:
                return self._keys[path]
            path = path[:-1]
        return None


class _Loader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.locator = _Locator(text)
        self.base_dir = str(path.absolute().parent)
        self.home = os.path.expanduser("~")
        self.errors: list[str] = []

    def error(self, line: int | None, message: str) -> None:
        self.errors.append(f"line {line}: {message}" if line else message)

    def load(self) -> RuleSet:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"The policy file {self.path} is not valid TOML: {exc}.") from None
        for key in data:
            if key not in ("permissions", "agent"):
                self.error(
                    self.locator.line((key,)),
                    f'unknown key "{key}": expected [permissions] and [agent."<name>".permissions]',
                )
        entries = self.section(data.get("permissions", {}), ("permissions",), None)
        global_table, valid = self.build(entries)
        tables: dict[str | None, _Table] = {None: global_table}
        agents = data.get("agent", {})
        if not isinstance(agents, dict):
            self.error(self.locator.line(("agent",)), 'agent must hold tables: [agent."<name>".permissions]')
            agents = {}
        for name, value in agents.items():
            where = ("agent", name)
            if not isinstance(value, dict):
                self.error(self.locator.line(where), f'[{_dotted(where)}] must be a table with a "permissions" table')
                continue
            for key in value:
                if key != "permissions":
                    line = self.locator.line((*where, key))
                    self.error(
                        line, f'unknown key "{key}" in [{_dotted(where)}]: put rules in [{_dotted(where)}.permissions]'
                    )
            tables[name] = self.build(
                valid + self.section(value.get("permissions", {}), (*where, "permissions"), name)
            )[0]
        if self.errors:
            problems = "\n".join(f"  {error}" for error in self.errors)
            raise ConfigError(f"The policy file {self.path} is not valid:\n{problems}")
        return RuleSet(tables, self.home)

    def section(self, data: object, where: tuple[str, ...], agent: str | None) -> list[tuple[Rule, int | None]]:
        """The rules of one `permissions` table, with their lines."""
        name = _dotted(where)
        if not isinstance(data, dict):
            self.error(self.locator.line(where), f"{name} must be a table: [{name}]")
            return []
        for key in data:
            if key not in _SECTION_KEYS:
                expected = ", ".join(_SECTION_KEYS)
                self.error(self.locator.line((*where, key)), f'unknown key "{key}" in [{name}] (expected {expected})')
        if data.get("default", "ask") != "ask":
            self.error(self.locator.line((*where, "default")), 'default can only be "ask": what no rule matches asks')
        messages = data.get("messages", {})
        if not isinstance(messages, dict) or not all(isinstance(text, str) for text in messages.values()):
            self.error(self.locator.line((*where, "messages")), f"[{name}.messages] must map deny rules to strings")
            messages = {}
        entries: list[tuple[Rule, int | None]] = []
        denied = set()
        for action in ACTIONS_BY_PRECEDENCE:
            texts = data.get(action, [])
            if not isinstance(texts, list):
                self.error(self.locator.line((*where, action)), f"{action} must be a list of rule strings")
                continue
            for text in texts:
                if not isinstance(text, str):
                    self.error(self.locator.line((*where, action)), f"{action} holds {text!r}, which is not a string")
                    continue
                line = self.locator.line((*where, action), text)
                source = f"{self.path.name}:{line}" if line else self.path.name
                message = messages.get(text) if action == "deny" else None
                entries.append((Rule(text, action, source, agent, message), line))
                denied.update([text] if action == "deny" else [])
        for text in messages:
            if text not in denied:
                line = self.locator.line((*where, "messages", text))
                self.error(line, f'[{name}.messages] has a message for "{text}", which is not one of its deny rules')
        return entries

    def build(self, entries: list[tuple[Rule, int | None]]) -> tuple[_Table, list[tuple[Rule, int | None]]]:
        """A table of these rules, and those that were valid; the others are reported."""
        table: _Table = {action: _Index() for action in ACTIONS_BY_PRECEDENCE}
        valid = []
        for rule, line in entries:
            try:
                table[rule.action].add(rule, self.base_dir, self.home)
            except _RuleError as exc:
                self.error(line, f"{rule.action} rule {rule.text!r} is not valid: {exc}")
                continue
            valid.append((rule, line))
        for index in table.values():
            index.freeze()
        return table, valid
