"""The ``hf`` rollout backend: r1gym's own sampling loop over a transformers model (the CPU default).

It shares the policy module with the trainer, so weight sync costs nothing (or one bf16 copy of the weights
with ``rollout.params.dtype=bfloat16``). What it does differently from ``model.generate``, and why, is in
:mod:`.backend` (the loop), :mod:`.lean` (the forward pass for Llama-family models) and :mod:`.sampling`
(one random number per row instead of one per vocabulary entry). Log-probabilities are those of the
tempered distribution softmax(logits / T) before top-p/top-k filtering, the quantity the trainer recomputes.

Importing this plugin imports neither torch nor transformers; the backend module is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from r1gym.core.hookspecs import hookimpl


def make_backend(model: Any, tokenizer: Any, **params: Any) -> Any:
    """``HFBackend(model, tokenizer, **rollout.params)``; see its docstring for the params."""
    from r1gym.plugins.hf_rollout.backend import HFBackend

    return HFBackend(model, tokenizer, **params)


def make_process_backend(model: Any, tokenizer: Any, **params: Any) -> Any:
    """``HFProcessBackend(model, tokenizer, **rollout.params)``: see :mod:`.process`."""
    from r1gym.plugins.hf_rollout.process import HFProcessBackend

    return HFProcessBackend(model, tokenizer, **params)


def __getattr__(name: str) -> Any:  # lazy re-exports: from r1gym.plugins.hf_rollout import HFBackend
    if name == "HFBackend":
        from r1gym.plugins.hf_rollout.backend import HFBackend

        return HFBackend
    if name == "sample_next":
        from r1gym.plugins.hf_rollout.sampling import sample_next

        return sample_next
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def r1gym_register_rollout_backends(register):
    register("hf", make_backend, description="transformers model; lean sampling loop, shared prefill (CPU default)")
    register("hf_process", make_process_backend,
             description="the hf sampling loop in a second CPU process with its own weights (rollout.overlap can use it)")
