"""Hand-computed checks for r1gym.core.advantages (arithmetic in comments)."""

import math

import pytest
import torch
from torch.testing import assert_close

from r1gym.core.advantages import (
    ADVANTAGE_ESTIMATORS,
    get_advantage_estimator,
    group_advantages,
    zero_variance_groups,
)

F64 = torch.float64
EPS = 1e-6


def t(values, dtype=F64):
    return torch.tensor(values, dtype=dtype)


def ids(values):
    return torch.tensor(values, dtype=torch.long)


def test_single_group_grpo_uses_unbiased_std():
    # rewards [1,0,0,1]: mean 0.5, deviations ±0.5
    # unbiased var = 4 * 0.25 / (4 - 1) = 1/3, std = sqrt(1/3) = 0.57735
    # advantage = ±0.5 / 0.57735 = ±0.866025 (eps included below)
    adv = group_advantages(t([1, 0, 0, 1]), ids([0, 0, 0, 0]))
    a = 0.5 / (math.sqrt(1 / 3) + EPS)
    assert_close(adv, t([a, -a, -a, a]))
    assert abs(a - 0.866025) < 1e-5


def test_two_interleaved_groups_with_arbitrary_ids():
    # group 7 = positions 0,2,4 -> rewards [1,0,2]: mean 1, dev [0,-1,1], var 2/2 = 1, std 1
    # group 3 = positions 1,3,5 -> rewards [2,4,0]: mean 2, dev [0,2,-2], var 8/2 = 4, std 2
    # advantages: group 7 -> [0,-1,1], group 3 -> [0,1,-1]
    adv = group_advantages(t([1, 2, 0, 4, 2, 0]), ids([7, 3, 7, 3, 7, 3]))
    expected = t([0, 0, -1 / (1 + EPS), 2 / (2 + EPS), 1 / (1 + EPS), -2 / (2 + EPS)])
    assert_close(adv, expected)


def test_unequal_group_sizes():
    # group 0 = [0,1]: mean .5, var (.25+.25)/1 = .5, std .70711 -> ±.5/.70711 = ±.70711
    # group 1 = [1,1,1,0]: mean .75, dev [.25,.25,.25,-.75],
    #   sum sq = 3*.0625 + .5625 = .75, var .75/3 = .25, std .5 -> [.5,.5,.5,-1.5]
    adv = group_advantages(t([0, 1, 1, 1, 1, 0]), ids([0, 0, 1, 1, 1, 1]))
    s0, s1 = math.sqrt(0.5) + EPS, 0.5 + EPS
    expected = t([-0.5 / s0, 0.5 / s0, 0.25 / s1, 0.25 / s1, 0.25 / s1, -0.75 / s1])
    assert_close(adv, expected)
    assert_close(adv[:2], t([-0.70711, 0.70711]), atol=1e-5, rtol=0)
    assert_close(adv[2:], t([0.5, 0.5, 0.5, -1.5]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [True, False])
def test_all_equal_group_is_exactly_zero(scale):
    # 0.1 * 3 / 3 != 0.1 in float64 (r - mean = -1.4e-17), so a naive
    # (r - mean) / (std + eps) would give ~-1e-11, not 0. We require exact 0.
    rewards = t([0.1, 0.1, 0.1, 1.0, 0.0])
    adv = group_advantages(rewards, ids([0, 0, 0, 1, 1]), scale=scale)
    assert not torch.isnan(adv).any()
    assert torch.equal(adv[:3], torch.zeros(3, dtype=F64))
    assert adv[3] > 0 and adv[4] < 0  # the other group is untouched


def test_single_member_group_is_zero_not_nan():
    # group 1 has one member: torch.std would be NaN; advantage must be 0.
    # group 0 = [1,0]: mean .5, var .5 -> ±.5/sqrt(.5) = ±.70711
    adv = group_advantages(t([1, 0, 5]), ids([0, 0, 1]))
    assert adv[2].item() == 0.0
    s = math.sqrt(0.5) + EPS
    assert_close(adv, t([0.5 / s, -0.5 / s, 0.0]))


def test_invalid_samples_excluded_from_stats_and_zeroed():
    # valid rewards [1, 0, 1] (the NaN one is invalid): mean 2/3,
    # dev [1/3, -2/3, 1/3], sum sq = 1/9 + 4/9 + 1/9 = 2/3, var (2/3)/2 = 1/3,
    # std .57735 -> [.57735, -1.1547, .57735]; invalid gets 0
    rewards = t([1, float("nan"), 0, 1])
    valid = torch.tensor([True, False, True, True])
    adv = group_advantages(rewards, ids([0, 0, 0, 0]), valid=valid)
    s = math.sqrt(1 / 3) + EPS
    assert_close(adv, t([(1 / 3) / s, 0.0, (-2 / 3) / s, (1 / 3) / s]))
    assert adv[1].item() == 0.0


def test_group_left_with_one_valid_member_is_zero():
    # group 0: only one valid member left -> no baseline, advantage 0
    rewards = t([1, float("nan"), 0, 1])
    valid = torch.tensor([True, False, True, True])
    adv = group_advantages(rewards, ids([0, 0, 1, 1]), valid=valid)
    assert not torch.isnan(adv).any()
    assert adv[0].item() == 0.0 and adv[1].item() == 0.0
    s = math.sqrt(0.5) + EPS  # group 1 = [0,1]
    assert_close(adv[2:], t([-0.5 / s, 0.5 / s]))


def test_dr_grpo_no_std_division():
    # rewards [1,0,0,1] -> r - mean .5 = [.5,-.5,-.5,.5], not divided by std
    rewards, group = t([1, 0, 0, 1]), ids([0, 0, 0, 0])
    expected = t([0.5, -0.5, -0.5, 0.5])
    assert_close(group_advantages(rewards, group, scale=False), expected)
    assert_close(get_advantage_estimator("dr_grpo")(rewards, group), expected)
    # group [3,1]: mean 2 -> [1,-1] regardless of std sqrt(2)
    assert_close(group_advantages(t([3, 1]), ids([4, 4]), scale=False), t([1.0, -1.0]))


def test_grpo_estimator_matches_scaled_function():
    rewards, group = t([1, 2, 0, 4, 2, 0]), ids([7, 3, 7, 3, 7, 3])
    assert_close(get_advantage_estimator("grpo")(rewards, group), group_advantages(rewards, group, scale=True))
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "dr_grpo"}


def test_float32_dtype_preserved():
    adv = group_advantages(t([1, 0, 0, 1], dtype=torch.float32), ids([0, 0, 0, 0]))
    assert adv.dtype == torch.float32
    assert_close(adv, torch.tensor([0.866025, -0.866025, -0.866025, 0.866025]), atol=1e-5, rtol=0)


def test_zero_variance_groups():
    # group 0 [1,1] equal -> T; group 1 [0,1] varies -> F;
    # group 2 [nan(invalid),3] one valid member -> T; group 3 single member -> T
    rewards = t([1, 1, 0, 1, float("nan"), 3, 2])
    group = ids([0, 0, 1, 1, 2, 2, 3])
    valid = torch.tensor([True, True, True, True, False, True, True])
    mask = zero_variance_groups(rewards, group, valid)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [True, True, False, False, True, True, True]
    # without a valid mask every sample counts
    assert zero_variance_groups(t([1, 1, 0, 1]), ids([0, 0, 1, 1])).tolist() == [True, True, False, False]


def test_unknown_estimator_lists_names_and_closest_match():
    with pytest.raises(ValueError) as err:
        get_advantage_estimator("dr_grp")
    message = str(err.value)
    assert "'dr_grp'" in message
    assert "dr_grpo" in message and "grpo" in message
    assert "Did you mean 'dr_grpo'?" in message


def test_unknown_estimator_without_close_match_still_lists_names():
    with pytest.raises(ValueError, match=r"Known advantage estimators: dr_grpo, grpo\.$"):
        get_advantage_estimator("ppo_gae_lambda")


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="group_ids shape"):
        group_advantages(t([1, 0]), ids([0, 0, 0]))
    with pytest.raises(ValueError, match="valid shape"):
        group_advantages(t([1, 0]), ids([0, 0]), valid=torch.tensor([True]))
