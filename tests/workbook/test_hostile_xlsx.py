"""Issue 18, reading and writing workbooks in ``xlglmm recalc``: any well-formed
spelling of the XML round-trips (every cell not written keeps its value and type,
every part not written keeps its bytes), zip bombs and oversized workbooks are
refused before anything unpacks them (with bounded memory), DTDs are refused, a
UTF-16 part is re-encoded instead of crashing, 60,000 comments do not hang the
writer, and an input rewritten in place survives a kill during the write."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest

from xlglmm import cli
from xlglmm.workbook import xlsx_read
from xlglmm.files import Exit
from xlglmm.workbook.xlsx_write import CellWrite, XlsxError, patch

ROOT = Path(__file__).resolve().parents[2]
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
SHEET = "xl/worksheets/sheet1.xml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# ---- a small workbook whose sheet XML is written by hand ------------------------------------

STRINGS = ["y", "x", "g", "a", "b", "c"]


def base_sheet() -> str:
    rows = ['<row r="1" spans="1:4"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
            '<c r="C1" t="s"><v>2</v></c><c r="D1" t="inlineStr"><is><t>y1</t></is></c></row>']
    for r in range(2, 14):
        rows.append(f'<row r="{r}" spans="1:4"><c r="A{r}"><v>{r % 5}</v></c>'
                    f'<c r="B{r}"><v>{r / 4}</v></c><c r="C{r}" t="s"><v>{3 + r % 3}</v></c>'
                    f'<c r="D{r}"><f>A{r}+1</f><v>{r % 5 + 1}</v></c></row>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<worksheet xmlns="{MAIN}" xmlns:r="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships"><dimension ref="A1:D13"/>'
            '<sheetFormatPr defaultRowHeight="15"/><sheetData>' + "".join(rows) +
            '</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" '
            'header="0.3" footer="0.3"/></worksheet>')


def variant(name: str) -> bytes:
    """The sheet XML in one of the spellings the format allows."""
    xml = base_sheet()
    if name == "single-quotes":
        xml = re.sub(r'="([^"]*)"', r"='\1'", xml)
    elif name == "comments":
        xml = xml.replace("<sheetData>", "<sheetData><!--<row r=\"1\"><c r=\"A1\"/>--><?pi x?>")
        xml = xml.replace("</row>", "<!--</row>--></row><!-- <row> -->")
        xml = xml.replace('<c r="B', '<?xlglmm test?><!--<c r="Z9"/>--><c r="B')
    elif name == "prefix":
        xml = re.sub(r"<(/?)([A-Za-z]\w*)", r"<\1x:\2", xml)
        xml = xml.replace(f'xmlns="{MAIN}"', f'xmlns:x="{MAIN}"')
    elif name == "crlf-standalone":
        xml = xml.replace('encoding="UTF-8"?>', 'encoding="UTF-8" standalone="yes"?>')
        xml = xml.replace("><", ">\r\n  <").replace(' r="', '  r = "')
        xml = xml.replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    elif name == "cdata-inline":
        xml = xml.replace("<f>A5+1</f>", "<f><![CDATA[A5+1]]></f>")
        for r in range(2, 14):
            xml = re.sub(rf'<c r="C{r}" t="s"><v>(\d)</v></c>',
                         lambda m: f'<c r="C{r}" t="inlineStr"><is><t><![CDATA['
                                   f'{STRINGS[int(m.group(1))]}]]></t></is></c>', xml)
    elif name == "self-closing":
        xml = xml.replace('</c></row><row r="6"', '</c><c r="E5" s="0"/></row><row r="6"')
        xml = xml.replace("</sheetData>", '<row r="14"/><row r="15" spans="1:4"/></sheetData>')
    elif name == "attribute-with-gt":
        xml = xml.replace(f'xmlns="{MAIN}"', f'xmlns="{MAIN}" xmlns:q="urn:q"')
        xml = xml.replace('<row r="4"', '<row q:note="a>b" r="4"')
    elif name == "utf-16":
        xml = xml.replace('encoding="UTF-8"', 'encoding="UTF-16"')
        return xml.encode("utf-16")                  # with its BOM
    return xml.encode("utf-8")


VARIANTS = ["double-quotes", "single-quotes", "comments", "prefix", "crlf-standalone",
            "cdata-inline", "self-closing", "attribute-with-gt", "utf-16"]


def shared_strings() -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}" count="{len(STRINGS)}" '
            f'uniqueCount="{len(STRINGS)}">' + "".join(f"<si><t>{s}</t></si>" for s in STRINGS)
            + "</sst>").encode()


def make_book(path: Path, sheet_xml: bytes, model_formula: str | None = None) -> Path:
    """An openpyxl workbook (sheet 'Data', and 'Model' when a formula is given) whose
    Data sheet XML is replaced by ``sheet_xml``, with a shared-strings part."""
    wb = openpyxl.Workbook()
    wb.active.title = "Data"
    if model_formula:
        wb.create_sheet("Model")["E2"] = model_formula
    wb.save(path)
    with zipfile.ZipFile(path) as z:
        files = {i.filename: z.read(i.filename) for i in z.infolist()}
    files[SHEET] = sheet_xml
    files["xl/sharedStrings.xml"] = shared_strings()
    files["[Content_Types].xml"] = files["[Content_Types].xml"].replace(
        b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    files["xl/_rels/workbook.xml.rels"] = files["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>", b'<Relationship Id="rIdS" Type="http://schemas.openxmlformats.'
        b'org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
        b"</Relationships>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


def cells(path: Path, data_only: bool) -> dict:
    wb = openpyxl.load_workbook(path, data_only=data_only)
    return {(ws.title, r, c): (cell.value, cell.data_type)
            for ws in wb.worksheets for (r, c), cell in ws._cells.items()
            if cell.value is not None}


def parts(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


# what the round trip writes: a dynamic spill to the right of the data (new cells in
# existing rows), a value into a new row below, a value between existing cells, a
# cleared formula cell, a formula cell's cached value
WRITES = {"Data": {
    (2, 6): CellWrite("formula", "Fixed effects", "F2:G3", dynamic=True),
    (2, 7): CellWrite("value", "Estimate"), (3, 6): CellWrite("value", "(Intercept)"),
    (3, 7): CellWrite("value", 0.25),
    (20, 2): CellWrite("value", 7.0),
    (5, 5): CellWrite("value", True),
    (13, 4): CellWrite("clear"),
    (7, 4): CellWrite("formula", 99.0),
}}
FORMULAS = {"Data": {(2, 6): "SUM(A2:A3)", **{(r, 4): f"A{r}+1" for r in range(2, 14)}}}
EXPECTED = {("Data", 2, 6): ("Fixed effects", "s"), ("Data", 2, 7): ("Estimate", "s"),
            ("Data", 3, 6): ("(Intercept)", "s"), ("Data", 3, 7): (0.25, "n"),
            ("Data", 20, 2): (7, "n"), ("Data", 5, 5): (True, "b"), ("Data", 7, 4): (99, "n")}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_spelling_round_trips(tmp_path, name):
    src = make_book(tmp_path / "in.xlsx", variant(name))
    before_v, before_f = cells(src, True), cells(src, False)
    assert before_v[("Data", 3, 3)] == ("a", "s") and before_v[("Data", 1, 1)] == ("y", "s")
    out = tmp_path / "out.xlsx"
    patch(src, out, WRITES, formulas=FORMULAS)
    after_v, after_f = cells(out, True), cells(out, False)
    written = {("Data", r, c) for r, c in WRITES["Data"]}
    assert {k: v for k, v in after_v.items() if k not in written} == \
        {k: v for k, v in before_v.items() if k not in written}
    assert {k: v for k, v in after_f.items() if k not in written} == \
        {k: v for k, v in before_f.items() if k not in written}
    assert {k: after_v.get(k) for k in EXPECTED} == EXPECTED
    assert ("Data", 13, 4) not in after_v and ("Data", 13, 4) not in after_f
    assert after_f[("Data", 7, 4)] == ("=A7+1", "f")
    wb = openpyxl.load_workbook(out)
    assert wb["Data"]["F2"].value.ref == "F2:G3" and wb["Data"]["F2"].value.text == "=SUM(A2:A3)"
    old, new = parts(src), parts(out)
    assert sorted(new) == sorted([*old, "xl/metadata.xml"])
    for n in old:
        if n not in (SHEET, "[Content_Types].xml", "xl/_rels/workbook.xml.rels"):
            assert new[n] == old[n], n
    if name != "utf-16":
        # every row not written keeps its bytes, spelling and all
        for r in (1, 4, 6, 8, 9, 10, 11, 12):
            row = re.search(rb"<(\w+:)?row\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*?\br\s*=\s*[\"']"
                            + str(r).encode()
                            + rb"[\"'].*?</(\w+:)?row>", old[SHEET], re.S).group(0)
            assert row in new[SHEET], (r, row)


def test_single_quotes_keep_labels_and_the_formula_in_place(tmp_path):
    """Item 4 as reported: text cells with t='s' and a GLMM formula in E2."""
    src = make_book(tmp_path / "q.xlsx", variant("single-quotes"),
                    "=GLMM_POISSON(Data!A1:A13, Data!B1:B13, Data!C1:C13)")
    model = parts(src)["xl/worksheets/sheet2.xml"]
    parts_in = parts(src)
    parts_in["xl/worksheets/sheet2.xml"] = re.sub(rb'="([^"]*)"', rb"='\1'", model)
    with zipfile.ZipFile(src, "w") as z:
        for n, d in parts_in.items():
            z.writestr(n, d)
    before = parts(src)
    code = cli.main(["recalc", str(src), "-q"])
    assert code in (Exit.OK, Exit.MODEL)
    v = openpyxl.load_workbook(src, data_only=True)
    assert [v["Data"][f"C{r}"].value for r in range(2, 14)] == \
        [STRINGS[3 + r % 3] for r in range(2, 14)]
    f = openpyxl.load_workbook(src)
    assert f["Model"]["E2"].value.text == "=GLMM_POISSON(Data!A1:A13, Data!B1:B13, Data!C1:C13)"
    assert f["Model"]["D2"].value is None
    assert [k for k, c in f["Model"]._cells.items() if c.data_type == "f"
            or hasattr(c.value, "text")] == [(2, 5)]
    # the Data sheet's helper formulas (D = A+1) were written; its other cells keep
    # their single-quoted bytes
    assert parts(src)[SHEET].count(b"t='s'") == before[SHEET].count(b"t='s'") == 15


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice not installed")
def test_a_workbook_written_by_libreoffice_round_trips(tmp_path):
    src = make_book(tmp_path / "lo_in.xlsx", variant("double-quotes"))
    prof = tmp_path / "profile"
    conv = tmp_path / "conv"
    try:
        subprocess.run(["soffice", f"-env:UserInstallation=file://{prof}", "--headless",
                        "--convert-to", "xlsx", "--outdir", str(conv), str(src)],
                       capture_output=True, timeout=120, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
        pytest.skip(f"LibreOffice did not convert the workbook ({e})")
    lo = conv / "lo_in.xlsx"
    before = cells(lo, True)
    out = tmp_path / "lo_out.xlsx"
    writes = {"Data": {k: w for k, w in WRITES["Data"].items() if k != (7, 4)}}
    patch(lo, out, writes, formulas=FORMULAS)
    after = cells(out, True)
    written = {("Data", r, c) for r, c in writes["Data"]}
    assert {k: v for k, v in after.items() if k not in written} == \
        {k: v for k, v in before.items() if k not in written}
    assert after[("Data", 3, 7)] == (0.25, "n") and after[("Data", 20, 2)] == (7, "n")


# ---- refused untouched -----------------------------------------------------------------

def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip()


def refused(tmp_path, capsys, files_or_path, name="bad.xlsx"):
    if isinstance(files_or_path, dict):
        p = tmp_path / name
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
            for n, d in files_or_path.items():
                z.writestr(n, d)
    else:
        p = files_or_path
    before = p.read_bytes()
    code, out, err = run(capsys, "recalc", p, "-q")
    assert code == Exit.INPUT and len(err.splitlines()) == 1 and "Traceback" not in err
    assert p.read_bytes() == before
    assert not [x for x in os.listdir(p.parent) if x.endswith(".tmp")]
    return err.replace(str(p), "IN")


def book_with(tmp_path, sheet_xml: bytes) -> dict:
    return parts(make_book(tmp_path / "tmpl.xlsx", sheet_xml))


def test_doctype_entity_attacks_are_refused(tmp_path, capsys):
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
              b'<sst xmlns="' + MAIN.encode() + b'"><si><t>&lol2;</t></si></sst>')
    files = book_with(tmp_path, variant("double-quotes"))
    files["xl/sharedStrings.xml"] = laughs
    assert refused(tmp_path, capsys, files) == (
        "xlglmm recalc: error: IN: cannot be read as a workbook: the part xl/sharedStrings.xml "
        "declares a DOCTYPE (DTDs are not allowed in an .xlsx package; an XML entity attack?); "
        "open it in Excel or Calc and save it again as .xlsx; nothing was written")
    xxe = variant("double-quotes").replace(
        b"<worksheet", b'<!DOCTYPE w [<!ENTITY x SYSTEM "file:///etc/passwd">]><worksheet'
    ).replace(b"<v>1</v>", b"<v>&x;</v>", 1)
    files = book_with(tmp_path, xxe)
    assert "the part xl/worksheets/sheet1.xml declares a DOCTYPE" in \
        refused(tmp_path, capsys, files)


def test_utf16_part_is_reencoded_not_a_traceback(tmp_path, capsys):
    src = make_book(tmp_path / "u16.xlsx", variant("utf-16"))
    code, out, err = run(capsys, "recalc", src, "-q")
    assert (code, err) == (Exit.OK, "")
    xml = parts(src)[SHEET]
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    v = openpyxl.load_workbook(src, data_only=True)["Data"]
    assert [v[f"D{r}"].value for r in (2, 7, 13)] == [3, 3, 4]
    assert [v[f"C{r}"].value for r in (2, 3, 4)] == ["c", "a", "b"]


@pytest.mark.parametrize("xml, problem", [
    (variant("double-quotes").replace(b"</sheetData>", b"</sheetdata>"),
     "the part xl/worksheets/sheet1.xml is not well-formed XML (mismatched tag at line 2, "
     "column 2052)"),
    (variant("double-quotes").replace(b'<row r="13"', b'<row r="2000000"'),
     "the part xl/worksheets/sheet1.xml has a row numbered 2,000,000, outside Excel's rows "
     "1 to 1,048,576"),
    (variant("double-quotes").replace(b'<c r="D5">', b'<c r="XFE5">'),
     "the part xl/worksheets/sheet1.xml has a cell in column 16,385, beyond Excel's last "
     "column XFD (16,384)"),
    (variant("double-quotes").replace(b'<c r="D5">', b'<c r="D6">'),
     "the part xl/worksheets/sheet1.xml has the cell D6 inside row 5"),
])
def test_damaged_sheets_are_refused_in_one_line(tmp_path, capsys, xml, problem):
    err = refused(tmp_path, capsys, book_with(tmp_path, xml))
    assert err == (f"xlglmm recalc: error: IN: cannot be read as a workbook: {problem}; open "
                   "it in Excel or Calc and save it again as .xlsx; nothing was written")


def test_rows_out_of_order_are_not_guessed(tmp_path):
    xml = variant("double-quotes").replace(b'<row r="5"', b'<row r="1"')
    src = make_book(tmp_path / "o.xlsx", xml)
    with pytest.raises(XlsxError, match=r"has row 1 after row 4 \(rows must be in ascending"):
        patch(src, tmp_path / "out.xlsx", WRITES, formulas=FORMULAS)


def refused_before_openpyxl(tmp_path, capsys, monkeypatch, limit, value):
    """recalc's refusal of a small workbook with xlsx_read's ``limit`` set to
    ``value``, openpyxl made to fail if it is reached first."""
    src = make_book(tmp_path / "l.xlsx", variant("double-quotes"))
    monkeypatch.setattr(xlsx_read, limit, value)

    def no_openpyxl(*a, **k):
        raise AssertionError("openpyxl ran before the guard")
    monkeypatch.setattr(openpyxl, "load_workbook", no_openpyxl)
    return refused(tmp_path, capsys, src)


@pytest.mark.parametrize("limit, value, problem", [
    ("MAX_TOTAL_BYTES", 12_000, "it unpacks to more than 12 kB (reached in "),
    ("MAX_ENTRIES", 5, "it has 10 parts"),
    ("MAX_CELLS", 30, "it has more than 30 cells (counted up to xl/worksheets/sheet1.xml)"),
    ("MAX_PART_BYTES", 4000, "the part xl/theme/theme1.xml unpacks to more than 4 kB "
                             "(a zip bomb?)"),
])
def test_limits_are_guarded_before_openpyxl(tmp_path, capsys, monkeypatch, limit, value,
                                             problem):
    err = refused_before_openpyxl(tmp_path, capsys, monkeypatch, limit, value)
    assert err.startswith(f"xlglmm recalc: error: IN: is too large to read safely: {problem}")
    assert err.endswith("nothing was written") and len(err) <= 290


def _bomb(src: Path, dst: Path, part: str, pad_mb: int, zip64: bool = True):
    with zipfile.ZipFile(src) as z:
        files = {i.filename: z.read(i.filename) for i in z.infolist()}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for n, d in files.items():
            if n != part:
                z.writestr(n, d)
                continue
            i = d.index(b"<sheetData>") + len(b"<sheetData>")
            with z.open(n, "w", force_zip64=zip64) as f:
                f.write(d[:i])
                chunk = b" " * (1 << 20)
                for _ in range(pad_mb):
                    f.write(chunk)
                f.write(d[i:])


def _run_measured(argv, timeout=120):
    """(exit code, stderr, stdout) of a child process (killed after ``timeout`` s)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    return p.returncode, err.decode(), out.decode()


# the child prints its own peak resident memory (MB) after the command: VmHWM of
# its address space (getrusage's ru_maxrss would include the parent's RSS at fork)
PEAK = ("import re, sys; from xlglmm import cli; code = cli.main(sys.argv[1:]); "
        "hwm = re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()); "
        "print(int(hwm.group(1)) // 1024); sys.exit(code)")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_zip_bomb_is_refused_with_bounded_memory(tmp_path):
    """A 0.3 MB workbook whose sheet unpacks to 300 MB: before, 986 MB peak and a full
    recalc; now refused while unpacking, the peak no more than the interpreter's."""
    src = make_book(tmp_path / "base.xlsx", variant("double-quotes"))
    bomb = tmp_path / "bomb.xlsx"
    _bomb(src, bomb, SHEET, 300)
    assert bomb.stat().st_size < 3 << 20
    before = bomb.read_bytes()
    code, err, out = _run_measured([sys.executable, "-c", PEAK, "recalc", str(bomb), "-q"])
    assert code == Exit.INPUT, err
    assert err.strip() == (
        f"xlglmm recalc: error: {bomb}: is too large to read safely: the part "
        "xl/worksheets/sheet1.xml unpacks to more than 256 MB (a zip bomb?); xlglmm recalc "
        "reads at most 256 MB per part and 1 GB in all unpacked, 10,000 parts, 2,000,000 "
        "cells; nothing was written")
    assert bomb.read_bytes() == before
    # Python with numpy, scipy, numba and openpyxl imported is ~175 MB; the guard adds
    # a few 64 kB chunks (the part alone would be 300 MB)
    assert int(out.split()[-1]) < 300, out


def test_sixty_thousand_comments_do_not_hang(tmp_path):
    """Item 8: before, the comments after the last row made the writer's regular
    expression rescan the rest of the sheet for each one (killed at 120 s)."""
    xml = variant("double-quotes").replace(b"<sheetData>", b"<sheetData>" + b"<!--<row-->" * 30000)
    xml = xml.replace(b"</sheetData>", b"<!--<row-->" * 30000 + b"</sheetData>")
    src = make_book(tmp_path / "c.xlsx", xml)
    out = tmp_path / "c_out.xlsx"
    script = ("import sys; from xlglmm.workbook.xlsx_write import patch, CellWrite; "
              "patch(sys.argv[1], sys.argv[2], {'Data': {(2, 6): CellWrite('value', 1.5)}})")
    subprocess.run([sys.executable, "-c", script, str(src), str(out)], env=ENV, timeout=60,
                   check=True)
    v = openpyxl.load_workbook(out, data_only=True)["Data"]
    assert v["F2"].value == 1.5 and v["C3"].value == "a"
    assert parts(out)[SHEET].count(b"<!--<row-->") == 60000


# ---- killed while writing -------------------------------------------------------------------

KILL = r"""
import os, sys, time, zipfile
from pathlib import Path
marker, where = Path(sys.argv[1]), sys.argv[2]
if where == "mid-write":
    orig = zipfile.ZipFile.writestr
    def slow(self, *a, **k):
        orig(self, *a, **k)
        self.fp.flush()
        marker.write_text("writing")
        time.sleep(120)
    zipfile.ZipFile.writestr = slow
else:                                    # the file is complete, not yet moved into place
    orig_replace = os.replace
    def slow_replace(a, b):
        marker.write_text("replacing")
        time.sleep(120)
    os.replace = slow_replace
from xlglmm import cli
sys.exit(cli.main(["recalc", sys.argv[3], "-q"]))
"""


@pytest.mark.parametrize("where", ["mid-write", "before-replace"])
def test_killed_during_the_write_leaves_the_original_intact(tmp_path, where):
    src = make_book(tmp_path / "k.xlsx", variant("double-quotes"))
    before = src.read_bytes()
    marker = tmp_path / "marker"
    p = subprocess.Popen([sys.executable, "-c", KILL, str(marker), where, str(src)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline, "recalc never reached the write"
            time.sleep(0.05)
        tmp = [x for x in os.listdir(tmp_path) if x.endswith(".tmp")]
        assert len(tmp) == 1 and (tmp_path / tmp[0]).stat().st_size > 0
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert src.read_bytes() == before
    # and a run that is not killed replaces it with the complete workbook
    assert cli.main(["recalc", str(src), "-q"]) == Exit.OK
    assert openpyxl.load_workbook(src, data_only=True)["Data"]["D2"].value == 3
    if os.name == "posix":      # ... and deletes the killed run's temporary file
        assert not [x for x in os.listdir(tmp_path) if x.endswith(".tmp")]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_memory_is_a_multiple_of_the_cells(tmp_path):
    """The documented bound (xlsx_read: about 0.2 GB + 1 kB per cell), measured on a
    60,000-cell workbook against a 40-cell one, both recalculated in a child."""
    small = make_book(tmp_path / "small.xlsx", variant("double-quotes"))
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Data")
    for i in range(6000):
        ws.append([float(i + j) for j in range(9)] + [f"g{i % 50}"])
    big = tmp_path / "big.xlsx"
    wb.save(big)
    peaks = []
    for p in (small, big):
        code, err, out = _run_measured([sys.executable, "-c", PEAK, "recalc", str(p), "-q"])
        assert code == Exit.OK, err
        peaks.append(int(out.split()[-1]))
    assert peaks[1] - peaks[0] < 60_000 * 1.5 / 1000, peaks       # MB: < 1.5 kB a cell


def test_a_bomb_that_declares_a_small_size_is_not_trusted(tmp_path, capsys):
    """The entry's headers say 1,000 bytes; it unpacks to 300 MB.  Reading stops at the
    declared size, whose checksum fails: refused, nothing unpacked beyond a chunk."""
    import struct
    src = make_book(tmp_path / "base.xlsx", variant("double-quotes"))
    bomb = tmp_path / "liar.xlsx"
    _bomb(src, bomb, SHEET, 300, zip64=False)
    data = bytearray(bomb.read_bytes())
    with zipfile.ZipFile(bomb) as z:
        info = z.getinfo(SHEET)
    assert data[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, info.header_offset + 22, 1000)      # local header
    cd = next(m.start() for m in re.finditer(b"PK\x01\x02", data)
              if data[m.start() + 46:m.start() + 46 + len(SHEET)] == SHEET.encode())
    struct.pack_into("<I", data, cd + 24, 1000)                       # central directory
    bomb.write_bytes(bytes(data))
    with zipfile.ZipFile(bomb) as z:
        assert z.getinfo(SHEET).file_size == 1000
    assert refused(tmp_path, capsys, bomb) == (
        "xlglmm recalc: error: IN: cannot be read as a workbook: the part "
        "xl/worksheets/sheet1.xml cannot be unpacked (Bad CRC-32 for file "
        "'xl/worksheets/sheet1.xml'); open it in Excel or Calc and save it again as .xlsx; "
        "nothing was written")


@pytest.mark.parametrize("empty", ["<sheetData/>", "<x:sheetData />"])
def test_writing_into_an_empty_sheet(tmp_path, empty):
    xml = variant("prefix" if empty.startswith("<x:") else "double-quotes")
    xml = re.sub(rb"<(x:)?sheetData>.*</(x:)?sheetData>", empty.encode(), xml, flags=re.S)
    src = make_book(tmp_path / "e.xlsx", xml)
    out = tmp_path / "e_out.xlsx"
    patch(src, out, {"Data": {(3, 2): CellWrite("value", "b3"), (1, 1): CellWrite("value", 1.0),
                              (3, 1): CellWrite("clear")}})
    sheet = parts(out)[SHEET]
    p = b"x:" if empty.startswith("<x:") else b""
    assert re.search(rb"<" + p + rb'sheetData><' + p + rb'row r="1"><' + p + rb'c r="A1"><'
                     + p + rb"v>1</" + p + rb"v></" + p + rb"c></" + p + rb'row><' + p
                     + rb'row r="3"><' + p + rb'c r="B3" t="inlineStr">', sheet), sheet
    assert b'dimension ref="A1:B3"' in sheet
    v = openpyxl.load_workbook(out)["Data"]
    assert (v["A1"].value, v["B3"].value, v["A3"].value) == (1, "b3", None)


# ---- review fixes (issue 18): declared encodings expat cannot read ----------------------------

@pytest.mark.parametrize("enc, detail", [
    ("foo", "unknown encoding: foo"),
    ("shift_jis", "multi-byte encodings are not supported"),
    ("EUC-JP", "multi-byte encodings are not supported"),
    ("GBK", "multi-byte encodings are not supported"),
    ("Big5", "multi-byte encodings are not supported"),
])
def test_an_encoding_expat_cannot_read_is_refused_in_one_line(tmp_path, capsys, enc, detail):
    xml = variant("double-quotes").replace(b'encoding="UTF-8"', f'encoding="{enc}"'.encode())
    err = refused(tmp_path, capsys, book_with(tmp_path, xml))
    assert err == ("xlglmm recalc: error: IN: cannot be read as a workbook: the part "
                   f"xl/worksheets/sheet1.xml is encoded in '{enc}', which recalc cannot read "
                   f"({detail}; it reads UTF-8, UTF-16 and 8-bit encodings); open it in Excel "
                   "or Calc and save it again as .xlsx; nothing was written")


def test_an_8_bit_encoding_is_read_and_written_as_utf8(tmp_path, capsys):
    xml = variant("double-quotes").replace(b'encoding="UTF-8"', b'encoding="windows-1252"')
    xml = xml.replace(b"<t>y1</t>", "<t>\u20ac1</t>".encode("cp1252"))
    src = make_book(tmp_path / "w.xlsx", xml, '=GLMM_POISSON(Data!A2:A13, Data!B2:B13, '
                    'Data!C2:C13)')
    code, out, err = run(capsys, "recalc", src, "-q")
    assert (code, err) == (Exit.OK, "")
    assert parts(src)[SHEET].startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    v = openpyxl.load_workbook(src, data_only=True)
    assert v["Data"]["D1"].value == "\u20ac1" and v["Model"]["E2"].value == "Fixed effects"


# ---- review fixes (issue 18): what openpyxl turns into objects besides cells is counted -------

@pytest.mark.parametrize("limit, value, problem", [
    ("MAX_STRINGS", 5, "it has more than 5 shared strings (in xl/sharedStrings.xml)"),
    ("MAX_STYLES", 1, "its styles list <fills> has more than 1 entries (in xl/styles.xml)"),
    ("MAX_RECORDS", 40, "it has more than 40 XML elements besides cells, shared strings and "
                        "styles (counted up to "),
])
def test_strings_styles_and_other_records_are_counted_before_openpyxl(
        tmp_path, capsys, monkeypatch, limit, value, problem):
    err = refused_before_openpyxl(tmp_path, capsys, monkeypatch, limit, value)
    assert err.startswith(f"xlglmm recalc: error: IN: is too large to read safely: {problem}")
    assert len(err) <= 290


def test_the_counts_leave_cells_inside_sheet_data_to_the_cell_limit():
    scan = xlsx_read._Scan("xl/worksheets/sheet1.xml", 100, records_left=8)
    scan.feed(variant("double-quotes"), True)
    # dimension, sheetFormatPr, pageMargins (the root and <sheetData> not): the 13 rows and
    # their 52 cells (with <v>, <f>, <is>) are cells, not records
    assert (scan.stats.cells, scan.stats.records) == (52, 3)
    sst = xlsx_read._Scan("xl/sharedStrings.xml", 100)
    sst.feed(shared_strings(), True)
    assert (sst.stats.strings, sst.stats.records) == (6, 0)


def test_merged_ranges_count_as_the_cells_openpyxl_makes_of_them(tmp_path, capsys):
    whole = variant("double-quotes").replace(
        b"</sheetData>", b'</sheetData><mergeCells count="1"><mergeCell ref="E1:XFD1048576"/>'
        b"</mergeCells>")
    err = refused(tmp_path, capsys, book_with(tmp_path, whole))
    assert err.startswith("xlglmm recalc: error: IN: is too large to read safely: it has more "
                          "than 2,000,000 cells, merged ones counted (counted up to "
                          "xl/worksheets/sheet1.xml)")
    small = variant("double-quotes").replace(
        b"</sheetData>", b'</sheetData><mergeCells count="1"><mergeCell ref="F2:H3"/>'
        b"</mergeCells>")
    scan = xlsx_read._Scan(SHEET, 100)
    scan.feed(small, True)
    assert scan.stats.cells == 52 + 5
