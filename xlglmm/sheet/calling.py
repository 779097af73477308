"""The calling convention of the worksheet functions: how a host hands cell values to
one of them and takes its result back, the way xlwings does it for Excel.

Every host calls the functions of :data:`xlglmm.sheet.udfs.FUNCTIONS` so: Excel
through xlwings itself, the Calc bridge (:mod:`xlglmm.bridges.libreoffice`) and
``xlglmm recalc`` (:mod:`xlglmm.workbook.evaluator`) with :func:`xlwings_value` for
each argument and :func:`udf_result` for the result.  A cell's call: an argument's
cells, read as rows of values (``None`` for a blank), arrive as rows when the
argument is declared as a range (``ndim=2``), otherwise as one value, or a list for
one row or one column; the function's return value becomes the cells shown -- rows
padded to one width, NumPy scalars as Python numbers, NaN and infinities as the error
value #NUM! (:class:`ErrorValue`).
"""
from __future__ import annotations

import math
from datetime import datetime


class ErrorValue(str):
    """An Excel error value (#N/A, #NAME?, ...): text to a host that knows no error
    values; :mod:`xlglmm.workbook.xlsx_write` writes it with t="e"."""


def is_grid(v) -> bool:
    """A worksheet value as rows (a list of lists) rather than one value."""
    return isinstance(v, list)

def xlwings_value(v, ndim2: bool):
    """A worksheet value -- a grid (list of rows) or one value -- as xlwings hands it to
    a UDF argument: as rows for an argument declared ``ndim=2``; otherwise one cell
    becomes its value, one row or one column a list (xlwings' default conversion)."""
    if is_grid(v):
        if ndim2 or len(v) > 1 and len(v[0]) > 1:
            return v
        if len(v) == 1 and len(v[0]) == 1:
            return v[0][0]
        if len(v) == 1:
            return v[0]
        return [r[0] for r in v]
    return [[v]] if ndim2 else v


def udf_result(result):
    """A UDF's return value as the cells Excel shows: rows padded to one width, NumPy
    scalars as Python numbers, NaN and infinities as #NUM!; a single value as is."""
    if isinstance(result, (list, tuple)):
        rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in result]
        if not rows:
            return [[None]]
        width = max(len(r) for r in rows) or 1
        return [[clean_result(v) for v in r] + [None] * (width - len(r)) for r in rows]
    return clean_result(result)


def clean_result(v):
    if v is None or isinstance(v, (bool, str, datetime)):
        return v
    if hasattr(v, "item") and not isinstance(v, (list, tuple)):
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else ErrorValue("#NUM!")
    return v
