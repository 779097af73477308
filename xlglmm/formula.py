"""lme4 model formulas, parsed by a small whitelist grammar (never evaluated).

    response ~ fixed terms + (terms | group) + (terms || group) + offset(log(col))

What is accepted, and nothing else:

* names: column names (letters, digits, ``_`` and ``.``; anything else in
  `backticks`), the numbers ``0`` and ``1`` (intercept on/off), and whole powers
  after ``^``;
* operators ``+ - * : / ^ ~ | ||`` and parentheses;
* functions, only of a single column: ``log log2 log10 log1p exp sqrt abs``
  (numeric transforms), ``factor``/``as.factor`` (treat as categorical),
  ``offset(...)`` (of a column or one of the numeric transforms) and, as response,
  ``cbind(successes, failures)`` (failures may be written ``total - successes``).

The parser returns plain data (:class:`Formula`); the design module resolves the
names against the data.  Errors are :class:`FormulaError` with the position.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_FORMULA_LENGTH = 4000
MAX_DEPTH = 50

NUMERIC_FUNCTIONS = ("log", "log2", "log10", "log1p", "exp", "sqrt", "abs")
FACTOR_FUNCTIONS = ("factor", "as.factor")


class FormulaError(ValueError):
    """The formula text is not a model formula xlglmm understands."""


# A term is a tuple of variable names (an interaction); () is the intercept.
Term = tuple


@dataclass(frozen=True)
class Response:
    """``name`` (a variable), or ``successes``/``failures`` from cbind(); for the
    failures, ``total_minus`` marks ``total - successes`` written as
    ``cbind(s, total - s)``."""

    name: str | None = None
    successes: str | None = None
    failures: str | None = None
    total_minus: str | None = None

    @property
    def variables(self) -> list[str]:
        return [v for v in (self.name, self.successes, self.failures, self.total_minus) if v]


@dataclass
class RandomTerm:
    """One ``(lhs | group)`` term: lhs is a small fixed-style formula."""

    intercept: bool
    terms: list
    groups: list            # list of Term (each a tuple of grouping column names)
    correlated: bool = True
    text: str = ""


@dataclass
class Formula:
    response: Response | None
    intercept: bool
    terms: list             # fixed-effect terms, R order (by degree, then appearance)
    random: list = field(default_factory=list)
    offsets: list = field(default_factory=list)
    text: str = ""

    @property
    def variables(self) -> list[str]:
        """Every variable the formula uses, in order of appearance."""
        out: list[str] = []

        def add(v):
            if v not in out:
                out.append(v)
        if self.response:
            for v in self.response.variables:
                add(v)
        for t in self.terms:
            for v in t:
                add(v)
        for rt in self.random:
            for t in rt.terms:
                for v in t:
                    add(v)
            for g in rt.groups:
                for v in g:
                    add(v)
        for v in self.offsets:
            add(v)
        return out


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<bq>`[^`]*`)
  | (?P<num>\d+(?:\.\d*)?)
  | (?P<name>[A-Za-z_.][A-Za-z0-9_.]*)
  | (?P<op>\|\||[~+\-*:/^|(),])
""", re.VERBOSE)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    toks = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FormulaError(f"unexpected character {text[pos]!r} at position {pos + 1} "
                               f"of the formula")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "bq":
            kind, val = "name", val[1:-1]
            if not val.strip():
                raise FormulaError(f"empty `name` at position {pos + 1}")
        if kind != "ws":
            toks.append((kind, val, pos + 1))
        pos = m.end()
    toks.append(("end", "", len(text) + 1))
    return toks


class _Value:
    """What an expression denotes: terms (ordered), intercept marks, random terms,
    offsets."""

    def __init__(self, terms=None, number=None):
        self.terms: list = list(terms or [])
        self.number = number            # 0 or 1 when the expression is that literal
        self.intercept = None           # explicit +1 / -1 / +0 seen in a sum
        self.random: list = []
        self.offsets: list = []


def _merge_term(a: Term, b: Term) -> Term:
    return tuple(list(a) + [v for v in b if v not in a])


def _add_unique(terms: list, t: Term):
    if not any(set(t) == set(u) for u in terms):
        terms.append(t)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.var_order: list[str] = []

    # -- helpers
    def peek(self, k=0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self, val=None):
        tok = self.toks[self.i]
        if val is not None and tok[1] != val:
            raise FormulaError(self._where(f"expected '{val}'", tok))
        self.i += 1
        return tok

    def _where(self, msg, tok):
        shown = tok[1] if tok[0] != "end" else "end of formula"
        return f"{msg} but found '{shown}' at position {tok[2]}"

    def _var(self, name: str) -> str:
        if name not in self.var_order:
            self.var_order.append(name)
        return name

    def _enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError("formula is nested too deeply")

    # -- grammar
    def formula(self) -> Formula:
        response = None
        if self.peek()[1] != "~":
            response = self.response()
        self.take("~")
        val = self.sum(top=True)
        if self.peek()[0] != "end":
            raise FormulaError(self._where("unexpected text", self.peek()))
        intercept = True if val.intercept is None else val.intercept
        order = {v: k for k, v in enumerate(self.var_order)}
        terms = [tuple(sorted(t, key=order.get)) for t in val.terms]
        terms = sorted(terms, key=len)  # stable: by degree, then appearance
        return Formula(response, intercept, terms, val.random, val.offsets, self.text)

    def response(self) -> Response:
        kind, val, pos = self.peek()
        if kind == "name" and val == "cbind" and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            s = self.simple_name()
            self.take(",")
            f = self.simple_name()
            total_minus = None
            if self.peek()[1] == "-":
                self.take("-")
                s2 = self.simple_name()
                if s2 != s:
                    raise FormulaError("cbind(successes, total - successes) must subtract "
                                       "the same column it counts")
                total_minus, f = f, None
            self.take(")")
            return Response(successes=s, failures=f, total_minus=total_minus)
        v = self.variable()
        return Response(name=v)

    def simple_name(self) -> str:
        kind, val, pos = self.take()
        if kind != "name":
            raise FormulaError(f"expected a column name at position {pos}")
        return self._var(val)

    def variable(self) -> str:
        """NAME or whitelisted-function(NAME); returns the variable's text."""
        kind, val, pos = self.take()
        if kind != "name":
            raise FormulaError(f"expected a column name at position {pos}, found '{val}'")
        if self.peek()[1] == "(":
            if val not in NUMERIC_FUNCTIONS + FACTOR_FUNCTIONS:
                raise FormulaError(f"function '{val}' (position {pos}) is not allowed in a "
                                   f"formula; allowed: {', '.join(NUMERIC_FUNCTIONS + FACTOR_FUNCTIONS)}, "
                                   "offset() and cbind()")
            self.take("(")
            inner = self.take()
            if inner[0] != "name" or self.peek()[1] != ")":
                raise FormulaError(f"{val}() takes a single column name (position {pos})")
            self.take(")")
            return self._var(f"{'factor' if val in FACTOR_FUNCTIONS else val}({inner[1]})")
        return self._var(val)

    def sum(self, top=False) -> _Value:
        self._enter()
        out = _Value()
        sign = "+"
        if self.peek()[1] == "-":
            self.take()
            sign = "-"
        while True:
            v = self.prod()
            self._apply(out, v, sign, top)
            if self.peek()[1] in ("+", "-"):
                sign = self.take()[1]
                continue
            break
        self.depth -= 1
        return out

    def _apply(self, out: _Value, v: _Value, sign: str, top: bool):
        if v.random or v.offsets:
            if sign == "-":
                raise FormulaError("random-effects and offset terms cannot be subtracted")
            if not top:
                raise FormulaError("random-effects terms ( | ) and offset() must stand at "
                                   "the top level of the formula")
            out.random += v.random
            out.offsets += v.offsets
            return
        if v.number is None and v.intercept is not None and not v.terms:
            v = _Value(number=1 if v.intercept else 0)   # a parenthesised (1) or (0)
        if v.number is not None and not v.terms:
            if v.number not in (0, 1):
                raise FormulaError(f"the number {v.number} cannot be a term (use 0 or 1)")
            keep = (v.number == 1) == (sign == "+")
            out.intercept = keep
            return
        for t in v.terms:
            if sign == "+":
                _add_unique(out.terms, t)
            else:
                out.terms = [u for u in out.terms if set(u) != set(t)]

    def prod(self) -> _Value:
        left = self.inter()
        while self.peek()[1] == "*":
            self.take()
            right = self.inter()
            self._no_specials(left, right)
            terms: list = []
            for t in left.terms + right.terms:
                _add_unique(terms, t)
            for a in left.terms:
                for b in right.terms:
                    _add_unique(terms, _merge_term(a, b))
            left = _Value(terms)
        return left

    def inter(self) -> _Value:
        left = self.nest()
        while self.peek()[1] == ":":
            self.take()
            right = self.nest()
            self._no_specials(left, right)
            terms: list = []
            for a in left.terms:
                for b in right.terms:
                    _add_unique(terms, _merge_term(a, b))
            left = _Value(terms)
        return left

    def nest(self) -> _Value:
        left = self.power()
        while self.peek()[1] == "/":
            self.take()
            right = self.power()
            self._no_specials(left, right)
            # lme4 names a nested factor inner-first: (1|a/b) gives b:a and a
            allvars: Term = ()
            for t in reversed(left.terms):
                allvars = _merge_term(allvars, t)
            terms = list(left.terms)
            for b in right.terms:
                _add_unique(terms, _merge_term(b, allvars))
            left = _Value(terms)
        return left

    def power(self) -> _Value:
        base = self.atom()
        if self.peek()[1] == "^":
            self.take()
            kind, val, pos = self.take()
            if kind != "num" or not val.isdigit() or not 1 <= int(val) <= 10:
                raise FormulaError(f"^ takes a whole number from 1 to 10 (position {pos})")
            self._no_specials(base, base)
            terms = list(base.terms)
            current = list(base.terms)
            for _ in range(int(val) - 1):
                nxt = []
                for a in current:
                    for b in base.terms:
                        _add_unique(nxt, _merge_term(a, b))
                for t in nxt:
                    _add_unique(terms, t)
                current = nxt
            base = _Value(terms)
        return base

    def _no_specials(self, *vals):
        for v in vals:
            if v.random or v.offsets:
                raise FormulaError("random-effects terms ( | ) and offset() cannot be "
                                   "combined with * : / or ^")
            if v.number is not None and not v.terms:
                raise FormulaError("0 and 1 cannot be combined with * : / or ^")

    def atom(self) -> _Value:
        kind, val, pos = self.peek()
        if kind == "num":
            self.take()
            num = float(val)
            if num not in (0.0, 1.0):
                raise FormulaError(f"the number {val} at position {pos} cannot be a term "
                                   "(only 0 or 1, for the intercept)")
            return _Value(number=int(num))
        if kind == "name" and val == "offset" and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            v = self.variable()
            self.take(")")
            out = _Value()
            out.offsets.append(v)
            return out
        if kind == "name":
            return _Value([(self.variable(),)])
        if val == "(":
            self.take()
            self._enter()
            inner = self.sum()
            if self.peek()[1] in ("|", "||"):
                bar = self.take()[1]
                grp = self.sum()
                self.take(")")
                self.depth -= 1
                return self._random(inner, grp, bar == "|", pos)
            self.take(")")
            self.depth -= 1
            return inner
        raise FormulaError(self._where("expected a term", self.peek()))

    def _random(self, lhs: _Value, grp: _Value, correlated: bool, pos: int) -> _Value:
        if lhs.random or grp.random or lhs.offsets or grp.offsets:
            raise FormulaError(f"random-effects terms cannot be nested (position {pos})")
        if not grp.terms or grp.intercept is not None:
            raise FormulaError(f"the grouping factor after | (position {pos}) must be "
                               "column names, e.g. (1|site) or (1|site/plot)")
        intercept = True if lhs.intercept is None else lhs.intercept
        if not intercept and not lhs.terms:
            raise FormulaError(f"random-effects term at position {pos} has no terms")
        order = {v: k for k, v in enumerate(self.var_order)}
        terms = sorted((tuple(sorted(t, key=order.get)) for t in lhs.terms), key=len)
        text = self.text[pos - 1:self.toks[self.i - 1][2]]
        out = _Value()
        out.random.append(RandomTerm(intercept, terms, list(grp.terms), correlated, text))
        return out


def parse_formula(text: str) -> Formula:
    """Parse an lme4-style formula; raises FormulaError with a plain message."""
    if not isinstance(text, str):
        raise FormulaError("the formula must be text, e.g. y ~ x + (1|g)")
    if len(text) > MAX_FORMULA_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_FORMULA_LENGTH} characters")
    if not text.strip():
        raise FormulaError("the formula is empty")
    if text.count("~") != 1:
        raise FormulaError("a formula needs exactly one ~ (response ~ terms)")
    return _Parser(text).formula()


def split_variable(var: str) -> tuple[str | None, str]:
    """``"log(x)"`` -> ("log", "x"); ``"x"`` -> (None, "x")."""
    m = re.fullmatch(r"([A-Za-z_.][A-Za-z0-9_.]*)\((.*)\)", var)
    if m and m.group(1) in NUMERIC_FUNCTIONS + ("factor",):
        return m.group(1), m.group(2)
    return None, var
