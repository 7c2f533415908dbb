"""Which characters a name or a note may hold, and how to show text that holds others.

One rule for all of LabHub: the inventory's names, the readings domain's run titles and
channel names, device names and the API's edge all ask this module. A name (a site, a
model, a device, a run title, a label) may hold no control character at all: not the C0
controls (U+0000-U+001F, among them NUL, which PostgreSQL text refuses, and ESC, which
starts a terminal escape sequence), not DEL (U+007F), not the C1 controls
(U+0080-U+009F; U+009B is a one-character escape sequence on many terminals), and not the
bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
make a list or a printed label show text in another order than it is stored ("Trojan
Source", CVE-2021-42574). Free text (a note, a fault, a check-in remark) may also hold
tabs and line breaks, and nothing else of those.

:func:`escape_unprintable` is the other side: text shown on a terminal with every such
character written as a visible escape (``\\x1b``, ``\\u202e``).
"""

from __future__ import annotations

import re
from typing import Final

NUL: Final = "\x00"
# The refused characters as the body of a regular expression's character class, written
# with \u escapes so that Python's re, pydantic's regex engine and ECMA-262 (the JSON
# Schema patterns of the API's document) all read it the same way.
_BIDI: Final = r"\u202a-\u202e\u2066-\u2069"
# Every character a name may not hold: C0, DEL, C1 and the bidirectional controls.
NOT_IN_NAMES: Final = r"\u0000-\u001f\u007f-\u009f" + _BIDI
# The same less tab, line feed and carriage return, which free text may hold.
NOT_IN_FREE_TEXT: Final = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f" + _BIDI
# What str.strip() takes off that a name may hold: a name of only these is blank.
_BLANK: Final = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Whole-text patterns (anchored, for JSON Schema): a name holds none of NOT_IN_NAMES and
# is not blank; free text holds none of NOT_IN_FREE_TEXT (and may be blank: no note).
NAME_PATTERN: Final = f"^[^{NOT_IN_NAMES}]*[^{NOT_IN_NAMES}{_BLANK}][^{NOT_IN_NAMES}]*$"
FREE_TEXT_PATTERN: Final = f"^[^{NOT_IN_FREE_TEXT}]*$"
# Free text that must say something (a fault, the work done): not blank either.
FILLED_TEXT_PATTERN: Final = (f"^[^{NOT_IN_FREE_TEXT}]*[^{NOT_IN_FREE_TEXT}{_BLANK}\\t\\n\\r]"
                              f"[^{NOT_IN_FREE_TEXT}]*$")
_NOT_IN_NAMES: Final = re.compile(f"[{NOT_IN_NAMES}]")
_NOT_IN_FREE_TEXT: Final = re.compile(f"[{NOT_IN_FREE_TEXT}]")
# What a terminal shows escaped: everything a name may not hold except a line break and a
# tab that the text really holds (a note's lines).
_ESCAPED_ON_OUTPUT: Final = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f" + _BIDI + "]")


class UnprintableTextError(ValueError):
    """Text holding a character the rule refuses; the message says which and where (its
    position, from 1), not whose text it is: the caller adds that."""

    def __init__(self, char: str, position: int) -> None:
        self.char = char
        self.position = position
        super().__init__(f"holds {describe(char)} at position {position}")


def describe(char: str) -> str:
    """A refused character in words: ``a control character (U+001B)``."""
    code = ord(char)
    if 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069:
        return f"a bidirectional text control (U+{code:04X})"
    return f"a control character (U+{code:04X})"


def unprintable_in(text: str, *, free_text: bool = False) -> tuple[int, str] | None:
    """The first refused character of ``text`` and its position (from 1), or ``None``.

    ``free_text`` allows tabs and line breaks, as notes may hold them."""
    found = (_NOT_IN_FREE_TEXT if free_text else _NOT_IN_NAMES).search(text)
    return None if found is None else (found.start() + 1, found.group())


def check_name(text: str) -> str:
    """``text`` unchanged if it may be a name, else :class:`UnprintableTextError`."""
    bad = unprintable_in(text)
    if bad is not None:
        raise UnprintableTextError(bad[1], bad[0])
    return text


def check_free_text(text: str) -> str:
    """``text`` unchanged if it may be a note (tabs and line breaks allowed), else
    :class:`UnprintableTextError`."""
    bad = unprintable_in(text, free_text=True)
    if bad is not None:
        raise UnprintableTextError(bad[1], bad[0])
    return text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_unprintable(text: str) -> str:
    """``text`` for a terminal: each character a name may not hold, other than a line
    feed or a tab, written as a visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``)."""
    return _ESCAPED_ON_OUTPUT.sub(_escape, text)
