"""The arithmetic task's reward: the number in the last ``<answer>`` tag against the reference."""

from __future__ import annotations

import re
from fractions import Fraction

from r1gym.core.r1_template import extract_answer_tag
from r1gym.core.rewards import Graded, Unscorable

# a whole or decimal number, optionally with thousands commas; sign may be followed by spaces
_NUMBER = re.compile(r"([+-]?)\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")



def parse_number(text: str) -> Fraction | None:
    """A number as people write it: ``" 42. "``, ``"1,234"``, ``"-7"``, ``"2.50"``; ``None`` otherwise."""
    match = _NUMBER.fullmatch(text.strip().rstrip(".").strip())
    if match is None:
        return None
    sign, whole, decimals = match.groups()
    value = Fraction(whole.replace(",", "") + (decimals or ""))
    return -value if sign == "-" else value


def arithmetic_reward(completion: str, *, answer: str | int) -> float:
    """1.0 if the number in the last ``<answer>`` tag equals the reference ``answer``, else 0.0.

    A missing tag or a non-number is the model's failure (0.0); a reference that is not a number is the
    dataset's, so it raises :class:`Unscorable` instead of punishing the model.

    >>> arithmetic_reward("<think>7+12</think> <answer> 19. </answer>", answer="19")
    1.0
    >>> arithmetic_reward("<answer> nineteen </answer>", answer="19")
    0.0
    """
    reference = parse_number(str(answer))
    if reference is None:
        raise Unscorable(f"reference answer {answer!r} does not parse as a number")
    given = extract_answer_tag(completion)
    value = parse_number(given) if given is not None else None
    if value is None:
        return Graded(0.0, answer=None)
    return Graded(1.0 if value == reference else 0.0, answer=str(value))
