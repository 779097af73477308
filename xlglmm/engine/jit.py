"""Numba compilation: a one-time cost, measured, reported, never counted against a fit.

The kernels are compiled for this machine's CPU the first time a fit needs them and
cached on disk (Numba's cache: next to the package, or in the user's cache folder
when the package is installed read-only).  Compiling takes seconds; a fit of a
160-row model takes milliseconds.  So:

* ``seconds()`` is the time this thread has spent compiling kernels or loading them
  from the cache (the time under, or waiting for, Numba's compiler lock); a fit's
  time budget (``optimize.Budget``) subtracts what happened while it ran, so a first
  fit is never stopped, and its result never changed, by compilation;
* ``announce(callback)`` lets a front end (``xlglmm demo``, ``xlglmm recalc``, the
  Python API's stderr line) say that it is compiling, and for how long;
* ``warm_up()`` compiles the kernels a typical fit needs ahead of time (the
  installers run it, so the first worksheet call does not wait);
* ``FixedSignature(kernel)`` calls a kernel without the dispatcher's per-call
  typing, for a caller whose arguments never change type (see its docstring).

Numba reports each compilation as a ``numba:compile`` event and the time under its
compiler lock (compiling, and loading from the cache) as ``numba:compiler_lock``;
nested events (a kernel compiling the functions it calls) count once, at the
outermost.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import numba
try:        # the key of the dispatcher's type cache: a private name of Numba's C code
    from numba._dispatcher import compute_fingerprint
except ImportError:     # (a Numba without it: FixedSignature calls the dispatcher)
    compute_fingerprint = None
from numba.core import event as _event

_lock = threading.Lock()
_count = 0                    # functions compiled (not loaded from the cache)
_local = threading.local()    # per thread: its seconds under Numba's compiler lock
                              # (waiting for it included), lock and compile depths
_callbacks: list = []


class _LockListener(_event.Listener):
    """Time under Numba's compiler lock: compiling, and loading compiled code from
    the cache (each dispatcher's first call in a process)."""

    def on_start(self, event):
        d = getattr(_local, "lock_depth", 0)
        _local.lock_depth = d + 1
        if d == 0:
            _local.lock_start = time.perf_counter()

    def on_end(self, event):
        d = getattr(_local, "lock_depth", 1) - 1
        _local.lock_depth = d
        if d == 0:
            dt = time.perf_counter() - getattr(_local, "lock_start", time.perf_counter())
            _local.lock_start = None
            _local.total = getattr(_local, "total", 0.0) + dt


class _CompileListener(_event.Listener):
    """Compilations proper: announced to the callbacks (start, end)."""

    def on_start(self, event):
        global _count
        with _lock:
            _count += 1
        d = getattr(_local, "compile_depth", 0)
        _local.compile_depth = d + 1
        if d == 0:
            _local.compile_start = time.perf_counter()
            for cb in list(_callbacks):
                cb("start", 0.0)

    def on_end(self, event):
        d = getattr(_local, "compile_depth", 1) - 1
        _local.compile_depth = d
        if d == 0:
            dt = time.perf_counter() - getattr(_local, "compile_start", time.perf_counter())
            for cb in list(_callbacks):
                cb("end", dt)


_event.register("numba:compiler_lock", _LockListener())
_event.register("numba:compile", _CompileListener())


def seconds() -> float:
    """Seconds this thread has spent compiling kernels, loading them from the cache,
    or waiting for another thread that does (Numba's compiler lock is one per
    process): finished stretches plus the one under way, if any.  Per thread, so a
    fit's clock (``Stopwatch``) subtracts only what held up its own thread."""
    t = getattr(_local, "total", 0.0)
    t0 = getattr(_local, "lock_start", None)
    return t + (time.perf_counter() - t0 if t0 is not None else 0.0)


def compilations() -> int:
    """How many functions (kernels and the Numba functions they use) this process
    has compiled: 0 when all came from the cache."""
    return _count


@contextlib.contextmanager
def announce(callback):
    """Call ``callback("start", 0)`` when a compilation begins and
    ``callback("end", seconds)`` when it ends, while the block runs."""
    _callbacks.append(callback)
    try:
        yield
    finally:
        _callbacks.remove(callback)


class Stopwatch:
    """Wall-clock seconds since it was made, not counting compilation: the clock of
    a fit's time budget."""

    def __init__(self):
        self.start = time.perf_counter()
        self.compile_start = seconds()

    def elapsed(self) -> float:
        return (time.perf_counter() - self.start) - (seconds() - self.compile_start)

    def compiled(self) -> float:
        """Seconds spent compiling or loading kernels since it was made."""
        return seconds() - self.compile_start


@contextlib.contextmanager
def notice(stream=None):
    """The Python API's notice, around a fit: one line when compiling starts and one
    with its duration at the end -- only on an interactive terminal (or with
    XLGLMM_VERBOSE=1), and only when no front end (demo, recalc) reports
    compilation itself."""
    stream = sys.stderr if stream is None else stream
    wanted = not _callbacks and (os.environ.get("XLGLMM_VERBOSE") == "1" or
                                 bool(getattr(stream, "isatty", lambda: False)()))
    if not wanted:
        yield
        return
    clock = Stopwatch()
    compiled = []

    def cb(what, dt):
        if what == "start" and not compiled:
            print("xlglmm: compiling the numerical kernels for this machine (first use "
                  "only: they are cached on disk) ...", file=stream, flush=True)
        compiled.append(what)
    with announce(cb):
        yield
    if compiled:
        print(f"xlglmm: compiled in {clock.compiled():.1f} s (not counted in the fit's "
              "time budget)", file=stream, flush=True)


class SignatureMismatch(TypeError):
    """A ``FixedSignature`` call whose argument types are not those of its first call."""


class FixedSignature:
    """A kernel called through its compiled entry point, once its types are known.

    Numba's dispatcher types every argument on every call, to pick (or compile) the
    machine code for those types; for a NamedTuple argument it does that in Python:
    measured on the safety_crossed model, ``pirls`` took about 16.4 us a call
    through the dispatcher and 13.4 us through the compiled code's ``entry_point``
    (13.6 us through this wrapper).  This wrapper calls the kernel through the
    dispatcher the first time (compiling it, or loading it from the cache), records
    the argument types (``signature``), and from then on calls the entry point
    compiled for them.  The argument types are recognised by the key of the
    dispatcher's own type cache (``compute_fingerprint``, ~3 us for a ``pirls``
    call's arguments, in C): a later wrapper whose first call has the same
    fingerprints finds the entry point in a table of this process (``numba.typeof``
    of those arguments takes ~100 us, more than a small model's fit saves).  When
    the dispatcher has no machine code for exactly the first call's types -- it
    converted the arguments to those of an existing overload, as a kernel compiled
    for given signatures does -- there is no entry point to call past it, and every
    call goes through the dispatcher (``signature`` stays None).

    The contract: every call passes arguments of the first call's types, the same
    NamedTuple types, scalars of the same kind, and arrays of the same dtype, number
    of dimensions and layout (C-contiguous).  The entry point does not check: a
    non-contiguous array is silently read as if it were contiguous (wrong numbers,
    not an error).  So it is used only where the caller builds every argument itself
    with fixed types (``devfun.GlmmDeviance``: arrays it allocated C-contiguous as
    float64 or int64, scalars it converted), never on arguments a user hands over.
    With ``check`` on (the environment variable XLGLMM_CHECK_SIGNATURES=1, or set
    by a test) every call's fingerprints are compared with the first call's
    (``SignatureMismatch`` if they differ): as slow as the dispatcher, for tests.
    """

    check = os.environ.get("XLGLMM_CHECK_SIGNATURES") == "1"
    _known: dict = {}       # (kernel, fingerprints) -> (entry point, signature)

    def __init__(self, kernel):
        self.kernel = kernel
        self.signature = None       # the argument types of the first call (None: the
                                    # dispatcher is called, see ``_first_call``)
        self.checked = 0            # calls verified against it (``check``)
        self._entry = None
        self._fingerprints = None

    def __reduce__(self):
        """Pickled as its kernel alone (a Numba dispatcher pickles by reference): the
        entry point is this process's machine code, and a copy in another process
        (a bootstrap's worker) finds its own on its first call."""
        return (FixedSignature, (self.kernel,))

    def __call__(self, *args):
        entry = self._entry
        if entry is None:
            return self._first_call(args)
        if FixedSignature.check:
            self._verify(args)
        return entry(*args)

    def _first_call(self, args):
        if compute_fingerprint is None:
            return self.kernel(*args)
        fingerprints = tuple(compute_fingerprint(a) for a in args)
        known = FixedSignature._known.get((self.kernel, fingerprints))
        if known is None:
            out = self.kernel(*args)
            signature = tuple(numba.typeof(a) for a in args)
            overload = self.kernel.overloads.get(signature)
            # no overload for exactly these types: the dispatcher converted the
            # arguments to an existing one's (a kernel that may not compile more);
            # its entry point would read them unconverted, so the dispatcher it stays
            known = (self.kernel, None) if overload is None else \
                (overload.entry_point, signature)
            FixedSignature._known[(self.kernel, fingerprints)] = known
        else:
            out = known[0](*args)
        self._entry, self.signature = known
        self._fingerprints = fingerprints
        return out

    def _verify(self, args):
        if tuple(compute_fingerprint(a) for a in args) != self._fingerprints:
            types = tuple(numba.typeof(a) for a in args)
            first = self.signature or "its first call's types, converted by the dispatcher"
            raise SignatureMismatch(
                f"{self.kernel.__name__} called with {types}, compiled for {first}")
        self.checked += 1


def timed(fit, *args, **kwargs):
    """Run a fit (``fit.glmer``'s and ``lmm.lmer``'s body) with the API's notice, and
    set its ``seconds`` (fitting only) and ``compile_seconds`` (compiling or loading
    the kernels meanwhile)."""
    clock = Stopwatch()
    with notice():
        res = fit(*args, **kwargs)
    res.seconds = clock.elapsed()
    res.compile_seconds = clock.compiled()
    return res


def warm_up(progress=None) -> list:
    """Compile (or load from the cache) the kernels of the common fits: Laplace
    and AGQ, every family, lme4's standard errors, the linear mixed model.  Returns
    the steps that failed, as (step, error) pairs (empty when all went through)."""
    import numpy as np
    import pandas as pd

    from .fit import glmer
    from .lmm import lmer
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(8), 6)
    h = np.tile(np.arange(6), 8)
    x = rng.standard_normal(48)
    eta = 0.3 * x + rng.standard_normal(8)[g] * 0.5
    df = pd.DataFrame({"g": g.astype(str), "h": h.astype(str), "x": x,
                       "c": rng.poisson(np.exp(eta)), "b": rng.binomial(1, 1 / (1 + np.exp(-eta))),
                       "a": np.exp(eta) * rng.gamma(5.0, 0.2, 48),
                       "r": eta + rng.standard_normal(48)})
    steps = [("poisson", lambda: glmer("c ~ x + (1|g) + (1|h)", df, "poisson")),
             ("binomial", lambda: glmer("b ~ x + (x|g)", df, "binomial")),
             ("AGQ", lambda: glmer("c ~ x + (1|g)", df, "poisson", nAGQ=5)),
             ("AGQ, vector", lambda: glmer("b ~ x + (x|g)", df, "binomial", nAGQ=3)),
             ("gamma", lambda: glmer("a ~ x + (1|g)", df, "gamma", link="log")),
             ("linear mixed model", lambda: lmer("r ~ x + (1|g)", df))]
    failed = []
    for name, step in steps:
        if progress is not None:
            progress(name)
        try:
            step()
        except Exception as e:      # reported: a broken install must not look compiled
            failed.append((name, f"{type(e).__name__}: {e}"))
    return failed
