"""Rewards for the DeepSeek-R1 output template ``<think> … </think> <answer> … </answer>`` (parsed by
:mod:`r1gym.core.r1_template`).

These check only the *shape* of a completion, never its correctness, so any task can add them with a small
weight (R1-Zero used a format reward next to the accuracy reward to teach the template). They are pure
functions of the text and never unscorable: a completion that misses the template simply scores low.

A chat model's completion may or may not begin with ``<think>``: some chat templates end the prompt with
``<think>`` so the model only writes the rest. :func:`format_reward` accepts both unless ``strict=True``.
"""

from __future__ import annotations

from r1gym.core.r1_template import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN, template_parts

# re-exported, not used here: plugins written before core/r1_template.py existed import them from this module
from r1gym.core.r1_template import completion_span, extract_answer_tag  # noqa: F401


def format_reward(completion: str, *, strict: bool = False) -> float:
    """1.0 if the completion follows the R1 template, else 0.0.

    Required: ``</think>``, ``<answer>`` and ``</answer>`` exactly once each, in that order, with non-empty
    think and answer bodies and nothing but whitespace after ``</answer>`` (trailing text after the answer is
    what a reward hacker appends). ``<think>`` may be absent (the chat template may have written it), but if
    present it must come first and appear once; ``strict=True`` requires it (leading whitespace is allowed).

    >>> format_reward("<think> 3*7=21, +1 </think> <answer> 3*7+1 </answer>")
    1.0
    >>> no_open = "reasoning </think> <answer> 22 </answer>"  # the chat template wrote <think>
    >>> format_reward(no_open), format_reward(no_open, strict=True)
    (1.0, 0.0)
    >>> format_reward("<answer> 22 </answer> <think> hm </think>")
    0.0
    """
    counts = {tag: completion.count(tag) for tag in TAGS}
    if any(counts[tag] != 1 for tag in (THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)):
        return 0.0
    has_open = completion.lstrip().startswith(THINK_OPEN)
    if counts[THINK_OPEN] > 1 or (counts[THINK_OPEN] == 1 and not has_open) or (strict and not has_open):
        return 0.0
    parts = template_parts(completion)
    if parts is None or not all(part.strip() for part in parts):
        return 0.0
    return 1.0


def tag_count_reward(completion: str) -> float:
    """0.25 for each of the four template tags that appears exactly once (a denser signal than format).

    >>> tag_count_reward("<think> a </think> <answer> b </answer>")
    1.0
    >>> tag_count_reward("<think> a </think> b")
    0.5
    """
    return 0.25 * sum(completion.count(tag) == 1 for tag in TAGS)
