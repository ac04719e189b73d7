"""The GRPO trainer: a short loop over small, separately tested parts.

One step (DESIGN.md, "One GRPO step"):

1. take ``prompts_per_step`` task indices from the :class:`PromptSampler`;
2. :func:`~r1gym.core.rollout.collect_episodes`: G episodes per prompt, scored by the envs;
   with DAPO dynamic sampling, groups whose rewards are all equal are dropped and more prompts drawn;
3. group-relative advantages (``algo.advantage``: ``grpo`` or ``dr_grpo``); unscorable samples (reward NaN)
   are left out of group statistics and of the loss, and counted;
4. ``num_iterations`` passes of the clipped surrogate + beta * k3 KL over micro-batches (gradient
   accumulation weighted so the result equals one big batch), gradient clipping, AdamW, LR schedule;
5. weight sync to the rollout backend, metrics to the loggers, a checkpoint every ``save_every`` steps.

With ``rollout.overlap=true`` (a backend that generates in its own process), step k+1's rollout runs in the
background during step k's update, one step off-policy and corrected (:mod:`r1gym.core.overlap`); with it off,
the step above runs as written, unchanged.

The loop, checkpoints, evaluation schedule and the backend (one process, DDP, DeepSpeed) are the training
core's (:mod:`r1gym.core.training`, :mod:`r1gym.core.strategies`); this module supplies GRPO's data (the envs
and the prompt sampler), its step, and :meth:`GRPOTrainer.update` as a few named steps whose variants
(advantage estimator, loss aggregation, reference policy, importance correction) are chosen once.

Kept from the papers: everything in the GRPO objective, clip-higher, the three loss aggregations,
overlong masking, dynamic sampling. Dropped: the value model (GRPO has none) and any reward model
training (rewards are plugins).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from r1gym.core import advantages as adv_mod
from r1gym.core import distributed, evaluation, losses, onednn, overlap
from r1gym.core.batch import CompletionLogprobs, PackedBatch, completion_logprobs, pack
from r1gym.core.env_factory import make_envs, primary_reward
from r1gym.core.models import load_model
from r1gym.core.plugins import PluginHost
from r1gym.core.prompts import PromptRenderer
from r1gym.core.rollout import Episode, RolloutTimings, SamplingParams, collect_episodes
from r1gym.core.runtime import Sampler, build_sampler, build_scheduler  # noqa: F401 -- build_scheduler: re-exported
from r1gym.core.training import TrainerShell, TrainState

log = logging.getLogger(__name__)


class PromptSampler:
    """Task indices in a fresh seeded permutation per epoch; its position is part of every checkpoint."""

    def __init__(self, num_tasks: int, seed: int):
        self.num_tasks, self.seed, self.epoch, self.pos = num_tasks, seed, 0, 0
        #: with rollout.overlap: a rollout already drawn from this position but not trained on yet (drained
        #: before a checkpoint, so that a resumed run trains on it next, as the uninterrupted one would)
        self.pending: Any = None

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_tasks)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            order = self._order()
            n = min(k - len(out), self.num_tasks - self.pos)
            out += order[self.pos : self.pos + n].tolist()
            self.pos += n
            if self.pos >= self.num_tasks:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "pos": self.pos}
        if self.pending is not None:
            state["pending"] = self.pending
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.pending = state.get("pending")


@dataclass
class RolloutParts:
    """What GRPO needs beyond the training state, built once in set-up (:meth:`GRPOTrainer.prepare`): the envs,
    the sampler around the policy, the reward that counts as accuracy, and the variants that depend on them."""

    envs: list[Any]
    sampler: Sampler
    accuracy_key: str | None
    ref_model: Any  # a frozen copy of the base model, or None (beta = 0, or LoRA: adapters off)
    reference: Callable[[PackedBatch], torch.Tensor | None]  # reference log-probs of a batch, or None (beta = 0)
    is_mode: str  # importance correction, ``auto`` resolved
    correct: Callable[[torch.Tensor, PackedBatch], tuple[torch.Tensor | None, dict[str, float]]]


class GRPOTrainer(TrainerShell):
    def __init__(self, cfg: DictConfig, run_dir: Path, *, host: PluginHost | None = None):
        algo = cfg.algo
        if algo.group_size < 2:
            raise ValueError(f"algo.group_size must be >= 2 for group-relative advantages, got {algo.group_size}")
        # every variant is chosen here, once (a bad name fails before a model is loaded)
        self.advantage_fn = adv_mod.get_advantage_estimator(algo.advantage)
        aggregate = losses.get_loss_aggregation(algo.loss_aggregation)
        self.units = losses.AGGREGATION_UNITS[algo.loss_aggregation]  # what the aggregation divides by
        self.loss_fn = functools.partial(
            losses.grpo_loss, eps_low=algo.eps_low, eps_high=algo.eps_high, beta=algo.beta, aggregation=aggregate,
            normalizer=float(cfg.rollout.max_episode_tokens or cfg.rollout.max_new_tokens))
        # old log-probs are stored only with several iterations (with one, the ratio's denominator is lp.detach())
        self.old_logprobs = self._policy_no_grad if algo.num_iterations > 1 else _nothing
        self.sampling = SamplingParams.from_config(cfg.rollout)
        self.lp_kw = {"temperature": self.sampling.temperature or 1.0, "chunk": algo.logprob_chunk}
        G = algo.group_size
        self.micro_batch_rows = max(G, -(-max(1, algo.micro_batch_size) // G) * G)
        super().__init__(cfg, run_dir, host=host, optim_cfg=algo.optim)
        #: rollout.overlap: the rollout running ahead (None: the synchronous step); weight versions = updates done
        self.ahead: overlap.RolloutAhead | None = None
        if cfg.rollout.get("overlap", False):
            name = cfg.rollout.backend
            problem = overlap.overlap_problem(name, self.host.rollout_backends.get(name), distributed=self.dist.enabled)
            if problem is None and algo.is_correction == "none":
                problem = ("rollout.overlap=true trains on samples of the previous weights, which the importance "
                           "correction accounts for; algo.is_correction=none would ignore it: use auto, truncate or mask")
            if problem:
                raise ValueError(problem)
            self.ahead = overlap.RolloutAhead()
        self.eval_envs: list[Any] | None = None  # made at the first evaluation, with its size
        self.eval_indices: list[int] = []
        self.eval_k = 1
        if self.dist.enabled:
            if self.dist.is_main:
                log.info("data-parallel training on %d processes", self.dist.world)
            if algo.prompts_per_step % self.dist.world:
                raise ValueError(f"algo.prompts_per_step={algo.prompts_per_step} must be a multiple of the "
                                 f"{self.dist.world} processes (whole groups stay on one rank)")

    # -- set-up ----------------------------------------------------------------------------------------
    def build_data(self, model: Any, tokenizer: Any) -> tuple[PromptSampler, int, list[Any]]:
        envs = make_envs(self.cfg.env, self.cfg.algo.prompts_per_step * self.cfg.algo.group_size, host=self.host)
        return PromptSampler(len(envs[0].unwrapped.source), self.cfg.trainer.seed), self.cfg.trainer.max_steps, envs

    def forward_module(self, model: Any) -> torch.nn.Module:
        return CompletionLogprobs(model)  # a DeepSpeed engine must run the policy's log-prob pass itself

    def prepare(self, state: TrainState) -> None:
        """The sampler around the policy, the reference policy and the importance correction."""
        cfg, algo = self.cfg, self.cfg.algo
        with self.gathered():  # a backend may read or push the weights when it starts (vllm_server does)
            sampler = build_sampler(cfg, state.model, state.tokenizer, host=self.host)
        if self.ahead is not None:  # the rollout thread renders prompts while this one decodes samples: a
            # tokenizer of its own (a fast tokenizer is not made for use from two threads at once)
            sampler = dataclasses.replace(sampler, renderer=PromptRenderer(copy.deepcopy(state.tokenizer),
                                                                           cfg.model.prompt_format))
        ref_model, reference = self._reference(state.model)
        is_mode = algo.is_correction
        if is_mode == "auto":  # correct only what needs it: a sampler whose log-probs are not the trainer's,
            # or samples of older weights (rollout.overlap: a policy lag of one update)
            exact = getattr(sampler.backend, "exact_logprobs", False) and self.ahead is None
            is_mode = "none" if exact else "truncate"
        losses.importance_weights(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), mode=is_mode,
                                  level=algo.is_level, cap=algo.is_cap)  # a bad setting fails here
        correct = _no_correction if is_mode == "none" else functools.partial(
            _importance_correction, mode=is_mode, level=algo.is_level, cap=algo.is_cap)
        self.parts = RolloutParts(state.source, sampler, primary_reward(state.source[0]), ref_model, reference,
                                  is_mode, correct)

    def setup(self) -> int:
        start = super().setup()
        self._step = self._version = self._synced = start  # steps run, updates done, updates the backend has
        if self.ahead is None and self.sampler.pending is not None:
            log.warning("the checkpoint holds %d episodes sampled ahead by rollout.overlap=true; with the overlap off "
                        "this run samples its steps itself, so they are dropped (their prompts are skipped)",
                        len(self.sampler.pending[0]))
            self.sampler.pending = None
        if self.dist.rank > 0:  # rank 0's RNG is the checkpointed one; the others sample from streams of their own
            torch.manual_seed(self.cfg.trainer.seed + 7919 * self.dist.rank + start)
        return start

    def _reference(self, model: Any) -> tuple[Any, Callable[[PackedBatch], torch.Tensor | None]]:
        """(reference model or None, the function giving a batch's reference log-probs): none with beta = 0;
        with LoRA the policy with its adapters switched off; else a frozen copy of the base model."""
        cfg = self.cfg
        if cfg.algo.beta <= 0:
            return None, _nothing
        if cfg.model.lora.r > 0:
            def adapters_off(batch: PackedBatch) -> torch.Tensor:
                with model.disable_adapter():
                    return self._policy_no_grad(batch)
            return None, adapters_off
        ref_model = load_model(cfg.model.name_or_path, dtype=cfg.model.dtype).eval().requires_grad_(False)
        ref_model.to(next(model.parameters()).device)
        onednn.patch(ref_model)
        return ref_model, functools.partial(self._no_grad_logprobs, forward=functools.partial(completion_logprobs, ref_model))

    # -- the parts by name, for callers and tests --------------------------------------------------------
    @property
    def backend(self) -> Any:
        return self.parts.sampler.backend

    @property
    def renderer(self) -> PromptRenderer:
        return self.parts.sampler.renderer

    @property
    def envs(self) -> list[Any]:
        return self.parts.envs

    @property
    def ref_model(self) -> Any:
        return self.parts.ref_model

    @property
    def is_mode(self) -> str:
        return self.parts.is_mode

    @property
    def accuracy_key(self) -> str | None:
        return self.parts.accuracy_key

    # -- one step --------------------------------------------------------------------------------------
    def training_step(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        return self.train_step()

    def rollout(self, timings: RolloutTimings) -> tuple[list[Episode], dict[str, float]]:
        """G episodes for ``prompts_per_step`` prompts; with dynamic sampling, only groups with signal.

        Across ranks, every decision is taken on global counts (groups kept and dropped, summed over ranks), so
        all ranks draw the same prompts in the same rounds, as one process would; each keeps its share, and a
        rank may end a step with more groups than another, or none (:meth:`update` handles both)."""
        algo = self.cfg.algo
        G, want = algo.group_size, algo.prompts_per_step
        kept: list[Episode] = []
        rounds, dropped, n_groups, kept_groups = 0, 0, 0, 0
        while True:
            rounds += 1
            need = want - kept_groups
            with self.gathered(), self.autocast():
                eps = collect_episodes(  # every rank draws the same indices and keeps its share
                    self.envs, self.dist.shard(self.sampler.take(need)), G, self.backend, self.renderer, self.sampling,
                    max_episode_tokens=self.cfg.rollout.max_episode_tokens, first_group=n_groups, timings=timings,
                    reward_workers=self.cfg.rollout.reward_workers,
                )
            n_groups += need
            if not algo.dynamic_sampling:
                kept += eps
                break
            r = torch.tensor([e.reward for e in eps])
            gid = torch.tensor([e.group for e in eps])
            flat = adv_mod.zero_variance_groups(r, gid, valid=~torch.isnan(r)) if eps else torch.zeros(0, dtype=torch.bool)
            kept += [e for e, f in zip(eps, flat.tolist()) if not f]
            dropped += int(distributed.global_units(int(flat.sum()) // G, self.dist))
            kept_groups = int(distributed.global_units(len(kept) // G, self.dist))
            if kept_groups >= want or rounds >= algo.max_sampling_rounds:
                break
        stats = {"sampling/rounds": float(rounds), "sampling/groups_dropped": float(dropped)}
        if not kept_groups and algo.dynamic_sampling:  # every group was flat in every round: train on nothing, but say so
            log.warning("dynamic sampling found no group with reward variance in %d rounds", rounds)
        return kept, stats

    def train_step(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Sample this step's episodes and update the policy on them; (metrics, logged samples)."""
        if self.ahead is not None:
            return self._overlapped_step()
        t_step = time.perf_counter()
        timings = RolloutTimings()
        episodes, metrics = self.rollout(timings)
        t = {"generate": timings.generate, "reward": timings.reward}
        if not distributed.global_units(len(episodes), self.dist):  # nothing to train on anywhere (all ranks agree)
            return {**metrics, "time/step": time.perf_counter() - t_step}, []
        update_metrics, samples = self.update(episodes, t)
        metrics.update(update_metrics)
        metrics.update({f"time/{k}": v for k, v in t.items()})
        metrics["time/step"] = time.perf_counter() - t_step
        return distributed.mean_metrics(metrics, self.dist), samples

    # -- rollout.overlap: the next step's rollout during this step's update (r1gym.core.overlap) ---------
    def _overlapped_step(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Wait for this step's rollout, give the idle backend the weights of the last update, start the next
        step's rollout on them, and update on this step's episodes meanwhile. ``time/generate`` is the time the
        backend spent sampling (in the background), ``time/generate_wait`` the time the trainer waited for it."""
        t_step = time.perf_counter()
        self._step += 1
        if not self.ahead.in_flight and self.sampler.pending is None:  # the first step: nothing ran ahead
            self._start_ahead()
        t0 = time.perf_counter()
        episodes, metrics, times, version = self._take_ahead()
        t = {**times, "generate_wait": time.perf_counter() - t0}
        self._sync_if_stale(t)
        if self._step < self.total_steps:
            self._start_ahead()
        lag = self._version - version
        for e in episodes:
            e.policy_lag = lag
        metrics = {**metrics, "rollout/policy_lag": float(lag)}
        if not episodes:
            return {**metrics, **{f"time/{k}": v for k, v in t.items()}, "time/step": time.perf_counter() - t_step}, []
        update_metrics, samples = self.update(episodes, t)
        metrics.update(update_metrics)
        metrics.update({f"time/{k}": v for k, v in t.items()})
        metrics["time/step"] = time.perf_counter() - t_step
        return metrics, samples

    def _start_ahead(self) -> None:
        version = self._synced  # the weights the backend holds: those that will sample this rollout

        def job() -> tuple[list[Episode], dict[str, float], dict[str, float], int]:
            timings = RolloutTimings()
            episodes, stats = self.rollout(timings)
            return episodes, stats, {"generate": timings.generate, "reward": timings.reward}, version

        self.ahead.start(job)

    def _take_ahead(self) -> tuple[list[Episode], dict[str, float], dict[str, float], int]:
        if self.ahead.in_flight:
            return self.ahead.result()
        pending, self.sampler.pending = self.sampler.pending, None  # drained (evaluation, a checkpoint) or resumed
        return pending

    def _drain(self) -> None:
        """Finish the rollout in flight and keep it for the next step (before evaluating or saving)."""
        if self.ahead is not None and self.ahead.in_flight:
            self.sampler.pending = self.ahead.result()

    def _sync_if_stale(self, t: dict[str, float]) -> None:
        """The weight sync, deferred to a moment the backend is idle (nothing in flight)."""
        t0 = time.perf_counter()
        if self._synced != self._version:
            with self.gathered():
                self.backend.sync_weights(self.model)
            self._synced = self._version
        t["weight_sync"] = time.perf_counter() - t0

    def save(self, step: int) -> Path:
        self._drain()  # the checkpoint holds the drained episodes with the data position (PromptSampler.pending)
        return super().save(step)

    # -- the update, in named steps --------------------------------------------------------------------
    def update(self, episodes: list[Episode], t: dict[str, float] | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """One policy update on ``episodes`` (this rank's share of the step's, whole groups each): advantages and
        packing, reference and old log-probs, ``num_iterations`` passes over micro-batches each followed by an
        optimizer step, the scheduler step and the weight sync, metrics.
        Over several ranks each micro-batch counts for its share of the *global* batch and gradients are
        summed over ranks, so the update equals a single process's on all the episodes."""
        t = t if t is not None else {}
        batch, advantages = self._pack(episodes)
        t0 = time.perf_counter()
        ref_lp = self.parts.reference(batch)
        t["reference"] = time.perf_counter() - t0
        old_lp = self.old_logprobs(batch)
        # always the same keys, also for a step with nothing to train on
        stats: Counter[str] = Counter(dict.fromkeys(("loss", "clip_frac", "ratio_mean", "entropy", "logprob/sampler_abs_diff"), 0.0))
        if ref_lp is not None:
            stats["kl"] = 0.0
        share = self._global_share(batch, bool(episodes))
        t["forward_backward"] = t["optimizer"] = 0.0
        for _ in range(self.cfg.algo.num_iterations):
            t0 = time.perf_counter()
            self._accumulate(batch, advantages, old_lp, ref_lp, share, stats)
            t["forward_backward"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            grad_norm = self.strategy.step()
            t["optimizer"] += time.perf_counter() - t0
        lr = self._schedule_and_sync(t)
        metrics = self._update_metrics(stats, episodes, batch, grad_norm, lr)
        return metrics, self._samples(episodes, advantages)

    def _pack(self, episodes: list[Episode]) -> tuple[PackedBatch, torch.Tensor]:
        """Group-relative advantages and the packed batch on the model's device. Unscorable samples (and
        truncated ones with ``mask_truncated``) are packed but carry no loss. A rank without episodes this step
        (dynamic sampling) gets one masked-out row, which keeps it in the collectives."""
        rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float64)
        valid = ~torch.isnan(rewards)
        group_ids = torch.tensor([e.group for e in episodes], dtype=torch.long)
        advantages = self.advantage_fn(rewards, group_ids, valid=valid).float()
        include = [bool(v) and not (self.cfg.algo.mask_truncated and e.truncated) for v, e in zip(valid.tolist(), episodes)]
        pad = self.tokenizer.pad_token_id
        if not episodes:
            episodes, include = [Episode(group=0, task_index=0, prompt_ids=[pad], completion_ids=[pad],
                                         completion_mask=[0], sampler_logprobs=[0.0])], [False]
            advantages = torch.zeros(1)
        device = next(self.model.parameters()).device
        return pack(episodes, pad, include=include).to(device), advantages.to(device)

    def _global_share(self, batch: PackedBatch, has_episodes: bool) -> float:
        """This rank's share of the global batch, in the units the loss aggregation counts (1 in one process)."""
        local = float(self.units(batch.loss_mask)) if has_episodes else 0.0
        total = distributed.global_units(local, self.dist)
        return local / total if total > 0 else 0.0

    def _accumulate(self, batch: PackedBatch, advantages: torch.Tensor, old_lp: torch.Tensor | None,
                    ref_lp: torch.Tensor | None, share: float, stats: Counter[str]) -> None:
        """Forward and backward over the micro-batches, each loss weighted by its share of the global batch;
        the weighted figures of each are added to ``stats``."""
        units = float(self.units(batch.loss_mask))
        for rows, counts in self._micro_batches(len(batch)):
            part = batch.select(rows)
            weight = (float(self.units(part.loss_mask)) / units if units > 0 else 0.0) * share if counts else 0.0
            if not self.strategy.needs_pass(weight):
                continue
            with self.autocast():
                lp, ent = self.strategy.forward(part, with_entropy=True, **self.lp_kw)
            T = lp.shape[1]
            old = old_lp[rows, :T] if old_lp is not None else lp.detach()
            ref = ref_lp[rows, :T] if ref_lp is not None else None
            token_weights, is_metrics = self.parts.correct(old, part)
            loss, m = self.loss_fn(lp, old, ref, advantages[rows], part.loss_mask, token_weights=token_weights)
            self.strategy.backward(loss * weight)
            stats["loss"] += float(loss.detach()) * weight
            for k, v in {**is_metrics, **m}.items():
                stats[k] += v * weight
            stats["entropy"] += float(losses.masked_mean(ent, part.loss_mask)) * weight
            stats["logprob/sampler_abs_diff"] += float(
                losses.masked_mean((lp.detach() - part.sampler_logprobs).abs(), part.loss_mask)) * weight

    def _schedule_and_sync(self, t: dict[str, float]) -> float:
        """The scheduler's step and the weight sync to the rollout backend; the learning rate this step used."""
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        if self.ahead is not None:  # overlap: the backend may be sampling now; it gets the weights when idle
            self._version += 1
            return lr
        t0 = time.perf_counter()
        with self.gathered():
            self.backend.sync_weights(self.model)
        t["weight_sync"] = time.perf_counter() - t0
        return lr

    def _update_metrics(self, stats: Counter[str], episodes: list[Episode], batch: PackedBatch, grad_norm: float,
                        lr: float) -> dict[str, float]:
        # loss figures were weighted by global shares: a rank's sum is its part, the ranks' mean x world the whole
        metrics = {k: v / self.cfg.algo.num_iterations * self.dist.world for k, v in stats.items()}
        metrics.update(self._episode_metrics(episodes))
        metrics.update({"grad_norm": float(grad_norm), "lr": lr,
                        "trained_tokens": float(batch.loss_mask.sum()) * self.dist.world})
        return metrics

    def _micro_batches(self, n: int) -> list[tuple[list[int], bool]]:
        """Row chunks of about ``micro_batch_size`` sequences, whole groups each (rows are group-contiguous),
        so a group's shared prompt runs once per micro-batch; each with whether it counts (a strategy whose
        ranks must run as many passes pads with the last chunk at weight 0: ``lockstep``)."""
        size = self.micro_batch_rows
        chunks = [list(range(s, min(s + size, n))) for s in range(0, n, size)]
        return self.strategy.lockstep(chunks, chunks[-1])

    def _policy_no_grad(self, batch: PackedBatch) -> torch.Tensor:
        return self._no_grad_logprobs(batch, forward=self.strategy.forward)

    def _no_grad_logprobs(self, batch: PackedBatch, forward: Callable[..., Any]) -> torch.Tensor:
        """Completion log-probs of ``batch`` under ``forward`` (the policy through the strategy, or the reference
        model), micro-batch by micro-batch, without gradients."""
        out = torch.zeros_like(batch.sampler_logprobs)
        with torch.no_grad(), self.autocast():
            for rows, _ in self._micro_batches(len(batch)):
                lp, _ = forward(batch.select(rows), **self.lp_kw)
                out[rows, : lp.shape[1]] = lp
        return out

    # -- metrics ---------------------------------------------------------------------------------------
    def _episode_metrics(self, episodes: list[Episode]) -> dict[str, float]:
        """Reward, length and accuracy figures of the step's episodes: of *all* ranks' episodes (gathered
        without their tokens), so that every rank reports the global figures whatever its share."""
        episodes = distributed.gather_lists(
            [dataclasses.replace(e, prompt_ids=[], completion_ids=[], sampler_logprobs=[], messages=[], answers={})
             for e in episodes] if self.dist.enabled else episodes, self.dist)
        scored = [e for e in episodes if e.scorable]
        m: dict[str, float] = {
            "episodes": float(len(episodes)),
            "reward/mean": float(np.mean([e.reward for e in scored])) if scored else math.nan,
            "reward/std": float(np.std([e.reward for e in scored])) if scored else math.nan,
            "unscorable/count": float(len(episodes) - len(scored)),
            "completion/len_mean": float(np.mean([e.num_generated for e in episodes])),
            "completion/len_max": float(max(e.num_generated for e in episodes)),
            "completion/truncated_frac": float(np.mean([e.truncated for e in episodes])),
            "turns/mean": float(np.mean([e.turns for e in episodes])),
        }
        m.update(component_means(episodes))
        acc = [e.rewards.get(self.accuracy_key) for e in episodes if e.rewards.get(self.accuracy_key) is not None]
        m["accuracy"] = float(np.mean([a == 1.0 for a in acc])) if acc else math.nan
        for e in episodes:
            for comp in e.unscorable:
                m[f"unscorable/{comp}"] = m.get(f"unscorable/{comp}", 0.0) + 1.0
        m.update(flag_counts(episodes))
        return m

    def _samples(self, episodes: list[Episode], advantages: torch.Tensor) -> list[dict[str, Any]]:
        n = self.cfg.trainer.log_samples
        chosen = episodes if n < 0 else episodes[:n]
        return [
            {
                "group": e.group, "task_index": e.task_index, "reward": e.reward, "rewards": e.rewards,
                "unscorable": e.unscorable, "flags": e.flags, "advantage": float(a), "truncated": e.truncated,
                "turns": e.turns, **({"policy_lag": e.policy_lag} if self.ahead is not None else {}),
                # the rendered prompt text the policy saw (chat template or R1-Zero template included)
                "prompt": self.tokenizer.decode(e.prompt_ids, skip_special_tokens=True),
                "completion": self.tokenizer.decode(e.completion_ids, skip_special_tokens=True),
            }
            for e, a in zip(chosen, advantages.tolist())
        ]

    # -- evaluation ------------------------------------------------------------------------------------
    def eval_schedule(self) -> Any:
        return self.cfg.eval

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out problems (``env.eval_kwargs``), scored by the env's own rewards: greedy by default, or
        ``eval.samples`` sampled completions per problem, reported as pass@1 over them and cons@k
        (:mod:`r1gym.core.evaluation`, the same code as ``r1gym eval``)."""
        ev = self.cfg.eval
        if self.ahead is not None:  # overlap: the held-out samples come from the trainer's current weights
            self._drain()
            self._sync_if_stale({})
        if self.eval_envs is None:
            probe = make_envs(self.cfg.env, 1, eval_split=True, host=self.host)[0]
            n, self.eval_k = evaluation.eval_size(ev, len(probe.unwrapped.source))
            self.eval_indices = list(range(n))
            self.eval_envs = make_envs(self.cfg.env, n * self.eval_k, eval_split=True, host=self.host)
        k = self.eval_k
        params = evaluation.eval_sampling(ev, self.sampling)
        state = torch.get_rng_state()  # evaluation must not shift the training trajectory
        torch.manual_seed(self.cfg.trainer.seed + 1_000_003)  # and uses the same samples at every evaluation
        with self.autocast():
            summary, _, eps = evaluation.evaluate(
                self.eval_envs, self.eval_indices, k, self.backend, self.renderer, params,
                accuracy_key=self.accuracy_key, max_episode_tokens=self.cfg.rollout.max_episode_tokens,
                reward_workers=self.cfg.rollout.reward_workers)
        torch.set_rng_state(state)
        metrics = {
            "eval/num_problems": summary["problems"],
            "eval/samples_per_problem": summary["samples_per_problem"],
            "eval/accuracy": summary["pass@1"],
            "eval/reward_mean": summary["reward_mean"],
            "eval/unscorable": summary["samples_unscorable"],
            "eval/completion_len_mean": summary["completion_len_mean"],
        }
        metrics.update({f"eval/{key}": v for key, v in summary.items() if key == "pass@1" or key.startswith("cons@")})
        metrics.update({f"eval/{key}": v for key, v in component_means(eps).items()})
        self.loggers.log_eval(step, metrics)
        return metrics



def _nothing(batch: PackedBatch) -> None:
    return None


def _no_correction(old: torch.Tensor, part: PackedBatch) -> tuple[None, dict[str, float]]:
    return None, {}


def _importance_correction(old: torch.Tensor, part: PackedBatch, *, mode: str, level: str,
                           cap: float) -> tuple[torch.Tensor, dict[str, float]]:
    return losses.importance_weights(old, part.sampler_logprobs, part.loss_mask, mode=mode, level=level, cap=cap)


#: flags reported every step, 0 until they happen, so a hack shows as a line leaving zero (see ``Graded``)
WATCHED_FLAGS = ("ended_early", "hack_pattern", "fallback")


def flag_counts(episodes: list[Episode]) -> dict[str, float]:
    """``flags/<flag>``: how many episodes any reward component flagged so, and ``flags/<component>/<flag>``
    per component; the :data:`WATCHED_FLAGS` always appear."""
    m = {f"flags/{f}": 0.0 for f in WATCHED_FLAGS}
    for e in episodes:
        for flag in {f for fs in e.flags.values() for f in fs}:
            m[f"flags/{flag}"] = m.get(f"flags/{flag}", 0.0) + 1.0
        for comp, fs in e.flags.items():
            for flag in fs:
                m[f"flags/{comp}/{flag}"] = m.get(f"flags/{comp}/{flag}", 0.0) + 1.0
    return m


def component_means(episodes: list[Episode]) -> dict[str, float]:
    """Mean of each reward component over the episodes where it was scored."""
    values: dict[str, list[float]] = {}
    for e in episodes:
        for k, v in e.rewards.items():
            if v is not None:
                values.setdefault(k, []).append(v)
    return {f"reward/{k}": float(np.mean(v)) for k, v in values.items()}
