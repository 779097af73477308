"""Build the Excel and LibreOffice add-in files in xlglmm/bridges/addin_files/ (package data).

    python scripts/build_addin.py           # (re)build
    python scripts/build_addin.py --check   # exit 1 if a file is missing or out of date

xlglmm/bridges/addin_files/ is the only copy: the wheel, an editable install and a checkout all
use it.  In it:

* xlglmm.xlam       -- made by running `xlwings quickstart xlglmm --addin` in a
                       temporary folder (a plain copy of xlwings' prebuilt
                       quickstart_addin.xlam; needs no Excel).  Tied to the installed
                       xlwings, which must be the pinned 0.37.8.
* xlglmm_udfs.bas   -- the VBA wrappers xlwings' own generate_vba_wrapper writes for
                       module xlglmm.sheet.udfs (run on any OS through scripts/xlwings_vba.py),
                       with the header lines of import_udfs, CRLF line ends as on Windows.
* libreoffice/XLGLMM.bas -- the LibreOffice Basic module, generated from the same
                       signatures (xlglmm.bridges.libreoffice.basic_module).
* xlglmm.conf.example, INSTALL.md, libreoffice/xlglmm_calc.py -- hand-written sources,
                       edited in place; the build does not touch them.

Rerun after changing a worksheet function's name, arguments, decorators or docstring
(tests/bridges/test_addin.py fails until then) and after changing the xlwings pin.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "xlglmm" / "bridges" / "addin_files"
for p in (Path(__file__).resolve().parent, ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import xlwings  # noqa: E402

import xlwings_vba  # noqa: E402  (scripts/xlwings_vba.py)
from xlglmm.bridges import excel_addin as addin
from xlglmm.bridges import libreoffice  # noqa: E402


def quickstart_xlam() -> bytes:
    """The .xlam `xlwings quickstart xlglmm --addin` creates."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "xlwings.cli", "quickstart", "xlglmm", "--addin"],
                       cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        return (Path(tmp) / "xlglmm" / "xlglmm.xlam").read_bytes()


def udfs_bas() -> bytes:
    text = xlwings_vba.generate_vba(addin.UDF_MODULES, addin.ADDIN_FILE)
    return text.replace("\n", "\r\n").encode("ascii")


def expected_files(xlam: bytes | None = None) -> dict[str, bytes]:
    """name -> bytes of every generated file in xlglmm/bridges/addin_files/."""
    return {
        addin.ADDIN_FILE: quickstart_xlam() if xlam is None else xlam,
        addin.BAS_FILE: udfs_bas(),
        f"libreoffice/{libreoffice.BASIC_FILE}": libreoffice.basic_module().encode("utf-8"),
    }


def stale(files: dict[str, bytes]) -> dict[Path, bytes]:
    """path -> expected bytes, for every file that is missing or differs."""
    out = {}
    for name, data in files.items():
        path = PACKAGED / name
        if not path.is_file() or path.read_bytes() != data:
            out[path] = data
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if out of date")
    args = ap.parse_args(argv)
    if xlwings.__version__ != addin.XLWINGS_VERSION:
        print(f"error: xlwings {xlwings.__version__} is installed; the add-in is pinned to "
              f"{addin.XLWINGS_VERSION} (change the pin in pyproject.toml and "
              "xlglmm/bridges/excel_addin.py together)", file=sys.stderr)
        return 1
    files = expected_files()
    bad = stale(files)
    if args.check:
        for p in bad:
            print(f"out of date: {p.relative_to(ROOT)}")
        return 1 if bad else 0
    PACKAGED.mkdir(parents=True, exist_ok=True)
    for path, data in bad.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)}")
    if not bad:
        print("add-in files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
