"""Set-up shared by the trainers (GRPO, SFT) and the sampling jobs (eval, data generation): the process, the
trainable model, the optimizer and its schedule, the loggers, the sampler around a model.

Kept in one place so that every job seeds, threads, samples, resumes and logs the same way.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


def prepare_process(trainer_cfg: Any) -> None:
    """Threads, the fp32 matmul library (:mod:`r1gym.core.onednn`) and every RNG seeded from ``trainer.seed``."""
    prepare_threads(trainer_cfg)
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
    when chosen (CPU only); the ``auto`` precision choices recorded in the run folder (reused on resume,
    :mod:`r1gym.core.precision`); ``model.freeze`` groups frozen (with tied embeddings, freezing either freezes both:
    it is one tensor)."""
    from r1gym.core import onednn, precision
    from r1gym.core.checkpoint import latest_checkpoint
    from r1gym.core.models import load_policy
    from r1gym.core.registry import pick

    ckpt = latest_checkpoint(run_dir)
    # the run's auto precision choices go to its folder; a resumed run reuses them (the matmul route included)
    made = ("trainer.matmul",) if cfg.trainer.matmul == "auto" else ()  # by prepare_process, for this run
    if precision.start_run(run_dir, resume=ckpt is not None, keep=made):
        onednn.select(cfg.trainer.matmul)
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


def autocast(trainer_cfg: Any, device_type: str) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A factory of the configured mixed-precision context for forward passes on ``device_type``
    (``trainer.autocast``; a no-op for fp32). The mode is checked here, once, not at the first forward pass.

    ``auto`` is bf16 autocast where it is clearly faster than fp32 on this machine (:func:`choose_autocast`).
    It is decided later, when the trainer is set up (``resolve``) or else at the first forward pass, not here:
    the trainer builds this factory before the process has chosen its fp32 matmul route (which the fp32 side
    is timed with) and before a resumed run's recorded choice is known (which it reuses)."""
    from r1gym.core.registry import pick

    mode = trainer_cfg.autocast
    if mode is None:
        return contextlib.nullcontext
    dtype = pick({"bf16": torch.bfloat16, "fp16": torch.float16, "auto": torch.bfloat16}, mode,
                 "trainer.autocast mode")
    if mode == "auto":
        return _AutoAutocast(device_type)
    return functools.partial(torch.autocast, device_type=device_type, dtype=dtype)


def choose_autocast(device_type: str, timings: dict[str, float] | None = None) -> str | None:
    """What ``trainer.autocast=auto`` is on this machine: ``"bf16"`` when bf16 autocast's forward + backward of
    an MLP-shaped product is :data:`~r1gym.core.precision.MARGIN` times faster than fp32 (through the chosen
    matmul route), else ``None`` (fp32). A resumed run reuses its recorded choice; ``timings`` (seconds,
    ``{"null": .., "bf16": ..}``) replace the measurement (tests)."""
    from r1gym.core import precision

    key = "trainer.autocast"
    if key in precision.pins():
        return precision.record(key, precision.pins()[key], how="resumed").choice
    timings = timings or precision.autocast_timings(device_type)
    choice = precision.choose(timings, ("null", "bf16"))
    return precision.record(key, None if choice == "null" else choice, timings,
                            what="512x576->1536 forward+backward").choice


class _AutoAutocast:
    """``trainer.autocast=auto``: the context factory, resolved by :func:`choose_autocast` on its first call."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.factory: Callable[[], contextlib.AbstractContextManager[Any]] | None = None

    def resolve(self) -> None:
        """Decide now (the trainer calls this once set up, on every rank: under torch.distributed the choice
        is a collective, and the first forward pass may be rank 0's evaluation alone)."""
        if self.factory is None:
            bf16 = choose_autocast(self.device_type) == "bf16"
            self.factory = functools.partial(torch.autocast, device_type=self.device_type, dtype=torch.bfloat16) \
                if bf16 else contextlib.nullcontext

    def __call__(self) -> contextlib.AbstractContextManager[Any]:
        self.resolve()
        return self.factory()


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int):
    """Linear warm-up, then constant / linear decay / cosine decay to 0 over ``total`` steps."""
    from r1gym.core.registry import pick

    def constant(p: float) -> float:
        return 1.0

    def linear(p: float) -> float:
        return max(0.0, 1.0 - p)

    def cosine(p: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))

    shape = pick({"constant": constant, "linear": linear, "cosine": cosine}, name, "LR schedule")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return shape((step - warmup) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Sampler:
    """A policy ready to sample from: the model, its tokenizer, the rollout backend around it and the prompt
    renderer (:func:`build_sampler`)."""

    model: Any
    tokenizer: Any
    backend: Any
    renderer: Any


def build_sampler(cfg: Any, model: Any, tokenizer: Any, *, host: Any = None) -> Sampler:
    """The one way a model becomes a sampler, for training, ``r1gym eval`` and data generation alike: fp32
    linears routed through oneDNN where chosen, the rollout backend ``rollout.backend`` with ``rollout.params``,
    prompts rendered in ``model.prompt_format``. Under ZeRO-3, call it with the weights gathered (a backend may
    read or push them when it starts)."""
    from omegaconf import OmegaConf

    from r1gym.core import onednn
    from r1gym.core.plugins import default_host
    from r1gym.core.prompts import PromptRenderer

    onednn.patch(model)
    factory = (host or default_host()).rollout_backends.get(cfg.rollout.backend)
    backend = factory(model, tokenizer, **OmegaConf.to_container(cfg.rollout.params, resolve=True))
    return Sampler(model, tokenizer, backend, PromptRenderer(tokenizer, cfg.model.prompt_format))


def prepare_threads(trainer_cfg: Any) -> None:
    """``trainer.threads`` and the fp32 matmul library (:mod:`r1gym.core.onednn`), for jobs that sample only."""
    from r1gym.core import onednn

    if trainer_cfg.threads:
        torch.set_num_threads(int(trainer_cfg.threads))
    onednn.select(trainer_cfg.matmul)
