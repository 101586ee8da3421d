"""Reading and writing the files anas exchanges with users: output is written to a
temporary name and renamed; YAML is read with ``safe_load``; JSON is written strictly
(no NaN or Infinity)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from anas.errors import AnasError, OutputError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to
    ``path``. Parent folders are created; nothing is left behind when anything fails, not
    even the folders this call created."""
    path = Path(path)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot write {path}: {blocker} is a file, not a folder")
    new_folders = [p for p in path.parents if not p.exists()]  # deepest first
    written = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        remove_stale_temporaries(path)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        _remove_empty(new_folders)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are ordinary files
        os.replace(tmp, path)
        written = True
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
        if not written:
            _remove_empty(new_folders)
    return path


@contextmanager
def file_lock(path: str | Path):
    """Hold an exclusive lock tied to ``path`` (on the hidden file ``.NAME.lock`` beside
    it) while the block runs: other processes that ask for it wait. The operating system
    releases it when the process ends, however it ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+b") as handle:
        _lock(handle.fileno())
        try:
            yield
        finally:
            _unlock(handle.fileno())


if os.name == "nt":  # pragma: no cover - Windows
    import msvcrt

    def _lock(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after 10 s; keep waiting
                continue

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


STALE_AFTER_SECONDS = 3600.0


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what killed writers left in ``path``'s folder: temporaries of anas
    (``.NAME.PID.XXXX.tmp``) whose process is gone; and for ``path`` itself also those that
    are older than an hour where the process cannot be told (Windows, a name written by
    an earlier version without the process number). Returns what it removed."""
    removed = []
    own_prefix = f".{path.name}."
    for tmp in path.parent.glob(".*.tmp"):
        pid = _writer_pid(tmp.name)
        if pid is not None and os.name != "nt":
            stale = not _process_alive(pid)
        else:
            stale = tmp.name.startswith(own_prefix) and _older_than(tmp, STALE_AFTER_SECONDS)
        if stale:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _writer_pid(name: str) -> int | None:
    """The process number in a temporary's name ``.NAME.PID.XXXX.tmp``, or None."""
    parts = name.split(".")
    if len(parts) < 5 or not parts[-3].isdigit():
        return None
    return int(parts[-3])


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (POSIX: signal 0 only asks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; stop at the first one something else now uses
        try:
            folder.rmdir()
        except OSError:
            return


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def parse_yaml(text: str, source: str, error: type[AnasError] = AnasError) -> Any:
    """``yaml.safe_load`` of ``text``; malformed YAML is one ``error`` naming ``source`` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{source} is not valid YAML{where}") from None


def read_yaml(path: str | Path, what: str, error: type[AnasError] = AnasError) -> Any:
    """The YAML file ``path`` (``what`` names it in messages: "config file")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} cannot be read: {exc}") from None
    return parse_yaml(text, f"{what} {path}", error)


def read_json(path: str | Path, what: str, error: type[AnasError] = AnasError) -> Any:
    """The JSON file ``path`` (``what`` names it in messages: "subnet file"); a missing,
    unreadable or malformed file is one ``error``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinity) replaced by None, so that it
    is valid JSON (which has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def json_text(value: Any) -> str:
    """Strict, indented JSON of ``value`` (non-finite floats as null), with a final newline."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_text(path, json_text(value))
