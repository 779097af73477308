"""xlglmm: generalized linear mixed models (lme4's glmer) for Python and Excel."""
from .design import DesignError
from .family import Family, make_family
from .fit import ModelError, NegativeBinomial2, glmer
from .lmm import LMMResult, lmer
from .formula import FormulaError, parse_formula
from .results import GLMMResult

__version__ = "0.1.0"

__all__ = ["glmer", "lmer", "NegativeBinomial2", "GLMMResult", "LMMResult", "Family", "make_family", "parse_formula",
           "FormulaError", "DesignError", "ModelError", "__version__"]
