"""CSV text as spreadsheets write and read it: delimiters, decimal commas, the formula guard.

Readings exports (``sensors.export``), CSV readings (``sensors.decoders``, ``labhub
import``) and the inventory's import and export (``inventory.csvio``) all take the same
three delimiters, detect them the same way, read a decimal comma the same way and guard
text cells against formula injection with the same characters, so a file LabHub writes
reads back in LabHub and opens in Excel, LibreOffice and Google Sheets.
"""

from __future__ import annotations

import re
from typing import Final

# What spreadsheets write and detect on open; tab for copy-paste from a sheet.
DELIMITERS: Final = (",", ";", "\t")
# The names the CLI and the API take for them (--delimiter semicolon, ?delimiter=tab).
DELIMITER_NAMES: Final = {"comma": ",", "semicolon": ";", "tab": "\t"}
# Decimal point (en), or decimal comma (es, pt and most of Europe); a comma goes with a
# ';' or tab delimiter only.
DECIMALS: Final = (".", ",")
# OWASP "CSV injection": a text cell that starts with one of these is a formula (or becomes
# one) in Excel, LibreOffice and Google Sheets. The apostrophe itself is guarded too, so that
# :func:`unguard_formula` can take the guard off again without losing a real apostrophe.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "'")
# A number written with a decimal comma: 21,5  -3,45  1,5e-05 (ASCII digits only).
DECIMAL_COMMA: Final = re.compile(r"[+-]?[0-9]*,[0-9]+(?:[eE][+-]?[0-9]+)?", re.ASCII)


def check_delimiter(delimiter: str) -> str:
    """``delimiter`` if it is one of :data:`DELIMITERS`, else ``ValueError`` naming them."""
    if delimiter not in DELIMITERS:
        raise ValueError(
            f"CSV delimiter {delimiter!r} is not one of ',' (comma), ';' (semicolon) or "
            "'\\t' (tab)"
        )
    return delimiter


def detect_delimiter(text: str) -> str:
    """The delimiter of a CSV text, from its first line: tab if it has one, else ``;`` if it
    has one, else ``,``.

    A tab or a semicolon inside a comma-separated line is rare; a comma inside a
    semicolon-separated line is common (a decimal comma, ``21,5;40``), hence the order,
    which also holds for a data row, where counting the characters would pick the comma.
    """
    end = text.find("\n")
    line = text if end < 0 else text[:end]
    if "\t" in line:
        return "\t"
    if ";" in line:
        return ";"
    return ","


def decimal_point(text: str) -> str:
    """``text`` with its decimal comma made a point when it is a number written with one
    (``21,5`` -> ``21.5``); any other text comes back unchanged."""
    if "," in text and DECIMAL_COMMA.fullmatch(text):
        return text.replace(",", ".")
    return text


def guard_formula(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula: ``=1+1`` -> ``'=1+1``.

    Only for text cells: numbers are never passed through here, so ``-3.5`` stays a number.
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unguard_formula(cell: str) -> str:
    """A cell read back with the guard of :func:`guard_formula` taken off: ``'=1+1`` ->
    ``=1+1``; a cell without the guard comes back unchanged."""
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_STARTS:
        return cell[1:]
    return cell
