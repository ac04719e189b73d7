"""Countdown: reach a target number from given numbers with + - * /, each number used exactly once.

The task of TinyZero and many R1-Zero reproductions: cheap to generate, exact to verify, and hard enough
that a small model's accuracy rises visibly during GRPO.

* :class:`CountdownSource` derives task ``i`` from ``(seed, split, i)`` alone, so any worker can rebuild any
  task without shared state. It builds a random expression tree over the drawn numbers, so every task has
  a solution (kept, see :meth:`CountdownSource.solution`). Train and test are disjoint by construction.
* :func:`countdown_reward` checks the equation in the last ``<answer>`` tag with a small whitelisting
  parser (:func:`parse_equation`): model text is never passed to ``eval``.
* :class:`CountdownRetryEnv` is the multi-turn variant: a wrong equation gets a verdict and another try.
"""

from __future__ import annotations

import ast
import hashlib
import operator
import re
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from r1gym.core.r1_template import extract_answer_tag
from r1gym.envs.base import MultiTurnEnv, Task

SPLITS = {"train": 0, "test": 1}
TEST_MODULUS = 10  # a problem is in the test split iff hash(problem) % TEST_MODULUS == 0 (about 10%)
MAX_EQUATION_CHARS = 200
_MAX_TRIES = 10_000
PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number exactly once. Show your work in <think> </think> tags and give "
    "the final equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)
_ALLOWED_CHARS = re.compile(r"[0-9+\-*/()\s]*")
_INT = re.compile(r"\s*-?\d+\s*")
_SPELLINGS = {"×": "*", "÷": "/", "−": "-", "\\times": "*", "\\div": "/", "\\cdot": "*"}
_BINOPS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


def split_of(numbers: list[int], target: int) -> str:
    """The split a problem belongs to, from a stable hash of its canonical form (sorted numbers, target)."""
    key = f"{sorted(numbers)}|{target}".encode()
    digest = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return "test" if digest % TEST_MODULUS == 0 else "train"


class CountdownSource:
    """Procedural Countdown tasks.

    Difficulty knobs: ``num_numbers`` (an int, or an inclusive ``(low, high)`` range drawn per task; also
    ``meta["difficulty"]``), operands drawn uniformly in ``min_number..max_number``, targets kept in
    ``min_target..max_target``. The generator only uses exact divisions and positive intermediate results
    (puzzles a person would accept), while the reward accepts any exact rational path to the target.
    The same problem may appear at two indices of one split; never in both splits.
    """

    def __init__(
        self,
        size: int = 10_000,
        seed: int = 0,
        split: str = "train",
        num_numbers: int | tuple[int, int] = (3, 4),
        min_number: int = 1,
        max_number: int = 50,
        min_target: int = 10,
        max_target: int = 100,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        low, high = (num_numbers, num_numbers) if isinstance(num_numbers, int) else tuple(num_numbers)
        if not 2 <= low <= high:
            raise ValueError(f"num_numbers must be an int >= 2 or a (low, high) range; got {num_numbers!r}")
        if not 1 <= min_number <= max_number or not 1 <= min_target <= max_target:
            raise ValueError("need 1 <= min_number <= max_number and 1 <= min_target <= max_target")
        if size < 1 or seed < 0:
            raise ValueError(f"size must be >= 1 and seed >= 0, got size={size}, seed={seed}")
        self.size, self.seed, self.split = int(size), int(seed), split
        self.num_numbers = (int(low), int(high))
        self.min_number, self.max_number = int(min_number), int(max_number)
        self.min_target, self.max_target = int(min_target), int(max_target)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Task:
        numbers, target, _ = self._generate(index)
        return Task(
            id=f"countdown-{self.split}-{self.seed}-{index}",
            prompt=PROMPT.format(numbers=numbers, target=target),
            fields={"numbers": numbers, "target": target},
            meta={"difficulty": len(numbers), "split": self.split},
        )

    def solution(self, index: int) -> str:
        """The expression task ``index`` was generated from (for checks and SFT warm starts; not in prompts)."""
        return self._generate(index)[2]

    def _generate(self, index: int) -> tuple[list[int], int, str]:
        if not 0 <= index < self.size:
            raise IndexError(f"task index {index} out of range for a source of {self.size} tasks")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], int(index)])
        for _ in range(_MAX_TRIES):  # deterministic retries: the rng stream is fixed by (seed, split, index)
            n = int(rng.integers(self.num_numbers[0], self.num_numbers[1] + 1))
            numbers = [int(x) for x in rng.integers(self.min_number, self.max_number + 1, size=n)]
            target, expr = _random_expression(rng, numbers)
            if self.min_target <= target <= self.max_target and split_of(numbers, target) == self.split:
                return numbers, target, expr
        raise RuntimeError(f"no Countdown task within the knobs after {_MAX_TRIES} tries; widen the target range")


def _random_expression(rng: np.random.Generator, numbers: list[int]) -> tuple[int, str]:
    """Combine random pairs until one value is left: a random expression tree using every number once."""
    pool = [(n, str(n)) for n in numbers]
    while len(pool) > 1:
        i, j = (int(k) for k in rng.choice(len(pool), size=2, replace=False))
        (a, ea), (b, eb) = sorted([pool[i], pool[j]], key=lambda p: -p[0])  # a >= b
        for op in (str(o) for o in rng.permutation(list("+-*/"))):
            if op == "-" and a == b or op == "/" and a % b:
                continue  # keep intermediate results positive integers
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
            break
        pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [(value, f"({ea} {op} {eb})")]
    value, expr = pool[0]
    return value, expr[1:-1] if expr.startswith("(") else expr


# -- checking ---------------------------------------------------------------------------------------------
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


class CountdownRetryEnv(MultiTurnEnv):
    """Countdown with retries: a wrong equation is answered with what is wrong, up to ``max_turns`` tries.

    Trains the model to use feedback (R1-style "aha" behaviour in the open), and the scored reward is that
    of the last attempt, so a correction after feedback earns as much as a first-time solution.
    """

    def feedback(self, task: Task, completion: str) -> str | None:
        problem = check_countdown(completion, task.fields["numbers"], task.fields["target"])
        if problem is None:
            return None
        return f"{problem} Try again, and give the final equation in <answer> </answer> tags."
