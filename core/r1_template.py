"""The DeepSeek-R1 output template, ``<think> reasoning </think> summary`` with ``<answer> … </answer>`` in it,
parsed in one place.

Rewards (format, accuracy of arithmetic, Countdown and math), data generation (splitting a trace into
reasoning and summary, rewriting it readably), the language-consistency reward (the reasoning it measures)
and the judges and reward models (the span they score) all read completions through these functions, so a
completion means the same to all of them. The rules, for text a policy wrote and may have malformed:

* ``<think>`` may be missing before ``</think>``: chat templates often end the prompt with ``<think>`` so the
  model writes only the rest. The reasoning then runs from the start to ``</think>``.
* The **last** ``</think>`` ends the reasoning (:func:`split_reasoning`, :func:`completion_span`): what follows
  it is the summary the user reads; a ``</think>`` inside the reasoning is just text.
* The answer is the **last closed** ``<answer>…</answer>``, opened by the nearest ``<answer>`` before its
  ``</answer>`` (:func:`extract_answer_tag`): models restate a draft answer before the final one, and a stray
  ``<answer>`` earlier (``<answer> 3 <answer> 4 </answer>``) does not swallow the final one. Tags are matched
  without regard to case for answers (``<Answer>``), never for the format reward, which checks the exact shape.
* An unclosed ``<answer>`` is no answer; an unclosed ``<think>`` (the model ran out of tokens while
  thinking) is all reasoning, no summary.

Nothing here scores: :mod:`r1gym.envs.rewards` turns the shape into rewards.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
#: the parts of a completion a reward may look at (:func:`completion_span`)
SPANS = ("think", "answer", "summary", "all")

_ANSWER_TAG = re.compile(r"<(/?)answer>", re.IGNORECASE)
_THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
# the whole template: think body, answer body; a leading <think> is optional (the format reward decides)
_TEMPLATE = re.compile(r"\s*(?:<think>)?(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL)


def extract_answer_tag(text: str) -> str | None:
    """The stripped content of the last closed ``<answer>…</answer>``, or ``None`` if there is none.

    >>> extract_answer_tag("<think>2+2</think> <answer> 4 </answer>")
    '4'
    >>> extract_answer_tag("<answer>3</answer> no, <answer>4</answer>"), extract_answer_tag("<answer>3 <answer>4</answer>")
    ('4', '4')
    >>> extract_answer_tag("<answer>4") is None
    True
    """
    found, start = None, None
    for m in _ANSWER_TAG.finditer(text):
        if not m.group(1):
            start = m.end()
        elif start is not None:
            found, start = text[start : m.start()], None
    return found.strip() if found is not None else None


def split_reasoning(text: str) -> tuple[str | None, str]:
    """``(reasoning, summary)``: the stripped reasoning before the last ``</think>`` (after the first ``<think>``,
    if any) and the stripped text after it; ``(None, text)`` without a ``</think>``.

    >>> split_reasoning("<think> 2 + 2 </think> It is 4."), split_reasoning("2 + 2 </think> 4"), split_reasoning("4")
    (('2 + 2', 'It is 4.'), ('2 + 2', '4'), (None, '4'))
    """
    head, sep, tail = text.rpartition(THINK_CLOSE)
    if not sep:
        return None, text.strip()
    return head.split(THINK_OPEN, 1)[-1].strip(), tail.strip()


def after_think(text: str) -> str | None:
    """What follows the last ``</think>`` (unstripped: positions matter to the caller), ``None`` without one."""
    close = text.rfind(THINK_CLOSE)
    return text[close + len(THINK_CLOSE) :] if close >= 0 else None


def think_text(completion: str) -> str | None:
    """All of the reasoning, for measuring it: every ``<think>`` block joined by newlines (an unclosed last one
    runs to the end), or, with no ``<think>`` at all, the text before the first ``</think>``; ``None`` when
    there is no reasoning. Unlike :func:`split_reasoning`, several think blocks are each counted once.

    >>> think_text("<think>a</think><answer>b</answer>"), think_text("a</think>b"), think_text("ab")
    ('a', 'a', None)
    >>> think_text("<think>a</think> x <think>b"), think_text("<think>a <think>b</think>")
    ('a\\nb', 'a <think>b')
    """
    if THINK_OPEN not in completion:
        head, sep, _ = completion.partition(THINK_CLOSE)
        return head if sep else None
    return "\n".join(_THINK_BLOCK.findall(completion))


def completion_span(completion: str, span: str) -> str:
    """The part of a completion a reward looks at (R1 scores each kind of reward on its own part):

    * ``think``: the reasoning of :func:`split_reasoning`; the whole completion if there is no ``</think>``;
    * ``summary``: what follows the last ``</think>``, the final summary the user reads (helpfulness);
    * ``answer``: :func:`extract_answer_tag`, else the summary (answer equivalence);
    * ``all``: everything, reasoning included (harmlessness).

    >>> completion_span("<think>a</think> b <answer>c</answer>", "summary")
    'b <answer>c</answer>'
    """
    if span not in SPANS:
        raise ValueError(f"span must be one of {', '.join(SPANS)}, got {span!r}")
    if span == "all":
        return completion
    reasoning, summary = split_reasoning(completion)
    if span == "think":
        return completion.strip() if reasoning is None else reasoning
    if span == "answer":
        answer = extract_answer_tag(completion)
        return answer if answer is not None else summary
    return summary


def template_parts(completion: str) -> tuple[str, str] | None:
    """``(think body, answer body)`` when the whole completion has the template's shape (a leading ``<think>``
    optional, nothing but whitespace after ``</answer>``), else ``None``. Counting tags is the caller's part
    (:func:`r1gym.envs.rewards.format_reward`)."""
    match = _TEMPLATE.fullmatch(completion)
    return None if match is None else (match["think"], match["answer"])


def render(reasoning: str, summary: str) -> str:
    """A trace in the readable format R1's cold-start data uses: ``<think>\\n{reasoning}\\n</think>\\n\\n{summary}``."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{summary}"
