"""One rule for numbers written as text (xlglmm.numfmt), checked against what R
prints: format.pval(p, digits = 3), format(x, digits = 4)."""
import pytest

from xlglmm import numfmt


@pytest.mark.parametrize("p,text", [
    (0.03100, "0.031"), (0.000401785, "0.000402"), (1.6648e-09, "1.66e-09"),
    (1.2e-98, "< 2e-16"), (0.0, "< 2e-16"), (2.3e-16, "2.3e-16"), (0.5, "0.5"),
    (1.0, "1"), (0.98765, "0.988"), (1.2e-5, "1.2e-05"), (float("nan"), "NaN"),
])
def test_pvalues_as_format_pval(p, text):
    assert numfmt.pvalue(p) == text


@pytest.mark.parametrize("x,text", [
    (715.5126, "715.5"), (0.194936, "0.1949"), (-3.5701, "-3.57"), (2.4e-05, "2.4e-05"),
    (156.0, "156"), (123456.7, "123457"), (1234567.8, "1234568"), (0.0001234, "0.0001234"),
    (-0.42049, "-0.4205"), (0.0, "0"), (True, "TRUE"),
])
def test_numbers_as_format_digits_4(x, text):
    assert numfmt.number(x) == text


def test_statistics_two_decimals():
    assert numfmt.statistic(-2.1573) == "-2.16"
    assert numfmt.statistic(444.378511) == "444.38"
    assert numfmt.statistic(49.6106) == "49.61"
    assert numfmt.statistic(28.0) == "28.00"


def test_shorten_says_it_cut():
    assert numfmt.shorten("2. + observation-level random effect", 20) == "2. + observation-le\u2026"
    assert numfmt.shorten("short", 20) == "short"


def test_shorten_is_the_cut_of_its_three_callers_each_as_it_was():
    """numfmt's own cut drops the spaces before "…"; the #GLMM! message in a cell drops
    them before "..."; recalc's reasons keep them before "..." (their cuts before they
    shared numfmt.shorten)."""
    text = "abc  defgh"
    assert numfmt.shorten(text, 6) == "abc\u2026"
    assert numfmt.shorten(text, 8, ellipsis="...") == "abc..."
    assert numfmt.shorten(text, 8, ellipsis="...", strip=False) == "abc  ..."
    assert numfmt.shorten(text, 10, ellipsis="...", strip=False) == text
    from xlglmm.sheet import udfs
    assert udfs.error("x" * 400) == "#GLMM! " + "x" * 280 + "..."
    assert len(udfs.error("x" * 400)) == udfs.MAX_MESSAGE
    assert udfs.error("word " * 100) == ("#GLMM! " + "word " * 56).rstrip() + "..."


@pytest.mark.parametrize("values,fmt", [
    ([715.5126, 727.8], "0.0"), ([-3.5696, -0.42049], "0.0000"), ([156.0, 160.0, 4], "0"),
    ([251.405, 10.467], "0.00"), ([6.8246, 1.5458], "0.000"), ([2306.289], "0"),
    ([0.0282, 0.6567], "0.0000"), ([2.4e-05, 1e-6], "0.0E+00"),
    ([None, "none", True], "General"), ([0.0, 0.25], "0.00"),
])
def test_excel_column_formats_follow_format_digits_4(values, fmt):
    """A table column's Excel format: the smallest value gets 4 significant digits
    (between 1 and 4 decimals), whole numbers stay whole."""
    assert numfmt.excel_number_format(values) == fmt


def test_excel_pvalue_format_has_the_same_floor():
    """The format's first condition is P_FLOOR, the limit below which pvalue() writes
    '< 2e-16'; two conditions and a default section, as Excel allows."""
    cond, sci, fixed = numfmt.EXCEL_PVALUE.split(";")
    floor = float(cond[2:cond.index("]")])
    assert floor == pytest.approx(numfmt.P_FLOOR, rel=1e-6)
    assert cond.endswith(f'"{numfmt.P_FLOOR_TEXT}"')
    assert (sci, fixed) == ("[<0.001]0.00E+00", "0.000")
    assert numfmt.pvalue(floor * 0.999) == numfmt.P_FLOOR_TEXT != numfmt.pvalue(floor * 1.001)


@pytest.mark.parametrize("values,texts", [        # what R's format(x, digits = 4) prints
    ([-3.56963575875, -0.420491779], ["-3.5696", "-0.4205"]),
    ([0.158702, 0.0337295], ["0.15870", "0.03373"]),
    ([2266.678, 2302.669, -1124.339, 2248.678], ["2267", "2303", "-1124", "2249"]),
    ([-1.63518, -0.66149, -0.11998, 0.55093, 2.00459],
     ["-1.6352", "-0.6615", "-0.1200", "0.5509", "2.0046"]),
    ([2.4e-05, 1e-6], ["2.4e-05", "1.0e-06"]),
    ([0.0, 0.25], ["0.00", "0.25"]),
    ([156.0, 160.0], ["156", "160"]),
])
def test_columns_as_r_formats_them(values, texts):
    assert numfmt.column(values) == texts
