"""Students' QR cards: an A4 PDF of cards, one per student, each with a QR code that signs
the student in, their name, their class (and its join code) and the lab.

The code holds :func:`labhub.access.classes.card_url`: the hub's sign-in page with the
card's secret after ``#`` (never the PIN). It is built as the inventory's asset labels
are (:mod:`inventory.labels`, whose public font and code helpers this reuses): a full QR
code at error correction M or better with its 4-module quiet zone, drawn as vector
rectangles by fpdf2; the text in Noto Sans, cut to fit with an ellipsis, the font
embedded as a subset with a ToUnicode map so the names can be searched and copied.

Cards sit :data:`COLUMNS` x :data:`ROWS` to a page (about the size of a bank card, cut
along the grey lines), the code on the left, the text on the right.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inventory.labels import (
    ELLIPSIS,
    FONT_FAMILY,
    PT_PER_MM,
    dark_runs,
    faces,
    fit,
    qr_matrix,
)
from labhub.access.accounts import InvalidAccountValueError

PAGE_W_MM = 210.0  # A4 portrait
PAGE_H_MM = 297.0
MARGIN_MM = 10.0
COLUMNS = 2
ROWS = 5  # 10 cards a page: 95 x 55.4 mm each, near a bank card's 85.6 x 54
PAD_MM = 4.0  # white inside each card, around the code and the text
NAME_FONT_MM = 5.0  # the student's name: 14 pt, read across a table
TEXT_FONT_MM = 3.2  # class and lab: 9 pt
LINE_SPACING = 1.35
MIN_MODULE_MM = 0.35  # as inventory.labels: smaller blurs on office printers and webcams
CUT_LINE_GREY = 180  # the lines to cut along: light enough not to distract a scanner


@dataclass(frozen=True, slots=True)
class Card:
    """What one card shows, and the URL its code holds."""

    name: str
    class_name: str
    join_code: str
    site_code: str
    site_name: str
    url: str



def _lines(card: Card) -> list[tuple[str, bool, float]]:
    """The text of a card: (text, bold, font size in mm)."""
    return [(" ".join(card.name.split()), True, NAME_FONT_MM),
            (" ".join(card.class_name.split()), False, TEXT_FONT_MM),
            (f"código {card.join_code}", False, TEXT_FONT_MM),
            (" ".join(card.site_name.split()), False, TEXT_FONT_MM),
            (card.site_code, False, TEXT_FONT_MM)]


def render_pdf(cards: Sequence[Card], *, title: str = "LabHub cards") -> bytes:
    """The cards on as many A4 pages as they fill, as one PDF; InvalidAccountValueError
    for no cards, or a character the font cannot print (naming the student)."""
    if not cards:
        raise InvalidAccountValueError("the class has no students to print cards for")
    texts = [_lines(c) for c in cards]
    chars = frozenset("".join(t for lines in texts for t, _, _ in lines))
    regular, bold = faces(chars)
    for card, lines in zip(cards, texts, strict=True):
        for text, _, _ in lines:
            for ch in text:
                if ch != " " and ch not in regular.advances:
                    raise InvalidAccountValueError(
                        f"the card of {card.name!r} cannot print {ch!r} (U+{ord(ch):04X}): "
                        f"the card font {FONT_FAMILY} has no such character")
    cell_w = (PAGE_W_MM - 2 * MARGIN_MM) / COLUMNS
    cell_h = (PAGE_H_MM - 2 * MARGIN_MM) / ROWS
    code_mm = cell_h - 2 * PAD_MM
    text_x = code_mm + 2 * PAD_MM
    text_w = cell_w - text_x - PAD_MM
    from fpdf import FPDF  # when a sheet is printed, not when the hub starts
    from fpdf.drawing import PaintedPath
    from fpdf.drawing_primitives import Transform

    pdf = FPDF(unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.set_creator("LabHub")
    pdf.set_title(title)
    per_page = COLUMNS * ROWS
    # fpdf2 reads fonts from files only; they are read again when the PDF is written.
    with tempfile.TemporaryDirectory(prefix="labhub-cards-", ignore_cleanup_errors=True) as tmp:
        for style, face in (("", regular), ("B", bold)):
            path = Path(tmp) / f"card-font{style}.ttf"
            path.write_bytes(face.ttf)
            pdf.add_font("cards", style, path)
        for i, (card, lines) in enumerate(zip(cards, texts, strict=True)):
            slot = i % per_page
            if slot == 0:
                pdf.add_page()
            row, column = divmod(slot, COLUMNS)
            x0 = MARGIN_MM + column * cell_w
            y0 = MARGIN_MM + row * cell_h
            pdf.set_draw_color(CUT_LINE_GREY)
            pdf.set_line_width(0.2)
            pdf.rect(x0, y0, cell_w, cell_h)
            matrix = qr_matrix(card.url)
            module = code_mm / len(matrix)
            if module < MIN_MODULE_MM:  # pragma: no cover - a URL of a few hundred bytes
                raise InvalidAccountValueError("the card's address is too long for its code")
            with pdf.drawing_context() as ctx:
                code = PaintedPath()
                code.style.fill_color = "#000000"
                code.style.stroke_color = None
                code.transform = Transform.scaling(module).translate(x0 + PAD_MM, y0 + PAD_MM)
                for y, modules in enumerate(matrix):
                    for x, n in dark_runs(modules):
                        code.rectangle(x, y, n, 1)
                ctx.add_item(code, clone=False)
            baseline = y0 + PAD_MM + NAME_FONT_MM
            for text, is_bold, size in lines:
                face = bold if is_bold else regular
                shown = fit(text, text_w, size, face) if text else ELLIPSIS
                pdf.set_font("cards", "B" if is_bold else "", size * PT_PER_MM)
                pdf.text(x0 + text_x, baseline, shown)
                baseline += size * LINE_SPACING + (1.5 if is_bold else 0)
        return bytes(pdf.output())
