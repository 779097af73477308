"""The ``xlglmm`` command.

    xlglmm demo [-o OUT.xlsx]
    xlglmm recalc IN.xlsx [-o OUT.xlsx] [--values] [--quiet]
    xlglmm addin install [--dest DIR] [--home DIR] [--interpreter PATH] [--force] [--dry-run]

Subcommands live in ``SUBCOMMANDS`` (name -> Subcommand: help text, a function that adds
its arguments to its parser, and the handler that runs it and returns the exit code).
A new command (``demo``, ``recalc``) is one more entry there.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import addin


@dataclass(frozen=True)
class Subcommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- xlglmm addin ... ---------------------------------------------------------------------

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
        return 1
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

    plan = addin.plan_install(dest, home, args.interpreter, force=args.force)
    if args.dry_run:
        out("Dry run, nothing written. Would:")
        for line in addin.describe(plan):
            out(f"  - {line}")
    else:
        for line in addin.execute(plan):
            out(line)
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


def _print_alternatives(out, doc) -> None:
    out("For Excel on Mac or the web:")
    for a in addin.ALTERNATIVES:
        out(f"  - {a}")
    if doc is not None:
        out(f"Details: {doc}")


# ---- xlglmm demo / recalc -----------------------------------------------------------------

def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, metavar="OUT.xlsx",
                   help="where to write the filled workbook (default: workplace_safety.xlsx "
                        "in the current directory)")


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

Exit status: 0 all xlglmm formulas evaluated; 1 some could not be evaluated or gave a
#GLMM! error (listed); 2 the workbook could not be read or written."""


def _configure_recalc(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = RECALC_EPILOG
    p.add_argument("input", type=Path, metavar="IN.xlsx", help="the workbook")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.xlsx",
                   help="write the result here (default: update IN.xlsx in place)")
    p.add_argument("--values", action="store_true",
                   help="write values only, no formulas (for LibreOffice, Numbers, ...); "
                        "needs -o")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only problems")


def _run_recalc(args: argparse.Namespace) -> int:
    from .recalc import run_command
    return run_command(args.input, args.output, values_only=args.values, quiet=args.quiet)


# ---- the command ---------------------------------------------------------------------------

SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand("fit the workplace-safety example, print the block, write a workbook",
                       _configure_demo, _run_demo),
    "recalc": Subcommand("evaluate the xlglmm formulas of a workbook and store the results "
                         "(no Excel needed)", _configure_recalc, _run_recalc),
    "addin": Subcommand("the Excel add-in (install)", _configure_addin, _run_addin),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlglmm", description="xlglmm: GLMMs (lme4's glmer) in Python and Excel.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(handler=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
