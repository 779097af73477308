"""Rebuild the workbook templates in this folder (and the README picture).

    python workbooks/build_templates.py              # all four templates
    python workbooks/build_templates.py cbpp         # one of them
    python workbooks/build_templates.py --picture    # docs/img/workplace_model.png

The templates are made by code (``xlglmm/templates.py``): openpyxl writes the
formulas, formatting and charts, then ``xlglmm recalc`` evaluates the formulas and
stores the results in the cells.  Rebuild after changing the worksheet functions or
the template code, and commit the .xlsx files with the change
(tests/test_workbooks.py checks that their stored results are current).

``--picture`` renders the Model sheet of workplace_safety.xlsx with LibreOffice
(``soffice``, headless) and ``pdftoppm`` (poppler-utils): a values-only copy (made
with ``xlglmm recalc --values``) is converted to PDF and the block and the charts are
cropped from page 2 at 175 dpi.
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
        c = CROP
        subprocess.run([pdftoppm, "-r", str(c["dpi"]), "-png", "-f", str(c["page"]),
                        "-l", str(c["page"]), "-x", str(c["x"]), "-y", str(c["y"]),
                        "-W", str(c["W"]), "-H", str(c["H"]), "-singlefile",
                        str(tmp / "workplace_model.pdf"), str(tmp / "shot")], check=True)
        PICTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / "shot.png", PICTURE)
    print(f"wrote {PICTURE} ({PICTURE.stat().st_size // 1024} KB)")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--picture"]:
        return picture()
    names = argv or list(templates.TEMPLATES)
    for name in names:
        path = HERE / f"{name}.xlsx"
        print(f"{path.name}:")
        templates.build(name, path, out=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
