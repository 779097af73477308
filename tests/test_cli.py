"""``xlglmm demo`` / ``xlglmm recalc`` / ``xlglmm --version``: arguments checked before
any fit, one line per problem (the path, what is wrong, what to do), one exit code per
kind of failure, read-only files never replaced, the output written atomically, and
recalc's log saying what really happened (fitted / reused a cached fit / computed)."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import openpyxl
import pytest

from xlglmm.sheet import cache, models, udfs
from xlglmm import cli, demo, files
from xlglmm.files import Exit

ROOT = Path(__file__).resolve().parent.parent
CBPP = ROOT / "workbooks" / "cbpp.xlsx"
SLEEP = ROOT / "workbooks" / "sleepstudy.xlsx"


@pytest.fixture
def no_fit(monkeypatch):
    """Count the model fits the worksheet functions start (there must be none when the
    arguments are wrong)."""
    calls = []

    def counting(name):
        def fit(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} ran although the arguments were wrong")
        return fit
    monkeypatch.setattr(models, "glmer", counting("glmer"))
    monkeypatch.setattr(models, "lmer", counting("lmer"))
    cache.clear()                  # a cached fit must not hide a fit that would run
    yield calls
    cache.clear()


@pytest.fixture
def book(tmp_path):
    p = tmp_path / "book.xlsx"
    shutil.copy(CBPP, p)
    return p


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---- bad arguments: the message, the exit code, and no fit ----------------------------------

def test_input_is_a_folder(tmp_path, book, capsys, no_fit):
    code, out, err = run(capsys, "recalc", tmp_path)
    assert code == Exit.INPUT == 3
    assert one_line(err) == (f"xlglmm recalc: error: {tmp_path}: is a folder, not a workbook; "
                             "give the path of an .xlsx file (it holds book.xlsx)")
    assert "openpyxl" not in err and out == "" and no_fit == []


def test_input_is_a_csv(tmp_path, capsys, no_fit):
    csv = tmp_path / "data.csv"
    csv.write_text("y,x\n1,2\n")
    code, out, err = run(capsys, "recalc", csv)
    assert code == Exit.INPUT
    assert one_line(err) == (f"xlglmm recalc: error: {csv}: is a text file (.csv), not a "
                             "workbook; xlglmm reads .xlsx workbooks: open it in Excel or Calc "
                             "and save it as an Excel workbook (.xlsx)")
    assert no_fit == []


@pytest.mark.parametrize("name, problem", [
    ("old.xls", "is an Excel 97-2003 workbook (.xls)"),
    ("calc.ods", "is an OpenDocument spreadsheet (.ods)"),
    ("noext", "is not an .xlsx workbook (the name has no extension)"),
    ("book.json", "is not an .xlsx workbook (the name ends in '.json')"),
])
def test_input_other_formats(tmp_path, capsys, no_fit, name, problem):
    p = tmp_path / name
    p.write_bytes(b"PK\x03\x04 whatever")
    code, _, err = run(capsys, "recalc", p)
    assert code == Exit.INPUT
    assert one_line(err).startswith(f"xlglmm recalc: error: {p}: {problem}; xlglmm reads "
                                    ".xlsx workbooks")
    assert no_fit == []


def test_input_missing(tmp_path, book, capsys, no_fit):
    code, _, err = run(capsys, "recalc", tmp_path / "bok.xlsx")
    assert code == Exit.INPUT
    assert one_line(err) == (f"xlglmm recalc: error: {tmp_path / 'bok.xlsx'}: no such file; "
                             f"check the name (did you mean {book}?)")
    code, _, err = run(capsys, "recalc", tmp_path / "nowhere" / "b.xlsx")
    assert code == Exit.INPUT
    assert "no such file (its folder does not exist either); check the path" in err
    assert no_fit == []


@pytest.mark.parametrize("content", [b"", b"not a workbook"])
def test_input_not_a_zip(tmp_path, capsys, no_fit, content):
    p = tmp_path / "junk.xlsx"
    p.write_bytes(content)
    code, _, err = run(capsys, "recalc", p)
    assert code == Exit.INPUT
    assert one_line(err) == (f"xlglmm recalc: error: {p}: is not an .xlsx workbook (the file "
                             "is not a zip package: empty, damaged, or another format "
                             "renamed); open it in Excel or Calc and save it as an Excel "
                             "workbook (.xlsx)")
    assert no_fit == []


def test_input_damaged_zip(tmp_path, capsys, no_fit):
    import zipfile
    p = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "a zip, but no workbook in it")
    code, _, err = run(capsys, "recalc", p)
    assert code == Exit.INPUT
    line = one_line(err)
    assert line.startswith(f"xlglmm recalc: error: {p}: cannot be read as a workbook (damaged?")
    assert line.endswith("open it in Excel or Calc and save it again as .xlsx")
    assert no_fit == []


@pytest.mark.parametrize("sub", ["recalc", "demo"])
def test_output_wrong_extension(tmp_path, book, capsys, no_fit, sub):
    out = tmp_path / "out.csv"
    argv = ["recalc", book, "-o", out] if sub == "recalc" else ["demo", "-o", out]
    code, stdout, err = run(capsys, *argv)
    assert code == Exit.OUTPUT == 4
    assert one_line(err) == (f"xlglmm {sub}: error: {out}: the name ends in '.csv', but the "
                             "file written is an .xlsx workbook; give a name ending in .xlsx")
    assert not out.exists() and no_fit == [] and stdout == ""


def test_output_values_also_writes_xlsx(tmp_path, book, capsys, no_fit):
    out = tmp_path / "values.csv"
    code, _, err = run(capsys, "recalc", book, "-o", out, "--values")
    assert code == Exit.OUTPUT
    assert "is an .xlsx workbook (--values writes one too); give a name ending in .xlsx" in err
    assert not out.exists() and no_fit == []


@pytest.mark.parametrize("sub", ["recalc", "demo"])
def test_output_folder_missing(tmp_path, book, capsys, no_fit, sub):
    out = tmp_path / "missing" / "out.xlsx"
    argv = ["recalc", book, "-o", out] if sub == "recalc" else ["demo", "-o", out]
    code, _, err = run(capsys, *argv)
    assert code == Exit.OUTPUT
    assert one_line(err) == (f"xlglmm {sub}: error: {out}: the folder {out.parent} does not "
                             "exist; create it first or choose another folder")
    assert ".tmp" not in err and no_fit == []
    assert sorted(os.listdir(tmp_path)) == ["book.xlsx"]          # nothing was written


@pytest.mark.parametrize("sub", ["recalc", "demo"])
def test_output_is_a_folder(tmp_path, book, capsys, no_fit, sub):
    out = tmp_path / "sub"
    out.mkdir()
    argv = ["recalc", book, "-o", out] if sub == "recalc" else ["demo", "-o", out]
    code, _, err = run(capsys, *argv)
    assert code == Exit.OUTPUT
    example = "result.xlsx" if sub == "recalc" else "workplace_safety.xlsx"
    assert one_line(err) == (f"xlglmm {sub}: error: {out}: is a folder; give a file name, "
                             f"e.g. {out / example}")
    assert no_fit == []


def test_output_folder_not_writable(tmp_path, book, capsys, no_fit, monkeypatch):
    out = tmp_path / "out.xlsx"
    real_open = open

    def deny(path, mode="r", *a, **k):       # what a read-only folder answers
        if "x" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr(files, "open", deny, raising=False)
    code, _, err = run(capsys, "recalc", book, "-o", out)
    assert code == Exit.OUTPUT
    assert one_line(err) == (f"xlglmm recalc: error: {out}: cannot write in the folder "
                             f"{tmp_path} (permission denied); choose another folder")
    assert no_fit == []


@pytest.mark.parametrize("sub", ["recalc", "demo", "recalc-in-place"])
def test_read_only_output_is_never_replaced(tmp_path, book, capsys, no_fit, sub):
    target = book if sub == "recalc-in-place" else tmp_path / "ro.xlsx"
    if target != book:
        shutil.copy(CBPP, target)
    target.chmod(0o444)
    before = target.read_bytes()
    argv = {"recalc": ["recalc", book, "-o", target], "demo": ["demo", "-o", target],
            "recalc-in-place": ["recalc", book]}[sub]
    try:
        code, _, err = run(capsys, *argv)
    finally:
        mode = stat.S_IMODE(target.stat().st_mode)
        target.chmod(0o644)
    assert code == Exit.OUTPUT
    name = sub.split("-")[0]
    assert one_line(err) == (f"xlglmm {name}: error: {target}: is read-only; it is not "
                             "replaced: make it writable (chmod u+w) or give another -o file")
    assert target.read_bytes() == before and mode == 0o444 and no_fit == []


def test_read_only_on_windows_says_attribute(tmp_path, book, capsys, no_fit, monkeypatch):
    monkeypatch.setattr(files, "is_windows", lambda: True)
    target = tmp_path / "ro.xlsx"
    shutil.copy(CBPP, target)
    target.chmod(0o444)
    try:
        code, _, err = run(capsys, "recalc", book, "-o", target)
    finally:
        target.chmod(0o644)
    assert code == Exit.OUTPUT
    assert "is read-only; it is not replaced: clear its read-only attribute (Properties) " \
           "or give another -o file" in err


def test_output_open_in_excel_on_windows(tmp_path, book, capsys, no_fit, monkeypatch):
    """Excel keeps an open workbook locked: opening it for writing fails."""
    monkeypatch.setattr(files, "is_windows", lambda: True)
    target = tmp_path / "open.xlsx"
    shutil.copy(CBPP, target)
    real_open = open

    def locked(path, mode="r", *a, **k):
        if Path(path) == target and "+" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr(files, "open", locked, raising=False)
    code, _, err = run(capsys, "recalc", book, "-o", target)
    assert code == Exit.OUTPUT
    assert one_line(err) == (f"xlglmm recalc: error: {target}: is open in another program "
                             "(Excel?) or locked; close it and run again")
    assert no_fit == []


@pytest.mark.parametrize("lock, program", [("~$out.xlsx", "Excel"),
                                           (".~lock.out.xlsx#", "LibreOffice")])
def test_output_open_elsewhere_by_its_lock_file(tmp_path, book, capsys, no_fit, lock, program):
    target = tmp_path / "out.xlsx"
    shutil.copy(CBPP, target)
    (tmp_path / lock).write_text("")
    code, _, err = run(capsys, "recalc", book, "-o", target)
    assert code == Exit.OUTPUT
    assert one_line(err) == (f"xlglmm recalc: error: {target}: is open in {program} (its lock "
                             f"file {lock} is beside it); close it in {program} and run again "
                             f"(if {program} is not running, delete {lock})")
    assert no_fit == []


def test_values_needs_its_own_output(tmp_path, book, capsys, no_fit):
    code, _, err = run(capsys, "recalc", book, "--values")
    assert code == Exit.USAGE == 2
    assert one_line(err) == (f"xlglmm recalc: error: {book}: --values without -o would replace "
                             "its formulas with their values; give -o OUT.xlsx for the "
                             "values-only copy")
    code, _, err = run(capsys, "recalc", book, "-o", book, "--values")
    assert code == Exit.USAGE
    assert "is the input workbook: --values would replace its formulas" in err
    assert no_fit == []


def test_argparse_errors_are_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["recalc"])
    assert e.value.code == Exit.USAGE


def test_same_kind_same_code_across_subcommands(tmp_path, book, capsys, no_fit):
    """The reported case: demo exited 1 and recalc 2 for the same unwritable output."""
    out = tmp_path / "nope" / "x.xlsx"
    codes = {run(capsys, *argv)[0] for argv in (["demo", "-o", out], ["recalc", book, "-o", out])}
    assert codes == {Exit.OUTPUT}


def test_linux_write_error_names_no_excel(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "is_windows", lambda: False)
    target = tmp_path / "x.xlsx"

    def writer(tmp):
        raise PermissionError(13, "Permission denied")
    with pytest.raises(files.OutputProblem) as e:
        files.write_atomically(target, writer)
    assert str(e.value) == (f"{target}: cannot be written (permission denied); check the "
                            "permissions of the file and its folder")
    assert "Excel" not in str(e.value)
    monkeypatch.setattr(files, "is_windows", lambda: True)
    with pytest.raises(files.OutputProblem) as e:
        files.write_atomically(target, writer)
    assert "open in Excel or another program" in str(e.value)


# ---- writing -----------------------------------------------------------------------------------

def test_write_atomically_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "x.xlsx"
    target.write_bytes(b"old")

    def writer(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        files.write_atomically(target, writer)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.xlsx"]


def test_write_atomically_keeps_modes(tmp_path):
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.xlsx"
        files.write_atomically(new, lambda t: Path(t).write_bytes(b"x"))
        assert stat.S_IMODE(new.stat().st_mode) == 0o644     # not mkstemp's 0600
        kept = tmp_path / "kept.xlsx"
        kept.write_bytes(b"old")
        kept.chmod(0o664)
        files.write_atomically(kept, lambda t: Path(t).write_bytes(b"new"))
        assert kept.read_bytes() == b"new" and stat.S_IMODE(kept.stat().st_mode) == 0o664
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["kept.xlsx", "new.xlsx"]


def test_recalc_writes_through_a_temporary_file(tmp_path, book, capsys):
    out = tmp_path / "out.xlsx"
    code, stdout, err = run(capsys, "recalc", book, "-o", out, "-q")
    assert code == Exit.OK and err == ""
    assert openpyxl.load_workbook(out, data_only=True)["Model"]["B5"].value == "Fixed effects"
    assert sorted(os.listdir(tmp_path)) == ["book.xlsx", "out.xlsx"]


# ---- help and version --------------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"xlglmm {cli.version()}"
    assert cli.version() == "0.1.0"


@pytest.mark.parametrize("argv", [["--help"], ["recalc", "--help"], ["demo", "--help"],
                                  ["addin", "--help"], ["libreoffice", "--help"]])
def test_help_lists_the_exit_codes(capsys, argv):
    with pytest.raises(SystemExit):
        cli.main(argv)
    text = capsys.readouterr().out
    assert "Exit status (the same for every xlglmm command):" in text
    for code in Exit:
        assert f"\n  {int(code)}  " in text


# ---- recalc's log ---------------------------------------------------------------------------

def test_lmm_fits_are_reported_as_fits(tmp_path, capsys):
    """LMMs are fitted by models.lmer, which recalc's progress hook did not wrap: every
    LMM said "reused the fit" and showed no progress."""
    cache.clear()
    code, out, _ = run(capsys, "recalc", SLEEP, "-o", tmp_path / "s.xlsx")
    assert code == Exit.OK
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  Model!")}
    for cell in ("Model!B6", "Model!K6", "Model!T6"):
        assert " LMM " in lines[cell] and "block   fitted in" in lines[cell], lines[cell]
    for cell in ("Model!B44", "Model!X44", "Model!B66"):
        assert "reused a cached fit in" in lines[cell], lines[cell]
    assert "(3 model fits)" in out
    # a second run answers from the cache, and says so
    code, out, _ = run(capsys, "recalc", SLEEP, "-o", tmp_path / "s.xlsx")
    assert "fitted" not in out and out.count("reused a cached fit") == 6
    assert "(0 model fits)" in out


def test_lmm_progress_reaches_the_ticker():
    from xlglmm.workbook.progress import watching_fits
    seen = []
    cache.clear()
    y = [["y"]] + [[float(v)] for v in (1, 2, 3, 2, 4, 5, 3, 4, 6, 5, 6, 8)]
    g = [["g"]] + [[k] for k in "aaabbbcccddd"]
    with watching_fits(lambda stage, n: seen.append(stage)) as log:
        block = udfs.LMM(y, None, g)
    assert not isinstance(block, str), block
    assert seen[:2] == ["start", "fitting a linear mixed model"]
    assert log.fits == 1 and log.seconds > 0
    # the hook is the context variable udfs offers, not a swapped models.lmer: outside
    # the block no observer is left, and the fitting functions are the package's own
    assert models.FIT_OBSERVER.get() is None
    assert models.lmer.__module__ == "xlglmm.engine.lmm" and models.glmer.__module__ == "xlglmm.engine.fit"


def test_compare_of_blocks_is_computed_not_fitted(tmp_path, capsys):
    cache.clear()
    code, out, _ = run(capsys, "recalc", ROOT / "workbooks" / "grouseticks.xlsx",
                       "-o", tmp_path / "g.xlsx")
    assert code == Exit.OK
    compare = [ln for ln in out.splitlines() if "GLMM_COMPARE" in ln]
    # two on the Model sheet, two on the Zero inflation sheet
    assert len(compare) == 4 and all("computed in" in ln for ln in compare)
    # the cell names line up even when one is longer than 16 characters
    starts = {ln.index("GLMM_") for ln in out.splitlines() if ln.startswith("  ") and
              ("GLMM_" in ln)}
    assert len(starts) == 1


# ---- demo ------------------------------------------------------------------------------------

def test_demo_does_not_claim_every_program_shows_the_results(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "ws.xlsx")
    assert code == Exit.OK
    assert "any spreadsheet program" not in out
    assert "Excel shows them until it recalculates" in out
    assert "xlglmm libreoffice install" in out
    assert "xlglmm recalc ws.xlsx -o copy.xlsx --values" in out or \
        f"xlglmm recalc {tmp_path / 'ws.xlsx'} -o copy.xlsx --values" in out
    assert "#NAME?" in out


def test_demo_formats_by_column(tmp_path, capsys):
    cache.clear()
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "ws.xlsx")
    assert code == Exit.OK
    row = next(ln for ln in out.splitlines() if ln.startswith("training "))
    assert row.split()[:5] == ["training", "-0.4205", "0.1949", "-2.16", "0.031"]
    icpt = next(ln for ln in out.splitlines() if ln.startswith("(Intercept) "))
    assert "-23.60" in icpt and "< 2e-16" in icpt and "e-123" not in icpt
    assert "fitted in" in out


def test_demo_stops_on_a_fit_that_did_not_converge(tmp_path, capsys, monkeypatch):
    blk = [["Fixed effects", "Estimate"], ["training", -0.41], [None, None],
           ["Model fit", "Value"], ["converged", False], [None, None], ["Notes", None],
           ["Stopped at the time budget of 60 s: NOT converged.", None]]
    monkeypatch.setattr(udfs, "GLMM_POISSON", lambda *a: blk)
    out_path = tmp_path / "ws.xlsx"
    code, out, err = run(capsys, "demo", "-o", out_path)
    assert code == Exit.MODEL
    assert "did not converge" in err and not out_path.exists()
    assert "rate ratio" not in out


def test_demo_reports_a_failed_fit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(udfs, "GLMM_POISSON", lambda *a: "#GLMM! something broke")
    code, out, err = run(capsys, "demo", "-o", tmp_path / "ws.xlsx")
    assert code == Exit.MODEL
    assert one_line(err) == ("xlglmm demo: error: the model could not be fitted: "
                             "#GLMM! something broke")


# ---- format_block -----------------------------------------------------------------------------

def test_format_block_compare_table():
    blk = [["Model", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"],
           ["1. Location intercepts", 4, 2306.3, 2322.3, -1149.1, 2298.3, None, None, None],
           ["2. + observation-level random effect (overdispersion)", 5, 1863.9, 1883.9,
            -927.0, 1853.9, 444.3823, 1, 2.1e-98],
           ["3. Random YEAR slope", 9, 2266.7, 2302.7, -1124.3, 2248.7, 49.6106, 5, 0.000402]]
    text = demo.format_block(blk)
    assert "2. + observation-level random effect (overdispersion)" in text
    assert "444.38" in text and "49.61" in text and "49.6106" not in text
    assert "< 2e-16" in text and "0.000402" in text
    assert "2306" in text and "-1149" in text        # 4 significant digits


@pytest.mark.parametrize("header, kind", [
    ("Pr(>|z|)", "pvalue"), ("Pr(>Chisq)", "pvalue"), ("z value", "statistic"),
    ("t value", "statistic"), ("Chisq", "statistic"), ("Estimate", "number"), ("Df", "number"),
    (None, "number")])
def test_column_kind(header, kind):
    assert demo.column_kind(header) == kind


def test_a_closed_pipe_does_not_stop_the_work(tmp_path):
    """``xlglmm demo | head -1``: the reader leaves after one line; the demo still
    fits and writes its workbook, and exits with its own status (0), quietly."""
    import shutil
    import subprocess
    import sys
    if shutil.which("bash") is None or shutil.which("head") is None:
        pytest.skip("needs bash and head")
    out = tmp_path / "demo.xlsx"
    r = subprocess.run(["bash", "-c", f'"{sys.executable}" -m xlglmm demo -o "{out}" | head -1;'
                        ' exit "${PIPESTATUS[0]}"'], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("xlglmm demo:") and len(r.stdout.splitlines()) == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
    assert out.is_file()


def test_libreoffice_init_wants_a_profile_folder_named_user(tmp_path, capsys):
    from xlglmm import cli
    code = cli.main(["libreoffice", "install", "--init", "--profile", str(tmp_path / "prof"),
                     "--no-compile"])
    out = capsys.readouterr().out
    assert code == 5
    assert out.strip().splitlines() == [
        f"error: {tmp_path / 'prof'}: LibreOffice keeps a profile in a folder named 'user' "
        "(e.g. ~/.config/libreoffice/4/user); give --profile such a folder"]
