"""Issue 18, the formula evaluator of ``xlglmm recalc``: small workbooks whose formulas
once made it run out of memory, backtrack for ever, overflow Python's stack or take
quadratic time.  Each case gives a value or one clear message; cost is bounded by
counts (cells read, checks made), and a subprocess timeout fails only on a hang."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.formula import ArrayFormula

from xlglmm.sheet import cache
from xlglmm.workbook import evaluator, excel_formula, recalc
from xlglmm.workbook.book import Book
from xlglmm.workbook.builtins import wildcard_matcher
from xlglmm.workbook.evaluator import Engine
from xlglmm.workbook.excel_values import RangeVal, XLError

ROOT = Path(__file__).resolve().parents[2]
HANG = 120          # seconds: a subprocess still running then has hung


def run_recalc(src: Path, out: Path):
    """``xlglmm recalc src -o out`` in a fresh process; (exit status, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "xlglmm", "recalc", str(src), "-o", str(out)],
                       capture_output=True, text=True, timeout=HANG, env=env)
    return r.returncode, r.stdout, r.stderr


def values(path: Path, sheet: str) -> openpyxl.worksheet.worksheet.Worksheet:
    return openpyxl.load_workbook(path, data_only=True)[sheet]


def engine_for(path: Path) -> Engine:
    e = Engine(Book(path))
    e.run()
    return e


def data_sheet(wb, n=24):
    ws = wb.active
    ws.title = "Data"
    rng = np.random.default_rng(1)
    ws.append(["y", "x", "g"])
    for i in range(n):
        ws.append([int(rng.poisson(3)), float(i % 4), "abcdef"[i % 6]])
    return ws


FIT = "=GLMM_POISSON(Data!A1:A25, Data!B1:B25, Data!C1:C25)"


# ---- item 5: one value in XFD1048576 and whole-sheet ranges ---------------------------------

def test_whole_sheet_ranges_read_only_the_stored_cells(tmp_path):
    wb = openpyxl.Workbook()
    data_sheet(wb)
    d = wb["Data"]
    d["XFD1048576"] = 2
    m = wb.create_sheet("Model")
    m["A1"] = "=SUM(Data!A:XFD)"
    m["A2"] = "=COUNT(Data!A:XFD)"
    m["A3"] = "=MAX(Data!A:XFD)"
    m["A4"] = '=COUNTIF(Data!A:XFD, "")'
    m["A5"] = '=COUNTIF(Data!A:XFD, "a")'
    m["A6"] = "=AVERAGE(Data!B:XFD)"
    m["A7"] = "=MATCH(2, Data!A:XFD, 0)"          # must be read cell by cell: refused
    m["B10"] = "=GLMM_POISSON(Data!A:XFD, Data!B1:B25, Data!C1:C25)"
    src, out = tmp_path / "xfd.xlsx", tmp_path / "out.xlsx"
    wb.save(src)
    code, text, err = run_recalc(src, out)
    assert code == 1, err
    refused = ("Data!A1:XFD1048576 covers 17,179,869,184 cells; recalc reads at most "
               "5,000,000 cells of a range one by one")
    (line,) = [ln for ln in text.splitlines() if "Model!B10" in ln]
    assert line.split()[:2] == ["Model!B10", "GLMM_POISSON"]
    assert line.endswith(f"GLMM_POISSON   NOT EVALUATED: {refused}")
    assert f"note: Model!A7: kept its stored value ({refused})" in text
    v = values(out, "Model")
    ys = [r[0] for r in d.iter_rows(min_row=2, max_row=25, max_col=1, values_only=True)]
    xs = [r[0] for r in d.iter_rows(min_row=2, max_row=25, min_col=2, max_col=2,
                                    values_only=True)]
    assert v["A1"].value == sum(ys) + sum(xs) + 2
    assert v["A2"].value == 24 * 2 + 1
    assert v["A3"].value == max(ys + xs + [2])
    assert v["A4"].value == 16_384 * 1_048_576 - (25 * 3 + 1)       # the blank cells
    assert v["A5"].value == 4                                       # g == "a"
    assert v["A6"].value == pytest.approx((sum(xs) + 2) / 25)
    assert v["A7"].value is None and v["B10"].value == "#VALUE!"


def test_sparse_reads_give_the_same_numbers_as_cell_by_cell(tmp_path):
    # the same aggregates over a range read both ways: stored cells only, and every cell
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    rng = random.Random(3)
    for r in range(1, 41):
        for c in range(1, 6):
            k = rng.random()
            if k < 0.5 or (r <= 3 and c <= 2):
                ws.cell(r, c).value = rng.uniform(-1e6, 1e6)
            elif k < 0.6:
                ws.cell(r, c).value = rng.choice(["ab", "b", "", "a*b", "x"])
            elif k < 0.65:
                ws.cell(r, c).value = rng.choice([True, False])
    ws["G1"] = ArrayFormula("G1:H3", "=A1:B3*2")          # a block inside the range
    ws["A50"] = "=SUM(A1:H45)"
    ws["A51"] = "=AVERAGE(A1:H45)"
    ws["A52"] = "=MIN(A1:H45)"
    ws["A53"] = '=COUNTIF(A1:H45, "<>")'
    ws["A54"] = '=COUNTIF(A1:H45, "*b")'
    ws["A55"] = "=COUNT(A1:H45)"
    ws["A56"] = "=LARGE(A1:H45, 3)"
    ws["A57"] = '=COUNTIF(A1:H45, "")'
    src = tmp_path / "s.xlsx"
    wb.save(src)
    e = engine_for(src)
    grid = e.grid(RangeVal("S", 1, 1, 45, 8))
    cells = [v for row in grid for v in row]
    nums = [v for v in cells if isinstance(v, float)]
    got = [e.values[("S", r, 1)] for r in range(50, 58)]
    assert got[0] == sum(nums) and got[1] == sum(nums) / len(nums)
    assert got[2] == min(nums) and got[5] == len(nums)
    assert got[6] == sorted(nums)[-3]
    assert got[3] == sum(1 for v in cells if v is not None and v != "")
    assert got[4] == sum(1 for v in cells if isinstance(v, str) and v.lower().endswith("b"))
    assert got[7] == sum(1 for v in cells if v is None or v == "")
    assert e.values[("S", 2, 8)] == 2 * ws["B2"].value


def test_a_huge_old_array_range_is_refused_not_filled(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    ws["B2"] = ArrayFormula("B2:XFD1048576", "=1+1")
    ws["A1"] = 5
    src, out = tmp_path / "a.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    res = recalc.recalc(src, out)
    assert res.notes == ["S!B2: kept its stored value (its array range B2:XFD1048576 has "
                         "17,178,804,225 cells, more than the 5,000,000 recalc fills)"]
    assert values(out, "S")["A1"].value == 5


# ---- item 5: COUNTIF/MATCH wildcards without backtracking -----------------------------------

def old_regex(pattern: str):
    """The matcher recalc had: one regex, ``*`` as ``.*`` (backtracks)."""
    rx = re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
                            for ch in pattern.lower()) + r"\Z", re.S)
    return lambda text: rx.match(text.lower()) is not None


def excel_regex(pattern: str):
    """Excel's wildcards, ``~`` escapes included, as a (backtracking) regex."""
    out, i = [], 0
    p = pattern.lower()
    while i < len(p):
        if p[i] == "~" and i + 1 < len(p) and p[i + 1] in "*?~":
            out.append(re.escape(p[i + 1]))
            i += 2
            continue
        out.append(".*" if p[i] == "*" else "." if p[i] == "?" else re.escape(p[i]))
        i += 1
    rx = re.compile("".join(out) + r"\Z", re.S)
    return lambda text: rx.match(text.lower()) is not None


def test_wildcards_match_as_the_regex_did_on_random_patterns():
    rng = random.Random(18)
    tried = hits = 0
    for _ in range(4000):
        pat = "".join(rng.choice("ab*?.+A") for _ in range(rng.randint(0, 8)))
        text = "".join(rng.choice("abAB.+\n") for _ in range(rng.randint(0, 10)))
        want = old_regex(pat)(text)
        assert wildcard_matcher(pat)(text) == want, (pat, text)
        tried += 1
        hits += want
    assert tried == 4000 and 100 < hits < 3900          # both answers were exercised


def test_wildcard_escapes_follow_excel():
    rng = random.Random(7)
    for _ in range(3000):
        pat = "".join(rng.choice("a*?~") for _ in range(rng.randint(0, 7)))
        text = "".join(rng.choice("a*?~") for _ in range(rng.randint(0, 7)))
        assert wildcard_matcher(pat)(text) == excel_regex(pat)(text), (pat, text)
    assert wildcard_matcher("~*")("*") and not wildcard_matcher("~*")("a")
    assert wildcard_matcher("what~?")("What?") and not wildcard_matcher("what~?")("whats")
    assert wildcard_matcher("a~~b")("a~b") and wildcard_matcher("a~b")("a~b")


def test_countif_and_match_wildcards_on_long_text_finish(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    ws["K1"] = "a" * 2000
    ws["K2"] = "a" * 1999 + "b"
    ws["A1"] = '=COUNTIF(K1,"*a*a*a*b")'
    ws["A2"] = '=COUNTIF(K1:K2,"*a*a*a*b")'
    ws["A3"] = '=COUNTIF(K1:K2,"a*a?a")'
    ws["A4"] = '=MATCH("*a*a*a*b", K1:K2, 0)'
    ws["A5"] = '=MATCH("a~*", K1:K2, 0)'
    ws["A6"] = '=COUNTIF(K1:K2, "' + "*a" * 120 + '*c")'
    src, out = tmp_path / "c.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    code, text, err = run_recalc(src, out)
    assert code == 0, err
    v = values(out, "S")
    assert [v[f"A{r}"].value for r in range(1, 7)] == [0, 1, 1, 2, "#N/A", 0]


# ---- item 11: nesting depth -----------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "(" * 65 + "1" + ")" * 65, "(" * 10_000 + "1" + ")" * 10_000, "-" * 65 + "1",
    "1" + "%" * 65, "SUM(" * 65 + "1" + ")" * 65, "IF(1," * 200 + "1" + ")" * 200])
def test_the_parser_refuses_deep_nesting_with_one_message(text):
    with pytest.raises(excel_formula.FormulaSyntaxError) as e:
        excel_formula.parse("=" + text)
    assert str(e.value) == "formula nested deeper than 64 levels"


def test_the_parser_takes_64_levels_and_long_flat_chains():
    assert excel_formula.parse("(" * 64 + "1" + ")" * 64) == excel_formula.Num(1.0)
    node = excel_formula.parse("=" + "+".join(["A1"] * 3000))
    assert sum(1 for n in excel_formula.walk(node) if isinstance(n, excel_formula.Ref)) == 3000


def test_recalc_reports_200_nested_parentheses(tmp_path):
    wb = openpyxl.Workbook()
    data_sheet(wb)
    m = wb.create_sheet("Model")
    m["A1"] = "=" + "(" * 200 + "1" + ")" * 200
    m["B2"] = "=GLMM_POISSON(" + "(" * 200 + "Data!A1:A25" + ")" * 200 + \
        ", Data!B1:B25, Data!C1:C25)"
    m["A3"] = "=" + "+".join(["Data!B3"] * 3000)        # long, not deep: evaluated
    src, out = tmp_path / "p.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    code, text, err = run_recalc(src, out)
    assert code == 1 and "Traceback" not in err, err
    assert ("Model!B2         GLMM_POISSON   NOT EVALUATED: cannot read the formula: "
            "formula nested deeper than 64 levels") in text
    assert "note: Model!A1: kept its stored value (cannot read '=((((" in text
    assert "...': formula nested deeper than 64 levels)" in text
    v = values(out, "Model")
    assert v["B2"].value == "#NAME?" and v["A3"].value == 3000 * wb["Data"]["B3"].value


def test_defined_names_nested_past_the_limit_get_a_message(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for k in range(1, 400):       # deep_1 = deep_2+1, ... (n1 would be a cell)
        wb.defined_names[f"deep_{k}"] = DefinedName(f"deep_{k}", attr_text=f"deep_{k + 1}+1")
    wb.defined_names["deep_400"] = DefinedName("deep_400", attr_text="1")
    for k in range(1, 100):
        wb.defined_names[f"ok_{k}"] = DefinedName(f"ok_{k}", attr_text=f"ok_{k + 1}+1")
    wb.defined_names["ok_100"] = DefinedName("ok_100", attr_text="S!B1*2")
    ws["B1"] = 3
    ws["A1"] = "=deep_1"
    ws["A2"] = "=ok_1"
    src = tmp_path / "n.xlsx"
    wb.save(src)
    e = engine_for(src)
    assert e.notes == ["S!A1: kept its stored value (formula nested deeper than 250 levels "
                       "(counting the defined names it uses))"]
    assert e.values[("S", 2, 1)] == 99 + 6


def test_a_formula_string_10000_parentheses_deep_is_one_message(tmp_path):
    # held up well in issue 18 (the model formula's own parser): keep it so
    wb = openpyxl.Workbook()
    d = data_sheet(wb)
    d["Z1"] = "y ~ " + "(" * 10_000 + "x" + ")" * 10_000 + " + (1|g)"
    m = wb.create_sheet("Model")
    m["B2"] = "=GLMM(Data!Z1, Data!A1:C25)"
    src = tmp_path / "f.xlsx"
    wb.save(src)
    e = engine_for(src)
    (o,) = e.outcomes
    assert o.status in ("ok", "glmm-error")
    if o.status == "glmm-error":
        assert o.message.startswith("#GLMM! ") and "\n" not in o.message
        assert len(o.message) <= 300


# ---- item 12: dependency chains, circular references ---------------------------------------

def test_a_countdown_column_of_150_feeds_a_glmm(tmp_path):
    wb = openpyxl.Workbook()
    d = data_sheet(wb)
    d["E1"] = "x2"
    for r in range(2, 152):
        d[f"E{r}"] = f"=E{r + 1}+1" if r < 151 else 1
    m = wb.create_sheet("Model")
    m["B2"] = "=GLMM_POISSON(Data!A1:A25, Data!E1:E25, Data!C1:C25)"
    src, out = tmp_path / "cd.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    res = recalc.recalc(src, out)
    assert res.ok and res.notes == [], (res.outcomes, res.notes)
    assert [values(out, "Data")[f"E{r}"].value for r in (2, 3, 150, 151)] == [150, 149, 2, 1]
    assert values(out, "Model")["B2"].value == "Fixed effects"


@pytest.mark.parametrize("downwards", [True, False])
def test_chains_of_20000_cells_evaluate(tmp_path, downwards):
    n = 20_000
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in range(1, n + 1):
        if downwards:      # A1 = A2 + 1, ..., the last a number: each needs the next
            ws[f"A{r}"] = f"=A{r + 1}+1" if r < n else 1
        else:
            ws[f"A{r}"] = f"=A{r - 1}+1" if r > 1 else 1
    ws["B1"] = f"=SUM(A1:A{n})"
    ws["C1"] = f"=A{n // 2}*2"
    src = tmp_path / "chain.xlsx"
    wb.save(src)
    e = engine_for(src)
    assert e.notes == []
    if downwards:
        assert e.values[("S", 1, 1)] == n
    else:
        assert e.values[("S", n, 1)] == n
    assert e.values[("S", 1, 2)] == n * (n + 1) / 2
    assert e.values[("S", 1, 3)] == 2 * (n // 2 + 1 if downwards else n // 2)
    # each formula is evaluated at most twice (once stopped to wait, once through)
    assert e.meter.used < 12 * n


def test_circular_references_are_reported_as_before(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    ws["A1"] = "=B1+1"
    ws["B1"] = "=A1+1"
    ws["C1"] = "=C1*2"
    ws["D1"] = 5
    ws["E1"] = "=A1+D1"
    ws["F1"] = "=D1*3"
    src, out = tmp_path / "circ.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    res = recalc.recalc(src, out)
    assert res.notes == [
        "S!B1: kept its stored value (circular reference through S!A1)",
        "S!A1: kept its stored value (S!B1 (=A1+1) cannot be evaluated here (circular "
        "reference through S!A1) and holds no stored value)",
        "S!C1: kept its stored value (circular reference through S!C1)",
        "S!E1: kept its stored value (S!A1 (=B1+1) cannot be evaluated here (S!B1 (=A1+1) "
        "cannot be evaluated here (circular reference through S!A1) and holds no stored "
        "value) and holds no stored value)"]
    assert values(out, "S")["F1"].value == 15


def test_a_long_chain_ending_in_an_unknown_function_says_so_in_one_line(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in range(1, 301):
        ws[f"A{r}"] = f"=A{r + 1}+1"
    ws["A301"] = "=FOO()"
    src = tmp_path / "foo.xlsx"
    wb.save(src)
    e = engine_for(src)
    assert len(e.notes) == 301
    assert max(len(n) for n in e.notes) < 400
    assert e.notes[0] == "S!A301: kept its stored value (unknown function FOO() (neither " \
        "an xlglmm function nor one of the Excel functions recalc evaluates))"


def test_the_total_work_is_capped_with_one_message(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator, "MAX_WORK", 5000)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in range(1, 3001):
        ws[f"A{r}"] = r
    ws["B1"] = "=SUM(A1:A3000)"
    ws["B2"] = "=COUNTIF(A1:A3000, A1:A3000)"      # 3,000 criteria x 3,000 cells
    ws["B3"] = "=1+1"
    src = tmp_path / "w.xlsx"
    wb.save(src)
    e = engine_for(src)
    assert e.values[("S", 1, 2)] == 3000 * 3001 / 2
    limit = ("not evaluated: the workbook's formulas need more than recalc's limit of 5,000 "
             "steps in all (cells read and formula parts evaluated)")
    assert e.notes == [f"S!B2: kept its stored value ({limit})",
                       f"S!B3: kept its stored value ({limit})"]


# ---- item 8: many GLMM formulas -------------------------------------------------------------

def many_fits(tmp_path, n) -> Path:
    wb = openpyxl.Workbook()
    d = data_sheet(wb)
    for i in range(n):                 # on the data's own sheet, 10 blocks a row
        d.cell(2 + 40 * (i // 10), 6 + 14 * (i % 10)).value = \
            "=GLMM_POISSON(A1:A25, B1:B25, C1:C25)"
    p = tmp_path / f"many{n}.xlsx"
    wb.save(p)
    return p


def test_many_glmm_formulas_cost_linear_checks_and_one_fit(tmp_path, monkeypatch):
    counts = {}
    for n in (30, 120):
        calls = [0]
        inside, overlap = evaluator.inside, evaluator.overlap

        def count_inside(*a, _f=inside):
            calls[0] += 1
            return _f(*a)

        def count_overlap(*a, _f=overlap):
            calls[0] += 1
            return _f(*a)
        monkeypatch.setattr(evaluator, "inside", count_inside)
        monkeypatch.setattr(evaluator, "overlap", count_overlap)
        cache.clear()
        e = Engine(Book(many_fits(tmp_path, n)))
        e.run()
        monkeypatch.setattr(evaluator, "inside", inside)
        monkeypatch.setattr(evaluator, "overlap", overlap)
        assert [o.status for o in e.outcomes] == ["ok"] * n
        assert e.fitlog.fits == 1                       # identical fits: the cache
        counts[n] = (calls[0], e.meter.used)
    # 4 times the formulas: about 4 times the checks and steps (quadratic would be 16)
    assert counts[120][0] < 6 * counts[30][0], counts
    assert counts[120][1] < 6 * counts[30][1], counts


def test_the_documented_limits_are_the_engine_s():
    text = (ROOT / "docs" / "templates.md").read_text(encoding="utf-8")
    text = " ".join(text.split())
    assert f"nests at most {excel_formula.MAX_NESTING} levels" in text
    assert f"at most {evaluator.MAX_RANGE_CELLS:,} cells of the sheet's used part" in text
    assert f"at most {evaluator.MAX_WORK:,} steps" in text


# ---- review fixes (issue 18): the work limit never escapes as a traceback --------------------

def test_the_work_limit_reached_by_an_xlglmm_formula_s_arguments_is_one_line(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(evaluator, "MAX_WORK", 5000)
    wb = openpyxl.Workbook()
    d = data_sheet(wb)
    for r in range(1, 201):
        d.cell(r, 30).value = r
    d["E2"] = ('=GLMM("y ~ x + (1|g)", A1:C25, "poisson", , , , '
               'SUM(COUNTIF(AD1:AD200, AD1:AD200)))')
    wb.create_sheet("M")["B2"] = "=GLMM_POISSON(Data!A1:A25, Data!B1:B25, Data!C1:C25)"
    src, out = tmp_path / "cap.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    lines, errs = [], []
    code = recalc.run_command(src, out, out=lines.append, err=errs.append)
    limit = ("not evaluated: the workbook's formulas need more than recalc's limit of 5,000 "
             "steps in all (cells read and formula parts evaluated)")
    assert code == 1 and errs == []
    assert [ln.split(None, 2)[2] for ln in lines if "NOT EVALUATED" in ln] == \
        [f"NOT EVALUATED: {limit}"] * 2
    assert values(out, "Data")["E2"].value == "#VALUE!"
    assert values(out, "M")["B2"].value == "#VALUE!"


# ---- review fixes (issue 18): wildcard matching is charged to the work meter -----------------

def test_criteria_longer_than_255_characters_give_value_as_in_excel(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in range(1, 4):
        ws[f"A{r}"] = "a" * 300 + "b"
    ws["C1"] = "*" + "?" * 252 + "b*"                  # 255 characters
    ws["C2"] = "*" + "?" * 253 + "b*"                  # 256
    ws["B1"] = "=COUNTIF(A1:A3, C1)"
    ws["B2"] = "=COUNTIF(A1:A3, C2)"
    ws["B3"] = "=MATCH(C1, A1:A3, 0)"
    ws["B4"] = "=MATCH(C2, A1:A3, 0)"
    ws["B5"] = "=COUNTIF(A1:A3, A1)"
    src = tmp_path / "w.xlsx"
    wb.save(src)
    e = engine_for(src)
    got = [e.values[("S", r, 2)] for r in range(1, 6)]
    assert got[:4] == [3.0, XLError("#VALUE!"), 1.0, XLError("#VALUE!")]
    assert got[4] == XLError("#VALUE!")               # a 301-character text criterion
    assert e.notes == []


def test_wildcard_work_is_charged_text_times_pattern(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator, "MAX_WORK", 30_000)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in range(1, 21):
        ws[f"A{r}"] = "a" * 5000                      # 100,000 characters in all
    ws["B1"] = '=COUNTIF(A1:A20, "*b*")'              # 100,000 x 3 / 1,000 = 300 steps
    ws["B2"] = '=COUNTIF(A1:A20, "*' + "?" * 200 + 'b*")'    # x 203: 20,300 steps
    ws["B3"] = '=MATCH("*' + "?" * 200 + 'b*", A1:A20, 0)'  # 20,300 more: refused
    src = tmp_path / "w.xlsx"
    wb.save(src)
    e = engine_for(src)
    assert e.values[("S", 1, 2)] == 0.0 and e.values[("S", 2, 2)] == 0.0
    assert e.notes == ["S!B3: kept its stored value (not evaluated: the workbook's formulas "
                       "need more than recalc's limit of 30,000 steps in all (cells read and "
                       "formula parts evaluated))"]
    assert 20_600 < e.meter.used - 20_300 < 30_000 < e.meter.used


# ---- review fixes (issue 18): a defined name is evaluated once per formula cell ---------------

def test_a_doubling_chain_of_names_costs_one_evaluation_per_name(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for i in range(16):
        wb.defined_names[f"nm_{i}"] = DefinedName(f"nm_{i}", attr_text=f"nm_{i + 1}+nm_{i + 1}")
        wb.defined_names[f"tx_{i}"] = DefinedName(f"tx_{i}", attr_text=f"tx_{i + 1}&tx_{i + 1}")
    wb.defined_names["nm_16"] = DefinedName("nm_16", attr_text="S!$C$1")
    wb.defined_names["tx_16"] = DefinedName("tx_16", attr_text='"ab"')
    ws["C1"] = 3
    ws["A1"] = "=nm_0"
    ws["A2"] = "=nm_0+nm_3"
    ws["A3"] = "=ISTEXT(tx_2)"            # 2 x 2 ** 14 = 32,768 characters: too long
    ws["A4"] = "=ISTEXT(tx_3)"            # 16,384 characters
    ws["A5"] = "=ISERROR(tx_2)"
    src = tmp_path / "n.xlsx"
    wb.save(src)
    e = engine_for(src)
    assert [e.values[("S", r, 1)] for r in range(1, 6)] == \
        [3.0 * 2 ** 16, 3.0 * (2 ** 16 + 2 ** 13), False, True, True]
    assert e.notes == []
    assert e.meter.used < 800            # 2 ** 16 evaluations before
