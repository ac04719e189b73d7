"""A lean forward pass for Llama-family decoders (Llama, Mistral, Qwen2; SmolLM2 is a Llama), for sampling.

Why not the transformers forward: profiled here on SmolLM2-135M, a decode step at batch 64 spent 135 ms in
GEMMs and 40 ms in ``scaled_dot_product_attention`` (its CPU kernel is built for long queries, not for one
query token against a 200-token cache), plus cache and mask bookkeeping per layer. This module computes the
same function with

* a **static KV cache**: one (rows, kv_heads, max_len, head_dim) buffer per layer, written in place
  (:class:`KVCache`, left-padded prompts; or :class:`SlotCache`, one column per position, whose rows are
  refilled with waiting prompts as sequences finish: continuous batching);
* **decode attention as two batched matmuls** over the grouped query heads (no repeat of K/V for GQA); in
  bf16 the keys are kept transposed, (rows, kv_heads, head_dim, capacity), and each step multiplies the whole
  buffers, masked past each row's position: a slice would be copied before every product;
* **linear weights packed once** for oneDNN (``pack_rows``, on the CPU): an unpacked weight is reordered into
  oneDNN's layout at every product, which at a decode step's few rows costs about as much as the product;
* RoPE cos/sin looked up from a table built once per call by the model's own rotary module (so every RoPE
  variant transformers implements comes out right);
* optionally a **bf16 copy of the weights** (``dtype=bfloat16``): half the bytes to stream per step and the
  CPU's bf16 dot-product instructions, like a vLLM sampler in bf16 next to an fp32 trainer. The trainer
  still computes the log-probabilities it trains on in its own precision; the mismatch is logged as
  ``logprob/sampler_abs_diff``;
* or **int8 weight-only** (``dtype=torch.int8``): the seven linear projections of every layer as int8 with a
  scale per output channel (:class:`r1gym.core.precision.Int8Weight`), activations, KV cache, norms,
  embeddings and the LM head in bf16. The LM head (tied to the embeddings in SmolLM2, a fifth of the
  weights) stays bf16 because its error goes straight into every log-probability the trainer's importance
  correction compares, and because the tied matrix is also the embedding table.

In the model's own dtype and unpacked, the weights are the trainer's tensors themselves (no copy, nothing to
sync); packed, in another dtype, or with LoRA adapters (whose delta is merged into the copy), ``sync``
rebuilds the copy.
Models outside this family, or with features it does not implement, are refused by
:func:`unsupported_reason` and the backend falls back to the transformers forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from r1gym.core import onednn
from r1gym.core.compat import base_model
from r1gym.core.precision import Int8Weight

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`LeanDecoder` cannot run ``model`` (``None`` when it can)."""
    base = base_model(model)
    cfg = getattr(base, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        return f"model_type {kind!r} is not one of {SUPPORTED_MODEL_TYPES}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} (only silu is implemented)"
    if getattr(cfg, "use_sliding_window", False) or (kind == "mistral" and getattr(cfg, "sliding_window", None)):
        return "sliding-window attention is not implemented"
    if getattr(cfg, "mlp_bias", False):
        return "mlp_bias is not implemented"
    if getattr(base, "quantization_method", None) or getattr(cfg, "quantization_config", None):
        return "quantized weights"
    if hasattr(base.model.embed_tokens, "base_layer"):
        return "LoRA on the input embeddings is not implemented"
    for module in base.modules():
        if any(getattr(module, "use_dora", {}).values()):
            return "DoRA adapters are not implemented"
    layer = base.model.layers[0]
    if not all(hasattr(layer.self_attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        return "attention projections are not q_proj/k_proj/v_proj/o_proj"
    return None


def _effective(linear: Any) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """(weight, bias, is_a_new_tensor) of a Linear, with active unmerged LoRA deltas added."""
    if hasattr(linear, "base_layer") and hasattr(linear, "get_delta_weight"):  # a peft LoRA layer
        base = linear.base_layer
        w, changed = base.weight, False
        if not getattr(linear, "merged", False) and not getattr(linear, "disable_adapters", False):
            for name in linear.active_adapters:
                if name in linear.lora_A:
                    w, changed = w + linear.get_delta_weight(name), True
        return w, base.bias, changed
    return linear.weight, linear.bias, False


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: list[tuple[Any, torch.Tensor | None]]  # one fused projection, or q, k, v (weights: tensors or Int8Weight)
    o: tuple[Any, torch.Tensor | None]
    ln2: torch.Tensor
    gate_up: list[tuple[Any, torch.Tensor | None]]  # one fused projection, or gate, up
    down: tuple[Any, torch.Tensor | None]


def _linear(x: torch.Tensor, weight: Any, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T (+ bias)``: int8 weights through their own product, packed ones through oneDNN's, plain
    tensors through :func:`r1gym.core.onednn.linear`."""
    if isinstance(weight, Int8Weight):
        return weight.linear(x, bias)
    if weight.is_mkldnn:
        return onednn.packed_linear(x, weight, bias)
    return onednn.linear(x, weight, bias)


class KVCache:
    """Per-layer key and value buffers of shape (rows, kv_heads, capacity, head_dim), filled up to ``length``
    (keys (rows, kv_heads, head_dim, capacity) where the decoder keeps them transposed).

    ``key_bias`` (rows, capacity) is 0 where a position may be attended to and -inf on left padding.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], key_bias: torch.Tensor, length: int,
                 rope: tuple[torch.Tensor, torch.Tensor]):
        self.keys, self.values, self.key_bias, self.length = keys, values, key_bias, length
        self.cos, self.sin = rope  # (capacity, head_dim) tables, looked up by position

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (in that order): finished sequences leave the batch, a prompt fans out to G rows."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.key_bias = self.key_bias.index_select(0, rows)


class SlotCache:
    """A KV cache of ``slots`` rows for continuous batching: a row's keys sit at their positions (column j holds
    position j), so a row can be emptied and refilled with another prompt without moving the others.

    A row attends to the columns up to its own position only, so a refilled row never sees what the previous
    occupant left past its prompt, and the next token's column is the one written next. The buffers start at
    zero: a column no row has written yet is masked but still multiplied, and must not hold NaN.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], rope: tuple[torch.Tensor, torch.Tensor]):
        self.keys, self.values = keys, values
        self.cos, self.sin = rope

    @property
    def capacity(self) -> int:
        return self.values[0].shape[2]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (in that order): once no prompt is waiting, finished rows leave the batch."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]


class LeanDecoder:
    """Prefill and one-token decode steps for a supported model; see the module docstring."""

    def __init__(self, model: Any, dtype: torch.dtype | None = None, pack_rows: int | None = None):
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"the lean decoder cannot run this model: {reason}")
        self.model = model
        base = base_model(model)
        cfg = base.config
        self.param_dtype = base.model.embed_tokens.weight.dtype
        #: int8 linear weights (``dtype=torch.int8``), everything else in bf16
        self.int8 = dtype == torch.int8
        self.dtype = torch.bfloat16 if self.int8 else (dtype or self.param_dtype)
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        attn = base.model.layers[0].self_attn
        self.scaling = getattr(attn, "scaling", self.head_dim**-0.5)
        self.eps = base.model.norm.variance_epsilon
        on_cpu = base.model.embed_tokens.weight.device.type == "cpu"
        #: linear weights packed once for oneDNN products of about this many rows (a copy, rebuilt on sync)
        self.pack_rows = pack_rows if (pack_rows and on_cpu and not self.int8 and onednn.can_pack()) else None
        #: keys kept as (rows, kv_heads, head_dim, capacity) in bf16: the scores are then a plain batched
        #: product over whole buffers, with no copy before it. torch.profiler over SmolLM2-135M's bf16 decode
        #: step at 64 rows (2026-12-08, AMD EPYC): the two attention products and the copies made for them
        #: took 53 ms a step with the (capacity, head_dim) layout sliced to the filled columns, 34 ms transposed
        #: but sliced, 26 ms transposed over whole buffers. In fp32, MKL's product was as fast or faster on
        #: the (capacity, head_dim) layout in a side-by-side timing of the products alone, so fp32 keeps it.
        self.keys_transposed = self.dtype != torch.float32
        self._weights: tuple[torch.Tensor, list[_Layer], torch.Tensor, torch.Tensor] | None = None
        self._copies = False  # whether _weights holds copies (which go stale when the trainer steps)

    # -- weights -----------------------------------------------------------------------------------------
    def sync(self, model: Any) -> None:
        """The trainer changed the weights: rebuild the sampler's copy now, if it has one (so the cost shows
        as the trainer's ``time/weight_sync``). Views of the trainer's own tensors are dropped and taken again
        on first use (cheap): an optimizer updates tensors in place, but DeepSpeed ZeRO-3 swaps them."""
        self.model = model
        self._weights = None
        if self._copies:
            self._build()

    def release(self) -> None:
        """Drop views of the trainer's tensors (copies stay): under ZeRO-3 the weights are whole only while the
        trainer gathers them for a rollout, and a view kept past it would hold a full stale copy alive."""
        if not self._copies:
            self._weights = None

    def _build(self) -> tuple[torch.Tensor, list[_Layer], torch.Tensor, torch.Tensor]:
        base = base_model(self.model)
        lin = [_effective(m) for layer in base.model.layers for m in (
            layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
            layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
        head_w, _, head_changed = _effective(base.lm_head)
        tied = head_w is base.model.embed_tokens.weight
        copies = (self.int8 or self.pack_rows is not None or self.dtype != self.param_dtype
                  or any(changed for _, _, changed in lin) or (head_changed and not tied))
        self._copies = copies

        def cast(t: torch.Tensor | None, copy: bool = copies) -> torch.Tensor | None:
            # with copies, every tensor is one (the embedding table and norms too): the sampler then sees
            # the weights of its last sync only, never half old and half new
            return None if t is None else t.detach().to(self.dtype, copy=copy)

        def weight(t: torch.Tensor) -> Any:  # a linear projection's weight in the sampler's form
            if self.int8:
                return Int8Weight.quantize(t, self.dtype)
            return onednn.pack(cast(t, copy=False), self.pack_rows) if self.pack_rows else cast(t)

        def fuse(parts: list[tuple[torch.Tensor, torch.Tensor | None, bool]]) -> list[tuple[Any, Any]]:
            if not copies:  # the trainer's own tensors: no copy, always current
                return [(w.detach(), None if b is None else b.detach()) for w, b, _ in parts]
            w = torch.cat([cast(w, copy=False) for w, _, _ in parts])
            biases = [b for _, b, _ in parts]
            b = None if all(x is None for x in biases) else torch.cat(
                [cast(x, copy=False) if x is not None else w.new_zeros(p[0].shape[0]) for x, p in zip(biases, parts)])
            return [(weight(w), b)]  # int8: per-output-channel scales, so fusing changes nothing

        layers = []
        for i, layer in enumerate(base.model.layers):
            q, k, v, o, g, u, d = lin[7 * i : 7 * i + 7]
            layers.append(_Layer(
                ln1=cast(layer.input_layernorm.weight), qkv=fuse([q, k, v]), o=(weight(o[0]), cast(o[1])),
                ln2=cast(layer.post_attention_layernorm.weight), gate_up=fuse([g, u]), down=(weight(d[0]), cast(d[1])),
            ))
        embed = cast(base.model.embed_tokens.weight)
        if self.pack_rows:  # tied or not, the embedding table itself stays a plain tensor
            head = onednn.pack(cast(head_w, copy=False), self.pack_rows)
        else:
            head = embed if tied else cast(head_w)
        self._weights = (embed, layers, cast(base.model.norm.weight), head)
        return self._weights

    @property
    def weights(self) -> tuple[torch.Tensor, list[_Layer], torch.Tensor, torch.Tensor]:
        return self._weights if self._weights is not None else self._build()

    def step_timer(self, rows: int, context: int = 160) -> Any:
        """One decode step of ``rows`` rows after a ``context``-token prompt, as a function of no arguments
        (each call appends a position; room for 64 calls): the work ``rollout.params.dtype=auto`` times."""
        dev, vocab = self.weights[0].device, self.weights[0].shape[0]
        ids = (torch.arange(context, device=dev) % vocab)[None]
        with torch.no_grad():
            _, cache = self.prefill(ids, torch.ones_like(ids), 64)
        cache.select(torch.zeros(rows, dtype=torch.long, device=dev))
        tokens = torch.arange(rows, device=dev) % vocab

        def step() -> None:
            with torch.no_grad():
                self.decode(tokens, torch.full_like(tokens, cache.length), cache)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        return step

    # -- forward -----------------------------------------------------------------------------------------
    def _rope_table(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        base = base_model(self.model)
        device = base.model.embed_tokens.weight.device
        pos = torch.arange(length, device=device)[None]
        probe = torch.zeros(1, length, self.head_dim, dtype=torch.float32, device=device)
        cos, sin = base.model.rotary_emb(probe, pos)
        return cos[0].to(self.dtype), sin[0].to(self.dtype)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def _project(x: torch.Tensor, parts: list[tuple[torch.Tensor, Any]], sizes: list[int]) -> list[torch.Tensor]:
        if len(parts) == 1:
            return list(_linear(x, *parts[0]).split(sizes, dim=-1))
        return [_linear(x, w, b) for w, b in parts]

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def _mlp(self, x: torch.Tensor, layer: _Layer) -> torch.Tensor:
        inter = (layer.gate_up[0][0].shape[0] // 2) if len(layer.gate_up) == 1 else layer.gate_up[0][0].shape[0]
        gate, up = self._project(x, layer.gate_up, [inter, inter])
        return _linear(F.silu(gate) * up, *layer.down)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, room: int) -> tuple[torch.Tensor, KVCache]:
        """Run left-padded prompts ``ids`` (rows x width, ``mask`` 1 on real tokens); return the last
        position's logits (rows x vocab, float32) and a cache with room for ``room`` more tokens."""
        with torch.autocast(ids.device.type, enabled=False):
            return self._prefill(ids, mask, room)

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, room: int) -> tuple[torch.Tensor, KVCache]:
        P, W = ids.shape
        cap = W + room
        rope = self._rope_table(cap)
        real = mask.bool()
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []

        def store(k: torch.Tensor, v: torch.Tensor) -> None:
            # zeros, not empty: with transposed keys a step multiplies the whole buffer (masked), and a NaN
            # left in memory would survive the mask
            kbuf, vbuf = k.new_zeros(self._key_shape(P, cap)), v.new_zeros(P, self.n_kv, cap, self.head_dim)
            self._key_columns(kbuf, W)[:] = k
            vbuf[:, :, :W] = v
            keys.append(kbuf)
            values.append(vbuf)

        x = self._prompt_pass(ids, (mask.cumsum(-1) - 1).clamp(min=0), real, rope, store)
        last = self._norm(x[:, -1], self.weights[2])
        bias = torch.zeros(P, cap, device=ids.device)
        bias[:, :W].masked_fill_(~real, float("-inf"))
        return _linear(last, self.weights[3]).float(), KVCache(keys, values, bias, W, rope)

    def _prompt_pass(self, ids: torch.Tensor, pos: torch.Tensor, real: torch.Tensor,
                     rope: tuple[torch.Tensor, torch.Tensor], store: Any) -> torch.Tensor:
        """The layers over padded prompts ``ids`` at positions ``pos`` (``real``: not padding); each layer's
        rotated keys and values (P, kv_heads, W, head_dim) go to ``store``; returns the last hidden states."""
        embed, layers, _, _ = self.weights
        P, W = ids.shape
        cos, sin = rope[0][pos][:, None], rope[1][pos][:, None]  # (P, 1, W, D)
        # causal, no attention to padding; a padding query attends to itself so its row stays finite
        allowed = torch.ones(W, W, dtype=torch.bool, device=ids.device).tril()[None] & real[:, None, :]
        allowed = (allowed | torch.eye(W, dtype=torch.bool, device=ids.device)[None])[:, None]  # (P, 1, W, W)
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        x = F.embedding(ids, embed)
        for layer in layers:
            h = self._norm(x, layer.ln1)
            q, k, v = self._project(h, layer.qkv, [H * D, KV * D, KV * D])
            q = self._rotate(q.view(P, W, H, D).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(P, W, KV, D).transpose(1, 2), cos, sin)
            v = v.view(P, W, KV, D).transpose(1, 2)
            store(k, v)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scaling, enable_gqa=KV != H)
            x = x + _linear(a.transpose(1, 2).reshape(P, W, H * D), *layer.o)
            x = x + self._mlp(self._norm(x, layer.ln2), layer)
        return x

    def _key_shape(self, rows: int, capacity: int) -> tuple[int, ...]:
        if self.keys_transposed:
            return rows, self.n_kv, self.head_dim, capacity
        return rows, self.n_kv, capacity, self.head_dim

    def _key_columns(self, keys: torch.Tensor, width: int) -> torch.Tensor:
        """The first ``width`` positions of a key buffer as a (rows, kv_heads, width, head_dim) view, whichever
        way it is laid out (assign through it: ``self._key_columns(K, W)[:] = k``)."""
        return keys.transpose(-1, -2)[..., :width, :] if self.keys_transposed else keys[..., :width, :]

    # -- continuous batching -----------------------------------------------------------------------------
    def slot_cache(self, slots: int, capacity: int) -> SlotCache:
        """An empty :class:`SlotCache` of ``slots`` rows, each with room for ``capacity`` positions."""
        device = self.weights[0].device
        shape = (slots, self.n_kv, capacity, self.head_dim)
        keys = [torch.zeros(self._key_shape(slots, capacity), dtype=self.dtype, device=device)
                for _ in self.weights[1]]
        values = [torch.zeros(shape, dtype=self.dtype, device=device) for _ in self.weights[1]]
        return SlotCache(keys, values, self._rope_table(capacity))

    def prefill_slots(self, ids: torch.Tensor, lengths: torch.Tensor, cache: SlotCache, slots: torch.Tensor,
                      fan_out: torch.Tensor) -> torch.Tensor:
        """Run right-padded prompts ``ids`` (P x width; ``lengths`` real tokens each) once, and write prompt
        ``fan_out[j]`` into row ``slots[j]`` of ``cache`` (whatever was there before); return each slot's
        next-token logits (len(slots) x vocab, float32). Right padding puts position j in column j, as
        :class:`SlotCache` wants, and causal attention keeps a prompt's tokens from seeing its padding."""
        with torch.autocast(ids.device.type, enabled=False):
            P, W = ids.shape
            if W > cache.capacity:
                raise RuntimeError(f"a {W}-token prompt does not fit a {cache.capacity}-position slot cache")
            pos = torch.arange(W, device=ids.device).expand(P, W)
            real = pos < lengths[:, None]
            layer = iter(range(len(cache.keys)))

            def store(k: torch.Tensor, v: torch.Tensor) -> None:
                i = next(layer)
                if self.keys_transposed:
                    cache.keys[i][slots, :, :, :W] = k[fan_out].transpose(-1, -2)
                else:
                    cache.keys[i][slots, :, :W] = k[fan_out]
                cache.values[i][slots, :, :W] = v[fan_out]

            x = self._prompt_pass(ids, pos, real, (cache.cos, cache.sin), store)
            last = self._norm(x[torch.arange(P, device=ids.device), lengths - 1], self.weights[2])
            return _linear(last, self.weights[3]).float()[fan_out]

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache | SlotCache) -> torch.Tensor:
        """Append one token per row (at ``positions``) to ``cache``; return the next logits (rows x vocab).
        A :class:`KVCache` appends at its common length; a :class:`SlotCache` at each row's position."""
        with torch.autocast(tokens.device.type, enabled=False):
            return self._decode(tokens, positions, cache)

    def _decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache | SlotCache) -> torch.Tensor:
        embed, layers, norm, head = self.weights
        B = tokens.shape[0]
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        G = H // KV
        slotted = isinstance(cache, SlotCache)
        if slotted:  # each row writes at its own position and attends up to it
            n = int(positions.max())
        else:
            n = cache.length
        capacity = cache.values[0].shape[2]
        if n >= capacity:
            raise RuntimeError(f"KV cache full ({n} positions): prefill was given too little room")
        # the key columns each step multiplies: with transposed keys the whole buffer (a slice of it would be
        # copied before each product), masked past each row's position; otherwise the columns up to n
        span = capacity if self.keys_transposed else n + 1
        cols = torch.arange(span, device=tokens.device)
        if slotted:  # each row writes at its own position and attends up to it
            rows = torch.arange(B, device=tokens.device)
            bias = torch.zeros(B, span, device=tokens.device).masked_fill_(cols > positions[:, None], float("-inf"))
        else:
            bias = cache.key_bias[:, :span]
            if span > n + 1:
                bias = bias.masked_fill(cols > n, float("-inf"))
        bias = bias[:, None, None]  # (B, 1, 1, span)
        cos, sin = cache.cos[positions][:, None], cache.sin[positions][:, None]  # (B, 1, D)
        x = F.embedding(tokens, embed)  # (B, hidden)
        for i, layer in enumerate(layers):
            h = self._norm(x, layer.ln1)
            q, k, v = self._project(h, layer.qkv, [H * D, KV * D, KV * D])
            q = self._rotate(q.view(B, H, D), cos, sin)
            k = self._rotate(k.view(B, KV, D), cos, sin)
            K, V = cache.keys[i], cache.values[i]
            if slotted:
                if self.keys_transposed:
                    K[rows, :, :, positions] = k
                else:
                    K[rows, :, positions] = k
                V[rows, :, positions] = v.view(B, KV, D)
            else:
                if self.keys_transposed:
                    K[:, :, :, n] = k
                else:
                    K[:, :, n] = k
                V[:, :, n] = v.view(B, KV, D)
            # (B, KV, G, D) @ (B, KV, D, span) -> (B, KV, G, span)
            if self.keys_transposed:  # one batch dim of B * KV, whole contiguous buffers: no copies
                scores = torch.bmm(q.view(B * KV, G, D), K.view(B * KV, D, span)).view(B, KV, G, span)
            else:
                scores = torch.matmul(q.view(B, KV, G, D), K[:, :, :span].transpose(-1, -2))
            p = torch.softmax(scores.float() * self.scaling + bias, dim=-1).to(x.dtype)
            if self.keys_transposed:
                a = torch.bmm(p.view(B * KV, G, span), V.view(B * KV, span, D)).reshape(B, H * D)
            else:
                a = torch.matmul(p, V[:, :, :span]).reshape(B, H * D)
            x = x + _linear(a, *layer.o)
            x = x + self._mlp(self._norm(x, layer.ln2), layer)
        if not slotted:
            cache.length = n + 1
        return _linear(self._norm(x, norm), head).float()
