"""Setting names that look like approval-server's but are none of them, each told with the closest real name.

A misspelt name in a settings file (`.env`) is refused: that file is the server's own, so a name there that looks
like ours and is not one is a mistake that would otherwise be ignored in silence. One in the process environment is
only warned about: the environment is shared with every other program the user runs, which may have names of their
own that merely look like ours.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

# difflib's ratio from which an unknown name is taken for a misspelling of a known one: SERVER_PROT → SERVER_PORT
# (0.91) and APROVAL_TIMEOUT_SECONDS (0.98) are, APPROVAL_TEST_BACKEND (0.71) and POSTGRES_PASSWORD are not.
CLOSE_ENOUGH = 0.8


def _hint(name: str, known: frozenset[str], prefixes: tuple[str, ...] = ()) -> str | None:
    """What to tell of an unknown `name` (the closest known name, or the known ones of its prefix), or None when
    `name` is known or does not look like one of ours."""
    upper = name.upper()
    if upper in known:
        return None
    closest = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=CLOSE_ENOUGH)
    if closest:
        return f"did you mean {closest[0]}?"
    prefix = next((prefix for prefix in prefixes if upper.startswith(prefix)), None)
    if prefix is None:
        return None
    return f"the {prefix}* settings are {', '.join(sorted(each for each in known if each.startswith(prefix)))}"


def misspelt_in_files(files: Iterable[Path], known: frozenset[str], prefixes: tuple[str, ...]) -> list[str]:
    """One line per name in the settings files that looks like ours (a close match, or one of our `prefixes`) but
    is none of `known`."""
    lines = []
    for path in files:
        for name in dotenv_values(path):
            if (hint := _hint(name, known, prefixes)) is not None:
                lines.append(f"{path}: {name} is not a setting of approval-server; {hint}")
    return lines


def misspelt_in_environment(environment: Mapping[str, str], known: frozenset[str]) -> list[str]:
    """One warning per name in the process environment that is a close match of one of `known` but none of them."""
    return [
        f"warning: {name} in the environment is not a setting of approval-server, and is ignored; {hint}"
        for name in sorted(environment)
        if (hint := _hint(name, known)) is not None
    ]
