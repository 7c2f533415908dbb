"""labtext.printable: the one rule for which characters a name or a note may hold, and the
escape that shows any other on a terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labtext.printable import (
    UnprintableTextError,
    check_free_text,
    check_name,
    escape_unprintable,
    unprintable_in,
)

REFUSED = (
    [chr(c) for c in range(0x00, 0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
    + [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
)


@pytest.mark.parametrize("char", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_a_name_holds_no_control_c1_or_bidirectional_character(char: str) -> None:
    with pytest.raises(UnprintableTextError) as caught:
        check_name(f"Esta{char}ción")
    assert caught.value.position == 5 and caught.value.char == char
    assert f"(U+{ord(char):04X}) at position 5" in str(caught.value)


def test_free_text_keeps_tabs_and_line_breaks_and_nothing_else() -> None:
    note = "10:42\tmoved it\r\ninto the shade"
    assert check_free_text(note) == note
    for char in set(REFUSED) - {"\t", "\n", "\r"}:
        assert unprintable_in(f"ab{char}", free_text=True) == (3, char)


def test_what_people_write_is_a_name() -> None:
    for name in ("Estación Meteorológica", "Laboratório 7B", "مختبر", "מעבדה", "実験室 😀",
                 "Lab\u200d", "a\u00a0b"):
        assert check_name(name) == name


def test_the_escape_shows_every_refused_character_and_keeps_lines() -> None:
    shown = escape_unprintable("Esta\x00ción\x1b[2J\x9b\u202e\r\tfin\n")
    assert shown == "Esta\\x00ción\\x1b[2J\\x9b\\u202e\\x0d\tfin\n"


@given(st.text())
def test_escaped_text_holds_nothing_a_terminal_would_act_on(text: str) -> None:
    shown = escape_unprintable(text)
    assert unprintable_in(shown.replace("\n", "").replace("\t", "")) is None
    if unprintable_in(text, free_text=True) is None and "\r" not in text:
        assert shown == text
