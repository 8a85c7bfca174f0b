"""Reading policy.toml: its tables of rules, checked, with the file and line of every problem.

tomllib reads the file; the line numbers it does not give for a value are found in the source.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from approval_server.errors import ConfigError
from approval_server.policy.rule import ACTIONS_BY_PRECEDENCE, Rule, RuleError
from approval_server.policy.rule_index import Index, Table

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


def load_tables(text: str, path: Path) -> tuple[dict[str | None, Table], str]:
    """The rule tables of a policy file's text (by agent, `None` for the global one) and the home directory its `~`
    patterns are anchored at; `path` names the file in messages and anchors `/path` patterns at its directory.

    Raises `ConfigError` naming the file and the line of every problem found.
    """
    loader = _Loader(path, text)
    return loader.load(), loader.home


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

    def load(self) -> dict[str | None, Table]:
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
        tables: dict[str | None, Table] = {None: global_table}
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
        return tables

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

    def build(self, entries: list[tuple[Rule, int | None]]) -> tuple[Table, list[tuple[Rule, int | None]]]:
        """A table of these rules, and those that were valid; the others are reported."""
        table: Table = {action: Index() for action in ACTIONS_BY_PRECEDENCE}
        valid = []
        for rule, line in entries:
            try:
                table[rule.action].add(rule, self.base_dir, self.home)
            except RuleError as exc:
                self.error(line, f"{rule.action} rule {rule.text!r} is not valid: {exc}")
                continue
            valid.append((rule, line))
        for index in table.values():
            index.freeze()
        return table, valid
