"""How a step's gradients become an update on each backend: one strategy object per backend, chosen once
from the config (:func:`choose_strategy`), so that the trainers (:mod:`~r1gym.core.grpo`, :mod:`~r1gym.core.sft`)
never ask which backend they run on.

A strategy owns everything that differs between backends:

* ``wrap``: it receives the module that computes a micro-batch's result (GRPO: completion log-probs, SFT: the
  NLL sum) and the optimizer; ``forward`` runs that module (DeepSpeed's engine must see every forward pass);
* ``backward`` of a micro-batch's loss, a share of a sum over ranks, and ``step``: reduce gradients over
  ranks, clip, step, zero; returns the gradient norm before clipping;
* ``lockstep``: the micro-batches a rank runs, padded where every rank must run as many passes;
  ``needs_pass``: whether a micro-batch that weighs nothing must still run;
* ``checkpointed`` (what the trainer state saves for it), ``save`` (collective) and ``load``;
* ``gathered``: a block in which the model holds its full weights on every rank (ZeRO-3 partitions them).

Why the update equals one process's (:mod:`r1gym.core.distributed`): each micro-batch's loss is weighted by its
share of the *global* batch and gradients are summed over ranks, so the backends differ only in who sums.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from r1gym.core import distributed
from r1gym.core.distributed import Dist


class PlainStrategy:
    """One process: ``loss.backward()``, clip, ``optimizer.step()``; the optimizer's state is saved with the
    trainer state.

    An FSDP2 strategy (not built yet) would subclass this one and implement: ``wrap`` (``fully_shard`` on each
    decoder layer, then on the root, before the optimizer is built over the sharded DTensor parameters),
    ``step`` (``clip_grad_norm_`` over DTensors, then the plain step: FSDP2 reduce-scatters in its backward
    hooks, so ``backward`` stays plain), ``gathered`` (full parameters for generation, weight sync and saving,
    e.g. ``full_tensor()`` per parameter), ``checkpointed``/``save``/``load`` (the sharded optimizer state
    through ``torch.distributed.checkpoint.state_dict``'s ``get_optimizer_state_dict`` /
    ``set_optimizer_state_dict``) and ``lockstep`` (every rank runs every forward, as under ZeRO-3)."""

    name = "plain"

    def __init__(self, dist: Dist, max_grad_norm: float):
        self.dist, self.max_grad_norm = dist, float(max_grad_norm)
        self.module: Callable[..., Any] = _not_wrapped
        self.optimizer: torch.optim.Optimizer | None = None

    def wrap(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Take the module every training forward pass goes through, and the optimizer to step."""
        self.module, self.optimizer = module, optimizer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of this rank's ``loss``, its share of a sum over ranks (gradients are summed in :meth:`step`)."""
        loss.backward()

    def step(self) -> float:
        """Sum gradients over ranks, clip them, step and zero them; the gradient norm before clipping."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.reduce_gradients(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Nothing to reduce in one process."""

    def lockstep(self, chunks: Sequence[Any], filler: Any) -> list[tuple[Any, bool]]:
        """``(chunk, counts)`` for this rank's micro-batches; every one counts."""
        return [(c, True) for c in chunks]

    def needs_pass(self, weight: float) -> bool:
        """Whether a micro-batch of ``weight`` must run: one that weighs nothing changes no gradient here."""
        return weight != 0.0

    def checkpointed(self) -> dict[str, Any]:
        """What the trainer state saves and restores for this strategy (``name: object with state_dict``)."""
        return {"optimizer": self.optimizer}

    def load(self, checkpoint: Path | None) -> None:
        """Load what this strategy keeps outside the trainer state (nothing here)."""

    def save(self, run_dir: Path, step: int, write: Callable[[int], Any]) -> None:
        """A checkpoint of ``step``: ``write(step)`` on rank 0 with the full weights; the others wait."""
        with self.gathered():
            if self.dist.is_main:
                write(step)
            distributed.barrier(self.dist)

    def gathered(self) -> contextlib.AbstractContextManager[None]:
        """The model's weights are whole on every rank already."""
        return contextlib.nullcontext()


class DDPStrategy(PlainStrategy):
    """Data-parallel over ``torchrun``'s processes: gradients summed over ranks in one flat all-reduce before
    clipping (:func:`~r1gym.core.distributed.all_reduce_grads`), so every rank steps to the same weights."""

    name = "ddp"

    def reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        distributed.all_reduce_grads(params, self.dist)


class DeepSpeedStrategy(PlainStrategy):
    """DeepSpeed ZeRO-1/2/3 (``trainer.deepspeed``): its engine wraps the forward module, reduces gradients per
    backward, clips (``gradient_clipping``) and steps; the optimizer's partitions are saved in DeepSpeed's own
    format, one per rank, next to the checkpoint (``checkpoints/deepspeed/step_N``). The trainer schedules the
    learning rate and the micro-batches itself (``managed_gradient_accumulation: false``)."""

    name = "deepspeed"

    def __init__(self, dist: Dist, max_grad_norm: float, trainer_cfg: Any):
        super().__init__(dist, max_grad_norm)
        self.config = deepspeed_config(trainer_cfg, max_grad_norm)
        self.zero3 = self.config["zero_optimization"]["stage"] == 3

    def wrap(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        try:
            import deepspeed
        except ImportError as exc:
            raise ImportError("trainer.deepspeed needs DeepSpeed: pip install 'r1gym[deepspeed]'") from exc
        self.optimizer = optimizer
        self.module, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, config=self.config)

    def backward(self, loss: torch.Tensor) -> None:
        """DeepSpeed averages gradients over ranks, so the loss (a share of a sum) is scaled by ``world``."""
        self.module.backward(loss * self.dist.world, scale_wrt_gas=False)

    def step(self) -> float:
        self.module.step()
        return float(self.module.get_global_grad_norm() or 0.0)

    def lockstep(self, chunks: Sequence[Any], filler: Any) -> list[tuple[Any, bool]]:
        """Padded with ``(filler, False)`` to the busiest rank's count: every rank must run as many forward and
        backward passes (ZeRO reduces gradients per backward, ZeRO-3 gathers weights per forward)."""
        out = super().lockstep(chunks, filler)
        return out + [(filler, False)] * (distributed.global_max(len(out), self.dist) - len(out))

    def needs_pass(self, weight: float) -> bool:
        """Always: a rank that skipped a pass would leave the others waiting in its collectives."""
        return True

    def checkpointed(self) -> dict[str, Any]:
        return {}  # the optimizer's partitions are in DeepSpeed's own checkpoint

    def load(self, checkpoint: Path | None) -> None:
        """Every rank loads its partitions of ``checkpoint`` (a ``checkpoints/step_N`` folder) from DeepSpeed's part."""
        if checkpoint is None:
            return
        checkpoint = Path(checkpoint)
        self.module.load_checkpoint(str(checkpoint.parent / "deepspeed"), tag=checkpoint.name,
                                    load_optimizer_states=True, load_lr_scheduler_states=False)

    def save(self, run_dir: Path, step: int, write: Callable[[int], Any]) -> None:
        """Every rank's partitions first (collective), then the weights and trainer state on rank 0, then the
        DeepSpeed parts of the checkpoints that ``keep_checkpoints`` dropped."""
        self.module.save_checkpoint(str(Path(run_dir) / "checkpoints" / "deepspeed"), tag=f"step_{step:06d}",
                                    save_latest=False)

        def write_and_prune(s: int) -> None:
            write(s)
            prune_deepspeed_states(run_dir)

        super().save(run_dir, step, write_and_prune)

    def gathered(self) -> contextlib.AbstractContextManager[None]:
        """Under ZeRO-3, the full weights on every rank for the block (:func:`_gathered_zero3`); else a no-op."""
        return _gathered_zero3(self.module) if self.zero3 else contextlib.nullcontext()


def _not_wrapped(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the training strategy has no module yet: the trainer's setup() wraps one")


def choose_strategy(trainer_cfg: Any, dist: Dist, max_grad_norm: float) -> PlainStrategy:
    """The strategy the config asks for: DeepSpeed when ``trainer.deepspeed`` is set, DDP over several
    processes, else one process."""
    if trainer_cfg.deepspeed:
        return DeepSpeedStrategy(dist, max_grad_norm, trainer_cfg)
    return DDPStrategy(dist, max_grad_norm) if dist.enabled else PlainStrategy(dist, max_grad_norm)


# -- DeepSpeed helpers -----------------------------------------------------------------------------------
def deepspeed_config(trainer_cfg: Any, max_grad_norm: float) -> dict[str, Any]:
    """The DeepSpeed config generated from ours: ZeRO ``trainer.deepspeed.stage``, gradient clipping from the
    optimizer config, gradient accumulation left to the trainer (``managed_gradient_accumulation: false``: the
    trainer runs a varying number of micro-batches per step and calls ``step()`` once), then
    ``trainer.deepspeed.config`` deep-merged over it (raw DeepSpeed keys pass through)."""
    from r1gym.core.config import to_plain
    from r1gym.core.env_factory import deep_merge

    ds = dict(to_plain(trainer_cfg.deepspeed))
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


def prune_deepspeed_states(run_dir: Any) -> None:
    """Drop DeepSpeed's parts of the checkpoints that ``keep_checkpoints`` dropped (rank 0, after saving)."""
    kept = {p.name for p in (Path(run_dir) / "checkpoints").glob("step_*")}
    for old in (Path(run_dir) / "checkpoints" / "deepspeed").glob("step_*"):
        if old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _gathered_zero3(engine: Any) -> Iterator[None]:
    """Full weights on every rank for the duration, with ZeRO-3's fetch/release hooks removed, so that the
    model can run outside the engine: generation (thousands of small forward passes, each of which would
    otherwise all-gather every layer again), weight sync to the sampler, and rank-0-only evaluation and
    ``save_pretrained``. Collective: every rank must enter.

    Costs one full copy of the weights per rank while open (DeepSpeed's
    :func:`~deepspeed.runtime.zero.stage3.unwrap_model_for_generation`, as TRL's ``ds3_gather_for_generation``).
    Nothing may keep references to the gathered tensors past the block: they are the pre-update weights after it.
    """
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

    with unwrap_model_for_generation(engine):
        yield
