"""xlwings' Windows UDF machinery off Windows, as far as building the add-in needs it.

``scripts/build_addin.py`` writes ``xlglmm/bridges/addin_files/xlglmm_udfs.bas`` with the VBA
wrappers xlwings' own ``generate_vba_wrapper`` makes for ``xlglmm.sheet.udfs``.  That code
lives in ``xlwings.udfs``, which imports pywin32, and reads the ``@xw.func/@xw.arg``
decorators, which are no-ops off Windows.  This module makes it run on any OS:

* **pywin32 stubs** (``pythoncom``, ``pywintypes``, ``win32api``, ``win32event``,
  ``win32com.*``) are put into ``sys.modules`` only while ``xlwings.udfs`` and
  ``xlwings.com_server`` are imported, then taken out again, so nothing else in the
  process sees a fake pywin32.  Where real pywin32 exists nothing is stubbed.
* **Decorated module**: ``udf_module()`` executes ``xlglmm/sheet/udfs.py`` a second time into
  a *separate module object* (named ``xlglmm.sheet.udfs`` but never put in ``sys.modules``)
  while ``xlwings.func/arg/ret`` are temporarily bound to the real
  ``xlwings.udfs.xlfunc/xlarg/xlret``.  ``import xlglmm.sheet.udfs`` elsewhere in the same
  process is unaffected and still gives the plain (undecorated) module.
* ``generate_vba()`` and ``wizard_help()``: the VBA module and the Function Wizard texts
  ``xlwings.udfs.import_udfs`` would produce.

A build tool, not shipped in the package.  The test harness (tests/xlwings_harness.py)
builds the rest of a Windows UDF call (``CallUDF``, the "excel" engine) on top of it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import importlib.util
import io
import sys
import types

import xlwings

MODULE_NAME = "xlglmm.sheet.udfs"
ADDIN_FILE_NAME = "xlglmm.xlam"

#: pywin32 modules that ``xlwings.udfs`` and ``xlwings.com_server`` import
_PYWIN32 = ("pythoncom", "pywintypes", "win32api", "win32event", "win32com",
            "win32com.client", "win32com.server", "win32com.server.dispatcher",
            "win32com.server.policy", "win32com.server.util", "win32com.server.exception")


# ---- pywin32 stubs ----------------------------------------------------------------------

class _NoCOM(RuntimeError):
    pass


def _no_com(*args, **kwargs):
    raise _NoCOM("COM is not available: this is the xlwings test harness, not Windows")


class _TimeType(dt.datetime):
    """pywintypes.TimeType: COM dates arrive as this datetime subclass."""


class _PyIDispatch:
    """Stands in for pythoncom's PyIDispatch type (nothing is ever of this type)."""


class _ComError(Exception):
    def __init__(self, *args):
        super().__init__(*args)
        self.hresult = args[0] if args else None


def _make_stubs() -> dict:
    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        m.__xlglmm_stub__ = True
        return m

    IID_IDispatch = "{00020400-0000-0000-C000-000000000046}"
    IID_IEnumVARIANT = "{00020404-0000-0000-C000-000000000046}"
    pywintypes = mod("pywintypes", com_error=_ComError, error=_ComError, TimeType=_TimeType,
                     IID=lambda s: s)
    pythoncom = mod("pythoncom", CoInitialize=lambda: None, CoUninitialize=lambda: None,
                    IID_IDispatch=IID_IDispatch, IID_IEnumVARIANT=IID_IEnumVARIANT,
                    TypeIIDs={IID_IDispatch: _PyIDispatch}, com_error=_ComError,
                    ole_error=_ComError, CoMarshalInterThreadInterfaceInStream=_no_com,
                    CoGetInterfaceAndReleaseStream=_no_com, MakePyFactory=_no_com,
                    CoRegisterClassObject=_no_com, PumpWaitingMessages=_no_com)

    def unwrap(ob):
        # real pywin32 raises for anything that is not a wrapped Python COM object
        raise ValueError("not a wrapped COM object")

    util = mod("win32com.server.util", wrap=lambda ob, iid=None, *a, **k: ob, unwrap=unwrap)
    policy = mod("win32com.server.policy", DefaultPolicy=type("DefaultPolicy", (), {}))
    exception = mod("win32com.server.exception",
                    COMException=type("COMException", (Exception,), {}))
    dispatcher = mod("win32com.server.dispatcher")
    server = mod("win32com.server", util=util, policy=policy, exception=exception,
                 dispatcher=dispatcher, __path__=[])
    client = mod("win32com.client", Dispatch=_no_com, DispatchEx=_no_com,
                 CDispatch=type("CDispatch", (), {}))
    win32com = mod("win32com", client=client, server=server, __path__=[])
    win32api = mod("win32api", GetCurrentThreadId=lambda: 0)
    win32event = mod("win32event", INFINITE=-1, QS_ALLEVENTS=0x04BF, WAIT_OBJECT_0=0,
                     MsgWaitForMultipleObjects=_no_com)
    return {"pythoncom": pythoncom, "pywintypes": pywintypes, "win32api": win32api,
            "win32event": win32event, "win32com": win32com, "win32com.client": client,
            "win32com.server": server, "win32com.server.dispatcher": dispatcher,
            "win32com.server.policy": policy, "win32com.server.util": util,
            "win32com.server.exception": exception}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _pywin32_stubs():
    """Stub pywin32 in sys.modules (only where it is missing), restoring afterwards."""
    stubs = _make_stubs()
    if _importable("pythoncom") and _importable("win32com.client"):
        stubs = {}                         # real pywin32 (Windows): use it
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


@functools.lru_cache(maxsize=None)
def xlwings_udfs():
    """The real ``xlwings.udfs`` module (and ``xlwings.com_server``, which ``call_udf``
    imports its event loop from), imported with pywin32 stubbed where missing."""
    with _pywin32_stubs():
        udfs = importlib.import_module("xlwings.udfs")
        importlib.import_module("xlwings.com_server")
    return udfs


def com_server():
    xlwings_udfs()
    return importlib.import_module("xlwings.com_server")


# ---- the decorated module ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def udf_module(module_name: str = MODULE_NAME) -> types.ModuleType:
    """``xlglmm/sheet/udfs.py`` executed with the real ``@xlfunc/@xlarg/@xlret`` decorators, as
    on Windows: a separate module object (not in ``sys.modules``), registered in
    ``xlwings.udfs.udf_modules`` so ``call_udf(module_name, ...)`` finds it."""
    udfs = xlwings_udfs()
    origin = importlib.util.find_spec(module_name).origin
    spec = importlib.util.spec_from_file_location(module_name, origin)
    module = importlib.util.module_from_spec(spec)
    saved = xlwings.func, xlwings.arg, xlwings.ret
    # dataclasses looks the defining module up in sys.modules while the class is built,
    # so the new module sits there during its execution only; the previous entry (the
    # plain module, if it was imported) is put back afterwards
    previous = sys.modules.get(module_name)
    xlwings.func, xlwings.arg, xlwings.ret = udfs.xlfunc, udfs.xlarg, udfs.xlret
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        xlwings.func, xlwings.arg, xlwings.ret = saved
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
    # filetime None: get_udf_module never reloads it (a reload would re-import it
    # without the decorators)
    udfs.udf_modules[module_name] = {"filename": origin, "filetime": None, "module": module}
    return module


def udf_functions(module_name: str = MODULE_NAME) -> dict:
    """name -> function, for every function of the module that has ``__xlfunc__``."""
    mod = udf_module(module_name)
    return {name: f for name in dir(mod)
            if hasattr(f := getattr(mod, name), "__xlfunc__")}


# ---- VBA wrappers and Function Wizard help -----------------------------------------------

class _FakeWorkbook:
    def __init__(self, name):
        self.Name = name


#: the first lines ``xlwings.udfs.import_udfs`` writes before the wrappers
VBA_HEADER = (
    'Attribute VB_Name = "xlwings_udfs"',
    "'Autogenerated code by xlwings - changes will be lost with next import!",
    """#Const App = "Microsoft Excel" 'Adjust when using outside of Excel""",
)


def generate_vba(module_name: str = MODULE_NAME, workbook_name: str = ADDIN_FILE_NAME) -> str:
    """The VBA module ``import_udfs`` would import into ``workbook_name`` (LF line ends;
    Windows writes the file with CRLF)."""
    from xlwings.utils import VBAWriter

    buf = io.StringIO()
    vba = VBAWriter(buf)
    for line in VBA_HEADER:
        vba.writeln(line)
    xlwings_udfs().generate_vba_wrapper(module_name, udf_module(module_name), buf,
                                        _FakeWorkbook(workbook_name))
    return buf.getvalue()


def wizard_help(module_name: str = MODULE_NAME) -> dict:
    """name -> (description, category, [argument descriptions]): the untruncated texts
    ``import_udfs`` passes to ``Application.MacroOptions`` (it cuts each to 255)."""
    out = {}
    for name, f in udf_functions(module_name).items():
        xlf = f.__xlfunc__
        out[name] = (xlf["ret"]["doc"], xlf["category"],
                     [a["doc"] for a in xlf["args"] if not a["vba"]])
    return out
