"""The math checker: a fast path, a cache, and a pool of worker processes with a hard time limit per check.

:class:`MathChecker` answers ``check(reference, prediction)`` with a :class:`Verdict` (correct, incorrect,
or cannot be scored with a reason). Numbers, multiple-choice letters and text are compared in the calling
thread (:mod:`r1gym.plugins.math.normalize`: no sympy, microseconds). Anything that needs computer algebra
goes to a :class:`WorkerPool` process running :func:`r1gym.plugins.math.verify.symbolic_verdict`.

Time limit: every check has a wall-clock limit (``timeout`` seconds, default 5) that starts when a worker
picks the check up, so it measures the check itself, never the wait for a free worker: in a burst (a GRPO
step's completions, ``r1gym score`` with several jobs) a legitimate answer queued behind slow neighbours still
gets its verdict. A worker that overruns is killed (SIGKILL) and reaped, and a fresh one is started in its
place; the check returns "cannot be scored: timeout ...". The wait for a free worker has its own, generous
bound (``max_wait``, default 600 s), there only so that nothing waits forever (a wedged machine, a pool
starved by a caller that never returns): a check that waited that long returns "cannot be scored: busy ..."
without running (counted as ``busy``). Nothing here uses SIGALRM, so it works from any thread, from asyncio
(:meth:`MathChecker.acheck`) and inside process pools (also daemonic ``multiprocessing.Pool`` workers: the
workers are plain subprocesses, not ``multiprocessing`` children). A worker's own start-up (Python + sympy
imports, ~0.5 s; on the first check after the pool was made or a worker was replaced) is not the check's
time either; it has its own limit (``startup_timeout``). Workers also run under an address-space limit
(``memory_limit_mb``), so an input that tries to build a gigantic integer fails with "out of memory" instead
of swapping.

Length: a prediction longer than :data:`~r1gym.plugins.math.extract.MAX_ANSWER_CHARS` is graded wrong
without being normalised or parsed (reason "answer too long", counted as ``too_long``), so the calling
thread's work on an answer is bounded whatever the policy wrote (see :mod:`r1gym.plugins.math.extract` for
why wrong and not unscorable).

Second opinion (:meth:`MathChecker.second_opinion`): on a "cannot be scored" because sympy cannot read a
well-formed reference, or an "incorrect" against a reference with several boxes, plain
``math_verify.verify(parse(reference), parse(completion))`` is asked, in a worker under the same time limit; its
"equal" becomes the verdict (reason :data:`SECOND_OPINION_REASON`, flagged ``fallback`` by the reward). Not on
any other "incorrect": there math-verify's looser rules (``x + y = 5`` ~ ``5``, ``x^2+1=0`` ~ ``x^2+2=0``)
would add false positives (measured in docs/math.md). Never on a "correct", a timeout or a busy pool.

Cache: verdicts are kept per ``(reference, prediction, approx_digits)`` (LRU, ``cache_size`` entries); a
GRPO group's samples often share an answer, and references repeat every epoch. Timeouts and worker failures
are not cached (they may be the machine's fault, not the pair's).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from r1gym.plugins.math.extract import MAX_ANSWER_CHARS, MAX_SCAN_CHARS, Extraction, all_boxed, extract_answer, extract_reference, outermost_boxed
from r1gym.plugins.math.normalize import DEFAULT_APPROX_DIGITS, classify, quick_verdict

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
#: the most a check waits for a free worker (not a time limit on the check: see the module docstring)
DEFAULT_MAX_WAIT = 600.0
DEFAULT_STARTUP_TIMEOUT = 60.0
DEFAULT_MEMORY_LIMIT_MB = 2048
WORKERS_ENV = "R1GYM_MATH_WORKERS"
OUT_OF_MEMORY = "out of memory"


#: the kinds of pair on which plain math-verify may overrule a "no" (see :func:`second_opinion_kind`)
SECOND_OPINION_KINDS = ("unparsed_reference", "reference_boxes", "incorrect")
#: the kinds it overrules by default: those where it added no false positive on bench/data/math_eval nor on the
#: hand-written near misses (docs/math.md, "A second opinion")
DEFAULT_SECOND_OPINION = ("unparsed_reference", "reference_boxes")
#: the reason of a verdict that plain math-verify's "equal" gave (the reward flags it ``fallback``)
SECOND_OPINION_REASON = "math-verify second opinion"
#: the reason of a verdict reached by reading every box of the completion (or reference) as one answer
ALL_BOXES_REASON = "all boxes"


@dataclass(frozen=True)
class Verdict:
    """``correct`` is ``True``/``False``, or ``None`` when the pair cannot be scored; ``reason`` says why."""

    correct: bool | None
    reason: str = ""

    @property
    def scorable(self) -> bool:
        return self.correct is not None


def default_workers() -> int:
    """``$R1GYM_MATH_WORKERS``, else the usable cores (at most 4)."""
    if os.environ.get(WORKERS_ENV, "").strip():
        return max(1, int(os.environ[WORKERS_ENV]))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# -- worker side ----------------------------------------------------------------------------------------------
def _op_check(*args: Any) -> Any:
    from r1gym.plugins.math.verify import symbolic_verdict

    return symbolic_verdict(*args)


def _op_parse(text: str) -> str | None:
    from r1gym.plugins.math.verify import parse_latex

    ok, value = parse_latex(text)
    return None if ok else str(value)


def _op_math_verify(gold: str, completion: str) -> bool:
    """Plain ``math_verify.verify(parse(gold), parse(completion))``, defaults: the second opinion."""
    from math_verify import parse, verify

    return bool(verify(parse(gold), parse(completion)))


def _op_ping() -> int:
    return os.getpid()


def _op_sleep(seconds: float) -> float:  # for tests of the time limit: a worker busy for a known time
    time.sleep(seconds)
    return seconds


_WARMUP = (
    "1+x", r"\frac{\sqrt{3}}{2}", "x^2+3x-10", r"\left( 3, \frac{\pi}{2} \right)", r"(-\infty, 2] \cup (3, \infty)",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\{1, 2\}", r"y = 2x + 1", r"x \ge 3", r"2\pi r^2", r"\sin^2 x",
    r"\left[ \frac{\pi^2}{8}, 5 \right]", "10^{-3}", r"\text{even}", "3 + 4i", r"\dfrac{9}{4}", "5!",
)
_OPS = {"check": _op_check, "parse": _op_parse, "math_verify": _op_math_verify, "ping": _op_ping, "sleep": _op_sleep}


def _worker_main(fd: int, memory_limit_mb: int) -> None:
    """Serve requests ``(id, op, args)`` on the socket ``fd`` until EOF or ``None``."""
    logging.basicConfig(level=logging.ERROR)
    if memory_limit_mb > 0:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    sys.setrecursionlimit(10_000)
    conn = Connection(fd)
    import sympy  # noqa: F401  (the imports are the start-up; "ready" means they are done)

    from r1gym.plugins.math import verify

    for text in _WARMUP:  # fill ANTLR's prediction caches: a cold parser takes 10-50 ms per new shape
        verify.parse_latex(text)
    verify.parse_latex.cache_clear()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        req_id, op, args = msg
        fatal = False
        try:
            result = (True, _OPS[op](*args))
        except MemoryError:
            result, fatal = (False, OUT_OF_MEMORY), True
        except RecursionError:
            result = (False, "expression nested too deeply")
        except Exception as exc:
            result = (False, f"{type(exc).__name__}: {exc}"[:500])
        conn.send((req_id, result))
        if fatal:  # after a MemoryError the interpreter may be in a poor state: start afresh
            return


# -- parent side ----------------------------------------------------------------------------------------------
class _Worker:
    def __init__(self, memory_limit_mb: int):
        parent, child = socket.socketpair()
        cmd = [sys.executable, "-m", "r1gym.plugins.math.pool", str(child.fileno()), str(memory_limit_mb)]
        self.proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        child.close()
        self.conn = Connection(parent.detach())
        self.ready = False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover (SIGKILL cannot be ignored)
            log.error("math verifier worker %d did not exit after SIGKILL", self.proc.pid)
        self.conn.close()


def _kill_all(workers: set[_Worker]) -> None:
    for w in list(workers):
        w.kill()
    workers.clear()


class WorkerPool:
    """``size`` worker processes; :meth:`call` runs one request on a free worker within a deadline that starts
    when the worker picks it up (``max_wait`` bounds the wait for a free worker)."""

    def __init__(
        self,
        size: int | None = None,
        *,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        max_wait: float = DEFAULT_MAX_WAIT,
    ):
        self.size = size or default_workers()
        self.memory_limit_mb, self.startup_timeout, self.max_wait = memory_limit_mb, startup_timeout, max_wait
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._owner = os.getpid()
        self.replaced = 0
        self._finalizer = weakref.finalize(self, _kill_all, self._all)
        for _ in range(self.size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        w = _Worker(self.memory_limit_mb)
        with self._lock:
            self._all.add(w)
        return w

    def _retire(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            self._all.discard(w)
            closed = self._closed
            self.replaced += not closed
        if not closed:
            self._idle.put(self._spawn())

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        with self._lock:
            return sorted(w.proc.pid for w in self._all if w.proc.poll() is None)

    def _await_ready(self, w: _Worker) -> str | None:
        if w.ready:
            return None
        if w.conn.poll(self.startup_timeout):
            try:
                tag, _ = w.conn.recv()
            except (EOFError, OSError):
                tag = None
            if tag == "ready":
                w.ready = True
                return None
        code = w.proc.poll()
        return f"verifier worker failed to start (exit code {code}; see its stderr)"

    def call(self, op: str, args: Sequence[Any], timeout: float, *, max_wait: float | None = None) -> tuple[str, Any]:
        """Run ``op(*args)`` in a worker: ``("ok", result)``, ``("timeout", reason)``, ``("busy", reason)`` or
        ``("error", reason)``.

        ``timeout`` counts from the moment a worker takes the request (a worker's start-up excluded), so a
        request queued behind slow ones is not charged for their time. ``max_wait`` (default: the pool's) bounds
        the wait for a free worker; past it the request is ``"busy"`` and never runs.
        """
        if self._closed:
            raise RuntimeError("the math verifier pool is closed")
        if os.getpid() != self._owner:
            raise RuntimeError("a math verifier pool cannot be used from a forked child; make a new one there")
        max_wait = self.max_wait if max_wait is None else max_wait
        give_up = time.monotonic() + max_wait
        while True:
            try:
                w = self._idle.get(timeout=max(give_up - time.monotonic(), 0.0))
            except queue.Empty:
                return "busy", f"busy: no free verifier worker within {max_wait:g} s"
            if w.proc.poll() is None:
                break
            self._retire(w)  # it exited while idle (out of memory on its last request): replace it
        healthy = True  # until work is sent: a worker that got no request goes back to the idle queue
        try:
            failed = self._await_ready(w)
            if failed:
                healthy = False
                return "error", failed
            deadline = time.monotonic() + timeout  # the check's own time starts now
            req_id = next(self._ids)
            healthy = False
            w.conn.send((req_id, op, tuple(args)))
            remaining = deadline - time.monotonic()
            if remaining > 0 and w.conn.poll(remaining):
                got_id, (ok, value) = w.conn.recv()
                if got_id != req_id:  # cannot happen with one request in flight per worker; be safe
                    return "error", "verifier worker answered another request"
                healthy = ok or value != OUT_OF_MEMORY  # after a MemoryError the worker exits
                return ("ok", value) if ok else ("error", value)
            return "timeout", f"timeout after {timeout:g} s"
        except (EOFError, OSError) as exc:
            return "error", f"verifier worker died ({type(exc).__name__}; exit code {w.proc.poll()})"
        finally:
            if healthy and w.proc.poll() is None:
                self._idle.put(w)
            else:
                self._retire(w)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every worker has started (tests and benchmarks use it to time checks alone)."""
        for _ in range(self.size):
            kind, value = self.call("ping", (), timeout or self.startup_timeout)
            if kind != "ok":
                raise RuntimeError(f"math verifier worker not ready: {value}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                w = self._idle.get_nowait()
            except queue.Empty:
                break
            try:
                w.conn.send(None)
            except OSError:
                pass
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class MathChecker:
    """Extraction, the fast path, the cache and the pool, behind :meth:`check` and :meth:`grade`."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cache_size: int = 100_000,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        max_wait: float = DEFAULT_MAX_WAIT,
        second_opinion: Sequence[str] = DEFAULT_SECOND_OPINION,
    ):
        unknown = set(second_opinion) - set(SECOND_OPINION_KINDS)
        if unknown:
            raise ValueError(f"unknown second-opinion kind(s) {sorted(unknown)}; known: {', '.join(SECOND_OPINION_KINDS)}")
        self.second_opinion_kinds = tuple(second_opinion)
        self.workers, self.timeout, self.cache_size = workers, float(timeout), int(cache_size)
        self.memory_limit_mb, self.max_wait = memory_limit_mb, float(max_wait)
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple, Verdict] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self.stats: collections.Counter[str] = collections.Counter()

    @property
    def pool(self) -> WorkerPool:
        """The worker pool, started on first use (a checker that only sees numbers never starts one)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = WorkerPool(self.workers, memory_limit_mb=self.memory_limit_mb, max_wait=self.max_wait)
            return self._pool

    def _cached(self, key: tuple) -> Verdict | None:
        with self._cache_lock:
            v = self._cache.get(key)
            if v is not None:
                self._cache.move_to_end(key)
                self.stats["cache_hits"] += 1
            return v

    def _remember(self, key: tuple, verdict: Verdict) -> None:
        with self._cache_lock:
            self._cache[key] = verdict
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def check(
        self, reference: Any, prediction: str, *, timeout: float | None = None, approx_digits: int = DEFAULT_APPROX_DIGITS
    ) -> Verdict:
        """Is the answer ``prediction`` (already extracted) the reference answer? See :class:`Verdict`.

        >>> checker = MathChecker()
        >>> checker.check("1/2", "0.5"), checker.check("", "1").reason
        (Verdict(correct=True, reason='number'), 'reference answer is empty')
        """
        reference = "" if reference is None else str(reference)
        if len(prediction) > MAX_ANSWER_CHARS:  # never normalised or parsed: bounded work in this thread
            self.stats["too_long"] += 1
            return Verdict(False, f"answer too long ({len(prediction)} > {MAX_ANSWER_CHARS} characters)")
        key = (reference, prediction, approx_digits)
        cached = self._cached(key)
        if cached is not None:
            return cached
        ref, pred = classify(extract_reference(reference)), classify(prediction)
        quick = quick_verdict(ref, pred, approx_digits)
        if quick is not None:
            self.stats["fast"] += 1
            verdict = Verdict(*quick)
        else:
            self.stats["pool"] += 1
            args = (ref.text, pred.text, ref.number, pred.number, approx_digits)
            kind, value = self.pool.call("check", args, self.timeout if timeout is None else timeout)
            if kind == "ok":
                verdict = Verdict(*value)
            else:
                self.stats[kind] += 1
                return Verdict(None, value if kind in ("timeout", "busy") else f"verifier error: {value}")
        self._remember(key, verdict)
        return verdict

    def reference_problem(self, reference: Any, *, timeout: float | None = None) -> str | None:
        """Why ``reference`` cannot serve as a reference answer, or ``None`` when it can."""
        ref = classify(extract_reference("" if reference is None else str(reference)))
        if ref.kind == "empty":
            return "reference answer is empty"
        if ref.kind != "latex":
            return None
        verdict = self.check(reference, ref.text, timeout=timeout)
        return None if verdict.scorable else verdict.reason

    def grade(
        self,
        completion: str,
        reference: Any,
        *,
        methods: Sequence[str] | None = None,
        timeout: float | None = None,
        approx_digits: int = DEFAULT_APPROX_DIGITS,
    ) -> Verdict:
        """Extract the final answer of ``completion`` and :meth:`check` it. No answer found is incorrect,
        unless the reference itself is unusable (then the pair cannot be scored)."""
        return self.grade_found(completion, reference, extract_answer(completion, methods), timeout=timeout,
                                approx_digits=approx_digits)

    def grade_found(
        self,
        completion: str,
        reference: Any,
        found: Extraction | None,
        *,
        timeout: float | None = None,
        approx_digits: int = DEFAULT_APPROX_DIGITS,
        second_opinion: Sequence[str] | None = None,
    ) -> Verdict:
        """:meth:`grade` with the answer already extracted (``found``, ``None`` when there was none), then the
        :meth:`second_opinion` on a "no" (``second_opinion``: the kinds to ask it about, default this checker's)."""
        if found is None:
            problem = self.reference_problem(reference, timeout=timeout)
            verdict = Verdict(None, problem) if problem else Verdict(False, "no answer found")
        else:
            verdict = self.check(reference, found.text, timeout=timeout, approx_digits=approx_digits)
            if verdict.correct is False and not verdict.reason.startswith("answer too long"):
                verdict = self._all_boxes(completion, reference, found, verdict, timeout, approx_digits)
        return self.second_opinion(completion, reference, verdict, timeout=timeout, kinds=second_opinion)

    def _all_boxes(self, completion: str, reference: Any, found: Extraction, verdict: Verdict,
                   timeout: float | None, approx_digits: int) -> Verdict:
        """An answer in parts: when the completion (or the reference) boxes two or more separate answers and its
        last box alone is not the reference, all its boxes together are compared (:func:`all_boxed`). Hedging
        gains nothing: three boxed guesses together are a list of three, never one value or a set of two."""
        ref = "" if reference is None else str(reference)
        tries = []
        boxes = all_boxed(completion)
        if boxes is not None and boxes != found.text:
            tries.append((ref, boxes))
        ref_boxes = all_boxed(ref)
        if ref_boxes is not None:
            tries.append((ref_boxes, found.text))
        for r, p in tries:
            if len(p) <= MAX_ANSWER_CHARS and self.check(r, p, timeout=timeout, approx_digits=approx_digits).correct:
                return Verdict(True, ALL_BOXES_REASON)
        return verdict

    def second_opinion(self, completion: str, reference: Any, verdict: Verdict, *, timeout: float | None = None,
                       kinds: Sequence[str] | None = None) -> Verdict:
        """Plain math-verify's verdict on a pair this checker said "incorrect" or "cannot be scored" about,
        when the pair is of a kind in ``second_opinion`` (:func:`second_opinion_kind`). Its "equal" wins
        (reason :data:`SECOND_OPINION_REASON`, which the reward flags ``fallback``); anything else leaves
        ``verdict`` as it was. Never asked about a "correct", a timeout, a busy pool or an over-long answer.
        It runs in a worker under the check's time limit, like every check: a timeout keeps ``verdict``."""
        kind = second_opinion_kind(completion, reference, verdict)
        if kind is None or kind not in (self.second_opinion_kinds if kinds is None else kinds):
            return verdict
        reference = "" if reference is None else str(reference)
        tail = completion[-MAX_SCAN_CHARS:]
        key = ("math_verify", reference, tail)
        cached = self._cached(key)
        if cached is None:
            outcome, value = self.pool.call("math_verify", (reference, tail), self.timeout if timeout is None else timeout)
            self.stats[f"second_opinion_{outcome}"] += 1
            if outcome != "ok":
                return verdict  # its failure is no verdict: keep ours (not cached: may be the machine's fault)
            cached = Verdict(bool(value), SECOND_OPINION_REASON)
            self._remember(key, cached)
        if cached.correct:
            self.stats["second_opinion_equal"] += 1
            return cached
        return verdict

    async def acheck(self, reference: Any, prediction: str, **kwargs: Any) -> Verdict:
        """:meth:`check` for asyncio code (runs in a thread; the event loop is never blocked)."""
        return await asyncio.to_thread(self.check, reference, prediction, **kwargs)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> MathChecker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def second_opinion_kind(completion: str, reference: Any, verdict: Verdict) -> str | None:
    """Which of :data:`SECOND_OPINION_KINDS` the pair is, or ``None`` when no second opinion may be asked:

    * ``unparsed_reference``: "cannot be scored" because sympy cannot read the reference (``1 = \\zzz = x = 0``),
      though it is well formed (balanced braces, no dangling operator: of a corrupt reference math-verify reads a
      fragment; a reference cut only before its box's closing brace is read to its end by ``extract_reference``);
    * ``reference_boxes``: "incorrect", and the reference holds two or more separate boxes that this checker
      does not read as one answer in parts (``\\boxed{35 cm} ++++++ \\boxed{4}``: it reads the last). Only the
      reference: were it the completion's boxes, a policy could opt into math-verify's looser rules by boxing
      twice (``\\boxed{5} so \\boxed{5}`` would equal ``x+y=5``);
    * ``incorrect``: any other "incorrect".

    A "correct", a timeout, a busy pool, a failed worker and an over-long answer are never second-guessed.
    """
    from r1gym.plugins.math.verify import well_formed

    if verdict.correct is True:
        return None
    if verdict.correct is None:
        unread = verdict.reason.startswith(("reference answer does not parse", "reference answer is undefined"))
        return "unparsed_reference" if unread and well_formed(extract_reference("" if reference is None else str(reference))) else None
    if verdict.reason.startswith("answer too long"):
        return None
    ref = ("" if reference is None else str(reference))[-MAX_SCAN_CHARS:]
    if ("boxed" in ref or "fbox" in ref) and len(outermost_boxed(ref)) >= 2:
        return "reference_boxes"
    return "incorrect"


_DEFAULT: dict[int, MathChecker] = {}
_DEFAULT_LOCK = threading.Lock()


def default_checker() -> MathChecker:
    """The process-wide checker the rewards use, made on first use (a forked child gets its own)."""
    pid = os.getpid()
    with _DEFAULT_LOCK:
        checker = _DEFAULT.get(pid)
        if checker is None:
            _DEFAULT.clear()  # a parent's checker, inherited by fork: its pool belongs to the parent
            checker = _DEFAULT[pid] = MathChecker()
        return checker


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), int(sys.argv[2]))
