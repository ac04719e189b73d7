"""Hand-made cases for the built-in rewards and the Countdown retry env."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from r1gym.core.plugins import default_host
from r1gym.core.rewards import Unscorable
from r1gym.envs.base import Task
from r1gym.envs.rewards import extract_answer_tag, format_reward, tag_count_reward
from r1gym.plugins.arithmetic.rewards import arithmetic_reward
from r1gym.plugins.countdown.envs import CountdownRetryEnv
from r1gym.plugins.countdown.rewards import countdown_reward, evaluate_equation

NUMS, TARGET = [3, 5, 7], 22  # 3 * 5 + 7 = 22


def cd(answer: str, numbers=NUMS, target=TARGET) -> float:
    return countdown_reward(f"<think> try </think> <answer>{answer}</answer>", numbers=numbers, target=target)


# -- countdown ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", ["3 * 5 + 7", " (5 * 3) + 7 ", "7 + 5 * 3 = 22", "22 = 7 + 3 * 5", "3 × 5 + 7"])
def test_countdown_correct(answer):
    assert cd(answer) == 1.0


@pytest.mark.parametrize(
    "answer, why",
    [
        ("3 * 5 - 7", "wrong value (8)"),
        ("3 * 5 + 7 = 23", "right side contradicts the target"),
        ("3 * 5 + 7 + 0", "uses a number that is not given"),
        ("3 * 7 + 1", "wrong multiset"),
        ("5 * 5 - 3", "uses 5 twice and omits 7"),
        ("3 * 5", "omits a number"),
        ("7 / (5 - 5) + 3", "division by zero"),
        ("3 * 5 + 7.0", "float constant"),
        ("3 ** 5 + 7", "power is not allowed"),
        ("", "empty"),
        ("3 * 5 + 7 = 22 = 22", "two '='"),
    ],
)
def test_countdown_incorrect(answer, why):
    assert cd(answer) == 0.0, why


def test_countdown_fractions_are_exact_and_unary_minus_is_allowed():
    assert cd("8 / (3 - 8 / 3)", numbers=[3, 3, 8, 8], target=24) == 1.0  # needs exact 1/3 intermediate
    assert cd("-3 + 5 * 7 - 10", numbers=[3, 5, 7, 10], target=22) == 1.0
    assert evaluate_equation("1 / 3") == Fraction(1, 3)
    with pytest.raises(ValueError, match="divides by zero"):
        evaluate_equation("1 / (2 - 2)")


def test_countdown_missing_tag_scores_zero_not_unscorable():
    assert countdown_reward("the answer is 3 * 5 + 7", numbers=NUMS, target=TARGET) == 0.0
    assert countdown_reward("<answer>3 * 5 + 7", numbers=NUMS, target=TARGET) == 0.0


@pytest.mark.parametrize(
    "attack",
    [
        "__import__('os').system('touch {marker}')",
        "open('{marker}', 'w')",
        "(lambda: open('{marker}', 'w'))()",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "3 * 5 + 7 if open('{marker}', 'w') else 0",
    ],
)
def test_countdown_injection_is_never_executed(attack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    assert cd(attack.format(marker=marker)) == 0.0
    with pytest.raises(ValueError):
        evaluate_equation(attack.format(marker=marker))
    assert not marker.exists()


def test_countdown_huge_input_scores_zero_quickly():
    assert cd("1 + " * 100_000 + "1") == 0.0
    assert cd("(" * 150 + "3" + ")" * 150) == 0.0  # deep nesting stops at the length cap
    with pytest.raises(ValueError, match="longer than"):
        evaluate_equation("9" * 500)


# -- R1 template -------------------------------------------------------------------------------------------
GOOD = "<think> 3 times 5 is 15, plus 7 </think>\n<answer> 3 * 5 + 7 </answer>"


def test_extract_answer_tag_takes_the_last_one():
    assert extract_answer_tag("<answer>1</answer> wait <answer>\n 2 \n</answer>") == "2"
    assert extract_answer_tag("no tags") is None


def test_format_reward_accepts_the_template():
    assert format_reward(GOOD) == 1.0
    assert format_reward("  " + GOOD + "\n\n") == 1.0
    assert format_reward(GOOD, strict=True) == 1.0
    # the chat template wrote "<think>": the completion starts inside the think block
    no_open = GOOD.replace("<think>", "")
    assert format_reward(no_open) == 1.0 and format_reward(no_open, strict=True) == 0.0


@pytest.mark.parametrize(
    "completion, why",
    [
        ("<answer> 22 </answer>", "missing think"),
        ("<answer> 22 </answer> <think> hm </think>", "answer before think"),
        ("<think> a </think> <answer> 1 </answer> <answer> 2 </answer>", "two answer tags"),
        ("<think> a </think> <answer> 22 </answer> and more", "text after </answer>"),
        ("<think> a </think> <answer>   </answer>", "empty answer"),
        ("<think>  </think> <answer> 22 </answer>", "empty think"),
        ("<think> a </think> hm <answer> 22 </answer>", "text between think and answer"),
        ("x <think> a </think> <answer> 22 </answer>", "text before <think>"),
        ("<think> a <think> b </think> <answer> 22 </answer>", "two <think>"),
    ],
)
def test_format_reward_near_misses(completion, why):
    assert format_reward(completion) == 0.0, why


def test_tag_count_partial_credit():
    assert tag_count_reward(GOOD) == 1.0
    assert tag_count_reward("<think> a </think> 22") == 0.5
    assert tag_count_reward("<think> a </think> <answer> 1 </answer> <answer> 2 </answer>") == 0.5
    assert tag_count_reward("plain text") == 0.0


# -- arithmetic --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given, answer, expected",
    [
        ("1,234", "1234", 1.0),
        (" 42. ", "42", 1.0),
        ("-7", "-7", 1.0),
        ("42.0", 42, 1.0),
        ("1234", "1,234", 1.0),
        ("forty-two", "42", 0.0),
        ("41", "42", 0.0),
        ("12,34", "1234", 0.0),
        ("", "42", 0.0),
    ],
)
def test_arithmetic_reward(given, answer, expected):
    assert arithmetic_reward(f"<think> t </think> <answer>{given}</answer>", answer=answer) == expected


def test_arithmetic_reward_missing_tag_is_zero_and_bad_reference_is_unscorable():
    assert arithmetic_reward("42", answer="42") == 0.0
    with pytest.raises(Unscorable, match="reference answer 'n/a' does not parse"):
        arithmetic_reward("<answer>42</answer>", answer="n/a")


def test_unscorable_reference_reaches_the_env_as_nan():
    from r1gym.envs import make  # loads the plugins first (gymnasium.make alone passed only after another test did)

    env = make("r1gym/Arithmetic-v0").unwrapped
    env.reset(seed=0)
    env.task = Task("t", "What is it?", {"answer": "n/a"})  # a dataset with a broken reference
    _, reward, terminated, _, info = env.step("<think> t </think> <answer> 4 </answer>")
    assert math.isnan(reward) and info["scorable"] is False and "does not parse" in info["unscorable"]["arithmetic"]


def test_builtin_rewards_are_registered():
    assert {"format", "tag_count", "countdown", "arithmetic"} <= set(default_host().rewards)


# -- multi-turn retry env ----------------------------------------------------------------------------------
def retry_env(max_turns: int = 3) -> CountdownRetryEnv:
    env = CountdownRetryEnv({"name": "countdown"}, {"countdown": 1.0}, max_turns=max_turns)
    env.reset(seed=0)
    env.task = Task("t", "Using the numbers [3, 5, 7] ...", {"numbers": NUMS, "target": TARGET})
    return env


def test_retry_env_wrong_then_right():
    env = retry_env()
    obs, reward, terminated, truncated, info = env.step("<think> a </think> <answer> 3 + 5 + 7 </answer>")
    assert (reward, terminated, truncated, info["turn"]) == (0.0, False, False, 1)
    assert obs[-1]["role"] == "user" and "Your equation evaluates to 15, not 22." in obs[-1]["content"]
    obs, reward, terminated, truncated, info = env.step("<think> b </think> <answer> 3 * 5 + 7 </answer>")
    assert (reward, terminated, truncated) == (1.0, True, False) and info["turn"] == 2
    assert info["rewards"] == {"countdown": 1.0}


def test_retry_env_feedback_messages():
    env = retry_env()
    obs = env.step("no tags at all")[0]
    assert "I could not find an equation in <answer> </answer> tags." in obs[-1]["content"]
    obs = env.step("<answer> 3 * 5 + 5 </answer>")[0]
    assert "must use each of the numbers [3, 5, 7] exactly once" in obs[-1]["content"]


def test_retry_env_wrong_three_times_is_truncated():
    env = retry_env(max_turns=3)
    results = [env.step("<answer> 3 + 5 + 7 </answer>") for _ in range(3)]
    assert [r[2:4] for r in results] == [(False, False), (False, False), (False, True)]
    assert results[-1][1] == 0.0 and results[-1][4]["turn"] == 3


def test_one_reward_twice_under_two_names_with_different_parameters():
    from r1gym.core.plugins import default_host
    from r1gym.core.rewards import build_reward_set

    rs = build_reward_set({"strict_format": {"reward": "format", "strict": True, "weight": 1.0},
                           "loose_format": {"reward": "format", "strict": False, "weight": 0.5}},
                          default_host().rewards.get)
    outcome = rs.score("2 + 2 = 4 </think> <answer> 4 </answer>", {})  # no <think>: only the loose one accepts
    assert outcome.components == {"strict_format": 0.0, "loose_format": 1.0} and outcome.total == 0.5
    with pytest.raises(KeyError, match="Known rewards"):
        build_reward_set({"x": {"reward": "no_such_reward"}}, default_host().rewards.get)


def test_the_host_reaches_rewards_that_declare_it_and_is_no_config_parameter():
    from r1gym.core.rewards import build_reward_set

    seen = []

    def needs_host(completion: str, *, host=None) -> float:
        seen.append(host)
        return 1.0

    host = object()  # any object: the reward set hands it over untouched
    rs = build_reward_set({"needs_host": 1.0, "format": 0.0},
                          {"needs_host": needs_host, "format": default_host().rewards.get("format")}.__getitem__, host=host)
    assert rs.score("x", {"host": "from a task field"}).components["needs_host"] == 1.0 and seen == [host]
    without = build_reward_set({"needs_host": 1.0}, {"needs_host": needs_host}.__getitem__)
    without.score("x", {"host": "from a task field"})
    assert seen[-1] is None  # no host given: the reward's own default (the process-wide host)
    with pytest.raises(TypeError, match="'host' is not a config parameter"):
        build_reward_set({"needs_host": {"weight": 1.0, "host": "x"}}, {"needs_host": needs_host}.__getitem__)
