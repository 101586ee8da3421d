"""Data-parallel training under ``torchrun``: gloo on CPU, NCCL on GPU.

A sandwich step runs four different subnets through the same parameters, so instead of
wrapping the model in ``DistributedDataParallel`` (which would need unused-parameter
detection and ``no_sync`` on three of the four backward passes) the gradients of the whole
step are averaged in one coalesced all-reduce before the optimizer step. Every rank draws
the same subnets because the samplers share their seed and the estimators' scores are
averaged over ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def device_for(self, device: torch.device) -> torch.device:
        """This process's device in a job on ``device``: each process of a CUDA job takes
        the GPU of its local rank."""
        if device.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return device


def environment_rank() -> int:
    """This process's rank in a ``torchrun`` job (0 outside one), without joining its group."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device_type: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank)


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(tensor)
        tensor /= ctx.world_size
    return tensor


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(tensor)
    return tensor


def all_reduce_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average the gradients of ``params`` over ranks in one flat all-reduce; parameters
    without a gradient (no subnet of the step used them) count as zero."""
    if not ctx.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def all_gather_cat(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on all) concatenated along the first dimension in
    rank order, on every rank."""
    if not ctx.enabled:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered)


def gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's ``obj`` in rank order, on every rank (processes of one job only)."""
    if not ctx.enabled:
        return [obj]
    gathered = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_parameters(module: torch.nn.Module, ctx: DistContext) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if ctx.enabled:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(ctx: DistContext) -> Iterator[DistContext]:
    """Run a job's collective part and leave the process group afterwards. On success the
    ranks wait for each other first: a rank that tears gloo down while another still talks
    to it can make that one abort. After an error there is no waiting (the other ranks may
    never arrive)."""
    try:
        yield ctx
        barrier(ctx)
    finally:
        shutdown(ctx)
