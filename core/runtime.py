"""Set-up shared by the trainers (GRPO, SFT): the process, the trainable model, the optimizer, the loggers.

Kept in one place so that both trainers seed, thread, resume and log the same way.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def prepare_process(trainer_cfg: Any) -> None:
    """Threads, the fp32 matmul library (:mod:`r1gym.core.onednn`) and every RNG seeded from ``trainer.seed``."""
    from r1gym.core import onednn

    if trainer_cfg.threads:
        torch.set_num_threads(int(trainer_cfg.threads))
    onednn.select(trainer_cfg.matmul)
    random.seed(trainer_cfg.seed)
    np.random.seed(trainer_cfg.seed)
    torch.manual_seed(trainer_cfg.seed)


def training_device(trainer_cfg: Any) -> torch.device:
    """``trainer.device``: ``auto`` is this process's GPU (``cuda:LOCAL_RANK``, as torchrun numbers them) when
    torch sees one, else the CPU."""
    import os

    choice = str(getattr(trainer_cfg, "device", "auto") or "auto")
    if choice == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        choice = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    device = torch.device(choice)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"trainer.device={choice}, but torch sees no CUDA GPU (torch {torch.__version__}); "
                             "use trainer.device=cpu or auto")
        torch.cuda.set_device(device)
    return device


def load_trainable(cfg: Any, run_dir: Path) -> tuple[Any, Any, Path | None]:
    """(model in train mode on ``trainer.device``, tokenizer, the checkpoint resumed from or ``None``): the run
    folder's latest checkpoint if there is one, else ``model.name_or_path``; fp32 linears routed through oneDNN
    when chosen (CPU only); ``model.freeze`` groups frozen (with tied embeddings, freezing either freezes both:
    it is one tensor)."""
    from r1gym.core import onednn
    from r1gym.core.checkpoint import latest_checkpoint
    from r1gym.core.models import load_policy
    from r1gym.core.registry import pick

    ckpt = latest_checkpoint(run_dir)
    model, tokenizer = load_policy(cfg.model, str(ckpt) if ckpt else None)
    model.to(training_device(cfg.trainer)).train()
    onednn.patch(model)
    known = {"embeddings": model.get_input_embeddings(), "lm_head": model.get_output_embeddings()}
    for group in cfg.model.freeze:
        pick(known, group, "model.freeze group").requires_grad_(False)
    return model, tokenizer, ckpt


def build_optimizer(model: Any, optim_cfg: Any) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (torch's fused kernel when ``optim.fused``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas),
                             weight_decay=optim_cfg.weight_decay, fused=bool(optim_cfg.fused) or None)


def build_loggers(host: Any, cfg: Any, run_dir: Path) -> Any:
    """The configured logger plugins (``logger.names``, ``logger.params``) as one :class:`LoggerGroup`."""
    from r1gym.core.loggers import LoggerGroup

    return LoggerGroup([host.loggers.get(n)(run_dir, **dict(cfg.logger.params.get(n, {}) or {}))
                        for n in cfg.logger.names])


def restore(checkpoint: Path | None, **stateful: Any) -> int:
    """Load the trainer state saved in ``checkpoint`` into each ``name=object`` (``optimizer``, ``scheduler``,
    ``sampler``: anything with ``load_state_dict``) and every RNG; return the step to resume after (0 when
    there is no checkpoint)."""
    import logging

    from r1gym.core.checkpoint import load_trainer_state, set_rng_state

    if checkpoint is None:
        return 0
    state = load_trainer_state(checkpoint)
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    set_rng_state(state["rng"])
    logging.getLogger(__name__).info("resumed from %s at step %d", checkpoint, int(state["step"]))
    return int(state["step"])


def backward(loss: torch.Tensor, engine: Any, world: int) -> None:
    """Backward of this rank's ``loss``, a share of a sum over ranks. DeepSpeed averages gradients over ranks,
    so its loss is scaled by ``world``; without it the gradients are summed by :func:`optimizer_step`."""
    if engine is not None:
        engine.backward(loss * world, scale_wrt_gas=False)
    else:
        loss.backward()


def optimizer_step(engine: Any, optimizer: torch.optim.Optimizer, max_grad_norm: float, d: Any) -> float:
    """Sum the gradients over ranks, clip them, step and zero them; return the gradient norm before clipping.
    DeepSpeed's ``engine.step()`` does all of it (clipping from its ``gradient_clipping``)."""
    from r1gym.core import distributed

    if engine is not None:
        engine.step()
        return float(engine.get_global_grad_norm() or 0.0)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    distributed.all_reduce_grads(params, d)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def save_all(engine: Any, d: Any, run_dir: Path, step: int, save: Any) -> None:
    """A checkpoint of ``step`` from every rank: DeepSpeed's partitions first (``checkpoints/deepspeed/step_N``,
    collective), then ``save(step)`` on rank 0 alone (weights and trainer state, ``latest`` last; under ZeRO-3
    with the weights gathered), then DeepSpeed's parts of the checkpoints ``save`` dropped; the others wait."""
    from r1gym.core import distributed

    if engine is not None:
        distributed.save_engine_state(engine, run_dir, step)
    with distributed.gathered(engine):
        if d.is_main:
            save(step)
            if engine is not None:
                distributed.prune_engine_states(run_dir)
        distributed.barrier(d)


def autocast(trainer_cfg: Any, model: Any) -> Any:
    """The configured mixed-precision context for forward passes (``trainer.autocast``; a no-op for fp32)."""
    import contextlib

    from r1gym.core.registry import pick

    mode = trainer_cfg.autocast
    if mode is None:
        return contextlib.nullcontext()
    dtype = pick({"bf16": torch.bfloat16, "fp16": torch.float16}, mode, "trainer.autocast mode")
    device = next(model.parameters()).device.type if model is not None else "cpu"
    return torch.autocast(device_type=device, dtype=dtype)
