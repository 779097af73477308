"""The Excel add-in: where its files are, and installing it (``xlglmm addin install``).

The add-in files ship inside the package (``xlglmm/bridges/addin_files/``, their only copy; the
generated ones are written there by ``scripts/build_addin.py``), so they are found from a
checkout and from an installed wheel alike.

``xlglmm.xlam`` is xlwings' prebuilt quickstart add-in, copied unchanged (exactly what
``xlwings quickstart xlglmm --addin`` produces).  Two consequences:

* it is locked to **xlwings 0.37.8**: its VBA declares ``xlwings64-0.37.8.dll``;
* its VBA constant ``PROJECT_NAME`` is still ``"myaddin"``, so as shipped it reads its
  user configuration from ``%USERPROFILE%\\.myaddin\\myaddin.conf``.  xlwings' custom
  add-in docs describe renaming it (to ``"xlglmm"``); after that it reads
  ``%USERPROFILE%\\.xlglmm\\xlglmm.conf``.  The installer writes both files.

Nothing here needs Excel, pywin32 or Windows; off Windows the installer only reports.
"""
from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..files import is_windows  # one definition of the platform test (files.py)

ADDIN_FILE = "xlglmm.xlam"
BAS_FILE = "xlglmm_udfs.bas"
CONF_EXAMPLE_FILE = "xlglmm.conf.example"
INSTALL_DOC = "INSTALL.md"
SHIPPED_FILES = (ADDIN_FILE, BAS_FILE, CONF_EXAMPLE_FILE, INSTALL_DOC)

XLWINGS_VERSION = "0.37.8"        # the add-in's VBA loads xlwings64-0.37.8.dll
UDF_MODULES = "xlglmm.sheet.udfs"
#: PROJECT_NAME of the shipped add-in ("myaddin", from xlwings' quickstart template) and
#: the name it gets once renamed as xlwings' docs describe
PROJECT_NAMES = ("xlglmm", "myaddin")

TRUST_SETTING = ("File > Options > Trust Center > Trust Center Settings > Macro Settings > "
                 "\"Trust access to the VBA project object model\"")


def addin_dir() -> Path:
    """The folder holding the shipped add-in files (package data)."""
    return Path(str(resources.files("xlglmm.bridges") / "addin_files"))


def addin_file(name: str) -> Path:
    path = addin_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is missing from {path.parent}; the xlglmm installation "
                                "is incomplete (in a checkout run scripts/build_addin.py)")
    return path


def xlstart_dir() -> Path | None:
    """The user's Excel startup folder, %APPDATA%\\Microsoft\\Excel\\XLSTART (Windows)."""
    appdata = os.environ.get("APPDATA")
    if not appdata:
        return None
    return Path(appdata) / "Microsoft" / "Excel" / "XLSTART"


def user_home() -> Path | None:
    home = os.environ.get("USERPROFILE") if is_windows() else None
    return Path(home) if home else None


def config_path(home: Path, project: str) -> Path:
    """Where the add-in with PROJECT_NAME ``project`` looks for its user config."""
    return home / f".{project}" / f"{project}.conf"


# ---- config files -------------------------------------------------------------------------
# The VBA reads them with `Input #f, name, value`: one "KEY","VALUE" pair per line, keys
# case-insensitive, no comments (a line without a comma would shift every later pair).

def parse_config(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('"'):
            key, _, rest = line[1:].partition('"')
            value = rest.lstrip(" ,").strip()
        else:
            key, _, value = line.partition(",")
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        pairs.append((key.strip(), value))
    return pairs


def value_problem(value: str) -> str:
    """'' when ``value`` can be a VALUE of the .conf; else what is in the way.  xlwings'
    VBA reads each pair with ``Input #``, which ends a quoted string at the next ``"``
    (there is no escape: a doubled quote ends it too) and a line at CR or LF, and its
    Python reader (xlwings.utils.read_user_config) takes the text between quotes on one
    line.  So a quote, CR or LF in a value would end it early and the rest would be read
    as further pairs (a crafted --interpreter could add a "UDF MODULES" line of its own);
    NUL and other control characters are no part of a Windows path; and the file is
    written in the ANSI code page on Windows, which must hold every character."""
    if not value:
        return "is empty"
    if "\r" in value or "\n" in value:
        return "holds a line break"
    if '"' in value:
        return 'holds a double quote (")'
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a control character"
    try:
        value.encode(config_encoding())
    except UnicodeError:
        return f"holds characters the file's encoding ({config_encoding()}) cannot store"
    return ""


class ConfigValueError(ValueError):
    """A value that cannot be written into the add-in's .conf."""


def format_config(pairs) -> str:
    return "".join(f'"{k}","{v}"\r\n' for k, v in pairs)


def merged_config(existing: str | None, settings: dict) -> tuple[str, list]:
    """``existing`` config text with ``settings`` set; other keys are kept in their order
    (a repeated key of ours is dropped: the VBA would only read the first).  Returns the
    new text and the (key, old value, new value) entries that were overwritten."""
    wanted = {k.lower(): (k, v) for k, v in settings.items()}
    out, changed, seen = [], [], set()
    for k, v in parse_config(existing or ""):
        key = k.lower()
        if key not in wanted:
            out.append((k, v))
        elif key not in seen:
            seen.add(key)
            new = wanted[key][1]
            if v != new:
                changed.append((k, v, new))
            out.append((k, new))
    out += [kv for key, kv in wanted.items() if key not in seen]
    return format_config(out), changed


def config_encoding() -> str:
    # VBA's Open ... For Input reads the ANSI code page
    return "mbcs" if is_windows() else "utf-8"


# ---- installing -----------------------------------------------------------------------------

@dataclass
class Step:
    kind: str          # "copy" | "config"
    target: Path
    source: Path | None = None
    text: str | None = None
    note: str = ""
    skip: bool = False
    backup: bool = False      # keep the old file as *.bak before writing


@dataclass
class InstallPlan:
    addin_target: Path | None
    config_targets: list
    steps: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def plan_install(dest: Path | None, home: Path | None, interpreter: str,
                 force: bool = False) -> InstallPlan:
    """What ``install`` would do.  ``dest``: folder for the add-in (None: no copy);
    ``home``: folder that gets ``.xlglmm\\xlglmm.conf`` and ``.myaddin\\myaddin.conf``."""
    source = addin_file(ADDIN_FILE)
    settings = {"INTERPRETER_WIN": interpreter, "UDF MODULES": UDF_MODULES}
    if home is not None:
        for key, value in settings.items():
            problem = value_problem(value)
            if problem:
                shown = repr(value) if len(value) <= 80 else repr(value[:77]) + "..."
                raise ConfigValueError(
                    f"{key} = {shown} {problem}: it cannot be written into the add-in's "
                    '.conf, whose "KEY","VALUE" lines Excel reads with no escapes; give '
                    "the plain path of python.exe")
    plan = InstallPlan(dest / ADDIN_FILE if dest else None,
                       [config_path(home, p) for p in PROJECT_NAMES] if home else [])
    if dest is not None:
        target = dest / ADDIN_FILE
        step = Step("copy", target, source=source)
        if target.exists():
            if filecmp.cmp(source, target, shallow=False):
                step.skip, step.note = True, "already there, identical"
            elif not force:
                step.skip = True
                step.note = "left as it is: it differs from the shipped add-in"
                plan.warnings.append(
                    f"{target} exists and differs from the shipped add-in (functions "
                    "imported into it, or another xlwings version?). It was not replaced; "
                    "use --force to replace it (then import the functions again).")
            else:
                step.note = "replacing the existing file (--force)"
        plan.steps.append(step)
    for project, cfg in zip(PROJECT_NAMES, plan.config_targets):
        existing = None
        if cfg.exists():
            existing = cfg.read_bytes().decode(config_encoding(), errors="replace")
        text, changed = merged_config(existing, settings)
        step = Step("config", cfg, text=text)
        if existing is not None and text == existing:
            step.skip, step.note = True, "already up to date"
        elif existing is not None:
            step.note = "updated " + (", ".join(k for k, _, _ in changed) or "keys")
            if project == "myaddin" and changed:
                step.backup = True
                for k, old, new in changed:
                    plan.warnings.append(
                        f"{cfg}: {k} was {old!r}. This file is shared by every add-in made "
                        "from xlwings' quickstart template (PROJECT_NAME \"myaddin\"); the "
                        "old file is kept as myaddin.conf.bak.")
        plan.steps.append(step)
    return plan


def execute(plan: InstallPlan) -> list[str]:
    """Carry out a plan; returns one line per step saying what was done."""
    done = []
    for step in plan.steps:
        if step.skip:
            done.append(f"kept     {step.target} ({step.note})")
            continue
        step.target.parent.mkdir(parents=True, exist_ok=True)
        if step.kind == "copy":
            shutil.copyfile(step.source, step.target)
            done.append(f"copied   {step.target}" + (f" ({step.note})" if step.note else ""))
        else:
            if step.backup and step.target.exists():
                shutil.copyfile(step.target, step.target.with_name(step.target.name + ".bak"))
            data = step.text.encode(config_encoding())
            step.target.write_bytes(data)
            done.append(f"wrote    {step.target}" + (f" ({step.note})" if step.note else ""))
    return done


def describe(plan: InstallPlan) -> list[str]:
    lines = []
    for step in plan.steps:
        if step.kind == "copy":
            what = f"copy {step.source.name} to {step.target}"
        else:
            what = f"write {step.target}"
        lines.append(what + (f" ({step.note})" if step.note else ""))
    return lines


def manual_steps(addin_path: str, bas_path: str) -> list[str]:
    """What a Windows Excel user still has to do by hand."""
    return [
        f"Start (or restart) Excel so that it opens {addin_path} (XLSTART is a trusted "
        "location, so Excel lets its macros run).",
        "Import the worksheet functions into the add-in, once (and again after upgrading "
        "xlglmm), in one of two ways (a third, per workbook via the xlwings ribbon, is in "
        "INSTALL.md):",
        f"  a) automatic, with Function Wizard help: turn on {TRUST_SETTING}; then open the "
        "VBA editor (Alt+F11), open module 'xlwings' of the add-in's project (MyAddin), "
        "click into 'Sub ImportPythonUDFsToAddin' near its end and press F5; then save the "
        "add-in (Ctrl+S in the VBA editor). The trust setting can be turned off again "
        "afterwards.",
        f"  b) by hand, no trust setting needed: in the VBA editor select the add-in's "
        f"project, File > Import File..., choose {bas_path}, then save (Ctrl+S). The "
        "functions work, but the Function Wizard shows no descriptions.",
        "Restart Excel, then try =GLMM_POISSON(A2:A7, B2:B7, C2:C7) in a workbook.",
    ]


NOT_WINDOWS = (
    "xlglmm's Excel worksheet functions (classic xlwings UDFs) run only in Excel for "
    "Windows: Excel for Mac and Excel on the web cannot call them.")

ALTERNATIVES = [
    "`xlglmm recalc`: computes the GLMM_* formulas of a workbook in batch and writes the "
    "results into the file, on any OS.",
    "LibreOffice Calc: `xlglmm libreoffice install` makes the same functions work in Calc "
    "cells and in the same workbooks (Linux, macOS, Windows).",
    "xlwings Server / xlwings Lite can serve the same functions to Excel for Mac and the "
    "web; xlwings Server needs the noncommercial licence (PolyForm) or a paid xlwings PRO "
    "licence for commercial use, calls the functions as XLWINGS.GLMM_POISSON, and Lite "
    "(Pyodide) has no numba.",
]
