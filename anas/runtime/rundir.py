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

import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from anas.errors import AnasError, CheckpointError, SpaceError
from anas.io import atomic_write, atomic_write_text
from anas.space.schema import space_from_dict
from anas.space.search_space import SearchSpace

CHECKPOINT_FORMAT = "anas-supernet-1"
STANDALONE_FORMAT = "anas-standalone-1"  # a subnet trained on its own by ``anas standalone``


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

    def write_config(self, text: str) -> None:
        """``config.yaml``: the run's options as YAML text (:func:`anas.options.to_yaml`)."""
        atomic_write_text(self.config_path, text)

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

    def save_checkpoint(self, state: dict[str, Any], checkpoint_format: str = CHECKPOINT_FORMAT) -> None:
        atomic_write(self.checkpoint_path, lambda tmp: torch.save({"format": checkpoint_format, **state}, tmp))

    def load_checkpoint(self, map_location: str | torch.device = "cpu",
                        checkpoint_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"run folder {self.path} is a file, not a folder")
        if not self.path.is_dir():
            raise CheckpointError(f"run folder {self.path} does not exist")
        if not self.has_checkpoint():
            raise CheckpointError(f"run folder {self.path} has no checkpoint ({self.checkpoint_path} is missing)")
        return load_checkpoint(self.checkpoint_path, map_location, checkpoint_format)


FORMAT_NAMES = {CHECKPOINT_FORMAT: "supernet", STANDALONE_FORMAT: "standalone subnet"}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    checkpoint_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Read an anas checkpoint of ``checkpoint_format`` safely; anything else is a
    one-line ``CheckpointError``."""
    path = Path(path)
    state = safe_torch_load(path, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != checkpoint_format:
        found = FORMAT_NAMES.get(state.get("format")) if isinstance(state, dict) else None
        raise CheckpointError(f"checkpoint {path} is not an anas {FORMAT_NAMES[checkpoint_format]} checkpoint"
                              + (f" (it is a {found} checkpoint)" if found else ""))
    for key in ("space", "config", "model"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks its {key!r} entry")
    return state


def safe_torch_load(path: Path, kind: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)``: tensors and plain data only, never arbitrary
    pickled objects. A missing or unreadable file is a one-line ``CheckpointError``."""
    if path.is_dir():
        raise CheckpointError(f"{kind} {path} is a folder, not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{kind} {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001  a damaged file makes the safe unpickler fail in any way
        raise CheckpointError(f"{kind} {path} is corrupt or not an anas {kind} "
                              f"({_load_failure(exc)})") from None


def _load_failure(exc: BaseException) -> str:
    """Why a file failed to load, in anas's words: PyTorch's own messages advise retrying
    with ``weights_only=False``, which must never be done with a file that failed."""
    if "Weights only load failed" in str(exc):
        return "it holds Python objects other than tensors and plain data, which anas never loads"
    if isinstance(exc, EOFError):
        return "the file ends early"
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or type(exc).__name__}"
    text = str(exc)
    if "zip archive" in text or "central directory" in text or isinstance(exc, zipfile.BadZipFile):
        return "not a PyTorch zip archive, or a truncated one"
    return f"PyTorch cannot read it: {type(exc).__name__}"


def checkpoint_space(state: dict[str, Any], path: str | Path) -> SearchSpace:
    try:
        return space_from_dict(state["space"], f"{path} (space)")
    except SpaceError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid space: {exc}") from None



# ----------------------------------------------------------------------------------------
# Random state in a checkpoint (torch, CUDA, numpy's and Python's global generators)
# ----------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The global random generators' states, as tensors and plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached"]))
    version, internal, gauss = state["python"]  # a checkpoint stores the tuple as a list
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------------------
# Finding the latest run
# ----------------------------------------------------------------------------------------

RUNS_ROOT = Path("runs")


def latest_run(needed: Callable[[Path], Path | None], what: str, run_first: str,
               root: str | Path = RUNS_ROOT) -> Path:
    """The folder under ``root`` (``./runs``) whose needed file (``needed(folder)``, None
    where it is missing) was written last; none is a one-line error that says what to run
    first."""
    root = Path(root)
    found = [(file.stat().st_mtime, folder.name, folder) for folder in (root.iterdir() if root.is_dir() else [])
             if folder.is_dir() and (file := needed(folder)) is not None]
    if not found:
        raise AnasError(f"no run folder under {root}/ holds {what}: run `{run_first}` first, or name one")
    return max(found)[2]


def latest_checkpointed_run(root: str | Path = RUNS_ROOT) -> Path:
    """The run folder whose supernet checkpoint is the newest (for predict-fit and export)."""

    def checkpoint(folder: Path) -> Path | None:
        path = RunDir(folder).checkpoint_path
        return path if path.is_file() else None

    return latest_run(checkpoint, "a supernet checkpoint", "anas train", root)


def initialize_from_run(model: torch.nn.Module, path: str | Path, space: SearchSpace) -> list[str]:
    """Copy the weights of the run folder ``path`` into ``model`` (a supernet of ``space``):
    every tensor by name and shape, except the classifier's when the class counts differ
    (those keep their fresh initialization). Returns the names left as they were."""
    run_dir = RunDir(path)
    state = run_dir.load_checkpoint()
    saved_space = checkpoint_space(state, run_dir.checkpoint_path)
    if saved_space != space:
        raise CheckpointError(f"--init {path} holds a supernet of space {saved_space.name}, not {space.name}")
    saved, kept = state["model"], []
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in saved:
                raise CheckpointError(f"--init {path} has no tensor {name} (trained with other options?)")
            if saved[name].shape != tensor.shape:
                if name.startswith("head.classifier."):
                    kept.append(name)
                    continue
                raise CheckpointError(f"--init {path}: {name} has shape {tuple(saved[name].shape)}, this run "
                                      f"needs {tuple(tensor.shape)}")
            tensor.copy_(saved[name])
    return kept
