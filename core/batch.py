"""Packing episodes into tensors and computing completion log-probabilities, doing only the work GRPO needs.

The G completions of a GRPO group share one prompt, and prompts are usually longer than completions. So:

* each distinct prompt runs through the model **once** per micro-batch; its KV cache is then indexed out to
  the G completions (an indexing op, so gradients from all G flow back into the one prompt pass) and the
  completions run on top of it. With a 90-token prompt and G = 8 completions of 30 tokens this is 330 instead
  of 960 token positions through the model, forward and backward;
* the LM head runs only on the positions that predict completion tokens, never on prompt positions.

:func:`reference_completion_logprobs` is the plain implementation (each sequence in full); tests check the
fast path against it, values and gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r1gym.core import distributed, onednn
from r1gym.core.compat import cache_kwargs, output_cache
from r1gym.core.rollout import Episode


#: completion columns a batch has at least (padding beyond the longest completion is masked out): with 2,
#: :func:`completion_logprobs` always runs the decoder twice (prompts, then completions), so the sequence of
#: module calls does not depend on the data. DeepSpeed ZeRO-3 gathers each module's weights in lockstep
#: across ranks, and a micro-batch of one-token completions on one rank would otherwise skip a pass.
MIN_COLUMNS = 2


@dataclass
class PackedBatch:
    prompt_ids: torch.Tensor  # (P, Lp) distinct prompts, left-padded
    prompt_mask: torch.Tensor  # (P, Lp)
    prompt_index: torch.Tensor  # (B,) row of prompt_ids each sequence continues
    completion_ids: torch.Tensor  # (B, T) right-padded: generated tokens and env tokens of multi-turn episodes
    completion_attn: torch.Tensor  # (B, T) 1 for real tokens (attention), 0 for padding
    loss_mask: torch.Tensor  # (B, T) float: 1 where the policy generated the token and the sample counts
    sampler_logprobs: torch.Tensor  # (B, T)

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def to(self, device: Any) -> PackedBatch:
        """The same batch on ``device`` (the model's)."""
        return PackedBatch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def select(self, rows: Sequence[int]) -> PackedBatch:
        """Sequences ``rows`` with only the prompts they use, and no all-padding columns."""
        rows_t = torch.as_tensor(list(rows), dtype=torch.long, device=self.prompt_index.device)
        used, new_index = torch.unique(self.prompt_index[rows_t], return_inverse=True)
        pm = self.prompt_mask[used]
        lp = int(pm.sum(-1).max())
        ca = self.completion_attn[rows_t]
        T = max(MIN_COLUMNS, int(ca.sum(-1).max()))
        return PackedBatch(
            self.prompt_ids[used][:, -lp:], pm[:, -lp:], new_index,
            self.completion_ids[rows_t, :T], ca[:, :T], self.loss_mask[rows_t, :T], self.sampler_logprobs[rows_t, :T],
        )


def pack(episodes: Sequence[Episode], pad_id: int, *, include: Sequence[bool] | None = None) -> PackedBatch:
    """Episodes -> tensors; episodes with identical prompt ids share one prompt row.
    ``include[i] = False`` zeroes episode i's loss mask (unscorable or masked-out samples)."""
    prompts: dict[tuple[int, ...], int] = {}
    index = []
    for e in episodes:
        index.append(prompts.setdefault(tuple(e.prompt_ids), len(prompts)))
    Lp = max(len(p) for p in prompts)
    P = len(prompts)
    prompt_ids = torch.full((P, Lp), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((P, Lp), dtype=torch.long)
    for p, row in prompts.items():
        prompt_ids[row, Lp - len(p) :] = torch.tensor(p, dtype=torch.long)
        prompt_mask[row, Lp - len(p) :] = 1
    B, T = len(episodes), max(MIN_COLUMNS, max(len(e.completion_ids) for e in episodes))
    comp = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T))
    slp = torch.zeros((B, T))
    for i, e in enumerate(episodes):
        n = len(e.completion_ids)
        if n:
            comp[i, :n] = torch.tensor(e.completion_ids, dtype=torch.long)
            attn[i, :n] = 1
            if include is None or include[i]:
                mask[i, :n] = torch.tensor(e.completion_mask, dtype=torch.float)
            slp[i, :n] = torch.tensor(e.sampler_logprobs, dtype=torch.float)
    return PackedBatch(prompt_ids, prompt_mask, torch.tensor(index, dtype=torch.long), comp, attn, mask, slp)


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """log softmax(h W^T / T)[target] for N positions, chunk by chunk, never holding N x V logits.

    The forward keeps only each position's log-sum-exp; the backward recomputes one chunk of logits at a
    time: d logits = (onehot(target) - softmax) * grad / T. Memory is O(chunk x V) instead of O(N x V) for
    the logits *and* their gradient, for one extra chunk GEMM in the backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature: float, chunk: int):  # type: ignore[override]
        lse = hidden.new_empty(hidden.shape[0], dtype=torch.float32 if hidden.dtype in _LOW else hidden.dtype)
        out = torch.empty_like(lse)
        for s in range(0, hidden.shape[0], chunk):
            logits = _logits(hidden[s : s + chunk], weight, temperature)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            out[s : s + chunk] = logits.gather(-1, targets[s : s + chunk, None]).squeeze(-1) - lse[s : s + chunk]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        for s in range(0, hidden.shape[0], ctx.chunk):
            h, g = hidden[s : s + ctx.chunk], grad_out[s : s + ctx.chunk]
            d = -torch.exp(_logits(h, weight, ctx.temperature) - lse[s : s + ctx.chunk, None]) * g[:, None]
            d.scatter_add_(-1, targets[s : s + ctx.chunk, None], g[:, None])
            d = (d / ctx.temperature).to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[s : s + ctx.chunk] = onednn.matmul_nt(d, weight.t())  # d @ weight
            if grad_weight is not None:
                grad_weight += onednn.matmul_nt(d.t(), h.t())  # d.T @ h
        return grad_hidden, grad_weight, None, None, None


_LOW = (torch.float16, torch.bfloat16)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = onednn.matmul_nt(hidden, weight)  # hidden @ weight.T
    if logits.dtype in _LOW:  # softmax in fp32; never *down*cast (fp64 tests)
        logits = logits.float()
    return logits / temperature if temperature != 1.0 else logits


def _head_logprobs(model: Any, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                   with_entropy: bool, chunk: int = 0):
    """Log-probs of ``targets`` (B, T) from hidden states (B, T, H) through the LM head.

    With ``chunk > 0`` and more than ``chunk`` positions, the head runs chunk by chunk (forward and
    backward) so the (positions x vocabulary) logits never exist at once; otherwise in one piece.
    """
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        chunk = 0  # rare; the chunked path handles the common bias-free head
    if distributed.zero3_partitioned(head):
        # DeepSpeed ZeRO-3: the weight is whole only inside the head's own forward (its hooks gather it), and the
        # chunked path uses it outside, in its backward too. The head runs in one piece: O(positions x vocab).
        chunk = 0
    B, T, H = hidden.shape
    flat_h, flat_t = hidden.reshape(B * T, H), targets.reshape(B * T)
    if chunk and B * T > chunk:
        logprobs = _ChunkedTokenLogprobs.apply(flat_h, head.weight, flat_t, temperature, chunk).view(B, T)
        entropy = None
        if with_entropy:
            with torch.no_grad():
                entropy = torch.cat([_entropy(_logits(flat_h[s : s + chunk], head.weight, temperature))
                                     for s in range(0, B * T, chunk)]).view(B, T)
        return logprobs, entropy
    logits = head(hidden)
    if logits.dtype in _LOW:
        logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = _entropy(logits)
    return logprobs, entropy


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _body(model: Any) -> Any:
    return model.get_decoder() if hasattr(model, "get_decoder") else model.base_model


def completion_logprobs(
    model: Any, batch: PackedBatch, *, temperature: float = 1.0, with_entropy: bool = False, chunk: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (B, T) of the completion tokens under softmax(logits / temperature), shared prompts
    computed once. Entropy (B, T) of the same distribution too when asked (no gradient). ``chunk``: see
    :func:`_head_logprobs`."""
    body = _body(model)
    pmask = batch.prompt_mask
    ppos = (pmask.cumsum(-1) - 1).clamp(min=0)
    out = body(input_ids=batch.prompt_ids, attention_mask=pmask, position_ids=ppos, use_cache=True)
    cache = output_cache(out)
    cache.batch_select_indices(batch.prompt_index)  # P prompts -> B sequences (differentiable indexing)
    h_last = out.last_hidden_state[batch.prompt_index, -1]  # left padding: the last column is real
    plen = pmask.sum(-1)[batch.prompt_index]
    T = batch.completion_ids.shape[1]
    cpos = plen.unsqueeze(1) + torch.arange(T, device=plen.device).unsqueeze(0)
    full_mask = torch.cat([pmask[batch.prompt_index], batch.completion_attn], dim=1)
    hidden = h_last.unsqueeze(1)
    if T > 1:
        h_c = body(
            input_ids=batch.completion_ids[:, :-1], attention_mask=full_mask[:, :-1], position_ids=cpos[:, :-1],
            use_cache=True, **cache_kwargs(body, cache),
        ).last_hidden_state
        hidden = torch.cat([hidden, h_c], dim=1)
    return _head_logprobs(model, hidden, batch.completion_ids, temperature, with_entropy, chunk)


class CompletionLogprobs(torch.nn.Module):
    """:func:`completion_logprobs` of ``model`` as one module call, for an engine that must see every forward
    pass: DeepSpeed does per-micro-batch bookkeeping in its own ``forward`` (ZeRO's gradient-accumulation
    counter, ZeRO-3's parameter-fetch trace), which calling the model's parts directly would bypass. Its
    parameters are ``model``'s."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, batch: PackedBatch, temperature: float = 1.0, with_entropy: bool = False,
                chunk: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        return completion_logprobs(self.model, batch, temperature=temperature, with_entropy=with_entropy, chunk=chunk)


def reference_completion_logprobs(model: Any, batch: PackedBatch, *, temperature: float = 1.0) -> torch.Tensor:
    """The plain way: every sequence in full (prompt + completion), LM head on every position. For tests."""
    B, T = batch.completion_ids.shape
    rows = []
    for b in range(B):
        p = batch.prompt_ids[batch.prompt_index[b]][batch.prompt_mask[batch.prompt_index[b]].bool()]
        n = int(batch.completion_attn[b].sum())
        seq = torch.cat([p, batch.completion_ids[b, :n]]).unsqueeze(0)
        logits = model(input_ids=seq).logits[0] / temperature
        lp = torch.log_softmax(logits[len(p) - 1 : len(p) - 1 + n], -1).gather(-1, seq[0, len(p) :].unsqueeze(-1)).squeeze(-1)
        rows.append(torch.cat([lp, lp.new_zeros(T - n)]))
    return torch.stack(rows)
