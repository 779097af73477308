"""GLMM_CONFINT through ``xlglmm recalc`` (issue 14): a workbook with profile and
bootstrap formulas, recalculated by the command, holds the Python API's intervals."""
from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
import pytest
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.table import Table

import xlglmm
from refs import PACKAGE_DATA, PRECISION
from template_checks import block_at
from xlglmm import cli
from xlglmm.sheet import cache

LEADING = "T[[#All],[incidents]], T[[#All],[training]], T[[#All],[plant]:[month]], " \
          "T[[#All],[log_employees]]"
FORMULAS = {"B2": f'=GLMM_CONFINT({LEADING}, , , , , , , "profile")',
            "B10": f'=GLMM_CONFINT({LEADING}, , , , , , , "bootstrap", 60, 3, 0.1)',
            "B18": f"=GLMM_CONFINT({LEADING})",
            "J2": "=INDEX(B2#, 5, 3)"}


@pytest.fixture(scope="module")
def safety():
    df = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    df["log_employees"] = np.log(df.employees)
    return df


def _workbook(path, df):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    cols = ["incidents", "training", "plant", "month", "log_employees"]
    ws.append(cols)
    for row in df[cols].itertuples(index=False):
        ws.append([v.item() if hasattr(v, "item") else v for v in row])
    ws.add_table(Table(displayName="T", ref=f"A1:E{len(df) + 1}"))
    m = wb.create_sheet("Model")
    for cell, formula in FORMULAS.items():
        m[cell] = formula
    wb.save(path)


def test_recalc_spills_the_intervals_of_the_python_api(tmp_path, safety):
    cache.clear()
    path = tmp_path / "ci.xlsx"
    _workbook(path, safety)
    assert cli.main(["recalc", str(path), "--quiet"]) == 0
    form = openpyxl.load_workbook(path)["Model"]
    values = openpyxl.load_workbook(path, data_only=True)["Model"]
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", safety,
                       family="poisson", offset=safety.log_employees.to_numpy())
    names = ["sd_(Intercept)|plant", "sd_(Intercept)|month", "(Intercept)", "training"]
    wants = {"B2": (res.conf_int(method="profile"), "profile", None),
             "B10": (res.bootstrap(60, seed=3).recommended(0.1), "bootstrap", 60),
             "B18": (res.conf_int(), "Wald", None)}
    for cell, (ci, method, replicates) in wants.items():
        f = form[cell].value
        assert isinstance(f, ArrayFormula) and f.text == FORMULAS[cell]
        block = block_at(values, f.ref)
        level = "90%" if cell == "B10" else "95%"
        assert block[0] == ["Parameter", "Estimate", f"CI low {level}", f"CI high {level}",
                            "Method", "Replicates", "Note"]
        assert [r[0] for r in block[1:]] == names
        for r in block[1:]:
            # the bootstrap names its interval per row: bootstrap-t, bootstrap basic
            assert r[4] == (ci.loc[r[0], "kind"] if method == "bootstrap" else method)
            if method == "bootstrap":     # every refit of this model converges
                assert r[5] == replicates
            if r[0] not in ci.index:      # Wald: no interval for an SD
                assert r[2] is None and r[3] is None and "no Wald interval" in r[6]
                continue
            # two fits of one model (the workbook's cells, the frame): their optimum
            # agrees to PRECISION's 1e-5 SE, the limits to that share of the width
            lo, hi = ci.loc[r[0], "lower"], ci.loc[r[0], "upper"]
            tol = PRECISION["estimate_in_se"] * (hi - lo)
            assert abs(r[2] - lo) <= tol and abs(r[3] - hi) <= tol, (cell, r, lo, hi)
    assert values["J2"].value == values["D6"].value       # INDEX reads the spilled block
