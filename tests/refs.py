"""Loading lme4 reference fits (tests/data) and fitting the same model with xlglmm."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

import xlglmm

DATA = Path(__file__).parent / "data"
#: the data sets the package ships (workplace_safety, grouseticks, cbpp, sleepstudy): their
#: only copy is the package's own xlglmm/data, which tests read through this one name
PACKAGE_DATA = Path(xlglmm.__file__).resolve().parent / "data"


# What the engine guarantees across machines (the tolerances of tests that compare
# results computed on different machines, e.g. the templates' stored values):
PRECISION = {
    "estimate_in_se": 1e-5,     # |beta - beta'| / SE: the optimum is found to ~1e-8 SE
    "se_rel": 1e-5,             # SEs: central differences with steps of 1e-3 or 1% of
                                # an SE over noise of ~1e-12: ~1e-6 relative
    "loglik_abs": 1e-6,         # the maximum of a smooth function: noise squared
    "theta_abs": 1e-5,          # random-effect parameters (relative SDs); lmer's BOBYQA
                                # stops at ~1e-6
    "nb_theta_rel": 1e-4,       # the NB shape: the profile search (the fallback) stops
                                # at 1e-5 in log theta; the joint one closer
}


def data_file(name: str) -> Path:
    """A reference fit's data file: one of the package's data sets, else tests/data."""
    shipped = PACKAGE_DATA / name
    return shipped if shipped.is_file() else DATA / name


def natural(s: str):
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def load_frame(spec: dict) -> pd.DataFrame:
    df = pd.read_csv(data_file(spec["data"]))
    if "first_rows" in spec:
        df = df.iloc[:spec["first_rows"]].reset_index(drop=True)
    for col, n in spec.get("subset_first_levels", {}).items():
        keep = sorted(df[col].astype(str).unique())[:n]
        df = df[df[col].astype(str).isin(keep)].reset_index(drop=True)
    for col, expr in spec.get("derive", {}).items():
        df[col] = df.eval(expr)      # trusted test manifests only, never user text
    for col in spec.get("factors", []):
        values = df[col].astype(str)
        df[col] = pd.Categorical(values, categories=sorted(values.unique(), key=natural))
    return df


def manifest(name: str = "models.json") -> dict:
    return json.loads((DATA / name).read_text())


def expected(name: str, extra: bool = False) -> dict:
    folder = DATA / ("extra" if extra else "expected")
    return json.loads((folder / f"{name}.json").read_text())


def glmmtmb(name: str) -> dict:
    """glmmTMB's fit of a model (tests/data/glmmtmb: the exact Laplace's references)."""
    return json.loads((DATA / "glmmtmb" / f"{name}.json").read_text())


def assert_matches_glmmtmb(res, ref: dict, sd_abs: float = 0.0):
    """The issue-17 bar against a glmmTMB reference: logLik within 1e-3, the same
    parameter count, converged, the fixed effects (in glmmTMB's order) within 1% of its
    SE and their SEs within 2%, the first random-effect SD within 2% (or ``sd_abs``)."""
    import pytest
    assert res.llf == pytest.approx(ref["logLik"], abs=1e-3)
    assert res.npar == ref["df"] and res.converged
    se = np.array(ref["se"])
    b = np.array([ref["fixef"][k] for k in ref["fixef_names"]])
    assert list(res.fe_params.index) == ref["fixef_names"]
    assert np.all(np.abs(res.fe_params.to_numpy() - b) <= 0.01 * se)
    assert np.all(np.abs(res.fe_bse.to_numpy() / se - 1) <= 0.02)
    sd = ref["varcorr"][0]["sd"][0]
    assert float(res.varcorr.sdcor.iloc[0]) == pytest.approx(sd, rel=0.02, abs=sd_abs)


def fit(spec: dict, **over):
    """xlglmm's fit of a reference model: lme4's Laplace approximation (the
    references are lme4's) unless ``over`` says otherwise."""
    df = load_frame(spec)
    kw = {"family": spec["family"], "nAGQ": spec.get("nAGQ", 1),
          "laplace": spec.get("laplace", "lme4")}
    if spec.get("link"):
        kw["link"] = spec["link"]
    if spec.get("offset_log"):
        kw["offset"] = np.log(df[spec["offset_log"]].to_numpy(float))
    if spec.get("weights"):
        kw["weights"] = df[spec["weights"]].to_numpy(float)
    kw.update(over)
    return xlglmm.glmer(spec["formula"], df, **kw), df


def sds_by_group(rows) -> dict:
    out: dict = {}
    for r in rows:
        v2 = r["var2"]
        if v2 is None or v2 == "" or (isinstance(v2, float) and np.isnan(v2)):
            out.setdefault(str(r["grp"]).split(".")[0], []).append(float(r["sdcor"]))
    return {g: sorted(v) for g, v in out.items()}
