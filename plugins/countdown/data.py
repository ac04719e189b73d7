"""The Countdown task source: reach a target from given numbers with + - * /, each number used exactly once.

The task of TinyZero and many R1-Zero reproductions: cheap to generate, exact to verify, and hard enough
that a small model's accuracy rises visibly during GRPO. :class:`CountdownSource` derives task ``i`` from
``(seed, split, i)`` alone, so any worker can rebuild any task without shared state. It builds a random
expression tree over the drawn numbers, so every task has a solution (kept, see
:meth:`CountdownSource.solution`). Train and test are disjoint by construction. The reward is
:mod:`r1gym.plugins.countdown.rewards`; the multi-turn variant :mod:`r1gym.plugins.countdown.envs`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from r1gym.envs.base import Task

SPLITS = {"train": 0, "test": 1}
TEST_MODULUS = 10  # a problem is in the test split iff hash(problem) % TEST_MODULUS == 0 (about 10%)
_MAX_TRIES = 10_000
PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number exactly once. Show your work in <think> </think> tags and give "
    "the final equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)


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
