"""Test support for what a human is shown: read a shown text back into the text it shows.

`unreveal` undoes every marker the renderer makes (`⟨U+XXXX⟩`, `⟨N spaces⟩`, `⟨rtl⟩`, `⟨/rtl⟩`). The renderer
escapes every `⟨` an input holds, so a shown text reads back one way only: if `unreveal(shown) == raw`, nothing was
hidden, added or lost on the way.
"""

from __future__ import annotations

import re

_MARKER = re.compile(r"⟨U\+([0-9A-F]{4,6})⟩|⟨(\d+) spaces?⟩|⟨/?rtl⟩")


def unreveal(shown: str) -> str:
    def back(match: re.Match[str]) -> str:
        if match.group(1):
            return chr(int(match.group(1), 16))
        if match.group(2):
            return " " * int(match.group(2))
        return ""

    return _MARKER.sub(back, shown)


def gutterless(lines: str) -> str:
    """A value laid out on several lines behind the `┃` gutter (numbered or not), as one text again."""
    return "\n".join(re.sub(r"^ *\d*┃ ", "", line) for line in lines.split("\n"))
