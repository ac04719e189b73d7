"""Reports of runs (``r1gym report RUN``): ``report.md`` with PNG plots, and ``report.html``, the same content as one
self-contained page (plots inlined as base64, styles inline, nothing fetched from anywhere).

Any run folder: a training run (``metrics.jsonl``: curves of the reward and each of its components, accuracy with the
held-out evaluations on it, completion length, KL, entropy, clip fraction, unscorable counts, seconds per phase and
loss, a table of every metric's first, last, lowest and highest value, and sampled completions from
``samples.jsonl``), an evaluation run (``eval.json``: pass@1 and cons@k per dataset, mean reward per component,
graded completions from ``eval_samples.jsonl``), a data-generation stage (``data_stats.json``), and a pipeline
(``pipeline.json``: what the R1 paper shows at the run's scale -- an evaluation table per stage, the training reward
and completion length of each RL stage (the paper's Figures 2 and 3), what rejection sampling kept -- then each stage
in full). A report is a list of blocks rendered twice, so the Markdown and the page never disagree.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import logging
import re
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURVES = (("reward/mean", "training reward (mean)"), ("completion/len_mean", "completion length (tokens)"))


def _is_reward(k: str) -> bool:
    return k.startswith("reward/") and k != "reward/std"


#: the training charts: (file name, title, which metrics.jsonl keys it draws); one PNG each, in this order
CHARTS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("reward", "reward: the weighted sum and each component", _is_reward),
    ("accuracy", "accuracy (training samples; held-out pass@1 as points)", lambda k: k == "accuracy"),
    ("length", "completion length (tokens)", lambda k: k in ("completion/len_mean", "completion/len_max")),
    ("kl", "KL to the reference policy", lambda k: k == "kl"),
    ("entropy", "entropy of the sampled tokens", lambda k: k == "entropy"),
    ("clip", "clip fraction", lambda k: k.startswith("clip_frac")),
    ("unscorable", "completions that could not be scored", lambda k: k.startswith("unscorable/")),
    ("time", "seconds per phase", lambda k: k.startswith("time/")),
    ("loss", "loss", lambda k: k == "loss"),
)


# -- blocks and their two renderings --------------------------------------------------------------------------------
@dataclass
class Block:
    """One piece of a report: ``h`` (heading of ``level``), ``p`` (a paragraph; `code` and **bold** allowed),
    ``table`` (``header`` and ``rows``), ``img`` (the PNG at ``path``, ``text`` its caption) or ``pre`` (text as is)."""

    kind: str
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    path: Path | None = None


def fmt(x: Any) -> str:
    """A value as the report shows it: counts logged as floats as integers, 3 decimals, tiny values in e-notation."""
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e9:  # counts logged as floats (episodes, problems)
            return str(int(x))
        return f"{x:.3f}" if abs(x) >= 1e-3 else f"{x:.2e}"
    return "n/a" if x is None else str(x)


def to_markdown(blocks: list[Block], base: Path) -> str:
    """The blocks as Markdown; images are linked relative to ``base`` (the folder report.md is in)."""
    out = []
    for b in blocks:
        if b.kind == "h":
            out.append(f"{'#' * b.level} {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "table":
            cells = lambda row: "| " + " | ".join(fmt(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"
            out.append("\n".join([cells(b.header), "|" + "---|" * len(b.header), *map(cells, b.rows)]))
        elif b.kind == "img":
            out.append(f"![{b.text}]({b.path.relative_to(base).as_posix()})")
        elif b.kind == "pre":
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", b.text)), default=0))
            out.append(f"{fence}text\n{b.text}\n{fence}")
    return "\n\n".join(out) + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
td.n{text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap;word-break:break-word;max-height:24em;overflow:auto}
figure{display:inline-block;margin:.4em;vertical-align:top}"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def to_html(blocks: list[Block], title: str) -> str:
    """The blocks as one HTML page with every image inlined (``data:image/png;base64``): it opens anywhere, offline,
    and loads nothing from elsewhere."""
    out = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style></head><body>"]
    for b in blocks:
        if b.kind == "h":
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td class=\"n\">{fmt(c)}</td>" if isinstance(c, (int, float))
                                            else f"<td>{_inline(fmt(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "img":
            data = base64.b64encode(b.path.read_bytes()).decode()
            out.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(b.text)}\"></figure>")
        elif b.kind == "pre":
            out.append(f"<pre>{html.escape(b.text)}</pre>")
    return "\n".join(out) + "\n</body></html>\n"


# -- reading a run folder ---------------------------------------------------------------------------------------------
def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL log that carry a ``step`` (a line cut by an interruption is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in rows if isinstance(r, dict) and "step" in r]


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]


@functools.cache
def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (warned about once, not once per plot) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'r1gym[report]'): the report has no plots")
        return None
    return plt


def _whole_steps(ax: Any, xs: list[float]) -> None:
    """Label the step axis with whole steps only; a run of one step gets a step either side of it (matplotlib
    would otherwise span +-0.05 around it, where there is no whole number to label)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if xs and max(xs) - min(xs) < 1:
        ax.set_xlim(min(xs) - 1, max(xs) + 1)


def plot_lines(series: Mapping[str, list[tuple[float, float]]], title: str, out: Path) -> bool:
    """One PNG with a line per named series over the steps; False when there is nothing to draw (or no matplotlib)."""
    series = {k: v for k, v in series.items() if v}
    plt = _pyplot() if series else None
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for label, pts in series.items():
        ax.plot(*zip(*pts), marker="o" if len(pts) < 40 else None, markersize=3, label=label,
                linestyle="none" if label.startswith("held-out") else "-")
    _whole_steps(ax, [x for pts in series.values() for x, _ in pts])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def plot_curves(rows: list[dict[str, Any]], title: str, out: Path) -> bool:
    """The pipeline overview of an RL stage: one PNG with a panel per curve of :data:`CURVES`."""
    plt = _pyplot() if rows else None
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.2))
    for ax, (key, label) in zip(axes, CURVES):
        if pts := _series(rows, key):
            ax.plot(*zip(*pts), marker="o", markersize=3)
        else:
            pts = []
        _whole_steps(ax, [x for x, _ in pts])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


# -- sections -----------------------------------------------------------------------------------------------------------
def training_blocks(run_dir: Path, plots: Path, level: int, samples: int) -> list[Block]:
    """Curves, a table of every metric and sampled completions of a run with ``metrics.jsonl``."""
    rows = read_metrics(run_dir / "metrics.jsonl")
    evals = read_metrics(run_dir / "eval.jsonl")
    if not rows:
        return []
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if k != "step" and isinstance(v, (int, float))))
    blocks = [Block("h", "Training curves", level),
              Block("p", f"{len(rows)} steps logged ({rows[0]['step']}-{rows[-1]['step']}) in `metrics.jsonl`.")]
    missing = []
    for name, title, wanted in CHARTS:
        series = {k: _series(rows, k) for k in keys if wanted(k)}
        if name == "accuracy":
            held = next((k for k in ("eval/pass@1", "eval/accuracy") if any(k in e for e in evals)), None)
            if held:
                series[f"held-out {held[5:]}"] = _series(evals, held)
        png = plots / f"{name}.png"
        if plot_lines(series, title, png):
            blocks.append(Block("img", title, path=png))
        elif not any(series.values()):
            missing.append(title)
    if missing:
        blocks.append(Block("p", "Not in this run's metrics: " + "; ".join(missing) + "."))
    table = []
    for k in keys:
        vals = _series(rows, k)
        if vals:
            ys = [v for _, v in vals]
            table.append([k, vals[0][1], vals[-1][1], min(ys), max(ys)])
    blocks += [Block("h", "Every metric", level),
               Block("table", header=["metric", "first", "last", "lowest", "highest"], rows=table)]
    phases = [k for k in keys if k.startswith("time/") and k != "time/step"]
    if phases and (steps := [v for _, v in _series(rows, "time/step")]):
        med = statistics.median(steps)
        blocks += [Block("h", "Time per step", level),
                   Block("table", header=["phase", "median s", "share of the median step"],
                         rows=[[k[5:], statistics.median(v for _, v in _series(rows, k)),
                                f"{statistics.median(v for _, v in _series(rows, k)) / med:.0%}" if med else "n/a"]
                               for k in phases] + [["whole step", med, "100%"]])]
    if evals:
        ekeys = list(dict.fromkeys(k for e in evals for k in e if k != "step" and not k.startswith("eval/reward/")))
        blocks += [Block("h", "Held-out evaluations", level),
                   Block("table", header=["step", *(k.removeprefix("eval/") for k in ekeys)],
                         rows=[[e["step"], *(e.get(k) for k in ekeys)] for e in evals])]
    return blocks + sample_blocks(read_metrics(run_dir / "samples.jsonl"), level, samples)


def _completion_block(s: Mapping[str, Any], head: str) -> list[Block]:
    parts = ", ".join(f"{k} {fmt(v)}" for k, v in (s.get("rewards") or {}).items())
    why = "; ".join(f"{k} cannot be scored: {v}" for k, v in (s.get("unscorable") or {}).items())
    extra = "".join(f", {k} {fmt(s[k])}" for k in ("advantage", "tokens") if k in s)
    text = s.get("completion", "")
    cut = f" (first 2000 of {len(text)} characters)" if len(text) > 2000 else ""
    return [Block("p", f"**{head}**: reward {fmt(s.get('reward'))} ({parts}){extra}"
                       f"{', truncated' if s.get('truncated') else ''}{'; ' + why if why else ''}{cut}"),
            Block("pre", text[:2000])]


def sample_blocks(samples: list[dict[str, Any]], level: int, per_step: int) -> list[Block]:
    """At the first and the last step in ``samples.jsonl``: the ``per_step`` completions with the highest and the
    lowest reward (half each), so the report shows what the policy was rewarded for and what it was not; a completion
    sampled several times in a group is shown once."""
    if not samples or per_step <= 0:
        return []
    blocks = [Block("h", "Sampled completions", level)]
    for step in dict.fromkeys((samples[0]["step"], samples[-1]["step"])):
        at = sorted({s.get("completion"): s for s in samples if s["step"] == step}.values(),
                    key=lambda s: s["reward"] if isinstance(s.get("reward"), (int, float)) else float("-inf"), reverse=True)
        top = per_step - per_step // 2
        chosen = at if len(at) <= per_step else at[:top] + at[len(at) - per_step // 2:]
        blocks.append(Block("p", f"Step {step}: {len(chosen)} of the {len(at)} different completions logged, the "
                                 "best and the worst by reward."))
        for s in chosen:
            blocks += _completion_block(s, f"step {step}, group {s.get('group', '?')}, task {s.get('task_index', '?')}")
    return blocks


def evaluation_blocks(run_dir: Path, plots: Path, level: int, samples: int) -> list[Block]:
    """The results of an evaluation run (``eval.json``, ``eval_samples.jsonl``)."""
    ev = _read_json(run_dir / "eval.json")
    if not ev:
        return []
    k = ev.get("samples_per_problem")
    datasets = ev.get("datasets") or {}
    blocks = [Block("h", "Evaluation", level),
              Block("p", f"`{ev.get('model')}`: pass@1 averaged over k={k} samples per problem, cons@{k} by majority "
                         f"vote; sampling: {', '.join(f'{n}={v}' for n, v in (ev.get('sampling') or {}).items())}."),
              Block("table", header=["dataset", "problems", "pass@1", f"cons@{k}", "unscorable samples", "mean tokens",
                                     "seconds"],
                    rows=[[n, int(m.get("problems", 0)), m.get("pass@1"), m.get(f"cons@{k}"), m.get("samples_unscorable"),
                           m.get("completion_len_mean"), m.get("seconds")] for n, m in datasets.items()])]
    graded = [json.loads(ln) for ln in (run_dir / "eval_samples.jsonl").read_text().splitlines()] \
        if (run_dir / "eval_samples.jsonl").exists() else []
    comps = list(dict.fromkeys(c for s in graded for c in (s.get("rewards") or {})))
    if comps:
        def mean(ds: str, c: str) -> float | None:
            vals = [s["rewards"][c] for s in graded if s["dataset"] == ds and s["rewards"].get(c) is not None]
            return sum(vals) / len(vals) if vals else None

        blocks += [Block("p", "Mean reward per component (scored samples only):"),
                   Block("table", header=["dataset", *comps], rows=[[ds, *(mean(ds, c) for c in comps)] for ds in datasets])]
    if graded and samples > 0:
        blocks.append(Block("h", "Graded completions", level))
        for ds in datasets:
            at = [s for s in graded if s["dataset"] == ds]
            right = [s for s in at if s.get("correct") == 1.0][: samples - samples // 2]
            wrong = [s for s in at if s.get("correct") != 1.0][: samples // 2]
            for s in right + wrong:
                verdict = "correct" if s.get("correct") == 1.0 else "not correct"
                blocks += _completion_block(s, f"{ds}, task {s.get('task_id')}: {verdict}, answer {s.get('answer')!r}")
    return blocks


def data_blocks(run_dir: Path, level: int) -> list[Block]:
    """What a data-generation stage (rejection sampling, distillation) kept and dropped (``data_stats.json``)."""
    stats = _read_json(run_dir / "data_stats.json")
    if not stats:
        return []
    return [Block("h", "Data generation: kept and dropped", level),
            Block("p", f"{stats['prompts']} prompts x {stats['samples_per_prompt']} samples from `{stats['model']}`; "
                       f"{stats['records']} records written ({stats['reasoning']} reasoning, {stats['non_reasoning']} "
                       f"non-reasoning); language filter {stats.get('language_filter', 'n/a')}."),
            Block("table", header=["count", "n"], rows=[[k, v] for k, v in sorted(stats.get("counts", {}).items())])]


def run_blocks(run_dir: Path, plots: Path, level: int = 2, samples: int = 4) -> list[Block]:
    """Everything a run folder holds, whatever kind of run it was."""
    manifest = _read_json(run_dir / "manifest.json")
    blocks = []
    if manifest:
        blocks.append(Block("p", f"Stage `{manifest.get('stage')}` ({manifest.get('kind')}), {manifest.get('status')}"
                                 + (f" at step {manifest['step']} of {manifest['total_steps']}" if "total_steps" in manifest
                                    else "") + "."))
    return (blocks + training_blocks(run_dir, plots, level, samples) + evaluation_blocks(run_dir, plots, level, samples)
            + data_blocks(run_dir, level))


def pipeline_blocks(manifest: Mapping[str, Any], plots: Path, samples: int) -> list[Block]:
    """The pipeline's overview (stages, evaluation after each, reward and length of each RL stage), then each stage
    with the evaluation run after it; plots go to ``plots``."""
    stages = manifest.get("stages", {})
    blocks = [Block("table", header=["#", "stage", "conf/stage", "status", "started", "finished", "outputs"],
                    rows=[[k, n, e.get("stage", ""), e.get("status"), e.get("started", ""), e.get("finished", ""),
                           ", ".join(f"{key}: `{Path(str(v)).name}`" for key, v in (e.get("outputs") or {}).items() if v)]
                          for k, (n, e) in enumerate(stages.items(), start=1)])]
    evals = {n: e["eval"] for n, e in stages.items() if e.get("eval")}
    if evals:
        blocks += [Block("h", "Evaluation after each stage"),
                   Block("p", "pass@1 averaged over k samples per problem, cons@k by majority vote (n/a where the "
                              "reward gives no answer to vote on)."),
                   Block("table", header=["after stage", "dataset", "problems", "k", "pass@1", "cons@k", "mean tokens"],
                         rows=[[n, ds, int(m.get("problems", 0)), ev.get("samples_per_problem"), m.get("pass@1"),
                                m.get(f"cons@{ev.get('samples_per_problem')}"), m.get("completion_len_mean")]
                               for n, ev in evals.items() for ds, m in (ev.get("datasets") or {}).items()])]
    curves = []
    for k, (name, e) in enumerate(stages.items(), start=1):
        rows = read_metrics(Path(e.get("run_dir", "")) / "metrics.jsonl")
        if any("reward/mean" in r for r in rows) and plot_curves(rows, f"{name}: GRPO training",
                                                                 png := plots / f"{k}-{name}.png"):
            curves += [Block("h", name, 3), Block("img", name, path=png),
                       Block("p", f"steps {rows[0]['step']}-{rows[-1]['step']}: reward {fmt(rows[0].get('reward/mean'))}"
                                  f" -> {fmt(rows[-1].get('reward/mean'))}, completion length "
                                  f"{fmt(rows[0].get('completion/len_mean'))} -> "
                                  f"{fmt(rows[-1].get('completion/len_mean'))} tokens")]
    if curves:
        blocks += [Block("h", "RL stages: reward and completion length over training"), *curves]
    for k, (name, e) in enumerate(stages.items(), start=1):
        stage_dir = Path(e.get("run_dir", ""))
        inner = run_blocks(stage_dir, plots / f"{k}-{name}", 3, samples) if stage_dir.is_dir() else []
        inner += run_blocks(stage_dir / "eval", plots / f"{k}-{name}-eval", 3, samples) if (stage_dir / "eval").is_dir() else []
        if inner:
            blocks += [Block("h", f"Stage {k}: {name}"), Block("p", f"Run folder: `{stage_dir}`"), *inner]
    return blocks


# -- entry points -------------------------------------------------------------------------------------------------------
def build_report(run_dir: Path, out: Path | None = None, *, samples: int = 4) -> tuple[Path, Path]:
    """Write ``report.md`` (with ``plots/*.png``) and ``report.html`` for any run folder into ``out`` (default: the
    run folder); returns their paths. ``samples``: completions shown per step shown (and per evaluated dataset)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder {run_dir}: r1gym report takes the folder a train, eval or pipeline "
                                "run wrote (its path is printed at the end of the run)")
    manifest = _read_json(run_dir / "pipeline.json")
    if manifest:
        title = f"Pipeline `{manifest.get('pipeline')}`"
        blocks = pipeline_blocks(manifest, out / "plots", samples)
    else:
        title = f"Run `{run_dir.name}`"
        blocks = run_blocks(run_dir, out / "plots", 2, samples)
        if not blocks:
            found = ", ".join(sorted(p.name for p in run_dir.iterdir())) or "nothing"
            raise FileNotFoundError(f"{run_dir} holds no run to report on: a train run has metrics.jsonl, an eval run "
                                    f"eval.json, a pipeline pipeline.json (found: {found})")
    blocks = [Block("h", title, 1), Block("p", f"Run folder: `{run_dir}`"), *blocks]
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks, out))
    page.write_text(to_html(blocks, title.replace("`", "")))
    return md, page


def write_report(run_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """The pipeline's report, written at the end of ``r1gym pipeline`` (``report.md`` and ``report.html``)."""
    return build_report(run_dir)[0]
