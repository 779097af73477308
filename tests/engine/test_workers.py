"""engine/workers.run: results in index order whatever runs them, the shared state
sent once per process, the in-process fallbacks, progress and the time budget."""
from __future__ import annotations

import multiprocessing
import operator
import os
import pickle
import sys
import threading
import time

import pytest

from xlglmm.engine import workers as W


def scaled_with_pid(shared, i):
    """(shared * i, the process that computed it)."""
    return shared * i, os.getpid()


def sleepy(shared, i):
    time.sleep(shared)
    return i


class CountsPickling:
    """Counts how often it is pickled (each copy sent to a process)."""
    pickled = 0

    def __reduce__(self):
        CountsPickling.pickled += 1
        return (CountsPickling, ())


def test_chunks_cover_the_indices_in_order():
    for n, k in [(10, 3), (3, 8), (1, 1), (7, 7)]:
        parts = W.chunks(list(range(n)), k)
        assert [i for p in parts for i in p] == list(range(n))
        assert len(parts) == min(n, k) and all(parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_results_come_in_the_order_of_the_indices(monkeypatch):
    """In process, and on 2 processes (a pool forced: the threshold set to 0), the
    same results in the order asked for, whatever order the indices have."""
    indices = [7, 3, 11, 0, 5, 2, 9, 1]
    here = W.run(scaled_with_pid, 3, indices, workers=1)
    assert here.where == "in process" and not here.stopped_by_budget
    assert [r for r, _ in here.results] == [3 * i for i in indices]
    assert here.indices == indices
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    pool = W.run(scaled_with_pid, 3, indices, workers=2)
    assert pool.where == "2 local processes"
    assert [r for r, _ in pool.results] == [3 * i for i in indices]
    assert len({p for _, p in pool.results} - {os.getpid()}) >= 1


def test_small_work_stays_in_process():
    out = W.run(scaled_with_pid, 2, range(50), workers=2)
    assert out.where == "in process" and {p for _, p in out.results} == {os.getpid()}


def test_without_fork_and_inside_another_program_the_tasks_run_here(monkeypatch):
    """Excel's embedded Python on Windows: no fork, and sys.executable is Excel,
    which spawn would start: the tasks run in this process, with a note."""
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    monkeypatch.setattr(W.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    monkeypatch.setattr(sys, "executable", r"C:\Program Files\Microsoft Office\EXCEL.EXE")
    assert "EXCEL.EXE" in W.why_no_processes()
    out = W.run(operator.mul, 2, range(6), workers=2)
    assert out.results == [0, 2, 4, 6, 8, 10] and out.where == "in process"
    assert "EXCEL.EXE" in out.notes[0]


def test_shared_state_that_does_not_pickle_falls_back_under_spawn(monkeypatch):
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    monkeypatch.setattr(W.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    lock = threading.Lock()             # does not pickle
    out = W.run(operator.is_, lock, range(4), workers=2)
    assert out.results == [False] * 4 and out.where == "in process"
    assert "does not pickle" in out.notes[0]


def test_the_shared_state_is_sent_once_per_process_not_per_task(monkeypatch):
    """Under spawn (where the processes cannot inherit it) the state is pickled once
    per process: 2, however many tasks."""
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    monkeypatch.setattr(W.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    CountsPickling.pickled = 0
    out = W.run(operator.is_not, CountsPickling(), range(40), workers=2)
    assert out.where == "2 local processes" and out.results == [True] * 40
    # (one more: the check that it pickles, before the pool starts)
    assert CountsPickling.pickled == 3


def test_progress_counts_to_the_total(monkeypatch):
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    for workers in (1, 2):
        seen = []
        W.run(operator.mul, 1, range(30), workers=workers,
              progress=lambda done, total: seen.append((done, total)))
        assert seen[-1] == (30, 30) and seen == sorted(seen)


def test_the_budget_returns_what_finished(monkeypatch):
    """Tasks of 50 ms under a 0.3 s budget: about 6 in process, 12 on 2 processes;
    the run stops near the budget with those results, in order."""
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    for workers in (1, 2):
        t0 = time.perf_counter()
        out = W.run(sleepy, 0.05, range(1000), workers=workers, time_budget=0.3)
        assert time.perf_counter() - t0 < 3.0
        assert out.stopped_by_budget and 1 <= len(out.results) < 1000
        assert out.results == out.indices and out.indices == sorted(out.indices)


def test_what_run_refuses():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(W.WorkersError, match="workers"):
            W.run(operator.mul, 1, [1], workers=bad)
    for bad in (0, -2, float("nan"), float("inf"), "1"):
        with pytest.raises(W.WorkersError, match="time_budget"):
            W.run(operator.mul, 1, [1], time_budget=bad)
    with pytest.raises(W.WorkersError, match="indices"):
        W.run(operator.mul, 1, [1, 2.0])
    with pytest.raises(W.WorkersError, match="dask.distributed.Client"):
        W.run(operator.mul, 1, [1], client="tcp://localhost:8786")
    with pytest.raises(W.WorkersError, match="progress"):
        W.run(operator.mul, 1, [1], progress=3)
    assert W.run(operator.mul, 1, []).results == []
    assert pickle.loads(pickle.dumps(W.Outcome([1], [2]))) == W.Outcome([1], [2])


def run_where(_):
    """In a pool's worker: where W.run puts its tasks (module level: it pickles)."""
    out = W.run(operator.mul, 3, range(4), workers=2)
    return out.where, out.results, out.notes


def test_a_worker_of_another_pool_runs_the_tasks_itself(monkeypatch):
    """A daemonic process (a multiprocessing.Pool's worker, e.g. a study that runs
    one bootstrap per process) may not have children: the tasks run there, with a
    note, instead of failing."""
    monkeypatch.setattr(W, "POOL_WORTH_SECONDS", 0.0)
    with multiprocessing.get_context("fork").Pool(1) as outer:
        where, results, notes = outer.map(run_where, [0])[0]
    assert where == "in process" and results == [0, 3, 6, 9]
    assert "worker of a pool" in notes[0]


def test_terminal_progress_keeps_one_line_and_only_on_a_terminal(monkeypatch):
    import io
    monkeypatch.delenv("XLGLMM_VERBOSE", raising=False)
    assert W.terminal_progress("bootstrap", io.StringIO()) is None     # not a terminal
    monkeypatch.setenv("XLGLMM_VERBOSE", "1")
    out = io.StringIO()
    report = W.terminal_progress("bootstrap", out)
    for done in range(1, 6):
        report(done, 5)
    text = out.getvalue()
    # the first update and the last (the others within half a second are skipped)
    assert text.startswith("\rxlglmm: bootstrap 1/5 (") and text.endswith("s)\n")
    assert text.count("\n") == 1 and "5/5" in text
