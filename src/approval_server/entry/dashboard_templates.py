"""The dashboard's template environment (Jinja2, autoescaping on, so an input holding `<script>` is text) and the
filters its templates show text with: the shared renderer's text made HTML, hidden characters highlighted."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import jinja2
from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

from approval_server import __version__
from approval_server.entry.decision_form import DURATIONS
from approval_server.grants import pattern_for, remembered_text, session_pattern
from approval_server.models import OUTCOME_WORDS
from approval_server.render import Field, fields, json_for_editing, segments
from approval_server.render import name as plain_name
from approval_server.reveal import RTL_CLOSE, RTL_OPEN, Run
from approval_server.reveal import escape as escape_char

SUMMARY_CHARS = 400
_HIDDEN_CHAR = Markup('<span class="hidden-char" title="hidden character">{}</span>')
_MARKED = {
    "escape": _HIDDEN_CHAR,
    "lookalike": Markup('<span class="hidden-char lookalike" title="look-alike character">{}</span>'),
    "spaces": Markup('<span class="hidden-char spaces" title="spaces">{}</span>'),
    "rtl-mark": Markup('<span class="rtl-mark" title="right-to-left text follows or ends">{}</span>'),
    "rtl": Markup('<bdi class="rtl" dir="rtl">{}</bdi>'),
}
_ESCAPE = re.compile(r"(⟨U\+[0-9A-F]{4,6}⟩|⟨\d+ spaces?⟩|⟨rtl⟩|⟨/rtl⟩)")
_SPACES_MARKER = re.compile(r"⟨\d+ spaces?⟩")
MAX_GUTTER_DIGITS = 7  # the stylesheet has a gutter width for values of up to 9,999,999 lines


def _html(runs: Iterable[Run]) -> Markup:
    """Runs of shown text as HTML: plain text escaped, each marker in the span that sets it apart."""
    return Markup("").join(
        escape(run.text) if run.kind == "plain" else _MARKED[run.kind].format(run.text) for run in runs
    )


def shown(text: str, code: bool = True) -> Markup:
    """`text` made visible (the shared renderer) and HTML-escaped, hidden characters highlighted. `code` is for a
    command, path, URL, key or value; `code=False` for prose (the agent's own words, in their natural order)."""
    return _html(segments(text, code=code))


def _escaped_in(runs: Iterable[Run], chars: str) -> list[Run]:
    """`runs` with each of `chars` in a plain run turned into an escape marker."""
    out: list[Run] = []
    for run in runs:
        if run.kind != "plain" or not any(char in run.text for char in chars):
            out.append(run)
            continue
        for piece in re.split(f"([{re.escape(chars)}])", run.text):
            if len(piece) == 1 and piece in chars:
                out.append(Run(escape_char(piece), "escape"))
            elif piece:
                out.append(Run(piece, "plain"))
    return out


def label(text: str) -> Markup:
    """`render.label` as HTML: agent-written text where a label goes (a key, a directory), on one line, quoted,
    its markers highlighted. The text is exactly `render.label(text)`."""
    return Markup('"') + _html(_escaped_in(segments(text), '\n"')) + Markup('"')


def name(text: str) -> Markup:
    """`render.name` as HTML: a plain name (ASCII letters, digits, `_ . / : @ + -`) as typed, anything else as a
    `label`. The text is exactly `render.name(text)`."""
    return escape(text) if plain_name(text) == text else label(text)


def one_line(text: str) -> Markup:
    """`text` made visible on one line: a line break is shown as `⟨U+000A⟩`, not folded into a space."""
    return _html(_escaped_in(segments(text), "\n"))


@dataclass(frozen=True)
class Line:
    """One line of a value as a page shows it: its number, its HTML, and for a diff what happened to it."""

    number: int
    html: Markup
    change: str = ""  # "add", "del" or "same" in a diff


def _split_lines(runs: Iterable[Run]) -> list[list[Run]]:
    lines: list[list[Run]] = [[]]
    for run in runs:
        if run.kind != "plain" or "\n" not in run.text:
            lines[-1].append(run)
            continue
        first, *rest = run.text.split("\n")
        if first:
            lines[-1].append(Run(first, "plain"))
        lines += [[Run(piece, "plain")] if piece else [] for piece in rest]
    return lines


def text_lines(text: str) -> list[Line]:
    """A code-like value (not from `fields`, such as a record's other fields) line by line."""
    return [Line(number, _html(runs)) for number, runs in enumerate(_split_lines(segments(text)), 1)]


_CHANGES = {"+": "add", "-": "del"}


def field_lines(field: Field) -> list[Line]:
    """A code, JSON or diff field line by line, as `Field.lines()` has them: each line is its own element on the
    page, with its number in a gutter, so a real line break is never taken for a soft wrap, nor a wrap for a break.
    A diff's lines keep their first character (` `, `-`, `+`) as typed."""
    if field.kind == "diff":
        return [
            Line(number, escape(line[:1]) + shown(line[1:]), _CHANGES.get(line[:1], "same"))
            for number, line in enumerate(field.value.split("\n"), 1)
        ]
    return [Line(number, _html(runs)) for number, runs in enumerate(_split_lines(segments(field.value)), 1)]


def gutter_digits(lines: list[Line]) -> int:
    """How many digits the gutter holds (the stylesheet has a width for each)."""
    return min(len(str(len(lines))), MAX_GUTTER_DIGITS)


def escapes_marked(text: str) -> Markup:
    """Text that already went through the renderer (a stored `rendered`), HTML-escaped, its markers highlighted.

    The renderer escapes every `⟨` it finds in an input, so each marker left in such text is one of its own: the
    text between `⟨rtl⟩` and `⟨/rtl⟩` is a right-to-left run, isolated like `shown` isolates it."""
    out: list[Markup] = []
    previous = ""
    for part in _ESCAPE.split(text):
        if _ESCAPE.fullmatch(part):
            kind = "rtl-mark" if part in (RTL_OPEN, RTL_CLOSE) else "spaces" if _SPACES_MARKER.match(part) else "escape"
            out.append(_MARKED[kind].format(part))
        elif previous == RTL_OPEN and part and "\n" not in part:
            out.append(_MARKED["rtl"].format(part))
        else:
            out.append(escape(part))
        previous = part
    return Markup("").join(out)


def summary(text: str, size: int = SUMMARY_CHARS) -> Markup:
    """The start of a stored `rendered` text for a history row, saying exactly how much more the record holds."""
    if len(text) <= size:
        return escapes_marked(text)
    cut = text.rfind("⟨", 0, size)
    end = cut if cut != -1 and text.find("⟩", cut) >= size else size  # never inside a `⟨U+XXXX⟩`
    more = len(text) - end
    return escapes_marked(text[:end]) + Markup(
        '<span class="more">… {:,} more characters: open the record</span>'
    ).format(more)


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def templates() -> Jinja2Templates:
    """The environment every page and fragment of the dashboard is rendered in, with the filters above."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("approval_server.entry", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["shown"] = shown
    env.filters["label"] = label
    env.filters["name"] = name
    env.filters["one_line"] = one_line
    env.filters["escapes_marked"] = escapes_marked
    env.filters["summary"] = summary
    env.filters["utc"] = _utc
    env.filters["editable"] = json_for_editing
    env.globals["fields"] = fields
    env.globals["outcome_words"] = OUTCOME_WORDS
    env.globals["field_lines"] = field_lines
    env.globals["text_lines"] = text_lines
    env.globals["gutter_digits"] = gutter_digits
    env.globals["session_pattern"] = session_pattern
    env.globals["remembered_text"] = remembered_text
    env.globals["pattern_for"] = pattern_for
    env.globals["durations"] = DURATIONS
    env.globals["version"] = __version__
    return Jinja2Templates(env=env)
