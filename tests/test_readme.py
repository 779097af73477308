"""The README's commands are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert block, "README must mark its test command"
    cmd = block.group(1).strip()
    assert cmd in ci


def test_the_readme_python_example_prints_what_the_readme_shows():
    """The README's Python example, run as written from the repository's root, prints
    exactly the output the README shows under it."""
    import subprocess
    import sys
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"## In Python\s*```python\n(.+?)\n```\s*```(?:text)?\n(.+?)\n```", readme, re.S)
    assert m, "README's 'In Python' section: a python block, then its output"
    code, shown = m.group(1), m.group(2)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip("\n") == shown.rstrip("\n")
