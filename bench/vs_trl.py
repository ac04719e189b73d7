"""One GRPO optimizer step, r1gym's trainer against TRL's ``GRPOTrainer``, with equal settings.

For each batch shape (prompts x G completions) the script starts one subprocess per side, r1gym and TRL
alternately (the side that goes first alternates from shape to shape). A subprocess per side because peak
memory is a property of a process: each side's number is the peak resident set size (``ru_maxrss`` of
``getrusage(RUSAGE_SELF)``) of a fresh Python process that imports its library, loads the same model and runs
the steps, with nothing subtracted; sharing one process would mix the two sides' allocations and imports.
Each subprocess runs ``--warmup-steps`` untimed steps and then ``--steps`` timed ones; the table gives the
median of the timed steps.

What one "step" is, per side:

* r1gym: wall time around ``GRPOTrainer.train_step()`` (rollout with rewards, advantages, packing,
  forward/backward over micro-batches, gradient clipping, AdamW, metrics);
* TRL: wall time from the ``on_step_begin`` to the ``on_step_end`` callback of ``trainer.train()``: the
  micro-batches of one optimizer step (generation and rewards happen inside the first one), gradient
  clipping, AdamW, LR scheduler. It leaves out the Trainer's fetching of the step's rows from the data loader
  (before ``on_step_begin``) and its logging (after ``on_step_end``); the time from one ``on_step_end`` to the
  next, which includes both, is reported too ("TRL interval").

Equal settings (the script checks the ones it can and prints a warning where they differ):

* precision (``--precision``): ``fp32`` on both sides (the default), or ``bf16`` on both sides, each in its own
  bf16 mode, weights and optimizer in fp32: r1gym ``trainer.autocast=bf16 rollout.params.dtype=bfloat16`` (bf16
  autocast for forward and backward, a bf16 sampler copy), TRL ``bf16=True`` (the Trainer's bf16 autocast);
* model: the same local folder (SmolLM2-135M-Instruct by default), fp32 weights on both sides, no
  gradient checkpointing, no vLLM, CPU, the same torch thread count;
* prompts: the chat-templated Countdown prompts of r1gym's env (``make_envs`` + ``reset(options={"index"})``),
  the task indices in the order r1gym's ``PromptSampler`` draws them; TRL gets them as a ``datasets.Dataset``
  whose "prompt" column holds the same chat messages, in that order (``shuffle_dataset=False``), and applies
  the same tokenizer's chat template. The prompt lengths the two sides tokenised are compared;
* sampling: temperature 1.0, top_p 1.0, top_k 0 (off; TRL's ``GRPOConfig.top_k`` default is 0 too),
  no min_p, repetition penalty 1.0, the same ``max_completion_length``; both stop a completion at the
  first EOS id (the tokenizer's EOS plus the model's ``generation_config.eos_token_id``; compared);
* reward: the env's own weighted reward (``countdown`` 1.0 + ``format`` 0.1), called by r1gym's env and,
  on the TRL side, from one reward function that calls the same ``RewardSet``;
* advantages: (r - group mean) / group std (TRL ``scale_rewards="group"``, r1gym ``algo.advantage=grpo``);
* loss: ``--loss grpo`` = per-sequence token mean, then mean over sequences (TRL ``loss_type="grpo"``, r1gym
  ``algo.loss_aggregation=seq_mean_token_mean``); ``--loss dapo`` = token mean over the whole batch (TRL
  ``"dapo"``, r1gym ``token_mean``). With num_iterations = 1 the ratio is 1, so clipping (eps 0.2) is a no-op;
  beta as given (0 loads no reference model on either side);
* one optimizer step consumes exactly the prompts x G completions generated in that step: TRL gets
  ``per_device_train_batch_size`` = the micro-batch size, ``gradient_accumulation_steps`` = prompts x G /
  micro-batch and ``steps_per_generation`` = that (its default), so one generation batch = one optimizer
  step; the script counts ``model.generate`` calls, generated rows and rows through the loss per step to show
  it. r1gym's ``algo.micro_batch_size`` is the same number (it must be a multiple of G that divides prompts x G);
* optimizer: AdamW (torch, not fused), lr 1e-6 constant, betas (0.9, 0.99), eps 1e-8, weight decay 0,
  gradient clipping at norm 1.0.

    python bench/vs_trl.py                                    # 1x4, 8x8, 16x8; 32 tokens; 3 timed steps
    python bench/vs_trl.py --shapes 1x2 --max-completion-length 4 --steps 1 --warmup-steps 0   # smoke run
    python bench/vs_trl.py --steps-for 16x8=2 --write-md

Needs the ``bench`` extra: ``pip install -e '.[bench]'`` (trl, datasets; ``make install`` does not add it). Last
run with trl 1.16.0 and transformers 5.25.0 (1x4 smoke, 2026-12-07); 16x8 with trl 1.16.0 and transformers 5.24.0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its sibling report.py

import report  # noqa: E402

SIDES = ("r1gym", "trl")
LOSSES = {  # --loss: (TRL loss_type, r1gym algo.loss_aggregation, what it computes)
    "grpo": ("grpo", "seq_mean_token_mean", "mean over each sequence's tokens, then mean over sequences"),
    "dapo": ("dapo", "token_mean", "sum over every completion token of the step / number of those tokens"),
}
CONTENTION = 0.05  # other processes' share of the cores above which a step counts as contended
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}


def parse_shape(text: str) -> tuple[int, int]:
    try:
        p, g = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is PROMPTSxG, e.g. 8x8; got {text!r}") from None
    if p < 1 or g < 2:
        raise argparse.ArgumentTypeError(f"need prompts >= 1 and G >= 2, got {text!r}")
    return p, g


def micro_batch(prompts: int, g: int, wanted: int) -> int:
    """The micro-batch both sides use: ``min(wanted, prompts x G)``; it must be a multiple of G (r1gym keeps whole
    groups in a micro-batch) and divide prompts x G (TRL's batch = micro-batch x accumulation steps)."""
    n = prompts * g
    mb = min(wanted, n)
    if mb % g or n % mb:
        raise SystemExit(f"micro-batch {mb} for {prompts}x{g}: it must be a multiple of G={g} and divide {n}; "
                         "pick another --micro-batch-size")
    return mb


# -- shared by both workers ------------------------------------------------------------------------------
def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def r1gym_config(spec: dict[str, Any]):
    from r1gym.core.config import compose

    return compose([
        f"model.name_or_path={spec['model']}", "model.dtype=float32", "env=countdown",
        f"algo.prompts_per_step={spec['prompts']}", f"algo.group_size={spec['g']}", "algo.advantage=grpo",
        f"algo.loss_aggregation={LOSSES[spec['loss']][1]}", f"algo.beta={spec['beta']}", "algo.num_iterations=1",
        "algo.eps_low=0.2", "algo.eps_high=0.2", "algo.mask_truncated=false", "algo.dynamic_sampling=false",
        f"algo.micro_batch_size={spec['micro_batch']}", "algo.optim.lr=1e-6", "algo.optim.weight_decay=0.0",
        "algo.optim.betas=[0.9,0.99]", "algo.optim.schedule=constant", "algo.optim.warmup_steps=0",
        "algo.optim.max_grad_norm=1.0", "rollout.temperature=1.0", "rollout.top_p=1.0", "rollout.top_k=0",
        f"rollout.max_new_tokens={spec['max_len']}", "logger=jsonl_only", "eval.at_start=false",
        "eval.at_end=false", f"trainer.seed={spec['seed']}", f"trainer.max_steps={spec['steps']}",
        *([f"trainer.threads={spec['threads']}"] if spec["threads"] else []),
        *(["trainer.autocast=bf16", "rollout.params.dtype=bfloat16"] if spec.get("precision") == "bf16" else []),
        *spec.get("r1gym_overrides", []),
    ])


def task_order(cfg: Any, prompts: int, steps: int) -> tuple[list[Any], list[int]]:
    """The envs and the task indices r1gym's trainer draws over ``steps`` steps (the order TRL is given)."""
    from r1gym.core.env_factory import make_envs
    from r1gym.core.grpo import PromptSampler

    envs = make_envs(cfg.env, 1)
    sampler = PromptSampler(len(envs[0].unwrapped.source), cfg.trainer.seed)
    return envs, [i for _ in range(steps) for i in sampler.take(prompts)]


# -- r1gym worker ----------------------------------------------------------------------------------------
def run_r1gym(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    import torch


    cfg = r1gym_config(spec)

    RecordingTrainer = report.recording_trainer_class()

    trainer = RecordingTrainer(cfg, run_dir=tmp)
    trainer.setup()
    counts = {"generate_calls": 0, "generated_rows": 0}
    inner = trainer.backend.generate

    def counting_generate(prompts, params):
        counts["generate_calls"] += 1
        counts["generated_rows"] += len(prompts)
        return inner(prompts, params)

    trainer.backend.generate = counting_generate
    setup = {"rss_after_setup_mib": rss_mib(), "torch_threads": torch.get_num_threads(),
             "eos_ids": sorted(trainer.backend.eos_ids)}
    steps = []
    for i in range(spec["steps"]):
        counts.update(generate_calls=0, generated_rows=0)
        cpu0 = report.cpu_snapshot()
        t0 = time.perf_counter()
        metrics, _ = trainer.train_step()
        seconds = time.perf_counter() - t0
        other = report.other_cpu_share(cpu0)
        eps = trainer.last_episodes
        steps.append({
            "seconds": seconds, "other_cpu": other, "generate_s": metrics["time/generate"], **counts,
            "completions": len(eps), "loss_rows": len(eps),
            "completion_len_mean": sum(e.num_generated for e in eps) / len(eps),
            "stopped_frac": sum(not e.truncated for e in eps) / len(eps),
            "prompt_len_mean": sum(len(e.prompt_ids) for e in eps) / len(eps),
            "tasks": [e.task_index for e in eps[:: spec["g"]]],
            "reward_mean": metrics.get("reward/mean"),
        })
        print(f"  r1gym step {i + 1}: {seconds:.2f} s (other processes: {100 * other:.0f}% of the cores)", flush=True)
    return {**setup, "steps": steps}


# -- TRL worker ------------------------------------------------------------------------------------------
def run_trl(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1gym.core.models import load_tokenizer, resolve_model_path

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    cfg = r1gym_config(spec)
    envs, order = task_order(cfg, spec["prompts"], spec["steps"])
    env = envs[0].unwrapped
    rows = [{"prompt": env.reset(options={"index": i})[0], "task_index": i} for i in order]
    counts = {"generate_calls": 0, "generated_rows": 0, "reward_rows": 0, "loss_rows": 0, "generate_s": 0.0,
              "prompt_tokens": 0, "tasks": []}

    def countdown_and_format(completions, task_index, **kwargs):
        """r1gym's env reward (its RewardSet: countdown 1.0 + format 0.1); None (NaN) when unscorable."""
        counts["reward_rows"] += len(completions)
        counts["tasks"] += [t for k, t in enumerate(task_index) if k % spec["g"] == 0]
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [env.reward_set.score(t, env.source[i].fields).total for t, i in zip(texts, task_index)]

    mb = spec["micro_batch"]
    n = spec["prompts"] * spec["g"]
    args = GRPOConfig(
        output_dir=str(tmp), use_cpu=True, bf16=spec.get("precision") == "bf16", fp16=False, gradient_checkpointing=False, seed=spec["seed"],
        model_init_kwargs={"dtype": "float32"}, per_device_train_batch_size=mb, gradient_accumulation_steps=n // mb,
        num_generations=spec["g"], max_completion_length=spec["max_len"], temperature=1.0, top_p=1.0, top_k=0,
        min_p=None, repetition_penalty=1.0, use_vllm=False, beta=spec["beta"], num_iterations=1, epsilon=0.2,
        loss_type=LOSSES[spec["loss"]][0], scale_rewards="group", mask_truncated_completions=False,
        learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", adam_beta1=0.9,
        adam_beta2=0.99, adam_epsilon=1e-8, weight_decay=0.0, max_grad_norm=1.0, max_steps=spec["steps"],
        shuffle_dataset=False, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, log_completions=False,
    )
    tokenizer = load_tokenizer(spec["model"])

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps: list[dict[str, Any]] = []
            self.logs: list[dict[str, Any]] = []
            self.last_end: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            counts.update(generate_calls=0, generated_rows=0, reward_rows=0, loss_rows=0, generate_s=0.0,
                          prompt_tokens=0, tasks=[])
            self.cpu0 = report.cpu_snapshot()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            other = report.other_cpu_share(self.cpu0)
            self.steps.append({"seconds": now - self.t0, "interval": now - self.last_end if self.last_end else None,
                               "other_cpu": other,
                               **{k: (list(v) if isinstance(v, list) else v) for k, v in counts.items()}})
            self.last_end = now
            print(f"  trl step {len(self.steps)}: {now - self.t0:.2f} s (other processes: {100 * other:.0f}% of the cores)",
                  flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    timer = StepTimer()
    trainer = GRPOTrainer(model=resolve_model_path(spec["model"]), reward_funcs=countdown_and_format, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[timer])
    model = trainer.model
    inner_generate = model.generate

    def counting_generate(*a, **kw):
        counts["generate_calls"] += 1
        counts["generated_rows"] += int(kw["input_ids"].shape[0])
        counts["prompt_tokens"] += int(kw["attention_mask"].sum())
        t0 = time.perf_counter()
        out = inner_generate(*a, **kw)
        counts["generate_s"] += time.perf_counter() - t0
        return out

    model.generate = counting_generate  # TRL calls unwrap_model(...).generate: this same module on the CPU
    inner_loss = trainer._compute_loss

    def counting_loss(m, inputs):
        counts["loss_rows"] += int(inputs["completion_ids"].shape[0])
        return inner_loss(m, inputs)

    trainer._compute_loss = counting_loss
    setup = {"rss_after_setup_mib": rss_mib(), "torch_threads": torch.get_num_threads(),
             "eos_ids": sorted(trainer.eos_token_ids), "dtype": str(next(model.parameters()).dtype),
             "optimizer": None}
    trainer.train()
    setup["optimizer"] = type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                              else trainer.optimizer).__name__
    step_logs = [lg for lg in timer.logs if "completions/mean_length" in lg]
    steps = []
    for k, s in enumerate(timer.steps):
        lg = step_logs[k] if k < len(step_logs) else {}
        s["completion_len_mean"] = lg.get("completions/mean_length", float("nan"))
        s["stopped_frac"] = 1.0 - lg.get("completions/clipped_ratio", float("nan"))
        s["reward_mean"] = lg.get("reward")
        s["num_tokens_logged"] = lg.get("num_tokens")
        s["completions"] = s["reward_rows"]
        s["prompt_len_mean"] = s["prompt_tokens"] / max(1, s["generated_rows"])
        steps.append(s)
    return {**setup, "steps": steps}


def worker(side: str, spec: dict[str, Any], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"r1gym-vs-trl-{side}-") as tmp:
        load = os.getloadavg()[0]
        result = (run_r1gym if side == "r1gym" else run_trl)(spec, Path(tmp))
    result.update(side=side, peak_rss_mib=peak_rss_mib(), loadavg_1m_at_start=load)
    out.write_text(json.dumps(result))


# -- the driver ------------------------------------------------------------------------------------------
def run_side(side: str, spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--spec", json.dumps(spec),
               "--out", str(out)]
        subprocess.run(cmd, check=True, env={**os.environ, **OFFLINE_ENV})
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def summarize(res: dict[str, Any], warmup: int) -> dict[str, Any]:
    timed = res["steps"][warmup:]

    def med(key: str) -> float:
        vals = [s[key] for s in timed if s.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")

    return {
        "step": med("seconds"), "min": min(s["seconds"] for s in timed), "max": max(s["seconds"] for s in timed),
        "interval": med("interval"), "generate": med("generate_s"),
        "other_cpu": max(s["other_cpu"] for s in timed),
        "len": statistics.mean(s["completion_len_mean"] for s in timed),
        "stopped": statistics.mean(s["stopped_frac"] for s in timed),
        "prompt_len": statistics.mean(s["prompt_len_mean"] for s in timed),
        "gen_calls": sorted({s["generate_calls"] for s in timed}), "gen_rows": sorted({s["generated_rows"] for s in timed}),
        "loss_rows": sorted({s["loss_rows"] for s in timed}), "completions": sorted({s["completions"] for s in timed}),
        "peak": res["peak_rss_mib"], "setup_rss": res["rss_after_setup_mib"],
    }


def checks(shape: tuple[int, int], res: dict[str, dict[str, Any]]) -> list[str]:
    """What should be equal between the sides and is not (empty when all is well)."""
    p, g = shape
    bad = []
    r, t = res["r1gym"], res["trl"]
    if r["eos_ids"] != t["eos_ids"]:
        bad.append(f"EOS ids differ: r1gym {r['eos_ids']}, TRL {t['eos_ids']}")
    if r["torch_threads"] != t["torch_threads"]:
        bad.append(f"torch threads differ: r1gym {r['torch_threads']}, TRL {t['torch_threads']}")
    if t.get("dtype") != "torch.float32":
        bad.append(f"TRL model dtype is {t.get('dtype')}")
    if len(r["steps"]) != len(t["steps"]):
        bad.append(f"steps differ: r1gym {len(r['steps'])}, TRL {len(t['steps'])}")
    for k, (a, b) in enumerate(zip(r["steps"], t["steps"])):
        if a["tasks"] != b["tasks"]:
            bad.append(f"step {k + 1}: task indices differ: r1gym {a['tasks']}, TRL {b['tasks']}")
        if abs(a["prompt_len_mean"] - b["prompt_len_mean"]) > 1e-9:
            bad.append(f"step {k + 1}: prompt lengths differ: r1gym {a['prompt_len_mean']}, TRL {b['prompt_len_mean']}")
        for side, s in (("r1gym", a), ("TRL", b)):
            if not (s["generated_rows"] == s["completions"] == s["loss_rows"] == p * g):
                bad.append(f"step {k + 1} {side}: generated {s['generated_rows']}, scored {s['completions']}, "
                           f"trained {s['loss_rows']} rows; expected {p * g}")
    return bad


def contention(res: dict[str, dict[str, Any]], warmup: int) -> list[str]:
    """Timed steps during which other processes used more than ``CONTENTION`` of the cores."""
    out = []
    for side in SIDES:
        for k, s in enumerate(res[side]["steps"][warmup:], start=warmup + 1):
            if s["other_cpu"] > CONTENTION:
                out.append(f"{side} step {k} ({s['seconds']:.1f} s): other processes used {100 * s['other_cpu']:.0f}% "
                           "of the cores")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="built-in name or local HF folder (default: %(default)s)")
    p.add_argument("--shapes", type=parse_shape, nargs="+", default=[(1, 4), (8, 8), (16, 8)],
                   help="batch shapes PROMPTSxG (default: 1x4 8x8 16x8)")
    p.add_argument("--max-completion-length", type=int, default=32, help="max new tokens per completion")
    p.add_argument("--beta", type=float, default=0.0, help="KL weight; > 0 loads a reference model on both sides")
    p.add_argument("--loss", choices=sorted(LOSSES), default="grpo",
                   help="grpo: TRL loss_type=grpo = r1gym seq_mean_token_mean; dapo: TRL dapo = r1gym token_mean")
    p.add_argument("--micro-batch-size", type=int, default=8,
                   help="sequences per forward/backward on both sides (capped at prompts x G; default: %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per shape and side")
    p.add_argument("--steps-for", action="append", default=[], metavar="SHAPE=N",
                   help="timed steps for one shape, e.g. 16x8=2 (repeatable)")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on both sides (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="both sides in fp32, or both in their bf16 mode (r1gym bf16 autocast + bf16 sampler; "
                        "TRL bf16=True); default: %(default)s")
    p.add_argument("--r1gym-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra Hydra overrides for the r1gym side only, e.g. trainer.matmul=torch or "
                        "rollout.params.dtype=bfloat16 (default: none, r1gym's defaults)")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.update(OFFLINE_ENV)
    if args.worker:
        worker(args.worker, json.loads(args.spec), Path(args.out))
        return

    steps_for = {}
    for item in args.steps_for:
        shape, _, n = item.partition("=")
        steps_for[parse_shape(shape)] = int(n)
    import torch
    import transformers
    import trl

    from r1gym.core.models import resolve_model_path

    info = report.start(args.threads)
    model_path = resolve_model_path(args.model)
    results = []
    for k, (P, G) in enumerate(args.shapes):
        n_timed = steps_for.get((P, G), args.steps)
        spec = {"model": model_path, "prompts": P, "g": G, "max_len": args.max_completion_length,
                "beta": args.beta, "loss": args.loss, "micro_batch": micro_batch(P, G, args.micro_batch_size),
                "steps": args.warmup_steps + n_timed, "threads": args.threads, "seed": args.seed,
                "r1gym_overrides": args.r1gym_overrides, "precision": args.precision}
        order = SIDES if k % 2 == 0 else SIDES[::-1]
        res = {}
        for side in order:
            print(f"{P}x{G}, {side}: {args.warmup_steps} warm-up + {n_timed} timed steps", flush=True)
            res[side] = run_side(side, spec)
        problems = checks((P, G), res)
        contended = contention(res, args.warmup_steps)
        for msg in problems + contended:
            print("WARNING:", msg)
        results.append({"shape": (P, G), "spec": spec, "order": order, "timed": n_timed, "raw": res,
                        "sum": {s: summarize(res[s], args.warmup_steps) for s in SIDES}, "problems": problems,
                        "contended": contended})

    headers = ["prompts x G", "side", "median step s", "min-max s", "generate s", "mean completion len",
               "stopped at EOS", "gen calls/step", "peak RSS MiB", "RSS after setup MiB",
               "other procs' CPU (max)"]
    rows = []
    speed_headers = ["prompts x G", "timed steps", "r1gym step s", "TRL step s", "speedup (TRL / r1gym)",
                     "TRL interval s", "peak RSS r1gym / TRL"]
    speed_rows = []
    for r in results:
        P, G = r["shape"]
        for side in SIDES:
            s = r["sum"][side]
            rows.append([f"{P}x{G}", side, s["step"], f"{s['min']:.2f}-{s['max']:.2f}", s["generate"], s["len"],
                         f"{100 * s['stopped']:.0f}%", ",".join(map(str, s["gen_calls"])), s["peak"], s["setup_rss"],
                         f"{100 * s['other_cpu']:.0f}%"])
        a, b = r["sum"]["r1gym"], r["sum"]["trl"]
        speed_rows.append([f"{P}x{G}", str(r["timed"]), a["step"], b["step"], f"{b['step'] / a['step']:.2f}x",
                           b["interval"], f"{a['peak'] / b['peak']:.2f}"])
    print("\n" + report.text_table(headers, rows))
    print("\n" + report.text_table(speed_headers, speed_rows))
    if any(r["problems"] for r in results):
        print("\nWARNING: some settings were not equal (see above)")
    if any(r["contended"] for r in results):
        print("\nWARNING: other processes competed for the CPU during some timed steps (see above)")

    if args.write_md:
        trl_loss, r1_loss, what = LOSSES[args.loss]
        settings = [
            ["model", f"`{args.model}` ({model_path}), fp32", "same folder, `model_init_kwargs={'dtype': 'float32'}`"],
            ["versions", f"r1gym (this tree), torch {torch.__version__}", f"trl {trl.__version__}, "
             f"transformers {transformers.__version__}"],
            ["prompts", "Countdown env (`env=countdown`), chat template, `PromptSampler` order",
             "the same chat messages as a `Dataset` \"prompt\" column, same order, `shuffle_dataset=False`"],
            ["completions per step", "`algo.prompts_per_step` x `algo.group_size`",
             "`num_generations`=G; `per_device_train_batch_size` x `gradient_accumulation_steps` = prompts x G, "
             "`steps_per_generation` = accumulation steps (one generation per optimizer step)"],
            ["micro-batch", f"`algo.micro_batch_size`={args.micro_batch_size} (capped at prompts x G)",
             f"`per_device_train_batch_size`={args.micro_batch_size} (capped at prompts x G)"],
            ["sampling", f"hf backend (own loop), T=1.0, top_p=1.0, top_k=0, max_new_tokens={args.max_completion_length}",
             f"`model.generate`, T=1.0, top_p=1.0, top_k=0, min_p=None, max_completion_length={args.max_completion_length}"],
            ["stop", "first EOS id (tokenizer + generation_config)", "first EOS id (tokenizer + generation_config)"],
            ["prompt length limit", "none (prompts never truncated)", "none (TRL 1.x has no max_prompt_length)"],
            ["reward", "env reward: countdown x 1.0 + format x 0.1", "one reward function calling the same RewardSet"],
            ["advantage", "`grpo`: (r - mean) / (std + 1e-6)", "`scale_rewards=\"group\"`: (r - mean) / (std + 1e-4)"],
            ["loss", f"`loss_aggregation={r1_loss}`", f"`loss_type=\"{trl_loss}\"`"],
            ["clip / beta / iterations", f"eps 0.2 / {args.beta} / 1", f"epsilon 0.2 / {args.beta} / 1"],
            ["optimizer", "torch AdamW, lr 1e-6 constant, betas (0.9, 0.99), wd 0, clip 1.0",
             "`optim=\"adamw_torch\"`, lr 1e-6 `constant`, betas (0.9, 0.99), wd 0, `max_grad_norm`=1.0"],
            ["precision / memory savers",
             ("fp32" if args.precision == "fp32" else "`trainer.autocast=bf16 rollout.params.dtype=bfloat16` (fp32 "
              "weights and optimizer)") + ", no gradient checkpointing",
             f"`bf16={args.precision == 'bf16'}`, `fp16=False`, "
             "`gradient_checkpointing=False`, `use_cpu=True`, no vLLM"],
            ["step timed", "wall time of `train_step()`", "`on_step_begin` -> `on_step_end` callbacks"],
            ["engine options", "r1gym defaults (`trainer.matmul=auto`: oneDNN fp32 linears if faster here; "
             "`rollout.params.decoder=auto`: lean decoder, fp32 weights)"
             + (f"; overrides: `{' '.join(args.r1gym_overrides)}`" if args.r1gym_overrides else ""),
             "TRL defaults (PyTorch's default fp32 BLAS)"],
        ]
        body = (
            f"- loss (`--loss {args.loss}`): {what} (TRL `loss_type=\"{trl_loss}\"` = r1gym "
            f"`algo.loss_aggregation={r1_loss}`); num_iterations = 1, so the PPO ratio is 1 and clipping does nothing.\n"
            f"- each side runs in its own subprocess, r1gym and TRL alternately (first side alternating per shape); "
            f"median of the timed steps after {args.warmup_steps} warm-up step(s). Peak RSS = `ru_maxrss` of that "
            "process over its whole run (imports, model load, all steps), nothing subtracted.\n"
            "- TRL interval = `on_step_end` to the next `on_step_end` (adds the Trainer's data fetch and logging).\n"
            "- other procs' CPU = the largest share of the cores that other processes used during one timed step "
            f"(all CPU time in /proc/stat minus this process's own); above {100 * CONTENTION:.0f}% a step is listed as "
            "contended.\n"
            "- generate s = time in the rollout backend's `generate` (r1gym) / in `model.generate` (TRL) per step; "
            "mean completion length counts generated tokens up to and including the first EOS.\n"
        )
        for r in results:
            if r["problems"]:
                body += f"- **{r['shape'][0]}x{r['shape'][1]}: settings not equal:** " + "; ".join(r["problems"]) + "\n"
            else:
                sr, st = r["sum"]["r1gym"], r["sum"]["trl"]
                body += (f"- {r['shape'][0]}x{r['shape'][1]} checked equal: task indices, prompt tokens "
                         f"(mean {sr['prompt_len']:.1f}), EOS ids, threads; per step both sides generated, scored and "
                         f"trained {r['shape'][0] * r['shape'][1]} completions (generate calls/step: r1gym "
                         f"{sr['gen_calls']}, TRL {st['gen_calls']}).\n")
            if r["contended"]:
                body += (f"- **{r['shape'][0]}x{r['shape'][1]}: contended timed steps** (CPU used by other processes, "
                         "from /proc/stat minus this process): " + "; ".join(r["contended"]) + "\n")
        body += "\n" + report.markdown_table(["setting", "r1gym", "TRL"], settings) + "\n\n"
        body += report.markdown_table(headers, rows) + "\n\n" + report.markdown_table(speed_headers, speed_rows)
        path = report.append_section("vs_trl", body, info, path=args.md_path)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
