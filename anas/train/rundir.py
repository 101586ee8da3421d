"""A run folder and its checkpoint: what ``anas train`` writes and every later command reads.

Layout of ``RUN_DIR``::

    config.yaml            the resolved training configuration
    metrics.csv            one row per epoch
    train.log              a line per event
    checkpoints/last.pt    model, optimizer, scheduler, step, RNG and sampler states,
                           the space (as data) and the configuration

Every file is written to a temporary name and renamed. Checkpoints hold only tensors and
plain Python data, and are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from anas.errors import CheckpointError, SpaceError
from anas.io import atomic_write, atomic_write_text
from anas.space.space import SearchSpace, space_from_dict

CHECKPOINT_FORMAT = "anas-supernet-1"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return pd.read_csv(self.metrics_path).to_dict("records")

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        frame = pd.DataFrame(rows)
        atomic_write(self.metrics_path, lambda tmp: frame.to_csv(tmp, index=False))

    def log(self, message: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint_path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        if not self.path.is_dir():
            raise CheckpointError(f"run folder {self.path} does not exist")
        if not self.has_checkpoint():
            raise CheckpointError(f"run folder {self.path} has no checkpoint ({self.checkpoint_path} is missing)")
        return load_checkpoint(self.checkpoint_path, map_location)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an anas checkpoint safely; anything else is a one-line ``CheckpointError``."""
    path = Path(path)
    state = safe_torch_load(path, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an anas supernet checkpoint")
    for key in ("space", "config", "model"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks its {key!r} entry")
    return state


def safe_torch_load(path: Path, kind: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)``: tensors and plain data only, never arbitrary
    pickled objects. A missing or unreadable file is a one-line ``CheckpointError``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{kind} {path} does not exist") from None
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            io.UnsupportedOperation) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{kind} {path} is corrupt or not an anas {kind}: {reason}") from None


def checkpoint_space(state: dict[str, Any], path: str | Path) -> SearchSpace:
    try:
        return space_from_dict(state["space"], f"{path} (space)")
    except SpaceError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid space: {exc}") from None

