"""The LMM block's fixed effects as lmerTest's summary (issue 14): df and p of t tests
with Satterthwaite's degrees of freedom (tests/data/satterthwaite.json, made by
tests/data/scripts/satterthwaite.R), intervals from t quantiles with those df; the
last argument ddf = "z" keeps the normal approximation."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from refs import DATA, load_frame, manifest
from sheetdata import block_row, column, columns
from xlglmm.sheet import cache, udfs

REFERENCE = json.loads((DATA / "satterthwaite.json").read_text())
SPECS = manifest("models_negbin_lmm.json")
HEAD = ["Fixed effects", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)",
        "CI low 95%", "CI high 95%"]


def lmm_args(name):
    """The LMM call's ranges for a reference model: y, X, groups, x_random."""
    spec = SPECS["sleep_reml" if name == "sleep_intercept" else name]
    df = load_frame(spec)
    if name.startswith("sleep"):
        slope = None if name == "sleep_intercept" else column(df.Days, "Days")
        return (column(df.Reaction, "Reaction"), column(df.Days, "Days"),
                column(df.Subject.astype(str), "Subject"), slope)
    y = "diameter" if name.startswith("penicillin") else "Yield"
    groups = ["plate", "sample"] if name.startswith("penicillin") else ["Batch"]
    return (column(df[y], y), None, columns(df.astype({g: str for g in groups}), groups),
            None)


def notes(block):
    i = next(k for k, r in enumerate(block) if r[0] == "Notes")
    return [r[0] for r in block[i + 1:]]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_df_and_p_are_lmertests(name):
    """df within 5e-4 relative of lmerTest's, p within 0.5% (the engine's tolerances,
    tests/engine/test_satterthwaite.py: the df follow theta along Penicillin's flat
    ridge); the interval is estimate -+ t(df) quantile x SE."""
    cache.clear()
    ref = REFERENCE[name]
    block = udfs.LMM(*lmm_args(name), REML=SPECS.get(name, {}).get("REML", True))
    assert block[0] == HEAD
    for k, term in enumerate(ref["terms"]):
        r = block_row(block, term)
        assert r[1] == pytest.approx(ref["estimate"][k], rel=1e-5)
        assert r[3] == pytest.approx(ref["df"][k], rel=5e-4)
        assert r[4] == pytest.approx(ref["t"][k], rel=1e-4)
        assert r[5] == pytest.approx(ref["p"][k], rel=5e-3)
        q = stats.t.ppf(0.975, r[3])
        assert r[6] == pytest.approx(r[1] - q * r[2], rel=1e-9)
        assert r[7] == pytest.approx(r[1] + q * r[2], rel=1e-9)
    said = notes(block)
    assert any("Satterthwaite" in n for n in said)
    assert not any("normal approximation (z)" in n for n in said)


def test_ddf_z_is_the_normal_approximation_in_the_same_columns():
    cache.clear()
    args = lmm_args("sleep_reml")
    satt, normal = udfs.LMM(*args), udfs.LMM(*args, ddf="Z")
    assert normal[0] == HEAD[:3] + ["df", "z value", "Pr(>|z|)"] + HEAD[6:]
    for term in ("(Intercept)", "Days"):
        s, z = block_row(satt, term), block_row(normal, term)
        assert z[1:3] == s[1:3] and z[4] == s[4] and z[3] is None
        assert z[5] == pytest.approx(2 * stats.norm.sf(abs(z[4])), rel=1e-9)
        assert z[5] < s[5]                                   # t(17) has heavier tails
        half = stats.norm.ppf(0.975) * z[2]
        assert (z[6], z[7]) == (pytest.approx(z[1] - half), pytest.approx(z[1] + half))
    assert any("normal approximation" in n for n in notes(normal))
    # the random effects and the model-fit rows are the same fit's
    start = next(k for k, r in enumerate(satt) if r[0] == "Random effects")
    end = next(k for k, r in enumerate(satt) if r[0] == "Notes")
    assert normal[start:end] == satt[start:end]


def test_alpha_sets_the_t_intervals_level():
    cache.clear()
    block = udfs.LMM(*lmm_args("dyestuff_reml"), alpha=0.1)
    assert block[0][6:8] == ["CI low 90%", "CI high 90%"]
    r = block_row(block, "(Intercept)")
    assert r[7] - r[1] == pytest.approx(stats.t.ppf(0.95, r[3]) * r[2], rel=1e-9)


@pytest.mark.parametrize("bad", ["kenward-roger", 1.0, True, [["z", "z"]], "#N/A"])
def test_a_bad_ddf_is_one_message(bad):
    out = udfs.LMM(*lmm_args("dyestuff_reml"), ddf=bad)
    assert isinstance(out, str) and out.startswith("#GLMM! ddf ")


def test_no_fixed_effects_no_t_tests():
    y = column([1.0, 2, 3, 2, 4, 5, 3, 4, 6, 5, 6, 8], "y")
    g = column(list("aaabbbcccddd"), "g")
    block = udfs.LMM(y, None, g, fit_intercept=False)
    assert block[1][0] == "(none)"
    assert np.isfinite(block_row(block, "logLik")[1])


def test_a_gaussian_link_other_than_identity_is_refused_not_dropped():
    """GLMM(..., "gaussian", "log") was fitted with the identity link, the link
    silently dropped: now one message."""
    import numpy as np
    import pandas as pd
    from xlglmm.sheet import udfs
    from xlglmm.sheet.models import GAUSSIAN_LINK_MESSAGE
    r = np.random.default_rng(1)
    df = pd.DataFrame({"y": np.exp(0.1 * r.normal(size=60) + 1), "x": r.normal(size=60),
                       "g": r.integers(0, 6, 60).astype(str)})
    tab = [list(df.columns)] + df.astype(object).values.tolist()
    assert udfs.GLMM("y ~ x + (1|g)", tab, "gaussian", "log") == "#GLMM! " + GAUSSIAN_LINK_MESSAGE
    assert isinstance(udfs.GLMM("y ~ x + (1|g)", tab, "gaussian"), list)
