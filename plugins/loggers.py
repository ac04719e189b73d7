"""Built-in loggers: ``console`` (a rich progress bar with live figures on a terminal, a plain line per step
without one), ``jsonl`` (``metrics.jsonl``, ``samples.jsonl``, ``eval.jsonl`` in the run folder), and
``tensorboard`` / ``wandb`` behind their extras (scalars, plus each step's sampled completions as a table)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from r1gym.core.hookspecs import hookimpl
from r1gym.core.loggers import Logger

LIVE_KEYS = (("reward/mean", "reward"), ("accuracy", "acc"), ("kl", "kl"), ("completion/len_mean", "len"),
             ("loss", "loss"), ("time/step", "s/step"))
#: what the plain per-step line shows besides :data:`LIVE_KEYS` and the time per phase
PLAIN_KEYS = (*LIVE_KEYS[:-1], ("entropy", "entropy"), ("clip_frac", "clip"), ("unscorable/count", "unscorable"))


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def step_line(name: str, step: int, total: int, metrics: Mapping[str, float], elapsed: float, eta: float | None) -> str:
    """One step as one line of plain text, for logs read without a terminal (SLURM, nohup, CI): the step, the
    figures of :data:`PLAIN_KEYS` the step has, its seconds and the phases that took them, elapsed time and ETA."""
    figures = "  ".join(f"{short}={_fmt(metrics[k])}" for k, short in PLAIN_KEYS if k in metrics)
    phases = ", ".join(f"{k[5:]} {v:.2f}" for k, v in metrics.items()
                       if k.startswith("time/") and k != "time/step" and isinstance(v, (int, float)) and v >= 0.005)
    took = f"  {metrics['time/step']:.2f} s/step" + (f" ({phases})" if phases else "") if "time/step" in metrics else ""
    when = f"  elapsed {_clock(elapsed)}" + (f"  ETA {_clock(eta)}" if eta is not None else "")
    return f"[{name}] step {step}/{total}  {figures}{took}{when}"


class ConsoleLogger(Logger):
    """Progress on the console (standard error). On a terminal: a rich progress bar whose description shows the
    latest reward, accuracy, KL and step time. Without one (a SLURM or nohup log, CI), where a progress bar shows
    nothing until the run ends, one plain line per step (:func:`step_line`), written and flushed as the step ends.

    ``plain``: ``true`` for the lines even on a terminal, ``false`` for the bar even without one; by default
    chosen at the start of the run by whether standard error is a terminal."""

    def __init__(self, run_dir: Path | None = None, plain: bool | None = None):
        self.plain, self.progress, self.console = plain, None, None

    def start(self, run_dir: Path, config: Mapping[str, Any], *, total_steps: int, start_step: int) -> None:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from r1gym.core.loggers import wide_console

        self.console = wide_console(stderr=True)
        if self.plain is None:
            self.plain = not self.console.is_terminal
        self.name = (config.get("stage") or {}).get("name", "train")
        self.total, self.start_step, self.t0 = total_steps, start_step, time.monotonic()
        self._print(f"r1gym run folder: {run_dir}" + (f" (resuming at step {start_step})" if start_step else ""))
        if self.plain:
            return
        self.progress = Progress(
            TextColumn(f"[bold blue]{self.name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.description}"), console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("", total=total_steps, completed=start_step)

    def _print(self, text: str) -> None:
        """Plain text, no markup or highlighting, flushed now (a log file is read while the run goes on)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.console is None:
            return
        if self.plain:
            import time

            elapsed = time.monotonic() - self.t0
            done = step - self.start_step
            eta = elapsed / done * (self.total - step) if done > 0 else None
            self._print(step_line(self.name, step, self.total, metrics, elapsed, eta))
            return
        live = "  ".join(f"{short}={_fmt(metrics[k])}" for k, short in LIVE_KEYS if k in metrics)
        self.progress.update(self.task, completed=step, description=live)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        from rich.table import Table

        from r1gym.core.loggers import wide_console

        table = Table(title=f"held-out evaluation at step {step}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in metrics.items():
            table.add_row(k, _fmt(v))
        (self.console or wide_console(stderr=True)).print(table)

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.console is None:
            return
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self._print(f"run {summary.get('status', 'finished')}: {summary.get('run_dir', '')}")
        self.console = None


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class JsonlLogger(Logger):
    """Appends one JSON object per line. On resume, lines past the checkpoint's step (steps that will run
    again) and a line cut short by the kill are dropped, so the files read like an uninterrupted run; the
    rewrite is atomic, so a second kill during it loses nothing. A run that starts at step 0 in a folder that
    already has logs (a new run in a reused ``run_dir``) sets the old files aside (``metrics.jsonl.replaced-
    <time>``) with a warning instead of overwriting them."""

    FILES = ("metrics.jsonl", "samples.jsonl", "eval.jsonl")

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def start(self, run_dir: Path, config: Mapping[str, Any], *, total_steps: int, start_step: int) -> None:
        import logging
        import time

        from r1gym.core.jsonl import atomic_write_text

        self.run_dir = Path(run_dir)
        for name in self.FILES:
            path = self.run_dir / name
            if not path.exists() or not path.stat().st_size:
                continue
            if start_step == 0:
                aside = path.with_name(f"{name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
                path.replace(aside)
                logging.getLogger(__name__).warning("%s already held a run's log; starting at step 0, it was kept as %s",
                                                    path, aside.name)
                continue
            text = path.read_text(errors="replace")
            lines = text.splitlines()
            keep = [ln for ln in lines if (step := _line_step(ln)) is not None and step <= start_step]
            if len(keep) != len(lines) or not text.endswith("\n"):
                atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    def _append(self, name: str, record: Mapping[str, Any]) -> None:
        with open(self.run_dir / name, "a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}, ensure_ascii=False) + "\n")

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self._append("metrics.jsonl", {"step": step, **metrics})

    def log_samples(self, step: int, samples: Sequence[Mapping[str, Any]]) -> None:
        for s in samples:
            self._append("samples.jsonl", {"step": step, **s})

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self._append("eval.jsonl", {"step": step, **metrics})


def _line_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut by a kill mid-write


def sample_table(step: int, samples: Sequence[Mapping[str, Any]], limit: int) -> tuple[list[str], list[list[Any]]]:
    """The first ``limit`` samples of a step as (columns, rows): the step, group, prompt (when the samples carry
    one), completion, reward, one column per reward component, advantage and whether it was truncated. A
    component a sample could not be scored on shows as ``None`` (an empty cell), never as 0."""
    chosen = list(samples[:max(limit, 0)])
    components = list(dict.fromkeys(c for s in chosen for c in (s.get("rewards") or {})))
    prompt = ["prompt"] if any("prompt" in s for s in chosen) else []
    columns = ["step", "group", *prompt, "completion", "reward", *components, "advantage", "truncated"]
    rows = [[step, s.get("group"), *([s.get("prompt")] if prompt else []), s.get("completion", ""), _clean(s.get("reward")),
             *(_clean((s.get("rewards") or {}).get(c)) for c in components), _clean(s.get("advantage")),
             bool(s.get("truncated"))] for s in chosen]
    return columns, rows


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], max_chars: int = 400) -> str:
    """A Markdown table (what TensorBoard's text plugin renders): cells on one line, ``|`` escaped, long text cut
    at ``max_chars`` with an ellipsis."""
    def cell(v: Any) -> str:
        text = "" if v is None else _fmt(v) if isinstance(v, float) else str(v)
        text = text if len(text) <= max_chars else text[:max_chars] + "…"
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in rows)


class TensorBoardLogger(Logger):
    """TensorBoard: every numeric metric as a scalar, and each step's first ``sample_rows`` completions as a
    Markdown table in the Text tab (tag ``samples``), with their rewards per component and advantages."""

    def __init__(self, run_dir: Path, log_dir: str | None = None, sample_rows: int = 8):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("the tensorboard logger needs the extra: pip install 'r1gym[tensorboard]'") from exc
        self.writer = SummaryWriter(log_dir or str(Path(run_dir) / "tensorboard"))
        self.sample_rows = sample_rows

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)

    log_eval = log_metrics

    def log_samples(self, step: int, samples: Sequence[Mapping[str, Any]]) -> None:
        if samples and self.sample_rows > 0:
            self.writer.add_text("samples", markdown_table(*sample_table(step, samples, self.sample_rows)), step)

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.writer.close()


class WandbLogger(Logger):
    """Weights & Biases: metrics as history, and each step's first ``sample_rows`` completions as a
    ``wandb.Table`` (key ``samples``). The W&B run id is kept in the run folder (``wandb_run_id``), so a resumed
    run continues the same W&B run (W&B keeps a run's steps increasing, so the steps a resumed run repeats after its
    checkpoint keep their first values there); ``WANDB_MODE=offline`` writes it under ``RUN/wandb`` to sync later.
    Other keyword arguments go to ``wandb.init`` (``entity``, ``name``, ``tags``, ``mode`` ...)."""

    def __init__(self, run_dir: Path, project: str = "r1gym", sample_rows: int = 16, **init_kwargs: Any):
        try:
            import wandb
        except ImportError as exc:
            raise ImportError("the wandb logger needs the extra: pip install 'r1gym[wandb]'") from exc
        import inspect

        from r1gym.core.registry import UnknownNameError

        takes = set(inspect.signature(wandb.init).parameters) - {"dir", "id", "config", "resume"}  # set by r1gym
        for key in init_kwargs:  # a misspelled parameter fails here, not inside wandb.init
            if key not in takes:
                raise UnknownNameError("wandb logger parameter", key, ["project", "sample_rows", *takes])
        self.wandb, self.project, self.init_kwargs, self.run = wandb, project, init_kwargs, None
        self.sample_rows = sample_rows

    def start(self, run_dir: Path, config: Mapping[str, Any], *, total_steps: int, start_step: int) -> None:
        id_file = Path(run_dir) / "wandb_run_id"
        if start_step and id_file.exists():
            run_id = id_file.read_text().strip()
        else:  # a new run (or one whose first start had no W&B): a new W&B run
            import secrets

            run_id = secrets.token_hex(4)  # W&B's own ids: 8 lowercase letters and digits
            id_file.write_text(run_id + "\n")
        self.run = self.wandb.init(project=self.project, dir=str(run_dir), config=dict(config), id=run_id,
                                   resume="allow", **self.init_kwargs)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    log_eval = log_metrics

    def log_samples(self, step: int, samples: Sequence[Mapping[str, Any]]) -> None:
        if samples and self.sample_rows > 0:
            columns, rows = sample_table(step, samples, self.sample_rows)
            self.run.log({"samples": self.wandb.Table(columns=columns, data=rows)}, step=step)

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if summary.get("status") == "finished" else 1)
            self.run = None


@hookimpl
def r1gym_register_loggers(register):
    register("console", ConsoleLogger, description="rich progress bar with live reward/accuracy/KL")
    register("jsonl", JsonlLogger, description="metrics.jsonl, samples.jsonl, eval.jsonl in the run folder")
    register("tensorboard", TensorBoardLogger, description="TensorBoard scalars and sample tables (extra: tensorboard)")
    register("wandb", WandbLogger, description="Weights & Biases metrics and sample tables (extra: wandb)")
