"""`Bash(…)` rules: a rule's command pattern as a regex over the words of one simple command.

The command itself is read by `shell.analyse`; the rule set matches each simple command it finds against these.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass

from approval_server.policy.rule import Rule, RuleError


@functools.lru_cache(maxsize=4096)
def bash_pattern(spec: str) -> tuple[re.Pattern[str], bool, str | None]:
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
        raise RuleError(str(exc).lower()) from None
    if not tokens:
        raise RuleError("the command pattern is empty")
    if any(token and not token.strip("();<>|&") for token in tokens):
        raise RuleError(
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
class BashRule:
    rule: Rule
    regex: re.Pattern[str]
    exact: bool
