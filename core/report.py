"""The pipeline's report: ``report.md`` and PNG plots in the run folder, from its manifest and the stages'
``metrics.jsonl``.

What the R1 paper shows, at whatever scale the run had: an evaluation table per stage (pass@1 over k samples,
cons@k), the training reward and the mean completion length over the steps of each RL stage (the paper's
Figures 2 and 3), and what rejection sampling kept and dropped, per reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURVES = (("reward/mean", "training reward (mean)"), ("completion/len_mean", "completion length (tokens)"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by an interruption
    return [r for r in rows if "step" in r]


def plot_curves(rows: list[dict[str, Any]], title: str, out: Path) -> bool:
    """One PNG with a panel per curve of :data:`CURVES`; False when matplotlib is missing or nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'r1gym[report]'): the report has no plots")
        return False
    if not rows:
        return False
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.2))
    for ax, (key, label) in zip(axes, CURVES):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ("n/a" if x is None else str(x))


def write_report(run_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``report.md`` (and ``plots/*.png``) for a pipeline run; returns the report's path."""
    run_dir = Path(run_dir)
    lines = [f"# Pipeline `{manifest.get('pipeline')}`", "", f"Run folder: `{run_dir}`", "",
             "| # | stage | conf/stage | status | started | finished | outputs |", "|---|---|---|---|---|---|---|"]
    stages = manifest.get("stages", {})
    for k, (name, e) in enumerate(stages.items(), start=1):
        outputs = ", ".join(f"{key}: `{Path(str(v)).name}`" for key, v in (e.get("outputs") or {}).items() if v)
        lines.append(f"| {k} | {name} | {e.get('stage', '')} | {e.get('status')} | {e.get('started', '')} | "
                     f"{e.get('finished', '')} | {outputs} |")

    evals = {n: e["eval"] for n, e in stages.items() if e.get("eval")}
    if evals:
        lines += ["", "## Evaluation after each stage", "",
                  "pass@1 averaged over k samples per problem, cons@k by majority vote (n/a where the reward gives no "
                  "answer to vote on).", "",
                  "| after stage | dataset | problems | k | pass@1 | cons@k | mean tokens |", "|---|---|---:|---:|---:|---:|---:|"]
        for name, ev in evals.items():
            k = ev.get("samples_per_problem")
            for ds, m in (ev.get("datasets") or {}).items():
                lines.append(f"| {name} | {ds} | {int(m.get('problems', 0))} | {k} | {_fmt(m.get('pass@1'))} | "
                             f"{_fmt(m.get(f'cons@{k}'))} | {_fmt(m.get('completion_len_mean'))} |")

    plots = run_dir / "plots"
    curves = []
    for k, (name, e) in enumerate(stages.items(), start=1):
        rows = read_metrics(Path(e.get("run_dir", "")) / "metrics.jsonl")
        if rows and any("reward/mean" in r for r in rows):
            plots.mkdir(exist_ok=True)
            png = plots / f"{k}-{name}.png"
            if plot_curves(rows, f"{name}: GRPO training", png):
                curves.append((name, png, rows))
    if curves:
        lines += ["", "## RL stages: reward and completion length over training", ""]
        for name, png, rows in curves:
            first, last = rows[0], rows[-1]
            lines += [f"### {name}", "", f"![{name}](plots/{png.name})", "",
                      f"steps {first['step']}-{last['step']}: reward {_fmt(first.get('reward/mean'))} -> "
                      f"{_fmt(last.get('reward/mean'))}, completion length {_fmt(first.get('completion/len_mean'))} -> "
                      f"{_fmt(last.get('completion/len_mean'))} tokens", ""]

    data_stages = {n: e for n, e in stages.items() if (Path(e.get("run_dir", "")) / "data_stats.json").exists()}
    if data_stages:
        lines += ["", "## Data generation: kept and dropped", ""]
        for name, e in data_stages.items():
            stats = json.loads((Path(e["run_dir"]) / "data_stats.json").read_text())
            lines += [f"### {name}", "",
                      f"{stats['prompts']} prompts x {stats['samples_per_prompt']} samples from `{stats['model']}`; "
                      f"{stats['records']} records written ({stats['reasoning']} reasoning, {stats['non_reasoning']} "
                      f"non-reasoning); language filter {stats.get('language_filter', 'n/a')}.", "",
                      "| count | n |", "|---|---:|"]
            lines += [f"| {key} | {v} |" for key, v in sorted(stats.get("counts", {}).items())]
            lines.append("")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
