"""Sampling one token per row from a (rows x vocab) logits tensor, cheaply.

``torch.multinomial`` on a CPU draws about one random number per vocabulary entry: for SmolLM2's 49,152-token
vocabulary that took 13 ms per decode step at batch 16 and 50 ms at batch 64 here, as long as the model's
forward pass itself. Inverse-CDF sampling needs one uniform number per row: a cumulative sum over the
vocabulary and a binary search. Top-p needs the smallest set of tokens whose mass reaches ``top_p``; instead
of sorting the whole vocabulary (another 3x the sampling cost) it looks for that set among the 64 most likely
tokens, and sorts fully only for the rows whose nucleus is larger than that.
"""

from __future__ import annotations

from typing import Any

#: top-p looks for the nucleus among this many most likely tokens first (exact: rows that need more are sorted)
NUCLEUS_CANDIDATES = 64


def sample_next(logits: Any, temperature: float, top_k: int, top_p: float, banned: Any = None,
                banned_rows: Any = None) -> tuple[Any, Any]:
    """Sample one token per row; return (tokens, log-probs under softmax(logits / temperature)).

    ``temperature <= 0`` is greedy (log-probs of the untempered distribution then). ``top_k <= 0`` and
    ``top_p >= 1`` switch those filters off. ``banned`` (token ids) cannot be drawn (``min_new_tokens`` bans
    EOS), in every row or, with ``banned_rows`` (a bool per row), in those rows only (continuous batching
    has rows at different steps). The returned log-probs are of the tempered distribution *before* filtering and banning, the quantity
    the trainer recomputes.
    """
    import torch

    if temperature <= 0:
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok = (logp if banned is None else _ban(logp, banned, banned_rows, float("-inf"))).argmax(-1)
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    probs = logp.exp()
    if banned is not None:
        probs = _ban(probs, banned, banned_rows, 0.0)
    vocab = probs.shape[-1]
    threshold = None  # per row: keep the tokens whose probability is at least this
    if top_k and 0 < top_k < vocab:
        threshold = torch.topk(probs, top_k, dim=-1).values[:, -1:]
    if top_p < 1.0:
        nucleus = _nucleus_threshold(probs if threshold is None else probs * (probs >= threshold), top_p)
        threshold = nucleus if threshold is None else torch.maximum(threshold, nucleus)
    if threshold is not None:
        probs = probs * (probs >= threshold)
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=vocab - 1)
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


def _ban(values: Any, banned: Any, rows: Any, fill: float) -> Any:
    """``values`` with the ``banned`` columns set to ``fill`` (in ``rows`` only, where given); a copy."""
    if rows is None:
        return values.index_fill(-1, banned, fill)
    out = values.clone()
    out[rows.nonzero(), banned[None, :]] = fill
    return out


def _nucleus_threshold(probs: Any, top_p: float) -> Any:
    """Per row, the probability of the least likely token in the smallest set whose mass reaches ``top_p``
    (of the row's total mass, so it also works on top-k-filtered, unnormalised rows)."""
    import torch

    total = probs.sum(-1, keepdim=True)
    k = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    vals = torch.topk(probs, k, dim=-1).values  # sorted, descending
    cum = vals.cumsum(-1)
    # keep a token while the mass before it is below top_p (so the token that crosses top_p is kept)
    inside = (cum - vals) < top_p * total
    threshold = vals.gather(-1, (inside.sum(-1, keepdim=True) - 1).clamp(min=0))
    wide = (cum[:, -1:] < top_p * total).squeeze(-1)  # the nucleus is bigger than the candidates
    if bool(wide.any()):
        rows = wide.nonzero().squeeze(-1)
        svals = torch.sort(probs[rows], dim=-1, descending=True).values
        scum = svals.cumsum(-1)
        n = ((scum - svals) < top_p * total[rows]).sum(-1, keepdim=True)
        threshold[rows] = svals.gather(-1, (n - 1).clamp(min=0))
    return threshold
