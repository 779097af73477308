"""Fixtures the worksheet-function tests share: the workplace-safety model as the
template's cells give it, its fit by the Python API, and an empty cache around a test
that counts fits."""
from __future__ import annotations

import pandas as pd
import pytest

import xlglmm
from refs import PACKAGE_DATA
from sheetdata import workplace_ranges
from xlglmm.sheet import cache

WORKPLACE_FORMULA = "incidents ~ training + (1|plant) + (1|month) + offset(log(employees))"


@pytest.fixture
def empty_cache():
    """The cache empty before the test and after it."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def workplace():
    """(the data, the fit's leading arguments in the range form)."""
    df = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    return df, workplace_ranges(df)


@pytest.fixture(scope="module")
def workplace_fit(workplace):
    return xlglmm.glmer(WORKPLACE_FORMULA, workplace[0], family="poisson")
