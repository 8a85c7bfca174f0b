"""What a human is shown: the one place that turns a tool call into text and makes hidden characters visible.

Nothing is cut: the text holds the whole input. Characters that could hide or disguise part of a command
(control characters, ANSI escapes, bidirectional overrides, zero-width and other invisible characters) are
replaced by a visible `⟨U+XXXX⟩`. The bracket itself is escaped too, so a command cannot fake an escape.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from approval_server.models import JSONObject

_HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"}
_ESCAPE_OPEN = "⟨"
FENCE = "```"


def _is_hidden(char: str) -> bool:
    if char == "\n":
        return False
    if char == _ESCAPE_OPEN:
        return True
    category = unicodedata.category(char)
    if category in _HIDDEN_CATEGORIES:
        return True
    if category == "Zs" and char != " ":
        return True
    code = ord(char)
    # Variation selectors and Hangul fillers render as nothing.
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or code in (0x115F, 0x1160, 0x3164, 0xFFA0)


def escape(char: str) -> str:
    return f"⟨U+{ord(char):04X}⟩"


def visible(text: str) -> str:
    """`text` with every hidden or look-alike-escape character shown as `⟨U+XXXX⟩`."""
    return "".join(escape(char) if _is_hidden(char) else char for char in text)


def for_monospace(text: str) -> str:
    """`text` made visible for a WhatsApp monospace block, inside which `*bold*`, `_italic_` and `~strike~` are
    shown as typed. A backtick could close the block and let the rest be restyled, so it is shown as `⟨U+0060⟩`.
    """
    return visible(text).replace("`", escape("`"))


def monospace(text: str) -> str:
    return FENCE + for_monospace(text) + FENCE


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def fields(tool_name: str, tool_input: JSONObject) -> list[tuple[str, str]]:
    """The labelled parts of a tool call, in the order a human should read them; values are raw text."""
    rest = dict(tool_input)
    parts: list[tuple[str, str]] = []
    if tool_name == "Bash" and isinstance(rest.get("command"), str):
        parts.append(("Command", rest.pop("command")))
        if isinstance(rest.get("description"), str):
            parts.append(("Reason", rest.pop("description")))
    return parts + [(key, _value(value)) for key, value in rest.items()]


def render_text(tool_name: str, tool_input: JSONObject) -> str:
    """The full, plain-text description of a tool call, as stored with the request and shown in logs."""
    lines = [f"Tool: {visible(tool_name)}"]
    for label, value in fields(tool_name, tool_input):
        shown = visible(value)
        lines.append(
            f"{visible(label)}:\n{shown}" if "\n" in shown or label == "Command" else f"{visible(label)}: {shown}"
        )
    return "\n".join(lines)


def render_whatsapp(tool_name: str, tool_input: JSONObject) -> str:
    """The same description for WhatsApp: every value in a monospace block, so nothing in it can restyle text."""
    lines = [f"Tool: {monospace(tool_name)}"]
    for label, value in fields(tool_name, tool_input):
        lines.append(f"{visible(label)}:\n{monospace(value)}")
    return "\n".join(lines)
