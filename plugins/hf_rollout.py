"""The ``hf`` rollout backend: batched sampling with transformers' ``generate`` and its KV cache.

It shares the policy module with the trainer, so weight sync is a no-op. Prompts are left-padded and
generated in chunks of ``batch_size`` sequences. Log-probabilities are those of the tempered distribution
softmax(logits / T) before top-p/top-k filtering — the quantity the trainer recomputes — taken from the raw
logits that ``generate`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r1gym.core.hookspecs import hookimpl


class HFBackend:
    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"rollout.params.batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            self.eos_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])

    def sync_weights(self, model: Any) -> None:
        self.model = model  # same module object: nothing to copy

    def generate(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        out = []
        for start in range(0, len(prompts), self.batch_size):
            out += self._generate_batch(prompts[start : start + self.batch_size], params)
        return out

    def _generate_batch(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        import torch
        from transformers import GenerationConfig

        from r1gym.core.rollout import Generation

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p) :] = 1
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else None,
            top_p=params.top_p if not params.greedy and params.top_p < 1.0 else None,
            top_k=params.top_k if not params.greedy and params.top_k > 0 else None,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            stop_strings=list(params.stop) or None,
            return_dict_in_generate=True,
            output_logits=True,
        )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                res = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    generation_config=gen_cfg,
                    tokenizer=self.tokenizer if params.stop else None,
                )
        finally:
            self.model.train(was_training)
        new = res.sequences[:, width:]
        logits = torch.stack(res.logits, dim=1).float() if res.logits else torch.zeros(len(prompts), 0, 1)
        temp = 1.0 if params.greedy else params.temperature
        logprobs = torch.log_softmax(logits / temp, dim=-1).gather(-1, new[:, : logits.shape[1]].unsqueeze(-1)).squeeze(-1)
        gens = []
        for i in range(len(prompts)):
            ids = new[i].tolist()
            n, finish = len(ids), "length"
            for j, t in enumerate(ids):
                if t in self.eos_ids:
                    n, finish = j + 1, "stop"
                    break
            ids = ids[:n]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if finish == "length" and params.stop and any(text.endswith(s) for s in params.stop):
                finish = "stop"
            # stop strings end a row early while others go on: the padding that follows is not part of it
            if finish == "stop" and ids and ids[-1] not in self.eos_ids:
                while ids and ids[-1] == self.pad_id:
                    ids.pop()
            gens.append(Generation(ids, text, logprobs[i, : len(ids)].tolist(), finish))
        return gens


@hookimpl
def r1gym_register_rollout_backends(register):
    register("hf", HFBackend, description="transformers generate with KV cache (CPU default; shares the policy)")
