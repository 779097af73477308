"""Profile walks on workers: each parameter's walk is a task of engine.workers.run,
and every walk starts from the fit's own state, so the traces are the same bit for
bit in this process, on 2 local processes and on a 2-worker Dask LocalCluster."""
from __future__ import annotations

import numpy as np
import pytest

import xlglmm
from refs import fit, load_frame, manifest
from xlglmm.engine import workers as W
from xlglmm.engine.profile import profile


@pytest.fixture(scope="module")
def models():
    """The workplace GLMM (crossed, offset) and sleepstudy's REML LMM (profiled on its
    ML refit, its fixed effects by refits of a reduced model)."""
    crossed = fit(manifest()["safety_crossed"])[0]
    spec = manifest("models_negbin_lmm.json")["sleep_reml"]
    sleep = xlglmm.lmer(spec["formula"], load_frame(spec))
    return {"crossed": crossed, "sleep": sleep}


def same_traces(a, b):
    assert list(a.traces) == list(b.traces)
    for name, t in a.traces.items():
        u = b.traces[name]
        assert np.array_equal(t.values, u.values) and np.array_equal(t.zeta, u.zeta), name
        assert (t.at_lower, t.at_upper, t.note) == (u.at_lower, u.at_upper, u.note)


@pytest.mark.parametrize("name", ["crossed", "sleep"])
def test_two_local_processes_walk_the_same_traces(models, name, monkeypatch):
    here = profile(models[name].model, workers=1)
    assert here.where == "in process"
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)      # a pool even for these
    there = profile(models[name].model, workers=2)
    assert there.where == "2 local processes"
    same_traces(here, there)
    # and the intervals lme4 checks (test_profile*.py) are the in-process ones
    assert len(here.traces) >= 4


def test_a_local_cluster_walks_the_same_traces(models, local_cluster):
    res = models["crossed"]
    here = profile(res.model, workers=1)
    there = res.profile(client=local_cluster)
    assert there.where.startswith("Dask cluster")
    same_traces(here, there)


def test_a_budget_that_leaves_walks_undone_says_so(models, monkeypatch):
    """A budget spent before a walk starts: that parameter has no interval, and its
    note says the budget stopped the profile (nothing is dropped)."""
    res = models["crossed"]
    clock = iter(np.arange(0.0, 1e6, 1.0))             # each reading a second later
    monkeypatch.setattr(W.time, "time", lambda: float(next(clock)))
    prof = profile(res.model, budget_seconds=2.5)
    ci = prof.conf_int()
    assert list(ci.index) == list(prof.traces)
    undone = [n for n, t in prof.traces.items() if len(t.values) == 1]
    assert undone and all("time budget" in ci.loc[n, "note"] for n in undone)
    assert ci.loc[undone, ["lower", "upper"]].isna().all().all()
