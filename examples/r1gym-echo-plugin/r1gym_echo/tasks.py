"""The task: write a short word backwards, with its answer in ``<answer> </answer>`` tags.

:class:`ReverseWordSource` is a procedural task source: task ``i`` is derived from ``(seed, split, i)``
alone, so it needs no data file, any index can be asked for in any order, and all G samples of a GRPO group
see the same word. Train and test never share a word: a word belongs to the test split when a stable hash of
it is 0 mod 10. The words are pronounceable nonsense (consonant-vowel syllables), so the model cannot have
memorised their reversal.
"""

from __future__ import annotations

import hashlib
import random

from r1gym.core.r1_template import extract_answer_tag
from r1gym.core.rewards import Unscorable
from r1gym.envs.base import Task

SPLITS = ("train", "test")
TEST_MODULUS = 10
CONSONANTS = "bcdfghjklmnprstvz"
VOWELS = "aeiou"
PROMPT = (
    "Write the word '{word}' backwards, letter by letter. Think inside <think> </think> tags, then give only "
    "the reversed word inside <answer> </answer> tags, for example <answer> tac </answer> for 'cat'."
)
_MAX_TRIES = 1_000


def split_of(word: str) -> str:
    """The split a word belongs to, from a stable hash of its letters (not Python's salted ``hash``)."""
    digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
    return "test" if digest % TEST_MODULUS == 0 else "train"


class ReverseWordSource:
    """``size`` words of ``min_len`` to ``max_len`` letters; ``fields["answer"]`` is the reversed word.

    >>> src = ReverseWordSource(size=5, seed=1)
    >>> task = src[3]
    >>> task.fields["answer"] == task.fields["word"][::-1] and src[3] == task
    True
    """

    def __init__(self, size: int = 10_000, seed: int = 0, split: str = "train", min_len: int = 3, max_len: int = 6):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 2 <= min_len <= max_len:
            raise ValueError(f"need 2 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
        if size < 1 or seed < 0:
            raise ValueError(f"size must be >= 1 and seed >= 0, got size={size}, seed={seed}")
        self.size, self.seed, self.split = int(size), int(seed), split
        self.min_len, self.max_len = int(min_len), int(max_len)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Task:
        if not 0 <= index < self.size:
            raise IndexError(f"task index {index} out of range for a source of {self.size} tasks")
        word = self._word(index)
        return Task(
            id=f"reverse-{self.split}-{self.seed}-{index}",
            prompt=PROMPT.format(word=word),
            fields={"answer": word[::-1], "word": word},
            meta={"difficulty": len(word), "split": self.split},
        )

    def _word(self, index: int) -> str:
        # random.Random seeded with a str is stable across processes and Python versions (seed version 2)
        rng = random.Random(f"r1gym-echo/{self.seed}/{self.split}/{index}")
        for _ in range(_MAX_TRIES):
            n = rng.randint(self.min_len, self.max_len)
            word = "".join(rng.choice(CONSONANTS if i % 2 == 0 else VOWELS) for i in range(n))
            if word != word[::-1] and split_of(word) == self.split:  # a palindrome would be a free point
                return word
        raise RuntimeError(f"no {self.split} word of {self.min_len}..{self.max_len} letters after {_MAX_TRIES} tries")


def reverse_exact(completion: str, *, answer: str, case_sensitive: bool = False) -> float:
    """1.0 if the last ``<answer>`` tag holds exactly the reversed word, else 0.0.

    ``case_sensitive`` is a reward parameter set from config
    (``rewards: {reverse_exact: {weight: 1.0, case_sensitive: true}}``).

    >>> reverse_exact("<think> t-a-c </think> <answer> TAC </answer>", answer="tac")
    1.0
    >>> reverse_exact("<answer> TAC </answer>", answer="tac", case_sensitive=True)
    0.0
    >>> reverse_exact("tac", answer="tac")  # no answer tag: the model's failure, not an unscorable sample
    0.0
    """
    if not isinstance(answer, str) or not answer:
        raise Unscorable(f"the reference answer must be a non-empty string, got {answer!r}")
    given = extract_answer_tag(completion)
    if given is None:
        return 0.0
    if not case_sensitive:
        given, answer = given.lower(), answer.lower()
    return float(given == answer)
