"""A predictor folder: ``predictor.json`` (the kind, the space as data, metrics, library
versions) next to the kind's own model files (``predictor.txt`` for LightGBM). Folders
written before kinds existed have no ``kind`` entry and are LightGBM's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anas import __version__
from anas.errors import OutputError
from anas.io import atomic_write_json, read_json
from anas.predict.kinds import PREDICTOR_KINDS, Predictor, PredictorError
from anas.space.schema import space_from_dict, space_to_dict

PREDICTOR_FORMAT = "anas-predictor-1"
SIDECAR = "predictor.json"
DEFAULT_KIND = "lightgbm"


def has_predictor(folder: str | Path) -> bool:
    return (Path(folder) / SIDECAR).is_file()


def save_predictor(predictor: Predictor, folder: str | Path, metrics: dict[str, Any] | None = None) -> dict[str, str]:
    """Write the kind's files, then ``predictor.json``; returns their paths (``sidecar``,
    and ``predictor`` for the model file of kinds that have one)."""
    import scipy

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from None
    model_meta = predictor.save_model(folder)
    sidecar = {
        "format": PREDICTOR_FORMAT,
        "kind": PREDICTOR_KINDS.name_of(type(predictor)),
        "space": space_to_dict(predictor.space),
        "space_name": predictor.space.name,
        "num_classes": predictor.num_classes,
        "target": "acc1",  # unless the meta names another column
        **{key: value for key, value in predictor.meta.items() if key not in ("versions", "metrics")},
        **{key: value for key, value in model_meta.items() if key != "versions"},
        "metrics": metrics or {},
        "versions": {"anas": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     **model_meta.get("versions", {})},
    }
    paths = {"sidecar": str(atomic_write_json(folder / SIDECAR, sidecar))}
    if "model_file" in model_meta:
        paths["predictor"] = str(folder / model_meta["model_file"])
    return paths


def load_predictor(folder: str | Path) -> Predictor:
    """The predictor in ``folder``, of whatever kind its ``predictor.json`` names."""
    folder = Path(folder)
    sidecar_path = folder / SIDECAR
    if not folder.is_dir():
        raise PredictorError(f"predictor folder {folder} does not exist")
    if not sidecar_path.is_file():
        raise PredictorError(f"predictor folder {folder} has no {SIDECAR}: fit one with anas predict-fit")
    meta = read_json(sidecar_path, "predictor description", PredictorError)
    if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
        raise PredictorError(f"{sidecar_path} is not an anas predictor description")
    kind = PREDICTOR_KINDS.get(meta.get("kind", DEFAULT_KIND))
    space = space_from_dict(meta.get("space"), f"{sidecar_path} (space)")
    return kind.load_model(folder, space, int(meta.get("num_classes") or space.num_classes), meta)
