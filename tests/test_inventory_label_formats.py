"""The small label printer's format (:data:`inventory.labels.SMALL_LABEL`, 50 x 30 mm, one
label a page): each page is the label's size, the code fills its height on the left and
reads back as the tag (in the SVG and, rendered by poppler, in the PDF), the three lines
stand on its right inside the label; page sizes out of range are refused."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_inventory_labels import _pgm, _runs_to_matrix, parse_svg, segno_matrix

from inventory.errors import InvalidValueError
from inventory.labels import A4_SHEET, PAD_MM, SMALL_LABEL, Grid, Label, render_pdf, render_svg

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) is not installed: scripts/test-services",
)
LABELS = [Label(f"UNO-{i}", "Arduino Uno R3", "LAB-A · Escuela Simón Bolívar")
          for i in range(1, 4)]


def test_the_small_format_is_one_label_a_page_of_its_own_size() -> None:
    assert (SMALL_LABEL.page_w_mm, SMALL_LABEL.page_h_mm, SMALL_LABEL.per_page) == (50, 30, 1)
    assert SMALL_LABEL.text_beside and not A4_SHEET.text_beside
    pages = render_svg(LABELS, SMALL_LABEL)
    assert len(pages) == 3
    for label, page in zip(LABELS, pages, strict=True):
        assert 'width="50mm" height="30mm" viewBox="0 0 50 30"' in page
        [g] = parse_svg(page)
        expected = segno_matrix(label.tag)
        assert _runs_to_matrix(g["runs"], len(expected)) == expected
        code_mm = g["module"] * len(expected)
        # The code on the left: half the label wide, less its pads.
        assert (g["x"], g["y"]) == (pytest.approx(PAD_MM), pytest.approx(PAD_MM))
        assert code_mm == pytest.approx(SMALL_LABEL.code_mm) == pytest.approx(21)
        assert g["texts"][0] == label.tag and g["texts"][1] == "Arduino Uno R3"
        assert g["texts"][2].startswith("LAB-A")  # cut to the room beside the code


def test_the_lines_stand_beside_the_code_inside_the_label() -> None:
    [page] = render_svg(LABELS[:1], SMALL_LABEL)
    code_right = PAD_MM + SMALL_LABEL.code_mm
    for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)"', page):
        assert code_right < float(x) < 50 - PAD_MM
        assert PAD_MM < float(y) < 30 - PAD_MM


def test_page_sizes_out_of_range_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="page width 10"):
        Grid(columns=1, rows=1, margin_mm=0, page_w_mm=10, page_h_mm=30)
    with pytest.raises(InvalidValueError, match="page height 500"):
        Grid(columns=1, rows=1, margin_mm=0, page_w_mm=50, page_h_mm=500)
    with pytest.raises(InvalidValueError, match="no room"):
        Grid(columns=1, rows=1, margin_mm=12, page_w_mm=50, page_h_mm=25)


@needs_poppler
def test_the_pdf_pages_are_the_label_and_the_codes_read_back(tmp_path: Path) -> None:
    path = tmp_path / "small.pdf"
    path.write_bytes(render_pdf(LABELS, SMALL_LABEL))
    dpi = 300
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", path, tmp_path / "page"],
                   check=True, capture_output=True)
    pages = [_pgm(p) for p in sorted(tmp_path.glob("page-*.pgm"))]
    assert len(pages) == 3
    px_per_mm = dpi / 25.4
    for (width, height, pixels), label in zip(pages, LABELS, strict=True):
        assert abs(width - 50 * px_per_mm) < 1 and abs(height - 30 * px_per_mm) < 1
        expected = segno_matrix(label.tag)
        module = SMALL_LABEL.code_mm / len(expected)
        seen = tuple(
            tuple(pixels[int((PAD_MM + (my + 0.5) * module) * px_per_mm) * width
                         + int((PAD_MM + (mx + 0.5) * module) * px_per_mm)] < 128
                  for mx in range(len(expected)))
            for my in range(len(expected)))
        assert seen == expected, label.tag
    text = subprocess.run(["pdftotext", path, "-"], check=True, capture_output=True,
                          text=True).stdout
    assert all(label.tag in text for label in LABELS) and "Arduino Uno R3" in text
