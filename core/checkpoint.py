"""Checkpoints that resume the same trajectory.

A checkpoint is a folder ``checkpoints/step_000010/`` holding the model (safetensors, loadable by
``from_pretrained``), the tokenizer, and ``trainer_state.pt``: optimizer, LR scheduler, every RNG state
(python, numpy, torch CPU and CUDA), the prompt sampler's position and the step. It is written to a temporary folder and
renamed into place, and ``checkpoints/latest`` is replaced atomically after that, so a run killed at any
moment (SIGKILL included) leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"


class CheckpointError(RuntimeError):
    """A run folder's checkpoints cannot be resumed from as they are (a broken ``latest`` pointer, a checkpoint
    with no trainer state): resuming must stop, never fall back to the base model at step 0."""


def rng_state() -> dict[str, Any]:
    """Every RNG a step draws from: Python's, numpy's, torch's CPU generator and, where CUDA is in use, every
    GPU's generator (sampling on a GPU draws from those, so without them a resumed GPU run leaves the
    trajectory)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s states. CUDA states are restored when the checkpoint has them and this
    process sees as many GPUs; a mismatch (resumed on another machine) is said, and the CPU states still hold."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None:
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() != len(cuda):
        import logging

        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        logging.getLogger(__name__).warning(
            "the checkpoint holds the RNG states of %d GPU(s) and this process sees %d: GPU sampling will not "
            "continue the saved trajectory (CPU states restored)", len(cuda), seen)
        return
    torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(run_dir: Path, step: int, *, model: Any, tokenizer: Any, state: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` and drop all but the ``keep`` newest."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:06d}.", dir=root))
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / "trainer_state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    if keep > 0:
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoint folders of ``run_dir`` that hold a trainer state, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / "trainer_state.pt").is_file()) if root.is_dir() else []


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``checkpoints/latest`` names, or ``None`` when the run has none yet (no pointer and no
    checkpoint folder). A pointer that is empty or names a folder without a trainer state, or checkpoint
    folders with no pointer, raise :class:`CheckpointError` naming what is there: resuming from the base model
    at step 0 instead would silently throw the run away."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    complete = complete_checkpoints(run_dir)
    fix = (f"; the complete checkpoints there are {', '.join(p.name for p in complete)}: point {pointer} at one "
           f"(echo {complete[-1].name} > {pointer}) to resume from it" if complete else
           "; no complete checkpoint is there: start the run again in a new run folder")
    if not pointer.exists():
        if complete:
            raise CheckpointError(f"{root} holds checkpoints but no {LATEST!r} pointer{fix}")
        return None
    name = pointer.read_text().strip()
    if not name:
        raise CheckpointError(f"{pointer} is empty{fix}")
    path = root / name
    if not (path / "trainer_state.pt").is_file():
        raise CheckpointError(f"{pointer} names {name!r}, which has no trainer_state.pt (missing or cut short){fix}")
    return path


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The saved state; RNG states are restored by the caller with :func:`set_rng_state` when it is ready.
    An unreadable state file is a :class:`CheckpointError` naming it (it was written before the folder was
    renamed into place, so it is damage, not an interrupted save)."""
    path = Path(checkpoint) / "trainer_state.pt"
    try:
        return torch.load(path, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc}); resume from an older "
                              f"checkpoint by pointing {Path(checkpoint).parent / LATEST} at it") from exc


def resumable_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a ``resume=`` of ``run_dir`` continues from, checked before anything loads: a broken
    pointer raises (:func:`latest_checkpoint`), and so does a run that logged steps but has no checkpoint
    (killed before its first ``save_every``): starting it again at step 0 would replace its logs with a new
    run's. ``None`` only for a run that never logged a step, where starting at step 0 loses nothing."""
    from r1gym.core.jsonl import read_appended_jsonl

    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        return ckpt
    metrics = Path(run_dir) / "metrics.jsonl"
    steps = [r["step"] for r in read_appended_jsonl(metrics, repair=False) if isinstance(r.get("step"), int)]
    if steps:
        raise CheckpointError(
            f"resume={run_dir}: the run logged steps up to {max(steps)} in {metrics} but saved no checkpoint "
            "(it stopped before its first trainer.save_every), so there is nothing to resume from; start it again "
            "in a new run folder (or move this one aside)")
    return None
