"""LibreOffice Calc bridge (xlglmm/bridges/addin_files/libreoffice, xlglmm.bridges.libreoffice).

Two layers:

* without LibreOffice: the Python half of the bridge (xlglmm_calc.py, imported here as a
  plain module) and the worker, through the same JSON protocol, with a real worker
  process and with broken ones (slow, crashing, missing interpreter);
* end to end (needs ``soffice`` and a Python with LibreOffice's ``uno`` module; CI
  installs libreoffice-calc-nogui, python3-uno and libreoffice-script-provider-python):
  a throw-away LibreOffice profile gets ``xlglmm libreoffice install``, headless Calc
  opens each workbook template -- with its stored results removed, so every value must
  come from Calc calling the functions -- recalculates, and every block is checked
  against ``xlglmm.glmer`` on the template's data, every cell (blocks and the
  formulas that depend on them) against ``xlglmm recalc``; the workbook is saved and
  rendered to PDF (and PNG).  Further sheets test omitted arguments, the formula form,
  dependent formulas and bad input.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from openpyxl.utils import get_column_letter
from refs import PACKAGE_DATA

from xlglmm import cli
from xlglmm.bridges import libreoffice
from xlglmm.sheet import udfs
from xlglmm.workbook.excel_formula import parse_range
from template_checks import CHECKS, MODELS, TEMPLATE_FILES, data_frame, xlglmm_formulas

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "xlglmm" / "bridges" / "addin_files" / "libreoffice" / "xlglmm_calc.py"
DRIVER = Path(__file__).resolve().parents[1] / "libreoffice_driver.py"
SAFETY = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")


def load_bridge():
    """xlglmm_calc.py as a fresh module (it needs no LibreOffice to import)."""
    spec = importlib.util.spec_from_file_location("xlglmm_calc_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def as_tuples(rows):
    """A grid as Calc hands it to the bridge: tuples, None for empty cells."""
    return tuple(tuple(r) for r in rows)


def safety_columns():
    y = [["incidents"]] + [[float(v)] for v in SAFETY.incidents]
    X = [["training"]] + [[float(v)] for v in SAFETY.training]
    g = [["plant", "month"]] + [[a, float(b)] for a, b in zip(SAFETY.plant, SAFETY.month)]
    off = [["log_employees"]] + [[float(np.log(v))] for v in SAFETY.employees]
    return y, X, g, off


def cells(block):
    """A UDF result as the cells the bridge returns: None -> '', bools -> 1.0/0.0."""
    if not isinstance(block, list):
        block = [[block]]
    return tuple(tuple("" if v is None else float(v) if isinstance(v, bool) else v
                       for v in row) for row in block)


# ---- the Python half, without LibreOffice ----------------------------------------------

def test_formula_arguments_are_split_as_calc_writes_them():
    mod = load_bridge()
    f = ('{=GLMM_PREDICT(Safety[[#All];[incidents]]; Safety[[#All];[training]]; '
         'Safety[[#All];[plant]:[month]]; ; ; Safety[[#All];[log_employees]])}')
    assert mod.calls_in_formula(f, "GLMM_PREDICT") == [[
        "Safety[[#All];[incidents]]", "Safety[[#All];[training]]",
        "Safety[[#All];[plant]:[month]]", "", "", "Safety[[#All];[log_employees]]"]]
    f = '=IF(A1;GLMM("y ~ x; (1|g)";$Data.A1:C9;;"log");LMM(A1:A9;B1:B9;C1:C9;;0))'
    assert mod.calls_in_formula(f, "GLMM") == [['"y ~ x; (1|g)"', "$Data.A1:C9", "",
                                                '"log"']]
    assert mod.calls_in_formula(f, "LMM") == [["A1:A9", "B1:B9", "C1:C9", "", "0"]]
    assert mod.calls_in_formula("=XGLMM(1;2)+GLMM_RANEF()", "GLMM") == []
    assert mod.calls_in_formula("=GLMM_RANEF()", "GLMM_RANEF") == [[]]
    assert mod.calls_in_formula("=GLMM_RANEF(A1;(B1", "GLMM_RANEF") == []   # unbalanced


def test_zeros_are_resolved_from_the_formula_text():
    mod = load_bridge()
    rng = {"kind": "range", "value": [[1.0]]}

    def args(*kinds):
        return [dict(rng) if k == "r" else {"kind": "zero", "value": 0} for k in kinds]
    one = ["=GLMM_RANEF(A1:A9;B1:B9;C1:C9;;;0;1)"]
    out = mod.resolve_zeros("GLMM_RANEF", 7, args("r", "r", "r", "z", "z", "z", "r"), one)
    assert [a["kind"] for a in out] == ["range"] * 3 + ["omitted", "omitted", "value", "range"]
    assert out[5]["value"] == 0
    # two calls with as many arguments that differ there: left to the worker
    two = one + ["=GLMM_RANEF(A1:A9;B1:B9;C1:C9;;;;1)"]
    out = mod.resolve_zeros("GLMM_RANEF", 7, args("r", "r", "r", "z", "z", "z", "r"), two)
    assert [a["kind"] for a in out][3:6] == ["zero"] * 3
    # calls with another number of arguments do not count
    other = one + ["=GLMM_RANEF(A1:A9;B1:B9;C1:C9;;;;1;2)"]
    out = mod.resolve_zeros("GLMM_RANEF", 7, args("r", "r", "r", "z", "z", "z", "r"), other)
    assert [a["kind"] for a in out][3:6] == ["omitted", "omitted", "value"]


def test_argument_kinds():
    mod = load_bridge()
    assert mod._argument(None) == {"kind": "missing"}
    assert mod._argument(((1, None), ("a", 2.5))) == {"kind": "range",
                                                      "value": [[1, None], ["a", 2.5]]}
    assert mod._argument(0) == {"kind": "zero", "value": 0}
    assert mod._argument(0.0)["kind"] == "zero"
    assert mod._argument(1) == {"kind": "value", "value": 1}
    assert mod._argument("logit") == {"kind": "value", "value": "logit"}


def test_worker_evaluates_as_excel_does():
    y, X, g, off = safety_columns()
    rng = lambda v: {"kind": "range", "value": v}          # noqa: E731
    zero, omitted = {"kind": "zero", "value": 0}, {"kind": "omitted"}
    want = udfs.GLMM_POISSON(y, X, g, off)
    got = libreoffice.evaluate({"function": "GLMM_POISSON",
                                "args": [rng(y), rng(X), rng(g), rng(off)]})
    assert got == want
    # an unresolved 0 in a range argument means none; in fit_intercept it asks
    got = libreoffice.evaluate({"function": "GLMM_POISSON",
                                "args": [rng(y), rng(X), rng(g), zero, zero, {"kind": "value",
                                                                                "value": 0}]})
    assert got == udfs.GLMM_POISSON(y, X, g, fit_intercept=0)
    msg = libreoffice.evaluate({"function": "GLMM_POISSON",
                                "args": [rng(y), rng(X), rng(g), omitted, omitted, zero]})
    assert msg.startswith("#GLMM! ") and "write fit_intercept out" in msg
    # scalars where xlwings hands rows, and the other way round
    got = libreoffice.evaluate({"function": "GLMM_POISSON", "args": [
        rng(y), rng(X), rng(g), rng(off), omitted, omitted, {"kind": "range",
                                                             "value": [[0.1]]}]})
    assert got == udfs.GLMM_POISSON(y, X, g, off, alpha=0.1)
    assert libreoffice.evaluate({"function": "NOPE"}).startswith("#GLMM! unknown function")
    assert "at most 8" in libreoffice.evaluate({"function": "GLMM_POISSON",
                                                "args": [omitted] * 9})
    # a required argument left out is passed as None, as xlwings does
    assert libreoffice.evaluate({"function": "GLMM_POISSON", "args": []}) == \
        udfs.GLMM_POISSON(None, None, None)


def test_bridge_and_worker_process_round_trip(tmp_path):
    """xlglmm_calc.call -> a real worker process -> the block GLMM_POISSON gives."""
    mod = load_bridge()
    mod._state["config"] = {"python": sys.executable,
                            "env": {"PYTHONPATH": str(ROOT)}, "timeout": 120}
    mod._here = lambda: str(tmp_path)
    try:
        y, X, g, off = safety_columns()
        got = mod.call("GLMM_POISSON", 4, as_tuples(y), as_tuples(X), as_tuples(g),
                       as_tuples(off), None, None, None, None)
        assert got == cells(udfs.GLMM_POISSON(y, X, g, off))
        row = dict((r[0], r[1]) for r in got)
        assert row["converged"] == 1.0 and row["singular"] == 0.0
        first = mod._state["worker"]
        # the same worker answers the next call; a 1x1 answer is one cell
        got = mod.call("GLMM_POISSON", 3, as_tuples(y[:3]), as_tuples(X[:3]),
                       as_tuples(g[:3]), None, None, None, None, None)
        assert mod._state["worker"] is first
        assert got == ((udfs.GLMM_POISSON(y[:3], X[:3], g[:3]),),)
        assert got[0][0].startswith("#GLMM! ")
    finally:
        mod._stop_worker()


def fake_worker(tmp_path, body):
    """A package `xlglmm` whose `bridges.libreoffice` module runs `body` instead of serving."""
    pkg = tmp_path / "fake" / "xlglmm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bridges").mkdir()
    (pkg / "bridges" / "__init__.py").write_text("")
    (pkg / "bridges" / "libreoffice.py").write_text(textwrap.dedent(body))
    return str(tmp_path / "fake")


@pytest.mark.parametrize("body, timeout, words", [
    ("""
     import sys, time
     print('{"protocol": 1}', flush=True)
     sys.stdin.readline(); time.sleep(60)
     """, 1, "no answer from xlglmm within 1 s"),
    ("""
     import sys
     print('{"protocol": 1}', flush=True)
     sys.stdin.readline(); sys.stderr.write("Segmentation fault (simulated)\\n"); sys.exit(139)
     """, 30, "ended unexpectedly (Segmentation fault (simulated))"),
    ("""
     print('{"protocol": 0}', flush=True)
     """, 30, "rerun `xlglmm libreoffice install`"),
])
def test_a_broken_worker_gives_a_message_never_an_empty_cell(tmp_path, body, timeout, words):
    mod = load_bridge()
    mod._state["config"] = {"python": sys.executable, "timeout": timeout,
                            "env": {"PYTHONPATH": fake_worker(tmp_path, body)}}
    mod._here = lambda: str(tmp_path)
    try:
        got = mod.call("GLMM_POISSON", 1, ((1.0,), (2.0,)))
        assert len(got) == 1 and len(got[0]) == 1
        assert got[0][0].startswith("#GLMM! ") and words in got[0][0], got
        assert mod._state["worker"] is None              # stopped, restarted next time
    finally:
        mod._stop_worker()


def test_missing_interpreter_or_config(tmp_path):
    mod = load_bridge()
    mod._here = lambda: str(tmp_path)
    got = mod.call("GLMM_POISSON", 1, ((1.0,),))
    assert "xlglmm_calc.json is missing" in got[0][0] and "libreoffice install" in got[0][0]
    mod._state["config"] = {"python": str(tmp_path / "no-such-python")}
    got = mod.call("GLMM_POISSON", 1, ((1.0,),))
    assert got[0][0].startswith("#GLMM! cannot start")


def test_basic_module_is_generated_from_the_signatures():
    shipped = (SCRIPT.parent / libreoffice.BASIC_FILE).read_text()
    assert shipped == libreoffice.basic_module()
    for f in udfs.UDFS:
        assert f"Function {f.__name__}(" in shipped
        params = list(__import__("inspect").signature(f).parameters)
        assert f"XlglmmRun(\"{f.__name__}\", given, a)" in shipped
        assert f"Dim a({len(params) - 1}) As Variant" in shipped


def test_install_and_uninstall_edit_a_profile(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)      # no launchers in the test's venv
    user = tmp_path / "user"
    std = user / "basic" / "Standard"
    std.mkdir(parents=True)
    xlb = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE library:library PUBLIC '
           '"-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "library.dtd">\n'
           '<library:library xmlns:library="http://openoffice.org/2000/library" '
           'library:name="Standard" library:readonly="false" '
           'library:passwordprotected="false">\n <library:element library:name="Module1"/>\n'
           '</library:library>\n')
    (std / "script.xlb").write_text(xlb)
    assert cli.main(["libreoffice", "install", "--profile", str(user), "--no-check"]) == 0
    out = capsys.readouterr().out
    assert "XLGLMM" in out and "macro security" in out.lower()
    # the worker's Python gets its kernels compiled now: the first cell does not wait
    assert "Compiling the numerical kernels" in out and "  done in " in out
    text = (std / "script.xlb").read_text()
    assert text.count('library:name="XLGLMM"') == 1 and "Module1" in text
    assert cli.main(["libreoffice", "install", "--profile", str(user), "--no-check"]) == 0
    assert (std / "script.xlb").read_text().count('library:name="XLGLMM"') == 1
    xba = (std / "XLGLMM.xba").read_text()
    assert 'script:name="XLGLMM"' in xba and "Function GLMM_POISSON(" in xba
    assert "&quot;#GLMM!" in xba                                  # escaped for XML
    cfg = json.loads((user / "Scripts" / "python" / "xlglmm_calc.json").read_text())
    assert cfg["python"] == sys.executable
    assert (user / "Scripts" / "python" / "xlglmm_calc.py").read_bytes() == SCRIPT.read_bytes()
    assert cli.main(["libreoffice", "uninstall", "--profile", str(user)]) == 0
    assert 'XLGLMM' not in (std / "script.xlb").read_text()
    assert not (std / "XLGLMM.xba").exists()
    assert not (user / "Scripts" / "python" / "xlglmm_calc.py").exists()
    # a profile LibreOffice has not created yet
    assert cli.main(["libreoffice", "install", "--profile", str(tmp_path / "none"),
                     "--no-check"]) == 5                      # the environment (Exit.ENVIRONMENT)
    assert "start LibreOffice once" in capsys.readouterr().out


def test_worker_gets_a_clean_environment_and_folder(tmp_path, monkeypatch):
    """The worker runs the recorded interpreter with none of the Python settings of
    LibreOffice's environment, and not from the profile's Scripts/python folder."""
    mod = load_bridge()
    lo_env = {"PATH": "/venv/bin:/usr/bin", "HOME": "/home/u", "LANGUAGE": "de",
              "VIRTUAL_ENV": "/venv", "VIRTUAL_ENV_PROMPT": "(venv) ",
              "PYTHONHOME": "/usr", "PYTHONPATH": "/usr/lib/libreoffice/program",
              "PYTHONSTARTUP": "/home/u/startup.py", "__PYVENV_LAUNCHER__": "/venv/bin/python",
              "NUMBA_CACHE_DIR": "/cache"}
    assert mod.worker_environment(lo_env, {"PYTHONPATH": "/src"}) == {
        "PATH": "/venv/bin:/usr/bin", "HOME": "/home/u", "LANGUAGE": "de",
        "NUMBA_CACHE_DIR": "/cache", "PYTHONSAFEPATH": "1", "PYTHONPATH": "/src"}
    folder = mod.worker_folder()            # a fresh empty one (tests/bridges/test_hostile_installers.py)
    assert os.path.isdir(folder) and os.listdir(folder) == []
    os.rmdir(folder)
    # a real worker from such an environment: PYTHONHOME of another Python and a
    # PYTHONPATH and a macro folder with modules that would replace numpy's and the
    # standard library's would each stop it
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("numpy.py", "random.py", "json.py"):
        (evil / name).write_text("raise SystemExit('imported from the wrong folder')\n")
        (tmp_path / name).write_text("raise SystemExit('imported from Scripts/python')\n")
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-such-python"))
    monkeypatch.setenv("PYTHONPATH", str(evil))
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path))
    mod._state["config"] = {"python": sys.executable, "env": {"PYTHONPATH": str(ROOT)},
                            "timeout": 120}
    mod._here = lambda: str(tmp_path)
    try:
        y, X, g, off = safety_columns()
        got = mod.call("GLMM_POISSON", 3, as_tuples(y[:3]), as_tuples(X[:3]),
                       as_tuples(g[:3]), None, None, None, None, None)
        assert got == ((udfs.GLMM_POISSON(y[:3], X[:3], g[:3]),),)
    finally:
        mod._stop_worker()
    assert libreoffice.check_worker(sys.executable, {"PYTHONPATH": str(ROOT)}) == ""


def test_long_bridge_messages_are_cut_to_one_short_line():
    mod = load_bridge()
    (cell,), = mod._error_cell("a\nb  " + "x" * 400)
    assert cell.startswith("#GLMM! a b xxx") and len(cell) == 250 and cell.endswith("\u2026")
    for msg in (libreoffice.PYTHON_DID_NOT_START, libreoffice.SCRIPT_FAILED):
        assert msg.startswith("#GLMM! ") and len(msg) <= 130 and "\n" not in msg
        assert f'XlglmmRun = "{msg}"' in libreoffice.basic_module()


def shell_output(script: Path, env: dict) -> dict:
    """The environment `script` hands the program it execs (here: env)."""
    out = subprocess.run([str(script)], env=env, capture_output=True, text=True,
                         check=True).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {k: v for k, v in got.items() if k not in ("PWD", "OLDPWD", "SHLVL", "_")}


@pytest.mark.skipif(os.name == "nt", reason="the launchers are POSIX shell scripts")
def test_launcher_drops_the_venv_and_puts_libreoffices_python_first(tmp_path):
    venv_bin = tmp_path / "my venv" / "bin"             # a space, quoted in the script
    venv_bin.mkdir(parents=True)
    script = venv_bin / "soffice"
    script.write_text(libreoffice.launcher_script(shutil.which("env"), str(venv_bin),
                                                  "/usr/bin"))
    script.chmod(0o755)
    shell = {"PATH": f"{venv_bin}:/opt/pyenv/shims:/opt/pyenv/bin::/usr/local/bin:/usr/bin",
             "VIRTUAL_ENV": str(venv_bin.parent), "VIRTUAL_ENV_PROMPT": "(venv) ",
             "PYTHONHOME": "/x", "PYTHONPATH": "/y", "HOME": "/home/u", "LANG": "C.UTF-8"}
    got = shell_output(script, shell)
    assert got == {"PATH": "/usr/bin:/opt/pyenv/shims:/opt/pyenv/bin:/usr/local/bin:/usr/bin",
                   "HOME": "/home/u", "LANG": "C.UTF-8"}
    assert got == libreoffice.launcher_environment(shell, str(venv_bin), "/usr/bin")
    assert libreoffice.is_launcher(script)
    assert libreoffice.which("soffice", f"{venv_bin}:{tmp_path}") is None


@pytest.mark.skipif(os.name == "nt", reason="the launchers are POSIX shell scripts")
def test_launchers_are_written_for_the_commands_found_and_removed_again(tmp_path):
    venv_bin, system = tmp_path / "venv" / "bin", tmp_path / "system"
    venv_bin.mkdir(parents=True)
    system.mkdir()
    for name in ("soffice", "libreoffice", "localc", "lowriter"):
        (system / name).write_text("#!/bin/sh\necho real\n")
        (system / name).chmod(0o755)
    (venv_bin / "lowriter").write_text("#!/bin/sh\necho the user's own\n")
    env = {"PATH": f"{venv_bin}:{system}"}
    written = libreoffice.write_launchers(venv_bin, "/usr/bin/python3", env)
    assert sorted(p.name for p in written) == ["libreoffice", "localc", "soffice"]
    assert f"exec {system / 'localc'} " in (venv_bin / "localc").read_text()
    assert "the user's own" in (venv_bin / "lowriter").read_text()      # not replaced
    assert libreoffice.which("soffice", env["PATH"]) == str(system / "soffice")
    # a second install rewrites its own launchers, never chains them
    assert len(libreoffice.write_launchers(venv_bin, "/usr/bin/python3", env)) == 3
    assert f"exec {system / 'soffice'} " in (venv_bin / "soffice").read_text()
    removed = libreoffice.remove_launchers(venv_bin)
    assert sorted(p.name for p in removed) == ["libreoffice", "localc", "soffice"]
    assert sorted(p.name for p in venv_bin.iterdir()) == ["lowriter"]


# ---- end to end in headless LibreOffice Calc ----------------------------------------------

def uno_python() -> str | None:
    """A Python that imports LibreOffice's `uno` module."""
    for cand in (os.environ.get("XLGLMM_UNO_PYTHON"), "/usr/bin/python3",
                 shutil.which("python3")):
        if cand and Path(cand).is_file():
            r = subprocess.run([cand, "-c", "import uno"], capture_output=True)
            if r.returncode == 0:
                return cand
    return None


SOFFICE = libreoffice.find_soffice()
UNO_PYTHON = uno_python()
needs_calc = pytest.mark.skipif(
    SOFFICE is None or UNO_PYTHON is None,
    reason="needs LibreOffice Calc and its Python bridge: apt-get install "
           "libreoffice-calc-nogui python3-uno libreoffice-script-provider-python "
           f"(soffice: {SOFFICE}, python with uno: {UNO_PYTHON})")

DATA_ROWS = len(SAFETY) + 1                     # header + rows, in columns A:E of 'Data'


def safety_sheet():
    cellmap = {}
    for j, col in enumerate(["incidents", "training", "plant", "month", "log_employees"]):
        letter = "ABCDE"[j]
        cellmap[f"{letter}1"] = col
        vals = (np.log(SAFETY.employees) if col == "log_employees" else SAFETY[col]).tolist()
        for i, v in enumerate(vals):
            cellmap[f"{letter}{i + 2}"] = v
    return cellmap


def rng(col, sheet=""):
    return f"{sheet}{col}1:{col}{DATA_ROWS}"


def synthetic_jobs():
    """Sheets that test what the templates do not: formula form, explicit and omitted
    arguments, dependent cells and bad input."""
    y, X, G, O = rng("A"), rng("B"), f"C1:D{DATA_ROWS}", rng("E")
    data = safety_sheet()
    bad = dict(data)
    bad.update({"G1": "incidents", "H1": "incidents", "I1": "incidents"})
    for i in range(2, DATA_ROWS + 1):
        bad[f"G{i}"] = bad[f"H{i}"] = bad[f"I{i}"] = data[f"A{i}"]
    bad["G5"], bad["G9"] = "n/a", "?"                # text in a numeric range
    bad["H7"] = "=NA()"                              # an error value
    del bad["I10"]                                   # a blank cell: the row is dropped
    main = {
        "cells": {"S": {**data, "R1": "=EXP(H3)", "R2": "=H3"}},
        "arrays": {"S": {
            "G1:P29": f"=GLMM_POISSON({y};{X};{G};{O})",
            "G30:P59": '=GLMM("incidents ~ training + (1|plant) + (1|month) + '
                       f'offset(log_employees)";A1:E{DATA_ROWS})',
            "G60:P89": f"=GLMM_POISSON({y};{X};{G};;;;;0)",        # nAGQ 0, four omitted
            "G90:P119": f"=GLMM_POISSON({y};{X};{G};;;0)",         # fit_intercept FALSE
            "G120:J150": f"=GLMM_RANEF({y};{X};{G};;;0;1)",        # two calls with seven
            "L120:O150": f"=GLMM_RANEF({y};{X};{G};;;;1)",         # arguments that differ
            # the array ranges are larger than the blocks: Calc pads them with #N/A and
            # calls no macro with an error in a range, so IFNA blanks the padding
            "G160:O167": '=GLMM_COMPARE(IFNA(G60:P89;"");IFNA(G1:P29;""))',
            "G170:O177": "=GLMM_COMPARE(G60:P89;G1:P29)",
            "G180:M184": f'=GLMM_CONFINT({y};{X};{G};{O};;;;;;;"profile")',   # 6 omitted
        }}}
    errors = {
        "cells": {"S": bad},
        "arrays": {"S": {
            "K1:T29": f"=GLMM_POISSON({rng('G')};{X};{G})",
            "K30:T59": f"=GLMM_POISSON({rng('H')};{X};{G})",
            "K60:T89": f"=GLMM_POISSON({rng('I')};{X};{G})",
        }}}
    return [main, errors]


def lo_value(v):
    """A cell read back from Calc as the value openpyxl reads from Excel's file."""
    if isinstance(v, dict):
        return v["error"]
    return None if v == "" else v


def lo_block(sheet: dict, ref: str) -> list:
    r1, c1, r2, c2 = parse_range(ref)
    return [[lo_value(sheet.get(f"{get_column_letter(c)}{r}")) for c in range(c1, c2 + 1)]
            for r in range(r1, r2 + 1)]


def with_booleans(block):
    """Calc has no Boolean cells: a block's TRUE/FALSE arrive as 1/0."""
    out = []
    for row in block:
        if row and row[0] in ("converged", "singular") and isinstance(row[1], float):
            row = [row[0], bool(row[1])] + row[2:]
        out.append(row)
    return out


def trim(block):
    """The block without the #N/A padding of an array range larger than the result."""
    rows = [r for r in block if any(v not in (None, "#N/A") for v in r)]
    width = max(max((j + 1 for j, v in enumerate(r) if v not in (None, "#N/A")), default=0)
                for r in rows)
    return [[None if v == "#N/A" else v for v in r[:width]] for r in rows]


def readme_shell(tmp: Path) -> tuple[dict, Path]:
    """The environment of the shell the README leaves a user in: a venv made by `python3
    -m venv` (from the Python the test's own venv was made from) and activated, pyenv's
    shims/ and bin/ next when pyenv is there, then the rest of PATH.  xlglmm is importable
    in the venv through a .pth file that adds this checkout and the test's site-packages
    (instead of a second installation)."""
    venv = tmp / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                    "--without-pip", str(venv)], check=True, timeout=120)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "xlglmm_under_test.pth").write_text(
        f"{ROOT}\nimport site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    first = [str(venv / "bin")] + [str(pyenv / d) for d in ("shims", "bin")
                                   if (pyenv / d).is_dir()]
    own = {str(Path(sys.prefix) / "bin")} if sys.prefix != sys.base_prefix else set()
    rest = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep)
            if d and d not in own and d not in first]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT")}
    env.update(PATH=os.pathsep.join(first + rest), VIRTUAL_ENV=str(venv),
               VIRTUAL_ENV_PROMPT="(venv) ")
    return env, venv


def run_driver(tmp: Path, user: Path, jobs: list, env: dict, soffice: str) -> list:
    """Start LibreOffice as `soffice` (a name: looked up on the PATH of `env`, as a shell
    does) in exactly the environment `env`, run the driver's jobs, return its results."""
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([UNO_PYTHON, str(DRIVER), "--as-given", "--profile", str(user.parent),
                    "--jobs", str(tmp / "jobs.json"), "--out", str(tmp / "out.json"),
                    "--soffice", soffice], check=True, timeout=600, cwd=tmp, env=env)
    return json.loads((tmp / "out.json").read_text())


@pytest.fixture(scope="module")
def calc(tmp_path_factory):
    """In the shell the README leaves a user in (:func:`readme_shell`): run `xlglmm
    libreoffice install --init` into a fresh profile, start LibreOffice as `libreoffice`
    headless, let Calc recalculate the templates (stored results removed) and the
    synthetic sheets; return what Calc computed."""
    tmp = tmp_path_factory.mktemp("calc")
    shell, venv = readme_shell(tmp)
    user = tmp / "profile" / "user"
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "xlglmm", "libreoffice",
                                "install", "--init", "--profile", str(user)], env=shell,
                               capture_output=True, text=True, timeout=600, cwd=tmp)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    jobs, names = [], []
    for path in TEMPLATE_FILES:
        bare = tmp / path.name
        openpyxl.load_workbook(path).save(bare)          # formulas only, no cached values
        jobs.append({"open": str(bare), "save": str(tmp / f"lo_{path.name}"),
                     "pdf": str(tmp / f"lo_{path.stem}.pdf")})
        names.append(path.stem)
    jobs += synthetic_jobs()
    results = run_driver(tmp, user, jobs, shell, "libreoffice")
    for r in results:
        assert "failed" not in r, r
    return {"tmp": tmp, "templates": dict(zip(names, results)),
            "synthetic": results[len(names):], "log": user / "Scripts" / "python",
            "shell": shell, "venv": venv, "user": user, "installed": installed.stdout}


def lo_python_and_program():
    python = libreoffice.system_python(SOFFICE)
    return python, Path(SOFFICE).resolve().parent


@needs_calc
def test_installer_in_the_readme_shell_writes_launchers_and_says_how_to_start(calc):
    python, program = lo_python_and_program()
    out, venv = calc["installed"], calc["venv"]
    problem = python and libreoffice.python_problem(python, calc["shell"], program)
    if not problem:
        assert "Start LibreOffice." in out.splitlines()
        pytest.skip("LibreOffice's Python starts in the README's shell here: no launchers")
    assert problem.startswith(f"{venv / 'bin' / 'python3'} is the first python3 on PATH")
    assert f"installed launcher: {venv / 'bin' / 'libreoffice'}" in out
    assert libreoffice.is_launcher(venv / "bin" / "libreoffice")
    assert ("Start LibreOffice from the desktop menu, or as `libreoffice` with this venv "
            "active (its launcher keeps the venv's Python away from LibreOffice's).") in out


@needs_calc
def test_python_problem_predicts_what_libreoffice_does(calc):
    """The diagnosis behind the launchers, against LibreOffice itself: soffice started
    directly (not through the launcher) from the README's shell, and from it after
    `deactivate`.  Where LibreOffice's Python is predicted to fail, every xlglmm cell
    says so in one short line; where not, it computes."""
    python, program = lo_python_and_program()
    if python is None:
        pytest.skip("this LibreOffice brings its own Python: PATH does not matter")
    shell, venv = calc["shell"], calc["venv"]
    deactivated = {k: v for k, v in shell.items()
                   if k not in ("VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT")}
    deactivated["PATH"] = os.pathsep.join(d for d in shell["PATH"].split(os.pathsep)
                                          if d != str(venv / "bin"))
    shells = {"venv active": shell, "deactivated": deactivated}
    predicted = {k: libreoffice.python_problem(python, env, program)
                 for k, env in shells.items()}
    if not predicted["venv active"]:
        pytest.skip("the README's venv is made from LibreOffice's own Python here: "
                    "nothing to reproduce")
    y = [["y"], [1.0], [2.0], [3.0]]
    X = [["x"], [1.0], [2.0], [4.0]]
    g = [["g"], ["a"], ["b"], ["a"]]
    job = {"cells": {"S": {f"{c}{i + 1}": v[0] for c, col in zip("ABC", (y, X, g))
                           for i, v in enumerate(col)}},
           "arrays": {"S": {"E1:E1": "=GLMM_POISSON(A1:A4;B1:B4;C1:C4)"}}}
    want = udfs.GLMM_POISSON(y, X, g)[0][0]
    for name, env in shells.items():
        tmp = calc["tmp"] / name.replace(" ", "_")
        tmp.mkdir()
        (result,) = run_driver(tmp, calc["user"], [job], env, SOFFICE)
        cell = result["sheets"]["S"]["E1"]
        if predicted[name]:
            assert cell == libreoffice.PYTHON_DID_NOT_START, (name, predicted[name], cell)
        else:
            assert cell == want, (name, cell)


@needs_calc
@pytest.mark.parametrize("name", sorted(MODELS))
def test_calc_computes_the_templates_as_glmer(calc, name):
    src = ROOT / "workbooks" / f"{name}.xlsx"
    sheets = calc["templates"][name]["sheets"]
    checks, _ = MODELS[name](data_frame(openpyxl.load_workbook(src, data_only=True)))
    formulas = xlglmm_formulas(src)
    assert set(formulas) == set(checks)
    for where, (kind, res) in checks.items():
        sheet, _ = where.split("!")
        block = with_booleans(trim(lo_block(sheets[sheet], formulas[where][1])))
        CHECKS[kind](block, res)


@needs_calc
@pytest.mark.parametrize("name", sorted(MODELS))
def test_calc_cells_equal_xlglmm_recalc(calc, name, tmp_path):
    """Every cell Calc shows -- blocks and the formulas that read them -- equals what
    `xlglmm recalc` stores for Excel."""
    src = ROOT / "workbooks" / f"{name}.xlsx"
    ours = tmp_path / "recalc.xlsx"
    assert cli.main(["recalc", str(src), "-o", str(ours), "--quiet"]) == 0
    wb = openpyxl.load_workbook(ours, data_only=True)
    sheets = calc["templates"][name]["sheets"]
    compared = 0
    for ws in wb.worksheets:
        lo = sheets[ws.title]
        for row in ws.iter_rows():
            for c in row:
                want, got = c.value, lo_value(lo.get(c.coordinate))
                if want is None and got is None:
                    continue
                compared += 1
                if isinstance(want, bool):
                    want = float(want)
                if isinstance(want, (int, float)) and isinstance(got, (int, float)):
                    assert math.isclose(got, want, rel_tol=1e-7, abs_tol=1e-10), \
                        (ws.title, c.coordinate, got, want)
                else:
                    assert got == want, (ws.title, c.coordinate, got, want)
    assert compared > 300


@needs_calc
def test_calc_saves_and_renders_the_workbook(calc):
    tmp = calc["tmp"]
    for name in calc["templates"]:
        saved = openpyxl.load_workbook(tmp / f"lo_{name}.xlsx", data_only=True)
        assert "Model" in saved.sheetnames
        pdf = (tmp / f"lo_{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    wb = openpyxl.load_workbook(tmp / "lo_workplace_safety.xlsx", data_only=True)
    assert wb["Model"]["B5"].value == "Fixed effects"
    assert wb["Model"]["C7"].value == pytest.approx(-0.4205, abs=1e-4)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "2", "-l", "2", "-singlefile",
                        str(tmp / "lo_grouseticks.pdf"), str(tmp / "page")], check=True)
        assert (tmp / "page.png").stat().st_size > 10_000


@needs_calc
def test_calc_formula_form_omitted_arguments_and_dependent_cells(calc):
    s = calc["synthetic"][0]["sheets"]["S"]
    y, X, g, off = safety_columns()
    table = [["incidents", "training", "plant", "month", "log_employees"]] + [
        [a[0], b[0], c[0], c[1], d[0]] for a, b, c, d in zip(y[1:], X[1:], g[1:], off[1:])]
    fit = trim(lo_block(s, "G1:P29"))
    assert fit == trim(udfs_block(udfs.GLMM_POISSON(y, X, g, off)))
    assert s["R1"] == pytest.approx(fit[2][7]) and s["R2"] == pytest.approx(-0.4205, abs=1e-4)
    formula = trim(lo_block(s, "G30:P59"))
    assert formula == trim(udfs_block(udfs.GLMM(
        "incidents ~ training + (1|plant) + (1|month) + offset(log_employees)", table)))
    assert trim(lo_block(s, "G60:P89")) == trim(udfs_block(udfs.GLMM_POISSON(y, X, g,
                                                                              nAGQ=0)))
    no_intercept = trim(lo_block(s, "G90:P119"))
    assert no_intercept == trim(udfs_block(udfs.GLMM_POISSON(y, X, g, fit_intercept=False)))
    assert not any(r[0] == "(Intercept)" for r in no_intercept[:4])
    for ref in ("G120", "L120"):                  # same argument count, differ: ask
        assert s[ref].startswith("#GLMM! ") and "write fit_intercept out" in s[ref]
    compare = udfs.GLMM_COMPARE(udfs.GLMM_POISSON(y, X, g, nAGQ=0), udfs.GLMM_POISSON(y, X, g, off))
    assert trim(lo_block(s, "G160:O167")) == trim(udfs_block(compare))
    assert s["G170"] == {"error": "#N/A"}
    intervals = udfs.GLMM_CONFINT(y, X, g, off, method="profile")
    assert trim(lo_block(s, "G180:M184")) == trim(udfs_block(intervals))
    assert s["J181"] == pytest.approx(0.587176, abs=1e-5)  # lme4: the plant SD's upper limit


def udfs_block(result):
    """A UDF result as rows (a single value as a 1x1 block).  Its True/False equal
    Calc's 1/0 under ==, so no conversion is needed to compare."""
    rows = result if isinstance(result, list) else [[result]]
    return [list(r) for r in rows]


@needs_calc
def test_calc_bad_input(calc):
    s = calc["synthetic"][1]["sheets"]["S"]
    y, X, g, _ = safety_columns()
    text_y = [r[:] for r in y]
    text_y[4], text_y[8] = ["n/a"], ["?"]               # sheet rows 5 and 9
    assert s["K1"] == udfs.GLMM_POISSON(text_y, X, g)
    assert s["K1"].startswith("#GLMM! ") and "rows 5, 9" in s["K1"]
    # Calc does not call a macro with an error value in its arguments: its error shows
    assert s["K30"] == {"error": "#N/A"}
    blank_y = [r[:] for r in y]
    blank_y[9] = [None]                                  # sheet row 10
    fit = with_booleans(trim(lo_block(s, "K60:T89")))
    assert fit == trim(udfs_block(udfs.GLMM_POISSON(blank_y, X, g)))
    assert dict((r[0], r[1]) for r in fit)["rows dropped"] == 1
