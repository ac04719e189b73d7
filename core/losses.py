"""Token-level GRPO policy-loss pieces.

All per-token tensors are (B, T): B sequences, T completion positions.
``mask`` (B, T, bool or float) marks the completion tokens that count.

Sources of each piece:
  * clipped surrogate - PPO (Schulman et al. 2017) as used by GRPO
    (Shao et al. 2024), with DAPO's "clip-higher" (separate ``eps_low`` /
    ``eps_high``; DAPO uses 0.2 / 0.28 to keep exploration alive).
  * KL penalty - Schulman's k3 estimator, GRPO paper eq. 4, added to the loss
    per token (not folded into the reward).
  * aggregation - the three ways the literature reduces (B, T) to a scalar:
    GRPO's per-sequence mean, DAPO's token mean, Dr. GRPO's constant
    normaliser (removes the length bias of per-sequence means).
"""

from __future__ import annotations

from typing import Callable

import torch

from r1gym.core.registry import pick

Aggregation = Callable[[torch.Tensor, torch.Tensor, float | None], torch.Tensor]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask``; 0 (not NaN) when the mask is empty."""
    m = mask.to(x.dtype)
    total = m.sum()
    return (x * m).sum() / torch.where(total > 0, total, torch.ones_like(total))


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): ``exp(d) - d - 1``, d = ref - lp.

    Unbiased and always >= 0 (unlike k1 = -d), with low variance; this is the
    form in the GRPO paper (eq. 4).
    """
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped objective, negated to a loss, with asymmetric clip range.

    ``advantages`` is (B,) - one GRPO advantage per sequence, broadcast over
    its tokens - or already (B, T). Returns the per-token loss
    ``-min(ratio * A, clamp(ratio, 1 - eps_low, 1 + eps_high) * A)`` and a bool
    (B, T) tensor that is True where the clipped term was strictly smaller,
    i.e. where clipping changed the objective (and zeroed the gradient).
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def _seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor, normalizer: float | None) -> torch.Tensor:
    """GRPO paper: mean over each sequence's tokens, then over sequences.

    Sequences with no masked tokens contribute 0 and are not counted.
    """
    m = mask.to(per_token.dtype)
    tokens = m.sum(-1)
    has_tokens = tokens > 0
    seq_means = (per_token * m).sum(-1) / torch.where(has_tokens, tokens, torch.ones_like(tokens))
    num_seqs = has_tokens.sum().clamp(min=1)
    return seq_means.sum() / num_seqs


def _token_mean(per_token: torch.Tensor, mask: torch.Tensor, normalizer: float | None) -> torch.Tensor:
    """DAPO: sum over every masked token in the batch / number of masked tokens."""
    return masked_mean(per_token, mask)


def _seq_mean_token_sum_norm(per_token: torch.Tensor, mask: torch.Tensor, normalizer: float | None) -> torch.Tensor:
    """Dr. GRPO: sum over all tokens / (B * normalizer), normalizer a constant.

    A constant (typically the max completion length) instead of each
    sequence's own length removes GRPO's bias towards long wrong answers.
    """
    if normalizer is None or normalizer <= 0:
        raise ValueError(
            f"aggregation 'seq_mean_token_sum_norm' needs a positive normalizer "
            f"(e.g. max completion length), got {normalizer!r}"
        )
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / (per_token.shape[0] * normalizer)


LOSS_AGGREGATIONS: dict[str, Aggregation] = {
    "seq_mean_token_mean": _seq_mean_token_mean,
    "token_mean": _token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}


def get_loss_aggregation(name: str) -> Aggregation:
    """Look up an aggregation by name; the error lists valid names and the closest match."""
    return pick(LOSS_AGGREGATIONS, name, "loss aggregation")


IS_MODES = ("none", "truncate", "mask")
IS_LEVELS = ("token", "sequence")


def importance_weights(
    old_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    mode: str,
    level: str,
    cap: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Correction for sampling with a different numeric path than training (vLLM, bf16 sampler weights).

    The ratio ``rho = pi_train / pi_sampler`` of the tokens' probabilities (per token, or per sequence: the
    product over its tokens) weighs each token's loss: ``truncate`` uses ``min(rho, cap)`` (truncated importance
    sampling), ``mask`` drops what has ``rho`` outside ``[1 / cap, cap]`` (masked importance sampling).
    The weights carry no gradient. Returns (weights per token, metrics).

    >>> w, _ = importance_weights(torch.tensor([[0.0, 0.0]]), torch.tensor([[-1.0, 0.0]]), torch.ones(1, 2),
    ...                           mode="truncate", level="token", cap=2.0)
    >>> [round(x, 3) for x in w[0].tolist()]
    [2.0, 1.0]
    """
    if mode not in IS_MODES or level not in IS_LEVELS:
        raise ValueError(f"importance correction mode must be one of {IS_MODES} and level one of {IS_LEVELS}, "
                         f"got {mode!r}, {level!r}")
    if cap <= 1.0:
        raise ValueError(f"the importance-ratio cap must be > 1, got {cap}")
    with torch.no_grad():
        log_rho = (old_logprobs - sampler_logprobs) * mask
        if level == "sequence":
            log_rho = log_rho.sum(-1, keepdim=True).expand_as(old_logprobs)
        rho = torch.exp(log_rho.clamp(max=50.0))
        if mode == "none":
            weights = torch.ones_like(rho)
            off = torch.zeros_like(rho, dtype=torch.bool)
        elif mode == "truncate":
            off = rho > cap
            weights = rho.clamp(max=cap)
        else:
            off = (rho > cap) | (rho < 1.0 / cap)
            weights = (~off).to(rho.dtype)
        metrics = {"is/ratio_mean": masked_mean(rho, mask).item(),
                   "is/capped_frac" if mode == "truncate" else "is/masked_frac": masked_mean(off.to(rho.dtype), mask).item()}
    return weights * mask, metrics


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    beta: float,
    aggregation: str | Aggregation,
    normalizer: float | None = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Scalar GRPO loss = aggregate(clipped surrogate + beta * k3 KL), plus metrics.

    The KL term is added only when ``beta > 0`` (DAPO and Dr. GRPO use
    beta = 0 and need no reference model). Metrics are python floats over
    masked tokens: "clip_frac", "ratio_mean", and "kl" when a reference is given.
    ``token_weights`` (no gradient), when given, multiply each token's term: the importance correction of
    :func:`importance_weights`. ``aggregation``: a name of :data:`LOSS_AGGREGATIONS` or the function itself
    (a trainer resolves the name once, not per micro-batch).
    """
    aggregate = aggregation if callable(aggregation) else get_loss_aggregation(aggregation)
    if beta > 0 and ref_logprobs is None:
        raise ValueError(f"beta={beta} > 0 needs ref_logprobs, got None")

    per_token, is_clipped = clipped_surrogate(
        logprobs, old_logprobs, advantages, eps_low=eps_low, eps_high=eps_high
    )
    kl = kl_k3(logprobs, ref_logprobs) if ref_logprobs is not None else None
    if beta > 0 and kl is not None:
        per_token = per_token + beta * kl
    if token_weights is not None:
        per_token = per_token * token_weights
    loss = aggregate(per_token, mask, normalizer)

    with torch.no_grad():
        metrics = {
            "clip_frac": masked_mean(is_clipped.to(logprobs.dtype), mask).item(),
            "ratio_mean": masked_mean(torch.exp(logprobs - old_logprobs), mask).item(),
        }
        if kl is not None:
            metrics["kl"] = masked_mean(kl, mask).item()
    return loss, metrics


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim, one value per position.

    Uses log_softmax for stability with large logits; log-probs of -inf
    (masked vocabulary entries) are clamped to the dtype's minimum so that
    ``0 * -inf`` cannot produce NaN.
    """
    logp = torch.log_softmax(logits, dim=-1)
    logp = logp.clamp(min=torch.finfo(logp.dtype).min)
    return -(logp.exp() * logp).sum(-1)


#: How many "units" each aggregation divides by. A micro-batch's loss times units(micro) / units(batch)
#: sums to the loss of the whole batch, so gradient accumulation gives the same gradient as one big batch.
AGGREGATION_UNITS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "seq_mean_token_mean": lambda mask: (mask.sum(-1) > 0).sum(),
    "token_mean": lambda mask: mask.sum(),
    "seq_mean_token_sum_norm": lambda mask: torch.tensor(mask.shape[0]),
}


def micro_batch_weight(aggregation: str, micro_mask: torch.Tensor, batch_mask: torch.Tensor) -> float:
    """Weight of a micro-batch's aggregated loss within the batch's (0 when the batch counts nothing)."""
    get_loss_aggregation(aggregation)  # the helpful error for an unknown name
    units = AGGREGATION_UNITS[aggregation]
    total = float(units(batch_mask))
    return float(units(micro_mask)) / total if total > 0 else 0.0
