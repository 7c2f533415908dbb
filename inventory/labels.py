"""QR labels for assets: A4 sheets of codes in a grid, as SVG pages or one PDF.

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
pages as needed. The PDF is written here, without dependencies: vector rectangles for the
dark modules (one per run of a row), the standard Helvetica fonts in WinAnsi encoding
(Spanish and Portuguese letters print; other characters become ``?``), one compressed
content stream per page and a correct cross-reference table.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import segno
from sqlalchemy import Connection, select

from inventory.errors import InvalidValueError, NotFoundError
from inventory.sites import get_site, subtree
from inventory.tables import assets, models, sites

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
MAX_COLUMNS = 10
MAX_ROWS = 20
MAX_LABELS = 10_000  # one print job: ~420 pages of 24 labels
# Helvetica's average advance widths in ems, by kind of character (from its AFM metrics):
# enough to centre and cut a line; the tag line uses Helvetica-Bold, a little wider.
_WIDE = 0.667
_NARROW = 0.278
_DIGIT = 0.556
_LOWER = 0.52
BOLD_FACTOR = 1.08


@dataclass(frozen=True, slots=True)
class Label:
    """What one label shows: the tag (also in the code), the model name and the site."""

    tag: str
    model: str
    site: str


@dataclass(frozen=True, slots=True)
class Grid:
    """How labels sit on an A4 page: columns x rows of equal cells inside the margin."""

    columns: int = 3
    rows: int = 8
    margin_mm: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.columns <= MAX_COLUMNS:
            raise InvalidValueError(f"columns {self.columns} is not in 1..{MAX_COLUMNS}")
        if not 1 <= self.rows <= MAX_ROWS:
            raise InvalidValueError(f"rows {self.rows} is not in 1..{MAX_ROWS}")
        if not 0 <= self.margin_mm <= 40:
            raise InvalidValueError(f"margin {self.margin_mm} mm is not in 0..40 mm")

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    @property
    def cell_w(self) -> float:
        return (PAGE_W_MM - 2 * self.margin_mm) / self.columns

    @property
    def cell_h(self) -> float:
        return (PAGE_H_MM - 2 * self.margin_mm) / self.rows

    @property
    def font_mm(self) -> float:
        return max(MIN_FONT_MM, min(MAX_FONT_MM, self.cell_h * 0.075))

    @property
    def code_mm(self) -> float:
        """The side of every code (with its quiet zone) on this grid."""
        text_h = 3 * self.font_mm * LINE_SPACING
        return min(self.cell_w, self.cell_h - text_h) - 2 * PAD_MM


@dataclass(frozen=True, slots=True)
class Placed:
    """A label where it lands: page (0-based), the code's top-left corner and module size
    in mm from the page's top-left, the module matrix with its quiet zone, the text lines
    with the baseline of each, and the centre line of the cell."""

    label: Label
    page: int
    column: int
    row: int
    x_mm: float
    y_mm: float
    module_mm: float
    matrix: tuple[tuple[bool, ...], ...]
    lines: tuple[tuple[str, float, bool], ...]  # text, baseline y in mm, bold
    center_x_mm: float
    font_mm: float


def qr_matrix(tag: str) -> tuple[tuple[bool, ...], ...]:
    """The modules of ``tag``'s code, dark = True, with its quiet zone."""
    code = segno.make(tag, error=ERROR_LEVEL, micro=False)
    return tuple(tuple(bool(v) for v in row)
                 for row in code.matrix_iter(scale=1, border=QUIET_ZONE))


def _text_width(text: str, font_mm: float, bold: bool = False) -> float:
    ems = 0.0
    for ch in text:
        if ch.isdigit():
            ems += _DIGIT
        elif ch.isupper() or ch in "mwMW@%":
            ems += _WIDE
        elif ch.isalpha():
            ems += _LOWER
        else:
            ems += _NARROW + (0.06 if ch in "-_/" else 0)
    return ems * font_mm * (BOLD_FACTOR if bold else 1.0)


def fit(text: str, width_mm: float, font_mm: float, bold: bool = False) -> str:
    """``text`` cut (with an ellipsis) to fit ``width_mm`` at ``font_mm``."""
    if _text_width(text, font_mm, bold) <= width_mm:
        return text
    while text and _text_width(text + "…", font_mm, bold) > width_mm:
        text = text[:-1]
    return text.rstrip() + "…"


def layout(labels: Sequence[Label], grid: Grid) -> list[list[Placed]]:
    """The labels placed on pages of ``grid``; InvalidValueError if a code would be too
    small to scan (too many rows or columns for its tag's length)."""
    if not labels:
        raise InvalidValueError("there are no labels to print")
    if len(labels) > MAX_LABELS:
        raise InvalidValueError(f"{len(labels):,} labels are more than {MAX_LABELS:,} in one job")
    code_mm = grid.code_mm
    font = grid.font_mm
    pages: list[list[Placed]] = []
    for i, label in enumerate(labels):
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
        center = cell_x + grid.cell_w / 2
        top = cell_y + PAD_MM
        width = grid.cell_w - 2 * PAD_MM
        baseline = top + code_mm + font
        lines = []
        for j, (text, bold) in enumerate(((label.tag, True), (label.model, False),
                                          (label.site, False))):
            lines.append((fit(text, width, font, bold), baseline + j * font * LINE_SPACING, bold))
        pages[-1].append(Placed(
            label, page, column, row, center - code_mm / 2, top, module, matrix, tuple(lines),
            center, font,
        ))
    return pages


def _runs(row: Sequence[bool]) -> Iterable[tuple[int, int]]:
    """(start, length) of each run of dark modules in a row."""
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
    """One SVG document per A4 page (sizes in mm)."""
    documents = []
    for page in layout(labels, grid):
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(PAGE_W_MM)}mm" '
            f'height="{_num(PAGE_H_MM)}mm" viewBox="0 0 {_num(PAGE_W_MM)} {_num(PAGE_H_MM)}">\n'
            f'<rect width="{_num(PAGE_W_MM)}" height="{_num(PAGE_H_MM)}" fill="#fff"/>\n'
        ]
        for p in page:
            d = "".join(f"M{x} {y}h{n}v1h-{n}z" for y, row in enumerate(p.matrix)
                        for x, n in _runs(row))
            parts.append(
                f'<g class="label" data-tag={quoteattr(p.label.tag)} '
                f'data-column="{p.column}" data-row="{p.row}">\n'
                f'<path class="qr" transform="translate({_num(p.x_mm)} {_num(p.y_mm)}) '
                f'scale({p.module_mm:.6f})" fill="#000" d="{d}"/>\n'
            )
            for text, y, bold in p.lines:
                weight = ' font-weight="bold"' if bold else ""
                parts.append(
                    f'<text x="{_num(p.center_x_mm)}" y="{_num(y)}" '
                    f'font-family="Helvetica, Arial, sans-serif" font-size="{_num(p.font_mm)}"'
                    f'{weight} text-anchor="middle">{escape(text)}</text>\n'
                )
            parts.append("</g>\n")
        parts.append("</svg>\n")
        documents.append("".join(parts))
    return documents


# -- PDF ----------------------------------------------------------------------------------


def _pdf_text(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _page_stream(page: Sequence[Placed]) -> bytes:
    # Millimetres from the top-left corner, y downwards, like the SVG.
    out = [f"{PT_PER_MM:.6f} 0 0 {-PT_PER_MM:.6f} 0 {PAGE_H_MM * PT_PER_MM:.4f} cm".encode()]
    for p in page:
        out.append(f"q {p.module_mm:.6f} 0 0 {p.module_mm:.6f} {p.x_mm:.4f} {p.y_mm:.4f} cm "
                   "0 g".encode())
        out.extend(f"{x} {y} {n} 1 re".encode() for y, row in enumerate(p.matrix)
                   for x, n in _runs(row))
        out.append(b"f Q")
        for text, y, bold in p.lines:
            width = _text_width(text, p.font_mm, bold)
            x = p.center_x_mm - width / 2
            out.append(
                f"BT /{'F2' if bold else 'F1'} {p.font_mm:.3f} Tf 1 0 0 -1 {x:.4f} {y:.4f} Tm "
                "(".encode() + _pdf_text(text) + b") Tj ET"
            )
    return b"\n".join(out) + b"\n"


def render_pdf(labels: Sequence[Label], grid: Grid, *, compress: bool = True) -> bytes:
    """All pages as one PDF 1.4 document."""
    pages = layout(labels, grid)
    n = len(pages)
    # Objects: 1 catalog, 2 page tree, 3 Helvetica, 4 Helvetica-Bold, then for each page
    # its page object (5 + 2i) and content stream (6 + 2i).
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        ("<< /Type /Pages /Kids [" + " ".join(f"{5 + 2 * i} 0 R" for i in range(n))
         + f"] /Count {n} >>").encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold "
        b"/Encoding /WinAnsiEncoding >>",
    ]
    media = f"[0 0 {PAGE_W_MM * PT_PER_MM:.4f} {PAGE_H_MM * PT_PER_MM:.4f}]"
    for i, page in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox {media} /Resources << /Font << "
            f"/F1 3 0 R /F2 4 0 R >> >> /Contents {6 + 2 * i} 0 R >>".encode()
        )
        stream = _page_stream(page)
        extra = b""
        if compress:
            stream = zlib.compress(stream, 6)
            extra = b" /Filter /FlateDecode"
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream
                       + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


# -- what to print --------------------------------------------------------------------------


def labels_for(
    *, conn: Connection, tags: Sequence[str] | None = None, site_under: str | None = None
) -> list[Label]:
    """The labels of the given ``tags`` (in that order), or of every asset at ``site_under``
    and its subtree (by tag); NotFoundError naming a tag that is not registered."""
    if (tags is None) == (site_under is None):
        raise InvalidValueError("labels need either asset tags or a site, not both or neither")
    query = (
        select(assets.c.tag, models.c.name.label("model"), sites.c.code, sites.c.name)
        .select_from(assets.join(models, models.c.code == assets.c.model_code)
                     .join(sites, sites.c.code == assets.c.site_code))
    )
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        query = query.where(assets.c.site_code.in_(select(subtree(site_under).c.code)))
        rows = conn.execute(query.order_by(assets.c.tag)).all()
        if not rows:
            raise NotFoundError(f"site {site_under!r} and the sites under it hold no assets",
                                what="asset", key=site_under)
        return [Label(r.tag, r.model, f"{r.code} · {r.name}") for r in rows]
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
    return [Label(t, found[t].model, f"{found[t].code} · {found[t].name}") for t in wanted]
