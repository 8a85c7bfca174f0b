"""Rule strings parsed and indexed by tool, for matching: one `Index` per action in each table of the rule set.

`Bash(…)` patterns are compiled in `bash_rules`, `Read(…)`/`Edit(…)` patterns in `path_rules`, and `WebFetch(domain:…)`
patterns here.
"""

from __future__ import annotations

import re

from approval_server.policy.bash_rules import BashRule, bash_pattern
from approval_server.policy.path_rules import PathSet
from approval_server.policy.rule import EDIT_TOOLS, READ_TOOLS, Action, Rule, RuleError
from approval_server.policy.shell import CONTROL, Argv
from approval_server.weburl import host_named

# ---------------------------------------------------------------------------------------------------------------
# WebFetch


def _domain_pattern(value: str) -> str | re.Pattern[str]:
    """`domain:` as documented by Claude Code: exact host; `*.x` any subdomain of x at any depth, not x itself; a `*`
    elsewhere matches within one label, so `example.*` matches `example.org` but not `example.evil.com`."""
    value = value.strip().lower().removesuffix(".")
    labels = value.split(".")
    if not all(re.fullmatch(r"[a-z0-9_*-]+", label) for label in labels):
        raise RuleError("not a domain name (write an ASCII name, in punycode if need be: domain:example.com)")
    if "*" not in value:
        if (host := host_named(value)) != value:
            raise RuleError(f"the agent reads this host as {host}: write domain:{host}" if host else "not a host")
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


class Index:
    """The rules of one action in one table, indexed for matching."""

    def __init__(self) -> None:
        self.tools: dict[str, Rule] = {}
        self.tool_globs: list[tuple[re.Pattern[str], Rule]] = []
        self.servers: dict[str, Rule] = {}
        self.bash_by_word: dict[str, list[BashRule]] = {}
        self.bash_wild: list[BashRule] = []
        self.paths = {"Read": PathSet(), "Edit": PathSet()}
        self.domains: dict[str, Rule] = {}
        self.domain_globs: list[tuple[re.Pattern[str], Rule]] = []

    def add(self, rule: Rule, base_dir: str, home: str) -> None:
        parsed = _RULE.fullmatch(rule.text)
        if parsed is None or not _TOOL_NAME.fullmatch(parsed["tool"]):
            raise RuleError("expected Tool or Tool(specifier), e.g. Bash(npm test), Read(./src/**), mcp__server")
        tool, spec = parsed["tool"], parsed["spec"]
        if spec is not None and CONTROL.search(spec):
            raise RuleError("control characters are not allowed in a rule")
        if "*" in tool:
            self._add_tool_glob(rule, tool, spec)
        elif spec is None and tool.startswith("mcp__") and "__" not in tool[len("mcp__") :]:
            self.servers.setdefault(tool[len("mcp__") :], rule)
        elif spec is None or spec == "*" or (tool == "WebFetch" and spec.strip() == "domain:*"):
            for name in READ_TOOLS if tool == "Read" else EDIT_TOOLS if tool == "Edit" else (tool,):
                self.tools.setdefault(name, rule)
        elif tool.startswith("mcp__"):
            raise RuleError("an MCP rule names a server or a tool, without parentheses")
        elif tool == "Bash":
            regex, exact, first = bash_pattern(spec)
            bash_rule = BashRule(rule, regex, exact)
            (self.bash_by_word.setdefault(first, []) if first is not None else self.bash_wild).append(bash_rule)
        elif tool in ("Read", "Edit"):
            self.paths[tool].add(rule, spec, base_dir, home)
        elif tool in _PATH_ALIASES:
            family = _PATH_ALIASES[tool]
            raise RuleError(f"Claude Code never matches {tool}(path); write {family}({spec}), which covers {tool}")
        elif tool == "WebFetch":
            if not spec.startswith("domain:"):
                raise RuleError("a WebFetch rule takes domain:<host>, e.g. WebFetch(domain:example.com)")
            domain = _domain_pattern(spec[len("domain:") :])
            if isinstance(domain, str):
                self.domains.setdefault(domain, rule)
            else:
                self.domain_globs.append((domain, rule))
        else:
            raise RuleError(
                f"{tool} rules take no specifier here (supported: Bash, Read, Edit, WebFetch); write {tool}"
            )

    def _add_tool_glob(self, rule: Rule, tool: str, spec: str | None) -> None:
        """`mcp__*`, `mcp__server__get_*`: allowed only after a literal `mcp__<server>__`, as in Claude Code."""
        if spec is not None:
            raise RuleError("a tool-name pattern takes no specifier")
        server = re.fullmatch(r"mcp__([^*]+?)__(.*)", tool)
        if rule.action == "allow" and server is None:
            raise RuleError("an allow rule may use * in the tool name only after mcp__<server>__")
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
        candidates: list[BashRule] = self.bash_by_word.get(argv.words[0], [])
        for bash_rule in (*candidates, *self.bash_wild):
            if (bash_rule.exact or not exact_only) and bash_rule.regex.fullmatch(argv.joined):
                return bash_rule.rule
        return None

    def domain(self, host: str) -> Rule | None:
        if rule := self.domains.get(host):
            return rule
        return next((rule for regex, rule in self.domain_globs if regex.fullmatch(host)), None)


Table = dict[Action, Index]
