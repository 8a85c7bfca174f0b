"""What a human is shown: the one place that turns a tool call into text and makes hidden characters visible.

Nothing is cut: the text holds the whole input. Characters that could hide or disguise part of a command
(control characters, ANSI escapes, bidirectional overrides, zero-width and other invisible characters) are
replaced by a visible `⟨U+XXXX⟩`. The bracket itself is escaped too, so a command cannot fake an escape.
"""

from __future__ import annotations

import difflib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

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
    return "".join(run for run, _ in segments(text))


def segments(text: str) -> list[tuple[str, bool]]:
    """`text` made visible, in runs, each flagged True when it is an escape, so a page can highlight them."""
    runs: list[tuple[str, bool]] = []
    plain: list[str] = []
    for char in text:
        if _is_hidden(char):
            if plain:
                runs.append(("".join(plain), False))
                plain = []
            runs.append((escape(char), True))
        else:
            plain.append(char)
    if plain:
        runs.append(("".join(plain), False))
    return runs


def for_monospace(text: str) -> str:
    """`text` made visible for a WhatsApp monospace block, inside which `*bold*`, `_italic_` and `~strike~` are
    shown as typed. A backtick could close the block and let the rest be restyled, so it is shown as `⟨U+0060⟩`.
    """
    return visible(text).replace("`", escape("`"))


def monospace(text: str) -> str:
    return FENCE + for_monospace(text) + FENCE


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


FieldKind = Literal["code", "text", "diff", "json"]


@dataclass(frozen=True)
class Field:
    """One labelled part of a tool call. `value` is raw text (not yet made visible); `kind` says how to lay it out:
    `code` and `json` in monospace, `diff` as lines starting with ` `, `-` or `+`, `text` as prose."""

    label: str
    value: str
    kind: FieldKind


def diff(old: str, new: str) -> str:
    """Every line of `old` and `new` once: unchanged lines start with a space, removed `-`, added `+`.

    Lines are split on `\n` only, so a trailing newline added or removed shows as a line of its own.
    """
    old_lines, new_lines = old.split("\n"), new.split("\n")
    context = max(len(old_lines), len(new_lines))
    lines = list(difflib.unified_diff(old_lines, new_lines, lineterm="", n=context))
    if not lines:
        return "\n".join(" " + line for line in old_lines)
    return "\n".join(line for line in lines[2:] if not line.startswith("@@"))


def _generic(key: str, value: Any) -> Field:
    return Field(key, _value(value), "code" if isinstance(value, str) else "json")


def _take_str(rest: JSONObject, key: str) -> str | None:
    value = rest.get(key)
    if isinstance(value, str):
        del rest[key]
        return value
    return None


def fields(tool_name: str, tool_input: JSONObject) -> list[Field]:
    """The labelled parts of a tool call, in the order a human should read them. Every key of the input is shown:
    the common tools get their own labels and layout (an Edit as a diff), anything else is shown key by key."""
    rest = dict(tool_input)
    parts: list[Field] = []
    if tool_name.startswith("mcp__"):
        return [Field("Arguments", json.dumps(tool_input, ensure_ascii=False, indent=2), "json")]
    if tool_name == "Bash" and (command := _take_str(rest, "command")) is not None:
        parts.append(Field("Command", command, "code"))
        if (description := _take_str(rest, "description")) is not None:
            parts.append(Field("Reason", description, "text"))
    elif (
        tool_name in ("Write", "Edit", "MultiEdit", "NotebookEdit", "Read")
        and (path := _take_str(rest, "file_path")) is not None
    ):
        parts.append(Field("File", path, "code"))
        if tool_name == "Write" and (content := _take_str(rest, "content")) is not None:
            parts.append(Field("Content", content, "code"))
        if tool_name == "Edit" and isinstance(rest.get("old_string"), str) and isinstance(rest.get("new_string"), str):
            parts.append(Field("Change", diff(rest.pop("old_string"), rest.pop("new_string")), "diff"))
    elif tool_name == "WebFetch" and (url := _take_str(rest, "url")) is not None:
        parts.append(Field("URL", url, "code"))
        if (prompt := _take_str(rest, "prompt")) is not None:
            parts.append(Field("Prompt", prompt, "text"))
    return parts + [_generic(key, value) for key, value in rest.items()]


def render_text(tool_name: str, tool_input: JSONObject) -> str:
    """The full, plain-text description of a tool call, as stored with the request and shown in logs."""
    lines = [f"Tool: {visible(tool_name)}"]
    for field in fields(tool_name, tool_input):
        shown, label = visible(field.value), visible(field.label)
        lines.append(f"{label}:\n{shown}" if "\n" in shown or field.label == "Command" else f"{label}: {shown}")
    return "\n".join(lines)


def render_whatsapp(tool_name: str, tool_input: JSONObject) -> str:
    """The same description for WhatsApp: every value in a monospace block, so nothing in it can restyle text."""
    lines = [f"Tool: {monospace(tool_name)}"]
    for field in fields(tool_name, tool_input):
        lines.append(f"{visible(field.label)}:\n{monospace(field.value)}")
    return "\n".join(lines)


def json_for_editing(value: Any) -> str:
    """`value` as indented JSON to edit in a text box, every hidden character written as a `\\uXXXX` escape.

    The JSON parses back to exactly `value`; a hidden character cannot slip through an edit unseen.
    """

    def escaped(char: str) -> str:
        data = char.encode("utf-16-be")
        return "".join(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))

    text = json.dumps(value, ensure_ascii=False, indent=2)
    return "".join(escaped(char) if char != "\n" and _is_hidden(char) else char for char in text)
