"""The logger/callback interface. Loggers are plugins (``r1gym_register_loggers``); the trainer calls every
configured logger at the start of a run, after each step, after each evaluation, and at the end.

Subclass :class:`Logger` and override only what you need; every method defaults to doing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class Logger:
    """Base class of loggers: all methods are optional no-ops."""

    def start(self, run_dir: Path, config: Mapping[str, Any], *, total_steps: int, start_step: int) -> None:
        """The run begins (or resumes at ``start_step``)."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """One training step's metrics (``reward/mean``, ``loss``, ``time/generate``, ...)."""

    def log_samples(self, step: int, samples: Sequence[Mapping[str, Any]]) -> None:
        """Completions of a step with their reward components."""

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Held-out evaluation results (``eval/accuracy``, ``eval/reward_mean``, ...)."""

    def finish(self, summary: Mapping[str, Any]) -> None:
        """The run ended (normally or by an exception: ``summary['status']`` says which)."""


class LoggerGroup(Logger):
    """Fans each call out to several loggers."""

    def __init__(self, loggers: Sequence[Logger]):
        self.loggers = list(loggers)

    def start(self, *args: Any, **kwargs: Any) -> None:
        for lg in self.loggers:
            lg.start(*args, **kwargs)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for lg in self.loggers:
            lg.log_metrics(step, metrics)

    def log_samples(self, step: int, samples: Sequence[Mapping[str, Any]]) -> None:
        for lg in self.loggers:
            lg.log_samples(step, samples)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        for lg in self.loggers:
            lg.log_eval(step, metrics)

    def finish(self, summary: Mapping[str, Any]) -> None:
        for lg in self.loggers:
            lg.finish(summary)


#: columns of a console that does not write to a terminal and has no ``$COLUMNS`` to go by
WIDE_COLUMNS = 200


def wide_console(*, stderr: bool = False) -> Any:
    """A ``rich.console.Console`` that does not squeeze its output when it writes to a file or a pipe.

    Rich sizes a console to 80 columns when its output is not a terminal (a SLURM log, ``nohup``, CI), which
    cuts table cells ("Arithmeti… (eval split)" over three lines). There, this console takes ``$COLUMNS`` when
    it is set (rich reads it itself) and otherwise :data:`WIDE_COLUMNS`; on a terminal it is rich's own."""
    import os

    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console.width = WIDE_COLUMNS
    return console
