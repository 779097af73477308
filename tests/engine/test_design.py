"""Design matrices: R's contrasts and column names, missing rows, bad data."""
import numpy as np
import pandas as pd
import pytest

import xlglmm
from xlglmm.engine.design import build_design
from xlglmm.engine.family import Family

POIS = Family("poisson")


@pytest.fixture
def d():
    rng = np.random.default_rng(1)
    n = 200
    return pd.DataFrame({"y": rng.poisson(3, n).astype(float),
                         "a": pd.Categorical(rng.choice(list("abcde"), n)),
                         "b": pd.Categorical(rng.integers(1, 5, n).astype(str)),
                         "x": rng.normal(size=n), "g": rng.integers(0, 10, n)})


@pytest.mark.parametrize("rhs,names", [   # names as R's model.matrix prints them
    ("x*a", ["(Intercept)", "x", "ab", "ac", "ad", "ae", "x:ab", "x:ac", "x:ad", "x:ae"]),
    ("a:x", ["(Intercept)", "aa:x", "ab:x", "ac:x", "ad:x", "ae:x"]),
    ("0 + a + b", ["aa", "ab", "ac", "ad", "ae", "b2", "b3", "b4"]),
])
def test_r_column_names(d, rhs, names):
    des = build_design(f"y ~ {rhs} + (1|g)", d, POIS)
    assert des.x_names == names


def test_interaction_of_two_factors_full_dummy_when_no_main_effects(d):
    des = build_design("y ~ a:b + (1|g)", d, POIS)
    # R gives 21 columns (aa:b1 ... ae:b4); the last is collinear with the intercept
    assert des.x_names[:3] == ["(Intercept)", "aa:b1", "ab:b1"]
    assert "rank deficient" in des.messages[0]
    assert len(des.x_names) == 20


def test_factor_level_order(d):
    d = d.copy()
    d["s"] = d["a"].astype(str).map({"a": "zeta", "b": "alpha", "c": "mid", "d": "beta", "e": "q"})
    des = build_design("y ~ s + (1|g)", d, POIS)
    assert des.x_names == ["(Intercept)", "sbeta", "smid", "sq", "szeta"]  # sorted, alpha ref
    d["s"] = pd.Categorical(d["s"], categories=["zeta", "q", "mid", "beta", "alpha"])
    des = build_design("y ~ s + (1|g)", d, POIS)
    assert des.x_names == ["(Intercept)", "sq", "smid", "sbeta", "salpha"]


def test_missing_rows_are_dropped_and_counted(d):
    d = d.copy()
    d.loc[[3, 7], "x"] = np.nan
    d.loc[11, "g"] = None
    d["g"] = d["g"].astype(object)
    d.loc[11, "g"] = None
    res = xlglmm.glmer("y ~ x + (1|g)", d, family="poisson")
    assert res.nobs == 197 and res.n_dropped == 3
    assert list(res.design.dropped_rows) == [3, 7, 11]
    assert any("3 rows with missing values removed" in m for m in res.messages)


def test_collinear_column_dropped_with_message(d):
    d = d.copy()
    d["x2"] = 2 * d["x"]
    des = build_design("y ~ x + x2 + (1|g)", d, POIS)
    assert des.x_names == ["(Intercept)", "x"]
    assert "x2" in des.messages[0]


@pytest.mark.parametrize("family,col,vals,msg", [
    ("poisson", "y", {5: -1.0, 9: -2.0}, "counts must not be negative (rows 6, 10)"),
    ("poisson", "y", {2: 1.5}, "counts must be whole numbers (row 3)"),
    ("binomial", "y", {0: 3.0}, "proportion in [0, 1]"),
    ("gamma", "y", {4: 0.0}, "Gamma response must be positive (row 5)"),
])
def test_bad_responses(d, family, col, vals, msg):
    d = d.copy()
    if family == "binomial":
        d["y"] = (d["y"] > 2).astype(float)
    if family == "gamma":
        d["y"] = d["y"] + 0.5
    for i, v in vals.items():
        d.loc[i, col] = v
    with pytest.raises(xlglmm.DesignError) as e:
        build_design("y ~ x + (1|g)", d, Family(family))
    assert msg in str(e.value)


def test_text_in_numeric_column(d):
    d = d.copy()
    d["x"] = d["x"].astype(object)
    d.loc[4, "x"] = "n/a"
    d.loc[8, "x"] = "#VALUE!"
    with pytest.raises(xlglmm.DesignError, match="x.* is a factor|non-numeric"):
        build_design("y ~ offset(x) + (1|g)", d, POIS)


def test_unknown_column(d):
    with pytest.raises(xlglmm.DesignError, match="column 'nope' is not in the data"):
        build_design("y ~ nope + (1|g)", d, POIS)


def test_binomial_responses(d):
    d = d.copy()
    d["yes"] = np.where(d["y"] > 2, "yes", "no")
    d["ok"] = d["y"] > 2
    d["k"] = np.minimum(d["y"], 4)
    d["n"] = 4.0
    a = build_design("yes ~ x + (1|g)", d, Family("binomial"))
    b = build_design("ok ~ x + (1|g)", d, Family("binomial"))
    assert np.array_equal(a.y, b.y) and a.y.sum() == (d["y"] > 2).sum()
    c = build_design("cbind(k, n - k) ~ x + (1|g)", d, Family("binomial"))
    assert np.allclose(c.y * c.weights, d["k"]) and np.allclose(c.weights, 4)


def test_weights_and_offset_lengths(d):
    with pytest.raises(xlglmm.DesignError, match="offset has 3 values but the data have 200"):
        build_design("y ~ x + (1|g)", d, POIS, offset=[1, 2, 3])
    with pytest.raises(xlglmm.DesignError, match="infinite"), np.errstate(divide="ignore"):
        # log(0) = -inf, on purpose: the design must refuse it
        build_design("y ~ x + (1|g)", d, POIS, offset=np.log(np.r_[0.0, np.ones(199)]))


def test_scale_check_as_lme4s_check_scaleX():
    """lme4 warns 'Some predictor variables are on very different scales' (checkScaleX,
    tol 1000) for these matrices exactly as marked (R 4.2, lme4 1.1-31:
    ``length(attr(lme4:::checkScaleX(X), "msgScaleX")) > 0``)."""
    from xlglmm.engine.design import scales_differ
    k = np.arange(1, 51, dtype=float)
    x, z, one = np.sin(k), np.cos(k), np.ones(50)
    b = (x > 0).astype(float)
    sdx = np.std(x, ddof=1)
    cases = {"x": (np.c_[one, x], False), "x1e4": (np.c_[one, x * 1e4], True),
             "x1em4": (np.c_[one, x * 1e-4], True), "r900": (np.c_[x, z * 900], False),
             "r1100": (np.c_[one, x, z * 1100], True), "bin": (np.c_[one, b], False),
             "year": (np.c_[one, 2000 + k], False),
             "sd1500": (np.c_[one, x * 1500 / sdx], True),
             "sd999": (np.c_[one, x * 999 / sdx], False),
             # beyond R's arithmetic: our logs are taken without overflow
             "1e300": (np.c_[one, x * 1e300], True), "1e-310": (np.c_[one, x * 1e-310], True)}
    assert {n: scales_differ(X) for n, (X, _) in cases.items()} == \
        {n: want for n, (_, want) in cases.items()}


def test_scale_note_reaches_the_block():
    from xlglmm.engine.design import SCALE_WARNING
    k = np.arange(60)
    d = pd.DataFrame({"y": (k % 5).astype(float), "x": np.sin(k) * 1e4,
                      "g": [f"g{i % 6}" for i in k]})
    assert SCALE_WARNING in build_design("y ~ x + (1|g)", d, POIS).messages
    d["x"] = np.sin(k)
    assert SCALE_WARNING not in build_design("y ~ x + (1|g)", d, POIS).messages
