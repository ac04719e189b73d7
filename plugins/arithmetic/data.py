"""The arithmetic task source: evaluate a short integer expression such as ``7 + 3 * 4``.

The smallest useful reasoning task: a tiny model can learn it on a CPU in minutes, which makes it the
smoke test of the whole GRPO loop. Task ``i`` is derived from ``(seed, split, i)`` alone; the test split
holds the expressions whose stable hash is 0 mod 10, the train split the rest, so they never overlap.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

from r1gym.envs.base import Task

SPLITS = {"train": 0, "test": 1}
TEST_MODULUS = 10
OPS = "+-*/"
_MAX_TRIES = 10_000
#: prompt styles: "instructed" spells out the R1 answer format; "plain" is the bare question, for envs whose
#: system prompt or few-shot examples already show the format (shorter prompts = cheaper steps)
PROMPTS = {
    "instructed": (
        "What is {expression}? Work it out step by step inside <think> </think> tags, then give only the final "
    "number inside <answer> </answer> tags, for example <answer> 7 </answer>."
    ),
    "plain": "What is {expression}?",
}

def split_of(expression: str) -> str:
    """The split an expression belongs to, from a stable hash of its text."""
    digest = int.from_bytes(hashlib.blake2b(expression.encode(), digest_size=8).digest(), "big")
    return "test" if digest % TEST_MODULUS == 0 else "train"


class ArithmeticSource:
    """Procedural integer arithmetic with usual precedence (``*`` and ``/`` before ``+`` and ``-``).

    Difficulty knobs: ``num_operands`` (an int, or an inclusive ``(low, high)`` range drawn per task; also
    ``meta["difficulty"]``), operands drawn in ``min_value..max_value``, operators from ``ops`` (a subset of
    ``"+-*/"``; divisions are always exact), and ``allow_negative`` answers.
    """

    def __init__(
        self,
        size: int = 10_000,
        seed: int = 0,
        split: str = "train",
        num_operands: int | tuple[int, int] = 2,
        min_value: int = 0,
        max_value: int = 20,
        ops: str = "+-*",
        allow_negative: bool = True,
        prompt_style: str = "instructed",
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        low, high = (num_operands, num_operands) if isinstance(num_operands, int) else tuple(num_operands)
        if not 2 <= low <= high:
            raise ValueError(f"num_operands must be an int >= 2 or a (low, high) range; got {num_operands!r}")
        if not ops or set(ops) - set(OPS):
            raise ValueError(f"ops must be a non-empty string of characters from {OPS!r}, got {ops!r}")
        if prompt_style not in PROMPTS:
            raise ValueError(f"prompt_style must be one of {sorted(PROMPTS)}, got {prompt_style!r}")
        self.prompt = PROMPTS[prompt_style]
        if not 0 <= min_value <= max_value:
            raise ValueError(f"need 0 <= min_value <= max_value, got {min_value}..{max_value}")
        if size < 1 or seed < 0:
            raise ValueError(f"size must be >= 1 and seed >= 0, got size={size}, seed={seed}")
        self.size, self.seed, self.split = int(size), int(seed), split
        self.num_operands = (int(low), int(high))
        self.min_value, self.max_value = int(min_value), int(max_value)
        self.ops, self.allow_negative = "".join(sorted(set(ops), key=OPS.index)), bool(allow_negative)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Task:
        expression, answer, n = self._generate(index)
        return Task(
            id=f"arithmetic-{self.split}-{self.seed}-{index}",
            prompt=self.prompt.format(expression=expression),
            fields={"answer": str(answer)},
            meta={"difficulty": n, "split": self.split},
        )

    def _generate(self, index: int) -> tuple[str, int, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"task index {index} out of range for a source of {self.size} tasks")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], int(index)])
        for _ in range(_MAX_TRIES):  # deterministic retries: the rng stream is fixed by (seed, split, index)
            n = int(rng.integers(self.num_operands[0], self.num_operands[1] + 1))
            values = [int(v) for v in rng.integers(self.min_value, self.max_value + 1, size=n)]
            ops = [self.ops[int(k)] for k in rng.integers(len(self.ops), size=n - 1)]
            answer = _evaluate(values, ops)
            expression = " ".join([str(values[0])] + [f"{op} {v}" for op, v in zip(ops, values[1:])])
            if answer is not None and (self.allow_negative or answer >= 0) and split_of(expression) == self.split:
                return expression, answer, n
        raise RuntimeError(f"no arithmetic task within the knobs after {_MAX_TRIES} tries")


def _evaluate(values: list[int], ops: list[str]) -> int | None:
    """Value with usual precedence, or ``None`` if a division is not exact (or by zero)."""
    terms, signs, current = [], ["+"], Fraction(values[0])
    for op, v in zip(ops, values[1:]):
        if op == "*":
            current *= v
        elif op == "/":
            if v == 0 or current % v:
                return None
            current /= v
        else:
            terms.append(current)
            signs.append(op)
            current = Fraction(v)
    terms.append(current)
    return int(sum(t if s == "+" else -t for s, t in zip(signs, terms)))
