"""nastk: a neural architecture search toolkit.

The public API: spaces (:func:`get_space`), architectures, evaluators, strategies and runs.
"""
from nastk.architecture import Architecture
from nastk.errors import NastkError
from nastk.evaluator import Evaluator, Result
from nastk.space import SearchSpace, get_space

__version__ = "0.1.0"
__all__ = ["Architecture", "Evaluator", "NastkError", "Result", "SearchSpace", "get_space", "__version__"]
