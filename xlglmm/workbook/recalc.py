"""``xlglmm recalc``: evaluate a workbook's xlglmm formulas outside Excel.

For servers and for Mac/Linux users: every formula that calls an xlglmm worksheet
function (GLMM_POISSON, GLMM_BINOMIAL, GLMM_NEGBIN, LMM, GLMM, GLMM_RANEF, GLMM_PREDICT,
GLMM_COMPARE: ``xlglmm.sheet.udfs.FUNCTIONS``, with their parameters and range arguments) is
evaluated with the same Python functions Excel calls (``xlglmm.sheet.udfs``), with the same
arguments: ranges are read from the workbook into the worksheet-shaped values
xlwings hands a UDF (lists of rows, ``None`` for blank cells).  The result is written
into the cells the way Excel 365 spills it -- the block from the formula's cell
rightwards and downwards, an error message into that cell alone -- and the formula
stays in place with its result cached (see :mod:`xlglmm.workbook.xlsx_write`).

How formulas are read: :mod:`xlglmm.workbook.excel_formula` parses the text (a whitelist
grammar; text is never evaluated as code).  Supported references: ``A1``, ``A1:B9``,
``A:C``, ``Sheet!A1``, ``'My sheet'!A1``, spill references ``B5#`` (stored by Excel
as ``_xlfn.ANCHORARRAY(B5)``), Excel-table references ``Table[col]``,
``Table[[#All],[a]:[b]]``, ``Table[[#This Row],[col]]``, and defined names.  Besides
the xlglmm functions, a small set of Excel functions is evaluated so that helper
cells stay consistent (``BUILTINS``: LN, LOG, EXP, SQRT, ABS, ROUND, IF, SUM, MIN,
MAX, AVERAGE, COUNT, COUNTIF, SMALL, LARGE, INDEX, MATCH, RANK, ROWS, COLUMNS, ...) plus the
arithmetic, text and comparison operators.

What is not guessed: a formula calling an xlglmm function together with an unknown
function gets ``#NAME?``, one with a reference that cannot be resolved (unknown
sheet, table, column or name, another workbook) ``#REF!``, a spill onto occupied
cells ``#SPILL!``; each is listed in the report.  Other formulas that use functions
outside ``BUILTINS`` keep their stored value (and are listed as notes); if an xlglmm
formula needs such a cell and it holds no stored value, that formula is reported.

Evaluation order follows the references: a formula is evaluated when another needs
its value, so ``=GLMM_COMPARE(B5#, N5#)`` sees the two fits' new blocks, and a
range that a block could spill into is read only after that block is computed.  That
dependency is followed with an explicit stack (chains of any length), and the cost is
bounded (``MAX_RANGE_CELLS``, ``MAX_WORK``, ``MAX_EVAL_DEPTH``; the parser's
``MAX_NESTING``): a small hostile file gets a message, not a hang.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import math
import re
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Callable

from . import excel_formula as xf
from .excel_formula import (ArrayLit, Binary, Bool, Call, ErrorLit, FormulaSyntaxError,
                            Missing, Name, Num, Percent, Ref, Str, StructRef, Unary,
                            cell_name, range_name)
from ..files import (Exit, FileProblem, InputProblem, OutputProblem, UsageProblem,
                    check_input, check_output, write_atomically)
from .xlsx_read import LIMITS_TEXT, TooLarge, check_package
from .xlsx_write import CellWrite, ErrorValue, XlsxError, patch

XLError = ErrorValue       # an Excel error value: a str subclass ("#N/A", ...)


@functools.lru_cache(maxsize=4)
def _udf_call_pattern(names: tuple) -> re.Pattern:
    """Finds a call of one of ``names`` (the worksheet functions) in upper-cased formula
    text: the name as a whole word, then "("."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\s*\(")


class Unsupported(Exception):
    """A formula that cannot be evaluated: ``code`` is the Excel error shown
    (#NAME? for unknown functions, #REF! for unresolvable references)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# The workbook cannot be read or written at all (or the arguments do not go
# together): a FileProblem says which path, what is wrong and what to do, and its
# ``code`` is the command's exit status (xlglmm.files.Exit).
RecalcError = FileProblem


# ---- the workbook as read ---------------------------------------------------------------

@dataclass
class FormulaCell:
    sheet: str
    row: int
    col: int
    text: str                       # '=...'
    array_ref: tuple | None         # (r1, c1, r2, c2) of an array formula
    cached: object
    node: object = None
    parse_error: str | None = None

    @property
    def key(self):
        return (self.sheet, self.row, self.col)

    @property
    def where(self) -> str:
        return f"{self.sheet}!{cell_name(self.row, self.col)}"


@dataclass
class TableInfo:
    name: str
    sheet: str
    r1: int
    c1: int
    r2: int
    c2: int
    header_rows: int
    totals_rows: int
    columns: list


def _norm(v, data_type=None):
    """An openpyxl cell value -> what xlwings hands a UDF (floats, bool, str, None,
    datetime; errors as XLError)."""
    if v is None:
        return None
    if data_type == "e":
        return XLError(str(v))
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (datetime, date)):
        return v if isinstance(v, datetime) else datetime(v.year, v.month, v.day)
    return str(v) if not isinstance(v, str) else v


def guard_package(path):
    """:func:`xlglmm.workbook.xlsx_read.check_package` (sizes counted while unpacking, XML
    well-formed without DTDs, cells inside the limits), before openpyxl unpacks
    anything; its refusal as an :class:`InputProblem` (exit 3), one line."""
    try:
        return check_package(path)
    except TooLarge as e:
        raise InputProblem(path, f"is too large to read safely: {e}",
                           f"xlglmm recalc reads {LIMITS_TEXT}; nothing was written") from None
    except XlsxError as e:
        raise InputProblem(path, f"cannot be read as a workbook: {e}",
                           "open it in Excel or Calc and save it again as .xlsx; "
                           "nothing was written") from None


def _cached_values(path, wb_f) -> dict:
    """Sheet -> {(r, c): the stored value of a formula cell} (normalized by
    :func:`_norm`), for the formula cells of ``wb_f`` only.  openpyxl's own worksheet
    parser, as ``load_workbook(data_only=True)`` runs it, but streaming (read-only),
    so the other cells are not held a second time: about 40% less memory than a
    second full load."""
    import openpyxl
    from openpyxl.worksheet._reader import WorkSheetParser

    wanted = {ws.title: {k for k, cell in ws._cells.items() if cell.data_type == "f"
                         or not isinstance(cell.value, (str, int, float, bool, type(None),
                                                        datetime, date))}
              for ws in wb_f.worksheets}
    wb_v = openpyxl.load_workbook(path, data_only=True, read_only=True)
    try:
        out = {}
        for s, keys in wanted.items():
            if not keys:
                continue
            ws = wb_v[s]
            got = out[s] = {}
            with ws._get_source() as src:
                parser = WorkSheetParser(src, ws._shared_strings, data_only=True,
                                         epoch=wb_v.epoch, date_formats=wb_v._date_formats,
                                         timedelta_formats=wb_v._timedelta_formats)
                for _, row in parser.parse():
                    for cell in row:
                        key = (cell["row"], cell["column"])
                        if key in keys:
                            got[key] = _norm(cell["value"], cell["data_type"])
        return out
    finally:
        wb_v.close()


class Book:
    """Formulas, cached values, tables and names of an .xlsx file (via openpyxl,
    after :func:`guard_package`)."""

    def __init__(self, path):
        import openpyxl
        from openpyxl.worksheet.formula import ArrayFormula

        self.path = check_input(path)
        self.package = guard_package(self.path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wb_f = openpyxl.load_workbook(self.path, data_only=False)
                cached_values = _cached_values(self.path, wb_f)
        except Exception as e:       # zip, XML or openpyxl errors
            detail = str(e).strip() or type(e).__name__
            raise InputProblem(self.path, f"cannot be read as a workbook (damaged? {detail})",
                               "open it in Excel or Calc and save it again as .xlsx") \
                from None
        self.sheet_names = list(wb_f.sheetnames)
        self.values: dict = {}
        self.formulas: dict = {}
        self.extent: dict = {}
        self.tables: dict = {}
        self.names: dict = {}
        for ws in wb_f.worksheets:
            s = ws.title
            cached_of = cached_values.get(s, {})
            vals, forms = {}, {}
            max_r = max_c = 0
            for (r, c), cell in ws._cells.items():
                cached = cached_of.get((r, c))
                raw = cell.value
                if cell.data_type == "f" or isinstance(raw, ArrayFormula):
                    if isinstance(raw, ArrayFormula):
                        text, ref = raw.text, xf.parse_range(raw.ref)
                        if ref[:2] != (r, c):
                            ref = None
                    elif isinstance(raw, str):
                        text, ref = raw, None
                    else:                 # a data-table formula: left as it is
                        vals[(r, c)] = cached
                        continue
                    if not text.startswith("="):
                        text = "=" + text
                    forms[(r, c)] = FormulaCell(s, r, c, text, ref, cached)
                    vals[(r, c)] = cached
                else:
                    vals[(r, c)] = _norm(raw, cell.data_type)
                if raw is not None or cached is not None:
                    max_r, max_c = max(max_r, r), max(max_c, c)
            self.values[s] = vals
            self.formulas[s] = forms
            self.extent[s] = (max_r, max_c)
            for t in ws.tables.values():
                r1, c1, r2, c2 = xf.parse_range(t.ref)
                cols = [tc.name for tc in t.tableColumns] or \
                    [str(ws.cell(r1, c).value) for c in range(c1, c2 + 1)]
                self.tables[t.displayName.lower()] = TableInfo(
                    t.displayName, s, r1, c1, r2, c2,
                    1 if t.headerRowCount is None else int(t.headerRowCount),
                    int(t.totalsRowCount or 0), cols)
            for name, dn in getattr(ws, "defined_names", {}).items():
                self.names[(s.lower(), name.lower())] = dn.attr_text
        for name, dn in wb_f.defined_names.items():
            self.names[(None, name.lower())] = dn.attr_text

    def sheet(self, name: str | None, default: str) -> str:
        if name is None:
            return default
        for s in self.sheet_names:
            if s.lower() == name.lower():
                return s
        raise Unsupported("#REF!", f"there is no sheet named '{name}'")

    def formula_texts(self) -> dict:
        return {s: {k: fc.text[1:] for k, fc in f.items()} for s, f in self.formulas.items()}


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


def _is_grid(v) -> bool:
    return isinstance(v, list)


def _inside(region, r, c) -> bool:
    return region[0] <= r <= region[2] and region[1] <= c <= region[3]


def _overlap(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


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


def _num_result(x):
    if isinstance(x, XLError):
        return x
    if isinstance(x, complex) or not math.isfinite(x):
        return XLError("#NUM!")
    return float(x)


def _arith(op, a, b):
    a, b = to_number(a), to_number(b)
    if isinstance(a, XLError):
        return a
    if isinstance(b, XLError):
        return b
    try:
        if op == "+":
            return _num_result(a + b)
        if op == "-":
            return _num_result(a - b)
        if op == "*":
            return _num_result(a * b)
        if op == "/":
            return XLError("#DIV/0!") if b == 0 else _num_result(a / b)
        if op == "^":
            if a == 0 and b == 0:
                return XLError("#NUM!")
            if a == 0 and b < 0:
                return XLError("#DIV/0!")
            return _num_result(math.pow(a, b))
    except (OverflowError, ValueError):
        return XLError("#NUM!")
    raise AssertionError(op)


def _rank_key(v):
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


def _compare(op, a, b):
    if isinstance(a, XLError):
        return a
    if isinstance(b, XLError):
        return b
    ka, kb = _rank_key(a), _rank_key(b)
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


def _broadcast(fn, *vals):
    """Apply a scalar function elementwise (Excel's array broadcasting)."""
    grids = [v for v in vals if _is_grid(v)]
    if not grids:
        return fn(*vals)
    nr = max(len(g) for g in grids)
    nc = max(len(g[0]) for g in grids)
    _spend(nr * nc)

    def at(v, i, j):
        if not _is_grid(v):
            return v
        h, w = len(v), len(v[0])
        ii = 0 if h == 1 else i
        jj = 0 if w == 1 else j
        if ii >= h or jj >= w:
            return XLError("#N/A")
        return v[ii][jj]
    return [[fn(*(at(v, i, j) for v in vals)) for j in range(nc)] for i in range(nr)]




def _binary(op, a, b):
    """``a op b`` for two operand values (ranges already read)."""
    if op in ("+", "-", "*", "/", "^"):
        return _broadcast(lambda x, y: _arith(op, x, y), a, b)
    if op == "&":
        def cat(x, y):
            x, y = to_text(x), to_text(y)
            if isinstance(x, XLError):
                return x
            if isinstance(y, XLError):
                return y
            # as Excel: a text longer than a cell holds is #VALUE! (a doubling chain of
            # names would otherwise build gigabytes)
            return XLError("#VALUE!") if len(x) + len(y) > xf.MAX_CELL_TEXT else x + y
        return _broadcast(cat, a, b)
    return _broadcast(lambda x, y: _compare(op, x, y), a, b)


def _shorten(text: str, limit: int = 290) -> str:
    """A message (or a formula quoted in one) cut to ``limit`` characters: a reason
    that quotes another cell's reason, which quotes another's... stays one line."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- the engine ---------------------------------------------------------------------------

@dataclass
class Outcome:
    where: str
    function: str                   # the first xlglmm function called, or ""
    status: str                     # ok | glmm-error | error | kept
    message: str = ""
    seconds: float = 0.0
    shape: tuple = (1, 1)
    fitted: int = 0                 # number of model fits run by this formula
    reused: bool = False            # a cached fit or block answered (no fit ran)
    compiled: float = 0.0           # seconds compiling the kernels (not in ``seconds``)


@dataclass
class RecalcResult:
    source: Path
    output: Path | None
    outcomes: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    dynamic: bool = False
    fitlog: FitLog | None = None        # the model fits run (count, seconds)

    @property
    def xlglmm(self):
        return [o for o in self.outcomes if o.function]

    @property
    def problems(self):
        return [o for o in self.outcomes if o.function and o.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.problems


def _no_progress(stage, evaluations):
    pass


@dataclass
class FitLog:
    """What the worksheet functions' fits did inside :func:`watching_fits`: how many
    model fits ran (``glmer`` or ``lmer`` calls; a cache hit runs none) and the time
    spent inside them.  ``compile_seconds`` is the part of that time spent compiling
    the numerical kernels, for the engine's compile callback to add to
    (``compiled``); ``fit_seconds`` is the rest: the fitting alone.  ``progress``
    (``progress(stage, evaluations)``) is told of each fit's start and stages."""

    fits: int = 0
    seconds: float = 0.0
    compile_seconds: float = 0.0
    progress: Callable = field(default=_no_progress, repr=False, compare=False)

    def compiled(self, seconds: float) -> None:
        self.compile_seconds += float(seconds)

    @property
    def fit_seconds(self) -> float:
        return max(0.0, self.seconds - self.compile_seconds)

    @contextlib.contextmanager
    def fitting(self, kind: str):
        """Around one fit (the observer :func:`xlglmm.sheet.models.observing_fits` calls):
        counts and times it, and yields the GLMM fit's progress callback.  ``lmer``
        takes no progress callback: an LMM reports its start only (a ticker shows its
        elapsed time)."""
        from ..engine import jit
        self.fits += 1
        self.progress("start", 0)
        if kind == "lmm":
            self.progress("fitting a linear mixed model", 0)
        clock, n0 = jit.Stopwatch(), jit.compilations()
        try:
            yield self.progress if kind == "glmm" else None
        finally:
            self.seconds += time.perf_counter() - clock.start
            if jit.compilations() > n0:   # not a mere load from Numba's cache
                self.compiled(clock.compiled())


@contextlib.contextmanager
def watching_fits(progress):
    """Make the worksheet functions' fits report progress (``progress(stage,
    evaluations)``, e.g. :meth:`Ticker.progress`) and count them, through the hook
    :func:`xlglmm.sheet.models.observing_fits` offers.  Yields the :class:`FitLog`."""
    from ..engine import jit
    from ..sheet import models
    log = FitLog(progress=progress)

    def compiling(what, _seconds):
        # the first fit on a machine compiles the kernels: say so on the status line
        if what == "start":
            progress("compiling the numerical kernels for this machine, once", 0)
        else:
            progress("fitting", 0)
    with models.observing_fits(log), jit.announce(compiling):
        yield log


def _cache_hits() -> int:
    from ..sheet import cache
    return cache.FITS.hits + cache.BLOCKS.hits


class Ticker:
    """A live status line for long fits (on a terminal), or a line every 10 s.

    One thread serves every formula of a recalculation (a thread started and joined
    per formula cost 3 ms each: 2,000 formulas spent 7 s in thread handling); it
    exits by itself after a second without a label and is started again by
    :meth:`begin`."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.label = None
        self.t0 = 0.0
        self.stage = ""
        self._lock = threading.Lock()
        self._thread = None
        self._last_note = 0.0
        self._shown = False
        self.width = max(20, min(110, shutil.get_terminal_size((100, 24)).columns - 1))

    def progress(self, stage, evaluations):
        if stage == "start":
            self.stage = "fitting"
        elif evaluations:
            self.stage = f"{stage}, {evaluations} deviance evaluations"
        else:
            self.stage = stage

    def begin(self, label):
        self.end()
        with self._lock:
            self.label = label
            self.t0 = time.perf_counter()
            self._last_note = self.t0
            self.stage = ""
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

    def _run(self):
        idle = 0
        while True:
            time.sleep(0.25)
            with self._lock:
                if self.label is None:
                    idle += 1
                    if idle >= 4:
                        self._thread = None
                        return
                    continue
                idle = 0
                el = time.perf_counter() - self.t0
                if self.tty and el > 0.5:
                    msg = f"  {self.label} ... {el:.0f} s" + \
                        (f" ({self.stage})" if self.stage else "")
                    self.stream.write("\r" + msg[:self.width].ljust(self.width))
                    self.stream.flush()
                    self._shown = True
                elif not self.tty and time.perf_counter() - self._last_note >= 10:
                    self._last_note = time.perf_counter()
                    self.stream.write(f"  {self.label}: still running after {el:.0f} s"
                                      + (f" ({self.stage})" if self.stage else "") + "\n")
                    self.stream.flush()

    def end(self):
        with self._lock:
            self.label = None
            if self._shown:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
                self._shown = False


# ---- cost limits of the evaluator -----------------------------------------------------------

# A range that must be read cell by cell (an argument of an xlglmm function, INDEX,
# MATCH, an array operation...) may cover at most this many cells of the sheet's used
# part; SUM, COUNT, COUNTIF, MIN, MAX, AVERAGE, RANK, SMALL and LARGE read only the
# cells that hold something, so they take any range.
MAX_RANGE_CELLS = 5_000_000
# All formulas of a workbook together: cells read plus formula parts evaluated.
MAX_WORK = 20_000_000
# Levels of nesting while evaluating one formula, the defined names it uses included.
MAX_EVAL_DEPTH = 250


class _Need(BaseException):
    """Raised inside a formula's evaluation when it needs formula cells that are not
    evaluated yet (``cells``, in the order it reads them): :meth:`Engine.evaluate`
    evaluates them first -- an explicit stack, not Python recursion, so a chain of
    100,000 cells is no deeper than one -- and then evaluates the formula again.  A
    BaseException, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, cells):
        super().__init__()
        self.cells = cells


class _Meter:
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


_METER = _Meter()          # the running engine's meter (unlimited outside recalc)


def _spend(n: int) -> None:
    _METER.spend(n)


class _Rects:
    """Rectangles (r1, c1, r2, c2), each with an item, found by the cells they cover:
    buckets of 64 x 64 cells, and a rectangle over more than 256 buckets is checked by
    every query.  Queries return the items in the order they were added."""

    B = 64

    def __init__(self):
        self.items: list = []
        self.buckets: dict = {}
        self.big: list = []

    def add(self, rect, item) -> None:
        i = len(self.items)
        self.items.append((rect, item))
        b = self.B
        br1, bc1, br2, bc2 = rect[0] // b, rect[1] // b, rect[2] // b, rect[3] // b
        if (br2 - br1 + 1) * (bc2 - bc1 + 1) > 256:
            self.big.append(i)
            return
        for x in range(br1, br2 + 1):
            for y in range(bc1, bc2 + 1):
                self.buckets.setdefault((x, y), []).append(i)

    def at(self, r, c) -> list:
        ids = self.buckets.get((r // self.B, c // self.B), [])
        if self.big:
            ids = sorted(set(ids).union(self.big))
        return [self.items[i][1] for i in ids if _inside(self.items[i][0], r, c)]

    def overlapping(self, rect) -> list:
        b = self.B
        br1, bc1, br2, bc2 = rect[0] // b, rect[1] // b, rect[2] // b, rect[3] // b
        if (br2 - br1 + 1) * (bc2 - bc1 + 1) > max(64, len(self.buckets)):
            ids = range(len(self.items))
        else:
            found = set(self.big)
            for x in range(br1, br2 + 1):
                for y in range(bc1, bc2 + 1):
                    found.update(self.buckets.get((x, y), ()))
            ids = sorted(found)
        return [self.items[i][1] for i in ids if _overlap(self.items[i][0], rect)]


def _keys_in(keys: list, present, r1, c1, r2, c2) -> list:
    """The (row, col) keys inside a rectangle, in row-major order: ``keys`` sorted,
    ``present`` a set or dict of the same keys.  Costs the smaller of the rectangle's
    size and the number of keys in its rows."""
    i = bisect.bisect_left(keys, (r1, 0))
    j = bisect.bisect_right(keys, (r2, xf.MAX_COL + 1))
    if (r2 - r1 + 1) * (c2 - c1 + 1) <= j - i:
        return [(r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)
                if (r, c) in present]
    return [k for k in keys[i:j] if c1 <= k[1] <= c2]


class Engine:
    """Evaluates a :class:`Book`'s formulas.  A formula is evaluated when another needs
    its value; that dependency is followed with an explicit stack (see :class:`_Need`).
    Ranges are read through indexes of the stored cells and of the blocks' regions, so
    the cost of a read follows the cells that hold something, not the range's size."""

    def __init__(self, book: Book, out=None, stream=None):
        self.book = book
        self.out = out or (lambda s: None)
        from ..sheet import udfs
        self.specs = udfs.FUNCTIONS     # the worksheet functions, as udfs.py declares them
        self.done: set = set()
        self.busy: set = set()          # formulas being evaluated (waiting for others)
        self.kept: dict = {}            # key -> reason (stored value left in place)
        self.values: dict = {}          # (sheet, r, c) -> new value
        self.regions: dict = {}         # anchor key -> (r1, c1, r2, c2) it now covers
        self.spilling: set = set()      # anchors whose region is a spill (xlglmm)
        self.outcomes: list = []
        self.notes: list = []
        self._noted: set = set()
        self.ticker = Ticker(stream if stream is not None else sys.stderr)
        self._names_busy: set = set()
        self._name_trees: dict = {}         # a defined name's text -> its parsed tree
        self._name_cell = None              # the formula cell _name_values belong to
        self._name_values: dict = {}        # (scope, name) -> its value in that cell
        self.fitlog = FitLog()
        self.meter = _Meter(MAX_WORK)
        self._depth = 0                  # nesting of eval() in the formula being evaluated
        self._partial: dict = {}         # key -> work of an xlglmm formula's earlier attempts
        self._reg_max = (0, 0)           # the furthest row and column of any region
        self._xl: dict = {}              # key -> the xlglmm function a formula calls, or ""
        # anchors: formula cells that own a region of cells (array formulas from the
        # file, and every xlglmm formula, which may spill)
        self.anchors: dict = {s: [] for s in book.sheet_names}
        self._pos: dict = {}             # anchor key -> its place in anchors[sheet]
        self._old: dict = {s: _Rects() for s in book.sheet_names}    # array_refs
        self._reg: dict = {s: _Rects() for s in book.sheet_names}    # regions now
        self._xl_rows: dict = {s: [] for s in book.sheet_names}      # (row, pos) of xlglmm
        self._fkeys: dict = {}           # sheet -> sorted keys of its formula cells
        self._vkeys: dict = {}           # sheet -> sorted keys of its stored cells
        for s, forms in book.formulas.items():
            for fc in forms.values():
                try:
                    fc.node = xf.parse(fc.text)
                except FormulaSyntaxError as e:
                    fc.parse_error = str(e)
                except RecursionError:          # never, with the parser's depth limit
                    fc.parse_error = f"formula nested deeper than {xf.MAX_NESTING} levels"
                xl = self.xlglmm_function(fc)
                if fc.array_ref is not None or xl:
                    pos = len(self.anchors[s])
                    self.anchors[s].append(fc)
                    self._pos[fc.key] = pos
                    if fc.array_ref is not None:
                        self._old[s].add(fc.array_ref, pos)
                    if xl:
                        self._xl_rows[s].append((fc.row, pos))
            self._xl_rows[s].sort()
        # the log's first column fits every xlglmm formula's cell name
        self.where_width = max([16] + [len(fc.where) for a in self.anchors.values()
                                       for fc in a if self.is_xlglmm(fc)])

    # -- classification
    def is_xlglmm(self, fc: FormulaCell) -> bool:
        return bool(self.xlglmm_function(fc))

    def xlglmm_function(self, fc: FormulaCell) -> str:
        name = self._xl.get(fc.key)
        if name is None:
            name = self._xl[fc.key] = self._xlglmm_function(fc)
        return name

    def _xlglmm_function(self, fc: FormulaCell) -> str:
        if fc.node is not None:
            for name in xf.functions_called(fc.node):
                if name in self.specs:
                    return name
            return ""
        # a formula that does not parse: the first xlglmm function it names before "("
        m = _udf_call_pattern(tuple(self.specs)).search(fc.text.upper())
        return m.group(1) if m else ""

    # -- running
    def run(self):
        global _METER
        with watching_fits(self.ticker.progress) as self.fitlog:
            outer, _METER = _METER, self.meter
            try:
                for s in self.book.sheet_names:
                    for fc in sorted(self.book.formulas[s].values(), key=lambda f: (f.row, f.col)):
                        if self.is_xlglmm(fc):
                            self.evaluate(fc)
                for s in self.book.sheet_names:
                    for fc in sorted(self.book.formulas[s].values(), key=lambda f: (f.row, f.col)):
                        self.evaluate(fc)
            finally:
                _METER = outer
                self.ticker.end()

    def note(self, key, text):
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    # -- the order of evaluation
    def evaluate(self, fc: FormulaCell):
        """Evaluate ``fc`` and, first, every formula it needs: a formula that reads a
        cell not evaluated yet stops (:class:`_Need`), waits on the stack while that
        cell is evaluated, and starts again; a formula that reads one still waiting is
        a circular reference (#REF!, as Excel's own recursion would find it)."""
        if fc.key in self.done:
            return
        stack = [fc]
        while stack:
            top = stack[-1]
            if top.key in self.done:
                stack.pop()
                continue
            self.busy.add(top.key)
            try:
                if self.is_xlglmm(top):
                    self._evaluate_xlglmm(top)
                else:
                    self._evaluate_other(top)
            except _Need as need:
                stack.extend(c for c in reversed(need.cells) if c.key not in self.done)
                continue
            self.busy.discard(top.key)
            self.done.add(top.key)
            stack.pop()

    def _require(self, fc: FormulaCell):
        """Inside a formula's evaluation: ``fc`` must be evaluated already."""
        if fc.key in self.done:
            return
        if fc.key in self.busy:
            raise Unsupported("#REF!", f"circular reference through {fc.where}")
        raise _Need([fc])

    def _set_region(self, fc: FormulaCell, region):
        self.regions[fc.key] = region
        self._reg_max = (max(self._reg_max[0], region[2]), max(self._reg_max[1], region[3]))
        pos = self._pos.get(fc.key)
        if pos is not None:
            self._reg[fc.sheet].add(region, pos)

    def _region_of(self, s, pos):
        """The region anchor ``pos`` of sheet ``s`` covers now (None before it is done)."""
        return self.regions.get(self.anchors[s][pos].key)

    # -- cells
    def formula_value(self, fc: FormulaCell):
        self._require(fc)
        if fc.key in self.kept:
            if fc.cached is None:
                raise Unsupported("#REF!", _shorten(
                    f"{fc.where} ({_shorten(fc.text, 60)}) cannot be evaluated here "
                    f"({_shorten(self.kept[fc.key], 160)}) and holds no stored value"))
            self.note(("used", fc.key), f"{fc.where}: its stored value was used "
                      f"({_shorten(self.kept[fc.key])})")
            return fc.cached
        return self.values.get(fc.key)

    def _peek(self, s, r, c):
        """The value a cell shows after recalculation; the formulas it depends on are
        evaluated (see :meth:`_prepare`)."""
        fc = self.book.formulas[s].get((r, c))
        if fc is not None:
            return self.formula_value(fc)
        covering = [p for p in self._reg[s].at(r, c)
                    if _inside(self._region_of(s, p), r, c)]
        if covering:
            a = self.anchors[s][min(covering)]
            if a.key in self.kept:
                return self.book.values[s].get((r, c))
            return self.values.get((s, r, c))
        if self._old[s].at(r, c):
            return None           # a stale spill value: the block no longer reaches here
        return self.book.values[s].get((r, c))

    def _formula_keys(self, s):
        keys = self._fkeys.get(s)
        if keys is None:
            keys = self._fkeys[s] = sorted(self.book.formulas[s])
        return keys

    def _stored_keys(self, s):
        keys = self._vkeys.get(s)
        if keys is None:
            keys = self._vkeys[s] = sorted(self.book.values[s])
        return keys

    def _clip(self, rv: RangeVal):
        """The part of a range that can hold something: whole columns or rows end at the
        sheet's used part (or the furthest block)."""
        r2, c2 = rv.r2, rv.c2
        if r2 - rv.r1 > 10000 or c2 - rv.c1 > 1000:      # whole columns/rows: used part
            mr, mc = self.book.extent.get(rv.sheet, (0, 0))
            mr, mc = max(mr, self._reg_max[0]), max(mc, self._reg_max[1])
            r2 = max(rv.r1, min(r2, mr))
            c2 = max(rv.c1, min(c2, mc))
        return r2, c2

    def _prepare(self, rv: RangeVal, materialise: bool):
        """Everything a range's values depend on is evaluated, or :class:`_Need` says
        what to evaluate first: the xlglmm blocks that could spill into it (every
        xlglmm formula above and left of its end), then its formula cells and the array
        formulas whose old range covers some of its cells.  Returns the range's used
        end (r2, c2); refuses a range to be read cell by cell (``materialise``) that
        covers more than MAX_RANGE_CELLS."""
        s = rv.sheet
        need = self._spilling_into(s, rv.r2, rv.c2)
        if need:
            raise _Need(need)
        r2, c2 = self._clip(rv)
        if materialise:
            n = (r2 - rv.r1 + 1) * (c2 - rv.c1 + 1)
            if n > MAX_RANGE_CELLS:
                used = "" if (r2, c2) == (rv.r2, rv.c2) else \
                    f" up to {cell_name(r2, c2)}, where the sheet's used part ends"
                raise Unsupported("#VALUE!", f"{rv} covers {n:,} cells{used}; recalc reads "
                                  f"at most {MAX_RANGE_CELLS:,} cells of a range one by one")
        rect = (rv.r1, rv.c1, r2, c2)
        forms = self.book.formulas[s]
        keys = _keys_in(self._formula_keys(s), forms, *rect)
        _spend(len(keys) + 1)
        waiting = [((r, c), forms[(r, c)]) for r, c in keys
                   if forms[(r, c)].key not in self.done]
        for pos in self._old[s].overlapping(rect):
            a = self.anchors[s][pos]
            if a.key in self.done:
                continue
            o = a.array_ref
            ov = (max(o[0], rect[0]), max(o[1], rect[1]), min(o[2], rect[2]), min(o[3], rect[3]))
            size = (ov[2] - ov[0] + 1) * (ov[3] - ov[1] + 1)
            inner = sum(1 for k in _keys_in(self._formula_keys(s), forms, *ov))
            if size > inner:              # it covers a cell that is not a formula
                waiting.append(((ov[0], ov[1]), a))
        if not waiting:
            return r2, c2
        waiting.sort(key=lambda w: w[0])
        need, seen = [], set()
        for _, fc in waiting:
            if fc.key in self.busy:
                if need:
                    break
                raise Unsupported("#REF!", f"circular reference through {fc.where}")
            if fc.key not in seen:
                seen.add(fc.key)
                need.append(fc)
        raise _Need(need)

    def _spilling_into(self, s, r2, c2) -> list:
        """xlglmm formulas not evaluated (nor waiting) whose block could reach a range
        ending at (r2, c2): those above and left of that end."""
        rows = self._xl_rows[s]
        j = bisect.bisect_right(rows, (r2, len(self.anchors[s])))
        found, finished = [], 0
        for row, pos in rows[:j]:
            a = self.anchors[s][pos]
            if a.key in self.done:
                finished += 1
            elif a.key not in self.busy and a.col <= c2:
                found.append(pos)
        if finished > 32:                 # forget the evaluated ones
            self._xl_rows[s] = [x for x in rows if self.anchors[s][x[1]].key not in self.done]
        return [self.anchors[s][p] for p in sorted(found)]

    def grid(self, rv: RangeVal) -> list:
        """The values of a range, after every block that could spill into it."""
        r2, c2 = self._prepare(rv, materialise=True)
        _spend((r2 - rv.r1 + 1) * (c2 - rv.c1 + 1))
        s = rv.sheet
        rect = (rv.r1, rv.c1, r2, c2)
        if not (self._reg[s].overlapping(rect) or self._old[s].overlapping(rect) or
                _keys_in(self._formula_keys(s), self.book.formulas[s], *rect)):
            vals = self.book.values[s]        # stored values only: read them directly
            return [[vals.get((r, c)) for c in range(rv.c1, c2 + 1)]
                    for r in range(rv.r1, r2 + 1)]
        return [[self._peek(s, r, c) for c in range(rv.c1, c2 + 1)]
                for r in range(rv.r1, r2 + 1)]

    def stored(self, rv: RangeVal) -> tuple:
        """(the values of a range's non-blank cells in row-major order, the number of
        cells of its used part) -- without reading its blank cells one by one."""
        r2, c2 = self._prepare(rv, materialise=False)
        s = rv.sheet
        rect = (rv.r1, rv.c1, r2, c2)
        keys = set(_keys_in(self._stored_keys(s), self.book.values[s], *rect))
        keys.update(_keys_in(self._formula_keys(s), self.book.formulas[s], *rect))
        for pos in self._reg[s].overlapping(rect):
            a = self.anchors[s][pos]
            reg = self.regions.get(a.key)
            if a.key in self.kept or reg is None or not _overlap(reg, rect):
                continue                  # a kept block shows its stored cells
            for r in range(max(reg[0], rect[0]), min(reg[2], rect[2]) + 1):
                for c in range(max(reg[1], rect[1]), min(reg[3], rect[3]) + 1):
                    keys.add((r, c))
        _spend(len(keys) + 1)
        vals = [self._peek(s, r, c) for r, c in sorted(keys)]
        return [v for v in vals if v is not None], (r2 - rv.r1 + 1) * (c2 - rv.c1 + 1)

    # -- evaluation of one formula cell
    def _evaluate_xlglmm(self, fc: FormulaCell):
        fn = self.xlglmm_function(fc)
        self.ticker.begin(f"{fc.where} {fn}")
        fits0, hits0 = self.fitlog.fits, _cache_hits()
        t0 = time.perf_counter()
        c0 = self.fitlog.compile_seconds
        need = None
        try:
            if fc.parse_error:
                raise Unsupported("#NAME?", f"cannot read the formula: {fc.parse_error}")
            self._depth = 0
            result = self.eval(fc.node, fc)
            grid = self.to_grid(result)
            status, message = "ok", ""
            if len(grid) == 1 and len(grid[0]) == 1 and isinstance(grid[0][0], str) \
                    and grid[0][0].startswith("#GLMM!"):
                status, message = "glmm-error", grid[0][0]
        except _Need as e:
            need = e
        except Unsupported as e:
            grid = [[XLError(e.code)]]
            status, message = "error", e.message
        except Exception as e:          # a bug here must not stop the other formulas
            grid = [[XLError("#VALUE!")]]
            status, message = "error", f"internal error in recalc ({type(e).__name__}: {e})"
        self.ticker.end()
        compiled = self.fitlog.compile_seconds - c0
        work = (self.fitlog.fits - fits0, _cache_hits() - hits0,
                time.perf_counter() - t0 - compiled, compiled)
        # what its earlier attempts did (stopped to wait for cells it needs) counts too
        work = tuple(a + b for a, b in zip(work, self._partial.pop(fc.key, (0, 0, 0.0, 0.0))))
        if need is not None:
            self._partial[fc.key] = work
            raise need
        fits, hits, seconds, compiled = work
        try:
            placed = self.place_spill(fc, grid)
        except Unsupported as e:     # the work limit, reached while placing the block
            grid = [[XLError(e.code)]]
            status, message = "error", e.message
            self.values[fc.key] = grid[0][0]
            self._set_region(fc, (fc.row, fc.col, fc.row, fc.col))
            placed = None
        if placed is not None:
            status, message = "error", placed
            grid = [[XLError("#SPILL!")]]
        if status == "error":
            message = _shorten(message)
        o = Outcome(fc.where, fn, status, message, seconds,
                    (len(grid), len(grid[0])), fits, reused=fits == 0 and hits > 0,
                    compiled=compiled)
        self.outcomes.append(o)
        self.out(describe(o, self.where_width))

    def _evaluate_other(self, fc: FormulaCell):
        if fc.parse_error:
            self.kept[fc.key] = f"formula not understood: {fc.parse_error}"
            self._keep_region(fc)
            self.note(("kept", fc.key), f"{fc.where}: kept its stored value (cannot read "
                      f"{_shorten(fc.text, 80)!r}: {fc.parse_error})")
            return
        try:
            self._depth = 0
            if fc.array_ref is not None:
                n = (fc.array_ref[2] - fc.array_ref[0] + 1) * \
                    (fc.array_ref[3] - fc.array_ref[1] + 1)
                if n > MAX_RANGE_CELLS:
                    raise Unsupported("#VALUE!", f"its array range "
                                      f"{range_name(*fc.array_ref)} has {n:,} cells, more "
                                      f"than the {MAX_RANGE_CELLS:,} recalc fills")
            result = self.eval(fc.node, fc)
            if isinstance(result, RangeVal):
                result = self.grid(result)
        except Unsupported as e:
            self.kept[fc.key] = e.message
            self._keep_region(fc)
            self.note(("kept", fc.key), f"{fc.where}: kept its stored value "
                      f"({_shorten(e.message)})")
            return
        except Exception as e:          # a bug here must not stop the other formulas
            self.kept[fc.key] = f"internal error in recalc ({type(e).__name__}: {e})"
            self._keep_region(fc)
            self.note(("kept", fc.key), f"{fc.where}: kept its stored value "
                      f"({_shorten(self.kept[fc.key])})")
            return
        if _is_grid(result):
            if fc.array_ref is not None:
                self._fill_cse(fc, result)
                return
            if len(result) == 1 and len(result[0]) == 1:
                result = result[0][0]
            else:
                self.kept[fc.key] = "the formula returns several values; Excel 365 would spill them"
                self._keep_region(fc)
                self.note(("kept", fc.key), f"{fc.where}: kept its stored value (the "
                          "formula returns an array but is not an array formula)")
                return
        if result is MISSING:
            result = 0.0
        self.values[fc.key] = result
        if fc.array_ref is not None:
            self._fill_cse(fc, [[result]])
        else:
            self._set_region(fc, (fc.row, fc.col, fc.row, fc.col))

    def _keep_region(self, fc):
        self._set_region(fc, fc.array_ref or (fc.row, fc.col, fc.row, fc.col))

    def _fill_cse(self, fc, grid):
        r1, c1, r2, c2 = fc.array_ref
        h, w = len(grid), len(grid[0])
        for r in range(r1, r2 + 1):
            for c in range(c1, c2 + 1):
                i, j = r - r1, c - c1
                ii = 0 if h == 1 else i
                jj = 0 if w == 1 else j
                v = grid[ii][jj] if ii < h and jj < w else XLError("#N/A")
                self.values[(fc.sheet, r, c)] = v
        self._set_region(fc, fc.array_ref)

    def _in_the_way(self, fc: FormulaCell, region):
        """The first other anchor (in the anchors' order) whose cells overlap
        ``region``: an evaluated one's region, else its array range or its own cell;
        (its position, its cells) or None."""
        s = fc.sheet
        me = self._pos.get(fc.key)
        found = []
        for pos in self._reg[s].overlapping(region):
            a = self.anchors[s][pos]
            reg = self.regions.get(a.key)
            if pos != me and a.key in self.done and reg is not None and _overlap(region, reg):
                found.append((pos, reg))
        for pos in self._old[s].overlapping(region):
            a = self.anchors[s][pos]
            if pos != me and a.key not in self.done:
                found.append((pos, a.array_ref))
        forms = self.book.formulas[s]
        for r, c in _keys_in(self._formula_keys(s), forms, *region):
            a = forms[(r, c)]
            pos = self._pos.get(a.key)
            if pos is not None and pos != me and a.key not in self.done and a.array_ref is None:
                found.append((pos, (r, c, r, c)))
        return min(found) if found else None

    def place_spill(self, fc: FormulaCell, grid) -> str | None:
        """Put a block into the cells from the anchor; a message when it cannot spill."""
        s, r0, c0 = fc.sheet, fc.row, fc.col
        h, w = len(grid), len(grid[0])
        region = (r0, c0, r0 + h - 1, c0 + w - 1)
        self.spilling.add(fc.key)
        blocked = None
        if region[2] > xf.MAX_ROW or region[3] > xf.MAX_COL:
            blocked = "the block would extend beyond the sheet"
        else:
            if h * w > 1:        # a one-cell result (an error among them) costs nothing
                _spend(h * w)
            other = self._in_the_way(fc, region)
            if other is not None:
                pos, oreg = other
                o = self.anchors[s][pos]
                blocked = f"{fc.sheet}!{range_name(*oreg)} (the result of " \
                          f"{cell_name(o.row, o.col)}) is in the way"
            else:
                forms = self.book.formulas[s]
                vals = self.book.values[s]
                own = fc.array_ref
                for r in range(region[0], region[2] + 1):
                    for c in range(region[1], region[3] + 1):
                        if (r, c) == (r0, c0):
                            continue
                        if (r, c) in forms:
                            blocked = f"{cell_name(r, c)} holds a formula"
                        elif vals.get((r, c)) is not None and not (own and _inside(own, r, c)) \
                                and not self._in_any_old_region(s, r, c, fc):
                            blocked = f"{cell_name(r, c)} is not empty"
                        if blocked:
                            break
                    if blocked:
                        break
        if blocked:
            self.values[fc.key] = XLError("#SPILL!")
            self._set_region(fc, (r0, c0, r0, c0))
            return f"#SPILL!: the block needs {range_name(*region)}, but {blocked}"
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                self.values[(s, r0 + i, c0 + j)] = v
        self._set_region(fc, region)
        return None

    def _in_any_old_region(self, s, r, c, me):
        """A stored value inside another array formula's old range (a stale spill,
        overwritten when that formula is re-evaluated) does not block."""
        for pos in self._old[s].at(r, c):
            a = self.anchors[s][pos]
            if a is not me and a.key in self.done and a.key not in self.kept:
                reg = self.regions.get(a.key)
                if reg is None or not _inside(reg, r, c):
                    return True
        return False

    # -- expressions
    def to_grid(self, v) -> list:
        if isinstance(v, RangeVal):
            v = self.grid(v)
        if _is_grid(v):
            if not v or not v[0]:
                return [[None]]
            return [[_clean_result(x) for x in row] for row in v]
        if v is MISSING:
            v = 0.0
        return [[_clean_result(v)]]

    def eval(self, node, fc: FormulaCell):
        t = type(node)
        if t is Num:
            return node.value
        if t is Str:
            return node.value
        if t is Bool:
            return node.value
        if t is ErrorLit:
            return XLError(node.code)
        if t is Missing:
            return MISSING
        self._depth += 1
        try:
            if self._depth > MAX_EVAL_DEPTH:
                raise Unsupported("#VALUE!", f"formula nested deeper than {MAX_EVAL_DEPTH} "
                                  "levels (counting the defined names it uses)")
            _spend(1)
            return self._eval(t, node, fc)
        finally:
            self._depth -= 1

    def _eval(self, t, node, fc):
        if t is Ref:
            return self.ref(node, fc)
        if t is StructRef:
            return self.struct_ref(node, fc)
        if t is Name:
            return self.name(node, fc)
        if t is Call:
            return self.call(node, fc)
        if t is Unary:
            v = self.value(self.eval(node.operand, fc))
            if node.op == "+":
                return v
            return _broadcast(lambda x: _arith("*", x, -1.0), v)
        if t is Percent:
            v = self.value(self.eval(node.operand, fc))
            return _broadcast(lambda x: _arith("/", x, 100.0), v)
        if t is Binary:
            # A1+A2+...+A3000 is a chain of 3,000 nested nodes down the left: walk it
            # with a loop, evaluating the operands in the same order as recursion would
            spine = []
            while type(node) is Binary:
                spine.append(node)
                node = node.left
            acc = self.value(self.eval(node, fc))
            for b in reversed(spine):
                _spend(1)
                acc = _binary(b.op, acc, self.value(self.eval(b.right, fc)))
            return acc
        if t is ArrayLit:
            return [[self.eval(c, fc) for c in row] for row in node.rows]
        raise Unsupported("#NAME?", f"unsupported formula element {t.__name__}")

    def value(self, v):
        """A range -> its values (a 1x1 range -> the value); arrays stay arrays."""
        if isinstance(v, RangeVal):
            g = self.grid(v)
            return g[0][0] if len(g) == 1 and len(g[0]) == 1 else g
        if _is_grid(v) and len(v) == 1 and len(v[0]) == 1:
            return v[0][0]
        return v

    def ref(self, node: Ref, fc: FormulaCell):
        if node.external:
            raise Unsupported("#REF!", f"{node.text} refers to another workbook")
        s = self.book.sheet(node.sheet, fc.sheet)
        if node.spill:
            return self.spill_range(s, node.r1, node.c1, node.text)
        return RangeVal(s, node.r1, node.c1, node.r2, node.c2)

    def spill_range(self, s, r, c, text):
        fc = self.book.formulas[s].get((r, c))
        if fc is None:
            raise Unsupported("#REF!", f"{text}: {s}!{cell_name(r, c)} holds no formula, so "
                              "it has no spilled range")
        self._require(fc)
        reg = self.regions.get(fc.key, (r, c, r, c))
        if fc.key in self.kept and fc.cached is None:
            raise Unsupported("#REF!", f"{text}: {fc.where} cannot be evaluated here "
                              f"({self.kept[fc.key]})")
        return RangeVal(s, *reg)

    def struct_ref(self, node: StructRef, fc: FormulaCell):
        if node.table:
            t = self.book.tables.get(node.table.lower())
            if t is None:
                raise Unsupported("#REF!", f"{node.text}: there is no table named "
                                  f"'{node.table}'")
        else:
            t = next((t for t in self.book.tables.values() if t.sheet == fc.sheet and
                      _inside((t.r1, t.c1, t.r2, t.c2), fc.row, fc.col)), None)
            if t is None:
                raise Unsupported("#REF!", f"{node.text}: the cell is not inside a table")
        c1, c2 = t.c1, t.c2
        if node.columns:
            lower = [c.lower() for c in t.columns]
            idx = []
            for name in node.columns:
                if name.lower() not in lower:
                    raise Unsupported("#REF!", f"{node.text}: table '{t.name}' has no column "
                                      f"'{name}' (its columns: {', '.join(t.columns)})")
                idx.append(t.c1 + lower.index(name.lower()))
            c1, c2 = min(idx), max(idx)
        head_end = t.r1 + t.header_rows - 1
        data = (t.r1 + t.header_rows, t.r2 - t.totals_rows)
        items = set(node.items) or {"#Data"}
        if "#All" in items:
            r1, r2 = t.r1, t.r2
        elif "#This Row" in items:
            if not data[0] <= fc.row <= data[1]:
                raise Unsupported("#REF!", f"{node.text}: {fc.where} is not in a data row of "
                                  f"'{t.name}'")
            r1 = r2 = fc.row
        else:
            spans = []
            if "#Headers" in items:
                if t.header_rows == 0:
                    raise Unsupported("#REF!", f"{node.text}: the table has no header row")
                spans.append((t.r1, head_end))
            if "#Data" in items:
                spans.append(data)
            if "#Totals" in items:
                if t.totals_rows == 0:
                    raise Unsupported("#REF!", f"{node.text}: the table has no totals row")
                spans.append((t.r2 - t.totals_rows + 1, t.r2))
            r1, r2 = min(a for a, _ in spans), max(b for _, b in spans)
        if r2 < r1:
            raise Unsupported("#REF!", f"{node.text}: the table has no data rows")
        return RangeVal(t.sheet, r1, c1, r2, c2)

    def name(self, node: Name, fc: FormulaCell):
        scope = self.book.sheet(node.sheet, fc.sheet).lower() if node.sheet else fc.sheet.lower()
        text = self.book.names.get((scope, node.name.lower()))
        if text is None:
            text = self.book.names.get((None, node.name.lower()))
        if text is None:
            raise Unsupported("#NAME?", f"unknown name '{node.name}'")
        key = (scope, node.name.lower())
        if key in self._names_busy:
            raise Unsupported("#REF!", f"the name '{node.name}' refers to itself")
        # A name's value is computed once per formula cell (as Excel evaluates a name
        # once): nm1 = nm2+nm2, nm2 = nm3+nm3, ... costs one evaluation per name, not
        # 2 ** levels; its text is parsed once per recalculation, charged by its length
        if self._name_cell != fc.key:
            self._name_cell, self._name_values = fc.key, {}
        if key in self._name_values:
            return self._name_values[key]
        tree = self._name_trees.get(text)
        if tree is None:
            _spend(len(text))
            try:
                tree = self._name_trees[text] = xf.parse(text)
            except FormulaSyntaxError as e:
                raise Unsupported("#REF!", f"the name '{node.name}' = {text} cannot be "
                                  f"read: {e}")
        self._names_busy.add(key)
        try:
            value = self._name_values[key] = self.eval(tree, fc)
            return value
        finally:
            self._names_busy.discard(key)

    def call(self, node: Call, fc: FormulaCell):
        key = xf.function_key(node.name)
        if key in self.specs:
            return self.call_udf(key, node, fc)
        impl = BUILTINS.get(key)
        if impl is None:
            raise Unsupported("#NAME?", f"unknown function {node.name}() (neither an xlglmm "
                              "function nor one of the Excel functions recalc evaluates)")
        args = [self.eval(a, fc) for a in node.args]
        return impl(self, *args)

    def call_udf(self, name, node: Call, fc: FormulaCell):
        f, params, required, ndim2 = self.specs[name]
        if len(node.args) > len(params):
            raise Unsupported("#VALUE!", f"{name} takes at most {len(params)} arguments, "
                              f"{len(node.args)} were given")
        if len(node.args) < len(required):
            raise Unsupported("#VALUE!", f"{name} needs at least {len(required)} arguments "
                              f"({', '.join(required)}); Excel shows #VALUE!")
        kwargs = {}
        for p, a in zip(params, node.args):
            if isinstance(a, Missing):
                if p in required:
                    kwargs[p] = None
                continue
            kwargs[p] = self.udf_arg(self.eval(a, fc), p in ndim2)
        return udf_result(f(**kwargs))

    def udf_arg(self, v, ndim2: bool):
        """A value as xlwings hands it to a UDF argument."""
        if v is MISSING:
            return None
        if isinstance(v, RangeVal):
            v = self.grid(v)
        if _is_grid(v):
            return xlwings_value([[_to_xlwings(x) for x in row] for row in v], ndim2)
        return xlwings_value(_to_xlwings(v), ndim2)


def xlwings_value(v, ndim2: bool):
    """A worksheet value -- a grid (list of rows) or one value -- as xlwings hands it to
    a UDF argument: as rows for an argument declared ``ndim=2``; otherwise one cell
    becomes its value, one row or one column a list (xlwings' default conversion)."""
    if _is_grid(v):
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
        return [[_clean_result(v) for v in r] + [None] * (width - len(r)) for r in rows]
    return _clean_result(result)


def _to_xlwings(v):
    if isinstance(v, XLError):
        return str(v)
    if v is MISSING:
        return None
    return v


def _clean_result(v):
    if v is None or isinstance(v, (bool, str, datetime)):
        return v
    if hasattr(v, "item") and not isinstance(v, (list, tuple)):
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else XLError("#NUM!")
    return v


# ---- Excel functions evaluated besides the xlglmm ones ---------------------------------

def _flat(ev, args):
    """Values of aggregate arguments: from ranges/arrays only numbers count; direct
    scalars are coerced.  Returns (numbers, first error).  A range is read through
    its non-blank cells only (:meth:`Engine.stored`), so ``SUM(A:XFD)`` costs the
    cells that hold something, not 17 billion."""
    nums = []
    for a in args:
        if a is MISSING:
            continue
        if isinstance(a, RangeVal):
            a = [ev.stored(a)[0]]
        if _is_grid(a):
            for row in a:
                for v in row:
                    if isinstance(v, XLError):
                        return nums, v
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        nums.append(float(v))
        else:
            x = to_number(a)
            if isinstance(x, XLError):
                return nums, x
            nums.append(x)
    return nums, None


def _map1(fn):
    def impl(ev, x=MISSING, *rest):
        if rest:
            raise Unsupported("#VALUE!", "too many arguments")

        def one(v):
            n = to_number(v)
            if isinstance(n, XLError):
                return n
            try:
                return _num_result(fn(n))
            except (ValueError, OverflowError, ZeroDivisionError):
                return XLError("#NUM!")
        return _broadcast(one, ev.value(x))
    return impl


def _ln(x):
    if x <= 0:
        raise ValueError
    return math.log(x)


def _log(ev, x, base=10.0):
    def one(v, b):
        v, b = to_number(v), to_number(10.0 if b is MISSING else b)
        if isinstance(v, XLError):
            return v
        if isinstance(b, XLError):
            return b
        if v <= 0 or b <= 0 or b == 1:
            return XLError("#NUM!") if b != 1 else XLError("#DIV/0!")
        return math.log(v) / math.log(b)
    return _broadcast(one, ev.value(x), ev.value(base))


def _sqrt(x):
    if x < 0:
        raise ValueError
    return math.sqrt(x)


def _round(ev, x, digits=0.0):
    def one(v, d):
        v, d = to_number(v), to_number(0.0 if d is MISSING else d)
        if isinstance(v, XLError):
            return v
        if isinstance(d, XLError):
            return d
        d = int(d)
        m = 10.0 ** d
        r = math.floor(abs(v) * m + 0.5 + 1e-9) / m
        return math.copysign(r, v) if r else 0.0
    return _broadcast(one, ev.value(x), ev.value(digits))


def _if(ev, cond, a=True, b=False):
    a = 0.0 if a is MISSING else a          # IF(c,,x) and IF(c,x,) give 0
    b = 0.0 if b is MISSING else b

    def one(c, x, y):
        t = to_bool(c)
        if isinstance(t, XLError):
            return t
        return x if t else y
    return _broadcast(one, ev.value(cond), ev.value(a), ev.value(b))


def _sum(ev, *args):
    nums, err = _flat(ev, args)
    return err if err is not None else float(sum(nums))


def _min(ev, *args):
    nums, err = _flat(ev, args)
    return err if err is not None else (min(nums) if nums else 0.0)


def _max(ev, *args):
    nums, err = _flat(ev, args)
    return err if err is not None else (max(nums) if nums else 0.0)


def _average(ev, *args):
    nums, err = _flat(ev, args)
    if err is not None:
        return err
    return sum(nums) / len(nums) if nums else XLError("#DIV/0!")


def _count(ev, *args):
    n = 0
    for a in args:
        if isinstance(a, RangeVal):
            a = [ev.stored(a)[0]]
        if _is_grid(a):
            n += sum(1 for row in a for v in row
                     if isinstance(v, (int, float)) and not isinstance(v, bool))
        elif not isinstance(to_number(a), XLError) and a is not MISSING:
            n += 1
    return float(n)


def _kth(largest):
    def impl(ev, array, k):
        nums, err = _flat(ev, [array if isinstance(array, RangeVal) or _is_grid(array)
                               else [[array]]])
        if err is not None:
            return err

        def one(kv):
            kk = to_number(kv)
            if isinstance(kk, XLError):
                return kk
            kk = math.ceil(kk)
            if not 1 <= kk <= len(nums):
                return XLError("#NUM!")
            _spend(len(nums))
            return sorted(nums, reverse=largest)[kk - 1]
        return _broadcast(one, ev.value(k))
    return impl


def _values_1d(ev, v):
    if isinstance(v, RangeVal):
        v = ev.grid(v)
    if not _is_grid(v):
        return [v]
    if len(v) == 1:
        return list(v[0])
    if len(v[0]) == 1:
        return [r[0] for r in v]
    return None


def _match(ev, x, lookup, mtype=1.0):
    vals = _values_1d(ev, lookup)
    if vals is None:
        return XLError("#N/A")
    mt = to_number(1.0 if mtype is MISSING else mtype)
    if isinstance(mt, XLError):
        return mt

    chars = _text_chars(vals)

    def one(target):
        if isinstance(target, XLError):
            return target
        if isinstance(target, str) and len(target) > MAX_CRITERION:
            return XLError("#VALUE!")                  # as Excel: at most 255 characters
        _spend(len(vals) + _text_work(chars, target if isinstance(target, str) else ""))
        kt = _rank_key(target)
        if mt == 0:
            if isinstance(target, str) and any(ch in target for ch in "*?~"):
                matches = wildcard_matcher(target)        # Excel: wildcards in text
                for i, v in enumerate(vals):
                    if isinstance(v, str) and not isinstance(v, XLError) and matches(v):
                        return float(i + 1)
                return XLError("#N/A")
            for i, v in enumerate(vals):
                if _rank_key(v) == kt:
                    return float(i + 1)
            return XLError("#N/A")
        best = None
        for i, v in enumerate(vals):
            kv = _rank_key(v)
            if kv is None or kt is None or kv[0] != kt[0]:
                continue
            if (mt > 0 and kv <= kt) or (mt < 0 and kv >= kt):
                best = i
            else:
                break
        return XLError("#N/A") if best is None else float(best + 1)
    return _broadcast(one, ev.value(x))


def _index(ev, array, row=MISSING, col=MISSING):
    r = 0 if row is MISSING else to_number(ev.value(row))
    c = 0 if col is MISSING else to_number(ev.value(col))
    if isinstance(r, XLError):
        return r
    if isinstance(c, XLError):
        return c
    r, c = int(r), int(c)
    if isinstance(array, RangeVal):
        nr, nc = array.shape
        if col is MISSING and nr == 1 and nc > 1:
            r, c = 0, r
        if r < 0 or c < 0 or r > nr or c > nc:
            return XLError("#REF!")
        r1, r2 = (array.r1, array.r2) if r == 0 else (array.r1 + r - 1,) * 2
        c1, c2 = (array.c1, array.c2) if c == 0 else (array.c1 + c - 1,) * 2
        return RangeVal(array.sheet, r1, c1, r2, c2)
    g = array if _is_grid(array) else [[array]]
    nr, nc = len(g), len(g[0])
    if col is MISSING and nr == 1 and nc > 1:
        r, c = 0, r
    if r < 0 or c < 0 or r > nr or c > nc:
        return XLError("#REF!")
    rows = g if r == 0 else [g[r - 1]]
    out = [list(row) if c == 0 else [row[c - 1]] for row in rows]
    return out[0][0] if len(out) == 1 and len(out[0]) == 1 else out


def _rank(ev, x, ref, order=0.0):
    nums, err = _flat(ev, [ref])
    if err is not None:
        return err
    o = to_number(0.0 if order is MISSING else order)

    def one(v):
        n = to_number(v)
        if isinstance(n, XLError):
            return n
        _spend(len(nums))
        if n not in nums:               # RANK compares exactly (Excel and Calc alike)
            return XLError("#N/A")
        if o == 0:
            return float(1 + sum(1 for m in nums if m > n))
        return float(1 + sum(1 for m in nums if m < n))
    return _broadcast(one, ev.value(x))


# COUNTIF's criterion and MATCH's lookup value: as in Excel, a text longer than this
# gives #VALUE!
MAX_CRITERION = 255
# Comparing texts (wildcards included) costs one step per this many pairs of a
# cell's character and the criterion's (measured: at worst 0.5 ns a pair, in re)
TEXT_PAIRS_PER_STEP = 1000


def _text_chars(vals) -> int:
    """The characters of the texts among ``vals`` (for :func:`_text_work`)."""
    return sum(len(v) for v in vals if isinstance(v, str))


def _text_work(chars: int, crit) -> int:
    """Steps charged for comparing texts of ``chars`` characters in all with the
    criterion ``crit``: a wildcard match is (text x pattern) at worst, a plain
    comparison reads each text (lower-cased) once."""
    if not isinstance(crit, str) or not chars:
        return 0
    return chars * max(1, len(crit)) // TEXT_PAIRS_PER_STEP


def _criterion(crit):
    """COUNTIF's criterion -> a predicate on cell values (wildcards * and ?)."""
    if isinstance(crit, bool):
        return lambda v: isinstance(v, bool) and v == crit
    if isinstance(crit, (int, float)):
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and \
            approx_equal(float(v), float(crit))
    text = "" if crit is None else str(crit)
    m = re.match(r"^(<=|>=|<>|<|>|=)?(.*)$", text, re.S)
    op, operand = m.group(1) or "=", m.group(2)
    try:
        num = float(operand)
    except ValueError:
        num = None
    if num is not None:
        def numeric(v):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                return op == "<>"
            return _compare(op, float(v), num)
        return numeric
    if operand == "" and op in ("=", "<>"):
        return (lambda v: v is None or v == "") if op == "=" else \
            (lambda v: not (v is None or v == ""))
    if op in ("=", "<>"):
        matches = wildcard_matcher(operand)

        def textual(v):
            hit = isinstance(v, str) and not isinstance(v, XLError) and matches(v)
            return hit if op == "=" else not hit
        return textual
    return lambda v: isinstance(v, str) and not isinstance(v, XLError) and \
        _compare(op, v, operand) is True


def wildcard_matcher(pattern: str):
    """Excel's wildcard comparison for COUNTIF and MATCH: ``pattern`` against a whole
    text, ignoring case; ``*`` any run of characters, ``?`` one character, ``~*``
    ``~?`` ``~~`` the character itself.  Returns a predicate on texts.

    Never backtracks: the pattern is cut at its stars into pieces of fixed length
    (literals and ``?``); the first piece must match at the start, the last at the
    end, and each piece between at its leftmost place after the one before -- the
    leftmost place is never worse -- so a text of n characters costs at most n times
    the pattern's length, done by ``re`` on quantifier-free pieces (a pattern such
    as ``*a*a*a*b`` against 2,000 a's was a catastrophic backtrack as one regex)."""
    pieces, cur, i = [], [], 0
    p = pattern.lower()
    while i < len(p):
        ch = p[i]
        if ch == "~" and i + 1 < len(p) and p[i + 1] in "*?~":
            cur.append(re.escape(p[i + 1]))
            i += 2
            continue
        if ch == "*":
            pieces.append(cur)
            cur = []
        else:
            cur.append("." if ch == "?" else re.escape(ch))
        i += 1
    pieces.append(cur)
    sizes = [len(x) for x in pieces]
    rx = [re.compile("".join(x), re.S) for x in pieces]
    if len(pieces) == 1:
        return lambda text: len(text.lower()) == sizes[0] and \
            rx[0].fullmatch(text.lower()) is not None
    first, last = rx[0], rx[-1]
    middle = [r for r, k in zip(rx[1:-1], sizes[1:-1]) if k]
    least = sizes[0] + sizes[-1]

    def matches(text):
        t = text.lower()
        end = len(t) - sizes[-1]
        if len(t) < least or first.match(t) is None or last.fullmatch(t, end) is None:
            return False
        pos = sizes[0]
        for r in middle:
            m = r.search(t, pos, end)
            if m is None:
                return False
            pos = m.end()
        return True
    return matches


def _countif(ev, rng, crit):
    if isinstance(rng, RangeVal):
        vals, n = ev.stored(rng)           # the non-blank cells; the rest are blank
        blanks = n - len(vals)
    elif _is_grid(rng):
        vals, blanks = [v for row in rng for v in row], 0
    else:
        return XLError("#VALUE!")

    chars = _text_chars(vals)

    def one(c):
        if isinstance(c, XLError):
            return c
        if isinstance(c, str) and len(c) > MAX_CRITERION:
            return XLError("#VALUE!")                  # as Excel: at most 255 characters
        pred = _criterion(None if c is MISSING else c)
        _spend(len(vals) + 1 + _text_work(chars, c))
        hits = sum(1 for v in vals if pred(v))
        return float(hits + (blanks if blanks and pred(None) else 0))
    return _broadcast(one, ev.value(crit))


def _rows(ev, v):
    if isinstance(v, RangeVal):
        return float(v.shape[0])
    return float(len(v)) if _is_grid(v) else 1.0


def _columns(ev, v):
    if isinstance(v, RangeVal):
        return float(v.shape[1])
    return float(len(v[0])) if _is_grid(v) else 1.0


def _anchorarray(ev, v):
    if not isinstance(v, RangeVal) or v.shape != (1, 1):
        return XLError("#REF!")
    return ev.spill_range(v.sheet, v.r1, v.c1, f"ANCHORARRAY({v})")


def _is(pred):
    def impl(ev, v):
        return _broadcast(lambda x: bool(pred(x)), ev.value(v))
    return impl


def _bools(ev, args):
    vals = []
    for a in args:
        a = ev.value(a)
        for x in ([v for r in a for v in r] if _is_grid(a) else [a]):
            if x is None or x is MISSING:
                continue
            b = to_bool(x)
            if isinstance(b, XLError):
                return b
            vals.append(b)
    return vals if vals else XLError("#VALUE!")


def _all(ev, *args):
    vals = _bools(ev, args)
    return vals if isinstance(vals, XLError) else all(vals)


def _any(ev, *args):
    vals = _bools(ev, args)
    return vals if isinstance(vals, XLError) else any(vals)


def _not(ev, v):
    return _broadcast(lambda x: (lambda b: b if isinstance(b, XLError) else not b)(to_bool(x)),
                      ev.value(v))


BUILTINS = {
    "LN": _map1(_ln), "LOG": _log, "LOG10": _map1(lambda x: _ln(x) / math.log(10)),
    "EXP": _map1(math.exp), "SQRT": _map1(_sqrt), "ABS": _map1(abs), "ROUND": _round,
    "IF": _if, "SUM": _sum, "MIN": _min, "MAX": _max, "AVERAGE": _average, "COUNT": _count,
    "SMALL": _kth(False), "LARGE": _kth(True), "INDEX": _index, "MATCH": _match,
    "RANK": _rank, "RANK.EQ": _rank, "COUNTIF": _countif, "ROWS": _rows, "COLUMNS": _columns,
    "ANCHORARRAY": _anchorarray, "NA": lambda ev: XLError("#N/A"),
    "ISNUMBER": _is(lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)),
    "ISTEXT": _is(lambda x: isinstance(x, str) and not isinstance(x, XLError)),
    "ISBLANK": _is(lambda x: x is None), "ISERROR": _is(lambda x: isinstance(x, XLError)),
    "AND": _all, "OR": _any, "NOT": _not,
}


# ---- the command ------------------------------------------------------------------------

def describe(o: Outcome, width: int = 16) -> str:
    """One line of the log: where, which function, the block's size, what it took."""
    shape = f"{o.shape[0]} x {o.shape[1]}"
    head = f"  {o.where:<{width}} {o.function:<14}"
    if o.status == "ok":
        if o.fitted:
            how = "fitted" if o.fitted == 1 else f"fitted {o.fitted} models"
        elif o.reused:
            how = "reused a cached fit"
        else:
            how = "computed"
        line = f"{head} {shape:>9} block   {how} in {o.seconds:.2f} s"
        if o.compiled >= 0.05:
            line += f" (and {o.compiled:.1f} s compiling the numerical kernels, once)"
        return line
    if o.status == "glmm-error":
        return f"{head} {o.message}"
    return f"{head} NOT EVALUATED: {o.message}"


def plan_writes(engine: Engine) -> dict:
    """Cell writes for the patcher: sheet -> {(r, c): CellWrite}."""
    writes: dict = {s: {} for s in engine.book.sheet_names}
    clears, values, formulas = [], [], []
    for s, forms in engine.book.formulas.items():
        for fc in forms.values():
            if fc.key in engine.kept or fc.key not in engine.done:
                continue
            reg = engine.regions.get(fc.key, (fc.row, fc.col, fc.row, fc.col))
            if fc.key in engine.spilling:
                old = fc.array_ref
                if old is not None:
                    # the old range's cells outside the new block: those the sheet
                    # holds (an old range may claim all 17 billion cells of a sheet)
                    for r, c in _keys_in(engine._stored_keys(s), engine.book.values[s], *old):
                        if not _inside(reg, r, c):
                            clears.append((s, r, c))
                formulas.append((s, fc.row, fc.col,
                                 CellWrite("formula", engine.values.get(fc.key),
                                           range_name(*reg), dynamic=True)))
                for r in range(reg[0], reg[2] + 1):
                    for c in range(reg[1], reg[3] + 1):
                        if (r, c) != (fc.row, fc.col):
                            values.append((s, r, c, engine.values.get((s, r, c))))
            else:
                formulas.append((s, fc.row, fc.col,
                                 CellWrite("formula", engine.values.get(fc.key))))
                if fc.array_ref is not None:
                    for r in range(reg[0], reg[2] + 1):
                        for c in range(reg[1], reg[3] + 1):
                            if (r, c) != (fc.row, fc.col):
                                values.append((s, r, c, engine.values.get((s, r, c))))
    for s, r, c in clears:
        writes[s][(r, c)] = CellWrite("clear")
    for s, r, c, v in values:
        writes[s][(r, c)] = CellWrite("value", v)
    for s, r, c, w in formulas:
        writes[s][(r, c)] = w
    return {s: w for s, w in writes.items() if w}


def check_arguments(path, output=None, values_only=False) -> tuple:
    """Everything that can be checked before a fit runs: ``path`` is a readable .xlsx
    workbook, ``values_only`` has its own output file, and that output (default:
    ``path``) can be written -- its folder exists and is writable, its name ends as
    the input's, an existing file is neither read-only nor open in Excel or Calc.
    Returns ``(path, output)``; raises a :class:`xlglmm.files.FileProblem` (whose
    ``code`` is the exit status) otherwise."""
    path = check_input(path)
    if values_only and output is None:
        raise UsageProblem(path, "--values without -o would replace its formulas with "
                                 "their values", "give -o OUT.xlsx for the values-only copy")
    output = Path(output) if output is not None else path
    if values_only and output.resolve() == path.resolve():
        raise UsageProblem(output, "is the input workbook: --values would replace its "
                                   "formulas with their values", "give another -o file")
    suffix = path.suffix.lower()
    check_output(output, suffix=suffix,
                 what=f"a{'n' if suffix == '.xlsx' else ''} {suffix} workbook"
                      + (" (--values writes one too)" if values_only else ""))
    return path, output


def recalc(path, output=None, *, values_only=False, out=None, stream=None) -> RecalcResult:
    """Evaluate every formula of workbook ``path`` that calls an xlglmm function
    (and the helper formulas around them), write the results to ``output`` (default:
    ``path`` itself) and return what happened.  ``out``: a callable for report lines
    (default: none).  ``values_only``: the output keeps values only (no formulas),
    for spreadsheet programs without the add-in.

    The arguments are checked before anything is fitted (:func:`check_arguments`);
    the output is written to a temporary file beside it and moved into place, so it
    is either the complete new workbook or left as it was.  Problems with the files
    raise :class:`RecalcError` (a :class:`xlglmm.files.FileProblem`)."""
    path, output = check_arguments(path, output, values_only)
    out = out or (lambda s: None)
    book = Book(path)
    engine = Engine(book, out=out, stream=stream)
    engine.run()
    writes = plan_writes(engine)
    info: dict = {}

    def write(tmp):
        info.update(patch(path, tmp, writes, formulas=book.formula_texts(),
                          values_only=values_only))
    try:
        write_atomically(output, write)
    except XlsxError as e:
        raise InputProblem(path, f"cannot be updated ({e})",
                           "open it in Excel or Calc and save it again as .xlsx") from None
    return RecalcResult(path, output, engine.outcomes, engine.notes,
                        dynamic=info.get("dynamic", False), fitlog=engine.fitlog)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def run_command(path, output=None, values_only=False, quiet=False, out=print,
                err=_stderr) -> int:
    """The ``xlglmm recalc`` command; returns its exit status (:class:`xlglmm.files.Exit`):
    0 when every xlglmm formula was evaluated and returned a block, 1 when some could
    not be evaluated or returned a #GLMM! error (listed; the workbook is written with
    the others), 2 for arguments that do not go together, 3 when the workbook cannot be
    read, 4 when the output cannot be written.  2-4 are found before any fit runs
    (``err`` gets one line: the path, what is wrong, what to do)."""
    say = (lambda s: None) if quiet else out
    try:
        path, output = check_arguments(path, output, values_only)
    except FileProblem as e:
        err(f"xlglmm recalc: error: {e}")
        return int(e.code)
    say(f"xlglmm recalc {path}")
    t0 = time.perf_counter()
    try:
        res = recalc(path, output, values_only=values_only, out=say)
    except FileProblem as e:
        err(f"xlglmm recalc: error: {e}")
        return int(e.code)
    n = len(res.xlglmm)
    for note in res.notes:
        say(f"  note: {note}")
    if n == 0:
        say("  no xlglmm formulas found (GLMM_POISSON, GLMM_BINOMIAL, GLMM_NEGBIN, LMM, GLMM, "
            "GLMM_RANEF, GLMM_PREDICT, GLMM_COMPARE)")
    probs = res.problems
    fits = res.fitlog.fits if res.fitlog is not None else 0
    summary = (f"{n} xlglmm formula{'s' if n != 1 else ''} evaluated in "
               f"{time.perf_counter() - t0:.1f} s ({fits} model fit{'s' if fits != 1 else ''})"
               + (f", {len(probs)} with problems" if probs else "") +
               f"; wrote {res.output}" + (" (values only)" if values_only else ""))
    out(summary) if probs else say(summary)
    if quiet:
        for o in probs:
            out(f"  {o.where}: {o.message}")
    return int(Exit.MODEL if probs else Exit.OK)
