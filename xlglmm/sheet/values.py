"""Worksheet input -> validated model data (the spreadsheet's validation layer).

xlwings hands a UDF what Excel holds: a scalar for one cell, lists of lists for a
range (the UDFs ask for ``ndim=2``, so a single row arrives as ``[[a, b, c]]`` and a
single column as ``[[a], [b], [c]]``), ``None`` for blank cells, Excel error values
as text (``"#N/A"``, with ``err_to_str``), numbers as floats, booleans as bools,
dates as ``datetime``.  This module turns those into arrays, decides about header
rows, and raises :class:`SheetError` with one plain sentence naming the argument and
the rows at fault.  Row numbers in messages count from the first row of the range
the argument refers to (1 = its first row, the header if it has one).
"""
from __future__ import annotations

import datetime as _dt
import itertools
import math
from dataclasses import dataclass

import numpy as np

EXCEL_ERRORS = ("#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!",
                "#GETTING_DATA", "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#UNKNOWN!",
                "#CONNECT!", "#BUSY!", "#PYTHON!")
MAX_CELLS = 20_000_000


class SheetError(ValueError):
    """Bad worksheet input; the message is shown in the cell after '#GLMM! '."""


def rows_text(rows, limit=8) -> str:
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) != 1 else ''} {shown}{more}"


def is_blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or \
        (isinstance(v, float) and math.isnan(v))


def is_empty(v) -> bool:
    """An omitted argument, a blank cell, or a range of blank cells."""
    if v is None or (not isinstance(v, (list, tuple, np.ndarray)) and is_blank(v)):
        return True
    if isinstance(v, (list, tuple, np.ndarray)):
        return all(is_blank(c) for row in as_grid(v, "argument") for c in row)
    return False


def is_error(v) -> bool:
    return isinstance(v, str) and v.strip().upper() in EXCEL_ERRORS


def is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def to_float(v) -> float:
    """float(v) for a number cell; an int too large for a float gives inf."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def as_grid(value, name: str) -> list:
    """Any xlwings value -> a rectangular list of rows (possibly empty)."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        return [[value]]
    if not value:
        return []
    if set(map(type, value)) == {list}:
        # what xlwings passes (ndim=2): already a rectangular list of rows -- used as
        # it is, not copied (nothing in the validation layer modifies it)
        widths = set(map(len, value))
        if len(widths) == 1:
            width = widths.pop()
            if width == 0:
                return []
            if len(value) * width > MAX_CELLS:
                raise SheetError(f"{name} has more than {MAX_CELLS:,} cells")
            return value
    if all(not isinstance(r, (list, tuple)) for r in value):
        return [[v] for v in value]      # a 1D list (from Python): one column
    rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in value]
    width = max(len(r) for r in rows)
    if width == 0:
        return []
    if sum(len(r) for r in rows) > MAX_CELLS:
        raise SheetError(f"{name} has more than {MAX_CELLS:,} cells")
    return [r + [None] * (width - len(r)) for r in rows]


@dataclass
class Column:
    """One worksheet column after validation."""

    name: str
    values: list            # raw cell values (data rows only)
    first_row: int          # range row number of the first data row (2 with a header)


def _row_blank(r) -> bool:
    return r.count(None) == len(r) or all(is_blank(v) for v in r)


def _strip_blank_tail(grid: list) -> list:
    """Excel users often select whole columns: drop trailing rows that are blank
    in every column."""
    end = len(grid)
    while end > 0 and _row_blank(grid[end - 1]):
        end -= 1
    return grid if end == len(grid) else grid[:end]


def data_extent(*values) -> int | None:
    """The number of range rows that aligned arguments (y, X, groups, offset...)
    share: the last row holding a value in any of them.  Blank rows below it are
    cut (a whole-column selection), blank cells above it are missing values."""
    extent = 0
    for v in values:
        if not isinstance(v, (list, tuple, np.ndarray)):
            continue
        g = as_grid(v, "argument")
        if len(g) == 1 and len(g[0]) > 1:         # a row of values: not row-aligned
            continue
        extent = max(extent, len(_strip_blank_tail(g)))
    return extent or None


def cut_to_extent(grid: list, rows: int | None) -> list:
    """The first ``rows`` rows (the common extent of the aligned arguments, see
    :func:`data_extent`), or without its blank tail (``rows`` None, or a single row)."""
    if rows is None or (len(grid) == 1 and len(grid[0]) > 1):
        return _strip_blank_tail(grid)
    return grid[:rows]


def vector(value, name: str, required=True, rows: int | None = None):
    """A single row or column -> (values, header or None, orientation).  ``rows``:
    the common extent of the aligned arguments (see :func:`data_extent`)."""
    grid = cut_to_extent(as_grid(value, name), rows)
    if grid and all(is_blank(v) for r in grid for v in r):
        grid = []
    if not grid:
        if required:
            raise SheetError(f"{name} is empty")
        return None, None, None
    nr, nc = len(grid), len(grid[0])
    if nr > 1 and nc > 1:
        raise SheetError(f"{name} must be a single column (it has {nc} columns)")
    if nc > 1:                       # a single row of values
        vals, orient = grid[0], "row"
    else:
        vals, orient = [r[0] for r in grid], "column"
    return vals, None, orient


def split_header(vals: list, n: int, name: str, numeric: bool):
    """Decide whether the first value is a header, given the data length n (or None
    when this argument defines it).  Returns (header or None, data values, offset)."""
    if n is None:
        first = vals[0]
        if numeric and len(vals) > 1 and isinstance(first, str) and not is_error(first) \
                and not is_blank(first) and looks_like_text(first):
            return first.strip(), vals[1:], 1
        return None, vals, 0
    if len(vals) == n + 1:
        first = vals[0]
        if is_blank(first) or is_number(first) and numeric:
            raise SheetError(f"{name} has {len(vals)} rows but y has {n} data rows")
        return str(first).strip(), vals[1:], 1
    if len(vals) != n:
        raise SheetError(f"{name} has {len(vals)} rows but y has {n} data rows: the "
                         "ranges must cover the same rows")
    return None, vals, 0


def looks_like_text(s: str) -> bool:
    """A header cell's text that is not a number ("x1", not "1.5"): a column name."""
    try:
        float(s)
        return False
    except ValueError:
        return True


_NONE = type(None)
FLOAT_TYPES = {float, int, np.float64, _NONE}     # cells a float array holds as they are


def _nonfinite_error(out: np.ndarray, name: str, offset: int):
    inf = np.isinf(out)
    if inf.any():
        raise SheetError(f"{name} has infinite or NaN values in "
                         f"{rows_text(np.flatnonzero(inf) + 1 + offset)}")


def _float_array(cells: list, rows: bool = False) -> np.ndarray | None:
    """Fast path: a float array when every cell is a number or blank (None), as
    for a well-formed numeric range; None (use the cell-by-cell path) otherwise.
    ``cells``: a list of cells, or (rows=True) a list of rows of cells."""
    every = itertools.chain.from_iterable(cells) if rows else cells
    if not set(map(type, every)) <= FLOAT_TYPES:
        return None
    try:
        return np.array(cells, dtype=float)
    except (OverflowError, ValueError, TypeError):
        return None


def numeric(vals: list, name: str, offset: int, allow_bool=False) -> np.ndarray:
    """Cell values -> floats; blanks -> NaN; anything else -> SheetError naming rows."""
    fast = _float_array(vals)
    if fast is not None and fast.shape == (len(vals),):
        _nonfinite_error(fast, name, offset)
        return fast
    out = np.empty(len(vals))
    errors, text, bools, dates, nonfinite = [], [], [], [], []
    for i, v in enumerate(vals):
        row = i + 1 + offset
        if is_blank(v):
            out[i] = np.nan
        elif is_error(v):
            errors.append((row, v.strip().upper()))
        elif isinstance(v, (bool, np.bool_)):
            if allow_bool:
                out[i] = float(v)
            else:
                bools.append(row)
        elif is_number(v):
            f = to_float(v)
            if not math.isfinite(f):
                nonfinite.append(row)
            out[i] = f
        elif isinstance(v, (_dt.date, _dt.datetime)):
            dates.append(row)
        else:
            text.append(row)
    if errors:
        kinds = sorted({e for _, e in errors})
        raise SheetError(f"{name} has Excel error values ({', '.join(kinds)}) in "
                         f"{rows_text(r for r, _ in errors)}; fix them or leave the cells blank")
    if text:
        raise SheetError(f"{name} has non-numeric values in {rows_text(text)}")
    if bools:
        raise SheetError(f"{name} has TRUE/FALSE values in {rows_text(bools)}; use 1/0")
    if dates:
        raise SheetError(f"{name} has dates in {rows_text(dates)}; convert them to numbers")
    if nonfinite:
        raise SheetError(f"{name} has infinite or NaN values in {rows_text(nonfinite)}")
    return out


def _label_text(v) -> str:
    """A non-blank cell as a label (group level or column name)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if is_number(v):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.isoformat()
    return str(v).strip()


_LABEL_TYPE_SETS = ({str, _NONE}, {float, int, np.float64, _NONE}, {bool, _NONE})


def _fast_labels(vals: list) -> np.ndarray | None:
    """Fast path: label each distinct value once (text, numbers or TRUE/FALSE, not
    mixed: True == 1.0 in Python); None when the cell-by-cell path is needed."""
    types = set(map(type, vals))
    if not any(types <= t for t in _LABEL_TYPE_SETS):
        return None
    mapping = {}
    for u in set(vals):
        if is_blank(u):
            mapping[u] = None
        elif is_error(u):
            return None
        else:
            mapping[u] = _label_text(u)
    out = np.empty(len(vals), dtype=object)
    out[:] = [mapping[v] for v in vals]
    return out


def labels(vals: list, name: str, offset: int) -> np.ndarray:
    """Group labels: numbers or text (kept as given; 1 and 1.0 are the same group);
    blanks -> None."""
    fast = _fast_labels(vals)
    if fast is not None:
        return fast
    out = np.empty(len(vals), dtype=object)
    errors = []
    for i, v in enumerate(vals):
        if is_blank(v):
            out[i] = None
        elif is_error(v):
            errors.append(i + 1 + offset)
        else:
            out[i] = _label_text(v)
    if errors:
        raise SheetError(f"{name} has Excel error values in {rows_text(errors)}")
    return out


def matrix(value, name: str, n: int, orient_y: str, kind: str = "numeric",
           rows: int | None = None):
    """A block of columns (one per predictor or grouping factor) aligned with y's
    n data rows.  Returns (list of (column name, array), offset of first data row)."""
    grid = cut_to_extent(as_grid(value, name), rows)
    if not grid:
        raise SheetError(f"{name} is empty")
    nr, nc = len(grid), len(grid[0])
    if nr == 1 and nc in (n, n + 1) and n > 1:
        if orient_y == "row":
            grid = [[v] for v in grid[0]]       # everything laid out in rows
            nr, nc = nc, 1
        else:
            raise SheetError(f"{name} is a single row of {nc} values but y is a column: "
                             f"give {name} as a column ({n} rows)")
    if nr not in (n, n + 1):
        raise SheetError(f"{name} has {nr} rows but y has {n} data rows: the ranges must "
                         "cover the same rows")
    header = None
    offset = 0
    if nr == n + 1:
        header = grid[0]
        if kind == "numeric" and not any(isinstance(h, str) and not is_error(h) and h.strip()
                                         for h in header):
            raise SheetError(f"{name} has {nr} rows but y has {n} data rows")
        grid = grid[1:]
        offset = 1
    elif kind == "numeric" and n > 1 and all(isinstance(h, str) and looks_like_text(h) and
                                             not is_error(h) for h in grid[0]) \
            and all(is_number(r[0]) or is_blank(r[0]) for r in grid[1:]):
        raise SheetError(f"{name}'s first row is text (a header?) but y has no header: "
                         "include y's header cell too, or leave both out")
    cols = []
    prefix = {"numeric": "x", "labels": "group"}[kind]
    used = set()
    block = _float_array(grid, rows=True) if kind == "numeric" and nc > 1 else None
    if block is not None and block.shape != (len(grid), nc):
        block = None
    for j in range(nc):
        h = header[j] if header is not None else None
        cname = str(h).strip() if h is not None and not is_blank(h) else f"{prefix}{j + 1}"
        cname = unique_name(clean_name(cname), used)
        what = f"{name} column {j + 1} ({cname})" if nc > 1 else name
        if block is not None:         # every cell a number or blank: one conversion
            arr = np.ascontiguousarray(block[:, j])
            _nonfinite_error(arr, what, offset)
        else:
            raw = [r[j] for r in grid]
            arr = numeric(raw, what, offset) if kind == "numeric" else \
                labels(raw, f"{name} column {j + 1}" if nc > 1 else name, offset)
        cols.append((cname, arr))
    return cols, offset


MAX_NAME = 60      # characters of a header kept as a column name (for short messages)


def clean_name(s: str) -> str:
    """A header cell as a column name: no backticks (the formula quotes names with
    them), whitespace collapsed, at most MAX_NAME characters."""
    s = " ".join(str(s).replace("`", "'").split())
    if len(s) > MAX_NAME:
        s = s[:MAX_NAME - 3] + "..."
    return s if s else "x"


def unique_name(name: str, used: set) -> str:
    """``name``, or ``name.2``, ``name.3``, ... if taken; the result is added to ``used``."""
    base, k = name, 2
    while name in used:
        name = f"{base}.{k}"
        k += 1
    used.add(name)
    return name


def scalar(value, name: str, default, kind: str, lo=None, hi=None, choices=None):
    """Optional scalar arguments (bool / number / int / text)."""
    if isinstance(value, list):
        grid = as_grid(value, name)
        if len(grid) == 1 and len(grid[0]) == 1:
            value = grid[0][0]
        else:
            raise SheetError(f"{name} must be a single value")
    if is_blank(value):
        return default
    if is_error(value):
        raise SheetError(f"{name} is an Excel error value ({value})")
    if kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if is_number(value) and to_float(value) in (0.0, 1.0):
            return bool(value)
        if isinstance(value, str) and value.strip().upper() in ("TRUE", "FALSE"):
            return value.strip().upper() == "TRUE"
        raise SheetError(f"{name} must be TRUE or FALSE")
    if kind in ("number", "int"):
        if isinstance(value, (bool, np.bool_)) or not is_number(value):
            raise SheetError(f"{name} must be a number")
        f = to_float(value)
        if not math.isfinite(f):
            raise SheetError(f"{name} must be a finite number")
        if kind == "int":
            if not f.is_integer():
                raise SheetError(f"{name} must be a whole number")
            f = int(f)
        if (lo is not None and f < lo) or (hi is not None and f > hi):
            raise SheetError(f"{name} must be between {lo} and {hi}")
        return f
    if kind == "text":
        if not isinstance(value, str):
            raise SheetError(f"{name} must be text")
        v = value.strip()
        if choices and v.lower() not in choices:
            raise SheetError(f"{name} must be one of: {', '.join(choices)}")
        return v.lower() if choices else v
    raise AssertionError(kind)


def table(value, name: str):
    """A table whose first row holds column names -> dict name -> list of values."""
    grid = _strip_blank_tail(as_grid(value, name))
    if len(grid) < 2:
        raise SheetError(f"{name} must be a table with column names in its first row "
                         "and data below")
    header = grid[0]
    names = []
    used = set()
    for j, h in enumerate(header):
        if is_blank(h):
            raise SheetError(f"{name} has a blank column name in column {j + 1}")
        if is_error(h):
            raise SheetError(f"{name} has an Excel error as column name in column {j + 1}")
        s = _label_text(h)
        if s in used:
            raise SheetError(f"{name} has the column name '{s}' twice")
        used.add(s)
        names.append(s)
    cols = {nm: [r[j] for r in grid[1:]] for j, nm in enumerate(names)}
    return cols, 1
