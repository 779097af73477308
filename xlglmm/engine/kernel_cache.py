"""Numba's on-disk cache of the compiled kernels, kept true to the sources.

Numba keys a cached kernel on its own source file's time stamp and size only.  A kernel
calls kernels of other modules (``pirls.pirls`` calls ``linalg.factorize``...) and its
cached machine code holds them compiled in: when ``linalg.py`` changes and
``pirls.py`` does not, Numba would go on loading the old ``pirls`` with the old
``factorize`` inside.  An installed package changes all its files at once (every time
stamp moves), but a checkout installed in editable mode (the README's install) that
pulls a change does not -- seen here: a fit ran 7x slower on a stale kernel, and a
stale kernel could as well give the old numbers.

So, before any kernel module is imported (``xlglmm.engine``'s ``__init__``), the
digest of all kernel sources is compared with the one stored beside the cache; when
they differ, the engine's cached kernels are deleted (they recompile on first use, a
one-time cost that ``jit`` measures and no fit's budget counts) and the new digest is
stored.  Only the package's own ``__pycache__`` folder is looked after: with
``NUMBA_CACHE_DIR`` set, or a read-only install (Numba's per-user cache), the caller
owns the cache (CI's second pass uses an empty one).  One case is left: a process
still running the old code (a spreadsheet session open across the pull) may write a
kernel compiled from the old sources after the new stamp; restarting it after an
update, as after any upgrade, avoids that.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: the engine's modules that define Numba kernels (tests/engine/test_kernel_cache.py
#: checks that the list is complete)
KERNEL_MODULES = ("agq", "devfun", "family", "gradient", "linalg", "lmm_moments", "pirls",
                  "special")
STAMP = "xlglmm-kernel-sources.sha256"
HERE = Path(__file__).resolve().parent


def sources_digest(folder: Path = HERE, modules=KERNEL_MODULES) -> str:
    """SHA-256 of the kernel modules' sources, in a fixed order."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\0")
        h.update((folder / f"{name}.py").read_bytes())
    return h.hexdigest()


def refresh(cache: Path, digest: str) -> bool:
    """Delete the Numba cache files in ``cache`` unless its stamp says they were
    compiled from sources with ``digest``; store the digest.  True when it deleted.
    Never raises for the file system (an unwritable folder is left as it is)."""
    stamp = cache / STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)      # (a new checkout: Numba would make it)
        for f in cache.iterdir():
            if f.suffix in (".nbi", ".nbc"):
                f.unlink(missing_ok=True)
        tmp = cache / f"{STAMP}.{os.getpid()}.tmp"
        tmp.write_text(digest)
        os.replace(tmp, stamp)
    except OSError:
        return False
    return True


def keep_true_to_sources() -> bool:
    """``refresh`` the package's own cache folder (nothing when NUMBA_CACHE_DIR
    points elsewhere or the sources cannot be read)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return False
    try:
        digest = sources_digest()
    except OSError:
        return False
    return refresh(HERE / "__pycache__", digest)
