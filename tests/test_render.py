"""What a human is shown: everything, with hidden characters made visible."""

from __future__ import annotations

import pytest

from approval_server.models import ToolCall
from approval_server.render import render_text, visible


def test_long_commands_are_never_cut() -> None:
    command = "echo " + "a" * 5000 + " && rm -rf /"
    text = render_text(ToolCall("Bash", {"command": command, "description": "why"}))
    assert command in text
    assert "Reason: why" in text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("ls\u202e/tmp", "ls⟨U+202E⟩/tmp"),
        ("rm\u200b -rf", "rm⟨U+200B⟩ -rf"),
        ("\x1b[8mhidden\x1b[0m", "⟨U+001B⟩[8mhidden⟨U+001B⟩[0m"),
        ("a\rb", "a⟨U+000D⟩b"),
        ("tab\there", "tab⟨U+0009⟩here"),
        ("nb\u00a0sp", "nb⟨U+00A0⟩sp"),
        ("fake ⟨U+202E⟩", "fake ⟨U+27E8⟩U+202E⟩"),
        ("line1\nline2", "line1\nline2"),
        ("ünïcode ✓", "ünïcode ✓"),
    ],
)
def test_hidden_characters_are_shown(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_other_tools_show_every_field() -> None:
    text = render_text(ToolCall("Write", {"file_path": "/etc/passwd", "content": "x\u2066y"}))
    assert text.splitlines() == ["Tool: Write", "file_path: /etc/passwd", "content: x⟨U+2066⟩y"]


def test_non_string_values_are_shown_as_json() -> None:
    text = render_text(ToolCall("Edit", {"replace_all": False, "edits": [{"a": 1}]}))
    assert "replace_all: false" in text
    assert '"a": 1' in text
