"""Predictions with confidence and prediction intervals (issue 14).

A prediction is eta-hat = x'beta-hat + z'b-hat (+ offset) for the row's fixed-effect
row x and, per random-effects term whose level the fit saw, its Z row z.

**Confidence interval of the mean.**  Var(eta-hat - eta) from the joint conditional
covariance of (beta-hat, b - b-hat): sigma^2 times the inverse of the penalised
system at the optimum (Henderson's mixed-model equations; lme4's joint condVar),

    M = [Lambda'Z'WZLambda + I,  Lambda'Z'WX;  X'WZLambda,  X'WX]    (spherical u, beta)

of which the blocked factor of ``linalg`` holds the Cholesky factor.  With c = (z~,
x), z~ = Lambda'z, the quadratic form splits exactly (a block inverse):

    c'M^-1 c = z~'A^-1 z~  +  g'(RX'RX)^-1 g,   g = x - (X'WZLambda) A^-1 z~

(A the random-effects block): the first term is the random effects' prediction
error given beta (lme4's condVar of the row's random effects), the second beta's
uncertainty carried through the modes' dependence on beta.  Both come from one
forward solve with the factor: |w1|^2 + |w2_u|^2 and g = RX' w2_beta.  The second
term uses the fixed effects' reported covariance (``vcov``: sigma^2 (RX'RX)^-1 for
LMMs and RX-based fits, lme4's Hessian-based one by default for GLMMs), so a row
at the population level (no seen level, or ``include_re=False``) has exactly the
variance x'Var(beta-hat)x of the reported SEs.  theta's uncertainty (and sigma's,
NB theta's) is not included.

**Prediction interval for a new observation.**  eta ~ N(eta-hat, se^2 + sum over
the row's new levels of z'Sigma_g z), then y | eta from the family (Poisson and NB:
the count at the row's offset; binomial: successes out of the row's trials, shown
as a proportion like the fitted value; Gamma: the amount; Gaussian: y with
sigma^2 / weight).  The mixture's CDF is integrated deterministically (below) and
inverted exactly: the lower limit is the smallest y with F(y) >= alpha/2, the
upper the smallest with F(y) >= 1 - alpha/2 (for counts, whole numbers: the
interval covers at least 1 - alpha).

The integral over eta is Gauss-Legendre over eta's standard score z in pieces, cut
at fixed z and where the component's mean is y (and a few of its SDs either side):
a component far narrower than eta's spread (a large count, a small sigma) is a step
in z, which Gauss-Hermite nodes cannot resolve but pieces that end at the step do
(4e-9 from scipy's adaptive quadrature at the worst case of the tests).  No random
draws: the same numbers on every machine.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg as sla
from scipy import special

INTERVALS = ("confidence", "prediction")
#: Gauss-Legendre nodes on each piece of the integral over eta's standard score z
QUADRATURE_NODES = 12
#: the integral covers |z| <= Z_END (the normal's mass beyond: 2e-17) ...
Z_END = 8.5
#: ... in pieces cut at these z ...
FIXED_CUTS = (-Z_END, -4.0, -1.5, 1.5, 4.0, Z_END)
#: ... and where the component's mean is y, and this many of its SDs (on the eta
#: scale) either side
SPLIT_WIDTHS = 6.0
#: a continuous quantile's relative precision (on log y for Gamma, y for Gaussian)
ROOT_TOL = 1e-12
#: steps allowed to reach it (the Illinois method takes ~10)
ROOT_STEPS = 100
#: doublings allowed while bracketing a quantile
MAX_DOUBLINGS = 200
#: rows per batch of the solves (memory: rows x columns of the rest block)
ROW_BATCH = 4096


class PredictionError(ValueError):
    """A prediction cannot be made as asked: says why."""


def check_request(interval, level, type_: str) -> None:
    """Validate the interval arguments of ``predict`` before any work."""
    if interval is None:
        return
    if not isinstance(interval, str) or interval not in INTERVALS:
        raise PredictionError("interval must be None, 'confidence' or 'prediction'")
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.number)) \
            or not 0.0 < float(level) < 1.0:
        raise PredictionError("level must be a number between 0 and 1 (e.g. 0.95)")
    if interval == "prediction" and type_ == "link":
        raise PredictionError("a prediction interval is for a new observation, which lives "
                              "on the response scale: use type='response' (or "
                              "interval='confidence' on the link scale)")


def link_variance(dev, theta, state, sigma: float, vcov, X, zs):
    """Var(eta-hat - eta) of each row, in its two parts (random effects' prediction
    error given beta, beta's part), both arrays of len(X).

    ``dev`` the fit's ``devfun.GlmmDeviance``, ``theta`` and ``state`` its optimum,
    ``vcov`` the fixed effects' covariance (data's columns), ``X`` the rows' fixed
    rows (data's columns), ``zs`` per term (codes, Z): level index per row, -1 where
    the row is not conditioned on that term (unseen, blank, or population level).
    NaN where the factor cannot be formed."""
    m = X.shape[0]
    Dchol, Cval, LS, loc_ptr, loc_cols, ok = dev.factor_at(theta, state, with_beta=True)
    if not ok:
        return np.full(m, np.nan), np.full(m, np.nan)
    q2, p = dev.q2, dev.p
    # the fit works with X 2^-e and beta 2^e (devfun.x_exponents): g in the fit's
    # columns is g 2^e in the data's
    scale = np.ones(p) if dev.x_exp is None else np.exp2(-np.asarray(dev.x_exp, float))
    lams = dev.lambdas(theta)
    re_part, fixed_part = np.empty(m), np.empty(m)
    for lo in range(0, m, ROW_BATCH):
        rows = slice(lo, min(lo + ROW_BATCH, m))
        w1sq, rhs = _first_term_solve(Dchol, Cval, loc_ptr, loc_cols, lams[0], zs[0], rows,
                                      LS.shape[0])
        for (codes, Z), base, L in zip(zs[1:], dev.rest_base, lams[1:]):
            c = codes[rows]
            seen = np.flatnonzero(c >= 0)
            k = L.shape[0]
            zt = Z[rows][seen] @ L          # (Lambda'z)' per row
            cols = base + c[seen][:, None] * k + np.arange(k)
            rhs[seen[:, None], cols] += zt
        rhs[:, q2:] += X[rows] * scale
        w2 = (sla.solve_triangular(LS, rhs.T, lower=True, check_finite=False).T
              if LS.shape[0] else rhs)
        g = (w2[:, q2:] @ LS[q2:, q2:].T) / scale     # RX' w2_beta, in the data's columns
        re_part[rows] = sigma ** 2 * (w1sq + np.einsum("ij,ij->i", w2[:, :q2], w2[:, :q2]))
        fixed_part[rows] = np.einsum("ij,jk,ik->i", g, vcov, g)
    return re_part, fixed_part


def _first_term_solve(Dchol, Cval, loc_ptr, loc_cols, L1, term, rows, r):
    """The first term's part of the forward solve for a batch of rows: |w1|^2 (w1 =
    D_g^-1 Lambda_1'z of each row's level g) and the rest's right-hand side with
    -C_g'w1 already in it (zeros for rows not conditioned on term 1)."""
    codes, Z = term
    c = codes[rows]
    n = len(c)
    rhs = np.zeros((n, r))
    w1 = np.zeros((n, L1.shape[0]))
    seen = np.flatnonzero(c >= 0)
    # the levels' k1 x k1 factors inverted in one batch (tiny LAPACK calls one by one
    # cost more than the arithmetic)
    w1[seen] = np.einsum("rab,rb->ra", np.linalg.inv(Dchol[c[seen]]), Z[rows][seen] @ L1)
    for g in np.unique(c[seen]):
        at = np.flatnonzero(c == g)
        span = slice(loc_ptr[g], loc_ptr[g + 1])
        rhs[at[:, None], loc_cols[span]] -= w1[at] @ Cval[:, span]
    w1sq = np.einsum("ij,ij->i", w1, w1)
    return w1sq, rhs


def new_level_variance(lams, sigma: float, zs, new) -> np.ndarray:
    """Per row, the variance a new level's random effects add to eta: the sum over
    terms of z'Sigma_t z (Sigma_t = sigma^2 Lambda_t Lambda_t') where ``new[t]`` (a
    mask over the rows) says the row's level of term t is new."""
    out = np.zeros(len(zs[0][0]))
    for (_, Z), L, isnew in zip(zs, lams, new):
        zl = Z @ L
        out += np.where(isnew, sigma ** 2 * np.einsum("ij,ij->i", zl, zl), 0.0)
    return out


# ---- the distribution of a new observation -------------------------------------------

class Conditional:
    """y given its mean for one family, as the intervals need it: the CDF
    (vectorised), whether y is whole (a count or successes), and the mean at which
    the integral over eta is split for a given y."""

    def __init__(self, family, weights, sigma: float):
        if family.has_phi:
            raise PredictionError(f"prediction intervals are not available for the "
                                  f"{family.spec.label} family yet; confidence intervals "
                                  "(of the mean) are")
        self.family = family
        self.w = np.asarray(weights, float)
        self.discrete = family.counts_response or family.is_binomial
        self.sigma = float(sigma)
        if family.is_binomial:
            n = self.w
            if np.any(np.abs(n - np.rint(n)) > 1e-8 * np.maximum(1.0, n)) or np.any(n < 0):
                raise PredictionError("binomial prediction intervals need whole numbers of "
                                      "trials (the rows' weights)")
            self.w = np.rint(n)

    def cdf(self, y, mu, w):
        """P(Y <= y | mean mu) (binomial: Y successes out of w trials; mu a
        probability)."""
        fam = self.family
        with np.errstate(all="ignore"):
            if fam.is_binomial:
                k = np.floor(y)
                out = special.betainc(np.maximum(w - k, 1e-300), k + 1.0,
                                      np.clip(1.0 - mu, 0.0, 1.0))
                return np.where(k < 0, 0.0, np.where(k >= w, 1.0, out))
            if fam.has_theta:
                th = float(fam.nb_theta)
                k = np.floor(y)
                return np.where(k < 0, 0.0, special.betainc(th, k + 1.0, th / (th + mu)))
            if fam.counts_response:
                k = np.floor(y)
                return np.where(k < 0, 0.0, special.pdtr(np.maximum(k, 0.0), mu))
            if fam.positive_response:
                shape = w / self.sigma ** 2
                return np.where(y <= 0, 0.0, special.gammainc(shape, shape * y / mu))
            return special.ndtr((y - mu) * np.sqrt(w) / self.sigma)

    def split_mean(self, y, w):
        """The mean whose distribution has y at its centre (a discrete y: between y
        and y + 1), on the mean's scale (binomial: a proportion in [0, 1])."""
        if self.family.is_binomial:
            return np.clip((y + 0.5) / np.maximum(w, 1.0), 0.0, 1.0)
        if self.discrete:
            return y + 0.5
        return y


def _legendre():
    x, w = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    return (x + 1.0) / 2.0, w / 2.0          # on [0, 1]


_NODES, _WEIGHTS = _legendre()


def _phi(z):
    """The standard normal density."""
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


def mixture_cdf(cond: Conditional, y, eta, sd, w):
    """F(y) = E[P(Y <= y | mean linkinv(eta + sd z))] over z ~ N(0, 1), per row:
    Gauss-Legendre on pieces of z in [-Z_END, Z_END], cut at FIXED_CUTS and where
    the component's mean is y, and SPLIT_WIDTHS of its own SDs either side (see the
    module's docstring)."""
    fam = cond.family
    with np.errstate(all="ignore"):
        mid = np.asarray(cond.split_mean(y, w), float)
        eta_mid = fam.linkfun(mid)
        # the component's SD on the eta scale: sd(y | mid) / |d mu / d eta|
        width = np.sqrt(fam.variance(mid) * cond.sigma ** 2 / np.maximum(w, 1.0)) \
            / np.abs(fam.mu_eta(eta_mid))
        width = np.nan_to_num(width, nan=0.0, posinf=0.0)
        safe_sd = np.where(sd > 0, sd, 1.0)
        moving = [np.where(sd > 0, (eta_mid + k * width - eta) / safe_sd, 0.0)
                  for k in (-SPLIT_WIDTHS, 0.0, SPLIT_WIDTHS)]
    cuts = np.column_stack([np.clip(np.nan_to_num(z, nan=0.0), -Z_END, Z_END)
                            for z in moving] + [np.broadcast_to(c, len(eta))
                                                for c in FIXED_CUTS])
    cuts.sort(axis=1)
    total = np.zeros(len(eta))
    for j in range(cuts.shape[1] - 1):
        start, span = cuts[:, j], cuts[:, j + 1] - cuts[:, j]
        z = start[:, None] + span[:, None] * _NODES
        f = cond.cdf(y[:, None], fam.linkinv(eta[:, None] + sd[:, None] * z), w[:, None])
        total += span * ((f * _phi(z)) @ _WEIGHTS)
    return np.clip(total, 0.0, 1.0)


def mixture_quantile(cond: Conditional, q: float, eta, sd, w):
    """The smallest y with F(y) >= q, per row (whole numbers for discrete families,
    to ROOT_TOL otherwise); NaN where eta or sd is not finite."""
    fam = cond.family
    ok = np.isfinite(eta) & np.isfinite(sd)
    out = np.full(len(eta), np.nan)
    if not ok.any():
        return out
    e, s, ww = eta[ok], sd[ok], w[ok]
    F = lambda y: mixture_cdf(cond, y, e, s, ww)        # noqa: E731
    centre = np.asarray(fam.linkinv(e), float)
    if cond.discrete:
        lo = np.full(len(e), -1.0)           # F(-1) = 0 < q
        hi = ww.copy() if fam.is_binomial else _bracket(
            F, q, lambda k: np.maximum(np.ceil(centre), 1.0) * 2.0 ** k)
        while True:
            gap = hi - lo > 1.0
            if not gap.any():
                break
            mid = np.floor((lo + hi) / 2.0)
            above = F(mid) >= q
            hi = np.where(gap & above, mid, hi)
            lo = np.where(gap & ~above, mid, lo)
        out[ok] = hi
        return out
    below = lambda v: 1.0 - F(v)                    # noqa: E731  (> 1 - q: F(v) < q)
    if fam.positive_response:        # y = exp(x): between y / 2^k and y 2^k
        hi = _bracket(F, q, lambda k: centre * 2.0 ** k)
        lo = _bracket(below, 1.0 - q, lambda k: centre / 2.0 ** k, strict=True)
        out[ok] = np.exp(_illinois(lambda x: F(np.exp(x)) - q, np.log(lo), np.log(hi)))
    else:                            # Gaussian: between y -+ 2^k spread
        spread = np.sqrt(s ** 2 * fam.mu_eta(e) ** 2 + cond.sigma ** 2 / ww)
        hi = _bracket(F, q, lambda k: centre + spread * 2.0 ** k)
        lo = _bracket(below, 1.0 - q, lambda k: centre - spread * 2.0 ** k, strict=True)
        out[ok] = _illinois(lambda x: F(x) - q, lo, hi)
    return out


def _illinois(f, a, b):
    """The root of increasing ``f`` in [a, b] (f(a) < 0 <= f(b)) per row, by the
    Illinois method (regula falsi that halves the value of an end kept twice):
    to ROOT_TOL relative, NaN rows left as they are."""
    fa, fb = f(a), f(b)
    side = np.zeros(len(a))             # +1: b moved last, -1: a moved last
    for _ in range(ROOT_STEPS):
        width = np.abs(b - a)
        if not np.any(width > ROOT_TOL * (1.0 + np.abs(b))):
            break
        den = fb - fa
        c = np.where(den > 0, b - fb * (b - a) / np.where(den > 0, den, 1.0), (a + b) / 2.0)
        c = np.where((c > np.minimum(a, b)) & (c < np.maximum(a, b)), c, (a + b) / 2.0)
        fc = f(c)
        up = fc >= 0
        fa = np.where(up & (side > 0), fa / 2.0, fa)
        fb = np.where(~up & (side < 0), fb / 2.0, fb)
        b, fb = np.where(up, c, b), np.where(up, fc, fb)
        a, fa = np.where(up, a, c), np.where(up, fa, fc)
        side = np.where(up, 1.0, -1.0)
    return b


def _bracket(G, q, candidate, strict=False):
    """One end of a bracket of the quantile, per row: the first of ``candidate(k)``,
    k = 0, 1, ..., where G >= q (``strict``: G > q); NaN after MAX_DOUBLINGS."""
    v = np.asarray(candidate(0), float).copy()
    todo = np.ones(len(v), bool)
    for k in range(1, MAX_DOUBLINGS + 1):
        g = G(v)
        todo &= ~(g > q if strict else g >= q)
        if not todo.any():
            return v
        v = np.where(todo, candidate(k), v)
    return np.where(todo, np.nan, v)


def prediction_bounds(family, eta, sd, weights, sigma: float, level: float):
    """(lower, upper) of the prediction interval at ``level`` for rows whose eta is
    N(eta, sd^2) (on the response's scale: binomial as a proportion of the trials)."""
    cond = Conditional(family, weights, sigma)
    a = (1.0 - float(level)) / 2.0
    lower = mixture_quantile(cond, a, eta, sd, cond.w)
    upper = mixture_quantile(cond, 1.0 - a, eta, sd, cond.w)
    if family.is_binomial:
        with np.errstate(all="ignore"):
            n = np.where(cond.w > 0, cond.w, np.nan)
            lower, upper = lower / n, upper / n
    return lower, upper


def confidence_bounds(family, eta, se, level: float, type_: str):
    """(lower, upper): eta -+ z se, on the link scale or through the inverse link
    (ordered: a decreasing link swaps the ends)."""
    zq = special.ndtri(0.5 + float(level) / 2.0)
    lo, hi = eta - zq * se, eta + zq * se
    if type_ == "link":
        return lo, hi
    a, b = family.linkinv(lo), family.linkinv(hi)
    return np.fmin(a, b), np.fmax(a, b)

