"""Stages that write SFT data from a model's samples: cold start, rejection sampling, distillation.

One routine, :func:`generate`, configured by ``cfg.sample`` (:class:`~r1gym.core.config.SampleConfig`):

1. **sample** ``samples_per_prompt`` completions per prompt of the env (``cfg.env``) from ``sample.model``
   (a built-in name, a model folder, a checkpoint or a run folder; default ``model.name_or_path``), with
   ``sample.few_shot`` long-chain-of-thought examples put before each prompt when given (cold start);
2. **verify** each with the env's own rewards: correct when the accuracy reward (``sample.accuracy_reward``,
   default the env's primary one) is 1. Where the rule cannot score a task, an ``llm_judge`` configured in
   ``sample.judge`` decides (R1's generative reward); ``sample.keep: all`` keeps unverified samples
   (distillation without a checker);
3. **filter** the reasoning (``sample.filters``): mixed languages (the ``language_consistency`` reward, when
   its plugin is loaded; otherwise the filter is skipped and the statistics say so), overlong paragraphs, code
   blocks in the chain of thought;
4. **rewrite** (``sample.rewrite``) into the readable format ``<think>\\n…\\n</think>\\n\\n<summary>``;
5. keep up to ``keep_per_prompt`` per prompt, **mix in** non-reasoning data (``sample.non_reasoning`` files
   as they are; ``sample.non_reasoning_prompts`` answered by the sampling model without long CoT), and
   **write** ``data.jsonl`` (chat records for :mod:`r1gym.core.sft`) and ``data_stats.json`` (kept and
   dropped per reason, reasoning vs non-reasoning counts).

The prompts are processed in chunks and each finished chunk is recorded in ``datagen_progress.jsonl``, so an
interrupted stage resumes after its last finished chunk.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from r1gym.core.jsonl import atomic_write_text, read_appended_jsonl
from r1gym.core.r1_template import render, split_reasoning

log = logging.getLogger(__name__)

DIRECT_SYSTEM = "Answer the user directly, clearly and concisely. Do not show your reasoning."
_FENCE = re.compile(r"```")


def load_examples(path: str) -> list[dict[str, Any]]:
    """``{"messages": [...]}`` or ``{"prompt", "completion"}`` records (a path or ``pkg://``) as chat records,
    checked the way :mod:`r1gym.core.sft` reads its data."""
    from r1gym.core.paths import resolve_path
    from r1gym.core.sft import read_conversations

    return [{"messages": msgs} for _, msgs in read_conversations([str(resolve_path(path))], need_assistant=True)]


def rewrite(text: str) -> str | None:
    """The readable format ``<think>\\n{reasoning}\\n</think>\\n\\n{summary}``: paragraphs separated by one
    blank line, no empty reasoning or summary (``None`` when either is missing: not a usable trace)."""
    reasoning, summary = split_reasoning(text)
    if not reasoning or not summary:
        return None
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", reasoning) if p.strip()]
    return render("\n\n".join(paragraphs), summary)


def filter_reason(text: str, filters: Any, language_score: Any) -> str | None:
    """Why a trace is dropped (``mixed_language``, ``long_paragraph``, ``code_block``), or ``None``."""
    reasoning, _ = split_reasoning(text)
    reasoning = reasoning if reasoning is not None else text
    if filters.code_blocks and _FENCE.search(reasoning):
        return "code_block"
    if filters.max_paragraph_chars is not None and any(
            len(p) > filters.max_paragraph_chars for p in re.split(r"\n\s*\n", reasoning)):
        return "long_paragraph"
    if filters.min_language_consistency is not None and language_score is not None:
        try:
            share = language_score(text)
        except Exception:  # noqa: BLE001 -- a text it cannot measure (no words at all) is not "mixed"
            share = None
        if share is not None and share < filters.min_language_consistency:
            return "mixed_language"
    return None


def _language_scorer(filters: Any, host: Any) -> Any:
    if filters.min_language_consistency is None:
        return None
    if "language_consistency" not in host.rewards:
        log.warning("sample.filters.min_language_consistency is set but no plugin registers the reward "
                    "'language_consistency': the mixed-language filter is skipped")
        return None
    fn = host.rewards.get("language_consistency")
    return lambda text: fn(text, language=filters.language)


def generate(cfg: Any, run_dir: Path, host: Any = None) -> dict[str, Any]:
    """Run the data-generation stage; see the module docstring. Returns the stage summary. ``host``: the plugin
    host its env, rewards, judge and language filter come from (default: the process-wide one)."""
    import torch
    from omegaconf import OmegaConf

    from r1gym.core.chat import load_chat_model
    from r1gym.core.env_factory import make_envs, primary_reward
    from r1gym.core.rollout import SamplingParams, collect_episodes
    from r1gym.core.runtime import build_sampler, prepare_threads

    s, run_dir = cfg.sample, Path(run_dir)
    if s.keep not in ("correct", "all"):
        raise ValueError(f"sample.keep must be 'correct' or 'all', got {s.keep!r}")
    run_dir.mkdir(parents=True, exist_ok=True)
    data_path, stats_path, progress_path = run_dir / "data.jsonl", run_dir / "data_stats.json", run_dir / "datagen_progress.jsonl"
    if stats_path.exists() and data_path.exists():
        stats = json.loads(stats_path.read_text())
        log.info("data generation already finished in %s: %d records", run_dir, stats["records"])
        return {"status": "finished", "stats": stats, "outputs": {"data": str(data_path), "stats": str(stats_path)}}
    prepare_threads(cfg.trainer)
    torch.manual_seed(cfg.trainer.seed)
    source_model = s.model or cfg.model.name_or_path
    chat = load_chat_model(str(source_model))
    sampler = build_sampler(cfg, chat.model, chat.tokenizer, host=host)
    backend, renderer = sampler.backend, sampler.renderer
    params = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                            stop=list(cfg.rollout.stop))
    env_cfg = OmegaConf.create(OmegaConf.to_container(cfg.env, resolve=True))
    if s.few_shot:
        shots = [{"user": m["messages"][0]["content"], "assistant": m["messages"][-1]["content"]}
                 for m in load_examples(s.few_shot)]
        env_cfg.kwargs = OmegaConf.merge(env_cfg.kwargs or {}, {"few_shot": shots})
    from r1gym.core.plugins import default_host

    host = host or default_host()
    probe = make_envs(env_cfg, 1, host=host)[0]
    source = probe.unwrapped.source
    accuracy_key = s.accuracy_reward or primary_reward(probe)
    n = len(source) if s.num_prompts is None else min(int(s.num_prompts), len(source))
    k = int(s.samples_per_prompt)
    per_call = max(1, getattr(backend, "batch_size", 16) // k)
    envs = make_envs(env_cfg, min(n, per_call) * k, host=host)
    judge = _judge(s.judge, host)
    language_score = _language_scorer(s.filters, host)

    done: set[int] = set()
    counts: Counter = Counter()
    if progress_path.exists():  # resume after the last finished chunk (a chunk cut short by a kill is redone)
        for chunk in read_appended_jsonl(progress_path):
            done.update(chunk["indices"])
            counts.update(chunk["counts"])
        log.info("resuming data generation: %d of %d prompts already done", len(done), n)
    with progress_path.open("a") as progress:
        for start in range(0, n, per_call):
            indices = [i for i in range(start, min(n, start + per_call)) if i not in done]
            if not indices:
                continue
            episodes = collect_episodes(envs[: len(indices) * k], indices, k, backend, renderer, params,
                                        max_episode_tokens=cfg.rollout.max_episode_tokens,
                                        reward_workers=cfg.rollout.reward_workers)
            records, chunk_counts = _select(episodes, source, chat.tokenizer, accuracy_key, judge, s, language_score)
            progress.write(json.dumps({"indices": indices, "counts": dict(chunk_counts), "records": records}) + "\n")
            progress.flush()
            counts.update(chunk_counts)
    kept = [r for chunk in read_appended_jsonl(progress_path) for r in chunk["records"]]
    extra = _non_reasoning(s, chat)
    counts["non_reasoning"] = len(extra)
    atomic_write_text(data_path, "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in kept + extra))
    stats = {"model": str(source_model), "env": str(cfg.env.id), "prompts": n, "samples_per_prompt": k,
             "samples": n * k, "accuracy_reward": accuracy_key, "records": len(kept) + len(extra),
             "reasoning": len(kept), "non_reasoning": len(extra),
             "language_filter": "on" if language_score is not None else "off (no language_consistency reward)",
             "counts": dict(counts)}
    atomic_write_text(stats_path, json.dumps(stats, indent=2))
    log.info("wrote %d records (%d reasoning, %d non-reasoning) to %s", stats["records"], len(kept), len(extra), data_path)
    return {"status": "finished", "stats": stats, "outputs": {"data": str(data_path), "stats": str(stats_path)}}


def _judge(judge_cfg: Any, host: Any) -> Any:
    """``llm_judge`` with the configured parameters, or ``None`` when ``sample.judge`` is empty."""
    from omegaconf import OmegaConf

    if not judge_cfg:
        return None
    params = OmegaConf.to_container(judge_cfg, resolve=True) if OmegaConf.is_config(judge_cfg) else dict(judge_cfg)
    fn = host.rewards.get("llm_judge")
    return lambda completion, fields: fn(completion, **{k: v for k, v in fields.items() if k in ("answer", "question")},
                                         **params, host=host)


def _select(episodes: list, source: Any, tokenizer: Any, accuracy_key: str | None, judge: Any, s: Any,
            language_score: Any) -> tuple[list[dict], Counter]:
    """The records kept from one chunk of episodes, and why the others were dropped."""
    from r1gym.core.rewards import Unscorable

    counts: Counter = Counter()
    kept_per_task: Counter = Counter()
    records = []
    for e in episodes:
        counts["samples"] += 1
        text = tokenizer.decode(e.completion_ids, skip_special_tokens=True)
        task = source[e.task_index]
        value = e.rewards.get(accuracy_key) if accuracy_key else None
        verified_by = "rule"
        if value is None and judge is not None:
            try:
                value, verified_by = judge(text, dict(task.fields)), "judge"
            except Unscorable as exc:
                counts["dropped/unscorable"] += 1
                log.debug("judge could not score task %s: %s", task.id, exc)
                continue
        if s.keep == "correct":
            if value is None:
                counts["dropped/unscorable"] += 1
                continue
            if value < 1.0:
                counts["dropped/incorrect"] += 1
                continue
        if e.truncated:
            counts["dropped/truncated"] += 1
            continue
        why = filter_reason(text, s.filters, language_score)
        if why:
            counts[f"dropped/{why}"] += 1
            continue
        if s.rewrite:
            rewritten = rewrite(text)
            if rewritten is None:
                counts["dropped/no_reasoning_or_summary"] += 1
                continue
            text = rewritten
        if kept_per_task[e.task_index] >= s.keep_per_prompt:
            counts["dropped/over_keep_per_prompt"] += 1
            continue
        kept_per_task[e.task_index] += 1
        counts["kept"] += 1
        # the prompt without the few-shot examples that elicited the answer: system message + the task
        prompt = [m for m in e.messages[:1] if m["role"] == "system"] + [{"role": "user", "content": task.prompt}]
        records.append({"messages": [*prompt, {"role": "assistant", "content": text}], "kind": "reasoning",
                        "task_id": task.id, "verified_by": verified_by if s.keep == "correct" else "none"})
    return records, counts


def _non_reasoning(s: Any, chat: Any) -> list[dict]:
    """Non-reasoning records: the given files as they are, plus prompts answered directly by the model."""
    from r1gym.core.paths import resolve_path
    from r1gym.core.jsonl import iter_jsonl

    out = [{**r, "kind": "non_reasoning"} for path in s.non_reasoning for r in load_examples(str(path))]
    if s.non_reasoning_prompts:
        prompts = []
        for lineno, rec in iter_jsonl(resolve_path(s.non_reasoning_prompts)):
            if "prompt" not in rec:
                raise ValueError(f"{s.non_reasoning_prompts}:{lineno}: a record needs 'prompt'; it has {sorted(rec)}")
            prompts.append(str(rec["prompt"]))
        for i in range(0, len(prompts), 8):
            batch = [[{"role": "system", "content": DIRECT_SYSTEM}, {"role": "user", "content": p}] for p in prompts[i:i + 8]]
            for p, result in zip(prompts[i:i + 8], chat.generate(batch, max_tokens=s.max_new_tokens, temperature=0.0)):
                if result.text.strip():
                    out.append({"messages": [{"role": "user", "content": p},
                                             {"role": "assistant", "content": result.text.strip()}],
                                "kind": "non_reasoning", "answered_by": chat.name})
    return out
