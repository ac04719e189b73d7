"""The demo's learning curves in fp32 and in lower precision, over the same seeds (issue 18, item 2).

Why: bf16 (and int8 sampler weights) are only worth their speed if training still learns as in fp32. A
difference smaller than fp32's own seed-to-seed spread cannot be told from noise; one larger than it is
a cost. So this runs ``r1gym train experiment=demo`` (what ``make demo`` runs) once per precision and seed,
each as its own process, one after another (never two at once: they would share the cores), and reports
per seed the held-out pass@1 before and after, the per-step training accuracy and the seconds per step,
and plots the curves.

Precisions (``--precisions``): ``fp32`` pins ``trainer.autocast=null rollout.params.dtype=null``; ``bf16``
pins ``trainer.autocast=bf16 rollout.params.dtype=bfloat16``; ``auto`` leaves both to the start-up
measurement (``auto``), and ``default`` passes nothing (whatever the demo's config says). A run folder
``OUT/<precision>-s<seed>`` that finished (``done.json``) is reused, so an interrupted sweep continues.

    python bench/demo_precision.py --seeds 0 1 2 --precisions fp32 bf16 --out runs/demo-precision --write-md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

PRECISIONS = {
    "fp32": ["trainer.autocast=null", "rollout.params.dtype=null"],
    "bf16": ["trainer.autocast=bf16", "rollout.params.dtype=bfloat16"],
    "auto": ["trainer.autocast=auto", "rollout.params.dtype=auto"],
    "default": [],
}


def run_one(out: Path, precision: str, seed: int, extra: Sequence[str]) -> Path:
    """One demo run (or the finished one already in ``out``); its folder."""
    run_dir = out / f"{precision}-s{seed}"
    if (run_dir / "done.json").exists():
        print(f"{run_dir}: finished before, reused")
        return run_dir
    r1gym = Path(sys.executable).with_name("r1gym")
    cmd = [str(r1gym), "train", "experiment=demo", f"trainer.seed={seed}", f"run_dir={run_dir}",
           *PRECISIONS[precision], *extra]
    print("$ " + " ".join(cmd), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {rc}; see {run_dir.parent / (run_dir.name + '.log')}")
    (run_dir / "done.json").write_text(json.dumps({"seconds": time.perf_counter() - start, "command": cmd}))
    return run_dir


def read_run(run_dir: Path) -> dict[str, Any]:
    """Per-step accuracy and seconds, held-out pass@1 at the first and last evaluation, wall time."""
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [s for s in steps if "accuracy" in s]
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line.strip()]
    precision = {}
    if (run_dir / "precision.json").exists():
        precision = json.loads((run_dir / "precision.json").read_text())
    return {
        "accuracy": [s["accuracy"] for s in steps],
        "step_s": [s["time/step"] for s in steps],
        "generate_s": [s.get("time/generate", float("nan")) for s in steps],
        "fb_s": [s.get("time/forward_backward", float("nan")) for s in steps],
        "before": evals[0]["eval/pass@1"], "after": evals[-1]["eval/pass@1"],
        "wall_s": json.loads((run_dir / "done.json").read_text())["seconds"],
        "precision": precision,
    }


def plot(runs: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    colors = {"fp32": "tab:blue", "bf16": "tab:orange", "auto": "tab:green", "default": "tab:gray"}
    for precision, seeds in runs.items():
        for seed, r in seeds.items():
            style = dict(color=colors.get(precision), marker="o", ms=3, lw=1, alpha=0.8)
            ax.plot(range(1, len(r["accuracy"]) + 1), r["accuracy"], label=f"{precision} seed {seed}", **style)
            ax2.plot([0, len(r["accuracy"])], [r["before"], r["after"]], **style)
    ax.set_xlabel("step")
    ax.set_ylabel("training accuracy (64 samples a step)")
    ax.set_title("make demo: fp32 vs lower precision, same seeds")
    ax.legend(fontsize=7, ncol=2)
    ax2.set_xlabel("step")
    ax2.set_ylabel("held-out pass@1 (64 problems x 4)")
    ax2.set_title("held-out, before / after")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def summary(runs: dict[str, dict[int, dict[str, Any]]], plot_rel: str | None, untimed: Sequence[str] = ()) -> str:
    """The Markdown body; runs named in ``untimed`` (``fp32-s0``) keep their curves but not their timings."""
    nan = float("nan")
    for precision, seeds in runs.items():
        for seed, r in seeds.items():
            if f"{precision}-s{seed}" in untimed:
                r["step_s"] = r["generate_s"] = r["fb_s"] = [nan]
                r["wall_s"] = nan
    rows = []
    for precision, seeds in runs.items():
        for seed, r in sorted(seeds.items()):
            rows.append([precision, str(seed), r["before"], r["after"], r["after"] - r["before"],
                         statistics.mean(r["accuracy"][-5:]), statistics.median(r["step_s"]),
                         statistics.median(r["generate_s"]), statistics.median(r["fb_s"]), r["wall_s"] / 60])
    agg = []
    base = runs.get("fp32")
    for precision, seeds in runs.items():
        gains = [r["after"] - r["before"] for r in seeds.values()]
        step = _mean_step(seeds)
        speed = _mean_step(base) / step if base else nan
        agg.append([precision, len(seeds), min(gains), max(gains), statistics.mean(gains), step, f"{speed:.2f}x"])
    curves = []
    for precision, seeds in runs.items():
        for seed, r in sorted(seeds.items()):
            curves.append([precision, str(seed), " ".join(f"{a:.2f}" for a in r["accuracy"])])
    chosen = sorted({json.dumps(r["precision"], sort_keys=True)
                     for seeds in runs.values() for r in seeds.values() if r["precision"]})
    body = [
        "- each run: `r1gym train experiment=demo trainer.seed=S run_dir=...` plus the precision's overrides "
        f"({'; '.join(f'`{k}`: ' + (' '.join(v) or 'none') for k, v in PRECISIONS.items() if k in runs)}); "
        "runs one after another, never two at once; held-out pass@1 = 64 test problems x 4 samples.",
        "- step s / generate s / forward+backward s: medians over the run's steps; wall = the whole run incl. "
        "model load and both evaluations.",
    ]
    if chosen:
        body.append("- `auto` choices recorded in the runs' precision.json: " + "; ".join(f"`{c}`" for c in chosen))
    body += ["", report.markdown_table(
        ["precision", "seed", "pass@1 before", "pass@1 after", "gain", "train acc, last 5 steps", "step s",
         "generate s", "fwd+bwd s", "wall min"], rows), "",
        report.markdown_table(["precision", "seeds", "gain min", "gain max", "gain mean", "mean step s",
                               "speed vs fp32"], agg), "",
        "per-step training accuracy (the curves):", "",
        report.markdown_table(["precision", "seed", "accuracy at steps 1..N"], curves)]
    if plot_rel:
        body += ["", f"![demo learning curves]({plot_rel})"]
    return "\n".join(body)


def _mean_step(seeds: dict[int, dict[str, Any]]) -> float:
    """Mean over seeds of the median step time, leaving out untimed runs."""
    steps = [statistics.median(r["step_s"]) for r in seeds.values()]
    steps = [t for t in steps if t == t]
    return statistics.mean(steps) if steps else float("nan")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(PRECISIONS))
    p.add_argument("--out", type=Path, default=Path("runs/demo-precision"),
                   help="folder of the runs (<precision>-s<seed>); finished runs in it are reused")
    p.add_argument("--overrides", nargs="*", default=[], help="more Hydra overrides for every run")
    p.add_argument("--untimed", nargs="*", default=[],
                   help="runs (e.g. fp32-s0) whose timings do not count: interrupted or run on a busy machine")
    p.add_argument("--plot", type=Path, default=report.ROOT / "docs" / "img" / "demo_precision.png")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=report.DEFAULT_MD)
    args = p.parse_args(argv)
    info = report.start(None)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in args.seeds:  # seed-major: an interrupted sweep has both precisions of the seeds it finished
        for precision in args.precisions:
            runs.setdefault(precision, {})[seed] = read_run(run_one(args.out, precision, seed, args.overrides))
    plot(runs, args.plot)
    md_path = Path(args.md_path)
    rel = os.path.relpath(args.plot, md_path.parent)
    body = summary(runs, rel, args.untimed)
    print(body)
    if args.write_md:
        print(f"appended to {report.append_section('demo_precision', body, info, path=md_path)}")


if __name__ == "__main__":
    main()
