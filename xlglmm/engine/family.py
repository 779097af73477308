"""Families and links: what a GLMM's conditional distribution is.

Two layers live here:

* Numba kernels (``linkinv``, ``mu_eta``, ``variance``, ``unit_deviance``,
  ``unit_loglik``, ``unit_logdensity`` and its derivatives in eta
  ``logdensity_eta_derivs``, the observed-information weights PIRLS's Newton steps
  use, ``has_observed_weights`` and ``observed_weight``) that take a row's values
  with its prior weight (binomial: its trials; a variance may depend on them) and
  receive the family as data: a :class:`FamilyData`
  (family code, link code, parameter tuple) built once by ``Family.kernel_data()``,
  so the PIRLS core calls them inside its loops without Python objects, and a new
  family parameter is one more entry of that array, not one more argument threaded
  through every kernel.  They follow R's ``family`` objects, including R's clamping
  of the inverse links (so fitted values and the Laplace deviance agree with lme4 in
  the far tails too).
* :class:`Family`, the Python object users and the rest of the package see:
  names, validation of the response, and vectorised versions of the kernels
  (``dev_resids(y, mu, wt)`` as R's ``family$dev.resids``).

Adding a family means one code, one branch in each kernel and one entry in the
registry ``FAMILY_SPECS`` (names, aliases, links, what the response must be, its
parameters, the name of its ratio); no module outside this one compares family
names.  A family's parameters reach the kernels in ``FamilyData.params``: the
negative binomial's (NB2) shape ``theta`` at ``NB_THETA``, the dispersion of the
Gamma and Gaussian densities at ``DISPERSION``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import special, stats
from numba import njit

from .special import digamma, tetragamma, trigamma

# ---- codes shared with the numerical core ------------------------------------------
POISSON, BINOMIAL, GAMMA, GAUSSIAN, NEGBIN = 0, 1, 2, 3, 4
# families whose log-likelihood is not an exponential family's in mu (their kernels take
# its derivatives in mu, ``loglik_mu_derivs``): the exact Laplace only
NEGBIN1, BETA, BETABINOMIAL = 5, 6, 7
LOG, LOGIT, PROBIT, CLOGLOG, INVERSE, IDENTITY, SQRT = 0, 1, 2, 3, 4, 5, 6

LINK_CODES = {"log": LOG, "logit": LOGIT, "probit": PROBIT, "cloglog": CLOGLOG,
              "inverse": INVERSE, "identity": IDENTITY, "sqrt": SQRT}

# the entries of FamilyData.params
NB_THETA = 0           # the negative binomial's shape (variance mu + mu^2/theta)
DISPERSION = 1         # the scale phi of Gamma and Gaussian densities (1 elsewhere)
PHI = 2                # NB1's dispersion (variance mu (1 + phi)), the beta's and the
                       # beta-binomial's precision (Beta(mu phi, (1 - mu) phi))


class FamilyData(NamedTuple):
    """A family as the kernels receive it (a NamedTuple: Numba passes it to compiled
    code and caches the compilation, unlike jitclass/structref objects).  The
    parameters are a tuple of floats, not an array: held by value, the kernels'
    loops need not reload them after every store to an output array (with an array
    the working weights took 50% longer)."""

    family: int           # POISSON, BINOMIAL, ...
    link: int             # LOG, LOGIT, ...
    params: tuple         # floats, indexed by NB_THETA, DISPERSION
    exact: bool           # the exact Laplace approximation (see ``LAPLACE_MODES``)
    #: zero-inflated (Poisson, NB2, NB1): each row is a structural zero with its own
    #: probability p0, which the kernels receive in the row's weight slot (``pw``;
    #: prior weights are refused with zero inflation) -- ``devfun`` sets it from the
    #: zero-inflation model, ``zero_inflation.zero_probability``
    zi: bool = False


#: The two Laplace approximations of a GLMM's likelihood.  "exact": the determinant
#: of the conditional modes' Hessian with the observed information
#: (``observed_information``), every family parameter (the Gamma's dispersion too) a
#: parameter of the likelihood, maximised with the others (glmmTMB's).  "lme4": the
#: determinant with Fisher's weights and the Gamma's dispersion a moment estimate
#: plugged in (lme4's ``glmer``).  For canonical links (``is_canonical``) with no
#: dispersion the two are the same number.
LAPLACE_MODES = ("exact", "lme4")

EPS = 2.220446049250313e-16            # .Machine$double.eps: R's links clamp with it
_INVEPS = 1.0 / EPS
_PROBIT_THRESH = 8.125890664701906     # -qnorm(.Machine$double.eps)
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True, error_model="numpy")
def linkinv(eta, link):
    """Inverse link g^{-1}(eta), clamped as R's families clamp it."""
    if link == LOG:
        return max(math.exp(eta), EPS)
    if link == LOGIT:
        if eta < -30.0:
            t = EPS
        elif eta > 30.0:
            t = _INVEPS
        else:
            t = math.exp(eta)
        return t / (1.0 + t)
    if link == PROBIT:
        e = min(max(eta, -_PROBIT_THRESH), _PROBIT_THRESH)
        return 0.5 * math.erfc(-e / _SQRT2)
    if link == CLOGLOG:
        return max(min(-math.expm1(-math.exp(min(eta, 700.0))), 1.0 - EPS), EPS)
    if link == INVERSE:
        return 1.0 / eta
    if link == SQRT:
        return eta * eta
    return eta  # IDENTITY


@njit(cache=True, error_model="numpy")
def mu_eta(eta, link):
    """d mu / d eta."""
    if link == LOG:
        return max(math.exp(eta), EPS)
    if link == LOGIT:
        if eta < -30.0 or eta > 30.0:
            return EPS
        e = math.exp(eta)
        return e / ((1.0 + e) * (1.0 + e))
    if link == PROBIT:
        return max(math.exp(-0.5 * eta * eta - _LOG_SQRT_2PI), EPS)
    if link == CLOGLOG:
        e = min(eta, 700.0)
        return max(math.exp(e) * math.exp(-math.exp(e)), EPS)
    if link == INVERSE:
        return -1.0 / (eta * eta)
    if link == SQRT:
        return 2.0 * eta
    return 1.0


@njit(cache=True, error_model="numpy")
def linkfun(mu, link):
    """g(mu) (used for starting values only)."""
    if link == LOG:
        return math.log(mu)
    if link == LOGIT:
        return math.log(mu / (1.0 - mu))
    if link == PROBIT:
        # inverse of the normal cdf by Newton on erfc; starting values need little accuracy
        x = 0.0
        for _ in range(50):
            f = 0.5 * math.erfc(-x / _SQRT2) - mu
            d = math.exp(-0.5 * x * x - _LOG_SQRT_2PI)
            if d < 1e-300:
                break
            x -= f / d
        return x
    if link == CLOGLOG:
        return math.log(-math.log(1.0 - mu))
    if link == INVERSE:
        return 1.0 / mu
    if link == SQRT:
        return math.sqrt(mu)
    return mu


@njit(cache=True, error_model="numpy")
def variance(mu, pw, fd):
    """Variance function V(mu) (dispersion excluded) of a row with prior weight ``pw``
    (binomial: its trials).  Most families ignore ``pw`` (R's ``variance(mu)``); it
    is given because a family's variance may depend on the trials (the
    beta-binomial's does) or, zero-inflated, on the row's p0 (in ``pw``): the
    response's variance around its mean (1 - p0) mu."""
    if fd.zi:       # of the response, mean (1 - p0) mu, pw the row's p0
        return (1.0 - pw) * (count_variance(mu, fd) + pw * mu * mu)
    fam = fd.family
    if fam == POISSON:
        return mu
    if fam == BINOMIAL:
        return mu * (1.0 - mu)
    if fam == GAMMA:
        return mu * mu
    if fam == NEGBIN:
        return mu + mu * mu / fd.params[NB_THETA]
    if fam == NEGBIN1:
        return mu * (1.0 + fd.params[PHI])
    if fam == BETA:
        return mu * (1.0 - mu) / (1.0 + fd.params[PHI])
    if fam == BETABINOMIAL:     # of the proportion, times the trials pw
        phi = fd.params[PHI]
        return mu * (1.0 - mu) * (phi + pw) / (phi + 1.0)
    return 1.0  # GAUSSIAN


@njit(cache=True, error_model="numpy")
def has_observed_weights(fd):
    """True where the observed information -d2 loglik / d eta2 of every row is known
    to be positive and differs from Fisher's weights: the log link with the Gamma or
    NB2 family (``observed_weight``).  Canonical links already have Newton = Fisher."""
    fam = fd.family
    return fd.link == LOG and (fam == GAMMA or fam == NEGBIN) and not fd.zi


@njit(cache=True, error_model="numpy")
def observed_weight(y, mu, pw, fd):
    """One row's observed information -d2 loglik / d eta2 under the log link, for a
    family where ``has_observed_weights`` says it is known (Gamma: pw y / mu, without
    the dispersion, as Fisher's weights; NB2: pw theta mu (theta + y) / (theta + mu)^2)."""
    if fd.family == GAMMA:
        return pw * y / mu
    t = fd.params[NB_THETA]
    return pw * t * mu * (t + y) / ((t + mu) * (t + mu))


@njit(cache=True, error_model="numpy")
def general_likelihood(fd):
    """The family's log-likelihood is not an exponential family's in mu (NB1, beta,
    beta-binomial): the kernels take its own derivatives (``loglik_mu_derivs``) for
    the score, the observed information and the deviance."""
    return fd.family >= NEGBIN1 or fd.zi


@njit(cache=True, error_model="numpy")
def _lbeta_terms(k, n, a, b):
    """lgamma(k + a) + lgamma(n - k + b) - lgamma(a) - lgamma(b)."""
    return (math.lgamma(k + a) + math.lgamma(n - k + b) - math.lgamma(a)
            - math.lgamma(b))


@njit(cache=True, error_model="numpy")
def loglik_mu_derivs(y, mu, pw, fd, third=True):
    """(l1, l2, l3): the first three derivatives in mu of one row's log-likelihood
    (``third`` False: l3 is not computed, 0 -- PIRLS's weights need two),
    for the families of ``general_likelihood`` (pw copies of the row for NB1 and the
    beta; the beta-binomial's y a proportion of pw trials).  With s = mu/phi (NB1)
    and a = mu phi, b = (1 - mu) phi (beta, beta-binomial), psi the digamma:
    NB1  l = lgamma(y + s) - lgamma(s) - s log(1 + phi) + ...
    beta l = -lgamma(a) - lgamma(b) + a log y + b log(1 - y) + ...
    beta-binomial l = lgamma(k + a) + lgamma(n - k + b) - lgamma(a) - lgamma(b) + ...
    Zero-inflated (``fd.zi``): ``zero_inflated_derivs``, pw the row's p0."""
    if fd.zi:
        _, l1, l2, l3 = zero_inflated_derivs(y, mu, pw, fd)
        return l1, l2, l3
    return family_mu_derivs(y, mu, pw, fd, third)


@njit(cache=True, error_model="numpy")
def family_mu_derivs(y, mu, pw, fd, third=True):
    """``loglik_mu_derivs`` of the family itself, zero inflation aside (NB1's is the
    count's part of a zero-inflated row, with weight 1)."""
    fam = fd.family
    phi = fd.params[PHI]
    if fam == NEGBIN1:
        s = mu / phi
        c = 1.0 / phi
        l1 = c * (digamma(y + s) - digamma(s) - math.log1p(phi))
        l2 = c * c * (trigamma(y + s) - trigamma(s))
        l3 = c * c * c * (tetragamma(y + s) - tetragamma(s)) if third else 0.0
        return pw * l1, pw * l2, pw * l3
    a = mu * phi
    b = (1.0 - mu) * phi
    if fam == BETA:
        l1 = phi * (digamma(b) - digamma(a) + math.log(y) - math.log1p(-y))
        l2 = -phi * phi * (trigamma(a) + trigamma(b))
        l3 = -phi * phi * phi * (tetragamma(a) - tetragamma(b)) if third else 0.0
        return pw * l1, pw * l2, pw * l3
    n = math.floor(pw + 0.5)            # BETABINOMIAL: successes k of n trials
    k = math.floor(pw * y + 0.5)
    l1 = phi * (digamma(k + a) - digamma(a) - digamma(n - k + b) + digamma(b))
    l2 = phi * phi * (trigamma(k + a) - trigamma(a) + trigamma(n - k + b) - trigamma(b))
    l3 = phi * phi * phi * (tetragamma(k + a) - tetragamma(a) - tetragamma(n - k + b)
                            + tetragamma(b)) if third else 0.0
    return l1, l2, l3


@njit(cache=True, error_model="numpy")
def loglik_mu_score(y, mu, pw, fd):
    """l1 of ``loglik_mu_derivs`` alone (PIRLS's score: digammas only, no tri- or
    tetragammas per row and iteration)."""
    if fd.zi:
        return zero_inflated_derivs(y, mu, pw, fd)[1]
    fam = fd.family
    phi = fd.params[PHI]
    if fam == NEGBIN1:
        s = mu / phi
        return pw * (digamma(y + s) - digamma(s) - math.log1p(phi)) / phi
    a = mu * phi
    b = (1.0 - mu) * phi
    if fam == BETA:
        return pw * phi * (digamma(b) - digamma(a) + math.log(y) - math.log1p(-y))
    n = math.floor(pw + 0.5)
    k = math.floor(pw * y + 0.5)
    return phi * (digamma(k + a) - digamma(a) - digamma(n - k + b) + digamma(b))


@njit(cache=True, error_model="numpy")
def saturated_unit_deviance(y, mu, wt, fd):
    """2 (max over m of l(y | m) - l(y | mu)) for the ``general_likelihood`` families
    at their phi (>= 0, 0 at the maximiser): the deviance residuals' square.  Their
    log-likelihood is concave in the mean (l2 < 0), so the maximiser is the root of the
    score, found by bisection on (0, 1) (beta, beta-binomial) or (0, 2y + 10) (NB1);
    a score of one sign all along (a zero count, no or all successes) puts it at the
    range's end."""
    counts = fd.family == NEGBIN1 or fd.zi
    lo, hi = 1e-12, (2.0 * y + 10.0 if counts else 1.0 - 1e-12)
    if loglik_mu_score(y, lo, wt, fd) <= 0.0:
        m = lo
    elif loglik_mu_score(y, hi, wt, fd) >= 0.0:
        m = hi
    else:
        for _ in range(100):
            m = 0.5 * (lo + hi)
            if loglik_mu_score(y, m, wt, fd) > 0.0:
                lo = m
            else:
                hi = m
            if hi - lo < 1e-13 * max(1.0, hi):
                break
        m = 0.5 * (lo + hi)
    d = 2.0 * (unit_loglik_var(y, m, wt, fd) - unit_loglik_var(y, mu, wt, fd))
    return max(d, 0.0)


@njit(cache=True, error_model="numpy")
def general_fisher_weight(mu, m1, pw, fd):
    """PIRLS's weight for a ``general_likelihood`` family: the beta's Fisher
    information pw phi^2 (psi'(a) + psi'(b)) m1^2 (its l2 does not depend on y);
    elsewhere the quasi-likelihood weight pw m1^2 / V(mu) with the family's variance
    (NB1 mu (1 + phi); the beta-binomial's proportion), a positive definite stand-in
    for the expected information (the modes are the likelihood's all the same: the
    score is exact)."""
    if fd.zi:       # the count part's weight, for the rows not structural zeros
        return (1.0 - pw) * m1 * m1 / count_variance(mu, fd)
    if fd.family == BETA:
        phi = fd.params[PHI]
        return pw * phi * phi * (trigamma(mu * phi) + trigamma((1.0 - mu) * phi)) * m1 * m1
    return pw * m1 * m1 / variance(mu, pw, fd)


@njit(cache=True, error_model="numpy")
def count_variance(mu, fd):
    """The count family's own variance (Poisson mu, NB2 mu + mu^2/theta, NB1
    mu (1 + phi)), without zero inflation."""
    fam = fd.family
    if fam == NEGBIN:
        return mu + mu * mu / fd.params[NB_THETA]
    if fam == NEGBIN1:
        return mu * (1.0 + fd.params[PHI])
    return mu


@njit(cache=True, error_model="numpy")
def count_loglik_derivs(y, mu, fd):
    """(l, l1, l2, l3): a count's log-likelihood in mu without its mu-free constant
    (``unit_loglik_const``), and its first three derivatives in mu, weight 1, for
    the count families zero inflation applies to (Poisson, NB2, NB1)."""
    fam = fd.family
    l = family_loglik_var(y, mu, 1.0, fd)
    if fam == NEGBIN:
        t = fd.params[NB_THETA]
        tm = t + mu
        return (l, y / mu - (y + t) / tm, -y / (mu * mu) + (y + t) / (tm * tm),
                2.0 * y / (mu * mu * mu) - 2.0 * (y + t) / (tm * tm * tm))
    if fam == NEGBIN1:
        l1, l2, l3 = family_mu_derivs(y, mu, 1.0, fd)
        return l, l1, l2, l3
    return l, y / mu - 1.0, -y / (mu * mu), 2.0 * y / (mu * mu * mu)      # POISSON


@njit(cache=True, error_model="numpy")
def zero_inflated_loglik(y, mu, p0, fd):
    """L of ``zero_inflated_derivs`` alone (the deviance's rows: no derivatives)."""
    l = family_loglik_var(y, mu, 1.0, fd)
    if y > 0.0:
        return math.log1p(-p0) + l
    if p0 <= 0.0:
        return l
    s = p0 + (1.0 - p0) * math.exp(l)
    if s > 1e-300:          # (one exp and one log; the log-sum-exp where it underflows)
        return math.log(s)
    lp, lc = math.log(p0), math.log1p(-p0) + l
    big = max(lp, lc)
    return big + math.log(math.exp(lp - big) + math.exp(lc - big))


@njit(cache=True, error_model="numpy")
def zero_inflated_derivs(y, mu, p0, fd):
    """(L, L1, L2, L3): one row's zero-inflated log-likelihood (its mu-free constant
    apart) and its derivatives in mu: a structural zero with probability p0, else a
    count of the family (``count_loglik_derivs``: l, a1, a2, a3).  y > 0:
    L = log(1 - p0) + l.  y = 0: L = log(p0 + (1 - p0) e^l), and with
    r = (1 - p0) e^l / e^L (the chance the zero is the count's),
    L1 = r a1, L2 = r a2 + r (1 - r) a1^2,
    L3 = r a3 + 3 r (1 - r) a1 a2 + r (1 - r) (1 - 2 r) a1^3."""
    l, a1, a2, a3 = count_loglik_derivs(y, mu, fd)
    if y > 0.0:
        return math.log1p(-p0) + l, a1, a2, a3
    if p0 <= 0.0:
        return l, a1, a2, a3
    e = (1.0 - p0) * math.exp(l)
    s = p0 + e
    if s > 1e-300:
        L, r = math.log(s), e / s
    else:                   # (the log-sum-exp where the sum underflows)
        lp, lc = math.log(p0), math.log1p(-p0) + l
        big = max(lp, lc)
        L = big + math.log(math.exp(lp - big) + math.exp(lc - big))
        r = math.exp(lc - L)
    q = r * (1.0 - r)
    return (L, r * a1, r * a2 + q * a1 * a1,
            r * a3 + 3.0 * q * a1 * a2 + q * (1.0 - 2.0 * r) * a1 * a1 * a1)


@njit(cache=True, error_model="numpy")
def is_canonical(fd):
    """The link is the family's canonical one: the observed information equals
    Fisher's weights for every row, and the two Laplace approximations coincide
    (but for the Gamma's dispersion)."""
    fam, link = fd.family, fd.link
    if fd.zi:
        return False
    return ((fam == POISSON and link == LOG) or (fam == BINOMIAL and link == LOGIT)
            or (fam == GAMMA and link == INVERSE) or (fam == GAUSSIAN and link == IDENTITY))


@njit(cache=True, error_model="numpy")
def variance_mu(mu, fd):
    """dV/dmu of ``variance``."""
    fam = fd.family
    if fam == POISSON:
        return 1.0
    if fam == BINOMIAL:
        return 1.0 - 2.0 * mu
    if fam == GAMMA:
        return 2.0 * mu
    if fam == NEGBIN:
        return 1.0 + 2.0 * mu / fd.params[NB_THETA]
    return 0.0


@njit(cache=True, error_model="numpy")
def variance_mu2(mu, fd):
    """d2V/dmu2 of ``variance``."""
    fam = fd.family
    if fam == BINOMIAL:
        return -2.0
    if fam == GAMMA:
        return 2.0
    if fam == NEGBIN:
        return 2.0 / fd.params[NB_THETA]
    return 0.0


@njit(cache=True, error_model="numpy")
def general_score_and_weight(y, mu, eta, pw, fd):
    """(d l/d eta, -d2 l/d eta2): one row's score and observed information for a
    ``general_likelihood`` family, from the first two derivatives in mu alone (PIRLS's
    working residual and weight; ``observed_information`` adds the third)."""
    link = fd.link
    m1 = mu if link == LOG else mu_eta(eta, link)
    l1, l2, _ = loglik_mu_derivs(y, mu, pw, fd, False)
    return l1 * m1, -(l2 * m1 * m1 + l1 * mu_eta2(eta, link))


@njit(cache=True, error_model="numpy")
def row_terms_general(y, mu, eta, pw, fd, out):
    """Per row of a ``general_likelihood`` family: out[0] = A_i = -2 its
    log-likelihood (constants included), out[1] = its score d l/d eta (PIRLS's
    working residual), out[2] = its observed information (the exact determinant's
    weight): what a parameter of the rows' log-likelihoods moves
    (``gradient.row_parameter_derivative``)."""
    for i in range(y.shape[0]):
        out[0, i] = -2.0 * (unit_loglik_const(y[i], pw[i], fd)
                            + unit_loglik_var(y[i], mu[i], pw[i], fd))
        out[1, i], out[2, i] = general_score_and_weight(y[i], mu[i], eta[i], pw[i], fd)


@njit(cache=True, error_model="numpy")
def zero_inflated_p0_partials(y, mu, eta, p0, fd, out):
    """Per zero-inflated row, the derivatives in its p0 at fixed eta of
    ``row_terms_general``'s three: out[0] = dA/dp0, out[1] = d score/dp0,
    out[2] = d weight/dp0.  y > 0: A = -2 (log(1 - p0) + l), the rest free of p0.
    y = 0, with f = P(count = 0), S = p0 + (1 - p0) f, r = (1 - p0) f / S:
    dL/dp0 = (1 - f)/S, dr/dp0 = -f/S^2, dL1 = a1 dr, dL2 = dr (a2 + (1 - 2r) a1^2)
    (``zero_inflated_derivs``), then the chain rule through the link."""
    link = fd.link
    for i in range(y.shape[0]):
        p = p0[i]
        if y[i] > 0.0:
            out[0, i] = 2.0 / (1.0 - p)
            out[1, i] = 0.0
            out[2, i] = 0.0
            continue
        l, a1, a2, _ = count_loglik_derivs(0.0, mu[i], fd)
        f = math.exp(l)
        S = p + (1.0 - p) * f
        r = (1.0 - p) * f / S
        dr = -f / (S * S)
        dL1 = a1 * dr
        dL2 = dr * (a2 + (1.0 - 2.0 * r) * a1 * a1)
        m1 = mu[i] if link == LOG else mu_eta(eta[i], link)
        out[0, i] = -2.0 * (1.0 - f) / S
        out[1, i] = m1 * dL1
        out[2, i] = -(m1 * m1 * dL2 + mu_eta2(eta[i], link) * dL1)


@njit(cache=True, error_model="numpy")
def observed_information(y, mu, eta, pw, fd):
    """(w_obs, dw_obs/deta): one row's observed information -d2 l/deta2 and its
    derivative in eta, l the row's log-likelihood kernel (an exponential family
    with variance V(mu) and prior weight ``pw``; the Gamma's dispersion is in
    ``pw``, see ``devfun``).  With l1 = pw (y - mu)/V, l2 and l3 its first and
    second mu-derivatives, and m1, m2, m3 the inverse link's derivatives:
    w_obs = -(l2 m1^2 + l1 m2),  dw_obs/deta = -(l3 m1^3 + 3 l2 m1 m2 + l1 m3).
    R's clamped mu_eta (as the Fisher weights) with the unclamped m2, m3
    (``mu_eta2``, ``mu_eta3``)."""
    link = fd.link
    m1 = mu if link == LOG else mu_eta(eta, link)
    m2 = mu_eta2(eta, link)
    m3 = mu_eta3(eta, link)
    if general_likelihood(fd):
        l1, l2, l3 = loglik_mu_derivs(y, mu, pw, fd)
        return (-(l2 * m1 * m1 + l1 * m2),
                -(l3 * m1 * m1 * m1 + 3.0 * l2 * m1 * m2 + l1 * m3))
    vr = variance(mu, pw, fd)
    q1 = variance_mu(mu, fd) / vr       # V'/V and V''/V: no power of V is formed (a
    q2 = variance_mu2(mu, fd) / vr      # Gamma mean of 1e100 has V^2 = inf)
    r = y - mu
    l1 = pw * r / vr
    l2 = -pw * (1.0 + r * q1) / vr
    l3 = pw * (2.0 * q1 - r * (q2 - 2.0 * q1 * q1)) / vr
    return (-(l2 * m1 * m1 + l1 * m2),
            -(l3 * m1 * m1 * m1 + 3.0 * l2 * m1 * m2 + l1 * m3))


@njit(cache=True, error_model="numpy")
def _ylogy(y, mu):
    return y * math.log(y / mu) if y > 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def unit_deviance(y, mu, wt, fd):
    """One observation's deviance residual (squared), as R's ``dev.resids``."""
    fam = fd.family
    if fd.zi:       # PIRLS's criterion: -2 log-likelihood (its mu-free part apart)
        return -2.0 * zero_inflated_loglik(y, mu, wt, fd)
    if fam == POISSON:
        r = mu * wt
        if y > 0.0:
            r = wt * (y * math.log(y / mu) - (y - mu))
        return 2.0 * r
    if fam == BINOMIAL:
        return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))
    if fam == GAMMA:
        return -2.0 * wt * (math.log(y / mu if y > 0.0 else 1.0) - (y - mu) / mu)
    if fam == NEGBIN:
        t = fd.params[NB_THETA]
        # log1p: (y + t)/(mu + t) is close to 1 when theta is large (the Poisson limit)
        return 2.0 * wt * (_ylogy(y, mu) - (y + t) * math.log1p((y - mu) / (mu + t)))
    if fam >= NEGBIN1:
        # PIRLS's criterion: 2 (l(y | mu = y) - l(y | mu)), the deviance up to a
        # constant per row (the likelihood at fixed phi is not maximised at mu = y for
        # these families: ``saturated_unit_deviance`` is the deviance itself)
        sat = min(max(y, 1e-8), 1.0 - 1e-8) if fam != NEGBIN1 else max(y, 1e-8)
        return 2.0 * (unit_loglik_var(y, sat, wt, fd) - unit_loglik_var(y, mu, wt, fd))
    return wt * (y - mu) * (y - mu)


@njit(cache=True, error_model="numpy")
def unit_loglik(y, mu, wt, fd):
    """Log density of one observation with its normalising constant (families
    without a free dispersion).  For the binomial, ``y`` is a proportion and ``wt``
    the number of trials, as R's ``binomial()$aic`` reads them."""
    return unit_loglik_const(y, wt, fd) + unit_loglik_var(y, mu, wt, fd)


@njit(cache=True, error_model="numpy")
def gamma_loglik_sum(y, mu, wt, disp):
    """sum(wt * dgamma(y, 1/disp, scale = mu*disp, log = TRUE))."""
    a = 1.0 / disp
    s = 0.0
    la = math.lgamma(a)
    for i in range(y.shape[0]):
        sc = mu[i] * disp
        s += wt[i] * (-la - a * math.log(sc) + (a - 1.0) * math.log(y[i]) - y[i] / sc)
    return s


@njit(cache=True, error_model="numpy")
def conditional_aic(y, mu, wt, fd):
    """The family's ``aic`` term: -2 * conditional log-likelihood, constants included.

    This is the ``A`` of lme4's Laplace deviance.  For the Gamma family the
    dispersion is estimated from the summed deviance residuals (``dev/sum(wt)``) and
    R's ``+ 2`` is kept, exactly as ``Gamma()$aic`` does.
    """
    n = y.shape[0]
    if fd.family == GAMMA:
        dev = 0.0
        sw = 0.0
        for i in range(n):
            dev += unit_deviance(y[i], mu[i], wt[i], fd)
            sw += wt[i]
        return -2.0 * gamma_loglik_sum(y, mu, wt, dev / sw) + 2.0
    s = 0.0
    for i in range(n):
        s += unit_loglik(y[i], mu[i], wt[i], fd)
    return -2.0 * s


_LINKINV, _LINKFUN, _MU_ETA, _VARIANCE, _DEV_RESIDS, _LOG_DENSITY = 0, 1, 2, 3, 4, 5


@njit(cache=True, error_model="numpy")
def _elementwise(op, fd, x, y, wt, out):
    """The vectorised family functions in one kernel (one compilation, not six):
    ``op`` picks linkinv(x), linkfun(x), mu_eta(x), variance(x, wt),
    unit_deviance(y, x, wt) or unit_logdensity(y, x, wt)."""
    link = fd.link
    for i in range(x.shape[0]):
        if op == _LINKINV:
            out[i] = linkinv(x[i], link)
        elif op == _LINKFUN:
            out[i] = linkfun(x[i], link)
        elif op == _MU_ETA:
            out[i] = mu_eta(x[i], link)
        elif op == _VARIANCE:
            out[i] = variance(x[i], wt[i], fd)
        elif op == _DEV_RESIDS:
            out[i] = (saturated_unit_deviance(y[i], x[i], wt[i], fd) if general_likelihood(fd)
                      else unit_deviance(y[i], x[i], wt[i], fd))
        else:
            out[i] = unit_logdensity(y[i], x[i], wt[i], fd)


# ---- the Python-facing objects -----------------------------------------------------

@dataclass(frozen=True)
class FamilySpec:
    """One entry of the family registry: everything the package outside this module
    may ask about a family, so that no other module compares family names.

    ``response`` is what the response must be: ``"counts"`` (whole numbers >= 0),
    ``"binomial"`` (0/1 or a proportion with trials), ``"positive"`` (> 0) or ``"real"``.
    """

    name: str                    # canonical name (what ``Family.name`` holds)
    code: int                    # the kernels' integer code
    label: str                   # R's name in printed summaries
    default_link: str
    links: tuple                 # links the family accepts (the API and GLMM/companions)
    aliases: tuple = ()          # further names the Python API accepts
    response: str = "real"
    has_dispersion: bool = False     # lme4 estimates a scale (Gamma, Gaussian)
    has_theta: bool = False          # an extra shape parameter (NB2's theta)
    log_ratio_name: str = "exp(Est)"  # the name of exp(estimate) under the log link
    function_links: tuple = ()       # the links the family's own sheet function offers
    #: its parameters besides the linear predictor, (name, how the fit estimates it)
    parameters: tuple = ()
    #: what its parameter phi is called (NB1, beta, beta-binomial; "" elsewhere)
    phi_name: str = ""
    #: the family whose fit starts phi's search ("": the family itself, at a moment phi)
    start_family: str = ""
    #: zero inflation applies (the count families: glmmTMB's ``ziformula``)
    zero_inflatable: bool = False


# How the families' extra parameters are estimated (as lme4 does; the true-likelihood
# issue makes the dispersion a maximum-likelihood estimate too)
DISPERSION_BY_MOMENTS = ("maximum likelihood with the other parameters under the exact "
                         "Laplace (engine/family_parameter.py); laplace='lme4': lme4's "
                         "moment estimate (Pearson chi-square + |u|^2) / n at the optimum "
                         "(engine/covariance.sigma), not maximised")
THETA_BY_ML = ("maximum likelihood: the Laplace log-likelihood maximised over "
               "log(theta) jointly with the other parameters (engine/family_parameter.py)")

PHI_BY_ML = ("maximum likelihood: the exact Laplace log-likelihood maximised over log(phi) "
             "jointly with the other parameters (engine/family_parameter.py)")

# The registry, in the order the worksheet functions list the families.
FAMILY_SPECS = (
    FamilySpec("poisson", POISSON, "poisson", "log", ("log", "identity", "sqrt"),
               response="counts", log_ratio_name="IRR", zero_inflatable=True),
    FamilySpec("binomial", BINOMIAL, "binomial", "logit",
               ("logit", "probit", "cloglog", "log"), aliases=("bernoulli",),
               response="binomial", function_links=("logit", "probit", "cloglog")),
    FamilySpec("gamma", GAMMA, "Gamma", "inverse", ("inverse", "log", "identity"),
               response="positive", has_dispersion=True,
               parameters=(("dispersion", DISPERSION_BY_MOMENTS),)),
    FamilySpec("negbin", NEGBIN, "Negative Binomial", "log", ("log", "identity", "sqrt"),
               aliases=("negative_binomial", "negativebinomial", "nb", "nb2"),
               response="counts", has_theta=True, log_ratio_name="IRR",
               parameters=(("theta", THETA_BY_ML),), zero_inflatable=True),
    FamilySpec("nb1", NEGBIN1, "nbinom1", "log", ("log",),
               aliases=("negbin1", "negative_binomial1", "nbinom1"), response="counts",
               log_ratio_name="IRR", phi_name="NB1 dispersion", start_family="poisson",
               parameters=(("phi", PHI_BY_ML + " (variance mu (1 + phi))"),),
               zero_inflatable=True),
    FamilySpec("beta", BETA, "beta", "logit", ("logit", "probit", "cloglog"),
               response="unit", phi_name="beta precision",
               parameters=(("phi", PHI_BY_ML + " (y ~ Beta(mu phi, (1 - mu) phi))"),)),
    FamilySpec("betabinomial", BETABINOMIAL, "betabinomial", "logit",
               ("logit", "probit", "cloglog"), aliases=("beta_binomial", "betabinom"),
               response="binomial", phi_name="beta-binomial precision",
               start_family="binomial",
               parameters=(("phi", PHI_BY_ML + " (the success probability ~ Beta(mu phi, "
                            "(1 - mu) phi))"),)),
    FamilySpec("gaussian", GAUSSIAN, "gaussian", "identity", ("identity", "log", "inverse"),
               aliases=("normal",), has_dispersion=True,
               parameters=(("residual variance", "profiled out of the exact REML/ML "
                            "deviance (engine/lmm.py)"),)),
)
_FAMILIES = {s.name: s for s in FAMILY_SPECS}
_ALIASES = {a: s.name for s in FAMILY_SPECS for a in s.aliases}

# the words the worksheet functions accept (their "must be one of" lists)
SHEET_FAMILIES = tuple(s.name for s in FAMILY_SPECS)
SHEET_LINKS = tuple(LINK_CODES)


def family_spec(name) -> FamilySpec | None:
    """The registry entry of a family name or alias (any case); None if unknown."""
    if not isinstance(name, str):
        return None
    key = name.lower()
    return _FAMILIES.get(_ALIASES.get(key, key))


def estimates_theta(family) -> bool:
    """True for a family *name* whose extra parameter (NB theta) the fit estimates:
    a name such as "negbin" or "nb" (a :class:`Family` object carries a fixed theta)."""
    spec = family_spec(family)
    return spec is not None and spec.has_theta


def function_links(name) -> tuple:
    """The links a family's own worksheet function offers (GLMM_BINOMIAL's)."""
    return _FAMILIES[name].function_links


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


@dataclass(frozen=True)
class Family:
    """A GLM family with its link, e.g. ``Family("binomial", "probit")``.

    ``nb_theta`` is the NB2 shape (variance mu + mu^2/theta) for ``negbin``.
    """

    name: str
    link: str = ""
    nb_theta: float = 1.0
    #: the Laplace approximation a GLMM of this family is fitted by (``LAPLACE_MODES``)
    laplace: str = "exact"
    #: the Gamma's dispersion phi (shape 1/phi) where it is a parameter of the
    #: likelihood (the exact Laplace's): None = estimated by maximum likelihood (glmer),
    #: a number = held there; lme4's Laplace estimates it from the deviance instead
    dispersion: float | None = None
    #: NB1's dispersion, the beta's and beta-binomial's precision (``PHI``): None =
    #: estimated by maximum likelihood (glmer), a number = held there
    phi: float | None = None
    #: zero inflation (Poisson, NB2, NB1; glmmTMB's ``ziformula``): each row is a
    #: structural zero with probability p0, logit(p0) = the zero-inflation model's
    #: columns (``design.zi_X``) times ``zi_coef``
    zero_inflated: bool = False
    #: those coefficients: None = estimated by maximum likelihood (glmer), a tuple =
    #: held there
    zi_coef: tuple | None = None

    def __post_init__(self):
        spec = family_spec(self.name)
        if spec is None:
            raise ValueError(f"unknown family '{self.name}' (use one of: "
                             f"{', '.join(sorted(_FAMILIES))})")
        key = spec.name
        object.__setattr__(self, "name", key)
        allowed = spec.links
        link = (self.link or spec.default_link).lower()
        if link not in allowed:
            raise ValueError(f"link '{link}' is not available for the {key} family "
                             f"(use one of: {', '.join(allowed)})")
        object.__setattr__(self, "link", link)
        mode = str(self.laplace).lower()
        if mode not in LAPLACE_MODES:
            raise ValueError(f"laplace must be one of: {', '.join(LAPLACE_MODES)} "
                             f"(not '{self.laplace}')")
        object.__setattr__(self, "laplace", mode)
        if self.zero_inflated and not spec.zero_inflatable:
            raise ValueError(f"zero inflation applies to count families (poisson, negbin, "
                             f"nb1), not to the {key} family")
        if self.zi_coef is not None:
            object.__setattr__(self, "zi_coef", tuple(float(c) for c in self.zi_coef))

    @property
    def spec(self) -> FamilySpec:
        """The registry entry."""
        return _FAMILIES[self.name]

    # codes for the kernels
    @property
    def code(self) -> int:
        return self.spec.code

    @property
    def link_code(self) -> int:
        return LINK_CODES[self.link]

    def kernel_data(self, dispersion: float | None = None) -> FamilyData:
        """The family as the kernels take it: codes, parameters (``dispersion``,
        default the family's own, matters only to ``unit_logdensity``, its
        derivatives and the exact Laplace's Gamma) and the Laplace mode."""
        disp = (1.0 if self.dispersion is None else self.dispersion) \
            if dispersion is None else dispersion
        phi = 1.0 if self.phi is None else self.phi
        return FamilyData(self.code, self.link_code,
                          (float(self.nb_theta), float(disp), float(phi)), self.exact,
                          bool(self.zero_inflated))

    @property
    def exact(self) -> bool:
        """Fitted by the exact Laplace approximation (``laplace == "exact"``)."""
        return self.laplace == "exact"

    @property
    def has_phi(self) -> bool:
        """A parameter phi besides the linear predictor (NB1, beta, beta-binomial),
        in a log-likelihood that is not an exponential family's: the exact Laplace
        only (lme4 has none of them)."""
        return bool(self.spec.phi_name)

    @property
    def count_family(self) -> Family:
        """The family without its zero inflation (itself when it has none)."""
        return dataclasses.replace(self, zero_inflated=False, zi_coef=None) \
            if self.zero_inflated else self

    @property
    def canonical(self) -> bool:
        """The canonical link: observed information = Fisher's weights."""
        return bool(is_canonical(self.kernel_data()))

    @property
    def laplace_differs(self) -> bool:
        """The two Laplace approximations give different fits: a non-canonical link,
        or the Gamma's dispersion (a likelihood parameter or lme4's plug-in)."""
        return not self.is_gaussian and (not self.canonical or self.code == GAMMA)

    @property
    def likelihood_dispersion(self) -> bool:
        """The dispersion phi is a parameter of the likelihood (the exact Laplace's
        Gamma): estimated by maximum likelihood with the others when ``dispersion`` is
        None, held at it otherwise."""
        return self.exact and self.code == GAMMA

    @property
    def parameters(self) -> tuple:
        """The family's parameters besides the linear predictor, as (name, how the
        fit estimates it): NB2's theta, the Gamma dispersion, the LMM's residual
        variance; () for Poisson and binomial."""
        return self.spec.parameters

    @property
    def has_dispersion(self) -> bool:
        """True where lme4 estimates a scale (Gamma, Gaussian)."""
        return self.spec.has_dispersion

    @property
    def has_theta(self) -> bool:
        """True for the negative binomial: an extra shape parameter theta."""
        return self.spec.has_theta

    @property
    def is_binomial(self) -> bool:
        """The response is 0/1 or a proportion of ``weights`` trials."""
        return self.spec.response == "binomial"

    @property
    def counts_response(self) -> bool:
        """The response must be whole counts >= 0 (Poisson, negative binomial)."""
        return self.spec.response == "counts"

    @property
    def positive_response(self) -> bool:
        """The response must be > 0 (Gamma)."""
        return self.spec.response == "positive"

    @property
    def unit_response(self) -> bool:
        """The response must lie strictly between 0 and 1 (beta)."""
        return self.spec.response == "unit"

    @property
    def is_gaussian(self) -> bool:
        """A normal response: fitted as a linear mixed model (``lmer``)."""
        return self.spec.response == "real"

    @property
    def is_log_link(self) -> bool:
        return self.link == "log"

    @property
    def is_logit_link(self) -> bool:
        return self.link == "logit"

    @property
    def ratio_name(self) -> str | None:
        """What exp(estimate) is called in the blocks: IRR (log-link counts), OR
        (logit), exp(Est) (other log links); None where exp() means nothing."""
        if self.is_log_link:
            return self.spec.log_ratio_name
        if self.is_logit_link:
            return "OR"
        return None

    @property
    def label(self) -> str:
        name = self.spec.label
        if self.zero_inflated:
            name = f"zero-inflated {name}"
        if self.has_theta:
            name = f"{name}({self.nb_theta:.4g})"
        if self.has_phi and self.phi is not None:
            name = f"{name}(phi = {self.phi:.4g})"
        return f"{name}  ( {self.link} )"

    def response_problem(self, y, w):
        """The first way the response breaks the family's rules (whole counts >= 0,
        a proportion of whole successes, a positive value), as (mask of the
        offending rows, message with a ``{rows}`` field for them); None when it
        follows them.  ``w`` are the prior weights (binomial: the trials)."""
        if self.counts_response:
            if (y < 0).any():
                return y < 0, "counts must not be negative ({rows})"
            frac = np.abs(y - np.round(y)) > 1e-8 * np.maximum(1.0, np.abs(y))
            if frac.any():
                return frac, "counts must be whole numbers ({rows})"
        elif self.is_binomial:
            bad = (y < 0) | (y > 1)
            if bad.any():
                return bad, ("binomial response must be a proportion in [0, 1] or 0/1 "
                             "({rows}); give counts of successes with trials "
                             "(weights) or cbind(successes, failures)")
            k = y * w
            frac = np.abs(k - np.round(k)) > 1e-6 * np.maximum(1.0, np.abs(k))
            if frac.any():
                return frac, "successes (proportion x trials) must be whole numbers ({rows})"
        elif self.positive_response:
            if (y <= 0).any():
                return y <= 0, "Gamma response must be positive ({rows})"
        elif self.unit_response:
            bad = (y <= 0) | (y >= 1)
            if bad.any():
                return bad, ("beta response must be a proportion strictly between 0 and 1 "
                             "({rows}); for counts of successes use the binomial or "
                             "betabinomial family")
        return None

    def mustart(self, y, w):
        """R's mustart: where the GLM iterations begin."""
        if self.is_binomial:
            return (w * y + 0.5) / (w + 1.0)
        if self.counts_response:
            return y + 0.1
        if self.unit_response:
            return np.clip(y, 1e-4, 1.0 - 1e-4)
        return np.maximum(y, 1e-8) if self.positive_response else y

    def simulate(self, mu, wt, rng, dispersion: float = 1.0) -> np.ndarray:
        """A response drawn given the means ``mu`` (R's ``family$simulate``), on the
        scale the fit takes it: counts (Poisson; NB2 with this object's theta), or
        for the binomial the proportion of successes out of ``wt`` trials (whole
        numbers).  ``rng`` a numpy Generator.  The families with a dispersion phi
        (``dispersion``: the fit's sigma^2) draw with variance phi V(mu) / wt: the
        Gamma with shape wt / phi (lme4's simulate uses shape sigma * wt, which has
        that variance only when sigma = 1), the Gaussian mu + sqrt(phi / wt) N(0, 1).
        Zero-inflated: ``mu`` the count's mean, ``wt`` each row's p0; the count drawn,
        then a structural zero with probability p0."""
        mu = _f64(mu)
        if self.zero_inflated:
            counts = self.count_family.simulate(mu, np.ones(mu.shape), rng)
            zero = rng.random(mu.shape) < np.broadcast_to(_f64(wt), mu.shape)
            return np.where(zero, 0.0, counts)
        phi = None if self.phi is None else float(self.phi)
        if self.code == BETABINOMIAL:
            n = np.rint(_f64(wt)).astype(np.int64)
            p = rng.beta(mu * phi, (1.0 - mu) * phi)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(n > 0, rng.binomial(np.maximum(n, 0), p) / np.maximum(n, 1),
                                0.0)
        if self.code == NEGBIN1:
            return rng.negative_binomial(mu / phi, 1.0 / (1.0 + phi)).astype(np.float64)
        if self.code == BETA:
            return rng.beta(mu * phi, (1.0 - mu) * phi)
        if self.is_binomial:
            n = np.rint(_f64(wt)).astype(np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(n > 0, rng.binomial(np.maximum(n, 0), mu) / np.maximum(n, 1),
                                0.0)
        if self.has_theta:
            th = float(self.nb_theta)
            return rng.negative_binomial(th, th / (th + mu)).astype(np.float64)
        if self.counts_response:
            return rng.poisson(mu).astype(np.float64)
        if self.positive_response:
            shape = _f64(wt) / float(dispersion)
            return rng.gamma(shape, mu / shape)
        return mu + np.sqrt(float(dispersion) / _f64(wt)) * rng.standard_normal(mu.shape)

    def cdf_bounds(self, y, mu, wt, dispersion: float = 1.0) -> tuple:
        """(P(Y < y), P(Y <= y)) given the means ``mu``, for the distribution
        ``simulate`` draws from (the same scale and parameters): the two agree for
        a continuous family; for counts and binomial successes they bracket the
        randomised quantile residual (Dunn and Smyth, 1996).  Zero-inflated: ``wt``
        each row's p0, P(Y <= k) = p0 + (1 - p0) F(k)."""
        y, mu, wt = _f64(y), _f64(mu), np.broadcast_to(_f64(wt), _f64(mu).shape)
        if self.zero_inflated:
            lo, up = self.count_family.cdf_bounds(y, mu, np.ones(mu.shape))
            return np.where(y > 0, wt, 0.0) + (1.0 - wt) * lo, wt + (1.0 - wt) * up
        phi = None if self.phi is None else float(self.phi)
        if self.is_binomial:
            n = np.rint(wt)
            k = np.rint(y * n)
            dist = (stats.betabinom(n, mu * phi, (1.0 - mu) * phi)
                    if self.code == BETABINOMIAL else stats.binom(n, mu))
        elif self.counts_response:
            k = np.rint(y)
            th = float(self.nb_theta)
            if self.code == NEGBIN1:
                dist = stats.nbinom(mu / phi, 1.0 / (1.0 + phi))
            else:
                dist = stats.nbinom(th, th / (th + mu)) if self.has_theta else stats.poisson(mu)
        else:
            if self.unit_response:
                upper = stats.beta.cdf(y, mu * phi, (1.0 - mu) * phi)
            elif self.positive_response:
                shape = wt / float(dispersion)
                upper = stats.gamma.cdf(y, shape, scale=mu / shape)
            else:
                upper = stats.norm.cdf(y, mu, np.sqrt(float(dispersion) / wt))
            return upper, upper
        return dist.cdf(k - 1), dist.cdf(k)

    # vectorised versions of the kernels (R's family$... functions)
    def _row_weights(self, wt, shape) -> np.ndarray:
        """The rows' weights as the kernels take them: the prior weights (default 1)
        or, zero-inflated, each row's structural-zero probability p0 (required)."""
        if wt is None:
            if self.zero_inflated:
                raise ValueError("a zero-inflated family needs each row's structural-zero "
                                 "probability p0 (as wt)")
            return np.ones(shape)
        return np.broadcast_to(_f64(wt), shape)

    def _apply(self, op, x, y=None, wt=None):
        x = _f64(x)
        out = np.empty_like(x)
        flat = x.ravel()
        y = flat if y is None else _f64(y).ravel()
        wt = flat if wt is None else _f64(wt).ravel()
        _elementwise(op, self.kernel_data(), flat, y, wt, out.ravel())
        return out

    def linkinv(self, eta):
        return self._apply(_LINKINV, eta)

    def linkfun(self, mu):
        return self._apply(_LINKFUN, mu)

    def mu_eta(self, eta):
        return self._apply(_MU_ETA, eta)

    def variance(self, mu, wt=None):
        """V(mu), as R's ``family$variance(mu)``; ``wt`` are the rows' prior weights
        (binomial: trials; default 1), which a family's variance may depend on."""
        mu = _f64(mu)
        return self._apply(_VARIANCE, mu, wt=self._row_weights(wt, mu.shape))

    def dev_resids(self, y, mu, wt=None):
        """Squared deviance residuals, as R's ``family$dev.resids(y, mu, wt)``."""
        mu = _f64(mu)
        y = np.broadcast_to(_f64(y), mu.shape)
        return self._apply(_DEV_RESIDS, mu, y, self._row_weights(wt, mu.shape))

    def log_density(self, y, mu, wt=None, dispersion: float | None = None):
        """log f(y | mu) per row with its constants (``unit_logdensity``: a
        binomial ``y`` is a proportion of ``wt`` trials; Gamma and Gaussian at
        ``dispersion``, default the family's own or 1; a Gamma row of weight ``wt`` counts as ``wt`` copies, wt x
        its log density).  P(Y = 0) of a count is ``exp(log_density(0, mu))``.
        Zero-inflated: ``wt`` is each row's p0 and ``mu`` the count's mean."""
        mu = _f64(mu)
        y = np.ascontiguousarray(np.broadcast_to(_f64(y), mu.shape))
        wt = self._row_weights(wt, mu.shape)
        x = mu.ravel()
        out = np.empty_like(x)
        _elementwise(_LOG_DENSITY, self.kernel_data(dispersion), x, y.ravel(),
                     np.ascontiguousarray(wt).ravel(), out)
        return out.reshape(mu.shape)

    def aic(self, y, mu, wt=None) -> float:
        """-2 x the conditional log-likelihood with constants (R's ``family$aic``
        up to its parameter-count term, which R leaves to ``logLik``)."""
        y = _f64(y)
        wt = np.ones_like(y) if wt is None else _f64(wt)
        return float(conditional_aic(y, _f64(mu), wt, self.kernel_data()))


#: the zero-inflation linear predictor is held within +-ZI_ETA_LIMIT: p0 stays
#: representable away from 1 (log(1 - p0) finite) and 0 (a zero's log-likelihood is
#: the count's to rounding below e^-40)
ZI_ETA_LIMIT = 40.0


def zero_probability(zi_X, zi_coef) -> np.ndarray:
    """Each row's structural-zero probability p0 = expit(zi_X zi_coef), the
    zero-inflation model's columns ``zi_X`` (``design.zi_X``)."""
    eta = np.clip(np.asarray(zi_X, float) @ np.asarray(zi_coef, float),
                  -ZI_ETA_LIMIT, ZI_ETA_LIMIT)
    return np.ascontiguousarray(special.expit(eta))


#: the words naming a zero-inflated count family (glmmTMB's: ``zipoisson``; ``zinb``
#: for NB2, ``zinb1`` for NB1), optionally followed by the zero-inflation formula
#: ("zinb ~ YEAR"; default ``~1``): what the worksheet's ``family`` argument takes
ZERO_INFLATED_WORDS = {"zipoisson": "poisson", "zinb": "negbin", "zinb2": "negbin",
                       "zinegbin": "negbin", "zinb1": "nb1"}


def split_zero_inflation(text):
    """(family name, ziformula or None) of a family's text: "zinb" -> ("negbin",
    "~1"), "zipoisson ~ x + f" -> ("poisson", "~ x + f"), "gamma" -> ("gamma",
    None).  The formula is returned as text (parsed by the design, never evaluated);
    a text that is not a string is returned as it is, with None."""
    if not isinstance(text, str):
        return text, None
    word, tilde, rest = text.partition("~")
    key = word.strip().lower()
    if key in ZERO_INFLATED_WORDS:
        return ZERO_INFLATED_WORDS[key], ("~" + rest if tilde else "~1")
    return text, None


def make_family(family, link=None) -> Family:
    """Accept a name (``"poisson"``), a :class:`Family`, or ``NegativeBinomial2(theta)``."""
    if isinstance(family, Family):
        if link and link.lower() != family.link:
            return dataclasses.replace(family, link=link)
        return family
    if not isinstance(family, str):
        raise TypeError("family must be a name such as 'poisson' or a Family object")
    return Family(family, link or "")


@njit(cache=True, error_model="numpy")
def unit_loglik_const(y, wt, fd):
    """The mu-free part of ``unit_loglik`` (lgamma terms).  The exact Laplace's
    Gamma (``fd.exact``): the shape's terms at dispersion ``params[DISPERSION]`` with
    the prior weight ``wt``; its mu part (``unit_loglik_var``) takes wt / phi.
    Zero-inflated: the count family's, weight 1 (``wt`` is the row's p0; a zero
    count's constant is 0 in the three count families)."""
    fam = fd.family
    if fd.zi:
        wt = 1.0
    if fam == POISSON:
        return -wt * math.lgamma(y + 1.0)
    if fam == BINOMIAL:
        m = math.floor(wt + 0.5)
        k = math.floor(wt * y + 0.5)
        if m <= 0.0:
            return 0.0
        return math.lgamma(m + 1.0) - math.lgamma(k + 1.0) - math.lgamma(m - k + 1.0)
    if fam == NEGBIN:
        t = fd.params[NB_THETA]
        return wt * (math.lgamma(y + t) - math.lgamma(t) - math.lgamma(y + 1.0))
    if fam == GAMMA and fd.exact:
        a = 1.0 / fd.params[DISPERSION]
        return wt * (-math.lgamma(a) + a * math.log(a) + (a - 1.0) * math.log(y))
    if fam == NEGBIN1:
        phi = fd.params[PHI]
        return wt * (-math.lgamma(y + 1.0) + y * (math.log(phi) - math.log1p(phi)))
    if fam == BETA:
        return wt * (math.lgamma(fd.params[PHI]) - math.log(y) - math.log1p(-y))
    if fam == BETABINOMIAL:
        phi = fd.params[PHI]
        n = math.floor(wt + 0.5)
        k = math.floor(wt * y + 0.5)
        return (math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)
                + math.lgamma(phi) - math.lgamma(n + phi))
    return 0.0


@njit(cache=True, error_model="numpy")
def unit_loglik_var(y, mu, wt, fd):
    """``unit_loglik`` minus ``unit_loglik_const``: the part that depends on mu
    (zero-inflated: log(1 - p0) + the count's for y > 0, the whole
    log(p0 + (1 - p0) f(0 | mu)) for a zero, ``wt`` being p0)."""
    if fd.zi:
        return zero_inflated_loglik(y, mu, wt, fd)
    return family_loglik_var(y, mu, wt, fd)


@njit(cache=True, error_model="numpy")
def family_loglik_var(y, mu, wt, fd):
    """``unit_loglik_var`` of the family itself, zero inflation aside (the count's
    part of a zero-inflated row, with weight 1)."""
    fam = fd.family
    if fam == POISSON:
        return wt * (y * math.log(mu) - mu) if y > 0.0 else -wt * mu
    if fam == BINOMIAL:
        n = math.floor(wt + 0.5)
        k = math.floor(wt * y + 0.5)
        r = 0.0
        if n > 0.0:
            if k > 0.0:
                r += k * math.log(mu)
            if n - k > 0.0:
                r += (n - k) * math.log(1.0 - mu)
        return r
    if fam == NEGBIN:
        t = fd.params[NB_THETA]
        r = -t * math.log1p(mu / t)
        if y > 0.0:
            r += y * math.log(mu / (t + mu))
        return wt * r
    if fam == GAMMA and fd.exact:
        # the exact Laplace's kernels carry the shape in the weight: wt = pw / phi
        return -wt * (math.log(mu) + y / mu)
    if fam == NEGBIN1:
        phi = fd.params[PHI]
        s = mu / phi
        return wt * (math.lgamma(y + s) - math.lgamma(s) - s * math.log1p(phi))
    if fam == BETA:
        phi = fd.params[PHI]
        a = mu * phi
        b = (1.0 - mu) * phi
        return wt * (-math.lgamma(a) - math.lgamma(b) + a * math.log(y) + b * math.log1p(-y))
    if fam == BETABINOMIAL:
        phi = fd.params[PHI]
        n = math.floor(wt + 0.5)
        k = math.floor(wt * y + 0.5)
        return _lbeta_terms(k, n, mu * phi, (1.0 - mu) * phi)
    return 0.0


@njit(cache=True, error_model="numpy")
def loglik_constant(y, wt, fd):
    """The part of sum(unit_loglik) that does not depend on mu (lgamma terms),
    computed once per model so each deviance evaluation skips it."""
    s = 0.0
    for i in range(y.shape[0]):
        s += unit_loglik_const(y[i], wt[i], fd)
    return s


@njit(cache=True, error_model="numpy")
def conditional_aic_fast(y, mu, wt, fd, const):
    """``conditional_aic`` with the mu-free part given (``loglik_constant``)."""
    fam = fd.family
    if fam != POISSON and fam != BINOMIAL and fam != NEGBIN and fam < NEGBIN1 \
            and not (fam == GAMMA and fd.exact):
        return conditional_aic(y, mu, wt, fd)
    s = const
    for i in range(y.shape[0]):
        s += unit_loglik_var(y[i], mu[i], wt[i], fd)
    return -2.0 * s


@njit(cache=True, error_model="numpy")
def unit_logdensity(y, mu, wt, fd):
    """Log density of one observation, every family, the dispersion taken from
    ``fd.params[DISPERSION]`` (Gamma: shape 1/phi, scale mu phi, each of ``wt``
    copies; Gaussian: variance phi/wt, as R's ``gaussian()$aic``).  The families
    without a dispersion are ``unit_loglik``."""
    fam = fd.family
    if fam == GAMMA:
        a = 1.0 / fd.params[DISPERSION]
        sc = mu / a
        return wt * (-math.lgamma(a) - a * math.log(sc) + (a - 1.0) * math.log(y) - y / sc)
    if fam == GAUSSIAN:
        var = fd.params[DISPERSION] / wt
        return -0.5 * (math.log(2.0 * math.pi * var) + (y - mu) * (y - mu) / var)
    return unit_loglik(y, mu, wt, fd)


@njit(cache=True, error_model="numpy")
def mu_eta2(eta, link):
    """d^2 mu / d eta^2, unclamped (the second derivative of the inverse link)."""
    if link == LOG:
        return math.exp(eta)
    if link == LOGIT:
        m = 1.0 / (1.0 + math.exp(-eta))
        return m * (1.0 - m) * (1.0 - 2.0 * m)
    if link == PROBIT:
        return -eta * math.exp(-0.5 * eta * eta - _LOG_SQRT_2PI)
    if link == CLOGLOG:
        e = math.exp(eta)
        return e * math.exp(-e) * (1.0 - e)
    if link == INVERSE:
        return 2.0 / (eta * eta * eta)
    if link == SQRT:
        return 2.0
    return 0.0


@njit(cache=True, error_model="numpy")
def mu_eta3(eta, link):
    """d^3 mu / d eta^3, unclamped (the third derivative of the inverse link)."""
    if link == LOG:
        return math.exp(eta)
    if link == LOGIT:
        m = 1.0 / (1.0 + math.exp(-eta))
        return m * (1.0 - m) * (1.0 - 6.0 * m + 6.0 * m * m)
    if link == PROBIT:
        return (eta * eta - 1.0) * math.exp(-0.5 * eta * eta - _LOG_SQRT_2PI)
    if link == CLOGLOG:
        e = math.exp(eta)
        return e * math.exp(-e) * ((1.0 - e) * (1.0 - e) - e)
    if link == INVERSE:
        return -6.0 / (eta * eta * eta * eta)
    return 0.0


@njit(cache=True, error_model="numpy")
def logdensity_eta_derivs(y, eta, wt, fd):
    """First and second derivatives in eta of ``unit_logdensity`` at mu = linkinv(eta):
    the score and (minus) the observed information of one row, by the chain rule
    d1 = l'(mu) mu_eta, d2 = l''(mu) mu_eta^2 + l'(mu) mu_eta2.  (The exact Laplace
    approximation needs them; PIRLS uses Fisher's weights.)  For the binomial, ``y``
    is a proportion of ``wt`` trials."""
    fam = fd.family
    link = fd.link
    mu = linkinv(eta, link)
    if general_likelihood(fd):
        l1, l2, _ = loglik_mu_derivs(y, mu, wt, fd)
        d = mu_eta(eta, link)
        return l1 * d, l2 * d * d + l1 * mu_eta2(eta, link)
    if fam == POISSON:
        l1 = wt * (y - mu) / mu
        l2 = -wt * y / (mu * mu)
    elif fam == BINOMIAL:
        l1 = wt * (y - mu) / (mu * (1.0 - mu))
        l2 = -wt * (y / (mu * mu) + (1.0 - y) / ((1.0 - mu) * (1.0 - mu)))
    elif fam == NEGBIN:
        t = fd.params[NB_THETA]
        l1 = wt * (y / mu - (y + t) / (t + mu))
        l2 = wt * (-y / (mu * mu) + (y + t) / ((t + mu) * (t + mu)))
    elif fam == GAMMA:
        a = 1.0 / fd.params[DISPERSION]
        l1 = wt * a * (y - mu) / (mu * mu)
        l2 = wt * a * (1.0 / (mu * mu) - 2.0 * y / (mu * mu * mu))
    else:               # GAUSSIAN
        phi = fd.params[DISPERSION]
        l1 = wt * (y - mu) / phi
        l2 = -wt / phi
    d = mu_eta(eta, link)
    return l1 * d, l2 * d * d + l1 * mu_eta2(eta, link)
