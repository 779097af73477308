"""Negative binomial (NB2) GLMMs with theta estimated by maximum likelihood (the
job of lme4's ``glmer.nb``): the Poisson GLMM first, then theta with the other
parameters (``family_parameter.FamilyParameterModel`` with ``NB_THETA``)."""
from __future__ import annotations

from .family import Family
from .family_parameter import (NB_LOG_THETA_BOUNDS, NB_THETA, FamilyParameterModel,
                               NegativeBinomial2, ThetaEstimate, hessian_column, schur_se)


class NegativeBinomialModel(FamilyParameterModel):
    """An NB2 GLMM whose theta is estimated.  ``fit_poisson()`` fits the Poisson
    GLMM (the start); ``model_at(theta, se_method, time_budget)`` returns the GLMM
    (not yet fitted) with theta fixed."""

    def __init__(self, fit_poisson, model_at, *, se_method, time_budget, max_evals,
                 progress=None, link: str = "log", laplace: str = "exact"):
        super().__init__(NB_THETA, NegativeBinomial2(1.0, link, laplace), fit_poisson,
                         model_at, se_method=se_method, time_budget=time_budget,
                         max_evals=max_evals, progress=progress)


__all__ = ["NB_LOG_THETA_BOUNDS", "NegativeBinomial2", "NegativeBinomialModel", "Family",
           "ThetaEstimate", "hessian_column", "schur_se"]
