"""Text made safe to read: every character a human could not see, or could misread, is shown as what it is.

The renderer (`render`) lays a tool call out; this module decides, character by character, what of its text is
shown as typed and what is replaced by a visible marker. The character classes come from Unicode's own data,
through ICU (Unicode properties, and UTS #39's confusables and mixed-script rules), never from a hand list:

- hidden: Default_Ignorable_Code_Point, controls, format, private-use, unassigned, surrogates, line and paragraph
  separators, every space but U+0020, overlay (ccc=1) and enclosing marks, characters whose Unicode name says they
  are blank (BLANK, FILLER, NULL, REPLACEMENT), a combining mark with nothing visible to sit on, and every mark of
  a stack of more than two. Each is shown as `⟨U+XXXX⟩`.
- look-alike (code only): in a token that mixes scripts, or whose skeleton is plain ASCII, each non-ASCII character
  confusable with another; and anywhere, a full-width form or a non-ASCII punctuation or symbol confusable with
  another. `⟨U+XXXX⟩` too.
- marker look-alikes: `⟨` and `⟩` themselves, and the characters around a typed `U+XXXX`, so that an escape
  marker seen on a text surface is always one of ours.
- right-to-left runs (code only): each run of right-to-left letters or Arabic digits is enclosed in `⟨rtl⟩ … ⟨/rtl⟩`.
  The markers hold left-to-right letters, so the bidi algorithm cannot move anything across them: arguments are
  shown in the order they run, on any screen.
- spaces: a run of more than four spaces inside a line (more than 24 at its start), and any spaces that end a line,
  are shown as `⟨N spaces⟩`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import icu

RunKind = Literal["plain", "escape", "lookalike", "spaces", "rtl", "rtl-mark"]

ESCAPE_OPEN, ESCAPE_CLOSE = "⟨", "⟩"
RTL_OPEN, RTL_CLOSE = "⟨rtl⟩", "⟨/rtl⟩"
# Spaces kept as typed: a few between words, and indentation at the start of a line.
MAX_SPACES, MAX_INDENT = 4, 24
MAX_STACKED_MARKS = 2


def _frozen(pattern: str) -> icu.UnicodeSet:
    """A set of characters by Unicode properties, frozen (so that lookups are fast and thread-safe)."""
    found = icu.UnicodeSet(pattern)
    found.freeze()
    return found


_HIDDEN = _frozen(
    r"[[:DI:][:Cc:][:Cf:][:Co:][:Cn:][:Cs:][:Zl:][:Zp:][:Zs:][:White_Space:][:ccc=1:][:Me:]-[\u0020\u000A]]"
)
_MARKS = _frozen("[:M:]")
_RTL_START = _frozen("[[:bc=R:][:bc=AL:][:bc=AN:]]")
_RTL_MORE = _frozen("[[:bc=R:][:bc=AL:][:bc=AN:][:bc=NSM:]]")
_SYMBOLS = _frozen("[[:P:][:S:]]")
_WIDE = _frozen("[:Decomposition_Type=Wide:]")  # full-width forms of ASCII (and a few more)
# A character whose name says it draws nothing (Unicode names are Unicode data; these are the words it uses).
_BLANK_NAME = re.compile(r"\b(BLANK|FILLER|NULL|REPLACEMENT)\b")
_TYPED_MARKER = re.compile(r"U\+[0-9A-F]{1,6}", re.IGNORECASE)
_SPACES = re.compile(r" +")


@dataclass(frozen=True)
class Run:
    """A piece of shown text. `plain` is text as typed; every other kind is a marker the renderer made."""

    text: str
    kind: RunKind


def escape(char: str) -> str:
    return f"⟨U+{ord(char):04X}⟩"


@functools.cache
def _blank_by_name() -> frozenset[str]:
    candidates = icu.UnicodeSet(
        "[^[:Cn:][:Co:][:Cs:][:Unified_Ideograph:][:Hangul_Syllable_Type=LV:][:Hangul_Syllable_Type=LVT:]]"
    )
    return frozenset(char for char in candidates if _BLANK_NAME.search(icu.Char.charName(char)))


def _surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF  # ICU cannot take a lone surrogate at all


def is_hidden(char: str) -> bool:
    """True for a character shown as `⟨U+XXXX⟩` wherever it stands."""
    if char in (ESCAPE_OPEN, ESCAPE_CLOSE) or _surrogate(char):
        return True
    if char.isascii():
        return char != "\n" and not char.isprintable()
    return bool(_HIDDEN.contains(char)) or char in _blank_by_name()


@functools.cache
def _checker() -> icu.SpoofChecker:
    checker = icu.SpoofChecker()
    checker.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS)
    return checker


@functools.lru_cache(maxsize=4096)
def skeleton(text: str) -> str:
    """UTS #39's skeleton: two strings that look alike have the same one."""
    return str(_checker().getSkeleton(0, text))


def _confusable(char: str) -> bool:
    return not char.isascii() and not _surrogate(char) and skeleton(char) != char


def _lookalikes(text: str) -> set[int]:
    """Positions of the look-alike characters of `text`, token by token (a token is a run without whitespace)."""
    found: set[int] = set()
    for token in re.finditer(r"\S+", text):
        word = token.group()
        if word.isascii() or any(_surrogate(char) for char in word):
            continue
        ascii_skeleton = skeleton(word).isascii()
        mixed = bool(_checker().check(word))
        for offset, char in enumerate(word):
            suspect = mixed or ascii_skeleton or _SYMBOLS.contains(char)
            if _WIDE.contains(char) or (suspect and _confusable(char)):
                found.add(token.start() + offset)
    return found


def _fold(char: str) -> str:
    """`char` as the one ASCII character it looks like, if it looks like one."""
    if char.isascii():
        return char
    if _surrogate(char):
        return "?"
    look = skeleton(char)
    return look if len(look) == 1 and look.isascii() else "?"


def _typed_markers(text: str) -> set[int]:
    """Positions next to a typed `U+XXXX` (looked at through look-alikes), which a reader could take for a marker."""
    folded = "".join(_fold(char) for char in text)
    found: set[int] = set()
    for match in _TYPED_MARKER.finditer(folded):
        for position in (match.start() - 1, match.end()):
            if 0 <= position < len(text) and not (text[position].isalnum() or text[position].isspace()):
                found.add(position)
    return found


def _marks_to_escape(text: str, hidden: list[bool]) -> None:
    """Mark as hidden the combining marks with no visible base, and every mark of a stack of more than two."""
    start = 0
    while start < len(text):
        if not (not hidden[start] and not _surrogate(text[start]) and _MARKS.contains(text[start])):
            start += 1
            continue
        end = start
        while end < len(text) and not hidden[end] and not _surrogate(text[end]) and _MARKS.contains(text[end]):
            end += 1
        base = text[start - 1] if start else ""
        if end - start > MAX_STACKED_MARKS or not base or hidden[start - 1] or base.isspace():
            for position in range(start, end):
                hidden[position] = True
        start = end


def runs(text: str, *, code: bool = True) -> list[Run]:
    """`text` as shown: plain runs as typed, and markers. `code` is for a command, path, URL, key or value; prose
    (the agent's own words) is shown with its invisibles, markers and spaces revealed, in its natural order."""
    hidden = [is_hidden(char) for char in text]
    for position in _typed_markers(text):
        hidden[position] = True
    _marks_to_escape(text, hidden)
    lookalike = _lookalikes(text) if code else set()
    shown: list[Run] = []
    plain: list[str] = []

    def flush() -> None:
        if plain:
            shown.append(Run("".join(plain), "plain"))
            plain.clear()

    position = 0
    while position < len(text):
        char = text[position]
        if hidden[position] or position in lookalike:
            flush()
            shown.append(Run(escape(char), "escape" if hidden[position] else "lookalike"))
            position += 1
        elif char == " ":
            end = _SPACES.match(text, position).end()  # type: ignore[union-attr]
            count = end - position
            line_start = position == 0 or text[position - 1] == "\n"
            line_end = end == len(text) or text[end] == "\n"
            if line_end or count > (MAX_INDENT if line_start else MAX_SPACES):
                flush()
                shown.append(Run(f"⟨{count} space{'s' if count > 1 else ''}⟩", "spaces"))
            else:
                plain.append(text[position:end])
            position = end
        elif code and _RTL_START.contains(char):
            end = position + 1
            while end < len(text) and not hidden[end] and end not in lookalike and _RTL_MORE.contains(text[end]):
                end += 1
            flush()
            shown += [Run(RTL_OPEN, "rtl-mark"), Run(text[position:end], "rtl"), Run(RTL_CLOSE, "rtl-mark")]
            position = end
        else:
            plain.append(char)
            position += 1
    flush()
    return shown


def visible(text: str, *, code: bool = True) -> str:
    """`text` as shown, as one string."""
    return "".join(run.text for run in runs(text, code=code))
