"""Evaluation the way the R1 paper reports it: pass@1 averaged over k samples, and cons@k.

For each problem, k completions are sampled (R1: temperature 0.6, top-p 0.95) and scored by the env's own
rewards, so training and evaluation use the same checker. Per problem:

* **pass@1** = the share of its k samples whose accuracy reward is 1 (samples that cannot be scored are left
  out of the share; a problem with no scorable sample is left out and counted);
* **cons@k** = 1 if the answer given most often among its k samples is correct. Answers are the canonical
  ``answer`` an answer-grading reward attaches to its score (:class:`~r1gym.core.rewards.Graded`; the math
  plugin's ``math_accuracy`` does). Samples without an answer do not vote; ties go to the answer seen first.
  With rewards that attach no answers, cons@k is not reported.

Both are then averaged over problems. The accuracy reward is the env's first reward component
(:func:`~r1gym.core.env_factory.primary_reward`). With k = 1 and greedy decoding both equal plain accuracy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1gym.core.rollout import Episode, SamplingParams, collect_episodes


@dataclass
class ProblemResult:
    """The k samples of one problem: accuracy of each (``None``: cannot be scored) and the answers given."""

    task_index: int
    correct: list[float | None] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    unscorable: list[str] = field(default_factory=list)

    @property
    def pass_at_1(self) -> float | None:
        scored = [c for c in self.correct if c is not None]
        return sum(c == 1.0 for c in scored) / len(scored) if scored else None

    def majority(self) -> tuple[Any, int] | None:
        """(the most frequent answer, how many samples gave it), first-seen wins ties; ``None`` if no votes."""
        votes = Counter(a for a in self.answers if a is not None)
        if not votes:
            return None
        top = max(votes.values())
        winner = next(a for a in self.answers if a is not None and votes[a] == top)
        return winner, top

    @property
    def cons_at_k(self) -> float | None:
        """1.0 if the majority answer is correct, 0.0 if not or nobody answered, ``None`` if that answer's
        verdict is unknown (every sample giving it could not be scored) or no sample could be scored."""
        if self.pass_at_1 is None:
            return None
        major = self.majority()
        if major is None:
            return 0.0
        verdicts = [c for a, c in zip(self.answers, self.correct) if a == major[0] and c is not None]
        return float(verdicts[0] == 1.0) if verdicts else None


def summarize(problems: Sequence[ProblemResult], *, voting: bool) -> dict[str, float]:
    """pass@1 and (with ``voting``) cons@k averaged over problems, plus counts."""
    p1 = [p.pass_at_1 for p in problems]
    k = max((len(p.correct) for p in problems), default=0)
    out = {
        "problems": float(len(problems)),
        "samples_per_problem": float(k),
        "pass@1": _mean([x for x in p1 if x is not None]),
        "problems_unscorable": float(sum(x is None for x in p1)),
        "samples_unscorable": float(sum(c is None for p in problems for c in p.correct)),
        "completion_len_mean": _mean([n for p in problems for n in p.lengths]),
    }
    if voting:
        cons = [p.cons_at_k for p in problems]
        out[f"cons@{k}"] = _mean([x for x in cons if x is not None])
    return out


def summarize_episodes(episodes: Sequence[Episode], accuracy_key: str | None) -> tuple[dict[str, float], list[ProblemResult]]:
    """:func:`summarize` of the episodes' problems, voting only if the accuracy reward attaches answers, plus
    the mean reward of the scorable episodes."""
    problems = group_by_problem(episodes, accuracy_key)
    metrics = summarize(problems, voting=any(accuracy_key in e.answers for e in episodes))
    metrics["reward_mean"] = _mean([e.reward for e in episodes if e.scorable])
    return metrics, problems


def eval_sampling(ev: Any, sampling: SamplingParams) -> SamplingParams:
    """The evaluation's sampling: greedy, or the rollout's with ``eval.temperature`` / ``eval.top_p`` when set."""
    from dataclasses import replace

    if ev.greedy:
        return SamplingParams(temperature=0.0, max_new_tokens=sampling.max_new_tokens, stop=sampling.stop)
    changes = {k: getattr(ev, k) for k in ("temperature", "top_p") if getattr(ev, k) is not None}
    return replace(sampling, **changes)


def eval_size(ev: Any, available: int) -> tuple[int, int]:
    """(problems, samples per problem) of an evaluation: the first ``eval.num_problems`` of the ``available``
    ones (all when unset), and 1 greedy sample or ``eval.samples`` sampled ones (at least 1). The trainer's
    evaluation and ``r1gym eval`` size themselves here, so the same config evaluates the same problems."""
    n = available if ev.num_problems is None else min(int(ev.num_problems), available)
    return n, 1 if ev.greedy else max(1, int(ev.samples))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def group_by_problem(episodes: Sequence[Episode], accuracy_key: str | None) -> list[ProblemResult]:
    """One :class:`ProblemResult` per task index, in first-seen order."""
    by_task: dict[int, ProblemResult] = {}
    for e in episodes:
        p = by_task.setdefault(e.task_index, ProblemResult(e.task_index))
        value = e.rewards.get(accuracy_key) if accuracy_key else None
        p.correct.append(None if value is None else float(value))
        p.answers.append(e.answers.get(accuracy_key) if accuracy_key else None)
        p.lengths.append(e.num_generated)
        if accuracy_key in e.unscorable:
            p.unscorable.append(e.unscorable[accuracy_key])
    return list(by_task.values())


def evaluate(
    envs: Sequence[Any],
    indices: Sequence[int],
    k: int,
    backend: Any,
    renderer: Any,
    params: Any,
    *,
    accuracy_key: str | None,
    max_episode_tokens: int | None = None,
    reward_workers: int = 1,
) -> tuple[dict[str, float], list[ProblemResult], list[Episode]]:
    """Sample ``k`` completions for each task index (``envs`` holds ``len(indices) * k`` envs) and score
    them. Returns (metrics, per-problem results, the episodes)."""
    episodes = collect_episodes(envs, indices, k, backend, renderer, params, max_episode_tokens=max_episode_tokens,
                                reward_workers=reward_workers)
    metrics, problems = summarize_episodes(episodes, accuracy_key)
    return metrics, problems, episodes


# -- the `r1gym eval` job --------------------------------------------------------------------------------
def resolve_checkpoint(path: str) -> tuple[Path, Path | None]:
    """(checkpoint folder, its run folder or ``None``) for ``eval.checkpoint``: a run folder (its latest
    checkpoint) or one checkpoint folder (inside a run's ``checkpoints/`` or standalone)."""
    from r1gym.core.checkpoint import latest_checkpoint

    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"eval.checkpoint={path}: no such folder; give a run folder or a checkpoint folder")
    if (p / "config.yaml").exists() and (p / "checkpoints").is_dir():
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            raise FileNotFoundError(f"eval.checkpoint={path}: the run folder has no checkpoint yet")
        return ckpt, p
    run = p.parent.parent if p.parent.name == "checkpoints" else None
    return p, run if run is not None and (run / "config.yaml").exists() else None


def load_eval_policy(cfg: Any) -> tuple[Any, Any, str]:
    """(model, tokenizer, description) for ``r1gym eval``: ``eval.checkpoint`` (with the model settings of the
    run that wrote it, e.g. its LoRA base) or else ``model.name_or_path``."""
    from omegaconf import OmegaConf

    from r1gym.core.models import load_policy

    if not cfg.eval.checkpoint:
        model, tok = load_policy(cfg.model)
        return model, tok, cfg.model.name_or_path
    ckpt, run = resolve_checkpoint(cfg.eval.checkpoint)
    model_cfg = OmegaConf.load(run / "config.yaml").model if run is not None else cfg.model
    if (ckpt / "adapter_config.json").exists() and model_cfg.lora.r <= 0:
        raise ValueError(f"{ckpt} holds LoRA adapters but no run config with model.lora says which base model "
                         "they belong to; evaluate it from its run folder")
    model, tok = load_policy(model_cfg, str(ckpt))
    return model, tok, str(ckpt)


def dataset_envs(cfg: Any) -> list[tuple[str, Any, bool]]:
    """``[(name, env config, eval_split)]``: one per ``eval.datasets`` entry (the file through the env's task
    source, ``split: all`` where the source has splits), or the env's held-out split when there are none."""
    from omegaconf import OmegaConf

    from r1gym.core.env_factory import env_kwargs

    if not cfg.eval.datasets:
        return [(str(cfg.env.id).split("/")[-1] + " (eval split)", cfg.env, True)]
    out = []
    for item in cfg.eval.datasets:
        name, sep, path = str(item).partition("=")
        if not sep:
            name, path = Path(item).stem, str(item)
        env_cfg = OmegaConf.create(OmegaConf.to_container(cfg.env, resolve=True))
        source = env_kwargs(env_cfg).get("source")
        if not isinstance(source, dict):
            raise ValueError(f"eval.datasets needs an env whose task source reads files; env {cfg.env.id} has "
                             f"source {source!r}")
        patch = {"path": path, **({"split": "all"} if "split" in source else {})}
        env_cfg.kwargs = OmegaConf.merge(env_cfg.kwargs or {}, {"source": patch})
        out.append((name, env_cfg, False))
    return out


def run_job(cfg: Any, run_dir: Path, *, console: Any = None, host: Any = None) -> dict[str, Any]:
    """``r1gym eval``: k samples per problem for each dataset; a table on the console, ``eval.json`` (metrics per
    dataset, sampling settings, model) and ``eval_samples.jsonl`` (every completion with its verdict) in
    ``run_dir``. Returns what ``eval.json`` holds. ``host``: the plugin host the envs come from (default: the
    process-wide one)."""
    import json
    import time

    import torch
    from rich.progress import Progress
    from rich.table import Table

    from r1gym.core.env_factory import make_envs, primary_reward
    from r1gym.core.loggers import wide_console
    from r1gym.core.runtime import build_sampler, prepare_threads

    console = console or wide_console()  # a log file gets the table whole, not squeezed to 80 columns
    ev = cfg.eval
    prepare_threads(cfg.trainer)
    model, tokenizer, model_desc = load_eval_policy(cfg)
    sampler = build_sampler(cfg, model.eval(), tokenizer, host=host)
    backend, renderer = sampler.backend, sampler.renderer
    params = eval_sampling(ev, SamplingParams.from_config(cfg.rollout))
    _, k = eval_size(ev, available=0)  # samples per problem: the same for every dataset
    results: dict[str, Any] = {
        "model": model_desc, "samples_per_problem": k,
        "sampling": {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k,
                     "max_new_tokens": params.max_new_tokens, "greedy": bool(ev.greedy)},
        "datasets": {},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    samples_path = run_dir / "eval_samples.jsonl"
    with samples_path.open("w") as samples_file:
        for name, env_cfg, eval_split in dataset_envs(cfg):
            probe = make_envs(env_cfg, 1, eval_split=eval_split, host=host)[0]
            source = probe.unwrapped.source
            n = eval_size(ev, len(source))[0]
            accuracy_key = primary_reward(probe)
            per_call = max(1, backend.batch_size // k) if hasattr(backend, "batch_size") else n
            envs = make_envs(env_cfg, min(n, per_call) * k, eval_split=eval_split, host=host)
            torch.manual_seed(cfg.trainer.seed)
            episodes: list[Episode] = []
            start = time.perf_counter()
            with Progress(console=console, transient=True) as progress:
                bar = progress.add_task(f"{name}: {n} problems x {k}", total=n)
                for s in range(0, n, per_call):
                    indices = list(range(s, min(n, s + per_call)))
                    eps = collect_episodes(envs, indices, k, backend, renderer, params,
                                           max_episode_tokens=cfg.rollout.max_episode_tokens,
                                           reward_workers=cfg.rollout.reward_workers)
                    episodes += eps
                    progress.advance(bar, len(indices))
            metrics, _ = summarize_episodes(episodes, accuracy_key)
            metrics["seconds"] = time.perf_counter() - start
            metrics["accuracy_reward"] = accuracy_key
            results["datasets"][name] = metrics
            for e in episodes:
                samples_file.write(json.dumps({
                    "dataset": name, "task_index": e.task_index, "task_id": source[e.task_index].id,
                    "completion": tokenizer.decode(e.completion_ids, skip_special_tokens=True),
                    "correct": e.rewards.get(accuracy_key), "answer": e.answers.get(accuracy_key),
                    "reward": e.reward if e.scorable else None, "rewards": e.rewards, "unscorable": e.unscorable,
                    "flags": e.flags, "truncated": e.truncated, "tokens": e.num_generated,
                }, default=str) + "\n")
    from r1gym.core.jsonl import atomic_write_text

    atomic_write_text(run_dir / "eval.json", json.dumps(results, indent=2))

    table = Table(title=f"{model_desc}: pass@1 over k={k} samples, cons@{k} by majority vote")
    for col in ("dataset", "problems", "pass@1", f"cons@{k}", "unscorable samples", "mean tokens", "seconds"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for name, m in results["datasets"].items():
        cons = m.get(f"cons@{k}")
        table.add_row(name, f"{int(m['problems'])}", f"{m['pass@1']:.3f}", "n/a" if cons is None else f"{cons:.3f}",
                      f"{int(m['samples_unscorable'])}", f"{m['completion_len_mean']:.0f}", f"{m['seconds']:.0f}")
    console.print(table)
    return results
