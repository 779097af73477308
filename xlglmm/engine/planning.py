"""A study that does not exist yet, written out: its design as a table
(``design_table``) and the model its data would come from (``planned_model``:
formula, family, fixed effects, random-effect SDs and correlations), which
``power.power`` simulates from as it does from a fitted model.

``design_table(levels={"plant": 20, "month": 8}, split={"training": ("plant", 0.5)})``
is 160 rows, every plant with every month (factors named in ``levels`` are
crossed), and a 0/1 column ``training`` that is 1 for every other plant (the
share 0.5 spread evenly over the plants: plants 2, 4, ...).  ``nested={"chick":
("brood", 3)}`` gives every brood 3 chicks of its own; ``rows=`` repeats every
combination.  The table is a plain ``pandas.DataFrame``: add columns to it
(an exposure, a covariate) before planning the model.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from .bootstrap import draw_response
from .design import build_design, check_response
from .family import make_family
from .formula import parse_formula
from .lmm import GAUSSIAN, LinearMixedModel
from .model import GeneralizedLinearMixedModel, ModelError, check_model
from .power import MAX_ROWS, PowerError, Truth, whole_number
from .profile import theta_of_sdcor

def _count(value, what: str) -> int:
    return whole_number(value, what, "a design needs at least one level of every factor")


def _labels(name: str, n: int) -> list:
    width = len(str(n))
    return [f"{name}{i + 1:0{width}d}" for i in range(n)]


def spread(n: int, share: float) -> np.ndarray:
    """0/1 for n units, floor(n * share) of them 1, spread evenly (unit i is 1 when
    floor((i + 1) share) > floor(i share): share 0.5 gives 0, 1, 0, 1, ..., so 3
    of 7)."""
    i = np.arange(n)
    return (np.floor((i + 1) * share + 1e-9) > np.floor(i * share + 1e-9)).astype(float)


def design_table(levels: dict, *, nested: dict | None = None, rows: int = 1,
                 split: dict | None = None) -> pd.DataFrame:
    """The rows of a planned study (see the module's notes): ``levels`` {factor:
    number of levels}, crossed; ``nested`` {factor: (parent factor, levels per
    parent level)}; ``rows`` repeats of every combination; ``split`` {column:
    (factor, share)}, a 0/1 column set for that share of the factor's levels."""
    if not isinstance(levels, dict) or not levels:
        raise PowerError("levels must name at least one factor and its number of levels, "
                         "e.g. {'plant': 20, 'month': 8}")
    counts = {str(g): _count(n, f"levels of '{g}'") for g, n in levels.items()}
    nested = dict(nested or {})
    r = _count(rows, "rows")
    size = math.prod(counts.values()) * r
    for g, spec in nested.items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise PowerError(f"nested['{g}'] must be (parent factor, levels per parent "
                             "level)")
        size *= _count(spec[1], f"levels of '{g}' per level of '{spec[0]}'")
    if size > MAX_ROWS:
        raise PowerError(f"this design has {size:,} rows; the most is {MAX_ROWS:,}")
    grid = pd.MultiIndex.from_product([_labels(g, n) for g, n in counts.items()],
                                      names=list(counts)).to_frame(index=False)
    for g, (parent, k) in nested.items():
        g = str(g)
        if parent not in grid.columns:
            raise PowerError(f"nested['{g}']: '{parent}' is not a factor of the design "
                             f"({', '.join(grid.columns)})")
        if g in grid.columns:
            raise PowerError(f"'{g}' is named twice")
        k = int(k)
        grid = grid.loc[grid.index.repeat(k)].reset_index(drop=True)
        within = np.tile(np.arange(k), len(grid) // k)
        grid[g] = [f"{p}.{g}{j + 1}" for p, j in zip(grid[parent], within)]
    if r > 1:
        grid = grid.loc[grid.index.repeat(r)].reset_index(drop=True)
    for col, spec in (split or {}).items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise PowerError(f"split['{col}'] must be (factor, share of its levels)")
        factor, share = spec
        if factor not in grid.columns:
            raise PowerError(f"split['{col}']: '{factor}' is not a factor of the design "
                             f"({', '.join(grid.columns)})")
        if isinstance(share, bool) or not isinstance(share, (int, float)) \
                or not 0.0 <= share <= 1.0:
            raise PowerError(f"split['{col}']: the share must be a number from 0 to 1")
        if col in grid.columns:
            raise PowerError(f"'{col}' is named twice")
        lv, codes = np.unique(grid[factor].to_numpy(), return_inverse=True)
        grid[col] = spread(len(lv), float(share))[codes]
    return grid


@dataclasses.dataclass
class PlannedModel(Truth):
    """A model written out: a ``power.Truth`` -- its model (unfitted: the plan's
    design, with a placeholder response, and family) and the parameters data are
    drawn at (``beta`` in X's order, ``theta`` the random effects' relative
    covariance factors, ``sigma`` the residual SD of an LMM or the dispersion's
    root) -- with the formula and table it was written from."""
    formula: str = ""
    data: pd.DataFrame | None = None

    def simulate(self, seed: int = 1) -> pd.DataFrame:
        """The plan's table with one response drawn at its parameters (the response
        column; for the binomial with trials, the proportion)."""
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        y = draw_response(self.model, self.beta, self.theta, self.sigma, rng)
        out = self.data.copy()
        out.loc[out.index[self.design.kept_rows], self.design.response_name] = y
        return out

    def summary(self) -> str:
        d = self.design
        fe = ", ".join(f"{n} = {v:.4g}" for n, v in zip(d.x_names, self.beta))
        return "\n".join([f"Planned model: {self.formula} ({self.model.family.name}); "
                          f"{d.nobs} rows, "
                          + ", ".join(f"{n} levels of {g}" for g, n in d.ngroups.items()),
                          f"  fixed effects: {fe}"])

    def __repr__(self) -> str:
        return self.summary()


def planned_model(formula: str, data, family="poisson", *, fixed: dict, sd: dict,
                  cor: dict | None = None, sigma=None, link=None, offset=None,
                  weights=None) -> PlannedModel:
    """A model written out for ``power`` (see the module's notes).

    formula : lme4 syntax; its response column need not exist in ``data``
    family : a glmer family ("poisson", "binomial", ... or a :class:`Family`
        holding its parameter: ``NegativeBinomial2(2.0)``), or "gaussian" for a
        linear mixed model (then ``sigma``, the residual SD, is required)
    fixed : {column of X: value on the link scale}, every column named
        (``(Intercept)``, ``training``, a factor's ``kB``...)
    sd : {random-effects term (its grouping factor): SD, or a list of SDs for a
        term of several effects in the formula's order}
    cor : {term: correlation (two effects) or correlation matrix}
    """
    if not isinstance(formula, str):
        raise PowerError("formula must be text, e.g. 'y ~ treated + (1|site)'")
    if not isinstance(data, pd.DataFrame):
        try:
            data = pd.DataFrame(data)
        except Exception:
            raise PowerError("data must be a table (pandas.DataFrame or dict of columns)") \
                from None
    try:
        fam = make_family(family, link)
    except (ValueError, TypeError) as e:
        raise PowerError(str(e)) from None
    lmm = fam.is_gaussian       # a linear mixed model
    if lmm and fam.link != GAUSSIAN.link:
        raise PowerError("a normal (Gaussian) response is a linear mixed model, identity "
                         "link; a Gaussian model with another link is not available")
    try:
        f = parse_formula(formula)
    except ValueError as e:
        raise PowerError(str(e)) from None
    # a plain response may be absent (a placeholder stands in); cbind's columns not
    response = f.response.name[0] if f.response.name is not None else None
    design = _design(formula, data, fam, response, offset, weights, lmm)
    beta = _fixed(fixed, design.x_names)
    theta_sd, scale = _theta(design, sd, cor, sigma, lmm, fam)
    if fam is not None and fam.likelihood_dispersion:
        # the exact Laplace's Gamma: the dispersion is a parameter of the likelihood,
        # the one the responses are drawn with (sigma^2), held by the refits
        if fam.dispersion is None:
            fam = dataclasses.replace(fam, dispersion=scale ** 2)
        elif not math.isclose(fam.dispersion, scale ** 2, rel_tol=1e-9):
            raise PowerError(f"the family's dispersion ({fam.dispersion:g}) is not sigma^2 "
                             f"({scale ** 2:g}), the one responses are drawn with: give "
                             "one of them")
    try:
        if lmm:
            check_model(design, GAUSSIAN, 1)
            model = LinearMixedModel(design, True)
        else:
            check_model(design, fam, 1)
            model = GeneralizedLinearMixedModel(design, fam, 1, se_method="rx")
    except ModelError as e:
        raise PowerError(str(e)) from None
    return PlannedModel(model, beta, theta_sd, scale, formula, data)


def _design(formula, data, fam, response, offset, weights, lmm):
    """The plan's design, with a placeholder response when the table has none."""
    family = GAUSSIAN if lmm else fam
    table = data
    if response and response not in data.columns:
        table = data.copy()
        for placeholder in (1.0, 0.5, 0.0):
            try:
                check_response(family, np.full(1, placeholder), np.ones(1), np.zeros(1, int))
                break
            except Exception:
                continue
        table[response] = placeholder
    try:
        return build_design(formula, table, family, offset=offset, weights=weights)
    except (ModelError, ValueError) as e:
        raise PowerError(str(e)) from None


def _fixed(fixed, names) -> np.ndarray:
    if not isinstance(fixed, dict):
        raise PowerError("fixed must be a dict {column: value}, every column of X named: "
                         + ", ".join(names))
    unknown = [k for k in fixed if k not in names]
    missing = [n for n in names if n not in fixed]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("not columns of the model: " + ", ".join(map(str, unknown)))
        if missing:
            parts.append("missing: " + ", ".join(missing))
        raise PowerError(f"fixed must give every column of X ({', '.join(names)}); "
                         + "; ".join(parts))
    out = []
    for n in names:
        v = fixed[n]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) \
                or not math.isfinite(v):
            raise PowerError(f"fixed['{n}'] must be a finite number, not {v!r}")
        out.append(float(v))
    return np.array(out)


def _theta(design, sd, cor, sigma, lmm, fam):
    """(theta, sigma) of the SDs and correlations given per term."""
    terms = design.re_terms
    names = [t.name for t in terms]
    if not isinstance(sd, dict):
        raise PowerError("sd must be a dict {grouping factor: SD}: " + ", ".join(names))
    unknown = [k for k in sd if k not in names]
    missing = [n for n in names if n not in sd]
    if unknown or missing:
        raise PowerError(f"sd must give every random-effects term ({', '.join(names)}); "
                         + "; ".join(p for p in [
                             "unknown: " + ", ".join(map(str, unknown)) if unknown else "",
                             "missing: " + ", ".join(missing) if missing else ""] if p))
    cor = dict(cor or {})
    bad = [k for k in cor if k not in names]
    if bad:
        raise PowerError(f"cor names {', '.join(map(str, bad))}, not a term of the model "
                         f"({', '.join(names)})")
    if lmm or (fam is not None and fam.has_dispersion):
        what = "the residual SD" if lmm else "the dispersion's square root"
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) \
                or not (math.isfinite(sigma) and sigma > 0):
            raise PowerError(f"sigma ({what}) must be a positive number")
        scale = float(sigma)
    else:
        if sigma is not None:
            raise PowerError("sigma is for a linear mixed model or a family with a "
                             "dispersion; this family has none")
        scale = 1.0
    sdcor = []
    for t in terms:
        sds = np.atleast_1d(np.asarray(sd[t.name], dtype=object))
        if len(sds) != t.k:
            raise PowerError(f"sd['{t.name}'] needs {t.k} SDs ({', '.join(t.colnames)}), "
                             f"not {len(sds)}")
        vals = []
        for c, v in zip(t.colnames, sds):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) \
                    or not math.isfinite(v) or v < 0:
                raise PowerError(f"sd['{t.name}'] ({c}) must be a number >= 0, not {v!r} "
                                 "(an SD cannot be negative)")
            vals.append(float(v))
        R = _correlations(t, cor.get(t.name))
        for j in range(t.k):
            for i in range(j, t.k):
                sdcor.append(vals[i] if i == j else R[i, j])
    theta = theta_of_sdcor(terms, np.array(sdcor), scale if lmm else 1.0)
    if theta is None:
        raise PowerError("the correlations are impossible together (their matrix is not "
                         "positive semi-definite)")
    return theta, scale


def _correlations(term, value) -> np.ndarray:
    k = term.k
    if value is None:
        return np.eye(k)
    if k == 1:
        raise PowerError(f"cor['{term.name}']: a term of one effect has no correlation")
    R = np.asarray(value, dtype=float) if not np.isscalar(value) else None
    if R is None:
        if k != 2:
            raise PowerError(f"cor['{term.name}'] needs a {k} x {k} correlation matrix")
        R = np.array([[1.0, float(value)], [float(value), 1.0]])
    if R.shape != (k, k) or not np.all(np.isfinite(R)) or not np.allclose(R, R.T) \
            or not np.allclose(np.diag(R), 1.0) or np.any(np.abs(R) > 1.0):
        raise PowerError(f"cor['{term.name}'] must be a correlation from -1 to 1 (or a "
                         f"symmetric {k} x {k} matrix of them with 1 on the diagonal)")
    return R
