"""Group-relative advantages for GRPO-style training.

GRPO (DeepSeekMath, Shao et al. 2024; used by DeepSeek-R1) replaces a learned
critic with a per-prompt baseline: every prompt is sampled G times, and each
completion's advantage is its reward minus the mean reward of its group,
divided by the group's standard deviation.

Variants kept here:
  * "grpo"    - mean-centred and divided by the *unbiased* sample std
                (``torch.std`` default, as in DeepSeekMath and TRL).
  * "dr_grpo" - Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like
                Training") drops the std division, because it up-weights
                groups whose rewards barely differ (too easy / too hard).

DAPO (Yu et al. 2025) "dynamic sampling" drops groups whose rewards carry no
signal (all equal); ``zero_variance_groups`` gives the mask for that.

Everything is vectorised over groups (``torch.unique`` + ``index_add_`` /
``scatter_reduce``): groups need not be contiguous nor of equal size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from r1gym.core.registry import pick

AdvantageEstimator = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class _GroupStats:
    """Per-group statistics over *valid* members, plus the sample->group map."""

    inverse: torch.Tensor  # (N,) group index of each sample
    mean: torch.Tensor  # (G,)
    std: torch.Tensor  # (G,) unbiased; 0 where fewer than 2 valid members
    degenerate: torch.Tensor  # (G,) bool: <2 valid members or all valid rewards equal


def _check_shapes(rewards: torch.Tensor, group_ids: torch.Tensor, valid: torch.Tensor | None) -> None:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_ids.shape != rewards.shape:
        raise ValueError(f"group_ids shape {tuple(group_ids.shape)} != rewards shape {tuple(rewards.shape)}")
    if valid is not None and valid.shape != rewards.shape:
        raise ValueError(f"valid shape {tuple(valid.shape)} != rewards shape {tuple(rewards.shape)}")


def _group_stats(rewards: torch.Tensor, group_ids: torch.Tensor, valid: torch.Tensor | None) -> _GroupStats:
    """Mean / unbiased std / degeneracy per group, ignoring invalid samples.

    Invalid rewards (possibly NaN) are replaced by 0 *before* any sum so a NaN
    can never leak into a group's statistics. "All equal" is decided with an
    exact min == max test, not ``std == 0``: float round-off in the mean makes
    e.g. three rewards of 0.1 yield a tiny non-zero std and spurious advantages.
    """
    _check_shapes(rewards, group_ids, valid)
    if valid is None:
        valid = torch.ones_like(rewards, dtype=torch.bool)
    valid = valid.bool()
    unique_ids, inverse = torch.unique(group_ids, return_inverse=True)
    num_groups = unique_ids.numel()

    r = torch.where(valid, rewards, torch.zeros_like(rewards))
    zeros = rewards.new_zeros(num_groups)
    count = zeros.index_add(0, inverse, valid.to(rewards.dtype))
    mean = zeros.index_add(0, inverse, r) / count.clamp(min=1)

    centred_sq = torch.where(valid, (r - mean[inverse]) ** 2, torch.zeros_like(r))
    sum_sq = zeros.index_add(0, inverse, centred_sq)
    std = torch.where(count >= 2, sum_sq / (count - 1).clamp(min=1), zeros).sqrt()

    inf = torch.full_like(rewards, float("inf"))
    hi = zeros.scatter_reduce(0, inverse, torch.where(valid, rewards, -inf), "amax", include_self=False)
    lo = zeros.scatter_reduce(0, inverse, torch.where(valid, rewards, inf), "amin", include_self=False)
    degenerate = (count < 2) | (hi == lo)
    return _GroupStats(inverse=inverse, mean=mean, std=std, degenerate=degenerate)


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    scale: bool = True,
    valid: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """GRPO advantage ``r - mean(group)``, optionally divided by ``std + eps``.

    ``scale=True`` is GRPO (unbiased std, as DeepSeekMath/TRL); ``scale=False``
    is Dr. GRPO. Samples with ``valid == False`` (reward could not be scored)
    are excluded from their group's statistics and get advantage 0.0. Groups
    with no usable signal (all valid rewards equal, or < 2 valid members) get
    exactly 0.0 - never NaN (``torch.std`` of one element is NaN) and never
    round-off noise amplified by ``1 / eps``.
    """
    stats = _group_stats(rewards, group_ids, valid)
    adv = rewards - stats.mean[stats.inverse]
    if scale:
        adv = adv / (stats.std[stats.inverse] + eps)
    keep = ~stats.degenerate[stats.inverse]
    if valid is not None:
        keep = keep & valid.bool()
    return torch.where(keep, adv, torch.zeros_like(adv))


def zero_variance_groups(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool mask (N,): True for every sample whose group carries no signal.

    A group carries no signal when its valid rewards are all equal or it has
    fewer than 2 valid members. DAPO's dynamic sampling drops (and resamples)
    such groups, since their advantages are all zero and only dilute the batch.
    """
    stats = _group_stats(rewards, group_ids, valid)
    return stats.degenerate[stats.inverse]


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": partial(group_advantages, scale=True),
    "dr_grpo": partial(group_advantages, scale=False),
}


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """Look up an estimator by name; the error lists valid names and the closest match."""
    return pick(ADVANTAGE_ESTIMATORS, name, "advantage estimator")
