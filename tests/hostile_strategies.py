"""Hypothesis strategies for hostile, messy worksheet input (issue 5).

Everything generated is shaped as xlwings hands it to a UDF: ranges declared
``ndim=2`` arrive as lists of rows; blank cells are ``None``; numbers are floats;
text is ``str``; TRUE/FALSE are ``bool``; Excel error cells are strings such as
``"#N/A"`` (``err_to_str=True``); dates are ``datetime``; arguments without
``ndim`` (alpha, nAGQ, family, link, the formula...) are a scalar for one cell
or a (1D or 2D) list for a range; omitted optionals are the Python default.

A generated call starts from a plausible data set (counts or 0/1 outcomes that a
model could fit, with the awkward shapes of real data: constant or duplicated
predictors, one group, a group per row, all-zero or huge counts, complete
separation...) and then, most of the time, is damaged by a few *mutations*: a
cell replaced by a hostile value, a range cut short or transposed, a header
added, an argument emptied or replaced by a scalar, trailing blank rows of a
whole-column selection...  Data stay small (at most ~60 rows) so that thousands
of calls run in minutes.
"""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
from hypothesis import strategies as st

MAX_ROWS = 60

EXCEL_ERRORS = ["#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!",
                "#SPILL!", "#CALC!", "#GETTING_DATA", "#FIELD!", "#BUSY!"]

WEIRD_NUMBERS = [math.nan, math.inf, -math.inf, 1e12, -1e12, 1e300, -1e300, 1e-300,
                 5e-324, 0.0, -0.0, -1.0, 0.5, 2.5, -3.5, 1e15, 2.0 ** 53 + 2,
                 1.7976931348623157e308, 1e8, 709.0, -745.0]

CODE_TEXT = [
    "__import__('os').system('echo PWNED')",
    "eval('1+1')", "exec('import os')", "open('/etc/passwd').read()",
    "lambda: 0", "os.system('ls')", "().__class__.__bases__[0].__subclasses__()",
    "=HYPERLINK(\"http://x\")", "=1+1", "{{7*7}}", "${jndi:ldap://x}", "'; DROP TABLE t;--",
]

WEIRD_TEXT = ["", " ", "  \t", "abc", "3", "1e5", " 7 ", "-0", "TRUE", "FALSE", "true",
              "NaN", "nan", "inf", "-inf", "Infinity", "n/a", "NA", "-", "#", "#N/A ",
              " #REF!", "é", "\n", "\r\n", "x" * 300, "`", "``", "'", '"', "~", "y ~ x",
              "(1|g)", "\x00", "1,5", "1.5.2", "0x10", "1_000", "½", "٣", "\u200b"]

# a text cell: mostly from the lists above, sometimes anything
texts = st.one_of(st.sampled_from(WEIRD_TEXT), st.sampled_from(CODE_TEXT),
                  st.text(max_size=12))

hostile_cell = st.one_of(
    st.sampled_from(EXCEL_ERRORS),
    texts,
    st.booleans(),
    st.sampled_from(WEIRD_NUMBERS),
    st.none(),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10 ** 20), 10 ** 20),     # Python callers may pass ints
    st.just(10 ** 400),                      # an int no float can hold
)


def scalar_or_range(valid, invalid):
    """An optional scalar argument: mostly a valid value (as a scalar or a 1x1
    range); sometimes an invalid one, a hostile cell, or a multi-cell range (1D or
    2D list, as xlwings passes a range to an argument without ndim)."""
    bad = st.one_of(
        invalid,
        hostile_cell,
        st.lists(hostile_cell, min_size=0, max_size=3),
        st.lists(st.lists(hostile_cell, min_size=1, max_size=2), min_size=1, max_size=2),
    )
    ok = st.one_of(valid, valid, valid, valid.map(lambda v: [[v]]))
    return st.integers(0, 9).flatmap(lambda k: ok if k < 8 else bad)


alphas = scalar_or_range(st.sampled_from([0.05, 0.1, 0.01, 0.5, 0.999, 1e-9, None]),
                         st.sampled_from([0.0, 1.0, -0.05, 1.5, 5.0, 95.0, "5%"]))
nagqs = scalar_or_range(st.sampled_from([0, 1, 1, 1, 1, 2, 3, 5, 9, 25, 100, 0.0, 7.0, None]),
                        st.sampled_from([101, -1, 1.5, 1e10, "2", True]))
intercepts = scalar_or_range(st.sampled_from([True, True, False, None, 1.0, 0.0, "TRUE",
                                              "false"]),
                             st.sampled_from(["yes", 2.0, "#N/A"]))
families = scalar_or_range(st.sampled_from(["poisson", "binomial", "gamma", "Poisson ",
                                            " BINOMIAL", "Gamma", None]),
                           st.sampled_from(["normal", "gaussian", "negbin", "", "poison"]))
links = scalar_or_range(st.sampled_from([None, None, "log", "logit", "probit", "cloglog",
                                         "inverse", "identity", "sqrt", "LOGIT", " log "]),
                        st.sampled_from(["foo", "", "logistic"]))
binomial_links = scalar_or_range(st.sampled_from(["logit", "logit", "probit", "cloglog",
                                                  None, "Probit"]),
                                 st.sampled_from(["log", "identity", "logistic"]))
ptypes = scalar_or_range(st.sampled_from(["response", "link", "Response", None]),
                         st.sampled_from(["linear", "", "probability"]))
include_res = scalar_or_range(st.sampled_from([True, False, None, "FALSE", 0.0]),
                              st.sampled_from(["no", 2.0]))
# GLMM_CONFINT's options: few replicates mostly (the default 1000 meets the budget)
ci_methods = scalar_or_range(st.sampled_from(["Wald", "profile", "bootstrap", "PROFILE",
                                              " bootstrap ", None]),
                             st.sampled_from(["jackknife", "", "wald test"]))
nsims = scalar_or_range(st.sampled_from([1, 2, 5, 20, 5.0, None]),
                        st.sampled_from([0, -5, 2.5, 1e6, 100_001, "100"]))
seeds = scalar_or_range(st.sampled_from([0, 1, 42, 2.0 ** 53 - 1, None]),
                        st.sampled_from([-1, 0.5, 2.0 ** 60, "seed"]))


# ---- plausible data sets ----------------------------------------------------------

def _labels(codes, style, rng):
    if style == "text":
        return [f"G{c}" for c in codes]
    if style == "number":
        return [float(c + 1) for c in codes]
    if style == "mixed":
        return [f"G{c}" if c % 2 else float(c) for c in codes]
    if style == "bool":
        return [bool(c % 2) for c in codes]
    return [dt.datetime(2020, 1, 1) + dt.timedelta(days=int(c)) for c in codes]


@st.composite
def datasets(draw, family="poisson"):
    """A data set as plain Python columns: y, X (list of columns), groups (list of
    label columns), offset, trials, x_random (list of columns), names."""
    n = draw(st.integers(0, 9).flatmap(
        lambda k: st.integers(0, 5) if k == 0 else st.integers(6, MAX_ROWS)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    p = draw(st.integers(0, 3))
    x_kinds = [draw(st.sampled_from(["normal", "normal", "binary", "integer", "constant",
                                     "copy", "double", "huge", "tiny", "zero"]))
               for _ in range(p)]
    X = []
    for k in x_kinds:
        if k == "normal":
            c = rng.normal(size=n).round(4)
        elif k == "binary":
            c = rng.integers(0, 2, n).astype(float)
        elif k == "integer":
            c = rng.integers(1, 6, n).astype(float)
        elif k == "constant":
            c = np.full(n, 3.0)
        elif k == "copy" and X:
            c = np.array(X[-1], float)
        elif k == "double" and X:
            c = 2.0 * np.array(X[-1], float) + 1.0
        elif k == "huge":
            c = rng.normal(size=n) * 1e9
        elif k == "tiny":
            c = rng.normal(size=n) * 1e-9
        elif k == "zero":
            c = np.zeros(n)
        else:
            c = rng.normal(size=n).round(3)
        X.append([float(v) for v in c])
    ng_kind = draw(st.sampled_from(["few", "few", "few", "some", "some", "single",
                                    "each_row", "pairs"]))
    ng = {"few": 3, "some": 8, "single": 1, "each_row": max(n, 1),
          "pairs": max(n // 2, 1)}[ng_kind]
    codes = np.arange(n) % ng if ng_kind in ("each_row", "pairs") else rng.integers(0, ng, n)
    style = draw(st.sampled_from(["text", "text", "number", "mixed", "bool", "date"]))
    groups = [_labels(codes, style, rng)]
    if draw(st.booleans()):
        codes2 = rng.integers(0, draw(st.sampled_from([1, 2, 4])), n)
        groups.append(_labels(codes2, "text", rng))
    u = rng.normal(0, 0.7, ng)
    eta = 0.3 + u[codes]
    for c in X[:2]:
        arr = np.array(c)
        if np.all(np.isfinite(arr)) and np.abs(arr).max(initial=0) < 1e6:
            eta = eta + 0.3 * arr
    y_kind = draw(st.sampled_from(["model", "model", "model", "zeros", "ones", "huge",
                                   "separated", "big"]))
    trials = None
    if family == "binomial":
        use_trials = draw(st.booleans())
        pr = 1 / (1 + np.exp(-eta))
        if use_trials:
            tr = rng.integers(1, 12, n)
            y = rng.binomial(tr, pr).astype(float)
            trials = [float(t) for t in tr]
        else:
            y = (rng.uniform(size=n) < pr).astype(float)
        if y_kind == "zeros":
            y = np.zeros(n)
        elif y_kind == "ones":
            y = np.array(trials, float) if trials else np.ones(n)
        elif y_kind == "separated" and n:
            if X:
                X[0] = [float(v) for v in (np.arange(n) >= n // 2)]
            y = (np.arange(n) >= n // 2).astype(float)
            if trials:
                y = y * np.array(trials)
    else:
        lam = np.exp(np.clip(eta, -20, 20))
        y = rng.poisson(lam).astype(float)
        if y_kind == "zeros":
            y = np.zeros(n)
        elif y_kind == "ones":
            y = np.ones(n)
        elif y_kind == "huge":
            y = np.round(1e12 * lam)
        elif y_kind == "big":
            y = rng.poisson(1e6, n).astype(float)
        elif y_kind == "separated" and n:
            if X:
                X[0] = [float(v) for v in (np.arange(n) >= n // 2)]
            y = np.where(np.arange(n) >= n // 2, rng.poisson(5, n), 0).astype(float)
    offset = None
    if family != "binomial" and draw(st.booleans()):
        offset = [float(v) for v in np.log(rng.integers(1, 100, n))]
    x_random = []
    if X and draw(st.integers(0, 3)) == 0:
        x_random = [list(X[0])]
    names = {"y": draw(st.sampled_from(["y", "count", "Y value", "y"])),
             "X": [f"x{j + 1}" for j in range(p)],
             "groups": [f"g{j + 1}" for j in range(len(groups))]}
    return {"n": n, "y": [float(v) for v in y], "X": X, "groups": groups, "offset": offset,
            "trials": trials, "x_random": x_random, "names": names}


# ---- worksheet shaping -----------------------------------------------------------

def as_column(values, header=None):
    return ([[header]] if header is not None else []) + [[v] for v in values]


def as_columns(cols, headers=None, n=0):
    if not cols:
        return None
    rows = [list(r) for r in zip(*cols)] if cols and cols[0] else []
    if not rows:
        rows = [[None] * len(cols) for _ in range(n)]
    return ([list(headers)] if headers is not None else []) + rows


def sheet_args(data, header: bool):
    """The data set as the range arguments of GLMM_POISSON / GLMM_BINOMIAL."""
    nm = data["names"]
    h = (lambda x: x) if header else (lambda x: None)
    hs = (lambda xs: list(xs)) if header else (lambda xs: None)
    args = {
        "y": as_column(data["y"], h(nm["y"])),
        "X": as_columns(data["X"], hs(nm["X"]), data["n"]),
        "groups": as_columns(data["groups"], hs(nm["groups"]), data["n"]),
        "offset": as_column(data["offset"], h("logexp")) if data["offset"] else None,
        "trials": as_column(data["trials"], h("trials")) if data["trials"] else None,
        "x_random": as_columns(data["x_random"], hs(["xr"]), data["n"])
        if data["x_random"] else None,
    }
    return args


def data_table(data):
    """The data set as GLMM's table (header row of names)."""
    nm = data["names"]
    cols = {nm["y"]: data["y"]}
    for k, c in zip(nm["X"], data["X"]):
        cols[k] = c
    for k, c in zip(nm["groups"], data["groups"]):
        cols[k] = c
    if data["offset"]:
        cols["expo"] = [float(np.exp(v)) for v in data["offset"]]
    if data["trials"]:
        cols["trials"] = data["trials"]
        cols["fail"] = [t - s for s, t in zip(data["y"], data["trials"])]
    head = list(cols)
    rows = [list(r) for r in zip(*cols.values())]
    return [head] + rows


# ---- mutations -------------------------------------------------------------------

def _grid(v):
    if v is None:
        return None
    if isinstance(v, list) and all(isinstance(r, list) for r in v):
        return [list(r) for r in v]
    return v


@st.composite
def mutate(draw, args: dict, names: list):
    """Apply 0-3 random mutations to some of the range arguments ``names``."""
    args = {k: _grid(v) for k, v in args.items()}
    k = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]))
    for _ in range(k):
        name = draw(st.sampled_from(names))
        g = args.get(name)
        op = draw(st.sampled_from(["cell", "cell", "cell", "blank", "truncate", "extend",
                                   "transpose", "scalar", "empty", "tail", "header",
                                   "extra_col", "drop_header", "whole", "ragged"]))
        if op in ("cell", "blank") and isinstance(g, list) and g and g[0]:
            i = draw(st.integers(0, len(g) - 1))
            j = draw(st.integers(0, len(g[i]) - 1)) if g[i] else 0
            v = draw(hostile_cell) if op == "cell" else draw(st.sampled_from([None, "", " "]))
            if g[i]:
                g[i][j] = v
        elif op == "truncate" and isinstance(g, list) and g:
            args[name] = g[:draw(st.integers(0, len(g) - 1))]
        elif op == "extend" and isinstance(g, list) and g and isinstance(g[0], list):
            w = len(g[0])
            extra = draw(st.integers(1, 3))
            args[name] = g + [[draw(st.sampled_from([1.0, 2.0, "a", None]))] * w
                              for _ in range(extra)]
        elif op == "transpose" and isinstance(g, list) and g and isinstance(g[0], list):
            args[name] = [list(r) for r in zip(*g)]
        elif op == "scalar":
            args[name] = draw(hostile_cell)
        elif op == "empty":
            args[name] = draw(st.sampled_from([None, [], [[]], [[None]], [[None], [None]],
                                               [[""]], "", " "]))
        elif op == "tail" and isinstance(g, list) and g and isinstance(g[0], list):
            args[name] = g + [[None] * len(g[0]) for _ in range(draw(st.integers(1, 40)))]
        elif op == "header" and isinstance(g, list) and g and isinstance(g[0], list):
            args[name] = [[draw(st.one_of(texts, st.sampled_from(EXCEL_ERRORS), st.none(),
                                          st.just(1.0)))
                           for _ in g[0]]] + g
        elif op == "drop_header" and isinstance(g, list) and g:
            args[name] = g[1:]
        elif op == "extra_col" and isinstance(g, list) and g and isinstance(g[0], list):
            args[name] = [r + [draw(st.sampled_from([1.0, "z", None, True]))] for r in g]
        elif op == "whole" and isinstance(g, list):
            # a hostile value in every cell of one column
            v = draw(hostile_cell)
            args[name] = [[v] + r[1:] if r else [v] for r in g]
        elif op == "ragged" and isinstance(g, list) and g and isinstance(g[0], list):
            # not something Excel produces, but Python callers can
            i = draw(st.integers(0, len(g) - 1))
            g[i] = g[i][:-1] if len(g[i]) > 1 else g[i] + [1.0]
    return args


# ---- formulas --------------------------------------------------------------------

FORMULA_CHARS = st.sampled_from(list("yxgh12 ~+-*:/^|()`,.'\"_;[]{}=<>!@$\\0") +
                                ["log(", "factor(", "offset(", "cbind(", "||", "~"])

INJECTIONS = [
    "y ~ __import__('os').system('echo PWNED') + (1|g1)",
    "__import__('os') ~ x1 + (1|g1)",
    "y ~ x1 + eval('1') + (1|g1)",
    "y ~ exec(\"import os\") + (1|g1)",
    "y ~ x1 + (1|g1); import os",
    "y ~ x1 + (1|g1)\nimport os",
    "y ~ `__import__('os')` + (1|g1)",
    "y ~ I(__import__('os').getcwd()) + (1|g1)",
    "y ~ log(__import__('os')) + (1|g1)",
    "y ~ x1.__class__.__mro__ + (1|g1)",
    "y ~ open('/etc/passwd') + (1|g1)",
    "y ~ x1 + (1|g1) + globals()",
    "y ~ [x for x in ().__class__.__base__.__subclasses__()] + (1|g1)",
    "y ~ x1 + (lambda: 0)() + (1|g1)",
    "y ~ {x1} + (1|g1)",
    "y ~ f'{x1}' + (1|g1)",
    "y ~ getattr(x1, 'real') + (1|g1)",
    "y ~ x1 + (1|g1) #",
    "y ~ x1 + (1|__import__)",
    "y ~ offset(__import__('os').system('id')) + (1|g1)",
]


@st.composite
def formulas(draw, data):
    """Formula text for GLMM over ``data_table(data)``: valid ones, near-misses,
    unknown columns, bad syntax, code, noise, and non-text."""
    nm = data["names"]
    cols = nm["X"]
    groups = nm["groups"]

    def q(c):
        return f"`{c}`" if not c.replace("_", "a").replace(".", "a").isalnum() else c
    kind = draw(st.sampled_from(["valid"] * 12 + ["mutated", "mutated", "unknown",
                                                  "injection", "noise", "nontext", "deep",
                                                  "long"]))
    y = q(nm["y"])
    fixed = []
    for c in cols:
        if draw(st.booleans()):
            fixed.append(draw(st.sampled_from([c, c, f"log({c})", f"factor({c})",
                                               f"sqrt({c})", f"exp({c})"])))
    if len(cols) >= 2 and draw(st.booleans()):
        fixed.append(draw(st.sampled_from([f"{cols[0]}:{cols[1]}", f"{cols[0]}*{cols[1]}",
                                           f"({cols[0]} + {cols[1]})^2",
                                           f"{cols[0]}/{cols[1]}"])))
    if draw(st.integers(0, 4)) == 0:
        fixed = [draw(st.sampled_from(["0", "1", "-1"]))] + fixed
    if not fixed:
        fixed = ["1"]
    rand = []
    for gname in groups:
        lhs = draw(st.sampled_from(["1", "1", "1", "0 + " + cols[0] if cols else "1",
                                    cols[0] if cols else "1"]))
        bar = draw(st.sampled_from(["|", "|", "||"]))
        rand.append(f"({lhs} {bar} {gname})")
    if len(groups) >= 2 and draw(st.booleans()):
        rand = [draw(st.sampled_from([f"(1|{groups[0]}/{groups[1]})",
                                      f"(1|{groups[0]}:{groups[1]})"]))]
    if "expo" in data_table(data)[0] and draw(st.booleans()):
        fixed.append("offset(log(expo))")
    if data["trials"] and draw(st.booleans()):
        y = draw(st.sampled_from([f"cbind({y}, fail)", f"cbind({y}, trials - {y})"]))
    f = f"{y} ~ {' + '.join(fixed + rand)}"
    if kind == "valid":
        return f
    if kind == "mutated":
        chars = list(f)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, max(len(chars) - 1, 0)))
            op = draw(st.sampled_from(["del", "ins", "dup"]))
            if op == "del" and chars:
                del chars[i]
            elif op == "ins":
                chars.insert(i, draw(FORMULA_CHARS))
            elif chars:
                chars.insert(i, chars[i])
        return "".join(chars)
    if kind == "unknown":
        return f.replace(draw(st.sampled_from([y] + groups + cols or [y])), "nope", 1)
    if kind == "injection":
        return draw(st.sampled_from(INJECTIONS))
    if kind == "noise":
        return draw(st.one_of(st.text(max_size=40),
                              st.lists(FORMULA_CHARS, max_size=30).map("".join)))
    if kind == "deep":
        d = draw(st.sampled_from([10, 49, 60, 500, 2000]))
        return "y ~ " + "(" * d + "x1" + ")" * d + " + (1|g1)"
    if kind == "long":
        return "y ~ " + " + ".join(["x1"] * draw(st.sampled_from([100, 900, 2000]))) + \
            " + (1|g1)"
    return draw(st.one_of(hostile_cell, st.just([[f]]), st.just([f, "x"]),
                          st.just([[f, None]]), st.just([])))
