"""``xlglmm demo``: the workplace-safety case study, end to end.

Fits the Poisson GLMM of the workplace-safety data shipped in the package
(``xlglmm/data/workplace_safety.csv``: 20 plants x 8 months, incidents with the
number of employees as exposure) through the same worksheet function Excel calls,
``GLMM_POISSON``, prints the block the cell would spill as a table, and writes the
filled workbook (the ``workplace_safety`` template, its formulas recalculated).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import numfmt

FORMULA = ("=GLMM_POISSON(Safety[[#All],[incidents]], Safety[[#All],[training]], "
           "Safety[[#All],[plant]:[month]], Safety[[#All],[log_employees]])")


# which columns of a block hold p-values or test statistics, by their header
def column_kind(header) -> str:
    """``"pvalue"``, ``"statistic"`` or ``"number"``: how the numbers under a column
    headed ``header`` are written (``Pr(>|z|)``, ``Pr(>Chisq)``: p-values; ``z value``,
    ``t value``, ``Chisq``: statistics)."""
    h = str(header or "").strip().lower()
    if h.startswith("pr(") or h in ("p", "p value", "p-value", "pvalue"):
        return "pvalue"
    if h in ("z value", "t value", "f value", "chisq", "chi-square", "chi2", "lrt", "z", "t"):
        return "statistic"
    return "number"


def fmt(v, kind: str = "number") -> str:
    """A cell as text, by :mod:`xlglmm.numfmt`'s rule: p-values as R's format.pval,
    test statistics with 2 decimals, other numbers with 4 significant digits
    (``kind``: see :func:`column_kind`)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        if kind == "pvalue":
            return numfmt.pvalue(v)
        if kind == "statistic":
            return numfmt.statistic(v)
        return numfmt.number(v)
    return str(v)


def _sections(block) -> list:
    """(first row, end row) of each section: runs of rows between blank rows."""
    out, start = [], 0
    for i in range(len(block) + 1):
        if i == len(block) or not any(v is not None and v != "" for v in block[i]):
            if i > start:
                out.append((start, i))
            start = i + 1
    return out


def format_block(block) -> str:
    """A spilled block as an aligned text table.  Each section (sections are
    separated by blank rows) opens with a header row; the header of a column says
    how its numbers are written (:func:`column_kind`).  Numbers are right-aligned,
    and so are the headers above them; a row holding only its first cell (a title
    or a note) is printed as it is.  Nothing is cut: columns are as wide as their
    widest cell."""
    if isinstance(block, str):
        return block
    ncol = max(len(r) for r in block)
    kinds = [["number"] * ncol for _ in block]
    right = [[False] * ncol for _ in block]
    for start, end in _sections(block):
        head = block[start]
        heads = [head[j] if j < len(head) else None for j in range(ncol)]
        cols = {j for k in range(start, end) for j, v in enumerate(block[k])
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for k in range(start, end):
            for j in range(ncol):
                kinds[k][j] = column_kind(heads[j])
                right[k][j] = j in cols
    rows = [[fmt(v, kinds[i][j]) for j, v in enumerate(r)] for i, r in enumerate(block)]
    # a table's number columns share their decimals (numfmt.column, as R formats a
    # column); the 'Model fit' section lists different quantities: one by one
    for start, end in _sections(block):
        if str(block[start][0]).strip().lower() == "model fit":
            continue
        for j in range(ncol):
            idx = [k for k in range(start + 1, end) if j < len(block[k])
                   and isinstance(block[k][j], (int, float))
                   and not isinstance(block[k][j], bool) and kinds[k][j] == "number"]
            if idx:
                for k, text in zip(idx, numfmt.column([block[k][j] for k in idx])):
                    rows[k][j] = text
    widths = [0] * ncol
    for r in rows:
        if sum(1 for x in r if x) > 1:
            for j, x in enumerate(r):
                widths[j] = max(widths[j], len(x))
    lines = []
    for i, r in enumerate(rows):
        filled = [j for j, x in enumerate(r) if x]
        if not filled:
            lines.append("")
            continue
        if filled == [0]:
            lines.append(r[0])
            continue
        cells = [r[j].rjust(widths[j]) if right[i][j] else r[j].ljust(widths[j])
                 for j in range(filled[-1] + 1)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def worksheet_args():
    """The four ranges of the formula, as xlwings hands them to GLMM_POISSON."""
    from .workbook.templates import dataset
    df = dataset("workplace_safety")

    def col(name, values):
        return [[name]] + [[float(v)] if not isinstance(v, str) else [v] for v in values]
    y = col("incidents", df.incidents)
    X = col("training", df.training)
    groups = [["plant", "month"]] + [[str(p), float(m)] for p, m in zip(df.plant, df.month)]
    offset = col("log_employees", np.log(df.employees))
    return y, X, groups, offset


def _duration(seconds: float) -> str:
    """0.021 -> '21 ms', 12.34 -> '12.3 s'."""
    return f"{1000 * seconds:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _row(block, label):
    for r in block:
        if r and r[0] == label:
            return r
    return None


CLOSING = """\
  Model sheet: this block, the random effects (GLMM_RANEF), fitted values (GLMM_PREDICT),
  a caterpillar plot and observed vs fitted; 'Read me' says how to adapt it.
  The results are stored in the cells. Excel shows them until it recalculates the
  formulas, which needs the xlglmm add-in (`xlglmm addin install`). LibreOffice Calc
  recalculates on opening and shows #NAME? in every block cell unless the xlglmm
  bridge is installed (`xlglmm libreoffice install`); or open a values-only copy:
    xlglmm recalc {name} -o copy.xlsx --values
  After you edit the data, `xlglmm recalc {name}` re-evaluates the formulas."""


def run(output=None, out=print, stream=None, err=_stderr) -> int:
    """``xlglmm demo``: returns the exit status (:class:`xlglmm.files.Exit`).  The
    output path is checked before the fit (``err`` gets one line: the path, what is
    wrong, what to do)."""
    from .sheet import udfs
    from .files import Exit, FileProblem, check_output
    from .workbook.progress import Ticker, watching_fits
    from .workbook.templates import build
    path = Path(output) if output is not None else Path.cwd() / "workplace_safety.xlsx"
    try:
        check_output(path, example="workplace_safety")
    except FileProblem as e:
        err(f"xlglmm demo: error: {e}")
        return int(e.code)
    stream = stream if stream is not None else sys.stderr
    out("xlglmm demo: workplace safety, 20 plants x 8 months (data shipped in the package)")
    out("Poisson GLMM  incidents ~ training + (1 | plant) + (1 | month) + "
        "offset(log(employees))")
    out("")
    out("The worksheet formula:")
    out(f"  {FORMULA}")
    out("")
    ticker = Ticker(stream)
    ticker.begin("fitting (the first run on this machine also compiles the numerical "
                 "kernels, once)")
    try:
        with watching_fits(ticker.progress) as fits:
            block = udfs.GLMM_POISSON(*worksheet_args())
    finally:
        ticker.end()
    if isinstance(block, str):
        err(f"xlglmm demo: error: the model could not be fitted: {block}")
        return int(Exit.MODEL)
    if fits.fits:
        timing = f"fitted in {_duration(fits.fit_seconds)}"
        if fits.compile_seconds:
            timing += (f"; compiling the numerical kernels took {fits.compile_seconds:.1f} s, "
                       "once")
    else:
        timing = "taken from this session's fit cache"
    out(f"The block it spills ({len(block)} rows x {len(block[0])} columns; {timing}):")
    out("")
    out(format_block(block))
    out("")
    conv = _row(block, "converged")
    if conv is not None and not conv[1]:
        err("xlglmm demo: error: the fit did not converge (see Notes above), so its "
            f"numbers are not reliable; nothing was written to {path}")
        return int(Exit.MODEL)
    r = _row(block, "training")
    if r is not None:
        irr, lo, hi = r[7], r[8], r[9]
        out(f"Training: rate ratio {irr:.3f} (95% CI {lo:.3f} to {hi:.3f}), i.e. "
            f"{100 * (1 - irr):.0f}% fewer incidents per employee-month.")
    existed = path.exists()
    try:
        build("workplace_safety", path)
    except FileProblem as e:
        err(f"xlglmm demo: error: {e}")
        return int(e.code)
    except OSError as e:
        err(f"xlglmm demo: error: {path}: cannot be written ({e.strerror or e}); "
            "check the disk and the folder")
        return int(Exit.OUTPUT)
    out("")
    out(f"{'Replaced' if existed else 'Wrote'} {path.resolve()}")
    shown = path.name if path.resolve().parent == Path.cwd().resolve() else str(path)
    out(CLOSING.format(name=shown))
    return int(Exit.OK)
