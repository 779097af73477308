"""Where and when a benchmark ran, for the head of its report: date, host, `uname -a`,
CPU model and cores, load, Python and package versions.  A number without these cannot
be compared with another run's."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: a 1-minute load average above this: other work shares the cores
BUSY_LOAD = 0.5


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def is_busy() -> bool:
    """Other work shares the cores now (the 1-minute load average above BUSY_LOAD)."""
    load = load_average().split()[0]
    return load != "unknown" and float(load) > BUSY_LOAD


def busy_lines(busy: bool) -> list[str]:
    """A report's warning that its times are an upper bound (and a blank line), when
    the machine was busy at the start (``is_busy()``); none otherwise."""
    if not busy:
        return []
    return [f"**The machine was busy** (load average above {BUSY_LOAD} at the start: "
            "other processes shared the cores); the times are an upper bound.", ""]


def report_path(kind: str) -> Path:
    """benchmarks/results/<date>-<host>-<kind>.md"""
    host = platform.node() or "host"
    return RESULTS / f"{dt.date.today().isoformat()}-{host}-{kind}.md"


def write_report(text: str, kind: str, out: Path | None = None) -> Path:
    """Write a report (to ``out``, default :func:`report_path`) and print it."""
    out = out or report_path(kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return out


def description(extra_versions: dict | None = None) -> list[str]:
    """Markdown lines describing the machine and the software."""
    import numpy
    import scipy
    import xlglmm
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        uname = platform.platform()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True, cwd=RESULTS.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    versions = {"Python": platform.python_version(),
                "xlglmm": f"{xlglmm.__version__} ({commit})",
                "numpy": numpy.__version__, "scipy": scipy.__version__,
                **(extra_versions or {})}
    return [f"- date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            f"- machine: `{uname}`",
            f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at the start "
            f"{load_average()}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]
