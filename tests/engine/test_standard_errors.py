"""Fixed-effect standard errors: the accurate Hessian, lme4's own finite differences
(reproduced), the RX version, and how 'auto' chooses between them."""
import numpy as np
import pytest

from refs import expected, fit, manifest
from xlglmm.engine.covariance import choose_cov
from xlglmm.engine.optimize import deriv12

SPEC = manifest()["cbpp_laplace"]


@pytest.fixture(scope="module")
def cbpp():
    return fit(SPEC)[0]


def test_exact_hessian_is_stable_across_steps(cbpp):
    dev = cbpp.model.devfun
    x = np.r_[cbpp.theta, cbpp.fe_params.to_numpy()]
    f = lambda z: dev.laplace(z[:1], z[1:])
    ses = []
    for d in (1e-2, 1e-3):
        _, H = deriv12(f, x, delta=d)
        ses.append(np.sqrt(np.diag(2 * np.linalg.inv(H)))[1:])
    assert np.allclose(ses[0], ses[1], rtol=1e-4)
    assert np.allclose(cbpp.fe_cov_exact.to_numpy().diagonal() ** 0.5, ses[1], rtol=5e-4)


def test_lme4_standard_errors_are_reproduced(cbpp):
    """lme4's printed SEs come from finite differences of its early-stopped PIRLS;
    the emulation matches them to 0.1%, while the accurate Hessian's SEs are
    0.5-1.3% larger on these 15 herds."""
    exp = np.array(expected("cbpp_laplace")["se"])
    assert cbpp.vcov_method == "Hessian (lme4's finite differences)"
    assert np.allclose(cbpp.fe_bse.to_numpy(), exp, rtol=1e-3)
    exact = np.sqrt(np.diag(cbpp.fe_cov_exact.to_numpy()))
    rel = exact / exp - 1
    assert np.all(rel > 0.004) and np.all(rel < 0.015)


def test_se_methods_selectable():
    ex = fit(SPEC, se_method="hessian")[0]
    rx = fit(SPEC, se_method="rx")[0]
    assert ex.vcov_method == "Hessian" and rx.vcov_method == "RX"
    # README of the references: cbpp intercept SE 0.2279 from RX
    assert rx.fe_bse.iloc[0] == pytest.approx(0.2279, abs=2e-4)
    assert np.allclose(ex.fe_bse, np.sqrt(np.diag(ex.fe_cov_exact)))


def test_auto_falls_back_to_accurate_hessian_when_lme4s_is_off():
    v_exact = np.diag([1.0, 4.0])
    v_rx = np.diag([0.9, 3.9])
    ok = np.diag([1.02, 4.1])
    bad = np.diag([0.7, 4.0])          # an SE 16% off: lme4's procedure failed
    v, label, note = choose_cov("auto", 1, v_exact, ok, v_rx)
    assert v is ok and "lme4" in label and note == ""
    v, label, note = choose_cov("auto", 1, v_exact, bad, v_rx)
    assert v is v_exact and label == "Hessian" and "off by up to 16%" in note
    v, label, note = choose_cov("lme4", 1, v_exact, bad, v_rx)
    assert v is bad
    v, label, note = choose_cov("auto", 0, v_exact, ok, v_rx)
    assert v is v_rx and label == "RX"
    v, label, note = choose_cov("auto", 1, None, None, v_rx)
    assert v is v_rx and "falling back" in note


def test_nagq0_uses_rx_as_lme4():
    res = fit(dict(SPEC, nAGQ=0))[0]
    exp = expected("cbpp_nagq0", extra=True)
    assert res.vcov_method == "RX"
    assert np.allclose(res.fe_bse, exp["se"], rtol=1e-3)


def test_warm_started_finite_differences_agree_and_save_iterations(cbpp):
    """hessian_fd and gradient with first-order warm starts of the mode searches
    give the same numbers as cold ones (the modes are converged either way) in
    fewer PIRLS iterations."""
    from xlglmm.engine.devfun import ModeWarmStarts
    from xlglmm.engine.optimize import gradient, hessian_fd
    dev = cbpp.model.devfun
    x = np.r_[cbpp.theta, cbpp.fe_params.to_numpy()]
    f = lambda z: dev.laplace(z[:1], z[1:])
    runs = []
    for warm in (None, ModeWarmStarts(dev)):
        it0 = dev.pirls_iterations
        fx = f(x)
        center = warm.save() if warm else None
        g, fp, fm, modes = gradient(f, x, values=True, warm=warm, center=center)
        g2, H = hessian_fd(f, x, fx=fx, axis_values=(fp, fm, modes), warm=warm)
        runs.append((g, g2, H, dev.pirls_iterations - it0))
        assert (modes is not None) == (warm is not None)
    (g_a, g2_a, H_a, it_a), (g_b, g2_b, H_b, it_b) = runs
    assert np.allclose(g_a, g_b, rtol=1e-6, atol=1e-8)
    assert np.allclose(g2_a, g_a) and np.allclose(g2_b, g_b)
    assert np.allclose(H_a, H_b, rtol=1e-6, atol=1e-6)
    assert it_b < 0.85 * it_a


def test_fd_hessian_too_large_counts_a_dense_rest_block():
    """'auto' leaves the finite-difference Hessian for RX when k^2 evaluations cost
    too much: many rows, or two large crossed factors (a dense rest block, whose
    Cholesky costs as much as millions of rows) -- but not a nested design with as
    many levels (its rest block's envelope is thin)."""
    import pandas as pd
    from xlglmm.engine.covariance import fd_hessian_too_large
    from xlglmm.engine.design import build_design
    from xlglmm.engine.family import Family
    rng = np.random.default_rng(7)
    n = 20_000
    a = rng.integers(0, 2_000, n)
    df = pd.DataFrame({"y": rng.poisson(2.0, n).astype(float), "x": rng.normal(size=n),
                       "a": a.astype(str), "b": rng.integers(0, 2_000, n).astype(str),
                       "c": (a // 2).astype(str)})          # c: nested, 1,000 levels
    fam = Family("poisson")
    crossed = build_design("y ~ x + (1|a) + (1|b)", df, fam).re_terms
    nested = build_design("y ~ x + (1|a) + (1|c)", df, fam).re_terms
    small = build_design("y ~ x + (1|a) + (1|b)", df.assign(b=df.b.str[:2]), fam).re_terms
    assert fd_hessian_too_large(n, 4, crossed)
    assert not fd_hessian_too_large(n, 4, nested)
    assert not fd_hessian_too_large(n, 4, small)
    assert fd_hessian_too_large(2_000_000, 4, small)        # the rows alone
