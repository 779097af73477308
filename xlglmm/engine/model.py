"""The model object (lme4's merMod, MixedModels.jl's GeneralizedLinearMixedModel).

A model holds a design and its deviance function (``devfun.GlmmDeviance``: the
blocked factor and its symbolic structure) and exposes the fit's objectives as
methods, so that what comes after a fit -- profile likelihoods, a parametric
bootstrap -- evaluates the same functions the optimizer did:

* ``deviance(theta, beta)``: the Laplace deviance (AGQ when nAGQ > 1);
* ``profiled_deviance(theta)``: the nAGQ=0 criterion, beta by PIRLS (stage 1's);
* ``conditional_modes(theta, beta)``: the random effects at a parameter value;
* ``refit(y)``: the same design with a new response, from the current estimates.

``fit()`` runs the stages as methods -- start values, stage 1, stage 2, boundary
check, convergence checks, covariance choice -- and builds the result once from
what they found (``Estimates``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import cost, jit, start
from .agq import MAX_ROW_NODES, gauss_hermite, row_node_evaluations
from .covariance import (LARGE_DATA_NOTE, LME4_HESSIAN_STEP, LME4_SE_MAX_N,
                         LME4_STENCIL_MAX_PARAMS, choose_cov, cov_from_hessian,
                         fd_hessian_too_large, fit_scale_statistics, parameter_scales,
                         rx_cov, rx_sigma, sigma, unscale)
from .design import ModelDesign, check_response
from .devfun import PIRLS_MAXIT, GlmmDeviance, ModeWarmStarts, PirlsState, theta_start
from .family import Family
from .optimize import (EXACT_FD_DELTA, Budget, FitTimeout, bobyqa, check_boundary,
                       check_convergence, deriv12, gradient, hessian_fd,
                       hessian_from_gradient, is_singular, newton_refine)
from .results import GLMMResult

MAX_AGQ = 100
STAGE1_XTOL = 1e-3
STAGE1_PIRLS_TOL = 1e-12
DEFAULT_MAX_EVALS = 20000
SE_METHODS = ("auto", "hessian", "lme4", "rx")

SINGULAR_MESSAGE = ("boundary (singular) fit: a random-effect variance is estimated at "
                    "(or near) zero, or a correlation at +/-1 -- the random-effects "
                    "structure is more complex than the data support; consider "
                    "simplifying it.")


class ModelError(ValueError):
    """The model cannot be fitted as specified (e.g. nAGQ > 1 with two terms)."""


class TimeBudgetTooSmall(ModelError):
    """The time budget ran out before the model could be evaluated once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"the time budget of {seconds:g} s ran out before the model "
                         "could be evaluated once")


def dropped_rows_message(design: ModelDesign) -> str:
    k = design.n_dropped
    return f"{k} row{'s' if k != 1 else ''} with missing values removed."


def timeout_message(time_budget) -> str:
    """The note of a fit stopped by its time budget.  Where the clock stops the
    optimizer depends on the machine and its load, so the same call can stop at
    another point in another run: the note says so (issue 18, item 15)."""
    return (f"Stopped at the time budget of {time_budget:g} s before the optimizer "
            "converged: the estimates are the best found so far, NOT converged, and "
            "their digits depend on where the clock stopped the fit (another run can "
            "give others).")


def with_user_budget(messages, time_budget) -> list:
    """The notes of a nested fit (one with a share of the user's time budget: a
    family parameter's search, zero inflation) with its timeout note quoting the
    user's budget, not the share."""
    if time_budget is None:
        return list(messages)
    prefix = timeout_message(0.0).split(" 0 s")[0]
    return [timeout_message(time_budget) if m.startswith(prefix) else m for m in messages]


def checked_nagq(nAGQ) -> int:
    """nAGQ as a whole number from 0 to MAX_AGQ (ModelError otherwise)."""
    if isinstance(nAGQ, bool) or not float(nAGQ).is_integer() or not 0 <= int(nAGQ) <= MAX_AGQ:
        raise ModelError(f"nAGQ must be a whole number from 0 to {MAX_AGQ}")
    return int(nAGQ)


def check_se_method(se_method):
    if se_method not in SE_METHODS:
        raise ModelError("se_method must be 'auto', 'hessian', 'lme4' or 'rx'")


def check_model(design: ModelDesign, fam: Family, nAGQ: int):
    """Refuse (ModelError) what no fit can do: a grouping factor with fewer than 2
    levels; nAGQ > 1 with anything but one random-effects term on one grouping factor,
    a vector term (k > 1 effects per group) needing more than ``agq.MAX_ROW_NODES``
    row-node evaluations (nAGQ^k * nobs) per deviance, or a family that has a
    dispersion parameter.  Run by glmer and lmer before any fitting."""
    if fam.is_binomial and fam.has_phi and not np.any(design.weights > 1):
        raise ModelError("a beta-binomial model needs rows with more than one trial: with one "
                         "trial per row its phi is not identifiable (the counts are Bernoulli "
                         "whatever phi); use the binomial family")
    for t in design.re_terms:
        if t.nlevels < 2:
            raise ModelError(f"grouping factor '{t.group}' has {t.nlevels} level: a random "
                             "effect needs at least 2 groups")
    if nAGQ > 1:
        if len(design.re_terms) != 1:
            raise ModelError("nAGQ > 1 is only available for models with one random-effects "
                             "term on one grouping factor, such as (1|g) or (x|g); use "
                             "nAGQ=1 (Laplace) for crossed, nested or uncorrelated (||) "
                             "models")
        k = design.re_terms[0].k
        work = row_node_evaluations(nAGQ, k, design.nobs)
        if k > 1 and work > MAX_ROW_NODES:     # (a scalar term: at most 100 nodes)
            raise ModelError(f"nAGQ = {nAGQ} with {k} random effects per group needs "
                             f"{nAGQ}^{k} = {float(nAGQ) ** k:.4g} quadrature points per "
                             f"group: {work:.3g} evaluations over the {design.nobs} rows "
                             f"for each deviance, more than the limit of "
                             f"{MAX_ROW_NODES:,}; use a smaller nAGQ or nAGQ=1 (Laplace)")
        if fam.has_dispersion:
            raise ModelError(f"nAGQ > 1 is not available for the {fam.name} family; "
                             "use nAGQ=1 (Laplace)")


def prepare(design, fam, time_budget, max_evals, dev=None):
    """The fit's deviance function (``dev`` if given: a refit's, on the same design)
    and budget, after the cost guards (cost.check): models whose PIRLS iterations
    are slow check the budget between them."""
    c = cost.check(design, time_budget)
    note = cost.range_note(fam, design.y, design.weights)
    if note and note not in design.messages:
        design.messages.append(note)
    budget = Budget(time_budget, max_evals)
    if dev is None:
        dev = GlmmDeviance(design, fam)
    if time_budget is not None:
        dev.budget = budget
        dev.piece_iterations = cost.piece_iterations(c, time_budget, PIRLS_MAXIT)
    return dev, budget


@dataclass
class Estimates:
    """What a fit found, as its result reports it: the estimates on the data's scale,
    the covariance chosen (and the others), the deviance at the optimum, the
    convergence verdict and the notes.  ``nb`` is the negative binomial's theta
    estimate (``negbin.ThetaEstimate``) when the fit estimated it."""

    theta: np.ndarray
    beta: np.ndarray
    deviance: float
    state: PirlsState           # PIRLS at the optimum: modes, fitted values
    sigma: float
    vcov: np.ndarray
    vcov_method: str
    vcov_rx: np.ndarray
    vcov_exact: np.ndarray | None
    se_z: tuple | None          # (SEs, z) from the fit's scale of rescaled columns
    gradient: np.ndarray | None
    hessian: np.ndarray | None
    converged: bool
    singular: bool
    stopped_by_budget: bool     # the time budget stopped the optimizer
    messages: list
    evaluations: int
    nb: object = None
    #: the exact Laplace's Gamma dispersion (``family_parameter.DispersionEstimate``)
    dispersion: object = None
    #: NB1's, the beta's or beta-binomial's phi (``family_parameter.PhiEstimate``)
    phi: object = None
    #: the zero-inflation coefficients (``zero_inflation.ZeroInflationEstimate``)
    zi: object = None

    @property
    def llf(self) -> float:
        return -0.5 * float(self.deviance)


@dataclass
class StartValues:
    mu: np.ndarray              # R's mustart (lme4's own Hessian starts there too)
    theta: np.ndarray
    beta: np.ndarray


@dataclass
class StageOne:
    """Stage 1's optimum of the profiled deviance (theta; beta by PIRLS)."""
    theta: np.ndarray
    beta: np.ndarray
    deviance: float
    state: PirlsState
    message: str
    timed_out: bool


@dataclass
class Optimum:
    """The fit's final point (after stage 2, or stage 1 alone) and what the
    optimizer knows of it: the gradient and Hessian (``hessian_is_fd``: by finite
    differences, not a quasi-Newton approximation) and its last message."""
    theta: np.ndarray
    beta: np.ndarray            # on the fit's scale of rescaled columns
    deviance: float
    state: PirlsState
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None
    hessian_is_fd: bool = False
    message: str = ""
    timed_out: bool = False


class MixedModel:
    """What a GLMM and an LMM share: the design, its deviance function and budget
    (``prepare``; ``devfun``, when given, is one for this design already: a
    refit's), the conditional modes and ``refit``.  ``estimates`` and ``optimum``
    are set by ``fit()``."""

    def __init__(self, design: ModelDesign, family: Family, *, time_budget=None,
                 max_evals=DEFAULT_MAX_EVALS, devfun=None):
        self.design = design
        self.family = family
        self.time_budget = time_budget
        self.max_evals = max_evals
        self._design_messages = list(design.messages)   # before this response's notes
        self.devfun, self.budget = prepare(design, family, time_budget, max_evals, devfun)
        self.lower = self.devfun.lower
        self.optimum: Optimum | None = None
        self.estimates: Estimates | None = None
        self._warm_start: Optimum | None = None     # a previous fit's optimum (refit)

    def start_at(self, optimum: Optimum | None):
        """Start the fit at ``optimum``'s theta and beta (another fit's on the same
        columns: a negative binomial fit at a nearby theta) instead of the default
        start values (None: the default)."""
        self._warm_start = optimum

    def conditional_modes(self, theta, beta=None) -> list:
        """The random effects (per term, levels x columns, on the linear predictor's
        scale) at theta and beta -- with beta None, at theta with beta by PIRLS."""
        st = self.devfun.pirls(np.asarray(theta, float), beta)
        return self.devfun.b_by_term(theta, st)

    def refit(self, y=None, *, design=None, family=None, **settings):
        """The result of the same model fitted to another response or other rows
        (``refit_model(...).fit()``)."""
        return jit.timed(self.refit_model(y, design=design, family=family, **settings).fit)

    def refit_model(self, y=None, *, design=None, family=None, **settings):
        """The same model, not yet fitted, on another response (a parametric
        bootstrap's) or other rows (a case bootstrap's): the formula and settings
        are reused, its fit starts from this fit's estimates (``fit()`` for its
        result, ``estimate()`` for its estimates alone).  ``y`` is in the
        design's row order and scale (``design.y``: rows with missing values
        removed; for the binomial the proportion of the trials in
        ``design.weights``).  ``design``, instead of ``y``: another design of the
        same formula (the same columns of X and random-effects terms, other rows),
        with its own response; or of the formula less some fixed effects (a subset
        of X's columns, by name: a null model's, whose fit starts from this fit's
        estimates of the others).  ``family``: a GLMM's family with another parameter
        (NB theta held at another value, when a bootstrap re-estimates it).
        ``settings`` override the model's own (e.g. ``se_method="rx"``: a bootstrap
        that needs no standard errors skips the finite-difference Hessians).  With
        ``y`` alone the deviance function is this fit's with the new response
        (``GlmmDeviance.with_response``: the rows are not sorted again, the
        symbolic structure not rebuilt)."""
        if self.optimum is None:
            raise ModelError("refit needs a fitted model (call fit() first)")
        if family is None and self.estimates is not None and self.estimates.nb is not None:
            raise ModelError("this negative binomial fit estimated theta; a refit would keep "
                             "theta fixed at the estimate, another model (fit that one on "
                             "purpose with family=NegativeBinomial2(theta))")
        if family is None and self.estimates is not None and self.estimates.zi is not None:
            raise ModelError("this zero-inflated fit estimated its zero-inflation "
                             "coefficients; a refit would keep them fixed at the estimates, "
                             "another model (fit that one on purpose with a Family whose "
                             "zi_coef holds them)")
        if family is None and self.estimates is not None and self.estimates.phi is not None:
            raise ModelError(f"this {self.family.name} fit estimated its phi; a refit would keep "
                             "it fixed at the estimate, another model (fit that one on purpose "
                             f"with family=Family('{self.family.name}', link, phi=value))")
        if family is None and self.estimates is not None and \
                self.estimates.dispersion is not None:
            raise ModelError("this Gamma fit estimated its dispersion; a refit would keep it "
                             "fixed at the estimate, another model (fit that one on purpose "
                             "with family=Family('gamma', link, dispersion=phi))")
        devfun = None
        if design is None:
            design = self._with_response(y)
            if family is None:
                devfun = self.devfun.with_response(design.y, design)
        elif y is not None:
            raise ModelError("refit takes a response or a design, not both")
        if family is not None:
            settings["family"] = family
        check_model(design, family or self.family, self.nAGQ)
        model = self._same_model(design, devfun=devfun, **settings)
        model._warm_start = self._optimum_of_columns(design.x_names)
        return model

    def _optimum_of_columns(self, names) -> Optimum:
        """This fit's optimum with beta cut to the columns ``names`` (a subset of
        X's, in any order): the warm start of a model with fewer fixed effects."""
        own = list(self.design.x_names)
        if list(names) == own:
            return self.optimum
        missing = [n for n in names if n not in own]
        if missing:
            raise ModelError(f"refit: the column(s) {', '.join(missing)} are not in the "
                             "fitted model")
        keep = [own.index(n) for n in names]
        return dataclasses.replace(self.optimum, beta=np.asarray(self.optimum.beta)[keep],
                                   gradient=None, hessian=None)

    def _with_response(self, y) -> ModelDesign:
        """This design with the response ``y`` (checked: one finite value per row,
        valid for the family)."""
        y = np.array(y, dtype=float).reshape(-1)
        d = self.design
        if y.shape[0] != d.nobs or not np.all(np.isfinite(y)):
            raise ModelError(f"refit needs {d.nobs} finite response values, one per row "
                             "of the fit")
        check_response(self.family, y, d.weights, d.kept_rows)
        return dataclasses.replace(d, y=y, messages=list(self._design_messages))

    def _same_model(self, design, **settings):
        """A model like this one (its settings, but ``settings``) on another design."""
        raise NotImplementedError

    def _finish_messages(self, messages):
        if self.design.n_dropped:
            messages.append(dropped_rows_message(self.design))


class GeneralizedLinearMixedModel(MixedModel):
    """A GLMM to be fitted by maximum likelihood: Laplace (nAGQ=1), adaptive
    Gauss-Hermite quadrature (nAGQ > 1) or the PIRLS-only criterion (nAGQ=0), with
    the fixed effects' covariance by ``se_method`` (see ``fit.glmer``)."""

    def __init__(self, design: ModelDesign, family: Family, nAGQ: int = 1, *,
                 se_method="auto", time_budget=None, max_evals=DEFAULT_MAX_EVALS,
                 progress=None, devfun=None):
        super().__init__(design, family, time_budget=time_budget, max_evals=max_evals,
                         devfun=devfun)
        self.nAGQ = nAGQ
        self.se_method = se_method
        self.progress = progress
        self._quadrature = gauss_hermite(nAGQ) if nAGQ > 1 else None
        self.start_values: StartValues | None = None
        self.stage1: StageOne | None = None

    def _same_model(self, design, **settings):
        kw = dict(se_method=self.se_method, time_budget=self.time_budget,
                  max_evals=self.max_evals, progress=self.progress)
        kw.update(settings)
        if "se_method" in settings:
            check_se_method(kw["se_method"])
        family = kw.pop("family", self.family)
        return GeneralizedLinearMixedModel(design, family, self.nAGQ, **kw)

    # -- the objectives
    def deviance(self, theta, beta) -> float:
        """-2 log-likelihood at (theta, beta): Laplace, or AGQ when nAGQ > 1 (stage
        2's objective; the reported deviance)."""
        if self._quadrature is not None:
            nodes, logw = self._quadrature
            return self.devfun.agq(theta, beta, nodes, logw)
        return self.devfun.laplace(theta, beta)

    def profiled_deviance(self, theta) -> float:
        """The nAGQ=0 criterion at theta, beta solved for by PIRLS with the random
        effects (stage 1's objective, at its inner tolerance)."""
        return self.devfun.laplace(theta, tol=STAGE1_PIRLS_TOL)

    def _joint_deviance(self, x) -> float:
        nt = self.devfun.ntheta
        return self.deviance(x[:nt], x[nt:])

    def _report(self, stage):
        if self.progress is not None:
            self.progress(stage, self.devfun.evaluations)

    # -- the stages
    def fit(self) -> GLMMResult:
        """Fit the model: its result (the estimates in ``self.estimates``)."""
        return GLMMResult(self, self.estimate())

    def estimate(self) -> Estimates:
        """Run the fit's stages and return (and keep) what they found."""
        self.start_values = self._start()
        self.stage1 = self._stage_one()
        timed_out = self.stage1.timed_out
        self.optimum = (self._stage_one_only() if self.nAGQ == 0 or timed_out
                        else self._stage_two())
        self.estimates = self._estimates(self.optimum)
        self.devfun.budget = None       # the result's later evaluations are not the fit's
        return self.estimates

    def _start(self) -> StartValues:
        """A GLM fit for beta (as lme4's glm() start), theta from moments -- or a
        previous fit's optimum (``refit``)."""
        dev, fam, design = self.devfun, self.family, self.design
        mu0 = start.mustart(fam, design.y, design.weights)
        if self._warm_start is not None:
            beta0, theta0 = self._warm_start.beta, self._warm_start.theta
        else:
            beta0 = start.glm_beta(fam, dev, mu0)
            theta0 = None
        dev.set_beta_start(beta0)
        if theta0 is None:
            theta0 = start.moment_theta(dev, fam, beta0) if dev.p else theta_start(dev.terms)
        return StartValues(mu0, np.array(theta0, float), beta0)

    def _stage_one(self) -> StageOne:
        """Theta only, PIRLS over (u, beta), to a looser inner tolerance: it only has
        to land near the optimum (stage 2 refines it)."""
        dev, budget = self.devfun, self.budget
        tol = STAGE1_XTOL if self.nAGQ > 0 else 1e-6
        res = bobyqa(self.profiled_deviance, self.start_values.theta, self.lower,
                     np.full(dev.ntheta, np.inf), np.full(dev.ntheta, 0.2), tol, 1e-8,
                     self.max_evals, budget, ftol_rel=1e-11 if self.nAGQ > 0 else 0.0)
        with budget.finishing():
            st = dev.pirls(res.x)
        if not np.isfinite(res.fun):
            if res.timed_out:
                raise TimeBudgetTooSmall(self.time_budget)
            raise ModelError("the model could not be evaluated at any parameter value "
                             "(PIRLS failed): check for separation or extreme values")
        beta = dev.beta_of(st)
        dev.warm_start_fixed_beta(st)
        self._report("stage 1")
        return StageOne(res.x, beta, res.fun, st, res.message, res.timed_out)

    def _stage_one_only(self) -> Optimum:
        """The answer without stage 2: nAGQ=0 (after lme4's boundary check), or a fit
        the budget stopped in stage 1 (then its Laplace deviance is reported)."""
        dev, s1 = self.devfun, self.stage1
        theta, fval = s1.theta, s1.deviance
        with self.budget.finishing():
            if self.nAGQ == 0:
                theta, fval = check_boundary(self.profiled_deviance, theta, fval, self.lower)
            # (stopped by the budget: stage 1's state at theta is the one to use --
            # slow models must not spend their grace period evaluating it again)
            st = s1.state if self.nAGQ > 0 and dev.budget is not None else dev.pirls(theta)
            beta = dev.beta_of(st)
            if self.nAGQ > 0:       # stopped in stage 1 by the budget: the Laplace value
                dev.pirls(theta, beta)
                fval = self.deviance(theta, beta)
                st = dev.state
        return Optimum(theta, beta, fval, st, message=s1.message, timed_out=s1.timed_out)

    def _joint_gradient(self, x):
        """(Laplace deviance, exact gradient) at x = (theta, beta)."""
        nt = self.devfun.ntheta
        return self.devfun.laplace_gradient(x[:nt], x[nt:])

    def _stage_two(self) -> Optimum:
        """(theta, beta) jointly from stage 1's optimum (lme4's second stage):
        projected quasi-Newton steps from a Hessian, BOBYQA when that quadratic
        model fails; then the boundary check.  The Laplace deviance (nAGQ=1) has
        an exact gradient (``gradient.py``): the steps use it and the Hessian is
        its central differences (``_gradient_steps``); AGQ's deviance (nAGQ > 1)
        is differenced itself (``_value_steps``)."""
        dev, budget, s1 = self.devfun, self.budget, self.stage1
        nt = dev.ntheta
        f2 = self._joint_deviance
        x1 = np.concatenate([s1.theta, s1.beta])
        steps = self._gradient_steps if self.nAGQ == 1 else self._value_steps
        xhat, fval, grad, hess, hess_is_fd, message, timed_out = steps(x1)
        if xhat is None and not timed_out:
            # the quadratic model failed (not positive definite, no descent): BOBYQA
            xhat, fval, res2 = self._bobyqa_stage_two()
            timed_out |= res2.timed_out
            message = res2.message
            if not timed_out:
                try:
                    grad, hess = self._final_hessian(xhat, fval)
                    hess_is_fd = hess is not None
                except FitTimeout:
                    timed_out = True
        with budget.finishing():
            if xhat is None:          # out of time before stage 2 had a point: stage 1's
                xhat, fval = x1, f2(x1)
            self._report("stage 2")
            xhat, fval = check_boundary(f2, xhat, fval, self.lower)
            theta, beta = xhat[:nt], xhat[nt:]
            st = dev.pirls(theta, beta)
            if self.nAGQ > 1:
                fval = self.deviance(theta, beta)
                st = dev.state
        return Optimum(theta, beta, fval, st, grad, hess, hess_is_fd, message, timed_out)

    def _final_hessian(self, xhat, fval):
        """(gradient, Hessian) at stage 2's point when BOBYQA found it: central
        differences of the exact gradient (nAGQ=1; the finite-difference Hessian of
        values if a gradient is not finite), of the deviance otherwise."""
        if self.nAGQ == 1:
            _, g = self._joint_gradient(xhat)
            if np.all(np.isfinite(g)):
                H = hessian_from_gradient(self._joint_gradient, xhat, budget=self.budget,
                                          warm=ModeWarmStarts(self.devfun))
                if H is not None:
                    return g, H
        return hessian_fd(self._joint_deviance, xhat, fx=fval, budget=self.budget)

    def _gradient_steps(self, x1):
        """Stage 2's quasi-Newton steps with the exact gradient: the starting
        Hessian from its forward differences in theta and RX (``_start_hessian``,
        ntheta evaluations), BFGS updates with exact gradients, and at the optimum
        (unless the data are too large or se_method is 'rx': then BFGS's Hessian)
        the accurate Hessian from central differences of the gradient (2k
        evaluations).  Returns (x, f, gradient, Hessian, whether the Hessian is
        accurate, message, timed out); x None when the quadratic model failed
        (BOBYQA then).  Where the gradient is not finite at the start (the observed
        information not positive definite) the steps on values take over."""
        dev, budget = self.devfun, self.budget
        exact = not self._large() and self.se_method != "rx"
        warm = ModeWarmStarts(dev)
        fg = self._joint_gradient
        try:
            f1v, g0 = fg(x1)
            if not (np.isfinite(f1v) and np.all(np.isfinite(g0))):
                return self._value_steps(x1)
            H0 = self._start_hessian(x1, g0, warm)
            if H0 is None:
                return self._value_steps(x1)
            self._report("stage 2 start")
            nr = newton_refine(self._joint_deviance, x1, f1v, g0, H0, self.lower, budget,
                               fg=fg)
            if not nr.ok:
                return None, None, None, None, False, self.stage1.message, False
            grad, hess = nr.grad, nr.hess
            if exact:
                # the accurate Hessian at the optimum (the last evaluation was at nr.x:
                # its modes are the warm starts)
                if np.all(nr.moved == 0.0):
                    fg(nr.x)
                hess = hessian_from_gradient(fg, nr.x, budget=budget, warm=warm)
                if hess is None:
                    grad, hess = hessian_fd(self._joint_deviance, nr.x, fx=nr.fun,
                                            budget=budget)
            return nr.x, nr.fun, grad, hess, exact, "", False
        except FitTimeout:
            return None, None, None, None, False, self.stage1.message, True

    def _start_hessian(self, x1, g0, warm):
        """The Hessian the steps start from: its theta columns (and rows) from
        forward differences of the exact gradient in theta (ntheta evaluations),
        the beta block 2 RX'RX / sigma^2 from stage 1's factor (beta's information
        given theta) -- the BFGS updates correct what that leaves out (the log
        determinant's curvature in beta)."""
        dev = self.devfun
        nt = dev.ntheta
        k = len(x1)
        H = np.zeros((k, k))
        x = np.array(x1, float)
        center = warm.save()
        for j in range(nt):
            if self.budget.expired():
                raise FitTimeout()
            x[j] = x1[j] + EXACT_FD_DELTA
            warm.start(((1.0, center),))
            _, gj = self._joint_gradient(x)
            x[j] = x1[j]
            if not np.all(np.isfinite(gj)):
                return None
            H[:, j] = (gj - g0) / EXACT_FD_DELTA
        warm.start(((1.0, center),))
        H[:nt, :nt] = 0.5 * (H[:nt, :nt] + H[:nt, :nt].T)
        H[:nt, nt:] = H[nt:, :nt].T
        if dev.p:
            rx = rx_cov(dev, x1[:nt], self.stage1.state)
            sig = rx_sigma(dev, self.stage1.state)
            H[nt:, nt:] = 2.0 * np.linalg.inv(sig ** 2 * rx)
            if not np.all(np.isfinite(H)):
                return None
        return H

    def _value_steps(self, x1):
        """Stage 2's quasi-Newton steps on the deviance's values (AGQ): the
        finite-difference Hessian (k^2 + k evaluations) and gradients; see
        ``_gradient_steps`` for what it returns."""
        dev, budget, s1 = self.devfun, self.budget, self.stage1
        f2 = self._joint_deviance
        exact = not self._large() and self.se_method != "rx"
        xhat = fval = grad = hess = None
        hess_is_fd = False          # hess is the finite-difference Hessian (not BFGS's)
        message, timed_out = s1.message, False
        warm = ModeWarmStarts(dev)
        try:
            f1v = f2(x1)
            c1 = warm.save()
            modes0 = None
            if exact:
                g0, H0 = hessian_fd(f2, x1, fx=f1v, budget=budget, warm=warm, center=c1)
            else:
                g0, _, _, modes0 = gradient(f2, x1, budget=budget, values=True, warm=warm,
                                            center=c1)
                H0 = self._approx_hessian(x1, f1v)
            self._report("stage 2 start")
            nr = newton_refine(f2, x1, f1v, g0, H0, self.lower, budget, warm=warm,
                               modes0=modes0)
            if nr.ok:
                xhat, fval, grad = nr.x, nr.fun, nr.grad
                hess, hess_is_fd = (H0, True) if exact else (nr.hess, False)
                if exact and np.any(nr.moved != 0.0):
                    grad, hess = hessian_fd(f2, xhat, fx=fval, budget=budget,
                                            axis_values=nr.axis_values, warm=warm)
                message = ""
        except FitTimeout:
            timed_out = True
        return xhat, fval, grad, hess, hess_is_fd, message, timed_out

    def _large(self) -> bool:
        """Too large for a finite-difference Hessian under se_method 'auto'."""
        dev = self.devfun
        return self.se_method == "auto" and fd_hessian_too_large(dev.n, dev.ntheta + dev.p,
                                                                  dev.terms)

    def _approx_hessian(self, x1, f1v):
        """A cheap starting Hessian for large data: finite differences over theta,
        2 RX'RX / sigma^2 for beta (the fixed effects' information), no cross terms;
        the quasi-Newton updates correct it."""
        dev, st1 = self.devfun, self.stage1.state
        nt = dev.ntheta
        beta1 = x1[nt:]
        _, Htt = hessian_fd(lambda th: self._joint_deviance(np.concatenate([th, beta1])),
                            x1[:nt], fx=f1v, budget=self.budget)
        H = np.zeros((len(x1), len(x1)))
        H[:nt, :nt] = Htt
        if dev.p:
            rx = rx_cov(dev, x1[:nt], st1)
            sig = rx_sigma(dev, st1)
            H[nt:, nt:] = 2.0 * np.linalg.inv(sig ** 2 * rx)
        return H

    def _bobyqa_stage_two(self):
        """Stage 2 by BOBYQA, beta on the scale of its RX standard errors."""
        dev, s1 = self.devfun, self.stage1
        nt, p = dev.ntheta, dev.p
        rx = rx_cov(dev, s1.theta, s1.state)
        scale = np.sqrt(np.clip(np.diag(rx), 1e-12, None)) if p else np.zeros(0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

        def f2s(x):
            return self.deviance(x[:nt], x[nt:] * scale)
        x0 = np.concatenate([s1.theta, s1.beta / scale])
        lo = np.concatenate([self.lower, np.full(p, -np.inf)])
        step = np.concatenate([np.full(nt, 0.05), np.full(p, 0.25)])
        res = bobyqa(f2s, x0, lo, np.full(nt + p, np.inf), step, 1e-7, 1e-10,
                     self.max_evals, self.budget)
        xhat = np.concatenate([res.x[:nt], res.x[nt:] * scale])
        return xhat, res.fun, res

    def _convergence(self, opt: Optimum, messages: list) -> tuple[bool, bool]:
        """(converged, singular), the checks' notes added to ``messages``: the
        budget, PIRLS at the optimum, the optimizer's message, a singular fit, and
        lme4's gradient and Hessian checks."""
        singular = is_singular(opt.theta, self.lower)
        converged = not opt.timed_out and opt.state.ok
        if opt.timed_out:
            messages.append(timeout_message(self.time_budget))
        if not opt.state.ok:
            messages.append("The conditional modes (PIRLS) did not converge at the final "
                            "estimates; results are unreliable.")
        if opt.message and opt.message not in ("time budget reached",):
            if "limit" in opt.message:
                converged = False
            messages.append(f"Optimizer: {opt.message}.")
        if singular:
            messages.append(SINGULAR_MESSAGE)
        elif opt.hessian is not None:
            conv_msgs = check_convergence(opt.gradient, opt.hessian)
            if any("failed to converge" in m for m in conv_msgs):
                converged = False
            messages += conv_msgs
        return converged, singular

    def _lme4_cov(self, opt: Optimum):
        """The covariance from lme4's own finite-difference Hessian (its early-stopped
        PIRLS, reproduced), None when it is not positive definite or the budget ran
        out."""
        dev, nt = self.devfun, self.devfun.ntheta
        f_lme4 = dev.lme4_devfun(self.stage1.theta, self.start_values.mu)
        x_hat = np.concatenate([opt.theta, opt.beta])
        f_hat, its = f_lme4(opt.theta, opt.beta)
        try:
            _, h_lme4 = deriv12(lambda x: f_lme4(x[:nt], x[nt:], its)[0], x_hat, fx=f_hat,
                                budget=self.budget, delta=LME4_HESSIAN_STEP,
                                scale=parameter_scales(opt.hessian, nt))
        except FitTimeout:
            return None
        return cov_from_hessian(h_lme4, nt)

    def _covariance(self, opt: Optimum, messages: list):
        """(vcov, its label, sigma, v_rx, v_exact): the fixed effects' covariance
        (lme4: 2 x inverse Hessian in (theta, beta), beta block) chosen by se_method,
        its note added to ``messages``."""
        dev = self.devfun
        nt, p = dev.ntheta, dev.p
        rx = rx_cov(dev, opt.theta, opt.state)
        sig = sigma(dev, opt.state)
        v_rx = rx_sigma(dev, opt.state) ** 2 * rx if p else rx
        v_exact = cov_from_hessian(opt.hessian, nt) if (p and opt.hessian_is_fd) else None
        v_lme4 = None
        # lme4's stencil belongs to lme4's Laplace approximation
        lme4_laplace = not (self.family.exact and self.family.laplace_differs)
        want_lme4 = self.se_method == "lme4" or (
            self.se_method == "auto" and dev.n < LME4_SE_MAX_N and lme4_laplace
            and nt + p <= LME4_STENCIL_MAX_PARAMS)
        if p and self.nAGQ == 1 and v_exact is not None and want_lme4:
            v_lme4 = self._lme4_cov(opt)
        if self._large() and p:
            vcov, label, note = v_rx, "RX (large data)", LARGE_DATA_NOTE
        else:
            vcov, label, note = choose_cov(self.se_method, self.nAGQ, v_exact, v_lme4, v_rx)
        if note:
            messages.append(note)
        return vcov, label, sig, v_rx, v_exact

    def _estimates(self, opt: Optimum) -> Estimates:
        dev = self.devfun
        messages = list(self.design.messages)
        converged, singular = self._convergence(opt, messages)
        flat = dev.flat_mode(opt.state) if self.nAGQ == 1 else 0
        if flat:
            converged = False
            messages.append(
                f"The Laplace approximation breaks down at these estimates: {flat} random "
                f"effect{'s' if flat > 1 else ''} (e.g. groups whose counts are all zero) "
                "sit where their likelihood is almost flat, and the log-likelihood is "
                "unreliable (too high): NOT converged. A model with fewer parameters (no "
                "zero inflation, or a smaller random-effect SD) may fit.")
        vcov, label, sig, v_rx, v_exact = self._covariance(opt, messages)
        self._finish_messages(messages)
        se_z = fit_scale_statistics(dev, opt.beta, vcov)
        beta, vcov, v_rx, v_exact, grad, hess = unscale(dev, opt.beta, vcov, v_rx, v_exact,
                                                        opt.gradient, opt.hessian, messages)
        return Estimates(theta=opt.theta, beta=beta, deviance=float(opt.deviance),
                         state=opt.state, sigma=sig, vcov=vcov, vcov_method=label,
                         vcov_rx=v_rx, vcov_exact=v_exact, se_z=se_z, gradient=grad,
                         hessian=hess, converged=converged, singular=singular,
                         stopped_by_budget=opt.timed_out, messages=messages,
                         evaluations=dev.evaluations)
