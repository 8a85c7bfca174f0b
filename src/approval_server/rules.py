"""Policy rules: what runs without a human, in Claude Code's permission-rule syntax, read from a TOML file.

The file mirrors the `permissions` block of Claude Code's settings (`allow`, `deny` and `ask` lists of rule strings),
plus `[agent."<name>".permissions]` tables that add rules for one agent; `policy.example.toml` documents both. A
`RuleSet` answers `evaluate(tool_name, tool_input, agent=…, cwd=…)` with a `Verdict`: a matching deny rule wins over a
matching ask rule, which wins over an allow rule, and anything unmatched asks. Evaluation is pure and synchronous;
the only I/O is reading the file.

Where Claude Code's documentation leaves room, this module takes the stricter reading (each case is noted where it is
decided). A Bash command is allowed only if a real shell parser (bashlex) splits it into simple commands that are each
allowed, and it holds nothing whose effect the text does not show: expansions, assignments, redirections to files,
heredocs, function definitions. A path is allowed only when it is lexically inside an allowed pattern and has no `..`.
A URL is allowed only when its host parses one way (see `weburl`).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shlex
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bashlex  # type: ignore[import-untyped]
from wcmatch import glob

from approval_server.errors import ConfigError
from approval_server.policy import Verdict
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
_MAX_COMMAND = 10_000


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


# ---------------------------------------------------------------------------------------------------------------
# Bash: splitting a command into simple commands with bashlex, and what each of them really runs


@dataclass(frozen=True)
class _Argv:
    """A simple command's words, quotes removed, and the same joined by NUL for the rule regexes."""

    words: tuple[str, ...]
    joined: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "joined", "\0".join(self.words))


@dataclass(frozen=True)
class _Analysis:
    views: tuple[_Argv, ...]  # every simple command, also looked through wrappers: what deny and ask rules see
    allow: tuple[tuple[_Argv, bool], ...]  # per simple command: what an allow rule must match, and "exact rule only"
    files: tuple[tuple[str, bool], ...]  # words naming files that commands read or write, and "surely a file"
    changes_dir: bool  # a `cd`, `pushd` or `popd` makes relative file words unresolvable
    hazard: str | None  # why no allow rule may allow it, if anything


# Process wrappers Claude Code strips before matching (its docs list exactly these), so `Bash(npm test *)` allows
# `timeout 30 npm test`. Value: (flags, options that take an argument, positional arguments before the command).
_STRIPPED: dict[str, tuple[frozenset[str], frozenset[str], int]] = {
    "timeout": (
        frozenset({"--preserve-status", "--foreground", "-v", "--verbose"}),
        frozenset({"-k", "-s", "--kill-after", "--signal"}),
        1,
    ),
    "time": (frozenset({"-p"}), frozenset(), 0),
    "nice": (frozenset(), frozenset({"-n", "--adjustment"}), 0),
    "nohup": (frozenset(), frozenset(), 0),
    "stdbuf": (frozenset(), frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}), 0),
}
# Commands that run another command or change the shell itself. Allowing one needs an exact rule (no `*`), as Claude
# Code asks for `watch`, `setsid`, `ionice` and `flock`; stricter than Claude Code for `xargs`, which it strips. Deny
# and ask rules look through the ones in `_WRAPPERS` at the command they run.
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "-R", "--user", "--group"}), 0),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "-C", "-S", "--unset", "--chdir", "--split-string"}), 0),
    "xargs": (
        frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter", "--max-args"}),
        0,
    ),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "exec": (frozenset({"-a"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u"}), 0),
    "setsid": (frozenset(), 0),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "flock": (frozenset({"-w", "-E", "--timeout", "--conflict-exit-code"}), 1),
    "watch": (frozenset({"-n", "--interval", "-d"}), 0),
    "strace": (frozenset({"-o", "-e", "-p", "-s", "-u"}), 0),
    "ltrace": (frozenset({"-o", "-e", "-p", "-s", "-u"}), 0),
    "nsenter": (frozenset({"-t", "--target"}), 0),
    "unshare": (frozenset(), 0),
    "busybox": (frozenset(), 0),
    "unbuffer": (frozenset(), 0),
}
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "su", "runuser"})
_SHELL_STATE = frozenset(
    {"eval", "source", ".", "alias", "unalias", "enable", "hash", "set", "shopt", "trap", "export", "declare"}
    | {"typeset", "local", "readonly", "unset", "cd", "pushd", "popd", "umask", "ulimit", "let", "fc", "bind"}
)
_EXACT_ONLY = frozenset(_WRAPPERS) | _SHELLS | _SHELL_STATE
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
# Options that make a command run programs or write files: with one, only a rule without `*` allows the command, so
# `Bash(git log *)` does not allow `git log --output=~/.bashrc` (Claude Code does the same for `find -exec`/`-delete`).
# Scripts (sed, awk) are not read: a prefix rule for such a command allows whatever its script can do.
_RISKY_OPTIONS = {
    "find": _FIND_EXEC | {"-delete", "-fprint", "-fprint0", "-fprintf", "-fls"},
    "git": frozenset({"-c", "-C", "--exec-path", "--git-dir", "--work-tree", "--config-env", "--output"})
    | {"--upload-pack", "--receive-pack", "--ext-diff"},
    "sort": frozenset({"-o", "--output", "--compress-program"}),
    "sed": frozenset({"-i", "--in-place"}),
    "rg": frozenset({"--pre"}),
    "tar": frozenset({"--to-command", "--use-compress-program", "-I", "--checkpoint-action", "--info-script", "-F"}),
}
# Commands whose arguments name files they read or write: Read and Edit deny/ask rules apply to those words, as
# Claude Code applies them to `cat`, `head`, `tail`, `sed` and redirection targets.
_FILE_COMMANDS = frozenset(
    {"cat", "tac", "head", "tail", "less", "more", "sed", "awk", "grep", "egrep", "fgrep", "rg", "wc", "sort"}
    | {"uniq", "cut", "diff", "cmp", "nl", "od", "xxd", "hexdump", "strings", "base64", "cp", "mv", "tee", "touch"}
    | {"rm", "truncate", "ln", "chmod", "chown", "dd", "source", "."}
)
_PATTERN_FIRST = frozenset({"sed", "awk", "grep", "egrep", "fgrep", "rg"})  # first operand: a pattern or a script
_DIR_CHANGERS = frozenset({"cd", "pushd", "popd"})
_PATTERN_CHARS = re.compile(r"[*?\[{]")
# Expansions bash performs that bashlex mis-reads or does not report (`$'…'`, `$"…"`, `$[…]`, `((…))`): never allowed.
_OPAQUE = re.compile(r"\$[({\['\"]|`|\(\(")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _odd_character(command: str) -> str | None:
    """A control or invisible character (`\\r`, U+2028, bidi overrides…) that could make the text lie about the run."""
    if command.isascii():
        found = _CONTROL.search(command)
        return found[0] if found else None
    for char in command:
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"):
            return char
    return None


def _unwrap(words: tuple[str, ...], *, strict: bool) -> tuple[str, ...] | None:
    """The command a wrapper runs. `strict` (for allowing) refuses any option it does not know."""
    name = _base(words[0])
    if name in _STRIPPED:
        flags, with_argument, positional = _STRIPPED[name]
    else:
        flags, (with_argument, positional) = frozenset(), _WRAPPERS[name]
    index = 1
    while index < len(words) and words[index].startswith("-") and words[index] != "-":
        word = words[index]
        index += 1
        if word == "--":
            break
        known = word in flags or (name == "nice" and word[1:].isdigit()) or _attached(word, with_argument)
        if word in with_argument:
            index += 1
        elif strict and not known:
            return None
    if name == "env":
        while index < len(words) and "=" in words[index]:
            index += 1
    index += positional
    return words[index:] or None


def _attached(word: str, options: frozenset[str]) -> bool:
    """`-k5` or `--signal=KILL`: an option given with its argument in the same word."""
    return any(
        word.startswith(option + "=") if option.startswith("--") else word.startswith(option) and len(word) > 2
        for option in options
    )


def _shell_script(words: tuple[str, ...]) -> str | None:
    """The script of `sh -c '…'`, `bash -lc '…'`, `su root -c '…'`."""
    for index, word in enumerate(words[1:], 1):
        if word.startswith("--command="):
            return word.split("=", 1)[1]
        if word == "--command" or (word.startswith("-") and not word.startswith("--") and "c" in word[1:]):
            return words[index + 1] if index + 1 < len(words) else None
    return None


def _find_commands(words: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The commands `find … -exec cmd {} ;` runs."""
    index = 0
    while index < len(words):
        if words[index] in _FIND_EXEC:
            end = index + 1
            while end < len(words) and words[end] not in (";", "+"):
                end += 1
            if end > index + 1:
                yield words[index + 1 : end]
            index = end
        index += 1


def _looked_through(words: tuple[str, ...], depth: int) -> Iterator[_Argv]:
    """The command as written, by the basename of its program, and every command it runs through a wrapper."""
    yield _Argv(words)
    name = _base(words[0])
    if name != words[0]:
        yield _Argv((name, *words[1:]))
    if depth > 3:
        return
    inner: tuple[str, ...] | None = None
    if name in _STRIPPED or name in _WRAPPERS:
        inner = _unwrap(words, strict=False)
    if inner:
        yield from _looked_through(inner, depth + 1)
    script = _shell_script(words) if name in _SHELLS else " ".join(words[1:]) if name == "eval" else None
    if script:
        yield from _analyse(script, depth + 1).views
    if name == "find":
        for command in _find_commands(words):
            yield from _looked_through(command, depth + 1)


def _allow_view(words: tuple[str, ...]) -> tuple[_Argv, bool] | str:
    """What an allow rule must match for this simple command, and whether only an exact rule may; or why none may."""
    while _base(words[0]) in _STRIPPED:
        inner = _unwrap(words, strict=True)
        if inner is None:
            return f"it runs `{words[0]}` with options this checker does not know"
        words = inner
    if _PATTERN_CHARS.search(words[0]):
        return "its command name is a pattern the shell expands"
    name = _base(words[0])
    exact_only = name in _EXACT_ONLY or any(_risky(word, _RISKY_OPTIONS.get(name, ())) for word in words[1:])
    return _Argv(words), exact_only


def _risky(word: str, options: Iterable[str]) -> bool:
    """Whether the word gives one of the options, also as `--opt=value`, `-ofile` or in a cluster like `-ni`."""
    for option in options:
        if option.startswith("--"):
            if word == option or word.startswith(option + "="):
                return True
        elif len(option) == 2:
            if word.startswith("-") and not word.startswith("--") and option[1] in word[1:]:
                return True
        elif word == option:
            return True
    return False


class _Collector:
    """Walks bashlex's tree: every simple command, every file it redirects to, and the first reason to distrust it."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.targets: list[str] = []
        self.hazard: str | None = None

    def flag(self, reason: str) -> None:
        self.hazard = self.hazard or reason

    def walk(self, node: Any) -> None:
        kind = node.kind
        if kind == "command":
            self._command(node)
        elif kind in ("list", "pipeline", "if", "for", "while", "until"):
            for part in node.parts:
                self.walk(part)
        elif kind == "compound":
            for part in node.list:
                self.walk(part)
            for redirect in node.redirects:
                self._redirect(redirect)
        elif kind == "function":
            self.flag("it defines a shell function")
            for part in node.parts:
                self.walk(part)
        elif kind == "word":
            self._word(node)
        elif kind not in ("operator", "reservedword", "pipe"):
            self.flag(f"it uses a shell construct this checker does not vet ({kind})")

    def _command(self, node: Any) -> None:
        words = []
        for part in node.parts:
            if part.kind == "word":
                self._word(part)
                words.append(part.word)
            elif part.kind == "assignment":
                self.flag("it sets a variable (NAME=value)")
                self._word(part)
            elif part.kind == "redirect":
                self._redirect(part)
            else:
                self.flag(f"it uses a shell construct this checker does not vet ({part.kind})")
        if words:
            self.commands.append(tuple(words))

    def _word(self, node: Any) -> None:
        for part in node.parts:
            if part.kind in ("commandsubstitution", "processsubstitution"):
                self.flag("it runs a command inside another: $(…), `…`, <(…) or >(…)")
                self.walk(part.command)
            elif part.kind == "parameter":
                self.flag("it expands a variable ($NAME)")
            elif part.kind != "tilde":
                self.flag(f"it uses an expansion this checker does not vet ({part.kind})")

    def _redirect(self, node: Any) -> None:
        if node.type in ("<<", "<<-", "<<<"):
            self.flag("it feeds a command a heredoc or here-string")
        target = node.output
        if not hasattr(target, "kind"):  # `2>&1`, `>&-`: a file descriptor, not a file
            return
        self._word(target)
        if node.type not in ("<<", "<<-", "<<<") and target.word != "/dev/null":
            self.flag("it redirects input or output to a file")
            self.targets.append(target.word)


# A command made only of these characters, with a first word that is neither a reserved word nor an assignment, is
# one simple command whose words are its space-separated parts: no quoting, expansion, globbing, redirection or
# operator can occur in it. Such commands skip bashlex (0.3-1 ms each); tests check that both agree on them.
_PLAIN = re.compile(r"[A-Za-z0-9 _./:,@%+=-]+")
_RESERVED = frozenset(
    {"if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until", "do", "done", "in"}
    | {"function", "time", "coproc"}
)


def _plain_words(command: str) -> tuple[str, ...] | None:
    if not _PLAIN.fullmatch(command):
        return None
    words = tuple(word for word in command.split(" ") if word)
    if not words or words[0] in _RESERVED or "=" in words[0]:
        return None
    return words


@functools.lru_cache(maxsize=4096)
def _analyse(command: str, depth: int = 0) -> _Analysis:
    """Everything the rules need from one command string (cached: bashlex costs 0.1-1 ms a command)."""
    hazard = None
    if len(command) > _MAX_COMMAND:
        hazard = "it is too long to check"
    elif odd := _odd_character(command):
        hazard = f"it contains the control or invisible character U+{ord(odd):04X}"
    elif _OPAQUE.search(command):
        hazard = "it uses an expansion or arithmetic this checker does not vet"
    collector = _Collector()
    plain = _plain_words(command)
    if plain is not None:
        collector.commands.append(plain)
    else:
        try:
            for tree in bashlex.parse(command):
                collector.walk(tree)
        except Exception:  # bashlex raises several types, and AttributeError on some inputs: all mean "cannot vet"
            return _unparsed(command, depth)
    allow: list[tuple[_Argv, bool]] = []
    for words in collector.commands:
        view = _allow_view(words)
        if isinstance(view, str):
            hazard = hazard or view
        else:
            allow.append(view)
    views = tuple(view for words in collector.commands for view in _looked_through(words, depth))
    files = dict.fromkeys(collector.targets, True)
    for seen in views:
        program = _base(seen.words[0])
        if program in _FILE_COMMANDS:
            operands = [word for word in seen.words[1:] if not word.startswith("-")]
            for index, word in enumerate(operands):
                files[word] = files.get(word, False) or not (index == 0 and program in _PATTERN_FIRST)
    return _Analysis(
        views=views,
        allow=tuple(allow),
        files=tuple(files.items()),
        changes_dir=any(_base(view.words[0]) in _DIR_CHANGERS for view in views),
        hazard=hazard or collector.hazard or (None if collector.commands else "it runs no command"),
    )


def _unparsed(command: str, depth: int) -> _Analysis:
    """A command bashlex cannot parse: never allowed, but rough pieces of it still meet the deny rules."""
    views: list[_Argv] = []
    for piece in re.split(r"[;&|\n()<>`]|\$\(", command[:_MAX_COMMAND]):
        try:
            words = tuple(shlex.split(piece))
        except ValueError:
            words = tuple(piece.split())
        if words:
            views.extend(_looked_through(words, depth))
    return _Analysis(tuple(views), (), (), False, "the shell parser could not read it")


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
    return _Target(absolute, relative, cwd is not None, searched, allowable)


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


def _combine(entries: list[tuple[_PathRule, str]]) -> _Combined:
    """One regex for many rules; the named group that matched tells which rule."""
    regex = "|".join(f"(?P<r{index}>{pattern})" for index, (_, pattern) in enumerate(entries))
    return (_compile(regex) if entries else None), [path_rule for path_rule, _ in entries]


def _first(combined: _Combined, path: str) -> Rule | None:
    regex, path_rules = combined
    found = regex.fullmatch(path) if regex is not None else None
    return path_rules[int(found.lastgroup[1:])].rule if found and found.lastgroup else None


class _PathSet:
    """The path rules of one family (Read or Edit) for one action.

    Absolute and relative patterns become one regex each. A bare name (`.env`, `*.key`: gitignore's "at any depth")
    covers a path when any segment of it matches, so names are looked up segment by segment instead: wcmatch's regex
    for a leading `**/` backtracks at every character, which made 60 such deny rules cost 0.2 ms a call.
    """

    def __init__(self) -> None:
        self.rules: list[_PathRule] = []
        self._names: dict[str, Rule] = {}
        self._entries: dict[str, list[tuple[_PathRule, str]]] = {"absolute": [], "relative": [], "names": []}
        self._combined: dict[str, _Combined] = {}

    def add(self, rule: Rule, spec: str, base_dir: str, home: str) -> None:
        regex, relative, prefix, name = _path_regex(spec, base_dir, home)
        path_rule = _PathRule(rule, relative, prefix)
        self.rules.append(path_rule)
        if name and not re.search(r"[*?\[\\]", name):
            self._names.setdefault(name, rule)
        else:
            self._entries["names" if name else "relative" if relative else "absolute"].append((path_rule, regex))

    def freeze(self) -> None:
        self._combined = {kind: _combine(entries) for kind, entries in self._entries.items()}

    def _named(self, relative: str) -> Rule | None:
        for segment in relative.split("/") if relative else ():
            if rule := self._names.get(segment) or _first(self._combined["names"], segment):
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
        if spec is not None and _CONTROL.search(spec):
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

    def bash(self, argv: _Argv, *, exact_only: bool = False) -> Rule | None:
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
        analysis = _analyse(command) if isinstance(command, str) else None
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

    def _file_targets(self, analysis: _Analysis, cwd: str | None) -> list[tuple[str, bool, _Target]]:
        """The files a command names (`cat .env`, `> ~/.bashrc`), which Read and Edit deny/ask rules also cover."""
        base = None if analysis.changes_dir else cwd
        return [
            (word, certain, _target(None if _PATTERN_CHARS.search(word) else word, base, self._home))
            for word, certain in analysis.files
        ]

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
        target = _target(raw, cwd, self._home, searched=tool_name == "Grep", allowable=contained)
        # A Read deny rule also blocks the Edit tool on the same path, as in Claude Code (v2.1.208 and later).
        checks: tuple[tuple[Action, str], ...] = (("deny", family), ("ask", family))
        if tool_name in ("Edit", "MultiEdit"):
            checks = (("deny", family), ("deny", "Read"), ("ask", family))
        for action, checked in checks:
            if rule := table[action].tool(tool_name) or table[action].paths[checked].match(target):
                return _verdict(rule)
        for action, checked in checks:
            if rule := table[action].paths[checked].possible(target):
                return _ask(f"Not allowed automatically: {rule.label} may cover what this touches.")
        if rule := table["allow"].tool(tool_name):
            return _verdict(rule)
        if target.allowable and (rule := table["allow"].paths[family].match(target)):
            return _verdict(rule)
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
