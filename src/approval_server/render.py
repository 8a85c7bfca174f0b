"""What a human is shown: the one place that turns a tool call into text and makes hidden characters visible.

Nothing is cut: the text holds the whole input. Characters that could hide or disguise part of a command
(control characters, ANSI escapes, bidirectional overrides, zero-width and other invisible characters) are
replaced by a visible `⟨U+XXXX⟩`. The bracket itself is escaped too, so a command cannot fake an escape.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from approval_server.models import ToolCall

_HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"}
_ESCAPE_OPEN = "⟨"


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


def visible(text: str) -> str:
    """`text` with every hidden or look-alike-escape character shown as `⟨U+XXXX⟩`."""
    return "".join(f"⟨U+{ord(char):04X}⟩" if _is_hidden(char) else char for char in text)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return visible(value)
    return visible(json.dumps(value, ensure_ascii=False, indent=2))


def render_text(call: ToolCall) -> str:
    """The full, plain-text description of a tool call that every channel shows."""
    lines = [f"Tool: {visible(call.tool_name)}"]
    fields = dict(call.input)
    if call.tool_name == "Bash" and isinstance(fields.get("command"), str):
        lines.append("Command:")
        lines.append(_value(fields.pop("command")))
        if isinstance(fields.get("description"), str):
            lines.append(f"Reason: {_value(fields.pop('description'))}")
    for key, value in fields.items():
        lines.append(f"{visible(key)}: {_value(value)}")
    return "\n".join(lines)
