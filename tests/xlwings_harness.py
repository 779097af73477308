"""xlwings' real Windows UDF machinery, usable on Linux/macOS for tests.

On Windows, Excel runs an xlglmm worksheet function like this:

    VBA wrapper (xlglmm/bridges/addin_files/xlglmm_udfs.bas)
      -> XLPy.CallUDF("xlglmm.sheet.udfs", "GLMM_POISSON", Array(y, X, ...), ActiveWorkbook, Application.Caller)
      -> xlwings.com_server.XLPython.CallUDF       (COM server in python.exe)
      -> xlwings.udfs.call_udf                     (argument conversion, the call, result conversion)
      -> xlwings.conversion.read / .write          (with the "excel" engine's value cleaning)

Elsewhere ``import xlwings.udfs`` fails (no pywin32) and ``xw.func``/``xw.arg`` are
no-ops, so the functions in ``xlglmm.sheet.udfs`` carry no ``__xlfunc__``.  This module
makes that path run anyway, calling xlwings' own code wherever it can:

* **pywin32 stubs** and the **decorated module** (``udf_module()``: ``xlglmm/sheet/udfs.py``
  executed a second time, into a separate module object, with the real
  ``@xlfunc/@xlarg/@xlret`` decorators) come from ``scripts/xlwings_vba.py``, the build
  tool that also writes the add-in's VBA wrappers; they are re-exported here.
* **"excel" engine and ``xlwings._xlwindows``**: ``_xlwindows.py`` cannot be imported
  off Windows (ctypes.windll, COM DLLs), so the shim module built here takes the value
  cleaning code -- ``cell_errors``, ``_clean_value_data_element``,
  ``_com_time_to_datetime``, ``_datetime_to_com_time`` and the whole ``Engine`` class
  (``clean_value_data``, ``prepare_xl_data_element``) -- *from xlwings' own source
  file* (parsed with ``ast`` and executed), and adds minimal fakes for the COM parts
  ``call_udf`` touches (``Range``, ``is_range_instance``, ``BOOK_CALLER``).  Both the
  shim and the engine are installed only for the duration of one call.

``excel_call(name, *args, **kwargs)`` then calls the real
``xlwings.com_server.XLPython().CallUDF`` (which calls the real ``call_udf``), so
argument conversion, omitted-argument handling, ``conversion.write`` of the result and
the final 1x1 -> scalar / 1xN -> list collapse are all xlwings' code.

Not covered: the VBA layer itself (Excel's evaluation of the wrapper, ``On Error``),
``get_udf_module``'s import/reload (the module is registered in
``xlwings.udfs.udf_modules`` up front), async and ``caller`` arguments.
"""
from __future__ import annotations

import ast
import contextlib
import datetime as dt
import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import xlwings

# the decorated module, the pywin32 stubs and the VBA generator are a build tool
# (scripts/xlwings_vba.py, used by scripts/build_addin.py); this harness adds the rest
# of a Windows UDF call on top of them
_SCRIPTS = str(Path(__file__).resolve().parent.parent / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)

from xlwings_vba import (  # noqa: E402,F401  (re-exported for the tests)
    ADDIN_FILE_NAME, MODULE_NAME, VBA_HEADER, _TimeType, com_server, generate_vba,
    udf_functions, udf_module, wizard_help, xlwings_udfs)

FUNCTIONS = ("GLMM_POISSON", "GLMM_BINOMIAL", "GLMM", "GLMM_RANEF", "GLMM_PREDICT",
             "GLMM_COMPARE", "GLMM_NEGBIN", "LMM", "GLMM_CONFINT", "GLMM_CHECK",
             "GLMM_RESID", "GLMM_INFLUENCE", "GLMM_POWER")

#: what COM hands Python for an omitted optional argument (DISP_E_PARAMNOTFOUND);
#: ``call_udf`` replaces it by the Python default
MISSING = -2147352572


# ---- xlwings._xlwindows, as far as a UDF call needs it ------------------------------------

_FROM_XLWINDOWS = ("time_types", "cell_errors", "_com_time_to_datetime",
                   "_datetime_to_com_time", "_clean_value_data_element", "Engine")


def _xlwindows_source_nodes():
    spec = importlib.util.find_spec("xlwings._xlwindows")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), spec.origin)
    keep, found = [], set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in _FROM_XLWINDOWS:
            keep.append(node)
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if names & set(_FROM_XLWINDOWS):
                keep.append(node)
                found |= names
        elif isinstance(node, ast.If) and all(
                isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and
                                                  t.id == "time_types" for t in s.targets)
                for s in node.body):
            keep.append(node)              # `if np: time_types = time_types + (...)`
    missing = set(_FROM_XLWINDOWS) - found
    if missing:
        raise RuntimeError(f"xlwings {xlwings.__version__}: _xlwindows.py no longer defines "
                           f"{sorted(missing)}; update tests/xlwings_harness.py")
    return keep, spec.origin


class _FakeTimeZoneInfo:
    @staticmethod
    def utc():
        return dt.timezone.utc


@functools.lru_cache(maxsize=None)
def xlwindows_shim() -> types.ModuleType:
    """A stand-in for ``xlwings._xlwindows``: xlwings' own value-cleaning code (executed
    from its source file) plus fakes for the COM objects ``call_udf`` touches."""
    import numpy as np
    import pandas as pd
    from xlwings.utils import np_datetime_to_datetime

    shim = types.ModuleType("xlwings._xlwindows")
    shim.__dict__.update(dt=dt, np=np, pd=pd, np_datetime_to_datetime=np_datetime_to_datetime,
                         pywintypes=types.SimpleNamespace(TimeType=_TimeType),
                         win32timezone=types.SimpleNamespace(TimeZoneInfo=_FakeTimeZoneInfo))
    nodes, origin = _xlwindows_source_nodes()
    exec(compile(ast.Module(body=nodes, type_ignores=[]), origin, "exec"), shim.__dict__)
    shim.engine = shim.Engine()            # xlwings' Engine class: name "excel", "desktop"
    shim.BOOK_CALLER = None
    shim.Range = _RangeImpl
    shim.is_range_instance = lambda obj: isinstance(obj, ComRange)
    return shim


class ComRange:
    """A COM ``Range`` object as Excel hands it to ``CallUDF`` for a cell reference.
    ``.Value`` has COM's shape: a scalar for one cell, else a tuple of row tuples."""

    def __init__(self, rows):
        self.rows = com_rows(rows) if not isinstance(rows, tuple) else rows
        if not self.rows or not self.rows[0]:
            raise ValueError("a range has at least one cell")

    @property
    def Value(self):
        if len(self.rows) == 1 and len(self.rows[0]) == 1:
            return self.rows[0][0]
        return self.rows

    def __repr__(self):
        return f"ComRange({len(self.rows)}x{len(self.rows[0])})"


class _AppImpl:
    pid = 0

    @property
    def engine(self):
        return xlwindows_shim().engine


class _RangeImpl(xlwings.base_classes.Range):
    """``xlwings._xlwindows.Range`` for a ComRange (or for the caller, None)."""

    def __init__(self, xl):
        self.xl = xl

    @property
    def api(self):
        return self.xl

    @property
    def raw_value(self):
        return None if self.xl is None else self.xl.Value

    @property
    def shape(self):
        if self.xl is None:
            return (0, 0)
        return (len(self.xl.rows), len(self.xl.rows[0]))

    @property
    def sheet(self):
        book = types.SimpleNamespace(app=_AppImpl(), name="Book1")
        return types.SimpleNamespace(book=book, name="Sheet1")


@contextlib.contextmanager
def _excel_session():
    """Install the _xlwindows shim and the "excel" engine for one call, then restore."""
    shim = xlwindows_shim()
    engines = xlwings.engines
    had_attr = hasattr(xlwings, "_xlwindows")
    old_attr = getattr(xlwings, "_xlwindows", None)
    old_list = list(engines.engines)
    old_by_name = dict(engines.engines_by_name)
    xlwings._xlwindows = shim
    engine = xlwings.main.Engine(impl=shim.engine)
    engines.engines = [e for e in engines.engines if e.name != "excel"] + [engine]
    engines.engines_by_name["excel"] = engine
    try:
        yield shim
    finally:
        engines.engines = old_list
        engines.engines_by_name.clear()
        engines.engines_by_name.update(old_by_name)
        if had_attr:
            xlwings._xlwindows = old_attr
        else:
            del xlwings._xlwindows


# ---- COM-style values --------------------------------------------------------------------

def _com_scalar(v):
    """A Python value as COM delivers a cell value: numbers as float (VT_R8), bools,
    text, None for an empty cell; Excel error codes and MISSING stay ints."""
    if isinstance(v, bool) or v is None or isinstance(v, (str, float, dt.datetime)):
        return v
    if isinstance(v, int):
        if v in cell_errors() or v == MISSING:
            return v
        return float(v)
    if hasattr(v, "item"):                 # NumPy scalar
        return _com_scalar(v.item())
    return v


def com_rows(rows) -> tuple:
    """A list of rows -> the tuple of row tuples COM hands over for a 2D block."""
    rows = [list(r) for r in rows]
    if rows and any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("all rows of a block must have the same length")
    return tuple(tuple(_com_scalar(v) for v in r) for r in rows)


def com_column(values) -> tuple:
    """A single column of values -> ((v1,), (v2,), ...), as COM delivers an n x 1 block."""
    return com_rows([[v] for v in values])


def com_range(rows) -> ComRange:
    """A fake COM Range for a list of rows: ``call_udf`` then takes its Range branch
    (``conversion.read(Range(...), None, options)``) as for a real cell reference."""
    return ComRange(com_rows(rows))


def com_column_range(values) -> ComRange:
    return ComRange(com_column(values))


@functools.lru_cache(maxsize=None)
def _cell_errors() -> dict:
    return dict(xlwindows_shim().cell_errors)


def cell_errors() -> dict:
    """COM error code -> Excel error text (xlwings' own table)."""
    return _cell_errors()


def xl_error(text: str) -> int:
    """The COM code of an Excel error value, e.g. xl_error("#N/A") == -2146826246."""
    for code, t in cell_errors().items():
        if t == text:
            return code
    raise KeyError(text)


# ---- calling a worksheet function as Excel does -------------------------------------------

def full_args(func_name: str, args, kwargs) -> tuple:
    """All arguments in order, as the VBA wrapper's ``Array(...)`` passes them: omitted
    optional arguments become MISSING."""
    info = udf_functions()[func_name].__xlfunc__
    names = [a["name"] for a in info["args"]]
    if len(args) > len(names):
        raise TypeError(f"{func_name} takes {len(names)} arguments, {len(args)} given")
    out = list(args) + [MISSING] * (len(names) - len(args))
    for k, v in kwargs.items():
        if k not in names:
            raise TypeError(f"{func_name} has no argument {k!r}")
        i = names.index(k)
        if i < len(args):
            raise TypeError(f"{func_name}: argument {k!r} given twice")
        out[i] = v
    for a, v in zip(info["args"], out):
        if "optional" not in a and isinstance(v, int) and v == MISSING:
            raise TypeError(f"{func_name}: required argument {a['name']!r} is missing")
    return tuple(out)


def excel_call(func_name: str, *args, **kwargs):
    """Run worksheet function ``func_name`` the way Excel on Windows does.

    ``args``/``kwargs`` are what COM hands over: floats, bools, str, None (empty cell),
    Excel error codes (``xl_error("#N/A")``), tuples of row tuples for blocks
    (``com_rows``/``com_column``), ``ComRange`` objects for cell references
    (``com_range``), or MISSING.  Arguments not given are passed as MISSING, like the
    VBA wrapper does for omitted optionals.

    Returns what Excel receives from ``XLPython.CallUDF``: a scalar for a 1x1 result,
    a list for a 1xN row, else a list of row lists (``spill`` turns any of them into
    rows).
    """
    udf_module()
    full = full_args(func_name, args, kwargs)
    with _excel_session():
        return com_server().XLPython().CallUDF(MODULE_NAME, func_name, full, None, None)


def spill(result) -> list:
    """Rows of cells as the result spills on the sheet (undoes CallUDF's collapse)."""
    if isinstance(result, list):
        if result and isinstance(result[0], list):
            return result
        return [result]
    return [[result]]
