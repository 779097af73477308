"""In-process caches for worksheet recalculation.

Excel recalculates a formula whenever anything it depends on might have changed;
identical inputs must not refit.  Keys are SHA-256 digests of the validated inputs
(array bytes, dtypes, shapes, text) plus every option that changes the fit, so two
functions describing the same model (GLMM_POISSON and GLMM_RANEF over the same
ranges) share one fit.  Least-recently-used entries are evicted beyond a count.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def digest(*parts) -> str:
    h = hashlib.sha256()

    def feed(p):
        if isinstance(p, np.ndarray):
            h.update(b"A" + str(p.dtype).encode() + repr(p.shape).encode())
            if p.dtype == object:
                for v in p.ravel():
                    h.update(b"\x00" + repr(v).encode())
            else:
                h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, (list, tuple)):
            h.update(b"L" + str(len(p)).encode())
            for q in p:
                feed(q)
        elif isinstance(p, dict):
            h.update(b"D" + str(len(p)).encode())
            for k in sorted(p):
                feed(k)
                feed(p[k])
        else:
            h.update(b"S" + type(p).__name__.encode() + b":" + repr(p).encode())
    for part in parts:
        feed(part)
    return h.hexdigest()


class LRU:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
            self.misses += 1
            return None

    def put(self, key, value):
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def clear(self):
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0

    def __len__(self):
        return len(self._d)


FITS = LRU(32)        # key -> GLMMResult (or the error message of a failed fit)
BLOCKS = LRU(512)     # key of a whole worksheet call -> the block it returned


def cached_block(key: str, make) -> list:
    """The block cached in BLOCKS under ``key``, made by ``make()`` on a miss (an
    exception leaves nothing cached); a fresh copy of its rows, so that a caller
    that edits it cannot edit the cache."""
    hit = BLOCKS.get(key)
    if hit is None:
        hit = make()
        BLOCKS.put(key, hit)
    return [list(r) for r in hit]


def clear():
    FITS.clear()
    BLOCKS.clear()
