"""How the C library's malloc treats memory that training frees.

A training step frees and allocates the same activations and gradients again every step.
With glibc's defaults, malloc gives the free top of its heap back to the system once it
exceeds a threshold that adapts to the process's history, and serves some large blocks
from fresh ``mmap`` regions; each time, the next step faults those pages in again (on the
project's CPU VM: 1,300-2,300 page faults per forward+backward of a `tiny` subnet at batch
64). :func:`keep_freed_memory` tells malloc to keep freed memory for reuse instead, which
makes training steps on the CPU faster (measured in ``docs/train.md``, Speed). The process
then keeps its peak heap until it ends, as PyTorch's CUDA caching allocator does on a GPU.

The setting is process-wide, so ``anas train`` applies it (``--keep-freed-memory``, the
default) and library code never does on its own.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters of glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap is given back only beyond this (1 GiB)."""
MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size (32 MiB, the most glibc's own adaptive threshold reaches on a
64-bit system) come from the heap, not from ``mmap`` regions of their own."""


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process (the thresholds above).
    Returns whether it took effect: False off Linux or under a C library without glibc's
    ``mallopt`` (musl's accepts no settings), where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
