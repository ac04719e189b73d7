"""Wall time of one GRPO step, split into the phases the trainer logs, and training throughput.

Composes a config the way ``r1gym train`` does (``r1gym.core.config.compose``; ``logger=jsonl_only``, no
evaluation), builds ``GRPOTrainer(cfg, run_dir=<temp folder>)``, calls ``.setup()`` and then ``.train_step()``
``--warmup-steps + --steps`` times. The first ``--warmup-steps`` are not counted (they pay one-time costs:
AdamW allocates its state, the allocator grows). Per phase the table gives the median over the timed steps
of the trainer's own metrics: ``time/generate``, ``time/reward``, ``time/reference``,
``time/forward_backward``, ``time/optimizer``, ``time/weight_sync``, and ``time/step``; ``other`` is
``time/step`` minus the phases (advantages, packing, metrics).

Tokens per step (the trainer's episodes are read through a subclass that keeps what ``rollout`` returns):

* completion tokens: tokens the policy generated (the ones with a loss);
* forward tokens: prompt + completion tokens of every sequence (what a plain forward over each sequence
  runs over);
* distinct forward tokens: the same with each distinct prompt counted once (the G samples of a group share
  their prompt, and a trainer that runs a shared prompt once per micro-batch does only this much work).

Padding is counted nowhere: these are the useful tokens, whatever the trainer's packing does with them.

Throughputs and ceilings (see bench/gemm.py; n_params: every parameter once, tied embeddings once, an untied
input embedding not at all):

* training: distinct forward tokens / ``time/forward_backward`` against GEMM / (6 x n_params) tokens/s
  (forward 2 + backward 4 FLOPs per parameter and token). The trainer runs the LM head on completion
  positions only, so a prompt token costs (1 - head share) x 6 x n_params and the ceiling is conservative by
  up to the head's share of n_params (printed; 21% for SmolLM2-135M, nearly all of a tiny model with a big
  vocabulary, whose percentages are therefore meaningless). The same rate over all forward tokens is the
  effective rate; with prompt sharing it can exceed 100% of the ceiling;
* generation: completion tokens / ``time/generate`` against GEMM / (2 x n_params) (prefill not counted);
* reference (beta > 0): distinct forward tokens / ``time/reference`` against GEMM / (2 x n_params);
* end to end: completion tokens / ``time/step``.

    python bench/grpo_step.py --prompts 8 --group-size 4 --max-new-tokens 128 --steps 3
    python bench/grpo_step.py --make-tiny-model /tmp/r1gym-tiny --prompts 2 --group-size 2 \\
        --max-new-tokens 8 --steps 1 --gemm-sizes 256                                # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its siblings gemm.py and report.py

import gemm  # noqa: E402
import report  # noqa: E402

PHASES = ("generate", "reward", "reference", "forward_backward", "optimizer", "weight_sync")


def make_tiny_model(path: Path) -> Path:
    """A 2-layer, hidden-32 random Llama with SmolLM2's tokenizer (and chat template), saved to ``path`` once."""
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from r1gym.core.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_trainer(cfg: Any, run_dir: Path):

    RecordingTrainer = report.recording_trainer_class()

    return RecordingTrainer(cfg, run_dir=run_dir)


def token_counts(trainer: Any) -> dict[str, int]:
    """Completion tokens, every sequence's prompt + completion, and the same with each distinct prompt once."""
    eps = trainer.last_episodes
    prompts = {tuple(e.prompt_ids) for e in eps}
    completion_positions = sum(len(e.completion_ids) for e in eps)
    return {
        "completion": sum(e.num_generated for e in eps),
        "forward": sum(len(e.prompt_ids) for e in eps) + completion_positions,
        "distinct": sum(len(p) for p in prompts) + completion_positions,
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="built-in name or local HF folder (default: %(default)s)")
    p.add_argument("--make-tiny-model", metavar="DIR", default=None,
                   help="build a tiny random Llama in DIR (once) and benchmark it instead of --model")
    p.add_argument("--env", default="countdown", help="config option of the env group (default: %(default)s)")
    p.add_argument("--prompts", type=int, default=8, help="algo.prompts_per_step")
    p.add_argument("--group-size", type=int, default=4, help="algo.group_size (G)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="rollout.max_new_tokens")
    p.add_argument("--beta", type=float, default=0.0, help="algo.beta; > 0 loads the reference model")
    p.add_argument("--steps", type=int, default=3, help="timed train steps")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed train steps first")
    p.add_argument("--threads", type=int, default=None, help="trainer.threads (default: torch's choice)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override, repeatable (e.g. algo.micro_batch_size=16)")
    gemm.add_gemm_args(p)
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from r1gym.core.config import compose

    if args.threads:
        torch.set_num_threads(args.threads)
    model = str(make_tiny_model(Path(args.make_tiny_model))) if args.make_tiny_model else args.model
    overrides = [
        f"model.name_or_path={model}", f"env={args.env}", f"algo.prompts_per_step={args.prompts}",
        f"algo.group_size={args.group_size}", f"rollout.max_new_tokens={args.max_new_tokens}",
        f"algo.beta={args.beta}", "logger=jsonl_only", "eval.at_start=false", "eval.at_end=false",
        f"trainer.max_steps={args.warmup_steps + args.steps}",
        *([f"trainer.threads={args.threads}"] if args.threads else []),
        *args.override,
    ]
    cfg = compose(overrides)
    info = report.machine_info()
    print(report.machine_line(info))
    if report.busy_warning(info):
        print(report.busy_warning(info))
    gflops, gemm_src = gemm.gemm_rate(args)

    with tempfile.TemporaryDirectory(prefix="r1gym-bench-") as tmp:
        trainer = make_trainer(cfg, Path(tmp))
        trainer.setup()
        n_params, n_head = gemm.matmul_params(trainer.model)
        print(f"GEMM {gflops:.1f} GFLOP/s ({gemm_src}); {model}: {n_params / 1e6:.2f}M params; "
              f"{args.prompts} prompts x G={args.group_size}, max_new_tokens={args.max_new_tokens}, beta={args.beta}")
        runs: list[dict[str, float]] = []
        for i in range(args.warmup_steps + args.steps):
            metrics, _ = trainer.train_step()
            counts = token_counts(trainer)
            timed = i >= args.warmup_steps
            print(f"step {i + 1}{'' if timed else ' (warm-up)'}: {metrics['time/step']:.2f} s, "
                  f"{counts['completion']} completion / {counts['distinct']} distinct / "
                  f"{counts['forward']} forward tokens", flush=True)
            if timed:
                runs.append({**{k: float(v) for k, v in metrics.items() if k.startswith("time/")}, **counts})

    def med(key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs)

    step = med("time/step")
    other = statistics.median(r["time/step"] - sum(r.get(f"time/{ph}", 0.0) for ph in PHASES) for r in runs)
    phase_headers = ["phase", "median s", "% of step", "min s", "max s"]
    phase_rows = []
    for ph in PHASES:
        vals = [r.get(f"time/{ph}", 0.0) for r in runs]
        phase_rows.append([ph, med(f"time/{ph}"), f"{100 * med(f'time/{ph}') / step:.1f}%", min(vals), max(vals)])
    phase_rows.append(["other", other, f"{100 * other / step:.1f}%", "", ""])
    phase_rows.append(["step", step, "100%", min(r["time/step"] for r in runs), max(r["time/step"] for r in runs)])

    comp, fwd, distinct = med("completion"), med("forward"), med("distinct")
    train_ceil = gemm.train_ceiling(gflops, n_params)
    dec_ceil = gemm.decode_ceiling(gflops, n_params)
    tput_headers = ["throughput", "tokens/step", "seconds", "tok/s", "ceiling tok/s", "% of ceiling"]

    def row(name: str, tokens: float, secs: float, ceil: float | None) -> list:
        tps = tokens / secs if secs > 0 else float("nan")
        return [name, str(int(tokens)), secs, tps, ceil if ceil else "", f"{100 * tps / ceil:.1f}%" if ceil else ""]

    fb = med("time/forward_backward")
    tput_rows = [
        row("train: distinct forward tokens / forward_backward", distinct, fb, train_ceil),
        row("train: all forward tokens / forward_backward", fwd, fb, train_ceil),
        row("train: completion tokens / forward_backward", comp, fb, None),
        row("generate: completion tokens / generate", comp, med("time/generate"), dec_ceil),
    ]
    if args.beta > 0:
        ref_s = med("time/reference")
        tput_rows.append(row("reference: distinct forward tokens / reference", distinct, ref_s, dec_ceil))
    tput_rows.append(row("end to end: completion tokens / step", comp, step, None))

    print("\n" + report.text_table(phase_headers, phase_rows))
    print("\n" + report.text_table(tput_headers, tput_rows))
    a = cfg.algo
    notes = (
        f"- {model} ({cfg.model.dtype}, {n_params / 1e6:.2f}M params), env `{args.env}`, "
        f"{a.prompts_per_step} prompts x "
        f"G={a.group_size}, max_new_tokens={cfg.rollout.max_new_tokens}, beta={a.beta}, "
        f"micro_batch_size={a.micro_batch_size}, rollout.params={dict(cfg.rollout.params)}, "
        f"num_iterations={a.num_iterations}; median of {args.steps} steps after {args.warmup_steps} warm-up.\n"
        f"- GEMM {gflops:.1f} GFLOP/s ({gemm_src}); "
        f"training ceiling = GEMM / (6 x n_params) = {train_ceil:.0f} tok/s; "
        f"decode ceiling = GEMM / (2 x n_params) = {dec_ceil:.0f} tok/s; the LM head ({100 * n_head / n_params:.0f}% "
        "of n_params) runs on completion positions only, so prompt tokens cost less than the ceiling assumes.\n"
        + (f"- extra overrides: `{' '.join(args.override)}`\n" if args.override else "")
    )
    if args.write_md:
        body = notes + "\n" + report.markdown_table(phase_headers, phase_rows) + "\n\n"
        body += report.markdown_table(tput_headers, tput_rows)
        path = report.append_section("grpo_step", body, info, path=args.md_path)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
