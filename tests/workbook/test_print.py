"""Printing the workbook templates.

Each template is printed to PDF by LibreOffice (headless, a throw-away profile) as
Excel shows it before recalculating: the formulas are taken out of a copy, the
stored results stay.  The PDF is read back page by page with pdftotext; every page
carries a footer with its sheet's name.  Checked against the design stored in the
template (the print areas: one range per page, in reading order):

* every page is landscape; the sheets print in their order, each on its own pages;
* the Model (and NB2) sheet prints exactly one page per range of its print area;
* every block and every chart lies in one range (a per-row table in consecutive
  ranges), so none is split across pages, and every chart's title is on its page;
* every text on a range is on its page in full (not cut), p-values show as
  xlglmm.numfmt writes them ("< 2e-16", "4.02E-04", "0.031"), z and Chisq with 2
  decimals;
* the Data sheet repeats its header on every page; the Read me's page list is
  what prints.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import pytest
from openpyxl.worksheet.formula import ArrayFormula

from xlglmm import numfmt
from xlglmm.workbook.excel_formula import parse_range

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "workbooks").glob("*.xlsx"))
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
PDFTOTEXT, PDFINFO = shutil.which("pdftotext"), shutil.which("pdfinfo")
pytestmark = pytest.mark.skipif(
    not (SOFFICE and PDFTOTEXT and PDFINFO),
    reason="needs LibreOffice (soffice) and poppler-utils (pdftotext, pdfinfo) on PATH")

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
FOOTER = re.compile(r"^\s*(?P<sheet>\S.*?) - page \d+ of \d+\s*$")
FORMULA = re.compile(rb"<f\b[^>]*/>|<f\b[^>]*>.*?</f>", re.S)


def stored_results_copy(src: Path, dst: Path) -> None:
    """``src`` without its formulas: each cell keeps the result stored in it."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for name in a.namelist():
            data = a.read(name)
            if name.startswith("xl/worksheets/sheet"):
                data = FORMULA.sub(b"", data)
            b.writestr(name, data)


def print_areas(path: Path) -> dict:
    """Sheet name -> its print area's ranges as boxes (row1, col1, row2, col2), in the
    order stored (openpyxl would sort them)."""
    with zipfile.ZipFile(path) as z:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
    sheets = [s.get("name") for s in book.find("m:sheets", NS)]
    areas = {}
    for dn in book.find("m:definedNames", NS) or []:
        if dn.get("name") == "_xlnm.Print_Area":
            refs = [part.split("!")[1].replace("$", "") for part in dn.text.split(",")]
            areas[sheets[int(dn.get("localSheetId"))]] = [parse_range(r) for r in refs]
    return areas


def inside(cell_box, box) -> bool:
    return box[0] <= cell_box[0] and cell_box[2] <= box[2] and \
        box[1] <= cell_box[1] and cell_box[3] <= box[3]


def overlap(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def squash(text: str) -> str:
    return " ".join(text.split())


def shown(value, number_format: str) -> str | None:
    """What a p-value or statistic cell shows, by xlglmm.numfmt's rule."""
    if number_format == numfmt.EXCEL_PVALUE:
        if value < numfmt.P_FLOOR:
            return numfmt.P_FLOOR_TEXT
        return f"{value:.2E}" if value < 0.001 else f"{value:.3f}"
    if number_format == numfmt.EXCEL_STATISTIC:
        return f"{value:.2f}"
    return None


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """name -> (the template's path, [(sheet, page text, (width, height))])."""
    tmp = tmp_path_factory.mktemp("print")
    copies = []
    for path in TEMPLATES:
        copies.append(tmp / path.name)
        stored_results_copy(path, copies[-1])
    profile = (tmp / "profile").as_uri()
    proc = subprocess.Popen([SOFFICE, f"-env:UserInstallation={profile}", "--headless",
                             "--convert-to", "pdf", "--outdir", str(tmp / "pdf"),
                             *map(str, copies)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)     # soffice.bin too, not only the wrapper
        proc.communicate()
        pytest.fail("LibreOffice did not convert the templates within 300 s")
    assert proc.returncode == 0, stderr
    out = {}
    for path in TEMPLATES:
        pdf = tmp / "pdf" / f"{path.stem}.pdf"
        assert pdf.exists(), (stdout, stderr)
        text = subprocess.run([PDFTOTEXT, "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        pages = text.split("\f")[:-1]
        info = subprocess.run([PDFINFO, "-f", "1", "-l", str(len(pages)), str(pdf)],
                              capture_output=True, text=True, check=True).stdout
        sizes = [tuple(map(float, m)) for m in
                 re.findall(r"Page\s+\d+ size:\s+([\d.]+) x ([\d.]+)", info)]
        assert len(sizes) == len(pages)
        rows = []
        for page, size in zip(pages, sizes):
            lines = [ln for ln in page.splitlines() if ln.strip()]
            m = FOOTER.match(lines[-1]) if lines else None
            assert m, f"{path.stem}: a page without its footer: {page[:300]!r}"
            rows.append((m["sheet"], "\n".join(lines[:-1]), size))
        out[path.stem] = (path, rows)
    return out


def sheet_pages(rows, sheet) -> list:
    return [text for s, text, _ in rows if s == sheet]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_pages_are_landscape_and_in_sheet_order(printed, path):
    _, rows = printed[path.stem]
    assert all(w > h for _, _, (w, h) in rows), [size for *_, size in rows]
    order = [s for k, (s, *_) in enumerate(rows) if k == 0 or rows[k - 1][0] != s]
    assert order == openpyxl.load_workbook(path).sheetnames      # each sheet in one run


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_one_page_per_print_range_with_its_blocks_and_charts(printed, path):
    _, rows = printed[path.stem]
    areas = print_areas(path)
    assert "Model" in areas
    wb = openpyxl.load_workbook(path)
    values = openpyxl.load_workbook(path, data_only=True)
    for sheet, boxes in areas.items():
        pages = sheet_pages(rows, sheet)
        assert len(pages) == len(boxes), (sheet, len(pages), len(boxes))
        ws, vs = wb[sheet], values[sheet]
        # every block in one range, or (a per-row table) in consecutive ranges tiling it
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, ArrayFormula):
                    block = parse_range(c.value.ref)
                    on = [k for k, b in enumerate(boxes) if overlap(block, b)]
                    assert on == list(range(on[0], on[-1] + 1)), (sheet, c.value.ref, on)
                    if len(on) == 1:
                        assert inside(block, boxes[on[0]]), (sheet, c.value.ref)
                    else:
                        assert sum(boxes[k][2] - boxes[k][0] + 1 for k in on) >= \
                            block[2] - block[0] + 1
        # every chart in one range, its title on that page
        for ch in ws._charts:
            a = ch.anchor
            box = (a._from.row + 1, a._from.col + 1, a.to.row + 1, a.to.col + 1)
            (k,) = [k for k, b in enumerate(boxes) if overlap(box, b)]
            assert inside(box, boxes[k]), (sheet, box, boxes[k])
            title = "".join(r.t for p in ch.title.tx.rich.p for r in p.r)
            assert squash(title) in squash(pages[k]), (sheet, title, k)
        # every text of a range on its page, whole; numbers as numfmt shows them
        for k, box in enumerate(boxes):
            page = squash(pages[k])
            words = set(page.split())
            for row in vs.iter_rows(min_row=box[0], max_row=box[2], min_col=box[1],
                                    max_col=box[3]):
                for c in row:
                    v = c.value
                    if isinstance(v, str) and v.strip():
                        if c.alignment.wrap_text:     # lines of a wrapped cell: each word
                            missing = [w for w in v.split() if w not in words]
                            assert not missing, (sheet, c.coordinate, v, missing)
                        else:
                            assert squash(v) in page, (sheet, c.coordinate, v, k)
                    elif isinstance(v, float) and (want := shown(v, c.number_format)):
                        assert want in words or want in page, (sheet, c.coordinate, v, want)


def test_p_values_and_statistics_as_numfmt_writes_them(printed):
    """Calc renders EXCEL_PVALUE as intended: the floor, scientific below 0.001, three
    decimals above; z and Chisq with two decimals."""
    _, rows = printed["grouseticks"]
    model = " ".join(sheet_pages(rows, "Model")[:4])
    for text in ("< 2e-16", "4.02E-04", "0.188", "1.66E-09", "444.38", "49.61", "11.11",
                 "-11.68"):
        assert text in model, text
    _, rows = printed["workplace_safety"]
    fit = sheet_pages(rows, "Model")[0]
    assert "< 2e-16" in fit and "0.031" in fit and "-2.16" in fit and "-23.60" in fit


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_data_pages_repeat_the_header_and_read_me_lists_the_pages(printed, path):
    _, rows = printed[path.stem]
    data = openpyxl.load_workbook(path)["Data"]
    header = [c.value for c in data[1]]
    for page in sheet_pages(rows, "Data"):
        assert page.split()[:len(header)] == header
    readme = squash(" ".join(sheet_pages(rows, "Read me")))
    for sheet, boxes in print_areas(path).items():
        if sheet in ("Model", "NB2 vs Poisson"):
            assert f"The {sheet} sheet prints {len(boxes)} pages: 1. " in readme
    assert "#NAME?" in readme and "xlglmm libreoffice install" in readme
