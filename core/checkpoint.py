"""Checkpoints that resume the same trajectory.

A checkpoint is a folder ``checkpoints/step_000010/`` holding the model (safetensors, loadable by
``from_pretrained``), the tokenizer, and ``trainer_state.pt``: optimizer, LR scheduler, every RNG state
(python, numpy, torch), the prompt sampler's position and the step. It is written to a temporary folder and
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


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


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


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "trainer_state.pt").exists() else None


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The saved state; RNG states are restored by the caller with :func:`set_rng_state` when it is ready."""
    return torch.load(Path(checkpoint) / "trainer_state.pt", weights_only=False)
