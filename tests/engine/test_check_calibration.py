"""The calibration study of the model checks (benchmarks/check_calibration.py),
small and seeded: on data drawn from the workplace-safety model the dispersion and
zero-inflation p-values of ``res.check`` are uniform, and on NB2 counts (theta = 2)
and on counts with 30% extra zeros they reject.  The full study (200 data sets x 250
refits, 100 of each alternative) is the benchmark,
benchmarks/results/2026-11-30-vm-check-calibration.md; this keeps every revision
honest.

The bounds.  Under the model a calibrated p-value is uniform, so the KS test of
``DATASETS`` of them against U(0, 1) has a p-value below 1e-3 with probability 1e-3
(a little less: the rank p-values lie on a grid of 2 / (REFITS + 1), which makes the
KS test conservative).  The DHARMa p-values without refits, the reason the checks
refit, fail this (KS p ~ 1e-5 for dispersion here; the full study's medians are far
above 1/2), so the bound separates the two.  Power: if a test rejects with
probability 0.95 (the full study measures 100%), the number of rejections among
``POWER`` = 12 data sets is Binomial(12, 0.95), and fewer than 8 (60%) has
probability binom.cdf(7, 12, 0.95) = 2.2e-4; a test with the 5% of no power at all
reaches 8 with probability 3e-8.
"""
from __future__ import annotations

import pytest
from scipy import stats

from benchmarks.check_calibration import (DISPERSION, EXTRA_ZEROS, MODEL, NB2, NO_REFIT,
                                          POWER_TEST, ZEROS, study, summarise,
                                          workplace_truth)

DATASETS = 30
POWER = 10
REFITS = 60          # the smallest two-sided p is 2/61 < 5%: a test can reject
SEED = 15
KS_BOUND = 1e-3
POWER_BOUND = 6      # of POWER


@pytest.fixture(scope="module")
def records():
    return study(workplace_truth(), DATASETS, POWER, REFITS, SEED)


def test_the_bounds_are_what_the_docstring_says():
    assert POWER_BOUND / POWER >= 0.6
    assert stats.binom.cdf(POWER_BOUND - 1, POWER, 0.95) < 1e-4
    assert stats.binom.sf(POWER_BOUND - 1, POWER, 0.05) < 1e-5
    assert 2 / (REFITS + 1) < 0.05


def test_every_data_set_was_fitted_and_checked(records):
    assert len(records) == DATASETS + 2 * POWER
    assert not [r.error for r in records if r.error]
    assert [r.index for r in records if r.kind == MODEL] == list(range(DATASETS))


@pytest.mark.parametrize("test", [DISPERSION, ZEROS])
def test_p_values_are_uniform_under_the_model(records, test):
    s = summarise(records, MODEL, test)
    assert s.missing == 0 and len(s.p) == DATASETS
    assert s.ks_p > KS_BOUND, f"{test}: deciles {s.deciles.round(2)}"


def test_without_refits_the_dispersion_p_values_are_not_uniform(records):
    """The reason the checks refit, kept measured: DHARMa's dispersion test without
    refits finds the data the model was fitted to too good."""
    s = summarise(records, MODEL, NO_REFIT + DISPERSION)
    assert s.ks_p < KS_BOUND and s.deciles[4] > 0.6


@pytest.mark.parametrize("kind", [NB2, EXTRA_ZEROS])
def test_the_checks_catch_nb2_counts_and_extra_zeros(records, kind):
    s = summarise(records, kind, POWER_TEST[kind])
    assert len(s.p) == POWER
    assert s.rejections >= POWER_BOUND, f"{kind}: {s.rejections}/{POWER}"
