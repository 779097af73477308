"""The fitted model (lme4's ``mkMerMod`` stage): estimates, variance components,
random effects, fit statistics, predictions and an lme4-style summary."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from . import kernels
from .design import new_data_matrices


class GLMMResult:
    """A fitted GLMM.  Attribute names follow the Python peer the seeds use
    (``fe_params``, ``fe_bse``, ``variance_components``, ``random_effects``,
    ``llf``, ``aic``, ``bic``, ...); values follow lme4's conventions."""

    def __init__(self, *, design, devfun, family, nAGQ, theta, beta, vcov, vcov_method,
                 vcov_rx, vcov_exact, deviance_value, state, sigma, converged, singular, messages,
                 gradient, hessian, evaluations, seconds, formula):
        self.design = design
        self._dev = devfun
        self.family = family
        self.nAGQ = nAGQ
        self.theta = np.asarray(theta, float)
        self.sigma = float(sigma)
        self.converged = bool(converged)
        self.singular = bool(singular)
        self.messages = list(messages)
        self.gradient = gradient
        self.hessian = hessian
        self.evaluations = evaluations
        self.seconds = seconds
        self.formula = formula
        self.vcov_method = vcov_method
        names = pd.Index(list(design.x_names))     # one index shared by the tables
        self.fe_params = pd.Series(np.asarray(beta, float), index=names, name="estimate")
        self.fe_cov = pd.DataFrame(vcov, index=names, columns=names)
        self.fe_cov_rx = pd.DataFrame(vcov_rx, index=names, columns=names)
        self.fe_cov_exact = (pd.DataFrame(vcov_exact, index=names, columns=names)
                             if vcov_exact is not None else None)
        se = np.sqrt(np.diag(vcov)) if len(names) else np.zeros(0)
        self.fe_bse = pd.Series(se, index=names, name="se", dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.asarray(beta, float) / se
        self.fe_zvalues = pd.Series(z, index=names, dtype=float)
        # 2 * norm.sf(|z|), which is 2 * ndtr(-|z|) (without scipy.stats' overhead)
        self.fe_pvalues = pd.Series(2.0 * special.ndtr(-np.abs(z)), index=names, name="p",
                                    dtype=float)
        self.fe_conf_int = self.conf_int(0.05)
        self.llf = -0.5 * float(deviance_value)
        self.nobs = int(design.nobs)
        self.n_dropped = int(design.n_dropped)
        self.npar = len(names) + len(self.theta) + (1 if family.has_dispersion else 0)
        self.deviance = -2.0 * self.llf
        self.aic = self.deviance + 2.0 * self.npar
        self.bic = self.deviance + math.log(self.nobs) * self.npar
        self.df_resid = self.nobs - self.npar
        self.method = {0: "PIRLS (nAGQ=0)", 1: "Laplace"}.get(nAGQ, f"AGQ({nAGQ})")
        terms = design.re_terms
        self.ngroups = {}
        for t in terms:
            self.ngroups.setdefault(t.group, t.nlevels)
        self._state = state
        self._b = devfun.b_by_term(self.theta, state)
        self.varcorr = self._varcorr()
        self.variance_components = {
            t.name: float(self.sigma ** 2 * L[0, 0] ** 2)
            for t, L in zip(terms, devfun.lambdas(self.theta))
            if t.k == 1 and t.colnames == ["(Intercept)"]}
        self.random_effects, self.random_effects_sd = self._ranef()
        eta = devfun.unsorted(state.eta)
        mu = devfun.unsorted(state.mu)
        self._eta = eta
        self.fittedvalues = pd.Series(mu, index=design.row_labels, name="fitted")
        # negative binomial shape (set by the NB fit; None otherwise)
        self.nb_theta = None if family.name != "negbin" else float(family.nb_theta)
        self.nb_theta_se = None
        self.nb_theta_ci = None

    # -- fixed effects
    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals at level 1 - alpha."""
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        zq = special.ndtri(1.0 - alpha / 2.0)      # stats.norm.ppf
        b = self.fe_params.to_numpy()
        se = self.fe_bse.to_numpy()
        return pd.DataFrame({"lower": b - zq * se, "upper": b + zq * se},
                            index=self.fe_params.index)

    # -- random effects
    def _varcorr(self) -> pd.DataFrame:
        rows = []
        s2 = self.sigma ** 2
        for t, L in zip(self.design.re_terms, self._dev.lambdas(self.theta)):
            cov = s2 * (L @ L.T)
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
        Dchol, Cval, LS, loc_ptr, loc_cols, ok = dev.factor_at(self.theta, st, False)
        lams = dev.lambdas(self.theta)
        s2 = self.sigma ** 2
        out = []
        if not ok:
            for t in dev.terms:
                out.append(np.full((t.nlevels, t.k, t.k), np.nan))
            return out
        r = LS.shape[0]
        if r:
            Linv = np.linalg.inv(LS)
            Sinv = Linv.T @ Linv
        else:
            Sinv = np.zeros((0, 0))
        V1 = kernels.term1_conditional_cov(Dchol, Cval, loc_ptr, loc_cols, Sinv)
        L1 = lams[0]
        out.append(s2 * np.einsum("ij,gjk,lk->gil", L1, V1, L1))
        for t, b, L in zip(dev.rest_terms, dev.rest_base, lams[1:]):
            k = t.k
            idx = b + np.arange(t.nlevels)[:, None] * k + np.arange(k)    # (levels, k)
            blocks = Sinv[idx[:, :, None], idx[:, None, :]]                # diagonal blocks
            out.append(s2 * np.einsum("ij,gjk,lk->gil", L, blocks, L))
        return out

    def _ranef(self):
        values: dict = {}
        sds: dict = {}
        covs = self._conditional_cov()
        groups = [t.group for t in self.design.re_terms]
        for t, b, cv in zip(self.design.re_terms, self._b, covs):
            sd = np.sqrt(np.clip(np.einsum("gii->gi", cv), 0.0, None))
            if t.k == 1 and groups.count(t.group) == 1:     # one column: a Series
                index = pd.Index(t.levels, name=t.group)
                values[t.group] = pd.Series(b[:, 0].copy(), index=index, name=t.group)
                sds[t.group] = pd.Series(sd[:, 0].copy(), index=index, name=t.group)
                continue
            df = pd.DataFrame(b, index=pd.Index(t.levels, name=t.group), columns=t.colnames)
            dsd = pd.DataFrame(sd, index=df.index, columns=t.colnames)
            if t.group in values:     # (x || g): several terms on one factor
                taken = set(values[t.group].columns)
                cols = [c if c not in taken else f"{c}.1" for c in t.colnames]
                df.columns = dsd.columns = cols
                values[t.group] = pd.concat([values[t.group], df], axis=1)
                sds[t.group] = pd.concat([sds[t.group], dsd], axis=1)
            else:
                values[t.group], sds[t.group] = df, dsd
        for g in list(values):
            if values[g].ndim == 2 and values[g].shape[1] == 1:
                values[g] = values[g].iloc[:, 0].rename(g)
                sds[g] = sds[g].iloc[:, 0].rename(g)
        return values, sds

    # -- predictions
    def predict(self, newdata=None, type: str = "response", include_re: bool = True,
                offset=None) -> pd.Series:
        """Predictions on the ``"response"`` or ``"link"`` scale.  For new data,
        levels not seen in the fit get random effect 0 (the population value);
        ``offset`` (array) adds to the formula's offset() terms."""
        if type not in ("response", "link"):
            raise ValueError("type must be 'response' or 'link'")
        if newdata is None:
            if include_re:
                eta = self._eta
            else:
                d = self.design
                eta = d.offset + d.X @ self.fe_params.to_numpy()
            index = self.design.row_labels
        else:
            X, zs, off, missing = new_data_matrices(self.design.spec, self.design.re_terms,
                                                    newdata)
            eta = X @ self.fe_params.to_numpy() + off
            if offset is not None:
                eta = eta + np.asarray(offset, float).reshape(-1)
            if include_re:
                for (codes, Z), b in zip(zs, self._b):
                    seen = codes >= 0
                    eta[seen] += np.einsum("ij,ij->i", Z[seen], b[codes[seen]])
            eta = np.where(missing, np.nan, eta)
            index = newdata.index if hasattr(newdata, "index") else None
        out = eta if type == "link" else self.family.linkinv(eta)
        return pd.Series(out, index=index, name="predicted")

    def resid(self, type: str = "deviance") -> pd.Series:
        """Deviance, Pearson or response residuals at the conditional modes."""
        y = self.design.y
        mu = self.fittedvalues.to_numpy()
        wt = self.design.weights
        if type == "deviance":
            d = self.family.dev_resids(y, mu, wt)
            r = np.sign(y - mu) * np.sqrt(np.abs(d))
        elif type == "pearson":
            r = (y - mu) * np.sqrt(wt / self.family.variance(mu))
        elif type == "response":
            r = y - mu
        else:
            raise ValueError("type must be 'deviance', 'pearson' or 'response'")
        return pd.Series(r, index=self.design.row_labels, name=f"{type}_resid")

    # -- printing
    def summary(self) -> str:
        head = ("Generalized linear mixed model fit by maximum likelihood "
                + {0: "(PIRLS, nAGQ = 0)", 1: "(Laplace Approximation)"}.get(
                    self.nAGQ, f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nAGQ})"))
        lines = [head, f" Family: {self.family.label}", f"Formula: {self.formula}", ""]
        stats_row = pd.DataFrame([[self.aic, self.bic, self.llf, self.deviance, self.df_resid]],
                                 columns=["AIC", "BIC", "logLik", "deviance", "df.resid"])
        lines.append(stats_row.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        lines += ["", "Random effects:"]
        vc = self.varcorr
        rows = []
        for _, r in vc.iterrows():
            if r["var2"] is None or (isinstance(r["var2"], float) and math.isnan(r["var2"])):
                rows.append([r["grp"], r["var1"] or "", f"{r['vcov']:.4g}", f"{r['sdcor']:.4g}", ""])
            else:
                rows.append(["", f"  corr({r['var1']}, {r['var2']})", "", "", f"{r['sdcor']:.3f}"])
        tab = pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])
        lines.append(tab.to_string(index=False))
        grp = "; ".join(f"{g}, {k}" for g, k in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {grp}")
        if self.n_dropped:
            lines.append(f"({self.n_dropped} rows with missing values removed)")
        lines += ["", "Fixed effects:"]
        fe = pd.DataFrame({"Estimate": self.fe_params, "Std. Error": self.fe_bse,
                           "z value": self.fe_zvalues, "Pr(>|z|)": self.fe_pvalues})
        lines.append(fe.to_string(float_format=lambda v: f"{v:.4g}"))
        if self.messages:
            lines += [""] + [f"Note: {m}" for m in self.messages]
        return "\n".join(lines)

    def __repr__(self):
        return (f"<GLMMResult {self.family.name}/{self.family.link} {self.method}: "
                f"logLik={self.llf:.4f}, nobs={self.nobs}, converged={self.converged}>")
