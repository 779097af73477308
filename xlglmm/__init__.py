"""xlglmm: generalized linear mixed models (lme4's glmer) for Python and Excel."""
from .engine.design import DesignError
from .engine.family import Family, make_family
from .engine.fit import ModelError, NegativeBinomial2, glmer
from .engine.lmm import LinearMixedModel, LMMResult, lmer
from .engine.model import GeneralizedLinearMixedModel
from .engine.formula import FormulaError, parse_formula
from .engine.planning import PlannedModel, design_table, planned_model
from .engine.power import PowerError, PowerResult, power, power_curve
from .engine.results import GLMMResult

__version__ = "0.1.0"

__all__ = ["glmer", "lmer", "NegativeBinomial2", "GLMMResult", "LMMResult",
           "GeneralizedLinearMixedModel", "LinearMixedModel", "Family", "make_family",
           "parse_formula", "FormulaError", "DesignError", "ModelError", "power", "power_curve",
           "planned_model", "design_table", "PlannedModel", "PowerResult", "PowerError",
           "__version__"]
