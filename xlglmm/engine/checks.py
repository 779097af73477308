"""Is the model any good: the dispersion ratio with its chi-squared test, Nakagawa's
R² and the ICC of a fitted GLMM or LMM, as R's ``performance`` 0.10.2 computes them
(``check_overdispersion``, ``r2_nakagawa``, ``icc``; variances as ``insight``'s
``get_variance``), with one deliberate difference for models with an offset (see
``distribution_variance``)."""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from .model import GeneralizedLinearMixedModel

#: the mean count below which the log-normal approximation of a count family's
#: distribution-specific variance is poor (performance warns at the same point)
SMALL_MEAN = 6.0

_BINOMIAL_LINK_VARIANCE = {"logit": math.pi ** 2 / 3, "probit": 1.0, "cloglog": math.pi ** 2 / 6}


class CheckError(ValueError):
    """A check that does not apply to the fitted model."""


def overdispersion(res) -> pd.Series:
    """Pearson's chi-squared (the squared Pearson residuals at the conditional
    modes, summed), the residual degrees of freedom (rows minus parameters: the
    fixed effects, the random-effect parameters and NB's theta, as lme4's
    ``df.residual``), their ratio and p = P(chi2_df > chi-squared), as
    ``performance::check_overdispersion``.  A ratio well above 1 means the counts vary
    more than the family allows.  Only for counts and binomial proportions of more
    than one trial: other families estimate their own scale."""
    fam = res.family
    if not (fam.counts_response or fam.is_binomial):
        raise CheckError("the dispersion check is for count (Poisson, negative binomial) "
                         f"and binomial models; this one is {fam.spec.label}")
    if fam.is_binomial and np.all(res.design.weights == 1):
        raise CheckError("the dispersion check needs binomial proportions of more than "
                         "one trial; 0/1 responses carry no information on dispersion")
    chisq = float(np.sum(res.resid("pearson").to_numpy() ** 2))
    return pearson_statistics(chisq, res.df_resid)


def pearson_chisq(y, mu, weights, family) -> float:
    """Pearson's chi-squared of responses ``y`` at means ``mu`` (prior ``weights``:
    binomial trials) under ``family``."""
    return float(np.sum((y - mu) ** 2 * weights / family.variance(mu, weights)))


def pearson_test(y, mu, weights, family, df: int) -> pd.Series:
    """Pearson's chi-squared (``pearson_chisq``), its ratio to ``df`` and
    P(chi2_df > it)."""
    return pearson_statistics(pearson_chisq(y, mu, weights, family), df)


def pearson_statistics(chisq: float, df: int) -> pd.Series:
    """Pearson's chi-squared with its ratio to ``df`` and P(chi2_df > it)."""
    return pd.Series({"chisq": chisq, "df": float(df), "ratio": chisq / df,
                      "p": float(special.chdtrc(df, chisq))}, name="overdispersion")


@dataclasses.dataclass(frozen=True)
class Variances:
    """The variance decomposition on the link scale that R² and the ICC divide up:
    the fixed effects' predictions, the random effects (at the rows' covariate
    values), the distribution-specific variance and observation-level random
    effects (added to the residual, as ``insight`` does).  ``random`` is NaN when a
    variance is estimated as zero (``zero_variance``), as ``performance`` then
    reports no conditional R² and no ICC.  ``mu`` is the mean a count family's
    variance is taken at (NaN for other families).  ``notes``: what the computation
    warned of (a small mean count), kept with the result -- which is computed once
    per fit -- so that every reader sees them, not only the first."""
    fixed: float
    random: float
    distribution: float
    dispersion: float
    mu: float
    notes: tuple = ()

    @property
    def residual(self) -> float:
        return self.distribution + self.dispersion

    def r2(self) -> pd.Series:
        """Nakagawa's R²: ``marginal`` = fixed / (fixed + random + residual), the
        share of the fixed effects; ``conditional`` = (fixed + random) / total, the
        share of the whole model (NaN when a variance is estimated as zero; the
        marginal one then leaves the random effects out)."""
        if math.isnan(self.random):
            return pd.Series({"conditional": math.nan,
                              "marginal": self.fixed / (self.fixed + self.residual)},
                             name="r2")
        total = self.fixed + self.random + self.residual
        return pd.Series({"conditional": (self.fixed + self.random) / total,
                          "marginal": self.fixed / total}, name="r2")

    def icc(self) -> pd.Series:
        """The intraclass correlation: ``adjusted`` = random / (random + residual),
        the share of the random effects once the fixed effects are accounted for;
        ``conditional`` = random / (fixed + random + residual).  All random-effect
        terms together, as ``performance::icc``."""
        total = self.random + self.residual
        return pd.Series({"adjusted": self.random / total,
                          "conditional": self.random / (self.fixed + total)}, name="icc")


_variances_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def variances(res) -> Variances:
    """The fit's ``Variances`` (computed once per result: a count family's needs a
    null model's fit)."""
    if res not in _variances_cache:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            v = _variances(res)
        notes = tuple(str(w.message) for w in caught)
        for note in notes:          # (Python callers: a warning, once per fit)
            warnings.warn(note, stacklevel=3)
        _variances_cache[res] = dataclasses.replace(v, notes=notes)
    return _variances_cache[res]


def r2(res) -> pd.Series:
    """Nakagawa's R² of a fit: ``Variances.r2``."""
    return variances(res).r2()


def icc(res) -> pd.Series:
    """The ICC of a fit: ``Variances.icc``."""
    return variances(res).icc()


def _variances(res) -> Variances:
    design = res.design
    covs = term_covariances(design.re_terms, res.varcorr)
    terms = [RandomTerm(t.colnames, covs[t.name], t.nlevels == design.nobs)
             for t in design.re_terms]
    distribution, mu = distribution_variance(res)
    return decompose(design.X, design.x_names, res.fe_params.to_numpy(), terms,
                     distribution, res.family.is_gaussian,
                     zero_variance(design.re_terms, res.theta), mu)


def zero_variance(re_terms, theta, tolerance: float = 1e-5) -> bool:
    """A variance estimated as zero: a diagonal element of a term's relative
    Cholesky factor (theta, lme4's order: each term's lower triangle column by
    column) below ``tolerance``, performance's test before it divides variances
    (lme4's ``isSingular`` uses 1e-4)."""
    diagonal, start = [], 0
    for t in re_terms:
        for j in range(t.k):
            diagonal.append(start)
            start += t.k - j
    return bool(np.any(np.abs(np.atleast_1d(np.asarray(theta, float))[diagonal]) < tolerance))


class RandomTerm(NamedTuple):
    """A random-effects term as the decomposition needs it: its columns' names, its
    covariance matrix, and whether it has one level per row (an observation-level
    effect: extra-dispersion, part of the residual)."""
    colnames: list
    cov: np.ndarray
    per_observation: bool


def decompose(X, x_names, beta, terms, distribution: float, gaussian: bool,
              singular: bool = False, mu: float = math.nan) -> Variances:
    """The ``Variances`` of a fit given its design ``X`` (columns ``x_names``), fixed
    effects ``beta``, ``RandomTerm``s and distribution-specific variance.  The fixed
    part is the sample variance of X·beta; a term's part the mean over rows of
    z' Σ z, z its columns at the row's covariate values, taken from X as ``insight``
    does (a column X lacks is left out, an intercept is 1)."""
    X = np.asarray(X, float)
    n = X.shape[0]
    fixed = float(np.var(X @ np.asarray(beta, float), ddof=1)) if len(beta) else 0.0
    columns = {name: X[:, j] for j, name in enumerate(x_names)}
    columns.setdefault("(Intercept)", np.ones(n))

    def part(selected) -> float:
        total = 0.0
        for t in selected:
            keep = [j for j, c in enumerate(t.colnames) if c in columns]
            Z = np.column_stack([columns[t.colnames[j]] for j in keep])
            total += float(np.einsum("ij,jk,ik->", Z, t.cov[np.ix_(keep, keep)], Z)) / n
        return total
    random = math.nan if singular else part([t for t in terms if not t.per_observation])
    dispersion = 0.0 if gaussian else part([t for t in terms if t.per_observation])
    return Variances(fixed, random, distribution, dispersion, mu)


def term_covariances(re_terms, varcorr: pd.DataFrame) -> dict:
    """Each term's covariance matrix (by term name) from rows of lme4's
    ``as.data.frame(VarCorr())`` shape: grp, var1, var2 (empty for a variance), vcov."""
    out = {}
    for t in re_terms:
        index = {c: i for i, c in enumerate(t.colnames)}
        cov = np.zeros((t.k, t.k))
        for r in varcorr[varcorr.grp == t.name].itertuples():
            i = index[r.var1]
            if pd.isna(r.var2) or r.var2 == "":
                cov[i, i] = r.vcov
            else:
                cov[i, index[r.var2]] = cov[index[r.var2], i] = r.vcov
        out[t.name] = cov
    return out


def distribution_variance(res) -> tuple:
    """The distribution-specific variance on the link scale and the mean it is taken
    at (NaN where it takes none): LMM σ²; binomial π²/3 (logit), 1 (probit), π²/6
    (cloglog); Gamma σ² (performance's choice, the first-order term of the
    log-normal log(1 + σ²)); Poisson and NB2 with a log link the log-normal
    approximation log(1 + V(μ)/μ²) = log(1 + 1/μ (+ 1/θ)), at μ from the null model
    (the same random effects, the fixed effects reduced to an intercept).

    With an offset (exposure) μ is the expected count at the mean exposure,
    exp(null intercept) · mean(exp(offset)).  ``performance`` takes exp(null
    intercept) alone, the rate per unit of exposure (e.g. incidents per employee
    per month, 0.02): a mean count no row has, which makes the variance and R² depend
    on the unit the exposure is counted in.  Without an offset both are the same."""
    fam = res.family
    mu = math.nan
    link_scale_variance(fam, res.sigma, 1.0)        # (refuses the families without one)
    if fam.counts_response and fam.link == "log":
        mu = math.exp(null_intercept(res)) * float(np.mean(np.exp(res.design.offset)))
        if mu < SMALL_MEAN:
            warnings.warn(f"the mean count is {mu:.3g}, below {SMALL_MEAN:g}: the "
                          "log-normal approximation behind R² and the ICC of a count "
                          "model is rough", stacklevel=3)
    return link_scale_variance(fam, res.sigma, mu), mu


def link_scale_variance(family, sigma: float, mu: float = math.nan) -> float:
    """The distribution-specific variance of ``family`` with scale ``sigma`` (LMM,
    Gamma) at mean count ``mu`` (log-link counts): see ``distribution_variance``."""
    if family.zero_inflated:
        raise CheckError("R² and the ICC are not defined here for zero-inflated models yet "
                         "(their distribution-specific variance is not reproduced)")
    if family.has_phi:
        raise CheckError(f"R² and the ICC are not defined here for the {family.spec.label} "
                         "family yet (performance's distribution-specific variance for it "
                         "is not reproduced)")
    if family.is_gaussian or family.positive_response:
        return sigma ** 2
    if family.is_binomial:
        if family.link not in _BINOMIAL_LINK_VARIANCE:
            raise CheckError(f"R² and the ICC are not defined for the binomial "
                             f"{family.link} link (use logit, probit or cloglog)")
        return _BINOMIAL_LINK_VARIANCE[family.link]
    if family.link == "sqrt":
        return 0.25
    if family.link != "log":
        raise CheckError(f"R² and the ICC are not defined for counts with the "
                         f"{family.link} link (use log or sqrt)")
    extra = 1.0 / family.nb_theta if family.has_theta else 0.0
    return math.log1p(1.0 / mu + extra)


def null_intercept(res) -> float:
    """The intercept of the null model: the fit's random effects, offset and weights
    with the fixed effects reduced to an intercept (NB2: theta held at the fit's
    estimate, as ``performance``'s null model of a ``glmer.nb`` fit)."""
    design = res.design
    null = dataclasses.replace(design, X=np.ones((design.nobs, 1)),
                               x_names=["(Intercept)"], messages=[])
    return float(GeneralizedLinearMixedModel(null, res.family, res.nAGQ, se_method="rx")
                 .fit().fe_params.iloc[0])


__all__ = ["CheckError", "Variances", "RandomTerm", "overdispersion", "pearson_test",
           "variances", "r2", "icc", "decompose", "zero_variance", "term_covariances",
           "distribution_variance", "link_scale_variance", "null_intercept"]
