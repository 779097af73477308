"""The kernels' disk cache follows the sources (engine/kernel_cache.py): Numba checks
only a kernel's own file, so a change in a module it calls must clear the cache."""
import re
from pathlib import Path

from xlglmm.engine import kernel_cache

ENGINE = Path(kernel_cache.__file__).parent


def test_every_module_with_kernels_is_in_the_digest():
    with_kernels = {p.stem for p in ENGINE.glob("*.py")
                    if re.search(r"^@(njit|jit|numba\.)", p.read_text(), re.M)}
    assert with_kernels == set(kernel_cache.KERNEL_MODULES)


def _folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        (src / f"{name}.py").write_text(f"x = '{name}'\n")
    cache = src / "__pycache__"
    cache.mkdir()
    for f in ("a.k-1.py311.nbi", "a.k-1.py311.1.nbc", "a.cpython-311.pyc"):
        (cache / f).write_bytes(b"0")
    return src, cache


def test_a_changed_source_clears_the_compiled_kernels_once(tmp_path):
    src, cache = _folder(tmp_path)
    d1 = kernel_cache.sources_digest(src, ("a", "b"))
    assert kernel_cache.refresh(cache, d1)          # no stamp yet: cleared, stamped
    assert sorted(f.name for f in cache.iterdir()) == ["a.cpython-311.pyc",
                                                       kernel_cache.STAMP]
    (cache / "a.k-1.py311.nbi").write_bytes(b"0")   # compiled again from these sources
    assert not kernel_cache.refresh(cache, d1)      # same sources: kept
    assert (cache / "a.k-1.py311.nbi").exists()
    (src / "b.py").write_text("x = 'changed'\n")    # a module the kernel calls changes
    d2 = kernel_cache.sources_digest(src, ("a", "b"))
    assert d2 != d1
    assert kernel_cache.refresh(cache, d2)
    assert not (cache / "a.k-1.py311.nbi").exists()
    assert (cache / "a.cpython-311.pyc").exists()   # Python's own files are not touched
    assert (cache / kernel_cache.STAMP).read_text() == d2


def test_a_new_checkout_is_stamped_before_numba_writes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    d = kernel_cache.sources_digest(src, ("a",))
    kernel_cache.refresh(src / "__pycache__", d)
    assert (src / "__pycache__" / kernel_cache.STAMP).read_text() == d
