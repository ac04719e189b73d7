"""Math rewards: ``math_accuracy`` and two composable length shapings, ``overlong`` and ``cosine_length``.

Length: r1gym's rewards receive the completion's text, not its tokens, so both shapings measure it with the
``unit`` parameter: ``"chars"`` (default: tokenizer-free and deterministic; English-with-LaTeX runs at about
3-4 characters per token, so ``max_length`` in characters is ~3.5x a token budget), ``"words"`` (whitespace
tokens) or ``"tokens"``. A task or record field ``num_tokens`` (an int) is the exact token count and always
wins when present; ``unit="tokens"`` without it cannot be scored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from r1gym.core.r1_template import after_think
from r1gym.core.rewards import Graded, Unscorable
from r1gym.plugins.math.extract import FALLBACK_METHODS, MAX_ANSWER_CHARS, MAX_SCAN_CHARS, extract_answer, find_boxed
from r1gym.plugins.math.normalize import DEFAULT_APPROX_DIGITS, answer_key
from r1gym.plugins.math.pool import (
    ALL_BOXES_REASON,
    DEFAULT_TIMEOUT,
    SECOND_OPINION_KINDS,
    SECOND_OPINION_REASON,
    default_checker,
)

UNITS = ("chars", "words", "tokens")
#: verdicts reached without the main check: "identical" = the reference does not parse, the strings agree;
#: plain math-verify's "equal" overruling this checker's "no" (:meth:`~r1gym.plugins.math.pool.MathChecker.second_opinion`);
#: every box of an answer given in parts read together
FALLBACK_REASONS = ("identical", SECOND_OPINION_REASON, ALL_BOXES_REASON)
#: this many different boxed answers at the end of a completion raise the ``hack_pattern`` flag
HEDGE_BOXES = 3


def math_accuracy(
    completion: str,
    *,
    answer: object,
    timeout: float = DEFAULT_TIMEOUT,
    methods: Sequence[str] | None = None,
    approx_digits: int = DEFAULT_APPROX_DIGITS,
    second_opinion: Sequence[str] | None = None,
) -> float:
    """1.0 if the completion's final answer equals the reference ``answer``, else 0.0.

    ``second_opinion``: the kinds of pair on which plain math-verify may overrule this checker's "no"
    (:data:`~r1gym.plugins.math.pool.SECOND_OPINION_KINDS`; default
    :data:`~r1gym.plugins.math.pool.DEFAULT_SECOND_OPINION`, ``[]`` turns it off; see docs/math.md).

    The answer is found by :func:`r1gym.plugins.math.extract.extract_answer` (``methods`` restricts how:
    e.g. ``["answer_tag"]`` for the R1 template only) and compared by the math checker. A reference that does
    not parse, a check that overran ``timeout`` seconds, or a crashed checker raise
    :class:`~r1gym.core.rewards.Unscorable`: never 0.0, never 1.0. The value is a
    :class:`~r1gym.core.rewards.Graded` carrying the extracted answer's
    :func:`~r1gym.plugins.math.normalize.answer_key`, which evaluation votes over for cons@k, and its flags:
    ``fallback`` when the answer was found by a low-trust method (:data:`~r1gym.plugins.math.extract.FALLBACK_METHODS`:
    no tag, box, ``####`` or "answer is" phrase stated it) or the verdict by a fallback path
    (:data:`FALLBACK_REASONS`), ``hack_pattern`` when the completion hedges
    (:func:`hedged`). An answer longer than :data:`~r1gym.plugins.math.extract.MAX_ANSWER_CHARS` is wrong.

    >>> math_accuracy(r"<think> 1/4 + 1/4 </think> <answer> \\frac{1}{2} </answer>", answer="0.5")
    1.0
    >>> math_accuracy("<answer> 3 </answer>", answer="4").answer
    '3'
    """
    if second_opinion is not None and set(second_opinion) - set(SECOND_OPINION_KINDS):
        raise ValueError(f"second_opinion kinds must be among {', '.join(SECOND_OPINION_KINDS)}; "
                         f"got {sorted(set(second_opinion) - set(SECOND_OPINION_KINDS))}")
    checker = default_checker()
    found = extract_answer(completion, methods)
    verdict = checker.grade_found(completion, answer, found, timeout=timeout, approx_digits=approx_digits,
                                  second_opinion=second_opinion)
    if verdict.correct is None:
        raise Unscorable(verdict.reason)
    flags = []
    if (found is not None and found.method in FALLBACK_METHODS) or verdict.reason in FALLBACK_REASONS:
        flags.append("fallback")
    if hedged(completion):
        flags.append("hack_pattern")
    key = answer_key(found.text) if found and len(found.text) <= MAX_ANSWER_CHARS else None
    return Graded(1.0 if verdict.correct else 0.0, answer=key, flags=flags)


def hedged(completion: str) -> bool:
    """Whether the end of ``completion`` boxes :data:`HEDGE_BOXES` or more different answers: the policy
    hedging, hoping one of them is what the grader reads. Only the final answer counts either way, so
    hedging earns nothing; the ``hack_pattern`` flag makes it visible (the search is over the part after
    ``</think>``, or the last :data:`~r1gym.plugins.math.extract.MAX_SCAN_CHARS` characters: one linear scan).

    >>> hedged(r"\\boxed{2}, or maybe \\boxed{3}, or \\boxed{4}"), hedged(r"\\boxed{2} ... so \\boxed{2}")
    (True, False)
    """
    tail = completion[-MAX_SCAN_CHARS:]
    summary = after_think(tail)
    region = summary if summary is not None else tail
    if region.count("boxed") + region.count("fbox") < HEDGE_BOXES:
        return False
    return len({re.sub(r"\s+", "", c) for _, _, c in find_boxed(region)}) >= HEDGE_BOXES


def completion_length(completion: str, unit: str = "chars", num_tokens: int | None = None) -> int:
    """The completion's length: ``num_tokens`` when given, else measured in ``unit`` (see module docstring)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if num_tokens is not None:
        return int(num_tokens)
    if unit == "tokens":
        raise Unscorable("unit='tokens' needs a num_tokens field with the completion's token count")
    return len(completion) if unit == "chars" else len(completion.split())


def overlong(
    completion: str,
    *,
    max_length: int = 4096,
    cache: int = 1024,
    unit: str = "chars",
    num_tokens: int | None = None,
) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to ``max_length - cache``, then
    linearly down to -1 at ``max_length``, and -1 beyond. Add it next to the accuracy reward with weight 1.

    >>> overlong("x" * 3000), overlong("x" * 3584), overlong("x" * 5000)
    (0.0, -0.5, -1.0)
    """
    if not 0 < cache <= max_length:
        raise ValueError(f"need 0 < cache <= max_length, got cache={cache}, max_length={max_length}")
    length = completion_length(completion, unit, num_tokens)
    free = max_length - cache
    if length <= free:
        return 0.0
    if length <= max_length:
        return (free - length) / cache
    return -1.0


def cosine_length(
    completion: str,
    *,
    answer: object,
    max_length: int = 4096,
    unit: str = "chars",
    num_tokens: int | None = None,
    correct_short: float = 1.0,
    correct_long: float = 0.5,
    wrong_short: float = -1.0,
    wrong_long: float = -0.5,
    exceed: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    methods: Sequence[str] | None = None,
    approx_digits: int = DEFAULT_APPROX_DIGITS,
) -> float:
    """Cosine-scaled length reward (Yeo et al. 2025, "Demystifying Long Chain-of-Thought Reasoning in LLMs").

    ``r(t) = r_T + (r_0 - r_T) * (1 + cos(pi * t / max_length)) / 2`` for a completion of length ``t``, where
    ``(r_0, r_T)`` is ``(correct_short, correct_long)`` for a correct answer (shorter earns more) and
    ``(wrong_short, wrong_long)`` for a wrong one (longer is punished less: keep thinking rather than guess).
    Correctness comes from :func:`math_accuracy` (unscorable stays unscorable). Past ``max_length`` the
    value is that at ``max_length``, or ``exceed`` when set. The defaults are Open-R1's scale, which sits
    next to a 0/1 accuracy; the paper's own values replace accuracy altogether: ``correct_short=2,
    correct_long=1, wrong_short=-10, wrong_long=0, exceed=-10``.

    >>> round(cosine_length("<answer> 4 </answer>", answer="4", max_length=100), 3)  # 20 of 100 chars
    0.952
    """
    correct = math_accuracy(completion, answer=answer, timeout=timeout, methods=methods, approx_digits=approx_digits)
    length = completion_length(completion, unit, num_tokens)
    if max_length <= 0:
        raise ValueError(f"max_length must be > 0, got {max_length}")
    if length >= max_length and exceed is not None:
        return float(exceed)
    r0, r_end = (correct_short, correct_long) if correct else (wrong_short, wrong_long)
    progress = min(length, max_length) / max_length
    return r_end + 0.5 * (r0 - r_end) * (1.0 + math.cos(math.pi * progress))
