"""The NAS-Bench-201 cell search space: constants, space, stand-alone network and supernet.

``constants`` is a leaf (what every other module here imports); ``space`` is the
:class:`NB201Space`; ``network`` and ``supernet`` build torch modules from the same stage layout.
"""
from search_spaces.nb201.constants import EDGES, NUM_CLASSES, NUM_NODES, OPS, SIZE
from search_spaces.nb201.space import NB201Space

__all__ = ["EDGES", "NUM_CLASSES", "NUM_NODES", "NB201Space", "OPS", "SIZE"]
