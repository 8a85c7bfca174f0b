"""Which words of one simple command name files it reads or writes, so that Read and Edit rules also see them.

`cat .env` reads `.env`; so do `git diff --no-index .env /dev/null`, `git log -p -- .env`, `git show HEAD:.env` and
`git blame .env`. Each word found comes with "surely a file": a deny rule covering a sure file denies the command, one
covering a word that may be something else (a pattern, a revision) sends it to a human. No library knows which
arguments of which programs are files, hence these tables; they err towards seeing a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Commands whose operands are files they read or write, as Claude Code treats `cat`, `head`, `tail` and `sed`.
_FILE_COMMANDS = frozenset(
    {"cat", "tac", "head", "tail", "less", "more", "most", "sed", "awk", "gawk", "mawk", "grep", "egrep", "fgrep"}
    | {"rg", "ag", "ack", "wc", "sort", "uniq", "cut", "paste", "join", "comm", "fold", "fmt", "pr", "column", "rev"}
    | {"shuf", "split", "csplit", "iconv", "diff", "diff3", "sdiff", "cmp", "nl", "od", "xxd", "hexdump", "strings"}
    | {"base64", "base32", "basenc", "uuencode", "md5sum", "sha1sum", "sha256sum", "sha512sum", "b2sum", "cksum"}
    | {"sum", "file", "stat", "bat", "batcat", "view", "vi", "vim", "nvim", "nano", "emacs", "ed", "ex", "jq", "yq"}
    | {"zcat", "zless", "zmore", "zgrep", "bzcat", "xzcat", "gzip", "gunzip", "bzip2", "xz", "zstd", "tar", "zip"}
    | {"unzip", "cp", "mv", "tee", "touch", "rm", "truncate", "ln", "chmod", "chown", "dd", "install", "rsync"}
    | {"scp", "source", ".", "python", "python3", "node", "perl", "ruby", "php", "lua", "openssl", "gpg"}
)
# Their first operand is a pattern or a script, which may or may not be a file.
_PATTERN_FIRST = frozenset({"sed", "awk", "gawk", "mawk", "grep", "egrep", "fgrep", "rg", "ag", "ack", "zgrep"})
_PATTERN_FIRST |= frozenset({"jq", "yq"})

# git: the options before the subcommand that take a value, and the subcommands that read files named as operands.
_GIT_GLOBAL_VALUES = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env"})
_GIT_READERS = frozenset({"diff", "difftool", "log", "show", "whatchanged", "blame", "annotate", "grep", "cat-file"})
_GIT_READERS |= frozenset({"archive", "ls-tree", "ls-files", "format-patch", "range-diff", "shortlog", "apply"})
# Options of those subcommands whose value (the next word) is not a path.
_GIT_VALUES = frozenset(
    {"-n", "--max-count", "--skip", "-S", "-G", "--author", "--committer", "--grep", "--since", "--until", "-L"}
    | {"--format", "--pretty", "--date", "-e", "-U", "--unified", "-M", "-C", "--abbrev", "--encoding", "-t"}
)
# A revision, not a path: HEAD~2, @{u}, a range, an object name.
_REVISION = re.compile(r"(?:[A-Za-z0-9_./-]*\.\.\.?[A-Za-z0-9_./-]*|(?:HEAD|@|[0-9a-f]{7,40})(?:[~^]\d*|@\{[^}]*\})*)")
# `REV:PATH`, `:PATH` (the index), `:2:PATH` (a merge stage).
_OBJECT_PATH = re.compile(r"[^:/\s][^:\s]*:(?:[0-3]:)?(?P<path>[^:].*)|:(?:[0-3]:)?(?P<index>[^:(!/^].*)")
# git configuration whose value runs as a shell command: `git -c core.pager='sh -c …' log`.
_GIT_RUNS = re.compile(
    r"(?:core\.(?:pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy)|pager\..*|alias\..*|sequence\.editor"
    r"|diff\..*\.(?:textconv|command)|diff\.external|filter\..*\.(?:clean|smudge|process)|credential\..*"
    r"|gpg\..*program|merge\..*\.driver|uploadpack\..*|receivepack\..*|protocol\..*|remote\..*\.(?:uploadpack|vcs))",
    re.IGNORECASE,
)


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def file_words(words: tuple[str, ...]) -> Iterator[tuple[str, bool]]:
    """The words of this simple command that name files it reads or writes, each with "surely a file"."""
    program = _base(words[0])
    if program == "git":
        yield from _git(words)
    elif program in _FILE_COMMANDS:
        operands = [word for word in words[1:] if not word.startswith("-")]
        for index, word in enumerate(operands):
            yield word, not (index == 0 and program in _PATTERN_FIRST)
    for word in words[1:]:  # `--file=secrets/key`, `--output=~/.bashrc`: an option's value that looks like a path
        name, equals, value = word.partition("=")
        if name.startswith("--") and equals and value and (value[0] in "./~" or "/" in value):
            yield value, False


def leaves_directory(words: tuple[str, ...]) -> bool:
    """Whether the command works in another directory than the shell's (`git -C dir`, `--work-tree`), which makes
    its relative file words unplaceable."""
    return _base(words[0]) == "git" and any(
        word in ("-C", "--git-dir", "--work-tree") or word.startswith(("--git-dir=", "--work-tree="))
        for word in words[1 : _git_subcommand(words)]
    )


def git_scripts(words: tuple[str, ...]) -> Iterator[str]:
    """The shell commands a `git -c key=value` or `--config-env` setting makes git run (pagers, aliases, drivers)."""
    if _base(words[0]) != "git":
        return
    end = _git_subcommand(words)
    for index in range(1, end):
        if words[index - 1] == "-c" or (words[index].startswith("-c") and len(words[index]) > 2):
            setting = words[index] if words[index - 1] == "-c" else words[index][2:]
            key, _, value = setting.partition("=")
            if _GIT_RUNS.fullmatch(key) and value:
                yield value.removeprefix("!")


def _git_subcommand(words: tuple[str, ...]) -> int:
    """The index of git's subcommand (past the global options), or len(words) if there is none."""
    index = 1
    while index < len(words) and words[index].startswith("-"):
        index += 2 if words[index] in _GIT_GLOBAL_VALUES else 1
    return min(index, len(words))


def _git(words: tuple[str, ...]) -> Iterator[tuple[str, bool]]:
    """git's operands that are files: after `--`, of `diff --no-index`, `REV:PATH`, and any path-like operand."""
    start = _git_subcommand(words)
    if start >= len(words) or words[start] not in _GIT_READERS:
        return
    subcommand = words[start]
    pattern_pending = subcommand == "grep" and not any(word in ("-e", "-f") for word in words[start + 1 :])
    index = start + 1
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            for path in words[index:]:
                yield _pathspec(path)
            return
        if word.startswith("-"):
            index += 1 if word in _GIT_VALUES else 0
            if word.startswith(("--output=", "--orderfile=", "-O")) and len(word) > 2:
                yield word.split("=", 1)[-1] if "=" in word else word[2:], True
            continue
        if pattern_pending:
            pattern_pending = False
            continue
        if found := _OBJECT_PATH.fullmatch(word):
            yield found["path"] or found["index"], True
        elif not _REVISION.fullmatch(word) or "../" in word or "/.." in word:
            yield _pathspec(word)


def _pathspec(word: str) -> tuple[str, bool]:
    """A pathspec's path; one with magic (`:(icase)x`, `:!x`, `:/x`) may match more than it names, so it is a pattern
    (the rules treat a word holding `*` as one that may match anything)."""
    if word.startswith(":"):
        return "*", False
    return word, True
