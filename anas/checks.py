"""Checks of option values that several commands share, one wording per rule.

Each raises a one-line :class:`~anas.errors.AnasError` naming the option and the value
(as plain Python numbers). Comparisons are written so that NaN fails every check.
"""

from __future__ import annotations

import math
import os

from anas.errors import AnasError

MAX_SEED = 2**31 - 1  # what every library anas seeds accepts (LightGBM's is a C int)


def plain(value):
    """A number as Python prints it (``nan``, not ``np.float64(nan)``)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def check_at_least(value: float, minimum: float, option: str, why: str = "") -> None:
    if not value >= minimum:
        raise AnasError(f"{option} must be at least {minimum}{why}, got {plain(value)}")


def check_at_most(value: float, maximum: float, option: str) -> None:
    if not value <= maximum:
        raise AnasError(f"{option} must be at most {maximum:,}, got {plain(value)}")


def check_positive(value: float, option: str) -> None:
    """A finite number above zero."""
    if not (value > 0 and math.isfinite(value)):
        raise AnasError(f"{option} must be a positive finite number, got {plain(value)}")


def check_fraction(value: float, option: str, low_open: bool = False, high_open: bool = False) -> None:
    """A number in [0, 1], with the ends left out where asked."""
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise AnasError(f"{option} must be in {interval}, got {plain(value)}")


def check_seed(seed: int, option: str = "--seed") -> None:
    if not 0 <= seed <= MAX_SEED:
        raise AnasError(f"{option} must be an integer from 0 to {MAX_SEED}, got {plain(seed)}")


def check_calib_batches(calib_batches: int | None) -> None:
    """``--calib-batches``: None means the run's own setting."""
    if calib_batches is not None:
        check_at_least(calib_batches, 1, "--calib-batches")


TABLE_CELL_BYTES = 32
"""Memory per cell of a cost table while it is built (``anas profile --sample``): measured
0.86 kB per subnet of attentive-nas (33 columns) for 10^6 subnets, peak RSS, rounded up."""

SUBNET_BYTES = 33 * TABLE_CELL_BYTES
"""Memory per sampled subnet with its costs, counted at attentive-nas's 33 columns
(``train --prior-samples``)."""

SPREAD_SAMPLE_BYTES = 10 * SUBNET_BYTES
"""Memory per subnet of ``spread_sample`` (``--samples``): it draws a pool of 10 subnets for
each one asked for."""


def available_memory() -> int | None:
    """Bytes this process may still allocate: the memory the system can give without
    swapping (Linux's ``MemAvailable``, which counts reclaimable caches; elsewhere the
    free pages), or the address-space limit (``ulimit -v``) when that is lower; None
    where the system does not say."""
    limits = []
    physical = _linux_mem_available()
    if physical is None:
        try:
            physical = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            physical = None
    if physical is not None:
        limits.append(physical)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft - _address_space_in_use())
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def _linux_mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_in_use() -> int:
    """Bytes of address space this process holds (Linux; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_memory(needed_bytes: float, option: str, value: int) -> None:
    """Refuse a size whose work cannot fit in memory, saying how much it would take."""
    available = available_memory()
    if available is not None and needed_bytes > available:
        raise AnasError(f"{option} {value:,} would need about {_gigabytes(needed_bytes)} of memory and "
                        f"{_gigabytes(available)} are available: ask for fewer")


def _gigabytes(size: float) -> str:
    return f"{size / 2**30:,.1f} GB"
