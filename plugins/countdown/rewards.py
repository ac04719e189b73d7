"""The Countdown task's reward: the equation in the last ``<answer>`` tag, checked by a small whitelisting
parser (:func:`parse_equation`): model text is never passed to ``eval``."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from fractions import Fraction

from r1gym.core.r1_template import extract_answer_tag

MAX_EQUATION_CHARS = 200
_ALLOWED_CHARS = re.compile(r"[0-9+\-*/()\s]*")
_INT = re.compile(r"\s*-?\d+\s*")
_SPELLINGS = {"×": "*", "÷": "/", "−": "-", "\\times": "*", "\\div": "/", "\\cdot": "*"}
_BINOPS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}



def parse_equation(text: str) -> tuple[Fraction, list[int], int | None]:
    """Evaluate an equation safely: ``(value, numbers used, stated result or None)``.

    Accepts ``expr``, ``expr = N`` or ``N = expr``. Only digits, ``+ - * /``, parentheses and spaces get
    as far as :func:`ast.parse` (which parses, never runs), and only whole-number constants, the four
    operations and unary minus are evaluated, with exact fractions. Raises ``ValueError`` with the reason.

    >>> parse_equation("(3 + 5) * 2 = 16")
    (Fraction(16, 1), [3, 5, 2], 16)
    """
    if len(text) > MAX_EQUATION_CHARS:
        raise ValueError(f"the equation is longer than {MAX_EQUATION_CHARS} characters")
    for spelling, op in _SPELLINGS.items():
        text = text.replace(spelling, op)
    stated = None
    if "=" in text:
        sides = text.split("=")
        if len(sides) != 2:
            raise ValueError("use at most one '='")
        if _INT.fullmatch(sides[1]):
            text, stated = sides[0], int(sides[1])
        elif _INT.fullmatch(sides[0]):
            text, stated = sides[1], int(sides[0])
        else:
            raise ValueError("one side of '=' must be a single number")
    if not _ALLOWED_CHARS.fullmatch(text):
        raise ValueError("only numbers, + - * /, parentheses and spaces are allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ValueError("it is not a valid arithmetic expression") from None
    used: list[int] = []
    return _evaluate(tree.body, used), used, stated


def evaluate_equation(text: str) -> Fraction:
    """The exact value of an equation's expression side; ``ValueError`` with a reason if it has none."""
    return parse_equation(text)[0]


def _evaluate(node: ast.expr, used: list[int]) -> Fraction:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("it divides by zero")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, used)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    raise ValueError(f"{type(node).__name__} is not allowed; use whole numbers, + - * / and parentheses")


def check_countdown(completion: str, numbers: list[int], target: int) -> str | None:
    """``None`` if the completion's answer solves the task, else what is wrong (shown to the model)."""
    answer = extract_answer_tag(completion)
    if answer is None:
        return "I could not find an equation in <answer> </answer> tags."
    try:
        value, used, stated = parse_equation(answer)
    except ValueError as exc:
        return f"I could not evaluate your equation: {exc}."
    if sorted(used) != sorted(numbers):
        return f"Your equation must use each of the numbers {list(numbers)} exactly once."
    if value != target:
        return f"Your equation evaluates to {value}, not {target}."
    if stated is not None and stated != target:
        return f"Your equation claims to equal {stated}, but the target is {target}."
    return None


def countdown_reward(completion: str, *, numbers: list[int], target: int) -> float:
    """1.0 if the last ``<answer>`` holds an equation that uses each number once and equals ``target``.

    Everything the model can get wrong (no tag, bad syntax, division by zero, wrong numbers) scores 0.0:
    the task itself is always checkable, so this reward is never unscorable.

    >>> countdown_reward("<think>7*3=21</think> <answer> 7 * 3 + 1 = 22 </answer>", numbers=[1, 3, 7], target=22)
    1.0
    >>> countdown_reward("<answer> 7 * 3 </answer>", numbers=[1, 3, 7], target=22)
    0.0
    """
    return 1.0 if check_countdown(completion, numbers, target) is None else 0.0
