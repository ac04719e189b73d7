"""The math rewards through the engine's RewardSet: unscorable stays unscorable (never 0), and the length
shapings against values computed by hand."""

from __future__ import annotations

import math

import pytest

from r1gym.core.plugins import default_host
from r1gym.core.rewards import Unscorable, build_reward_set
from r1gym.plugins.math.rewards import completion_length, cosine_length, math_accuracy, overlong


def rewards(spec):
    return build_reward_set(spec, default_host().rewards.get)


def test_registered():
    host = default_host()
    assert {"math_accuracy", "overlong", "cosine_length"} <= set(host.rewards)
    assert host.rewards.entries["math_accuracy"].plugin == "math"


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        ("<think> 1/4 + 1/4 </think> <answer> \\frac{1}{2} </answer>", "0.5", 1.0),
        ("<think> ... </think> <answer> 0.25 </answer>", "0.5", 0.0),
        ("so the answer is $\\boxed{(x-1)(x+1)}$", "x^2-1", 1.0),
        ("Tom has 3 + 4 = 7 apples.\n#### 7", "She has 7.\n#### 7", 1.0),  # a GSM8K answer as the reference
        ("no idea", "12", 0.0),
    ],
)
def test_math_accuracy(completion, answer, expected):
    assert math_accuracy(completion, answer=answer) == expected


def test_unscorable_reference_through_the_reward_set():
    rs = rewards({"math_accuracy": 1.0, "format": 0.1})
    outcome = rs.score("<think> x </think> <answer> 3 </answer>", {"answer": "\\frac{1}{"})
    assert outcome.total is None and not outcome.scorable
    assert outcome.components["math_accuracy"] is None and outcome.components["format"] == 1.0
    assert "does not parse" in outcome.unscorable["math_accuracy"]
    good = rs.score("<think> x </think> <answer> 3 </answer>", {"answer": "3"})
    assert good.total == pytest.approx(1.1)


def test_timeout_through_the_reward_set_is_unscorable():
    rs = rewards({"math_accuracy": {"weight": 1.0, "timeout": 1.0}})
    outcome = rs.score("<answer> 10^{10^{10^{10}}} </answer>", {"answer": "7"})
    assert outcome.total is None and outcome.unscorable["math_accuracy"].startswith("timeout")


def test_math_accuracy_params_from_config():
    rs = rewards({"math_accuracy": {"weight": 1.0, "methods": ["answer_tag"], "approx_digits": 3}})
    assert rs.score("\\boxed{4}", {"answer": "4"}).total == 0.0  # only the <answer> tag counts
    assert rs.score("<answer>0.333</answer>", {"answer": "1/3"}).total == 1.0
    with pytest.raises(TypeError, match="unknown parameter"):
        rewards({"math_accuracy": {"weight": 1.0, "timeuot": 3}})


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (3072, 0.0), (3073, -1 / 1024), (3584, -0.5), (4096, -1.0), (4097, -1.0), (10_000, -1.0)],
)
def test_overlong_matches_dapo(length, expected):
    assert overlong("x" * length, max_length=4096, cache=1024) == pytest.approx(expected)


def test_overlong_units_and_num_tokens():
    text = "one two three four five"
    assert completion_length(text, "chars") == 23 and completion_length(text, "words") == 5
    assert overlong(text, max_length=6, cache=2, unit="words") == pytest.approx(-0.5)  # 5 of 6, 1 into the cache
    assert overlong(text, max_length=6, cache=2, num_tokens=3) == 0.0  # the token count wins
    with pytest.raises(Unscorable, match="num_tokens"):
        overlong(text, unit="tokens")
    with pytest.raises(ValueError, match="cache"):
        overlong(text, max_length=10, cache=20)
    outcome = rewards({"overlong": {"weight": 1.0, "max_length": 10, "cache": 5}}).score("x" * 8, {"answer": "1"})
    assert outcome.total == pytest.approx(-0.6)


def _cos(t, T, r0, rT):
    return rT + 0.5 * (r0 - rT) * (1 + math.cos(math.pi * t / T))


def test_cosine_length_by_correctness_and_length():
    right, wrong = "<answer> 4 </answer>", "<answer> 5 </answer>"  # 20 characters each
    pad = " " * 30
    assert cosine_length(right, answer="4", max_length=100) == pytest.approx(_cos(20, 100, 1.0, 0.5))
    assert cosine_length(wrong, answer="4", max_length=100) == pytest.approx(_cos(20, 100, -1.0, -0.5))
    # shorter correct answers earn more; longer wrong ones are punished less
    assert cosine_length(right, answer="4", max_length=100) > cosine_length(right + pad, answer="4", max_length=100)
    assert cosine_length(wrong, answer="4", max_length=100) < cosine_length(wrong + pad, answer="4", max_length=100)
    # at and past max_length: the value at max_length, or `exceed`
    assert cosine_length(right + " " * 200, answer="4", max_length=100) == pytest.approx(0.5)
    assert cosine_length(right + " " * 200, answer="4", max_length=100, exceed=-10) == -10
    # the paper's values
    paper = dict(correct_short=2, correct_long=1, wrong_short=-10, wrong_long=0, max_length=100)
    assert cosine_length(wrong, answer="4", **paper) == pytest.approx(_cos(20, 100, -10, 0))


def test_cosine_length_keeps_unscorable():
    with pytest.raises(Unscorable, match="does not parse"):
        cosine_length("<answer> 1 </answer>", answer="\\frac{1}{")
    outcome = rewards({"cosine_length": 1.0}).score("<answer> 1 </answer>", {"answer": "\\frac{1}{"})
    assert outcome.total is None


def test_flags_fallback_and_hedging():
    stated = math_accuracy("<answer> 7 </answer>", answer="7")
    assert stated == 1.0 and stated.flags == ()
    guessed = math_accuracy("I think it's 3 + 4 = 7", answer="7")  # found as the last number only
    assert guessed == 1.0 and guessed.flags == ("fallback",)
    hedge = math_accuracy("</think> \\boxed{5}, or \\boxed{6}, or \\boxed{7}", answer="7")
    assert hedge == 0.0 and "hack_pattern" in hedge.flags  # the joined "5, 6, 7" is not 7
    unparsed = math_accuracy("\\boxed{x \\mapsto 2x}", answer="x \\mapsto 2x")  # sympy reads neither side
    assert unparsed == 1.0 and unparsed.flags == ("fallback",)
    again = math_accuracy("\\boxed{7} ... checking: \\boxed{7}, so \\boxed{ 7 }", answer="7")
    assert again == 1.0 and again.flags == ()  # the same answer boxed three times is not hedging


def test_too_long_answer_is_wrong_not_unscorable():
    outcome = rewards({"math_accuracy": 1.0}).score("<answer>" + "1+" * 2000 + "1</answer>", {"answer": "4001"})
    assert outcome.total == 0.0 and outcome.components["math_accuracy"] == 0.0
