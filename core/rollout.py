"""Rollouts: running G episodes per prompt through the envs with a generation backend.

The backend only turns token-id prompts into sampled continuations (:class:`RolloutBackend`); this module
owns the episode loop, which is the same for every backend: reset the G envs of a group on the same task
index, render the observation to tokens, generate, ``env.step`` each completion, and for multi-turn envs
append the env's reply and generate again until every episode is terminated or truncated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from r1gym.core.prompts import PromptRenderer


class Completion(str):
    """A completion's text plus what only the sampler knows: why generation stopped.

    ``finish_reason`` is ``"stop"`` (EOS or a stop string) or ``"length"`` (hit the token limit).
    """

    finish_reason: str

    def __new__(cls, text: str, finish_reason: str = "stop") -> Completion:
        obj = super().__new__(cls, text)
        obj.finish_reason = finish_reason
        return obj



@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    #: EOS cannot be sampled (and stop strings do not end a turn) before this many new tokens
    min_new_tokens: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    @classmethod
    def from_config(cls, rollout: Any) -> SamplingParams:
        """The sampling settings of a ``rollout`` config group (training's, and evaluation's base)."""
        return cls(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k,
                   max_new_tokens=rollout.max_new_tokens, stop=tuple(rollout.stop),
                   min_new_tokens=rollout.min_new_tokens)


@dataclass
class Generation:
    """One sampled continuation. ``logprobs[i]`` is the log-probability of ``token_ids[i]`` under the
    sampling distribution before top-p/top-k filtering (softmax(logits / temperature)), as the trainer
    computes it."""

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str  # "stop" or "length"


class RolloutBackend(Protocol):
    """What the engine needs from a generation backend (``hf`` on the CPU, ``vllm`` on GPUs)."""

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        """Sample one continuation per prompt (token ids in, token ids + text + logprobs out)."""
        ...

    def sync_weights(self, model: Any) -> None:
        """Make the backend sample from the trainer's current weights (a no-op when they are shared)."""
        ...

    # Optional attributes the trainer reads: ``exact_logprobs`` (the sampler's log-probs are the trainer's own
    # numbers, so no importance correction is needed) and ``separate_process`` (generation runs in a process of
    # its own, so ``rollout.overlap`` may run it during the update; r1gym.core.overlap).


@dataclass
class Episode:
    """One finished episode: the tokens to train on and how the env scored them."""

    group: int
    task_index: int
    prompt_ids: list[int]
    #: every token after the prompt: the model's turns and, in multi-turn episodes, the env's replies
    completion_ids: list[int] = field(default_factory=list)
    #: 1 where the policy generated the token (trained on), 0 for env text
    completion_mask: list[int] = field(default_factory=list)
    sampler_logprobs: list[float] = field(default_factory=list)
    reward: float = math.nan
    rewards: dict[str, float | None] = field(default_factory=dict)
    unscorable: dict[str, str] = field(default_factory=dict)
    #: the final answer each answer-grading reward component saw (see :class:`r1gym.core.rewards.Graded`)
    answers: dict[str, Any] = field(default_factory=dict)
    #: what each reward component flagged (``ended_early``, ``hack_pattern``, ``fallback``; see ``Graded``)
    flags: dict[str, list[str]] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    turns: int = 0
    messages: list[dict] = field(default_factory=list)
    #: updates the trainer made between the weights that sampled this episode and those it trains with
    #: (0 in the synchronous loop; 1 with rollout.overlap after the first step; r1gym.core.overlap)
    policy_lag: int = 0

    @property
    def scorable(self) -> bool:
        return not math.isnan(self.reward)

    @property
    def num_generated(self) -> int:
        return sum(self.completion_mask)


@dataclass
class RolloutTimings:
    generate: float = 0.0
    reward: float = 0.0


def collect_episodes(
    envs: Sequence[Any],
    task_indices: Sequence[int],
    group_size: int,
    backend: RolloutBackend,
    renderer: PromptRenderer,
    params: SamplingParams,
    *,
    max_episode_tokens: int | None = None,
    first_group: int = 0,
    timings: RolloutTimings | None = None,
    reward_workers: int = 1,
) -> list[Episode]:
    """Run ``group_size`` episodes for each task index; ``envs`` must hold ``len(task_indices) * group_size``
    environments. Episodes of task ``task_indices[k]`` get group id ``first_group + k``.

    ``reward_workers > 1`` calls the envs' ``step`` (where rewards are computed) from that many threads at
    once: worth it when rewards wait on something else (a code sandbox, a judge server, the math pool);
    the rewards must then be thread-safe (the built-in ones are)."""
    n = len(task_indices) * group_size
    if len(envs) < n:
        raise ValueError(f"need {n} envs for {len(task_indices)} prompts x {group_size} samples, got {len(envs)}")
    timings = timings or RolloutTimings()
    budget = max_episode_tokens or params.max_new_tokens
    episodes: list[Episode] = []
    states: list[tuple[Episode, Any, list[int], list[dict]]] = []
    for k, index in enumerate(task_indices):
        for g in range(group_size):
            env = envs[k * group_size + g]
            obs, _ = env.reset(options={"index": int(index)})
            ids = renderer.encode(obs)
            ep = Episode(group=first_group + k, task_index=int(index), prompt_ids=list(ids), messages=obs)
            episodes.append(ep)
            states.append((ep, env, list(ids), obs))
    active = states
    while active:
        t0 = time.perf_counter()
        turn_params = [min(params.max_new_tokens, budget - len(ep.completion_ids)) for ep, *_ in active]
        gens = _generate_grouped(backend, [ctx for _, _, ctx, _ in active], params, turn_params)
        timings.generate += time.perf_counter() - t0
        still: list[tuple[Episode, Any, list[int], list[dict]]] = []
        t1 = time.perf_counter()
        outcomes = _step_all([(env, Completion(gen.text, gen.finish_reason)) for (_, env, _, _), gen in zip(active, gens)],
                             reward_workers)
        timings.reward += time.perf_counter() - t1
        for (ep, env, ctx, obs), gen, outcome in zip(active, gens, outcomes):
            ep.completion_ids += gen.token_ids
            ep.completion_mask += [1] * len(gen.token_ids)
            ep.sampler_logprobs += gen.logprobs
            next_obs, reward, terminated, truncated, info = outcome
            ep.turns += 1
            ep.messages = next_obs
            if terminated or truncated:
                ep.reward, ep.terminated, ep.truncated = float(reward), bool(terminated), bool(truncated)
                ep.rewards, ep.unscorable = dict(info.get("rewards", {})), dict(info.get("unscorable", {}))
                ep.answers = dict(info.get("answers", {}))
                ep.flags = dict(info.get("flags", {}))
                continue
            cont = renderer.continuation(obs, next_obs, gen.token_ids)
            ep.completion_ids += cont
            ep.completion_mask += [0] * len(cont)
            ep.sampler_logprobs += [0.0] * len(cont)
            still.append((ep, env, ctx + gen.token_ids + cont, next_obs))
        active = still
    return episodes


def _step_all(pairs: list[tuple[Any, Completion]], workers: int) -> list[tuple]:
    """``env.step(completion)`` for every pair, in order; from ``workers`` threads when more than one."""
    if workers <= 1 or len(pairs) <= 1:
        return [env.step(c) for env, c in pairs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(workers, len(pairs)), thread_name_prefix="r1gym-reward") as pool:
        return list(pool.map(lambda pair: pair[0].step(pair[1]), pairs))


def _generate_grouped(
    backend: RolloutBackend, prompts: list[list[int]], params: SamplingParams, limits: list[int]
) -> list[Generation]:
    """Generate with per-episode token limits; an episode with no budget left gets an empty, 'length' turn."""
    out: list[Generation | None] = [None] * len(prompts)
    by_limit: dict[int, list[int]] = {}
    for i, lim in enumerate(limits):
        if lim <= 0:
            out[i] = Generation([], "", [], "length")
        else:
            by_limit.setdefault(lim, []).append(i)
    for lim, idx in by_limit.items():
        p = params if lim == params.max_new_tokens else _replace(params, max_new_tokens=lim)
        for i, gen in zip(idx, backend.generate([prompts[i] for i in idx], p)):
            out[i] = gen
    return out  # type: ignore[return-value]


def _replace(params: SamplingParams, **changes: Any) -> SamplingParams:
    from dataclasses import replace

    return replace(params, **changes)


EnvFactory = Callable[[], Any]
