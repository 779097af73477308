"""Workbook templates, ``xlglmm recalc`` and ``xlglmm demo``.

Every template in workbooks/ is opened, every xlglmm formula in it is found, the
workbook is recalculated with ``xlglmm recalc``, and each block is checked against
``xlglmm.glmer`` fitted to the data read back from the workbook's Data table (and
the fits' log-likelihoods against lme4's).  The stored (cached) values of the
committed templates must equal a fresh recalculation.  With LibreOffice on PATH the
recalculated workbooks are converted to PDF.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import zipfile
from xml.etree import ElementTree

import numpy as np
import openpyxl
import pandas as pd
import pytest
from openpyxl.worksheet.formula import ArrayFormula

import xlglmm
from xlglmm import cli
from xlglmm.workbook import excel_formula, templates
from xlglmm.workbook.excel_formula import FormulaSyntaxError, parse
from xlglmm.workbook.recalc import recalc
from refs import expected, glmmtmb
from template_checks import (CHECKS, EXTRA_SHEETS, MODELS, TEMPLATE_FILES, WORKBOOKS,
                             block_at, data_frame, row_of, xlglmm_formulas)



@pytest.fixture(scope="module")
def recalculated(tmp_path_factory):
    """Each template recalculated with the xlglmm recalc command (in a temp dir)."""
    out = tmp_path_factory.mktemp("recalc")
    done = {}
    for path in TEMPLATE_FILES:
        dst = out / path.name
        assert cli.main(["recalc", str(path), "-o", str(dst), "--quiet"]) == 0
        done[path.stem] = dst
    return done


# ---- templates ----------------------------------------------------------------------------

def test_the_templates_exist():
    assert {p.stem for p in TEMPLATE_FILES} == set(templates.TEMPLATES) == set(MODELS)


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.stem)
def test_template_structure(path):
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Read me", "Model", *EXTRA_SHEETS.get(path.stem, []), "Data"]
    assert wb.active.title == "Model"
    assert len(wb["Data"].tables) == 1
    assert wb.calculation.fullCalcOnLoad is not True      # show the stored results
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) >= 2
        text = " ".join(z.read(n).decode() for n in charts)
        assert re.search(r"<(c:)?errBars>", text) and re.search(r"<(c:)?scatterChart>", text)
        assert "xl/metadata.xml" in z.namelist()
        for n in z.namelist():
            if n.endswith((".xml", ".rels")):
                ElementTree.fromstring(z.read(n))          # every part is well-formed
    readme = " ".join(str(c.value) for row in wb["Read me"].iter_rows() for c in row if c.value)
    for word in ("GLMM_RANEF", "xlglmm recalc", "caterpillar", "your own data"):
        assert word.lower() in readme.lower()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recalc_reproduces_glmer(name, recalculated):
    """Open the template, find every xlglmm formula, recalc, compare with glmer."""
    src = WORKBOOKS / f"{name}.xlsx"
    formulas = xlglmm_formulas(src)
    wb = openpyxl.load_workbook(recalculated[name], data_only=True)
    df = data_frame(wb)
    checks, lme4 = MODELS[name](df)
    assert set(formulas) == set(checks), "every xlglmm formula of the template is checked"
    after = xlglmm_formulas(recalculated[name])
    for where, (kind, res) in checks.items():
        text, ref = after[where]
        assert text == formulas[where][0]                 # the formula is kept
        assert ref is not None
        sheet, _ = where.split("!")
        block = block_at(wb[sheet], ref)
        CHECKS[kind](block, res)
    for ref_name, res in lme4.items():       # and the fits agree with lme4 (or glmmTMB)
        if ref_name.startswith("glmmtmb:"):
            ref = glmmtmb(ref_name.split(":")[1])
            assert res.llf == pytest.approx(ref["logLik"], abs=1e-3)
            if res.nb_theta is not None:
                assert res.nb_theta == pytest.approx(ref["dispersion"]["sigma"], rel=1e-3)
            if ref.get("zi"):          # the zero-inflation coefficients determined
                for name, se in zip(ref["zi"]["names"], ref["zi"]["se"]):
                    if name not in res.zi_undetermined:
                        assert res.zi_params[name] == pytest.approx(
                            ref["zi"]["fixef"][name], abs=1e-3 * se)
                        assert res.zi_bse[name] == pytest.approx(se, rel=1e-3)
            continue
        assert res.llf == pytest.approx(expected(ref_name)["logLik"], abs=0.01)
        if "nb_theta" in expected(ref_name) and np.isfinite(res.nb_theta_se or np.nan):
            assert res.nb_theta == pytest.approx(expected(ref_name)["nb_theta"], rel=1e-3)


def same_stored_value(stored, now, header) -> bool:
    """Equal within what the engine reproduces on another machine
    (test_reproducible.PRECISION): estimates to 1e-5 of their SE (every SE in the
    templates is below 1: 1e-5 absolute), SEs and everything computed from them to
    1e-5 relative (1e-4 here: a few such steps).  A p-value's precision is its
    z's: relative error ~z^2 x that of z (a p of 1e-31 moves by 1e-3 when z moves by
    1e-6), so p-values are compared on the log scale."""
    if str(header).startswith("Pr("):
        a, b = (-math.log(max(v, 1e-300)) for v in (stored, now))
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
    return math.isclose(stored, now, rel_tol=1e-4, abs_tol=1e-5)


def column_header(ws, cell):
    """The nearest text above a number in its column (a block's column label)."""
    for r in range(cell.row - 1, 0, -1):
        v = ws.cell(r, cell.column).value
        if isinstance(v, str):
            return v
    return None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stored_values_are_the_current_results(name, recalculated):
    """The committed templates hold real, current results (rebuild them with
    python workbooks/build_templates.py when this fails)."""
    a = openpyxl.load_workbook(WORKBOOKS / f"{name}.xlsx", data_only=True)
    b = openpyxl.load_workbook(recalculated[name], data_only=True)
    for ws in a.worksheets:
        wb_ = b[ws.title]
        for row in ws.iter_rows():
            for c in row:
                x, y = c.value, wb_[c.coordinate].value
                if isinstance(x, float) and isinstance(y, float):
                    assert same_stored_value(x, y, column_header(ws, c)), \
                        (ws.title, c.coordinate, x, y)
                else:
                    assert x == y, (ws.title, c.coordinate, x, y)
    # and the formula cells do hold values
    form = openpyxl.load_workbook(WORKBOOKS / f"{name}.xlsx")
    n = 0
    for ws in form.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if c.data_type == "f":
                    n += 1
                    assert a[ws.title][c.coordinate].value is not None, (ws.title, c.coordinate)
    assert n > 10


def test_recalc_keeps_everything_else(recalculated):
    src = WORKBOOKS / "workplace_safety.xlsx"
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(recalculated["workplace_safety"]) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        for n in a.namelist():
            if not n.startswith("xl/worksheets/sheet"):
                assert a.read(n) == b.read(n), n


def test_builder_script_rebuilds_a_template(tmp_path):
    res = templates.build("cbpp", tmp_path / "cbpp.xlsx")
    assert res.ok and len(res.xlglmm) == 3
    wb = openpyxl.load_workbook(tmp_path / "cbpp.xlsx", data_only=True)
    assert wb["Model"]["B5"].value == "Fixed effects"
    assert (WORKBOOKS / "build_templates.py").exists()


# ---- recalc: the evaluator and its errors ---------------------------------------------------

def _book(tmp_path, cells: dict, data=True, name="t.xlsx"):
    """A small workbook: Data sheet with a 12-row table 'T' (y, x, g), Model sheet with
    ``cells`` (address -> value / formula / ArrayFormula)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    rng = np.random.default_rng(1)
    ws.append(["y", "x", "g"])
    for i in range(24):
        ws.append([int(rng.poisson(3)), float(i % 4), "abcdef"[i % 6]])
    from openpyxl.worksheet.table import Table
    ws.add_table(Table(displayName="T", ref="A1:C25"))
    m = wb.create_sheet("Model")
    for k, v in cells.items():
        m[k] = v
    p = tmp_path / name
    wb.save(p)
    return p


FIT = "GLMM_POISSON(Data!A1:A25, Data!B1:B25, Data!C1:C25)"


def test_recalc_spills_a_plain_formula_and_keeps_it(tmp_path, capsys):
    p = _book(tmp_path, {"B2": "=" + FIT, "M2": "=GLMM_RANEF(T[[#All],[y]], T[[#All],[x]], "
                         "T[[#All],[g]])", "A1": "=C4*2", "A2": "=INDEX(B2#, 3, 2)"})
    assert cli.main(["recalc", str(p)]) == 0          # in place
    out = capsys.readouterr().out
    assert "Model!B2" in out and "GLMM_POISSON" in out and "Model!M2" in out
    wb = openpyxl.load_workbook(p)
    f = wb["Model"]["B2"].value
    assert isinstance(f, ArrayFormula) and f.text == "=" + FIT
    v = openpyxl.load_workbook(p, data_only=True)["Model"]
    r1, c1, r2, c2 = excel_formula.parse_range(f.ref)
    assert (r1, c1) == (2, 2) and c2 == 11
    assert v.cell(r2 - 1, 2).value == "Notes" and v.cell(r2 + 1, 2).value is None
    assert v["B2"].value == "Fixed effects" and v["B3"].value == "(Intercept)"
    assert v["A1"].value == pytest.approx(2 * v["C4"].value)
    assert v["A2"].value == v["C4"].value
    assert v["M2"].value == "group" and v["M3"].value == "g"


def test_recalc_resizes_and_clears_an_old_spill(tmp_path):
    # a stale 40-row array range with junk values below the new block's end
    cells = {"B2": ArrayFormula("B2:K41", "=" + FIT)}
    cells.update({f"B{r}": "stale" for r in range(30, 42)})
    p = _book(tmp_path, cells)
    out = tmp_path / "o.xlsx"
    assert recalc(p, out).ok
    v = openpyxl.load_workbook(out, data_only=True)["Model"]
    ref = openpyxl.load_workbook(out)["Model"]["B2"].value.ref
    r2 = excel_formula.parse_range(ref)[2]
    assert r2 < 30 and v[f"B{r2}"].value == "none"
    assert all(v[f"B{r}"].value is None for r in range(r2 + 1, 42))


@pytest.mark.parametrize("formula, code, words", [
    ("=GLMM_POISSON(Data!A1:A25, FOO(Data!B1:B25), Data!C1:C25)", "#NAME?",
     "unknown function FOO"),
    ("=GLMM_POISSON(Nowhere!A1:A25, Data!B1:B25, Data!C1:C25)", "#REF!",
     "no sheet named 'Nowhere'"),
    ("=GLMM_POISSON(T[[#All],[yy]], Data!B1:B25, Data!C1:C25)", "#REF!",
     "table 'T' has no column 'yy'"),
    ("=GLMM_POISSON(Tab[y], Data!B1:B25, Data!C1:C25)", "#REF!", "no table named 'Tab'"),
    ("=GLMM_POISSON([1]Sheet1!A1:A25, Data!B1:B25, Data!C1:C25)", "#REF!",
     "another workbook"),
    ("=GLMM_POISSON(Data!A1:A25, Data!B1:B25, nothing)", "#NAME?", "unknown name 'nothing'"),
    ("=GLMM_POISSON(Data!A1:A25)", "#VALUE!", "needs at least 3 arguments"),
    ("=GLMM_POISSON(Data!A1:A25, Data!B1:B25, Data!C1:C25, , , , , , , 1)", "#VALUE!",
     "at most 8 arguments"),
    ("=GLMM_POISSON(Data!A1:A25, Data!B1:B25, Data!C1:C25", "#NAME?", "cannot read"),
    ("=GLMM_COMPARE(Z9#, Z9#)", "#REF!", "no formula"),
])
def test_recalc_reports_what_it_cannot_evaluate(tmp_path, capsys, formula, code, words):
    p = _book(tmp_path, {"B2": formula, "B30": "=" + FIT})
    out = tmp_path / "o.xlsx"
    assert cli.main(["recalc", str(p), "-o", str(out)]) == 1
    text = capsys.readouterr().out
    assert "Model!B2" in text and words in text and "NOT EVALUATED" in text
    v = openpyxl.load_workbook(out, data_only=True)["Model"]
    assert v["B2"].value == code and v["C2"].value is None and v["B3"].value is None
    assert v["B30"].value == "Fixed effects"          # the others are still evaluated


def test_recalc_spill_blocked(tmp_path, capsys):
    p = _book(tmp_path, {"B2": "=" + FIT, "D10": "in the way"})
    out = tmp_path / "o.xlsx"
    assert cli.main(["recalc", str(p), "-o", str(out)]) == 1
    assert "#SPILL!" in capsys.readouterr().out
    v = openpyxl.load_workbook(out, data_only=True)["Model"]
    assert v["B2"].value == "#SPILL!" and v["D10"].value == "in the way"


def test_recalc_glmm_error_goes_into_the_anchor_only(tmp_path, capsys):
    p = _book(tmp_path, {"B2": "=GLMM_POISSON(Data!A1:A25, Data!B1:B20, Data!C1:C25)"})
    assert cli.main(["recalc", str(p), "-o", str(tmp_path / "o.xlsx")]) == 1
    v = openpyxl.load_workbook(tmp_path / "o.xlsx", data_only=True)["Model"]
    assert v["B2"].value.startswith("#GLMM! ") and v["C2"].value is None


def test_recalc_compare_sees_the_new_blocks(tmp_path):
    p = _book(tmp_path, {
        "B40": "=GLMM_COMPARE(B2#, _xlfn.ANCHORARRAY(N2))",       # before its inputs
        "B2": "=" + FIT, "N2": "=GLMM_POISSON(Data!A1:A25, , Data!C1:C25)"})
    res = recalc(p, tmp_path / "o.xlsx")
    assert res.ok
    v = openpyxl.load_workbook(tmp_path / "o.xlsx", data_only=True)["Model"]
    f = openpyxl.load_workbook(tmp_path / "o.xlsx")["Model"]
    ll = [row_of(block_at(v, f[a].value.ref), "logLik")[1] for a in ("B2", "N2")]
    assert v["H42"].value == pytest.approx(2 * (ll[0] - ll[1]))


def test_recalc_unknown_function_elsewhere_keeps_stored_value(tmp_path, capsys):
    p = _book(tmp_path, {"B2": "=" + FIT, "A1": "=WEIRD(1)"})
    assert cli.main(["recalc", str(p), "-o", str(tmp_path / "o.xlsx")]) == 0
    assert "A1: kept its stored value" in capsys.readouterr().out


def test_recalc_values_only_and_bad_files(tmp_path, capsys):
    p = _book(tmp_path, {"B2": "=" + FIT})
    out = tmp_path / "v.xlsx"
    assert cli.main(["recalc", str(p), "-o", str(out), "--values", "-q"]) == 0
    with zipfile.ZipFile(out) as z:
        assert not any("<f" in z.read(n).decode() for n in z.namelist()
                       if n.startswith("xl/worksheets/sheet"))
    assert openpyxl.load_workbook(out)["Model"]["B2"].value == "Fixed effects"
    assert cli.main(["recalc", str(p), "--values"]) == 2          # usage
    assert cli.main(["recalc", str(tmp_path / "missing.xlsx")]) == 3   # input
    (tmp_path / "junk.xlsx").write_text("not a workbook")
    assert cli.main(["recalc", str(tmp_path / "junk.xlsx")]) == 3
    assert "junk.xlsx: is not an .xlsx workbook" in capsys.readouterr().err


def test_formula_parser_is_a_whitelist():
    t = parse("=GLMM_POISSON(Safety[[#All],[plant]:[month]], 'My sheet'!$A$1:B2, F2#)")
    assert [type(a).__name__ for a in t.args] == ["StructRef", "Ref", "Ref"]
    assert t.args[0].columns == ("plant", "month") and t.args[2].spill
    assert excel_formula.function_key("_xlfn._xlws.SORT") == "SORT"
    assert excel_formula.function_key("[1]!GLMM_POISSON") == "GLMM_POISSON"
    assert excel_formula.function_key("_xludf.GLMM") == "GLMM"
    for bad in ("=__import__('os').system('x')", "=A1 +", "=SUM(A1", "=\"open",
                "=A1:B2#", "=1 2"):
        with pytest.raises(FormulaSyntaxError):
            parse(bad)


def test_builtin_functions(tmp_path):
    cells = {"A1": 5, "A2": 3, "A3": 3, "A4": 9, "A5": "x",
             "B1": "=LN(EXP(2))", "B2": "=LOG(1000)", "B3": "=SQRT(-1)", "B4": "=1/0",
             "B5": "=IF(A1>4,\"big\",\"small\")", "B6": "=SUM(A1:A5)", "B7": "=AVERAGE(A1:A4)",
             "B8": "=SMALL(A1:A4,2)", "B9": "=MATCH(9,A1:A4,0)", "B10": "=INDEX(A1:A4,4)",
             "B11": "=RANK(A2,A1:A4,1)+COUNTIF($A$1:A3,A3)-1", "B12": "=COUNTIF(A1:A5,\">3\")",
             "B13": "=\"n=\"&COUNT(A1:A5)", "B14": "=-2^2", "B15": "=ROUND(2.5,0)",
             "B16": "=MAX(A1:A4)-MIN(A1:A4)", "B17": "=ROWS(A1:A5)*COLUMNS(A1:B1)"}
    p = _book(tmp_path, cells)
    assert recalc(p, tmp_path / "o.xlsx").ok
    v = openpyxl.load_workbook(tmp_path / "o.xlsx", data_only=True)["Model"]
    got = [v[f"B{i}"].value for i in range(1, 18)]
    assert got[0] == pytest.approx(2) and got[1] == pytest.approx(3)
    assert got[2:4] == ["#NUM!", "#DIV/0!"]
    assert got[4:] == ["big", 20, 5, 3, 4, 9, 2, 2, "n=4", 4, 3, 6, 10]


def test_numbers_one_bit_apart(tmp_path):
    """As in Excel and Calc: = and COUNTIF take numbers one bit apart as equal (15
    digits), RANK tells them apart; numbers 1e-12 apart differ everywhere.  The
    templates' sort position (RANK + ties counted by RANK) is a permutation even then,
    where RANK + COUNTIF gave one position twice."""
    a = 0.04278932864397107
    b = math.nextafter(a, 1.0)                                            # the next double
    cells = {"A1": a, "A2": b, "A3": -0.5, "A4": a + 1e-12,
             "B1": "=COUNTIF(A1:A4,A1)", "B2": "=RANK(A2,A1:A4,1)", "B3": "=IF(A1=A2,1,0)",
             "B4": "=IF(A1<A2,1,0)", "B5": "=IF(A1=A4,1,0)",
             "B6": "=RANK(A1,A1:A4,1)+COUNTIF($A$1:A1,A1)-1",
             "B7": "=RANK(A2,A1:A4,1)+COUNTIF($A$1:A2,A2)-1"}
    for i in range(1, 5):
        cells[f"C{i}"] = (f"=RANK(A{i},$A$1:$A$4,1)+ROWS($A$1:A{i})-RANK(A{i},$A$1:A{i},1)"
                          f"-RANK(A{i},$A$1:A{i},0)+1")
    p = _book(tmp_path, cells)
    assert recalc(p, tmp_path / "o.xlsx").ok
    v = openpyxl.load_workbook(tmp_path / "o.xlsx", data_only=True)["Model"]
    assert [v[f"B{i}"].value for i in range(1, 8)] == [2, 3, 1, 0, 0, 2, 4]   # 3 is lost
    assert [v[f"C{i}"].value for i in range(1, 5)] == [2, 3, 1, 4]


# ---- demo -----------------------------------------------------------------------------------

def test_demo_prints_the_block_and_writes_a_workbook(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "=GLMM_POISSON(" in out
    assert re.search(r"training\s+-0\.420\d\s+0\.194\d", out)
    assert re.search(r"AIC\s+715\.5", out)
    assert "rate ratio 0.657" in out
    path = tmp_path / "workplace_safety.xlsx"
    assert path.exists() and str(path.resolve()) in out
    v = openpyxl.load_workbook(path, data_only=True)["Model"]
    assert row_of(block_at(v, "B5:K30"), "training")[1] == pytest.approx(-0.4205, abs=1e-4)


def test_demo_output_option(tmp_path, capsys):
    assert cli.main(["demo", "-o", str(tmp_path / "x.xlsx")]) == 0
    assert (tmp_path / "x.xlsx").exists()


# ---- LibreOffice ----------------------------------------------------------------------------

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not on PATH; install "
                    "libreoffice-calc-nogui to run this check (not part of CI yet)")
def test_recalculated_workbooks_open_in_libreoffice(recalculated, tmp_path):
    files = list(recalculated.values())
    for name, path in list(recalculated.items()):
        vals = tmp_path / f"{name}_values.xlsx"
        assert cli.main(["recalc", str(path), "-o", str(vals), "--values", "-q"]) == 0
        files.append(vals)
    outdir = tmp_path / "pdf"
    profile = (tmp_path / "lo-profile").as_uri()
    proc = subprocess.run([SOFFICE, f"-env:UserInstallation={profile}", "--headless",
                           "--convert-to", "pdf", "--outdir", str(outdir),
                           *map(str, files)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for f in files:
        pdf = outdir / f"{f.stem}.pdf"
        assert pdf.exists() and pdf.stat().st_size > 5000, (f, proc.stdout, proc.stderr)
        assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(outdir / "workplace_safety_values.pdf"), "-"],
                              capture_output=True, text=True).stdout
        assert "715.5" in text and "Fixed effects" in text


def _excel_style(path):
    """Rewrite an openpyxl file the way Excel stores things: shared formulas, prefixed
    extension attributes on rows (mc:Ignorable), shared strings untouched, a calcChain."""
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    x = files["xl/worksheets/sheet1.xml"].decode()
    x = x.replace('<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">',
                  '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                  'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
                  'mc:Ignorable="x14ac" '
                  'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac">')
    x = re.sub(r'<row r="(\d+)">', r'<row r="\1" spans="1:4" x14ac:dyDescent="0.25">', x)
    x = x.replace('<f>B2+1</f><v /></c>', '<f t="shared" ref="D2:D25" si="0">B2+1</f><v>1</v></c>')
    x = re.sub(r'<f>B(\d+)\+1</f><v />', '<f t="shared" si="0"/><v>1</v>', x)
    files["xl/worksheets/sheet1.xml"] = x.encode()
    files["xl/calcChain.xml"] = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                                 b'<calcChain xmlns="http://schemas.openxmlformats.org/'
                                 b'spreadsheetml/2006/main"><c r="D2" i="1"/></calcChain>')
    files["[Content_Types].xml"] = files["[Content_Types].xml"].replace(
        b"</Types>", b'<Override PartName="/xl/calcChain.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.calcChain+xml"/></Types>')
    files["xl/_rels/workbook.xml.rels"] = files["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>", b'<Relationship Id="rId99" Type="http://schemas.openxmlformats.'
        b'org/officeDocument/2006/relationships/calcChain" Target="calcChain.xml"/>'
        b"</Relationships>")
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)


def test_recalc_on_excel_style_xml(tmp_path):
    from xml.etree import ElementTree as ET
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["y", "x", "g", "x1"])
    rng = np.random.default_rng(2)
    for i in range(2, 26):
        ws.append([int(rng.poisson(2)), float(i % 5), "pqrs"[i % 4], f"=B{i}+1"])
    wb.create_sheet("Model")["B2"] = "=GLMM_POISSON(Data!A1:A25, Data!D1:D25, Data!C1:C25)"
    p = tmp_path / "excel.xlsx"
    wb.save(p)
    _excel_style(p)
    out = tmp_path / "o.xlsx"
    assert recalc(p, out).ok
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert "xl/calcChain.xml" not in names and "xl/metadata.xml" in names
        assert b"calcChain" not in z.read("[Content_Types].xml")
        for n in names:
            if n.endswith(".xml") or n.endswith(".rels"):
                ET.fromstring(z.read(n))                 # well-formed
        sheet1 = z.read("xl/worksheets/sheet1.xml").decode()
        assert 'mc:Ignorable="x14ac"' in sheet1 and 'x14ac:dyDescent="0.25"' in sheet1
        assert 't="shared"' not in sheet1                # expanded: values changed
    v = openpyxl.load_workbook(out, data_only=True)
    assert [v["Data"][f"D{i}"].value for i in (2, 3, 25)] == [
        v["Data"][f"B{i}"].value + 1 for i in (2, 3, 25)]
    x = data_frame_plain(v["Data"])
    res = xlglmm.glmer("y ~ x1 + (1|g)", x, family="poisson")
    assert row_of(block_at(v["Model"], "B2:K30"), "x1")[1] == pytest.approx(
        res.fe_params["x1"], rel=1e-6)
    f = openpyxl.load_workbook(out)
    assert f["Data"]["D7"].value == "=B7+1"


def data_frame_plain(ws):
    rows = list(ws.iter_rows(values_only=True))
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_recalc_help_lists_the_evaluated_functions():
    from xlglmm.workbook.builtins import BUILTINS
    listed = re.search(r"Other Excel functions evaluated: (.*?)\. An", cli.RECALC_EPILOG, re.S)
    assert set(listed.group(1).split()) == set(BUILTINS) - {"RANK.EQ"}


# ---- the NB2-vs-Poisson sheets and the LMM template ------------------------------------------

def _cells(ws):
    return {c.coordinate: c.value for row in ws.iter_rows() for c in row if c.value is not None}


@pytest.mark.parametrize("name", sorted(EXTRA_SHEETS))
def test_nb_sheet_sets_aic_side_by_side(name, recalculated):
    """The side-by-side table looks up npar/logLik/AIC/BIC in the Poisson and NB2 blocks."""
    wb = openpyxl.load_workbook(recalculated[name], data_only=True)
    form = openpyxl.load_workbook(recalculated[name])
    ws, fs = wb["NB2 vs Poisson"], form["NB2 vs Poisson"]
    text = " ".join(str(v) for v in _cells(ws).values())
    assert "GLMM_COMPARE" in text and "overdispersion" in text
    nb = block_at(ws, fs["B6"].value.ref)
    head = next(c for c in ws[6] if c.value == "Model")
    r0, c0 = head.row, head.column
    rows = {}
    r = r0 + 1
    while ws.cell(r, c0).value:
        rows[ws.cell(r, c0).value] = [ws.cell(r, c0 + j).value for j in range(1, 6)]
        aic_formula = fs.cell(r, c0 + 3).value
        assert "INDEX(" in aic_formula and 'MATCH("AIC"' in aic_formula
        r += 1
    nb_row = rows.pop("Negative binomial (NB2), GLMM_NEGBIN")
    assert nb_row[:4] == [row_of(nb, k)[1] for k in ("npar", "logLik", "AIC", "BIC")]
    assert nb_row[4] == 0
    anchor = "B5" if name == "workplace_safety" else "B6"
    pois = block_at(wb["Model"], form["Model"][anchor].value.ref)
    first = next(iter(rows.values()))
    assert first[2] == row_of(pois, "AIC")[1]
    assert first[4] == pytest.approx(row_of(pois, "AIC")[1] - row_of(nb, "AIC")[1])
    theta = row_of(nb, "NB theta")[1]
    notes = " ".join(str(x[0]) for x in nb[nb.index(row_of(nb, "Notes")):])
    if name == "workplace_safety":     # theta at its upper limit: no overdispersion
        assert theta > 1e4 and "no overdispersion" in notes
        assert first[4] == pytest.approx(-2, abs=0.01)       # Poisson better by theta's price
    else:                              # strongly overdispersed
        assert 1.5 < theta < 2.7 and first[4] > 400


def test_sleepstudy_reml_and_ml_side_by_side(recalculated):
    wb = openpyxl.load_workbook(recalculated["sleepstudy"], data_only=True)
    form = openpyxl.load_workbook(recalculated["sleepstudy"])["Model"]
    m = wb["Model"]
    assert form["B6"].value.text.startswith("=LMM(") and ", FALSE)" in form["K6"].value.text
    reml, ml = (block_at(m, form[a].value.ref) for a in ("B6", "K6"))
    assert row_of(reml, "method")[1] == "REML" and row_of(ml, "method")[1] == "ML"
    assert row_of(reml, "REML criterion")[1] == pytest.approx(
        expected("sleep_reml")["REMLcrit"], abs=0.01)
    assert row_of(reml, "Days")[1] == pytest.approx(row_of(ml, "Days")[1], rel=1e-6)
    readme = " ".join(str(v) for v in _cells(wb["Read me"]).values())
    for word in ("ICC", "Residual", "REML criterion", "REML = FALSE"):
        assert word in readme


# ---- the Checks sheets and the shrinkage chart: charts fed by the spilled blocks -------------

def chart_ranges(path) -> list:
    """The ranges each chart of a workbook reads (its formula texts, without $ and
    quotes)."""
    with zipfile.ZipFile(path) as z:
        return [{f.replace("$", "").replace("'", "")
                 for f in re.findall(r"<(?:c:)?f>([^<]+)</(?:c:)?f>", z.read(n).decode())}
                for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]


def block_column(sheet: str, ref: str, block: list, head: str) -> str:
    """'Sheet!C6:C25': the cells under ``head`` in a block spilled over ``ref``."""
    r1, c1, r2, _ = excel_formula.parse_range(ref)
    c = c1 + block[0].index(head)
    return f"{sheet}!{excel_formula.range_name(r1 + 1, c, r2, c)}"


def test_workplace_residual_charts_read_glmm_resid(recalculated):
    """The two residual charts plot GLMM_RESID's columns: deviance residuals against
    the fitted values, and against their normal quantiles with the line y = x from
    the smallest to the largest of both."""
    path = recalculated["workplace_safety"]
    ws = openpyxl.load_workbook(path, data_only=True)["Checks"]
    text, ref = xlglmm_formulas(path)["Checks!I30"]
    assert text.startswith("=GLMM_RESID(")
    block = block_at(ws, ref)
    col = {h: block_column("Checks", ref, block, h) for h in
           ("fitted", "deviance resid", "normal quantile (deviance)")}
    charts = chart_ranges(path)
    assert any({col["fitted"], col["deviance resid"]} <= c for c in charts)
    (qq,) = [c for c in charts if {col["normal quantile (deviance)"],
                                   col["deviance resid"]} <= c]
    (line,) = qq - set(col.values())
    r1, c1, r2, _ = excel_formula.parse_range(line.split("!")[1])
    ends = [ws.cell(r, c1).value for r in (r1, r2)]
    both = [r[4] for r in block[1:]] + [r[6] for r in block[1:]]
    assert ends == [pytest.approx(min(both), rel=1e-12), pytest.approx(max(both), rel=1e-12)]


def test_sleepstudy_shrinkage_chart_reads_glmm_ranef(recalculated):
    """The shrinkage chart plots model 3's BLUPs against their raw estimates, and
    each BLUP is the raw estimate shrunk by the block's factor."""
    path = recalculated["sleepstudy"]
    ws = openpyxl.load_workbook(path, data_only=True)["Model"]
    text, ref = xlglmm_formulas(path)["Model!B66"]
    assert text.startswith("=GLMM_RANEF(") and "x_random" not in text
    block = block_at(ws, ref)
    raw, blup = (block_column("Model", ref, block, h) for h in ("raw (Intercept)",
                                                                 "(Intercept)"))
    assert any({raw, blup} <= c for c in chart_ranges(path))
    for r in block[1:]:
        assert r[2] == pytest.approx(r[5] * (1 - r[6]), rel=1e-9)


def test_grouse_checks_flag_the_poisson_model_only(recalculated):
    """The Poisson model's dispersion and zeros are flagged, the observation-level
    and NB2 models pass; the ratio table (and its chart) reads the blocks."""
    path = recalculated["grouseticks"]
    ws = openpyxl.load_workbook(path, data_only=True)["Checks"]
    formulas = xlglmm_formulas(path)
    blocks = [block_at(ws, formulas[f"Checks!{a}"][1]) for a in ("B5", "B22", "B39")]
    assert row_of(blocks[0], "dispersion")[4] is True
    assert row_of(blocks[0], "zero-inflation")[4] is True
    assert all(r[4] is not True for b in blocks[1:] for r in b[1:])
    head = next(c for row in ws.iter_rows() for c in row if c.value == "Model")
    table = [[ws.cell(head.row + k, head.column + j).value for j in range(3)]
             for k in range(1, 4)]
    for row, block in zip(table, blocks):
        assert row[1:] == [row_of(block, "dispersion")[1], row_of(block, "zero-inflation")[1]]
    names = excel_formula.range_name(head.row + 1, head.column, head.row + 3, head.column)
    cats = f"Checks!{names}"
    assert any(cats in c for c in chart_ranges(path))
