"""core/r1_template.py: the one reading of the R1 template, on well-formed and malformed completions.

Expected values are written out by hand from the rules in the module docstring (not computed with the
module), and the consumers (rewards, data generation, language reward, judge spans) are checked to read a
malformed completion the same way.
"""

from __future__ import annotations

import doctest

import pytest

from r1gym.core import r1_template
from r1gym.core.r1_template import (
    after_think,
    completion_span,
    extract_answer_tag,
    render,
    split_reasoning,
    template_parts,
    think_text,
)


def test_docstring_examples():
    result = doctest.testmod(r1_template)
    assert result.attempted >= 7 and result.failed == 0


@pytest.mark.parametrize("text, answer", [
    ("<think> a </think> <answer> 4 </answer>", "4"),
    ("<answer>\n  4\n</answer>", "4"),                         # whitespace around the answer
    ("<answer>3</answer> wait <answer>4</answer>", "4"),       # the last one: a restated draft loses
    ("<answer>3 <answer>4</answer>", "4"),                     # a stray opening tag does not swallow the answer
    ("<answer>4</answer> <answer>5", "4"),                     # an unclosed last one is no answer
    ("<answer>4", None),                                       # unclosed: none
    ("4</answer>", None),                                      # closed but never opened: none
    ("<Answer>4</ANSWER>", "4"),                               # case does not matter for the answer
    ("<answer></answer>", ""),                                 # empty, but there: the caller decides
    ("no tags", None),
])
def test_extract_answer_tag_on_malformed_input(text, answer):
    assert extract_answer_tag(text) == answer


@pytest.mark.parametrize("text, parts", [
    ("<think> 2+2 </think> It is 4.", ("2+2", "It is 4.")),
    ("2+2 </think> 4", ("2+2", "4")),                                 # <think> written by the chat template
    ("<think> a </think> b </think> c", ("a </think> b", "c")),       # the last </think> ends the reasoning
    ("<think> a <think> b </think> c", ("a <think> b", "c")),         # a nested <think> is text of the reasoning
    ("<think> ran out of tokens", (None, "<think> ran out of tokens")),  # unclosed: no split
    ("  \n just an answer \n", (None, "just an answer")),
    ("<think>\n\n</think>\n\n", ("", "")),                            # whitespace only: both empty
])
def test_split_reasoning_on_malformed_input(text, parts):
    assert split_reasoning(text) == parts


@pytest.mark.parametrize("text, think", [
    ("<think>a</think> x <think>b</think>", "a\nb"),   # every block once
    ("<think>a</think> x <think>b", "a\nb"),           # an unclosed last block runs to the end
    ("<think>a <think>b</think>", "a <think>b"),       # nested: the outer block, as text
    ("a</think> b </think>", "a"),                     # no <think>: up to the first </think>
    ("<think></think>", ""),
    ("plain text", None),
])
def test_think_text_on_malformed_input(text, think):
    assert think_text(text) == think


def test_after_think_keeps_positions_and_tells_none_from_empty():
    assert after_think("a </think> b ") == " b " and after_think("a </think>") == "" and after_think("a") is None


@pytest.mark.parametrize("text, think, answer", [
    ("<think> r </think> <answer> 4 </answer>", " r ", " 4 "),
    ("r </think><answer>4</answer>\n", "r ", "4"),
    ("<think> r </think> <answer> 4 </answer> and more", None, None),  # text after the answer: not the shape
    ("<answer> 4 </answer> <think> r </think>", None, None),           # wrong order
])
def test_template_parts(text, think, answer):
    assert template_parts(text) == (None if think is None else (think, answer))


def test_consumers_read_a_malformed_completion_alike():
    """The judge's spans, data generation's split and the language reward's reasoning agree on one completion."""
    from r1gym.core.datagen import rewrite
    from r1gym.envs.rewards import format_reward

    text = "First 2 + 2.\n\n\nThen 4. </think> So <answer>3 <answer>4</answer>"
    assert completion_span(text, "think") == "First 2 + 2.\n\n\nThen 4." == split_reasoning(text)[0]
    assert think_text(text) == "First 2 + 2.\n\n\nThen 4. "
    assert completion_span(text, "summary") == "So <answer>3 <answer>4</answer>"
    assert completion_span(text, "answer") == "4"
    assert rewrite(text) == render("First 2 + 2.\n\nThen 4.", "So <answer>3 <answer>4</answer>")
    assert rewrite(text).startswith("<think>\nFirst 2 + 2.\n\nThen 4.\n</think>\n\nSo ")
    assert format_reward(text) == 0.0  # two <answer> tags: the format reward wants the exact shape


def test_math_reads_the_same_answer_tag():
    from r1gym.plugins.math.extract import extract_answer

    found = extract_answer("<think> 6*7 </think> <answer>41 <answer> $42$ </answer>")
    assert (found.text, found.method) == ("$42$", "answer_tag")
