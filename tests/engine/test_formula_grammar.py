"""The formula grammar against two oracles (issue 18).

(a) R itself: tests/data/formula_terms.json holds, for a few hundred formulas drawn
    from the generator below (tests/data/formula_terms_cases.txt, written by
    ``python tests/engine/test_formula_grammar.py``), R's ``attr(terms(f), "term.labels")``,
    intercept, response and offsets of lme4's fixed part (``nobars(f)``) and lme4's
    random-effects terms (``findbars(expandDoubleVerts(f))``: each bar's own terms,
    intercept and grouping factor), made by tests/data/scripts/formula_terms.R.  The
    parser must give exactly the same, in the same order.
(b) Hypothesis: formulas generated as trees from the same grammar (repeated
    variables, the response and its transforms on the right-hand side, offsets, all
    operators), whose terms are computed here by plain set algebra on the tree --
    code independent of the parser -- and compared with the parser's; the parser
    never fails other than with a FormulaError, and its work (term merges, counted)
    stays within its cap.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlglmm.engine import formula as fm
from xlglmm.engine.formula import FormulaError, parse_formula, term_label

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = DATA / "formula_terms_cases.txt"
ORACLE = DATA / "formula_terms.json"

# variables as written in a formula and their labels (R's term labels): the response
# y and its transform exp(y) appear on the right too, a column named `log(x1)`
# next to the call log(x1), factor(a) next to a
VARS = ["a", "b", "c", "x", "x1", "y", "n", "log(x1)", "exp(y)", "factor(a)", "`log(x1)`"]
GROUPS = ["g", "h", "k"]
RESPONSES = ["y", "log(y)", "cbind(y, n - y)", "cbind(y, n)"]
OFFSETS = ["offset(log(n))", "offset(x)", "offset(log(x1))"]


# ---- expression trees ------------------------------------------------------------------

@dataclass(frozen=True)
class Var:
    text: str


@dataclass(frozen=True)
class Bin:
    op: str            # "*", "/", ":"
    left: object
    right: object


@dataclass(frozen=True)
class Pow:
    base: object
    k: int


@dataclass(frozen=True)
class Sum:
    parts: tuple       # ((sign, expr), ...), the first sign "+"


PREC = {"+": 1, "*": 2, "/": 2, ":": 3, "^": 4}


def render(e, outer: int = 0, right_side: bool = False) -> str:
    if isinstance(e, Var):
        return e.text
    if isinstance(e, Sum):
        text = render(e.parts[0][1], 1)
        for sign, p in e.parts[1:]:
            text += f" {sign} " + render(p, 1, True)
        prec = 1
    elif isinstance(e, Bin):
        prec = PREC[e.op]
        sep = e.op if e.op == ":" else f" {e.op} "
        text = render(e.left, prec) + sep + render(e.right, prec, True)
    else:
        prec = 4
        text = f"{render(e.base, 5)}^{e.k}"
    # left-associative operators: a parenthesised right operand of equal precedence
    if prec < outer or (right_side and prec == outer):
        return f"({text})"
    return text


def labels_of(e) -> dict:
    """The terms of an expression by set algebra: frozenset of labels -> True."""
    if isinstance(e, Var):
        lab = e.text
        if lab.startswith("`") and not any(ch in lab[1:-1] for ch in "():"):
            lab = lab[1:-1]
        return {frozenset([lab]): True}
    if isinstance(e, Sum):
        out: dict = {}
        for sign, p in e.parts:
            for t in labels_of(p):
                if sign == "+":
                    out[t] = True
                else:
                    out.pop(t, None)
        return out
    if isinstance(e, Pow):
        base = labels_of(e.base)
        out = dict(base)
        cur = base
        for _ in range(e.k - 1):
            cur = {a | b: True for a in cur for b in base}
            out.update(cur)
        return out
    a, b = labels_of(e.left), labels_of(e.right)
    if e.op == ":":
        return {x | y: True for x in a for y in b}
    if e.op == "*":
        return {**a, **b, **{x | y: True for x in a for y in b}}
    every = frozenset().union(*a) if a else frozenset()
    return {**a, **{y | every: True for y in b}}


def build(draw, depth: int = 0):
    """An expression from draw(lo, hi) -> int choices (random or hypothesis)."""
    kind = draw(0, 9) if depth < 3 else 0
    if kind <= 3:
        return Var(VARS[draw(0, len(VARS) - 1)])
    if kind <= 5:
        n = draw(2, 3)
        parts = [("+", build(draw, depth + 1))]
        for _ in range(n - 1):
            parts.append(("-" if draw(0, 4) == 0 else "+", build(draw, depth + 1)))
        return Sum(tuple(parts))
    if kind == 6:
        return Pow(build(draw, depth + 1), draw(2, 3))     # R refuses ^1
    op = "*:/"[draw(0, 2)]
    return Bin(op, build(draw, depth + 1), build(draw, depth + 1))


def random_term(draw) -> str:
    lhs = ["1", "x", "0 + x", "1 + x", "a", "x + a", "x*b", "b:x + x", "factor(a)", "y",
           "log(x1)"][draw(0, 10)]
    bar = "|" if draw(0, 3) or lhs == "1" else "||"     # lme4 fails on (1 || g)
    grp = ["g", "h", "g:h", "h:g", "g/h", "g/h/k", "a"][draw(0, 6)]
    if bar == "||" and "/" in grp:          # lme4 splits these in another order
        grp = "g"
    return f"({lhs} {bar} {grp})"


def formula_text(draw) -> tuple:
    """(text, fixed expression tree, intercept mark) of one whole formula."""
    resp = RESPONSES[draw(0, len(RESPONSES) - 1)]
    fixed = build(draw)
    text = render(fixed, 1)
    mark = draw(0, 6)
    icpt = {0: " - 1", 1: " + 0", 2: " + 1"}.get(mark, "")
    extras = [random_term(draw) for _ in range(draw(0, 2))]
    if draw(0, 3) == 0:
        extras.append(OFFSETS[draw(0, len(OFFSETS) - 1)])
    extra = "".join(" + " + e for e in extras)
    return f"{resp} ~ {text}{icpt}{extra}", fixed, mark


def write_cases(n: int = 300, seed: int = 18) -> None:
    rng = random.Random(seed)
    draw = rng.randint
    texts = list(dict.fromkeys(formula_text(draw)[0] for _ in range(n)))
    CASES.write_text("\n".join(texts) + "\n")


# ---- (a) R's terms, exactly ---------------------------------------------------------------

def _response_label(r) -> str:
    if r.name is not None:
        return r.name.label
    if r.failures is not None:
        return f"cbind({r.successes.label}, {r.failures.label})"
    return f"cbind({r.successes.label}, {r.total_minus.label} - {r.successes.label})"


def _bars(f) -> list:
    """Each random-effects part as lme4 splits it: (terms, intercept, group)."""
    out = []
    for rt in f.random:
        pieces = [(rt.terms, rt.intercept)]
        if not rt.correlated:
            pieces = ([([], True)] if rt.intercept else []) + [([t], False) for t in rt.terms]
        for g in rt.groups:
            for terms, icpt in pieces:
                out.append({"terms": [term_label(t) for t in terms], "intercept": int(icpt),
                            "group": term_label(g)})
    return out


def _ours(text: str) -> dict:
    f = parse_formula(text)
    return {"response": _response_label(f.response), "terms": f.term_labels,
            "intercept": int(f.intercept),
            "offsets": [f"offset({v.label})" for v in f.offsets], "bars": _bars(f)}


def _oracle() -> list:
    return json.loads(ORACLE.read_text())


def test_oracle_covers_the_cases():
    cases = CASES.read_text().splitlines()
    got = [c["formula"] for c in _oracle()]
    assert got == cases and len(cases) >= 250


@pytest.mark.parametrize("case", _oracle(), ids=lambda c: c["formula"])
def test_terms_as_r(case):
    want = {k: case[k] for k in ("response", "terms", "intercept", "offsets", "bars")}
    assert _ours(case["formula"]) == want


# ---- (b) an independent expansion -------------------------------------------------------

@st.composite
def formulas(draw_):
    def draw(lo, hi):
        return draw_(st.integers(lo, hi))
    return formula_text(draw)


def _parse_counted(text: str):
    toks = fm._tokenize(text)
    p = fm._Parser(text, toks)
    return p.formula(), p.work


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(formulas())
def test_terms_are_the_set_algebra_of_the_grammar(case):
    text, fixed, mark = case
    f, work = _parse_counted(text)
    want = set(labels_of(fixed))
    got = {frozenset(v.label for v in t) for t in f.terms}
    assert got == want, text
    assert len(f.terms) == len(got)                     # each term once
    assert f.intercept == (mark not in (0, 1))
    assert all(len(t) == len(set(t)) for t in f.terms)  # a variable once per term
    # R's order: by degree
    assert [len(t) for t in f.terms] == sorted(len(t) for t in f.terms)
    assert work <= fm.MAX_WORK


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(list("yabgx01~+-*:/^|()` ,.") + [
    "log(", "offset(", "cbind(", "||", "factor(", "^10"]), max_size=40).map("".join))
def test_any_text_parses_or_says_why(text):
    """Arbitrary text from the grammar's alphabet: a Formula or a FormulaError,
    nothing else, and bounded work."""
    try:
        toks = fm._tokenize(text)
        if len(toks) > 1 and sum(1 for t in toks if t[1] == "~") == 1:
            _, work = _parse_counted(text)
            assert work <= fm.MAX_WORK
        parse_formula(text)
    except FormulaError as e:
        assert str(e) and "\n" not in str(e)


if __name__ == "__main__":            # writes the cases the R script reads
    write_cases(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
    print(f"wrote {CASES}")


# ---- the design takes every formula of the grammar without an internal error ----------------

def _frame():
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(5)
    n = 30
    y = rng.poisson(3, n).astype(float)
    return pd.DataFrame({"y": y, "n": y + rng.poisson(4, n) + 1, "a": rng.integers(0, 3, n) * 1.0,
                         "b": rng.normal(size=n), "c": rng.normal(size=n),
                         "x": rng.uniform(0, 2, n), "x1": rng.uniform(1, 2, n),
                         "log(x1)": rng.normal(size=n), "g": [f"g{i % 5}" for i in range(n)],
                         "h": [f"h{i % 3}" for i in range(n)], "k": [f"k{i % 2}" for i in range(n)]})


FRAME = _frame()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(formulas())
def test_the_design_builds_or_says_why(case):
    """Response reuse, transforms of the response and the offset, repeated variables:
    the design is built, or refused with a DesignError -- never another exception
    (a fuzz run found 696 of 5,953 formulas failing with KeyError)."""
    from xlglmm.engine.design import DesignError, build_design
    from xlglmm.engine.family import make_family
    text = case[0]
    if "|" not in text:
        text += " + (1|g)"
    fam = "binomial" if text.startswith("cbind") else \
        "gaussian" if text.startswith("log(") else "poisson"
    try:
        d = build_design(text, FRAME, make_family(fam))
    except DesignError as e:
        assert str(e) and "\n" not in str(e)
        return
    f = parse_formula(text)
    dropped = f.response.name is not None and (f.response.name,) in f.terms
    assert any("appeared on the right-hand side" in m for m in d.messages) == dropped
