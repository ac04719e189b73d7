"""Rewards for the DeepSeek-R1 output template ``<think> … </think> <answer> … </answer>``.

These check only the *shape* of a completion, never its correctness, so any task can add them with a small
weight (R1-Zero used a format reward next to the accuracy reward to teach the template). They are pure
functions of the text and never unscorable: a completion that misses the template simply scores low.

A chat model's completion may or may not begin with ``<think>``: some chat templates end the prompt with
``<think>`` so the model only writes the rest. :func:`format_reward` accepts both unless ``strict=True``.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# think body, answer body; the optional leading <think> is checked separately (strict / non-strict)
_TEMPLATE_RE = re.compile(r"\s*(?:<think>)?(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL)


def extract_answer_tag(text: str) -> str | None:
    """The stripped content of the LAST ``<answer>…</answer>`` pair, or ``None`` if there is none.

    The last one, because models often restate a draft answer before the final one.

    >>> extract_answer_tag("<think>2+2</think> <answer> 4 </answer>")
    '4'
    >>> extract_answer_tag("<answer>3</answer> no, <answer>4</answer>")
    '4'
    >>> extract_answer_tag("<answer>4") is None
    True
    """
    found = _ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


SPANS = ("think", "answer", "summary", "all")


def completion_span(completion: str, span: str) -> str:
    """The part of a completion a reward looks at (R1 scores each kind of reward on its own part):

    * ``think``: the reasoning, between ``<think>`` (or the start: the chat template may have written it)
      and ``</think>``; the whole completion if there is no ``</think>``;
    * ``summary``: what follows ``</think>``, the final summary the user reads (helpfulness);
    * ``answer``: the last ``<answer>…</answer>``, else the summary (answer equivalence);
    * ``all``: everything, reasoning included (harmlessness).

    >>> completion_span("<think>a</think> b <answer>c</answer>", "summary")
    'b <answer>c</answer>'
    """
    if span not in SPANS:
        raise ValueError(f"span must be one of {', '.join(SPANS)}, got {span!r}")
    if span == "all":
        return completion
    head, sep, tail = completion.rpartition(THINK_CLOSE)
    if span == "think":
        return (head.split(THINK_OPEN, 1)[-1] if sep else completion).strip()
    summary = (tail if sep else completion).strip()
    if span == "answer":
        answer = extract_answer_tag(completion)
        return answer if answer is not None else summary
    return summary


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
    if counts[THINK_CLOSE] != 1 or counts[ANSWER_OPEN] != 1 or counts[ANSWER_CLOSE] != 1:
        return 0.0
    has_open = completion.lstrip().startswith(THINK_OPEN)
    if counts[THINK_OPEN] > 1 or (counts[THINK_OPEN] == 1 and not has_open) or (strict and not has_open):
        return 0.0
    match = _TEMPLATE_RE.fullmatch(completion)
    if match is None or not match["think"].strip() or not match["answer"].strip():
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
