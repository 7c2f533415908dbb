"""QR labels for assets: A4 sheets of codes in a grid, or one label a page for a small
label printer, as SVG pages or one PDF.

Each label holds one QR code that encodes the asset tag as plain text, nothing else, so
a USB scanner types the tag into any field (the API's ``/assets/by-tag/{tag}``, a
spreadsheet, a search box) and a phone camera shows it as it is. The code is a full QR
code (never Micro QR, which many phone and USB scanners do not read), with error
correction level M at least (15% of the code can be scratched or dirty and it still
reads; segno raises it to Q or H when that fits in the same size), and its quiet zone of
4 modules kept white around it, as ISO/IEC 18004 asks. Under the code are three lines:
the tag in bold, the model name and the site (code and name), each cut to fit the label.

The page is A4 (210 x 297 mm) with a margin; the grid (columns x rows) divides the rest
into equal cells, filled left to right, top to bottom, and labels continue on as many
pages as needed. A small label printer takes one label a page, its page the label's size
(:data:`SMALL_LABEL`, 50 x 30 mm): the code fills the label's height and the three lines
stand on its right. The text is set in Noto Sans (the ``fontpkg-noto-sans`` package), which
prints Latin with every accent and extra letter of the region's languages (Ñ, ŋ, ẽ, ũ,
combining marks), Greek, Cyrillic and Vietnamese; a character it lacks is refused with
the tag that holds it. Lines are measured with the font's own advance widths and cut
between characters, never between a letter and its accent. The PDF is written with
fpdf2: vector rectangles for the dark modules (one filled path per code), the font
embedded as a subset with a ToUnicode map, so copying or searching the text gives it back
as it was written.
"""

from __future__ import annotations

import io
import logging
import tempfile
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import segno
from sqlalchemy import Connection, select

from inventory.assets import STATUSES
from inventory.errors import InvalidValueError, NotFoundError
from inventory.sites import get_site, subtree
from inventory.tables import assets, models, sites
from inventory.values import check_choice

PAGE_W_MM = 210.0  # A4 portrait
PAGE_H_MM = 297.0
PT_PER_MM = 72 / 25.4  # PDF user space is in points
QUIET_ZONE = 4  # modules of white around a code, as ISO/IEC 18004 asks
ERROR_LEVEL = "m"  # at least 15% of the code may be damaged; segno boosts it when free
MIN_MODULE_MM = 0.35  # smaller modules blur on office laser printers and cheap cameras
PAD_MM = 2.0  # white inside each cell, around the code and the text
LINE_SPACING = 1.25  # text line height as a multiple of the font size
MAX_FONT_MM = 3.5  # 10 pt: the tag stays readable from arm's length
MIN_FONT_MM = 1.8  # 5 pt: the smallest text an office printer prints sharply
PAGE_MIN_MM = 20.0  # the smallest label a code and a tag fit on
PAGE_MAX_MM = 420.0  # A3's long side: no office or label printer takes more
BESIDE_FONT_SHARE = 0.1  # of the cell's height: 3 mm (8.5 pt) on a 30 mm label
MAX_COLUMNS = 10
MAX_ROWS = 20
MAX_LABELS = 10_000  # one print job: ~420 pages of 24 labels
FONT_FAMILY = "Noto Sans"  # from the fontpkg-noto-sans wheel: one variable font file
# Axis values of the variable font for the two faces: weight in CSS units (400 regular,
# 700 bold for the tag) and width in percent of normal (100: not condensed).
REGULAR_WEIGHT = 400
BOLD_WEIGHT = 700
FONT_WIDTH = 100
ELLIPSIS = "…"  # ends a line that was cut to fit
# The font's glyph substitution and positioning tables: fpdf2 sets text glyph by glyph
# from the character map and advance widths, so they would only be carried, never used.
_UNUSED_TABLES = ("GSUB", "GPOS", "GDEF")

# fontTools tells at INFO each table it cuts down or sets to a weight: some 120 lines a
# print job (ours and fpdf2's), which say nothing to a lab. Its warnings still show.
for _name in ("fontTools.subset", "fontTools.varLib"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Label:
    """What one label shows: the tag (also in the code), the model name and the site."""

    tag: str
    model: str
    site: str


@dataclass(frozen=True, slots=True)
class Grid:
    """How labels sit on a page: columns x rows of equal cells inside the margin. The page
    is A4 unless given (a small label printer's page is one label: :data:`SMALL_LABEL`).
    The text stands under the code, or beside it on its right with ``text_beside`` (a
    label wider than high)."""

    columns: int = 3
    rows: int = 8
    margin_mm: float = 10.0
    page_w_mm: float = PAGE_W_MM
    page_h_mm: float = PAGE_H_MM
    text_beside: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.columns <= MAX_COLUMNS:
            raise InvalidValueError(f"columns {self.columns} is not in 1..{MAX_COLUMNS}")
        if not 1 <= self.rows <= MAX_ROWS:
            raise InvalidValueError(f"rows {self.rows} is not in 1..{MAX_ROWS}")
        if not 0 <= self.margin_mm <= 40:
            raise InvalidValueError(f"margin {self.margin_mm} mm is not in 0..40 mm")
        for side, size in (("width", self.page_w_mm), ("height", self.page_h_mm)):
            if not PAGE_MIN_MM <= size <= PAGE_MAX_MM:
                raise InvalidValueError(
                    f"page {side} {size} mm is not in {PAGE_MIN_MM:g}..{PAGE_MAX_MM:g} mm")
        if min(self.cell_w, self.cell_h) <= 2 * PAD_MM:
            raise InvalidValueError(
                f"a margin of {self.margin_mm} mm leaves no room for a label on a "
                f"{self.page_w_mm:g} x {self.page_h_mm:g} mm page")

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    @property
    def cell_w(self) -> float:
        return (self.page_w_mm - 2 * self.margin_mm) / self.columns

    @property
    def cell_h(self) -> float:
        return (self.page_h_mm - 2 * self.margin_mm) / self.rows

    @property
    def font_mm(self) -> float:
        share = BESIDE_FONT_SHARE if self.text_beside else 0.075
        return max(MIN_FONT_MM, min(MAX_FONT_MM, self.cell_h * share))

    @property
    def code_mm(self) -> float:
        """The side of every code (with its quiet zone) on this grid."""
        if self.text_beside:
            return min(self.cell_h, self.cell_w / 2) - 2 * PAD_MM
        text_h = 3 * self.font_mm * LINE_SPACING
        return min(self.cell_w, self.cell_h - text_h) - 2 * PAD_MM


# A small label printer's label, one to a page (the printer's driver feeds one label per
# page): 50 x 30 mm, the die-cut thermal labels sold for shop and stock printers across the
# region (Xprinter, Zebra, Brother). The code fills its height, the three lines stand beside.
SMALL_LABEL = Grid(columns=1, rows=1, margin_mm=0.0, page_w_mm=50.0, page_h_mm=30.0,
                   text_beside=True)
A4_SHEET = Grid()  # 3 x 8 labels of 70 x 34.6 mm on A4 (the API's default)


@dataclass(frozen=True, slots=True)
class Placed:
    """A label where it lands: page (0-based), the code's top-left corner and module size
    in mm from the page's top-left, the module matrix with its quiet zone, the text lines
    with the left end and baseline of each, and the centre line of the cell."""

    label: Label
    page: int
    column: int
    row: int
    x_mm: float
    y_mm: float
    module_mm: float
    matrix: tuple[tuple[bool, ...], ...]
    lines: tuple[tuple[str, float, float, bool], ...]  # text, left x, baseline y in mm, bold
    center_x_mm: float
    font_mm: float


def qr_matrix(tag: str) -> tuple[tuple[bool, ...], ...]:
    """The modules of ``tag``'s code, dark = True, with its quiet zone."""
    code = segno.make(tag, error=ERROR_LEVEL, micro=False)
    return tuple(tuple(bool(v) for v in row)
                 for row in code.matrix_iter(scale=1, border=QUIET_ZONE))


# -- the font -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Face:
    """One static face of the label font, cut down to the characters of one print job:
    the TrueType file fpdf2 embeds, and each character's advance width in ems."""

    ttf: bytes
    advances: dict[str, float]

    def width(self, text: str, font_mm: float) -> float:
        """How wide ``text`` is set at ``font_mm``, in mm."""
        return sum(self.advances[ch] for ch in text) * font_mm


@cache
def _font_file() -> bytes:
    """The variable Noto Sans font file, from its package."""
    import fontpkg  # here, not at the top: a served hub loads fonts only to print labels

    try:
        path = fontpkg.path(FONT_FAMILY)
    except fontpkg.FontpkgError as exc:
        raise RuntimeError(
            f"the label font {FONT_FAMILY} is not installed ({exc}): install LabHub with "
            "its dependencies, or `pip install fontpkg-noto-sans`"
        ) from exc
    return Path(path).read_bytes()


@cache
def _printable() -> frozenset[str]:
    """Every character the label font has a glyph for."""
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(_font_file()), lazy=True)
    return frozenset(chr(cp) for cp in font.getBestCmap())


@lru_cache(maxsize=8)
def faces(chars: frozenset[str]) -> tuple[Face, Face]:
    """The regular and the bold face of the label font with just ``chars`` (and the space
    and ellipsis). Cut down first, then set to a weight: the whole variable font takes
    seconds to set, its few used glyphs a fraction of one."""
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.varLib import instancer

    font = TTFont(io.BytesIO(_font_file()), lazy=True)
    options = subset.Options()
    options.layout_features = []
    options.drop_tables += list(_UNUSED_TABLES)
    options.notdef_outline = True  # a visible box if a glyph were ever missing
    options.name_IDs = ["*"]  # keep the names: the instances are named after them
    cutter = subset.Subsetter(options)
    cutter.populate(unicodes={ord(ch) for ch in chars | {" ", ELLIPSIS}})
    cutter.subset(font)
    made = []
    for weight in (REGULAR_WEIGHT, BOLD_WEIGHT):
        face = instancer.instantiateVariableFont(
            font, {"wght": weight, "wdth": FONT_WIDTH}, static=True, updateFontNames=True,
        )
        per_em = face["head"].unitsPerEm
        metrics = face["hmtx"].metrics
        advances = {chr(cp): metrics[glyph][0] / per_em
                    for cp, glyph in face.getBestCmap().items()}
        out = io.BytesIO()
        face.save(out)
        made.append(Face(out.getvalue(), advances))
    return made[0], made[1]


def _clusters(text: str) -> list[str]:
    """``text`` as letters with the combining marks that follow each (``a`` + U+0303)."""
    out: list[str] = []
    for ch in text:
        if out and unicodedata.combining(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def fit(text: str, width_mm: float, font_mm: float, face: Face) -> str:
    """``text`` cut (with an ellipsis) to fit ``width_mm`` at ``font_mm`` in ``face``,
    never between a letter and its combining marks."""
    if face.width(text, font_mm) <= width_mm:
        return text
    clusters = _clusters(text)
    while clusters and face.width("".join(clusters) + ELLIPSIS, font_mm) > width_mm:
        clusters.pop()
    return "".join(clusters).rstrip() + ELLIPSIS


def _lines(label: Label) -> tuple[tuple[str, bool], ...]:
    """The three lines of a label (whitespace runs set as one space), each with whether
    it is bold; InvalidValueError naming the tag for a character the font lacks."""
    printable = _printable()
    lines = []
    for field, text, bold in (("tag", label.tag, True), ("model", label.model, False),
                              ("site", label.site, False)):
        text = " ".join(text.split())
        for ch in text:
            if ch not in printable:
                raise InvalidValueError(
                    f"the label of tag {label.tag!r} cannot print {ch!r} (U+{ord(ch):04X}) "
                    f"of its {field} {text!r}: the label font {FONT_FAMILY} has no such "
                    "character"
                )
        lines.append((text, bold))
    return tuple(lines)


# -- layout -----------------------------------------------------------------------------------


def layout(labels: Sequence[Label], grid: Grid) -> tuple[list[list[Placed]], tuple[Face, Face]]:
    """The labels placed on pages of ``grid``, and the regular and bold faces they are
    measured (and are to be set) in; InvalidValueError if a code would be too small to scan
    (too many rows or columns for its tag's length) or a text has a character the font
    lacks."""
    if not labels:
        raise InvalidValueError("there are no labels to print")
    if len(labels) > MAX_LABELS:
        raise InvalidValueError(f"{len(labels):,} labels are more than {MAX_LABELS:,} in one job")
    texts = [_lines(label) for label in labels]
    regular, bold = faces(frozenset("".join(t for lines in texts for t, _ in lines)))
    code_mm = grid.code_mm
    font = grid.font_mm
    pages: list[list[Placed]] = []
    for i, (label, lines) in enumerate(zip(labels, texts, strict=True)):
        page, slot = divmod(i, grid.per_page)
        row, column = divmod(slot, grid.columns)
        if slot == 0:
            pages.append([])
        matrix = qr_matrix(label.tag)
        module = code_mm / len(matrix) if code_mm > 0 else 0.0
        if module < MIN_MODULE_MM:
            raise InvalidValueError(
                f"a {grid.columns} x {grid.rows} grid leaves {module:.2f} mm per module for "
                f"the code of tag {label.tag!r} (at least {MIN_MODULE_MM} mm scans): use "
                "fewer columns or rows"
            )
        cell_x = grid.margin_mm + column * grid.cell_w
        cell_y = grid.margin_mm + row * grid.cell_h
        top = cell_y + PAD_MM
        if grid.text_beside:  # the code on the left, the lines centred in the room on its right
            code_x = cell_x + PAD_MM
            width = grid.cell_w - code_mm - 3 * PAD_MM
            center = code_x + code_mm + PAD_MM + width / 2
            block = (2 * LINE_SPACING + 1) * font
            baseline = cell_y + (grid.cell_h - block) / 2 + font
        else:  # the code centred at the top, the lines under it
            center = cell_x + grid.cell_w / 2
            code_x = center - code_mm / 2
            width = grid.cell_w - 2 * PAD_MM
            baseline = top + code_mm + font
        placed_lines = []
        for j, (text, is_bold) in enumerate(lines):
            face = bold if is_bold else regular
            shown = fit(text, width, font, face)
            placed_lines.append((shown, center - face.width(shown, font) / 2,
                                 baseline + j * font * LINE_SPACING, is_bold))
        pages[-1].append(Placed(
            label, page, column, row, code_x, top, module, matrix,
            tuple(placed_lines), center, font,
        ))
    return pages, (regular, bold)


def dark_runs(row: Sequence[bool]) -> Iterable[tuple[int, int]]:
    """(start, length) of each run of dark modules in a row of a QR matrix: one filled
    rectangle each (student cards draw their codes the same way)."""
    start = None
    for x, dark in enumerate((*row, False)):
        if dark and start is None:
            start = x
        elif not dark and start is not None:
            yield start, x - start
            start = None


# -- SVG ----------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def render_svg(labels: Sequence[Label], grid: Grid) -> list[str]:
    """One SVG document per page (sizes in mm). The viewer sets the text, in Noto Sans
    where it has it (the lines are cut to Noto Sans's widths)."""
    documents = []
    w, h = _num(grid.page_w_mm), _num(grid.page_h_mm)
    for page in layout(labels, grid)[0]:
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}mm" '
            f'height="{h}mm" viewBox="0 0 {w} {h}">\n'
            f'<rect width="{w}" height="{h}" fill="#fff"/>\n'
        ]
        for p in page:
            d = "".join(f"M{x} {y}h{n}v1h-{n}z" for y, row in enumerate(p.matrix)
                        for x, n in dark_runs(row))
            parts.append(
                f'<g class="label" data-tag={quoteattr(p.label.tag)} '
                f'data-column="{p.column}" data-row="{p.row}">\n'
                f'<path class="qr" transform="translate({_num(p.x_mm)} {_num(p.y_mm)}) '
                f'scale({p.module_mm:.6f})" fill="#000" d="{d}"/>\n'
            )
            for text, _x, y, bold in p.lines:
                weight = ' font-weight="bold"' if bold else ""
                parts.append(
                    f'<text x="{_num(p.center_x_mm)}" y="{_num(y)}" '
                    f'font-family="{FONT_FAMILY}, DejaVu Sans, sans-serif" '
                    f'font-size="{_num(p.font_mm)}"{weight} text-anchor="middle">'
                    f"{escape(text)}</text>\n"
                )
            parts.append("</g>\n")
        parts.append("</svg>\n")
        documents.append("".join(parts))
    return documents


# -- PDF ----------------------------------------------------------------------------------


def render_pdf(labels: Sequence[Label], grid: Grid, *, compress: bool = True) -> bytes:
    """All pages as one PDF document, the font embedded."""
    # fpdf and its PIL are imported when a sheet is printed, not when the hub starts
    # (about 20 MB and half a second less for every hub: bench/_ops_footprint.py).
    from fpdf import FPDF
    from fpdf.drawing import PaintedPath
    from fpdf.drawing_primitives import Transform

    pages, (regular, bold) = layout(labels, grid)
    a4 = (grid.page_w_mm, grid.page_h_mm) == (PAGE_W_MM, PAGE_H_MM)
    pdf = FPDF(unit="mm", format="A4" if a4 else (grid.page_w_mm, grid.page_h_mm))
    pdf.set_compression(compress)
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.set_creator("LabHub")
    pdf.set_title("QR labels")
    # fpdf2 reads fonts from files only; they are read again when the PDF is written.
    with tempfile.TemporaryDirectory(prefix="labhub-labels-",
                                     ignore_cleanup_errors=True) as tmp:
        for style, face in (("", regular), ("B", bold)):
            path = Path(tmp) / f"label-font{style}.ttf"
            path.write_bytes(face.ttf)
            pdf.add_font("labels", style, path)
        for page in pages:
            pdf.add_page()
            with pdf.drawing_context() as codes:
                for p in page:
                    code = PaintedPath()
                    code.style.fill_color = "#000000"
                    code.style.stroke_color = None
                    code.transform = Transform.scaling(p.module_mm).translate(p.x_mm, p.y_mm)
                    for y, row in enumerate(p.matrix):
                        for x, n in dark_runs(row):
                            code.rectangle(x, y, n, 1)
                    codes.add_item(code, clone=False)  # made here, never changed after
            for p in page:
                for text, left, baseline, is_bold in p.lines:
                    pdf.set_font("labels", "B" if is_bold else "", p.font_mm * PT_PER_MM)
                    pdf.text(left, baseline, text)
        return bytes(pdf.output())


# -- what to print --------------------------------------------------------------------------


# Not on the shelf to stick a label on: what a site's labels leave out unless asked.
AWAY_STATUSES = ("lost", "in_transit")


@dataclass(frozen=True, slots=True)
class LabelSelection:
    """The labels to print, and how many assets of each status were left out."""

    labels: list[Label]
    left_out: dict[str, int]  # status -> number of assets left out

    @property
    def left_out_total(self) -> int:
        """How many assets were left out in all."""
        return sum(self.left_out.values())


def select_labels(
    *, conn: Connection, tags: Sequence[str] | None = None, site_under: str | None = None,
    leave_out: Collection[str] = AWAY_STATUSES,
) -> LabelSelection:
    """The labels of the given ``tags`` (in that order), or of every asset at ``site_under``
    and its subtree (by tag), without the assets of a status in ``leave_out`` (by default
    :data:`AWAY_STATUSES`: lost and in-transit ones are not on the shelf), and how many of
    each status were left out. NotFoundError naming a tag that is not registered, or when
    nothing is left to print."""
    if (tags is None) == (site_under is None):
        raise InvalidValueError("labels need either asset tags or a site, not both or neither")
    for status in leave_out:
        check_choice(status, STATUSES, what="asset status")
    query = (
        select(assets.c.tag, assets.c.status, models.c.name.label("model"), sites.c.code,
               sites.c.name)
        .select_from(assets.join(models, models.c.code == assets.c.model_code)
                     .join(sites, sites.c.code == assets.c.site_code))
    )
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        rows = conn.execute(
            query.where(assets.c.site_code.in_(select(subtree(site_under).c.code)))
            .order_by(assets.c.tag)).all()
        where = f"site {site_under!r} and the sites under it hold no assets"
    else:
        assert tags is not None
        if not tags:
            raise InvalidValueError("there are no labels to print: give at least one tag")
        found = {}
        wanted = list(dict.fromkeys(tags))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            found.update({r.tag: r for r in conn.execute(query.where(assets.c.tag.in_(chunk)))})
        for tag in wanted:
            if tag not in found:
                raise NotFoundError(f"no asset with tag {tag!r}", what="asset", key=tag)
        rows = [found[t] for t in wanted]
        where = "none of these assets can be printed"
    left_out: dict[str, int] = {}
    kept = []
    for r in rows:
        if r.status in leave_out:
            left_out[r.status] = left_out.get(r.status, 0) + 1
        else:
            kept.append(Label(r.tag, r.model, f"{r.code} · {r.name}"))
    if not kept:
        raise NotFoundError(
            where + (f" that are not {', '.join(sorted(leave_out))} (left out: "
                     + ", ".join(f"{n} {st}" for st, n in sorted(left_out.items())) + ")"
                     if left_out else ""),
            what="asset", key=site_under or ",".join(tags or ()))
    return LabelSelection(kept, left_out)


def labels_for(
    *, conn: Connection, tags: Sequence[str] | None = None, site_under: str | None = None,
    leave_out: Collection[str] = (),
) -> list[Label]:
    """The labels of :func:`select_labels`, leaving out only the statuses in ``leave_out``
    (none by default)."""
    return select_labels(conn=conn, tags=tags, site_under=site_under,
                         leave_out=leave_out).labels
