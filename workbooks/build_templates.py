"""Rebuild the workbook templates in this folder (and the README picture).

    python workbooks/build_templates.py              # all four templates
    python workbooks/build_templates.py cbpp         # one of them
    python workbooks/build_templates.py --picture    # docs/img/workplace_model.png
    python workbooks/build_templates.py --libreoffice-picture   # docs/img/libreoffice_grouseticks.png

The templates are made by code (``xlglmm/templates.py``): openpyxl writes the
formulas, formatting and charts, then ``xlglmm recalc`` evaluates the formulas and
stores the results in the cells.  Rebuild after changing the worksheet functions or
the template code, and commit the .xlsx files with the change
(tests/test_workbooks.py checks that their stored results are current).

``--picture`` renders the Model sheet of workplace_safety.xlsx with LibreOffice
(``soffice``, headless) and ``pdftoppm`` (poppler-utils): a values-only copy (made
with ``xlglmm recalc --values``) is converted to PDF and the block and the charts are
cropped from page 2 at 175 dpi.

``--libreoffice-picture`` shows LibreOffice Calc computing a template itself: the
bridge is installed into a throw-away profile (``xlglmm libreoffice install``), the
grouseticks workbook -- its stored results removed -- is opened and recalculated by
headless Calc (tests/libreoffice_driver.py, run with the Python that has LibreOffice's
``uno``, /usr/bin/python3 on Debian), exported to PDF and the Model sheet's first page
rendered with ``pdftoppm``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))        # run from a clone without installing

from xlglmm import templates  # noqa: E402
from xlglmm.recalc import recalc  # noqa: E402

PICTURE = ROOT / "docs" / "img" / "workplace_model.png"
CROP = dict(x=118, y=150, W=1426, H=525, dpi=175, page=2)


def picture() -> int:
    soffice, pdftoppm = shutil.which("soffice"), shutil.which("pdftoppm")
    if not soffice or not pdftoppm:
        print("needs LibreOffice (soffice) and pdftoppm (poppler-utils) on PATH")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        values = tmp / "workplace_model.xlsx"
        recalc(HERE / "workplace_safety.xlsx", values, values_only=True)
        subprocess.run([soffice, f"-env:UserInstallation={(tmp / 'profile').as_uri()}",
                        "--headless", "--convert-to", "pdf", "--outdir", str(tmp),
                        str(values)], check=True, capture_output=True)
        crop_page(pdftoppm, tmp / "workplace_model.pdf", CROP, PICTURE)
    return 0


def crop_page(pdftoppm: str, pdf: Path, c: dict, png: Path) -> None:
    """Render page c["page"] of ``pdf`` at c["dpi"], cut to the box x, y, W, H (pixels)."""
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot"
        subprocess.run([pdftoppm, "-r", str(c["dpi"]), "-png", "-f", str(c["page"]),
                        "-l", str(c["page"]), "-x", str(c["x"]), "-y", str(c["y"]),
                        "-W", str(c["W"]), "-H", str(c["H"]), "-singlefile", str(pdf),
                        str(shot)], check=True)
        png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot.with_suffix(".png"), png)
    print(f"wrote {png} ({png.stat().st_size // 1024} KB)")


LO_PICTURE = ROOT / "docs" / "img" / "libreoffice_grouseticks.png"
LO_CROP = dict(x=130, y=230, W=1170, H=660, dpi=250, page=2)


def libreoffice_picture(uno_python: str = "/usr/bin/python3") -> int:
    import json
    import openpyxl
    from xlglmm import cli, libreoffice
    soffice, pdftoppm = libreoffice.find_soffice(), shutil.which("pdftoppm")
    if not soffice or not pdftoppm:
        print("needs LibreOffice (soffice) and pdftoppm (poppler-utils) on PATH")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        user = tmp / "profile" / "user"
        libreoffice.initialise_profile(user, soffice)
        if cli.main(["libreoffice", "install", "--profile", str(user)]) != 0:
            return 1
        bare = tmp / "grouseticks.xlsx"
        openpyxl.load_workbook(HERE / "grouseticks.xlsx").save(bare)   # no stored results
        jobs = [{"open": str(bare), "pdf": str(tmp / "calc.pdf")}]
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        subprocess.run([uno_python, str(ROOT / "tests" / "libreoffice_driver.py"),
                        "--profile", str(user.parent), "--jobs", str(tmp / "jobs.json"),
                        "--out", str(tmp / "out.json"), "--soffice", soffice], check=True)
        (result,) = json.loads((tmp / "out.json").read_text())
        if "failed" in result or result["sheets"]["Model"].get("B6") != "Fixed effects":
            print(f"LibreOffice did not compute the workbook: {str(result)[:300]}")
            return 1
        crop_page(pdftoppm, tmp / "calc.pdf", LO_CROP, LO_PICTURE)
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--picture"]:
        return picture()
    if argv == ["--libreoffice-picture"]:
        return libreoffice_picture()
    names = argv or list(templates.TEMPLATES)
    for name in names:
        path = HERE / f"{name}.xlsx"
        print(f"{path.name}:")
        templates.build(name, path, out=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
