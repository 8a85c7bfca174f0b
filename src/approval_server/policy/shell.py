"""What a Bash command really runs, read with a real shell parser (bashlex): its simple commands, looked through
wrappers, `sh -c` and `eval`; the files they name; and the first reason not to trust the text.

The policy rules (`rule_set`) and the server's self-protection (`self_protect`) both read commands through `analyse`.
"""

from __future__ import annotations

import functools
import re
import shlex
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bashlex  # type: ignore[import-untyped]

from approval_server.policy.command_paths import file_words, git_scripts, leaves_directory

MAX_COMMAND = 10_000


@dataclass(frozen=True)
class Argv:
    """A simple command's words, quotes removed, and the same joined by NUL for the rule regexes."""

    words: tuple[str, ...]
    joined: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "joined", "\0".join(self.words))


@dataclass(frozen=True)
class Analysis:
    views: tuple[Argv, ...]  # every simple command, also looked through wrappers: what deny and ask rules see
    allow: tuple[tuple[Argv, bool], ...]  # per simple command: what an allow rule must match, and "exact rule only"
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
    | {"--upload-pack", "--receive-pack", "--ext-diff", "--textconv", "--open-files-in-pager", "-O"},
    "sort": frozenset({"-o", "--output", "--compress-program"}),
    "sed": frozenset({"-i", "--in-place"}),
    "rg": frozenset({"--pre"}),
    "tar": frozenset({"--to-command", "--use-compress-program", "-I", "--checkpoint-action", "--info-script", "-F"}),
}
_DIR_CHANGERS = frozenset({"cd", "pushd", "popd"})
PATTERN_CHARS = re.compile(r"[*?\[{]")
# Expansions bash performs that bashlex mis-reads or does not report (`$'…'`, `$"…"`, `$[…]`, `((…))`): never allowed.
_OPAQUE = re.compile(r"\$[({\['\"]|`|\(\(")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def base_name(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _odd_character(command: str) -> str | None:
    """A control or invisible character (`\\r`, U+2028, bidi overrides…) that could make the text lie about the run."""
    if command.isascii():
        found = CONTROL.search(command)
        return found[0] if found else None
    for char in command:
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"):
            return char
    return None


def _unwrap(words: tuple[str, ...], *, strict: bool) -> tuple[str, ...] | None:
    """The command a wrapper runs. `strict` (for allowing) refuses any option it does not know."""
    name = base_name(words[0])
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


def _looked_through(words: tuple[str, ...], depth: int) -> Iterator[Argv]:
    """The command as written, by the basename of its program, and every command it runs through a wrapper."""
    yield Argv(words)
    name = base_name(words[0])
    if name != words[0]:
        yield Argv((name, *words[1:]))
    if depth > 3:
        return
    inner: tuple[str, ...] | None = None
    if name in _STRIPPED or name in _WRAPPERS:
        inner = _unwrap(words, strict=False)
    if inner:
        yield from _looked_through(inner, depth + 1)
    script = _shell_script(words) if name in _SHELLS else " ".join(words[1:]) if name == "eval" else None
    if script:
        yield from analyse(script, depth + 1).views
    if name == "find":
        for command in _find_commands(words):
            yield from _looked_through(command, depth + 1)


def _allow_view(words: tuple[str, ...]) -> tuple[Argv, bool] | str:
    """What an allow rule must match for this simple command, and whether only an exact rule may; or why none may."""
    while base_name(words[0]) in _STRIPPED:
        inner = _unwrap(words, strict=True)
        if inner is None:
            return f"it runs `{words[0]}` with options this checker does not know"
        words = inner
    if PATTERN_CHARS.search(words[0]):
        return "its command name is a pattern the shell expands"
    name = base_name(words[0])
    exact_only = name in _EXACT_ONLY or any(_risky(word, _RISKY_OPTIONS.get(name, ())) for word in words[1:])
    return Argv(words), exact_only


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
def analyse(command: str, depth: int = 0) -> Analysis:
    """Everything the rules need from one command string (cached: bashlex costs 0.1-1 ms a command)."""
    hazard = None
    if len(command) > MAX_COMMAND:
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
    allow: list[tuple[Argv, bool]] = []
    for words in collector.commands:
        view = _allow_view(words)
        if isinstance(view, str):
            hazard = hazard or view
        else:
            allow.append(view)
    views = tuple(view for words in collector.commands for view in _looked_through(words, depth))
    scripts = tuple(
        view for seen in views for script in git_scripts(seen.words) for view in analyse(script, depth + 1).views
    )
    views += scripts if depth <= 3 else ()
    files = dict.fromkeys(collector.targets, True)
    for seen in views:
        for word, certain in file_words(seen.words):
            files[word] = files.get(word, False) or certain
    return Analysis(
        views=views,
        allow=tuple(allow),
        files=tuple(files.items()),
        changes_dir=any(base_name(view.words[0]) in _DIR_CHANGERS or leaves_directory(view.words) for view in views),
        hazard=hazard or collector.hazard or (None if collector.commands else "it runs no command"),
    )


def _unparsed(command: str, depth: int) -> Analysis:
    """A command bashlex cannot parse: never allowed, but rough pieces of it still meet the deny rules."""
    views: list[Argv] = []
    for piece in re.split(r"[;&|\n()<>`]|\$\(", command[:MAX_COMMAND]):
        try:
            words = tuple(shlex.split(piece))
        except ValueError:
            words = tuple(piece.split())
        if words:
            views.extend(_looked_through(words, depth))
    return Analysis(tuple(views), (), (), False, "the shell parser could not read it")
