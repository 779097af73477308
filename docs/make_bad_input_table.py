"""Regenerate the table of bad-input classes in docs/bad-input.md.

Runs every case of tests/hostile_cases.py through its worksheet function and
writes what the function returns -- the exact '#GLMM!' text, or a summary of the
block -- between the table markers of docs/bad-input.md (or prints the table
with --print).  The same cases are asserted by tests/sheet/test_hostile.py, so the
documented messages are the ones the functions give.

    python docs/make_bad_input_table.py          # rewrite the table in place
    python docs/make_bad_input_table.py --print  # print it instead
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hostile_cases import CASES, fixed_names, notes, value  # noqa: E402

from xlglmm.sheet import cache  # noqa: E402

DOC = ROOT / "docs" / "bad-input.md"
START, END = "<!-- bad-input-table:start -->", "<!-- bad-input-table:end -->"
SINGULAR = "boundary (singular) fit"


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def result_text(out) -> str:
    if isinstance(out, str):
        return f"`{cell(out)}`"
    if out and out[0] and out[0][0] == "Fixed effects":
        parts = [f"block: fixed effects {', '.join(map(str, fixed_names(out)))}",
                 f"nobs {value(out, 'nobs'):g}", f"rows dropped {value(out, 'rows dropped'):g}",
                 f"converged {'TRUE' if value(out, 'converged') else 'FALSE'}"]
        ns = [n for n in notes(out) if not n.startswith(SINGULAR)]
        text = "; ".join(parts)
        if ns:
            text += "; note" + ("s" if len(ns) > 1 else "") + ": " + " / ".join(
                f"*{cell(n)}*" for n in ns)
        return text
    if out and out[0] and "power" in out[0]:        # GLMM_POWER's block
        points = [r[0] for r in out].index("Notes") - 1
        text = f"power block ({points} design point{'s' if points != 1 else ''})"
        if any("stopped the run after" in str(r[0]) for r in out):
            text += ("; a note says after how many simulations the time budget stopped "
                     "the run, and how to allow more")
        return text
    return f"{len(out)} x {len(out[0])} block"


def table() -> str:
    rows = ["| # | bad input | example | function | result |", "|---|---|---|---|---|"]
    for i, case in enumerate(CASES, start=1):
        cache.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = case.run()
        rows.append(f"| {i} | {cell(case.cls)} | {cell(case.example)} | {case.fn} | "
                    f"{result_text(out)} |")
    cache.clear()
    return "\n".join(rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = table()
    if "--print" in argv or not DOC.exists():
        print(text)
        return 0
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {START} ... {END} markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"wrote {len(CASES)} cases to {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
