"""What each stage kind runs, in one table: ``r1gym train`` and ``r1gym pipeline`` both go through
:func:`run_stage`.

* ``grpo``: :class:`~r1gym.core.grpo.GRPOTrainer` (r1_zero, reasoning_rl, all_scenario_rl);
* ``sft``: :class:`~r1gym.core.sft.SFTTrainer` on ``sft.data`` (sft);
* ``sample``: :func:`~r1gym.core.datagen.generate` writes an SFT set from a model's verified samples, then,
  with ``sample.then_sft``, fine-tunes ``model.name_or_path`` on it (cold_start, rejection_sampling, distill);
* ``eval``: :func:`~r1gym.core.evaluation.run_job` (pass@1 over k samples, cons@k).

Each returns a summary with ``status`` and ``outputs`` (the checkpoint, the data set, ...), which the
stage's ``manifest.json`` records and the pipeline wires into later stages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1gym.core.checkpoint import latest_checkpoint, resumable_checkpoint
from r1gym.core.jsonl import atomic_write_text

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost


def _checkpoint(run_dir: Path) -> str | None:
    ckpt = latest_checkpoint(run_dir)
    return str(ckpt) if ckpt is not None else None


def run_grpo(cfg: Any, run_dir: Path, host: PluginHost | None = None) -> dict[str, Any]:
    from r1gym.core.grpo import GRPOTrainer

    summary = GRPOTrainer(cfg, run_dir, host=host).train()
    return {**summary, "outputs": {"checkpoint": _checkpoint(run_dir)}}


def run_sft(cfg: Any, run_dir: Path, host: PluginHost | None = None) -> dict[str, Any]:
    from r1gym.core.sft import SFTTrainer

    summary = SFTTrainer(cfg, run_dir, host=host).train()
    return {**summary, "outputs": {"checkpoint": _checkpoint(run_dir)}}


def run_sample(cfg: Any, run_dir: Path, host: PluginHost | None = None) -> dict[str, Any]:
    from r1gym.core.datagen import generate

    summary = generate(cfg, run_dir, host=host)
    if not cfg.sample.then_sft:
        return summary
    cfg.sft.data = [summary["outputs"]["data"]]
    trained = run_sft(cfg, run_dir, host)
    return {**trained, "data": summary.get("stats", {}),
            "outputs": {**summary["outputs"], **trained["outputs"]}}


def run_eval(cfg: Any, run_dir: Path, host: PluginHost | None = None) -> dict[str, Any]:
    from r1gym.core.evaluation import run_job

    results = run_job(cfg, run_dir, host=host)
    return {"status": "finished", "results": results,
            "outputs": {"eval": str(run_dir / "eval.json"), "samples": str(run_dir / "eval_samples.jsonl")}}


RUNNERS: dict[str, Callable[[Any, Path, PluginHost | None], dict[str, Any]]] = {
    "grpo": run_grpo, "sft": run_sft, "sample": run_sample, "eval": run_eval,
}


def run_stage(cfg: Any, run_dir: Path, *, host: PluginHost | None = None) -> dict[str, Any]:
    """Run the stage ``cfg.stage`` in ``run_dir``; the summary is also written to ``run_dir/manifest.json``.
    ``host``: the plugins the check and the stage use (default: the process-wide host), so that a caller
    with a host of its own (``r1gym.core.cli.main(argv, host=...)``, a test) is checked against the same
    rewards and envs it runs with."""
    import json
    import os

    from r1gym.core.registry import pick
    from r1gym.core.validate import check_config

    runner = pick(RUNNERS, cfg.stage.kind, "stage.kind")
    check_config(cfg, host)  # every name and parameter, all problems in one error, before any model loads
    if cfg.get("resume") and cfg.stage.kind != "eval":  # before any model loads: a resume never restarts silently
        resumable_checkpoint(Path(run_dir))
    summary = runner(cfg, Path(run_dir), host)
    manifest = {"stage": cfg.stage.name, "kind": cfg.stage.kind, **summary}
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 writes for everyone
        atomic_write_text(Path(run_dir) / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return manifest
