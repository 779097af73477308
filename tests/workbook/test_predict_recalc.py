"""GLMM_PREDICT with an interval through ``xlglmm recalc`` (issue 14): a small
workbook's formula spills the header row and one row per new row, equal to the
worksheet function called directly."""
from __future__ import annotations

import numpy as np
import openpyxl

from xlglmm.sheet import cache, udfs
from xlglmm.workbook import recalc


def test_recalc_spills_the_interval_block(tmp_path):
    rng = np.random.default_rng(3)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["y", "x", "g"])
    rows = [[int(rng.poisson(2 + i % 3)), float(i % 4), "abcdef"[i % 6]] for i in range(30)]
    for r in rows:
        ws.append(r)
    ws["E1"], ws["F1"] = "x", "g"
    ws["E2"], ws["F2"] = 1.0, "a"
    ws["E3"], ws["F3"] = 3.0, "new"
    ws["H1"] = ('=GLMM_PREDICT(A1:A31, B1:B31, C1:C31, E1:E3, F1:F3, , , , , , , , , , , , '
                '"prediction", 0.1)')
    src, out = tmp_path / "p.xlsx", tmp_path / "o.xlsx"
    wb.save(src)
    recalc.recalc(src, out)
    got = openpyxl.load_workbook(out, data_only=True)["Data"]
    cache.clear()
    want = udfs.GLMM_PREDICT([["y"]] + [[r[0]] for r in rows], [["x"]] + [[r[1]] for r in rows],
                             [["g"]] + [[r[2]] for r in rows], [["x"], [1.0], [3.0]],
                             [["g"], ["a"], ["new"]], None, None, None, None, None, None,
                             None, None, None, None, None, "prediction", 0.1)
    assert want[0][2] == "lower 90% prediction interval"
    spilled = [[got.cell(row=1 + i, column=8 + j).value for j in range(4)] for i in range(3)]
    assert spilled[0] == want[0]
    assert np.allclose(np.array(spilled[1:], float), np.array(want[1:], float), rtol=1e-9)
