"""The bootstrap on workers: the same seed gives the same replicates, bit for bit, in
this process, on 2 local processes and on a 2-worker Dask LocalCluster; progress
and the time budget work in every mode."""
from __future__ import annotations

import numpy as np
import pytest

from refs import fit, manifest
from xlglmm.engine import workers as W

MODELS = manifest()
NSIM = 20


@pytest.fixture(scope="module")
def crossed():
    """The workplace model: 160 rows, plant and month crossed, an offset."""
    return fit(MODELS["safety_crossed"])[0]


@pytest.fixture(scope="module")
def here(crossed):
    return crossed.bootstrap(NSIM, seed=21, workers=1)


@pytest.fixture(scope="module")
def client(local_cluster):
    return local_cluster


def test_the_fits_own_state_starts_every_refit(crossed, here):
    """Evaluating the model elsewhere (as a profile does) between two runs changes no
    replicate: each refit starts from the fit's estimates, never from what the
    model object last computed."""
    m = crossed.model
    m.deviance(crossed.theta * 3.0, crossed.fe_params.to_numpy() + 0.5)
    m.conditional_modes(crossed.theta * 0.1)
    again = crossed.bootstrap(NSIM, seed=21, workers=1)
    assert np.array_equal(again.replicates.to_numpy(), here.replicates.to_numpy())


def test_two_local_processes_give_the_same_replicates(crossed, here, monkeypatch):
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)      # a pool even for 20
    seen = []
    b = crossed.bootstrap(NSIM, seed=21, workers=2, progress=lambda s, n: seen.append(n))
    assert b.where == "2 local processes"
    assert np.array_equal(b.replicates.to_numpy(), here.replicates.to_numpy())
    assert (b.failed, b.singular) == (here.failed, here.singular)
    assert seen[-1] == NSIM and seen == sorted(seen)


def test_a_local_cluster_gives_the_same_replicates(crossed, here, client):
    seen = []
    b = crossed.bootstrap(NSIM, seed=21, client=client, progress=lambda s, n: seen.append(n))
    assert b.where.startswith("Dask cluster (2 threads)")
    assert np.array_equal(b.replicates.to_numpy(), here.replicates.to_numpy())
    assert b.conf_int().equals(here.conf_int())
    assert seen[-1] == NSIM


def test_the_budget_stops_a_distributed_run_with_the_replicates_done(crossed, client,
                                                                     monkeypatch):
    """A budget far below 100,000 replicates' time: the cluster and the local pool
    stop near it, say so, and return the replicates finished (the same numbers as
    those replicates in process)."""
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    for where in ({"client": client}, {"workers": 2}):
        b = crossed.bootstrap(100_000, seed=21, time_budget=1.0, **where)
        assert b.stopped_by_budget and 0 < len(b.replicates) < 100_000
        assert b.seconds < 10.0
    first = crossed.bootstrap(3, seed=21, workers=1)
    assert np.array_equal(b.replicates.to_numpy()[:3], first.replicates.to_numpy())


def test_the_fitted_model_pickles_and_its_copy_refits_alike(crossed):
    """What a spawned process or a Dask worker receives: the model with its kernels'
    wrappers (pickled as the kernels, by reference); its copy refits to the same bits."""
    import pickle
    copy = pickle.loads(pickle.dumps(crossed.model))
    y = crossed.design.y[::-1].copy()
    a, b = crossed.model.refit(y, se_method="rx"), copy.refit(y, se_method="rx")
    assert np.array_equal(a.theta, b.theta)
    assert np.array_equal(a.fe_params.to_numpy(), b.fe_params.to_numpy())
