"""The polygamma functions the likelihood families need inside Numba kernels
(``math`` has only ``lgamma``): digamma psi(x), trigamma psi'(x) and tetragamma
psi''(x) for x > 0, by the recurrence psi^(m)(x) = psi^(m)(x + 1) - (-1)^m m! / x^(m+1)
up to x >= 10 and then the asymptotic (Bernoulli) series, accurate to ~1e-15 relative
there.  Tested against ``scipy.special.polygamma`` (tests/engine/test_new_families.py).
"""
from __future__ import annotations

import math

from numba import njit

_SHIFT = 10.0


@njit(cache=True, error_model="numpy")
def digamma(x):
    """psi(x) = d log Gamma(x) / dx, x > 0."""
    s = 0.0
    while x < _SHIFT:
        s -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)
    # log x - 1/(2x) - sum B_2k / (2k x^2k)
    series = r * (1.0 / 12 - r * (1.0 / 120 - r * (1.0 / 252 - r * (1.0 / 240
                  - r * (1.0 / 132 - r * (691.0 / 32760 - r / 12.0))))))
    return s + math.log(x) - 0.5 / x - series


@njit(cache=True, error_model="numpy")
def trigamma(x):
    """psi'(x), x > 0."""
    s = 0.0
    while x < _SHIFT:
        s += 1.0 / (x * x)
        x += 1.0
    r = 1.0 / (x * x)
    # 1/x + 1/(2x^2) + sum B_2k / x^(2k+1)
    series = (1.0 / 6 - r * (1.0 / 30 - r * (1.0 / 42 - r * (1.0 / 30 - r * (5.0 / 66
              - r * (691.0 / 2730 - r * 7.0 / 6))))))
    return s + 1.0 / x + 0.5 * r + series * r / x


@njit(cache=True, error_model="numpy")
def tetragamma(x):
    """psi''(x), x > 0."""
    s = 0.0
    while x < _SHIFT:
        s -= 2.0 / (x * x * x)
        x += 1.0
    r = 1.0 / (x * x)
    # -1/x^2 - 1/x^3 - sum (2k+1) B_2k / x^(2k+2)
    series = (0.5 - r * (1.0 / 6 - r * (1.0 / 6 - r * (0.3 - r * (5.0 / 6
              - r * (691.0 / 210 - r * 35.0 / 2))))))
    return s - r - r / x - series * r * r
