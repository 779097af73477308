"""The parametric bootstrap (issue 14, second part): reproducible by seed whatever
the number of replicates, bootstrap SEs that agree with the fit's, failed refits
counted, a budget, and the family's draws with the right moments."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import fit, manifest
from xlglmm.engine import bootstrap as B
from xlglmm.engine.model import ModelError

MODELS = manifest()


@pytest.fixture(scope="module")
def safety():
    return fit(MODELS["safety_plant_laplace"])[0]


def test_the_same_seed_gives_the_same_replicates_whatever_nsim(safety):
    a = safety.bootstrap(12, seed=7)
    b = safety.bootstrap(5, seed=7)
    c = safety.bootstrap(5, seed=8)
    assert a.replicates.shape == (12, 3) and a.failed == 0
    assert np.array_equal(a.replicates.to_numpy()[:5], b.replicates.to_numpy())
    assert not np.array_equal(c.replicates.to_numpy(), b.replicates.to_numpy())
    assert list(a.replicates.columns) == ["sd_(Intercept)|plant", "(Intercept)", "training"]
    assert a.estimates["training"] == safety.fe_params["training"]


def test_bootstrap_standard_errors_agree_with_the_fits(safety):
    """With 150 replicates an SE is known to ~6% (its Monte Carlo error): the
    fixed effects' bootstrap SEs within 20% of the fit's."""
    b = safety.bootstrap(150, seed=1)
    ratio = b.se[safety.fe_params.index] / safety.fe_bse
    assert np.all(np.abs(ratio - 1.0) < 0.2), ratio
    ci = b.conf_int(0.05)
    basic = b.conf_int(0.05, method="basic")
    est = b.estimates
    assert np.all(ci.lower < ci.upper) and np.all(basic.lower < basic.upper)
    assert np.allclose(basic.lower + ci.upper, 2 * est) and np.allclose(basic.upper + ci.lower, 2 * est)
    t = ci.loc["training"]
    assert t.lower < safety.fe_params["training"] < t.upper


def test_failed_refits_are_counted_not_used(safety, monkeypatch):
    real = type(safety.model).refit
    calls = []

    def flaky(self, y, **kw):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise ModelError("PIRLS failed (simulated)")
        return real(self, y, **kw)
    monkeypatch.setattr(type(safety.model), "refit", flaky)
    b = safety.bootstrap(9, seed=3)
    assert b.failed == 3 and len(b.replicates) == 6
    assert all("simulated" in msg for _, msg in b.failures)


def test_the_budget_stops_the_bootstrap(safety):
    """Seeds are made as replicates run (nsim itself costs nothing), and the budget
    is shared with each refit: the run stops near it, with the replicates done."""
    import time
    t0 = time.perf_counter()
    b = safety.bootstrap(1_000_000, seed=0, time_budget=0.3)
    assert time.perf_counter() - t0 < 2.0
    assert b.stopped_by_budget and 1 <= len(b.replicates) < 1_000_000


def test_any_failure_of_a_replicate_is_counted(safety, monkeypatch):
    """A refit failing with something that is not a ValueError (a division by zero
    in the kernels, say) loses that replicate only; a statistic of the wrong length
    is the caller's error and stops the run."""
    real = type(safety.model).refit
    calls = []

    def broken(self, y, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise ZeroDivisionError("float division by zero")
        return real(self, y, **kw)
    monkeypatch.setattr(type(safety.model), "refit", broken)
    b = safety.bootstrap(4, seed=1)
    assert b.failed == 1 and len(b.replicates) == 3
    assert b.failures[0][0] == 1 and b.failures[0][1].startswith("ZeroDivisionError")
    monkeypatch.setattr(type(safety.model), "refit", real)
    ragged = iter([np.zeros(2), np.zeros(3)])
    with pytest.raises(B.BootstrapError, match="numbers"):
        safety.bootstrap(2, seed=1, statistics=lambda r: pd.Series(next(ragged)))


def test_simulated_responses_are_the_fitted_model(safety):
    """The marginal mean of a simulated count is exp(eta_fixed + theta^2 / 2) (a
    log-normal random intercept on top of the offset and X beta): over 4,000 draws
    the row means agree with it within 4 standard errors, on average over rows."""
    rng = np.random.default_rng(9)
    ys = np.array([B.simulate_response(safety, rng) for _ in range(4000)])
    d = safety.design
    eta = d.offset + d.X @ safety.fe_params.to_numpy()
    expect = np.exp(eta + safety.theta[0] ** 2 / 2)
    ratio = ys.mean(axis=0).sum() / expect.sum()
    se = ys.sum(axis=1).std() / np.sqrt(len(ys)) / expect.sum()
    assert abs(ratio - 1) < 4 * se


def test_what_the_bootstrap_refuses(safety):
    for bad in (0, -1, 2.5, True, 10 ** 30):
        with pytest.raises(B.BootstrapError, match="nsim"):
            safety.bootstrap(bad, seed=1)
    with pytest.raises(B.BootstrapError, match="seed"):
        safety.bootstrap(3, seed=-1)
    for bad in ("1", -1.0, float("nan"), 0):
        with pytest.raises(B.BootstrapError, match="time_budget"):
            safety.bootstrap(3, seed=1, time_budget=bad)
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"y": rng.gamma(2.0, 1.0, 60), "g": np.repeat(list("abcdef"), 10)})
    gam = xlglmm.glmer("y ~ 1 + (1|g)", df, "gamma", link="log")
    with pytest.raises(B.BootstrapError, match="dispersion"):
        gam.bootstrap(3, seed=1)


@pytest.mark.parametrize("family, link, wt", [("poisson", "log", 1.0),
                                              ("binomial", "logit", 7.0)])
def test_the_familys_draws_have_its_moments(family, link, wt):
    """Means and variances of 200,000 draws within 5 standard errors of the exact
    ones (binomial: a proportion of 7 trials)."""
    fam = xlglmm.Family(family, link)
    mu = np.full(200_000, 0.3 if family == "binomial" else 2.5)
    y = fam.simulate(mu, np.full(mu.shape, wt), np.random.default_rng(5))
    var = mu[0] * (1 - mu[0]) / wt if family == "binomial" else mu[0]
    assert abs(y.mean() - mu[0]) < 5 * np.sqrt(var / len(y))
    assert y.var() == pytest.approx(var, rel=0.02)
    if family == "binomial":
        assert np.allclose(y * wt, np.rint(y * wt))
    nb = xlglmm.NegativeBinomial2(3.0)
    z = nb.simulate(np.full(200_000, 2.0), 1.0, np.random.default_rng(6))
    assert z.var() == pytest.approx(2.0 + 4.0 / 3.0, rel=0.03)
