"""Drive a headless LibreOffice Calc: open workbooks, recalculate, read every cell back.

Runs under the Python that has LibreOffice's ``uno`` module (Debian: /usr/bin/python3
with python3-uno), not in the project's virtual environment: it uses only the
standard library and ``uno``.  tests/bridges/test_libreoffice.py starts it as a subprocess:

    python3 tests/libreoffice_driver.py --profile DIR --jobs jobs.json --out cells.json

``jobs.json`` is a list of jobs, each either

* ``{"open": "book.xlsx", "save": "out.xlsx", "pdf": "out.pdf"}`` -- load the workbook
  with macros allowed (MacroExecutionMode 4), recalculate everything, read the cells,
  optionally store it as .xlsx and export it to PDF; or
* ``{"cells": {"Sheet1": {"A1": 1.5, "B1": "text", "C1": "=FORMULA(...)"}},
  "arrays": {"Sheet1": {"E1:F9": "=GLMM_POISSON(...)"}}}`` -- a new spreadsheet with
  those cells and array formulas (Calc's own syntax: ';' between arguments).

The output holds, per job and sheet, every cell of the used area: values (numbers,
text, None for empty) and, for error cells, ``{"error": code}``; plus the seconds the
recalculation took.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import uuid

import uno
from com.sun.star.beans import PropertyValue

FORMULA_RESULT_ERROR = 4
ERROR_TEXT = {532: "#DIV/0!", 32767: "#N/A", 519: "#VALUE!", 502: "#VALUE!",
              504: "#VALUE!", 524: "#REF!", 525: "#NAME?", 503: "#NUM!", 523: "#NUM!"}


def prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def start(profile, soffice, as_given=False):
    """Start `soffice` (a name is looked up on PATH, as a shell does).  Unless `as_given`,
    this Python's folder -- the one with LibreOffice's uno -- goes first on PATH:
    LibreOffice's embedded Python (Debian: the system libpython) takes the first `python3`
    on PATH for itself, and a virtual environment or pyenv there makes it load another
    Python's library and fail (see xlglmm.bridges.libreoffice); that keeps scripts run from a
    development shell working (workbooks/build_templates.py).  The tests pass --as-given:
    they start LibreOffice in the environment of the user's shell."""
    pipe = "xlglmm_" + uuid.uuid4().hex[:12]
    url = "file://" + os.path.abspath(profile)
    env = dict(os.environ)
    if not as_given:
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen([soffice, "--headless", "--invisible", "--norestore", "--nologo",
                             "--nodefault", f"-env:UserInstallation={url}",
                             f"--accept=pipe,name={pipe};urp;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local)
    deadline = time.time() + 90
    while True:
        try:
            ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("LibreOffice did not start")
            time.sleep(0.25)
    desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
    return proc, desktop


def column_name(c):
    s = ""
    c += 1
    while c:
        c, r = divmod(c - 1, 26)
        s = chr(65 + r) + s
    return s


def read_sheet(sheet):
    cur = sheet.createCursor()
    cur.gotoEndOfUsedArea(False)
    a = cur.getRangeAddress()
    rng = sheet.getCellRangeByPosition(0, 0, a.EndColumn, a.EndRow)
    data = rng.getDataArray()
    cells = {}
    empties = set()
    for ra in rng.queryEmptyCells().getRangeAddresses():
        for r in range(ra.StartRow, ra.EndRow + 1):
            for c in range(ra.StartColumn, ra.EndColumn + 1):
                empties.add((r, c))
    for r, row in enumerate(data):
        for c, v in enumerate(row):
            if (r, c) not in empties:
                cells[f"{column_name(c)}{r + 1}"] = v
    for ra in rng.queryFormulaCells(FORMULA_RESULT_ERROR).getRangeAddresses():
        for r in range(ra.StartRow, ra.EndRow + 1):
            for c in range(ra.StartColumn, ra.EndColumn + 1):
                code = sheet.getCellByPosition(c, r).getError()
                cells[f"{column_name(c)}{r + 1}"] = {"error": ERROR_TEXT.get(code, code)}
    return cells


def read_doc(doc):
    sheets = doc.getSheets()
    return {sheets.getByIndex(i).getName(): read_sheet(sheets.getByIndex(i))
            for i in range(sheets.getCount())}


def new_doc(desktop, job):
    doc = desktop.loadComponentFromURL("private:factory/scalc", "_blank", 0,
                                       (prop("Hidden", True), prop("MacroExecutionMode", 4)))
    sheets = doc.getSheets()
    names = list(job.get("cells", {})) + list(job.get("arrays", {}))
    for i, name in enumerate(dict.fromkeys(names)):
        if i == 0:
            sheets.getByIndex(0).setName(name)
        elif not sheets.hasByName(name):
            sheets.insertNewByName(name, i)
    for name, cells in job.get("cells", {}).items():
        sh = sheets.getByName(name)
        for ref, v in cells.items():
            cell = sh.getCellRangeByName(ref)
            if isinstance(v, str) and v.startswith("="):
                cell.setFormula(v)
            elif isinstance(v, str):
                cell.setString(v)
            elif v is not None:
                cell.setValue(float(v))
    for name, arrays in job.get("arrays", {}).items():
        sh = sheets.getByName(name)
        for ref, f in arrays.items():
            sh.getCellRangeByName(ref).setArrayFormula(f)
    return doc


def run_job(desktop, job):
    if "open" in job:
        url = uno.systemPathToFileUrl(os.path.abspath(job["open"]))
        t0 = time.perf_counter()
        doc = desktop.loadComponentFromURL(url, "_blank", 0,
                                           (prop("Hidden", True), prop("MacroExecutionMode", 4)))
        loaded = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        doc = new_doc(desktop, job)
        loaded = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        doc.calculateAll()
        seconds = time.perf_counter() - t0
        out = {"load_seconds": loaded, "calc_seconds": seconds, "sheets": read_doc(doc)}
        if job.get("save"):
            doc.storeToURL(uno.systemPathToFileUrl(os.path.abspath(job["save"])),
                           (prop("FilterName", "Calc MS Excel 2007 XML"),))
        if job.get("pdf"):
            doc.storeToURL(uno.systemPathToFileUrl(os.path.abspath(job["pdf"])),
                           (prop("FilterName", "calc_pdf_Export"),))
        return out
    finally:
        doc.close(True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, help="UserInstallation folder")
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--soffice", default="soffice",
                    help="LibreOffice's command, a path or a name looked up on PATH")
    ap.add_argument("--as-given", action="store_true",
                    help="start LibreOffice in exactly this environment (default: with this "
                         "Python's folder first on PATH)")
    args = ap.parse_args(argv)
    jobs = json.load(open(args.jobs))
    proc, desktop = start(args.profile, args.soffice, args.as_given)
    results = []
    try:
        for job in jobs:
            try:
                results.append(run_job(desktop, job))
            except Exception as e:
                results.append({"failed": f"{type(e).__name__}: {e}"})
    finally:
        try:
            desktop.terminate()
        except Exception:
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    with open(args.out, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
