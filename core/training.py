"""The training core shared by GRPO and SFT: one state object, built in one function, and one trainer shell.

* :class:`TrainState` holds what a checkpoint restores (model, tokenizer, optimizer, scheduler, data sampler,
  step, the checkpoint resumed from); :func:`build_state` builds it whole, so nothing in a trainer is
  half-built between construction and set-up;
* the backend (one process, DDP, DeepSpeed ZeRO) is a strategy object (:mod:`r1gym.core.strategies`),
  chosen once from the config, so trainer code never asks which backend it runs on;
* :class:`TrainerShell` is the loop both trainers share: set-up, loggers, the steps, evaluation when the
  trainer has one, a checkpoint every ``trainer.save_every`` steps, and the stop when rewards stop working.
  A trainer supplies its data (:meth:`TrainerShell.build_data`), the module its forward passes run
  (:meth:`TrainerShell.forward_module`) and one step (:meth:`TrainerShell.training_step`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from r1gym.core import distributed
from r1gym.core.checkpoint import save_checkpoint
from r1gym.core.loggers import LoggerGroup
from r1gym.core.plugins import PluginHost, default_host
from r1gym.core.runtime import autocast, build_loggers, build_optimizer, build_scheduler, load_trainable, \
    prepare_process, restore, training_device
from r1gym.core.strategies import PlainStrategy, choose_strategy

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything a checkpoint saves and restores, besides the strategy's own part (DeepSpeed's partitions)."""

    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: Any  # the data position: anything with state_dict / load_state_dict (PromptSampler, ExampleSampler)
    source: Any  # the data the sampler indexes: GRPO's envs, SFT's encoded examples
    total_steps: int
    step: int  # the step resumed after (0 for a fresh run)
    checkpoint: Path | None  # the checkpoint resumed from

    def checkpointed(self, strategy: PlainStrategy) -> dict[str, Any]:
        """``name: object`` for every part of the trainer state file (``restore`` loads the same names)."""
        return {**strategy.checkpointed(), "scheduler": self.scheduler, "sampler": self.sampler}


def build_state(cfg: DictConfig, run_dir: Path, strategy: PlainStrategy, *, optim_cfg: Any,
                data: Callable[[Any, Any], tuple[Any, int, Any]],
                forward_module: Callable[[Any], torch.nn.Module],
                prepare: Callable[[TrainState], None] = lambda state: None) -> TrainState:
    """Seed the process, load the policy (from the run folder's last checkpoint if there is one), build the
    data (``data(model, tokenizer) -> (sampler, total steps, the data it indexes)``), optimizer and LR schedule, hand the
    strategy the module every training forward pass goes through, let the trainer ``prepare`` what it builds
    around the state (a sampler, a reference model), and restore the checkpoint's state into all of them. The
    RNGs are restored last, so whatever set-up draws from them, a resumed run continues the saved trajectory."""
    prepare_process(cfg.trainer)
    model, tokenizer, ckpt = load_trainable(cfg, run_dir)
    sampler, total, source = data(model, tokenizer)
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg.schedule, optim_cfg.warmup_steps, total)
    strategy.wrap(forward_module(model), optimizer)
    state = TrainState(model, tokenizer, optimizer, scheduler, sampler, source, total, 0, ckpt)
    prepare(state)
    strategy.load(ckpt)
    state.step = restore(ckpt, **state.checkpointed(strategy))
    return state


class TrainerShell:
    """Set-up, the loop over steps, checkpoints, evaluation and loggers, shared by GRPO and SFT.

    Subclasses supply :meth:`build_data`, :meth:`forward_module`, :meth:`training_step` and, to evaluate,
    :meth:`evaluate` with ``eval`` in their config; :meth:`prepare` adds what a trainer needs beyond the state
    (GRPO: envs, the rollout backend, the reference policy)."""

    #: metrics copied into the run summary after every step
    summary_keys: tuple[str, ...] = ()

    def __init__(self, cfg: DictConfig, run_dir: Path, *, host: PluginHost | None, optim_cfg: Any):
        self.cfg, self.run_dir, self.host = cfg, Path(run_dir), host or default_host()
        self.optim_cfg = optim_cfg
        self.dist = distributed.init(cfg.trainer.backend) if cfg.trainer.distributed else distributed.Dist()
        self.strategy = choose_strategy(cfg.trainer, self.dist, optim_cfg.max_grad_norm)
        #: ``with self.autocast():`` the configured mixed-precision context for forward passes
        self.autocast = autocast(cfg.trainer, training_device(cfg.trainer).type)
        self.loggers = LoggerGroup([])
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # -- what a trainer supplies -------------------------------------------------------------------------
    def build_data(self, model: Any, tokenizer: Any) -> tuple[Any, int, Any]:
        """(the data sampler, the number of steps of the run, the data the sampler indexes)."""
        raise NotImplementedError

    def forward_module(self, model: Any) -> torch.nn.Module:
        """The module every training forward pass goes through (the strategy may wrap it)."""
        raise NotImplementedError

    def prepare(self, state: TrainState) -> None:
        """What the trainer needs beyond the state, built once the state is and before the checkpoint is
        restored into it (nothing by default)."""

    def training_step(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """One step: (metrics, samples to log)."""
        raise NotImplementedError

    #: when :meth:`evaluate` runs (``at_start``, ``every`` N steps, ``at_end``); none by default
    NO_EVAL = {"at_start": False, "every": 0, "at_end": False}

    def eval_schedule(self) -> Any:
        """When to evaluate: a mapping with ``at_start``, ``every`` and ``at_end`` (GRPO: ``cfg.eval``)."""
        return self.NO_EVAL

    def evaluate(self, step: int) -> dict[str, float] | None:
        """Held-out evaluation on rank 0, by :meth:`eval_schedule` (a trainer without evaluation never runs it)."""
        return None

    def summary_start(self) -> dict[str, Any]:
        """Extra keys of the run summary (counts of the data, ...)."""
        return {}

    # -- the shell -----------------------------------------------------------------------------------------
    def setup(self) -> int:
        """Build the state and everything else; resume from the run folder's last checkpoint. Returns the step
        to start after."""
        self.state = build_state(self.cfg, self.run_dir, self.strategy, optim_cfg=self.optim_cfg,
                                 data=self.build_data, forward_module=self.forward_module, prepare=self.prepare)
        if hasattr(self.autocast, "resolve"):  # trainer.autocast=auto: timed now, on every rank (a collective)
            self.autocast.resolve()
        if self.dist.is_main:
            self.loggers = build_loggers(self.host, self.cfg, self.run_dir)
        return self.state.step

    def train(self) -> dict[str, Any]:
        start = self.setup()
        total = self.state.total_steps
        self.loggers.start(self.run_dir, OmegaConf.to_container(self.cfg, resolve=True), total_steps=total,
                           start_step=start)
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "status": "failed", "processes": self.dist.world,
                                   "step": start, "total_steps": total, **self.summary_start()}
        ev = self.eval_schedule()
        try:
            if start == 0 and ev["at_start"] and (m := self._main_only(self.evaluate, 0)) is not None:
                summary["eval_start"] = m
            streak = 0
            for step in range(start + 1, total + 1):
                metrics, samples = self.training_step()
                self.loggers.log_metrics(step, metrics)
                self.loggers.log_samples(step, samples)
                summary.update({"step": step, **{k: metrics[k] for k in self.summary_keys}})
                streak = self._watch_rewards(step, metrics, samples, streak, summary)
                if ev["every"] and step % ev["every"] == 0 and step != total:
                    self._main_only(self.evaluate, step)
                if step % self.cfg.trainer.save_every == 0 or step == total:
                    self.save_all(step)
            if ev["at_end"] and total > start and (m := self._main_only(self.evaluate, total)) is not None:
                summary["eval_end"] = m
            summary["status"] = "finished"
        finally:
            self.loggers.finish(summary)
        return summary

    def _watch_rewards(self, step: int, metrics: dict[str, float], samples: list[dict[str, Any]], streak: int,
                       summary: dict[str, Any]) -> int:
        """Count the steps in a row whose share of unscorable completions is over ``trainer.max_unscorable``;
        at ``trainer.unscorable_patience`` of them, stop the run with the most common reasons: a run whose
        rewards stopped working (a dead sandbox, a checker that fails on everything) would otherwise train on
        the few samples left for as long as it is allowed to. Steps without episodes (SFT) never count."""
        t = self.cfg.trainer
        n = metrics.get("episodes", 0.0)
        share = metrics.get("unscorable/count", 0.0) / n if n else 0.0
        streak = streak + 1 if share > t.max_unscorable else 0
        if streak >= t.unscorable_patience:
            failing = sorted(((int(v), k.split("/", 1)[1]) for k, v in metrics.items()
                              if k.startswith("unscorable/") and k != "unscorable/count" and v), reverse=True)
            who = ", ".join(f"{comp} ({k} of {int(n)})" for k, comp in failing) or "unknown"
            reasons = Counter(f"{comp}: {why}" for s in samples for comp, why in (s.get("unscorable") or {}).items())
            top = "; ".join(f"{k} x {why}" for why, k in reasons.most_common(3)) or "see metrics.jsonl unscorable/*"
            message = (f"stopping at step {step}: more than {t.max_unscorable:.0%} of the completions could not be "
                       f"scored for {streak} steps in a row ({share:.0%} at this step); failing: {who}; "
                       f"most common reasons: {top}. "
                       "Fix the reward or its sandbox/checker (or raise trainer.max_unscorable) and continue with "
                       f"r1gym train resume={self.run_dir}")
            summary["error"] = message
            self.save_all(step)
            raise RuntimeError(message)
        return streak

    def _main_only(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on rank 0 only (evaluation: ranks hold the same weights); the others wait. Under ZeRO-3
        every rank gathers the weights first, so rank 0 holds them whole."""
        with self.gathered():
            out = fn(*args) if self.dist.is_main else None
            distributed.barrier(self.dist)
        return out

    def gathered(self) -> Any:
        """A block in which the model holds its full weights on every rank (ZeRO-3 partitions them between
        forward passes); a no-op on the other backends. Collective."""
        return self.strategy.gathered()

    def save_all(self, step: int) -> None:
        """A checkpoint of ``step`` from every rank (collective; the strategy decides who writes what)."""
        self.strategy.save(self.run_dir, step, self.save)

    def save(self, step: int) -> Path:
        """Weights, tokenizer and trainer state of ``step`` (rank 0; :func:`save_checkpoint`)."""
        s = self.state
        state = {name: obj.state_dict() for name, obj in s.checkpointed(self.strategy).items()}
        return save_checkpoint(self.run_dir, step, model=s.model, tokenizer=s.tokenizer, state=state,
                               keep=self.cfg.trainer.keep_checkpoints)

    # -- the state's parts by name, for callers and tests ------------------------------------------------
    @property
    def model(self) -> Any:
        return self.state.model

    @property
    def tokenizer(self) -> Any:
        return self.state.tokenizer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.state.optimizer

    @property
    def scheduler(self) -> Any:
        return self.state.scheduler

    @property
    def sampler(self) -> Any:
        return self.state.sampler

    @property
    def total_steps(self) -> int:
        return self.state.total_steps
