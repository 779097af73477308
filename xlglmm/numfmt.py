"""How numbers are written as text: one rule for every place that prints them
(``summary()``, ``xlglmm demo``, ``xlglmm recalc``'s log, the templates' number
formats).

* p-values as R's ``format.pval`` with 3 significant digits: ``0.031``,
  ``0.000402``, ``1.66e-09``, and ``< 2e-16`` below the double precision epsilon;
* test statistics (z, Chisq, t) with 2 decimals: ``-2.16``, ``444.38``;
* other numbers as R's ``format(x, digits=4)``: 4 significant digits, fixed or
  scientific notation whichever is shorter (``715.5``, ``0.1949``, ``2.4e-05``);
  whole numbers as integers;
* text cut to a width only with an ellipsis (``shorten``): the full text is kept
  wherever there is room for it.

In Excel number formats (the templates): ``EXCEL_PVALUE``, ``EXCEL_STATISTIC`` and
``excel_number_format`` for a table column.
"""
from __future__ import annotations

import math

P_FLOOR = 2.220446049250313e-16       # R's .Machine$double.eps: format.pval's eps
P_FLOOR_TEXT = "< 2e-16"
ELLIPSIS = "\u2026"


def significant(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` significant digits, as R's ``format(x, digits=)``:
    fixed notation unless scientific is shorter; trailing zeros dropped."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    sci = f"{x:.{digits - 1}e}"
    mant, exp = sci.split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    e = int(exp)
    sci = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    decimals = max(0, digits - 1 - e)
    fixed = f"{x:.{decimals}f}"
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    return fixed if len(fixed) <= len(sci) else sci


def pvalue(p) -> str:
    """R's ``format.pval(p, digits=3)``."""
    if p is None:
        return ""
    p = float(p)
    if math.isnan(p):
        return "NaN"
    if p < P_FLOOR:
        return P_FLOOR_TEXT
    return significant(p, 3)


def statistic(x) -> str:
    """A test statistic (z, Chisq, t): 2 decimals."""
    if x is None:
        return ""
    x = float(x)
    if not math.isfinite(x):
        return significant(x)
    return f"{x:.2f}"


def number(x, digits: int = 4) -> str:
    """Any other number: whole numbers as integers, else ``significant``."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "TRUE" if x else "FALSE"
    f = float(x)
    if math.isfinite(f) and f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return significant(f, digits)


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis, or unchanged."""
    text = str(text)
    if width < 1 or len(text) <= width:
        return text
    return text[:width - 1].rstrip() + ELLIPSIS


def excel_number_format(values, digits: int = 4, max_decimals: int = 4) -> str:
    """The Excel number format for one column of a table (or one value) under the
    same rule: whole numbers as integers (``0``); otherwise common decimals that give
    the smallest nonzero value ``digits`` significant digits, as R's ``format()``
    formats a column, at least 1 and at most ``max_decimals`` of them; scientific
    with ``digits`` significant digits when every value is below 1e-4.  Booleans,
    text and blanks are ignored; ``General`` when no number is left."""
    nums = [float(v) for v in values if isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(float(v))]
    if not nums:
        return "General"
    if all(v.is_integer() and abs(v) < 1e15 for v in nums):
        return "0"
    nonzero = [abs(v) for v in nums if v != 0]
    if max(nonzero) < 1e-4:
        return "0." + "0" * (digits - 1) + "E+00"
    smallest = min(v for v in nonzero if v >= 1e-4)
    decimals = digits - 1 - math.floor(math.log10(smallest))
    return "0." + "0" * min(max_decimals, max(1, decimals))


# Excel number formats that follow the same rule (the templates' cells).  A p-value
# shows "< 2e-16" below P_FLOOR, 3 significant digits in scientific notation below
# 0.001, else 3 decimals (Excel's format grammar has room for two conditions only,
# so 0.001 <= p < 0.1 shows 3 decimals rather than 3 significant digits: 0.009, 0.031)
EXCEL_PVALUE = f'[<{P_FLOOR:.22f}]"{P_FLOOR_TEXT}";[<0.001]0.00E+00;0.000'
EXCEL_STATISTIC = "0.00"
EXCEL_NUMBER = "General"
