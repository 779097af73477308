"""GLMM_PREDICT's interval and alpha (issue 14): the block they spill equals
``predict(..., interval=...)``, existing calls keep their one column, and bad words
or alphas give one #GLMM! cell."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xlglmm
from xlglmm.sheet import cache, udfs
from refs import PACKAGE_DATA

DF = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
Y = [["incidents"]] + [[v] for v in DF.incidents]
X = [["training"]] + [[v] for v in DF.training]
G = [["plant", "month"]] + [[a, str(b)] for a, b in zip(DF.plant, DF.month)]
OFF = [["log_employees"]] + [[np.log(v)] for v in DF.employees]
NEW_X = [["training"], [1], [0], [1]]
NEW_G = [["plant", "month"], ["NEW", None], ["NEW", None], ["P03", "2"]]
NEW_OFF = [[np.log(200.0)], [np.log(200.0)], [np.log(150.0)]]
LEADING = (Y, X, G, NEW_X, NEW_G, OFF, NEW_OFF, None, None)


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def call(*tail):
    return udfs.GLMM_PREDICT(*LEADING, "response", True, True, 1, "poisson", None, None, *tail)


@pytest.fixture(scope="module")
def res():
    df = DF.assign(month=DF.month.astype(str))
    return xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", df,
                        family="poisson", offset=np.log(df.employees))


@pytest.mark.parametrize("interval, alpha, label", [
    ("confidence", 0.05, "95% CI of the mean"),
    ("prediction", 0.1, "90% prediction interval"),
])
def test_the_block_is_predict_with_the_interval(res, interval, alpha, label):
    out = call(interval, alpha)
    assert out[0] == ["predicted (response)", "SE (link)", f"lower {label}",
                      f"upper {label}"]
    new = pd.DataFrame({"training": [1, 0, 1], "plant": ["NEW", "NEW", "P03"],
                        "month": [None, None, "2"]})
    want = res.predict(new, offset=np.log([200.0, 200.0, 150.0]), interval=interval,
                       level=1 - alpha)
    got = np.array(out[1:], float)
    assert np.allclose(got, want.to_numpy(), rtol=1e-9)


def test_without_an_interval_the_column_is_unchanged():
    plain = udfs.GLMM_PREDICT(*LEADING)
    assert plain == call("none", 0.05) == call(None, None)
    assert plain[0] == ["predicted (response)"] and all(len(r) == 1 for r in plain)


def test_fitted_rows_get_intervals_too(res):
    out = udfs.GLMM_PREDICT(Y, X, G, None, None, OFF, None, None, None, "response", True,
                            True, 1, "poisson", None, None, "prediction")
    assert len(out) == len(DF) + 1
    want = res.predict(interval="prediction")
    assert np.allclose(np.array(out[1:], float), want.to_numpy(), rtol=1e-9)


def test_formula_form_takes_the_interval_in_the_same_places(res):
    data = [list(DF.columns) + ["log_emp"]] + [list(r) + [np.log(r[3])] for r in
                                              DF.itertuples(index=False)]
    new = [["training", "plant", "month", "employees"], [1, "NEW", None, 200]]
    out = udfs.GLMM_PREDICT("incidents ~ training + (1|plant) + (1|month)", data, new,
                            "poisson", None, [[np.log(v)] for v in DF.employees], None,
                            [[np.log(200.0)]], None, "response", True, True, 1, "poisson",
                            None, None, "confidence", 0.05)
    assert out[0][3] == "upper 95% CI of the mean"
    assert out[1][0] == pytest.approx(call("confidence", 0.05)[1][0], rel=1e-9)


@pytest.mark.parametrize("tail, words", [
    (("wide", 0.05), "interval must be one of: none, confidence, prediction"),
    (("confidence", 0), "alpha must be between 0 and 1"),
    (("confidence", 1.5), "alpha must be between 0 and 1"),
    (("prediction", "x"), "alpha must be a number"),
    (("prediction", "#N/A"), "alpha is an Excel error value"),
])
def test_bad_interval_arguments_give_one_message(tail, words):
    out = call(*tail)
    assert isinstance(out, str) and out.startswith("#GLMM! ") and words in out


def test_a_prediction_interval_on_the_link_scale_is_refused():
    out = udfs.GLMM_PREDICT(*LEADING, "link", True, True, 1, "poisson", None, None,
                            "prediction", 0.05)
    assert out.startswith("#GLMM! ") and "response scale" in out


def test_binomial_new_rows_take_their_trials_from_new_trials():
    """cbpp: a new herd's prediction interval of successes out of 20 trials (as a
    proportion), the Python API's with trials=[20]; new_trials elsewhere is refused."""
    cb = pd.read_csv(PACKAGE_DATA / "cbpp.csv")
    y = [["incidence"]] + [[float(v)] for v in cb.incidence]
    x = [["period2"]] + [[float(p == 2)] for p in cb.period]
    g = [["herd"]] + [[str(h)] for h in cb.herd]
    n = [["size"]] + [[float(v)] for v in cb["size"]]
    out = udfs.GLMM_PREDICT(y, x, g, [["period2"], [1.0]], [["herd"], ["NEW"]], None, None,
                            None, None, "response", True, True, 1, "binomial", n, None,
                            "prediction", 0.05, [[20.0]])
    df = pd.DataFrame({"prop": cb.incidence / cb["size"], "period2": (cb.period == 2) * 1.0,
                       "herd": cb.herd.astype(str)})
    res = xlglmm.glmer("prop ~ period2 + (1|herd)", df, family="binomial",
                       weights=cb["size"].to_numpy(float))
    want = res.predict(pd.DataFrame({"period2": [1.0], "herd": ["NEW"]}),
                       interval="prediction", trials=[20])
    assert np.allclose(np.array(out[1], float), want.to_numpy()[0], rtol=1e-6)
    assert out[1][3] * 20 == pytest.approx(round(out[1][3] * 20))      # whole successes
    assert out[1][3] > 1 / 20                   # not a one-trial interval (0 or 1)
    assert call("prediction", 0.05, [[20.0]]) == \
        "#GLMM! new_trials is for binomial models (the new rows' numbers of trials)"


def test_a_blank_new_offset_cell_blanks_the_whole_row():
    out = udfs.GLMM_PREDICT(Y, X, G, NEW_X, NEW_G, OFF, [[np.log(200.0)], [None],
                                                        [np.log(150.0)]], None, None,
                            "response", True, True, 1, "poisson", None, None, "confidence")
    assert out[2] == [None, None, None, None]
    assert all(v is not None for v in out[1] + out[3])


def test_an_alpha_that_leaves_no_level_is_refused():
    assert call("confidence", 1e-300) == \
        "#GLMM! alpha must be between 0 and 1 (e.g. 0.05 for 95% intervals)"
