"""Excel's value rules, as ``xlglmm recalc`` computes a formula's values: a range not
read yet (:class:`RangeVal`), an omitted argument (``MISSING``), numbers, text,
booleans, blanks (``None``) and error values (``XLError``).

Coercion (:func:`to_number`, :func:`to_text`, :func:`to_bool`), the operators
(:func:`arith`; :func:`compare` in Excel's order, numbers < text < booleans;
:func:`binary`), equality to 15 digits (:func:`approx_equal`) and elementwise
application over arrays (:func:`broadcast`).  The evaluator
(:mod:`xlglmm.workbook.evaluator`) and the Excel functions
(:mod:`xlglmm.workbook.builtins`) compute a cell's value with these.

The work meter is here too (:func:`spend`): an operation over an array charges it
element by element, so it sits below both of its other users; a recalculation runs
its formulas inside :func:`metering` with its own limit (outside, it is unlimited).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime

from . import excel_formula as xf
from .book import Unsupported
from .excel_formula import range_name
from ..sheet.calling import ErrorValue as XLError, is_grid
from ..sheet.grid import MAX_CELL_TEXT


# ---- values inside the evaluator ----------------------------------------------------------

@dataclass(frozen=True)
class RangeVal:
    sheet: str
    r1: int
    c1: int
    r2: int
    c2: int

    @property
    def shape(self):
        return (self.r2 - self.r1 + 1, self.c2 - self.c1 + 1)

    def __str__(self):
        return f"{xf.quote_sheet(self.sheet)}!{range_name(self.r1, self.c1, self.r2, self.c2)}"


MISSING = object()


# ---- scalar semantics ---------------------------------------------------------------------

def to_number(v):
    """Excel's coercion to a number; returns an XLError on failure."""
    if isinstance(v, XLError):
        return v
    if v is None or v is MISSING:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, datetime):
        from openpyxl.utils.datetime import to_excel
        return float(to_excel(v))
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return XLError("#VALUE!")
    return XLError("#VALUE!")


def to_text(v):
    if isinstance(v, XLError):
        return v
    if v is None or v is MISSING:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.15g}"
    return str(v)


def to_bool(v):
    if isinstance(v, XLError):
        return v
    if v is None or v is MISSING:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        if v.strip().upper() in ("TRUE", "FALSE"):
            return v.strip().upper() == "TRUE"
    return XLError("#VALUE!")


def num_result(x):
    if isinstance(x, XLError):
        return x
    if isinstance(x, complex) or not math.isfinite(x):
        return XLError("#NUM!")
    return float(x)


def arith(op, a, b):
    a, b = to_number(a), to_number(b)
    if isinstance(a, XLError):
        return a
    if isinstance(b, XLError):
        return b
    try:
        if op == "+":
            return num_result(a + b)
        if op == "-":
            return num_result(a - b)
        if op == "*":
            return num_result(a * b)
        if op == "/":
            return XLError("#DIV/0!") if b == 0 else num_result(a / b)
        if op == "^":
            if a == 0 and b == 0:
                return XLError("#NUM!")
            if a == 0 and b < 0:
                return XLError("#DIV/0!")
            return num_result(math.pow(a, b))
    except (OverflowError, ValueError):
        return XLError("#NUM!")
    raise AssertionError(op)


def rank_key(v):
    """Excel's comparison order: numbers < text < booleans; text case-insensitive."""
    if v is None or v is MISSING:
        return None
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, float(v))
    return (1, str(v).lower())


APPROX = 2.0 ** -48      # relative difference below which two numbers compare equal


def approx_equal(a: float, b: float) -> bool:
    """Numbers equal as spreadsheets compare them in =, <, ... and COUNTIF: to about 15
    significant digits (LibreOffice's rtl::math::approxEqual uses the same 2^-48; Excel
    compares to 15 digits), so values one bit apart are equal there -- but not in RANK,
    which compares exactly in both programs."""
    return a == b or abs(a - b) <= APPROX * max(abs(a), abs(b))


def compare(op, a, b):
    if isinstance(a, XLError):
        return a
    if isinstance(b, XLError):
        return b
    ka, kb = rank_key(a), rank_key(b)
    if ka is None and kb is None:
        ka = kb = (0, 0.0)
    elif ka is None:
        ka = (kb[0], {0: 0.0, 1: "", 2: False}[kb[0]])
    elif kb is None:
        kb = (ka[0], {0: 0.0, 1: "", 2: False}[ka[0]])
    if ka[0] == kb[0] == 0 and approx_equal(ka[1], kb[1]):
        ka = kb
    return {"=": ka == kb, "<>": ka != kb, "<": ka < kb, ">": ka > kb,
            "<=": ka <= kb, ">=": ka >= kb}[op]


def broadcast(fn, *vals):
    """Apply a scalar function elementwise (Excel's array broadcasting)."""
    grids = [v for v in vals if is_grid(v)]
    if not grids:
        return fn(*vals)
    nr = max(len(g) for g in grids)
    nc = max(len(g[0]) for g in grids)
    spend(nr * nc)

    def at(v, i, j):
        if not is_grid(v):
            return v
        h, w = len(v), len(v[0])
        ii = 0 if h == 1 else i
        jj = 0 if w == 1 else j
        if ii >= h or jj >= w:
            return XLError("#N/A")
        return v[ii][jj]
    return [[fn(*(at(v, i, j) for v in vals)) for j in range(nc)] for i in range(nr)]




def binary(op, a, b):
    """``a op b`` for two operand values (ranges already read)."""
    if op in ("+", "-", "*", "/", "^"):
        return broadcast(lambda x, y: arith(op, x, y), a, b)
    if op == "&":
        def cat(x, y):
            x, y = to_text(x), to_text(y)
            if isinstance(x, XLError):
                return x
            if isinstance(y, XLError):
                return y
            # as Excel: a text longer than a cell holds is #VALUE! (a doubling chain of
            # names would otherwise build gigabytes)
            return XLError("#VALUE!") if len(x) + len(y) > MAX_CELL_TEXT else x + y
        return broadcast(cat, a, b)
    return broadcast(lambda x, y: compare(op, x, y), a, b)


# ---- the work meter --------------------------------------------------------------------

class Meter:
    """The work done by all formulas of a recalculation (cells read, formula parts
    evaluated, elements computed): past ``limit`` every further step is refused."""

    def __init__(self, limit=None):
        self.used = 0
        self.limit = limit

    def spend(self, n: int) -> None:
        self.used += n
        if self.limit is not None and self.used > self.limit:
            raise Unsupported("#VALUE!", f"not evaluated: the workbook's formulas need more "
                              f"than recalc's limit of {self.limit:,} steps in all (cells "
                              "read and formula parts evaluated)")


_METER = Meter()          # the running engine's meter (unlimited outside recalc)


def spend(n: int) -> None:
    _METER.spend(n)


@contextlib.contextmanager
def metering(meter: Meter):
    """Every step inside is charged to ``meter`` (a recalculation's own, with its
    limit); the meter outside is restored afterwards."""
    global _METER
    outer, _METER = _METER, meter
    try:
        yield meter
    finally:
        _METER = outer
