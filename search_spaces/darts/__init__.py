"""The DARTS cell search space: constants, space, operations, evaluation network and supernet.

``constants`` and ``ops`` are leaves; ``space`` is the :class:`DartsSpace` (it imports ``network`` and
``supernet`` only when it builds one); ``network`` and ``supernet`` build from ``ops``.
"""
from search_spaces.darts.constants import CELLS, CONCAT, NODES, OPS, PUBLISHED, SHORT, Genotype
from search_spaces.darts.space import DartsSpace, parse_genotype

__all__ = ["CELLS", "CONCAT", "NODES", "OPS", "PUBLISHED", "SHORT", "DartsSpace", "Genotype", "parse_genotype"]
