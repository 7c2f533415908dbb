"""QR labels: the codes in the SVG and the PDF read back as segno's matrix of the tag, sit
in the chosen grid, run over pages, carry their texts; the PDF is valid for poppler
(rendered with pdftoppm and sampled module by module, text extracted with pdftotext);
names in Quechua, K'iche', Nasa Yuwe or Portuguese come back from the PDF as they were
written, and no text runs out of its label."""

from __future__ import annotations

import html
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import segno
from sqlalchemy import Engine

from inventory import assets, catalog, sites
from inventory.errors import InvalidValueError, NotFoundError
from inventory.labels import (
    ELLIPSIS,
    PAD_MM,
    PAGE_H_MM,
    PAGE_W_MM,
    PT_PER_MM,
    QUIET_ZONE,
    Grid,
    Label,
    faces,
    fit,
    labels_for,
    layout,
    render_pdf,
    render_svg,
)

BY = "coordinadora"
Matrix = tuple[tuple[bool, ...], ...]
# Lab and person names of the region, each with a letter or accent outside Latin-1 or
# WinAnsi (ŋ, ẽ, ũ, a combining tilde) or next to one.
NAMES = (
    "Ñawpaq Yachay Wasi",  # Quechua
    "Q'eqchi' – Tz'ikin",  # Q'eqchi' and K'iche'
    "Kwe'sx Yat – Çxhab ẽ ũ",  # Nasa Yuwe
    "Laboratório São João",  # Portuguese
    "Tecpán ŋ",
    "a\u0303",  # a + COMBINING TILDE, no precomposed character
    "g\u0303uasu",  # Guarani g̃: no precomposed form exists
)
needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) is not installed: scripts/test-services",
)


def segno_matrix(tag: str) -> Matrix:
    """What a scanner should see for ``tag``: a full QR code, level M or better, 4-module
    quiet zone. Built here from segno directly, not from labels.qr_matrix."""
    code = segno.make(tag, error="m", micro=False)
    assert code.designator[-1] in "MQH" and not code.is_micro
    size = code.symbol_size(scale=1, border=0)[0]
    dark = {(x + QUIET_ZONE, y + QUIET_ZONE) for y, row in enumerate(code.matrix)
            for x, v in enumerate(row) if v}
    full = size + 2 * QUIET_ZONE
    return tuple(tuple((x, y) in dark for x in range(full)) for y in range(full))


def _runs_to_matrix(runs: list[tuple[int, int, int]], size: int) -> Matrix:
    dark = {(x + i, y) for x, y, n in runs for i in range(n)}
    return tuple(tuple((x, y) in dark for x in range(size)) for y in range(size))


def _labels(n: int) -> list[Label]:
    return [Label(f"VC-{i:04d}", f"Arduino Uno R3 nº{i}", "VL-LP-014 · Escuela Simón Bolívar")
            for i in range(n)]


def parse_svg(doc: str) -> list[dict[str, Any]]:
    found = []
    for g in re.finditer(
        r'<g class="label" data-tag="([^"]+)" data-column="(\d+)" data-row="(\d+)">\n'
        r'<path class="qr" transform="translate\(([\d.]+) ([\d.]+)\) scale\(([\d.]+)\)" '
        r'fill="#000" d="([^"]*)"/>\n((?:<text[^\n]*\n)*)</g>', doc,
    ):
        runs = [(int(x), int(y), int(n)) for x, y, n, n2 in
                re.findall(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z", g[7])]
        texts = re.findall(r'y="([\d.]+)"[^>]*>([^<]*)</text>', g[8])
        found.append({"tag": g[1], "column": int(g[2]), "row": int(g[3]), "x": float(g[4]),
                      "y": float(g[5]), "module": float(g[6]), "runs": runs,
                      "texts": [t for _, t in texts]})
    return found


def test_svg_codes_read_back_as_the_tag_and_sit_in_the_grid() -> None:
    grid = Grid(columns=3, rows=8, margin_mm=10)
    pages = render_svg(_labels(30), grid)
    assert len(pages) == 2
    first, second = parse_svg(pages[0]), parse_svg(pages[1])
    assert [g["tag"] for g in first] == [f"VC-{i:04d}" for i in range(24)]
    assert [g["tag"] for g in second] == [f"VC-{i:04d}" for i in range(24, 30)]
    cell_w, cell_h = (210 - 20) / 3, (297 - 20) / 8
    for i, g in enumerate(first + second):
        expected = segno_matrix(g["tag"])
        size = len(expected)
        assert _runs_to_matrix(g["runs"], size) == expected, g["tag"]
        # The quiet zone is white: no run touches the outer 4 modules.
        assert all(x >= QUIET_ZONE and x + n <= size - QUIET_ZONE
                   and QUIET_ZONE <= y < size - QUIET_ZONE for x, y, n in g["runs"])
        slot = i % 24
        assert (g["row"], g["column"]) == divmod(slot, 3)
        code_mm = g["module"] * size
        centre_x = 10 + g["column"] * cell_w + cell_w / 2
        assert g["x"] + code_mm / 2 == pytest.approx(centre_x, abs=0.01)
        assert g["y"] == pytest.approx(10 + g["row"] * cell_h + 2, abs=0.01)
        # The whole label (code and three lines of text) stays inside its cell.
        assert g["y"] + code_mm <= 10 + (g["row"] + 1) * cell_h
        assert g["texts"][0] == g["tag"]
        assert g["texts"][1] == f"Arduino Uno R3 nº{int(g['tag'][3:])}"
        assert g["texts"][2] == "VL-LP-014 · Escuela Simón Bolívar"
    assert 'width="210mm" height="297mm"' in pages[0]


def test_long_texts_are_cut_to_the_label_and_xml_is_escaped() -> None:
    label = Label("VC/0001", "Kit <robótica> & sensores " * 5, "S & S")
    doc = render_svg([label], Grid(columns=4, rows=10))[0]
    [g] = parse_svg(doc)
    shown = html.unescape(g["texts"][1])
    assert shown.endswith("…") and label.model.startswith(shown[:-1].rstrip())
    assert len(shown) < len(label.model)
    assert "&lt;robótica&gt; &amp;" in g["texts"][1]
    assert g["texts"][2] == "S &amp; S"


def test_a_grid_too_dense_for_a_scannable_code_is_refused() -> None:
    with pytest.raises(InvalidValueError, match=r"mm per module for the code of tag 'VC-"):
        render_svg([Label("VC-" + "9" * 60, "m", "s")], Grid(columns=10, rows=20))
    with pytest.raises(InvalidValueError, match=r"columns 0 is not in 1\.\.10"):
        Grid(columns=0)
    with pytest.raises(InvalidValueError, match="no labels to print"):
        render_pdf([], Grid())


def _poppler(tool: str, *args: str | Path) -> str:
    result = subprocess.run([tool, *map(str, args)], capture_output=True, check=False,
                            text=True)
    assert result.returncode == 0 and not result.stderr, (tool, result.stderr)
    return result.stdout


def _pdf_codes(pdf: bytes) -> list[tuple[float, float, float, Matrix]]:
    """Each code of an uncompressed PDF: module size and top-left corner in mm (the page
    is drawn in mm from the top-left, as fpdf2 sets it) and the matrix of its runs."""
    assert b"2.8346 0 0 -2.8346 0 841.89 cm" in pdf  # mm, y downwards, on A4
    codes = []
    for block in re.finditer(
        rb"q ([\d.]+) 0 0 ([\d.]+) ([\d.]+) ([\d.]+) cm 0 g 0 0 m ((?:\d+ \d+ \d+ 1 re "
        rb"(?:\d+ \d+ m )?)*)f Q", pdf,
    ):
        assert block[1] == block[2]
        runs = [(int(x), int(y), int(n)) for x, y, n in
                re.findall(rb"(\d+) (\d+) (\d+) 1 re", block[5])]
        size = max(x + n for x, _, n in runs) + QUIET_ZONE
        codes.append((float(block[1]), float(block[3]), float(block[4]),
                      _runs_to_matrix(runs, size)))
    return codes


@needs_poppler
def test_pdf_has_a_valid_structure_embedded_fonts_and_the_same_codes(tmp_path: Path) -> None:
    labels = _labels(30)
    pdf_path = tmp_path / "labels.pdf"
    pdf_path.write_bytes(render_pdf(labels, Grid(columns=3, rows=8)))
    info = _poppler("pdfinfo", pdf_path)
    assert re.search(r"^Pages: +2$", info, re.M)
    assert re.search(r"^Page size: +595\.2\d x 841\.89 pts \(A4\)$", info, re.M)
    # Only the label font, regular and bold, each embedded as a subset with a ToUnicode map.
    fonts = _poppler("pdffonts", pdf_path).splitlines()[2:]
    assert len(fonts) == 2
    assert all(re.fullmatch(r"[A-Z]{6}\+NotoSans(Bold)?\s+CID TrueType\s+Identity-H\s+"
                            r"yes yes yes\s+\d+\s+0", line) for line in fonts), fonts
    codes = _pdf_codes(render_pdf(labels, Grid(columns=3, rows=8), compress=False))
    assert [matrix for *_, matrix in codes] == [segno_matrix(lb.tag) for lb in labels]
    cell_w = (210 - 20) / 3
    for i, (module, x, y, matrix) in enumerate(codes):
        row, column = divmod(i % 24, 3)
        assert x + module * len(matrix) / 2 == pytest.approx(10 + (column + 0.5) * cell_w,
                                                             abs=0.01)
        assert y == pytest.approx(10 + row * (297 - 20) / 8 + PAD_MM, abs=0.01)


def _pgm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    magic, width, height, maxval, pixels = data.split(maxsplit=4)
    assert magic == b"P5" and maxval == b"255"
    return int(width), int(height), pixels


def _render(pdf: bytes, tmp_path: Path, dpi: int) -> list[tuple[int, int, bytes]]:
    """The pages of ``pdf`` as poppler renders them, in grey."""
    pdf_path = tmp_path / "labels.pdf"
    pdf_path.write_bytes(pdf)
    _poppler("pdftoppm", "-r", str(dpi), "-gray", pdf_path, tmp_path / "page")
    pages = [_pgm(page) for page in sorted(tmp_path.glob("page-*.pgm"))]
    for width, height, _ in pages:  # A4, give or take poppler's rounding
        assert abs(width - 210 / 25.4 * dpi) < 1 and abs(height - 297 / 25.4 * dpi) < 1
    return pages


@needs_poppler
def test_poppler_renders_the_pdf_and_the_codes_read_back(tmp_path: Path) -> None:
    labels = _labels(25)
    pdf = render_pdf(labels, Grid(columns=3, rows=8))
    dpi = 200
    pages = _render(pdf, tmp_path, dpi)
    assert len(pages) == 2
    width, _height, pixels = pages[0]
    px_per_mm = dpi / 25.4
    codes = _pdf_codes(render_pdf(labels, Grid(columns=3, rows=8), compress=False))
    for (module, x0, y0, _m), label in zip(codes[:24], labels[:24], strict=True):
        expected = segno_matrix(label.tag)
        seen = tuple(
            tuple(pixels[int((y0 + (my + 0.5) * module) * px_per_mm) * width
                         + int((x0 + (mx + 0.5) * module) * px_per_mm)] < 128
                  for mx in range(len(expected)))
            for my in range(len(expected))
        )
        assert seen == expected, label.tag
    text = _poppler("pdftotext", "-layout", tmp_path / "labels.pdf", "-")
    assert "VC-0000" in text and "VC-0024" in text
    assert "Escuela Simón Bolívar" in text and "Arduino Uno R3 nº3" in text
    assert round(PAGE_H_MM * PT_PER_MM, 2) == 841.89  # A4 height in points


@needs_poppler
def test_names_in_any_language_come_back_from_the_pdf_as_written(tmp_path: Path) -> None:
    # Each name as the tag (bold), the model and the site; one label a row, wide enough
    # that nothing is cut.
    labels = [Label(name, name, name) for name in NAMES]
    pdf_path = tmp_path / "names.pdf"
    pdf_path.write_bytes(render_pdf(labels, Grid(columns=1, rows=8)))
    lines = _poppler("pdftotext", pdf_path, "-").splitlines()
    for name in NAMES:
        assert lines.count(name) == 3, (name, [ln for ln in lines if ln])
    assert not any("?" in line or "\ufffd" in line for line in lines)
    # The SVG carries them as they are too (the viewer sets them).
    svg = parse_svg(render_svg(labels, Grid(columns=1, rows=8))[0])
    assert [g["texts"] for g in svg] == [[html.escape(n, quote=False)] * 3 for n in NAMES]


@needs_poppler
def test_no_text_runs_out_of_its_label(tmp_path: Path) -> None:
    # Wide capitals, letters outside WinAnsi and combining marks, far longer than a label.
    grid = Grid(columns=4, rows=10, margin_mm=10)
    labels = [
        Label("WM-" + "W" * 12, "WWW MMM ŊŊŊ ÇÇÇ " * 6, "Q'EQCHI' – " + "W\u0303" * 40),
        Label("VC-0001", "Kwe'sx Yat – Çxhab ẽ ũ " * 5, "Ñawpaq Yachay Wasi " * 5),
    ] * 20
    dpi = 150
    [(width, height, pixels)] = _render(render_pdf(labels, grid), tmp_path, dpi)
    px_per_mm = dpi / 25.4

    def ink(x0_mm: float, x1_mm: float) -> int:
        """Dark pixels in the vertical strip from x0 to x1 (mm), all the page down."""
        x0, x1 = int(x0_mm * px_per_mm), int(x1_mm * px_per_mm) + 1
        return sum(pixels[y * width + x] < 160 for y in range(height) for x in range(x0, x1))

    # The texts are set edge to edge (each cut with an ellipsis) ...
    text = _poppler("pdftotext", tmp_path / "labels.pdf", "-")
    assert text.count(ELLIPSIS) == 4 * 10 * 2  # the model and the site of every label ...
    # ... and still leave the page margin and the white pad either side of every cell
    # border blank (1 mm of the 2 mm pad, for antialiasing).
    assert ink(0, 9) == 0 and ink(PAGE_W_MM - 9, PAGE_W_MM - 0.1) == 0
    for border in range(1, grid.columns):
        x = grid.margin_mm + border * grid.cell_w
        assert ink(x - 1, x + 1) == 0, f"text crosses the border at {x:.1f} mm"


def test_lines_are_cut_to_the_longest_that_fits_and_never_inside_a_letter() -> None:
    text = "Tz'ikin Çxhub a\u0303a\u0303a\u0303 " * 6
    regular, bold = faces(frozenset(text + "Wi"))
    for face in (regular, bold):
        for width in (12.0, 25.0, 40.0):
            shown = fit(text, width, 3.0, face)
            assert shown.endswith(ELLIPSIS) and face.width(shown, 3.0) <= width
            kept = shown[:-1]
            assert text.startswith(kept)
            # One more letter (with its mark) would not fit.
            rest = text[len(kept):].lstrip(" ")
            more = rest[:2] if rest[1:2] == "\u0303" else rest[:1]
            assert face.width(text[:len(text) - len(rest)] + more + ELLIPSIS, 3.0) > width
            # No tilde is ever parted from its a.
            assert not re.search("a(?!\u0303)", kept)
    assert bold.width("W", 3.0) > regular.width("W", 3.0) > regular.width("i", 3.0)
    assert fit("Tz'ikin Çxhub", 100, 3.0, regular) == "Tz'ikin Çxhub"


def test_a_character_the_font_lacks_is_refused_naming_the_tag() -> None:
    with pytest.raises(InvalidValueError,
                       match=r"tag 'VC-7' cannot print '漢' \(U\+6F22\) of its model"):
        render_pdf([Label("VC-1", "m", "s"), Label("VC-7", "Kit 漢", "s")], Grid())
    # Tabs and line breaks in a name print as one space.
    [[placed]], _faces = layout([Label("VC-1", "Kit\tde\n robótica", "s")], Grid())
    assert placed.lines[1][0] == "Kit de robótica"


def test_a_print_job_logs_nothing_of_fonttools_at_info(caplog: pytest.LogCaptureFixture) -> None:
    faces.cache_clear()  # cut the font anew, as the first job of a hub does
    with caplog.at_level(logging.INFO):
        render_pdf([Label("VC-1", "Kit de robótica", "Tecpán ŋ")], Grid())
    assert not [r for r in caplog.records if r.name.startswith("fontTools")]


def test_labels_of_a_site_subtree_or_of_tags(engine: Engine) -> None:
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-N", name="Norte", kind="region", parent_code="VL",
                          by=BY)
        for code in ("LP-1", "LP-2"):
            sites.create_site(conn=conn, code=code, name=f"Lab {code}", kind="site",
                              parent_code="VL-N", tier="lab_point", by=BY)
        catalog.create_model(conn=conn, code="UNO", name="Arduino Uno R3",
                             category="microcontroller_board", by=BY)
        for tag, site in (("T-3", "LP-1"), ("T-1", "LP-2"), ("T-2", "LP-1")):
            assets.register_asset(conn=conn, tag=tag, model_code="UNO", site_code=site, by=BY)
    with engine.connect() as conn:
        assert labels_for(conn=conn, site_under="VL-N") == [
            Label("T-1", "Arduino Uno R3", "LP-2 · Lab LP-2"),
            Label("T-2", "Arduino Uno R3", "LP-1 · Lab LP-1"),
            Label("T-3", "Arduino Uno R3", "LP-1 · Lab LP-1"),
        ]
        assert [lb.tag for lb in labels_for(conn=conn, site_under="LP-2")] == ["T-1"]
        assert [lb.tag for lb in labels_for(conn=conn, tags=["T-3", "T-1"])] == ["T-3", "T-1"]
        with pytest.raises(NotFoundError, match="no asset with tag 'T-9'"):
            labels_for(conn=conn, tags=["T-1", "T-9"])
        with pytest.raises(NotFoundError, match="no site with code 'NOPE'"):
            labels_for(conn=conn, site_under="NOPE")
        with pytest.raises(InvalidValueError, match="either asset tags or a site"):
            labels_for(conn=conn)


def test_labels_of_a_site_can_leave_out_lost_and_in_transit_assets(engine: Engine) -> None:
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-N", name="Norte", kind="region", parent_code="VL",
                          by=BY)
        sites.create_site(conn=conn, code="LP-1", name="Lab 1", kind="site", tier="lab_point",
                          parent_code="VL-N", by=BY)
        catalog.create_model(conn=conn, code="UNO", name="Arduino Uno R3",
                             category="microcontroller_board", by=BY)
        for tag in ("T-1", "T-2", "T-3", "T-4"):
            assets.register_asset(conn=conn, tag=tag, model_code="UNO", site_code="LP-1", by=BY)
        assets.set_status(conn=conn, tag="T-2", status="lost", by=BY)
        assets.set_status(conn=conn, tag="T-4", status="in_transit", by=BY)
    away = ("lost", "in_transit")
    with engine.connect() as conn:
        # By default every asset gets its label, as before.
        assert [lb.tag for lb in labels_for(conn=conn, site_under="LP-1")] == [
            "T-1", "T-2", "T-3", "T-4"]
        assert [lb.tag for lb in labels_for(conn=conn, site_under="LP-1", leave_out=away)] == [
            "T-1", "T-3"]
        assert [lb.tag for lb in labels_for(conn=conn, tags=["T-4", "T-3", "T-2"],
                                            leave_out=away)] == ["T-3"]
        with pytest.raises(InvalidValueError, match="asset status 'gone' is not one of"):
            labels_for(conn=conn, site_under="LP-1", leave_out=["gone"])
    with engine.begin() as conn:
        assets.set_status(conn=conn, tag="T-1", status="lost", by=BY)
        assets.set_status(conn=conn, tag="T-3", status="lost", by=BY)
    with engine.connect() as conn, pytest.raises(
        NotFoundError, match="site 'LP-1' and the sites under it hold no assets that are "
                             "not in_transit, lost"):
        labels_for(conn=conn, site_under="LP-1", leave_out=away)
