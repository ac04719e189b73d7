"""Packing episodes into padded tensors and computing completion log-probabilities.

Only completion positions need logits, so the model's body runs once over ``prompt + completion`` and the
LM head is applied to the hidden states of completion positions only (never to prompt positions), which
avoids most of the (tokens x vocabulary) logits tensor a plain ``model(...).logits`` would build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r1gym.core.rollout import Episode


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (B, L) right-padded prompt + completion
    attention_mask: torch.Tensor  # (B, L)
    completion_start: torch.Tensor  # (B,) index of the first completion token
    completion_ids: torch.Tensor  # (B, T) right-padded
    loss_mask: torch.Tensor  # (B, T) float: 1 where the policy generated the token and the sample counts
    sampler_logprobs: torch.Tensor  # (B, T)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, idx: slice | torch.Tensor) -> PackedBatch:
        return PackedBatch(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def pack(episodes: Sequence[Episode], pad_id: int, *, include: Sequence[bool] | None = None) -> PackedBatch:
    """Right-pad episodes into tensors; ``include[i] = False`` zeroes episode i's loss mask."""
    B = len(episodes)
    L = max(len(e.prompt_ids) + len(e.completion_ids) for e in episodes)
    T = max(max(len(e.completion_ids) for e in episodes), 1)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attention = torch.zeros((B, L), dtype=torch.long)
    comp = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T))
    slp = torch.zeros((B, T))
    start = torch.zeros(B, dtype=torch.long)
    for i, e in enumerate(episodes):
        seq = e.prompt_ids + e.completion_ids
        input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[i, : len(seq)] = 1
        n = len(e.completion_ids)
        start[i] = len(e.prompt_ids)
        if n:
            comp[i, :n] = torch.tensor(e.completion_ids, dtype=torch.long)
            if include is None or include[i]:
                mask[i, :n] = torch.tensor(e.completion_mask, dtype=torch.float)
            slp[i, :n] = torch.tensor(e.sampler_logprobs, dtype=torch.float)
    return PackedBatch(input_ids, attention, start, comp, mask, slp)


def trim(batch: PackedBatch) -> PackedBatch:
    """Drop padding columns a micro-batch does not need (shorter sequences = less compute)."""
    lengths = batch.attention_mask.sum(-1)
    L = int(lengths.max())
    T = max(1, int((lengths - batch.completion_start).max()))
    return PackedBatch(
        batch.input_ids[:, :L], batch.attention_mask[:, :L], batch.completion_start,
        batch.completion_ids[:, :T], batch.loss_mask[:, :T], batch.sampler_logprobs[:, :T],
    )


def completion_logprobs(
    model: Any, batch: PackedBatch, *, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (B, T) of the completion tokens under softmax(logits / temperature).

    Position ``t`` of sequence ``b`` is predicted by the hidden state at ``completion_start[b] + t - 1``.
    Entropy (B, T) of the same distribution is returned too when asked (no gradient).
    """
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    hidden = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    B, T = batch.completion_ids.shape
    pos = (batch.completion_start - 1).unsqueeze(1) + torch.arange(T).unsqueeze(0)
    pos = pos.clamp(max=hidden.shape[1] - 1)
    h = hidden.gather(1, pos.unsqueeze(-1).expand(B, T, hidden.shape[-1]))
    logits = model.get_output_embeddings()(h).float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logprobs, entropy
