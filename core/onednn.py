"""fp32 matrix products through oneDNN, on CPUs where PyTorch's default BLAS leaves half the speed unused.

PyTorch sends every fp32 ``torch.mm`` / ``F.linear`` on the CPU to its BLAS (MKL in the official wheels) and
uses oneDNN only for bf16/fp16. Measured on this project's CI machine (AMD EPYC, AVX-512, 2 cores):

=======================================  ===========  ==============
fp32 product                             MKL GFLOP/s  oneDNN GFLOP/s
=======================================  ===========  ==============
2048 x 2048 x 2048                       211          480
2048 x 576 -> 1536, forward + backward   203          379
16 x 576 -> 1536 (a decode step's GEMM)  71           141
=======================================  ===========  ==============

with the same fp32 results (largest error relative to an fp64 product ~1e-6 for both). MKL does not run its
AVX-512 kernels on AMD processors; on an Intel CPU the two are close. So the choice is measured, not assumed:
:func:`select` with ``"auto"`` times both on a GEMM shaped like a transformer MLP, interleaved best-of-N
(:func:`r1gym.core.precision.interleaved_best`: one pair of timings was seen to flip between two runs on a loaded
VM), and keeps oneDNN unless torch's BLAS is :data:`MARGIN` times faster, so near-ties do not flip between runs.
Near-ties go to oneDNN because the training-shaped product timed here understates what oneDNN gains on the
sampler's decode-shaped products (16-64 rows): on 2026-12-07 (AMD EPYC) the 512-row product was a near-tie
(oneDNN 14.7 ms, torch 15.9 ms) and keeping torch left r1gym's fp32 sampler at 1.60x plain ``generate`` at
batch 16, where oneDNN had given 2.67x (torch 1.78x) on 2026-11-29.

The oneDNN entry point is ``torch.ops.mkldnn._linear_pointwise`` (what ``torch.compile`` uses for CPU
linears): ``x @ w.T (+ b)`` for any strides, fp32 or bf16. It has no autograd formula, so :class:`_Linear`
supplies one (the two backward products are oneDNN calls too). Inputs that are not fp32 CPU tensors, or run
under autocast, take the ordinary ``F.linear``. :func:`patch` routes a model's ``nn.Linear`` layers here;
the trainer does that for the policy and reference models when ``trainer.matmul`` selects oneDNN, and the
rollout backend's lean decoder calls :func:`linear` directly.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from r1gym.core import precision

MODES = ("auto", "onednn", "torch")
#: how much faster oneDNN must be to be chosen by ``auto`` (same precision; a near-tie keeps torch's default)
MARGIN = 1.1
#: the timer :func:`select` gives :func:`~r1gym.core.precision.interleaved_best` (``timer(fn, reps)``)
_speed = precision.time_call

_selected = False  # the process-wide choice; False until select() picks oneDNN


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether oneDNN's linear op exists in this torch build and gives F.linear's result on a small case."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=g) for s in ((7, 12), (5, 12), (5,)))
        return bool(torch.allclose(_onednn(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5))
    except RuntimeError:
        return False


def _onednn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def select(mode: str = "auto") -> bool:
    """Choose how fp32 linears run in this process: ``onednn``, ``torch`` (F.linear), or ``auto`` (oneDNN
    if it is available, unless torch is :data:`MARGIN` times faster on a 512 x 576 -> 1536 product, forward and
    backward;
    a resumed run reuses its recorded choice, :func:`r1gym.core.precision.pins`). Returns whether oneDNN is
    now in use."""
    global _selected
    if mode not in MODES:
        raise ValueError(f"trainer.matmul must be one of {MODES}, got {mode!r}")
    if mode == "torch":
        _selected = False
    elif not available():
        if mode == "onednn":
            raise ValueError("trainer.matmul=onednn, but this torch build has no working oneDNN linear "
                             "(torch.ops.mkldnn._linear_pointwise); use trainer.matmul=auto or torch")
        _selected = False
        precision.record("trainer.matmul", "torch", how="only", what="this torch build has no working oneDNN linear")
    elif mode == "onednn":
        _selected = True
    elif "trainer.matmul" in precision.pins():  # a resumed run keeps the route it started with
        _selected = precision.pins()["trainer.matmul"] == "onednn"
        precision.record("trainer.matmul", "onednn" if _selected else "torch", how="resumed")
    else:
        gen = torch.Generator().manual_seed(0)  # leave the global RNG (the run's seed) alone
        x = torch.randn(512, 576, generator=gen, requires_grad=True)
        w = torch.randn(1536, 576, generator=gen, requires_grad=True)
        g = torch.randn(512, 1536, generator=gen)
        timings = precision.interleaved_best({"torch": lambda: F.linear(x, w).backward(g),
                                              "onednn": lambda: _Linear.apply(x, w, None).backward(g)}, timer=_speed)
        _selected = precision.choose(timings, ("onednn", "torch"), margin=MARGIN) == "onednn"
        precision.record("trainer.matmul", "onednn" if _selected else "torch", timings,
                         what="512x576->1536 fp32 forward+backward")
    return _selected


def selected() -> bool:
    """Whether :func:`linear` currently routes fp32 CPU products to oneDNN."""
    return _selected


def _applies(x: torch.Tensor, w: torch.Tensor) -> bool:
    return (_selected and x.dtype == torch.float32 and w.dtype == torch.float32 and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu"))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN when selected and applicable (differentiable)."""
    if not _applies(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return _Linear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


def matmul_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for 2-D tensors (no autograd), through oneDNN when selected and applicable."""
    return _onednn(a, b) if _applies(a, b) else a @ b.T


class _Linear(torch.autograd.Function):
    """``x @ w.T + b`` forward and backward through oneDNN (strided operands, no transposed copies)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _onednn(x, w, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, Any, Any]:
        x, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _onednn(grad, w.t())  # grad @ w
        if ctx.needs_input_grad[1]:
            gw = _onednn(g2.t(), x.reshape(-1, x.shape[-1]).t())  # grad.T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


def _patched_forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, module.weight, module.bias)


def patch(model: torch.nn.Module) -> int:
    """Route every ``nn.Linear`` in ``model`` through :func:`linear` (which still falls back to ``F.linear``
    unless oneDNN is selected); returns how many were patched. State dicts and checkpoints are unchanged."""
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and "forward" not in module.__dict__:
            module.forward = functools.partial(_patched_forward, module)
            n += 1
    return n


# -- prepacked weights, for inference ---------------------------------------------------------------------
# Each oneDNN product on a plain weight first reorders that weight into oneDNN's blocked layout. At a decode
# step's few rows the reorder costs as much as the product: on 2026-12-08 (AMD EPYC, 2 cores; /tmp timing
# of SmolLM2-135M's 30 layers' shapes plus its LM head) a whole decode step's products took 75.8 ms in bf16
# (F.linear) and 54.3 ms with weights packed once, at 64 rows; 31.8 vs 18.0 ms at 16 rows; fp32 131 vs 97 ms.


@functools.lru_cache(maxsize=1)
def can_pack() -> bool:
    """Whether this torch build packs linear weights for oneDNN and gives F.linear's result with them."""
    if not available() or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=g) for s in ((7, 12), (5, 12), (5,)))
        out = torch.ops.mkldnn._linear_pointwise(x, pack(w, 7), b, "none", [], "")
        return bool(torch.allclose(out, F.linear(x, w, b), rtol=1e-5, atol=1e-5))
    except RuntimeError:
        return False


def pack(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """``weight`` (out x in, fp32 or bf16, CPU) reordered once into oneDNN's layout for products of about
    ``rows`` rows: an opaque copy (``is_mkldnn``) that only :func:`linear` reads. No autograd: for sampling."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T (+ bias)`` for a weight from :func:`pack` (x in the weight's dtype, any leading dims)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
