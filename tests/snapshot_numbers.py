"""Every number the product computes, in one JSON file: the proof that a refactoring
changed no behaviour.

    python tests/snapshot_numbers.py --out before.json      # on the old code
    python tests/snapshot_numbers.py --compare before.json  # on the new code

It records (1) every cell of every template after ``xlglmm recalc`` (all sheets,
values as stored), and (2) the estimates, standard errors, theta, log-likelihood,
random effects and fitted values of every lme4 reference model in
``tests/data/models*.json`` (GLMMs through ``xlglmm.glmer``, LMMs through
``xlglmm.lmer``).  ``--compare`` reports each number that differs by more than
``--rtol`` relative (default 1e-10) and how many are bit-identical; exit 1 when any
differs beyond the tolerance.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # refs, the reference loader


def template_cells() -> dict:
    import openpyxl
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for book in sorted((ROOT / "workbooks").glob("*.xlsx")):
            copy = Path(tmp) / book.name
            shutil.copy(book, copy)
            subprocess.run([sys.executable, "-m", "xlglmm", "recalc", "-q", str(copy)],
                           check=True)
            wb = openpyxl.load_workbook(copy, data_only=True)
            for ws in wb.worksheets:
                for row in ws.iter_rows():
                    for c in row:
                        if c.value is not None:
                            out[f"{book.stem}!{ws.title}!{c.coordinate}"] = c.value
    return out


def reference_fits() -> dict:
    import refs
    import xlglmm
    out = {}
    for name in ("models.json", "models_negbin_lmm.json"):
        path = refs.DATA / name
        if not path.is_file():
            continue
        spec_all = json.loads(path.read_text())
        models = spec_all["models"] if isinstance(spec_all, dict) and "models" in spec_all \
            else spec_all
        for key, spec in (models.items() if isinstance(models, dict)
                          else ((m["name"], m) for m in models)):
            if spec.get("family") in ("gaussian", "lmm") or spec.get("lmm"):
                df = refs.load_frame(spec)
                res = xlglmm.lmer(spec["formula"], df, REML=spec.get("REML", True))
            else:
                res, _ = refs.fit(spec)
            rec = {
                "beta": res.fe_params.tolist(), "se": res.fe_bse.tolist(),
                "theta": res.theta.tolist(), "llf": res.llf, "sigma": res.sigma,
                "nb_theta": res.nb_theta, "fitted": res.fittedvalues.tolist(),
                "ranef": [np.asarray(v).ravel().tolist()
                          for v in res.random_effects.values()],
                "ranef_sd": [np.asarray(v).ravel().tolist()
                             for v in res.random_effects_sd.values()],
                "messages": res.messages,
            }
            out[f"{name}:{key}"] = rec
    return out


def flatten(prefix, x, out):
    if isinstance(x, dict):
        for k, v in x.items():
            flatten(f"{prefix}/{k}", v, out)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            flatten(f"{prefix}[{i}]", v, out)
    else:
        out[prefix] = x


def compare(old: dict, new: dict, rtol: float) -> int:
    a, b = {}, {}
    flatten("", old, a)
    flatten("", new, b)
    bad = []
    same = close = 0
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k, "<missing>"), b.get(k, "<missing>")
        if x == y or (isinstance(x, float) and isinstance(y, float)
                      and math.isnan(x) and math.isnan(y)):
            same += 1
            continue
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) \
                and not isinstance(x, bool):
            if abs(x - y) <= rtol * max(abs(x), abs(y)):
                close += 1
                continue
        bad.append((k, x, y))
    for k, x, y in bad[:50]:
        print(f"DIFF {k}: {x!r} -> {y!r}")
    print(f"{same} identical, {close} within rtol {rtol:g}, {len(bad)} different")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--compare")
    ap.add_argument("--rtol", type=float, default=1e-10)
    a = ap.parse_args(argv)
    snap = {"templates": template_cells(), "references": reference_fits()}
    snap = json.loads(json.dumps(snap, default=str))
    if a.out:
        Path(a.out).write_text(json.dumps(snap, indent=0, sort_keys=True))
    if a.compare:
        return compare(json.loads(Path(a.compare).read_text()), snap, a.rtol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
