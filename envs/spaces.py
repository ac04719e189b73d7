"""Gymnasium spaces for LLM episodes: free text actions and chat-message observations.

``gymnasium.spaces.Text`` checks every character against a fixed charset, which model output (any Unicode)
does not respect, so r1gym has its own two small spaces. ``sample()`` draws from the space's own seeded
RNG, as gymnasium's checker expects, so sampled "policies" are reproducible.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Space

ROLES = ("system", "user", "assistant", "tool")
Message = dict[str, str]
_SAMPLE_WORDS = ("<think>", "</think>", "<answer>", "</answer>", "1", "2", "+", "-", "*", "/", "=", "(", ")", "the")


class Utterance(Space[str]):
    """Any string of at most ``max_length`` characters (a completion, the action of an LLM episode)."""

    def __init__(self, max_length: int = 100_000, seed: int | np.random.Generator | None = None):
        self.max_length = max_length
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, 24))
        pool = list(_SAMPLE_WORDS) + list(string.ascii_letters + string.digits)
        return " ".join(str(pool[int(i)]) for i in self.np_random.integers(0, len(pool), size=n))[: self.max_length]

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"Utterance(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Utterance) and other.max_length == self.max_length


class Conversation(Space[list]):
    """A list of chat messages ``{"role": ..., "content": ...}`` (the observation of an LLM episode)."""

    def __init__(self, roles: Sequence[str] = ROLES, seed: int | np.random.Generator | None = None):
        self.roles = tuple(roles)
        self._text = Utterance(max_length=2_000)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> list[int]:
        seeds = super().seed(seed)
        self._text.seed(int(self.np_random.integers(2**31)))
        return seeds

    def sample(self, mask: Any = None, probability: Any = None) -> list[Message]:
        n = int(self.np_random.integers(1, 4))
        roles = [self.roles[int(i)] for i in self.np_random.integers(0, len(self.roles), size=n)]
        return [{"role": r, "content": self._text.sample()} for r in roles]

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, list)
            and len(x) > 0
            and all(
                isinstance(m, dict)
                and set(m) == {"role", "content"}
                and m["role"] in self.roles
                and isinstance(m["content"], str)
                for m in x
            )
        )

    def __repr__(self) -> str:
        return f"Conversation(roles={self.roles})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conversation) and other.roles == self.roles
