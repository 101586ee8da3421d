"""anas train's malloc setting: what it asks of glibc, and that nothing else changes it.
(Its effect, page faults per training pass, is measured in benchmarks/allocator.py.)"""

import subprocess
import sys

from anas.cli import allocator


class FakeMallopt:
    """Stands for glibc's mallopt (ctypes sets argtypes and restype on it)."""

    def __init__(self, accept: bool):
        self.calls, self.accept = [], accept

    def __call__(self, parameter, value):
        self.calls.append((parameter, value))
        return int(self.accept)


class FakeLibc:
    def __init__(self, accept: bool = True):
        self.mallopt = FakeMallopt(accept)


def test_keep_freed_memory_raises_both_glibc_thresholds(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert allocator.keep_freed_memory() is True
    assert libc.mallopt.calls == [(allocator._M_TRIM_THRESHOLD, 1 << 30), (allocator._M_MMAP_THRESHOLD, 32 << 20)]


def test_without_glibc_nothing_changes(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False

    def no_libc(name):
        raise OSError(name)

    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    assert allocator.keep_freed_memory() is False
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc(accept=False))  # musl accepts no settings
    assert allocator.keep_freed_memory() is False


def test_training_from_python_leaves_malloc_alone(tmp_path):
    """The library never tunes the process: only the command line calls keep_freed_memory."""
    code = f"""
import anas.cli.allocator as allocator
calls = []
allocator.keep_freed_memory = lambda: calls.append(1) or True
from anas.train.loop import start_training
start_training({{"data": "fake", "epochs": 1, "batch_size": 32, "calib_batches": 1,
                 "sampler": "uniform", "run_dir": {str(tmp_path / "run")!r}}}, progress=False)
print(len(calls))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "0"
    assert "malloc" not in (tmp_path / "run" / "train.log").read_text()
