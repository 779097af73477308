"""``glmer``: formula + data -> fitted GLMM, a thin function over the model object:

    design = build_design(...)                        # design.py: X, Z terms, offset, weights
    model  = GeneralizedLinearMixedModel(design, ...) # model.py: deviance function, stages
    result = model.fit()                              # results.py: GLMMResult(model, estimates)

A negative binomial family named by its name estimates theta
(``negbin.NegativeBinomialModel``: from the Poisson GLMM, theta with the other
parameters, then the fit at the estimate); the exact Laplace approximation's Gamma
estimates its dispersion the same way (``family_parameter``, from lme4's fit).
"""
from __future__ import annotations

import dataclasses

from . import jit
from .design import DesignError, build_design
from .family import (LAPLACE_MODES, Family, estimates_theta, make_family,
                     split_zero_inflation)
from .family_parameter import FamilyParameterModel, parameter_of
from .model import (DEFAULT_MAX_EVALS, GeneralizedLinearMixedModel, ModelError,
                    TimeBudgetTooSmall,
                    check_model, check_se_method, checked_nagq)
from .negbin import NegativeBinomial2, NegativeBinomialModel
from .optimize import BudgetExhausted
from .results import GLMMResult
from .zero_inflation import ZeroInflatedModel


#: glmer refuses a normal response: lmer fits it (identity link); a Gaussian GLMM with
#: a log or inverse link (lme4: glmer by Laplace) is not available yet
GAUSSIAN_GLMER_MESSAGE = (
    "a normal (Gaussian) response is a linear mixed model: fit it with lmer (identity "
    "link); a Gaussian model with a log or inverse link is not available yet")


#: se_method "lme4" reproduces lme4's Laplace deviance's finite differences
LME4_SE_NEEDS_LME4_LAPLACE = (
    "se_method='lme4' reproduces lme4's standard errors, which belong to lme4's Laplace "
    "approximation: use laplace='lme4' with it")


def checked_laplace(laplace, family=None) -> str:
    """``laplace`` as one of ``family.LAPLACE_MODES`` (ModelError otherwise); None:
    the one a :class:`Family` object names, else "exact"."""
    if laplace is None:
        return family.laplace if isinstance(family, Family) else "exact"
    mode = str(laplace).strip().lower() if isinstance(laplace, str) else None
    if mode not in LAPLACE_MODES:
        raise ModelError(f"laplace must be one of: {', '.join(LAPLACE_MODES)}")
    return mode


def glmer(formula, data, family="poisson", *, link=None, offset=None, weights=None,
          nAGQ=1, groups=None, se_method="auto", laplace=None, ziformula=None,
          time_budget=None, max_evals=DEFAULT_MAX_EVALS, progress=None,
          check_design=None) -> GLMMResult:
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
    nAGQ : 1 = Laplace (default), >1 = adaptive Gauss-Hermite points per random
        effect (one random-effects term on one grouping factor only; a term of k
        effects takes nAGQ^k points per group), 0 = the fast PIRLS-only criterion
    groups : list of column names, each adding a random intercept ``(1|col)``
    se_method : how the fixed-effect covariance is computed.  All but "rx" are
        2 x the inverse Hessian of the deviance in (theta, beta), as lme4's default
        (with laplace="exact", for a family where the two approximations differ,
        "auto" is "hessian": lme4's stencil belongs to lme4's approximation):
        ``"auto"`` (default) lme4's own finite differences of its early-stopped PIRLS,
        so the SEs equal lme4's printed ones, unless they disagree with the accurate
        Hessian by more than 5% (then the accurate one, with a note) -- for models
        of up to 10 parameters (theta and beta; ``covariance.LME4_STENCIL_MAX_PARAMS``)
        and 10,000 rows, above which lme4's stencil (2k^2 evaluations) is not worth
        its cost and "auto" gives the accurate Hessian's SEs;
        ``"hessian"`` the accurately computed Hessian (central differences of the
        Laplace deviance's exact gradient; lme4's SEs are 0-1.5% smaller on small
        data); ``"lme4"`` lme4's version always; ``"rx"`` the PIRLS
        cross-product (RX) version, conditional on theta.  nAGQ > 1: accurate
        Hessian; nAGQ = 0: RX (as lme4).
    laplace : "exact" (the default, unless ``family`` is a :class:`Family` that names
        its own) the Laplace approximation of the likelihood itself: the
        determinant of the conditional modes' Hessian with the observed information
        and every family parameter estimated by maximum likelihood, the Gamma's
        dispersion too (glmmTMB's); "lme4" lme4's version: Fisher's weights in the
        determinant and the Gamma's dispersion a moment estimate plugged in, not
        maximised.  The two coincide for Poisson-log and binomial-logit.
    ziformula : zero inflation (glmmTMB's ``ziformula``) for the count families
        (poisson, negbin, nb1): each row is a structural zero with probability p0,
        logit(p0) given by this fixed-effects formula over the data's columns, e.g.
        ``"~1"`` (one probability) or ``"~ x"``; its coefficients are estimated with
        the others (``res.zi_params``), by the exact Laplace, nAGQ = 1
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
                         laplace=laplace, ziformula=ziformula, time_budget=time_budget,
                         max_evals=max_evals, progress=progress, check_design=check_design)
    # (a family parameter's or zero inflation's nested fits each had a share of the
    # budget: the message quotes the user's)
    except BudgetExhausted as e:
        raise ModelError(e.for_budget(time_budget if time_budget is not None
                                      else e.seconds)) from None
    except TimeBudgetTooSmall as e:
        if time_budget is None or e.seconds == time_budget:
            raise
        raise TimeBudgetTooSmall(time_budget) from None


def _glmer(formula, data, family, *, link, offset, weights, nAGQ, groups, se_method,
           laplace, ziformula=None, time_budget, max_evals, progress,
           check_design=None) -> GLMMResult:
    laplace = checked_laplace(laplace, family)
    family, zi_words = split_zero_inflation(family)         # "zinb", "zipoisson ~ x"
    if zi_words is not None:
        if ziformula is not None and ziformula != zi_words and zi_words != "~1":
            raise ModelError("the zero-inflation formula is given twice (in the family "
                             "and as ziformula)")
        ziformula = ziformula if ziformula is not None else zi_words
    if ziformula is not None or (isinstance(family, Family) and family.zero_inflated):
        return _glmer_zero_inflated(formula, data, family, ziformula, link=link,
                                    offset=offset, weights=weights, nAGQ=nAGQ,
                                    groups=groups, se_method=se_method, laplace=laplace,
                                    time_budget=time_budget, max_evals=max_evals,
                                    progress=progress, check_design=check_design)
    if estimates_theta(family):      # a name such as "negbin" or "nb"
        if se_method == "lme4" and laplace == "exact":
            raise ModelError(LME4_SE_NEEDS_LME4_LAPLACE)
        return _glmer_nb(formula, data, link=link, offset=offset, weights=weights,
                         nAGQ=nAGQ, groups=groups, se_method=se_method, laplace=laplace,
                         time_budget=time_budget, max_evals=max_evals, progress=progress,
                         check_design=check_design)
    try:
        fam = make_family(family, link)
    except (ValueError, TypeError) as e:
        raise ModelError(str(e)) from None
    if fam.is_gaussian:     # (the GLMM deviance has no Gaussian log-likelihood: it was 0)
        raise ModelError(GAUSSIAN_GLMER_MESSAGE)
    if fam.has_phi and laplace == "lme4":
        raise ModelError(f"lme4 has no {fam.spec.label} family: it is fitted by the exact "
                         "Laplace approximation only (glmmTMB's); leave laplace out")
    fam = dataclasses.replace(fam, laplace=laplace)
    nAGQ = checked_nagq(nAGQ)
    check_se_method(se_method)
    if se_method == "lme4" and fam.exact and fam.laplace_differs:
        raise ModelError(LME4_SE_NEEDS_LME4_LAPLACE)
    parameter = parameter_of(fam)
    if parameter is not None and getattr(fam, parameter.field) is None:
        # the exact Gamma's dispersion, NB1's, the beta's, the beta-binomial's phi
        return _glmer_estimating(formula, data, fam, parameter, offset=offset,
                                 weights=weights, nAGQ=nAGQ, groups=groups,
                                 se_method=se_method, time_budget=time_budget,
                                 max_evals=max_evals, progress=progress,
                                 check_design=check_design)
    return glmm_model(formula, data, fam, offset=offset, weights=weights, nAGQ=nAGQ,
                      groups=groups, se_method=se_method, time_budget=time_budget,
                      max_evals=max_evals, progress=progress,
                      check_design=check_design).fit()


def _glmer_estimating(formula, data, fam, parameter, *, offset, weights, nAGQ, groups,
                      se_method, time_budget, max_evals, progress, check_design=None):
    """A GLMM whose family ``parameter`` (``family_parameter.FamilyParameter``) is
    estimated by maximum likelihood with the others (``FamilyParameterModel``): the
    start fit of the family ``parameter.start`` gives first (lme4's Laplace for the
    Gamma, the Poisson GLMM for NB1, the binomial for the beta-binomial, the beta at
    its moment precision), then the parameter with the others on that fit's design."""
    start = []

    def fit_start():
        # the design of the model itself, the start family's too (the same rows and
        # response rules: Poisson for NB1, binomial for the beta-binomial), built once
        design = build_design(formula, data, fam, offset=offset, weights=weights,
                              groups=groups, time_budget=time_budget)
        model = glmm_model(formula, data, parameter.start(fam, lambda: design.y),
                           offset=offset, weights=weights, nAGQ=nAGQ, groups=groups,
                           se_method="rx", time_budget=time_budget, max_evals=max_evals,
                           check_design=check_design, design=design)
        start.append(model.fit())
        return start[0]

    def model_at(value, se, budget_seconds):
        base = start[0].model.design
        design = dataclasses.replace(base, messages=list(base.messages))
        f = parameter.family_at(fam, value)
        check_model(design, f, nAGQ)
        return GeneralizedLinearMixedModel(design, f, nAGQ, se_method=se,
                                           time_budget=budget_seconds, max_evals=max_evals)
    return FamilyParameterModel(parameter, fam, fit_start, model_at, se_method=se_method,
                                time_budget=time_budget, max_evals=max_evals,
                                progress=progress).fit()


def _glmer_zero_inflated(formula, data, family, ziformula, *, link, offset, weights, nAGQ,
                         groups, se_method, laplace, time_budget, max_evals, progress,
                         check_design=None):
    """A zero-inflated count GLMM (``zero_inflation.ZeroInflatedModel``): the Poisson
    GLMM on the model's design first, then the count family's parameter (NB2's theta,
    NB1's phi: named families estimate it) and the zero-inflation coefficients with
    the others.  A :class:`Family` with ``zi_coef`` (and its parameters) holds them:
    one fit."""
    try:
        fam = make_family(family, link)
        fam = dataclasses.replace(fam, zero_inflated=True)
    except (ValueError, TypeError) as e:
        raise ModelError(str(e)) from None
    if fam.link != "log":
        # (with the sqrt link PIRLS can settle at a mode's mirror image, eta < 0, where
        # mu = eta^2 is small again: 36 units of logLik below glmmTMB's on a ZIP)
        raise ModelError(f"zero-inflated models take the log link only, not "
                         f"'{fam.link}'")
    if laplace == "lme4":
        raise ModelError("lme4 has no zero-inflated models: they are fitted by the exact "
                         "Laplace approximation only (glmmTMB's); leave laplace out")
    if checked_nagq(nAGQ) != 1:
        raise ModelError("zero-inflated models are fitted by the Laplace approximation: "
                         "nAGQ must be 1")
    check_se_method(se_method)
    if se_method == "lme4":
        raise ModelError(LME4_SE_NEEDS_LME4_LAPLACE)
    ziformula = "~1" if ziformula is None else ziformula
    design = build_design(formula, data, fam, offset=offset, weights=weights, groups=groups,
                          time_budget=time_budget, ziformula=ziformula)
    if check_design is not None:
        check_design(design, fam)
    named = not isinstance(family, Family)
    parameter = parameter_of(fam)
    if parameter is not None and not named and getattr(fam, parameter.field) is not None:
        parameter = None            # a Family object holds its theta / phi
    if fam.zi_coef is not None and parameter is None:
        if len(fam.zi_coef) != design.zi_X.shape[1]:
            raise ModelError(f"zi_coef has {len(fam.zi_coef)} values for the "
                             f"{design.zi_X.shape[1]} columns of the zero-inflation model")
        check_model(design, fam, 1)
        return GeneralizedLinearMixedModel(design, fam, 1, se_method=se_method,
                                           time_budget=time_budget, max_evals=max_evals,
                                           progress=progress).fit()
    start = []

    def fit_start():
        poisson = Family("poisson", fam.link)
        check_model(design, poisson, 1)
        model = GeneralizedLinearMixedModel(design, poisson, 1, se_method="rx",
                                            time_budget=time_budget, max_evals=max_evals)
        start.append(model.fit())
        return start[0]

    def model_at(f, se, budget_seconds):
        d = dataclasses.replace(design, messages=list(design.messages))
        check_model(d, f, 1)
        return GeneralizedLinearMixedModel(d, f, 1, se_method=se,
                                           time_budget=budget_seconds, max_evals=max_evals)
    return ZeroInflatedModel(fam, parameter, fit_start, model_at, se_method=se_method,
                             time_budget=time_budget, max_evals=max_evals,
                             progress=progress).fit()


def glmm_model(formula, data, fam, *, offset, weights, nAGQ, groups, se_method,
               time_budget, max_evals, progress=None, check_design=None,
               design=None) -> GeneralizedLinearMixedModel:
    """The (unfitted) model of a formula and data: the design (``design`` when the
    caller built it already), checked by ``check_design`` (if given) and
    ``check_model``."""
    if design is None:
        design = build_design(formula, data, fam, offset=offset, weights=weights,
                              groups=groups, time_budget=time_budget)
    if check_design is not None:
        check_design(design, fam)
    check_model(design, fam, nAGQ)
    return GeneralizedLinearMixedModel(design, fam, nAGQ, se_method=se_method,
                                       time_budget=time_budget, max_evals=max_evals,
                                       progress=progress)


def _glmer_nb(formula, data, *, link, offset, weights, nAGQ, groups, se_method, laplace,
              time_budget, max_evals, progress, check_design=None):
    """NB2 GLMM with theta estimated (``negbin.NegativeBinomialModel``): the Poisson
    GLMM first (its arguments and design checked there), then fits with theta fixed
    on the Poisson fit's design (the same rows, columns and counts: only the family
    differs, so it is built once)."""
    poisson = []

    def fit_poisson():
        poisson.append(glmer(formula, data, "poisson", link=link, offset=offset,
                             weights=weights, nAGQ=nAGQ, groups=groups, se_method="rx",
                             time_budget=time_budget, check_design=check_design))
        return poisson[0]

    def model_at(theta, se, budget_seconds):
        fam = NegativeBinomial2(theta, link or "log", laplace)
        nagq = checked_nagq(nAGQ)
        base = poisson[0].model.design
        # each model its own list of notes (a model adds its own to its design's)
        design = dataclasses.replace(base, messages=list(base.messages))
        check_model(design, fam, nagq)
        return GeneralizedLinearMixedModel(design, fam, nagq, se_method=se,
                                           time_budget=budget_seconds, max_evals=max_evals)
    return NegativeBinomialModel(fit_poisson, model_at, se_method=se_method,
                                 time_budget=time_budget, max_evals=max_evals,
                                 progress=progress, link=link or "log",
                                 laplace=laplace).fit()


__all__ = ["glmer", "ModelError", "DesignError", "NegativeBinomial2"]
