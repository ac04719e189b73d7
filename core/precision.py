"""Per-machine choices of precision and kernels, made by measurement at start-up; the sampler's int8 weights.

Why measured: the machines that run this project change from day to day, and so does the fastest precision.
On an Intel Xeon with AMX, bf16 products ran ~3x fp32; on an AMD EPYC (Zen 4) with AVX512-BF16 but no AMX,
1.5-3x; on an AVX2-only CPU bf16 is slower than fp32. So every ``auto`` setting times its candidates on work
shaped like the real work and keeps the fastest:

* ``trainer.matmul=auto`` (:func:`r1gym.core.onednn.select`): oneDNN or torch's BLAS for fp32 linears;
* ``trainer.autocast=auto`` (:func:`r1gym.core.runtime.autocast`, :func:`autocast_timings`): fp32 or bf16
  autocast for the trainer's forward and backward passes;
* ``rollout.params.dtype=auto`` (the ``hf`` backend): fp32, bf16 or int8 weights for the lean decoder's
  decode step.

**Interleaved best-of timing** (:func:`interleaved_best`): on this shared 2-core VM, timing A once and then B
once was seen to flip the matmul choice between two runs (oneDNN 15.5 vs torch 17.8 ms in one, 36.1 vs
21.3 ms in the other), and with it the run's numerics. Each candidate is warmed up once, then timed in
:data:`ROUNDS` rounds that alternate the candidates (reversed order every other round) and keeps its fastest
round: a load spike slows one round of one candidate, not all rounds of it, and the minimum is the speed of
the machine without interference.

**A margin** (:func:`choose`): candidates are ordered from most to least precise, and a less precise one
replaces the current choice only when it is :data:`MARGIN` times faster; near-ties keep the more precise
one, so noise does not flip the numerics and no precision is given up for a few percent.

**One choice per run**: under ``torch.distributed`` each rank measures, and rank 0's choice is kept by all
(:func:`choose`); ``trainer.autocast=auto`` is therefore decided when the trainer is set up, on every rank,
not at a first forward pass that only rank 0's evaluation might reach.

**Recorded**: every ``auto`` choice is logged in one line, kept in :func:`chosen` (for metrics) and written to
the run folder's ``precision.json`` once :func:`start_run` bound it; a resumed run reuses the recorded
choices (:func:`pins`) instead of measuring again, so its numerics do not change half-way. These records are
process-wide, like the matmul route they describe (one process trains one run).

**int8 weights** (:class:`Int8Weight`): weight-only, per-output-channel symmetric quantisation, bf16
activations, through ``torch.ops.aten._weight_int8pack_mm`` (its fp32-activation path is ~30x slower: never
used). Measured here with 16-64 rows x 576 -> 1536 it ran about as fast as bf16, not faster; on a CPU where
the weight stream is the bound it saves half the bytes again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

#: timing rounds per candidate; each candidate keeps its fastest round
ROUNDS = 5
#: how much faster a less precise candidate must be to replace a more precise one
MARGIN = 1.2
#: the run-folder file with the ``auto`` choices, reused on resume
RUN_FILE = "precision.json"


# -- timing ----------------------------------------------------------------------------------------------------
def time_call(fn: Callable[[], Any], reps: int = 3) -> float:
    """Seconds per call of ``fn``, the mean over ``reps`` calls (no warm-up: :func:`interleaved_best` does it)."""
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def interleaved_best(fns: Mapping[str, Callable[[], Any]], *, rounds: int = ROUNDS, reps: int = 3,
                     timer: Callable[[Callable[[], Any], int], float] | None = None) -> dict[str, float]:
    """Seconds per call of each candidate in ``fns``: one warm-up call each, then ``rounds`` rounds timing
    every candidate for ``reps`` calls, the order reversed every other round; each keeps its fastest round.
    ``timer(fn, reps)`` defaults to :func:`time_call` (a test may pass its own)."""
    timer = timer or time_call
    for fn in fns.values():
        fn()  # allocations, oneDNN primitive caches, lazily built copies
    names = list(fns)
    best = dict.fromkeys(names, math.inf)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            best[name] = min(best[name], timer(fns[name], reps))
    return best


def choose(timings: Mapping[str, float], order: Sequence[str], margin: float = MARGIN) -> str:
    """The candidate to use: ``order`` runs from most to least precise (``order[0]`` is the baseline, which
    must be timed); a later one replaces the current choice only if it is at least ``margin`` times faster.
    Candidates missing from ``timings`` (not available here) are skipped.

    Under ``torch.distributed`` every rank times on its own cores, and rank 0's choice is the one all ranks
    keep (:func:`r1gym.core.distributed.rank0_value`): ranks that chose differently would train the same model
    in different numerics. So every rank must reach the same ``choose`` calls, in the same order."""
    from r1gym.core import distributed

    best = order[0]
    for candidate in order[1:]:
        if candidate in timings and timings[best] / timings[candidate] >= margin:
            best = candidate
    return distributed.rank0_value(best)


# -- records ---------------------------------------------------------------------------------------------------
@dataclass
class Choice:
    """What one ``auto`` setting chose, and the timings (ms per call) it chose from (empty when reused)."""

    key: str
    choice: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    how: str = "measured"  # measured | resumed (reused from the run folder) | only (nothing else to compare)


_choices: dict[str, Choice] = {}
_pins: dict[str, str | None] = {}
_run_file: Path | None = None


def record(key: str, choice: str | None, timings_s: Mapping[str, float] | None = None, *, how: str = "measured",
           what: str = "") -> Choice:
    """Keep, log (one line) and, once a run folder is bound, write the choice of the ``auto`` setting ``key``."""
    rec = Choice(key, choice, {k: round(v * 1e3, 3) for k, v in (timings_s or {}).items()}, how)
    _choices[key] = rec
    if how == "measured":
        times = ", ".join(f"{k} {v:.2f} ms" for k, v in rec.timings_ms.items())
        detail = f"{times} per {what or 'call'}, best of {ROUNDS} interleaved rounds"
    else:
        detail = {"resumed": f"reused from the run folder's {RUN_FILE}"}.get(how, what or how)
    log.info("%s=auto: %s [%s]", key, "null" if choice is None else choice, detail)
    _write()
    return rec


def chosen() -> dict[str, dict[str, Any]]:
    """The ``auto`` choices made in this process so far, ``{key: {choice, timings_ms, how}}`` (for metrics)."""
    return {k: {f: v for f, v in asdict(c).items() if f != "key"} for k, c in _choices.items()}


def pins() -> dict[str, str | None]:
    """The choices a resumed run made when it started (``{key: choice}``); an ``auto`` setting found here
    reuses its choice instead of measuring."""
    return dict(_pins)


def adopt(records: Mapping[str, Mapping[str, Any]], made_by: str) -> None:
    """Keep choices another process made (:func:`chosen` there) as this process's own, so they reach the run's
    ``precision.json`` and a resumed run: the ``hf_process`` rollout child times ``rollout.params.dtype``
    in its own process, with its own threads."""
    for key, rec in records.items():
        _choices[key] = Choice(key, rec["choice"], dict(rec["timings_ms"]), rec["how"])
        log.info("%s=auto: %s [made by %s: %s]", key, "null" if rec["choice"] is None else rec["choice"], made_by,
                 ", ".join(f"{k} {v:.2f} ms" for k, v in rec["timings_ms"].items()) or rec["how"])
    _write()


def use_pins(recorded: Mapping[str, str | None]) -> None:
    """Take a resumed run's recorded choices (:func:`pins` of the process that read the run folder) in
    another process of the same run, which then reuses them instead of measuring."""
    _pins.clear()
    _pins.update(recorded)


def start_run(run_dir: str | Path, resume: bool, keep: Sequence[str] = ()) -> bool:
    """Bind the records to ``run_dir`` (``precision.json``) for the run starting now: records of earlier runs in
    this process are dropped except the keys in ``keep`` (choices this run already made); when ``resume``,
    the run folder's recorded choices become :func:`pins`. Returns whether any were loaded. Only the
    process of rank 0 writes the file."""
    global _run_file
    path = Path(run_dir) / RUN_FILE
    for key in [k for k in _choices if k not in keep]:
        del _choices[key]
    _pins.clear()
    if resume and path.is_file():
        _pins.update({k: v["choice"] for k, v in json.loads(path.read_text()).items()})
    _run_file = path if os.environ.get("RANK", "0") == "0" else None
    _write()
    return bool(_pins)


def _write() -> None:
    if _run_file is not None and _run_file.parent.is_dir():
        _run_file.write_text(json.dumps(chosen(), indent=2) + "\n")


# -- what the trainer's autocast is chosen on ------------------------------------------------------------------
def autocast_timings(device_type: str, rows: int = 512) -> dict[str, float]:
    """Seconds of one forward + backward of a ``rows`` x 576 -> 1536 linear (SmolLM2's MLP) in fp32 through the
    selected matmul route (:mod:`r1gym.core.onednn`), and under bf16 autocast: ``{"null": .., "bf16": ..}``."""
    from r1gym.core import onednn

    gen = torch.Generator().manual_seed(0)  # the run's seeded global RNG is left alone
    x = torch.randn(rows, 576, generator=gen).to(device_type).requires_grad_()
    w = torch.randn(1536, 576, generator=gen).to(device_type).requires_grad_()
    g = torch.randn(rows, 1536, generator=gen).to(device_type)

    def fp32() -> None:
        onednn.linear(x, w).backward(g)
        _sync(device_type)

    def bf16() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            y = onednn.linear(x, w)
        y.backward(g.to(y.dtype))
        _sync(device_type)

    return interleaved_best({"null": fp32, "bf16": bf16})


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


# -- int8 weights ----------------------------------------------------------------------------------------------
@dataclass
class Int8Weight:
    """A linear layer's weight as int8 with one scale per output channel (``w ~ q * scale[:, None]``, symmetric,
    |q| <= 127), multiplied with bf16 activations by ``torch.ops.aten._weight_int8pack_mm``."""

    q: torch.Tensor  # (out, in) int8
    scale: torch.Tensor  # (out,) in the activations' dtype

    @classmethod
    def quantize(cls, weight: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> Int8Weight:
        w = weight.detach().float()
        # the scale is rounded to the activations' dtype first and the weights to it, so q * scale is within
        # half a step of w (bf16 rounding of the scale moves the largest |q| by at most 0.25: still 127)
        scale = (w.abs().amax(dim=1) / 127.0).to(dtype).clamp(min=torch.finfo(dtype).tiny)
        q = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
        return cls(q.contiguous(), scale)

    @property
    def shape(self) -> torch.Size:
        return self.q.shape

    def linear(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ w.T (+ bias)`` for ``x`` of shape (..., in), in the scale's dtype."""
        flat = x.reshape(-1, x.shape[-1]).to(self.scale.dtype)
        y = torch.ops.aten._weight_int8pack_mm(flat, self.q, self.scale).view(*x.shape[:-1], self.q.shape[0])
        return y if bias is None else y + bias


def int8_available() -> bool:
    """Whether this torch build has the int8 weight-only product (torch >= 2.3)."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")
