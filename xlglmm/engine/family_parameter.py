"""A family parameter estimated by maximum likelihood with the others: the negative
binomial's (NB2) shape theta (the job of lme4's ``glmer.nb``) and, for the exact
Laplace approximation, the Gamma's dispersion phi (glmmTMB's; lme4 plugs a moment
estimate in instead).  Each is a :class:`FamilyParameter`; one
:class:`FamilyParameterModel` estimates either.

The parameter is estimated *inside* the optimisation: after a start fit (the
Poisson GLMM for the NB; lme4's Laplace for the Gamma, whose moment dispersion
starts the search) and one fit with the parameter fixed at the maximum-likelihood
value given the start fit's means, projected quasi-Newton steps
(``optimize.newton_refine``) minimise the Laplace deviance over (the random
effects' theta, t, beta) jointly, t the parameter's log -- or, where the upper end
of its range is a limit the model reduces to (NB: the Poisson GLMM), psi =
log(upper bound) - log(value) >= 0, a bound the steps stop at.  The deviance is the
full -2 log-likelihood in the parameter (its normalising terms included:
``family.loglik_constant`` moves with it, ``GlmmDeviance.set_family``), so the
joint optimum is the maximum of the profile over the parameter -- without a full
fit at each point of that profile.  The reported fit is then one fit with the
parameter fixed at the estimate, warm-started at the joint optimum, with the
requested SEs: the fixed effects' covariance conditional on the parameter, as
lme4's glmer.nb (the NB and Gamma parameters are orthogonal to the mean's in a
GLM, so the marginal covariance glmmTMB reports differs little).

The parameter's SE: the profile's curvature in its log is the Schur complement of
the joint Hessian, H_tt - H_tr H_rr^-1 H_rt (r: the other free parameters); the
reported fit's finite-difference Hessian is H_rr, one column of finite differences
at its optimum adds the rest (without that Hessian -- se_method 'rx', large data --
the whole joint one, or the profile's second difference when that is cheaper).

When the quadratic model fails (no positive-definite Hessian -- as when NB data
show no overdispersion and the likelihood is flat in theta --, no descent, the
parameter beyond its range), the fit at the start value did not converge, or for
nAGQ = 0 (whose criterion is not the Laplace deviance), the parameter is found as
before: the profile over its log, each point a fit with it fixed, maximised by
bounded Brent, the SE from the profile's curvature.  Either way the estimate is a
stage of the model's fit, so the result is built once, with the parameter, its SE
and CI, the parameter count and the notes already right.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize as _sciopt

from .cost import CostError
from .covariance import cov_from_hessian, fit_scale_statistics, unscale
from .devfun import ModeWarmStarts
from .family import Family
from .model import ModelError, Optimum, with_user_budget
from .optimize import (EXACT_FD_DELTA, Budget, BudgetExhausted, FitTimeout, gradient,
                       hessian_fd, newton_refine)
from .results import GLMMResult

NB_LOG_THETA_BOUNDS = (math.log(1e-3), math.log(1e6))
GAMMA_LOG_DISPERSION_BOUNDS = (math.log(1e-8), math.log(1e4))
PHI_LOG_BOUNDS = (math.log(1e-6), math.log(1e7))
PROFILE_STEP = 0.05         # log step of the profile's curvature (the parameter's SE)
AT_BOUND = 0.05             # log this close to an upper limit: the parameter is at it
AT_END = 1.0                # a phi within a factor e of its range's ends: at that end
JOINT_MAX_STEPS = 40        # quasi-Newton steps of the joint search
JOINT_TOL = 1e-10           # its Newton decrement at the optimum (the deviance to ~1e-10)
Z_975 = 1.959964


def NegativeBinomial2(theta: float, link: str = "log", laplace: str = "exact") -> Family:
    """The NB2 family with a fixed shape: variance mu + mu^2 / theta."""
    if not (isinstance(theta, (int, float)) and theta > 0 and math.isfinite(theta)):
        raise ModelError("the negative binomial theta must be a positive number")
    return Family("negbin", link, float(theta), laplace=laplace)


@dataclass
class ThetaEstimate:
    """The maximum-likelihood NB theta, its standard error and 95% Wald interval (from
    log theta's), and the Poisson GLMM the search started from."""
    theta: float
    se: float
    ci: tuple
    poisson_fit: GLMMResult


@dataclass
class DispersionEstimate:
    """The maximum-likelihood Gamma dispersion phi (shape 1/phi), its standard error
    and 95% Wald interval (from log phi's), and lme4's Laplace fit the search
    started from (its moment dispersion the first start)."""
    dispersion: float
    se: float
    ci: tuple
    start_fit: GLMMResult


@dataclass
class PhiEstimate:
    """The maximum-likelihood phi of NB1 (variance mu (1 + phi)), the beta or the
    beta-binomial (precision), its standard error and 95% Wald interval (from log
    phi's), and the fit the search started from (Poisson, binomial, or the beta at
    its moment precision)."""
    phi: float
    se: float
    ci: tuple
    start_fit: GLMMResult


def _nb1_moment(fit) -> float:
    """NB1's phi from the Poisson start fit: var = mu (1 + phi)."""
    y, mu = fit.design.y, fit.fittedvalues.to_numpy()
    return float(np.clip(np.mean((y - mu) ** 2 / mu) - 1.0, 0.01, 1e3))


def _betabinomial_moment(fit) -> float:
    """The beta-binomial's phi from the binomial start fit: the Pearson ratio r of
    successes out of n is (phi + n) / (phi + 1)."""
    y, mu, n = fit.design.y, fit.fittedvalues.to_numpy(), fit.design.weights
    r = float(np.sum(n * (y - mu) ** 2) / np.sum(mu * (1.0 - mu)))
    nbar = float(np.mean(n))
    return float(np.clip((nbar - r) / (r - 1.0), 0.1, 1e4)) if r > 1.0 else 1e4


def _own_phi(fit) -> float:
    """The start fit's own phi (the beta's, fitted at its moment precision)."""
    return float(fit.family.phi)


def beta_moment_phi(y) -> float:
    """The beta's precision from the response's mean and variance (no random
    effects): mean (1 - mean) / var - 1."""
    m, v = float(np.mean(y)), float(np.var(y))
    return float(np.clip(m * (1.0 - m) / v - 1.0, 0.1, 1e4)) if v > 0 else 10.0


def phi_start_family(family: Family, response) -> Family:
    """The family of the fit that starts phi's search (``FamilySpec.start_family``):
    the Poisson GLMM for NB1, the binomial one for the beta-binomial, or the family
    itself at the moment precision of the response (the beta: ``response()`` gives
    it, called only then)."""
    name = family.spec.start_family
    if name:
        return Family(name, family.link)
    return dataclasses.replace(family, phi=beta_moment_phi(response()))


def _poisson_start(family: Family, response) -> Family:
    """NB2's start: the Poisson GLMM with its link."""
    return Family("poisson", family.link)


def _lme4_start(family: Family, response) -> Family:
    """The exact Gamma's start: the same family by lme4's Laplace (moment dispersion)."""
    return dataclasses.replace(family, laplace="lme4")


def _nb2_moment(fit) -> float:
    """NB2's theta from the Poisson start fit's overdispersion: var = mu + mu^2/theta."""
    y, mu = fit.design.y, fit.fittedvalues.to_numpy()
    extra = float(np.mean((y - mu) ** 2 - y))
    return float(np.clip(np.mean(mu) ** 2 / extra, 0.01, 1e5)) if extra > 0 else 1e5


def _gamma_moment(fit) -> float:
    """The Gamma's dispersion from lme4's start fit: its moment estimate sigma^2."""
    return float(np.clip(fit.sigma ** 2, 1e-8, 1e4))


@dataclass(frozen=True)
class FamilyParameter:
    """A family's parameter the fit estimates by maximum likelihood: its name in the
    family (``field``), what the notes call it, the range of its log, whether the
    upper end is a limit the model reduces to (``limit_note`` then says which),
    the range of the start's 1-d search given the start fit's means, and the
    ``Estimates`` field its estimate goes to."""

    field: str
    label: str
    log_bounds: tuple
    start_bounds: tuple
    estimates_field: str
    estimate: type              # what the estimate is reported as
    limit_note: str = ""
    #: the Laplace gradient has the parameter's log derivative
    #: (``gradient.LaplaceGradient.log_dispersion_derivative``): the joint search then
    #: steps on exact gradients, as stage 2 does
    analytic: bool = False
    #: (family, response) -> the family of the fit that starts the search
    #: (``response()``: the model's response, for a start that needs it)
    start: object = None
    #: start fit -> the search's first value (a moment estimate)
    moment: object = None
    #: the ML start's 1-d search: within this many units of log around the moment
    #: value (None: over all of ``start_bounds``)
    start_window: float | None = 5.0
    #: the joint search takes the Laplace gradient's exact (theta, beta) part and a
    #: central difference in the parameter (2 evaluations) when it has no analytic
    #: derivative: NB1's, the beta's and beta-binomial's phi (NB2's theta keeps the
    #: finite-difference gradient that glmer.nb's numbers were checked with)
    semi_analytic: bool = False
    #: what a value at the lower or upper end of ``log_bounds`` means (phi's)
    end_notes: tuple = ()

    def value(self, family: Family) -> float:
        return float(getattr(family, self.field))

    def family_at(self, family: Family, value: float) -> Family:
        return dataclasses.replace(family, **{self.field: float(value)})

    def found(self, log_value: float, se_log: float, start_fit):
        """The ``estimate`` record of the value exp(log_value) with the SE and 95% Wald
        interval that its log's SE ``se_log`` gives (NaN: none)."""
        value = math.exp(log_value)
        with np.errstate(over="ignore"):     # a flat likelihood: an unbounded interval
            ci = (float(np.exp(log_value - Z_975 * se_log)),
                  float(np.exp(log_value + Z_975 * se_log))) if math.isfinite(se_log) \
                else (float("nan"), float("nan"))
        return self.estimate(value, value * se_log, ci, start_fit)

    @property
    def upper_is_limit(self) -> bool:
        return bool(self.limit_note)


NB_THETA = FamilyParameter(
    "nb_theta", "negative binomial theta", NB_LOG_THETA_BOUNDS, (0.01, 1e5), "nb",
    ThetaEstimate, start=_poisson_start, moment=_nb2_moment, start_window=None,
    limit_note="the data show no overdispersion beyond the random effects, and the "
               "model reduces to the Poisson GLMM (compare their AICs)")
_NOT_IDENTIFIED = "phi is not identified by these data"
NB1_PHI = FamilyParameter(
    "phi", "NB1 dispersion phi", PHI_LOG_BOUNDS, (1e-3, 1e3), "phi", PhiEstimate,
    start=phi_start_family, moment=_nb1_moment, semi_analytic=True,
    end_notes=("the data show no overdispersion beyond the random effects, and the model "
               "reduces to the Poisson GLMM (compare their AICs)", _NOT_IDENTIFIED))
BETA_PHI = FamilyParameter(
    "phi", "beta precision phi", PHI_LOG_BOUNDS, (1e-2, 1e5), "phi", PhiEstimate,
    start=phi_start_family, moment=_own_phi, semi_analytic=True,
    end_notes=(_NOT_IDENTIFIED,
               _NOT_IDENTIFIED + " (the response hardly varies around its means)"))
BETABINOMIAL_PHI = FamilyParameter(
    "phi", "beta-binomial precision phi", PHI_LOG_BOUNDS, (1e-2, 1e5), "phi", PhiEstimate,
    start=phi_start_family, moment=_betabinomial_moment, semi_analytic=True,
    end_notes=(_NOT_IDENTIFIED, "the data show no overdispersion beyond the random "
               "effects, and the model reduces to the binomial GLMM (compare their AICs)"))
PHI_PARAMETERS = {"nb1": NB1_PHI, "beta": BETA_PHI, "betabinomial": BETABINOMIAL_PHI}
GAMMA_DISPERSION = FamilyParameter(
    "dispersion", "Gamma dispersion", GAMMA_LOG_DISPERSION_BOUNDS, (1e-8, 1e4), "dispersion",
    DispersionEstimate, start=_lme4_start, moment=_gamma_moment, analytic=True)


def parameter_of(family: Family) -> FamilyParameter | None:
    """The family parameter a fit of ``family`` estimates with the others, when it does
    not hold it at a given value: NB2's theta (a fit by name), the exact Gamma's
    dispersion, NB1's, the beta's or beta-binomial's phi; None otherwise."""
    if family.has_theta:
        return NB_THETA
    if family.likelihood_dispersion:
        return GAMMA_DISPERSION
    return PHI_PARAMETERS.get(family.name) if family.has_phi else None


class JointDeviance:
    """The Laplace deviance of a fitted model as a function of x = (the random
    effects' theta, t, beta on the fit's scale), t the family parameter's log
    (``psi=False``) or psi = log(upper limit) - log(value) (``psi=True``: the
    search's for a parameter whose upper end is a limit, bounded below by 0).
    Changes the model's family as it evaluates; ``close()`` puts back the model's
    own family and warm starts."""

    def __init__(self, model, parameter: FamilyParameter, psi: bool):
        self.model = model
        self.parameter = parameter
        self.dev = model.devfun
        self.nt = model.devfun.ntheta
        self.psi = psi
        self._family = model.family
        self._value = parameter.value(model.family)
        self._saved = self.dev.warm_starts()
        self.warm = ModeWarmStarts(self.dev)

    def log_value(self, t) -> float:
        return self.parameter.log_bounds[1] - t if self.psi else t

    def t_of(self, log_value) -> float:
        return self.parameter.log_bounds[1] - log_value if self.psi else log_value

    def __call__(self, x) -> float:
        nt = self.nt
        log_value = self.log_value(float(x[nt]))
        lo, hi = self.parameter.log_bounds
        if not lo - 1.0 <= log_value <= hi + 1.0:
            # far outside the parameter's range (a quasi-Newton step from a poor
            # starting Hessian can propose log phi = 7632): no value, the line search
            # halves the step
            return math.inf
        value = math.exp(log_value)
        if value != self._value:
            if not (0.0 < value < math.inf):
                return math.inf
            self.dev.set_family(self.parameter.family_at(self._family, value))
            self._value = value
        return self.model.deviance(x[:nt], x[nt + 1:])

    def value_and_gradient(self, x):
        """(deviance, its exact gradient in x) for a parameter whose derivative the
        Laplace gradient gives (``FamilyParameter.analytic``, nAGQ = 1)."""
        f = self(x)
        nt = self.nt
        if not np.isfinite(f):
            return f, np.full(len(x), np.nan)
        f, g = self.dev.laplace_gradient(x[:nt], x[nt + 1:])
        if self.parameter.analytic:
            d = self.dev._gradient.log_dispersion_derivative()
            d = -d if self.psi else d
        else:       # (semi_analytic) a central difference in t, from these modes
            center = self.warm.save()
            ends = []
            for s in (EXACT_FD_DELTA, -EXACT_FD_DELTA):
                z = np.array(x, float)
                z[nt] += s
                self.warm.start(((1.0, center),))
                ends.append(self(z))
            self.warm.start(((1.0, center),))
            d = (ends[0] - ends[1]) / (2.0 * EXACT_FD_DELTA)
        return f, np.concatenate([g[:nt], [d], g[nt:]])

    def point(self, theta_re, log_value, beta) -> np.ndarray:
        return np.concatenate([theta_re, [self.t_of(log_value)], beta])

    def close(self):
        self.dev.set_family(self._family)
        self._value = self.parameter.value(self._family)
        self.dev.restore_warm_starts(self._saved)


def hessian_column(fun, x, k, fx, budget=None, warm=None, delta=EXACT_FD_DELTA):
    """The gradient of ``fun`` at x and column k of its Hessian, by the finite
    differences of ``optimize.hessian_fd`` (the same steps and pair formula) in
    4n - 2 evaluations instead of n^2 + n."""
    x = np.asarray(x, float)
    n = len(x)
    center = warm.save() if warm is not None else None
    g, fp, fm, modes = gradient(fun, x, delta, budget, values=True, warm=warm, center=center)
    col = np.empty(n)
    d2 = delta * delta
    col[k] = (fp[k] - 2.0 * fx + fm[k]) / d2
    for j in range(n):
        if j == k:
            continue
        if budget is not None and budget.expired():
            raise FitTimeout()
        z = x.copy()
        z[j] += delta
        z[k] += delta
        if modes is not None:
            warm.start(((1.0, modes[1][j]), (1.0, modes[1][k]), (-1.0, modes[0])))
        fpp = fun(z)
        z = x.copy()
        z[j] -= delta
        z[k] -= delta
        if modes is not None:
            warm.start(((1.0, modes[2][j]), (1.0, modes[2][k]), (-1.0, modes[0])))
        fmm = fun(z)
        col[j] = (fpp + fmm - fp[j] - fm[j] - fp[k] - fm[k] + 2.0 * fx) / (2.0 * d2)
    return g, col


def gradient_columns(fg, x, cols, delta=EXACT_FD_DELTA, warm=None):
    """The gradient at x and the Hessian's columns ``cols`` (n x len(cols)) by central
    differences of an exact gradient (``fg``: x -> (f, gradient)), each pair of
    evaluations warm-started at x's modes: 1 + 2 len(cols) evaluations instead of
    ``hessian_column``'s 4n - 2 a column (the family parameter's one column, the zero
    inflation's k)."""
    x = np.asarray(x, float)
    center = warm.save() if warm is not None else None
    _, g = fg(x)
    out = np.empty((len(x), len(cols)))
    for j, k in enumerate(cols):
        ends = []
        for s in (delta, -delta):
            z = x.copy()
            z[k] += s
            if center is not None:
                warm.start(((1.0, center),))
            ends.append(fg(z)[1])
        out[:, j] = (ends[0] - ends[1]) / (2.0 * delta)
    if center is not None:
        warm.start(((1.0, center),))
    return g, out


def convex_in(H, g, k) -> np.ndarray:
    """H itself when positive definite; else H with row and column k (the family
    parameter's) decoupled and its curvature |H_kk| or |g_k|, whichever is larger (at
    least 1): a start far from the estimate can sit where the deviance is concave in
    the parameter's log (a beta-binomial's phi of 53 for 10.8: the likelihood flattens
    towards the binomial's), and the quasi-Newton steps then take a first step of about
    one unit in the log instead of giving the search to the profile's fits."""
    try:
        np.linalg.cholesky(H)
        return H
    except np.linalg.LinAlgError:
        pass
    H = H.copy()
    hkk = abs(float(H[k, k]))
    H[k, :] = 0.0
    H[:, k] = 0.0
    H[k, k] = max(hkk, abs(float(g[k])), 1.0)
    return H


def with_columns(H_rest, cols_H, cols) -> np.ndarray:
    """The n x n Hessian of H_rest (the others') with the rows and columns ``cols``
    inserted (``cols_H``: n x len(cols), symmetrised between themselves)."""
    n = cols_H.shape[0]
    others = [j for j in range(n) if j not in set(cols)]
    H = np.empty((n, n))
    H[np.ix_(others, others)] = H_rest
    H[:, cols] = cols_H
    H[cols, :] = cols_H.T
    block = cols_H[cols, :]
    H[np.ix_(cols, cols)] = 0.5 * (block + block.T)
    return H


def schur_se(H, k, free) -> float:
    """The SE of parameter k of a deviance (-2 log-likelihood) with Hessian H, the
    others profiled out (those in ``free``; the rest, at their bounds, held):
    sqrt(2 / (H_kk - H_kr H_rr^-1 H_rk)); NaN when that curvature is not positive."""
    r = [j for j in range(len(H)) if j != k and free[j]]
    s = H[k, k]
    if r:
        try:
            s -= float(H[k, r] @ np.linalg.solve(H[np.ix_(r, r)], H[r, k]))
        except np.linalg.LinAlgError:
            return float("nan")
    return math.sqrt(2.0 / s) if s > 0 and math.isfinite(s) else float("nan")


class NestedFits:
    """What an estimate made of several fits shares (``FamilyParameterModel``, the
    zero inflation's ``ZeroInflatedModel``): the start fit (``fit_start()``), the
    models at other values of what is estimated (``model_at(value, se_method,
    seconds)``, not yet fitted), and one time budget: each nested fit gets the time
    left."""

    def __init__(self, fit_start, model_at, *, se_method, time_budget, max_evals,
                 progress=None):
        self.budget = Budget(time_budget, max_evals)
        self.time_budget = time_budget
        self.se_method = se_method
        self.progress = progress
        self._fit_start = fit_start
        self._model_at = model_at
        self.start_fit: GLMMResult | None = None
        self.model = None               # the GLMM at the estimate
        self.method = None              # how it was found

    def _left(self, least=0.0):
        """The budget's time left for a nested fit (each has its own clock): the
        whole estimate stays within the budget (plus the grace of the last fit)."""
        if self.time_budget is None:
            return None
        return max(self.time_budget - self.budget.clock.elapsed(), least, 1e-3)

    def _fit_at(self, value, se_method, seconds, warm: Optimum | None = None):
        """The GLMM fitted at ``value`` (estimates made), started at ``warm``'s theta
        and beta when given (else as ``model_at`` made it).  BudgetExhausted when the
        share of the budget left is too small for the model to start (its cost guard's
        CostError would quote that share, not the user's budget)."""
        try:
            model = self._model_at(value, se_method, seconds)
        except CostError:
            if seconds is None or self.time_budget is None or seconds >= self.time_budget:
                raise
            raise BudgetExhausted(self.time_budget, self.budget.grace) from None
        if warm is not None:
            model.start_at(warm)
        model.estimate()
        return model


class FamilyParameterModel(NestedFits):
    """A GLMM whose family ``parameter`` is estimated.  ``fit_start()`` fits the
    start (the Poisson GLMM for the NB, lme4's Laplace for the Gamma);
    ``model_at(value, se_method, time_budget)`` returns the GLMM
    (``model.GeneralizedLinearMixedModel``, not yet fitted) with the parameter
    fixed; ``family`` is that model's family at any value.  All of it shares one
    time budget: each nested fit gets the time left."""

    def __init__(self, parameter: FamilyParameter, family: Family, fit_start, model_at, *,
                 se_method, time_budget, max_evals, progress=None):
        super().__init__(fit_start, model_at, se_method=se_method, time_budget=time_budget,
                         max_evals=max_evals, progress=progress)
        self.parameter = parameter
        self.family = family            # the estimated model's family (at any value)
        self._profile: dict = {}        # log value (rounded) -> Estimates at that value

    @property
    def poisson_fit(self):
        """The NB's start fit (the Poisson GLMM)."""
        return self.start_fit

    def deviance_at(self, log_value) -> float:
        """Half the Laplace deviance (minus the log-likelihood) of the fit with the
        parameter fixed at exp(log_value), each point fitted once; FitTimeout when
        the budget runs out (a fit it stopped is not a point of the profile)."""
        key = round(float(log_value), 12)
        fits = self._profile
        if key not in fits:
            if self.budget.expired():
                raise FitTimeout()
            try:
                fits[key] = self._fit_at(math.exp(key), "rx", self._left()).estimates
            except BudgetExhausted:     # started with too little time left to finish
                raise FitTimeout() from None
            if self.progress is not None:
                self.progress(self.parameter.label, len(fits))
            if fits[key].stopped_by_budget:
                del fits[key]           # not a value of the profile: out of time
                raise FitTimeout()
        return -fits[key].llf

    def fit(self) -> GLMMResult:
        par = self.parameter
        self.start_fit = self._fit_start()
        start = self._moment_start()
        hi = par.log_bounds[1]
        found = self._search_joint(start)
        if found is not None:
            best, timed_out, warm = found
            self.method = "joint"
        else:
            (best, timed_out), warm = self._search(start), None
            self.method = "profile"
        at_bound = par.upper_is_limit and best > hi - AT_BOUND
        if at_bound:
            best = hi     # report the bound itself: the optimizer's end point there is arbitrary
        # a phi at either end of its range, where the likelihood is flat: the model is
        # another (NB1 -> Poisson, beta-binomial -> binomial) or phi is not identified
        end = None
        if not par.upper_is_limit and par.end_notes:
            lo = par.log_bounds[0]
            end = 0 if best < lo + AT_END else 1 if best > hi - AT_END else None
        # the reported fit: the parameter fixed at its estimate, with the requested SEs
        self.model = self._fit_at(math.exp(best), self.se_method,
                                  self._left(0.25 * (self.time_budget or 0)), warm)
        se_log = float("nan")
        if not at_bound and end is None and not timed_out:
            try:
                se_log = (self._log_se_joint() if self.method == "joint"
                          else self._log_se_profile(best))
            except FitTimeout:
                timed_out = True
        est = self._marginal_covariance(self.model.estimates)
        messages = with_user_budget(est.messages, self.time_budget)
        if at_bound:
            messages.append(
                f"The {par.label} ran to its upper limit ({math.exp(hi):.0e}): "
                f"{par.limit_note}.")
        if end is not None:
            messages.append(
                f"The {par.label} ran to its {('lower', 'upper')[end]} limit "
                f"({math.exp(par.log_bounds[end]):.0e}): {par.end_notes[end]}.")
        if timed_out:
            messages.append(f"Stopped at the time budget while estimating the {par.label}: "
                            "NOT converged.")
        found_estimate = par.found(best, se_log, self.start_fit)
        self.model.estimates = dataclasses.replace(
            est, messages=messages, converged=est.converged and not timed_out,
            **{par.estimates_field: found_estimate})
        return GLMMResult(self.model, self.model.estimates)

    def _moment_start(self) -> float:
        """A first value from the start fit (``FamilyParameter.moment``)."""
        return float(self.parameter.moment(self.start_fit))

    def _ml_start(self, moment) -> float:
        """The joint search's start: the value maximising the family's log-likelihood
        of the response with the means fixed at the start fit's fitted values (a 1-d
        search, no fit; closer to the estimate than the moment one, so fewer
        quasi-Newton steps), within the start's limits; the moment value when that
        says the model is at its limit (no overdispersion)."""
        par = self.parameter
        lo_v, hi_v = par.start_bounds
        if par.upper_is_limit and moment >= hi_v:
            return moment
        fit = self.start_fit
        y, w = fit.design.y, fit.design.weights
        mu = fit.fittedvalues.to_numpy()

        def minus_loglik(log_value):
            f = par.family_at(self.family, math.exp(log_value))
            return -float(np.sum(f.log_density(y, mu, w)))
        lo, hi = math.log(lo_v), math.log(hi_v)
        if par.start_window is not None:    # around the moment value (a wide range)
            lo = max(lo, math.log(moment) - par.start_window)
            hi = min(hi, math.log(moment) + par.start_window)
        opt = _sciopt.minimize_scalar(minus_loglik, bounds=(lo, hi), method="bounded",
                                      options={"xatol": 1e-3})
        return math.exp(float(opt.x)) if np.isfinite(opt.fun) else moment

    # -- the parameter inside the optimisation
    def _search_joint(self, start):
        """(log value, whether the budget stopped the search, the joint optimum as
        the reported fit's start), or None when the joint quasi-Newton search is
        not the way (nAGQ = 0, no quadratic model, out of the parameter's range):
        then the profile's search.  Starts from a fit at ``_ml_start``, itself
        started at the start fit's optimum, with that fit's quasi-Newton Hessian in
        (theta, beta) and one finite-difference column for the parameter."""
        par = self.parameter
        lo, hi = par.log_bounds
        start = self._ml_start(start)
        try:
            m0 = self._fit_at(start, "rx", self._left(), self.start_fit.model.optimum)
        except BudgetExhausted:     # started with too little time left (as deviance_at)
            return math.log(start), True, None
        opt = m0.optimum
        if m0.nAGQ == 0 or opt is None or m0.estimates.stopped_by_budget \
                or not m0.estimates.converged:
            return None
        fun = JointDeviance(m0, par, psi=par.upper_is_limit)
        nt = fun.nt
        x0 = fun.point(opt.theta, math.log(start), opt.beta)
        lower = np.concatenate([m0.lower, [0.0 if par.upper_is_limit else -np.inf]])
        fg = fun.value_and_gradient if (par.analytic or par.semi_analytic) \
            and m0.nAGQ == 1 else None
        try:
            f0 = fun(x0)
            if fg is not None:
                g0, col = gradient_columns(fg, x0, [nt], warm=fun.warm)
                f0 = fun(x0)
            else:
                g0, col = hessian_column(fun, x0, nt, f0, self.budget, fun.warm)
            H_rest = opt.hessian if opt.hessian is not None and \
                opt.hessian.shape == (len(x0) - 1,) * 2 else None
            if H_rest is None:
                g0, H0 = hessian_fd(fun, x0, fx=f0, budget=self.budget)
            else:
                H0 = with_columns(H_rest, col.reshape(len(x0), 1), [nt])
            if fg is not None:
                H0 = convex_in(H0, g0, nt)
            nr = newton_refine(fun, x0, f0, g0, H0, lower, self.budget,
                               max_steps=JOINT_MAX_STEPS, tol=JOINT_TOL, warm=fun.warm,
                               fg=fg)
        except FitTimeout:
            return math.log(start), True, None
        finally:
            fun.close()
        if self.progress is not None:
            self.progress(par.label, nr.steps)
        log_value = fun.log_value(float(nr.x[nt]))
        if not nr.ok or not lo < log_value <= hi:
            return None
        warm = Optimum(nr.x[:nt], nr.x[nt + 1:], nr.fun, m0.devfun.state)
        return log_value, False, warm

    def _log_se_joint(self) -> float:
        """The parameter's log's SE from the joint Hessian at the reported fit's
        optimum (its finite-difference Hessian in (theta, beta) and one column for
        the parameter): the Schur complement is the profile's curvature.
        Parameters at a bound (a zero variance) are held there, as the profile
        holds them.  Without that Hessian (se_method 'rx', large data) the whole
        joint one, or the profile's curvature (two more fits) when that takes fewer
        evaluations."""
        model = self.model
        opt = model.optimum
        nt = model.devfun.ntheta
        log_value = math.log(self.parameter.value(model.family))
        fun = JointDeviance(model, self.parameter, psi=False)
        x = fun.point(opt.theta, log_value, opt.beta)
        have_rest = opt.hessian is not None and opt.hessian_is_fd
        if not have_rest and len(x) * (len(x) + 1) > 2 * model.estimates.evaluations:
            fun.close()
            # the reported fit is the profile's point at the estimate
            self._profile[round(log_value, 12)] = model.estimates
            return self._log_se_profile(log_value)
        analytic = (self.parameter.analytic or self.parameter.semi_analytic) \
            and model.nAGQ == 1
        try:
            fx = fun(x)
            if have_rest:
                if analytic:
                    _, col = gradient_columns(fun.value_and_gradient, x, [nt],
                                              warm=fun.warm)
                else:
                    _, col = hessian_column(fun, x, nt, fx, self.budget, fun.warm)
                H = with_columns(opt.hessian, col.reshape(len(x), 1), [nt])
            else:
                _, H = hessian_fd(fun, x, fx=fx, budget=self.budget, warm=fun.warm,
                                  center=fun.warm.save())
        finally:
            fun.close()
        lower = np.concatenate([model.lower, [-np.inf], np.full(len(opt.beta), -np.inf)])
        self._joint_hessian = H
        return schur_se(H, nt, ~(x <= lower))

    def _marginal_covariance(self, est):
        """The exact Laplace's fixed-effect covariance marginal over the family
        parameter -- the beta block of 2 x the inverse joint Hessian in (theta, log
        value, beta), glmmTMB's ``vcov`` -- in place of the one conditional on it,
        when the joint Hessian was computed and the fit's covariance is a Hessian's
        (not RX's); ``est`` unchanged otherwise.  (NB and Gamma parameters are nearly
        orthogonal to the mean's, NB1's and the beta's are not: conditional SEs were
        2.5-3% below glmmTMB's there.)"""
        H = getattr(self, "_joint_hessian", None)
        model = self.model
        if H is None or not model.family.exact or not est.vcov_method.startswith("Hessian"):
            return est
        dev, opt = model.devfun, model.optimum
        v_fit = cov_from_hessian(H, dev.ntheta + 1)
        if v_fit is None:
            return est
        se_z = fit_scale_statistics(dev, opt.beta, v_fit)
        _, vcov, _, _, _, _ = unscale(dev, opt.beta, v_fit, None, None)
        return dataclasses.replace(est, vcov=vcov, se_z=se_z,
                                   vcov_method=f"{est.vcov_method}, joint with {self.parameter.field}")

    # -- the profile over the parameter's log (the fallback)
    def _search(self, start) -> tuple[float, bool]:
        """(log value maximising the profile, whether the budget stopped the search:
        then the best point so far)."""
        lo, hi = self.parameter.log_bounds
        try:
            opt = _sciopt.minimize_scalar(
                self.deviance_at, bracket=(max(lo, math.log(start) - 1.0),
                                           min(hi, math.log(start) + 1.0)),
                bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
            return float(opt.x), False
        except FitTimeout:
            fits = self._profile
            return (min(fits, key=lambda k: -fits[k].llf) if fits else math.log(start)), True

    def _log_se_profile(self, best) -> float:
        """The parameter's log's SE from the profile's curvature (NaN when it is not
        convex)."""
        h = PROFILE_STEP
        f = self.deviance_at
        d2 = 2.0 * (f(best + h) - 2.0 * f(best) + f(best - h)) / (h * h)
        return math.sqrt(2.0 / d2) if d2 > 0 else float("nan")
