"""Hostile and messy spreadsheet input (issue 5): every worksheet function, for any
input, returns either a valid block or one cell of text starting '#GLMM! ';
never an exception, a hang, or code execution.

* ``test_fuzz_*``: hypothesis generates worksheet-shaped inputs for the seven
  functions (tests/hostile_strategies.py).  The number of worksheet calls comes
  from ``XLGLMM_FUZZ_CALLS`` (default 300 so the normal suite stays fast); the
  dedicated job runs 10,000 or more:

      XLGLMM_FUZZ_CALLS=12000 python -m pytest -q tests/sheet/test_hostile.py -s -k fuzz

  Each call must finish within ``XLGLMM_FUZZ_BUDGET`` seconds (default 10) while
  the fits run with a time budget of ``XLGLMM_FUZZ_FIT_BUDGET`` (default 3);
  ``test_fuzz_summary`` prints the count, the budget, the number of calls over it
  and the slowest call, and fails if any call was over.
* ``test_bad_input_class``: one explicit case per bad-input class with the exact
  message (tests/hostile_cases.py; docs/bad-input.md is generated from them).
* determinism across calls and processes; no formula text is ever run as Python.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_strategies as hs
from hostile_cases import CASES, check_case
from hostile_determinism import determinism_calls
from xlglmm.sheet import cache, models, udfs

ROOT = Path(__file__).resolve().parents[2]

FUZZ_CALLS = int(os.environ.get("XLGLMM_FUZZ_CALLS", "300"))
CALL_BUDGET = float(os.environ.get("XLGLMM_FUZZ_BUDGET", "10"))
FIT_BUDGET = float(os.environ.get("XLGLMM_FUZZ_FIT_BUDGET", "3"))

# share of the calls per function (each example makes one call, COMPARE's block
# form makes three: the two fits and the comparison)
SHARES = {"poisson": 0.22, "binomial": 0.2, "glmm": 0.22, "ranef": 0.12, "predict": 0.14,
          "compare": 0.10, "confint": 0.06}

STATS = {"calls": 0, "exceptions": 0, "internal": 0, "invalid": 0, "over": 0, "max": 0.0,
         "max_call": "", "blocks": 0, "errors": 0, "total_time": 0.0, "by_function": {},
         "tests": set()}


def _examples(name: str) -> int:
    k = SHARES[name] * FUZZ_CALLS
    return max(1, int(math.ceil(k / 2.2 if name == "compare" else k)))


def fuzz_settings(name):
    return settings(max_examples=_examples(name), derandomize=True, deadline=None,
                    database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


# ---- the invariant -----------------------------------------------------------------

CELL_TYPES = (bool, int, float, str)


def check_result(out) -> str:
    """A worksheet result is a rectangular block of plain cells or one '#GLMM! ' text."""
    if isinstance(out, str):
        assert out.startswith("#GLMM! "), out
        assert "\n" not in out and "\r" not in out, out
        assert "Traceback" not in out and 'File "' not in out, out
        assert len(out) <= 300, (len(out), out)
        assert "internal error" not in out, out
        return "error"
    assert isinstance(out, list) and out, repr(out)[:300]
    width = len(out[0])
    assert width > 0
    for row in out:
        assert isinstance(row, list) and len(row) == width, "ragged block"
        for v in row:
            assert v is None or type(v) in CELL_TYPES, (type(v), v)
            if type(v) is float:
                assert math.isfinite(v), row
            if type(v) is str:
                assert len(v) <= 32767        # Excel: at most 32,767 characters a cell
    return "block"


def call(fn, *args, **kw):
    """One worksheet call: timed, counted, checked."""
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kw)
    except BaseException:
        STATS["exceptions"] += 1
        raise
    dt = time.perf_counter() - t0
    STATS["calls"] += 1
    STATS["total_time"] += dt
    STATS["by_function"][fn.__name__] = STATS["by_function"].get(fn.__name__, 0) + 1
    if dt > STATS["max"]:
        STATS["max"], STATS["max_call"] = dt, fn.__name__
    if dt > CALL_BUDGET:
        STATS["over"] += 1
    if isinstance(out, str) and "internal error" in out:
        STATS["internal"] += 1
    try:
        kind = check_result(out)
    except AssertionError:
        STATS["invalid"] += 1
        raise
    STATS["blocks" if kind == "block" else "errors"] += 1
    return out


@pytest.fixture(scope="module")
def warm_kernels():
    _warm_up()


@pytest.fixture
def fuzz_budget(warm_kernels, request):
    """Fits in the fuzz run with a short time budget (the per-call budget leaves
    room for validation, the result block and the SE computation)."""
    saved = models.DEFAULT_TIME_BUDGET
    models.DEFAULT_TIME_BUDGET = FIT_BUDGET
    STATS["tests"].add(request.node.name)
    yield
    models.DEFAULT_TIME_BUDGET = saved
    cache.clear()


def _warm_up():
    """Load every Numba kernel once (from the on-disk cache, or compile it) so the
    timed calls measure the worksheet functions, not the JIT."""
    y = [[2.0], [3.0], [5.0], [1.0], [2.0], [4.0], [0.0], [1.0]]
    x = [[1.0], [2.0], [3.0], [1.0], [2.0], [3.0], [1.0], [2.0]]
    g = [["a"], ["a"], ["b"], ["b"], ["c"], ["c"], ["d"], ["d"]]
    for q in (0, 1, 3):
        udfs.GLMM_POISSON(y, x, g, nAGQ=q)
        udfs.GLMM_BINOMIAL([[v[0] % 2] for v in y], x, g, nAGQ=q)
        for lk in ("probit", "cloglog"):
            udfs.GLMM_BINOMIAL([[v[0] % 2] for v in y], x, g, nAGQ=q, link=lk)
    tab = [["y", "x", "g"]] + [[a[0] + 1, b[0], c[0]] for a, b, c in zip(y, x, g)]
    for lk in ("inverse", "log", "identity"):
        udfs.GLMM("y ~ x + (1|g)", tab, "gamma", lk)
    udfs.GLMM("y ~ x + (x|g)", tab)
    cache.clear()


def _maybe(data, strategy, default):
    """An optional argument: omitted (its default) or drawn."""
    return data.draw(strategy) if data.draw(st.booleans()) else default


# ---- fuzz: the seven functions ---------------------------------------------------------

@fuzz_settings("poisson")
@given(st.data())
def test_fuzz_poisson(fuzz_budget, data):
    d = data.draw(hs.datasets("poisson"))
    args = hs.sheet_args(d, data.draw(st.booleans()))
    args = data.draw(hs.mutate(args, ["y", "X", "groups", "offset", "x_random"]))
    call(udfs.GLMM_POISSON, args["y"], args["X"], args["groups"], args["offset"],
         args["x_random"], _maybe(data, hs.intercepts, True), _maybe(data, hs.alphas, 0.05),
         _maybe(data, hs.nagqs, 1))


@fuzz_settings("binomial")
@given(st.data())
def test_fuzz_binomial(fuzz_budget, data):
    d = data.draw(hs.datasets("binomial"))
    args = hs.sheet_args(d, data.draw(st.booleans()))
    args = data.draw(hs.mutate(args, ["y", "X", "groups", "trials", "x_random"]))
    call(udfs.GLMM_BINOMIAL, args["y"], args["X"], args["groups"], args["trials"],
         args["x_random"], _maybe(data, hs.intercepts, True), _maybe(data, hs.alphas, 0.05),
         _maybe(data, hs.nagqs, 1), _maybe(data, hs.binomial_links, "logit"))


LINKS_OF = {"poisson": ["log", "sqrt", "identity"], "binomial": ["logit", "probit", "cloglog"],
            "gamma": ["inverse", "log", "identity"]}


def _formula_args(data):
    """(formula, table, family, link, offset, weights) for the formula forms."""
    fam = data.draw(st.sampled_from(["poisson", "poisson", "binomial", "gamma"]))
    d = data.draw(hs.datasets("binomial" if fam == "binomial" else "poisson"))
    if fam == "gamma":
        d["y"] = [v + 0.5 for v in d["y"]]
    formula = data.draw(hs.formulas(d))
    table = data.draw(hs.mutate({"data": hs.data_table(d)}, ["data"]))["data"]
    family = data.draw(hs.families) if data.draw(st.integers(0, 5)) == 0 else fam
    link = data.draw(st.integers(0, 9).flatmap(
        lambda k: st.none() if k < 6 else st.sampled_from(LINKS_OF[fam]) if k < 9
        else hs.links))
    n = d["n"]
    offset = weights = None
    pick = data.draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4, 5]))
    if pick == 1:
        offset = hs.as_column([float(v) for v in np.linspace(-1, 1, n)])
    elif pick == 2:
        offset = data.draw(hs.mutate({"o": hs.as_column([0.0] * n)}, ["o"]))["o"]
    elif pick == 3:
        weights = "trials" if d["trials"] else data.draw(hs.hostile_cell)
    elif pick == 4:
        weights = data.draw(hs.mutate({"w": hs.as_column([1.0] * n)}, ["w"]))["w"]
    elif pick == 5:
        offset = data.draw(st.sampled_from(["expo", "nope", 1.0]))
    return d, formula, table, family, link, offset, weights


@fuzz_settings("glmm")
@given(st.data())
def test_fuzz_glmm(fuzz_budget, data):
    d, formula, table, family, link, offset, weights = _formula_args(data)
    call(udfs.GLMM, formula, table, family, link, offset, weights,
         _maybe(data, hs.alphas, 0.05), _maybe(data, hs.nagqs, 1))


@fuzz_settings("ranef")
@given(st.data())
def test_fuzz_ranef(fuzz_budget, data):
    if data.draw(st.booleans()):
        d, formula, table, family, link, offset, weights = _formula_args(data)
        # formula form: (formula, data, family, link, offset, weights, nAGQ)
        call(udfs.GLMM_RANEF, formula, table, family, link, offset, weights,
             _maybe(data, hs.nagqs, 1))
        return
    call(udfs.GLMM_RANEF, *_companion_range_args(data))


def _companion_range_args(data):
    """The ten leading arguments of a companion's range form (as GLMM_RANEF's)."""
    fam = data.draw(st.sampled_from(["poisson", "binomial"]))
    d = data.draw(hs.datasets(fam))
    args = hs.sheet_args(d, data.draw(st.booleans()))
    args = data.draw(hs.mutate(args, ["y", "X", "groups", "offset", "trials", "x_random"]))
    return (args["y"], args["X"], args["groups"], args["offset"], args["x_random"],
            _maybe(data, hs.intercepts, True), _maybe(data, hs.nagqs, 1),
            data.draw(hs.families) if data.draw(st.integers(0, 3)) == 0 else fam,
            args["trials"], _maybe(data, hs.links, None))


@fuzz_settings("predict")
@given(st.data())
def test_fuzz_predict(fuzz_budget, data):
    ptype = _maybe(data, hs.ptypes, "response")
    inc = _maybe(data, hs.include_res, True)
    if data.draw(st.booleans()):
        d, formula, table, family, link, offset, weights = _formula_args(data)
        new = None
        if data.draw(st.booleans()):
            rows = data.draw(st.integers(1, 5))
            new = [table[0]] + [list(r) for r in table[1:rows + 1]] if isinstance(table, list) \
                and table and isinstance(table[0], list) else table
            new = data.draw(hs.mutate({"new": new}, ["new"]))["new"]
        new_offset = data.draw(st.sampled_from([None, [[0.0]], [[0.0], [1.0]], "x"]))
        # formula form: (formula, data, new_data, family, link, offset, weights,
        # new_offset) in the first eight places
        call(udfs.GLMM_PREDICT, formula, table, new, family, link, offset, weights,
             new_offset, None, ptype, inc, True, _maybe(data, hs.nagqs, 1))
        return
    fam = data.draw(st.sampled_from(["poisson", "binomial"]))
    d = data.draw(hs.datasets(fam))
    header = data.draw(st.booleans())
    args = hs.sheet_args(d, header)
    k = data.draw(st.integers(0, 6))
    new = {"new_X": [r for r in (args["X"] or [])[:k + (1 if header else 0)]] or None,
           "new_groups": [list(r[:1]) + ["unseen"] * (len(r) - 1)
                          for r in (args["groups"] or [])[:k + (1 if header else 0)]] or None,
           "new_offset": [[0.0]] * k if args["offset"] else None,
           "new_x_random": [r for r in (args["x_random"] or [])[:k]] or None}
    if data.draw(st.booleans()):
        new = {key: None for key in new}            # fitted values
    args.update(new)
    args = data.draw(hs.mutate(args, ["y", "X", "groups", "offset", "trials", "new_X",
                                      "new_groups", "new_offset", "new_x_random"]))
    call(udfs.GLMM_PREDICT, args["y"], args["X"], args["groups"], args["new_X"],
         args["new_groups"], args["offset"], args["new_offset"], args["x_random"],
         args["new_x_random"], ptype, inc, _maybe(data, hs.intercepts, True),
         _maybe(data, hs.nagqs, 1),
         data.draw(hs.families) if data.draw(st.integers(0, 3)) == 0 else fam,
         args["trials"], _maybe(data, hs.links, None))


@fuzz_settings("compare")
@given(st.data())
def test_fuzz_compare(fuzz_budget, data):
    if data.draw(st.integers(0, 3)) == 0:
        d, formula, table, family, link, offset, weights = _formula_args(data)
        f2 = data.draw(st.one_of(hs.formulas(d), hs.hostile_cell))
        call(udfs.GLMM_COMPARE, formula, f2, table, family, link, offset, weights,
             _maybe(data, hs.nagqs, 1))
        return
    d = data.draw(hs.datasets("poisson"))
    args = hs.sheet_args(d, data.draw(st.booleans()))
    b1 = call(udfs.GLMM_POISSON, args["y"], args["X"], args["groups"], args["offset"])
    X2 = [r[:1] for r in args["X"]] if args["X"] and data.draw(st.booleans()) else None
    b2 = call(udfs.GLMM_POISSON, args["y"], X2, args["groups"], args["offset"])
    blocks = {"m1": b1 if isinstance(b1, list) else [[b1]],
              "m2": b2 if isinstance(b2, list) else [[b2]]}
    blocks = data.draw(hs.mutate(blocks, ["m1", "m2"]))
    if data.draw(st.booleans()):
        # damage one fit statistic (value or label) of a block
        key = data.draw(st.sampled_from(["m1", "m2"]))
        grid = blocks[key] if isinstance(blocks[key], list) else []
        rows = [r for r in grid if isinstance(r, list) and len(r) > 1
                and r[0] in udfs.FIT_STATS + ("family", "singular")]
        if rows:
            r = data.draw(st.sampled_from(rows))
            r[data.draw(st.sampled_from([1, 1, 0]))] = data.draw(hs.hostile_cell)
    m1 = blocks["m1"] if data.draw(st.integers(0, 4)) else data.draw(hs.hostile_cell)
    call(udfs.GLMM_COMPARE, m1, blocks["m2"], *data.draw(st.sampled_from(
        [(), (None, "poisson"), ([["y"], [1.0]], "gamma", "log", None, None, 2.0)])))


@fuzz_settings("confint")
@given(st.data())
def test_fuzz_confint(fuzz_budget, data):
    options = (_maybe(data, hs.ci_methods, "Wald"), _maybe(data, hs.nsims, 1000),
               _maybe(data, hs.seeds, 1), _maybe(data, hs.alphas, 0.05))
    if data.draw(st.booleans()):
        d, formula, table, family, link, offset, weights = _formula_args(data)
        # formula form: (formula, data, family, link, offset, weights, nAGQ), then the
        # range form's family, trials, link places unused, then the options
        call(udfs.GLMM_CONFINT, formula, table, family, link, offset, weights,
             _maybe(data, hs.nagqs, 1), None, None, None, *options)
        return
    call(udfs.GLMM_CONFINT, *_companion_range_args(data), *options)


def test_fuzz_summary(capsys):
    """Print the fuzz job's summary; fail on any call over the budget."""
    if STATS["calls"] == 0:
        pytest.skip("no fuzz calls ran in this session")
    lines = [
        f"xlglmm fuzz: {STATS['calls']} worksheet calls "
        f"({', '.join(f'{k} {v}' for k, v in sorted(STATS['by_function'].items()))})",
        f"  results: {STATS['blocks']} blocks, {STATS['errors']} '#GLMM!' messages, "
        f"{STATS['exceptions']} exceptions escaped, {STATS['internal']} internal errors, "
        f"{STATS['invalid']} malformed results",
        f"  per-call budget {CALL_BUDGET:g} s (fit time budget {FIT_BUDGET:g} s): "
        f"{STATS['over']} calls over budget; slowest {STATS['max']:.3f} s "
        f"({STATS['max_call']}); mean {STATS['total_time'] / STATS['calls'] * 1000:.1f} ms",
    ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    report = os.environ.get("XLGLMM_FUZZ_REPORT")
    if report:
        Path(report).write_text("\n".join(lines) + "\n")
    assert STATS["over"] == 0
    assert STATS["exceptions"] == STATS["internal"] == STATS["invalid"] == 0
    if len(STATS["tests"]) == len(SHARES):         # all seven fuzz tests ran
        assert STATS["calls"] >= FUZZ_CALLS


# ---- one explicit case per bad-input class --------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}-{c.cls}" for i, c in enumerate(CASES)])
def test_bad_input_class(case):
    cache.clear()
    out = case.run()
    check_result(out)
    check_case(case, out)


# ---- no formula text is ever run as Python ---------------------------------------------

MARKER = "xlglmm_pwned_4d1c"
_AUDIT = {"on": False, "hits": []}
_WATCHED = ("compile", "exec", "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn",
            "os.spawn", "os.startfile", "open", "os.remove", "os.mkdir", "import")


def _audit_hook(event, args):
    if not _AUDIT["on"] or event not in _WATCHED:
        return
    text = []
    for a in args:
        if isinstance(a, bytes):
            a = a.decode("latin-1", "replace")
        if isinstance(a, (str, os.PathLike)):
            text.append(os.fspath(a) if isinstance(a, os.PathLike) else a)
        elif hasattr(a, "co_consts"):                        # a code object
            text += [c for c in a.co_consts if isinstance(c, str)] + list(a.co_names)
    if any(MARKER in t for t in text):
        _AUDIT["hits"].append((event, text[:2]))


if not getattr(sys, "_xlglmm_audit_installed", False):
    sys.addaudithook(_audit_hook)        # audit hooks cannot be removed: install once
    sys._xlglmm_audit_installed = True


def _injections(path):
    p = str(path)
    return [
        f"y ~ __import__('os').system('touch {p}') + (1|g)",
        f"__import__('pathlib').Path('{p}').touch() ~ x + (1|g)",
        f"y ~ x + eval(\"open('{p}', 'w')\") + (1|g)",
        f"y ~ exec('import {MARKER}') + (1|g)",
        f"y ~ x + (1|g); open('{p}', 'w')",
        f"y ~ x + (1|g)\n__import__('{MARKER}')",
        f"y ~ `__import__('os').system('touch {p}')` + (1|g)",
        f"y ~ log(`open('{p}', 'w')`) + (1|g)",
        f"y ~ x + (1|{MARKER}.__class__.__mro__)",
        f"y ~ offset(__import__('{MARKER}')) + (1|g)",
        f"cbind(y, __import__('{MARKER}')) ~ x + (1|g)",
        f"y ~ x + (lambda: __import__('{MARKER}'))() + (1|g)",
    ]


def test_formula_text_is_never_executed(tmp_path):
    """Every worksheet function that takes a formula refuses code-like text with a
    '#GLMM!' message; an audit hook proves nothing containing the text was compiled,
    executed, imported, opened or run as a command."""
    target = tmp_path / f"{MARKER}.txt"
    tab = [["y", "x", "g", f"__import__('{MARKER}')"]] + [
        [float(v), float(v % 3), "ab"[v % 2], 1.0] for v in range(12)]
    # the detector works: compiling text with the marker is seen
    _AUDIT.update(on=True, hits=[])
    eval(compile(f"'{MARKER}'", "<check>", "eval"))
    assert _AUDIT["hits"], "the audit hook does not see compile()"
    _AUDIT.update(on=True, hits=[])
    outs = []
    try:
        for f in _injections(target):
            cache.clear()
            outs += [udfs.GLMM(f, tab),
                     udfs.GLMM_RANEF(f, tab, None),
                     udfs.GLMM_CONFINT(f, tab, None, method="profile"),
                     udfs.GLMM_PREDICT(f, tab, None),
                     udfs.GLMM_COMPARE(f, "y ~ x + (1|g)", tab),
                     udfs.GLMM_COMPARE("y ~ x + (1|g)", f, tab)]
            # the same text in data cells and options
            outs += [udfs.GLMM_POISSON([[f]] * 12, [[1.0]] * 12, [["a"], ["b"]] * 6),
                     udfs.GLMM("y ~ x + (1|g)", tab, f),
                     udfs.GLMM("y ~ x + (1|g)", tab, "poisson", f)]
    finally:
        _AUDIT["on"] = False
    assert not _AUDIT["hits"], _AUDIT["hits"]
    assert not target.exists()
    assert MARKER not in sys.modules
    for out in outs:
        assert check_result(out) == "error", out


# ---- determinism ------------------------------------------------------------------------

DETERMINISM_SCRIPT = r'''
import sys, warnings
warnings.simplefilter("ignore")
sys.path[:0] = [{root!r}, {tests!r}]
from hostile_determinism import determinism_calls
for out in determinism_calls():
    print(repr(out))
'''


def test_same_inputs_give_bit_identical_blocks_across_calls():
    cache.clear()
    first = determinism_calls()
    cache.clear()
    second = determinism_calls()
    third = determinism_calls()                 # from the cache
    assert all(isinstance(b, list) for b in first), [b for b in first if isinstance(b, str)]
    assert repr(first) == repr(second) == repr(third)


def test_same_inputs_give_bit_identical_blocks_across_processes():
    script = DETERMINISM_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"))
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=600, cwd=ROOT) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    cache.clear()
    here = "\n".join(repr(b) for b in determinism_calls())
    assert runs[0].stdout.strip() == runs[1].stdout.strip() == here.strip()
