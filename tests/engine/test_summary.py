"""``summary()``: lme4's layout, the model as fitted on the Formula line, and the
numbers by :mod:`xlglmm.numfmt`'s rule (p-values as format.pval, statistics with 2
decimals, other numbers with 4 significant digits).  The reference values are
lme4's printout of the same models (R 4.x, lme4 1.1)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import PACKAGE_DATA
from xlglmm.engine.results import _spaced



@pytest.fixture(scope="module")
def safety():
    d = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    d["log_employees"] = np.log(d.employees)
    return d


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(PACKAGE_DATA / "sleepstudy.csv")


def lines_after(text: str, title: str, n: int) -> list:
    lines = text.splitlines()
    i = lines.index(title)
    return lines[i + 1:i + 1 + n]


def test_formula_line_shows_groups_and_offset_arguments(safety):
    """groups= and offset= given as arguments were missing from the Formula line."""
    s = xlglmm.glmer("incidents ~ training", safety, groups=["plant", "month"],
                     offset=np.log(safety.employees)).summary()
    assert "Formula: incidents ~ training + (1 | plant) + (1 | month) + " \
           "offset(<values given>)" in s.splitlines()
    s = xlglmm.glmer("incidents ~ training + (1|plant)", safety, groups=["month"],
                     offset="log_employees").summary()
    assert "Formula: incidents ~ training + (1 | plant) + (1 | month) + " \
           "offset(log_employees)" in s.splitlines()


def test_glmm_summary_reads_like_lme4(safety):
    s = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month) + offset(log(employees))",
                     safety).summary()
    lines = s.splitlines()
    assert lines[:3] == [
        "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)",
        " Family: poisson  ( log )",
        "Formula: incidents ~ training + (1 | plant) + (1 | month) + offset(log(employees))"]
    assert lines[4].split() == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    assert lines[5].split() == ["715.5", "727.8", "-353.7", "707.5", "156"]
    # lme4 1.1-31 prints: -1.6352 -0.6615 -0.1200  0.5509  2.0046
    assert lines_after(s, "Scaled residuals:", 2)[1].split() == \
        ["-1.6352", "-0.6615", "-0.1200", "0.5509", "2.0046"]
    assert lines_after(s, "Random effects:", 4) == [
        " Groups Name        Variance Std.Dev.",
        " plant  (Intercept)  0.15870   0.3984",
        " month  (Intercept)  0.03373   0.1837",
        "Number of obs: 160, groups:  plant, 20; month, 8"]
    fixed = lines_after(s, "Fixed effects:", 3)
    assert fixed[0].split() == ["Estimate", "Std.", "Error", "z", "value", "Pr(>|z|)"]
    # lme4: (Intercept)  -3.5696     0.1512 (Estimate and SE formatted together)
    assert fixed[1].split() == ["(Intercept)", "-3.5696", "0.1512", "-23.60", "<", "2e-16"]
    assert fixed[2].split() == ["training", "-0.4205", "0.1949", "-2.16", "0.031"]
    # the reported faults: "z value 28"-style statistics, p-values as 0.0000 / 0.0E+00
    assert "e-123" not in s and "0.0000" not in s and "E+00" not in s


def test_statistics_keep_two_decimals(sleep):
    s = xlglmm.lmer("Reaction ~ Days + (1|Subject)", sleep).summary()
    row = next(ln for ln in s.splitlines() if ln.startswith("Days "))
    assert row.split()[3] == "13.02"            # a whole-looking z keeps its decimals


def test_lmm_summary(sleep):
    s = xlglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep).summary()
    lines = s.splitlines()
    assert lines[:4] == ["Linear mixed model fit by REML",
                         "Formula: Reaction ~ Days + (Days | Subject)", "",
                         "REML criterion at convergence: 1743.6"]
    assert s.count("Formula:") == 1             # was printed twice
    # lme4 1.1-31 prints: -3.9536 -0.4634  0.0231  0.4634  5.1793
    assert lines_after(s, "Scaled residuals:", 2)[1].split() == \
        ["-3.9536", "-0.4634", "0.0231", "0.4634", "5.1793"]
    rand = lines_after(s, "Random effects:", 5)
    assert rand[0].split() == ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    # lme4 1.1-31: 612.10 24.741 / 35.07 5.922 0.07 / 654.94 25.592 (its optimum is
    # a hair from ours: 612.09)
    assert rand[1].split() == ["Subject", "(Intercept)", "612.09", "24.740"]
    assert rand[2].split() == ["Days", "35.07", "5.922", "0.07"]
    assert rand[3].split() == ["Residual", "654.94", "25.592"]     # no "NaN" name
    assert rand[4] == "Number of obs: 180, groups:  Subject, 18"
    fixed = lines_after(s, "Fixed effects:", 3)
    # lme4: 251.405 6.825 / 10.467 1.546 (its t values: 36.838, 6.771)
    assert fixed[1].split() == ["(Intercept)", "251.405", "6.825", "36.84", "<", "2e-16"]
    assert fixed[2].split() == ["Days", "10.467", "1.546", "6.77", "1.27e-11"]
    assert "Note: p-values use the normal approximation" in s
    assert "ICC" not in s                       # random slopes: no single ICC


def test_lmm_ml_summary_with_icc_and_groups_argument(sleep):
    s = xlglmm.lmer("Reaction ~ Days", sleep, REML=False, groups=["Subject"]).summary()
    lines = s.splitlines()
    assert lines[:2] == ["Linear mixed model fit by maximum likelihood",
                         "Formula: Reaction ~ Days + (1 | Subject)"]
    assert lines[3].split() == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    assert "ICC: Subject 0.576" in lines          # 1297 / (1297 + 954.5)


def test_random_slopes_show_the_lower_triangle():
    g = pd.read_csv(PACKAGE_DATA / "grouseticks.csv")
    g["YEAR"] = g["YEAR"].astype(str)
    s = xlglmm.glmer("TICKS ~ YEAR + (1 + YEAR | LOCATION)", g).summary()
    rand = lines_after(s, "Random effects:", 4)
    assert rand[0].split() == ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    assert len(rand[2].split()) == 4 and len(rand[3].split()) == 5
    assert rand[1].startswith(" LOCATION (Intercept)")


@pytest.mark.parametrize("text, spaced", [
    ("y~x+(1|g)", "y ~ x + (1 | g)"),
    ("cbind(s,  f) ~ p + (1 + x || g)", "cbind(s, f) ~ p + (1 + x || g)"),
    ("`a|b` ~ x+(1|`g 2`)", "`a|b` ~ x + (1 | `g 2`)"),
    ("y ~ x - 1 + (0+x|g)", "y ~ x - 1 + (0 + x | g)"),
])
def test_formula_spacing(text, spaced):
    assert _spaced(text) == spaced
