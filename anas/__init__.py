"""anas: two-stage, weight-sharing neural architecture search in the style of AttentiveNAS."""

__version__ = "0.2.0"
