"""Figures written as PNG files: matplotlib's object API (a ``Figure`` of its own, no
pyplot and no backend switch, so nothing process-wide changes), saved atomically."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from anas.io import atomic_write


def new_figure(width: float, height: float) -> tuple[Figure, object]:
    """A figure of ``width`` x ``height`` inches at 120 dpi, with one set of axes."""
    figure = Figure(figsize=(width, height), dpi=120)
    return figure, figure.add_subplot()


def save_png(figure: Figure, path: str | Path) -> Path:
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
