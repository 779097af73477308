"""The README and docs/ say only what is true of this repository: every link leads to
a file (and heading) that exists, nothing points outside the repository, the
function reference shows the functions' real signatures, and the README stays short."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from xlglmm.sheet import udfs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "xlglmm" / "bridges" / "addin_files" / "INSTALL.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(text.replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_lead_somewhere(page):
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: link to {target}"
        assert ROOT in dest.parents or dest == ROOT, f"{page.name}: {target} leaves the repository"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    # there is no PyPI release: never tell anyone to install it from there
    assert not re.search(r"pip install (-\w+ )*xlglmm(\s|$|`)", text), page.name


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


FUNCTIONS = ["GLMM_POISSON", "GLMM_BINOMIAL", "GLMM", "GLMM_NEGBIN", "LMM", "GLMM_RANEF",
             "GLMM_PREDICT", "GLMM_COMPARE", "GLMM_CHECK", "GLMM_RESID",
             "GLMM_INFLUENCE", "GLMM_POWER"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_reference_shows_the_real_signature(name):
    doc = (ROOT / "docs" / "functions.md").read_text(encoding="utf-8")
    m = re.search(rf"^`={name}\((.*?)\)`", doc, re.M)
    assert m, f"docs/functions.md has no signature line for {name}"
    documented = [a.strip(" []") for a in m.group(1).split(",")]
    assert documented == list(inspect.signature(getattr(udfs, name)).parameters)
    assert name.lower() in anchors(ROOT / "docs" / "functions.md")


DOTTED = re.compile(r"\bxlglmm(?:\.[A-Za-z_]\w*)+")
#: dotted words in the docs that are file names, not Python names
FILE_NAMES = {"xlglmm.conf", "xlglmm.conf.example", "xlglmm.xlam"}


def resolves(dotted: str) -> bool:
    """``xlglmm.a.b.c`` names a module or an attribute reachable from one."""
    import importlib
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        try:
            for name in parts[k:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_names_in_the_docs_exist(page):
    """Every ``xlglmm.x.y`` a page names is importable (a module, or a name in one):
    after the package was laid out in layers, the old flat names must not linger."""
    text = page.read_text(encoding="utf-8")
    names = {m.group(0).rstrip(".") for m in DOTTED.finditer(text)} - FILE_NAMES
    assert sorted(n for n in names if not resolves(n)) == []


def test_the_name_check_sees_an_old_name():
    assert resolves("xlglmm.engine.family.FAMILY_SPECS") and resolves("xlglmm.glmer")
    assert not resolves("xlglmm.family.FAMILY_SPECS") and not resolves("xlglmm.jit.warm_up")
