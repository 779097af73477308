"""Independent tasks on the local cores or a Dask cluster: the one place that starts
processes or talks to a ``dask.distributed.Client``.

``run(task, shared, indices)`` computes ``task(shared, i)`` for every index and
returns the results in the order of ``indices``.  ``shared`` is what every task
reads (a fitted model, say); it reaches each worker once, never once per task,
and the indices travel in chunks.  ``task`` must be a module-level function (it
pickles by reference); ``shared`` must pickle when it leaves this process.

Where the tasks run:

* ``client`` given (a ``dask.distributed.Client``): ``shared`` is scattered to every
  worker once (``client.scatter(..., broadcast=True)``) and the chunks are
  submitted to the cluster.  dask is imported only then (the ``dask`` extra).
* otherwise the local cores, through a pool of processes (``concurrent.futures``)
  that inherit ``shared`` (fork) or receive it once each, through the pool's
  initializer (spawn, where fork does not exist).  The first task runs here, in
  this process, and times the work; the rest stays here too when
  ``workers`` is 1 or the process may use one core only, when the estimated work
  left is under ``POOL_WORTH_SECONDS`` (starting processes would cost more than it
  saves), or when no process can be started safely: this interpreter is embedded
  in another program (Excel's Python on Windows: no fork, and ``sys.executable`` is
  the program itself, not a Python), ``task`` or ``shared`` does not pickle, or
  the pool fails to start.  ``Outcome.where`` says where the tasks ran and
  ``Outcome.notes`` why not in processes when more than one core was asked for.

A time budget stops the run between tasks: every chunk compares the wall clock with
the run's deadline before each task (so the machines of a cluster should agree on
the time), and stops there; the results finished by then are returned, with
``Outcome.stopped_by_budget`` set.  ``progress(done, total)`` is called as tasks
finish (for each chunk that returns, when it ran elsewhere).

A task's result must not depend on which process computes it or which tasks that
process ran before (the bootstrap restores its starting state for every
replicate): then any partition of the indices gives the same numbers.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: below this many seconds of estimated work left, a pool of processes (~0.1 s to
#: fork two, a second or more to spawn them) is not worth starting
POOL_WORTH_SECONDS = 1.0
#: chunks per worker: small enough to balance the load and to report progress,
#: large enough that sending them costs nothing next to their work
CHUNKS_PER_WORKER = 4


class WorkersError(ValueError):
    """The arguments of a run are not usable (says which and why)."""


@dataclass
class Outcome:
    """What a run finished: ``results[k]`` is ``task(shared, indices[k])``; the
    indices are those asked for, in their order, less any the time budget left
    undone (``stopped_by_budget``).  ``where``: where the tasks ran ("in process",
    "2 local processes", "Dask cluster (4 threads)"); ``notes``: why not in
    processes, when they were asked for and could not be used."""
    indices: list
    results: list
    stopped_by_budget: bool = False
    where: str = "in process"
    notes: list = field(default_factory=list)


def local_cores() -> int:
    """The cores this process may use (its CPU affinity, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # (macOS, Windows)
        return os.cpu_count() or 1


def _start_method() -> str:
    """fork on Linux (the children inherit the imported package and the compiled
    kernels, and start in milliseconds), else spawn: macOS offers fork too, but a
    forked child of a process that has used the system's frameworks (xlwings' Excel
    link does) can crash, which is why Python stopped defaulting to it there."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def why_no_processes() -> str | None:
    """None when a pool of processes can be started here, else the reason: a
    daemonic process (a worker of another pool) may not have children, and spawn
    starts ``sys.executable``, which inside a program embedding Python (Excel) is
    that program."""
    if multiprocessing.current_process().daemon:
        return "this process is itself a worker of a pool (it may not start processes)"
    if _start_method() == "fork":
        return None
    exe = Path(sys.executable or "")
    if exe.name.lower().startswith("python"):
        return None
    return f"this Python runs inside {exe.name or 'another program'}"


def terminal_progress(what: str, stream=None):
    """A ``progress(done, total)`` for ``run`` that keeps one line on an interactive
    terminal (or with XLGLMM_VERBOSE=1) up to date -- "xlglmm: bootstrap 350/1000
    (1.2 s)", at most twice a second, with a newline when done; None elsewhere (a
    notebook, a worksheet, a log)."""
    stream = sys.stderr if stream is None else stream
    if not (os.environ.get("XLGLMM_VERBOSE") == "1"
            or bool(getattr(stream, "isatty", lambda: False)())):
        return None
    t0 = time.perf_counter()
    shown = [-1.0]

    def report(done: int, total: int):
        now = time.perf_counter() - t0
        if done < total and now - shown[0] < 0.5:
            return
        shown[0] = now
        end = "\n" if done >= total else ""
        print(f"\rxlglmm: {what} {done:,}/{total:,} ({now:.1f} s)", end=end, file=stream,
              flush=True)
    return report


def chunks(indices: list, n_chunks: int) -> list:
    """``indices`` cut into at most ``n_chunks`` consecutive pieces of nearly equal
    length, none empty."""
    n_chunks = max(1, min(n_chunks, len(indices)))
    size, extra = divmod(len(indices), n_chunks)
    out, start = [], 0
    for c in range(n_chunks):
        end = start + size + (c < extra)
        out.append(indices[start:end])
        start = end
    return out


def run_chunk(task, shared, chunk, deadline) -> list:
    """``[task(shared, i) for i in chunk]``, stopped before any task that would start
    at or after ``deadline`` (wall-clock seconds, ``time.time()``; None: none)."""
    out = []
    for i in chunk:
        if deadline is not None and time.time() >= deadline:
            break
        out.append(task(shared, i))
    return out


# -- local processes: ``shared`` installed once per process by the pool's initializer
_installed = None


def _install(shared):
    global _installed
    _installed = shared


def _run_installed_chunk(task, chunk, deadline):
    return run_chunk(task, _installed, chunk, deadline)


def _check(indices, client, workers, time_budget, progress) -> list:
    if client is not None and not all(hasattr(client, a) for a in ("scatter", "submit",
                                                                    "nthreads")):
        raise WorkersError("client must be a dask.distributed.Client")
    indices = list(indices)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in indices):
        raise WorkersError("indices must be whole numbers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise WorkersError("workers must be a whole number >= 1")
    if time_budget is not None and (isinstance(time_budget, bool)
                                    or not isinstance(time_budget, (int, float))
                                    or not 0 < time_budget < float("inf")):
        raise WorkersError("time_budget must be a positive number of seconds")
    if progress is not None and not callable(progress):
        raise WorkersError("progress must be a function of (done, total)")
    return indices


class _Collector:
    """The results as chunks return them, and the progress calls."""

    def __init__(self, indices, progress):
        self.total = len(indices)
        self.progress = progress
        self.done: dict = {}
        self.cut_short = False      # a chunk stopped at the deadline

    def add(self, chunk, results):
        self.done.update(zip(chunk, results))
        self.cut_short |= len(results) < len(chunk)
        if self.progress is not None:
            self.progress(len(self.done), self.total)

    def gather(self, futures: dict, as_completed):
        """Wait for ``futures`` (future -> its chunk) as ``as_completed`` yields them;
        a task's exception is raised here."""
        for f in as_completed(list(futures)):
            self.add(futures[f], f.result())

    def outcome(self, indices, where, notes=()) -> Outcome:
        kept = [i for i in indices if i in self.done]
        return Outcome(kept, [self.done[i] for i in kept],
                       self.cut_short or len(kept) < len(indices), where, list(notes))


def run(task, shared, indices, *, client=None, workers=None, time_budget=None,
        progress=None) -> Outcome:
    """``task(shared, i)`` for each of ``indices``, the results in the order of the
    indices (see the module's notes).  ``client``: a ``dask.distributed.Client``
    (``workers`` is then the cluster's business); ``workers``: local processes
    (default: the cores this process may use); ``time_budget``: seconds for the
    whole run; ``progress``: callable(done, total)."""
    indices = _check(indices, client, workers, time_budget, progress)
    deadline = None if time_budget is None else time.time() + float(time_budget)
    col = _Collector(indices, progress)
    if client is not None:
        return _run_dask(client, task, shared, indices, deadline, col)
    if not indices:
        return col.outcome(indices, "in process")
    t0 = time.perf_counter()
    col.add(indices[:1], run_chunk(task, shared, indices[:1], deadline))
    per_task = time.perf_counter() - t0
    rest = indices[1:]
    n = min(workers or local_cores(), len(rest))
    notes = []
    if n > 1 and not col.cut_short and per_task * len(rest) > POOL_WORTH_SECONDS:
        reason = why_no_processes() or _unpicklable(task, shared)
        if reason is None:
            try:
                _run_pool(task, shared, rest, n, deadline, col)
                return col.outcome(indices, f"{n} local processes")
            except (OSError, cf.process.BrokenProcessPool) as e:
                reason = f"{type(e).__name__}: {e}"
        notes.append(f"local processes could not be used ({reason}); the tasks ran in "
                     "this process")
    left = [i for i in rest if i not in col.done]
    col.add(left, run_chunk(task, shared, left, deadline))
    return col.outcome(indices, "in process", notes)


def _unpicklable(task, shared) -> str | None:
    """Why ``task`` or ``shared`` cannot reach a process (None: they can).  With fork
    ``shared`` is inherited, not pickled."""
    try:
        pickle.dumps(task)
        if _start_method() != "fork":
            pickle.dumps(shared)
    except Exception as e:      # pickling raises several types (PicklingError, TypeError, ...)
        return f"it does not pickle: {type(e).__name__}: {e}"
    return None


def _run_pool(task, shared, indices, n, deadline, col):
    ctx = multiprocessing.get_context(_start_method())
    pool = cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=_install,
                                  initargs=(shared,))
    try:
        futures = {pool.submit(_run_installed_chunk, task, c, deadline): c
                   for c in chunks(indices, n * CHUNKS_PER_WORKER)}
        col.gather(futures, cf.as_completed)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(client, task, shared, indices, deadline, col) -> Outcome:
    """The chunks on a Dask cluster, ``shared`` scattered once to every worker."""
    from distributed import as_completed      # the ``dask`` extra: imported when used

    threads = max(1, sum(client.nthreads().values()))
    where = f"Dask cluster ({threads} thread{'s' if threads != 1 else ''})"
    if not indices:
        return col.outcome(indices, where)
    [remote] = client.scatter([shared], broadcast=True)
    futures = {client.submit(run_chunk, task, remote, c, deadline, pure=False): c
               for c in chunks(indices, threads * CHUNKS_PER_WORKER)}
    try:
        col.gather(futures, as_completed)
    finally:
        client.cancel(list(futures) + [remote])
    return col.outcome(indices, where)
