"""1000 parametric-bootstrap replicates of the workplace model (160 rows, plant and
month crossed, an offset) in this process, on 2 local processes and on a 2-worker
Dask LocalCluster: seconds each, and whether the three give the same replicates.

    python benchmarks/bootstrap_speed.py [nsim]

Run it on a quiet machine (``uptime``'s load under 1.5): the times are wall clock.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pandas as pd

import xlglmm

DATA = os.path.join(os.path.dirname(xlglmm.__file__), "data", "workplace_safety.csv")


def main(nsim: int = 1000):
    df = pd.read_csv(DATA, dtype={"plant": str, "month": str})
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", df, "poisson",
                       offset=np.log(df.employees))
    res.bootstrap(3, seed=0, workers=1)             # kernels loaded
    print(f"load average {os.getloadavg()[0]:.2f}; {nsim} replicates, seed 1")
    runs = {}
    for label, kw in [("in process", {"workers": 1}), ("2 local processes", {"workers": 2})]:
        t0 = time.perf_counter()
        runs[label] = res.bootstrap(nsim, seed=1, **kw)
        print(f"{label:>22}: {time.perf_counter() - t0:6.2f} s  ({runs[label].where})")
    from dask.distributed import Client, LocalCluster
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        started = time.perf_counter() - t0
        res.bootstrap(3, seed=0, client=client)      # the workers load the kernels
        t0 = time.perf_counter()
        runs["LocalCluster"] = res.bootstrap(nsim, seed=1, client=client)
        print(f"{'2-worker LocalCluster':>22}: {time.perf_counter() - t0:6.2f} s  "
              f"(cluster started in {started:.1f} s, not counted)")
    ref = runs["in process"].replicates.to_numpy()
    same = all(np.array_equal(ref, r.replicates.to_numpy()) for r in runs.values())
    print("identical replicates in all three:", same)
    print(runs["in process"].conf_int().round(4).to_string())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
