"""Function-call tests judged so that the candidate cannot forge the verdict (issue 14).

HumanEval's ``check(candidate)`` and MBPP's ``assert f(x) == y`` used to run in the candidate's own
process, after its code, with a success token printed at the end. Anything in that process could be read
or rewritten by the candidate: the token (in its code object, in its own source file), the asserts
(``sys.excepthook``, ``os._exit(0)``), ``==`` itself (an object equal to everything), ``abs`` or
``math.isclose``. Here the test and the candidate never meet:

1. **record** (:mod:`.calljudge`, no candidate code): the test code runs against a stand-in that writes down
   the arguments of every call it makes; done once per task and cached.
2. **candidate** (:mod:`.callrunner`, in the sandbox): the candidate's code gets only those arguments, and
   its return values (or the exceptions it raised) come back as plain data through a strict codec: a
   custom object, a subclass of ``int`` or a callable is not plain data and fails the test.
3. **verdict** (:mod:`.calljudge`, no candidate code): the test code runs as written against a stand-in that
   replays the recorded outcomes, so ``check()`` bodies with loops, helpers and tolerances work as they are.
   A call with arguments that depend on an earlier result (``decode(encode(x))``) is not known after
   step 1; the verdict asks for it, and steps 2-3 repeat (at most ``max_rounds`` times, then the task
   cannot be scored, with that reason).

No assert, expected value or success token is ever in the candidate's process or its file-system view,
and the pass/fail decision is made by a judge process that never ran candidate code. The judge runs the
*test* code (trusted, like the task data and the reward config) in worker processes of its own, outside
the sandbox but under a memory cap and a time limit counted from when a worker picks the job up.

Which names a test expects from the candidate: the task's ``entry_point`` (HumanEval), else the names the
test code uses but does not define and that are not builtins or standard-library modules (MBPP's
``remove_Occ``), less those ``setup`` defines in full (a stub with only a docstring is still the candidate's). The task's ``setup`` (HumanEval's prompt, MBPP's ``test_setup_code``) is public:
it runs before the candidate's code, and before the test in the judge, so helpers the test uses
(HumanEval's ``poly``, ``encode_cyclic``) are the reference ones, never the candidate's.

What is counted for the team watching a run (:attr:`CallVerdicts.flags`): ``ended_early`` (the program
exited cleanly before answering every call: ``os._exit(0)``, an ``atexit`` trick) and ``hack_pattern`` (the
code uses something from :data:`HACK_PATTERNS`: frame walking, ``excepthook``, exiting, patching builtins).
"""

from __future__ import annotations

import ast
import atexit
import builtins
import hashlib
import json
import os
import queue
import re
import select
import subprocess
import symtable
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1gym.core.rewards import Unscorable
from r1gym.plugins.code.callrunner import decode

RUNNER_SOURCE = Path(__file__).with_name("callrunner.py").read_text()
DEFAULT_MAX_ROUNDS = 6
JUDGE_WORKERS_ENV = "R1GYM_JUDGE_WORKERS"

#: (name, pattern) of tricks a solution to a function-call task has no business using; a match sets the
#: ``hack_pattern`` flag (it does not change the score: the harness does not depend on spotting them)
HACK_PATTERNS: tuple[tuple[str, re.Pattern], ...] = tuple((n, re.compile(p)) for n, p in (
    ("exit", r"\bos\s*\.\s*_exit\b|\bsys\s*\.\s*exit\b|\bSystemExit\b|(?<![\w.])(?:exit|quit)\s*\("),
    ("atexit", r"\batexit\b"),
    ("excepthook", r"\bexcepthook\b"),
    ("frames", r"\b_getframe\b|\bf_back\b|\bf_globals\b|\bf_locals\b|\bf_code\b|\bco_consts\b|\binspect\s*\.\s*(?:stack|currentframe|getouterframes)\b"),
    ("tracing", r"\bsettrace\b|\bsetprofile\b"),
    ("builtins", r"\b__builtins__\b|\bimport\s+builtins\b|\bfrom\s+builtins\b"),
    ("own_source", r"\b__file__\b|/proc/self|\bsys\s*\.\s*argv\b"),
    ("harness_files", r"conftest|\bgc\s*\.\s*get_(?:objects|referrers|referents)\b|\bsys\s*\.\s*modules\b"),
    ("always_equal", r"def\s+__(?:eq|ne|bool|hash)__\s*\("),
))


def hack_patterns(code: str) -> list[str]:
    """The names of the :data:`HACK_PATTERNS` that ``code`` matches."""
    return [name for name, pattern in HACK_PATTERNS if pattern.search(code)]


# -- which names a test expects from the candidate ----------------------------------------------------------
def _bound_at_top(source: str) -> set[str]:
    try:
        table = symtable.symtable(source, "<setup>", "exec")
    except SyntaxError:
        return set()
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


def _stubs(source: str) -> set[str]:
    """Functions ``source`` defines with no body (a docstring, ``pass`` or ``...``): HumanEval's prompt
    declares the function to write this way, beside helpers it defines in full."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    empty = lambda n: isinstance(n, ast.Pass) or isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)  # noqa: E731
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and all(map(empty, n.body))}


def _used_globals(source: str) -> set[str]:
    """Names the code reads as globals (at the top level or, undeclared, inside functions)."""
    table = symtable.symtable(source, "<test>", "exec")
    top = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    used: set[str] = set()

    def walk(t: symtable.SymbolTable) -> None:
        for s in t.get_symbols():
            if s.is_referenced() and (t.get_type() == "module" or s.is_global()):
                used.add(s.get_name())
        for child in t.get_children():
            walk(child)

    walk(table)
    return used - top


def expected_names(tests: Sequence[str], setup: str, entry_point: str | Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(names bound to the candidate's functions, standard-library modules the tests use unimported)."""
    used: set[str] = set()
    for source in tests:
        try:
            used |= _used_globals(source)
        except SyntaxError as exc:
            raise Unscorable(f"a test is not valid Python: {exc}") from None
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    modules = sorted(n for n in used if n in stdlib and not hasattr(builtins, n))
    if entry_point:
        names = [entry_point] if isinstance(entry_point, str) else list(entry_point)
    else:
        names = sorted((used - _bound_at_top(setup) | used & _stubs(setup)) - set(dir(builtins)) - set(modules))
        if not names:  # the function under test shadows a builtin (MBPP 126 asks for `sum(a, b)`)
            names = sorted(used & set(dir(builtins)) - set(modules) - _bound_at_top(setup))
    return names, modules


# -- the judge's worker processes ------------------------------------------------------------------------------
class _Judge:
    def __init__(self, memory_mb: int, startup_timeout: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "r1gym.plugins.code.calljudge", str(memory_mb)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        self.buffer = b""
        ready = self.read(time.monotonic() + startup_timeout)
        if ready != {"ready": True}:
            self.kill()
            raise RuntimeError(f"the judge process did not start ({ready!r}); run `python -m r1gym.plugins.code.calljudge` to see why")

    def read(self, deadline: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return {"error": f"the judge process died (exit code {self.proc.poll()})"}
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class JudgePool:
    """A few judge processes (:mod:`.calljudge`) kept warm. A job's time limit starts when a process picks it
    up, never while it waits for one, so a burst of slow jobs does not time out the fast ones behind them;
    a process that overruns is killed and replaced."""

    def __init__(self, workers: int = 2, memory_mb: int = 2048, startup_timeout: float = 60.0):
        self.memory_mb, self.startup_timeout = memory_mb, startup_timeout
        self._idle: queue.Queue[_Judge | None] = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # started on first use
        self._all: set[_Judge] = set()
        self._lock = threading.Lock()

    def run(self, job: dict, timeout: float) -> dict:
        """The judge's answer to ``job``, or ``{"error": why}`` (a crash), with ``"overran": True`` when the
        job went past its time or memory limit."""
        judge = self._idle.get()
        try:
            if judge is None:
                judge = _Judge(self.memory_mb, self.startup_timeout)
                with self._lock:
                    self._all.add(judge)
            judge.proc.stdin.write((json.dumps(job) + "\n").encode())
            judge.proc.stdin.flush()
            answer = judge.read(time.monotonic() + timeout)
            if answer is None or "error" in answer and "died" in answer["error"]:
                self._retire(judge)
                judge = None
                return answer or {"error": f"the judge took longer than {timeout:g} s", "overran": True}
            if answer.get("error") == "out of memory":
                answer["overran"] = True
            return answer
        except (OSError, RuntimeError) as exc:
            if judge is not None:
                self._retire(judge)
                judge = None
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._idle.put(judge)

    def _retire(self, judge: _Judge) -> None:
        judge.kill()
        with self._lock:
            self._all.discard(judge)

    def close(self) -> None:
        with self._lock:
            judges, self._all = list(self._all), set()
        for j in judges:
            j.kill()


_DEFAULT: JudgePool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_judge() -> JudgePool:
    """The process-wide judge pool (``$R1GYM_JUDGE_WORKERS`` processes, default 2)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = JudgePool(int(os.environ.get(JUDGE_WORKERS_ENV, "") or 2))
            atexit.register(_DEFAULT.close)
        return _DEFAULT


# -- one task's tests against one candidate ------------------------------------------------------------------
@dataclass
class CallVerdicts:
    """Per test: passed or not and why; the candidate's last sandbox run; the flags raised."""

    passed: list[bool]
    reasons: list[str]
    run: Any
    flags: list[str] = field(default_factory=list)
    rounds: int = 1


_RECORDED: OrderedDict[str, list[str]] = OrderedDict()
_RECORDED_LOCK = threading.Lock()
_RECORDED_MAX = 4096


def _outcomes(run: Any, keys: list[str]) -> tuple[dict[str, dict], str | None, bool]:
    """(outcome per call key, why the solution did not load or None, the program ended cleanly early)."""
    answered: dict[int, dict] = {}
    load_error, done = None, False
    for line in run.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "load" in record and load_error is None and not answered:
            load_error = ": ".join(str(x) for x in record["load"])[:300] if isinstance(record["load"], list) else "?"
        elif record.get("done") == len(keys):
            done = True
        elif type(record.get("i")) is int and 0 <= record["i"] < len(keys) and record["i"] not in answered:
            answered[record["i"]] = _checked(record)
    if run.status == "ok":
        missing = "the program ended before answering this call (exit code 0)"
    else:
        missing = f"the program stopped before answering this call: {run.status}" + (f" ({run.detail})" if run.detail else "")
    out = {key: answered.get(i) or {"fail": load_error and f"the solution does not load: {load_error}" or missing}
           for i, key in enumerate(keys)}
    ended_early = run.status == "ok" and load_error is None and not done and len(answered) < len(keys)
    return out, load_error, ended_early


def _checked(record: dict) -> dict:
    """A call's outcome as the runner wrote it, if it is well formed (plain data only), else a failure."""
    try:
        if "ok" in record:
            decode(record["ok"])
            out = {"ok": record["ok"]}
            if "after" in record:
                [decode(a) for a in record["after"]]
                out["after"] = record["after"]
            return out
        if "raise" in record:
            kind, message = record["raise"]
            if type(kind) is str and type(message) is str:
                return {"raise": [kind, message[:300]]}
        if "fail" in record and type(record["fail"]) is str:
            return {"fail": record["fail"][:300]}
    except (ValueError, TypeError, RecursionError):
        pass
    return {"fail": "the answer is not plain data"}


def run_call_tests(
    code: str,
    tests: Sequence[str],
    *,
    setup: str = "",
    entry_point: str | Sequence[str] | None = None,
    time_limit: float = 5.0,
    memory_mb: int = 512,
    pool: Any,
    judge: JudgePool | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    judge_timeout: float | None = None,
) -> CallVerdicts:
    """Judge ``code`` on the function-call ``tests`` (each a piece of test code: an assert, a
    ``check(f)``); ``pool`` is the sandbox pool the candidate runs on. Raises :class:`Unscorable` when the
    sandbox or the judge fails, or a test cannot be judged this way (see the module docstring).
    ``judge_timeout`` bounds each judge job (default ``max(5, 2 * time_limit)`` seconds)."""
    from r1gym.core.contracts import Limits, Program

    judge = judge or default_judge()
    names, modules = expected_names(tests, setup, entry_point)
    base = {"setup": setup, "tests": list(tests), "names": names, "modules": modules}
    judge_timeout = judge_timeout or max(5.0, 2 * time_limit)
    task_key = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()
    with _RECORDED_LOCK:
        calls = _RECORDED.get(task_key)
        if calls is not None:
            _RECORDED.move_to_end(task_key)
    if calls is None:
        calls = _record(judge, base, {}, judge_timeout, first=True)
        with _RECORDED_LOCK:
            _RECORDED[task_key] = calls
            while len(_RECORDED) > _RECORDED_MAX:
                _RECORDED.popitem(last=False)
    flags = ["hack_pattern"] if hack_patterns(code) else []
    limits = Limits(time_s=time_limit * max(1, len(tests)), memory_mb=memory_mb)
    known: dict[str, dict] = {}
    run, load_error = None, None
    for rounds in range(1, max_rounds + 1):
        todo = [k for k in calls if k not in known]
        if todo or run is None:
            source = f"{RUNNER_SOURCE}\n\nmain({[json.loads(k) for k in todo]!r}, {setup!r})\n"
            run = pool.submit(Program("python", source, files={"solution.py": code}), limits).result()
            if run.status == "sandbox_error":
                raise Unscorable(f"sandbox error: {run.detail or run.stderr[-200:]}")
            outcomes, error, ended_early = _outcomes(run, todo)
            load_error = load_error or error
            known.update(outcomes)
            if ended_early and "ended_early" not in flags:
                flags.append("ended_early")
        if load_error:
            return CallVerdicts([False] * len(tests), [f"the solution does not load: {load_error}"] * len(tests),
                                run, flags, rounds)
        answer = judge.run({**base, "mode": "verdict", "known": known}, judge_timeout)
        if answer.get("overran"):  # the test ran quickly without the candidate (recording): its answers did this
            why = f"the test did not finish on the candidate's answers: {answer['error']}"
            return CallVerdicts([False] * len(tests), [why] * len(tests), run, flags, rounds)
        if "error" in answer:
            raise Unscorable(f"the judge failed: {answer['error']}")
        results = answer["results"]
        broken = next((r for r in results if r["status"] == "unscorable"), None)
        if broken:
            raise Unscorable(broken["reason"])
        needed = [k for r in results if r["status"] == "need" for k in r["need"] if k not in known]
        if not needed:
            return CallVerdicts([r["status"] == "pass" for r in results], [r["reason"] for r in results], run, flags, rounds)
        more = _record(judge, base, known, judge_timeout)
        calls = list(dict.fromkeys([*calls, *needed, *more]))
    raise Unscorable(f"the tests kept calling the candidate with arguments that depend on its earlier answers "
                     f"for more than {max_rounds} rounds")


def _record(judge: JudgePool, base: Mapping[str, Any], known: Mapping[str, dict], timeout: float,
            first: bool = False) -> list[str]:
    """The calls the tests make that ``known`` does not answer. On the ``first`` recording (no answers yet),
    a test that calls none of the candidate's functions is a broken test: it would pass any solution."""
    answer = judge.run({**base, "mode": "record", "known": dict(known)}, timeout)
    if "error" in answer:
        raise Unscorable(f"recording the test's calls failed: {answer['error']}")
    if answer["problems"]:
        raise Unscorable(answer["problems"][0])
    if first and answer["silent"]:
        raise Unscorable(f"test {answer['silent'][0]} never calls {', '.join(base['names']) or 'the solution'}: "
                         "it cannot tell a right solution from a wrong one")
    return [k for k in answer["calls"] if k not in known]
