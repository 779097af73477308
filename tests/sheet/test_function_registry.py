"""Issue 13, first step: the worksheet functions are declared once (``udfs.FUNCTIONS``,
filled by ``@worksheet_function``), and every door reads that declaration -- recalc, the
LibreOffice bridge and its generated Basic module -- with no list of its own and no
reading of udfs.py's source; recalc's fit log is an observer the fit path offers, not a
swapped ``models.glmer``."""
from __future__ import annotations

import inspect
import re

import openpyxl
import pytest

from xlglmm.sheet import cache, models, udfs
from xlglmm.bridges import libreoffice
from xlglmm.sheet import calling
from xlglmm.workbook import book, builtins, evaluator, excel_values, progress, recalc
from xlglmm.workbook.book import Book
from xlglmm.workbook.evaluator import Engine
from xlglmm.workbook.progress import watching_fits

# What udfs.py declares, written out: name -> (parameters, required, range arguments)
EXPECTED = {
    "GLMM_POISSON": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "alpha",
                      "nAGQ"), ("y", "X", "groups"),
                     {"y", "X", "groups", "offset", "x_random"}),
    "GLMM_BINOMIAL": (("y", "X", "groups", "trials", "x_random", "fit_intercept", "alpha",
                       "nAGQ", "link"), ("y", "X", "groups"),
                      {"y", "X", "groups", "trials", "x_random"}),
    "GLMM": (("formula", "data", "family", "link", "offset", "weights", "alpha", "nAGQ"),
             ("formula", "data"), {"data", "offset", "weights"}),
    "GLMM_RANEF": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "nAGQ",
                    "family", "trials", "link"), ("y", "X"),
                   {"y", "X", "groups", "offset", "x_random", "trials"}),
    "GLMM_PREDICT": (("y", "X", "groups", "new_X", "new_groups", "offset", "new_offset",
                      "x_random", "new_x_random", "pred_type", "include_re",
                      "fit_intercept", "nAGQ", "family", "trials", "link", "interval", "alpha",
                      "new_trials"),
                     ("y", "X"),
                     {"y", "X", "groups", "new_X", "new_groups", "offset", "new_offset",
                      "x_random", "new_x_random", "trials", "new_trials"}),
    "GLMM_COMPARE": (("model1", "model2", "data", "family", "link", "offset", "weights",
                      "nAGQ"), ("model1", "model2"),
                     {"model1", "model2", "data", "offset", "weights"}),
    "GLMM_NEGBIN": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "alpha",
                     "nAGQ", "theta"), ("y", "X", "groups"),
                    {"y", "X", "groups", "offset", "x_random"}),
    "LMM": (("y", "X", "groups", "x_random", "REML", "alpha", "fit_intercept", "ddf"),
            ("y", "X", "groups"), {"y", "X", "groups", "x_random"}),
    "GLMM_CONFINT": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "nAGQ",
                      "family", "trials", "link", "method", "nsim", "seed", "alpha"),
                     ("y", "X"), {"y", "X", "groups", "offset", "x_random", "trials"}),
    "GLMM_CHECK": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "nAGQ",
                    "family", "trials", "link", "nsim", "seed"),
                   ("y", "X"), {"y", "X", "groups", "offset", "x_random", "trials"}),
    "GLMM_RESID": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "nAGQ",
                    "family", "trials", "link", "resid_type", "nsim", "seed"),
                   ("y", "X"), {"y", "X", "groups", "offset", "x_random", "trials"}),
    "GLMM_INFLUENCE": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "nAGQ",
                        "family", "trials", "link", "group"),
                       ("y", "X"), {"y", "X", "groups", "offset", "x_random", "trials"}),
    "GLMM_POWER": (("y", "X", "groups", "offset", "x_random", "fit_intercept", "nAGQ",
                    "family", "trials", "link", "term", "effect", "test", "nsim", "seed",
                    "along", "values", "alpha"),
                   ("y", "X"), {"y", "X", "groups", "offset", "x_random", "trials", "values"}),
}


def test_the_registry_is_the_declaration():
    assert list(udfs.FUNCTIONS) == list(EXPECTED)            # the add-ins' order
    for name, (params, required, ranges) in EXPECTED.items():
        w = udfs.FUNCTIONS[name]
        assert w.function is getattr(udfs, name) and w.function.__name__ == name
        assert w.parameters == params == tuple(inspect.signature(w.function).parameters)
        assert w.required == required
        assert w.ranges == frozenset(ranges)
    assert udfs.UDFS == tuple(getattr(udfs, n) for n in EXPECTED)


def test_a_declaration_describes_every_parameter_once():
    before = dict(udfs.FUNCTIONS)

    def F(a, b=None):
        return 0
    with pytest.raises(TypeError, match=r"F: the declared arguments \['a'\] are not its "
                                        r"parameters \['a', 'b'\]"):
        udfs.worksheet_function(udfs.cells("a", "A"))(F)
    with pytest.raises(TypeError, match="are not its parameters"):
        udfs.worksheet_function(udfs.cells("a", "A"), udfs.value("b", "B"),
                                udfs.value("c", "C"))(F)

    def LMM(y):
        return 0
    with pytest.raises(TypeError, match="LMM is declared twice"):
        udfs.worksheet_function(udfs.cells("y", "Y"))(LMM)
    assert udfs.FUNCTIONS == before


@pytest.mark.parametrize("module", [recalc, book, evaluator, builtins, excel_values, progress,
                                    calling])
def test_recalc_does_not_read_source_text_or_keep_a_list(module):
    src = inspect.getsource(module)
    assert "udf_specs" not in src and "XLGLMM_FUNCTIONS" not in src
    assert "getsource" not in src and "import ast" not in src
    assert "udf_specs" not in inspect.getsource(libreoffice)


# ---- the doors read the registry: a spy registered in it is called, with rows exactly
# for the arguments it declares as ranges; a function taken out of it is unknown ---------

def _spy(name, calls):
    def f(**kwargs):
        calls.append((name, kwargs))
        return [[name, len(kwargs)]]
    return f


@pytest.fixture
def spied(monkeypatch):
    """Every registered function replaced *in the registry* by a spy, plus one extra
    function GLMM_SPY(a [range], b) known to the registry only."""
    calls = []
    for name, w in list(udfs.FUNCTIONS.items()):
        monkeypatch.setitem(udfs.FUNCTIONS, name, w._replace(function=_spy(name, calls)))
    monkeypatch.setitem(udfs.FUNCTIONS, "GLMM_SPY", udfs.WorksheetFunction(
        _spy("GLMM_SPY", calls), ("a", "b"), ("a",), frozenset({"a"})))
    return calls


def _as_passed(kwargs):
    """Which arguments arrived as rows ([[1.5]]) and which as the value 1.5."""
    rows = {p for p, v in kwargs.items() if v == [[1.5]]}
    values = {p for p, v in kwargs.items() if v == 1.5 and not isinstance(v, list)}
    assert rows | values == set(kwargs), kwargs
    return rows, values


def test_recalc_calls_exactly_the_registry(tmp_path, spied):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    ws["A1"] = 1.5
    names = list(udfs.FUNCTIONS)
    for i, name in enumerate(names, start=3):
        params = udfs.FUNCTIONS[name].parameters
        ws.cell(i, 1, f"={name}({', '.join(['S!A1'] * len(params))})")
    ws.cell(20, 1, "=GLMM_NOPE(S!A1)")
    path = tmp_path / "spy.xlsx"
    wb.save(path)
    e = Engine(Book(path))
    assert e.specs is udfs.FUNCTIONS
    e.run()
    called = dict(spied)
    assert list(called) == names
    for name in names:
        w = udfs.FUNCTIONS[name]
        rows, values = _as_passed(called[name])
        assert rows == set(w.ranges) and values == set(w.parameters) - w.ranges, name
        assert e.values[("S", names.index(name) + 3, 1)] == name
    # the formulas recalc counts as xlglmm's are the registry's, GLMM_SPY included;
    # a name that is not in it is not an xlglmm function
    assert [o.function for o in e.outcomes if o.function] == names
    (nope,) = [fc for fc in e.book.formulas["S"].values() if fc.row == 20]
    assert e.xlglmm_function(nope) == "" and ("S", 20, 1) not in e.values


def test_recalc_finds_the_registry_s_names_in_a_formula_that_does_not_parse(tmp_path, spied):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"] = "=1+GLMM_SPYX(2)+GLMM_SPY (A2"       # no closing bracket
    ws["A2"] = "=GLMM_SPYX(A2"
    path = tmp_path / "broken.xlsx"
    wb.save(path)
    e = Engine(Book(path))
    cells = {fc.where.split("!")[-1]: fc for fc in e.book.formulas[e.book.sheet_names[0]].values()}
    assert cells["A1"].node is None and cells["A2"].node is None
    assert e.xlglmm_function(cells["A1"]) == "GLMM_SPY"
    assert e.xlglmm_function(cells["A2"]) == ""


def test_libreoffice_calls_exactly_the_registry(spied):
    for name, w in udfs.FUNCTIONS.items():
        args = [{"kind": "range", "value": [[1.5]]}] * len(w.parameters)
        assert libreoffice.evaluate({"function": name, "args": args}) == \
            [[name, len(w.parameters)]]
        rows, values = _as_passed(spied[-1][1])
        assert rows == set(w.ranges) and values == set(w.parameters) - w.ranges, name
    assert libreoffice.evaluate({"function": "GLMM_NOPE", "args": []}) == \
        "#GLMM! unknown function 'GLMM_NOPE'"


def test_the_basic_module_declares_exactly_the_registry(spied):
    basic = libreoffice.basic_module()
    declared = {m.group(1): tuple(p.strip().removeprefix("Optional ")
                                  for p in m.group(2).split(","))
                for m in re.finditer(r"^Function (\w+)\((.*)\) As Variant$", basic, re.M)}
    assert declared == {n: w.parameters for n, w in udfs.FUNCTIONS.items()}
    assert "GLMM_SPY" in declared


# ---- recalc's fit log is an observer the fit path consults ------------------------------

def test_the_fit_observer_sees_a_glmm_fit_and_its_progress():
    cache.clear()
    y = [["y"]] + [[float(v)] for v in (1, 0, 3, 2, 4, 5, 3, 4, 6, 5, 6, 8)]
    g = [["g"]] + [[k] for k in "aaabbbcccddd"]
    seen = []
    with watching_fits(lambda stage, n: seen.append(stage)) as log:
        block = udfs.GLMM_POISSON(y, None, g)
        again = udfs.GLMM_POISSON(y, None, g)           # the cache answers: no fit
    assert not isinstance(block, str), block
    assert again == block
    assert log.fits == 1 and log.seconds > 0
    assert seen[0] == "start" and len(seen) > 1       # glmer's own stages follow
    assert models.FIT_OBSERVER.get() is None
    cache.clear()
    udfs.GLMM_POISSON(y, None, g)                       # outside: nobody is told
    assert log.fits == 1


# LibreOffice Basic's reserved words (a sample of those a parameter might be named
# after): a parameter named like one breaks the whole generated Basic module, so
# every function in Calc answers nothing
BASIC_KEYWORDS = {"type", "function", "sub", "end", "dim", "as", "if", "then", "else",
                  "for", "next", "to", "step", "do", "loop", "while", "wend", "select",
                  "case", "optional", "byval", "byref", "call", "const", "error", "exit",
                  "goto", "on", "resume", "set", "let", "new", "not", "and", "or", "mod",
                  "is", "me", "private", "public", "global", "static", "redim", "with",
                  "each", "in", "option", "property", "string", "integer", "long", "double",
                  "single", "boolean", "variant", "object", "date", "rem", "print", "open",
                  "close", "input", "name", "kill", "stop", "get", "put", "seek", "line"}


def test_no_parameter_is_a_basic_keyword():
    clash = {f"{name}({p})" for name, w in udfs.FUNCTIONS.items() for p in w.parameters
             if p.lower() in BASIC_KEYWORDS}
    assert not clash, f"parameters named like LibreOffice Basic keywords: {sorted(clash)}"
