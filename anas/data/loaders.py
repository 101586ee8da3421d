"""Deterministic data loaders: the same batches in the same order for the same (seed,
epoch), whatever ran before; each rank of a ``torchrun`` job its own shard."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                epoch: int = 0, workers: int = 0, drop_last: bool = False, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """A loader whose batches depend only on (seed, epoch): shuffling draws from a generator
    seeded with ``seed * 1000003 + epoch`` (or a ``DistributedSampler`` when
    ``world_size > 1``). The generator also seeds the workers, so with ``workers > 0`` their
    augmentation is reproducible too; with ``workers == 0`` it follows torch's global RNG."""
    sampler = None
    generator_seed = seed * 1000003 + epoch
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle, seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
        generator_seed += rank << 32  # ranks' workers augment differently
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=torch.Generator().manual_seed(generator_seed),
                      num_workers=workers, drop_last=drop_last, persistent_workers=False,
                      pin_memory=torch.cuda.is_available())


def calibration_loader(dataset, batch_size: int, seed: int, workers: int = 0):
    """Training batches for BN recalibration: shuffled, the same for the same seed."""
    return make_loader(dataset, batch_size, shuffle=True, seed=seed + 1, workers=workers)


def evaluation_loader(dataset, batch_size: int, workers: int = 0, rank: int = 0, world_size: int = 1):
    """The whole split in order (no gradients, so twice the training batch fits); with
    ``world_size > 1``, this rank's shard: every ``world_size``-th image from ``rank`` on, so
    the shards cover the split exactly once."""
    if world_size > 1:
        dataset = Subset(dataset, range(rank, len(dataset), world_size))
    return make_loader(dataset, batch_size * 2, shuffle=False, workers=workers)
