"""The same model and data give the same answer on any machine.

Numba compiles for the host CPU, so another machine rounds differently: every
deviance evaluation can differ in its last bits (here ~1e-15 relative, a few
units in the last place of a deviance of 10^2-10^4).  A quantity that amplifies that
noise beyond its tolerance is a bug in the method.  These tests add seeded noise of
that size to every deviance evaluation -- the Laplace and AGQ deviances the
optimizer and the Hessians see, and lme4's early-stopped deviance behind the
default SEs -- and require the results to move by no more than the precision the
rest of the suite assumes (``refs.PRECISION``, used by the template and first-use tests too).

The whole suite is also run with Numba compiling for a generic CPU
(``NUMBA_CPU_NAME=generic`` in .ci/run), which changes the generated code.
"""
from __future__ import annotations

import numpy as np
import pytest

import xlglmm
from refs import PACKAGE_DATA, PRECISION, fit, load_frame, manifest
from xlglmm.engine import devfun

NOISE = 4e-15                    # relative, per evaluation: ~20 ulp


@pytest.fixture
def noisy(monkeypatch):
    """Every deviance evaluation perturbed by NOISE * N(0, 1) of its size, seeded:
    PIRLS results (the Laplace deviance, lmer's profiled deviance), the AGQ
    deviance and lme4's early-stopped deviance; the Laplace deviance's exact
    gradient by NOISE times the deviance's size."""
    rng = np.random.default_rng(20261129)

    def jitter(v, size=None):
        size = abs(v) if size is None else size
        return v + NOISE * size * rng.standard_normal() if np.isfinite(v) else v

    pirls, agq, lme4 = (devfun.GlmmDeviance.pirls, devfun.GlmmDeviance.agq,
                        devfun.GlmmDeviance.lme4_devfun)

    def noisy_pirls(self, *a, **k):
        st = pirls(self, *a, **k)
        st.logdet = jitter(st.logdet, abs(st.aic) + abs(st.pdev) + abs(st.logdet))
        self.state = st
        return st

    def noisy_lme4(self, *a, **k):
        f = lme4(self, *a, **k)

        def g(*args, **kw):
            value, its = f(*args, **kw)
            return jitter(value), its
        return g
    monkeypatch.setattr(devfun.GlmmDeviance, "pirls", noisy_pirls)
    monkeypatch.setattr(devfun.GlmmDeviance, "agq",
                        lambda self, *a, **k: jitter(agq(self, *a, **k)))
    monkeypatch.setattr(devfun.GlmmDeviance, "lme4_devfun", noisy_lme4)
    grad = devfun.GlmmDeviance.laplace_gradient

    def noisy_gradient(self, *a, **k):
        # the exact gradient is a sum over rows of terms up to the deviance's size
        f, g = grad(self, *a, **k)
        if np.isfinite(f):
            g = g + NOISE * abs(f) * rng.standard_normal(len(g))
        return f, g
    monkeypatch.setattr(devfun.GlmmDeviance, "laplace_gradient", noisy_gradient)


GLMMS = manifest()
OTHERS = manifest("models_negbin_lmm.json")
CASES = ["grouse_slope", "grouse_height_brood", "grouse_loc", "safety_crossed",
         "cbpp_laplace", "cbpp_agq25", "gamma_log", "pois_1e3",
         "grouse_nb", "sleep_reml", "penicillin_reml"]


def fit_case(name):
    if name in GLMMS:
        return fit(GLMMS[name])[0]
    spec = OTHERS[name]
    df = load_frame(spec)
    if spec.get("lmm"):
        return xlglmm.lmer(spec["formula"], df, REML=spec["REML"])
    return xlglmm.glmer(spec["formula"], df, spec["family"])


@pytest.fixture(scope="module")
def clean():
    return {name: fit_case(name) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_rounding_noise_does_not_reach_the_results(name, clean, noisy):
    a = clean[name]
    b = fit_case(name)
    assert a.vcov_method == b.vcov_method
    se = a.fe_bse.to_numpy()
    assert np.max(np.abs(b.fe_params.to_numpy() - a.fe_params.to_numpy()) / se) \
        <= PRECISION["estimate_in_se"]
    assert np.max(np.abs(b.fe_bse.to_numpy() / se - 1)) <= PRECISION["se_rel"]
    assert abs(b.llf - a.llf) <= PRECISION["loglik_abs"]
    assert np.max(np.abs(np.asarray(b.theta) - np.asarray(a.theta))) <= PRECISION["theta_abs"]
    if getattr(a, "nb_theta", None) is not None:
        assert b.nb_theta == pytest.approx(a.nb_theta, rel=PRECISION["nb_theta_rel"])


def test_equal_groups_get_equal_cells():
    """Months 1 and 2 of the workplace data have the same BLUP in exact arithmetic;
    computed, they differ in the last bit (so a RANK over them, as the templates'
    caterpillar tables do, would order them by that bit, machine by machine).  The
    blocks show numbers to 12 significant digits: the cells are equal."""
    import pandas as pd
    from xlglmm.sheet import udfs
    df = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", df, "poisson",
                       offset=np.log(df.employees))
    b = res.random_effects["month"]
    assert abs(b.loc["1"] - b.loc["2"]) < 1e-15            # tied, up to rounding
    col = lambda v, h: [[h]] + [[x] for x in v]
    block = udfs.GLMM_RANEF(col(df.incidents, "incidents"), col(df.training, "training"),
                            [["plant", "month"]] + [[p, m] for p, m in zip(df.plant, df.month)],
                            col(np.log(df.employees), "log_employees"))
    months = {r[1]: r[2] for r in block if r[0] == "month"}
    assert months["1"] == months["2"]
    assert months["1"] == pytest.approx(b.loc["1"], rel=1e-11)
