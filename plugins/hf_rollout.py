"""The ``hf`` rollout backend: a lean sampling loop over a transformers model (the CPU default).

It shares the policy module with the trainer, so weight sync is a no-op. Compared with
``model.generate`` it does only the work sampling needs:

* **shared prefill**: the G samples of a GRPO group have the same prompt; each distinct prompt is prefilled
  once and its KV cache indexed out to its samples (prefill of a 90-token prompt for G = 8 is 1/8 of the work);
* **finished rows leave the batch**: a sequence that sampled EOS (or a stop string) is dropped from the
  cache, so later decode steps run on the rows still going;
* **logits only where needed**: the prefill computes the LM head for the last prompt position only;
* **no cache concatenation**: after the prefill each layer's KV cache gets room for every new token, so a
  decode step writes one position instead of copying the whole cache (transformers' DynamicCache
  concatenates, which on a CPU was a fifth of a decode step);
* **no logits processors**: temperature, top-k and top-p are applied directly to one (rows x vocab) tensor.

Log-probabilities are those of the tempered distribution softmax(logits / T) before top-p/top-k filtering,
the quantity the trainer recomputes. ``mode: generate`` falls back to ``model.generate`` (benchmarks
compare the two).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from r1gym.core.hookspecs import hookimpl

MODES = ("loop", "generate")


@functools.lru_cache(maxsize=1)
def _roomy_layer_class() -> type:
    """Built on first use, so importing this plugin does not import transformers."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        """A DynamicLayer over a preallocated buffer: appending writes into it instead of concatenating."""

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            n, k = self._n, key_states.shape[-2]
            if n + k > self._k.shape[-2]:  # out of room: grow like a list does
                extra = max(k, self._k.shape[-2])
                self._k = torch.cat([self._k, self._k.new_empty(*self._k.shape[:2], extra, self._k.shape[-1])], -2)
                self._v = torch.cat([self._v, self._v.new_empty(*self._v.shape[:2], extra, self._v.shape[-1])], -2)
            self._k[:, :, n : n + k] = key_states
            self._v[:, :, n : n + k] = value_states
            self._n = n + k
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

    return RoomyLayer


def _preallocate(cache: Any, room: int) -> None:
    """Give every layer of a transformers DynamicCache room for ``room`` more positions (in place)."""
    from transformers.cache_utils import DynamicLayer

    RoomyLayer = _roomy_layer_class()
    for i, layer in enumerate(cache.layers):
        if type(layer) is not DynamicLayer or not layer.is_initialized:
            continue  # sliding-window or other layer kinds keep their own logic
        new = RoomyLayer()
        new.device, new.is_initialized = layer.keys.device, True
        new.dtype = layer.keys.dtype  # older transformers keep it; newer ones read it off the tensors
        B, H, n, D = layer.keys.shape
        new._k = layer.keys.new_empty(B, H, n + room, D)
        new._v = layer.values.new_empty(B, H, n + room, D)
        new._k[:, :, :n], new._v[:, :, :n] = layer.keys, layer.values
        new._n = n
        new.keys, new.values = new._k[:, :, :n], new._v[:, :, :n]
        cache.layers[i] = new


def sample_next(logits: Any, temperature: float, top_k: int, top_p: float) -> tuple[Any, Any]:
    """Sample one token per row; return (tokens, log-probs under softmax(logits / temperature)).

    ``temperature <= 0`` is greedy (log-probs of the untempered distribution then).
    """
    import torch

    if temperature <= 0:
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok = logp.argmax(-1)
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)
    scaled = logits.float() / temperature
    logp = torch.log_softmax(scaled, dim=-1)
    filtered = scaled
    if top_k and top_k > 0 and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, float("-inf"))
    tok = torch.multinomial(torch.softmax(filtered, dim=-1), 1).squeeze(-1)
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


class HFBackend:
    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, mode: str = "loop"):
        if batch_size < 1:
            raise ValueError(f"rollout.params.batch_size must be >= 1, got {batch_size}")
        if mode not in MODES:
            raise ValueError(f"rollout.params.mode must be one of {MODES}, got {mode!r}")
        self.model, self.tokenizer, self.batch_size, self.mode = model, tokenizer, batch_size, mode
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            self.eos_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])

    def sync_weights(self, model: Any) -> None:
        self.model = model  # the same module object: nothing to copy

    def generate(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        run = self._loop if self.mode == "loop" else self._hf_generate
        # keep the samples of one prompt in the same chunk, so the shared prefill stays shared
        order = sorted(range(len(prompts)), key=lambda i: (tuple(prompts[i]), i))
        out: list = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for i, gen in zip(chunk, run([prompts[i] for i in chunk], params)):
                    out[i] = gen
        finally:
            self.model.train(was_training)
        return out

    # -- the sampling loop -----------------------------------------------------------------------------
    def _loop(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        import torch

        from r1gym.core.compat import cache_kwargs, output_cache

        uniq: dict[tuple[int, ...], int] = {}
        index = torch.tensor([uniq.setdefault(tuple(p), len(uniq)) for p in prompts])
        width = max(len(p) for p in uniq)
        ids = torch.full((len(uniq), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(uniq), width), dtype=torch.long)
        for p, row in uniq.items():
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        B = len(prompts)
        tokens: list[list[int]] = [[] for _ in range(B)]
        logprobs: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B
        eos = torch.tensor(sorted(self.eos_ids))
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             use_cache=True, logits_to_keep=1)
            cache = output_cache(out)
            cache.batch_select_indices(index)
            _preallocate(cache, params.max_new_tokens)
            logits = out.logits[index, -1]
            attn = mask[index]
            pos = mask.sum(-1)[index]
            rows = torch.arange(B)
            for step in range(params.max_new_tokens):
                tok, lp = sample_next(logits, params.temperature, params.top_k, params.top_p)
                done = torch.isin(tok, eos)
                for r, t, l, d in zip(rows.tolist(), tok.tolist(), lp.tolist(), done.tolist()):
                    tokens[r].append(t)
                    logprobs[r].append(l)
                    if d:
                        finish[r] = "stop"
                    elif params.stop and self._hits_stop(tokens[r], params.stop):
                        finish[r], done[rows.tolist().index(r)] = "stop", True
                if step == params.max_new_tokens - 1 or bool(done.all()):
                    break
                if bool(done.any()):
                    keep = (~done).nonzero().squeeze(-1)
                    cache.batch_select_indices(keep)
                    rows, tok, attn, pos = rows[keep], tok[keep], attn[keep], pos[keep]
                attn = torch.cat([attn, attn.new_ones(len(rows), 1)], dim=1)
                out = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=pos[:, None],
                                 use_cache=True, **cache_kwargs(self.model, cache))
                logits = out.logits[:, -1]
                pos = pos + 1
        return [self._generation(tokens[i], logprobs[i], finish[i]) for i in range(B)]

    def _hits_stop(self, ids: list[int], stops: Sequence[str]) -> bool:
        tail = self.tokenizer.decode(ids[-16:], skip_special_tokens=True)
        return any(tail.endswith(s) for s in stops)

    def _generation(self, ids: list[int], logprobs: list[float], finish: str) -> Any:
        from r1gym.core.rollout import Generation

        return Generation(ids, self.tokenizer.decode(ids, skip_special_tokens=True), logprobs, finish)

    # -- plain transformers generate (for comparison) ----------------------------------------------------
    def _hf_generate(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        import torch
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p) :] = 1
        greedy = params.temperature <= 0
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=params.top_p if not greedy and params.top_p < 1.0 else None,
            top_k=params.top_k if not greedy else None,  # 0 = off (None would mean transformers' default 50)
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
            stop_strings=list(params.stop) or None, return_dict_in_generate=True, output_logits=True,
        )
        with torch.no_grad():
            res = self.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=gen_cfg,
                                      tokenizer=self.tokenizer if params.stop else None)
        new = res.sequences[:, width:]
        logits = torch.stack(res.logits, dim=1).float()
        logp = torch.log_softmax(logits / (1.0 if greedy else params.temperature), dim=-1)
        lps = logp.gather(-1, new[:, : logits.shape[1]].unsqueeze(-1)).squeeze(-1)
        gens = []
        for i in range(len(prompts)):
            ids, finish = new[i].tolist(), "length"
            for j, t in enumerate(ids):
                if t in self.eos_ids:
                    ids, finish = ids[: j + 1], "stop"
                    break
            if finish == "length" and params.stop and self._hits_stop(ids, params.stop):
                finish = "stop"
            gens.append(self._generation(ids, lps[i, : len(ids)].tolist(), finish))
        return gens


@hookimpl
def r1gym_register_rollout_backends(register):
    register("hf", HFBackend, description="transformers model, lean sampling loop with shared prefill (CPU default)")
