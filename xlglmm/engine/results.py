"""The fitted model (lme4's ``mkMerMod`` stage): estimates, variance components,
random effects, fit statistics, predictions and an lme4-style summary."""
from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special

from . import linalg
from .. import numfmt
from .covariance import random_effects_scale
from .design import new_data_matrices, new_offset_column, new_zi_matrix
from .family import zero_probability
from .formula import FormulaError, parse_formula
from .prediction import (PredictionError, check_request, confidence_bounds, link_variance,
                         new_level_variance, prediction_bounds)


def sd_label(column: str, group: str) -> str:
    """A random effect's SD as intervals, profiles and bootstraps name it
    (``sd_(Intercept)|plant``: lme4's ``oldNames = FALSE`` form)."""
    return f"sd_{column}|{group}"


class GLMMResult:
    """A fitted GLMM.  Attribute names follow the Python peer the seeds use
    (``fe_params``, ``fe_bse``, ``variance_components``, ``random_effects``,
    ``llf``, ``aic``, ``bic``, ...); values follow lme4's conventions."""

    def __init__(self, model, estimates):
        """The result of ``model`` (model.GeneralizedLinearMixedModel or lmm's
        LinearMixedModel), read from its design, deviance function and settings and
        from what its fit found (``estimates``, a model.Estimates).  ``self.model``
        stays: profiles and bootstraps start from it.

        Built here: the estimates and their SEs, z and p, the fit statistics, the
        random effects' modes and the fitted values (what every caller reads).
        Computed on first access and then kept (``functools.cached_property``):
        the tables a caller may never ask for -- ``fe_conf_int``, ``varcorr``,
        ``variance_components``, ``random_effects`` and, the costly one, their
        conditional SDs ``random_effects_sd`` (an inverse of the factor's dense
        block) -- and the covariance tables ``fe_cov_rx``, ``fe_cov_exact``.  They
        are the same numbers whenever they are asked for: they read only the
        estimates and the PIRLS state at the optimum (arrays no later evaluation
        writes), and the conditional SDs put the deviance function's theta back
        as they found it (``_conditional_cov``)."""
        self.model = model
        design = self.design = model.design
        devfun = self._dev = model.devfun
        family = self.family = model.family
        self.nAGQ = nAGQ = model.nAGQ
        est = self._estimates = estimates
        theta, beta, vcov = est.theta, est.beta, est.vcov
        self.theta = np.asarray(theta, float)
        self.sigma = float(est.sigma)
        #: what Lambda(theta) is scaled by in the random effects' covariance
        #: (``covariance.random_effects_scale``)
        self.re_sigma = random_effects_scale(family, self.sigma)
        self.converged = bool(est.converged)
        #: the time budget stopped the optimizer (its note says so): not an optimum
        self.stopped_by_budget = bool(est.stopped_by_budget)
        self.singular = bool(est.singular)
        self.messages = list(est.messages)
        self.gradient = est.gradient
        self.hessian = est.hessian
        self.evaluations = est.evaluations
        self.seconds = float("nan")         # set by jit.timed around the fit
        self.formula = design.spec.formula.text
        self.vcov_method = est.vcov_method
        names = self._names = pd.Index(list(design.x_names))   # shared by the tables
        self.fe_params = pd.Series(np.asarray(beta, float), index=names, name="estimate")
        self.fe_cov = pd.DataFrame(vcov, index=names, columns=names)
        if est.se_z is None:
            se = np.sqrt(np.diag(vcov)) if len(names) else np.zeros(0)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.asarray(beta, float) / se
        else:   # from the fit's scale of rescaled columns (covariance.fit_scale_statistics)
            se, z = est.se_z
        self.fe_bse = pd.Series(se, index=names, name="se", dtype=float)
        self.fe_zvalues = pd.Series(z, index=names, dtype=float)
        # 2 * norm.sf(|z|), which is 2 * ndtr(-|z|) (without scipy.stats' overhead)
        self.fe_pvalues = pd.Series(2.0 * special.ndtr(-np.abs(z)), index=names, name="p",
                                    dtype=float)
        self.llf = est.llf
        self.nobs = int(design.nobs)
        self.n_dropped = int(design.n_dropped)
        nb = est.nb                 # negbin.ThetaEstimate: theta estimated, a parameter
        # (a dispersion counts where it is estimated: lme4's moment one, or the exact
        # Laplace's by maximum likelihood; one held at a given value does not)
        held = family.likelihood_dispersion and getattr(est, "dispersion", None) is None
        phi = getattr(est, "phi", None)     # family_parameter.PhiEstimate, when estimated
        zi = getattr(est, "zi", None)       # zero_inflation.ZeroInflationEstimate
        self.npar = (len(names) + len(self.theta)
                     + (1 if family.has_dispersion and not held else 0)
                     + (1 if nb is not None else 0) + (1 if phi is not None else 0)
                     + (len(zi.names) if zi is not None else 0))
        self.deviance = -2.0 * self.llf
        self.aic = self.deviance + 2.0 * self.npar
        self.bic = self.deviance + math.log(self.nobs) * self.npar
        self.df_resid = self.nobs - self.npar
        self.method = {0: "PIRLS (nAGQ=0)", 1: "Laplace"}.get(nAGQ, f"AGQ({nAGQ})") \
            + (", NB theta by ML" if nb is not None else "")
        self.ngroups = design.ngroups
        state = self._state = est.state
        self._b = devfun.b_by_term(self.theta, state)
        # the deviance function at the estimates' theta, as building the result has
        # always left it (the next evaluation -- a profile's, Satterthwaite's --
        # rescales its warm start from there)
        devfun.set_theta(self.theta)
        self._eta = devfun.unsorted(state.eta)
        self._mu = devfun.unsorted(state.mu)
        # zero inflation: each row's structural-zero probability p0 (None without it),
        # the coefficients of its log odds with their covariance (estimated or held)
        self.zero_prob = devfun.unsorted(devfun.kernel_pw).copy() \
            if family.zero_inflated else None
        self._zi = zi
        if family.zero_inflated:
            zn = pd.Index(list(design.zi_names))
            cov = zi.cov if zi is not None else np.full((len(zn), len(zn)), np.nan)
            self.zi_params = pd.Series(np.asarray(family.zi_coef, float), index=zn,
                                       name="estimate")
            self.zi_cov = pd.DataFrame(cov, index=zn, columns=zn)
            se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            self.zi_bse = pd.Series(se, index=zn, name="se")
            with np.errstate(divide="ignore", invalid="ignore"):
                zz = self.zi_params.to_numpy() / se
            self.zi_zvalues = pd.Series(zz, index=zn)
            self.zi_pvalues = pd.Series(2.0 * special.ndtr(-np.abs(zz)), index=zn, name="p")
            self.zi_undetermined = list(zi.undetermined) if zi is not None else []
        else:
            self.zi_params = self.zi_cov = self.zi_bse = None
            self.zi_zvalues = self.zi_pvalues = None
            self.zi_undetermined = []
        # negative binomial shape (fixed, or estimated: then its SE, CI and the
        # Poisson fit it started from; None otherwise)
        self.nb_theta = float(family.nb_theta) if family.has_theta else None
        self.nb_theta_se = self.nb_theta_ci = self.poisson_fit = None
        if nb is not None:
            self.nb_theta, self.nb_theta_se, self.nb_theta_ci = nb.theta, nb.se, nb.ci
            self.poisson_fit = nb.poisson_fit
        # the exact Laplace's Gamma: its dispersion phi by maximum likelihood, with its
        # SE, CI and lme4's fit the search started from (None otherwise)
        disp = getattr(est, "dispersion", None)
        self.dispersion = self.dispersion_se = self.dispersion_ci = None
        self.lme4_fit = None
        if disp is not None:
            self.dispersion, self.dispersion_se, self.dispersion_ci = (
                disp.dispersion, disp.se, disp.ci)
            self.lme4_fit = disp.start_fit
        self.laplace = family.laplace
        # NB1's dispersion, the beta's and beta-binomial's precision: its value (held
        # or estimated), and when estimated its SE, CI and the start fit
        self.phi = float(family.phi) if family.has_phi else None
        self.phi_se = self.phi_ci = self.phi_start_fit = None
        if phi is not None:
            self.phi, self.phi_se, self.phi_ci = phi.phi, phi.se, phi.ci
            self.phi_start_fit = phi.start_fit

    @property
    def likelihood(self) -> str:
        """Which approximation of the likelihood the fit maximised, in words (the
        blocks' "likelihood" row)."""
        fam = self.family
        if self.nAGQ > 1:
            return f"adaptive Gauss-Hermite quadrature, {self.nAGQ} points"
        if self.nAGQ == 0:
            return "PIRLS criterion (nAGQ=0), not a likelihood"
        if not fam.laplace_differs:
            return "Laplace (exact; lme4's is the same for this family and link)"
        if fam.exact:
            if fam.zero_inflated:
                how = "by maximum likelihood" if self._zi is not None else "held"
                return f"exact Laplace (observed information; zero inflation {how})"
            if fam.has_phi:
                how = ("by maximum likelihood" if self.phi_se is not None
                       else f"held at {fam.phi:.6g}")
                return f"exact Laplace (observed information; phi {how})"
            if fam.likelihood_dispersion and self.dispersion is None:
                return ("exact Laplace (observed information; dispersion held at "
                        f"{fam.dispersion:.6g})")
            return ("exact Laplace (observed information"
                    + ("; dispersion by maximum likelihood)" if fam.has_dispersion else ")"))
        return ("lme4's Laplace (Fisher weights"
                + ("; dispersion a moment estimate, not maximised)" if fam.has_dispersion else ")"))

    # -- computed on first access (see __init__)
    @cached_property
    def fe_cov_rx(self) -> pd.DataFrame:
        """The fixed effects' covariance from the PIRLS cross-product (RX)."""
        return pd.DataFrame(self._estimates.vcov_rx, index=self._names, columns=self._names)

    @cached_property
    def fe_cov_exact(self) -> pd.DataFrame | None:
        """The accurate Hessian's covariance, when the fit computed it (else None)."""
        v = self._estimates.vcov_exact
        return None if v is None else pd.DataFrame(v, index=self._names, columns=self._names)

    @cached_property
    def fe_conf_int(self) -> pd.DataFrame:
        """95% Wald intervals of the fixed effects (``conf_int(0.05)``)."""
        return self.conf_int(0.05)

    @cached_property
    def fittedvalues(self) -> pd.Series:
        """The fitted means, one per fitted row (indexed by the data's row labels);
        zero-inflated: the response's, (1 - p0) mu (glmmTMB's ``fitted``), the count's
        mean mu being ``conditional_mean``."""
        mu = self._mu if self.zero_prob is None else (1.0 - self.zero_prob) * self._mu
        return pd.Series(mu, index=self.design.row_labels, name="fitted")

    @property
    def family_arguments(self) -> tuple:
        """(means, row weights) as the family's functions take them (``variance``,
        ``log_density``, ``cdf_bounds``, ``simulate``): the fitted means and the prior
        weights, or -- zero-inflated -- the count's means mu and each row's p0."""
        if self.zero_prob is not None:
            return self._mu, self.zero_prob
        return self._mu, self.design.weights

    @cached_property
    def conditional_mean(self) -> pd.Series:
        """The count model's fitted means mu (without zero inflation: the fitted
        values), one per fitted row."""
        return pd.Series(self._mu, index=self.design.row_labels, name="conditional_mean")

    def zi_conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals of the zero-inflation coefficients (log odds), NaN for
        those not determined."""
        if self.zi_params is None:
            raise ValueError("the model has no zero inflation")
        zq = special.ndtri(1.0 - alpha / 2.0)
        b, se = self.zi_params.to_numpy(), self.zi_bse.to_numpy()
        return pd.DataFrame({"lower": b - zq * se, "upper": b + zq * se},
                            index=self.zi_params.index)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """lme4's VarCorr as a table: grp, var1, var2, vcov, sdcor."""
        return self._varcorr()

    @cached_property
    def variance_components(self) -> dict:
        """The variance of each random intercept term alone (term name -> variance)."""
        return {t.name: float(self.re_sigma ** 2 * L[0, 0] ** 2)
                for t, L in zip(self.design.re_terms, self._dev.lambdas(self.theta))
                if t.k == 1 and t.colnames == ["(Intercept)"]}

    @cached_property
    def random_effects(self) -> dict:
        """lme4's ranef: per grouping factor the conditional modes, a Series (one
        column) or a DataFrame (levels x columns)."""
        return self._by_group(self._b)

    @cached_property
    def random_effects_sd(self) -> dict:
        """The conditional SDs of the random effects, shaped as ``random_effects``
        (lme4's ranef(condVar = TRUE), conditional on beta)."""
        sds = [np.sqrt(np.clip(np.einsum("gii->gi", cv), 0.0, None))
               for cv in self._conditional_cov()]
        return self._by_group(sds)

    # -- fixed effects
    def conf_int(self, alpha: float = 0.05, method: str = "Wald") -> pd.DataFrame:
        """Confidence intervals at level 1 - alpha.

        ``method="Wald"`` (default): estimate +- z SE for the fixed effects.
        ``method="profile"``: from the profile likelihood (``profile()``) of every
        parameter -- the random effects' SDs and correlations (``sd_x|group``,
        ``cor_x.y|group``; lme4's ``.sig01``...), an LMM's residual ``sigma``, an NB
        fit's ``nb_theta``, the fixed effects -- with a ``note`` column (a limit at
        the end of a parameter's range, a REML fit profiled on its ML likelihood,
        ...); as lme4's ``confint(method = "profile")``."""
        if method == "profile":
            return self.profile().conf_int(alpha)
        if method != "Wald":
            raise ValueError("method must be 'Wald' or 'profile'")
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        zq = special.ndtri(1.0 - alpha / 2.0)      # stats.norm.ppf
        b = self.fe_params.to_numpy()
        se = self.fe_bse.to_numpy()
        return pd.DataFrame({"lower": b - zq * se, "upper": b + zq * se},
                            index=self.fe_params.index)

    def profile(self, which=None, time_budget=None, nb_theta="estimated", *, workers=None,
                client=None):
        """The profile likelihood of each parameter (``engine.profile.Profile``: its
        ``traces`` hold values and signed square-root deviance differences, for
        plots; its ``conf_int(alpha)`` the intervals), computed once and kept.
        ``which``: parameter names (default: all); ``time_budget``: seconds (a
        profile stopped by it says so in its intervals' notes); ``nb_theta``: for a
        negative binomial fit that estimated theta, "estimated" (theta minimised
        over at each point: the profile likelihood) or "fixed" (held at its
        estimate, as lme4's confint on a glmer.nb fit).  ``workers`` / ``client``:
        where the walks run (``engine.workers``: local processes, a Dask client);
        the same traces wherever they ran, so they do not enter the cache's key."""
        from .profile import profile
        key = (which if isinstance(which, str) or which is None else tuple(which),
               time_budget, nb_theta)
        cache = self.__dict__.setdefault("_profiles", {})
        if key not in cache:
            cache[key] = profile(self.model, which, time_budget, nb_theta, workers=workers,
                                 client=client)
        return cache[key]

    def bootstrap(self, nsim: int = 1000, seed: int = 0, statistics=None,
                  time_budget=None, progress=None, *, resample: str = "parametric",
                  workers=None, client=None):
        """The bootstrap (``engine.bootstrap``): ``nsim`` replicates, each refitted; a
        ``BootstrapResult`` with the replicates, bootstrap SEs (``se``),
        ``conf_int(alpha, method="percentile" | "basic")`` and the counts of failed
        and singular refits.  ``resample``: ``"parametric"`` (responses simulated
        from this fit), the name of a grouping factor (its levels drawn with
        replacement: the cluster bootstrap) or ``"observation"`` (rows drawn with
        replacement).  ``statistics``: result -> pandas Series (default: the SDs,
        sigma, nb_theta and the fixed effects).  ``workers``: local processes (default:
        the cores); ``client``: a ``dask.distributed.Client`` to run the replicates
        on its cluster.  ``time_budget``: seconds (the replicates finished by then
        are returned); ``progress``: callable(stage, done).  The same seed gives the
        same replicates on any machine and any number of workers."""
        from .bootstrap import bootstrap, statistics_of
        return bootstrap(self, nsim, seed, statistics or statistics_of, time_budget,
                         progress, resample, workers, client)

    def power(self, term: str, effect=None, **options):
        """The power of a study like this one to detect ``term``'s effect
        (``engine.power.power``: simulated at this fit's estimates, ``effect`` on the
        link scale replacing the term's estimate; ``test``, ``nsim``, ``seed``,
        ``levels``, ``rows``, ``time_budget``, ``workers``, ``client``)."""
        from .power import power
        return power(self, term, effect, **options)

    def power_curve(self, term: str, along: str, values, effect=None, **options):
        """``power`` at each of ``values`` of ``along`` (a grouping factor's number of
        levels, ``"rows"`` or ``"effect"``): ``engine.power.power_curve``."""
        from .power import power_curve
        return power_curve(self, term, along, values, effect, **options)

    # -- model checks (engine.checks, as R's performance)
    def check_overdispersion(self) -> pd.Series:
        """Pearson's chi-squared, residual df, their ratio and its p-value (counts and
        binomial proportions): ``checks.overdispersion``."""
        from .checks import overdispersion
        return overdispersion(self)

    def r2(self) -> pd.Series:
        """Nakagawa's R², ``conditional`` and ``marginal``: ``checks.r2``."""
        from .checks import r2
        return r2(self)

    def icc(self) -> pd.Series:
        """The intraclass correlation, ``adjusted`` and ``conditional``:
        ``checks.icc``.  (An LMM's per-intercept ICCs, as its block shows them:
        ``LMMResult.icc_by_group``.)"""
        from .checks import icc
        return icc(self)

    def check(self, nsim: int = 250, seed: int = 0, time_budget=None, progress=None,
              workers=None, client=None):
        """Every model check in one table with a verdict per row
        (``model_check.check``): the dispersion ratio as ``performance``, DHARMa's
        uniformity, dispersion, zero-inflation and outlier tests with p-values
        calibrated by ``nsim`` refitted simulations (``simulation_tests``), R², ICC,
        singular fit and convergence.  A ``model_check.ModelCheck``: ``.table`` (a
        DataFrame), ``.problems``, ``.notes``.  Same seed, same table on any machine
        and any number of ``workers`` (or a Dask ``client``)."""
        from .model_check import check
        return check(self, nsim, seed, time_budget, progress, workers, client)

    def shrinkage(self) -> dict:
        """Per grouping factor with a random intercept, each level's rows, raw
        (unshrunk) estimate from the population-level fit, BLUP and shrinkage
        factor 1 - BLUP/raw (``engine.shrinkage``): a dict of DataFrames."""
        from .shrinkage import shrinkage
        return shrinkage(self)

    def residuals_table(self, qq_of: str = "deviance", nsim: int = 250,
                        seed: int = 0) -> pd.DataFrame:
        """Fitted values with every residual -- response, Pearson, deviance, DHARMa's
        simulated quantile residual -- and the normal quantile of ``qq_of``'s rank,
        one row per fitted row (``residuals.residual_frame``): what a
        residual-vs-fitted and a Q-Q chart need."""
        from .residuals import residual_frame
        return residual_frame(self, qq_of, nsim, seed)

    # -- simulation
    def simulate(self, nsim: int = 1, seed: int = 0) -> pd.DataFrame:
        """lme4's ``simulate``: ``nsim`` responses from the fitted model (new random
        effects, new noise; ``engine.residuals``), a DataFrame of rows x ``sim_i``;
        column i the same for a seed whatever ``nsim`` is."""
        from .residuals import simulate
        return simulate(self, nsim, seed)

    def influence(self, group=None, time_budget=None, workers=None, client=None,
                  progress=None):
        """lme4's ``influence(m, groups=group)`` with its ``dfbetas`` and
        ``cooks.distance``: the model refitted without each level of ``group``
        (default: the first random-effects term's factor), one row per level
        (``engine.influence``: the columns, the cut-offs of the flags, ``attrs``).
        ``workers``, ``client``, ``time_budget``, ``progress``: as ``bootstrap``'s."""
        from .influence import influence
        return influence(self, group, time_budget, workers, client, progress)

    def simulated_residuals(self, nsim: int = 250, seed: int = 0):
        """DHARMa's scaled quantile residuals from ``nsim`` simulations: a
        ``residuals.SimulatedResiduals`` with ``.residuals`` and the tests
        ``.uniformity()``, ``.dispersion()``, ``.zero_inflation()``,
        ``.outliers()`` (each (statistic, p)) and ``.tests()`` (all four)."""
        from .residuals import simulated_residuals
        return simulated_residuals(self, nsim, seed)

    # -- random effects
    def _varcorr(self) -> pd.DataFrame:
        rows = []
        s2 = self.sigma ** 2
        for t, L in zip(self.design.re_terms, self._dev.lambdas(self.theta)):
            cov = self.re_sigma ** 2 * (L @ L.T)
            sd = np.sqrt(np.diag(cov))
            for j, cn in enumerate(t.colnames):
                rows.append((t.name, cn, None, cov[j, j], sd[j]))
            for i in range(t.k):
                for j in range(i + 1, t.k):
                    den = sd[i] * sd[j]
                    corr = cov[i, j] / den if den > 0 else float("nan")
                    rows.append((t.name, t.colnames[i], t.colnames[j], cov[i, j], corr))
        if self.family.has_dispersion:
            rows.append(("Residual", None, None, s2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def _conditional_cov(self) -> list:
        """Per term, (nlevels, k, k) conditional covariances of b given the data at
        the estimates (lme4's ranef(condVar = TRUE), conditional on beta)."""
        dev = self._dev
        st = self._state
        # the theta the deviance function was left at (its next evaluation rescales
        # its warm start from there): put back after the factor at the estimates
        before = getattr(dev, "_theta_set", None)
        try:
            Dchol, Cval, LS, loc_ptr, loc_cols, ok = dev.factor_at(self.theta, st, False)
        finally:
            if before is not None:
                dev.set_theta(before)
        lams = dev.lambdas(self.theta)
        s2 = self.re_sigma ** 2
        out = []
        if not ok:
            for t in dev.terms:
                out.append(np.full((t.nlevels, t.k, t.k), np.nan))
            return out
        r = LS.shape[0]
        Sinv = linalg.rest_inverse(LS) if r else np.zeros((0, 0))
        V1 = linalg.term1_conditional_cov(Dchol, Cval, loc_ptr, loc_cols, Sinv)
        L1 = lams[0]
        out.append(s2 * np.einsum("ij,gjk,lk->gil", L1, V1, L1))
        for t, b, L in zip(dev.rest_terms, dev.rest_base, lams[1:]):
            k = t.k
            idx = b + np.arange(t.nlevels)[:, None] * k + np.arange(k)    # (levels, k)
            blocks = Sinv[idx[:, :, None], idx[:, None, :]]                # diagonal blocks
            out.append(s2 * np.einsum("ij,gjk,lk->gil", L, blocks, L))
        return out

    def _by_group(self, per_term: list) -> dict:
        """Per-term arrays (levels x k: modes or SDs) as lme4's ranef shapes them: per
        grouping factor a Series (one column) or a DataFrame, the columns of
        several terms on one factor ((x || g)) side by side."""
        out: dict = {}
        groups = [t.group for t in self.design.re_terms]
        for t, a in zip(self.design.re_terms, per_term):
            if t.k == 1 and groups.count(t.group) == 1:     # one column: a Series
                out[t.group] = pd.Series(a[:, 0].copy(), index=pd.Index(t.levels, name=t.group),
                                         name=t.group)
                continue
            df = pd.DataFrame(a, index=pd.Index(t.levels, name=t.group), columns=t.colnames)
            if t.group in out:     # (x || g): several terms on one factor
                taken = set(out[t.group].columns)
                df.columns = [c if c not in taken else f"{c}.1" for c in t.colnames]
                out[t.group] = pd.concat([out[t.group], df], axis=1)
            else:
                out[t.group] = df
        for g in list(out):
            if out[g].ndim == 2 and out[g].shape[1] == 1:
                out[g] = out[g].iloc[:, 0].rename(g)
        return out

    # -- predictions
    def predict(self, newdata=None, type: str = "response", include_re: bool = True,
                offset=None, interval=None, level: float = 0.95, trials=None):
        """Predictions on the ``"response"`` or ``"link"`` scale.  For new data,
        levels not seen in the fit get random effect 0 (the population value);
        ``offset`` (array) adds to the formula's offset() terms.

        ``interval=None``: a Series of predictions.  ``interval="confidence"`` (of
        the mean) or ``"prediction"`` (for a new observation, response scale only),
        at ``level``: a DataFrame with ``fit``, ``se_link`` (the SE of the linear
        predictor), ``lower`` and ``upper`` (see :mod:`.prediction` for what each
        includes).  ``trials``: a binomial model's trials of the new rows, for
        prediction intervals (default 1; the fit's rows use their own).

        Zero-inflated models (glmmTMB's types): ``"response"`` the mean (1 - p0) mu,
        ``"conditional"`` the count's mean mu, ``"zprob"`` the probability p0 of a
        structural zero, ``"link"`` the count's linear predictor; intervals for the
        link and the conditional mean only (the count model's).  Count families:
        ``"zero"`` the probability of a zero count, P(Y = 0) given the random effects
        (zero-inflated: p0 + (1 - p0) f(0 | mu)); its sum over the fit's rows is the
        expected number of zeros."""
        zi = self.family.zero_inflated
        types = ("response", "link") + (("conditional", "zprob") if zi else ()) \
            + (("zero",) if self.family.counts_response else ())
        if type not in types:
            raise ValueError(f"type must be one of: {', '.join(repr(t) for t in types)}")
        if interval is not None and type == "zero":
            raise PredictionError("type='zero' (the probability of a zero count) has no "
                                  "interval")
        if zi and interval is not None and type in ("response", "zprob"):
            raise PredictionError("intervals of a zero-inflated model's predictions are for "
                                  "the count model: its conditional mean or its linear "
                                  "predictor")
        check_request(interval, level, "response" if type == "conditional" else type)
        beta = self.fe_params.to_numpy()
        if newdata is None:
            d = self.design
            X, zs, missing, index = d.X, [(t.codes, t.Z) for t in d.re_terms], None, \
                d.row_labels
            eta = self._eta if include_re else d.offset + d.X @ beta
            if trials is not None:
                raise PredictionError("trials is for new rows (the fit's rows have theirs)")
            weights = d.weights
            p0 = self.zero_prob
        else:
            if offset is None and self.design.offset_arg == "values":
                raise PredictionError("the model was fitted with offset values: give "
                                      "offset= for the new rows (e.g. np.log(exposure)); "
                                      "without it they would be predicted at offset 0")
            X, zs, off, missing = new_data_matrices(self.design.spec, self.design.re_terms,
                                                    newdata)
            eta = X @ beta + off
            if offset is None and self.design.offset_arg is not None:
                # the fit's offset= named a column: the new rows' column of that name
                # (it was left out: the new rows were predicted at offset 0)
                offset = new_offset_column(newdata, self.design.offset_arg, len(eta))
            if offset is not None:
                eta = eta + _row_values(offset, len(eta), "offset")
            if include_re:
                for (codes, Z), b in zip(zs, self._b):
                    seen = codes >= 0
                    eta[seen] += np.einsum("ij,ij->i", Z[seen], b[codes[seen]])
            eta = np.where(missing, np.nan, eta)
            index = newdata.index if hasattr(newdata, "index") else None
            weights = self._new_trials(trials, len(eta), interval)
            p0 = None
            if zi:
                Zi = new_zi_matrix(self.design.spec, newdata)
                p0 = zero_probability(np.nan_to_num(Zi), self.zi_params.to_numpy())
                p0 = np.where(np.isnan(Zi).any(axis=1), np.nan, p0)
        if type == "zprob":
            return pd.Series(p0, index=index, name="predicted")
        if type == "zero":
            mu = self.family.linkinv(eta)
            wt = p0 if zi else np.ones(len(mu))
            return pd.Series(np.exp(self.family.log_density(0.0, mu, wt)), index=index,
                             name="predicted")
        out = eta if type == "link" else self.family.linkinv(eta)
        if type == "response" and zi:
            out = (1.0 - p0) * out
        if interval is None:
            return pd.Series(out, index=index, name="predicted")
        return pd.DataFrame(self._intervals(eta, out, X, zs, missing, include_re, weights,
                                            interval, level,
                                            "response" if type == "conditional" else type),
                            index=index)

    def _new_trials(self, trials, n: int, interval):
        """The new rows' weights for a prediction interval: a binomial model's trials
        (default 1), 1 for other families (which take no trials)."""
        if trials is None:
            return np.ones(n)
        if not self.family.is_binomial:
            raise PredictionError("trials is for binomial models only")
        t = _row_values(trials, n, "trials")
        if interval == "prediction" and not (np.all(np.isfinite(t)) and np.all(t >= 0)):
            raise PredictionError("trials must be numbers of trials >= 0")
        return t

    def _intervals(self, eta, fit, X, zs, missing, include_re, weights, interval, level,
                   type_) -> dict:
        """The interval columns (``predict``): the rows' random effects are
        conditioned on where their level was seen (and ``include_re``)."""
        given = [(codes if include_re else np.full_like(codes, -1), Z) for codes, Z in zs]
        re_part, fixed_part = link_variance(self._dev, self.theta, self._state, self.re_sigma,
                                            self.fe_cov.to_numpy(), np.asarray(X, float),
                                            given)
        # (a row without a prediction -- a missing value, or a missing offset -- has
        # no SE either)
        se = np.where(np.isfinite(eta), np.sqrt(re_part + fixed_part), np.nan)
        if interval == "confidence":
            lower, upper = confidence_bounds(self.family, eta, se, level, type_)
        else:
            extra = new_level_variance(self._dev.lambdas(self.theta), self.re_sigma, given,
                                       [codes < 0 for codes, _ in given])
            lower, upper = prediction_bounds(self.family, eta, np.sqrt(se ** 2 + extra),
                                             weights, self.sigma, level)
        return {"fit": fit, "se_link": se, "lower": lower, "upper": upper}

    def resid(self, type: str = "deviance", nsim: int = 250, seed: int = 0) -> pd.Series:
        """Deviance, Pearson or response residuals at the conditional modes, or
        ``"quantile"``: DHARMa's simulated quantile residuals from ``nsim``
        simulations with ``seed`` (``simulated_residuals``)."""
        if type == "quantile":
            return self.simulated_residuals(nsim, seed).residuals.rename("quantile_resid")
        y = self.design.y
        mu = self.fittedvalues.to_numpy()
        wt = self.design.weights
        if self.zero_prob is not None:
            # the zero-inflated family's functions take the count's mean and each row's
            # p0 (in the weights' place); the residuals are around the response's mean
            m, p0 = self._mu, self.zero_prob
            if type == "deviance":
                d = self.family.dev_resids(y, m, p0)
                r = np.sign(y - mu) * np.sqrt(np.abs(d))
            elif type == "pearson":
                r = (y - mu) / np.sqrt(self.family.variance(m, p0))
            elif type == "response":
                r = y - mu
            else:
                raise ValueError("type must be 'deviance', 'pearson', 'response' or "
                                 "'quantile'")
            return pd.Series(r, index=self.design.row_labels, name=f"{type}_resid")
        if type == "deviance":
            d = self.family.dev_resids(y, mu, wt)
            r = np.sign(y - mu) * np.sqrt(np.abs(d))
        elif type == "pearson":
            # (the variance sees the trials: a beta-binomial's depends on them)
            r = (y - mu) * np.sqrt(wt / self.family.variance(mu, wt))
        elif type == "response":
            r = y - mu
        else:
            raise ValueError("type must be 'deviance', 'pearson', 'response' or 'quantile'")
        return pd.Series(r, index=self.design.row_labels, name=f"{type}_resid")

    # -- printing
    def formula_as_fitted(self) -> str:
        """The whole model as fitted, ``response ~ fixed + random terms + offset``: the
        formula as written plus the random intercepts given by ``groups=`` and the
        offset given by ``offset=`` (``offset(name)`` for a column name; an offset
        given as numbers has no name: ``offset(<values given>)``)."""
        f = self.design.spec.formula
        text = _spaced(f.text)
        try:
            written = len(parse_formula(f.text).random)
        except FormulaError:
            written = len(f.random)
        extra = [f"({'1' if rt.intercept else '0'} | {':'.join(map(str, rt.groups[0]))})"
                 if len(rt.groups) == 1 and not rt.terms else rt.text
                 for rt in f.random[written:]]
        arg = getattr(self.design, "offset_arg", None)
        if arg is not None:
            extra.append("offset(<values given>)" if arg == "values" else f"offset({arg})")
        return " + ".join([text] + extra)

    def _summary_head(self) -> list:
        return [("Generalized linear mixed model fit by maximum likelihood "
                 + {0: "(PIRLS, nAGQ = 0)", 1: "(Laplace Approximation)"}.get(
                     self.nAGQ,
                     f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nAGQ})")),
                f" Family: {self.family.label}",
                *([f"Likelihood: {self.likelihood}"] if self.family.laplace_differs
                  and self.nAGQ == 1 else []),
                f"Formula: {self.formula_as_fitted()}"]

    def _summary_criterion(self) -> list:
        # lme4 prints this table rounded to 1 decimal (.prt.aictab)
        crit = [f"{v:.1f}" for v in (self.aic, self.bic, self.llf, self.deviance)]
        return _table(["AIC", "BIC", "logLik", "deviance", "df.resid"],
                      [crit + [numfmt.number(self.df_resid)]], "rrrrr")

    def _summary_residuals(self) -> list:
        r = self.resid("pearson").to_numpy()
        if self.family.has_dispersion and self.sigma > 0:
            r = r / self.sigma                  # lme4's scaled = TRUE
        r = r[np.isfinite(r)]
        if not len(r):
            return []
        q = np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0])      # R's type 7
        return ["Scaled residuals:"] + _table(["Min", "1Q", "Median", "3Q", "Max"],
                                              [numfmt.column(_zapsmall(q, 5))], "rrrrr")

    def _summary_random(self) -> list:
        """lme4's VarCorr table: one row per term, correlations with the earlier
        terms of the same group to the right (lower triangle), the residual last."""
        vc = self.varcorr
        corr = {}
        for r in vc.itertuples(index=False):
            if _given(r.var2):
                corr[(r.grp, r.var1, r.var2)] = r.sdcor
        rows, ncorr = [], 0
        current, earlier = None, []
        for r in vc.itertuples(index=False):
            if _given(r.var2):
                continue
            if r.grp != current:
                current, earlier = r.grp, []
                grp = str(r.grp)
            else:
                grp = ""
            cells = [grp, str(r.var1) if _given(r.var1) else "", r.vcov, r.sdcor]
            # correlations with 2 decimals, as lme4 prints them
            cells += [numfmt.statistic(corr[(r.grp, e, r.var1)]) if (r.grp, e, r.var1) in corr
                      else "" for e in earlier]
            ncorr = max(ncorr, len(earlier))
            earlier.append(r.var1)
            rows.append(cells)
        for j in (2, 3):            # Variance and Std.Dev.: a column each (numfmt.column)
            for cells, text in zip(rows, numfmt.column([c[j] for c in rows])):
                cells[j] = text
        head = ["Groups", "Name", "Variance", "Std.Dev."] + ["Corr"] + [""] * (ncorr - 1) \
            if ncorr else ["Groups", "Name", "Variance", "Std.Dev."]
        rows = [r + [""] * (len(head) - len(r)) for r in rows]
        lines = ["Random effects:"] + _table(head, rows, "llrr" + "r" * ncorr, indent=1)
        grp = "; ".join(f"{g}, {k}" for g, k in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {grp}")
        return lines                # rows removed for missing values: in the notes

    def _summary_fixed(self) -> list:
        est, se = _coef_columns(list(self.fe_params), list(self.fe_bse))
        rows = [[str(name), est[i], se[i], numfmt.statistic(self.fe_zvalues[name]),
                 numfmt.pvalue(self.fe_pvalues[name])]
                for i, name in enumerate(self.fe_params.index)]
        if not rows:
            return ["No fixed effects"]
        out = ["Fixed effects:"] + _table(["", "Estimate", "Std. Error", "z value",
                                           "Pr(>|z|)"], rows, "lrrrr")
        if self.zi_params is not None:
            est, se = _coef_columns(list(self.zi_params), list(self.zi_bse))
            zrows = [[str(name), est[i], se[i], numfmt.statistic(self.zi_zvalues[name]),
                      numfmt.pvalue(self.zi_pvalues[name])]
                     for i, name in enumerate(self.zi_params.index)]
            out += ["", "Zero-inflation model (log odds of a structural zero):"] + _table(
                ["", "Estimate", "Std. Error", "z value", "Pr(>|z|)"], zrows, "lrrrr")
        return out

    def summary(self) -> str:
        """An lme4-style summary: the model as fitted, the fit criteria, scaled
        residuals, random effects, fixed effects and the notes.  Numbers follow
        :mod:`xlglmm.numfmt` (p-values as R's format.pval, statistics to 2
        decimals, other numbers to 4 significant digits)."""
        parts = [self._summary_head(), self._summary_criterion(),
                 self._summary_residuals(), self._summary_random(), self._summary_fixed()]
        lines = []
        for p in parts:
            if p:
                lines += p + [""]
        if self.messages:
            lines += [f"Note: {m}" for m in self.messages]
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines)

    def __repr__(self):
        return (f"<GLMMResult {self.family.name}/{self.family.link} {self.method}: "
                f"logLik={self.llf:.4f}, nobs={self.nobs}, converged={self.converged}>")


def _row_values(values, n: int, name: str) -> np.ndarray:
    """One number per new row (``offset``, ``trials``; one number: every row's), checked."""
    try:
        v = np.asarray(values, float).reshape(-1)
    except (TypeError, ValueError):
        raise PredictionError(f"{name} must be numbers, one per new row") from None
    if v.shape[0] not in (1, n):
        raise PredictionError(f"{name} has {v.shape[0]} values for {n} new rows")
    return np.broadcast_to(v, (n,)).copy()


def _given(v) -> bool:
    """A VarCorr cell that holds a name (not None / NaN)."""
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _table(head: list, rows: list, align: str, indent: int = 0) -> list:
    """Lines of a text table: columns as wide as their widest cell (nothing cut),
    ``align`` per column ("l" or "r"), two spaces between columns (one in lme4's
    random-effects table: ``indent``=1 keeps its leading space)."""
    cols = len(head)
    width = [max(len(str(x)) for x in [head[j]] + [r[j] for r in rows]) for j in range(cols)]

    def line(cells):
        out = [str(c).ljust(width[j]) if align[j] == "l" else str(c).rjust(width[j])
               for j, c in enumerate(cells)]
        return (" " * indent + " ".join(out) if indent else "  ".join(out)).rstrip()
    return [line(head)] + [line(r) for r in rows]


def _spaced(text: str) -> str:
    """A formula's text with R's spacing: one space around ``~``, ``+``, ``|`` and
    ``||`` (``(1|g)`` -> ``(1 | g)``), other whitespace collapsed; names in
    backquotes are left as they are."""
    out, i, quoted = [], 0, False
    text = str(text)
    while i < len(text):
        ch = text[i]
        if ch == "`":
            quoted = not quoted
            out.append(ch)
        elif quoted:
            out.append(ch)
        elif ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
        elif ch in "~+|":
            op = "||" if text.startswith("||", i) else ch
            i += len(op) - 1
            while out and out[-1] == " ":
                out.pop()
            out.append(f" {op} ")
            while i + 1 < len(text) and text[i + 1].isspace():
                i += 1
        else:
            out.append(ch)
        i += 1
    return "".join(out).strip()


def _zapsmall(x, digits: int) -> list:
    """R's zapsmall: round to ``digits`` significant digits of the largest |x|
    (lme4 prints the scaled residuals' quantiles so)."""
    x = [float(v) for v in x]
    mx = max((abs(v) for v in x), default=0.0)
    d = max(0, digits - math.ceil(math.log10(mx))) if mx > 0 else digits
    return [round(v, d) for v in x]


def _coef_columns(est, se, digits: int = 4) -> tuple:
    """Estimate and Std. Error as R's printCoefmat writes them (lme4's summary):
    both columns rounded to max(1, digits - (1 + floor(log10(smallest |value|))))
    decimals, then formatted together (numfmt.column)."""
    both = [float(v) for v in list(est) + list(se)]
    nonzero = [abs(v) for v in both if v != 0 and math.isfinite(v)]
    if nonzero:
        dec = max(1, digits - (1 + math.floor(math.log10(min(nonzero)))))
        both = [round(v, dec) if math.isfinite(v) else v for v in both]
    texts = numfmt.column(both, digits)
    return texts[:len(est)], texts[len(est):]

