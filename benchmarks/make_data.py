"""Seeded synthetic data for the scaling series (issue: speed at every size).

Poisson with an exposure offset and two crossed random intercepts, and logistic with
a correlated random intercept and slope, generated exactly as the shared reference
generator does (../shared/reference/scripts/make_data.py), at any size.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def poisson_crossed(n: int, n1: int, n2: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    a = r.integers(0, n1, n)
    b = r.integers(0, n2, n)
    x1 = r.normal(size=n)
    x2 = r.uniform(-1, 1, n)
    x3 = r.integers(0, 2, n)
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
