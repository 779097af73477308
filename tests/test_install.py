"""The README's install commands work, copied verbatim, as a stranger runs them.

Each command block the README marks (``<!-- install: NAME -->`` before a ```bash
block) runs with bash in a fresh copy of the repository's files, from a shell that
has no virtual environment active and no Numba cache: the quick start (install from
the clone, then ``xlglmm demo``), and building a wheel in the clone and installing it
in an empty folder elsewhere -- what a user does to take xlglmm to another machine.
Both need PyPI for the dependencies (as CI's own install does).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
pytestmark = pytest.mark.install


def readme_block(name: str) -> str:
    m = re.search(rf"<!-- install: {re.escape(name)} -->\s*```(?:bash|sh)\n(.+?)\n```",
                  README, re.S)
    assert m, f"README marks its '{name}' command"
    return m.group(1).strip()


def stranger_env(home: Path) -> dict:
    """The environment of a new terminal: no venv active, no Numba settings, this
    machine's Python on PATH (the interpreter running the tests, outside any venv)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
           and not k.startswith(("NUMBA_", "XLGLMM_", "PYTEST"))}
    venv_bin = str(Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin"))
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    base_bin = str(Path(sys.base_prefix) / "bin")
    env["PATH"] = os.pathsep.join([base_bin] + paths)
    env["HOME"] = str(home)
    pip_cache = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "pip"
    if pip_cache.is_dir():
        env["PIP_CACHE_DIR"] = str(pip_cache)     # downloads shared with this machine
    return env


def copy_of_the_repository(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.nbi", "*.nbc", "build", "dist", "*.egg-info",
        ".pytest_cache", ".hypothesis", "workplace_safety.xlsx"))
    return dest


def bash(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    if shutil.which("bash") is None:
        pytest.skip("the README's commands are bash")
    out = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, f"{command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def check_demo(out: subprocess.CompletedProcess, folder: Path):
    assert "rate ratio 0.657" in out.stdout, out.stdout
    assert (folder / "workplace_safety.xlsx").is_file()


def test_quick_start_from_a_clone(tmp_path):
    clone = copy_of_the_repository(tmp_path / "xlglmm")
    home = tmp_path / "home"
    home.mkdir()
    out = bash(readme_block("demo"), clone, stranger_env(home))
    check_demo(out, clone)


def test_a_wheel_built_in_the_clone_installs_elsewhere(tmp_path):
    clone = copy_of_the_repository(tmp_path / "xlglmm")
    home = tmp_path / "home"
    home.mkdir()
    env = stranger_env(home)
    bash(readme_block("build-wheel"), clone, env)
    wheels = list((clone / "dist").glob("xlglmm-*.whl"))
    assert len(wheels) == 1
    elsewhere = tmp_path / "another machine"
    elsewhere.mkdir()
    shutil.copy2(wheels[0], elsewhere)              # the file a user copies over
    out = bash(readme_block("wheel"), elsewhere, env)
    check_demo(out, elsewhere)
