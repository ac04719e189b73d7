"""Data-parallel GRPO across processes started by ``torchrun`` (``trainer=ddp``): the few collective steps the
trainer needs, in one place.

How a step is split, and why it equals the single-process step:

* every rank draws the same prompt indices (the same seeded :class:`~r1gym.core.grpo.PromptSampler`) and keeps
  every ``world``-th one, so **whole groups stay on one rank** and group-relative advantages are exact;
* each micro-batch's loss is weighted by its share of the **global** batch (sequences or tokens, as the loss
  aggregation counts them: :func:`global_units`), and gradients are **summed** across ranks
  (:func:`all_reduce_grads`), so the update is the one a single process would make on all the episodes;
* metrics are averaged over ranks (:func:`mean_metrics`); only rank 0 logs, evaluates and writes checkpoints
  and manifests (ranks hold identical weights after every step, so its checkpoint is everyone's).

CPU runs use the gloo backend, GPU runs NCCL; ``torchrun --nproc_per_node N`` sets the environment. Who sums
the gradients (this module's all-reduce, or DeepSpeed's engine) is the training strategy's business
(:mod:`r1gym.core.strategies`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (``rank`` of ``world``); a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share: every ``world``-th item, starting at ``rank``."""
        return list(items[self.rank :: self.world])


_STATE = {"owned": False}  # whether this module created the process group (vLLM may create one of its own)


def init(backend: str | None = None) -> Dist:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), or stay a
    single process when there is none. ``backend``: ``gloo`` (CPU), ``nccl`` (GPU), or ``None`` to choose."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
        _STATE["owned"] = True
    return Dist(dist.get_rank(), dist.get_world_size())


def global_units(local: float, d: Dist) -> float:
    """The sum of ``local`` over ranks (the global batch's sequence or token count)."""
    if not d.enabled:
        return local
    import torch.distributed as dist

    t = torch.tensor([float(local)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def global_max(local: int, d: Dist) -> int:
    """The largest ``local`` over ranks (e.g. the most micro-batches any rank runs this step)."""
    if not d.enabled:
        return local
    import torch.distributed as dist

    t = torch.tensor([int(local)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_reduce_grads(params: Sequence[torch.Tensor], d: Dist) -> None:
    """Sum every parameter's gradient over ranks, in one flat buffer (a missing gradient counts as zero)."""
    if not d.enabled:
        return
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = grad.clone()
        else:
            p.grad.copy_(grad)
        offset += n


def mean_metrics(metrics: Mapping[str, float], d: Dist) -> dict[str, float]:
    """Each metric averaged over ranks (keys missing on a rank are averaged over the ranks that have them)."""
    if not d.enabled:
        return dict(metrics)
    import torch.distributed as dist

    gathered: list[Any] = [None] * d.world
    dist.all_gather_object(gathered, dict(metrics))
    keys = sorted({k for m in gathered for k in m})
    out = {}
    for k in keys:
        values = [float(m[k]) for m in gathered if k in m and m[k] == m[k]]  # drop NaN
        out[k] = sum(values) / len(values) if values else float("nan")
    return out


def gather_lists(items: Sequence[Any], d: Dist) -> list[Any]:
    """Every rank's ``items``, concatenated in rank order, on every rank (picklable objects; keep them small)."""
    if not d.enabled:
        return list(items)
    import torch.distributed as dist

    gathered: list[Any] = [None] * d.world
    dist.all_gather_object(gathered, list(items))
    return [x for part in gathered for x in part]


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not d.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank0_value(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank of the group :func:`init` joined (``obj`` itself in a single process).
    For code that has no :class:`Dist` at hand (the precision choices); every rank must call it at the same
    point, like any collective."""
    import torch.distributed as dist

    if not (_STATE["owned"] and dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def zero3_partitioned(model: Any) -> bool:
    """Whether DeepSpeed ZeRO-3 manages ``model``'s parameters (they carry a ``ds_id``): code that only sees the
    model (the LM head, a rollout backend) cannot see the engine."""
    return hasattr(next(model.parameters()), "ds_id")


def shutdown() -> None:
    """Leave the process group together (a last barrier, then destroy it), so that no rank exits while another
    is still in a collective. Only a group :func:`init` created; a no-op in a single process."""
    import torch.distributed as dist

    if _STATE["owned"] and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _STATE["owned"] = False
