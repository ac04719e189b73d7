"""Hand-computed checks for r1gym.core.losses (arithmetic in comments)."""

import math

import pytest
import torch
from torch.testing import assert_close

from r1gym.core.losses import (
    LOSS_AGGREGATIONS,
    clipped_surrogate,
    entropy_from_logits,
    get_loss_aggregation,
    grpo_loss,
    kl_k3,
    masked_mean,
)

F64 = torch.float64


def t(values, dtype=F64, requires_grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=requires_grad)


def log_ratios(ratios):
    """logprobs giving the wanted ratios when old_logprobs = 0."""
    return [[math.log(r) for r in row] for row in ratios]


# ---------------------------------------------------------------- k3 KL


def test_kl_k3_hand_value_and_zero_when_equal():
    # lp = -1, ref = -1.5: d = ref - lp = -0.5
    # k3 = exp(-0.5) - (-0.5) - 1 = 0.606531 + 0.5 - 1 = 0.106531
    lp, ref = t([[-1.0, -2.0]]), t([[-1.5, -2.0]])
    k3 = kl_k3(lp, ref)
    assert_close(k3, t([[math.exp(-0.5) + 0.5 - 1, 0.0]]))
    assert abs(k3[0, 0].item() - 0.10653) < 1e-5
    assert k3[0, 1].item() == 0.0


def test_kl_k3_is_non_negative_both_directions():
    # d = +0.5: exp(.5) - .5 - 1 = 1.648721 - 1.5 = 0.148721
    k3 = kl_k3(t([[-1.5]]), t([[-1.0]]))
    assert_close(k3, t([[math.exp(0.5) - 1.5]]))
    assert k3.item() > 0


# ---------------------------------------------------------------- clipped surrogate


def test_ratio_one_gives_minus_advantage():
    # ratio 1 everywhere: min(1*A, clamp(1)*A) = A -> loss -A per token
    lp = t([[-0.7, -1.2], [-0.3, -2.0]])
    loss, clipped = clipped_surrogate(lp, lp.clone(), t([2.0, -0.5]), eps_low=0.2, eps_high=0.2)
    assert_close(loss, t([[-2.0, -2.0], [0.5, 0.5]]))
    assert not clipped.any()


def test_positive_advantage_clipped_above_has_zero_gradient():
    # A = +1, eps = 0.2; ratios [1, 1.5, 0.5]
    #   ratio 1.0: min(1, 1) = 1 -> loss -1, d loss / d lp = -ratio*A = -1
    #   ratio 1.5: min(1.5, 1.2) = 1.2 -> loss -1.2, clipped, gradient 0
    #   ratio 0.5: min(0.5, 0.8) = 0.5 -> loss -0.5 (pessimistic: not clipped), grad -0.5
    lp = t(log_ratios([[1.0, 1.5, 0.5]]), requires_grad=True)
    loss, clipped = clipped_surrogate(lp, torch.zeros(1, 3, dtype=F64), t([1.0]), eps_low=0.2, eps_high=0.2)
    assert_close(loss, t([[-1.0, -1.2, -0.5]]))
    assert clipped.tolist() == [[False, True, False]]
    loss.sum().backward()
    assert lp.grad[0, 1].item() == 0.0
    assert_close(lp.grad, t([[-1.0, 0.0, -0.5]]))


def test_negative_advantage_clipped_below_at_one_minus_eps_low():
    # A = -1, eps_low = 0.2; ratios [0.5, 1.5]
    #   ratio 0.5: min(-0.5, 0.8 * -1 = -0.8) = -0.8 -> loss 0.8, clipped, grad 0
    #   ratio 1.5: min(-1.5, -1.2) = -1.5 -> loss 1.5, not clipped, grad -ratio*A = 1.5
    lp = t(log_ratios([[0.5, 1.5]]), requires_grad=True)
    loss, clipped = clipped_surrogate(lp, torch.zeros(1, 2, dtype=F64), t([-1.0]), eps_low=0.2, eps_high=0.2)
    assert_close(loss, t([[0.8, 1.5]]))
    assert clipped.tolist() == [[True, False]]
    loss.sum().backward()
    assert_close(lp.grad, t([[0.0, 1.5]]))


def test_asymmetric_clip_higher():
    # ratio 1.25, A = +1: eps_high 0.28 -> bound 1.28, not clipped, loss -1.25
    #                     eps_high 0.20 -> bound 1.20, clipped,     loss -1.2
    # ratio 0.75, A = -1: eps_low 0.2 -> bound 0.8: min(-0.75, -0.8) = -0.8, loss 0.8, clipped
    lp = t(log_ratios([[1.25], [0.75]]))
    old, adv = torch.zeros(2, 1, dtype=F64), t([1.0, -1.0])
    loss, clipped = clipped_surrogate(lp, old, adv, eps_low=0.2, eps_high=0.28)
    assert_close(loss, t([[-1.25], [0.8]]))
    assert clipped.tolist() == [[False], [True]]
    loss_sym, clipped_sym = clipped_surrogate(lp, old, adv, eps_low=0.2, eps_high=0.2)
    assert_close(loss_sym, t([[-1.2], [0.8]]))
    assert clipped_sym.tolist() == [[True], [True]]


# ---------------------------------------------------------------- aggregations

PER_TOKEN = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
MASK = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_seq_mean_token_mean_hand():
    # seq 0: (1+2)/2 = 1.5; seq 1: 4/1 = 4; mean over seqs (1.5+4)/2 = 2.75
    out = get_loss_aggregation("seq_mean_token_mean")(t(PER_TOKEN), t(MASK), None)
    assert_close(out, t(2.75))


def test_token_mean_hand():
    # (1 + 2 + 4) / 3 masked tokens = 7/3 = 2.3333
    out = get_loss_aggregation("token_mean")(t(PER_TOKEN), t(MASK), None)
    assert_close(out, t(7 / 3))


def test_seq_mean_token_sum_norm_hand():
    # (1 + 2 + 4) / (B=2 * normalizer=4) = 7/8 = 0.875
    out = get_loss_aggregation("seq_mean_token_sum_norm")(t(PER_TOKEN), t(MASK), 4.0)
    assert_close(out, t(0.875))


def test_aggregations_with_an_empty_sequence():
    # mask row 1 empty:
    #   seq_mean_token_mean: only seq 0 counts -> (1+2)/2 = 1.5 (not 1.5/2)
    #   token_mean: (1+2)/2 = 1.5
    #   seq_mean_token_sum_norm: (1+2)/(2*4) = 0.375 (B stays 2: constant normaliser)
    mask = t([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    expected = {"seq_mean_token_mean": 1.5, "token_mean": 1.5, "seq_mean_token_sum_norm": 0.375}
    for name, value in expected.items():
        assert_close(LOSS_AGGREGATIONS[name](t(PER_TOKEN), mask, 4.0), t(value), msg=name)


def test_bool_mask_accepted():
    out = get_loss_aggregation("token_mean")(t(PER_TOKEN), t(MASK).bool(), None)
    assert_close(out, t(7 / 3))


@pytest.mark.parametrize("name", sorted(LOSS_AGGREGATIONS))
def test_empty_mask_gives_zero_and_backward_works(name):
    per_token = t(PER_TOKEN, requires_grad=True)
    out = LOSS_AGGREGATIONS[name](per_token, torch.zeros(2, 3, dtype=F64), 4.0)
    assert out.item() == 0.0
    out.backward()
    assert per_token.grad is not None
    assert torch.equal(per_token.grad, torch.zeros(2, 3, dtype=F64))


def test_dr_grpo_normalizer_required():
    with pytest.raises(ValueError, match="normalizer"):
        get_loss_aggregation("seq_mean_token_sum_norm")(t(PER_TOKEN), t(MASK), None)
    lp = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="normalizer"):
        grpo_loss(lp, lp, None, t([1.0, 1.0]), t(MASK), eps_low=0.2, eps_high=0.2, beta=0.0,
                  aggregation="seq_mean_token_sum_norm")


def test_unknown_aggregation_lists_names_and_closest_match():
    with pytest.raises(ValueError) as err:
        get_loss_aggregation("token_means")
    message = str(err.value)
    for name in ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"):
        assert name in message
    assert "Did you mean 'token_mean'?" in message


# ---------------------------------------------------------------- grpo_loss


def test_beta_without_ref_raises():
    lp = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(lp, lp, None, t([1.0]), torch.ones(1, 2), eps_low=0.2, eps_high=0.2, beta=0.04,
                  aggregation="token_mean")


def test_grpo_loss_value_and_metrics_hand():
    # old = 0, eps 0.2, A = [+1, -1]; ratios row0 [1, 1.5, 0.5], row1 [1, 0.5, 0.5]
    # mask row0 [1,1,1], row1 [1,1,0]  (5 tokens)
    # per-token loss row0: [-1, -1.2 (clipped), -0.5]
    #                row1: [ 1,  0.8 (clipped),  0.8 (clipped but masked out)]
    # token_mean = (-1 - 1.2 - 0.5 + 1 + 0.8) / 5 = -0.9 / 5 = -0.18
    # clip_frac = 2 clipped masked tokens / 5 = 0.4
    # ratio_mean = (1 + 1.5 + 0.5 + 1 + 0.5) / 5 = 0.9
    lp = t(log_ratios([[1.0, 1.5, 0.5], [1.0, 0.5, 0.5]]), requires_grad=True)
    mask = t([[1, 1, 1], [1, 1, 0]])
    loss, metrics = grpo_loss(lp, torch.zeros(2, 3, dtype=F64), None, t([1.0, -1.0]), mask,
                              eps_low=0.2, eps_high=0.2, beta=0.0, aggregation="token_mean")
    assert_close(loss, t(-0.18))
    assert set(metrics) == {"clip_frac", "ratio_mean"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["clip_frac"] == pytest.approx(0.4)
    assert metrics["ratio_mean"] == pytest.approx(0.9)
    loss.backward()
    # clipped tokens and the masked token get no gradient; row0 tok0: -1*1/5 = -0.2
    assert_close(lp.grad, t([[-0.2, 0.0, -0.1], [0.2, 0.0, 0.0]]))


def test_grpo_loss_with_kl_term():
    # ratio 1 (lp = old), A = 1 -> surrogate -1 per token
    # lp = -1, ref = -1.5 -> k3 = 0.106531; beta 0.1 -> -1 + 0.0106531 = -0.989347
    lp = t([[-1.0, -1.0]])
    ref = t([[-1.5, -1.5]])
    k3 = math.exp(-0.5) + 0.5 - 1
    loss, metrics = grpo_loss(lp, lp.clone(), ref, t([1.0]), torch.ones(1, 2), eps_low=0.2,
                              eps_high=0.2, beta=0.1, aggregation="seq_mean_token_mean")
    assert_close(loss, t(-1.0 + 0.1 * k3))
    assert metrics["kl"] == pytest.approx(k3)
    assert metrics["clip_frac"] == 0.0
    # beta = 0 with a ref: KL is reported but not added to the loss
    loss0, metrics0 = grpo_loss(lp, lp.clone(), ref, t([1.0]), torch.ones(1, 2), eps_low=0.2,
                                eps_high=0.2, beta=0.0, aggregation="seq_mean_token_mean")
    assert_close(loss0, t(-1.0))
    assert metrics0["kl"] == pytest.approx(k3)


def test_grpo_loss_empty_mask_no_nan():
    lp = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    loss, metrics = grpo_loss(lp, torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64), t([1.0, -1.0]),
                              torch.zeros(2, 3), eps_low=0.2, eps_high=0.28, beta=0.04, aggregation="token_mean")
    assert loss.item() == 0.0
    assert metrics == {"clip_frac": 0.0, "ratio_mean": 0.0, "kl": 0.0}
    loss.backward()
    assert torch.isfinite(lp.grad).all()


# ---------------------------------------------------------------- helpers


def test_masked_mean_hand_and_empty():
    # (1 + 3) / 2 = 2
    assert_close(masked_mean(t([1.0, 2.0, 3.0]), t([1.0, 0.0, 1.0])), t(2.0))
    empty = masked_mean(t([1.0, 2.0]), torch.zeros(2, dtype=torch.bool))
    assert empty.item() == 0.0


def test_entropy_from_logits():
    # uniform over 4 -> ln 4 = 1.386294; one-hot-ish [0, -inf] -> 0;
    # [1000, 1000, -inf] -> ln 2 = 0.693147 (stable for huge logits, no NaN from -inf)
    logits = t([[0.0, 0.0, 0.0, 0.0], [0.0, -math.inf, -math.inf, -math.inf], [1000.0, 1000.0, -math.inf, -math.inf]])
    ent = entropy_from_logits(logits)
    assert ent.shape == (3,)
    assert_close(ent, t([math.log(4), 0.0, math.log(2)]))
    # probabilities [.5, .25, .25]: -(.5 ln .5 + 2 * .25 ln .25) = .34657 + .69315 = 1.039721
    assert_close(entropy_from_logits(t([math.log(2.0), 0.0, 0.0])), t(1.5 * math.log(2)))


def test_importance_weights_truncate_mask_and_sequence_level_by_hand():
    from r1gym.core.losses import importance_weights

    old = torch.tensor([[0.0, 0.0, 0.0]])
    sampler = torch.tensor([[-1.0, 0.5, 0.0]])  # rho = e, e^-0.5, 1 per token
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w, m = importance_weights(old, sampler, mask, mode="truncate", level="token", cap=2.0)
    assert torch.allclose(w, torch.tensor([[2.0, math.exp(-0.5), 0.0]]))
    assert m["is/capped_frac"] == pytest.approx(0.5)
    w, m = importance_weights(old, sampler, mask, mode="mask", level="token", cap=2.0)
    assert torch.equal(w, torch.tensor([[0.0, 1.0, 0.0]])) and m["is/masked_frac"] == pytest.approx(0.5)
    w, _ = importance_weights(old, sampler, mask, mode="truncate", level="sequence", cap=2.0)  # rho = e^0.5 for all
    assert torch.allclose(w, torch.tensor([[math.exp(0.5), math.exp(0.5), 0.0]]))
    w, _ = importance_weights(old, sampler, mask, mode="none", level="token", cap=2.0)
    assert torch.equal(w, mask)
    with pytest.raises(ValueError, match="truncate"):
        importance_weights(old, sampler, mask, mode="clip", level="token", cap=2.0)
    with pytest.raises(ValueError, match="cap must be > 1"):
        importance_weights(old, sampler, mask, mode="mask", level="token", cap=1.0)


def test_token_weights_scale_each_tokens_term_and_ones_change_nothing():
    from r1gym.core.losses import grpo_loss

    torch.manual_seed(0)
    lp = torch.randn(3, 4, requires_grad=True)
    adv, mask = torch.tensor([1.0, -1.0, 0.5]), torch.ones(3, 4)
    kw = dict(eps_low=0.2, eps_high=0.2, beta=0.0, aggregation="token_mean")
    plain, _ = grpo_loss(lp, lp.detach(), None, adv, mask, **kw)
    ones, _ = grpo_loss(lp, lp.detach(), None, adv, mask, token_weights=torch.ones(3, 4), **kw)
    half, _ = grpo_loss(lp, lp.detach(), None, adv, mask, token_weights=torch.full((3, 4), 0.5), **kw)
    assert float(ones) == pytest.approx(float(plain)) and float(half) == pytest.approx(0.5 * float(plain))
