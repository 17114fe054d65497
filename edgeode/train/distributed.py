"""Data-parallel training across processes (``torchrun --nproc_per_node=K edgeode train ...``).

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; when
``WORLD_SIZE > 1`` the trainer joins a process group (gloo, CPU), wraps the model in
``DistributedDataParallel`` and shards each epoch with a ``DistributedSampler``. Only rank 0 writes
the run directory. At the end every rank hashes its weights and rank 0 checks they are identical.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from edgeode.errors import ConfigError

__all__ = ["DistContext", "init_distributed", "state_hash", "gather_hashes", "local_threads"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def init_distributed() -> DistContext:
    """Join the process group torchrun describes (gloo backend), or return a single-process context."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    rank = _env_int("RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local_world, False)
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise ConfigError("WORLD_SIZE > 1 but MASTER_ADDR / MASTER_PORT are not set; launch with torchrun")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_world, True)


#: Below this many parameters a model's ops are too small for intra-op threads to pay off: on a
#: busy 2-core machine two threads made a 252-parameter spiral step 20x and a 36k-parameter digits
#: ODE-Net step over 10x slower than one thread (thread synchronisation, not arithmetic, dominates).
SMALL_MODEL_PARAMETERS = 100_000


def local_threads(ctx: DistContext, requested: int | None, parameters: int | None = None) -> int:
    """Torch threads for this process.

    ``requested`` if given; else 1 for small models (< :data:`SMALL_MODEL_PARAMETERS`); else all
    cores shared among the processes of this node.
    """
    if requested is not None:
        return requested
    if parameters is not None and parameters < SMALL_MODEL_PARAMETERS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, ctx.local_world_size))


def state_hash(model: nn.Module) -> str:
    """SHA-256 of a model's state_dict (names, dtypes, shapes and bytes) -- equal iff weights are identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def gather_hashes(ctx: DistContext, model: nn.Module) -> list[str]:
    """Every rank's :func:`state_hash`, in rank order (a one-element list outside a distributed run)."""
    own = state_hash(model)
    if not ctx.enabled:
        return [own]
    out: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(out, own)
    return [str(h) for h in out]
