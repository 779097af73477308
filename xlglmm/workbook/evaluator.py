"""The formula evaluator of ``xlglmm recalc``: :class:`Engine` evaluates a
:class:`xlglmm.workbook.book.Book`'s formulas and keeps the new values and the
regions the blocks cover.

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

A recalculation's step between reading the workbook (:mod:`xlglmm.workbook.book`) and
writing it (:func:`xlglmm.workbook.recalc.plan_writes`).  A cell's call: an xlglmm
function gets its arguments as a host hands them (:mod:`xlglmm.sheet.calling`), an
Excel function its evaluated arguments (:mod:`xlglmm.workbook.builtins`), operators
follow :mod:`xlglmm.workbook.excel_values`; each xlglmm formula's outcome is logged as
it finishes (:mod:`xlglmm.workbook.progress`).
"""
from __future__ import annotations

import bisect
import functools
import re
import sys
import time

from . import excel_formula as xf
from .book import Book, FormulaCell, Unsupported
from .builtins import BUILTINS
from .excel_formula import (ArrayLit, Binary, Bool, Call, ErrorLit, FormulaSyntaxError,
                            Missing, Name, Num, Percent, Ref, Str, StructRef, Unary,
                            cell_name, range_name)
from .excel_values import MISSING, Meter, RangeVal, arith, binary, broadcast, metering, spend
from .progress import FitLog, Outcome, Ticker, cache_hits, describe, watching_fits
from ..numfmt import shorten
from ..sheet.grid import MAX_COL, MAX_ROW
from ..sheet.calling import ErrorValue as XLError, clean_result, is_grid, udf_result, \
    xlwings_value

@functools.lru_cache(maxsize=4)
def _udf_call_pattern(names: tuple) -> re.Pattern:
    """Finds a call of one of ``names`` (the worksheet functions) in upper-cased formula
    text: the name as a whole word, then "("."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\s*\(")


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


# A reason in the log or in a note is cut to this many characters, so that a reason
# that quotes another cell's reason, which quotes another's... stays one line
MESSAGE_WIDTH = 290


def _cut(text, width: int = MESSAGE_WIDTH) -> str:
    """A reason (or a formula quoted in one) cut to ``width`` characters, ending
    "...", the text before it kept as it is (recalc's cut, by numfmt's rule)."""
    return shorten(text, width, ellipsis="...", strip=False)


class _Need(BaseException):
    """Raised inside a formula's evaluation when it needs formula cells that are not
    evaluated yet (``cells``, in the order it reads them): :meth:`Engine.evaluate`
    evaluates them first -- an explicit stack, not Python recursion, so a chain of
    100,000 cells is no deeper than one -- and then evaluates the formula again.  A
    BaseException, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, cells):
        super().__init__()
        self.cells = cells


# ---- where the cells are: regions (r1, c1, r2, c2) ------------------------------------------

def inside(region, r, c) -> bool:
    """Cell (r, c) is in ``region``."""
    return region[0] <= r <= region[2] and region[1] <= c <= region[3]


def overlap(a, b) -> bool:
    """Regions ``a`` and ``b`` share a cell."""
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


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
        return [self.items[i][1] for i in ids if inside(self.items[i][0], r, c)]

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
        return [self.items[i][1] for i in ids if overlap(self.items[i][0], rect)]


def keys_in(keys: list, present, r1, c1, r2, c2) -> list:
    """The (row, col) keys inside a rectangle, in row-major order: ``keys`` sorted,
    ``present`` a set or dict of the same keys.  Costs the smaller of the rectangle's
    size and the number of keys in its rows."""
    i = bisect.bisect_left(keys, (r1, 0))
    j = bisect.bisect_right(keys, (r2, MAX_COL + 1))
    if (r2 - r1 + 1) * (c2 - c1 + 1) <= j - i:
        return [(r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)
                if (r, c) in present]
    return [k for k in keys[i:j] if c1 <= k[1] <= c2]


# ---- the engine ---------------------------------------------------------------------------

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
        self.meter = Meter(MAX_WORK)
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
        with watching_fits(self.ticker.progress) as self.fitlog, metering(self.meter):
            try:
                for s in self.book.sheet_names:
                    for fc in sorted(self.book.formulas[s].values(), key=lambda f: (f.row, f.col)):
                        if self.is_xlglmm(fc):
                            self.evaluate(fc)
                for s in self.book.sheet_names:
                    for fc in sorted(self.book.formulas[s].values(), key=lambda f: (f.row, f.col)):
                        self.evaluate(fc)
            finally:
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
                raise Unsupported("#REF!", _cut(
                    f"{fc.where} ({_cut(fc.text, 60)}) cannot be evaluated here "
                    f"({_cut(self.kept[fc.key], 160)}) and holds no stored value"))
            self.note(("used", fc.key), f"{fc.where}: its stored value was used "
                      f"({_cut(self.kept[fc.key])})")
            return fc.cached
        return self.values.get(fc.key)

    def _peek(self, s, r, c):
        """The value a cell shows after recalculation; the formulas it depends on are
        evaluated (see :meth:`_prepare`)."""
        fc = self.book.formulas[s].get((r, c))
        if fc is not None:
            return self.formula_value(fc)
        covering = [p for p in self._reg[s].at(r, c)
                    if inside(self._region_of(s, p), r, c)]
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

    def stored_keys(self, s):
        """The sorted keys of sheet ``s``'s stored cells (for :func:`keys_in`; sorted
        once per recalculation)."""
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
        keys = keys_in(self._formula_keys(s), forms, *rect)
        spend(len(keys) + 1)
        waiting = [((r, c), forms[(r, c)]) for r, c in keys
                   if forms[(r, c)].key not in self.done]
        for pos in self._old[s].overlapping(rect):
            a = self.anchors[s][pos]
            if a.key in self.done:
                continue
            o = a.array_ref
            ov = (max(o[0], rect[0]), max(o[1], rect[1]), min(o[2], rect[2]), min(o[3], rect[3]))
            size = (ov[2] - ov[0] + 1) * (ov[3] - ov[1] + 1)
            inner = sum(1 for k in keys_in(self._formula_keys(s), forms, *ov))
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
        spend((r2 - rv.r1 + 1) * (c2 - rv.c1 + 1))
        s = rv.sheet
        rect = (rv.r1, rv.c1, r2, c2)
        if not (self._reg[s].overlapping(rect) or self._old[s].overlapping(rect) or
                keys_in(self._formula_keys(s), self.book.formulas[s], *rect)):
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
        keys = set(keys_in(self.stored_keys(s), self.book.values[s], *rect))
        keys.update(keys_in(self._formula_keys(s), self.book.formulas[s], *rect))
        for pos in self._reg[s].overlapping(rect):
            a = self.anchors[s][pos]
            reg = self.regions.get(a.key)
            if a.key in self.kept or reg is None or not overlap(reg, rect):
                continue                  # a kept block shows its stored cells
            for r in range(max(reg[0], rect[0]), min(reg[2], rect[2]) + 1):
                for c in range(max(reg[1], rect[1]), min(reg[3], rect[3]) + 1):
                    keys.add((r, c))
        spend(len(keys) + 1)
        vals = [self._peek(s, r, c) for r, c in sorted(keys)]
        return [v for v in vals if v is not None], (r2 - rv.r1 + 1) * (c2 - rv.c1 + 1)

    # -- evaluation of one formula cell
    def _evaluate_xlglmm(self, fc: FormulaCell):
        fn = self.xlglmm_function(fc)
        self.ticker.begin(f"{fc.where} {fn}")
        fits0, hits0 = self.fitlog.fits, cache_hits()
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
        work = (self.fitlog.fits - fits0, cache_hits() - hits0,
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
            message = _cut(message)
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
                      f"{_cut(fc.text, 80)!r}: {fc.parse_error})")
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
                      f"({_cut(e.message)})")
            return
        except Exception as e:          # a bug here must not stop the other formulas
            self.kept[fc.key] = f"internal error in recalc ({type(e).__name__}: {e})"
            self._keep_region(fc)
            self.note(("kept", fc.key), f"{fc.where}: kept its stored value "
                      f"({_cut(self.kept[fc.key])})")
            return
        if is_grid(result):
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
            if pos != me and a.key in self.done and reg is not None and overlap(region, reg):
                found.append((pos, reg))
        for pos in self._old[s].overlapping(region):
            a = self.anchors[s][pos]
            if pos != me and a.key not in self.done:
                found.append((pos, a.array_ref))
        forms = self.book.formulas[s]
        for r, c in keys_in(self._formula_keys(s), forms, *region):
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
        if region[2] > MAX_ROW or region[3] > MAX_COL:
            blocked = "the block would extend beyond the sheet"
        else:
            if h * w > 1:        # a one-cell result (an error among them) costs nothing
                spend(h * w)
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
                        elif vals.get((r, c)) is not None and not (own and inside(own, r, c)) \
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
                if reg is None or not inside(reg, r, c):
                    return True
        return False

    # -- expressions
    def to_grid(self, v) -> list:
        if isinstance(v, RangeVal):
            v = self.grid(v)
        if is_grid(v):
            if not v or not v[0]:
                return [[None]]
            return [[clean_result(x) for x in row] for row in v]
        if v is MISSING:
            v = 0.0
        return [[clean_result(v)]]

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
            spend(1)
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
            return broadcast(lambda x: arith("*", x, -1.0), v)
        if t is Percent:
            v = self.value(self.eval(node.operand, fc))
            return broadcast(lambda x: arith("/", x, 100.0), v)
        if t is Binary:
            # A1+A2+...+A3000 is a chain of 3,000 nested nodes down the left: walk it
            # with a loop, evaluating the operands in the same order as recursion would
            spine = []
            while type(node) is Binary:
                spine.append(node)
                node = node.left
            acc = self.value(self.eval(node, fc))
            for b in reversed(spine):
                spend(1)
                acc = binary(b.op, acc, self.value(self.eval(b.right, fc)))
            return acc
        if t is ArrayLit:
            return [[self.eval(c, fc) for c in row] for row in node.rows]
        raise Unsupported("#NAME?", f"unsupported formula element {t.__name__}")

    def value(self, v):
        """A range -> its values (a 1x1 range -> the value); arrays stay arrays."""
        if isinstance(v, RangeVal):
            g = self.grid(v)
            return g[0][0] if len(g) == 1 and len(g[0]) == 1 else g
        if is_grid(v) and len(v) == 1 and len(v[0]) == 1:
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
                      inside((t.r1, t.c1, t.r2, t.c2), fc.row, fc.col)), None)
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
            spend(len(text))
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
        if is_grid(v):
            return xlwings_value([[_to_xlwings(x) for x in row] for row in v], ndim2)
        return xlwings_value(_to_xlwings(v), ndim2)


def _to_xlwings(v):
    """One of the evaluator's values as a host hands it to a worksheet function: an
    error value as its text, an omitted argument (the evaluator's ``MISSING``) as
    ``None``."""
    if isinstance(v, XLError):
        return str(v)
    if v is MISSING:
        return None
    return v
