"""The policy rules as a set: what runs without a human, in Claude Code's permission-rule syntax, read from a TOML
file (by `policy_file`), and their evaluation.

The file mirrors the `permissions` block of Claude Code's settings (`allow`, `deny` and `ask` lists of rule strings),
plus `[agent."<name>".permissions]` tables that add rules for one agent; `policy.example.toml` documents both. A
`RuleSet` answers `evaluate(tool_name, tool_input, agent=…, cwd=…)` with a `Verdict`: a matching deny rule wins over a
matching ask rule, which wins over an allow rule, and anything unmatched asks. Evaluation is pure and synchronous;
the only I/O is reading the file.

Where Claude Code's documentation leaves room, the rule modules take the stricter reading (each case is noted where
it is decided: here, in `bash_rules`, `path_rules` and `rule_index`). A Bash command is allowed only if a real shell
parser (bashlex) splits it into simple commands that are each allowed, and it holds nothing whose effect the text does
not show: expansions, assignments, redirections to files, heredocs, function definitions. A path is allowed only when
it is lexically inside an allowed pattern, has no `..` and (where the server sees the folder) does not leave it
through a symlink; deny and ask path rules ignore case. A URL is allowed only when its host parses one way (see
`weburl`).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from approval_server.errors import ConfigError
from approval_server.policy.path_rules import Target, path_target, real_target, working_directory
from approval_server.policy.policy_file import load_tables
from approval_server.policy.rule import ACTIONS_BY_PRECEDENCE, EDIT_TOOLS, READ_TOOLS, Action, Rule, Verdict
from approval_server.policy.rule_index import Index, Table
from approval_server.policy.shell import PATTERN_CHARS, Analysis, analyse
from approval_server.weburl import web_host

_RESTRICTIONS = ACTIONS_BY_PRECEDENCE[:2]  # what any part of a call may trigger
_FAMILY = {**dict.fromkeys(READ_TOOLS, "Read"), **dict.fromkeys(EDIT_TOOLS, "Edit")}

# With no policy file: reads inside the agent's working directory, and the agent's own to-do list. Nothing else.
DEFAULT_ALLOW = ("Read(./**)", "TodoWrite")


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


class RuleSet:
    """The rules of a policy file, or the built-in default, ready to evaluate tool calls.

    An agent's table holds the global rules and the agent's own, so its rules add to the global ones and cannot
    override a global deny.
    """

    def __init__(self, tables: dict[str | None, Table], home: str) -> None:
        self._tables = tables
        self._home = home

    @classmethod
    def default(cls) -> RuleSet:
        """Reads inside the agent's working directory and `TodoWrite` are allowed; everything else asks."""
        home = os.path.expanduser("~")
        table: Table = {action: Index() for action in ACTIONS_BY_PRECEDENCE}
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
        return cls(*load_tables(text, Path(path)))

    def evaluate(
        self, tool_name: str, tool_input: dict[str, Any], *, agent: str | None = None, cwd: str | None = None
    ) -> Verdict:
        """The verdict on one tool call: deny wins over ask, ask over allow, and anything unmatched asks.

        `agent` picks the `[agent."<name>"]` table (if the file has one); `cwd` is the agent's working directory,
        which relative path patterns need: without it, they never allow.
        """
        table = self._tables.get(agent, self._tables[None])
        inputs = tool_input if isinstance(tool_input, dict) else {}
        directory = working_directory(cwd)
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

    def _bash(self, table: Table, command: object, cwd: str | None) -> Verdict:
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

    def _file_targets(self, analysis: Analysis, cwd: str | None) -> list[tuple[str, bool, Target]]:
        """The files a command names (`cat .env`, `> ~/.bashrc`), which Read and Edit deny/ask rules also cover."""
        base = None if analysis.changes_dir else cwd
        targets = []
        for word, certain in analysis.files:
            target = path_target(None if PATTERN_CHARS.search(word) else word, base, self._home)
            real = real_target(target, base, self._home)
            targets += [(word, certain, target)] + ([(word, certain, real)] if real else [])
        return targets

    @staticmethod
    def _file_rule(index: Index, files: list[tuple[str, bool, Target]]) -> Verdict | None:
        """A rule of this action covering a named file; a word that may be a pattern (`grep .env x`) only asks."""
        for word, certain, target in files:
            for family in ("Read", "Edit"):
                if rule := index.paths[family].match(target):
                    if certain:
                        return _verdict(rule)
                    return _ask(f"Not allowed automatically: `{word}` may name a file {rule.label} covers.")
        return None

    def _path(self, table: Table, tool_name: str, inputs: dict[str, Any], cwd: str | None) -> Verdict:
        family = _FAMILY[tool_name]
        raw = inputs.get(READ_TOOLS.get(tool_name) or EDIT_TOOLS[tool_name])
        if raw is None and tool_name in ("Glob", "Grep"):
            raw = cwd or "."  # they search the working directory by default
        pattern = inputs.get("pattern") if tool_name == "Glob" else None
        contained = pattern is None or (
            isinstance(pattern, str) and not pattern.startswith(("/", "~")) and ".." not in pattern.split("/")
        )
        seen = path_target(raw, cwd, self._home, searched=tool_name == "Grep", allowable=contained)
        targets = [seen, *filter(None, [real_target(seen, cwd, self._home)])]
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

    def _web(self, table: Table, url: object) -> Verdict:
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
