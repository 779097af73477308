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

A recalculation (:func:`recalc`), one module a step:

1. :mod:`xlglmm.workbook.book` reads the workbook -- formulas, stored values, tables,
   defined names -- after checking the package's sizes (:class:`Book`);
2. :mod:`xlglmm.workbook.evaluator` evaluates the formulas in the order their
   references need (:class:`Engine`), with Excel's value rules
   (:mod:`xlglmm.workbook.excel_values`) and functions
   (:mod:`xlglmm.workbook.builtins`), calling the worksheet functions as a host calls
   them (:mod:`xlglmm.sheet.calling`); :mod:`xlglmm.workbook.progress` shows the fits
   as they run and logs each formula;
3. :func:`plan_writes` turns the results into cell writes: each block from its
   formula's cell, the cells an old spill covered and the new one does not cleared;
4. :func:`xlglmm.workbook.xlsx_write.patch` writes them into a copy of the file, which
   replaces the output only when complete.

This module is the command around those steps: its arguments checked before any fit
(:func:`check_arguments`), the steps (:func:`recalc`), its report and exit status
(:func:`run_command`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..files import (Exit, FileProblem, InputProblem, UsageProblem, check_input,
                     check_output, write_atomically)
from .book import Book
from .evaluator import Engine, inside, keys_in
from .excel_formula import range_name
from .progress import FitLog
from .xlsx_write import CellWrite, XlsxError, patch

# The workbook cannot be read or written at all (or the arguments do not go
# together): a FileProblem says which path, what is wrong and what to do, and its
# ``code`` is the command's exit status (xlglmm.files.Exit).
RecalcError = FileProblem


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


# ---- the command -----------------------------------------------------------------------

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
                    for r, c in keys_in(engine.stored_keys(s), engine.book.values[s], *old):
                        if not inside(reg, r, c):
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
