"""Issue 18, installers: the LibreOffice worker cannot import or read anything from the
profile or another chosen folder; `libreoffice install`/`uninstall` keep a backup of a
file that is not as xlglmm wrote it; `addin install --interpreter` cannot add lines to
the add-in's .conf; the bridge's answer when a call runs out of time."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from xlglmm.bridges import excel_addin as addin, libreoffice as lo
from xlglmm import cli
from xlglmm.sheet import udfs

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "xlglmm" / "bridges" / "addin_files" / "libreoffice" / "xlglmm_calc.py"
PLANTED = "raise SystemExit('PLANTED {} imported from {}')\n"


def load_bridge():
    spec = importlib.util.spec_from_file_location("xlglmm_calc_hostile", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def plant(folder: Path) -> None:
    """Modules that would stop the worker if imported, and a numba configuration that
    numba would read from the working folder (it turns the compiler off)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pandas", "numpy", "scipy", "json", "xlglmm"):
        (folder / f"{name}.py").write_text(PLANTED.format(name, folder))
    (folder / ".numba_config.yaml").write_text("disable_jit: 1\n")


# ---- the worker ----------------------------------------------------------------------------

def test_worker_imports_nothing_from_the_profile_or_the_working_folder(tmp_path, monkeypatch):
    """Planted pandas.py/numpy.py/xlglmm.py in the profile's Scripts/python and in
    LibreOffice's working folder, and a configuration whose "env" tries to turn safe-path
    mode off (it is set after "env"): the worker answers exactly as in this process.
    Before: with --python recorded as a bare name the worker ran in LibreOffice's working
    folder, and such an "env" made it import the planted numpy.py."""
    mod = load_bridge()
    scripts, lo_cwd = tmp_path / "user" / "Scripts" / "python", tmp_path / "lo-cwd"
    plant(scripts)
    plant(lo_cwd)
    monkeypatch.chdir(lo_cwd)
    mod._here = lambda: str(scripts)
    mod._state["config"] = {"python": sys.executable, "timeout": 120,
                            "env": {"PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": ""}}
    y, X = [[2.0], [3.0], [5.0], [1.0]], [[1.0], [2.0], [3.0], [1.0]]
    g = [["a"], ["a"], ["b"], ["b"]]
    try:
        got = mod.call("GLMM_POISSON", 3, tuple(map(tuple, y)), tuple(map(tuple, X)),
                       tuple(map(tuple, g)))
        assert got == tuple(tuple(mod._cell(v) for v in r) for r in udfs.GLMM_POISSON(y, X, g))
        assert got[0][0] == "Fixed effects"
        proc, folder = mod._state["worker"], Path(mod._state["folder"])
        assert proc.args[1:3] == ["-P", "-m"]
        # a fresh empty folder only this user can use, in the temporary folder
        assert folder.parent == Path(tempfile.gettempdir())
        assert folder.name.startswith("xlglmm-worker-") and list(folder.iterdir()) == []
        if os.name == "posix":
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        if Path(f"/proc/{proc.pid}/cwd").exists():
            assert os.readlink(f"/proc/{proc.pid}/cwd") == str(folder)
    finally:
        mod._stop_worker()
    assert not folder.exists()                        # removed with the worker
    # the installer's check starts the worker the same way, and cleans up after it
    before = set(Path(tempfile.gettempdir()).glob("xlglmm-worker-*"))
    assert lo.check_worker(sys.executable, {"PYTHONPATH": str(ROOT)}) == ""
    assert set(Path(tempfile.gettempdir()).glob("xlglmm-worker-*")) == before


def test_worker_removes_its_folder_when_libreoffice_closes(tmp_path):
    """LibreOffice ends the session by closing the worker's stdin: the worker leaves
    and removes its empty private folder."""
    mod = load_bridge()
    folder = mod.worker_folder()
    env = mod.worker_environment(os.environ, {"PYTHONPATH": str(ROOT)})
    p = subprocess.run(mod.worker_command(sys.executable), input="", capture_output=True,
                       text=True, cwd=folder, env=env, timeout=120)
    assert json.loads(p.stdout.splitlines()[0])["protocol"] == lo.PROTOCOL
    assert not os.path.exists(folder)


def hanging_worker(tmp_path: Path) -> Path:
    """A package `xlglmm` whose worker greets and then never answers."""
    pkg = tmp_path / "hang" / "xlglmm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bridges").mkdir()
    (pkg / "bridges" / "__init__.py").write_text("")
    (pkg / "bridges" / "libreoffice.py").write_text(
        "import json, sys, time\n"
        "print(json.dumps({'protocol': 1}), flush=True)\n"
        "sys.stdin.readline()\n"
        "time.sleep(600)\n")
    return pkg.parent


def test_a_call_past_the_timeout_stops_the_worker_with_one_clear_cell(tmp_path):
    mod = load_bridge()
    mod._here = lambda: str(tmp_path)
    mod._state["config"] = {"python": sys.executable, "timeout": 1.5,
                            "env": {"PYTHONPATH": str(hanging_worker(tmp_path))}}
    try:
        got = mod.call("GLMM_POISSON", 1, ((1.0,),))
        assert got == (("#GLMM! no answer from xlglmm within 1.5 s, so its worker was "
                        "stopped; recalculate to try again (`xlglmm libreoffice install "
                        "--timeout S` sets the limit)",),)
        assert mod._state["worker"] is None and mod._state["folder"] is None
    finally:
        mod._stop_worker()


def test_time_limits_from_a_damaged_configuration_fall_back_to_the_defaults():
    mod = load_bridge()
    for bad in ("abc", None, [], float("nan"), float("inf"), -1, 0, "1e999"):
        assert mod._seconds({"timeout": bad}, "timeout", 300) == 300.0, bad
    assert mod._seconds({"timeout": "12.5"}, "timeout", 300) == 12.5
    assert mod._seconds({}, "start_timeout", 120) == 120.0


# ---- libreoffice install / uninstall: backups --------------------------------------------------

XLB = ('<?xml version="1.0" encoding="UTF-8"?>\n<library:library '
       'xmlns:library="http://openoffice.org/2000/library" library:name="Standard">\n'
       ' <library:element library:name="Module1"/>\n</library:library>\n')


@pytest.fixture
def profile(tmp_path, monkeypatch):
    monkeypatch.setattr(lo, "prepare_start", lambda: lo.Start("Start LibreOffice."))
    user = tmp_path / "user"
    (user / "basic" / "Standard").mkdir(parents=True)
    (user / "basic" / "Standard" / "script.xlb").write_text(XLB)
    return user


def paths(user):
    return (user / "basic" / "Standard" / "XLGLMM.xba",
            user / "Scripts" / "python" / "xlglmm_calc.py",
            user / "Scripts" / "python" / "xlglmm_calc.json")


def install(capsys, user, *extra):
    code = cli.main(["libreoffice", "install", "--profile", str(user), "--no-check",
                     "--no-compile", *extra])
    return code, capsys.readouterr().out


def baks(folder: Path) -> list:
    return sorted(p.name for p in folder.glob("*.bak"))


def test_reinstall_leaves_identical_files_and_backs_up_changed_ones(profile, capsys):
    module, script, config = paths(profile)
    assert install(capsys, profile)[0] == 0
    cfg = json.loads(config.read_text())
    assert cfg["files"] == {
        "XLGLMM.xba": hashlib.sha256(module.read_bytes()).hexdigest(),
        "xlglmm_calc.py": hashlib.sha256(SCRIPT.read_bytes()).hexdigest()}
    mtimes = [p.stat().st_mtime_ns for p in (module, script, config)]
    # again: nothing differs, nothing is rewritten or backed up
    code, out = install(capsys, profile)
    assert code == 0 and "kept the file" not in out
    assert [p.stat().st_mtime_ns for p in (module, script, config)] == mtimes
    assert baks(module.parent) == [] and baks(script.parent) == []
    # a module and a script changed by hand: kept as timestamped backups
    mine_module = module.read_bytes().replace(b"</script:module>", b"REM mine\n</script:module>")
    module.write_bytes(mine_module)
    script.write_bytes(script.read_bytes() + b"# mine\n")
    code, out = install(capsys, profile)
    assert code == 0
    (mb,), (sb,) = module.parent.glob("XLGLMM.xba.*.bak"), script.parent.glob("*.py.*.bak")
    assert re.fullmatch(r"XLGLMM\.xba\.\d{8}-\d{6}\.bak", mb.name)
    assert mb.read_bytes() == mine_module and sb.read_bytes().endswith(b"# mine\n")
    assert module.read_bytes() != mine_module and script.read_bytes() == SCRIPT.read_bytes()
    assert f"kept the file that was there as {mb} (it differed, and xlglmm had not " \
           "written it)" in out and str(sb) in out
    # LibreOffice lists Python macros by their .py ending: the backup is not one
    assert not sb.name.endswith(".py")


def test_files_of_an_earlier_install_are_replaced_without_a_backup(profile, capsys):
    """A file whose SHA-256 the last install recorded is xlglmm's own (an older
    version's module): replaced, no backup."""
    module, script, config = paths(profile)
    assert install(capsys, profile)[0] == 0
    old = b"<?xml version='1.0'?><script:module>REM xlglmm 0.0.1</script:module>"
    module.write_bytes(old)
    cfg = json.loads(config.read_text())
    cfg["files"]["XLGLMM.xba"] = hashlib.sha256(old).hexdigest()
    config.write_text(json.dumps(cfg))
    assert install(capsys, profile)[0] == 0
    assert module.read_bytes() != old and baks(module.parent) == []


def test_someone_elses_module_and_a_damaged_configuration_are_kept(profile, capsys):
    module, script, config = paths(profile)
    module.write_text("<script:module>another macro module named XLGLMM</script:module>")
    script.parent.mkdir(parents=True)
    config.write_text("{not json")
    assert install(capsys, profile)[0] == 0
    assert [p.read_text() for p in module.parent.glob("XLGLMM.xba.*.bak")] == \
        ["<script:module>another macro module named XLGLMM</script:module>"]
    assert [p.read_text() for p in script.parent.glob("xlglmm_calc.json.*.bak")] == \
        ["{not json"]
    # a key added by hand stays; the install's own keys are the command line's
    cfg = json.loads(config.read_text())
    cfg["start_timeout"] = 200
    cfg["timeout"] = 5
    config.write_text(json.dumps(cfg))
    assert install(capsys, profile, "--timeout", "90")[0] == 0
    cfg = json.loads(config.read_text())
    assert cfg["start_timeout"] == 200 and cfg["timeout"] == 90.0
    assert len(baks(script.parent)) == 1


def test_uninstall_keeps_a_changed_script(profile, capsys):
    module, script, config = paths(profile)
    assert install(capsys, profile)[0] == 0
    script.write_bytes(script.read_bytes() + b"# mine\n")
    assert cli.main(["libreoffice", "uninstall", "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    (sb,) = script.parent.glob("xlglmm_calc.py.*.bak")
    assert sb.read_bytes().endswith(b"# mine\n")
    assert not module.exists() and not script.exists() and not config.exists()
    assert f"kept a copy of it as {sb} (it was not as xlglmm wrote it)" in out
    assert baks(module.parent) == []               # the unchanged module: no copy
    assert "XLGLMM" not in (module.parent / "script.xlb").read_text()


def test_python_is_recorded_as_an_absolute_path(profile, capsys, tmp_path, monkeypatch):
    """A bare name would be looked up on LibreOffice's PATH, a relative path from its
    working folder: the installer records the absolute path (links not resolved)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mypython").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    assert install(capsys, profile, "--python", "mypython")[0] == 0
    assert json.loads(paths(profile)[2].read_text())["python"] == str(bindir / "mypython")
    monkeypatch.chdir(tmp_path)
    assert install(capsys, profile, "--python", os.path.join("bin", "mypython"))[0] == 0
    assert json.loads(paths(profile)[2].read_text())["python"] == str(bindir / "mypython")
    code, out = install(capsys, profile, "--python", "no-such-python-xyz")
    assert (code, out) == (2, "error: --python no-such-python-xyz: no such program on PATH\n")
    code, out = install(capsys, profile, "--python", "/x/python\nUDF")
    assert (code, out) == (2, "error: --python '/x/python\\nUDF' is not a path to a program\n")


@pytest.mark.parametrize("bad,why", [
    ("nan", "nan is not from 1 to 86400 seconds"), ("inf", "inf is not from 1 to 86400 seconds"),
    ("0", "0 is not from 1 to 86400 seconds"), ("-5", "-5 is not from 1 to 86400 seconds"),
    ("1e9", "1e9 is not from 1 to 86400 seconds"), ("abc", "'abc' is not a number of seconds")])
def test_timeout_must_be_a_number_of_seconds(profile, capsys, bad, why):
    with pytest.raises(SystemExit) as e:
        cli.main(["libreoffice", "install", "--profile", str(profile), "--no-check",
                  f"--timeout={bad}"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"xlglmm libreoffice install: error: argument --timeout: {why}"
    assert not paths(profile)[2].exists()


# ---- addin install --interpreter -----------------------------------------------------------------

INJECTION = 'C:\\py\\python.exe"\r\n"UDF MODULES","os'


@pytest.mark.parametrize("value,problem", [
    (INJECTION, "holds a line break"),
    ("C:\\py\\python.exe\n", "holds a line break"),
    ("C:\\py\\pyth\ron.exe", "holds a line break"),
    ('C:\\Program Files\\"Python"\\python.exe', 'holds a double quote (")'),
    ("C:\\py\\python.exe\x00", "holds a control character"),
    ("C:\\py\\\tpython.exe", "holds a control character"),
    ("C:\\py\\python\udcff.exe", "holds characters the file's encoding (utf-8) cannot store"),
    ("", "is empty")])
def test_interpreter_values_that_would_break_the_conf_are_refused(tmp_path, capsys, value,
                                                                  problem):
    """Before: INJECTION wrote a second line "UDF MODULES","os" ahead of ours, which
    the add-in's VBA (first match wins) and xlwings would have used."""
    code = cli.main(["addin", "install", "--dest", str(tmp_path / "d"), "--interpreter",
                     value, "--no-compile"])
    out = capsys.readouterr().out
    assert code == 2
    shown = repr(value)
    assert out.splitlines()[-1] == (
        f"error: --interpreter: INTERPRETER_WIN = {shown} {problem}: it cannot be written "
        "into the add-in's .conf, whose \"KEY\",\"VALUE\" lines Excel reads with no "
        "escapes; give the plain path of python.exe")
    assert not (tmp_path / "d").exists()                      # nothing written


def test_a_long_bad_interpreter_is_shown_cut():
    with pytest.raises(addin.ConfigValueError) as e:
        addin.plan_install(None, Path("h"), "C:\\" + "x" * 200 + "\n")
    assert len(str(e.value)) < 290 and "x" * 70 + "'... holds a line break" in str(e.value)


def test_plain_windows_paths_round_trip_through_xlwings_reader(tmp_path, capsys, monkeypatch):
    """Spaces, commas, %VARS%, parentheses and non-ASCII letters are written as they are
    and read back the same by xlwings' own reader and by ours."""
    import xlwings
    import xlwings.utils
    value = "%LOCALAPPDATA%\\Programs\\Python (x64), Müller\\python.exe"
    assert cli.main(["addin", "install", "--dest", str(tmp_path), "--interpreter", value,
                     "--no-compile"]) == 0
    capsys.readouterr()
    for project in addin.PROJECT_NAMES:
        conf = tmp_path / f".{project}" / f"{project}.conf"
        assert conf.read_bytes() == (f'"INTERPRETER_WIN","{value}"\r\n'
                                     '"UDF MODULES","xlglmm.sheet.udfs"\r\n').encode("utf-8")
        assert addin.parse_config(conf.read_text("utf-8")) == [
            ("INTERPRETER_WIN", value), ("UDF MODULES", "xlglmm.sheet.udfs")]
        monkeypatch.setattr(xlwings, "USER_CONFIG_FILE", str(conf))
        assert xlwings.utils.read_user_config() == {"interpreter_win": value,
                                                    "udf modules": "xlglmm.sheet.udfs"}
