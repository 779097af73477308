"""The files the ``xlglmm`` commands read and write: checked before any fit, written
atomically, and the exit codes the commands share.

Every check answers in one line: the path, what is wrong, what to do
(``FileProblem.__str__``).  ``check_input`` and ``check_output`` run before
anything is fitted; ``write_atomically`` writes a temporary file beside the
destination and moves it into place, checking the destination again just before,
so a failed or interrupted write never leaves a half-written workbook and a
read-only file is never replaced.
"""
from __future__ import annotations

import difflib
import enum
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")


class Exit(enum.IntEnum):
    """One exit code per kind of failure, the same for every subcommand."""

    OK = 0
    MODEL = 1          # a model could not be fitted / some formulas not evaluated
    USAGE = 2          # the command line itself (argparse uses 2 as well)
    INPUT = 3          # an input file cannot be used
    OUTPUT = 4         # the output cannot be written
    ENVIRONMENT = 5    # something outside xlglmm is missing or in the way


EXIT_HELP = """\
Exit status (the same for every xlglmm command):
  0  done
  1  a model could not be fitted (demo: or did not converge; nothing is written) or a
     formula could not be evaluated (recalc lists them and writes the others)
  2  the command line is wrong (unknown option, missing argument, options that do not
     go together)
  3  the input file cannot be used (missing, a folder, not an .xlsx workbook, damaged,
     not readable, or too large to read safely: a zip bomb, more than 2,000,000
     cells); nothing was written
  4  the output cannot be written (its folder is missing or not writable, the file is
     read-only or open in another program, the name does not end in .xlsx as the
     input's); nothing was written
  5  something outside xlglmm is missing or in the way (LibreOffice not found or
     running, a profile not created yet, %APPDATA% not set)"""


def is_windows() -> bool:
    return sys.platform == "win32"


class FileProblem(Exception):
    """A file a command cannot use: ``path``, what is wrong, what to do."""

    code = Exit.USAGE

    def __init__(self, path, problem: str, remedy: str = ""):
        super().__init__(path, problem, remedy)
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.remedy = remedy

    def __str__(self) -> str:
        head = f"{self.path}: {self.problem}" if self.path is not None else self.problem
        return head + (f"; {self.remedy}" if self.remedy else "")


class UsageProblem(FileProblem):
    code = Exit.USAGE


class InputProblem(FileProblem):
    code = Exit.INPUT


class OutputProblem(FileProblem):
    code = Exit.OUTPUT


# ---- reading --------------------------------------------------------------------------------

_OTHER_FORMATS = {
    ".xls": "an Excel 97-2003 workbook (.xls)",
    ".xlsb": "an Excel binary workbook (.xlsb)",
    ".ods": "an OpenDocument spreadsheet (.ods)",
    ".csv": "a text file (.csv), not a workbook",
    ".tsv": "a text file (.tsv), not a workbook",
    ".txt": "a text file (.txt), not a workbook",
}


def _workbooks_in(folder: Path, limit: int = 4) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir()
                       if p.suffix.lower() in WORKBOOK_SUFFIXES and not p.name.startswith("~$"))
    except OSError:
        return ""
    if not names:
        return ""
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f" (it holds {', '.join(names[:limit])}{more})"


def _close_match(p: Path) -> str:
    try:
        names = [q.name for q in p.parent.iterdir() if q.suffix.lower() in WORKBOOK_SUFFIXES]
    except OSError:
        return ""
    near = difflib.get_close_matches(p.name, names, n=1, cutoff=0.6)
    return f" (did you mean {p.parent / near[0]}?)" if near else ""


def check_input(path) -> Path:
    """``path`` is an existing, readable .xlsx/.xlsm workbook (a zip package); else
    :class:`InputProblem`."""
    p = Path(path)
    if p.is_dir():
        raise InputProblem(p, "is a folder, not a workbook",
                           "give the path of an .xlsx file" + _workbooks_in(p))
    if not p.exists():
        where = p.parent
        if not where.is_dir():
            raise InputProblem(p, "no such file (its folder does not exist either)",
                               "check the path")
        raise InputProblem(p, "no such file", "check the name" + _close_match(p))
    suffix = p.suffix.lower()
    if suffix not in WORKBOOK_SUFFIXES:
        if suffix in _OTHER_FORMATS:
            problem = f"is {_OTHER_FORMATS[suffix]}"
        elif p.suffix:
            problem = f"is not an .xlsx workbook (the name ends in '{p.suffix}')"
        else:
            problem = "is not an .xlsx workbook (the name has no extension)"
        raise InputProblem(p, problem, "xlglmm reads .xlsx workbooks: open it in Excel or "
                                       "Calc and save it as an Excel workbook (.xlsx)")
    try:
        with open(p, "rb"):
            pass
    except PermissionError:
        raise InputProblem(p, "cannot be read (permission denied)",
                           "check the file's permissions, or copy it somewhere you "
                           "can read it") from None
    except OSError as e:
        raise InputProblem(p, f"cannot be read ({e.strerror or e})",
                           "check the path") from None
    if not zipfile.is_zipfile(p):
        raise InputProblem(p, "is not an .xlsx workbook (the file is not a zip package: "
                              "empty, damaged, or another format renamed)",
                           "open it in Excel or Calc and save it as an Excel workbook "
                           "(.xlsx)")
    return p


# ---- writing --------------------------------------------------------------------------------

def _lock_files(p: Path) -> list:
    """Lock files Excel (``~$name``) and LibreOffice (``.~lock.name#``) keep beside an
    open workbook."""
    found = []
    for name, program in ((f"~${p.name}", "Excel"), (f".~lock.{p.name}#", "LibreOffice")):
        if (p.parent / name).exists():
            found.append((program, name))
    return found


def is_read_only(p: Path) -> bool:
    """No write permission for us, or no write bit at all (root may write anything:
    a file marked read-only stays read-only for xlglmm; on Windows the read-only
    attribute clears the write bits of ``st_mode``)."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return not os.access(p, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _read_only_remedy() -> str:
    if is_windows():
        return ("it is not replaced: clear its read-only attribute (Properties) or give "
                "another -o file")
    return "it is not replaced: make it writable (chmod u+w) or give another -o file"


def _probe_folder(p: Path, folder: Path) -> None:
    """Create and delete a file in ``folder`` (where ``p`` goes): the only test that
    is right for ACLs, read-only mounts and root alike."""
    probe = folder / f".xlglmm-write-test.{os.getpid()}"
    try:
        with open(probe, "xb"):
            pass
    except FileExistsError:
        pass
    except OSError as e:
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
        raise OutputProblem(p, f"cannot write in the folder {folder} ({why})",
                            "choose another folder") from None
    try:
        probe.unlink()
    except OSError:
        pass


def _check_replaceable(p: Path) -> None:
    """An existing ``p`` may be replaced: not read-only, not open in Excel/Calc."""
    if is_read_only(p):
        raise OutputProblem(p, "is read-only", _read_only_remedy())
    for program, name in _lock_files(p):
        raise OutputProblem(p, f"is open in {program} (its lock file {name} is beside it)",
                            f"close it in {program} and run again (if {program} is not "
                            f"running, delete {name})")
    if is_windows():
        # a workbook open in Excel is locked against writing
        try:
            with open(p, "r+b"):
                pass
        except PermissionError:
            raise OutputProblem(p, "is open in another program (Excel?) or locked",
                                "close it and run again") from None
        except OSError:
            pass


def check_output(path, *, suffix: str = ".xlsx", what: str = "an .xlsx workbook",
                 example: str = "result") -> Path:
    """``path`` can be written: its name ends in ``suffix``, its folder exists and
    is writable, and an existing file there is neither read-only nor open in Excel
    or LibreOffice.  Else :class:`OutputProblem`."""
    p = Path(path)
    if p.is_dir():
        raise OutputProblem(p, "is a folder", f"give a file name, e.g. {p / (example + suffix)}")
    if p.suffix.lower() != suffix:
        got = f"'{p.suffix}'" if p.suffix else "no extension"
        raise OutputProblem(p, f"the name ends in {got}, but the file written is {what}",
                            f"give a name ending in {suffix}")
    folder = p.parent
    if not folder.exists():
        raise OutputProblem(p, f"the folder {folder} does not exist",
                            "create it first or choose another folder")
    if not folder.is_dir():
        raise OutputProblem(p, f"{folder} is a file, not a folder", "choose another path")
    _probe_folder(p, folder)
    if p.exists():
        _check_replaceable(p)
    return p


def _write_failed(p: Path, e: OSError) -> OutputProblem:
    if isinstance(e, PermissionError):
        if is_windows():
            return OutputProblem(p, "cannot be written (permission denied: open in Excel "
                                    "or another program, or read-only)",
                                 "close it and run again, or give another -o file")
        return OutputProblem(p, "cannot be written (permission denied)",
                             "check the permissions of the file and its folder")
    return OutputProblem(p, f"cannot be written ({e.strerror or e})",
                         "check the disk and the path")


def _flush_to_disk(path: Path) -> None:
    """The complete file is on the disk before it replaces anything (a crash or power
    cut after the rename must not leave an empty workbook)."""
    try:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except OSError:
        pass


def _remove_leftovers(p: Path) -> None:
    """Delete the temporary files of earlier writes of ``p`` whose process is gone
    (one killed while it wrote: ``.<name>.<pid>.<k>.tmp``).  POSIX only: there a
    signal 0 asks whether a process exists; on Windows os.kill would end it."""
    if is_windows():
        return
    head = f".{p.name}."
    try:
        entries = list(p.parent.iterdir())
    except OSError:
        return
    for f in entries:
        rest = f.name[len(head):-len(".tmp")] if (
            f.name.startswith(head) and f.name.endswith(".tmp")) else ""
        pid, _, k = rest.partition(".")
        if not (pid.isdigit() and k.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue                    # its writer is still running
        except ProcessLookupError:
            pass
        except OSError:
            continue                    # someone else's process: leave it
        try:
            f.unlink()
        except OSError:
            pass


def write_atomically(path, writer) -> None:
    """``writer(tmp)`` writes the file at a temporary path beside ``path``; it then
    replaces ``path`` in one step (``os.replace``), after checking once more that an
    existing ``path`` may be replaced.  The temporary file never outlives the call.
    An existing file's permission bits are kept; a new file gets the usual ones
    (the umask)."""
    p = Path(path)
    folder = p.parent
    _remove_leftovers(p)
    tmp = None
    for k in range(100):
        cand = folder / f".{p.name}.{os.getpid()}.{k}.tmp"
        try:
            with open(cand, "xb"):
                pass
            tmp = cand
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise _write_failed(p, e) from None
    if tmp is None:
        raise OutputProblem(folder, "too many leftover temporary files (.*.tmp)",
                            "delete them and run again")
    try:
        writer(tmp)
        _flush_to_disk(tmp)
        if p.exists():
            _check_replaceable(p)
            try:
                shutil.copymode(p, tmp)
            except OSError:
                pass
        os.replace(tmp, p)
    except OSError as e:
        raise _write_failed(p, e) from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
