# xlglmm for LibreOffice Calc: the Python half of the bridge.
#
# Installed by `xlglmm libreoffice install` into the LibreOffice user profile
# (user/Scripts/python/), beside xlglmm_calc.json which names the Python interpreter
# that has xlglmm installed.  The Basic functions of module XLGLMM (application
# library "Standard", installed by the same command) call `call` below for every
# GLMM_* / LMM cell formula.
#
# This file runs inside LibreOffice's own Python and uses only the standard library
# and the `uno` bridge: the model is fitted in a separate worker process
# (`<python> -m xlglmm.bridges.libreoffice serve`), started on the first call and kept for the
# session (its fit cache makes recalculation with unchanged inputs immediate).  So
# LibreOffice's Python version does not have to match the one xlglmm is installed in,
# a crash in the worker cannot take Calc down, and a call that does not answer in
# time is stopped (the worker is restarted on the next call).
#
# Every failure ends as one text cell starting "#GLMM! ", never as an empty cell.
import json
import os
import queue
import re
import subprocess
import tempfile
import threading

ERROR_PREFIX = "#GLMM! "
PROTOCOL = 1

_state = {"worker": None, "lines": None, "config": None, "folder": None}
_lock = threading.Lock()


def _here():
    return os.path.dirname(os.path.abspath(_here.__code__.co_filename))


def _config():
    if _state["config"] is None:
        path = os.path.join(_here(), "xlglmm_calc.json")
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except OSError:
            raise BridgeError(f"{path} is missing: run `xlglmm libreoffice install` "
                              "with the Python that has xlglmm installed")
        _state["config"] = cfg
    return _state["config"]


class BridgeError(Exception):
    pass


def _error_cell(message):
    """One short line: whitespace folded, cut with an ellipsis after 250 characters."""
    text = ERROR_PREFIX + " ".join(str(message).split())
    return ((text if len(text) <= 250 else text[:249] + "\u2026",),)


# ---- the arguments Calc passed -----------------------------------------------------------

def _argument(v):
    """One argument as {'kind': ..., 'value': ...} for the worker."""
    if v is None:
        return {"kind": "missing"}
    if isinstance(v, tuple):            # a range or an array: rows of values, None = empty
        rows = [list(r) if isinstance(r, tuple) else [r] for r in v]
        return {"kind": "range", "value": rows}
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return {"kind": "value", "value": v}
    if v == 0:
        # Calc hands an empty argument (",,") to a macro as the number 0, the same
        # as 0 or FALSE written out; which one it was is read from the formula text.
        return {"kind": "zero", "value": 0}
    return {"kind": "value", "value": v}


# ---- telling an omitted argument from 0 / FALSE ----------------------------------------

def _split_call_args(text, start):
    """The top-level arguments of the call whose '(' is at text[start], split on ';'
    (the separator of Calc's API formula grammar); None if unbalanced."""
    args, depth, cur, i = [], 0, [], start + 1
    quote = None
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:
                    cur.append(text[i + 1])
                    i += 1
                else:
                    quote = None
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            if depth == 0:
                if ch != ")":
                    return None
                args.append("".join(cur).strip())
                return args
            depth -= 1
            cur.append(ch)
        elif ch in ";," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    return None


def calls_in_formula(formula, name):
    """Argument texts of every call of `name` in a formula."""
    out = []
    for m in re.finditer(r"(?<![A-Za-z0-9_.])" + re.escape(name) + r"\s*\(", formula,
                         flags=re.IGNORECASE):
        args = _split_call_args(formula, m.end() - 1)
        if args is not None:
            if args == [""]:
                args = []
            out.append(args)
    return out


def _formulas_calling(name):
    """Formula texts of every cell calling `name`, in every open spreadsheet."""
    texts = set()
    desktop = XSCRIPTCONTEXT.getDesktop()          # noqa: F821 (set by LibreOffice)
    comps = desktop.getComponents().createEnumeration()
    while comps.hasMoreElements():
        doc = comps.nextElement()
        if not hasattr(doc, "getSheets"):
            continue
        sheets = doc.getSheets()
        for i in range(sheets.getCount()):
            sheet = sheets.getByIndex(i)
            desc = sheet.createSearchDescriptor()
            desc.setSearchString(name)
            desc.setPropertyValue("SearchType", 0)          # search formulas
            desc.setPropertyValue("SearchCaseSensitive", False)
            found = sheet.findAll(desc)
            if found is None:
                continue
            for k in range(found.getCount()):
                rng = found.getByIndex(k)
                a = rng.getRangeAddress()
                for r in range(a.EndRow - a.StartRow + 1):
                    for c in range(a.EndColumn - a.StartColumn + 1):
                        texts.add(rng.getCellByPosition(c, r).getFormula())
    return texts


def resolve_zeros(name, given, args, formulas):
    """Mark each 'zero' argument as omitted or written, from the formula texts of the
    cells calling `name` with as many arguments: if all of them agree at those
    positions, that is the answer; otherwise the zeros stay unresolved and the worker
    decides per argument (0 in a range argument means none; for TRUE/FALSE and
    nAGQ arguments it asks the user to write the value)."""
    zeros = [i for i, a in enumerate(args[:given]) if a["kind"] == "zero"]
    if not zeros:
        return args
    patterns = set()
    for f in formulas:
        for call in calls_in_formula(f, name):
            if len(call) == given:
                patterns.add(tuple(call[i] == "" for i in zeros))
    if len(patterns) == 1:
        (pattern,) = patterns
        for i, omitted in zip(zeros, pattern):
            args[i] = {"kind": "omitted"} if omitted else {"kind": "value", "value": 0}
    return args


# ---- the worker process -----------------------------------------------------------------

# The worker runs the interpreter recorded at install time, not LibreOffice's, so it gets
# none of the Python settings of LibreOffice's environment: pyuno's loader sets PYTHONPATH
# to LibreOffice's program folder, the shell LibreOffice was started from may have a venv
# active (VIRTUAL_ENV) or PYTHONHOME and other PYTHON* variables set, and macOS framework
# Pythons may leave __PYVENV_LAUNCHER__ behind.  Nothing from a folder anyone else chose
# may be imported or read: `-m` would put the working folder first on sys.path, so the
# worker runs with -P (and PYTHONSAFEPATH=1), which keeps it off, and its working folder
# is a fresh empty private one (mkdtemp), not the profile's Scripts/python, LibreOffice's
# own working folder or the interpreter's -- numba, for one, reads .numba_config.yaml
# from the working folder.  The worker removes that folder when it ends.

WORKER_FOLDER_PREFIX = "xlglmm-worker-"


def worker_environment(environ, extra):
    """LibreOffice's environment without the Python variables, plus `extra` (the "env" of
    xlglmm_calc.json: PYTHONPATH when xlglmm runs from a checkout)."""
    env = {k: v for k, v in environ.items()
           if not k.upper().startswith("PYTHON")
           and k.upper() not in ("VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT", "__PYVENV_LAUNCHER__")}
    env.update(extra)
    env["PYTHONSAFEPATH"] = "1"
    return env


def worker_command(python):
    return [python, "-P", "-m", "xlglmm.bridges.libreoffice", "serve"]


def worker_folder():
    """A new empty folder only this user can write, to start the worker in."""
    return tempfile.mkdtemp(prefix=WORKER_FOLDER_PREFIX)


def _seconds(cfg, key, default):
    """A time limit from xlglmm_calc.json: a positive finite number, else the default."""
    try:
        t = float(cfg.get(key, default))
    except (TypeError, ValueError):
        return float(default)
    return t if 0 < t < float("inf") else float(default)


def _start_worker(cfg):
    env = worker_environment(os.environ, cfg.get("env", {}))
    log = open(os.path.join(_here(), "xlglmm_calc.log"), "ab")
    flags = 0x08000000 if os.name == "nt" else 0          # CREATE_NO_WINDOW
    folder = worker_folder()
    try:
        proc = subprocess.Popen(worker_command(cfg["python"]),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                env=env, cwd=folder, creationflags=flags)
    except BaseException:
        _remove_folder(folder)
        raise
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    _state["worker"], _state["lines"], _state["folder"] = proc, lines, folder
    hello = _read(_seconds(cfg, "start_timeout", 120))
    if hello.get("protocol") != PROTOCOL:
        _stop_worker()
        raise BridgeError(f"the worker speaks protocol {hello.get('protocol')}, this "
                          f"bridge {PROTOCOL}: rerun `xlglmm libreoffice install`")


def _remove_folder(folder):
    try:
        os.rmdir(folder)            # empty unless something wrote there: then left alone
    except (OSError, TypeError):
        pass


def _last_line(path):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 2000))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        last = lines[-1].strip() if lines else "no output"
        return last if len(last) <= 100 else last[:99] + "\u2026"
    except OSError:
        return "no log"


def _stop_worker():
    proc, folder = _state["worker"], _state.get("folder")
    _state["worker"], _state["folder"] = None, None
    if proc is not None and proc.poll() is None:
        proc.kill()
        try:
            proc.wait(10)
        except Exception:
            pass
    if folder:
        _remove_folder(folder)


def _read(timeout):
    try:
        line = _state["lines"].get(timeout=timeout)
    except queue.Empty:
        _stop_worker()
        raise BridgeError(f"no answer from xlglmm within {timeout:g} s, so its worker "
                          "was stopped; recalculate to try again (`xlglmm libreoffice "
                          "install --timeout S` sets the limit)")
    if line is None:
        _stop_worker()
        log = os.path.join(_here(), "xlglmm_calc.log")
        raise BridgeError(f"the xlglmm worker process ended unexpectedly ({_last_line(log)}); "
                          f"see {log}")
    return json.loads(line.decode("utf-8"))


def _ask(request):
    cfg = _config()
    with _lock:
        proc = _state["worker"]
        if proc is None or proc.poll() is not None:
            try:
                _start_worker(cfg)
            except OSError as e:
                raise BridgeError(f"cannot start {cfg.get('python')}: {e}")
        data = (json.dumps(request) + "\n").encode("utf-8")
        try:
            _state["worker"].stdin.write(data)
            _state["worker"].stdin.flush()
        except OSError:
            _stop_worker()
            raise BridgeError("the xlglmm worker process is gone; recalculate to restart it")
        return _read(_seconds(cfg, "timeout", 300))


# ---- the entry point called from Basic -------------------------------------------------

def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    return v


def call(name, given, *args):
    """Evaluate worksheet function `name`; `given` = number of arguments written in the
    formula (Basic passes Empty for the ones after it).  Returns rows of cells."""
    try:
        given = int(given)
        parsed = [_argument(a) for a in args]
        if any(a["kind"] == "zero" for a in parsed[:given]):
            try:
                formulas = _formulas_calling(name)
            except Exception:           # no document to read: the worker decides
                formulas = ()
            parsed = resolve_zeros(name, given, parsed, formulas)
        answer = _ask({"function": name, "given": given, "args": parsed[:given]})
        if "error" in answer:
            return _error_cell(answer["error"])
        result = answer["result"]
        if not isinstance(result, list):
            return ((_cell(result),),)
        return tuple(tuple(_cell(v) for v in row) for row in result)
    except BridgeError as e:
        return _error_cell(e)
    except Exception as e:              # never an empty cell
        return _error_cell(f"LibreOffice bridge error ({type(e).__name__}): {e}")


g_exportedScripts = (call,)
