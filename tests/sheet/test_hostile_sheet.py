"""Issue 18, sheet-function part: GLMM_COMPARE reading edited fit blocks, blank rows in
GLMM_PREDICT's new rows, and no cell text longer than Excel's 32,767 characters."""
from __future__ import annotations

import math

import pytest

from hostile_cases import G, H, X, Y, col, cols, table
from xlglmm.sheet import block, udfs

# a data set whose group effects are not zero (the shared Y gives a singular fit, where
# every group's prediction is the population one and a misplaced label would not show)
YG = [1, 2, 1, 5, 6, 7, 10, 12, 11, 0, 1, 0]


# ---- GLMM_COMPARE: the numbers it reads from the blocks ----------------------------------

@pytest.fixture(scope="module")
def blocks():
    return (udfs.GLMM_POISSON(col(Y), col(X), col(G)), udfs.GLMM_POISSON(col(Y), None, col(G)))


def edited(blk, label, value):
    out = [list(r) for r in blk]
    for r in out:
        if r and r[0] == label:
            r[1] = value
    return out


def invalid(label):
    return (f"#GLMM! model1's {label} row does not hold a valid number: pass the fit "
            "block unchanged")


AIC_DISAGREES = ("#GLMM! model1's logLik, npar and AIC rows do not agree "
                 "(AIC = 2*npar - 2*logLik): pass the fit block unchanged")
BIC_DISAGREES = ("#GLMM! model1's logLik, npar, nobs and BIC rows do not agree "
                 "(BIC = npar*ln(nobs) - 2*logLik): pass the fit block unchanged")


def test_compare_of_unedited_blocks_is_unchanged(blocks):
    out = udfs.GLMM_COMPARE(*blocks)
    assert out[1] == ["model 2", 2, 50.0059620205, 50.97577532, -23.0029810102,
                      46.0059620205, None, None, None]
    assert out[2] == ["model 1", 3, 45.5227105713, 46.9774305207, -19.7613552856,
                      39.5227105713, 6.4832514492, 1, 0.0108895605297]


def test_npar_1e300_is_one_clear_message(blocks):
    """Issue 18, item 10: was '#GLMM! internal error (TypeError): ufunc 'chdtrc' ...'."""
    assert udfs.GLMM_COMPARE(edited(blocks[0], "npar", 1e300), blocks[1]) == invalid("npar")


HOSTILE = [1e300, -1e300, 1e16, 2.0**53, 1e9, -1.0, 2.5, 0.0, 7.0, math.nan, math.inf,
           -math.inf, "text", "1e300", "", None, True, "#N/A", " 3 "]


@pytest.mark.parametrize("label", ["npar", "nobs", "logLik", "AIC", "BIC"])
def test_every_edit_of_a_number_compare_reads_is_refused(blocks, label):
    """Huge, negative, fractional, NaN-like and text values in each number the test
    depends on: one of three exact messages, never a block computed from them."""
    for v in HOSTILE:
        out = udfs.GLMM_COMPARE(edited(blocks[0], label, v), blocks[1])
        blank_ok = label in ("AIC", "BIC") and (v in ("", None) or v != v)
        if blank_ok:        # a blank AIC/BIC (a fit whose criterion is not finite) is read
            assert isinstance(out, list), (label, v, out)
            continue
        assert out in (invalid(label), AIC_DISAGREES, BIC_DISAGREES), (label, v, out)
        # the counts have a range: whole numbers from 1 to 2**31 - 1
        if label in ("npar", "nobs") and isinstance(v, float) and not (
                math.isfinite(v) and 1 <= v <= 2**31 - 1 and v.is_integer()):
            assert out == invalid(label), (label, v, out)
    # the same from the second block
    out = udfs.GLMM_COMPARE(blocks[0], edited(blocks[1], label, 1e300))
    assert out.startswith("#GLMM! model2's "), out


def test_which_rows_disagree(blocks):
    assert udfs.GLMM_COMPARE(edited(blocks[0], "logLik", -5.0), blocks[1]) == AIC_DISAGREES
    assert udfs.GLMM_COMPARE(edited(blocks[0], "nobs", 13.0), blocks[1]) == BIC_DISAGREES
    assert udfs.GLMM_COMPARE(edited(blocks[0], "npar", 7.0), blocks[1]) == AIC_DISAGREES


def test_deviance_df_and_family_edits(blocks):
    """deviance is only shown (for GLMMs it is not -2 logLik): a finite edit shows, a
    non-finite one is refused; df.resid is not read; a family that is not the other's
    is refused."""
    out = udfs.GLMM_COMPARE(edited(blocks[0], "deviance", 1e300), blocks[1])
    assert out[2][5] == 1e300 and out[2][6:] == [6.4832514492, 1, 0.0108895605297]
    assert udfs.GLMM_COMPARE(edited(blocks[0], "deviance", "x"), blocks[1]) == \
        invalid("deviance")
    out = udfs.GLMM_COMPARE(edited(blocks[0], "df.resid", "x"), blocks[1])
    assert out[2][6:] == [6.4832514492, 1, 0.0108895605297]
    assert udfs.GLMM_COMPARE(edited(blocks[0], "family", "binomial (logit)"), blocks[1]) == \
        "#GLMM! the models have different families; compare them by AIC instead"


def test_log_likelihoods_whose_difference_overflows():
    """Blocks without AIC/BIC (not finite in a fit) whose logLiks are each finite but
    twice their difference is not."""
    def fit(ll, k):
        return [["Model fit", "Value"], ["logLik", ll], ["AIC", None], ["BIC", None],
                ["nobs", 12.0], ["npar", k]]
    assert udfs.GLMM_COMPARE(fit(1e308, 3.0), fit(-1e308, 2.0)) == (
        "#GLMM! the models' log-likelihoods are too far apart for a likelihood-ratio test "
        "(their difference overflows)")
    out = udfs.GLMM_COMPARE(fit(-10.0, 3.0), fit(-12.5, 2.0))
    assert out[2][6:] == [5.0, 1, block._round(0.0253473186775)]


# ---- GLMM_PREDICT: blank rows in new_groups and new_X -----------------------------------

def predict(new_X, new_groups, **kw):
    return udfs.GLMM_PREDICT(col(YG), col(X), col(G), new_X, new_groups, **kw)


@pytest.fixture(scope="module")
def per_group():
    """Predictions at x = 1, 2, 3 for groups a, b, c, and for a level not in the fit."""
    got = {}
    for lev in ("a", "b", "c", "zz"):
        got[lev] = [r[0] for r in predict(col([1, 2, 3]), col([lev] * 3))[1:]]
    assert got["a"] != got["zz"] and got["b"] != got["zz"] and got["c"] != got["zz"]
    return got


def test_a_blank_new_groups_row_is_random_effect_zero(per_group):
    """Issue 18, item 13: a blank last row gave 'new_groups has 2 rows but y has 3 data
    rows'; the docs say blank means random effect 0 (the population prediction)."""
    a, b, c, pop = (per_group[k] for k in ("a", "b", "c", "zz"))
    head = ["predicted (response)"]
    assert predict(col([1, 2, 3]), col(["a", "b", None])) == [head, [a[0]], [b[1]], [pop[2]]]
    assert predict(col([1, 2, 3]), col(["a", "b", ""])) == [head, [a[0]], [b[1]], [pop[2]]]
    assert predict(col([1, 2, 3]), col([None, "b", "c"])) == [head, [pop[0]], [b[1]], [c[2]]]
    assert predict(col([1, 2, 3]), col(["a", None, "c"])) == [head, [a[0]], [pop[1]], [c[2]]]
    assert predict(col([1, 2, 3]), col([None, None, None])) == [head] + [[v] for v in pop]
    # with headers over both ranges, and with the header over new_X only
    assert predict(col([1, 2, 3], "x"), col(["a", "b", None], "g")) == \
        [head, [a[0]], [b[1]], [pop[2]]]
    assert predict(col([1, 2, 3], "x"), col(["a", "b", None])) == \
        [head, [a[0]], [b[1]], [pop[2]]]
    # two grouping columns, the second blank in two rows
    two = udfs.GLMM_PREDICT(col(YG), col(X), cols(G, H), col([1, 2]),
                            [["a", "p"], ["b", None]])
    assert len(two) == 3 and all(isinstance(r[0], float) for r in two[1:])


def test_blank_rows_in_new_X(per_group):
    """A blank new_X cell is a missing predictor: that row's prediction is blank, in
    its place -- also in the last row (it used to be dropped and the group labels
    shifted onto the rows above: 'a' became a header)."""
    a, c = per_group["a"], per_group["c"]
    head = ["predicted (response)"]
    assert predict(col([1, None, 3]), col(["a", "b", "c"])) == [head, [a[0]], [None], [c[2]]]
    assert predict(col([1, 2, None]), col(["a", "b", "c"])) == \
        [head, [a[0]], [per_group["b"][1]], [None]]
    # rows blank in every new range below the last value: a whole-column selection
    assert predict(col([1, 2, 3, None, None]), col(["a", "b", "c", None, None])) == \
        [head, [a[0]], [per_group["b"][1]], [c[2]]]


def test_new_rows_of_different_lengths_are_named_as_such():
    assert predict(col([1, 2, 3]), col(["a", "b"])) == (
        "#GLMM! new_groups has 2 rows but new_X has 3 new rows: the ranges must cover the "
        "same rows")
    # one row more is a header only beside new_X's header or when it names the groups
    assert predict(col([1, 2, 3]), col(["a", "b", "c", "d"])) == (
        "#GLMM! new_groups has 4 rows but new_X has 3 new rows: the ranges must cover the "
        "same rows")
    assert predict(col([1, 2, 3]), col(["group1", "b", "c", "d"])) == \
        predict(col([1, 2, 3]), col(["b", "c", "d"]))
    # headers over both, the labels a row short: the header is not a label (it used to
    # be read as a new level, every label a row off and the last row the population's)
    assert predict(col([1, 2, 3, 4], "x"), col(["a", "b", "c"], "group1")) == (
        "#GLMM! new_groups has a header and 3 rows but new_X has 4 new rows: the ranges "
        "must cover the same rows")
    assert predict(col([1, 2], "x"), col(["a"], "group1")) == (
        "#GLMM! new_groups has a header and 1 row but new_X has 2 new rows: the ranges "
        "must cover the same rows")


def test_a_model_without_predictors_predicts_for_new_groups():
    """X blank: the new rows are new_groups' rows (a header naming the groups' column
    is one); new_X is refused rather than ignored."""
    fit = udfs.GLMM_PREDICT(col(YG), None, col(G, "g"), None, col(["a", "d", "zz"]))
    assert len(fit) == 4 and fit[1][0] != fit[3][0] and fit[2][0] != fit[3][0]
    assert udfs.GLMM_PREDICT(col(YG), None, col(G, "g"), None,
                             col(["g", "a", None, "d"])) == [fit[0], fit[1], fit[3], fit[2]]
    assert udfs.GLMM_PREDICT(col(YG), None, col(G), col([1.0]), col(["a"])) == (
        "#GLMM! the model has no predictors (X is blank): leave new_X blank and give the new "
        "rows' group labels in new_groups")


# ---- no cell longer than Excel's 32,767 characters -----------------------------------------

L = block.MAX_CELL_TEXT
LONG_A = ["a" * L, "a" * (L - 1) + "b", "c"] * 4
LONG_B = ["b" * L, "x"] * 6
LONG_TAB = table(y=Y, x=X, a=LONG_A, b=LONG_B)


def longest(blk):
    assert isinstance(blk, list), blk
    return max(len(v) for r in blk for v in r if isinstance(v, str))


def test_labels_longer_than_a_cell_are_cut_with_a_mark():
    """Issue 18, item 14: GLMM_RANEF's level of (1|a:b) was 65,535 characters, GLMM's
    fixed-effect row for a factor level 32,768."""
    ranef = udfs.GLMM_RANEF("y ~ x + (1|a:b)", LONG_TAB)
    assert longest(ranef) == L
    cut = [r[1] for r in ranef[1:] if len(r[1]) == L]
    assert len(cut) == 5 and len(set(cut)) == 5        # the hash keeps them apart
    full = "a" * L + ":" + "b" * L
    mark = f"\u2026 (cut: 65,535 characters, #{__import__('hashlib').sha1(full.encode()).hexdigest()[:8]})"
    assert full[:L - len(mark)] + mark in cut
    for blk in (udfs.GLMM("y ~ a + (1|b)", LONG_TAB), udfs.GLMM("y ~ a:x + (1|b)", LONG_TAB),
                udfs.GLMM_RANEF(col(Y), col(X), cols(LONG_A, LONG_B)),
                udfs.GLMM_POISSON(col(Y), col(X), cols(LONG_A, LONG_B))):
        assert longest(blk) <= L
    fixed = udfs.GLMM("y ~ a + (1|b)", LONG_TAB)
    assert fixed[2][0].startswith("a" * 100) and fixed[2][0].endswith(
        "\u2026 (cut: 32,768 characters, #" + __import__("hashlib").sha1(
            ("a" + "a" * (L - 1) + "b").encode()).hexdigest()[:8] + ")")


def test_cell_text_leaves_shorter_text_alone():
    for s in ("", "x", "a" * L):
        assert block.cell_text(s) is s
    assert block.cell_text(1.5) == 1.5 and block.cell_text(None) is None
    assert len(block.cell_text("\udcff" * (L + 1))) == L     # lone surrogates: no error
