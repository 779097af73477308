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

The parser returns plain data (:class:`Formula`) whose variables are
:class:`Variable` values -- a column name and an optional transform, never text to
be read again -- so a column named ``log(x1)`` (written `` `log(x1)` ``) and the
call ``log(x1)`` are different variables; the design module resolves them against
the data.  Errors are :class:`FormulaError` with the position.

Cost: expanding ``*``, ``:``, ``/`` and ``^`` can multiply terms (a*b*...*n has
2^14 - 1).  Before each expansion the number of terms it can produce is computed
from its operands' term counts and refused above :data:`MAX_TERMS`; the work of a
whole parse (term merges) is counted and refused above :data:`MAX_WORK`, so a parse
takes time linear in its output and bounded in all.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

MAX_FORMULA_LENGTH = 4000
MAX_DEPTH = 50
# Terms one expression may expand to.  Every term of a fixed-effects formula makes at
# least one column of the model matrix, and the design refuses more than 7,905 columns
# on any door (cost.check_fixed_columns: the fit's dense p x p blocks alone would
# exceed the 2 GB cap), so a larger expansion could never be fitted.
MAX_TERMS = 20_000
# Term merges (set unions) of one whole parse: a few times MAX_TERMS, so that a
# formula repeating a large product many times is refused too (about 0.1 s of work).
MAX_WORK = 100_000

NUMERIC_FUNCTIONS = ("log", "log2", "log10", "log1p", "exp", "sqrt", "abs")
FACTOR_FUNCTIONS = ("factor", "as.factor")


class FormulaError(ValueError):
    """The formula text is not a model formula xlglmm understands."""


# characters that would make a column name read as a call (log(x)), an interaction
# (a:b) or a quoted name in a label: such names are shown in backticks, as R does
_LABEL_SPECIAL = re.compile(r"[():`]")


def quote_name(name: str) -> str:
    """A column name as it appears in coefficient labels: as it is, or in backticks
    (R's way) when it could be read as a call or an interaction: `` `log(x1)` ``,
    `` `a:b` ``, `` `(Intercept)` ``."""
    if _LABEL_SPECIAL.search(name):
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
    return name


class Variable(tuple):
    """One variable of a formula: a data column, optionally transformed.

    ``transform`` is None, one of NUMERIC_FUNCTIONS, or "factor"/"as.factor".  The
    column is always a name, never parsed: ``Variable("log(x1)")`` is the column so
    named, ``Variable("x1", "log")`` the logarithm of column x1.  (An immutable pair,
    hashed and compared in C: a parse may hash variables millions of times.)"""

    __slots__ = ()

    def __new__(cls, column: str, transform: str | None = None):
        if not isinstance(column, str):
            raise TypeError("Variable.column must be a str")
        if transform is not None and transform not in NUMERIC_FUNCTIONS + FACTOR_FUNCTIONS:
            raise ValueError(f"unknown transform {transform!r}")
        return tuple.__new__(cls, (column, transform))

    @property
    def column(self) -> str:
        return self[0]

    @property
    def transform(self) -> str | None:
        return self[1]

    @property
    def is_factor(self) -> bool:
        return self[1] in FACTOR_FUNCTIONS

    @property
    def label(self) -> str:
        """R's label: ``x``, ``log(x)``, ``factor(k)``, `` `log(x1)` ``."""
        name = quote_name(self[0])
        return f"{self[1]}({name})" if self[1] else name

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"Variable({self[0]!r}" + (f", {self[1]!r})" if self[1] else ")")

    def __getnewargs__(self):
        return tuple(self)


def term_label(term) -> str:
    """``a:b`` -- R's label of an interaction term (a tuple of Variables)."""
    return ":".join(v.label for v in term)


# A term is a tuple of Variables (an interaction), in R's order; () is the intercept.
Term = tuple


@dataclass(frozen=True)
class Response:
    """``name`` (a variable), or ``successes``/``failures`` from cbind(); for the
    failures, ``total_minus`` marks ``total - successes`` written as
    ``cbind(s, total - s)``."""

    name: Variable | None = None
    successes: Variable | None = None
    failures: Variable | None = None
    total_minus: Variable | None = None

    @property
    def variables(self) -> list:
        return [v for v in (self.name, self.successes, self.failures, self.total_minus) if v]


@dataclass
class RandomTerm:
    """One ``(lhs | group)`` term: lhs is a small fixed-style formula."""

    intercept: bool
    terms: list
    groups: list            # list of Term (each a tuple of grouping Variables)
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
    def variables(self) -> list:
        """Every variable the formula uses, in order of appearance."""
        out: dict = {}
        if self.response:
            out.update(dict.fromkeys(self.response.variables))
        for t in self.terms:
            out.update(dict.fromkeys(t))
        for rt in self.random:
            for t in rt.terms:
                out.update(dict.fromkeys(t))
            for g in rt.groups:
                out.update(dict.fromkeys(g))
        out.update(dict.fromkeys(self.offsets))
        return list(out)

    @property
    def term_labels(self) -> list:
        """R's ``attr(terms(f), "term.labels")`` of the fixed part."""
        return [term_label(t) for t in self.terms]


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<bq>`(?:[^`\\]|\\.)*`)
  | (?P<num>\d+(?:\.\d*)?)
  | (?P<name>[A-Za-z_.][A-Za-z0-9_.]*)
  | (?P<op>\|\||[~+\-*:/^|(),])
""", re.VERBOSE)


def _tokenize(text: str) -> list:
    """Tokens (kind, value, 1-based position); a `quoted` name is kind 'qname'."""
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
            # inside backticks, \` is a backtick and \\ a backslash (R's escapes,
            # as quote_name writes them); any other backslash is itself
            kind, val = "qname", re.sub(r"\\([`\\])", r"\1", val[1:-1])
            if not val.strip():
                raise FormulaError(f"empty `name` at position {pos + 1}")
        if kind != "ws":
            toks.append((kind, val, pos + 1))
        pos = m.end()
    toks.append(("end", "", len(text) + 1))
    return toks


class _Value:
    """What an expression denotes: terms (an ordered set: frozenset of variables ->
    the variables in the order the operators produced them), intercept marks,
    random terms, offsets."""

    __slots__ = ("terms", "number", "intercept", "random", "offsets")

    def __init__(self, terms=None, number=None):
        self.terms: dict = terms if terms is not None else {}
        self.number = number            # 0 or 1 when the expression is that literal
        self.intercept = None           # explicit +1 / -1 / +0 seen in a sum
        self.random: list = []
        self.offsets: list = []


def _merge(a: tuple, b: tuple) -> tuple:
    if not b:
        return a
    seen = set(a)
    return a + tuple(v for v in b if v not in seen)


class _Parser:
    def __init__(self, text: str, toks: list):
        self.text = text
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.work = 0
        # order of first appearance of each variable, per scope: the fixed part with
        # the response, and separately each random term's left-hand side (lme4 builds
        # its model matrix from that alone)
        self.scopes: list = [{}]

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

    def _see(self, v: Variable) -> Variable:
        scope = self.scopes[-1]
        if v not in scope:
            scope[v] = len(scope)
        return v

    def _enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError("formula is nested too deeply")

    def _bound(self, n: int, what: str, pos: int):
        if n > MAX_TERMS:
            raise FormulaError(f"the formula would expand to up to {n:,} terms at '{what}' "
                               f"(position {pos}); at most {MAX_TERMS:,} are allowed: "
                               "use fewer interactions, e.g. (a+b+c)^2 instead of a*b*c")

    def _spend(self, n: int):
        self.work += n
        if self.work > MAX_WORK:
            raise FormulaError(f"the formula needs more than {MAX_WORK:,} term combinations "
                               "to expand; use fewer or smaller interactions")

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
        terms = self._ordered(val.terms, self.scopes[0])
        return Formula(response, intercept, terms, val.random, val.offsets, self.text)

    @staticmethod
    def _ordered(terms: dict, order: dict) -> list:
        """R's order: by degree, then as they were formed; variables in a term by
        their first appearance."""
        out = [tuple(sorted(t, key=order.__getitem__)) for t in terms.values()]
        return sorted(out, key=len)

    def response(self) -> Response:
        kind, val, pos = self.peek()
        if kind == "name" and val == "cbind" and self.peek(1)[1] == "(":
            # cbind(...) is one variable for R: its parts take no place in the order
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
        return Response(name=self._see(self.variable()))

    def simple_name(self) -> Variable:
        kind, val, pos = self.take()
        if kind not in ("name", "qname"):
            raise FormulaError(f"expected a column name at position {pos}")
        return Variable(val)

    def variable(self) -> Variable:
        """NAME, `NAME` or whitelisted-function(NAME)."""
        kind, val, pos = self.take()
        if kind not in ("name", "qname"):
            raise FormulaError(f"expected a column name at position {pos}, found '{val}'")
        if kind == "name" and self.peek()[1] == "(":
            if val not in NUMERIC_FUNCTIONS + FACTOR_FUNCTIONS:
                raise FormulaError(f"function '{val}' (position {pos}) is not allowed in a "
                                   f"formula; allowed: {', '.join(NUMERIC_FUNCTIONS + FACTOR_FUNCTIONS)}, "
                                   "offset() and cbind()")
            self.take("(")
            inner = self.take()
            if inner[0] not in ("name", "qname") or self.peek()[1] != ")":
                raise FormulaError(f"{val}() takes a single column name (position {pos})")
            self.take(")")
            return Variable(inner[1], val)
        return Variable(val)

    def sum(self, top=False) -> _Value:
        self._enter()
        out = _Value()
        sign = "+"
        if self.peek()[1] == "-":
            self.take()
            sign = "-"
        while True:
            pos = self.peek()[2]
            v = self.prod()
            self._apply(out, v, sign, top, pos)
            if self.peek()[1] in ("+", "-"):
                sign = self.take()[1]
                continue
            break
        self.depth -= 1
        return out

    def _apply(self, out: _Value, v: _Value, sign: str, top: bool, pos: int):
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
        self._spend(len(v.terms))
        if sign == "+":
            for k, t in v.terms.items():
                out.terms.setdefault(k, t)
            self._bound(len(out.terms), "+", pos)
        else:
            for k in v.terms:
                out.terms.pop(k, None)

    @staticmethod
    def _product(left: dict, right: dict) -> dict:
        """Every a:b of a term of left and one of right, each once."""
        out: dict = {}
        for ka, a in left.items():
            for kb, b in right.items():
                k = ka | kb
                if k not in out:
                    out[k] = a + tuple(v for v in b if v not in ka)
        return out

    def prod(self) -> _Value:
        # R: * and / have the same precedence and group from the left: a*b/c is (a*b)/c
        left = self.inter()
        while self.peek()[1] in ("*", "/"):
            _, op, pos = self.take()
            right = self.inter()
            self._no_specials(left, right)
            n, m = len(left.terms), len(right.terms)
            if op == "*":
                self._bound(n + m + n * m, "*", pos)
                self._spend(n + m + n * m)
                terms = dict(left.terms)
                for k, t in right.terms.items():
                    terms.setdefault(k, t)
                for k, t in self._product(left.terms, right.terms).items():
                    terms.setdefault(k, t)
            else:
                self._bound(n + m, "/", pos)
                self._spend(n + m)
                # a/b = a + b %in% a: b with every variable of a; lme4 names a nested
                # grouping factor inner-first: (1|a/b) gives b:a and a
                allvars: tuple = ()
                for t in reversed(left.terms.values()):
                    allvars = _merge(allvars, t)
                every = frozenset(allvars)
                terms = dict(left.terms)
                for kb, b in right.terms.items():
                    terms.setdefault(kb | every, _merge(b, allvars))
            left = _Value(terms)
        return left

    def inter(self) -> _Value:
        left = self.power()
        while self.peek()[1] == ":":
            pos = self.take()[2]
            right = self.power()
            self._no_specials(left, right)
            n, m = len(left.terms), len(right.terms)
            self._bound(n * m, ":", pos)
            self._spend(n * m)
            left = _Value(self._product(left.terms, right.terms))
        return left

    def power(self) -> _Value:
        base = self.atom()
        if self.peek()[1] == "^":
            pos = self.take()[2]
            kind, val, p = self.take()
            if kind != "num" or not val.isdigit() or not 1 <= int(val) <= 10:
                raise FormulaError(f"^ takes a whole number from 1 to 10 (position {p})")
            self._no_specials(base, base)
            k, m = int(val), len(base.terms)
            # unions of at most k of the m terms
            self._bound(sum(math.comb(m, j) for j in range(1, min(k, m) + 1)), "^", pos)
            # R's PowerTerms: k - 1 times, every base term with every term so far
            # (base-major order, each once); the first round keeps the base terms
            # themselves (t:t = t)
            current = base.terms
            for _ in range(k - 1):
                self._spend(len(current) * m)
                nxt = self._product(base.terms, current)
                if list(nxt) == list(current):  # the same from here on
                    break
                current = nxt
            base = _Value(dict(current))
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
            # offset(log(e)) is one variable for R: log(e) takes no place in the order
            self.take()
            self.take("(")
            v = self.variable()
            self.take(")")
            out = _Value()
            out.offsets.append(v)
            return out
        if kind in ("name", "qname"):
            v = self._see(self.variable())
            return _Value({frozenset((v,)): (v,)})
        if val == "(":
            self.take()
            self._enter()
            self.scopes.append({})
            inner = self.sum()
            lhs_order = self.scopes.pop()
            if self.peek()[1] in ("|", "||"):
                bar = self.take()[1]
                self.scopes.append({})
                grp = self.sum()
                self.scopes.pop()
                self.take(")")
                self.depth -= 1
                return self._random(inner, lhs_order, grp, bar == "|", pos)
            self.take(")")
            self.depth -= 1
            for v in lhs_order:                 # plain parentheses: same scope
                self._see(v)
            return inner
        raise FormulaError(self._where("expected a term", self.peek()))

    def _random(self, lhs: _Value, order: dict, grp: _Value, correlated: bool,
                pos: int) -> _Value:
        if lhs.random or grp.random or lhs.offsets or grp.offsets:
            raise FormulaError(f"random-effects terms cannot be nested (position {pos})")
        if not grp.terms or grp.intercept is not None:
            raise FormulaError(f"the grouping factor after | (position {pos}) must be "
                               "column names, e.g. (1|site) or (1|site/plot)")
        intercept = True if lhs.intercept is None else lhs.intercept
        if not intercept and not lhs.terms:
            raise FormulaError(f"random-effects term at position {pos} has no terms")
        terms = self._ordered(lhs.terms, order)
        text = self.text[pos - 1:self.toks[self.i - 1][2]]
        groups = list(grp.terms.values())[::-1]     # lme4's order: (1|a/b) -> b:a, a
        out = _Value()
        out.random.append(RandomTerm(intercept, terms, groups, correlated, text))
        return out


def parse_formula(text: str) -> Formula:
    """Parse an lme4-style formula; raises FormulaError with a plain message."""
    if not isinstance(text, str):
        raise FormulaError("the formula must be text, e.g. y ~ x + (1|g)")
    if len(text) > MAX_FORMULA_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_FORMULA_LENGTH} characters")
    if not text.strip():
        raise FormulaError("the formula is empty")
    return _fresh(_parsed(text))


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> Formula:
    """The parse of ``text``, kept: a worksheet refits the same few formulas, and a
    parse costs more than copying its result (errors are raised again each time)."""
    toks = _tokenize(text)
    if sum(1 for t in toks if t[0] == "op" and t[1] == "~") != 1:
        raise FormulaError("a formula needs exactly one ~ (response ~ terms)")
    return _Parser(text, toks).formula()


def _fresh(f: Formula) -> Formula:
    """A copy of a kept parse whose lists are the caller's own (terms, variables and
    the response are immutable and shared), so no caller can change the kept one."""
    return Formula(f.response, f.intercept, list(f.terms),
                   [RandomTerm(rt.intercept, list(rt.terms), list(rt.groups), rt.correlated,
                               rt.text) for rt in f.random],
                   list(f.offsets), f.text)
