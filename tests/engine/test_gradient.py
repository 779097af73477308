"""The exact gradient of the Laplace deviance (engine/gradient.py) against a dense
numpy version of the same formula (in matrix form, weights differentiated
numerically) and against central finite differences of ``laplace``, on every
family and link the GLMM fits take and the random-effects structures they meet."""
import numpy as np
import pandas as pd
import pytest

from xlglmm.engine import start
from xlglmm.engine.design import build_design
from xlglmm.engine.devfun import GlmmDeviance
from xlglmm.engine.family import Family, conditional_aic
from xlglmm.engine.gradient import schur_inverse
from dense_laplace import FORMULAS, central_fd, dense_exact_laplace

N = 160
FAMILIES = [("poisson", "log"), ("binomial", "logit"), ("binomial", "probit"),
            ("binomial", "cloglog"), ("gamma", "log"), ("gamma", "inverse"),
            ("negbin", "log")]
# Fisher scoring (probit, cloglog) stops the mode search at a decrement of ~1e-12 of
# the deviance: its values are noisier, their finite differences less accurate
FISHER_ONLY = {("binomial", "probit"), ("binomial", "cloglog")}
def data(fam, link, seed=3):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=N), "x2": rng.normal(size=N),
                       "g": rng.integers(0, 10, N).astype(str),
                       "h": rng.integers(0, 4, N).astype(str),
                       "a": rng.integers(0, 5, N).astype(str),
                       "b": rng.integers(0, 3, N).astype(str)})
    lin = 0.2 + 0.4 * df.x + 0.5 * rng.normal(size=10)[df.g.astype(int)]
    if fam == "poisson":
        y = rng.poisson(np.exp(lin))
    elif fam == "negbin":
        m = np.exp(lin)
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + m))
    elif fam == "binomial":
        y = (rng.random(N) < 1 / (1 + np.exp(-lin))).astype(float)
    elif link == "log":
        y = rng.gamma(3.0, np.exp(lin) / 3.0)
    else:
        y = rng.gamma(3.0, 1.0 / (2.0 + 0.3 * np.tanh(lin)) / 3.0)
    df["y"] = y
    return df


def deviance_at(fam, link, formula, offset=None, weights=None, theta=None, laplace="lme4",
                dispersion=1.0):
    """A GlmmDeviance and a point (theta, beta) near its optimum, not at it (lme4's
    Laplace approximation unless ``laplace`` says otherwise)."""
    F = Family(fam, link, 2.0, laplace=laplace, dispersion=dispersion)
    df = data(fam, link)
    d = build_design(formula, df, F, offset=offset, weights=weights)
    dev = GlmmDeviance(d, F)
    beta = start.glm_beta(F, dev, start.mustart(F, d.y, d.weights))
    dev.set_beta_start(beta)
    if theta is None:
        theta = np.array([0.5 if lo == 0 else 0.15 for lo in dev.lower])
    beta = beta + (0.02 if link == "inverse" else 0.05) * np.cos(np.arange(len(beta)))
    return dev, np.asarray(theta, float), beta


def dense_gradient(dev, theta, beta, st=None):
    """The gradient at PIRLS's mode (``st``: that of the last evaluation) in matrix form: A = Z Lambda (n x q),
    M = A'WA + I, dD/dphi = F_phi - lambda'G_phi with lambda = (2 M_obs)^{-1} F_u;
    Fisher weights, working residuals and the aic term differentiated numerically
    in eta, row by row."""
    st = dev.state if st is None else st
    fam = dev.family
    n = dev.n
    lams = dev.lambdas(theta)
    terms = [(dev.Z1, dev.terms[0].codes[dev.order], dev.terms[0])]
    terms += [(Z, t.codes[dev.order], t) for Z, t in zip(dev.rest_Z, dev.rest_terms)]
    q = sum(t.nlevels * t.k for _, _, t in terms)
    # the columns of A, per term, and dA/dtheta_j
    base, bases = 0, []
    for _, _, t in terms:
        bases.append(base)
        base += t.nlevels * t.k

    def zl(Ls):
        A = np.zeros((n, q))
        for (Z, codes, t), b, L in zip(terms, bases, Ls):
            ZL = Z @ L
            for j in range(t.k):
                A[np.arange(n), b + codes * t.k + j] = ZL[:, j]
        return A
    A = zl(lams)
    dAs = []
    for ti, pos in enumerate(dev.theta_pos):
        for (i, j) in pos:
            Ls = [np.zeros_like(L) for L in lams]
            Ls[ti][i, j] = 1.0
            dAs.append(zl(Ls))
    u = dev.u_vector(st)
    base_eta = dev.offset + dev.X @ beta
    eta = base_eta + A @ u
    assert np.allclose(eta, st.eta, atol=1e-10)
    y, pw = dev.y, dev.pw
    fd = fam.kernel_data()

    def fisher(e):
        mu = fam.linkinv(e)
        me = fam.mu_eta(e)
        v = fam.variance(mu)
        return pw * me ** 2 / v, pw * me * (y - mu) / v

    def aic(e):
        return conditional_aic(y, fam.linkinv(e), pw, fd)
    h = 1e-6
    w, wres = fisher(eta)
    dw = (fisher(eta + h)[0] - fisher(eta - h)[0]) / (2 * h)
    wobs = -(fisher(eta + h)[1] - fisher(eta - h)[1]) / (2 * h)
    da = np.empty(n)
    for i in range(n):
        e = eta.copy()
        e[i] += h
        ap = aic(e)
        e[i] -= 2 * h
        da[i] = (ap - aic(e)) / (2 * h)
    M = A.T @ (w[:, None] * A) + np.eye(q)
    Minv = np.linalg.inv(M)
    assert np.log(np.linalg.det(M)) == pytest.approx(st.logdet, rel=1e-9)
    hdiag = np.einsum("ij,jk,ik->i", A, Minv, A)
    c = da + hdiag * dw
    Fu = A.T @ c + 2 * u
    Mobs = A.T @ (wobs[:, None] * A) + np.eye(q)
    lam = np.linalg.solve(2 * Mobs, Fu)
    g = []
    for dA in dAs:
        deta = dA @ u
        dM = dA.T @ (w[:, None] * A)
        F_theta = c @ deta + np.trace(Minv @ (dM + dM.T))
        G_theta = -2 * dA.T @ wres + A.T @ (2 * wobs * deta)
        g.append(F_theta - lam @ G_theta)
    X = dev.X
    F_beta = X.T @ c
    G_beta = A.T @ (2 * wobs[:, None] * X)
    g += list(F_beta - lam @ G_beta)
    return np.array(g)


@pytest.mark.parametrize("fam,link", FAMILIES)
@pytest.mark.parametrize("shape", list(FORMULAS))
def test_gradient_matches_dense_formula(fam, link, shape):
    dev, theta, beta = deviance_at(fam, link, FORMULAS[shape])
    f, g = dev.laplace_gradient(theta, beta)
    want = dense_gradient(dev, theta, beta)
    assert f == pytest.approx(dev.laplace(theta, beta), rel=1e-9)
    scale = max(1.0, np.max(np.abs(want)))
    assert np.max(np.abs(g - want)) < 1e-6 * scale


@pytest.mark.parametrize("fam,link", FAMILIES)
@pytest.mark.parametrize("shape", ["slope", "crossed", "nested"])
def test_gradient_matches_finite_differences(fam, link, shape):
    dev, theta, beta = deviance_at(fam, link, FORMULAS[shape])
    _, g = dev.laplace_gradient(theta, beta)
    noisy = (fam, link) in FISHER_ONLY
    num = central_fd(dev, theta, beta, 1e-3 if noisy else 1e-4)
    scale = max(1.0, np.max(np.abs(num)))
    assert np.max(np.abs(g - num)) < (2e-4 if noisy else 2e-6) * scale


@pytest.mark.parametrize("fam,link", [("poisson", "log"), ("binomial", "logit"),
                                      ("gamma", "log")])
def test_gradient_with_offset_and_weights(fam, link):
    rng = np.random.default_rng(7)
    offset = 0.2 * rng.normal(size=N)
    weights = (rng.integers(1, 4, N).astype(float) if fam != "binomial"
               else np.ones(N))
    dev, theta, beta = deviance_at(fam, link, FORMULAS["slope_crossed"], offset=offset,
                                   weights=weights)
    _, g = dev.laplace_gradient(theta, beta)
    assert np.max(np.abs(g - dense_gradient(dev, theta, beta))) < 1e-6 * max(
        1.0, np.max(np.abs(g)))
    num = central_fd(dev, theta, beta, 1e-4)
    assert np.max(np.abs(g - num)) < 2e-6 * max(1.0, np.max(np.abs(num)))


@pytest.mark.parametrize("theta", [[0.0, 0.3], [1e-7, 0.3], [0.4, 0.0]])
def test_gradient_at_and_near_the_boundary(theta):
    """A variance at (or within 1e-7 of) 0: the deviance is even in a scalar
    term's theta, so its derivative there is 0; the others stay right."""
    dev, th, beta = deviance_at("poisson", "log", FORMULAS["crossed"], theta=theta)
    _, g = dev.laplace_gradient(th, beta)
    num = central_fd(dev, th, beta, 1e-4)
    assert np.max(np.abs(g - num)) < 2e-6 * max(1.0, np.max(np.abs(num)))
    for j, t in enumerate(theta):
        if t == 0.0:
            assert abs(g[j]) < 1e-8


def test_correlated_slope_at_zero_variance():
    dev, th, beta = deviance_at("binomial", "logit", FORMULAS["slope"],
                                theta=[0.5, 0.2, 0.0])
    _, g = dev.laplace_gradient(th, beta)
    assert np.max(np.abs(g - dense_gradient(dev, th, beta))) < 1e-6 * max(1, np.abs(g).max())
    num = central_fd(dev, th, beta, 1e-4)
    assert np.max(np.abs(g - num)) < 2e-6 * max(1.0, np.max(np.abs(num)))


def test_schur_inverse_sparse_and_dense():
    rng = np.random.default_rng(1)
    for S in (np.diag(rng.uniform(1, 3, 6)),
              (lambda B: B @ B.T + np.eye(7))(rng.normal(size=(7, 7))),
              np.kron(np.eye(3), np.array([[2.0, 0.5], [0.5, 1.0]]))):
        L = np.linalg.cholesky(S)
        assert np.allclose(schur_inverse(np.ascontiguousarray(L)), np.linalg.inv(S),
                           rtol=1e-12, atol=1e-14)


def test_hessian_from_gradient_central_and_forward():
    """Central differences of an exact gradient are second-order accurate, forward
    ones first-order; both symmetrised."""
    from xlglmm.engine.optimize import hessian_from_gradient
    A = np.array([[3.0, 1.0, 0.2], [1.0, 2.0, -0.5], [0.2, -0.5, 1.5]])

    def fg(x):      # f = x'Ax/2 + sum x^3 / 6: H = A + diag(x)
        return 0.5 * x @ A @ x + np.sum(x ** 3) / 6, A @ x + 0.5 * x ** 2
    x = np.array([0.3, -0.2, 0.7])
    want = A + np.diag(x)
    H = hessian_from_gradient(fg, x, delta=1e-3)
    assert np.allclose(H, want, atol=1e-9) and np.array_equal(H, H.T)
    Hf = hessian_from_gradient(fg, x, delta=1e-3, g0=fg(x)[1])
    assert np.allclose(Hf, want, atol=1e-3) and not np.allclose(Hf, want, atol=1e-6)


@pytest.mark.parametrize("fam,link,formula", [
    ("poisson", "log", "y ~ x + (x|g)"), ("binomial", "probit", "y ~ x + (1|g) + (1|h)"),
    ("gamma", "log", "y ~ x + x2 + (1|g)")])
def test_stage_two_on_the_gradient_reaches_the_optimum_on_values(fam, link, formula):
    """Stage 2's steps on the exact gradient and on the deviance's values (the
    AGQ path) end at the same optimum with the same accurate Hessian."""
    from xlglmm.engine.model import GeneralizedLinearMixedModel
    F = Family(fam, link, laplace="lme4")
    d = build_design(formula, data(fam, link, seed=11), F)
    m = GeneralizedLinearMixedModel(d, F, se_method="hessian")
    m.start_values = m._start()
    m.stage1 = m._stage_one()
    x1 = np.concatenate([m.stage1.theta, m.stage1.beta])
    xg, fgv, gg, Hg, exact_g, _, _ = m._gradient_steps(x1)
    xv, fv, gv, Hv, exact_v, _, _ = m._value_steps(x1)
    assert exact_g and exact_v
    assert fgv <= fv + 1e-8
    assert np.allclose(xg, xv, atol=2e-4)
    assert np.allclose(Hg, Hv, rtol=1e-4, atol=1e-3 * np.abs(Hv).max())
    assert np.max(np.abs(gg)) < 1e-3


@pytest.mark.parametrize("fam,link", [("poisson", "log"), ("gamma", "log")])
def test_gradient_with_lapacks_inverse_of_a_large_rest_block(fam, link, monkeypatch):
    """Above LAPACK_MIN_R rest columns the Schur complement's inverse comes from
    LAPACK (linalg.rest_inverse) instead of the kernel's loops: the same gradient
    (the threshold lowered so that a small crossed model takes that path)."""
    from xlglmm.engine import gradient as gradmod
    dev, theta, beta = deviance_at(fam, link, FORMULAS["crossed"])
    _, g_loops = dev.laplace_gradient(theta, beta)
    monkeypatch.setattr(gradmod, "LAPACK_MIN_R", 1)
    calls = []
    real = gradmod.rest_inverse
    monkeypatch.setattr(gradmod, "rest_inverse", lambda LS: calls.append(1) or real(LS))
    _, g_lapack = dev.laplace_gradient(theta, beta)
    assert calls
    np.testing.assert_allclose(g_lapack, g_loops, rtol=1e-9, atol=1e-9)


# ---- the exact Laplace approximation (observed information, the Gamma's dispersion
# a parameter): its value against a dense numpy/scipy formula, its gradient against
# central finite differences

def log_density(fam, link, y, mu, pw, dispersion, theta_nb=2.0):
    """log f(y | mu) per row by scipy.stats (binomial: y a proportion of pw trials;
    Gamma: pw copies of shape 1/phi)."""
    from scipy import stats
    if fam == "poisson":
        return pw * stats.poisson.logpmf(y, mu)
    if fam == "binomial":
        return stats.binom.logpmf(np.round(y * pw), np.round(pw), mu)
    if fam == "negbin":
        return pw * stats.nbinom.logpmf(y, theta_nb, theta_nb / (theta_nb + mu))
    a = 1.0 / dispersion
    return pw * stats.gamma.logpdf(y, a, scale=mu / a)


EXACT = [("binomial", "probit", 1.0), ("binomial", "cloglog", 1.0), ("negbin", "log", 1.0),
         ("gamma", "log", 0.35), ("gamma", "inverse", 0.35), ("gamma", "identity", 0.35),
         ("poisson", "sqrt", 1.0), ("poisson", "log", 1.0)]


def exact_cases(shapes):
    """(family, link, dispersion, shape) for every family of ``EXACT`` and shape."""
    return [(f, lk, d, s) for f, lk, d in EXACT for s in shapes]


@pytest.mark.parametrize("fam,link,disp,shape", exact_cases(["intercept", "slope", "crossed"]))
def test_exact_laplace_value_matches_dense_formula(fam, link, disp, shape):
    dev, theta, beta = deviance_at(fam, link, FORMULAS[shape], laplace="exact",
                                   dispersion=disp)
    f = dev.laplace(theta, beta)
    want = dense_exact_laplace(
        dev, theta, beta, lambda y, mu, pw: log_density(fam, link, y, mu, pw, disp))
    # the dense W_obs is a second difference (h = 1e-4: ~1e-8 relative per row)
    assert f == pytest.approx(want, abs=1e-5 * max(1.0, abs(want)))


@pytest.mark.parametrize("fam,link,disp,shape",
                         exact_cases(["intercept", "slope", "crossed", "nested"]))
def test_exact_gradient_matches_finite_differences(fam, link, disp, shape):
    dev, theta, beta = deviance_at(fam, link, FORMULAS[shape], laplace="exact",
                                   dispersion=disp)
    f, g = dev.laplace_gradient(theta, beta)
    assert f == pytest.approx(dev.laplace(theta, beta), rel=1e-9)
    # (Fisher scoring's modes, as FISHER_ONLY: the Poisson sqrt and Gamma identity links)
    noisy = (fam, link) in FISHER_ONLY | {("poisson", "sqrt"), ("gamma", "identity")}
    num = central_fd(dev, theta, beta, 1e-3 if noisy else 1e-4)
    scale = max(1.0, np.max(np.abs(num)))
    assert np.max(np.abs(g - num)) < (2e-4 if noisy else 2e-6) * scale


def test_exact_and_lme4_coincide_for_canonical_links():
    for fam, link in [("poisson", "log"), ("binomial", "logit")]:
        a, theta, beta = deviance_at(fam, link, FORMULAS["slope"], laplace="exact")
        b, _, _ = deviance_at(fam, link, FORMULAS["slope"], laplace="lme4")
        assert a.laplace(theta, beta) == b.laplace(theta, beta)


def test_exact_and_lme4_differ_for_a_non_canonical_link():
    a, theta, beta = deviance_at("binomial", "probit", FORMULAS["slope"], laplace="exact")
    b, _, _ = deviance_at("binomial", "probit", FORMULAS["slope"], laplace="lme4")
    assert abs(a.laplace(theta, beta) - b.laplace(theta, beta)) > 1e-4


@pytest.mark.parametrize("link,shape", [("log", "intercept"), ("log", "slope"),
                                        ("log", "crossed"), ("inverse", "slope"),
                                        ("identity", "intercept")])
def test_log_dispersion_derivative_matches_finite_differences(link, shape):
    """The exact Laplace's Gamma: dD/dlog(phi) at fixed (theta, beta), the joint
    search's gradient in the dispersion (LaplaceGradient.log_dispersion_derivative),
    against central differences of the deviance in log(phi)."""
    import dataclasses
    dev, theta, beta = deviance_at("gamma", link, FORMULAS[shape], laplace="exact",
                                   dispersion=0.35)
    dev.laplace_gradient(theta, beta)
    d = dev._gradient.log_dispersion_derivative()
    fam, h = dev.family, 1e-4
    vals = []
    for s in (h, -h):
        dev.set_family(dataclasses.replace(fam, dispersion=0.35 * np.exp(s)))
        vals.append(dev.laplace(theta, beta))
    dev.set_family(fam)
    num = (vals[0] - vals[1]) / (2 * h)
    assert d == pytest.approx(num, abs=2e-6 * max(1.0, abs(num)))
