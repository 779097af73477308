"""The statistical engine: formula + table -> fitted mixed model.

Knows nothing of spreadsheets.  The pipeline, in lme4's stages: ``formula`` (parse) ->
``design`` (lFormula: X, the random-effects terms, offset, weights; ``cost`` guards it)
-> ``devfun`` (mkGlmerDevfun: the deviance on the blocked factor; ``linalg``,
``pirls``, ``agq`` are its Numba kernels) -> ``optimize`` (optimizeGlmer) ->
``results`` (mkMerMod).  ``fit.glmer`` and ``lmm.lmer`` drive it; ``family`` says
what a conditional distribution is.
"""
from . import kernel_cache as _kernel_cache

_kernel_cache.keep_true_to_sources()      # before any kernel module is imported
