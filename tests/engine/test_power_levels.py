"""A power analysis's design along a grouping factor (issue 19, ``power.design_point``):
fewer or more levels than the fit's keep its mix of levels (the workplace data list
their 10 trained plants first), all of them are the fit's design itself, and too few
to identify the effects is a PowerError that says so."""
from __future__ import annotations

import numpy as np
import pytest

from refs import fit, manifest
from xlglmm.engine.bootstrap import case_plan
from xlglmm.engine.power import PowerError, design_point, spread_order

MODELS = manifest()


@pytest.fixture(scope="module")
def design():
    """The workplace model's design: 20 plants (P01-P10 trained) x 8 months."""
    return fit(MODELS["safety_crossed"])[0].model.design


def trained_share(d) -> dict:
    """plant level -> its training value (constant within a plant)."""
    t = next(t for t in d.re_terms if t.group == "plant")
    col = d.x_names.index("training")
    return {t.levels[k]: float(d.X[t.codes == k, col][0]) for k in range(t.nlevels)}


def test_the_levels_interleave_the_trained_and_untrained_plants(design):
    rows_of = case_plan(design, "plant").rows_of
    order = spread_order(design, rows_of)
    assert order == [j for pair in zip(range(10), range(10, 20)) for j in pair]


@pytest.mark.parametrize("n, trained", [(2, 1), (10, 5), (11, 6), (30, 15), (40, 20)])
def test_fewer_or_more_plants_keep_half_trained(design, n, trained):
    d = design_point(design, {"plant": n}, None)
    share = trained_share(d)
    assert len(share) == n and d.nobs == 8 * n
    assert sum(share.values()) == trained
    month = next(t for t in d.re_terms if t.group == "month")
    assert month.nlevels == 8                       # crossed: months keep their levels


def test_all_the_plants_are_the_design_itself(design):
    d = design_point(design, {"plant": 20}, None)
    for a in ("y", "X", "offset", "weights"):
        np.testing.assert_array_equal(getattr(d, a), getattr(design, a))
    for t, u in zip(d.re_terms, design.re_terms):
        np.testing.assert_array_equal(t.codes, u.codes)
        assert t.levels == u.levels


def test_too_few_levels_say_so(design):
    with pytest.raises(PowerError, match=r"^1 level of 'plant' does not identify every "
                                         r"fixed effect .*: use more levels$"):
        design_point(design, {"plant": 1}, None)
