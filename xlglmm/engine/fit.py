"""``glmer``: formula + data -> fitted GLMM (the pipeline's driver).

    design  = build_design(...)         # design.py: X, Z terms, offset, weights
    devfun  = GlmmDeviance(design, ...) # devfun.py: PIRLS / Laplace / AGQ kernels
    stage 1 (theta; beta by PIRLS), stage 2 (theta, beta)   # optimize.py
    result  = GLMMResult(...)           # results.py
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize as _sciopt

from . import cost, jit, start
from .design import DesignError, ModelDesign, build_design
from .devfun import PIRLS_MAXIT, GlmmDeviance, ModeWarmStarts, gauss_hermite, theta_start
from .family import Family, estimates_theta, make_family
from .optimize import (EXACT_FD_DELTA, Budget, BudgetExhausted, FitTimeout, bobyqa,
                       check_boundary,
                       check_convergence, deriv12, gradient, hessian_fd, is_singular,
                       newton_refine)
from .results import GLMMResult

MAX_AGQ = 100
NB_LOG_THETA_BOUNDS = (math.log(1e-3), math.log(1e6))
STAGE1_XTOL = 1e-3
STAGE1_PIRLS_TOL = 1e-12
DEFAULT_MAX_EVALS = 20000


SINGULAR_MESSAGE = ("boundary (singular) fit: a random-effect variance is estimated at "
                    "(or near) zero, or a correlation at +/-1 -- the random-effects "
                    "structure is more complex than the data support; consider "
                    "simplifying it.")


def dropped_rows_message(design: ModelDesign) -> str:
    k = design.n_dropped
    return f"{k} row{'s' if k != 1 else ''} with missing values removed."


class ModelError(ValueError):
    """The model cannot be fitted as specified (e.g. nAGQ > 1 with two terms)."""


def check_model(design: ModelDesign, fam: Family, nAGQ: int):
    """Refuse (ModelError) what no fit can do: a grouping factor with fewer than 2
    levels; nAGQ > 1 with anything but one scalar random-effects term, or with a family
    that has a dispersion parameter.  Run by glmer and lmer before any fitting."""
    for t in design.re_terms:
        if t.nlevels < 2:
            raise ModelError(f"grouping factor '{t.group}' has {t.nlevels} level: a random "
                             "effect needs at least 2 groups")
    if nAGQ > 1:
        if len(design.re_terms) != 1 or design.re_terms[0].k != 1:
            raise ModelError("nAGQ > 1 is only available for models with a single, scalar "
                             "random-effects term (one random intercept); use nAGQ=1 "
                             "(Laplace) for crossed, nested or random-slope models")
        if fam.has_dispersion:
            raise ModelError(f"nAGQ > 1 is not available for the {fam.name} family; "
                             "use nAGQ=1 (Laplace)")


def glmer(formula, data, family="poisson", *, link=None, offset=None, weights=None,
          nAGQ=1, groups=None, se_method="auto", time_budget=None,
          max_evals=DEFAULT_MAX_EVALS, progress=None, check_design=None) -> GLMMResult:
    """Fit a generalized linear mixed model by maximum likelihood (Laplace or AGQ).

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"y ~ x + (1|g)"``, ``"cbind(s, f) ~ period + (1|herd)"``.
    data : pandas.DataFrame or dict of columns
    family : "poisson", "binomial", "gamma" (or a :class:`Family`)
    link : link name; default the family's canonical link (Gamma: inverse, as R)
    offset : array or column name, on the link scale (e.g. ``np.log(exposure)``)
    weights : prior weights; for the binomial the number of trials (response a proportion)
    nAGQ : 1 = Laplace (default), >1 = adaptive Gauss-Hermite points (one scalar
        random-effects term only), 0 = the fast PIRLS-only criterion
    groups : list of column names, each adding a random intercept ``(1|col)``
    se_method : how the fixed-effect covariance is computed.  All but "rx" are
        2 x the inverse Hessian of the deviance in (theta, beta), as lme4's default:
        ``"auto"`` (default) lme4's own finite differences of its early-stopped PIRLS,
        so the SEs equal lme4's printed ones, unless they disagree with the accurate
        Hessian by more than 5% (then the accurate one, with a note);
        ``"hessian"`` the accurately computed Hessian (lme4's SEs are 0-1.5% smaller
        on small data); ``"lme4"`` lme4's version always; ``"rx"`` the PIRLS
        cross-product (RX) version, conditional on theta.  nAGQ > 1: accurate
        Hessian; nAGQ = 0: RX (as lme4).
    time_budget : seconds of fitting; when exceeded the best fit so far is returned,
        flagged as not converged.  The one-time compilation of the kernels on first
        use is not counted (``res.compile_seconds`` says how long it took)
    max_evals : cap on deviance evaluations per optimisation stage
    progress : optional callable(stage: str, evaluations: int) for long fits
    check_design : optional callable(design, family) run on the built design before
        the fit (the worksheet functions refuse unidentifiable models with it, so
        that the design is built once)
    """
    try:
        return jit.timed(_glmer, formula, data, family, link=link, offset=offset,
                         weights=weights, nAGQ=nAGQ, groups=groups, se_method=se_method,
                         time_budget=time_budget, max_evals=max_evals, progress=progress,
                         check_design=check_design)
    except BudgetExhausted as e:
        raise ModelError(str(e)) from None


def timeout_message(time_budget) -> str:
    """The note of a fit stopped by its time budget.  Where the clock stops the
    optimizer depends on the machine and its load, so the same call can stop at
    another point in another run: the note says so (issue 18, item 15)."""
    return (f"Stopped at the time budget of {time_budget:g} s before the optimizer "
            "converged: the estimates are the best found so far, NOT converged, and "
            "their digits depend on where the clock stopped the fit (another run can "
            "give others).")


def prepare(design, fam, time_budget, max_evals):
    """The fit's deviance function and budget, after the cost guards (cost.check):
    models whose PIRLS iterations are slow check the budget between them."""
    c = cost.check(design, time_budget)
    note = cost.range_note(fam, design.y, design.weights)
    if note and note not in design.messages:
        design.messages.append(note)
    budget = Budget(time_budget, max_evals)
    dev = GlmmDeviance(design, fam)
    if time_budget is not None:
        dev.budget = budget
        dev.piece_iterations = cost.piece_iterations(c, time_budget, PIRLS_MAXIT)
    return dev, budget


def _glmer(formula, data, family, *, link, offset, weights, nAGQ, groups, se_method,
           time_budget, max_evals, progress, check_design=None) -> GLMMResult:
    if estimates_theta(family):      # a name such as "negbin" or "nb"
        return _glmer_nb(formula, data, link=link, offset=offset, weights=weights,
                         nAGQ=nAGQ, groups=groups, se_method=se_method,
                         time_budget=time_budget, max_evals=max_evals, progress=progress,
                         check_design=check_design)
    try:
        fam = make_family(family, link)
    except (ValueError, TypeError) as e:
        raise ModelError(str(e)) from None
    if isinstance(nAGQ, bool) or not float(nAGQ).is_integer() or not 0 <= int(nAGQ) <= MAX_AGQ:
        raise ModelError(f"nAGQ must be a whole number from 0 to {MAX_AGQ}")
    nAGQ = int(nAGQ)
    if se_method not in ("auto", "hessian", "lme4", "rx"):
        raise ModelError("se_method must be 'auto', 'hessian', 'lme4' or 'rx'")
    design = build_design(formula, data, fam, offset=offset, weights=weights, groups=groups,
                          time_budget=time_budget)
    if check_design is not None:
        check_design(design, fam)
    check_model(design, fam, nAGQ)
    dev, budget = prepare(design, fam, time_budget, max_evals)
    messages = list(design.messages)
    timed_out = False
    p = dev.p
    lower = dev.lower
    upper = np.full(dev.ntheta, np.inf)

    # starting values: a GLM fit for beta (as lme4's glm() start), theta from moments
    mu0 = start.mustart(fam, design.y, design.weights)
    beta0 = start.glm_beta(fam, dev, mu0)
    dev.set_beta_start(beta0)
    theta0 = start.moment_theta(dev, fam, beta0) if p else theta_start(dev.terms)

    def report(stage):
        if progress is not None:
            progress(stage, dev.evaluations)

    # stage 1: theta only, PIRLS over (u, beta), to a looser inner tolerance: it only
    # has to land near the optimum
    def f1(theta):
        return dev.laplace(theta, tol=STAGE1_PIRLS_TOL)
    # stage 1 only has to land near the optimum (stage 2 refines it): loose tolerances
    tol1 = STAGE1_XTOL if nAGQ > 0 else 1e-6
    res1 = bobyqa(f1, theta0, lower, upper, np.full(dev.ntheta, 0.2), tol1, 1e-8,
                  max_evals, budget, ftol_rel=1e-11 if nAGQ > 0 else 0.0)
    timed_out |= res1.timed_out
    theta1 = res1.x
    with budget.finishing():
        st1 = dev.pirls(theta1)
    if not np.isfinite(res1.fun):
        if res1.timed_out:
            raise ModelError(f"the time budget of {time_budget:g} s ran out before the "
                             "model could be evaluated once")
        raise ModelError("the model could not be evaluated at any parameter value "
                         "(PIRLS failed): check for separation or extreme values")
    beta1 = dev.beta_of(st1)
    dev.warm_start_fixed_beta(st1)
    report("stage 1")

    nodes = logw = None
    if nAGQ > 1:
        nodes, logw = gauss_hermite(nAGQ)

    def f2_raw(theta, beta):
        if nAGQ > 1:
            return dev.agq(theta, beta, nodes, logw)
        return dev.laplace(theta, beta)

    nt = dev.ntheta
    grad = hess = None
    hess_is_fd = False          # hess is the finite-difference Hessian (not BFGS's)
    opt_message = res1.message
    evals = res1.nevals
    if nAGQ == 0 or timed_out:
        theta_hat, beta_hat = theta1, beta1
        fval = res1.fun
        with budget.finishing():
            if nAGQ == 0:
                theta_hat, fval = check_boundary(f1, theta_hat, fval, lower)
            # (stopped by the budget: stage 1's state at theta1 is the one to use --
            # slow models must not spend their grace period evaluating it again)
            st = st1 if nAGQ > 0 and dev.budget is not None else dev.pirls(theta_hat)
            beta_hat = dev.beta_of(st)
            if nAGQ > 0:       # stopped in stage 1 by the budget: report the Laplace value
                st = dev.pirls(theta_hat, beta_hat)
                fval = f2_raw(theta_hat, beta_hat)
                st = dev.state
    else:
        # stage 2: (theta, beta) jointly, from stage 1's optimum (lme4's second stage)
        def f2(x):
            return f2_raw(x[:nt], x[nt:])
        x1 = np.concatenate([theta1, beta1])
        large = se_method == "auto" and dev.n * (nt + p) ** 2 > FD_HESSIAN_MAX_WORK
        exact = not large and se_method != "rx"
        xhat = fval = None
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
                H0 = _approx_hessian(dev, f2, x1, f1v, st1, budget)
            report("stage 2 start")
            nr = newton_refine(f2, x1, f1v, g0, H0, lower, budget, warm=warm,
                               modes0=modes0)
            if nr.ok:
                xhat, fval, grad = nr.x, nr.fun, nr.grad
                hess, hess_is_fd = (H0, True) if exact else (nr.hess, False)
                if exact and np.any(nr.moved != 0.0):
                    grad, hess = hessian_fd(f2, xhat, fx=fval, budget=budget,
                                            axis_values=nr.axis_values, warm=warm)
                opt_message = ""
        except FitTimeout:
            timed_out = True
        if xhat is None and not timed_out:
            # the quadratic model failed (not positive definite, no descent): BOBYQA
            xhat, fval, res2 = _bobyqa_stage2(dev, f2_raw, theta1, beta1, st1, lower,
                                              max_evals, budget)
            timed_out |= res2.timed_out
            opt_message = res2.message
            if not timed_out:
                try:
                    grad, hess = hessian_fd(f2, xhat, fx=fval, budget=budget)
                    hess_is_fd = True
                except FitTimeout:
                    timed_out = True
        with budget.finishing():
            if xhat is None:          # out of time before stage 2 had a point: stage 1's
                xhat, fval = x1, f2(x1)
            report("stage 2")
            xhat, fval = check_boundary(f2, xhat, fval, lower)
            theta_hat, beta_hat = xhat[:nt], xhat[nt:]
            st = dev.pirls(theta_hat, beta_hat)
            if nAGQ > 1:
                fval = f2_raw(theta_hat, beta_hat)
                st = dev.state

    singular = is_singular(theta_hat, lower)
    converged = not timed_out and st.ok
    if timed_out:
        messages.append(timeout_message(time_budget))
    if not st.ok:
        messages.append("The conditional modes (PIRLS) did not converge at the final "
                        "estimates; results are unreliable.")
    if opt_message and opt_message not in ("time budget reached",):
        if "limit" in opt_message:
            converged = False
        messages.append(f"Optimizer: {opt_message}.")
    if singular:
        messages.append(SINGULAR_MESSAGE)
    elif hess is not None:
        conv_msgs = check_convergence(grad, hess)
        if any("failed to converge" in m for m in conv_msgs):
            converged = False
        messages += conv_msgs

    # fixed-effect covariance (lme4: 2 x inverse Hessian in (theta, beta), beta block)
    st_final = st
    rx = _rx_cov(dev, theta_hat, st_final)
    sigma = _sigma(dev, st_final)
    v_rx = sigma ** 2 * rx if p else rx
    v_exact = _cov_from_hessian(hess, nt) if (p and hess_is_fd) else None
    large = se_method == "auto" and dev.n * (nt + p) ** 2 > FD_HESSIAN_MAX_WORK
    v_lme4 = None
    want_lme4 = se_method == "lme4" or (se_method == "auto" and dev.n < LME4_SE_MAX_N)
    if p and nAGQ == 1 and v_exact is not None and want_lme4:
        f_lme4 = dev.lme4_devfun(theta1, mu0)
        x_hat = np.concatenate([theta_hat, beta_hat])
        f_hat, its = f_lme4(theta_hat, beta_hat)
        try:
            _, h_lme4 = deriv12(lambda x: f_lme4(x[:nt], x[nt:], its)[0], x_hat, fx=f_hat,
                                budget=budget, delta=LME4_HESSIAN_STEP,
                                scale=_parameter_scales(hess, nt))
            v_lme4 = _cov_from_hessian(h_lme4, nt)
        except FitTimeout:
            v_lme4 = None
    if large and p:
        vcov, vcov_method, note = v_rx, "RX (large data)", (
            "Standard errors come from the PIRLS cross-product (RX), as the data are too "
            "large for a finite-difference Hessian; they treat the variance parameters as "
            "known and can be a few percent small for random slopes (se_method='hessian' "
            "computes the Hessian).")
    else:
        vcov, vcov_method, note = _choose_cov(se_method, nAGQ, v_exact, v_lme4, v_rx)
    if note:
        messages.append(note)

    if design.n_dropped:
        messages.append(dropped_rows_message(design))
    se_z = fit_scale_statistics(dev, beta_hat, vcov)
    beta_hat, vcov, v_rx, v_exact, grad, hess = unscale(dev, beta_hat, vcov, v_rx, v_exact,
                                                        grad, hess, messages)
    dev.budget = None       # the result's later evaluations are not the fit's
    return GLMMResult(
        design=design, devfun=dev, family=fam, nAGQ=nAGQ, theta=theta_hat, beta=beta_hat,
        vcov=vcov, vcov_method=vcov_method, vcov_rx=v_rx, vcov_exact=v_exact,
        deviance_value=float(fval), state=st_final, sigma=sigma, converged=converged,
        singular=singular, messages=messages, gradient=grad, hessian=hess,
        evaluations=dev.evaluations, seconds=float("nan"),
        formula=design.spec.formula.text, se_z=se_z, stopped_by_budget=timed_out)


def unscale(dev: GlmmDeviance, beta, vcov, v_rx, v_exact, grad=None, hess=None,
            messages=None):
    """The coefficients and their covariances (and the gradient and Hessian in
    (theta, beta)) on the data's scale, from the fit's scale of fixed-effect
    columns of extreme size (``devfun.x_exponents``, column j divided by 2^e_j):
    beta * s and diag(s) V diag(s) with s = 2^-e, applied with ldexp (s itself may
    be beyond double precision).  A variance beyond double
    precision's range (a column of values beyond ~1e150 or below ~1e-150: its SE
    squared) is named in a note in ``messages``; the standard errors, z and p values
    come from ``fit_scale_statistics`` and stay right."""
    e = dev.x_exp
    if e is None:
        return beta, vcov, v_rx, v_exact, grad, hess
    e = np.asarray(e, np.int64)
    # s = 2^-e: the data's beta is the fit's beta * s (its column was divided by s)
    ee = -(e[:, None] + e[None, :])

    def cov(v):
        return None if v is None else np.ldexp(v, ee)
    nt = dev.ntheta
    ed = np.concatenate([np.zeros(nt, np.int64), e])
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        grad = None if grad is None else np.ldexp(grad, ed)
        hess = None if hess is None else np.ldexp(hess, ed[:, None] + ed[None, :])
        out = np.ldexp(beta, -e), cov(vcov), cov(v_rx), cov(v_exact), grad, hess
        v_fit, v_out = np.diag(vcov), np.diag(out[1])
        lost = (v_fit > 0) & np.isfinite(v_fit) & ~((v_out >= np.finfo(float).tiny)
                                                    & np.isfinite(v_out))
    if lost.any() and messages is not None:
        names = ", ".join(dev.design.x_names[j] for j in np.flatnonzero(lost))
        se = fit_scale_statistics(dev, beta, vcov)[0][lost]
        what = ("their standard errors are shown, and the z and p values are exact"
                if np.all(np.isfinite(se) & (se > 0)) else
                "where a standard error or estimate is beyond it too it is left blank; the z "
                "and p values are exact")
        messages.append(f"The variances of {names} are beyond double precision's range "
                        "(a predictor with values beyond about 1e150 or below 1e-150), so "
                        f"the covariance matrix cannot hold them: {what}; rescaling the "
                        "predictor avoids this.")
    return out


def fit_scale_statistics(dev: GlmmDeviance, beta, vcov):
    """(standard errors on the data's scale, z values) of a fit whose columns were
    rescaled (``dev.x_exp``), from the fit's own scale: z = beta / se there, which
    does not depend on the scale (a power of two) -- on the data's scale the
    variance of a predictor in units of 1e200 underflows to 0, and z came out blank
    and p 0.  The SE is sqrt(V_jj) * 2^-e_j with ldexp: NaN (blank) only when it is
    itself beyond double precision.  None when nothing was rescaled."""
    e = dev.x_exp
    if e is None or len(beta) == 0:
        return None
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        se_fit = np.sqrt(np.diag(vcov))
        z = np.asarray(beta, float) / se_fit
        se = np.ldexp(se_fit, -np.asarray(e, np.int64))
    se = np.where(np.isfinite(se) & ((se > 0) | (se_fit == 0)), se, np.nan)
    return se, z


def _rx_cov(dev: GlmmDeviance, theta, st) -> np.ndarray:
    """(RX'RX)^{-1}: the fixed-effect block of the inverse of the PIRLS system at the
    state's weights (lme4's ``unsc()``)."""
    p = dev.p
    if p == 0:
        return np.zeros((0, 0))
    _, _, LS, _, _, ok = dev.factor_at(theta, st, with_beta=True)
    if not ok:
        return np.full((p, p), np.nan)
    inv = np.linalg.inv(LS[dev.q2:, dev.q2:])   # lower factor of the Schur complement
    return inv.T @ inv


LME4_SE_MAX_N = 10_000       # 'auto' reproduces lme4's own FD Hessian below this size
FD_HESSIAN_MAX_WORK = 2e7    # n * k^2 above which 'auto' takes SEs from RX (see docs)


def NegativeBinomial2(theta: float, link: str = "log") -> Family:
    """The NB2 family with a fixed shape: variance mu + mu^2 / theta."""
    if not (isinstance(theta, (int, float)) and theta > 0 and math.isfinite(theta)):
        raise ModelError("the negative binomial theta must be a positive number")
    return Family("negbin", link, float(theta))


def _glmer_nb(formula, data, *, link, offset, weights, nAGQ, groups, se_method,
              time_budget, max_evals, progress, check_design=None):
    """NB2 GLMM with theta estimated by maximum likelihood: the Laplace
    log-likelihood profiled over log(theta) (each point a full fit with theta
    fixed), maximised by bounded Brent; theta's SE from the profile's curvature.
    lme4's glmer.nb alternates theta and the GLMM instead; both aim at the same
    maximum."""
    budget = Budget(time_budget, max_evals)

    def left(least=0.0):
        """The budget's time left for a nested fit (each has its own clock): the
        whole estimate stays within the budget (plus the grace of the last fit)."""
        if time_budget is None:
            return None
        return max(time_budget - budget.clock.elapsed(), least, 1e-3)
    pois = glmer(formula, data, "poisson", link=link, offset=offset, weights=weights,
                 nAGQ=nAGQ, groups=groups, se_method="rx", time_budget=time_budget,
                 check_design=check_design)
    y, mu = pois.design.y, pois.fittedvalues.to_numpy()
    extra = float(np.mean((y - mu) ** 2 - y))
    start = float(np.clip(np.mean(mu) ** 2 / extra, 0.01, 1e5)) if extra > 0 else 1e5
    fits: dict = {}

    def nll(log_theta):
        key = round(float(log_theta), 12)
        if key not in fits:
            if budget.expired():
                raise FitTimeout()
            fits[key] = glmer(formula, data, NegativeBinomial2(math.exp(key), link or "log"),
                              offset=offset, weights=weights, nAGQ=nAGQ, groups=groups,
                              se_method="rx", time_budget=left(), max_evals=max_evals)
            if progress is not None:
                progress("negative binomial theta", len(fits))
            if fits[key].stopped_by_budget:
                del fits[key]           # not a value of the profile: out of time
                raise FitTimeout()
        return -fits[key].llf

    lo, hi = NB_LOG_THETA_BOUNDS
    timed_out = False
    try:
        opt = _sciopt.minimize_scalar(nll, bracket=(max(lo, math.log(start) - 1.0),
                                                    min(hi, math.log(start) + 1.0)),
                                      bounds=(lo, hi), method="bounded",
                                      options={"xatol": 1e-5})
        best = float(opt.x)
    except FitTimeout:
        timed_out = True
        best = min(fits, key=lambda k: -fits[k].llf) if fits else math.log(start)
    at_bound = best > hi - 0.05
    if at_bound:
        best = hi     # report the bound itself: the optimizer's end point there is arbitrary
    # the reported fit: theta fixed at its estimate, with the requested SEs
    res = glmer(formula, data, NegativeBinomial2(math.exp(best), link or "log"),
                offset=offset, weights=weights, nAGQ=nAGQ, groups=groups,
                se_method=se_method, time_budget=left(0.25 * (time_budget or 0)),
                max_evals=max_evals)
    h = 0.05
    se_log = float("nan")
    if not at_bound and not timed_out:
        try:
            d2 = 2.0 * (nll(best + h) - 2.0 * nll(best) + nll(best - h)) / (h * h)
            if d2 > 0:
                se_log = math.sqrt(2.0 / d2)
        except FitTimeout:
            timed_out = True
    res.nb_theta = math.exp(best)
    res.nb_theta_se = res.nb_theta * se_log
    res.nb_theta_ci = (math.exp(best - 1.959964 * se_log), math.exp(best + 1.959964 * se_log)) \
        if math.isfinite(se_log) else (float("nan"), float("nan"))
    res.npar += 1
    res.aic = res.deviance + 2.0 * res.npar
    res.bic = res.deviance + math.log(res.nobs) * res.npar
    res.df_resid = res.nobs - res.npar
    res.method = res.method + ", NB theta by ML"
    if at_bound:
        res.messages.append(
            f"The negative binomial theta ran to its upper limit ({math.exp(hi):.0e}): the "
            "data show no overdispersion beyond the random effects, and the model reduces "
            "to the Poisson GLMM (compare their AICs).")
    if timed_out:
        res.converged = False
        res.messages.append("Stopped at the time budget while estimating theta: NOT converged.")
    res.poisson_fit = pois
    return res


LME4_HESSIAN_STEP = 0.01    # finite-difference step of lme4's Hessian, in standard errors


def _parameter_scales(hess, nt: int) -> np.ndarray:
    """Each parameter's standard error, sqrt(diag(2 H^-1)) of the deviance Hessian
    in (theta, beta): the steps of lme4's Hessian are ``LME4_HESSIAN_STEP`` of these.

    lme4 differences its deviance with absolute steps of 1e-4.  Rounding noise in
    the deviance (~1e-12) then reaches 1e-4 relative in the SEs of parameters with
    large SEs -- the last bits of the CPU's arithmetic, amplified -- while a
    parameter with a tiny SE moves by a sizeable part of it.  A step of 1% of each
    parameter's SE makes the noise ~1e-8 relative on every parameter; the stencil's
    truncation error is ~1e-4 of the Hessian, deterministic, and below lme4's own
    noise.  (The stencil differences lme4's function with its iteration count held
    at the centre's, see ``GlmmDeviance.lme4_devfun``, so it is smooth.)"""
    try:
        se = np.sqrt(np.abs(np.diag(2.0 * np.linalg.inv(hess))))
    except np.linalg.LinAlgError:
        se = np.full(hess.shape[0], np.nan)
    scale = np.where(np.isfinite(se) & (se > 0), np.clip(se, 1e-6, 1e3), 0.01)
    scale[:nt] = np.minimum(scale[:nt], 5.0)   # theta moves by at most 0.05 (its scale is 1)
    return scale


def _approx_hessian(dev, f2, x1, f1v, st1, budget):
    """A cheap starting Hessian for large data: finite differences over theta,
    2 RX'RX / sigma^2 for beta (the fixed effects' information), no cross terms;
    the quasi-Newton updates correct it."""
    nt = dev.ntheta
    beta1 = x1[nt:]
    _, Htt = hessian_fd(lambda th: f2(np.concatenate([th, beta1])), x1[:nt], fx=f1v,
                        budget=budget)
    H = np.zeros((len(x1), len(x1)))
    H[:nt, :nt] = Htt
    if dev.p:
        rx = _rx_cov(dev, x1[:nt], st1)
        sig = _sigma(dev, st1)
        H[nt:, nt:] = 2.0 * np.linalg.inv(sig ** 2 * rx)
    return H


def _bobyqa_stage2(dev, f2_raw, theta1, beta1, st1, lower, max_evals, budget):
    nt, p = dev.ntheta, dev.p
    rx = _rx_cov(dev, theta1, st1)
    scale = np.sqrt(np.clip(np.diag(rx), 1e-12, None)) if p else np.zeros(0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

    def f2s(x):
        return f2_raw(x[:nt], x[nt:] * scale)
    x0 = np.concatenate([theta1, beta1 / scale])
    lo = np.concatenate([lower, np.full(p, -np.inf)])
    step = np.concatenate([np.full(nt, 0.05), np.full(p, 0.25)])
    res = bobyqa(f2s, x0, lo, np.full(nt + p, np.inf), step, 1e-7, 1e-10, max_evals, budget)
    xhat = np.concatenate([res.x[:nt], res.x[nt:] * scale])
    return xhat, res.fun, res


def _cov_from_hessian(h, nt):
    """lme4's calc.vcov.hess: (H^-1 + H^-T) restricted to beta; None unless finite
    and positive definite."""
    if h is None or not np.all(np.isfinite(h)):
        return None
    try:
        Hi = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
    V = (Hi + Hi.T)[nt:, nt:]
    if not np.all(np.isfinite(V)) or np.linalg.eigvalsh(V).min() <= 0:
        return None
    return V


SE_AGREEMENT = 0.05


def _choose_cov(se_method, nAGQ, v_exact, v_lme4, v_rx):
    """Which covariance the fit reports, its label, and a note when it is not the one
    asked for.  'auto': lme4's own finite-difference Hessian when it agrees with the
    exact one within 5% in every SE (then the SEs equal lme4's printed ones), else
    the exact Hessian; PIRLS-only fits (nAGQ=0) use RX, as lme4."""
    if v_rx.shape[0] == 0:
        return v_rx, "none", ""
    if se_method == "rx" or nAGQ == 0:
        return v_rx, "RX", ""
    fallback = ("variance-covariance matrix computed from finite-difference Hessian is "
                "not positive definite or contains NA values: falling back to var-cov "
                "estimated from RX")
    if se_method == "hessian" or nAGQ > 1 or (v_lme4 is None and se_method == "auto"):
        if v_exact is not None:
            return v_exact, "Hessian", ""
        return v_rx, "RX", fallback
    # 'lme4' or 'auto' with lme4's version available
    if v_exact is None:
        return (v_lme4, "Hessian (lme4's finite differences)", "") if v_lme4 is not None \
            else (v_rx, "RX", fallback)
    if v_lme4 is None:
        return v_exact, "Hessian", ("lme4's finite-difference Hessian is not positive "
                                    "definite here; the accurate Hessian is used")
    ratio = np.sqrt(np.diag(v_lme4) / np.diag(v_exact))
    worst = float(np.max(np.abs(ratio - 1.0)))
    if se_method == "lme4" or worst <= SE_AGREEMENT:
        return v_lme4, "Hessian (lme4's finite differences)", ""
    return v_exact, "Hessian", (
        f"lme4's finite-difference standard errors would be off by up to {100 * worst:.0f}% "
        "here (its inner iterations stop early); the accurately computed Hessian is used.")


def _sigma(dev: GlmmDeviance, st) -> float:
    """lme4's sigma for families with a scale (Gamma, Gaussian):
    sqrt((Pearson chi^2 + |u|^2) / n); 1 otherwise."""
    if not dev.family.has_dispersion:
        return 1.0
    mu = st.mu
    wrss = float(np.sum(dev.pw * (dev.y - mu) ** 2 / dev.family.variance(mu)))
    ussq = float(np.sum(st.u1 ** 2) + np.sum(st.v[:dev.q2] ** 2))
    return float(np.sqrt((wrss + ussq) / dev.n))


__all__ = ["glmer", "ModelError", "DesignError"]
