"""What a linear predictor says about the space (``anas predict-fit --kind linear --explain``).

``coefficients.csv`` lists every feature's coefficient with its standard error;
``explain.png`` shows, per stage, the predicted effect of one more block, of the larger
kernel over the smaller (5 over 3 in the built-in spaces) and of one more expand-ratio
step, with one-standard-error bars. The effects include the interaction terms, taken at
the training records' mean depth, expand ratio and kernel size of the stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anas.io import atomic_write_text
from anas.plots import save_png
from anas.predict.kinds.linear import LinearPredictor, linear_feature_names

COEFFICIENTS_FILE = "coefficients.csv"
EFFECTS_FILE = "effects.csv"
PLOT_FILE = "explain.png"
EFFECTS = ("one more block", "larger kernel", "one more expand step")


def coefficient_table(predictor: LinearPredictor) -> pd.DataFrame:
    """Feature, coefficient and standard error, the intercept first (without an error)."""
    names = linear_feature_names(predictor.space)
    return pd.DataFrame({"feature": ["intercept", *names],
                         "coefficient": [predictor.intercept, *predictor.coefficients],
                         "standard_error": [np.nan, *predictor.standard_errors()]})


def stage_effects(predictor: LinearPredictor) -> pd.DataFrame:
    """One row per stage and effect: the predicted change, its standard error, and what
    was changed (``change``); stages with a single choice of the setting have no row."""
    means = dict(zip(linear_feature_names(predictor.space), predictor.feature_means))
    rows = []
    for stage in predictor.space.stages:
        name = stage.name
        depth, expand, kernel = (means.get(f"{name}.{f}", value) for f, value in
                                 (("depth", stage.depths[0]), ("expand", stage.expand_ratios[0]),
                                  ("kernel", stage.kernel_sizes[0])))  # a fixed setting: its only choice
        changes = {"one more block": ({f"{name}.depth": 1, f"{name}.depth_x_expand": expand,
                                       f"{name}.depth_x_kernel": kernel}, "depth + 1")}
        if len(stage.kernel_sizes) > 1:
            low, high = stage.kernel_sizes[:2]
            changes["larger kernel"] = ({f"{name}.kernel": high - low, f"{name}.depth_x_kernel": depth * (high - low)},
                                        f"kernel {high} over {low}")
        if len(stage.expand_ratios) > 1:
            low, high = stage.expand_ratios[:2]
            changes["one more expand step"] = ({f"{name}.expand": high - low,
                                                f"{name}.depth_x_expand": depth * (high - low)},
                                               f"expand {high:g} over {low:g}")
        for effect, (weights, change) in changes.items():
            value, error = predictor.effect(weights)
            rows.append({"stage": name, "effect": effect, "change": change, "value": value, "standard_error": error})
    return pd.DataFrame(rows, columns=["stage", "effect", "change", "value", "standard_error"])


def write_explanation(predictor: LinearPredictor, folder: str | Path) -> dict[str, str]:
    """``coefficients.csv``, ``effects.csv`` and ``explain.png`` in ``folder``; returns their paths."""
    folder = Path(folder)
    effects = stage_effects(predictor)
    paths = {"coefficients": atomic_write_text(folder / COEFFICIENTS_FILE,
                                               coefficient_table(predictor).to_csv(index=False)),
             "effects": atomic_write_text(folder / EFFECTS_FILE, effects.to_csv(index=False)),
             "explain_plot": effects_plot(effects, folder / PLOT_FILE, predictor)}
    return {key: str(path) for key, path in paths.items()}


def effects_plot(effects: pd.DataFrame, path: Path, predictor: LinearPredictor) -> Path:
    from matplotlib.figure import Figure

    stages = [stage.name for stage in predictor.space.stages]
    figure = Figure(figsize=(4 * len(EFFECTS), 3.6), dpi=120)
    unit = "top-1 points" if predictor.score_label.endswith("(%)") else predictor.meta.get("target", "")
    for i, effect in enumerate(EFFECTS):
        ax = figure.add_subplot(1, len(EFFECTS), i + 1)
        rows = effects[effects["effect"] == effect].set_index("stage").reindex(stages)
        positions = np.arange(len(stages))
        ax.bar(positions, rows["value"].fillna(0.0), yerr=rows["standard_error"].fillna(0.0), capsize=3,
               color="tab:blue", alpha=0.8)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(positions, stages, rotation=45, ha="right", fontsize=8)
        ax.set_title(effect)
        if i == 0:
            ax.set_ylabel(f"predicted change ({unit})")
    figure.suptitle(f"{predictor.space.name}: per-stage effects of the linear predictor (±1 standard error)")
    return save_png(figure, path)
