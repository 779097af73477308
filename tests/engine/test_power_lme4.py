"""Power by simulation against lme4 (issue 19): ``xlglmm.power`` on two planned
studies, by the Wald z-test and the likelihood-ratio test, agrees with the plain lme4
loop (simr's ``powerSim`` without simr, which is not installable here: glmer's
default fit on every simulated data set; tests/data/power_lme4.json, 2,000
simulations per design and test, made by tests/data/scripts/power_lme4.R, which runs
benchmarks/power_lme4.R).

The two designs, built here as in the R script:

* Poisson, the workplace-sized study: 20 plants crossed with 8 months, training on
  every other plant, exposure 150 + 10 i for plant i, ``incidents ~ training +
  (1|plant) + (1|month)`` with an offset; (Intercept) -3.5, training log(0.7), SD
  plant 0.4, SD month 0.2 (power about 0.5);
* Bernoulli: 30 groups of 10 rows, treatment on every other group, ``y ~ trt +
  (1|g)``; (Intercept) -0.5, trt 0.8, SD g 0.6 (power about 0.65).

The two sides draw their data with different random number generators, so their
powers are two independent binomial estimates of the same probability p: their
difference has SD sqrt(p (1 - p) (1/n_ours + 1/n_R)), and a difference beyond 2.58
of those SDs (a two-sided 1% test of equal power) is a disagreement, not noise.  The
mean estimate of the effect is held to the same 2.58 SDs of a difference of two
means.  With 1,000 simulations ours and 2,000 lme4's, the power's bound is about
0.05: ours 5 percentage points off lme4's fails.
"""
from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

import xlglmm
from benchmarks.power_calibration import BINOMIAL_LME4_EFFECT, binomial_plan, poisson_plan
from refs import DATA

REF = json.loads((DATA / "power_lme4.json").read_text())
NSIM = 1000
SEED = 2026
#: a two-sided 1% test of "the same power" (or the same mean estimate)
Z = 2.58


#: the designs (benchmarks/power_calibration.py builds them for the calibration too)
PLANS = {"poisson": (poisson_plan, "training"),
         "binomial": (functools.partial(binomial_plan, BINOMIAL_LME4_EFFECT), "trt")}


@pytest.fixture(scope="module")
def plans():
    return {name: make() for name, (make, _) in PLANS.items()}


def test_the_designs_are_the_r_scripts():
    """The tables the R script builds by hand: plant02, plant04, ... trained, their
    exposures; g02, g04, ... treated."""
    p = poisson_plan().data
    assert len(p) == 160 and p["plant"].nunique() == 20 and p["month"].nunique() == 8
    by_plant = p.groupby("plant")[["training", "lexp"]].first()
    assert by_plant["training"].tolist() == [0.0, 1.0] * 10
    assert np.allclose(np.exp(by_plant["lexp"]), 150 + 10 * np.arange(20))
    b = binomial_plan().data
    assert len(b) == 300 and (b.groupby("g").size() == 10).all()
    assert b.groupby("g")["trt"].first().tolist() == [0.0, 1.0] * 15


@pytest.mark.parametrize("design", list(PLANS))
@pytest.mark.parametrize("test", ["wald", "lrt"])
def test_power_agrees_with_the_lme4_loop(plans, design, test):
    ref = REF[f"{design}_{test}"]
    term = PLANS[design][1]
    res = xlglmm.power(plans[design], term, test=test, nsim=NSIM, seed=SEED,
                       progress=lambda *_: None)
    assert ref["nsim"] == 2000 and ref["n_used"] >= 1990      # lme4 lost (almost) none
    assert res.n_failed <= 10 and res.n_used + res.n_failed == NSIM
    p = (res.power * res.n_used + ref["power"] * ref["n_used"]) / (res.n_used + ref["n_used"])
    bound = Z * math.sqrt(p * (1 - p) * (1 / res.n_used + 1 / ref["n_used"]))
    assert abs(res.power - ref["power"]) <= bound, (res.power, ref["power"], bound)
    # the effect's estimates: the same distribution (means within 2.58 SDs of a
    # difference of two means)
    ours = float(res.mean_estimate[term])
    sd = math.sqrt(float(res.sd_estimate[term]) ** 2 / res.n_used
                   + ref["sd_estimate"] ** 2 / ref["n_used"])
    assert abs(ours - ref["mean_estimate"]) <= Z * sd, (ours, ref["mean_estimate"], sd)
