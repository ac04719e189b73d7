"""The checker's worker pool: hard time limits from threads, asyncio and process pools, workers killed and
replaced (no strays), the cache, and the fast path that never starts a pool."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

import psutil
import pytest

from r1gym.core.rewards import Unscorable
from r1gym.plugins.math.extract import MAX_ANSWER_CHARS
from r1gym.plugins.math.pool import MathChecker, Verdict
from r1gym.plugins.math.rewards import math_accuracy

LIMIT = 1.0
SLACK = 1.0  # kill + reap + start of the replacement, on a busy 2-core machine
TOWER = "10^{10^{10^{10}}}"
BIG = "+".join(f"x^{{{i}}}" for i in range(12_000))  # ~100 kB of LaTeX


@pytest.fixture(scope="module")
def shared_checker():
    with MathChecker(workers=2, timeout=LIMIT) as c:
        yield c


@pytest.fixture()
def checker(shared_checker):
    """The module's checker, with its workers started, an empty cache and zeroed counters."""
    shared_checker.pool.wait_ready()
    shared_checker._cache.clear()
    shared_checker.stats.clear()
    shared_checker.pool.replaced = 0
    return shared_checker


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_pathological_inputs_time_out_from_many_threads(checker):
    assert len(BIG) > 100_000
    before = set(checker.pool.pids())
    assert len(before) == 2 and before <= _children()
    pairs = [(TOWER, "5"), ("5", TOWER), (BIG, "x")]  # 3 threads, 2 workers: one waits for a worker
    results: dict[int, Verdict] = {}

    def run(i: int, ref: str, pred: str) -> None:
        results[i] = checker.check(ref, pred)

    threads = [threading.Thread(target=run, args=(i, *p)) for i, p in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 3
    for verdict in results.values():
        assert verdict.correct is None and verdict.reason.startswith("timeout"), verdict
    # the overrunning workers were killed and reaped, and replaced
    after = set(checker.pool.pids())
    assert len(after) == 2 and not (before & after)
    assert not any(psutil.pid_exists(pid) for pid in before), "a timed-out worker is still alive"
    assert checker.pool.replaced == 3
    # the pool still works (the replacement's start-up does not count against the limit)
    assert checker.check(r"\frac{\sqrt{3}}{2}", r"\frac{3}{2\sqrt{3}}", timeout=10).correct is True
    assert set(checker.pool.pids()) <= _children()


def test_the_limit_measures_the_check_not_the_wait_for_a_worker():
    """One worker, busy with slow jobs queued ahead: the fast checks behind them still get their verdicts."""
    with MathChecker(workers=1, timeout=LIMIT) as c:
        c.pool.wait_ready()
        results: dict[str, object] = {}
        slow = [
            threading.Thread(target=lambda: results.setdefault("sleep", c.pool.call("sleep", (2.5 * LIMIT,), timeout=10))),
            threading.Thread(target=lambda: results.setdefault("tower", c.check(TOWER, "5"))),  # overruns its own limit
        ]
        for t in slow:
            t.start()
            time.sleep(0.2)  # in this order: the worker is taken before the fast checks queue up
        fast = [threading.Thread(target=lambda i=i: results.setdefault(i, c.check(r"\sqrt{8}", rf"{i}\sqrt{{2}}"))) for i in (2, 3)]
        for t in fast:
            t.start()
        for t in slow + fast:
            t.join(timeout=60)
        assert results["sleep"] == ("ok", 2.5 * LIMIT)
        assert results["tower"].reason.startswith("timeout")
        assert results[2] == Verdict(True, "equivalent") and results[3] == Verdict(False, "not equivalent")
        assert c.stats["timeout"] == 1 and "busy" not in c.stats


def test_a_check_that_waits_past_max_wait_is_busy_and_never_runs():
    with MathChecker(workers=1, timeout=LIMIT, max_wait=0.2) as c:
        c.pool.wait_ready()
        sleeper = threading.Thread(target=c.pool.call, args=("sleep", (2.0,), 10), kwargs={"max_wait": 10})
        sleeper.start()
        time.sleep(0.2)
        verdict = c.check(r"\sqrt{8}", r"2\sqrt{2}")
        sleeper.join(timeout=30)
        assert verdict.correct is None and verdict.reason.startswith("busy"), verdict
        assert c.stats["busy"] == 1 and c.pool.replaced == 0  # the worker was never handed the request
        assert c.check(r"\sqrt{8}", r"2\sqrt{2}").correct is True  # not cached: the machine's fault, not the pair's


def test_an_answer_past_the_length_cap_is_wrong_without_being_parsed(checker, monkeypatch):
    monkeypatch.setattr(checker.pool, "call", lambda *a, **k: pytest.fail("a too-long answer reached the pool"))
    long = "1+" * (MAX_ANSWER_CHARS // 2) + "1"
    verdict = checker.check("5", long)
    assert verdict.correct is False and verdict.reason.startswith("answer too long")
    assert checker.check("x", BIG).correct is False and checker.stats["too_long"] == 2
    monkeypatch.undo()
    assert checker.check("5", "+".join(["1"] * 5)).correct is True  # the same shape, short: parsed and equal


def test_timeouts_are_not_cached(checker):
    assert checker.check(TOWER, "5").reason.startswith("timeout")
    assert checker.stats["timeout"] == 1
    assert checker.check(TOWER, "5").reason.startswith("timeout")
    assert checker.stats["timeout"] == 2 and checker.stats["cache_hits"] == 0


def test_close_leaves_no_worker_processes():
    c = MathChecker(workers=2)
    c.pool.wait_ready()
    pids = c.pool.pids()
    assert set(pids) <= _children()
    c.close()
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(psutil.pid_exists(p) for p in pids)


def test_cache_hit_skips_the_pool(checker, monkeypatch):
    assert checker.check(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}").correct is True
    assert checker.stats["pool"] == 1

    def no_pool(*args, **kwargs):
        raise AssertionError("the pool was called for a cached pair")

    monkeypatch.setattr(checker.pool, "call", no_pool)
    assert checker.check(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}").correct is True
    assert checker.stats["cache_hits"] == 1 and checker.stats["pool"] == 1


def test_cache_is_bounded():
    c = MathChecker(cache_size=3)
    for i in range(10):
        c.check(str(i), str(i))
    assert len(c._cache) == 3 and c._pool is None  # numbers only: no worker was ever started


def test_from_asyncio(checker):
    async def main():
        return await asyncio.gather(checker.acheck("x+x", "2x"), checker.acheck(TOWER, "5"))

    t0 = time.monotonic()
    same, slow = asyncio.run(main())
    assert same.correct is True and slow.reason.startswith("timeout")
    assert time.monotonic() - t0 < LIMIT + SLACK


def test_worker_busy_past_the_limit_is_killed(checker):
    kind, reason = checker.pool.call("sleep", (30,), timeout=0.5)
    assert kind == "timeout"
    assert checker.pool.call("ping", (), timeout=10)[0] == "ok"


def test_reward_times_out_inside_a_daemonic_process_pool():
    """math_accuracy in a multiprocessing.Pool worker (daemonic: it may not fork multiprocessing children)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        ok = pool.apply(math_accuracy, ("<answer> x^2 - 1 </answer>",), {"answer": "(x-1)(x+1)", "timeout": 30})
        assert ok == 1.0
        with pytest.raises(Unscorable, match="timeout"):
            pool.apply(math_accuracy, (f"<answer> {TOWER} </answer>",), {"answer": "5", "timeout": LIMIT})


def test_worker_that_died_while_idle_is_replaced(checker):
    import os
    import signal

    victim = checker.pool.pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while victim in checker.pool.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(3):  # whichever worker each call gets, every call is answered
        assert checker.pool.call("ping", (), timeout=10)[0] == "ok"
    assert victim not in checker.pool.pids() and len(checker.pool.pids()) == 2
