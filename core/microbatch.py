"""Batching calls that arrive one at a time from many threads: how model-based rewards batch.

A GRPO step scores its completions from ``rollout.reward_workers`` threads, one completion per call. A reward
model or a local judge is much faster on a batch than on one text at a time, so :class:`MicroBatcher` puts
callers in a queue, and one worker thread takes up to ``max_batch`` of them (waiting at most ``max_wait_s``
for more after the first), makes one batched call, and hands each caller its own result or exception.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

X = TypeVar("X")
Y = TypeVar("Y")


class MicroBatcher(Generic[X, Y]):
    """``batcher(x)`` returns ``fn([..., x, ...])[i]``; ``fn`` maps a list of inputs to a list of outputs of
    the same length. An exception raised by ``fn`` reaches every caller of that batch."""

    def __init__(self, fn: Callable[[list[X]], Sequence[Y]], max_batch: int = 16, max_wait_s: float = 0.005,
                 name: str = "r1gym-microbatch"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_s
        self._queue: queue.Queue[tuple[X, Future]] = queue.Queue()
        self.batches = 0  # how many batched calls were made (tests and logs)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def __call__(self, x: X) -> Y:
        future: Future = Future()
        self._queue.put((x, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            try:
                while len(items) < self.max_batch:
                    items.append(self._queue.get(timeout=self.max_wait_s))
            except queue.Empty:
                pass
            self.batches += 1
            try:
                outputs = list(self.fn([x for x, _ in items]))
                if len(outputs) != len(items):
                    raise RuntimeError(f"a batched call returned {len(outputs)} results for {len(items)} inputs")
            except BaseException as exc:  # noqa: BLE001 -- handed to the callers
                for _, future in items:
                    future.set_exception(exc)
                continue
            for (_, future), out in zip(items, outputs):
                future.set_result(out)
