"""The Excel add-in: the worksheet functions through xlwings' real UDF path, the VBA
wrappers (drift, signatures, Function Wizard help), the shipped add-in files and the
``xlglmm addin install`` command.  No Excel needed: see tests/xlwings_harness.py."""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import xlwings

import xlwings_harness as h
from xlglmm.bridges import excel_addin as addin
from xlglmm import cli

ROOT = Path(__file__).resolve().parents[2]
ADDIN_DIR = addin.addin_dir()          # xlglmm/bridges/addin_files: the only copy

Y = (2, 3, 5, 1, 2, 4)
X = (1, 2, 3, 1, 2, 3)
G = (1, 1, 1, 2, 2, 2)


# ---- the worksheet functions through xlwings' call_udf -------------------------------------

def test_excel_call_glmm_poisson_block():
    out = h.excel_call("GLMM_POISSON", h.com_column(Y), h.com_column(X), h.com_column(G))
    assert isinstance(out, list) and len(out) > 1
    assert all(isinstance(r, list) and len(r) == len(out[0]) for r in out)   # 2D block
    assert out[0][0] == "Fixed effects"
    assert [r[0] for r in out[:3]] == ["Fixed effects", "(Intercept)", "x1"]
    assert all(v is not None for r in out for v in r)      # conversion.write: None -> ""


def test_excel_call_com_error_in_y_gives_one_glmm_error_cell():
    y = h.com_column([2, h.xl_error("#N/A"), 5, 1, 2, 4])
    assert y[1][0] == -2146826246                         # what COM hands for #N/A
    out = h.excel_call("GLMM_POISSON", y, h.com_column(X), h.com_column(G))
    assert isinstance(out, str) and out.startswith("#GLMM!"), out   # CallUDF: 1x1 -> scalar
    assert "#N/A" in out


def test_range_arguments_read_as_values():
    """A cell reference (COM Range) takes call_udf's Range branch; same result."""
    by_value = h.excel_call("GLMM_POISSON", h.com_column(Y), h.com_column(X), h.com_column(G))
    by_range = h.excel_call("GLMM_POISSON", h.com_column_range(Y), h.com_column_range(X),
                            h.com_column_range(G))
    assert by_range == by_value


def test_omitted_optionals_get_python_defaults():
    args = (h.com_column(Y), h.com_column(X), h.com_column(G))
    omitted = h.excel_call("GLMM_POISSON", *args)
    explicit = h.excel_call("GLMM_POISSON", *args, None, None, True, 0.05, 1.0)
    assert omitted == explicit
    assert h.full_args("GLMM_POISSON", args, {})[3:] == (h.MISSING,) * 5
    with pytest.raises(TypeError):
        h.excel_call("GLMM_POISSON", h.com_column(Y))            # required X, groups
    with pytest.raises(TypeError):
        h.excel_call("GLMM_POISSON", *args, bogus=1.0)


def test_scalar_arguments_and_text_errors():
    args = (h.com_column(Y), h.com_column(X), h.com_column(G))
    bad = h.excel_call("GLMM_POISSON", *args, alpha=2.0)
    assert isinstance(bad, str) and bad.startswith("#GLMM!")
    assert h.spill(bad) == [[bad]]


def test_spilled_blocks_feed_glmm_compare_and_formula_form():
    """=GLMM_COMPARE(F2#, M2#): spilled blocks go back in as COM blocks."""
    y, x, g = (h.com_column(v + v[:2]) for v in (Y, X, G))
    fit1 = h.excel_call("GLMM_POISSON", y, x, g)
    fit0 = h.excel_call("GLMM_POISSON", y, None, g)
    lrt = h.excel_call("GLMM_COMPARE", h.com_rows(h.spill(fit0)), h.com_rows(h.spill(fit1)))
    assert isinstance(lrt, list) and lrt[0][:2] == ["Model", "npar"] and len(lrt) >= 3
    data = h.com_rows([["y", "x", "g"]] + [list(r) for r in zip(Y, X, G)])
    out = h.excel_call("GLMM", "y ~ x + (1|g)", data)
    assert out[0][0] == "Fixed effects" and out[2][0] == "x"


def test_com_helpers():
    assert h.com_rows([[1, "a"], [None, True]]) == ((1.0, "a"), (None, True))
    assert h.com_column([1, 2]) == ((1.0,), (2.0,))
    assert h.com_column([h.xl_error("#DIV/0!")]) == ((-2146826281,),)
    assert h.com_range([[5]]).Value == 5.0                  # one cell: a scalar, as COM
    assert h.com_range([[1, 2]]).Value == ((1.0, 2.0),)
    assert h.spill([1, 2]) == [[1, 2]]
    with pytest.raises(ValueError):
        h.com_rows([[1], [1, 2]])


def test_harness_leaves_no_trace():
    h.excel_call("GLMM_POISSON", h.com_column(Y), h.com_column(X), h.com_column(G))
    import xlglmm.sheet.udfs as plain
    decorated = h.udf_module()
    assert plain is not decorated and sys.modules["xlglmm.sheet.udfs"] is plain
    assert hasattr(decorated.GLMM_POISSON, "__xlfunc__")
    if not sys.platform.startswith("win"):
        assert not hasattr(plain.GLMM_POISSON, "__xlfunc__")   # xw.func is a no-op here
        assert not hasattr(xlwings, "_xlwindows")
        assert "excel" not in [e.name for e in xlwings.engines]
        for name in ("pythoncom", "pywintypes", "win32com", "win32com.client"):
            assert not getattr(sys.modules.get(name), "__xlglmm_stub__", False)
    assert xlwings.func is not h.xlwings_udfs().xlfunc


def test_every_function_is_a_udf():
    assert set(h.udf_functions()) == set(h.FUNCTIONS)
    for name, f in h.udf_functions().items():
        assert f.__xlfunc__["category"] == "xlglmm"
        assert f.__xlfunc__["call_in_wizard"] is False


# ---- the VBA wrappers ----------------------------------------------------------------------

def build_addin():
    """scripts/build_addin.py as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_addin",
                                                  ROOT / "scripts" / "build_addin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated_bas() -> bytes:
    return h.generate_vba(addin.UDF_MODULES, addin.ADDIN_FILE).replace("\n", "\r\n").encode("ascii")


def test_bas_file_matches_generated_wrappers():
    """Drift: xlglmm_udfs.bas is what xlwings generates for xlglmm.sheet.udfs now."""
    assert (ADDIN_DIR / addin.BAS_FILE).read_bytes() == generated_bas(), (
        "xlglmm/bridges/addin_files/xlglmm_udfs.bas is out of date: run  python scripts/build_addin.py")


def test_bas_header_is_import_udfs_header():
    src = inspect.getsource(h.xlwings_udfs().import_udfs)
    for line in h.VBA_HEADER:
        assert line in src


VBA_RESERVED = {w.lower() for w in """
    Call Case Close Const Declare DefBool DefByte DefCur DefDate DefDbl DefInt DefLng
    DefLngLng DefLngPtr DefObj DefSng DefStr DefVar Dim Do Else ElseIf End EndIf Enum Erase
    Event Exit For Friend Function Get Global GoSub GoTo If Implements Input Let Lock Loop
    LSet Next On Open Option Print Private Public Put RaiseEvent ReDim Resume Return RSet
    Seek Select Set Static Stop Sub Type Unlock Wend While With Write
    Any As ByRef ByVal Each In New Shared Until WithEvents Optional ParamArray Preserve Spc
    Tab Then To
    AddressOf And Eqv Imp Is Like Mod Not Or TypeOf Xor
    Abs CBool CByte CCur CDate CDbl CDec CInt CLng CLngLng CLngPtr CSng CStr CVar CVErr
    Date Debug DoEvents Fix Int Len LenB Me PSet Scale Sgn String
    Array Circle InputB LBound UBound
    Boolean Byte Currency Double Integer Long LongLong LongPtr Single Variant
    True False Nothing Empty Null Rem Attribute CDecl Decimal DefDec
""".split()}   # MS-VBAL 3.3.5.2 reserved identifiers: not usable as parameter names

#: known clashes, to be fixed in xlglmm/sheet/udfs.py (then this entry must go)
KNOWN_RESERVED_CLASHES = {"GLMM_PREDICT": {"type"}}


def vba_function_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = re.match(r"Function (\w+)\((.*)\)$", line)
        if m:
            out[m.group(1)] = [a.strip() for a in m.group(2).split(",") if a.strip()]
    return out


@pytest.mark.parametrize("name", h.FUNCTIONS)
def test_vba_signature_lists_python_arguments_in_order(name):
    import xlglmm.sheet.udfs as plain
    params = inspect.signature(getattr(plain, name)).parameters.values()
    expected = [("Optional " if p.default is not inspect.Parameter.empty else "") + p.name
                for p in params]
    text = (ADDIN_DIR / addin.BAS_FILE).read_text(encoding="ascii")
    assert vba_function_lines(text)[name] == expected
    names = ", ".join(p.name for p in inspect.signature(getattr(plain, name)).parameters.values())
    call = (f'{name} = XLPy.CallUDF("{addin.UDF_MODULES}", "{name}", Array({names}), '
            "ActiveWorkbook, Application.Caller)")
    assert call in text


@pytest.mark.parametrize("name", h.FUNCTIONS)
def test_vba_argument_names_are_not_vba_keywords(name):
    args = h.udf_functions()[name].__xlfunc__["args"]
    clashes = {a["name"] for a in args if a["name"].lower() in VBA_RESERVED}
    if clashes and clashes == KNOWN_RESERVED_CLASHES.get(name):
        pytest.xfail(f"{name}: argument(s) {sorted(clashes)} are VBA keywords, so the VBA "
                     "module does not compile in Excel; rename them in xlglmm/sheet/udfs.py")
    assert not clashes, f"{name}: {sorted(clashes)} are VBA reserved words"


def test_vba_lines_fit_vba_limits():
    text = (ADDIN_DIR / addin.BAS_FILE).read_bytes().decode("ascii")     # ASCII only
    lines = text.split("\r\n")
    assert lines[-1] == "" and all("\n" not in ln and "\r" not in ln for ln in lines)
    assert max(len(ln) for ln in lines) <= 1023


def test_function_wizard_help_fits_excel():
    helps = h.wizard_help()
    assert set(helps) == set(h.FUNCTIONS)
    for name, (doc, category, arg_docs) in helps.items():
        assert not doc.startswith("Python function"), f"{name} has no docstring"
        assert len(doc) < 255, f"{name}: description has {len(doc)} characters"
        n_args = len(inspect.signature(getattr(h.udf_module(), name)).parameters)
        assert len(arg_docs) == n_args
        for i, d in enumerate(arg_docs):
            assert not d.startswith("Positional argument"), f"{name}: argument {i + 1} has no doc"
            assert len(d) < 255, f"{name}: argument {i + 1} help has {len(d)} characters"


# ---- the shipped add-in files --------------------------------------------------------------

def test_xlam_is_xlwings_quickstart_addin_and_version_is_pinned():
    assert xlwings.__version__ == addin.XLWINGS_VERSION
    quickstart = Path(xlwings.__file__).parent / "quickstart_addin.xlam"
    assert (ADDIN_DIR / addin.ADDIN_FILE).read_bytes() == quickstart.read_bytes()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"xlwings=={addin.XLWINGS_VERSION}" in deps


def test_xlam_is_what_xlwings_quickstart_addin_command_makes(tmp_path):
    subprocess.run([sys.executable, "-m", "xlwings.cli", "quickstart", "xlglmm", "--addin"],
                   cwd=tmp_path, check=True, capture_output=True)
    made = (tmp_path / "xlglmm" / "xlglmm.xlam").read_bytes()
    assert (ADDIN_DIR / addin.ADDIN_FILE).read_bytes() == made


def test_build_script_output_equals_the_committed_files():
    """Every generated file in xlglmm/bridges/addin_files/ (the only copy) is byte for byte what
    scripts/build_addin.py writes now, so the .xlam and the .bas files cannot drift from
    their sources; and the build reads nothing from tests/."""
    build = build_addin()
    files = build.expected_files()
    assert sorted(files) == sorted([addin.ADDIN_FILE, addin.BAS_FILE, "libreoffice/XLGLMM.bas"])
    for name, data in files.items():
        assert (ADDIN_DIR / name).read_bytes() == data, (
            f"xlglmm/bridges/addin_files/{name} is out of date: run  python scripts/build_addin.py")
    assert build.stale(files) == {}
    assert build.PACKAGED.resolve() == ADDIN_DIR.resolve()
    assert not (ROOT / "addin").exists()                    # no second copy
    assert "xlwings_harness" not in (ROOT / "scripts" / "build_addin.py").read_text()


def test_build_script_check_reports_a_drifted_file(tmp_path, monkeypatch, capsys):
    build = build_addin()
    monkeypatch.setattr(build, "ROOT", tmp_path)
    monkeypatch.setattr(build, "PACKAGED", tmp_path / "files")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / addin.BAS_FILE).write_bytes(generated_bas() + b"' drift\r\n")
    monkeypatch.setattr(build, "quickstart_xlam", lambda: b"xlam")
    assert build.main(["--check"]) == 1
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "out of date: files/libreoffice/XLGLMM.bas", "out of date: files/xlglmm.xlam",
        "out of date: files/xlglmm_udfs.bas"]
    assert sorted(p.name for p in (tmp_path / "files").rglob("*")) == [addin.BAS_FILE]
    assert build.main([]) == 0                     # the build rewrites all three
    assert (tmp_path / "files" / addin.BAS_FILE).read_bytes() == generated_bas()
    assert (tmp_path / "files" / addin.ADDIN_FILE).read_bytes() == b"xlam"
    assert build.main(["--check"]) == 0


def test_conf_example():
    raw = (ADDIN_DIR / addin.CONF_EXAMPLE_FILE).read_bytes()
    lines = raw.decode("ascii").split("\r\n")
    assert lines[-1] == "" and all(re.fullmatch(r'"[^"]+","[^"]*"', ln) for ln in lines[:-1])
    conf = dict(addin.parse_config(raw.decode("ascii")))
    assert conf["UDF MODULES"] == "xlglmm.sheet.udfs"
    assert conf["INTERPRETER_WIN"].endswith("python.exe")


def test_install_doc_covers_the_steps():
    doc = (ADDIN_DIR / addin.INSTALL_DOC).read_text(encoding="utf-8")
    for needle in ("pip install", "xlglmm addin install",
                   "Trust access to the VBA project object model", "ImportPythonUDFsToAddin",
                   "Import Functions", "xlglmm_udfs.bas", "myaddin.conf", "0.37.8",
                   "Windows", "xlglmm recalc", "LibreOffice", "xlwings Lite", "licence"):
        assert needle in doc, needle


# ---- xlglmm addin install --------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def read_conf(path: Path) -> dict:
    return dict(addin.parse_config(path.read_bytes().decode("utf-8")))


def test_install_to_dest(tmp_path, capsys):
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path))
    assert code == 0
    assert (tmp_path / "xlglmm.xlam").read_bytes() == addin.addin_file(addin.ADDIN_FILE).read_bytes()
    for project in addin.PROJECT_NAMES:
        conf = tmp_path / f".{project}" / f"{project}.conf"
        assert read_conf(conf) == {"INTERPRETER_WIN": sys.executable, "UDF MODULES": "xlglmm.sheet.udfs"}
        assert conf.read_bytes().count(b"\r\n") == 2
    for needle in ("Trust access to the VBA project object model", "ImportPythonUDFsToAddin",
                   "xlglmm_udfs.bas", "Restart Excel", "INSTALL.md"):
        assert needle in out, needle
    if not addin.is_windows():
        assert "only in Excel for Windows" in out
    # off Windows the files are only staged for a Windows machine: nothing to compile
    if not addin.is_windows():
        assert "Compiling the numerical kernels" not in out


def test_install_compiles_the_kernels_for_the_python_excel_calls(tmp_path, capsys,
                                                                  monkeypatch):
    """On Windows the installer compiles the kernels for the Python the add-in calls
    (this one), so the first worksheet call does not wait for them; not with
    --no-compile, not for another interpreter, and it says so when compiling fails."""
    from xlglmm.engine import jit
    monkeypatch.setattr(addin, "is_windows", lambda: True)
    monkeypatch.setattr(addin, "config_encoding", lambda: "utf-8")
    calls = []
    monkeypatch.setattr(jit, "warm_up", lambda *a, **k: calls.append(1) or [])
    run_cli(capsys, "addin", "install", "--dest", str(tmp_path / "a"), "--no-compile")
    run_cli(capsys, "addin", "install", "--dest", str(tmp_path / "b"), "--interpreter",
            str(tmp_path / "another" / "python.exe"))
    assert calls == []
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path / "c"))
    assert code == 0 and calls == [1]
    assert "Compiling the numerical kernels" in out and "  done in " in out
    monkeypatch.setattr(jit, "warm_up", lambda *a, **k: [("poisson", "TypingError: x")])
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path / "d"))
    assert "WARNING: the poisson kernels could not be compiled (TypingError: x)" in out
    assert "done in" not in out


def test_warm_up_compiles_every_common_fit():
    from xlglmm.engine import jit
    assert jit.warm_up() == []


def test_install_dry_run_writes_nothing(tmp_path, capsys):
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path / "x"), "--dry-run")
    assert code == 0 and "Dry run" in out
    assert not (tmp_path / "x").exists()


def test_install_off_windows_without_dest_only_reports(monkeypatch, capsys):
    monkeypatch.setattr(addin, "is_windows", lambda: False)
    monkeypatch.setattr(addin, "execute", lambda plan: pytest.fail("must not write"))
    code, out = run_cli(capsys, "addin", "install")
    assert code == 0
    assert "only in Excel for Windows" in out and "Nothing was installed" in out
    assert "XLSTART" in out and "xlglmm recalc" in out and "licence" in out


def test_install_on_windows_uses_xlstart_and_userprofile(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(addin, "is_windows", lambda: True)
    monkeypatch.setattr(addin, "config_encoding", lambda: "utf-8")   # "mbcs" is Windows-only
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "me"))
    code, out = run_cli(capsys, "addin", "install", "--interpreter", r"C:\Py\python.exe")
    assert code == 0
    assert (tmp_path / "Roaming" / "Microsoft" / "Excel" / "XLSTART" / "xlglmm.xlam").is_file()
    for project in addin.PROJECT_NAMES:
        conf = read_conf(tmp_path / "me" / f".{project}" / f"{project}.conf")
        assert conf["INTERPRETER_WIN"] == r"C:\Py\python.exe"
    assert "only in Excel for Windows" not in out


def test_install_keeps_a_changed_addin_unless_forced(tmp_path, capsys):
    target = tmp_path / "xlglmm.xlam"
    target.write_bytes(b"functions imported into it")
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path))
    assert code == 0 and "--force" in out
    assert target.read_bytes() == b"functions imported into it"
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path), "--force")
    assert target.read_bytes() == addin.addin_file(addin.ADDIN_FILE).read_bytes()


def test_install_merges_an_existing_config(tmp_path, capsys):
    conf = tmp_path / ".myaddin" / "myaddin.conf"
    conf.parent.mkdir()
    conf.write_bytes(b'"PYTHONPATH","C:\\code"\r\n"interpreter_win","C:\\old\\python.exe"\r\n')
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path), "--interpreter",
                        r"C:\new\python.exe")
    assert code == 0
    assert addin.parse_config(conf.read_text()) == [
        ("PYTHONPATH", r"C:\code"), ("interpreter_win", r"C:\new\python.exe"),
        ("UDF MODULES", "xlglmm.sheet.udfs")]
    assert conf.with_name("myaddin.conf.bak").read_text().startswith('"PYTHONPATH"')
    assert "WARNING" in out and "old\\python.exe" in out.replace("\\\\", "\\")
    code, out = run_cli(capsys, "addin", "install", "--dest", str(tmp_path), "--interpreter",
                        r"C:\new\python.exe")
    assert "already up to date" in out


def test_merged_config():
    text, changed = addin.merged_config('"A","1"\n"UDF MODULES","x"\n"udf modules","y"\n',
                                        {"UDF MODULES": "xlglmm.sheet.udfs", "B": "2"})
    assert addin.parse_config(text) == [("A", "1"), ("UDF MODULES", "xlglmm.sheet.udfs"), ("B", "2")]
    assert changed == [("UDF MODULES", "x", "xlglmm.sheet.udfs")]


def test_python_m_xlglmm(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "xlglmm", "addin", "install", "--dry-run",
                        "--dest", str(tmp_path / "d")], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ImportPythonUDFsToAddin" in r.stdout


def test_cli_registry_and_console_script():
    assert "addin" in cli.SUBCOMMANDS
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["xlglmm"] == "xlglmm.cli:main"
    with pytest.raises(SystemExit):
        cli.main(["addin"])                     # an action is required
