"""Worksheet-shaped inputs: what xlwings hands a UDF declared with ndim=2 (lists of
rows, None for blank cells, floats for numbers, text as str)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def cell(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        return None if math.isnan(f) else f
    return str(v)


def column(values, header=None):
    rows = [[cell(v)] for v in values]
    return ([[header]] if header is not None else []) + rows


def columns(df: pd.DataFrame, names, header=True):
    rows = [[cell(v) for v in r] for r in df[list(names)].itertuples(index=False)]
    return ([list(names)] if header else []) + rows


def table(df: pd.DataFrame):
    return columns(df, list(df.columns), header=True)


def block_value(block, label, col=1):
    for r in block:
        if r and r[0] == label:
            return r[col]
    raise KeyError(label)


def block_row(block, label):
    for r in block:
        if r and r[0] == label:
            return r
    raise KeyError(label)


def workplace_ranges(df: pd.DataFrame) -> tuple:
    """The workplace-safety model's leading arguments in the range form, as the
    template's cells hold them: incidents, training, plant and month, LN(employees)."""
    return (column(df.incidents, "incidents"), column(df.training, "training"),
            columns(df, ["plant", "month"]), column(np.log(df.employees)))
