"""Search strategies. Importing this package registers the built-in ones (``nsga2``,
``evolution``, ``random``, ``anneal``, ``fpnas``, ``two-stage``)."""

from anas.search.strategies import anneal, evolution, fpnas_search, nsga2, random, two_stage  # noqa: F401  (register the built-ins)
from anas.search.strategies.strategy import STRATEGIES, Strategy, register_strategy

__all__ = ["STRATEGIES", "Strategy", "register_strategy"]
