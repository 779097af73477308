"""``xlglmm demo``: the workplace-safety case study, end to end.

Fits the Poisson GLMM of the workplace-safety data shipped in the package
(``xlglmm/data/workplace_safety.csv``: 20 plants x 8 months, incidents with the
number of employees as exposure) through the same worksheet function Excel calls,
``GLMM_POISSON``, prints the block the cell would spill as a table, and writes the
filled workbook (the ``workplace_safety`` template, its formulas recalculated).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

FORMULA = ("=GLMM_POISSON(Safety[[#All],[incidents]], Safety[[#All],[training]], "
           "Safety[[#All],[plant]:[month]], Safety[[#All],[log_employees]])")


def fmt(v) -> str:
    """A cell as text: numbers to about four significant decimals, as R prints."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        f = float(v)
        if f.is_integer() and abs(f) < 1e9:
            return str(int(f))
        if abs(f) >= 100:
            return f"{f:.1f}"
        if abs(f) >= 1e-4:
            return f"{f:.4f}"
        return f"{f:.2e}"
    return str(v)


def format_block(block) -> str:
    """A spilled block as an aligned text table.  Numbers are right-aligned, and so
    are the headers above them (per section: sections are separated by blank rows);
    a row holding only its first cell (a title or a note) is printed as it is."""
    if isinstance(block, str):
        return block
    rows = [[fmt(v) for v in r] for r in block]
    isnum = [[isinstance(v, (int, float)) and not isinstance(v, bool) for v in r]
             for r in block]
    ncol = max(len(r) for r in rows)
    widths = [0] * ncol
    for r in rows:
        if sum(1 for x in r if x) > 1:
            for j, x in enumerate(r):
                widths[j] = max(widths[j], len(x))
    # which columns hold numbers, section by section
    right = [[False] * ncol for _ in rows]
    start = 0
    for i in range(len(rows) + 1):
        if i == len(rows) or not any(rows[i]):
            cols = {j for k in range(start, i) for j in range(ncol) if isnum[k][j]}
            for k in range(start, i):
                for j in cols:
                    right[k][j] = True
            start = i + 1
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
    from .templates import dataset
    df = dataset("workplace_safety")

    def col(name, values):
        return [[name]] + [[float(v)] if not isinstance(v, str) else [v] for v in values]
    y = col("incidents", df.incidents)
    X = col("training", df.training)
    groups = [["plant", "month"]] + [[str(p), float(m)] for p, m in zip(df.plant, df.month)]
    offset = col("log_employees", np.log(df.employees))
    return y, X, groups, offset


def run(output=None, out=print, stream=None) -> int:
    from . import udfs
    from .recalc import RecalcError, _fit_hook, _Ticker
    from .templates import build
    stream = stream if stream is not None else sys.stderr
    out("xlglmm demo: workplace safety, 20 plants x 8 months (data shipped in the package)")
    out("Poisson GLMM  incidents ~ training + (1 | plant) + (1 | month) + "
        "offset(log(employees))")
    out("")
    out("The worksheet formula:")
    out(f"  {FORMULA}")
    out("")
    ticker = _Ticker(stream)
    t0 = time.perf_counter()
    ticker.begin("fitting (the first run also compiles the numerical kernels, ~20 s once)")
    try:
        with _fit_hook(ticker.progress):
            block = udfs.GLMM_POISSON(*worksheet_args())
    finally:
        ticker.end()
    fit_s = time.perf_counter() - t0
    if isinstance(block, str):
        out(block)
        return 1
    out(f"The block it spills ({len(block)} rows x {len(block[0])} columns; "
        f"fitted in {fit_s:.1f} s):")
    out("")
    out(format_block(block))
    out("")
    for r in block:
        if r and r[0] == "training":
            irr, lo, hi = r[7], r[8], r[9]
            out(f"Training: rate ratio {irr:.3f} (95% CI {lo:.3f} to {hi:.3f}), i.e. "
                f"{100 * (1 - irr):.0f}% fewer incidents per employee-month.")
    path = Path(output) if output is not None else Path.cwd() / "workplace_safety.xlsx"
    existed = path.exists()
    try:
        build("workplace_safety", path)
    except RecalcError as e:
        out(f"error: {e}")
        return 1
    except OSError as e:
        out(f"error: cannot write {path}: {e}")
        return 1
    out("")
    out(f"{'Replaced' if existed else 'Wrote'} {path.resolve()}")
    out("  Model sheet: this block, the random effects (GLMM_RANEF), fitted values "
        "(GLMM_PREDICT),")
    out("  a caterpillar plot and observed vs fitted; 'Read me' says how to adapt it. The")
    out("  results are stored in the cells, so any spreadsheet program shows them; "
        "`xlglmm recalc`")
    out("  re-evaluates the formulas after you edit the data.")
    return 0
