import subprocess
import sys

import pytest

from anas.cli import allocator

# Forward+backward passes of a tiny subnet, in a fresh process (the setting is process-wide).
# With glibc's defaults this measured 18,000-31,000 page faults over the 10 passes (freed
# memory given back to the system and faulted in again); kept, 0-700.
_PASSES = """
import resource, sys, torch
import numpy as np
import torch.nn.functional as F
from anas.cli.allocator import keep_freed_memory
from anas.space.arch import sample_archs
from anas.space.schema import load_space
from anas.nn.supernet import Supernet
assert keep_freed_memory()
torch.manual_seed(0)
space = load_space("tiny")
supernet = Supernet(space).train()
arch = sample_archs(space, 1, np.random.default_rng(1))[0]
supernet.set_active(arch)
images, labels = torch.randn(32, 3, arch.resolution, arch.resolution), torch.randint(0, 10, (32,))
def step():
    supernet.zero_grad(set_to_none=True)
    F.cross_entropy(supernet(images), labels).backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_training_passes_reuse_kept_memory():
    done = subprocess.run([sys.executable, "-c", _PASSES], capture_output=True, text=True, check=True)
    assert int(done.stdout.split()[-1]) < 2_000


def test_without_glibc_nothing_changes(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False

    def no_libc(name):
        raise OSError(name)

    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    assert allocator.keep_freed_memory() is False
