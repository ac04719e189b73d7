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

CPU runs use the gloo backend, GPU runs NCCL; ``torchrun --nproc_per_node N`` sets the environment.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from collections.abc import Iterator, Mapping, Sequence
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


# -- DeepSpeed ZeRO (trainer=deepspeed_zero2 / deepspeed_zero3) ----------------------------------------------
def deepspeed_config(trainer_cfg: Any, max_grad_norm: float) -> dict[str, Any]:
    """The DeepSpeed config generated from ours: ZeRO ``trainer.deepspeed.stage``, gradient clipping from the
    optimizer config, gradient accumulation left to the trainer (``managed_gradient_accumulation: false``: the
    trainer runs a varying number of micro-batches per step and calls ``step()`` once), then
    ``trainer.deepspeed.config`` deep-merged over it (raw DeepSpeed keys pass through)."""
    from omegaconf import OmegaConf

    from r1gym.core.envs import deep_merge

    ds = OmegaConf.to_container(trainer_cfg.deepspeed, resolve=True) if OmegaConf.is_config(trainer_cfg.deepspeed) \
        else dict(trainer_cfg.deepspeed)
    stage = int(ds.get("stage", 2))
    if stage not in (1, 2, 3):
        raise ValueError(f"trainer.deepspeed.stage={stage}: DeepSpeed ZeRO has stages 1, 2 and 3")
    base = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": float(max_grad_norm),
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }
    return deep_merge(base, ds.get("config") or {})


def deepspeed_engine(model: Any, optimizer: Any, config: dict[str, Any]) -> Any:
    """``deepspeed.initialize`` around our model and (client) optimizer; the process group must exist."""
    try:
        import deepspeed
    except ImportError as exc:
        raise ImportError("trainer.deepspeed needs DeepSpeed: pip install 'r1gym[deepspeed]'") from exc
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def save_engine_state(engine: Any, run_dir: Any, step: int) -> None:
    """Every rank writes its partitions (optimizer states; ZeRO-3 also parameters) to
    ``checkpoints/deepspeed/step_N``, DeepSpeed's own format. Collective; call before the weights are saved."""
    engine.save_checkpoint(str(Path(run_dir) / "checkpoints" / "deepspeed"), tag=f"step_{step:06d}", save_latest=False)


def prune_engine_states(run_dir: Any) -> None:
    """Drop DeepSpeed's parts of the checkpoints that ``keep_checkpoints`` dropped (rank 0, after saving)."""
    import shutil

    kept = {p.name for p in (Path(run_dir) / "checkpoints").glob("step_*")}
    for old in (Path(run_dir) / "checkpoints" / "deepspeed").glob("step_*"):
        if old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)


def load_engine_state(engine: Any, checkpoint: Any) -> None:
    """Every rank loads its partitions of ``checkpoint`` (a ``checkpoints/step_N`` folder) from DeepSpeed's part."""
    checkpoint = Path(checkpoint)
    engine.load_checkpoint(str(checkpoint.parent / "deepspeed"), tag=checkpoint.name, load_optimizer_states=True,
                           load_lr_scheduler_states=False)


def zero3_partitioned(model: Any) -> bool:
    """Whether DeepSpeed ZeRO-3 manages ``model``'s parameters (they carry a ``ds_id``): code that only sees the
    model (the LM head, a rollout backend) cannot see the engine."""
    return hasattr(next(model.parameters()), "ds_id")


def lockstep(chunks: Sequence[Any], filler: Any, engine: Any, d: Dist) -> list[tuple[Any, bool]]:
    """``(chunk, counts)`` for this rank's micro-batches; under DeepSpeed padded with ``(filler, False)`` to the
    busiest rank's count, because every rank must run as many forward and backward passes (ZeRO reduces
    gradients per backward, ZeRO-3 gathers weights per forward). A pass that does not count weighs 0."""
    out = [(c, True) for c in chunks]
    if engine is not None and d.enabled:
        out += [(filler, False)] * (global_max(len(out), d) - len(out))
    return out


def is_zero3(engine: Any) -> bool:
    """Whether ``engine`` partitions the parameters themselves (ZeRO stage 3): outside a forward pass each rank
    then holds only its shard of every weight."""
    return engine is not None and engine.zero_optimization_stage() == 3


@contextlib.contextmanager
def gathered(engine: Any) -> Iterator[None]:
    """Full weights on every rank for the duration, with ZeRO-3's fetch/release hooks removed, so that the
    model can run outside the engine: generation (thousands of small forward passes, each of which would
    otherwise all-gather every layer again), weight sync to the sampler, and rank-0-only evaluation and
    ``save_pretrained``. Collective: every rank must enter. A no-op unless ``engine`` is ZeRO-3.

    Costs one full copy of the weights per rank while open (DeepSpeed's
    :func:`~deepspeed.runtime.zero.stage3.unwrap_model_for_generation`, as TRL's ``ds3_gather_for_generation``).
    Nothing may keep references to the gathered tensors past the block: they are the pre-update weights after it.
    """
    if not is_zero3(engine):
        yield
        return
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

    with unwrap_model_for_generation(engine):
        yield


def shutdown() -> None:
    """Leave the process group together (a last barrier, then destroy it), so that no rank exits while another
    is still in a collective. Only a group :func:`init` created; a no-op in a single process."""
    import torch.distributed as dist

    if _STATE["owned"] and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _STATE["owned"] = False
