"""Rebuild the workbook templates in this folder (and the README picture).

    python workbooks/build_templates.py              # all four templates
    python workbooks/build_templates.py cbpp         # one of them
    python workbooks/build_templates.py --picture    # docs/img/workplace_model.png
    python workbooks/build_templates.py --libreoffice-picture   # docs/img/libreoffice_grouseticks.png

The templates are made by code (``xlglmm/workbook/templates.py``): openpyxl writes the
formulas, formatting and charts, then ``xlglmm recalc`` evaluates the formulas and
stores the results in the cells.  Rebuild after changing the worksheet functions or
the template code, and commit the .xlsx files with the change
(tests/workbook/test_workbooks.py checks that their stored results are current).

``--picture`` renders the Model sheet of workplace_safety.xlsx with LibreOffice
(``soffice``, headless) and ``pdftoppm`` (poppler-utils): a values-only copy (made
with ``xlglmm recalc --values``) whose Model sheet prints the title, the fit block,
the key result and the caterpillar plots (A1:S31) on one page without a footer is
converted to PDF; that page is rendered at 175 dpi and cut to its content (the
white margins only).

``--libreoffice-picture`` shows LibreOffice Calc computing a template itself: the
bridge is installed into a throw-away profile (``xlglmm libreoffice install``), the
grouseticks workbook -- its stored results removed, its Model sheet printing the
three models, the comparisons and the charts (A1:AG48) on one page -- is opened and
recalculated by headless Calc (tests/libreoffice_driver.py, run with the Python that
has LibreOffice's ``uno``, /usr/bin/python3 on Debian), exported to PDF, and that
page rendered with ``pdftoppm`` and cut to its content.
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

from xlglmm.workbook import templates  # noqa: E402
from xlglmm.workbook.recalc import recalc  # noqa: E402

PICTURE = ROOT / "docs" / "img" / "workplace_model.png"
PICTURE_AREA = ("Model", "A1:S31", 175)          # sheet, range, dpi
LO_PICTURE = ROOT / "docs" / "img" / "libreoffice_grouseticks.png"
LO_PICTURE_AREA = ("Model", "A1:AG48", 240)


def picture() -> int:
    soffice, pdftoppm = shutil.which("soffice"), shutil.which("pdftoppm")
    if not soffice or not pdftoppm:
        print("needs LibreOffice (soffice) and pdftoppm (poppler-utils) on PATH")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        values = tmp / "values.xlsx"
        recalc(HERE / "workplace_safety.xlsx", values, values_only=True)
        one_page(values, tmp / "workplace_model.xlsx", *PICTURE_AREA[:2])
        subprocess.run([soffice, f"-env:UserInstallation={(tmp / 'profile').as_uri()}",
                        "--headless", "--convert-to", "pdf", "--outdir", str(tmp),
                        str(tmp / "workplace_model.xlsx")], check=True, capture_output=True)
        render_content(pdftoppm, tmp / "workplace_model.pdf", "Workplace safety: incidents",
                       PICTURE_AREA[2], PICTURE)
    return 0


def one_page(src: Path, dst: Path, sheet: str, ref: str) -> None:
    """A copy of ``src`` whose ``sheet`` prints ``ref`` alone, fitted to one page,
    without the footer (the picture's frame), edited in the file's XML so that
    nothing else changes."""
    import re
    import zipfile
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    book = files["xl/workbook.xml"].decode()
    names = re.findall(r'<sheet [^>]*name="([^"]+)"[^>]*r:id="([^"]+)"', book)
    idx = [n for n, _ in names].index(sheet)
    rels = files["xl/_rels/workbook.xml.rels"].decode()
    target = re.search(rf'<Relationship[^>]*Id="{names[idx][1]}"[^>]*Target="([^"]+)"',
                       rels) or re.search(rf'<Relationship[^>]*Target="([^"]+)"[^>]*'
                                          rf'Id="{names[idx][1]}"', rels)
    part = "xl/" + target.group(1).lstrip("/").removeprefix("xl/")
    area = f"'{sheet}'!" + ":".join(re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", c)
                                     for c in ref.split(":"))
    book, n = re.subn(rf'(<definedName name="_xlnm.Print_Area" localSheetId="{idx}"[^>]*>)'
                      r"[^<]*(</definedName>)", rf"\g<1>{area}\g<2>", book)
    assert n == 1, f"{src.name}: no print area on {sheet}"
    files["xl/workbook.xml"] = book.encode()
    x = files[part].decode()
    x = x.replace('<pageSetUpPr fitToPage="0" />', '<pageSetUpPr fitToPage="1" />')
    x = re.sub(r'<pageSetup ([^>]*?)scale="\d+"', r'<pageSetup \1fitToWidth="1" fitToHeight="1"',
               x)
    x = re.sub(r"<headerFooter>.*?</headerFooter>", "", x, flags=re.S)
    files[part] = x.encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)


def render_content(pdftoppm: str, pdf: Path, marker: str, dpi: int, png: Path) -> None:
    """Render the page of ``pdf`` whose text has ``marker`` at ``dpi`` and cut it to
    its content: the smallest box holding every pixel that is not white, with a
    margin of 12 pixels."""
    import numpy as np
    page = next(k for k, text in enumerate(
        subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                       text=True, check=True).stdout.split("\f"), start=1) if marker in text)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot"
        run = [pdftoppm, "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile"]
        subprocess.run(run + ["-gray", str(pdf), str(shot)], check=True)
        data = (Path(tmp) / "shot.pgm").read_bytes()
        head = data.split(maxsplit=4)                  # P5 width height maxval pixels
        w, h = int(head[1]), int(head[2])
        pixels = np.frombuffer(data[len(data) - w * h:], np.uint8).reshape(h, w)
        ink = np.argwhere(pixels < 245)
        (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0)
        x0, y0 = max(0, x0 - 12), max(0, y0 - 12)
        x1, y1 = min(w - 1, x1 + 12), min(h - 1, y1 + 12)
        subprocess.run(run + ["-png", "-x", str(x0), "-y", str(y0), "-W", str(x1 - x0 + 1),
                              "-H", str(y1 - y0 + 1), str(pdf), str(shot)], check=True)
        png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot.with_suffix(".png"), png)
    print(f"wrote {png} ({x1 - x0 + 1} x {y1 - y0 + 1} px, {png.stat().st_size // 1024} KB)")


def libreoffice_picture(uno_python: str = "/usr/bin/python3") -> int:
    import json
    import openpyxl
    from xlglmm import cli
    from xlglmm.bridges import libreoffice
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
        bare = tmp / "bare.xlsx"
        openpyxl.load_workbook(HERE / "grouseticks.xlsx").save(bare)   # no stored results
        one_page(bare, tmp / "grouseticks.xlsx", *LO_PICTURE_AREA[:2])
        jobs = [{"open": str(tmp / "grouseticks.xlsx"), "pdf": str(tmp / "calc.pdf")}]
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        subprocess.run([uno_python, str(ROOT / "tests" / "libreoffice_driver.py"),
                        "--profile", str(user.parent), "--jobs", str(tmp / "jobs.json"),
                        "--out", str(tmp / "out.json"), "--soffice", soffice], check=True)
        (result,) = json.loads((tmp / "out.json").read_text())
        if "failed" in result or result["sheets"]["Model"].get("B6") != "Fixed effects":
            print(f"LibreOffice did not compute the workbook: {str(result)[:300]}")
            return 1
        render_content(pdftoppm, tmp / "calc.pdf", "Grouse ticks: ticks counted",
                       LO_PICTURE_AREA[2], LO_PICTURE)
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
