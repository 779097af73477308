"""Seeded synthetic data for the scaling series (issue: speed at every size).

Poisson with an exposure offset and two crossed random intercepts, and logistic with
a correlated random intercept and slope, generated exactly as the shared reference
generator does (../shared/reference/scripts/make_data.py), at any size.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def crossed_design(n: int, n1: int, n2: int, seed: int):
    """(generator, a, b, x1, x2, x3): two crossed factors' levels drawn uniformly at
    random (n1 and n2 of them) and three covariates, the generator left to draw the
    rest of a data set (the series' and the large crossed cases' common start)."""
    r = np.random.default_rng(seed)
    a = r.integers(0, n1, n)
    b = r.integers(0, n2, n)
    x1 = r.normal(size=n)
    x2 = r.uniform(-1, 1, n)
    x3 = r.integers(0, 2, n)
    return r, a, b, x1, x2, x3


def poisson_crossed(n: int, n1: int, n2: int, seed: int) -> pd.DataFrame:
    r, a, b, x1, x2, x3 = crossed_design(n, n1, n2, seed)
    expo = r.integers(10, 500, n)
    u = r.normal(0, 0.5, n1)
    v = r.normal(0, 0.3, n2)
    eta = -3 + 0.3 * x1 - 0.2 * x2 + 0.4 * x3 + u[a] + v[b] + np.log(expo)
    y = r.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x1": x1.round(6), "x2": x2.round(6), "x3": x3,
                         "exposure": expo, "g1": [f"a{i}" for i in a],
                         "g2": [f"b{i}" for i in b]})


def logistic_slope(n: int, ng: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    g = r.integers(0, ng, n)
    x = r.normal(size=n)
    z = r.integers(0, 2, n)
    L = np.linalg.cholesky(np.array([[0.8 ** 2, 0.3 * 0.8 * 0.4], [0.3 * 0.8 * 0.4, 0.4 ** 2]]))
    U = r.normal(size=(ng, 2)) @ L.T
    eta = -0.5 + 0.7 * x - 0.4 * z + U[g, 0] + U[g, 1] * x
    y = (r.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x.round(6), "z": z, "g": [f"g{i}" for i in g]})


# the series: name -> (kind, n, levels..., seed)
SERIES = {
    "pois_1e3": ("poisson", 1_000, 50, 20, 1),
    "pois_1e4": ("poisson", 10_000, 500, 50, 2),
    "pois_1e5": ("poisson", 100_000, 2_000, 100, 3),
    "pois_1e6": ("poisson", 1_000_000, 10_000, 200, 5),
    "bin_1e4": ("binomial", 10_000, 500, 4),
    "bin_1e5": ("binomial", 100_000, 5_000, 7),
    "bin_1e6": ("binomial", 1_000_000, 20_000, 8),
}


def make(name: str) -> pd.DataFrame:
    spec = SERIES[name]
    if spec[0] == "poisson":
        return poisson_crossed(*spec[1:])
    return logistic_slope(*spec[1:])


# ---- the shapes of issue 16 (speed against the best peer), seeded -------------------

def binomial_nested(n: int, n_outer: int, n_inner: int, n_fixed: int, seed: int) -> pd.DataFrame:
    """Logistic with many fixed effects and two nested random intercepts: ``inner``
    levels belong to one ``outer`` level each (coded uniquely, so ``(1|outer) +
    (1|inner)`` is the nested model); few rows per inner level, as in survey data."""
    r = np.random.default_rng(seed)
    inner_of_row = r.integers(0, n_inner, n)
    outer_of_inner = r.integers(0, n_outer, n_inner)
    X = r.normal(size=(n, n_fixed))
    X[:, n_fixed // 2:] = (X[:, n_fixed // 2:] > 0.3).astype(float)   # half are indicators
    beta = r.uniform(-0.5, 0.5, n_fixed)
    u = r.normal(0, 0.6, n_outer)
    v = r.normal(0, 0.8, n_inner)
    eta = -0.3 + X @ beta + u[outer_of_inner[inner_of_row]] + v[inner_of_row]
    y = (r.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    out = {"y": y}
    out.update({f"x{j + 1}": X[:, j].round(6) for j in range(n_fixed)})
    out["outer"] = [f"o{i}" for i in outer_of_inner[inner_of_row]]
    out["inner"] = [f"i{i}" for i in inner_of_row]
    return pd.DataFrame(out)


def count_crossed(n: int, n1: int, n2: int, family: str, seed: int) -> pd.DataFrame:
    """Counts with two crossed random intercepts, a four-level factor, three numeric
    covariates and an exposure (7 fixed effects with the intercept); ``family``
    "poisson" or "negbin" (NB2, theta 2)."""
    r = np.random.default_rng(seed)
    a = r.integers(0, n1, n)
    b = r.integers(0, n2, n)
    f = r.integers(0, 4, n)
    x1, x2, x3 = r.normal(size=n), r.uniform(-1, 1, n), r.integers(0, 2, n)
    expo = r.integers(1, 20, n)
    u, v = r.normal(0, 0.5, n1), r.normal(0, 0.3, n2)
    eta = (0.2 + np.array([0, 0.3, -0.2, 0.5])[f] + 0.3 * x1 - 0.4 * x2 + 0.25 * x3
           - 0.35 * x1 * x3 + u[a] + v[b] + np.log(expo))
    mu = np.exp(eta)
    y = r.poisson(mu) if family == "poisson" else r.negative_binomial(2.0, 2.0 / (2.0 + mu))
    return pd.DataFrame({"y": y, "f": [f"f{i}" for i in f], "x1": x1.round(6),
                         "x2": x2.round(6), "x3": x3, "exposure": expo,
                         "g1": [f"a{i}" for i in a], "g2": [f"b{i}" for i in b]})


def gamma_slope(n: int, ng: int, seed: int) -> pd.DataFrame:
    """Gamma (shape 4) with a log link, a correlated random intercept and slope, and
    8 fixed effects (intercept, x, a four-level factor, two covariates, x:z)."""
    r = np.random.default_rng(seed)
    g = r.integers(0, ng, n)
    x, z, w = r.normal(size=n), r.integers(0, 2, n), r.uniform(-1, 1, n)
    f = r.integers(0, 4, n)
    L = np.linalg.cholesky(np.array([[0.5 ** 2, 0.4 * 0.5 * 0.3], [0.4 * 0.5 * 0.3, 0.3 ** 2]]))
    U = r.normal(size=(ng, 2)) @ L.T
    eta = (1.0 + 0.4 * x + np.array([0, 0.2, -0.3, 0.1])[f] + 0.3 * z - 0.2 * w
           + 0.15 * x * z + U[g, 0] + U[g, 1] * x)
    y = r.gamma(4.0, np.exp(eta) / 4.0)
    return pd.DataFrame({"y": y.round(6), "x": x.round(6), "z": z, "w": w.round(6),
                         "f": [f"f{i}" for i in f], "g": [f"g{i}" for i in g]})


# name -> (generator, arguments); issue 16's table: ~2.2k rows binomial, ~600 the rest
PEER_SHAPES = {
    "bin_nested_16fe": (binomial_nested, (2_200, 160, 1_600, 15, 11)),
    "nb2_one_intercept": (count_crossed, (600, 40, 1, "negbin", 12)),
    "nb2_crossed_7fe": (count_crossed, (600, 40, 15, "negbin", 13)),
    "nb2_offset_interaction": (count_crossed, (600, 40, 1, "negbin", 14)),
    "gamma_slope_8fe": (gamma_slope, (600, 30, 15)),
    "pois_crossed_7fe": (count_crossed, (600, 40, 15, "poisson", 16)),
}


def make_peer(name: str) -> pd.DataFrame:
    generator, args = PEER_SHAPES[name]
    return generator(*args)


# ---- two large crossed factors (issue 16: customers x products, raters x items) -----

def gaussian_crossed(n: int, n1: int, n2: int, seed: int) -> pd.DataFrame:
    """A linear mixed model's data with two crossed random intercepts (levels drawn
    uniformly at random, so every level of one meets many of the other) and three
    covariates: y = 1 + 0.5 x1 - 0.3 x2 + 0.2 x3 + u[g1] + v[g2] + e."""
    r, a, b, x1, x2, x3 = crossed_design(n, n1, n2, seed)
    u = r.normal(0, 0.6, n1)
    v = r.normal(0, 0.4, n2)
    y = 1.0 + 0.5 * x1 - 0.3 * x2 + 0.2 * x3 + u[a] + v[b] + r.normal(0, 1.0, n)
    return pd.DataFrame({"y": y.round(6), "x1": x1.round(6), "x2": x2.round(6), "x3": x3,
                         "g1": [f"a{i}" for i in a], "g2": [f"b{i}" for i in b]})


# name -> (family, generator arguments); Poisson is ``poisson_crossed`` (an exposure
# offset and three covariates), Gaussian ``gaussian_crossed``
LARGE_CROSSED = {
    "pois_1e5_2000x2000": ("poisson", (100_000, 2_000, 2_000, 21)),
    "gauss_1e5_2000x2000": ("gaussian", (100_000, 2_000, 2_000, 22)),
    "pois_1e6_10000x5000": ("poisson", (1_000_000, 10_000, 5_000, 23)),
    "gauss_1e6_10000x5000": ("gaussian", (1_000_000, 10_000, 5_000, 24)),
    "pois_1e6_10000x200": ("poisson", SERIES["pois_1e6"][1:]),
}


def make_large_crossed(name: str) -> pd.DataFrame:
    family, args = LARGE_CROSSED[name]
    return (poisson_crossed if family == "poisson" else gaussian_crossed)(*args)
