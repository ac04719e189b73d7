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

Kept from the papers: everything in the GRPO objective, clip-higher, the three loss aggregations,
overlong masking, dynamic sampling. Dropped: the value model (GRPO has none) and any reward model
training (rewards are plugins).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from r1gym.core import advantages as adv_mod
from r1gym.core import distributed, evaluation, losses, onednn
from r1gym.core.batch import CompletionLogprobs, PackedBatch, completion_logprobs, pack
from r1gym.core.checkpoint import save_checkpoint
from r1gym.core.envs import make_envs, primary_reward
from r1gym.core.loggers import LoggerGroup
from r1gym.core.models import load_model
from r1gym.core.plugins import PluginHost, default_host
from r1gym.core.prompts import PromptRenderer
from r1gym.core.registry import pick
from r1gym.core.rollout import Episode, RolloutTimings, SamplingParams, collect_episodes
from r1gym.core.runtime import (autocast, backward, build_loggers, build_optimizer, load_trainable, optimizer_step,
                                prepare_process, restore, save_all)

log = logging.getLogger(__name__)


class PromptSampler:
    """Task indices in a fresh seeded permutation per epoch; its position is part of every checkpoint."""

    def __init__(self, num_tasks: int, seed: int):
        self.num_tasks, self.seed, self.epoch, self.pos = num_tasks, seed, 0, 0

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

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int):
    """Linear warm-up, then constant / linear decay / cosine decay to 0 over ``total`` steps."""

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


class GRPOTrainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, *, host: PluginHost | None = None):
        self.cfg, self.run_dir, self.host = cfg, Path(run_dir), host or default_host()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        algo = cfg.algo
        self.advantage_fn = adv_mod.get_advantage_estimator(algo.advantage)
        losses.get_loss_aggregation(algo.loss_aggregation)  # fail before loading a model
        if algo.group_size < 2:
            raise ValueError(f"algo.group_size must be >= 2 for group-relative advantages, got {algo.group_size}")
        self.sampling = SamplingParams.from_config(cfg.rollout)
        self.dist = distributed.init(cfg.trainer.backend) if cfg.trainer.distributed else distributed.Dist()
        if self.dist.enabled:
            if self.dist.is_main:
                log.info("data-parallel training on %d processes", self.dist.world)
            if algo.prompts_per_step % self.dist.world:
                raise ValueError(f"algo.prompts_per_step={algo.prompts_per_step} must be a multiple of the "
                                 f"{self.dist.world} processes (whole groups stay on one rank)")

    # -- set-up ----------------------------------------------------------------------------------------
    def setup(self) -> int:
        """Build everything; resume from the run folder's last checkpoint. Returns the step to start at."""
        cfg = self.cfg
        prepare_process(cfg.trainer)
        self.model, self.tokenizer, ckpt = load_trainable(cfg, self.run_dir)
        self.lora = cfg.model.lora.r > 0
        self.ref_model = None
        if cfg.algo.beta > 0 and not self.lora:  # beta = 0 loads no reference model at all; with LoRA the
            # reference is the policy with its adapters switched off
            self.ref_model = load_model(cfg.model.name_or_path, dtype=cfg.model.dtype).eval().requires_grad_(False)
            self.ref_model.to(next(self.model.parameters()).device)
            onednn.patch(self.ref_model)
        o = cfg.algo.optim
        self.optimizer = build_optimizer(self.model, o)
        self.scheduler = build_scheduler(self.optimizer, o.schedule, o.warmup_steps, cfg.trainer.max_steps)
        self.engine = None  # DeepSpeed (trainer.deepspeed.stage): it reduces, clips and steps; we schedule
        if cfg.trainer.deepspeed:  # the engine runs the policy's log-prob pass (it must see every forward)
            self.engine = distributed.deepspeed_engine(
                CompletionLogprobs(self.model), self.optimizer, distributed.deepspeed_config(cfg.trainer, o.max_grad_norm))
        self.renderer = PromptRenderer(self.tokenizer, cfg.model.prompt_format)
        backend_factory = self.host.rollout_backends.get(cfg.rollout.backend)
        with self.gathered():  # a backend may read or push the weights when it starts (vllm_server does)
            self.backend = backend_factory(self.model, self.tokenizer, **OmegaConf.to_container(cfg.rollout.params))
        self.is_mode = cfg.algo.is_correction
        if self.is_mode == "auto":  # correct only what needs it: a sampler whose log-probs are not the trainer's
            self.is_mode = "none" if getattr(self.backend, "exact_logprobs", False) else "truncate"
        losses.importance_weights(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), mode=self.is_mode,
                                  level=cfg.algo.is_level, cap=cfg.algo.is_cap)  # a bad setting fails here
        n_envs = cfg.algo.prompts_per_step * cfg.algo.group_size
        self.envs = make_envs(cfg.env, n_envs)
        self.eval_envs: list[Any] | None = None
        self.eval_indices: list[int] = []
        self.accuracy_key = primary_reward(self.envs[0])
        self.sampler = PromptSampler(len(self.envs[0].unwrapped.source), cfg.trainer.seed)
        self.loggers = build_loggers(self.host, cfg, self.run_dir) if self.dist.is_main else LoggerGroup([])
        if self.engine is None:
            start = restore(ckpt, optimizer=self.optimizer, scheduler=self.scheduler, sampler=self.sampler)
        else:
            if ckpt is not None:  # the optimizer's partitions are in DeepSpeed's own checkpoint, one per rank
                distributed.load_engine_state(self.engine, ckpt)
            start = restore(ckpt, scheduler=self.scheduler, sampler=self.sampler)
        if self.dist.rank > 0:  # rank 0's RNG is the checkpointed one; the others sample from streams of their own
            torch.manual_seed(cfg.trainer.seed + 7919 * self.dist.rank + start)
        return start

    # -- the loop --------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        start = self.setup()
        cfg = self.cfg
        total = cfg.trainer.max_steps
        self.loggers.start(self.run_dir, OmegaConf.to_container(cfg, resolve=True), total_steps=total, start_step=start)
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "status": "failed", "processes": self.dist.world}
        try:
            if start == 0 and cfg.eval.at_start and (ev := self._main_only(self.evaluate, 0)) is not None:
                summary["eval_start"] = ev
            unscorable_steps = 0
            for step in range(start + 1, total + 1):
                metrics, samples = self.train_step()
                self.loggers.log_metrics(step, metrics)
                self.loggers.log_samples(step, samples)
                unscorable_steps = self._watch_rewards(step, metrics, samples, unscorable_steps, summary)
                if cfg.eval.every and step % cfg.eval.every == 0 and step != total:
                    self._main_only(self.evaluate, step)
                if step % cfg.trainer.save_every == 0 or step == total:
                    self.save_all(step)
            if cfg.eval.at_end and total > start and (ev := self._main_only(self.evaluate, total)) is not None:
                summary["eval_end"] = ev
            summary["status"] = "finished"
            summary["step"] = total
        finally:
            self.loggers.finish(summary)
        return summary

    def _watch_rewards(self, step: int, metrics: dict[str, float], samples: list[dict[str, Any]], streak: int,
                       summary: dict[str, Any]) -> int:
        """Count the steps in a row whose share of unscorable completions is over ``trainer.max_unscorable``;
        at ``trainer.unscorable_patience`` of them, stop the run with the most common reasons: a run whose
        rewards stopped working (a dead sandbox, a checker that fails on everything) would otherwise train on
        the few samples left for as long as it is allowed to."""
        t = self.cfg.trainer
        n = metrics.get("episodes", 0.0)
        share = metrics.get("unscorable/count", 0.0) / n if n else 0.0
        streak = streak + 1 if share > t.max_unscorable else 0
        if streak >= t.unscorable_patience:
            from collections import Counter

            reasons = Counter(f"{comp}: {why}" for s in samples for comp, why in (s.get("unscorable") or {}).items())
            top = "; ".join(f"{k} x {why}" for why, k in reasons.most_common(3)) or "see metrics.jsonl unscorable/*"
            message = (f"stopping at step {step}: more than {t.max_unscorable:.0%} of the completions could not be "
                       f"scored for {streak} steps in a row ({share:.0%} at this step); most common reasons: {top}. "
                       "Fix the reward or its sandbox/checker (or raise trainer.max_unscorable) and continue with "
                       f"r1gym train resume={self.run_dir}")
            summary["error"] = message
            self.save_all(step)
            raise RuntimeError(message)
        return streak

    def _main_only(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on rank 0 only (evaluation, checkpoints: ranks hold the same weights); the others wait.
        Under ZeRO-3 every rank gathers the weights first, so rank 0 holds them whole."""
        with self.gathered():
            out = fn(*args) if self.dist.is_main else None
            distributed.barrier(self.dist)
        return out

    def gathered(self) -> Any:
        """A block in which ``self.model`` holds its full weights on every rank (ZeRO-3 partitions them between
        forward passes; :func:`~r1gym.core.distributed.gathered`); a no-op otherwise. Collective."""
        return distributed.gathered(getattr(self, "engine", None))

    def save_all(self, step: int) -> None:
        """A checkpoint of ``step`` from every rank (:func:`r1gym.core.runtime.save_all`)."""
        save_all(self.engine, self.dist, self.run_dir, step, self.save)

    def save(self, step: int) -> Path:
        state = {
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
        }
        if self.engine is None:
            state["optimizer"] = self.optimizer.state_dict()
        return save_checkpoint(self.run_dir, step, model=self.model, tokenizer=self.tokenizer, state=state,
                               keep=self.cfg.trainer.keep_checkpoints)

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

    def update(self, episodes: list[Episode], t: dict[str, float] | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """One policy update on ``episodes`` (this rank's share of the step's, whole groups each): advantages,
        ``num_iterations`` passes over micro-batches, the optimizer and scheduler steps, the weight sync.
        Under ``trainer=ddp`` each micro-batch counts for its share of the *global* batch and gradients are
        summed over ranks, so the update equals a single process's on all the episodes."""
        cfg, algo = self.cfg, self.cfg.algo
        t = t if t is not None else {}
        metrics: dict[str, float] = {}
        rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float64)
        valid = ~torch.isnan(rewards)
        group_ids = torch.tensor([e.group for e in episodes], dtype=torch.long)
        advantages = self.advantage_fn(rewards, group_ids, valid=valid).float()
        include = [bool(v) and not (algo.mask_truncated and e.truncated) for v, e in zip(valid.tolist(), episodes)]
        device = next(self.model.parameters()).device
        if episodes:
            batch = pack(episodes, self.tokenizer.pad_token_id, include=include).to(device)
        else:  # no group on this rank this step (dynamic sampling): one masked-out row keeps it in the collectives
            pad = self.tokenizer.pad_token_id
            batch = pack([Episode(group=0, task_index=0, prompt_ids=[pad], completion_ids=[pad], completion_mask=[0],
                                  sampler_logprobs=[0.0])], pad, include=[False]).to(device)
            advantages = torch.zeros(1)
        advantages = advantages.to(device)

        # reference log-probs (only with beta > 0) and old log-probs (only with several iterations)
        t0 = time.perf_counter()
        ref_lp = None
        if self.ref_model is not None:
            ref_lp = self._no_grad_logprobs(batch, self.ref_model)
        elif algo.beta > 0 and self.lora:
            with self.model.disable_adapter():
                ref_lp = self._no_grad_logprobs(batch)
        t["reference"] = time.perf_counter() - t0
        old_lp = self._no_grad_logprobs(batch) if algo.num_iterations > 1 else None

        t["forward_backward"] = t["optimizer"] = 0.0
        # always the same keys, also for a step with nothing to train on
        loss_stats: Counter[str] = Counter(dict.fromkeys(("loss", "clip_frac", "ratio_mean", "entropy", "logprob/sampler_abs_diff"), 0.0))
        if ref_lp is not None:
            loss_stats["kl"] = 0.0
        # this rank's share of the global batch, in the units the loss aggregation counts (1 in one process)
        units = losses.AGGREGATION_UNITS[algo.loss_aggregation]
        local_units = float(units(batch.loss_mask)) if episodes else 0.0
        global_units = distributed.global_units(local_units, self.dist)
        share = local_units / global_units if global_units > 0 else 0.0
        for _ in range(algo.num_iterations):
            t0 = time.perf_counter()
            for rows, counts in self._micro_batches(len(batch)):
                part = batch.select(rows)
                weight = losses.micro_batch_weight(algo.loss_aggregation, part.loss_mask, batch.loss_mask) * share
                weight = weight if counts else 0.0
                if weight == 0.0 and self.engine is None:  # (DeepSpeed reduces per backward, and ZeRO-3 gathers
                    # weights per forward: every rank runs every micro-batch)
                    continue
                with self.autocast():
                    lp, ent = self._logprobs(part, with_entropy=True)
                T = lp.shape[1]
                old = old_lp[rows, :T] if old_lp is not None else lp.detach()
                ref = ref_lp[rows, :T] if ref_lp is not None else None
                token_weights = None
                if self.is_mode != "none":
                    token_weights, is_m = losses.importance_weights(
                        old, part.sampler_logprobs, part.loss_mask, mode=self.is_mode, level=algo.is_level, cap=algo.is_cap)
                    for k, v in is_m.items():
                        loss_stats[k] += v * weight
                loss, m = losses.grpo_loss(
                    lp, old, ref, advantages[rows], part.loss_mask, eps_low=algo.eps_low, eps_high=algo.eps_high,
                    beta=algo.beta, aggregation=algo.loss_aggregation, normalizer=float(cfg.rollout.max_episode_tokens or cfg.rollout.max_new_tokens),
                    token_weights=token_weights,
                )
                backward(loss * weight, self.engine, self.dist.world)
                loss_stats["loss"] += float(loss.detach()) * weight
                for k, v in m.items():
                    loss_stats[k] += v * weight
                loss_stats["entropy"] += float(losses.masked_mean(ent, part.loss_mask)) * weight
                loss_stats["logprob/sampler_abs_diff"] += float(
                    losses.masked_mean((lp.detach() - part.sampler_logprobs).abs(), part.loss_mask)) * weight
            t["forward_backward"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            grad_norm = optimizer_step(self.engine, self.optimizer, algo.optim.max_grad_norm, self.dist)
            t["optimizer"] += time.perf_counter() - t0
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        t0 = time.perf_counter()
        with self.gathered():
            self.backend.sync_weights(self.model)
        t["weight_sync"] = time.perf_counter() - t0
        n_iter = algo.num_iterations
        # loss figures were weighted by global shares: a rank's sum is its part, the ranks' mean x world the whole
        metrics.update({k: v / n_iter * self.dist.world for k, v in loss_stats.items()})
        metrics.update(self._episode_metrics(episodes))
        metrics.update({"grad_norm": float(grad_norm), "lr": lr,
                        "trained_tokens": float(batch.loss_mask.sum()) * self.dist.world})
        return metrics, self._samples(episodes, advantages)

    def autocast(self) -> Any:
        """The configured mixed-precision context for forward passes (a no-op for fp32)."""
        return autocast(self.cfg.trainer, getattr(self, "model", None))

    def _micro_batches(self, n: int) -> list[tuple[list[int], bool]]:
        """Row chunks of about ``micro_batch_size`` sequences, whole groups each (rows are group-contiguous),
        so a group's shared prompt runs once per micro-batch; each with whether it counts (under DeepSpeed a rank
        with fewer micro-batches than another repeats its last one at weight 0: :func:`distributed.lockstep`)."""
        G = self.cfg.algo.group_size
        size = max(G, -(-max(1, self.cfg.algo.micro_batch_size) // G) * G)
        chunks = [list(range(s, min(s + size, n))) for s in range(0, n, size)]
        return distributed.lockstep(chunks, chunks[-1], self.engine, self.dist)

    def _logprobs(self, batch: PackedBatch, model: Any = None, with_entropy: bool = False):
        """Completion log-probs (and entropy) under ``model`` (default: the policy, through the DeepSpeed engine
        when there is one)."""
        kw = {"temperature": self.sampling.temperature or 1.0, "with_entropy": with_entropy,
              "chunk": self.cfg.algo.logprob_chunk}
        if model is None and self.engine is not None:
            return self.engine(batch, **kw)
        return completion_logprobs(self.model if model is None else model, batch, **kw)

    def _no_grad_logprobs(self, batch: PackedBatch, model: Any = None) -> torch.Tensor:
        out = torch.zeros_like(batch.sampler_logprobs)
        with torch.no_grad(), self.autocast():
            for rows, _ in self._micro_batches(len(batch)):
                lp, _ = self._logprobs(batch.select(rows), model)
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
                "turns": e.turns,
                "completion": self.tokenizer.decode(e.completion_ids, skip_special_tokens=True),
            }
            for e, a in zip(chosen, advantages.tolist())
        ]

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out problems (``env.eval_kwargs``), scored by the env's own rewards: greedy by default, or
        ``eval.samples`` sampled completions per problem, reported as pass@1 over them and cons@k
        (:mod:`r1gym.core.evaluation`, the same code as ``r1gym eval``)."""
        ev = self.cfg.eval
        k = 1 if ev.greedy else max(1, ev.samples)
        if self.eval_envs is None:
            n = len(make_envs(self.cfg.env, 1, eval_split=True)[0].unwrapped.source)
            self.eval_indices = list(range(n if ev.num_problems is None else min(ev.num_problems, n)))
            self.eval_envs = make_envs(self.cfg.env, len(self.eval_indices) * k, eval_split=True)
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
