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


# ---- the vectorised paths give what value by value gives ---------------------------------

def _columns():
    rng = np.random.default_rng(7)
    n = 300
    g = rng.integers(0, 12, n)
    text = [f"L{v}" for v in g]
    blanks = list(text)
    blanks[3], blanks[7], blanks[9], blanks[11] = None, "  ", float("nan"), ""
    floats = g * 1.5 - 4.0
    floats[[4, 8]] = np.nan
    return {
        "int": pd.Series(g - 5),
        "float": pd.Series(floats),
        "zero": pd.Series(np.where(g == 0, -0.0, g.astype(float))),
        "inf": pd.Series(np.where(g == 1, np.inf, g.astype(float))),
        "bool": pd.Series(g % 3 == 0),
        "text": pd.Series(text, dtype=object),
        "string": pd.Series(blanks, dtype="string"),
        "blanks": pd.Series(blanks, dtype=object),
        "mixed": pd.Series([3, 3.0] + text[2:], dtype=object),     # value by value
        "all_missing": pd.Series([None] * n, dtype=object),
    }


@pytest.mark.parametrize("name", list(_columns()))
def test_factor_codes_equal_value_by_value(name):
    from xlglmm.engine.design import _codes_by_value, _factor_codes
    col = _columns()[name]
    codes, levels = _factor_codes(col)
    ref_codes, ref_levels = _codes_by_value(col)
    assert levels == ref_levels
    np.testing.assert_array_equal(codes, ref_codes)
    # with the levels of a fit (new data: half of them, the rest -2)
    given = ref_levels[::2]
    codes, levels = _factor_codes(col[::-1].reset_index(drop=True), given)
    ref_codes, _ = _codes_by_value(col[::-1].reset_index(drop=True), given)
    assert levels == given
    np.testing.assert_array_equal(codes, ref_codes)


def test_factor_codes_of_numbers_and_text():
    from xlglmm.engine.design import _factor_codes
    codes, levels = _factor_codes(pd.Series([2.0, np.nan, -1.5, 2.0, 10.0]))
    assert levels == ["-1.5", "2", "10"]               # sorted as numbers, R's labels
    assert codes.tolist() == [1, -1, 0, 1, 2]
    codes, levels = _factor_codes(pd.Series(["b", " ", "a10", None, "a9"], dtype=object))
    assert levels == ["a10", "a9", "b"]                # sorted as text; blank is missing
    assert codes.tolist() == [2, -1, 0, -1, 1]
    cat = pd.Series(pd.Categorical(["x", "y", None], categories=["y", "x", "z"]))
    codes, levels = _factor_codes(cat, ["x", "w", "y"])
    assert codes.tolist() == [0, 2, -1]


def test_group_codes_of_new_data_equal_row_by_row():
    from xlglmm.engine.design import _group_codes, _is_missing_scalar, _level_label
    cols = _columns()
    cat = pd.Series(pd.Categorical(cols["text"].where(cols["int"] % 4 != 1, None)))
    for parts in (["int"], ["float"], ["blanks"], ["mixed"], ["text", "bool"],
                  ["float", "string"]):
        series = [cols[p] for p in parts]
        values = [s.to_numpy(dtype=object) for s in series]
        labels = sorted({":".join(_level_label(v[i]) for v in values)
                         for i in range(len(values[0]))
                         if not any(_is_missing_scalar(v[i]) for v in values)})[::3]
        index = {lab: k for k, lab in enumerate(labels)}
        ref = [-1 if any(_is_missing_scalar(v[i]) for v in values) else
               index.get(":".join(_level_label(v[i]) for v in values), -1)
               for i in range(len(values[0]))]
        np.testing.assert_array_equal(_group_codes(series, labels), ref)
    labels = ["L3", "L5", "L0"]
    ref = [-1 if v is None or v != v else {"L3": 0, "L5": 1, "L0": 2}.get(v, -1)
           for v in cat.astype(object)]
    np.testing.assert_array_equal(_group_codes([cat], labels), ref)


def test_full_rank_shortcut_keeps_what_gram_schmidt_keeps():
    from xlglmm.engine.design import (_clearly_full_rank, _rank_sequential,
                                      column_exponents, full_rank_columns,
                                      scale_by_exponents)
    rng = np.random.default_rng(3)
    n = 500
    x = rng.normal(size=(n, 4))
    cases = {
        "independent": np.column_stack([np.ones(n), x, x[:, 0] * x[:, 1]]),
        "scales": np.column_stack([np.ones(n), x[:, 0] * 1e150, x[:, 1] * 1e-160, x[:, 2]]),
        "near": np.column_stack([np.ones(n), x[:, 0], x[:, 0] + 1e-9 * x[:, 1], x[:, 2]]),
        "duplicate": np.column_stack([np.ones(n), x[:, 0], 2.0 * x[:, 0], x[:, 1]]),
        "moderate": np.column_stack([np.ones(n), x[:, 0], x[:, 0] + 1e-3 * x[:, 1]]),
    }
    for name, X in cases.items():
        big = np.max(np.abs(X), axis=0)
        ref = _rank_sequential(scale_by_exponents(X, column_exponents(big)), 1e-7)
        np.testing.assert_array_equal(full_rank_columns(X), ref, err_msg=name)
    assert _clearly_full_rank(cases["independent"])
    assert _clearly_full_rank(cases["moderate"])    # 1e-3 apart: far from RANK_TOL
    assert not _clearly_full_rank(cases["near"])
    assert not _clearly_full_rank(cases["duplicate"])
    assert not _clearly_full_rank(cases["scales"])  # squared norms out of range: by columns


def test_parse_is_kept_but_each_caller_gets_its_own_lists():
    from xlglmm.engine.formula import parse_formula
    a = parse_formula("y ~ x + (1|g)")
    a.terms.append(("junk",))
    a.random[0].groups.append(("junk",))
    a.random.append("junk")
    b = parse_formula("y ~ x + (1|g)")
    assert len(b.terms) == 1 and len(b.random) == 1 and len(b.random[0].groups) == 1
