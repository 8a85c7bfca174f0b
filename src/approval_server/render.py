"""What a human is shown: the one place that turns a tool call into text for every surface.

Nothing is cut: the text holds the whole input. Which characters are shown as typed and which as a visible marker
(`⟨U+XXXX⟩`, `⟨rtl⟩ … ⟨/rtl⟩`, `⟨N spaces⟩`) is decided in `reveal`. Here the parts of a call are labelled and laid
out so that nothing the agent wrote can pass for a label: labels the agent chose (an input's keys) are quoted and
escaped like values, and every line of a value that runs over several lines starts with a gutter, `┃`, a character
the renderer never lets an input show as typed.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from approval_server import reveal
from approval_server.models import JSONObject
from approval_server.reveal import Run, escape
from approval_server.weburl import web_host

FENCE = "```"
GUTTER = "┃"
# Characters of the layout itself: an input never shows them as typed.
_RESERVED = (GUTTER, "`")
_URL = re.compile(r"\bhttps?://[^\s'\"<>|;&()]+", re.IGNORECASE)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_./:@+-]+")


def visible(text: str, *, code: bool = True) -> str:
    """`text` as shown on a text surface, on as many lines as it has."""
    return reveal.visible(text, code=code)


def segments(text: str, *, code: bool = True) -> list[Run]:
    """`text` as shown, in runs, so that a page can set each kind of marker apart."""
    return [
        Run(escape(run.text), "escape") if run.kind == "plain" and run.text in _RESERVED else run
        for run in _split_reserved(reveal.runs(text, code=code))
    ]


def _split_reserved(runs: list[Run]) -> list[Run]:
    out: list[Run] = []
    for run in runs:
        if run.kind != "plain" or not any(char in run.text for char in _RESERVED):
            out.append(run)
            continue
        piece = ""
        for char in run.text:
            if char in _RESERVED:
                if piece:
                    out.append(Run(piece, "plain"))
                out.append(Run(char, "plain"))
                piece = ""
            else:
                piece += char
        if piece:
            out.append(Run(piece, "plain"))
    return out


def shown(text: str, *, code: bool = True) -> str:
    """`text` as shown, with the layout's own characters (the gutter, backticks) escaped too."""
    return "".join(run.text for run in segments(text, code=code))


def label(text: str) -> str:
    """Agent-written text shown where a label goes (a key, a name, a directory): on one line, quoted, escaped."""
    return '"' + shown(text).replace("\n", escape("\n")).replace('"', escape('"')) + '"'


def name(text: str) -> str:
    """A name the agent gave (a tool, an agent, a directory): as typed when it is plainly one word of ASCII letters,
    digits and `_ . / : @ + -`, quoted and escaped like a `label` otherwise."""
    return text if _PLAIN_NAME.fullmatch(text) else label(text)


def for_monospace(text: str) -> str:
    """`text` made visible for a WhatsApp monospace block, inside which `*bold*`, `_italic_` and `~strike~` are
    shown as typed. A backtick could close the block and let the rest be restyled, so it is shown as `⟨U+0060⟩`.
    """
    return shown(text)


def monospace(text: str) -> str:
    return FENCE + for_monospace(text) + FENCE


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


REASON = "Reason (the agent's words)"
FieldKind = Literal["code", "text", "diff", "json"]


@dataclass(frozen=True)
class Field:
    """One labelled part of a tool call. `value` is raw text (not yet made visible); `kind` says how to lay it out:
    `code` and `json` in monospace, `diff` as lines starting with ` `, `-` or `+`, `text` as prose (the agent's own
    words, in their natural order). `key` is set when the label is a key of the input, which the agent chose."""

    label: str
    value: str
    kind: FieldKind
    key: bool = False

    @property
    def title(self) -> str:
        """The label as shown: the renderer's own words, or the agent's key quoted and escaped."""
        return label(self.label) if self.key else self.label

    @property
    def code(self) -> bool:
        return self.kind != "text"

    def lines(self) -> list[str]:
        """The value as shown, line by line (a diff's lines keep their first character as typed)."""
        if self.kind == "diff":
            return [line[:1] + shown(line[1:]) for line in self.value.split("\n")]
        return shown(self.value, code=self.code).split("\n")


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
    return Field(key, _value(value), "code" if isinstance(value, str) else "json", key=True)


def _take_str(rest: JSONObject, key: str) -> str | None:
    value = rest.get(key)
    if isinstance(value, str):
        del rest[key]
        return value
    return None


def _foreign_hosts(command: str) -> list[str]:
    """The hosts of the URLs in a command that hold characters beyond ASCII, in the ASCII (punycode) form a fetch
    uses: `gіthub.com` (with a Cyrillic і) is `xn--gthub-n2e.com`."""
    hosts = []
    for url in _URL.findall(command):
        fetched = web_host(url).fetched
        if fetched and not url.isascii() and fetched not in hosts:
            hosts.append(fetched)
    return hosts


def fields(tool_name: str, tool_input: JSONObject) -> list[Field]:
    """The labelled parts of a tool call, in the order a human should read them. Every key of the input is shown:
    the common tools get their own labels and layout (an Edit as a diff), anything else is shown key by key."""
    rest = dict(tool_input)
    parts: list[Field] = []
    if tool_name.startswith("mcp__"):
        return [Field("Arguments", json.dumps(tool_input, ensure_ascii=False, indent=2), "json")]
    if tool_name == "Bash" and (command := _take_str(rest, "command")) is not None:
        parts.append(Field("Command", command, "code"))
        if hosts := _foreign_hosts(command):
            parts.append(Field("Hosts, as fetched", "\n".join(hosts), "code"))
        if (description := _take_str(rest, "description")) is not None:
            parts.append(Field(REASON, description, "text"))
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
        host = web_host(url)
        if host.fetched and (not url.isascii() or host.fetched not in url.lower() or host.host is None):
            doubt = f" ({host.reason})" if host.host is None else ""
            parts.append(Field("Fetches from", host.fetched + doubt, "code"))
        if (prompt := _take_str(rest, "prompt")) is not None:
            parts.append(Field("Prompt (the agent's words)", prompt, "text"))
    return parts + [_generic(key, value) for key, value in rest.items()]


def _block(field: Field, numbered: bool) -> list[str]:
    lines = field.lines()
    if numbered:
        width = len(str(len(lines)))
        return [f"{field.title}:", *(f"{number:>{width}}{GUTTER} {line}" for number, line in enumerate(lines, 1))]
    if len(lines) == 1 and field.kind != "diff" and field.label != "Command":
        return [f"{field.title}: {lines[0]}"]
    return [f"{field.title}:", *(f"{GUTTER} {line}" for line in lines)]


def render_text(tool_name: str, tool_input: JSONObject, *, numbered: bool = False) -> str:
    """The full, plain-text description of a tool call: stored with the request, shown in logs and by the CLI.

    A value on one line follows its label; a value on several lines (or any value, when `numbered`, with line
    numbers) has a line of its own per line, each starting with the gutter, so that a real line break is told from
    a soft wrap and no line of a value can pass for a label."""
    lines = [f"Tool: {name(tool_name)}"]
    for field in fields(tool_name, tool_input):
        lines += _block(field, numbered)
    return "\n".join(lines)


def render_whatsapp(tool_name: str, tool_input: JSONObject) -> str:
    """The same description for WhatsApp: every value in a monospace block, so nothing in it can restyle text; a
    value on several lines has the gutter on each."""
    lines = [f"Tool: {monospace(tool_name)}"]
    for field in fields(tool_name, tool_input):
        shown_lines = field.lines()
        body = shown_lines[0] if len(shown_lines) == 1 else "\n".join(f"{GUTTER} {line}" for line in shown_lines)
        lines.append(f"{field.title}:\n{FENCE}{body}{FENCE}")
    return "\n".join(lines)


def json_for_editing(value: Any) -> str:
    """`value` as indented JSON to edit in a text box, every hidden character written as a `\\uXXXX` escape.

    The JSON parses back to exactly `value`; a hidden character cannot slip through an edit unseen.
    """

    def escaped(char: str) -> str:
        data = char.encode("utf-16-be")
        return "".join(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))

    text = json.dumps(value, ensure_ascii=False, indent=2)
    return "".join(escaped(char) if char != "\n" and reveal.is_hidden(char) else char for char in text)
