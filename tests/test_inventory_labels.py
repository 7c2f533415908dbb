"""QR labels: the codes in the SVG and the PDF read back as segno's matrix of the tag, sit
in the chosen grid, run over pages, carry their texts; the PDF is valid for poppler
(rendered with pdftoppm and sampled module by module, text extracted with pdftotext)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
import segno
from sqlalchemy import Engine

from inventory import assets, catalog, sites
from inventory.errors import InvalidValueError, NotFoundError
from inventory.labels import (
    PAGE_H_MM,
    PT_PER_MM,
    QUIET_ZONE,
    Grid,
    Label,
    labels_for,
    render_pdf,
    render_svg,
)

BY = "coordinadora"
Matrix = tuple[tuple[bool, ...], ...]


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


def _pdf_objects(pdf: bytes) -> dict[int, bytes]:
    """The objects of a PDF, found through its cross-reference table (checked on the way)."""
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[start:start + 5] == b"xref\n"
    head, *entries = pdf[start + 5:].split(b"trailer", 1)[0].splitlines()
    first, count = map(int, head.split())
    assert first == 0 and len(entries) == count
    assert all(len(e) == 19 for e in entries)  # 20 bytes with the end of line
    objects = {}
    for number, entry in enumerate(entries[1:], 1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(b"%d 0 obj\n" % number)
        objects[number] = pdf[offset:pdf.index(b"endobj", offset)]
    assert re.search(rb"/Size %d /Root 1 0 R" % count, pdf)
    return objects


def _pdf_codes(stream: bytes) -> list[tuple[float, float, float, Matrix]]:
    codes = []
    for block in re.finditer(
        rb"q ([\d.]+) 0 0 [\d.]+ ([\d.]+) ([\d.]+) cm 0 g\n((?:\d+ \d+ \d+ 1 re\n)*)f Q", stream
    ):
        runs = [(int(x), int(y), int(n)) for x, y, n in
                re.findall(rb"(\d+) (\d+) (\d+) 1 re", block[4])]
        size = max(x + n for x, _, n in runs) + QUIET_ZONE
        codes.append((float(block[1]), float(block[2]), float(block[3]),
                       _runs_to_matrix(runs, size)))
    return codes


def test_pdf_has_a_valid_structure_and_the_same_codes() -> None:
    labels = _labels(30)
    pdf = render_pdf(labels, Grid(columns=3, rows=8))
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    objects = _pdf_objects(pdf)
    assert b"/Count 2" in objects[2] and b"/BaseFont /Helvetica " in objects[3]
    tags = iter(label.tag for label in labels)
    for number in (6, 8):
        body = objects[number]
        length = int(re.search(rb"/Length (\d+)", body)[1])  # type: ignore[index]
        raw = body.split(b"stream\n", 1)[1][:length]
        stream = zlib.decompress(raw)
        for _module, _x, _y, matrix in _pdf_codes(stream):
            assert matrix == segno_matrix(next(tags))
    assert next(tags, None) is None


def _pgm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    magic, width, height, maxval, pixels = data.split(maxsplit=4)
    assert magic == b"P5" and maxval == b"255"
    return int(width), int(height), pixels


@pytest.mark.skipif(shutil.which("pdftoppm") is None,
                    reason="poppler-utils (pdftoppm) is not installed: scripts/test-services")
def test_poppler_renders_the_pdf_and_the_codes_read_back(tmp_path: Path) -> None:
    labels = _labels(25)
    pdf_path = tmp_path / "labels.pdf"
    pdf = render_pdf(labels, Grid(columns=3, rows=8))
    pdf_path.write_bytes(pdf)
    dpi = 200
    result = subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", str(pdf_path),
                             str(tmp_path / "page")], capture_output=True, check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr
    pages = sorted(tmp_path.glob("page-*.pgm"))
    assert len(pages) == 2
    width, height, pixels = _pgm(pages[0])
    assert (width, height) == (round(210 / 25.4 * dpi), round(297 / 25.4 * dpi))
    stream = zlib.decompress(_pdf_objects(pdf)[6].split(b"stream\n", 1)[1].rsplit(
        b"\nendstream", 1)[0])
    px_per_mm = dpi / 25.4
    for (module, x0, y0, _m), label in zip(_pdf_codes(stream), labels, strict=False):
        expected = segno_matrix(label.tag)
        seen = tuple(
            tuple(pixels[int((y0 + (my + 0.5) * module) * px_per_mm) * width
                         + int((x0 + (mx + 0.5) * module) * px_per_mm)] < 128
                  for mx in range(len(expected)))
            for my in range(len(expected))
        )
        assert seen == expected, label.tag
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True,
                          check=True, text=True).stdout
    assert "VC-0000" in text and "VC-0024" in text
    assert "Escuela Simón Bolívar" in text and "Arduino Uno R3 nº3" in text
    assert round(PAGE_H_MM * PT_PER_MM, 2) == 841.89  # A4 height in points


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
