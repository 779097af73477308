"""Faults planted in the engine for tests (a support module: test files do not import
each other)."""
from __future__ import annotations


def fail_refit(monkeypatch, model, call: int,
               error=ZeroDivisionError("float division by zero")) -> None:
    """Make the ``call``-th ``refit_model`` of ``model``'s class (counting from 1)
    raise ``error`` -- a failure in the kernels, not a ValueError -- and every other
    refit run as before."""
    cls = type(model)
    real = cls.refit_model
    calls = []

    def failing(self, y=None, **kw):
        calls.append(1)
        if len(calls) == call:
            raise error
        return real(self, y, **kw)
    monkeypatch.setattr(cls, "refit_model", failing)
