"""The ``xlglmm`` command.

    xlglmm --version
    xlglmm demo [-o OUT.xlsx]
    xlglmm recalc IN.xlsx [-o OUT.xlsx] [--values] [--quiet]
    xlglmm addin install [--dest DIR] [--home DIR] [--interpreter PATH] [--force] [--dry-run]
    xlglmm libreoffice install [--profile DIR] [--python PATH] [--init] [--force] [--no-check]
    xlglmm libreoffice uninstall [--profile DIR]

Subcommands live in ``SUBCOMMANDS`` (name -> Subcommand: help text, a function that adds
its arguments to its parser, and the handler that runs it and returns the exit code).
A new command (``demo``, ``recalc``) is one more entry there.

Exit codes are shared by every subcommand (:class:`xlglmm.files.Exit`, listed in
``--help``): 0 done, 1 a model or formula failed, 2 the command line, 3 an input
file, 4 the output, 5 the environment (LibreOffice, Windows folders).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bridges import excel_addin as addin
from .files import EXIT_HELP, Exit


@dataclass(frozen=True)
class Subcommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- xlglmm addin ... ---------------------------------------------------------------------


def _no_compile_option(parser, first_use: str) -> None:
    """The installers' --no-compile (both compile the kernels at install time)."""
    parser.add_argument("--no-compile", action="store_true",
                        help=f"do not compile the numerical kernels now (the first {first_use} "
                             "then compiles them, once)")

def _configure_addin(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    inst = actions.add_parser(
        "install", help="install the Excel add-in (Windows) and write its configuration",
        description="Copy xlglmm.xlam to Excel's XLSTART folder and write the add-in's "
                    "configuration (INTERPRETER_WIN = this Python, UDF MODULES = "
                    f"{addin.UDF_MODULES}); then print the steps left to do in Excel.")
    inst.add_argument("--dest", type=Path, metavar="DIR",
                      help="copy the add-in here instead of %%APPDATA%%\\Microsoft\\Excel\\"
                           "XLSTART; the config files then also go here unless --home is given")
    inst.add_argument("--home", type=Path, metavar="DIR",
                      help="folder that gets .xlglmm\\xlglmm.conf and .myaddin\\myaddin.conf "
                           "(default %%USERPROFILE%%, or --dest when that is given)")
    inst.add_argument("--interpreter", metavar="PATH", default=sys.executable,
                      help="python.exe for INTERPRETER_WIN (default: the one running this)")
    inst.add_argument("--force", action="store_true",
                      help="replace an existing add-in file that differs from the shipped one")
    _no_compile_option(inst, "worksheet call")
    inst.add_argument("--dry-run", action="store_true",
                      help="only print what would be done")
    inst.set_defaults(addin_handler=_addin_install)


def _run_addin(args: argparse.Namespace) -> int:
    return args.addin_handler(args)


def _xlwings_version() -> str | None:
    from importlib import metadata
    try:
        return metadata.version("xlwings")
    except metadata.PackageNotFoundError:
        return None


def _addin_install(args: argparse.Namespace) -> int:
    out = print
    win = addin.is_windows()
    dest = args.dest or (addin.xlstart_dir() if win else None)
    home = args.home or args.dest or (addin.user_home() if win else None)
    if win and (dest is None or home is None):
        out("error: %APPDATA% or %USERPROFILE% is not set; give --dest and --home")
        return Exit.ENVIRONMENT
    bas = addin.addin_file(addin.BAS_FILE)
    doc = addin.addin_file(addin.INSTALL_DOC)

    xlw = _xlwings_version()
    if xlw != addin.XLWINGS_VERSION:
        out(f"WARNING: xlwings {xlw or '(not installed)'} is installed, but the add-in is "
            f"built for xlwings {addin.XLWINGS_VERSION} (its VBA loads "
            f"xlwings64-{addin.XLWINGS_VERSION}.dll): pip install xlwings=="
            f"{addin.XLWINGS_VERSION}")

    if not win:
        out(addin.NOT_WINDOWS)
        if dest is None:
            out("Nothing was installed on this machine. On Windows this command would:")
            out(f"  - copy {addin.ADDIN_FILE} to %APPDATA%\\Microsoft\\Excel\\XLSTART")
            for p in addin.PROJECT_NAMES:
                out(f"  - write %USERPROFILE%\\.{p}\\{p}.conf with INTERPRETER_WIN = that "
                    f"machine's python.exe and UDF MODULES = {addin.UDF_MODULES}")
            out("  - and print the steps left to do in Excel (see INSTALL.md).")
            _print_alternatives(out, doc)
            return 0
        out(f"Staging the add-in files in {dest} (for copying to a Windows machine).")
        if args.interpreter == sys.executable:
            out(f"Note: INTERPRETER_WIN is set to this machine's Python ({sys.executable}); "
                "on Windows use --interpreter or edit the .conf files.")

    try:
        plan = addin.plan_install(dest, home, args.interpreter, force=args.force)
    except addin.ConfigValueError as e:
        out(f"error: --interpreter: {e}")
        return Exit.USAGE
    if args.dry_run:
        out("Dry run, nothing written. Would:")
        for line in addin.describe(plan):
            out(f"  - {line}")
    else:
        for line in addin.execute(plan):
            out(line)
        # compile for the Python the add-in will call, when that is this one (not
        # when staging the files here for a Windows machine)
        same_python = Path(args.interpreter).resolve() == Path(sys.executable).resolve()
        if not args.no_compile and same_python and win:
            compile_kernels(out)
    for w in plan.warnings:
        out(f"WARNING: {w}")

    out("")
    out("Still to do by hand in Excel (cannot be automated):")
    target = str(plan.addin_target) if plan.addin_target else addin.ADDIN_FILE
    n = 0
    for step in addin.manual_steps(target, str(bas)):
        if step.startswith("  "):
            out(f"   {step}")
        else:
            n += 1
            out(f"  {n}. {step}")
    out(f"Configuration files are read in this order: sheet 'myaddin.conf' in the active "
        f"workbook, the same sheet in the add-in, 'myaddin.conf' beside the workbook, "
        f"%USERPROFILE%\\.myaddin\\myaddin.conf (the add-in still has xlwings' "
        f"PROJECT_NAME \"myaddin\"; once renamed, 'xlglmm' replaces 'myaddin').")
    out(f"Full instructions: {doc}")
    if not win:
        _print_alternatives(out, None)
    return 0


def compile_kernels(out) -> bool:
    """Compile the numerical kernels now (``jit.warm_up``), so that the first worksheet
    call does not wait for them; they are cached on disk for this Python.  Says
    whether that worked."""
    import time

    from .engine import jit
    out("Compiling the numerical kernels for this machine (once; they are cached on disk) ...")
    t0, n0 = time.perf_counter(), jit.compilations()
    failed = jit.warm_up()
    took = time.perf_counter() - t0
    if failed:
        for step, err in failed:
            out(f"  WARNING: the {step} kernels could not be compiled ({err}); the first "
                "worksheet call will try again")
        return False
    out(f"  done in {took:.1f} s" + ("" if jit.compilations() > n0
                                      else " (they were already compiled)"))
    return True


def _print_alternatives(out, doc) -> None:
    out("For Excel on Mac or the web:")
    for a in addin.ALTERNATIVES:
        out(f"  - {a}")
    if doc is not None:
        out(f"Details: {doc}")


# ---- xlglmm demo / recalc -----------------------------------------------------------------

def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXIT_HELP
    p.add_argument("-o", "--output", type=Path, metavar="OUT.xlsx",
                   help="where to write the filled workbook (default: workplace_safety.xlsx "
                        "in the current directory); checked before the fit, never a "
                        "read-only file")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run
    return run(args.output)


RECALC_EPILOG = """\
Every formula calling GLMM_POISSON, GLMM_BINOMIAL, GLMM_NEGBIN, LMM, GLMM, GLMM_RANEF,
GLMM_PREDICT or GLMM_COMPARE is evaluated with the same functions and arguments as in Excel; its block
is written from the formula's cell rightwards and downwards, as Excel 365 spills it
(the formula stays, with the result stored). References: A1, A1:B9, A:C, Sheet!A1,
'My sheet'!A1, F2# (spill), Table[col], Table[[#All],[a]:[b]], [#This Row], names.
Other Excel functions evaluated: ABS AND ANCHORARRAY AVERAGE COLUMNS COUNT COUNTIF EXP
IF INDEX ISBLANK ISERROR ISNUMBER ISTEXT LARGE LN LOG LOG10 MATCH MAX MIN NA NOT OR
RANK ROUND ROWS SMALL SQRT SUM. An xlglmm formula that uses anything else, or a
reference that cannot be resolved, is reported (#NAME? / #REF! in its cell), never
guessed; other formulas with unknown functions keep their stored values.

The files are checked before anything is fitted; the output is written to a
temporary file beside it, read back and checked, and then moved into place; a
read-only output file is never replaced.  Workbooks are read with limits counted
while unpacking (256 MB per part, 1 GB in all, 10,000 parts, 2,000,000 cells,
2,000,000 shared strings, 64,000 entries per list of styles, 2,000,000 other XML
elements: memory stays near 0.2 GB + 1 kB per cell, string or element); a larger
one, a zip bomb, XML with a DOCTYPE or in an encoding recalc cannot read (Shift_JIS,
GBK...) is refused (exit 3) and nothing is written.

""" + EXIT_HELP


def _configure_recalc(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = RECALC_EPILOG
    p.add_argument("input", type=Path, metavar="IN.xlsx", help="the workbook (.xlsx)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.xlsx",
                   help="write the result here, an .xlsx workbook (default: update "
                        "IN.xlsx in place)")
    p.add_argument("--values", action="store_true",
                   help="write values only, no formulas (for LibreOffice, Numbers, ...); "
                        "needs -o")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only problems")


def _run_recalc(args: argparse.Namespace) -> int:
    from .workbook.recalc import run_command
    return run_command(args.input, args.output, values_only=args.values, quiet=args.quiet)


# ---- xlglmm libreoffice ... ---------------------------------------------------------------

def _configure_libreoffice(p: argparse.ArgumentParser) -> None:
    from .bridges import libreoffice as lo
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    profile_help = f"LibreOffice user profile folder (default {lo.default_profile()})"
    inst = actions.add_parser(
        "install", help="make the worksheet functions available in LibreOffice Calc",
        description="Add the Basic module XLGLMM to My Macros > Standard and copy "
                    "xlglmm_calc.py to the profile's Scripts/python folder, configured "
                    "to run the worker with this Python.  Close LibreOffice first.")
    inst.add_argument("--profile", type=Path, metavar="DIR", help=profile_help)
    inst.add_argument("--python", default=sys.executable, metavar="PATH",
                      help="Python with xlglmm installed, for the worker process "
                           "(default: the one running this)")
    inst.add_argument("--init", action="store_true",
                      help="let LibreOffice create the profile first if it does not exist")
    inst.add_argument("--force", action="store_true",
                      help="install even though LibreOffice seems to be running")
    inst.add_argument("--no-check", action="store_true",
                      help="do not start the worker once to check that it runs")
    _no_compile_option(inst, "cell")
    inst.add_argument("--timeout", type=_seconds, default=lo.DEFAULT_TIMEOUT, metavar="S",
                      help="seconds a cell waits for its result before the worker is "
                           "stopped (default %(default)s)")
    inst.set_defaults(lo_handler=_libreoffice_install)
    un = actions.add_parser("uninstall", help="remove the module and the script again")
    un.add_argument("--profile", type=Path, metavar="DIR", help=profile_help)
    un.set_defaults(lo_handler=_libreoffice_uninstall)


MAX_TIMEOUT = 86_400


def _seconds(text: str) -> float:
    """--timeout: seconds from 1 to a day (a cell waits that long before its worker is
    stopped; NaN, infinity, zero or a negative number would never or always stop it)."""
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    if not 1 <= t <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"{text} is not from 1 to {MAX_TIMEOUT} seconds")
    return t


def _run_libreoffice(args: argparse.Namespace) -> int:
    return args.lo_handler(args)


def _libreoffice_install(args: argparse.Namespace) -> int:
    from .bridges import libreoffice as lo
    user = args.profile or lo.default_profile()
    if args.init and not (user / "basic").is_dir():
        if user.name != "user":
            print(f"error: {user}: LibreOffice keeps a profile in a folder named 'user' "
                  "(e.g. ~/.config/libreoffice/4/user); give --profile such a folder")
            return Exit.ENVIRONMENT
        soffice = lo.find_soffice()
        if soffice is None:
            print("error: --init needs LibreOffice (soffice) on PATH")
            return Exit.ENVIRONMENT
        print(f"creating the LibreOffice profile {user} ...")
        try:
            lo.initialise_profile(user, soffice)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"error: {user}: LibreOffice could not create the profile ({e}); start "
                  "LibreOffice once by hand, then run this again without --init")
            return Exit.ENVIRONMENT
    if lo.is_running(user) and not args.force:
        print(f"error: LibreOffice is running with profile {user}: close it and run this "
              "again (it rewrites its macro library list when it exits); --force to go on")
        return Exit.ENVIRONMENT
    try:
        args.python = lo.interpreter_path(args.python)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}")
        return Exit.USAGE
    env = {}
    if not args.no_check:
        try:
            env = lo.worker_env(args.python)
        except RuntimeError as e:
            print(f"error: {e}")
            return Exit.ENVIRONMENT
    try:
        done = lo.install(user, args.python, timeout=args.timeout, env=env)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}")
        return Exit.ENVIRONMENT
    print(f"installed Basic module {lo.MODULE_NAME} (My Macros > {lo.LIBRARY}): {done.module}")
    print(f"installed {lo.SCRIPT_FILE}: {done.script}")
    for path in done.backups:
        print(f"kept the file that was there as {path} (it differed, and xlglmm had not "
              "written it)")
    print(f"worker: {args.python} -P -m xlglmm.bridges.libreoffice serve"
          + (f" (with {', '.join(f'{k}={v}' for k, v in env.items())})" if env else "")
          + ("" if args.no_check else ", checked"))
    for path in done.start.launchers:
        print(f"installed launcher: {path}")
    if not args.no_compile and Path(args.python).resolve() == Path(sys.executable).resolve():
        compile_kernels(print)          # the worker runs this Python: its first cell won't wait
    print(done.start.advice)
    print("Open a workbook that calls GLMM_POISSON, GLMM_BINOMIAL, GLMM, GLMM_RANEF, "
          "GLMM_PREDICT, GLMM_COMPARE, GLMM_NEGBIN or LMM (e.g. the one `xlglmm demo` "
          "writes, or the templates in a clone's workbooks/); "
          "Data > Calculate > Recalculate Hard recomputes them.")
    print(lo.MACRO_SECURITY)
    return 0


def _libreoffice_uninstall(args: argparse.Namespace) -> int:
    from .bridges import libreoffice as lo
    user = args.profile or lo.default_profile()
    removed, backups = lo.uninstall(user)
    for path in removed:
        print(f"removed {path}")
    for path in backups:
        print(f"kept a copy of it as {path} (it was not as xlglmm wrote it)")
    return 0


# ---- the command ---------------------------------------------------------------------------

SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand("fit the workplace-safety example, print the block, write a workbook",
                       _configure_demo, _run_demo),
    "recalc": Subcommand("evaluate the xlglmm formulas of a workbook and store the results "
                         "(no Excel needed)", _configure_recalc, _run_recalc),
    "addin": Subcommand("the Excel add-in (install)", _configure_addin, _run_addin),
    "libreoffice": Subcommand("the LibreOffice Calc bridge (install, uninstall)",
                              _configure_libreoffice, _run_libreoffice),
}


def version() -> str:
    """The installed distribution's version; the package's own when xlglmm runs
    from a source tree that is not installed."""
    from importlib import metadata
    try:
        return metadata.version("xlglmm")
    except metadata.PackageNotFoundError:
        from . import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlglmm", description="xlglmm: GLMMs (lme4's glmer) in Python and Excel.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"xlglmm {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        if p.epilog is None:
            p.formatter_class = argparse.RawDescriptionHelpFormatter
            p.epilog = EXIT_HELP
        p.set_defaults(handler=cmd.run)
    return parser


class _ClosedPipeSafe:
    """stdout that survives its reader going away (``xlglmm demo | head``): the
    rest of the output is dropped, the work (fits, the file written) goes on, and
    the exit status is the work's own."""

    def __init__(self, stream):
        self._stream = stream
        self.closed_pipe = False

    def write(self, text):
        if not self.closed_pipe:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.closed_pipe = True
        return len(text)

    def flush(self):
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.closed_pipe = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout
    sys.stdout = _ClosedPipeSafe(out)
    try:
        return int(args.handler(args) or 0)
    finally:
        safe, sys.stdout = sys.stdout, out
        if getattr(safe, "closed_pipe", False):
            # Python flushes stdout again at exit: point it at nothing
            try:
                sys.stdout = open(os.devnull, "w")
                os.dup2(sys.stdout.fileno(), out.fileno())
            except (OSError, ValueError, AttributeError):
                pass


if __name__ == "__main__":
    raise SystemExit(main())
