"""Zero inflation (glmmTMB's ``ziformula``): a count family (Poisson, NB2, NB1) whose
every row is, with its own probability p0, a structural zero instead of a count,
logit(p0) = the zero-inflation model's columns times its coefficients (fixed
effects only, as glmmTMB's default).

The random effects enter the count's mean only; the Laplace approximation is the
exact one of the zero-inflated likelihood (``family.zero_inflated_derivs``: the
kernels receive each row's p0, ``family.zero_probability``, in the row's weight
slot, ``devfun``).  The coefficients and the count family's parameter (NB2's theta,
NB1's phi) are estimated with the others by ``ZeroInflatedModel``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize as _sciopt

from .covariance import cov_from_hessian, fit_scale_statistics, unscale
from .devfun import ModeWarmStarts
from .family import (ZI_ETA_LIMIT, Family, conditional_aic, row_terms_general,
                     zero_inflated_p0_partials, zero_probability)
from .gradient import row_parameter_derivative
from .family_parameter import (AT_END, JOINT_MAX_STEPS, JOINT_TOL, FamilyParameter,
                               NestedFits, convex_in, gradient_columns, with_columns)
from .model import Optimum, with_user_budget
from .optimize import BudgetExhausted, FitTimeout, hessian_fd, newton_refine
from .results import GLMMResult

#: a zero-inflation coefficient whose every row (a nonzero entry in its column) has
#: p0 below this, or above 1 minus it, sits where the likelihood is flat in it (glmmTMB
#: reports such estimates near -20 with SEs in the thousands): it is not determined --
#: moved out to where those rows' p0 is 0 to rounding, held there, no SE
ZI_BOUNDARY_P0 = 1e-4
#: the relative step of the count parameter's row-level central difference
ROW_FD_DELTA = 1e-4
#: the joint search's lower bound on each zero-inflation coefficient
ZI_SEARCH_FLOOR = -25.0
#: the zero-inflation coefficients' start search: within these log odds
ZI_START_BOUNDS = (-10.0, 10.0)


@dataclass
class ZeroInflationEstimate:
    """The zero-inflation model's coefficients (log odds of a structural zero), their
    covariance (marginal over every other parameter: 2 x the inverse joint Hessian,
    glmmTMB's), the names of those not determined (at the boundary: NaN SEs), and the
    count model without zero inflation the search started from."""
    names: list
    coef: np.ndarray
    cov: np.ndarray
    undetermined: list
    start_fit: GLMMResult

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


def zero_inflated_family(family: Family, count_parameter: FamilyParameter | None, c) -> Family:
    """``family`` at c = (the count parameter's log, when there is one; the
    zero-inflation coefficients)."""
    f = dataclasses.replace(family, zi_coef=tuple(c[1:] if count_parameter else c))
    return count_parameter.family_at(f, math.exp(c[0])) if count_parameter else f


class ZeroInflatedJointDeviance:
    """The Laplace deviance as a function of x = (the random effects' theta, c, beta on
    the fit's scale), c = (the count family's log theta or log phi, when it has one;
    the zero-inflation coefficients).  Changes the model's family as it evaluates;
    ``close()`` puts back the model's own family and warm starts."""

    def __init__(self, model, count_parameter: FamilyParameter | None, k: int):
        self.model = model
        self.count_parameter = count_parameter
        self.dev = model.devfun
        self.nt = model.devfun.ntheta
        self.k = k                      # coordinates of c
        self._family = model.family
        self._c = None
        self._saved = self.dev.warm_starts()
        self.warm = ModeWarmStarts(self.dev)

    def family_at(self, c) -> Family:
        return zero_inflated_family(self._family, self.count_parameter, c)

    def _set(self, x) -> bool:
        """The family at x's c (False: c outside the count parameter's range)."""
        nt, k = self.nt, self.k
        c = np.asarray(x[nt:nt + k], float)
        par = self.count_parameter
        if par is not None:
            lo, hi = par.log_bounds
            if not lo - 1.0 <= c[0] <= hi + 1.0:
                return False
        if self._c is None or not np.array_equal(c, self._c):
            self.dev.set_family(self.family_at(c))
            self._c = c.copy()
        return True

    def __call__(self, x) -> float:
        if not self._set(x):
            return math.inf
        nt, k = self.nt, self.k
        return self.model.deviance(x[:nt], x[nt + k:])

    def value_and_gradient(self, x):
        """(deviance, its exact gradient): the Laplace gradient in (theta, beta) and,
        from the same mode (one PIRLS in all), in c (``family_gradient``)."""
        nt, k = self.nt, self.k
        if not self._set(x):
            return math.inf, np.full(len(x), np.nan)
        f, g = self.dev.laplace_gradient(x[:nt], x[nt + k:])
        if not np.isfinite(f) or not np.all(np.isfinite(g)):
            return f, np.full(len(x), np.nan)
        return f, np.concatenate([g[:nt], self.family_gradient(), g[nt:]])

    def family_gradient(self) -> np.ndarray:
        """dD/dc at the last Laplace gradient's mode: each coordinate a parameter of
        the rows' log-likelihoods (``gradient.row_parameter_derivative``) -- a
        zero-inflation coefficient through each row's p0 (dp0 = p0 (1 - p0) z_ij,
        ``family.zero_inflated_p0_partials``), the count parameter's log by a central
        difference of the rows' terms at fixed eta (``family.row_terms_general``: no
        PIRLS)."""
        dev = self.dev
        st = dev.state
        h, al = dev._gradient.last_rows
        y, mu, eta, p0 = dev.y, st.mu, st.eta, dev.kernel_pw
        n = len(y)
        out = []
        par = self.count_parameter
        if par is not None:
            t = math.log(par.value(dev.family))
            ends = []
            for s in (ROW_FD_DELTA, -ROW_FD_DELTA):
                rows = np.empty((3, n))
                f = par.family_at(dev.family, math.exp(t + s))
                row_terms_general(y, mu, eta, p0, f.kernel_data(), rows)
                ends.append(rows)
            d = (ends[0] - ends[1]) / (2.0 * ROW_FD_DELTA)
            out.append(row_parameter_derivative(d[0], d[2], d[1], h, al))
        parts = np.empty((3, n))
        zero_inflated_p0_partials(y, mu, eta, p0, dev._fd, parts)
        dp0 = p0 * (1.0 - p0)
        for j in range(dev.zi_X.shape[1]):
            s = dp0 * dev.zi_X[:, j]
            out.append(row_parameter_derivative(parts[0] * s, parts[2] * s, parts[1] * s,
                                                h, al))
        return np.asarray(out, float)

    def close(self):
        self.dev.set_family(self._family)
        self._c = None
        self.dev.restore_warm_starts(self._saved)


class ZeroInflatedModel(NestedFits):
    """A zero-inflated count GLMM fitted by maximum likelihood (the exact Laplace):
    the count model without zero inflation first (``fit_start``: the Poisson GLMM),
    a start for the count family's parameter and the zero-inflation coefficients
    from that fit's means (a small search over the zero-inflated likelihood of the
    response, no random effects moved), one fit there, then projected quasi-Newton
    steps over (theta, c, beta) jointly (``ZeroInflatedJointDeviance``; L-BFGS-B on
    the same function when the quadratic model fails), and the reported fit at the
    estimate with the requested SEs.  The covariances are marginal over every
    parameter (2 x the inverse joint Hessian, glmmTMB's); coefficients that ran to
    the boundary (some rows' p0 to 0 or 1) are held there and reported as not
    determined."""

    def __init__(self, family: Family, count_parameter: FamilyParameter | None, fit_start,
                 model_at, *, se_method, time_budget, max_evals, progress=None):
        # (``model_at`` takes the family at c: ``zero_inflated_family``)
        super().__init__(fit_start, model_at, se_method=se_method, time_budget=time_budget,
                         max_evals=max_evals, progress=progress)
        self.family = family
        self.count_parameter = count_parameter

    def _start(self) -> np.ndarray:
        """c's start: the count parameter (its moment value from the start fit) and the
        zero-inflation coefficients maximising the zero-inflated likelihood of the
        response with the count means the start fit's times a common factor."""
        fit = self.start_fit
        par = self.count_parameter
        y = fit.design.y
        mu = fit.fittedvalues.to_numpy()
        Zi = fit.design.zi_X
        q = Zi.shape[1]
        base = self.family.count_family
        starts = []
        if par is not None:
            lo_v, hi_v = par.start_bounds
            m = float(np.clip(par.moment(fit), lo_v, hi_v))
            starts.append(math.log(m))
        zero = float(np.mean(y == 0))
        expected = float(np.mean(np.exp(base.log_density(0.0, mu)))) if par is None else \
            float(np.mean(np.exp(par.family_at(base, math.exp(starts[0])).log_density(0.0, mu))))
        excess = min(max((zero - expected) / max(1.0 - expected, 1e-3), 0.02), 0.9)
        g0 = np.zeros(q)
        if "(Intercept)" in fit.design.zi_names:
            g0[fit.design.zi_names.index("(Intercept)")] = math.log(excess / (1.0 - excess))
        x0 = np.concatenate([[0.0], starts, g0])
        kpar = len(starts)

        zero_inflated = dataclasses.replace(base, zero_inflated=True)
        y = np.ascontiguousarray(y, float)

        def minus_loglik(x):
            # (the compiled sum of the rows' log-likelihoods, constants included: the
            # count parameter's move them; 10x faster than the vectorised density)
            f = zero_inflated if par is None else par.family_at(zero_inflated,
                                                                  math.exp(x[1]))
            p0 = zero_probability(Zi, x[1 + kpar:])
            v = 0.5 * float(conditional_aic(y, np.ascontiguousarray(mu * math.exp(x[0])),
                                            p0, f.kernel_data()))
            return v if np.isfinite(v) else 1e300
        bounds = [(-3.0, 3.0)] + ([(math.log(par.start_bounds[0]), math.log(par.start_bounds[1]))]
                                  if par is not None else []) + [ZI_START_BOUNDS] * q
        # (SLSQP: scipy's L-BFGS-B spends ~1 ms of its own per iteration here, more
        # than this objective costs)
        opt = _sciopt.minimize(minus_loglik, x0, method="SLSQP", bounds=bounds,
                               options={"maxiter": 200})
        x = opt.x if np.isfinite(opt.fun) else x0
        return np.asarray(x[1:], float)

    def fit(self) -> GLMMResult:
        par = self.count_parameter
        self.start_fit = self._fit_start()
        c0 = self._start()
        k = len(c0)
        j0 = 1 if par is not None else 0
        fam0 = zero_inflated_family(self.family, par, c0)
        timed_out = False
        c_hat, warm = c0, None
        try:
            m0 = self._fit_at(fam0, "rx", self._left(), self.start_fit.model.optimum)
        except BudgetExhausted:
            m0, timed_out = None, True
        if m0 is not None:
            if m0.estimates.stopped_by_budget:
                timed_out = True
            else:
                found = self._search_joint(m0, c0)
                if found is None:
                    timed_out = True
                else:
                    c_hat, warm, timed_out = found
        gamma = self._to_boundary(np.asarray(c_hat[j0:], float))
        fam = zero_inflated_family(self.family, par, np.concatenate([c_hat[:j0], gamma]))
        self.model = self._fit_at(fam, self.se_method,
                                  self._left(0.25 * (self.time_budget or 0)), warm)
        est = self.model.estimates
        names = list(self.model.design.zi_names)
        undetermined = [names[j] for j in self._undetermined(c_hat[j0:])]
        # a determined coefficient held by the search's floor: the likelihood still
        # rises beyond it (the zero-inflation model separates the zeros, e.g. y = 0
        # for every z > 1: glmmTMB went to -3712 + 3717 z, 2.7 of logLik above -25)
        at_floor = [names[j] for j in range(len(names))
                    if c_hat[j0 + j] <= ZI_SEARCH_FLOOR + 1e-6 and names[j] not in undetermined]
        gamma = np.asarray(self.model.family.zi_coef, float)
        c_hat = np.concatenate([c_hat[:j0], gamma])
        cov_c = np.full((k, k), np.nan)
        if not timed_out:
            try:
                est, cov_c = self._covariance(est, k, [j0 + names.index(n) for n in undetermined])
            except FitTimeout:
                timed_out = True
        messages = with_user_budget(est.messages, self.time_budget)
        count_estimate = None
        if par is not None:
            se_log = math.sqrt(cov_c[0, 0]) if np.isfinite(cov_c[0, 0]) and cov_c[0, 0] > 0 \
                else float("nan")
            lo, hi = par.log_bounds
            end = 0 if c_hat[0] < lo + AT_END else 1 if c_hat[0] > hi - AT_END else None
            if end is not None:
                se_log = float("nan")
                note = par.limit_note if par.upper_is_limit and end == 1 else \
                    (par.end_notes[end] if par.end_notes else "")
                messages.append(f"The {par.label} ran to its {('lower', 'upper')[end]} limit "
                                f"({math.exp(par.log_bounds[end]):.0e})"
                                + (f": {note}." if note else "."))
            count_estimate = par.found(c_hat[0], se_log, self.start_fit)
        if undetermined:
            if len(undetermined) == len(names):
                messages.append(
                    "The zero-inflation probability ran to 0 for every row: the data show "
                    "no zeros beyond what the count model expects, and the model reduces "
                    "to it (compare their AICs); the zero-inflation coefficients are not "
                    "determined.")
            else:
                messages.append(
                    "Zero-inflation coefficients not determined (they sent some rows' "
                    "probability of a structural zero to 0 or 1, where the likelihood is "
                    f"flat): {', '.join(undetermined)}; held at the boundary, no SE.")
        if at_floor:
            messages.append(
                f"Zero-inflation coefficients stopped at the search's bound "
                f"({ZI_SEARCH_FLOOR:g}), where the likelihood may still rise: "
                f"{', '.join(at_floor)}. The zero-inflation model separates the zeros "
                "(some rows' probability of a structural zero goes to 0 or 1 along a "
                "combination of its columns): NOT converged; simplify it.")
        if timed_out:
            messages.append("Stopped at the time budget while estimating the zero "
                            "inflation: NOT converged.")
        zi = ZeroInflationEstimate(names, gamma, cov_c[j0:, j0:], undetermined, self.start_fit)
        fields = {"zi": zi}
        if par is not None:
            fields[par.estimates_field] = count_estimate
        self.model.estimates = dataclasses.replace(
            est, messages=messages, converged=est.converged and not timed_out and not at_floor,
            **fields)
        return GLMMResult(self.model, self.model.estimates)

    def _undetermined(self, gamma) -> list:
        """The zero-inflation coefficients not determined at ``gamma``: every row
        their column touches has p0 within ``ZI_BOUNDARY_P0`` of 0 or 1."""
        Zi = self.start_fit.design.zi_X
        p0 = zero_probability(Zi, gamma)
        out = []
        for j in range(Zi.shape[1]):
            rows = Zi[:, j] != 0.0
            if rows.any() and (np.all(p0[rows] < ZI_BOUNDARY_P0)
                               or np.all(p0[rows] > 1.0 - ZI_BOUNDARY_P0)):
                out.append(j)
        return out

    def _to_boundary(self, gamma) -> np.ndarray:
        """``gamma`` with each undetermined coefficient (whose column has one sign)
        moved to where its rows' log odds are all beyond ``ZI_ETA_LIMIT``, the nearest
        such value -- where the likelihood is the limit's to rounding: the search
        stops short of it (where the slope falls below its tolerance: 1.6e-4 of
        log-likelihood on grouseticks' zi ~ YEAR) or runs far past it (-2661), both
        arbitrary."""
        Zi = self.start_fit.design.zi_X
        gamma = gamma.copy()
        for j in self._undetermined(gamma):
            rows = Zi[:, j] != 0.0
            z = Zi[rows, j]
            if not (np.all(z > 0) or np.all(z < 0)):
                continue
            eta = Zi[rows] @ gamma
            out = -1.0 if np.all(eta < 0) else 1.0      # the side the rows' log odds are on
            # out * eta_i grows by |z_i| per unit of the move: all reach the limit at
            need = float(np.max((ZI_ETA_LIMIT - out * eta) / np.abs(z)))
            gamma[j] += out * np.sign(z[0]) * need
        return gamma

    def _search_joint(self, m0, c0):
        """(c at the joint optimum, that optimum as the reported fit's start, whether
        the budget stopped the search: then the best point the search had evaluated);
        None when the budget stopped it before any."""
        opt = m0.optimum
        k = len(c0)
        joint = ZeroInflatedJointDeviance(m0, self.count_parameter, k)
        nt = joint.nt
        best = {"f": math.inf, "x": None}

        def keep(x, f):
            if np.isfinite(f) and f < best["f"]:
                best["f"], best["x"] = float(f), np.array(x, float)

        def fun(x):                 # (the search's evaluations, the best kept)
            f = joint(x)
            keep(x, f)
            return f

        def fg(x):
            f, g = joint.value_and_gradient(x)
            keep(x, f)
            return f, g
        x0 = np.concatenate([opt.theta, c0, opt.beta])
        cols = list(range(nt, nt + k))
        # the zi coefficients bounded below: a coefficient whose rows show no excess
        # zeros walks on to -infinity (33-37 gradients on grouseticks' ZINB instead of
        # 9-13); at ZI_SEARCH_FLOOR its rows' p0 is below 1e-10, not determined,
        # moved out by ``_to_boundary``
        j0 = 1 if self.count_parameter is not None else 0
        lower = np.concatenate([m0.lower, np.full(j0, -np.inf),
                                np.full(k - j0, ZI_SEARCH_FLOOR)])
        try:
            f0 = fun(x0)
            g0, cols_H = gradient_columns(fg, x0, cols, warm=joint.warm)
            f0 = fun(x0)
            H_rest = opt.hessian if opt.hessian is not None and \
                opt.hessian.shape == (len(x0) - k,) * 2 else None
            if H_rest is None:
                g0, H0 = hessian_fd(fun, x0, fx=f0, budget=self.budget)
            else:
                H0 = with_columns(H_rest, cols_H, cols)
            for c in cols:
                H0 = convex_in(H0, g0, c)
            nr = newton_refine(fun, x0, f0, g0, H0, lower, self.budget,
                               max_steps=JOINT_MAX_STEPS, tol=JOINT_TOL, warm=joint.warm, fg=fg)
            x, fx, steps = nr.x, nr.fun, nr.steps
            self.method = "joint"
            if not nr.ok:   # L-BFGS-B on the same function, from the best point so far
                self.method = "lbfgs"
                bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower] + \
                    [(None, None)] * (len(x0) - len(lower))

                def fgs(z):
                    if self.budget.expired():
                        raise FitTimeout()
                    f, g = fg(z)
                    return (f, g) if np.isfinite(f) else (1e300, np.zeros(len(z)))
                res = _sciopt.minimize(fgs, nr.x, jac=True, method="L-BFGS-B",
                                       bounds=bounds, options={"maxiter": 500, "gtol": 1e-6})
                if res.fun < nr.fun:
                    x, fx, steps = res.x, float(res.fun), steps + int(res.nit)
        except FitTimeout:
            x = best["x"]
            if x is None:
                return None
            return (np.asarray(x[nt:nt + k], float),
                    Optimum(x[:nt], x[nt + k:], best["f"], m0.devfun.state), True)
        finally:
            joint.close()
        if self.progress is not None:
            self.progress("zero inflation", steps)
        warm = Optimum(x[:nt], x[nt + k:], fx, m0.devfun.state)
        return np.asarray(x[nt:nt + k], float), warm, False

    def _covariance(self, est, k, held):
        """(the estimates with the fixed effects' covariance marginal over every
        parameter, c's covariance): 2 x the inverse of the joint Hessian in
        (theta, c, beta), the reported fit's finite-difference Hessian in (theta,
        beta) and k columns for c.  Without the fit's finite-difference Hessian
        (se_method 'rx', large data) only the k columns are computed (2k gradients,
        not a joint Hessian's (n + k)^2 evaluations): c's covariance is then
        conditional on theta and beta (a note says so) and beta's stays the fit's.
        Coordinates in ``held`` (undetermined coefficients) and variance parameters
        at 0 are held: no row or column."""
        model = self.model
        opt = model.optimum
        nt = model.devfun.ntheta
        c = np.concatenate([[math.log(self.count_parameter.value(model.family))]
                            if self.count_parameter is not None else [],
                            model.family.zi_coef])
        fun = ZeroInflatedJointDeviance(model, self.count_parameter, k)
        x = np.concatenate([opt.theta, c, opt.beta])
        cols = list(range(nt, nt + k))
        joint = opt.hessian is not None and opt.hessian_is_fd
        try:
            fun(x)
            _, cols_H = gradient_columns(fun.value_and_gradient, x, cols,
                                         warm=fun.warm)
        finally:
            fun.close()
        if not joint:
            free = [j for j in range(k) if j not in set(held)]
            cov_c = np.full((k, k), np.nan)
            block = cols_H[np.ix_([nt + j for j in free], free)]
            try:
                Vc = np.linalg.inv(0.5 * (block + block.T))
            except np.linalg.LinAlgError:
                return est, cov_c
            cov_c[np.ix_(free, free)] = 2.0 * Vc
            note = ("The zero-inflation coefficients' SEs are conditional on the other "
                    "parameters (no Hessian in theta and beta was computed: se_method "
                    "'rx' or large data).")
            return dataclasses.replace(est, messages=list(est.messages) + [note]), cov_c
        H = with_columns(opt.hessian, cols_H, cols)
        at_zero = [j for j in range(nt) if opt.theta[j] <= model.lower[j]]
        drop = set(at_zero) | {nt + j for j in held}
        keep = [j for j in range(len(x)) if j not in drop]
        cov_c = np.full((k, k), np.nan)
        Hk = H[np.ix_(keep, keep)]
        try:
            Hi = np.linalg.inv(Hk)
        except np.linalg.LinAlgError:
            return est, cov_c
        V = Hi + Hi.T
        pos = {j: i for i, j in enumerate(keep)}
        free_c = [j for j in range(k) if nt + j in pos]
        for a in free_c:
            for b in free_c:
                cov_c[a, b] = V[pos[nt + a], pos[nt + b]]
        if not model.family.exact or not est.vcov_method.startswith("Hessian"):
            return est, cov_c
        nlead = len(keep) - len(opt.beta)
        v_fit = cov_from_hessian(Hk, nlead)
        if v_fit is None:
            return est, cov_c
        dev = model.devfun
        se_z = fit_scale_statistics(dev, opt.beta, v_fit)
        _, vcov, _, _, _, _ = unscale(dev, opt.beta, v_fit, None, None)
        return dataclasses.replace(est, vcov=vcov, se_z=se_z,
                                   vcov_method=f"{est.vcov_method}, joint with the zero "
                                               "inflation"), cov_c

