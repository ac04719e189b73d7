"""The ``language_consistency`` reward (plugins/language): hand-counted cases, what is excluded, the span,
where the target comes from, errors, and the mean error over our labelled set (tests/data).

Counts in the comments are by hand: words for space-separated scripts, characters for CJK.
"""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1gym.core.plugins import default_host
from r1gym.core.rewards import RewardSet, Unscorable, build_reward_set
from r1gym.plugins.language import consistency
from r1gym.plugins.language.consistency import language_consistency, normalize_language, think_text

DATA = Path(__file__).parent / "data" / "language_consistency.jsonl"
RECORDS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(text: str, language: str = "en", **kw) -> float:
    return language_consistency(text, language=language, span="all", **kw)


# -- hand-counted shares ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, language, expected",
    [
        ("hello world 你好", "en", 2 / 4),  # 2 words, 2 characters
        ("hello world 你好", "zh", 2 / 4),
        ("我们先 compute the sum 然后 check it", "en", 5 / 10),  # 5 short-run words, 5 characters
        ("これは問題です。这是问题。", "ja", 7 / 11),  # kana sentence: 7 ja; kana-less sentence: 4 zh
        ("これは問題です。这是问题。", "zh", 4 / 11),
        ("문제를 풀어 봅시다", "ko", 1.0),
        ("Сначала найдём дискриминант уравнения. Then check whether it is positive.", "ru", 4 / 10),
        ("On cherche la dérivée de cette fonction. Then we set it equal to zero.", "fr", 7 / 14),
        ("On cherche la dérivée de cette fonction. Then we set it equal to zero.", "en", 7 / 14),
        ("The derivative is zero, so this is the maximum.", "de", 0.0),
    ],
)
def test_hand_counted(text, language, expected):
    assert score(text, language) == pytest.approx(expected)


# -- exclusions: code, LaTeX, numbers, punctuation count neither way ------------------------------------------
@pytest.mark.parametrize(
    "excluded",
    [
        "\n```python\ndef add_one(value):\n    return value + 1  # add one to the input value\n```\n",
        "\n~~~\nfor item in items: print(item)\n~~~\n",
        " `sorted(nums, reverse=True)` ",
        " ``a `quoted` word`` ",
        " $\\text{area} = \\frac{1}{2} \\cdot \\text{base}$ ",
        " $$\\sum_{k=1}^{n} k \\quad \\text{for every positive integer}$$ ",
        " \\(P(A \\mid B) \\text{ given the evidence}\\) ",
        " \\[ x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a} \\text{ with real roots} \\] ",
        "\n\\begin{align*}\n S &= a + b \\\\ &= \\text{the sum of both terms}\n\\end{align*}\n",
        " 42, 3.14, -7, 1e-3, 3rd, x1 !? %%% ",
    ],
)
def test_excluded_material_does_not_count(excluded):
    prose = "我们先求和。" + excluded + "然后检查答案。"  # 5 + 6 Chinese characters around the excluded part
    assert score(prose, "zh") == 1.0
    assert score(prose, "en") == 0.0


def test_unclosed_code_fence_runs_to_the_end():
    """A completion cut off inside a code block: the code is still code."""
    assert score("我们写一个函数。\n```python\ndef solve(numbers):\n    return sorted(numbers", "zh") == 1.0


def test_dollar_amounts_are_not_math():
    # "$5 and $10" is money, not a formula: "and" still counts (3 characters, 1 word)
    assert score("它花了 $5 and $10", "zh") == pytest.approx(3 / 4)


def test_math_inline_without_spaces_in_chinese():
    assert score("当$x$大于零时，函数递增", "zh") == 1.0  # no space before $: still math


# -- span ----------------------------------------------------------------------------------------------------
THINK_ZH_ANSWER_EN = "<think>我们来算一下。</think><answer>The answer is four.</answer>"


def test_span_think_scores_the_chain_of_thought_only():
    assert language_consistency(THINK_ZH_ANSWER_EN, language="zh") == 1.0  # span="think" is the default
    # all: 6 characters against 4 words; the tags are not words
    assert language_consistency(THINK_ZH_ANSWER_EN, language="zh", span="all") == pytest.approx(6 / 10)


@pytest.mark.parametrize(
    "completion, think",
    [
        ("<think>a b</think> <answer>c</answer>", "a b"),
        ("a b</think><answer>c</answer>", "a b"),  # the chat template wrote <think>
        ("<think>a b", "a b"),  # truncated inside the chain of thought
        ("<think>a</think> x <think>b</think>", "a\nb"),
        ("<answer>c</answer>", None),
    ],
)
def test_think_text(completion, think):
    assert think_text(completion) == think


def test_truncated_think_block_is_scored():
    assert language_consistency("<think>我们来算一下 and then", language="zh") == pytest.approx(6 / 8)


def test_no_think_block_is_unscorable_unless_configured():
    with pytest.raises(Unscorable, match="no <think> block"):
        language_consistency("<answer>4</answer>")
    assert language_consistency("<answer>4</answer>", unmeasured=0.0) == 0.0


@pytest.mark.parametrize("completion", ["<think>$x^2 = 4$, 2.</think>", "<think></think>", "<think>```\nprint(1)\n```</think>"])
def test_nothing_left_to_measure_is_unscorable(completion):
    with pytest.raises(Unscorable, match="no words left"):
        language_consistency(completion)
    assert language_consistency(completion, unmeasured=1.0) == 1.0


# -- where the target comes from -------------------------------------------------------------------------------
def reward_set(spec: dict) -> RewardSet:
    return build_reward_set({"language_consistency": spec}, default_host().rewards.get)


TEXT = "<think>Let me add the two numbers first. 然后检查答案。</think>"  # 7 words, 6 characters


def test_task_field_wins_over_config():
    rs = reward_set({"weight": 1.0, "language": "zh"})
    assert rs.score(TEXT, {}).components["language_consistency"] == pytest.approx(6 / 13)
    assert rs.score(TEXT, {"target_language": "en"}).components["language_consistency"] == pytest.approx(7 / 13)


def test_default_target_is_english():
    assert reward_set({"weight": 1.0}).score(TEXT, {}).components["language_consistency"] == pytest.approx(7 / 13)


def test_code_task_language_field_needs_a_natural_language_in_config():
    """Code tasks carry ``language: python``; without a config value it reaches the reward and is refused."""
    out = reward_set({"weight": 1.0}).score(TEXT, {"language": "python"})
    assert out.total is None and "programming language" in out.unscorable["language_consistency"]
    fixed = reward_set({"weight": 1.0, "language": "en"}).score(TEXT, {"language": "python"})
    assert fixed.components["language_consistency"] == pytest.approx(7 / 13)


# -- errors ----------------------------------------------------------------------------------------------------
def test_bad_span_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"span must be one of \('think', 'all'\), got 'cot'"):
        language_consistency("<think>a</think>", span="cot")


@pytest.mark.parametrize("code", ["xx", "english", "python", "yue", ""])
def test_unknown_language_lists_the_valid_ones(code):
    with pytest.raises(ValueError, match="unknown language") as err:
        language_consistency("<think>a</think>", language=code)
    assert " en, " in str(err.value) and " zh" in str(err.value) and " xx," not in str(err.value)


@pytest.mark.parametrize("code, expected", [("en", "en"), ("EN", "en"), ("en-US", "en"), ("zh_Hans", "zh"), (" ja ", "ja")])
def test_language_codes_are_normalized(code, expected):
    assert normalize_language(code) == expected


# -- the labelled set ------------------------------------------------------------------------------------------
def test_labelled_set_is_large_and_varied():
    kinds = {r["kind"] for r in RECORDS}
    assert len(RECORDS) >= 60
    assert {"en", "zh", "mixed en/zh", "code", "math", "fr", "de", "es", "ru", "ja", "think span"} <= kinds
    assert all(0.0 <= r["expected"] <= 1.0 for r in RECORDS)


def test_mean_absolute_error_over_labelled_set():
    errors = [abs(language_consistency(r["text"], language=r["language"], span=r["span"]) - r["expected"]) for r in RECORDS]
    mae = sum(errors) / len(errors)
    assert mae < 0.05, f"MAE {mae:.4f} over {len(errors)} records"


def test_single_language_records_are_exact():
    """A text in one language scores exactly 1.0 in it and 0.0 in any other: nothing in them is ambiguous."""
    single = [r for r in RECORDS if len(r["units"]) == 1]
    assert len(single) >= 30
    for r in single:
        got = language_consistency(r["text"], language=r["language"], span=r["span"])
        assert got == r["expected"], (r["kind"], r["language"], r["text"][:60])


# -- registration, env, import ----------------------------------------------------------------------------------
def test_registered_as_builtin():
    host = default_host()
    assert host.rewards.get("language_consistency") is language_consistency
    assert host.rewards.entries["language_consistency"].plugin == "language"


def test_in_an_env_reward_set():
    from r1gym.envs import make

    env = make("r1gym/Math-v0", rewards={"math_accuracy": 1.0, "language_consistency": {"weight": 0.1, "language": "en"}})
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("<think>We add both days first. 所以先把两天加起来。</think><answer>0</answer>")
    assert terminated and info["rewards"]["language_consistency"] == pytest.approx(5 / 14)  # 5 words, 9 characters
    assert reward == pytest.approx(0.1 * 5 / 14)  # the answer is wrong: math_accuracy 0


def test_plugin_import_is_light():
    code = "import sys, r1gym.plugins.language; print('py3langid' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docstring_examples():
    result = doctest.testmod(consistency)
    assert result.attempted >= 2 and result.failed == 0  # think_text's moved to tests/test_r1_template.py
