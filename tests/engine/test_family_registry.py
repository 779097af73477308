"""Issue 13, a step towards family objects: one family registry (xlglmm/engine/family.py)
answers every family and link word for the Python API and the worksheet functions,
and no module outside it compares family names.

The lists below are the contract: what the API and the sheets accepted before the
registry (fit.NEGBIN_NAMES, family._ALIASES, udfs.FAMILIES/LINKS, GLMM_BINOMIAL's
links), written out so that a change to the registry that drops a word fails here."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from xlglmm.sheet import block, cache, models, udfs
from xlglmm.engine import fit
from xlglmm.engine.family import (FAMILY_SPECS, SHEET_FAMILIES, SHEET_LINKS, Family,
                           estimates_theta, family_spec, make_family)

PACKAGE = Path(__file__).resolve().parents[2] / "xlglmm"

# ---- the contract: the words accepted before the registry ------------------------------
# Python API (family._ALIASES and the canonical names): word -> canonical family
API_FAMILIES = {
    "poisson": "poisson", "binomial": "binomial", "gamma": "gamma",
    "gaussian": "gaussian", "negbin": "negbin",
    "negative_binomial": "negbin", "negativebinomial": "negbin", "nb": "negbin",
    "nb2": "negbin", "normal": "gaussian", "bernoulli": "binomial",
    # issue 17's families (the exact Laplace only)
    "nb1": "nb1", "negbin1": "nb1", "negative_binomial1": "nb1", "nbinom1": "nb1",
    "beta": "beta", "betabinomial": "betabinomial", "beta_binomial": "betabinomial",
    "betabinom": "betabinomial",
}
# fit.NEGBIN_NAMES: the names for which glmer estimates theta
NEGBIN_NAMES = ("negbin", "nb", "nb2", "negative_binomial", "negativebinomial")
# family -> (default link, allowed links)
LINKS_OF = {
    "poisson": ("log", ("log", "identity", "sqrt")),
    "binomial": ("logit", ("logit", "probit", "cloglog", "log")),
    "gamma": ("inverse", ("inverse", "log", "identity")),
    "gaussian": ("identity", ("identity", "log", "inverse")),
    "negbin": ("log", ("log", "identity", "sqrt")),
    "nb1": ("log", ("log",)),
    "beta": ("logit", ("logit", "probit", "cloglog")),
    "betabinomial": ("logit", ("logit", "probit", "cloglog")),
}
ALL_LINKS = ("log", "logit", "probit", "cloglog", "inverse", "identity", "sqrt")
# udfs.FAMILIES / udfs.LINKS, in the order the sheet messages list them
OLD_SHEET_FAMILIES = ("poisson", "binomial", "gamma", "negbin", "nb1", "beta", "betabinomial",
                      "gaussian")
OLD_SHEET_LINKS = ("log", "logit", "probit", "cloglog", "inverse", "identity", "sqrt")
OLD_BINOMIAL_LINKS = ("logit", "probit", "cloglog")
# what the code asked of the names before: family -> (has dispersion, NB theta,
# binomial response, whole counts, positive response, fitted by lmer, label name,
# ratio under the log link)
PROPERTIES = {
    "poisson": (False, False, False, True, False, False, "poisson", "IRR"),
    "binomial": (False, False, True, False, False, False, "binomial", "exp(Est)"),
    "gamma": (True, False, False, False, True, False, "Gamma", "exp(Est)"),
    "gaussian": (True, False, False, False, False, True, "gaussian", "exp(Est)"),
    "negbin": (False, True, False, True, False, False, "Negative Binomial(1)", "IRR"),
    "nb1": (False, False, False, True, False, False, "nbinom1", "IRR"),
    "beta": (False, False, False, False, False, False, "beta", "exp(Est)"),
    "betabinomial": (False, False, True, False, False, False, "betabinomial", "exp(Est)"),
}


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _variants(word):
    return {word, word.upper(), word.capitalize()}


# ---- the Python API -----------------------------------------------------------------------

@pytest.mark.parametrize("word", sorted(API_FAMILIES))
def test_every_api_word_maps_to_the_same_family_and_default_link(word):
    name = API_FAMILIES[word]
    for w in _variants(word):
        fam = make_family(w)
        assert (fam.name, fam.link) == (name, LINKS_OF[name][0])
        assert family_spec(w).name == name


def test_the_registry_accepts_no_more_and_no_fewer_names_than_before():
    words = {s.name for s in FAMILY_SPECS} | {a for s in FAMILY_SPECS for a in s.aliases}
    assert words == set(API_FAMILIES)
    for word in ("weibull", "inverse.gaussian", "quasipoisson", "", " poisson"):
        assert family_spec(word) is None
        with pytest.raises(ValueError) as e:
            make_family(word)
        assert str(e.value) == (f"unknown family '{word}' (use one of: beta, betabinomial, "
                                "binomial, gamma, gaussian, nb1, negbin, poisson)")
    with pytest.raises(TypeError) as e:
        make_family(3)
    assert str(e.value) == "family must be a name such as 'poisson' or a Family object"


@pytest.mark.parametrize("name", sorted(LINKS_OF))
def test_links_per_family_as_before(name):
    default, allowed = LINKS_OF[name]
    assert Family(name).link == default
    for link in allowed:
        for lk in _variants(link):
            assert make_family(name, lk).link == link
    for link in set(ALL_LINKS) - set(allowed):
        with pytest.raises(ValueError) as e:
            make_family(name, link)
        assert str(e.value) == (f"link '{link}' is not available for the {name} family "
                                f"(use one of: {', '.join(allowed)})")


def test_glmer_estimates_theta_for_exactly_the_old_negbin_names(monkeypatch):
    for word in API_FAMILIES:
        for w in _variants(word):
            assert estimates_theta(w) is (word in NEGBIN_NAMES), w
    assert estimates_theta(Family("negbin")) is False     # a Family: theta fixed
    assert estimates_theta(None) is False
    # and glmer's dispatch follows it (the NB estimate replaced by a marker)
    monkeypatch.setattr(fit, "_glmer_nb", lambda *a, **k: "estimate theta")
    kw = dict(link=None, offset=None, weights=None, nAGQ=1, groups=None, se_method="auto",
              laplace="exact", time_budget=None, max_evals=10, progress=None)
    for w in ("NB2", "negative_binomial", "negbin"):
        assert fit._glmer("y ~ (1|g)", {}, w, **kw) == "estimate theta"
    with pytest.raises(fit.ModelError) as e:
        fit._glmer("y ~ (1|g)", {}, "weibull", **kw)
    assert str(e.value).startswith("unknown family 'weibull'")
    assert not estimates_theta("nb1")       # NB1's phi is estimated, not an NB2 theta


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_family_properties_answer_what_the_name_tests_did(name):
    disp, theta, binom, counts, positive, gaussian, label, log_ratio = PROPERTIES[name]
    fam = Family(name)
    assert (fam.has_dispersion, fam.has_theta, fam.is_binomial, fam.counts_response,
            fam.positive_response, fam.is_gaussian) == (disp, theta, binom, counts,
                                                        positive, gaussian)
    assert fam.label == f"{label}  ( {fam.link} )"
    for link in LINKS_OF[name][1]:
        expected = {"log": log_ratio, "logit": "OR"}.get(link)
        assert Family(name, link).ratio_name == expected
    # R's mustart, as start.py wrote it per name
    y, w = np.array([0.0, 0.25, 1.0, 3.0]), np.array([1.0, 4.0, 2.0, 1.0])
    old = {"binomial": (w * y + 0.5) / (w + 1.0), "poisson": y + 0.1, "negbin": y + 0.1,
           "gamma": np.maximum(y, 1e-8), "nb1": y + 0.1,
           "betabinomial": (w * y + 0.5) / (w + 1.0),
           "beta": np.clip(y, 1e-4, 1 - 1e-4)}.get(name, y)
    assert np.array_equal(fam.mustart(y, w), old)


def test_ratio_label_of_a_block():
    class R:
        family = Family("negbin", "log")
    assert block.ratio_label(R) == "IRR"
    R.family = Family("binomial", "probit")
    assert block.ratio_label(R) is None


# ---- the worksheet functions ---------------------------------------------------------------

DATA = [["y", "x", "g"], [1, 0.5, "a"], [2, 1.5, "a"], [0, 2.5, "b"], [3, 1.0, "b"]]


def test_sheet_words_are_the_old_lists():
    assert SHEET_FAMILIES == OLD_SHEET_FAMILIES
    assert SHEET_LINKS == OLD_SHEET_LINKS
    assert not hasattr(udfs, "FAMILIES") and not hasattr(udfs, "LINKS")
    for word in OLD_SHEET_FAMILIES:
        for w in _variants(word):
            assert models.family_argument(w) == word
    assert models.family_argument(None) == "poisson"


@pytest.mark.parametrize("word", ["nb", "normal", "bernoulli", "weibull", "NB2"])
def test_sheets_refuse_other_family_words_with_the_old_message(word):
    msg = "#GLMM! family must be one of: poisson, binomial, gamma, negbin, nb1, beta, betabinomial, gaussian"
    assert udfs.GLMM("y ~ x + (1|g)", DATA, word) == msg
    assert udfs.GLMM_RANEF("y ~ x + (1|g)", DATA, word) == msg


def test_sheet_link_messages_unchanged():
    assert udfs.GLMM("y ~ x + (1|g)", DATA, "poisson", "logg") == (
        "#GLMM! link must be one of: log, logit, probit, cloglog, inverse, identity, sqrt")
    assert udfs.GLMM("y ~ x + (1|g)", DATA, "poisson", "logit") == (
        "#GLMM! link 'logit' is not available for the poisson family "
        "(use one of: log, identity, sqrt)")
    y, X, g = [[r[0]] for r in DATA], [[r[1]] for r in DATA], [[r[2]] for r in DATA]
    assert udfs.GLMM_BINOMIAL(y, X, g, link="log") == (
        "#GLMM! link must be one of: logit, probit, cloglog")
    assert udfs.GLMM_RANEF(y, X, g, family="gamma", link="logit") == (
        "#GLMM! link 'logit' is not available for the gamma family "
        "(use one of: inverse, log, identity)")
    assert udfs.GLMM_RANEF(y, X, g, family="poisson", trials=y) == (
        '#GLMM! trials is only for family "binomial"')


def test_sheet_response_checks_follow_the_family():
    y, X, g = [["y"], [1], [2.5], [0], [3]], [[r[1]] for r in DATA], [[r[2]] for r in DATA]
    assert udfs.GLMM_NEGBIN(y, X, g) == (
        "#GLMM! y must hold whole-number counts; row 3 is not")
    y = [["y"], [1], [0], [2], [1]]
    assert udfs.GLMM_BINOMIAL(y, X, g) == (
        "#GLMM! y must be 0 or 1 without trials (row 4); for counts of successes give "
        "the trials argument")


# ---- no family name compared outside family.py --------------------------------------------

FAMILY_WORDS = set(API_FAMILIES) | {"inverse.gaussian", "inverse_gaussian"}


def _strings(node):
    """The string constants a comparison operand is or holds (a tuple/list/set)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def name_comparisons(source: str, filename="<src>") -> list:
    """(line, word) of every family name compared (==, !=, in, not in, is) in the
    source, and of every tuple/list/set literal holding two family names or more
    (a hand-kept list such as NEGBIN_NAMES)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                for s in _strings(operand):
                    if s.lower() in FAMILY_WORDS:
                        found.append((node.lineno, s))
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant)
                     and isinstance(e.value, str) and e.value.lower() in FAMILY_WORDS]
            if len(words) >= 2:
                found.append((node.lineno, ",".join(words)))
    return sorted(set(found))


def test_the_scan_finds_what_it_looks_for():
    src = ('if fam.name == "poisson": pass\n'
           'if family in ("Poisson", "negbin"): pass\n'
           'if "gamma" != f: pass\n'
           'NAMES = ["nb", "nb2"]\n'
           'glmer(f, d, "poisson")\n'
           'steps = [("poisson", 1), ("gamma", 2)]\n')
    assert name_comparisons(src) == [(1, "poisson"), (2, "Poisson"), (2, "Poisson,negbin"),
                                     (2, "negbin"), (3, "gamma"), (4, "nb,nb2")]


def test_no_family_name_compared_outside_the_registry():
    files = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "family.py")
    assert len(files) > 15
    hits = {str(p.relative_to(PACKAGE)): name_comparisons(p.read_text(encoding="utf-8"),
                                                          str(p))
            for p in files}
    assert {k: v for k, v in hits.items() if v} == {}


# ---- the kernels receive the family as data, not as a threaded scalar -----------------------

FAMILY_SCALARS = {"nb_theta", "nbt", "theta_nb"}


def _is_njit(decorator) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in ("njit", "jit")


def kernel_family_parameters(source: str, filename="<src>") -> list:
    """(line, function, parameter) of every Numba-compiled function taking a family
    parameter as its own argument (such as ``nb_theta``) instead of reading it from
    the ``FamilyData`` it is given."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.FunctionDef) and any(map(_is_njit, node.decorator_list)):
            for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                if a.arg in FAMILY_SCALARS:
                    found.append((node.lineno, node.name, a.arg))
    return found


def test_the_kernel_scan_finds_what_it_looks_for():
    src = ('@njit(cache=True)\ndef variance(mu, fam, nb_theta): pass\n'
           '@numba.njit\ndef f(y, nbt=1.0): pass\n'
           'def python_side(nb_theta): pass\n'
           '@njit\ndef g(fd): pass\n')
    assert kernel_family_parameters(src) == [(2, "variance", "nb_theta"), (4, "f", "nbt")]


def test_no_kernel_takes_a_family_parameter_of_its_own():
    files = sorted(PACKAGE.rglob("*.py"))
    hits = {str(p.relative_to(PACKAGE)): kernel_family_parameters(
        p.read_text(encoding="utf-8"), str(p)) for p in files}
    assert sum("@njit" in p.read_text(encoding="utf-8") for p in files) >= 2
    assert {k: v for k, v in hits.items() if v} == {}


@pytest.mark.parametrize("name,y,w,bad,start", [
    ("poisson", [1, -2, 3], [1, 1, 1], [1], "counts must not be negative"),
    ("negbin", [1, 2.5, 3], [1, 1, 1], [1], "counts must be whole numbers"),
    ("binomial", [0.5, 1.2, 0], [2, 1, 1], [1], "binomial response must be a proportion"),
    ("binomial", [0.5, 0.3, 1], [2, 2, 1], [1], "successes (proportion x trials)"),
    ("gamma", [0.5, 0.0, -1], [1, 1, 1], [1, 2], "Gamma response must be positive"),
    ("gaussian", [-5.0, 0.0, 3.5], [1, 1, 1], None, None)])
def test_the_family_says_which_responses_it_takes(name, y, w, bad, start):
    problem = Family(name).response_problem(np.array(y, float), np.array(w, float))
    if bad is None:
        assert problem is None
        return
    mask, message = problem
    assert list(np.flatnonzero(mask)) == bad
    assert message.startswith(start) and "({rows})" in message
    good = {"gamma": [0.5, 1.0, 2.0], "binomial": [0.0, 0.5, 1.0]}.get(name, [0.0, 1.0, 2.0])
    assert Family(name).response_problem(np.array(good), np.full(3, 2.0)) is None


def test_every_extra_parameter_says_how_it_is_estimated():
    """A family with a parameter besides the linear predictor (NB theta, a dispersion)
    names it and how the fit estimates it, pointing at the module that does it."""
    import re
    from xlglmm.engine.family import FAMILY_SPECS
    for spec in FAMILY_SPECS:
        assert bool(spec.parameters) == (spec.has_theta or spec.has_dispersion
                                         or bool(spec.phi_name)), spec.name
        for name, how in spec.parameters:
            for module in re.findall(r"engine/(\w+)\.py", how):
                assert (PACKAGE / "engine" / f"{module}.py").is_file(), (spec.name, module)
    assert Family("negbin").parameters[0][0] == "theta"
    assert Family("poisson").parameters == ()


# ---- the loops ask the family: no family code or parameter outside its module -------------

FAMILY_KNOWLEDGE = {"POISSON", "BINOMIAL", "GAMMA", "GAUSSIAN", "NEGBIN", "NB_THETA",
                    "DISPERSION"}


def family_knowledge_used(source: str, filename="<src>") -> list:
    """(line, name) of every family code or family parameter index a module names
    (imported, read, or read as an attribute): what a module that only loops over
    rows and asks the family's kernels has no use for."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if a.name in FAMILY_KNOWLEDGE]
        elif isinstance(node, ast.Name) and node.id in FAMILY_KNOWLEDGE:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in FAMILY_KNOWLEDGE:
            found.append((node.lineno, node.attr))
    return sorted(set(found))


def test_the_family_knowledge_scan_finds_what_it_looks_for():
    src = ('from .family import GAMMA, linkinv\n'
           'if fd.family == family.NEGBIN: t = fd.params[NB_THETA]\n'
           'gamma = fd.params[1]\n')
    assert family_knowledge_used(src) == [(1, "GAMMA"), (2, "NB_THETA"), (2, "NEGBIN")]


@pytest.mark.parametrize("module", ["pirls.py", "linalg.py", "devfun.py"])
def test_the_row_loops_ask_the_family_instead_of_knowing_it(module):
    """PIRLS's weights (Fisher's and the observed information), the blocked factor
    and the deviance functions call the family's kernels; none branches on a family
    code or reads a family parameter itself (a new family touches family.py only)."""
    path = PACKAGE / "engine" / module
    assert family_knowledge_used(path.read_text(encoding="utf-8"), str(path)) == []
