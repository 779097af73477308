"""The workplace-safety case study (seed 000): 20 plants x 8 months, Poisson GLMM
with crossed plant and month intercepts and a log(employees) offset."""
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import xlglmm
from refs import PACKAGE_DATA, expected


@pytest.fixture(scope="module")
def safety():
    return pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")


@pytest.fixture(scope="module")
def crossed(safety):
    return xlglmm.glmer("incidents ~ training", data=safety, family="poisson",
                        groups=["plant", "month"], offset=np.log(safety.employees))


def test_case_study_numbers(crossed):
    r = crossed
    assert r.converged and not r.singular
    assert r.nobs == 160 and r.ngroups == {"plant": 20, "month": 8}
    # the case study prints training -0.4170 (SE 0.1949) from another package; lme4's
    # optimum (and ours) is -0.4205, 1.8% of an SE away: both round to -0.42
    assert r.fe_params["training"] == pytest.approx(-0.417, abs=0.005)
    assert r.fe_params["training"] == pytest.approx(-0.420464, abs=0.01 * 0.194884)
    assert r.fe_bse["training"] == pytest.approx(0.195, abs=5e-4)
    assert np.sqrt(r.variance_components["plant"]) == pytest.approx(0.398, abs=5e-4)
    assert np.sqrt(r.variance_components["month"]) == pytest.approx(0.184, abs=5e-4)
    assert round(r.aic, 1) == 715.5
    assert round(r.bic, 1) == 727.8
    rr = np.exp(r.fe_params["training"])
    assert rr == pytest.approx(0.657, abs=2e-3)          # rate ratio
    assert r.fe_pvalues["training"] == pytest.approx(0.031, abs=2e-3)


def test_groups_argument_equals_formula_terms(safety, crossed):
    via_formula = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", safety,
                               family="poisson", offset=np.log(safety.employees))
    assert via_formula.llf == pytest.approx(crossed.llf, abs=1e-9)
    assert np.allclose(via_formula.fe_params, crossed.fe_params)


def test_offset_as_formula_term(safety, crossed):
    r = xlglmm.glmer("incidents ~ training + offset(log(employees)) + (1|plant) + (1|month)",
                     safety, family="poisson")
    assert r.llf == pytest.approx(crossed.llf, abs=1e-9)


def _brute_force_loglik(df, beta, sd):
    """log of prod_g integral prod_i Poisson(y_i | exp(eta_i + b)) N(b; 0, sd^2) db,
    by adaptive quadrature (scipy), independent of the package's kernels."""
    total = 0.0
    eta = beta[0] + beta[1] * df.training.to_numpy() + np.log(df.employees.to_numpy())
    y = df.incidents.to_numpy()
    for g in df.plant.unique():
        m = (df.plant == g).to_numpy()
        yg, eg = y[m], eta[m]
        # centre the integrand at its mode for numerical stability
        def logf(b):
            return stats.poisson.logpmf(yg, np.exp(eg + b)).sum() + stats.norm.logpdf(b, 0, sd)
        grid = np.linspace(-4, 4, 2001)
        mode = grid[np.argmax([logf(b) for b in grid])]
        c = logf(mode)
        val, _ = integrate.quad(lambda b: np.exp(logf(b) - c), mode - 12 * sd, mode + 12 * sd,
                                points=[mode], limit=200, epsabs=0, epsrel=1e-12)
        total += c + np.log(val)
    return total


def test_agq25_plant_model(safety):
    off = np.log(safety.employees)
    agq = xlglmm.glmer("incidents ~ training + (1|plant)", safety, family="poisson",
                       offset=off, nAGQ=25)
    lap = xlglmm.glmer("incidents ~ training + (1|plant)", safety, family="poisson",
                       offset=off, nAGQ=1)
    exp = expected("safety_plant_agq25")
    # estimates equal lme4's nAGQ = 25
    assert np.allclose(agq.fe_params, list(exp["fixef"].values()), atol=1e-3 * np.array(exp["se"]))
    assert np.allclose(agq.fe_bse, exp["se"], rtol=5e-3)
    assert agq.varcorr.sdcor[0] == pytest.approx(exp["varcorr"][0]["sdcor"], rel=2e-3)
    assert agq.method == "AGQ(25)"
    # our AGQ log-likelihood is the integral itself (constants included)
    brute = _brute_force_loglik(safety, agq.fe_params.to_numpy(), agq.varcorr.sdcor[0])
    assert agq.llf == pytest.approx(brute, abs=0.01)
    assert agq.llf == pytest.approx(-360.7, abs=0.1)
    assert lap.llf == pytest.approx(-360.733068, abs=1e-3)
    assert abs(agq.llf - lap.llf) < 0.05


def test_nagq0_is_below_laplace(safety):
    off = np.log(safety.employees)
    f = "incidents ~ training + (1|plant) + (1|month)"
    fast = xlglmm.glmer(f, safety, family="poisson", offset=off, nAGQ=0)
    full = xlglmm.glmer(f, safety, family="poisson", offset=off, nAGQ=1)
    assert fast.method == "PIRLS (nAGQ=0)"
    # stage 2 maximises the same Laplace likelihood over more freedom
    assert full.llf >= fast.llf - 1e-9
    assert abs(fast.fe_params["training"] - full.fe_params["training"]) < 0.1 * full.fe_bse["training"]


def test_summary_reads_like_lme4(crossed):
    s = crossed.summary()
    assert "Laplace Approximation" in s
    assert "Number of obs: 160, groups:  plant, 20; month, 8" in s
    assert "training" in s and "715.5" in s
