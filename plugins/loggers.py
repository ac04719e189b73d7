"""Built-in loggers: ``console`` (a rich progress bar with live figures), ``jsonl`` (``metrics.jsonl``,
``samples.jsonl``, ``eval.jsonl`` in the run folder), and ``tensorboard`` / ``wandb`` behind their extras."""

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


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class ConsoleLogger(Logger):
    """A rich progress bar whose description shows the latest reward, accuracy, KL and step time."""

    def __init__(self, run_dir: Path | None = None):
        self.progress = None

    def start(self, run_dir: Path, config: Mapping[str, Any], *, total_steps: int, start_step: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.console.print(f"[bold]r1gym[/] run folder: {run_dir}" + (f" (resuming at step {start_step})" if start_step else ""))
        self.progress = Progress(
            TextColumn(f"[bold blue]{(config.get('stage') or {}).get('name', 'train')}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.description}"), console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("", total=total_steps, completed=start_step)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.progress is None:
            return
        live = "  ".join(f"{short}={_fmt(metrics[k])}" for k, short in LIVE_KEYS if k in metrics)
        self.progress.update(self.task, completed=step, description=live)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        from rich.table import Table

        table = Table(title=f"held-out evaluation at step {step}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in metrics.items():
            table.add_row(k, _fmt(v))
        (self.progress.console if self.progress else __import__("rich").get_console()).print(table)

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.console.print(f"run {summary.get('status', 'finished')}: {summary.get('run_dir', '')}")
            self.progress = None


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


class TensorBoardLogger(Logger):
    def __init__(self, run_dir: Path, log_dir: str | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("the tensorboard logger needs the extra: pip install 'r1gym[tensorboard]'") from exc
        self.writer = SummaryWriter(log_dir or str(Path(run_dir) / "tensorboard"))

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)

    log_eval = log_metrics

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.writer.close()


class WandbLogger(Logger):
    def __init__(self, run_dir: Path, project: str = "r1gym", **init_kwargs: Any):
        try:
            import wandb
        except ImportError as exc:
            raise ImportError("the wandb logger needs the extra: pip install 'r1gym[wandb]'") from exc
        self.wandb, self.project, self.init_kwargs, self.run = wandb, project, init_kwargs, None

    def start(self, run_dir: Path, config: Mapping[str, Any], *, total_steps: int, start_step: int) -> None:
        self.run = self.wandb.init(project=self.project, dir=str(run_dir), config=dict(config), resume="allow", **self.init_kwargs)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.wandb.log(dict(metrics), step=step)

    log_eval = log_metrics

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.finish()


@hookimpl
def r1gym_register_loggers(register):
    register("console", ConsoleLogger, description="rich progress bar with live reward/accuracy/KL")
    register("jsonl", JsonlLogger, description="metrics.jsonl, samples.jsonl, eval.jsonl in the run folder")
    register("tensorboard", TensorBoardLogger, description="TensorBoard scalars (extra: tensorboard)")
    register("wandb", WandbLogger, description="Weights & Biases (extra: wandb)")
