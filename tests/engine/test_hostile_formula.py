"""Issue 18 (hostile input, second round): the formula grammar and how names reach the
design.

* formulas whose expansion explodes are refused before expanding, with the cap
  named, at every door (GLMM, GLMM_COMPARE, recalc, the LibreOffice worker);
* a header is a column name, never an expression: X / groups / x_random headers
  such as exp(y), log(x1), factor(x), (Intercept), a~b;
* y ~ year + (1|year) keeps year numeric (lme4);
* the response or offset variable reused on the right-hand side, as lme4;
* a model built from ranges is not a typed formula (no length limit).

Reference values from lme4 come from tests/data/scripts/formula_fits.R (committed
with tests/data/formula_fits.json and the data, tests/data/formula_fits.csv).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

import xlglmm
from xlglmm.engine import formula as fm
from xlglmm.sheet import models, udfs
from xlglmm.engine.formula import FormulaError, Variable, parse_formula

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = Path(__file__).resolve().parents[2]

CAP_15 = ("the formula would expand to up to 32,767 terms at '*' (position 50); at most "
          "20,000 are allowed: use fewer interactions, e.g. (a+b+c)^2 instead of a*b*c")


def product(k: int) -> str:
    return "y ~ " + "*".join(f"v{i}" for i in range(k)) + " + (1|g)"


def counted(text: str):
    p = fm._Parser(text, fm._tokenize(text))
    return p.formula(), p.work


# ---- item 1: explosive expansions, bounded before expanding ----------------------------

def test_products_expand_with_work_linear_in_the_terms():
    """a*b*...: 2^k - 1 terms, and the term merges counted are under 3 per term (the
    quadratic list scan is gone: 14 factors took more than 100 s)."""
    for k in (4, 10, 14):
        f, work = counted(product(k))
        assert len(f.terms) == 2 ** k - 1
        assert len({frozenset(t) for t in f.terms}) == len(f.terms)
        assert work < 3 * len(f.terms)


def test_the_cap_is_checked_before_expanding():
    with pytest.raises(FormulaError) as e:
        parse_formula(product(15))
    assert str(e.value) == CAP_15
    # the bound comes from the operands' counts: even nonexistent columns are refused
    # before any data are read
    with pytest.raises(FormulaError) as e:
        parse_formula("y ~ (" + "+".join(f"v{i}" for i in range(15)) + ")^10 + (1|g)")
    assert str(e.value) == ("the formula would expand to up to 30,826 terms at '^' "
                            "(position 56); at most 20,000 are allowed: use fewer "
                            "interactions, e.g. (a+b+c)^2 instead of a*b*c")
    with pytest.raises(FormulaError, match="up to 40,200 terms at ':'"):
        parse_formula("y ~ (" + "+".join(f"a{i}" for i in range(200)) + "):(" +
                      "+".join(f"b{i}" for i in range(201)) + ")")
    with pytest.raises(FormulaError, match="up to 20,478 terms at '/'"):
        parse_formula("y ~ (a*b*c*d*e*f*g*h*i*j*k*l*m*n) / (p*q*r*s*t*u*v*w*x*z*a2*b2)")


def test_power_of_ten_variables_is_every_interaction():
    f, work = counted("y ~ (" + "+".join(f"v{i}" for i in range(10)) + ")^10 + (1|g)")
    assert len(f.terms) == 1023 and f.terms[-1] == tuple(Variable(f"v{i}") for i in range(10))
    assert work < 100 * len(f.terms)


def test_repeating_a_large_product_is_refused_by_the_work_count():
    big = "(a*b*c*d*e*f*g)*(h*i*j*k*l*m*n)"          # 16,383 terms each time
    with pytest.raises(FormulaError) as e:
        parse_formula("y ~ " + " + ".join([big] * 20) + " + (1|g)")
    assert str(e.value) == ("the formula needs more than 100,000 term combinations to "
                            "expand; use fewer or smaller interactions")


SMALL = [["y", "g"]] + [[float(i % 4), f"g{i % 3}"] for i in range(12)]


def test_glmm_and_compare_refuse_with_the_cap():
    assert udfs.GLMM(product(15), SMALL) == "#GLMM! " + CAP_15
    assert udfs.GLMM_COMPARE(product(15), "y ~ 1 + (1|g)", SMALL) == "#GLMM! " + CAP_15
    assert udfs.GLMM_RANEF(product(15), SMALL) == "#GLMM! " + CAP_15
    # 14 factors (16,383 terms) of columns that are not there: the parse is done once,
    # then the first missing column is named
    assert udfs.GLMM(product(14), SMALL) == \
        "#GLMM! column 'v0' is not in the data (columns: y, g)"


def _run(args, timeout=60, **kw):
    """A subprocess killed after a generous timeout (fails only on a hang)."""
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def test_recalc_refuses_with_the_cap(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Model"
    for r in SMALL:
        ws.append(r)
    ws["E1"] = f'=GLMM("{product(15)}", A1:B13)'
    ws["E3"] = f'=GLMM_COMPARE("{product(15)}", "y ~ 1 + (1|g)", A1:B13)'
    p, out = tmp_path / "b.xlsx", tmp_path / "o.xlsx"
    wb.save(p)
    r = _run(["-m", "xlglmm", "recalc", str(p), "-o", str(out), "--quiet"])
    assert r.returncode == 1, r.stderr
    v = openpyxl.load_workbook(out, data_only=True)["Model"]
    assert v["E1"].value == v["E3"].value == "#GLMM! " + CAP_15


def test_libreoffice_worker_refuses_with_the_cap():
    req = {"function": "GLMM", "args": [{"kind": "value", "value": product(15)},
                                        {"kind": "value", "value": SMALL}]}
    r = _run(["-m", "xlglmm.bridges.libreoffice", "serve"], input=json.dumps(req) + "\n")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[1] == {"result": "#GLMM! " + CAP_15}


# ---- item 2 (and 14): a header is a name ---------------------------------------------------

RNG = np.random.default_rng(18)
N = 40
Y = RNG.poisson(3, N).astype(float).tolist()
X1 = RNG.uniform(1, 2, N).round(3).tolist()
Z = RNG.uniform(0, 1, N).round(3).tolist()
G = [f"g{i % 5}" for i in range(N)]


def col(h, v):
    return [[h]] + [[a] for a in v]


def cols(heads, *vs):
    return [list(heads)] + [list(r) for r in zip(*vs)]


def fixed(block):
    """(label, estimate, SE) of the fixed-effects rows."""
    out = []
    for r in block[1:]:
        if not r or r[0] is None:
            break
        out.append((r[0], r[1], r[2]))
    return out


@pytest.mark.parametrize("head", ["exp(y)", "log(x1)", "(Intercept)", "factor(x1)", "a:b",
                                  "x1 ~ y", "sqrt(`y`)"])
def test_x_header_is_a_column_name(head):
    """Same numbers as with a plain header; the label is the name, in backticks when
    it could be read as a call or an interaction (as R prints it)."""
    got = udfs.GLMM_POISSON(col("y", Y), cols(["x1", head], X1, Z), col("g", G))
    plain = udfs.GLMM_POISSON(col("y", Y), cols(["x1", "z"], X1, Z), col("g", G))
    label = fm.quote_name(head.replace("`", "'"))
    assert [r[1:] for r in fixed(got)] == [r[1:] for r in fixed(plain)]
    assert [r[0] for r in fixed(got)] == ["(Intercept)", "x1", label]
    if "(" in head or ":" in head:
        assert label.startswith("`")


def test_groups_header_factor_x_groups_by_its_own_labels():
    """A groups header factor(x) next to an X column x: 5 groups (its own labels),
    not the 40 values of x."""
    ranef = udfs.GLMM_RANEF(col("y", Y), col("x", Z), col("factor(x)", G))
    assert [r[1] for r in ranef[1:]] == ["g0", "g1", "g2", "g3", "g4"]
    assert ranef[1][0] == "`factor(x)`"


def test_x_random_header_is_a_column_name():
    got = udfs.GLMM_POISSON(col("y", Y), col("x1", X1), col("g", G), None, col("log(x1)", Z))
    plain = udfs.GLMM_POISSON(col("y", Y), col("x1", X1), col("g", G), None, col("z", Z))
    assert fixed(got) == fixed(plain)
    terms = [r[1] for r in got if r and r[0] in ("g", None) and isinstance(r[1], str)]
    assert "`log(x1)`" in terms


def test_glmm_table_call_and_quoted_column():
    """In GLMM's data table, log(x1) is the call and `log(x1)` the column so named."""
    tab = cols(["y", "x1", "log(x1)", "g"], Y, X1, Z, G)
    call = udfs.GLMM("y ~ log(x1) + (1|g)", tab)
    column = udfs.GLMM("y ~ `log(x1)` + (1|g)", tab)
    lx = udfs.GLMM("y ~ lx + (1|g)", cols(["y", "lx", "g"], Y, np.log(X1).tolist(), G))
    z = udfs.GLMM("y ~ z + (1|g)", cols(["y", "z", "g"], Y, Z, G))
    assert [r[1:] for r in fixed(call)] == [r[1:] for r in fixed(lx)]
    assert [r[1:] for r in fixed(column)] == [r[1:] for r in fixed(z)]
    assert fixed(call)[1][0] == "log(x1)" and fixed(column)[1][0] == "`log(x1)`"


def test_variables_are_never_text_read_back():
    f = parse_formula("y ~ `log(x1)` + log(x1) + `factor(g)` + (1|`factor(g)`)")
    assert f.terms == [(Variable("log(x1)"),), (Variable("x1", "log"),),
                       (Variable("factor(g)"),)]
    assert f.random[0].groups == [(Variable("factor(g)"),)]
    assert f.term_labels == ["`log(x1)`", "log(x1)", "`factor(g)`"]
    assert Variable("x1", "log") != "log(x1)" and Variable("log(x1)") != "log(x1)"


def test_a_backtick_in_a_column_name_is_written_as_r_writes_it():
    """A column named a`b is `a\\`b` in a formula (R's escape), and its label reads
    back as the same column (the review found such a header could not be used)."""
    f = parse_formula("y ~ `a\\`b` + `c\\\\d` + `C:\\data` + (1|g)")
    assert [t[0].column for t in f.terms] == ["a`b", "c\\d", "C:\\data"]
    for name in ("a`b", "x(1)", "p:q", "a\\`b"):
        label = fm.quote_name(name)
        assert parse_formula(f"y ~ {label}").terms == [(Variable(name),)]
    tab = cols(["y", "a`b", "g"], Y, Z, G)
    z = udfs.GLMM("y ~ z + (1|g)", cols(["y", "z", "g"], Y, Z, G))
    got = udfs.GLMM("y ~ `a\\`b` + (1|g)", tab)
    assert fixed(got)[1][0] == "`a\\`b`"
    assert [r[1:] for r in fixed(got)] == [r[1:] for r in fixed(z)]


# ---- item 13: ranges are not typed formulas ------------------------------------------------

def test_header_with_tilde_is_a_name():
    got = udfs.GLMM_POISSON(col("y ~ count", Y), cols(["a~b"], Z), col("g~h", G))
    plain = udfs.GLMM_POISSON(col("y", Y), cols(["z"], Z), col("g", G))
    assert [r[1:] for r in fixed(got)] == [r[1:] for r in fixed(plain)]
    assert fixed(got)[1][0] == "a~b"


def test_600_x_columns_are_not_a_formula_length():
    rng = np.random.default_rng(3)
    X = [[f"x{j}" for j in range(600)]] + rng.normal(size=(N, 600)).round(3).tolist()
    m = models.model_from_ranges("poisson", col("y", Y), X, col("g", G))
    assert len(m.formula) > fm.MAX_FORMULA_LENGTH and len(m.parsed.terms) == 600
    out = udfs.GLMM_POISSON(col("y", Y), X, col("g", G))
    assert isinstance(out, list) and out[1][0] == "(Intercept)"
    assert any(r and isinstance(r[0], str) and "rank deficient" in r[0] for r in out)


# ---- items 3 and 9: as lme4 ---------------------------------------------------------------

FITS = json.loads((DATA / "formula_fits.json").read_text())
FRAME = pd.read_csv(DATA / "formula_fits.csv")


@pytest.mark.parametrize("name", list(FITS))
def test_reused_variables_as_lme4(name):
    ref = FITS[name]
    r = xlglmm.glmer(ref["formula"], FRAME, family=ref["family"])
    assert r.llf == pytest.approx(ref["logLik"], abs=2e-5)
    assert list(r.fe_params.index) == list(ref["fixef"])
    assert r.fe_params.to_numpy() == pytest.approx(list(ref["fixef"].values()), rel=1e-3,
                                                   abs=2e-4)
    assert [t.nlevels for t in r.design.re_terms] == list(ref["ngroups"].values())
    dropped = "the response appeared on the right-hand side and was dropped" in ref["warnings"]
    assert any("appeared on the right-hand side and was dropped" in m
               for m in r.messages) == dropped


def test_year_trend_through_the_worksheet():
    tab = [list(FRAME.columns)] + FRAME.astype(object).values.tolist()
    out = udfs.GLMM("y ~ year + (1|year)", tab)
    assert [r[0] for r in fixed(out)] == ["(Intercept)", "year"]
    assert fixed(out)[1][1] == pytest.approx(FITS["year_trend"]["fixef"]["year"], rel=1e-3)


def test_response_and_offset_reuse_never_an_internal_error():
    tab = [list(FRAME.columns)] + FRAME.astype(object).values.tolist()
    for text, fam in [("cbind(s, n - s) ~ n + (1|g)", "binomial"),
                      ("y ~ x + offset(log(e)) + log(e) + (1|g)", "poisson"),
                      ("y ~ y + x + (1|year)", "poisson"),
                      ("log(e) ~ e + log(e) + (1|g)", "gaussian"),
                      ("cbind(s, f) ~ f + (1|g)", "binomial")]:
        out = udfs.GLMM(text, tab, fam)
        assert not (isinstance(out, str) and "internal error" in out), (text, out)
    assert udfs.GLMM("cbind(s, f) ~ f + (1|g)", tab, "binomial") == \
        "#GLMM! column 'f' is not in the data (columns: year, g, x, e, y, n, s)"
