"""Data-parallel GRPO under each trainer: step time, its phases and the peak memory of a process.

Runs ``torchrun --nproc_per_node N -m r1gym.core.cli train experiment=demo trainer=T ...`` once per trainer
(``ddp``, ``deepspeed_zero2``, ``deepspeed_zero3`` by default; ``cpu`` runs one process without torchrun), each
for ``--warmup-steps + --steps`` steps, and reports the mean of the timed steps' ``time/*`` metrics and the
largest resident set of any process of the run (``ru_maxrss`` of the children: the biggest single process, not
the sum). On this 2-core CPU the point is the *overhead* of each engine on the same work, not a speed-up: two
processes share two cores.

    python bench/scaling.py                          # all three trainers, 2 processes, the demo preset
    python bench/scaling.py --trainers ddp deepspeed_zero3 --steps 2 --write-md
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its sibling report.py

import report  # noqa: E402

#: runs a command and prints the largest RSS of its descendants (KiB) last: a fresh process per run, because
#: RUSAGE_CHILDREN's maximum only ever grows within one process
PEAK_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
                "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
PHASES = ("time/step", "time/generate", "time/reward", "time/forward_backward", "time/optimizer", "time/weight_sync")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_one(trainer: str, procs: int, steps: int, overrides: Sequence[str], run_dir: Path) -> dict:
    """One run; its timed steps' mean phases, its wall time and the peak RSS of its largest process."""
    launch = [sys.executable, "-m", "r1gym.core.cli"] if trainer == "cpu" else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
        str(free_port()), "-m", "r1gym.core.cli"]
    cmd = [*launch, "train", "experiment=demo", f"trainer={trainer}", f"trainer.max_steps={steps}",
           f"trainer.save_every={10**6}", "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only",
           f"run_dir={run_dir}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{trainer}: the run failed\n{(out.stdout + out.stderr)[-3000:]}")
    peak_kb = next(int(line.split()[1]) for line in reversed(out.stdout.splitlines()) if line.startswith("PEAK_RSS_KB"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"rows": rows, "wall": wall, "peak_mb": peak_kb / 1024, "command": " ".join(cmd)}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainers", nargs="+", default=["ddp", "deepspeed_zero2", "deepspeed_zero3"],
                   help="conf/trainer options (cpu: one process, no torchrun)")
    p.add_argument("--procs", type=int, default=2, help="processes per run (torchrun --nproc_per_node)")
    p.add_argument("--steps", type=int, default=3, help="timed train steps")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first (DeepSpeed's set-up, caches)")
    p.add_argument("--override", action="append", default=["trainer.threads=1"], metavar="KEY=VALUE",
                   help="extra Hydra override, repeatable (default: trainer.threads=1)")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)
    info = report.machine_info()
    print(report.machine_line(info))
    if report.busy_warning(info):
        print(report.busy_warning(info))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(tempfile.gettempdir()) / "r1gym-torch-extensions"))
    headers = ["trainer", "processes", *(k.removeprefix("time/") + " s" for k in PHASES), "reward", "peak RSS MB",
               "run wall s"]
    rows, commands = [], []
    for trainer in args.trainers:
        with tempfile.TemporaryDirectory(prefix=f"r1gym-scaling-{trainer}-") as tmp:
            res = run_one(trainer, args.procs, args.warmup_steps + args.steps, args.override, Path(tmp) / "run")
        timed = [r for r in res["rows"] if r["step"] > args.warmup_steps]
        mean = {k: sum(r.get(k, 0.0) for r in timed) / len(timed) for k in (*PHASES, "reward/mean")}
        rows.append([trainer, 1 if trainer == "cpu" else args.procs, *(mean[k] for k in PHASES), mean["reward/mean"],
                     res["peak_mb"], res["wall"]])
        commands.append(res["command"])
        print(report.text_table(headers, rows[-1:]))
    print("\n" + report.text_table(headers, rows))
    if args.write_md:
        notes = (f"The demo preset (SmolLM2-135M, {args.procs} processes unless `cpu`), mean of {args.steps} steps "
                 f"after {args.warmup_steps} untimed; peak RSS: the largest single process. Runs:\n\n"
                 + "".join(f"- `{c}`\n" for c in commands) + "\n")
        path = report.append_section("scaling", notes + report.markdown_table(headers, rows), info, path=args.md_path)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
