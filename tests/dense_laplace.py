"""Dense reference computations of the Laplace deviance shared by the tests of its
kernels (test_gradient.py, test_new_families.py): the random-effects shapes, central
finite differences of the deviance, and the exact Laplace deviance in matrix form."""
import numpy as np

FORMULAS = {
    "intercept": "y ~ x + (1|g)",
    "slope": "y ~ x + x2 + (x|g)",
    "crossed": "y ~ x + (1|g) + (1|h)",
    "nested": "y ~ x + (1|a) + (1|a:b)",
    "slope_crossed": "y ~ x + (x|g) + (1|h)",
}


def central_fd(dev, theta, beta, h):
    x = np.concatenate([theta, beta])
    nt = dev.ntheta
    out = np.empty(len(x))
    for j in range(len(x)):
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        out[j] = (dev.laplace(xp[:nt], xp[nt:]) - dev.laplace(xm[:nt], xm[nt:])) / (2 * h)
    return out


def dense_exact_laplace(dev, theta, beta, log_density):
    """-2 sum log f(y|u) + |u|^2 + log det(A'W_obs A + I) at the modes, W_obs the
    second derivative of the rows' log density in eta by central differences;
    ``log_density(y, mu, pw)`` the rows' log densities (scipy's)."""
    fam = dev.family
    st = dev.state
    u = dev.u_vector(st)
    lams = dev.lambdas(theta)
    n = dev.n
    terms = [(dev.Z1, dev.terms[0].codes[dev.order], dev.terms[0])]
    terms += [(Z, t.codes[dev.order], t) for Z, t in zip(dev.rest_Z, dev.rest_terms)]
    q = sum(t.nlevels * t.k for _, _, t in terms)
    A = np.zeros((n, q))
    b = 0
    for (Z, codes, t), L in zip(terms, lams):
        ZL = Z @ L
        for j in range(t.k):
            A[np.arange(n), b + codes * t.k + j] = ZL[:, j]
        b += t.nlevels * t.k
    eta = dev.offset + dev.X @ beta + A @ u
    assert np.allclose(eta, st.eta, atol=1e-10)

    def ll(e):
        return log_density(dev.y, fam.linkinv(e), dev.pw)
    h = 1e-4
    w_obs = -(ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / h ** 2
    # the modes: the penalized log-likelihood's gradient in u is zero there
    score = (ll(eta + 1e-6) - ll(eta - 1e-6)) / 2e-6
    assert np.max(np.abs(A.T @ score - u)) < 1e-5 * max(1.0, np.abs(u).max())
    M = A.T @ (w_obs[:, None] * A) + np.eye(q)
    sign, logdet = np.linalg.slogdet(M)
    assert sign > 0
    return -2 * ll(eta).sum() + u @ u + logdet
