"""LibreOffice Calc: the worksheet functions in Calc cells (``xlglmm libreoffice install``).

The bridge has three parts:

* **Basic module ``XLGLMM``** in the application library *Standard* of the user's
  LibreOffice profile ("My Macros"), generated from the worksheet functions' Python
  signatures (:func:`basic_module`).  Calc looks up a function name it does not know,
  such as ``GLMM_POISSON`` in an .xlsx, among the Basic functions, so the unchanged
  workbook templates compute.  Calc evaluates the arguments (so a range that holds
  another function's block is computed first) and hands each range over as its values.
* **``xlglmm_calc.py``** in the profile's ``Scripts/python`` folder: it runs inside
  LibreOffice's Python (standard library and ``uno`` only) and sends each call to the
  worker.
* **the worker**, ``python -m xlglmm.bridges.libreoffice serve`` (this module, :func:`serve`),
  started by xlglmm_calc.py with the interpreter recorded at install time and kept for
  the session: it turns the arguments into exactly what xlwings hands a UDF in Excel and
  calls the same functions (:mod:`xlglmm.sheet.udfs`), so Calc and Excel show the same blocks
  and the same ``#GLMM!`` messages, and share the fit cache's behaviour.

One difference from Excel cannot be hidden: Calc passes an empty argument in the middle
of a call (``GLMM_RANEF(y, X, g, , , , , "binomial", n)``) to a macro as the number 0,
the same value as a written 0 or FALSE.  xlglmm_calc.py tells them apart by reading the
formula text of the cells that call the function (:func:`resolve_zeros` there); where
that is ambiguous, 0 in a range argument means "none", and a TRUE/FALSE or nAGQ
argument gets a message asking for the value to be written out.

A second one: Calc does not call a macro whose argument holds an error value; the cell
shows Calc's error (#N/A, #DIV/0!, Err:502 ...) instead of a ``#GLMM!`` message.

A third: a LibreOffice built on the system's Python (Debian, Ubuntu, Fedora ...) lets that
Python find its library through the first ``python3`` on PATH, so a shell with a virtual
environment active breaks it; see :func:`python_problem` and :func:`write_launchers`.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from xml.sax.saxutils import escape

from .. import __version__

PROTOCOL = 1
MODULE_NAME = "XLGLMM"
LIBRARY = "Standard"
SCRIPT_FILE = "xlglmm_calc.py"
CONFIG_FILE = "xlglmm_calc.json"
LOG_FILE = "xlglmm_calc.log"
BASIC_FILE = "XLGLMM.bas"
SCRIPT_URI = f"vnd.sun.star.script:{SCRIPT_FILE}$call?language=Python&location=user"
#: seconds xlglmm_calc.py waits for one answer before stopping the worker
DEFAULT_TIMEOUT = 300
#: what a cell says when LibreOffice's Python did not start (the Basic module's text)
PYTHON_DID_NOT_START = ("#GLMM! LibreOffice's Python did not start (another Python first on "
                        "PATH): quit LibreOffice and start it from the desktop menu")
#: what a cell says when LibreOffice cannot run xlglmm_calc.py for another reason
SCRIPT_FAILED = (f"#GLMM! LibreOffice could not run {SCRIPT_FILE} (see {LOG_FILE}): run "
                 "`xlglmm libreoffice install`")

#: arguments for which 0 is never a valid value: an unresolved 0 there means "omitted"
ZERO_MEANS_OMITTED = {"formula", "family", "link", "alpha", "pred_type", "theta", "data"}

MACRO_SECURITY = (
    "Macro security: nothing to change.  The functions are Basic code in My Macros (your "
    "own profile), not in the workbook, and LibreOffice runs My Macros at every macro "
    "security level without a prompt; the workbooks themselves hold no macros.  Measured "
    "headless on LibreOffice 7.4 at levels Low, Medium, High and Very High, and with "
    "scripted loads at MacroExecutionMode NEVER_EXECUTE and ALWAYS_EXECUTE.  So do not "
    "lower the level for xlglmm.  What the code may do: xlglmm_calc.py starts one Python "
    "process (the interpreter named in xlglmm_calc.json) and exchanges cell values with it.")


# ---- the worker -----------------------------------------------------------------------------

def evaluate(request: dict):
    """One call from xlglmm_calc.py: ``{"function", "args": [{"kind", "value"}]}`` ->
    the function's result as rows of cells (or one value).  The functions, their
    parameters and range arguments are ``udfs.FUNCTIONS``."""
    from ..sheet import udfs
    from ..sheet.calling import udf_result, xlwings_value
    name = str(request.get("function", ""))
    if name not in udfs.FUNCTIONS:
        return udfs.error(f"unknown function {name!r}")
    f, params, required, ndim2 = udfs.FUNCTIONS[name]
    args = list(request.get("args", []))
    if len(args) > len(params):
        return udfs.error(f"{name} takes at most {len(params)} arguments, "
                          f"{len(args)} were given")
    kwargs = {}
    for i, p in enumerate(params):
        a = args[i] if i < len(args) else {"kind": "missing"}
        kind = a.get("kind")
        if kind == "zero":
            if p in ndim2 or p in ZERO_MEANS_OMITTED:
                kind = "omitted"
            else:
                return udfs.error(
                    f"LibreOffice passes an empty argument as 0, and {p} = 0 (FALSE) is "
                    f"also a value; in {name} write {p} out instead of leaving it empty")
        if kind in ("missing", "omitted"):
            if p in required:
                kwargs[p] = None
            continue
        kwargs[p] = xlwings_value(a.get("value"), p in ndim2)
    return udf_result(f(**kwargs))


def serve(stdin=None, stdout=None) -> int:
    """Answer one JSON request per line until stdin closes.  Anything else the process
    prints goes to stderr, so stdout carries only answers."""
    if stdout is None:
        stdout = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    stdin = stdin if stdin is not None else sys.stdin
    importlib.import_module("..sheet.udfs", __package__)   # loaded before the first request

    def answer(obj):
        stdout.write(json.dumps(obj, default=str) + "\n")
        stdout.flush()
    answer({"protocol": PROTOCOL, "version": __version__})
    for line in stdin:
        if not line.strip():
            continue
        try:
            answer({"result": evaluate(json.loads(line))})
        except Exception as e:          # the bridge turns this into a #GLMM! cell
            answer({"error": f"internal error in the xlglmm worker ({type(e).__name__}: {e})"})
    _leave_worker_folder()
    return 0


def _leave_worker_folder() -> None:
    """Remove the empty private folder xlglmm_calc.py started the worker in."""
    here = os.getcwd()
    if os.path.basename(here).startswith(bridge().WORKER_FOLDER_PREFIX):
        try:
            os.chdir(os.path.dirname(here))
            os.rmdir(here)
        except OSError:
            pass


# ---- the Basic module -------------------------------------------------------------------------

def basic_module() -> str:
    """The Basic source of module XLGLMM: one function per worksheet function of
    ``udfs.FUNCTIONS``, in its order."""
    from ..sheet import udfs
    lines = [
        "REM xlglmm worksheet functions for LibreOffice Calc.",
        "REM Generated by xlglmm (python scripts/build_addin.py); do not edit.",
        f"REM Installed by `xlglmm libreoffice install` as module {MODULE_NAME} of My Macros >",
        f"REM {LIBRARY}.  Each function passes its arguments to {SCRIPT_FILE}",
        "REM (Scripts/python in the user profile), which has the xlglmm worker fit the model.",
        "REM Calc hands a range to a Basic function as a 2-D array of its values (empty cells",
        "REM Empty); an omitted argument before the last one arrives as 0.",
        "",
        "Private oXlglmmScript As Object",
        "",
    ]
    for name, (f, params, required, ndim2) in udfs.FUNCTIONS.items():
        n = len(params)
        sig = ", ".join(f"Optional {p}" for p in params)
        lines.append(f"Function {name}({sig}) As Variant")
        lines.append(f"  Dim a({n - 1}) As Variant, given As Integer")
        lines.append("  On Error GoTo failed")
        lines.append("  given = 0")
        for i, p in enumerate(params):
            lines += [
                f"  If Not IsMissing({p}) Then",
                f"    a({i}) = {p}",
                f"    given = {i + 1}",
                "  End If",
            ]
        lines.append(f"  {name} = XlglmmRun(\"{name}\", given, a)")
        lines.append("  Exit Function")
        lines.append("failed:")
        lines.append(f"  {name} = \"#GLMM! LibreOffice Basic error in {name}: \" & Error$")
        lines.append("End Function")
        lines.append("")
    lines += [
        "Private Function XlglmmRun(fname As String, given As Integer, a As Variant) As Variant",
        "  Dim p() As Variant, i As Integer, res As Variant, outIdx(), outSeq(), msg As String",
        "  Dim r As Long, c As Long, nr As Long, nc As Long, out() As Variant, row0 As Variant",
        "  On Error GoTo failed",
        "  ReDim p(UBound(a) + 2)",
        "  p(0) = fname",
        "  p(1) = given",
        "  For i = 0 To UBound(a)",
        "    p(i + 2) = a(i)",
        "  Next i",
        "  If oXlglmmScript Is Nothing Then",
        "    Set oXlglmmScript = createUnoService(\"com.sun.star.script.provider."
        "MasterScriptProviderFactory\").createScriptProvider(\"\").getScript( _",
        f"      \"{SCRIPT_URI}\")",
        "  End If",
        "  res = oXlglmmScript.invoke(p, outIdx, outSeq)",
        "  row0 = res(LBound(res))",
        "  nr = UBound(res) - LBound(res) + 1",
        "  nc = UBound(row0) - LBound(row0) + 1",
        "  If nr = 1 And nc = 1 Then",
        "    XlglmmRun = row0(LBound(row0))",
        "    Exit Function",
        "  End If",
        "  ReDim out(1 To nr, 1 To nc)",
        "  For r = 1 To nr",
        "    row0 = res(LBound(res) + r - 1)",
        "    For c = 1 To nc",
        "      out(r, c) = row0(LBound(row0) + c - 1)",
        "    Next c",
        "  Next r",
        "  XlglmmRun = out",
        "  Exit Function",
        "failed:",
        "  msg = Join(Split(Error$, Chr(10)), \" \")",
        "  Set oXlglmmScript = Nothing",
        "  XlglmmLog fname & \": \" & msg",
        "  REM LibreOffice's Python found another Python's library (see xlglmm.bridges.libreoffice):",
        "  REM pyuno says \"can't import __main__ module\", its first call \"bad_alloc\"",
        "  If InStr(msg, \"__main__\") > 0 Or InStr(msg, \"bad_alloc\") > 0 Or _",
        "      InStr(msg, \"pythonloader\") > 0 Then",
        f"    XlglmmRun = \"{PYTHON_DID_NOT_START}\"",
        "  Else",
        f"    XlglmmRun = \"{SCRIPT_FAILED}\"",
        "  End If",
        "End Function",
        "",
        "Private Sub XlglmmLog(text As String)",
        "  Dim n As Integer",
        "  On Error GoTo done",
        "  n = FreeFile",
        "  Open createUnoService(\"com.sun.star.util.PathSubstitution\").substituteVariables( _",
        f"    \"$(user)/Scripts/python/{LOG_FILE}\", True) For Append As #n",
        "  Print #n, Format(Now, \"yyyy-mm-dd hh:mm:ss\") & \" LibreOffice Basic: \" & text",
        "  Close #n",
        "done:",
        "End Sub",
        "",
    ]
    return "\n".join(lines)


def module_xml(source: str, name: str = MODULE_NAME) -> str:
    """A Basic module as LibreOffice stores it in a profile (``<name>.xba``)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" '
            '"module.dtd">\n'
            '<script:module xmlns:script="http://openoffice.org/2000/script" '
            f'script:name="{name}" script:language="StarBasic" script:moduleType="normal">'
            f'{escape(source, {chr(34): "&quot;", chr(39): "&apos;"})}</script:module>')


def with_element(xlb: str, name: str = MODULE_NAME) -> str:
    """script.xlb (a library's module list) with module ``name`` listed."""
    entry = f'<library:element library:name="{name}"/>'
    if entry in xlb:
        return xlb
    end = "</library:library>"
    if end not in xlb:
        raise ValueError("script.xlb is not a LibreOffice library list")
    return xlb.replace(end, f" {entry}\n{end}")


def without_element(xlb: str, name: str = MODULE_NAME) -> str:
    return "\n".join(line for line in xlb.splitlines()
                     if f'library:name="{name}"' not in line) + "\n"


# ---- finding the profile and installing ----------------------------------------------------------

def default_profile() -> Path:
    """The LibreOffice user profile's ``user`` folder on this platform."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
        return base / "LibreOffice" / "4" / "user"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "LibreOffice" / "4" / "user"
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "libreoffice" / "4" / "user"


def find_soffice() -> str | None:
    """LibreOffice's ``soffice`` (never one of xlglmm's launchers, see
    :func:`write_launchers`)."""
    for name in ("soffice", "libreoffice"):
        path = which(name)
        if path:
            return path
    for cand in (r"C:\Program Files\LibreOffice\program\soffice.exe",
                 "/Applications/LibreOffice.app/Contents/MacOS/soffice"):
        if Path(cand).is_file():
            return cand
    return None


# ---- LibreOffice's own Python, and the shell LibreOffice is started from ------------------
#
# LibreOffice as Linux distributions build it (Debian, Ubuntu, Fedora ...) runs the system's
# libpython inside soffice, and its `uno` module lives in the system's dist-packages
# (Debian: /usr/lib/python3/dist-packages/uno.py, package python3-uno).  Nothing tells that
# Python where it lives, so it finds itself as `python3` typed in a shell does: it takes the
# first `python3` on PATH for its own executable and derives sys.prefix from there.  If that
# is a virtual environment's (a pyvenv.cfg beside it), LibreOffice's Python runs *in that
# venv*: its site-packages instead of the system's dist-packages, and the standard library
# of the venv's `home` (the README's venv on a pyenv machine: Debian's 3.11.2 runtime with
# pyenv's 3.11.7 library).  If it is a Python installation's (pyenv's versions/*/bin, conda,
# a /usr/local build), that installation's prefix.  Either way the system's dist-packages
# is not on sys.path: `import uno` in LibreOffice's pythonloader.py fails, the
# ModuleNotFoundError stays pending, and pyuno's next call, PyImport_AddModule("__main__"),
# returns NULL because of it: "can't import __main__ module" (the first call of a session
# reports "std::bad_alloc" instead).  PATH is the variable that breaks it (PYTHONHOME would
# too, if a shell set it); VIRTUAL_ENV plays no part.  pyenv's shims/ alone do no harm: a
# shim is a shell script with no Python beside it, and Python falls back to its built-in
# prefix /usr.  Setting PYTHONHOME=/usr or PYUNO_LOADER_PYTHONHOME for soffice does not help:
# since Python 3.11 a home replaces only the `home` of pyvenv.cfg, the venv still wins.
# (LibreOffice from libreoffice.org, and on macOS and Windows, brings its own Python and
# keeps uno.py in its program folder, which pyuno's loader puts on PYTHONPATH; on macOS
# and Windows Python does not look itself up on PATH at all.  Not tested here.)
#
# Nothing in the profile can change this -- the Python starts before any macro runs -- so
# the installer puts launchers named like LibreOffice's commands into the active venv's
# bin/: with the venv active, `libreoffice` starts LibreOffice without the venv on PATH and
# with its own Python's folder first.  python_problem() predicts the failure for any
# environment by running LibreOffice's Python the way soffice does.

#: LibreOffice's commands that a launcher in the venv replaces (those that exist)
LAUNCHER_NAMES = ("libreoffice", "soffice", "localc", "loffice", "lowriter", "loimpress",
                  "lodraw", "lobase", "lomath")
LAUNCHER_MARK = "xlglmm-libreoffice-launcher"


def is_launcher(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return LAUNCHER_MARK.encode() in f.read(300)
    except OSError:
        return False


def which(name: str, path: str | None = None) -> str | None:
    """``shutil.which`` that skips xlglmm's launchers."""
    path = os.environ.get("PATH", os.defpath) if path is None else path
    for folder in path.split(os.pathsep):
        found = shutil.which(name, path=folder) if folder else None
        if found and not is_launcher(found):
            return found
    return None


def system_python(soffice: str) -> str | None:
    """The system Python that LibreOffice ``soffice`` runs inside itself and lets find its
    library through PATH; None when LibreOffice brings its own Python (its pythonloader
    configuration sets PYUNO_LOADER_PYTHONHOME) or no system Python imports its ``uno``."""
    program = Path(soffice).resolve().parent
    for rc in ("pythonloader.unorc", "pythonloader.ini"):
        try:
            text = (program / rc).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(r"^\s*PYUNO_LOADER_PYTHONHOME\s*=", text, flags=re.MULTILINE):
            return None
    candidates = []
    try:            # the libpython pyuno is linked against names the version
        m = re.search(rb"libpython(3\.\d+)", (program / "libpyuno.so").read_bytes())
        if m:
            candidates.append(f"/usr/bin/python{m.group(1).decode()}")
    except OSError:
        pass
    candidates.append("/usr/bin/python3")
    for cand in candidates:
        if Path(cand).is_file() and not python_problem(
                cand, {"PATH": os.pathsep.join([str(Path(cand).parent), os.defpath])},
                program):
            return cand
    return None


def python_problem(python: str, environ: Mapping[str, str], program: Path | None = None) -> str:
    """'' when LibreOffice's Python ``python`` would start and import ``uno`` in a soffice
    started with environment ``environ``; else what goes wrong, in one line.  ``python`` is
    run the way soffice runs its embedded copy: named plain ``python3``, so that it looks
    itself up on PATH, with LibreOffice's program folder in front of PYTHONPATH (which is
    what pyuno's loader adds)."""
    env = dict(environ)
    if program is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(program)] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    probe = "import sys; print(sys.base_prefix, flush=True); import uno"
    try:
        r = subprocess.run(["python3", "-c", probe], executable=python, env=env, cwd="/",
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python} did not run: {e}"
    if r.returncode == 0:
        return ""
    library = (r.stdout.splitlines() or ["?"])[0]
    first = shutil.which("python3", path=env.get("PATH", ""))
    if first and os.path.realpath(first) != os.path.realpath(python):
        return (f"{first} is the first python3 on PATH, so LibreOffice's Python would load "
                f"{library}'s library and fail")
    last = (r.stderr.strip().splitlines() or ["no message"])[-1]
    return f"LibreOffice's Python ({python}, library {library}) fails: {last}"


def launcher_script(target: str, venv_bin: str, python_dir: str | None) -> str:
    """A launcher for LibreOffice's command ``target``, to live in the venv's ``venv_bin``."""
    q = shlex.quote
    return f"""#!/bin/sh
# {LAUNCHER_MARK}: written by `xlglmm libreoffice install`, removed by
# `xlglmm libreoffice uninstall`.  It starts {target} without this virtual
# environment on PATH: LibreOffice's Python (the system's) takes the first python3 on PATH
# for itself, this venv's would give it another Python's library, and every xlglmm cell
# would say "LibreOffice's Python did not start".  So this venv's bin/ leaves PATH (as
# after `deactivate`), {python_dir or "the folder of LibreOffice's Python"} comes first,
# and PYTHONHOME, PYTHONPATH and VIRTUAL_ENV are unset.
set -f
old_path=$PATH
PATH={q(python_dir or '')}
IFS=:
for d in $old_path; do
    if [ -n "$d" ] && [ "$d" != {q(venv_bin)} ]; then PATH=${{PATH:+$PATH:}}$d; fi
done
unset IFS old_path d VIRTUAL_ENV VIRTUAL_ENV_PROMPT PYTHONHOME PYTHONPATH
export PATH
exec {q(target)} "$@"
"""


def launcher_environment(environ: Mapping[str, str], venv_bin: str,
                         python_dir: str | None) -> dict:
    """The environment :func:`launcher_script` gives LibreOffice (for the installer's check)."""
    env = {k: v for k, v in environ.items() if k not in (
        "VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT", "PYTHONHOME", "PYTHONPATH")}
    keep = [d for d in environ.get("PATH", "").split(":") if d and d != venv_bin]
    env["PATH"] = ":".join(([python_dir] if python_dir else []) + keep)
    return env


def active_venv_bin(environ: Mapping[str, str] | None = None) -> Path | None:
    """bin/ of the virtual environment active in this shell (VIRTUAL_ENV), if any."""
    environ = os.environ if environ is None else environ
    venv = environ.get("VIRTUAL_ENV")
    if not venv or os.name == "nt":
        return None
    bin_dir = Path(venv) / "bin"
    return bin_dir if bin_dir.is_dir() else None


def write_launchers(venv_bin: Path, python: str | None,
                    environ: Mapping[str, str] | None = None) -> list[Path]:
    """A launcher in ``venv_bin`` for each of LibreOffice's commands found on PATH beyond
    it; never replaces a file that is not an xlglmm launcher."""
    environ = os.environ if environ is None else environ
    rest = os.pathsep.join(d for d in environ.get("PATH", os.defpath).split(os.pathsep)
                           if d and Path(d) != venv_bin)
    python_dir = str(Path(python).parent) if python else None
    written = []
    for name in LAUNCHER_NAMES:
        target = which(name, rest)
        path = venv_bin / name
        if target is None or (path.exists() and not is_launcher(path)):
            continue
        path.write_text(launcher_script(target, str(venv_bin), python_dir), encoding="utf-8")
        path.chmod(0o755)
        written.append(path)
    return written


def remove_launchers(venv_bin: Path | None) -> list[Path]:
    removed = []
    for name in LAUNCHER_NAMES if venv_bin else ():
        path = venv_bin / name
        if path.is_file() and is_launcher(path):
            path.unlink()
            removed.append(path)
    return removed


@dataclass
class Start:
    """How LibreOffice has to be started for its Python to work: ``advice`` is the one
    line the installer prints; ``launchers`` were written for it."""
    advice: str
    problem: str = ""
    launchers: list = field(default_factory=list)


def prepare_start(environ: Mapping[str, str] | None = None,
                  soffice: str | None = None) -> Start:
    """Check whether LibreOffice started from this shell would find its own Python; if the
    shell's venv is what misleads it, write the launchers into the venv."""
    environ = os.environ if environ is None else environ
    if sys.platform in ("win32", "darwin"):     # LibreOffice brings its own Python there
        return Start("Start LibreOffice.")
    soffice = soffice or find_soffice()
    python = system_python(soffice) if soffice else None
    if python is None:
        return Start("Start LibreOffice.")
    program = Path(soffice).resolve().parent
    problem = python_problem(python, environ, program)
    if not problem:
        return Start("Start LibreOffice.")
    venv_bin = active_venv_bin(environ)
    if venv_bin is not None:
        fixed = launcher_environment(environ, str(venv_bin), str(Path(python).parent))
        if not python_problem(python, fixed, program):
            launchers = write_launchers(venv_bin, python, environ)
            if any(p.name in ("libreoffice", "soffice") for p in launchers):
                return Start("Start LibreOffice from the desktop menu, or as `libreoffice` "
                             "with this venv active (its launcher keeps the venv's Python "
                             "away from LibreOffice's).", problem, launchers)
    return Start(f"Start LibreOffice from the desktop menu, not from this shell ({problem}).",
                 problem)


def shipped_file(name: str) -> Path:
    from .excel_addin import addin_file
    return addin_file(f"libreoffice/{name}")


def initialise_profile(user: Path, soffice: str, timeout: float = 180) -> None:
    """Have LibreOffice create a complete profile at ``user``: one headless conversion
    of a two-cell CSV.  (``--terminate_after_init`` is not enough: the profile it leaves
    lacks the extension registrations a first full start writes, and the first
    session after it could not load the Python script provider.)"""
    url = user.parent.resolve().as_uri()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "init.csv"
        csv.write_text("a,b\n1,2\n")
        subprocess.run([soffice, "--headless", "--norestore", f"-env:UserInstallation={url}",
                        "--convert-to", "xlsx", "--outdir", tmp, str(csv)], check=True,
                       timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not (user / "basic" / LIBRARY / "script.xlb").is_file():
        raise RuntimeError(f"LibreOffice did not create a profile in {user}")


@dataclass
class Installed:
    module: Path
    script: Path
    config: Path
    start: Start = field(default_factory=lambda: Start("Start LibreOffice."))
    #: timestamped copies of files that were there, differed, and were not xlglmm's own
    backups: list = field(default_factory=list)


def is_running(user: Path) -> bool:
    """LibreOffice holds ``.lock`` beside the ``user`` folder while it runs."""
    return (user.parent / ".lock").exists()


def interpreter_path(python: str) -> str:
    """The worker's interpreter as an absolute path: a bare name (``python3``) or a
    relative one would be looked up later from LibreOffice's PATH or working folder, and
    could be another Python.  Symbolic links are kept (a venv's python is one, and
    resolving it would leave the venv)."""
    if not python or any(ord(c) < 32 for c in python):
        raise ValueError(f"--python {python!r} is not a path to a program")
    found = python if os.path.dirname(python) else shutil.which(python)
    if not found or not os.path.isfile(found):
        raise FileNotFoundError(f"--python {python}: no such program"
                                + ("" if os.path.dirname(python) else " on PATH"))
    return os.path.abspath(found)


def worker_env(python: str) -> dict:
    """Environment the worker needs: nothing when ``python`` imports xlglmm by itself
    (installed with pip), else PYTHONPATH = the folder holding this xlglmm package (run
    from a checkout).  Raises RuntimeError when neither starts a worker."""
    problem = check_worker(python)
    if not problem:
        return {}
    src = str(Path(__file__).resolve().parents[2])
    if not check_worker(python, env={"PYTHONPATH": src}):
        return {"PYTHONPATH": src}
    raise RuntimeError(f"{python} cannot run the xlglmm worker: {problem}")


# ---- writing into the profile without losing what is there --------------------------------
# A file we are about to replace or remove that differs from what we write, and is not one
# an earlier `xlglmm libreoffice install` wrote (its SHA-256 is recorded under "files" in
# xlglmm_calc.json), was changed by hand or belongs to someone else (another macro
# module named XLGLMM): it is kept beside itself as <name>.<YYYYmmdd-HHMMSS>.bak.  A
# file identical to ours is left alone.

def digest(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def backup_path(path: Path) -> Path:
    import time
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cand, k = path.with_name(f"{path.name}.{stamp}.bak"), 1
    while cand.exists():
        cand, k = path.with_name(f"{path.name}.{stamp}-{k}.bak"), k + 1
    return cand


def keep_backup(path: Path, data: bytes | None, ours) -> Path | None:
    """Before ``path`` is replaced by ``data`` (None: removed): copy it aside unless it
    is missing, equal to ``data``, or one of ``ours`` (SHA-256s).  Returns the copy."""
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        return None
    if old == data or digest(old) in ours:
        return None
    backup = backup_path(path)
    shutil.copy2(path, backup)
    return backup


def write_kept(path: Path, data: bytes, ours, backups: list) -> None:
    """Write ``data`` to ``path`` (nothing when it holds it already), backing up first."""
    backup = keep_backup(path, data, ours)
    if backup is not None:
        backups.append(backup)
    elif path.is_file() and path.read_bytes() == data:
        return
    path.write_bytes(data)


def read_config(path: Path) -> dict | None:
    """xlglmm_calc.json as a dict; None when it is missing or not ours to read."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def recorded_files(cfg: dict | None) -> set:
    files = (cfg or {}).get("files")
    return {v for v in files.values() if isinstance(v, str)} if isinstance(files, dict) \
        else set()


def install(user: Path, python: str, timeout: float = DEFAULT_TIMEOUT,
            env: dict | None = None, launchers: bool = True) -> Installed:
    """Write the Basic module, xlglmm_calc.py and its configuration into profile ``user``
    (``env``: extra environment for the worker, see :func:`worker_env`); with
    ``launchers``, check how LibreOffice must be started from this shell and write the
    launchers into its venv if they make it work (:func:`prepare_start`).  Files that
    differ from ours and that xlglmm did not write are kept as backups (see above)."""
    std = user / "basic" / LIBRARY
    xlb = std / "script.xlb"
    if not xlb.is_file():
        raise FileNotFoundError(f"{xlb} does not exist: start LibreOffice once (or pass "
                                "--init) so that it creates its profile")
    scripts = user / "Scripts" / "python"
    config = scripts / CONFIG_FILE
    old_cfg = read_config(config)
    ours = recorded_files(old_cfg)
    backups: list = []
    module = std / f"{MODULE_NAME}.xba"
    module_data = module_xml(shipped_file(BASIC_FILE).read_text(encoding="utf-8")).encode()
    write_kept(module, module_data, ours, backups)
    listed = with_element(xlb.read_text(encoding="utf-8"))
    if listed != xlb.read_text(encoding="utf-8"):
        xlb.write_text(listed, encoding="utf-8")
    scripts.mkdir(parents=True, exist_ok=True)
    script = scripts / SCRIPT_FILE
    script_data = shipped_file(SCRIPT_FILE).read_bytes()
    write_kept(script, script_data, ours, backups)
    # keys a user added (start_timeout ...) stay; a file that is not a JSON object is kept
    cfg = {k: v for k, v in (old_cfg or {}).items()
           if k not in ("python", "xlglmm", "timeout", "env", "files")}
    cfg.update({"python": python, "xlglmm": __version__, "timeout": timeout,
                "env": env or {}, "files": {module.name: digest(module_data),
                                            script.name: digest(script_data)}})
    write_kept(config, (json.dumps(cfg, indent=1) + "\n").encode(),
               set() if old_cfg is None else {digest(config.read_bytes())}, backups)
    return Installed(module, script, config,
                     prepare_start() if launchers else Start("Start LibreOffice."), backups)


def uninstall(user: Path) -> tuple[list[Path], list[Path]]:
    """Remove the module, the script and its configuration from profile ``user``, and the
    launchers from the venv active in this shell.  Returns the removed files and the
    backups kept of a module or script that xlglmm did not write as it is."""
    removed = remove_launchers(active_venv_bin())
    std = user / "basic" / LIBRARY
    xlb = std / "script.xlb"
    if xlb.is_file():
        text = xlb.read_text(encoding="utf-8")
        if without_element(text) != text:
            xlb.write_text(without_element(text), encoding="utf-8")
    config = user / "Scripts" / "python" / CONFIG_FILE
    ours = recorded_files(read_config(config))
    backups = []
    for path in (std / f"{MODULE_NAME}.xba", user / "Scripts" / "python" / SCRIPT_FILE,
                 config):
        if path.is_file():
            if path != config:
                backup = keep_backup(path, None, ours)
                if backup is not None:
                    backups.append(backup)
            path.unlink()
            removed.append(path)
    return removed, backups


@functools.lru_cache(maxsize=None)
def bridge() -> object:
    """The shipped xlglmm_calc.py as a module (it imports without LibreOffice), so that the
    installer starts the worker exactly as LibreOffice will."""
    spec = importlib.util.spec_from_file_location("xlglmm_calc", shipped_file(SCRIPT_FILE))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_worker(python: str, env: dict | None = None, timeout: float = 120) -> str:
    """Start the worker as xlglmm_calc.py does (its command, folder and environment, with
    ``env`` added) and send it one call: returns '' when it answers, else what went
    wrong."""
    req = json.dumps({"function": "GLMM_POISSON", "args": []}) + "\n"
    calc = bridge()
    folder = calc.worker_folder()
    try:
        p = subprocess.run(calc.worker_command(python), input=req, capture_output=True,
                           text=True, timeout=timeout, cwd=folder,
                           env=calc.worker_environment(os.environ, env or {}))
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = p.stdout.splitlines()
    if len(lines) < 2 or json.loads(lines[0]).get("protocol") != PROTOCOL:
        return (p.stderr.strip().splitlines() or ["no answer"])[-1]
    return ""


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        return serve()
    print("usage: python -m xlglmm.bridges.libreoffice serve   (started by LibreOffice; "
          "to install, run: xlglmm libreoffice install)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
