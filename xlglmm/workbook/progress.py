"""What ``xlglmm recalc`` (and ``xlglmm demo``) tell while the fits run: a live status
line (:class:`Ticker`), the fit log (:class:`FitLog`, kept by :func:`watching_fits`:
how many model fits ran, how long they and the kernels' compilation took), and one
log line per xlglmm formula (:class:`Outcome`, :func:`describe`).

In a recalculation the evaluator (:mod:`xlglmm.workbook.evaluator`) records an
:class:`Outcome` for each xlglmm formula and prints its line as it finishes; the
command (:mod:`xlglmm.workbook.recalc`) returns them in its result.
"""
from __future__ import annotations

import contextlib
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

@dataclass
class Outcome:
    where: str
    function: str                   # the first xlglmm function called, or ""
    status: str                     # ok | glmm-error | error | kept
    message: str = ""
    seconds: float = 0.0
    shape: tuple = (1, 1)
    fitted: int = 0                 # number of model fits run by this formula
    reused: bool = False            # a cached fit or block answered (no fit ran)
    compiled: float = 0.0           # seconds compiling the kernels (not in ``seconds``)


def _no_progress(stage, evaluations):
    pass


@dataclass
class FitLog:
    """What the worksheet functions' fits did inside :func:`watching_fits`: how many
    model fits ran (``glmer`` or ``lmer`` calls; a cache hit runs none) and the time
    spent inside them.  ``compile_seconds`` is the part of that time spent compiling
    the numerical kernels, for the engine's compile callback to add to
    (``compiled``); ``fit_seconds`` is the rest: the fitting alone.  ``progress``
    (``progress(stage, evaluations)``) is told of each fit's start and stages."""

    fits: int = 0
    seconds: float = 0.0
    compile_seconds: float = 0.0
    progress: Callable = field(default=_no_progress, repr=False, compare=False)

    def compiled(self, seconds: float) -> None:
        self.compile_seconds += float(seconds)

    @property
    def fit_seconds(self) -> float:
        return max(0.0, self.seconds - self.compile_seconds)

    @contextlib.contextmanager
    def fitting(self, kind: str):
        """Around one fit (the observer :func:`xlglmm.sheet.models.observing_fits` calls):
        counts and times it, and yields the GLMM fit's progress callback.  ``lmer``
        takes no progress callback: an LMM reports its start only (a ticker shows its
        elapsed time)."""
        from ..engine import jit
        self.fits += 1
        self.progress("start", 0)
        if kind == "lmm":
            self.progress("fitting a linear mixed model", 0)
        clock, n0 = jit.Stopwatch(), jit.compilations()
        try:
            yield self.progress if kind == "glmm" else None
        finally:
            self.seconds += time.perf_counter() - clock.start
            if jit.compilations() > n0:   # not a mere load from Numba's cache
                self.compiled(clock.compiled())


@contextlib.contextmanager
def watching_fits(progress):
    """Make the worksheet functions' fits report progress (``progress(stage,
    evaluations)``, e.g. :meth:`Ticker.progress`) and count them, through the hook
    :func:`xlglmm.sheet.models.observing_fits` offers.  Yields the :class:`FitLog`."""
    from ..engine import jit
    from ..sheet import models
    log = FitLog(progress=progress)

    def compiling(what, _seconds):
        # the first fit on a machine compiles the kernels: say so on the status line
        if what == "start":
            progress("compiling the numerical kernels for this machine, once", 0)
        else:
            progress("fitting", 0)
    with models.observing_fits(log), jit.announce(compiling):
        yield log


def cache_hits() -> int:
    from ..sheet import cache
    return cache.FITS.hits + cache.BLOCKS.hits


class Ticker:
    """A live status line for long fits (on a terminal), or a line every 10 s.

    One thread serves every formula of a recalculation (a thread started and joined
    per formula cost 3 ms each: 2,000 formulas spent 7 s in thread handling); it
    exits by itself after a second without a label and is started again by
    :meth:`begin`."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.label = None
        self.t0 = 0.0
        self.stage = ""
        self._lock = threading.Lock()
        self._thread = None
        self._last_note = 0.0
        self._shown = False
        self.width = max(20, min(110, shutil.get_terminal_size((100, 24)).columns - 1))

    def progress(self, stage, evaluations):
        if stage == "start":
            self.stage = "fitting"
        elif evaluations:
            self.stage = f"{stage}, {evaluations} deviance evaluations"
        else:
            self.stage = stage

    def begin(self, label):
        self.end()
        with self._lock:
            self.label = label
            self.t0 = time.perf_counter()
            self._last_note = self.t0
            self.stage = ""
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

    def _run(self):
        idle = 0
        while True:
            time.sleep(0.25)
            with self._lock:
                if self.label is None:
                    idle += 1
                    if idle >= 4:
                        self._thread = None
                        return
                    continue
                idle = 0
                el = time.perf_counter() - self.t0
                if self.tty and el > 0.5:
                    msg = f"  {self.label} ... {el:.0f} s" + \
                        (f" ({self.stage})" if self.stage else "")
                    self.stream.write("\r" + msg[:self.width].ljust(self.width))
                    self.stream.flush()
                    self._shown = True
                elif not self.tty and time.perf_counter() - self._last_note >= 10:
                    self._last_note = time.perf_counter()
                    self.stream.write(f"  {self.label}: still running after {el:.0f} s"
                                      + (f" ({self.stage})" if self.stage else "") + "\n")
                    self.stream.flush()

    def end(self):
        with self._lock:
            self.label = None
            if self._shown:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
                self._shown = False


def describe(o: Outcome, width: int = 16) -> str:
    """One line of the log: where, which function, the block's size, what it took."""
    shape = f"{o.shape[0]} x {o.shape[1]}"
    head = f"  {o.where:<{width}} {o.function:<14}"
    if o.status == "ok":
        if o.fitted:
            how = "fitted" if o.fitted == 1 else f"fitted {o.fitted} models"
        elif o.reused:
            how = "reused a cached fit"
        else:
            how = "computed"
        line = f"{head} {shape:>9} block   {how} in {o.seconds:.2f} s"
        if o.compiled >= 0.05:
            line += f" (and {o.compiled:.1f} s compiling the numerical kernels, once)"
        return line
    if o.status == "glmm-error":
        return f"{head} {o.message}"
    return f"{head} NOT EVALUATED: {o.message}"
