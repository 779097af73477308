"""Calibration of ``xlglmm.power`` (issue 19, "Done means: Correctness"), small and
seeded; the full study is benchmarks/power_calibration.py (its report:
benchmarks/results/2026-11-30-power-calibration.md).

* A balanced cluster-randomised LMM, whose power is known exactly: the REML t-test
  of the treatment with Satterthwaite's df is the t-test on the cluster means
  (checked fit by fit), so the power is a noncentral t's tail
  (``exact_lmm_power``).  2,000 simulations: the exact power lies in their 95%
  Clopper-Pearson interval.
* The workplace-sized Poisson GLMM (20 plants x 8 months, offset), against the
  100,000-simulation reference in tests/data/power_reference.json (made once by
  benchmarks/power_reference.py with another seed): the reference lies in the
  2,000-simulation run's 95% interval widened by 1.96 of the reference's own Monte
  Carlo SEs.
* The type I error of the LMM's test (effect 0, 2,000 simulations): within 4-6% at
  5%, the issue's bound (a test of level exactly 5% stays inside with probability
  0.96: the Monte Carlo SE is 0.49%).  The Poisson and binomial designs' Wald z and
  LRT do not hold 5% this well (the benchmark's report: 6.3-7.9% with 20-30
  clusters), so they are not held to it here.

The seeds were chosen before the runs and differ from the reference's.  A
simulation's numbers depend on its index and the seed only, not on the workers.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import xlglmm
from xlglmm.engine.bootstrap import draw_response
from benchmarks.power_calibration import (LMM_PAIRS, exact_lmm_power, inside, lmm_plan,
                                          load_reference, poisson_plan, quiet)

NSIM = 2000
LMM_EFFECT = 1.0            # exact power 0.489: the widest Monte Carlo interval


def test_the_reml_t_test_is_the_cluster_means_t_test():
    plan = lmm_plan(LMM_EFFECT)
    for seed in (1, 2, 3):
        data = plan.simulate(seed)
        res = xlglmm.lmer("y ~ trt + (1|g)", data)
        assert not res.singular
        row = res.t_tests().loc["trt"]
        means = data.groupby("g").agg(y=("y", "mean"), trt=("trt", "first"))
        t = stats.ttest_ind(means.y[means.trt == 1], means.y[means.trt == 0])
        assert row["df"] == pytest.approx(2 * LMM_PAIRS - 2, rel=1e-4)   # numerical derivatives
        assert row["t"] == pytest.approx(t.statistic, rel=1e-6)
        assert row["p"] == pytest.approx(t.pvalue, rel=1e-5)


def cluster_means_p(plan, y) -> float:
    """The two-sample t-test's p-value on the cluster means of response ``y``."""
    g = np.unique(plan.data["g"].to_numpy(), return_inverse=True)[1]
    means = np.bincount(g, y) / np.bincount(g)
    treated = np.bincount(g, plan.data["trt"].to_numpy()) / np.bincount(g) == 1.0
    return float(stats.ttest_ind(means[treated], means[~treated]).pvalue)


def test_lmm_power_is_the_exact_noncentral_t_power():
    """Each simulation's p-value is the cluster means' t-test on its draw (simulation
    i draws from SeedSequence(seed, spawn_key=(i,)), as power's notes say), and the
    share of rejections contains the exact power in its 95% interval."""
    plan = lmm_plan(LMM_EFFECT)
    seed = 21
    r = xlglmm.power(plan, "trt", test="wald", nsim=NSIM, seed=seed, progress=quiet)
    assert r.n_used == NSIM and r.n_failed == 0
    assert r.n_singular <= 2            # expected 0.1 (P = 4.9e-5 per fit)
    p = np.array([cluster_means_p(plan, draw_response(
        plan.model, plan.beta, plan.theta, plan.sigma,
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))))
        for i in range(NSIM)])
    np.testing.assert_allclose(r.pvalues, p, rtol=1e-3)
    assert np.array_equal(r.rejected, p < 0.05)
    exact = exact_lmm_power(LMM_EFFECT)
    assert 0.45 < exact < 0.53
    lo, hi = r.conf_int()
    assert lo <= exact <= hi, (exact, r.power, lo, hi)


def test_poisson_wald_power_matches_the_100000_simulation_reference():
    ref = load_reference()
    assert ref["nsim"] == 100_000 and ref["seed"] not in (12, 13)
    wald = ref["tests"]["wald"]
    assert wald["used"] + wald["failed"] == 100_000
    r = xlglmm.power(poisson_plan(), "training", test="wald", nsim=NSIM, seed=12,
                     progress=quiet)
    assert r.n_failed <= NSIM // 100
    assert inside(wald["power"], r.conf_int(), 1.96 * wald["mc_se"]), \
        (wald["power"], r.power, r.conf_int())
    assert r.mean_estimate["training"] == pytest.approx(wald["mean_estimate"], abs=0.015)


def test_type_one_error_of_the_lmm_t_test_is_within_4_to_6_percent():
    """Effect 0 on the balanced LMM, whose test has level exactly 5%.  (The Poisson
    design's Wald z and LRT reject 7.9% and 6.5% with 20 plants, 6.0% and 5.5% with
    40: small-sample anti-conservatism of the asymptotic tests, as lme4's, documented
    in the benchmark's report, not asserted here.)"""
    r = xlglmm.power(lmm_plan(0.0), "trt", test="wald", nsim=NSIM, seed=13, progress=quiet)
    assert r.n_used == NSIM and np.all(r.effect == 0.0)
    assert 0.04 <= r.power <= 0.06, r.summary()
