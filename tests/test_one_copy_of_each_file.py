"""One copy of every file (issue 13): the add-in files live only in the package's
xlglmm/bridges/addin_files, the shipped data sets only in xlglmm/data (tests read them through
refs.PACKAGE_DATA), and no shipped module or script imports a test helper or a test
file itself."""
from __future__ import annotations

import ast
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

import xlglmm
from refs import DATA, PACKAGE_DATA, data_file

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SHIPPED_CSV = ("cbpp.csv", "grouseticks.csv", "sleepstudy.csv", "workplace_safety.csv")


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / n for n in out.decode().split("\0") if n and (ROOT / n).is_file()]


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a Python file imports (import and from-import)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_two_tracked_files_have_the_same_bytes():
    by_hash: dict[str, list[str]] = {}
    for path in tracked_files():
        data = path.read_bytes()
        if len(data) < 64 or path.name == "__init__.py":    # empty packages, stubs
            continue
        by_hash.setdefault(hashlib.sha256(data).hexdigest(), []).append(
            str(path.relative_to(ROOT)))
    assert [names for names in by_hash.values() if len(names) > 1] == []


def test_the_addin_files_have_one_home():
    assert not (ROOT / "addin").exists()
    assert sorted(p.relative_to(ROOT / "xlglmm" / "bridges" / "addin_files").as_posix()
                  for p in (ROOT / "xlglmm" / "bridges" / "addin_files").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts) == [
        ".gitattributes", "INSTALL.md", "libreoffice/XLGLMM.bas",
        "libreoffice/xlglmm_calc.py", "xlglmm.conf.example", "xlglmm.xlam",
        "xlglmm_udfs.bas"]


def test_shipped_data_sets_are_read_from_the_package():
    assert PACKAGE_DATA == Path(xlglmm.__file__).resolve().parent / "data"
    assert sorted(p.name for p in PACKAGE_DATA.glob("*.csv")) == list(SHIPPED_CSV)
    for name in SHIPPED_CSV:
        assert not (DATA / name).exists()
        assert data_file(name) == PACKAGE_DATA / name
    assert data_file("pois_crossed_1e3.csv") == DATA / "pois_crossed_1e3.csv"


def test_no_test_spells_a_second_path_to_the_package_data():
    """Only refs.py names xlglmm/data; the old tests/data copies are named nowhere."""
    spelled = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("refs.py", Path(__file__).name):
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ('"xlglmm" / "data"', "xlglmm/data",
                       *(f"tests/data/{n}" for n in SHIPPED_CSV)):
            if needle in text:
                spelled.append((path.name, needle))
        for n in SHIPPED_CSV:          # <some folder> / "cbpp.csv", unless PACKAGE_DATA
            spelled += [(path.name, m.group(0)) for m in
                        re.finditer(rf'(\w+)\s*/\s*"{re.escape(n)}"', text)
                        if m.group(1) != "PACKAGE_DATA"]
    assert spelled == []


def test_no_script_or_shipped_module_imports_a_test_helper():
    helpers = {p.stem for p in TESTS.rglob("*.py")}
    code = [*ROOT.joinpath("scripts").glob("*.py"), *ROOT.joinpath("xlglmm").rglob("*.py"),
            *ROOT.joinpath("benchmarks").glob("*.py")]
    assert len(code) > 20
    found = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & helpers) for p in code}
    assert {k: v for k, v in found.items() if v} == {}


def self_imports(path: Path) -> list[str]:
    """Lines of a test file that import the file itself: as Python, or in the code it
    runs in a subprocess (written as a string)."""
    pattern = re.compile(rf"\b(from\s+{path.stem}\s+import|import\s+{path.stem}\b)")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if pattern.search(line)]


def test_no_test_file_imports_itself():
    found = {p.name: self_imports(p) for p in sorted(TESTS.rglob("test_*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_self_import_check_sees_the_old_determinism_script(tmp_path):
    old = tmp_path / "test_hostile.py"
    old.write_text("SCRIPT = r\'\'\'\nsys.path[:0] = [root]\nfrom test_hostile import "
                   "determinism_calls\n\'\'\'\n")
    assert self_imports(old) == ["from test_hostile import determinism_calls"]


def test_no_test_file_imports_another():
    """Shared checks live in support modules (refs.py, template_checks.py, ...), not in
    a test file: tests sit in folders per layer, and a test importing another would
    tie their folders together (and run the other's module-level code)."""
    pattern = re.compile(r"^\s*(from\s+test_\w+\s+import|import\s+test_\w+)", re.M)
    found = {p.relative_to(TESTS).as_posix(): pattern.findall(p.read_text(encoding="utf-8"))
             for p in sorted(TESTS.rglob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}
