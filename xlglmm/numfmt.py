"""How numbers are written as text: one rule for every place that prints them
(``summary()``, ``xlglmm demo``, ``xlglmm recalc``'s log, the templates' number
formats).

* p-values as R's ``format.pval`` with 3 significant digits: ``0.031``,
  ``0.000402``, ``1.66e-09``, and ``< 2e-16`` below the double precision epsilon;
* test statistics (z, Chisq, t) with 2 decimals: ``-2.16``, ``444.38``;
* other numbers as R's ``format(x, digits=4)``: a single number with 4 significant
  digits, fixed or scientific notation whichever is shorter (``715.5``, ``0.1949``,
  ``2.4e-05``); a column of numbers (a table's column, a block's column, the cells
  of the templates) with the decimals that give each value 4 significant digits,
  common to the column (``column``: -3.5696 and -0.4205, as lme4 prints them);
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


def shorten(text: str, width: int, ellipsis: str = ELLIPSIS, strip: bool = True) -> str:
    """``text`` cut to ``width`` characters, ``ellipsis`` included, or unchanged: the
    one rule for cutting text.  ``strip`` drops the spaces the cut leaves before the
    ellipsis.  The #GLMM! message in a cell ends with ``ellipsis="..."``; recalc's
    reasons (its log, its notes) with ``"..."`` and ``strip=False``, as they always
    were."""
    text = str(text)
    if width < 1 or len(text) <= width:
        return text
    kept = text[:width - len(ellipsis)]
    return (kept.rstrip() if strip else kept) + ellipsis


def _decimals_needed(v: float, digits: int) -> int:
    """Decimals that show ``v`` to ``digits`` significant digits, trailing zeros
    dropped (-3.5696 -> 2, as -3.57; 0.42049 -> 4, as 0.4205; 2266.7 -> 0)."""
    return max(0, _sig_needed(v, digits) - 1 - int(f"{abs(v):.{digits - 1}e}".split("e")[1]))


def _sig_needed(v: float, digits: int) -> int:
    """Significant digits that show ``v`` to ``digits`` of them, trailing zeros dropped."""
    mant = f"{abs(v):.{digits - 1}e}".split("e")[0]
    return len(mant.replace(".", "").rstrip("0")) or 1


def column_layout(values, digits: int = 4) -> tuple[str, int]:
    """How R's ``format(x, digits=)`` writes a column of numbers: ``("fixed", d)``
    with d decimals, enough for every value to show ``digits`` significant digits
    and common to the column (-3.5696 and -0.42049 -> -3.5696 and -0.4205, as lme4
    prints a coefficient column; whole numbers: 0), or ``("sci", m)`` with m
    mantissa decimals when that is narrower (R's rule with scipen = 0: 2.4e-05 and
    1e-06 -> 2.4e-05, 1.0e-06).  Booleans, text and blanks are ignored."""
    nums = [float(v) for v in values if isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(float(v))]
    nonzero = [v for v in nums if v != 0]
    if not nonzero or all(v.is_integer() and abs(v) < 1e15 for v in nums):
        return ("fixed", 0)
    d = max(_decimals_needed(v, digits) for v in nonzero)
    m = max(_sig_needed(v, digits) for v in nonzero) - 1
    fixed = max(len(f"{v:.{d}f}") for v in nums)
    sci = max(len(f"{v:.{m}e}") for v in nums)
    return ("fixed", d) if fixed <= sci else ("sci", m)


def column(values, digits: int = 4) -> list[str]:
    """A column of numbers as text under :func:`column_layout` (blanks: "")."""
    kind, d = column_layout(values, digits)
    out = []
    for v in values:
        if v is None or isinstance(v, str):
            out.append("" if v is None else v)
        elif isinstance(v, bool):
            out.append("TRUE" if v else "FALSE")
        elif not math.isfinite(float(v)):
            out.append(significant(float(v)))
        else:
            out.append(f"{float(v):.{d}f}" if kind == "fixed" else f"{float(v):.{d}e}")
    return out


def excel_number_format(values, digits: int = 4) -> str:
    """The Excel number format of one column of a table (or of one value) under the
    same rule as :func:`column`; ``General`` when no number is given."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]
    if not nums:
        return "General"
    kind, d = column_layout(nums, digits)
    if kind == "sci":
        return ("0." + "0" * d if d else "0") + "E+00"
    return "0." + "0" * d if d else "0"


# Excel number formats that follow the same rule (the templates' cells).  A p-value
# shows "< 2e-16" below P_FLOOR, 3 significant digits in scientific notation below
# 0.001, else 3 decimals (Excel's format grammar has room for two conditions only,
# so 0.001 <= p < 0.1 shows 3 decimals rather than 3 significant digits: 0.009, 0.031)
EXCEL_PVALUE = f'[<{P_FLOOR:.22f}]"{P_FLOOR_TEXT}";[<0.001]0.00E+00;0.000'
EXCEL_STATISTIC = "0.00"
EXCEL_NUMBER = "General"
