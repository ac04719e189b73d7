"""The judge side of function-call tests (:mod:`.callrunner` is the candidate's): the test code runs here,
against a stand-in for the candidate.

This process never runs candidate code. The test code (HumanEval's ``check(candidate)``, an MBPP assert)
runs in it with every name the test expects from the candidate (``candidate``'s argument, ``remove_Occ``,
...) bound to a *stand-in* function, in one of two modes:

* ``record``: a call whose outcome is known returns it; any other call is written down and returns a
  :class:`Pending` placeholder that lets arithmetic, indexing and attribute access go on but stops at
  anything that needs a real value (``bool``, iteration, ``len``, hashing). Assert statements are made soft
  (a failing or blocked assert goes on to the next statement), so one pass finds every call whose
  arguments do not depend on an unknown result. A call whose arguments hold a placeholder waits for the
  next round.
* ``verdict``: the test code as written; every call must have a known outcome, which is replayed: the
  recorded return value (decoded afresh each time, so the test may mutate it), the recorded exception
  (as the builtin of that name), or a failure no ``except Exception`` can swallow (the candidate returned
  something that is not plain data, or never answered). The test passes when it runs to its end.

Run as ``python -m r1gym.plugins.code.calljudge MEMORY_MB``, it serves jobs, one JSON line each, on stdin
(:class:`r1gym.plugins.code.harness.JudgePool` keeps a few such processes and kills one that overruns).
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import random
import sys
from collections.abc import Callable, Mapping
from typing import Any

from r1gym.plugins.code.callrunner import NotPlainData, decode, encode


class NeedValue(Exception):
    """A pending result was used where a real value is needed (record mode only)."""


class NeedCall(BaseException):
    """Verdict mode met a call with arguments never recorded; the key says which."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class CallFailed(BaseException):
    """The candidate's call cannot stand as a result (not plain data, never answered). A ``BaseException``,
    so test code that catches ``Exception`` cannot turn it into a pass."""


class Unsendable(BaseException):
    """The test calls the candidate with an argument that cannot be sent to the sandbox (a function, an
    object of a test-defined class): the harness, not the candidate, cannot judge it."""


def _need(*_: Any) -> Any:
    raise NeedValue("a result of the candidate is not known yet")


def _more(self: Any, *_: Any, **__: Any) -> Pending:
    return Pending()


class Pending:
    """Stands for a result not known yet (record mode). Derived values stay pending; a truth value,
    iteration, length, hash or text of one raises :class:`NeedValue`."""

    __slots__ = ()
    __bool__ = __iter__ = __len__ = __index__ = __int__ = __float__ = __complex__ = __hash__ = _need
    __contains__ = __str__ = __repr__ = __format__ = __bytes__ = _need

    def __getattr__(self, name: str) -> Pending:
        if name.startswith("__"):
            raise AttributeError(name)
        return Pending()


for _op in ("call", "getitem", "neg", "pos", "abs", "invert", "round", "trunc", "floor", "ceil",
            "eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Pending, f"__{_op}__", _more)
for _op in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "divmod", "pow", "lshift", "rshift",
            "and", "xor", "or"):
    setattr(Pending, f"__{_op}__", _more)
    setattr(Pending, f"__r{_op}__", _more)


def _holds_pending(value: Any, depth: int = 0) -> bool:
    if isinstance(value, Pending):
        return True
    if depth < 64 and type(value) in (list, tuple, set, frozenset):
        return any(_holds_pending(v, depth + 1) for v in value)
    if depth < 64 and type(value) is dict:
        return any(_holds_pending(k, depth + 1) or _holds_pending(v, depth + 1) for k, v in value.items())
    return False


def call_key(name: str, args: tuple, kwargs: Mapping[str, Any]) -> str:
    """The canonical text of one call (raises :class:`NotPlainData` for an argument that is not plain)."""
    return json.dumps([name, [encode(a) for a in args], [[k, encode(v)] for k, v in sorted(kwargs.items())]])


def _raise_recorded(kind: str, message: str) -> None:
    cls = getattr(builtins, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):  # SystemExit, KeyboardInterrupt, own classes
        cls, message = RuntimeError, f"{kind}: {message}"
    raise cls(message)


def _apply_after(args: tuple, after: list) -> None:
    """Replay an in-place change the candidate made to its list, dict or set arguments."""
    for arg, new in zip(args, after):
        value = decode(new)
        if type(arg) is list and type(value) is list:
            arg[:] = value
        elif type(arg) in (dict, set) and type(arg) is type(value):
            arg.clear()
            arg.update(value)


class StandIn:
    """The candidate's function ``name`` as the test sees it: replays known outcomes, notes the rest."""

    def __init__(self, name: str, known: Mapping[str, dict], mode: str, seen: dict[str, None], problems: list[str],
                 failures: list[str], made: list[int]):
        self.__name__ = self.__qualname__ = name
        self.known, self.mode, self.seen, self.problems, self.failures = known, mode, seen, problems, failures
        self.made = made  # calls made, known or not

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.made[0] += 1
        try:
            key = call_key(self.__name__, args, kwargs)
        except (NotPlainData, RecursionError) as exc:
            if self.mode == "record":
                if not _holds_pending((args, kwargs)):
                    self.problems.append(f"the test calls {self.__name__} with {exc}, which cannot be sent to the sandbox")
                return Pending()
            self.problems.append(f"the test calls {self.__name__} with {exc}, which cannot be sent to the sandbox")
            raise Unsendable(self.problems[-1]) from None
        outcome = self.known.get(key)
        if outcome is None:
            self.seen[key] = None
            if self.mode == "record":
                return Pending()
            raise NeedCall(key)
        if "raise" in outcome:
            _raise_recorded(*outcome["raise"])
        if "ok" not in outcome:
            if self.mode == "record":
                return Pending()
            self.failures.append(outcome.get("fail", "no result"))
            raise CallFailed(self.failures[-1])
        if "after" in outcome:
            _apply_after(args, outcome["after"])
        return decode(outcome["ok"])


class _SoftAsserts(ast.NodeTransformer):
    """``assert x`` becomes ``try: assert x`` / ``except Exception: pass`` (record mode)."""

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        handler = ast.ExceptHandler(type=ast.Name("Exception", ast.Load()), name=None, body=[ast.Pass()])
        return ast.Try(body=[node], handlers=[handler], orelse=[], finalbody=[])


def _compile(source: str, soft: bool) -> Any:
    tree = ast.parse(source)
    if soft:
        tree = ast.fix_missing_locations(_SoftAsserts().visit(tree))
    return compile(tree, "test.py", "exec")


def _namespace(setup: str, names: list[str], modules: list[str], make: Callable[[str], StandIn]) -> dict:
    """A fresh namespace with ``setup`` run and the stand-ins bound. The ``random`` module is reseeded, so
    a test that draws random arguments (HumanEval 50, 53) draws the same ones in every round."""
    random.seed(0)
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for m in modules:
        try:
            ns[m] = __import__(m)
        except ImportError:
            pass
    if setup:
        exec(compile(setup, "setup.py", "exec"), ns)
    for name in names:
        ns[name] = make(name)
    return ns


def run_job(job: dict) -> dict:
    """One job: ``{"mode", "setup", "tests": [source, ...], "names", "modules", "known": {key: outcome}}``.

    record: ``{"calls": [key, ...], "problems": [...], "silent": [index, ...]}``: the calls not known yet,
    in the order first made, and the tests that never called the candidate at all.
    verdict: ``{"results": [{"status": pass|fail|need|unscorable, "reason", "need"}, ...]}``, one per test.
    What the stand-in saw decides over what the test code did with it: a test that swallowed (with a bare
    ``except:``) a call it could not make, or a call that failed, does not pass.
    """
    mode, known = job["mode"], job.get("known", {})
    seen: dict[str, None] = {}
    problems: list[str] = []
    results, silent = [], []
    for index, source in enumerate(job["tests"]):
        seen_before, problems_before = len(seen), len(problems)
        failures: list[str] = []
        made = [0]
        ns = None
        try:
            code = _compile(source, soft=mode == "record")
            ns = _namespace(job.get("setup", ""), job["names"], job.get("modules", []),
                            lambda n: StandIn(n, known, mode, seen, problems, failures, made))
            exec(code, ns)
            status, reason = "pass", ""
        except SystemExit as exc:
            status, reason = ("pass", "") if exc.code in (0, None) else ("fail", f"the test exited with {exc.code!r}")
        except BaseException as exc:  # noqa: BLE001 - whatever the test raised is its verdict
            status = "fail" if ns is not None else "unscorable"
            reason = _describe(exc) if ns is not None else (
                f"the task's setup or test does not run without the solution ({_describe(exc)}): it needs the "
                "solution's own classes or globals, which function-call tests cannot judge")
        if mode == "record":
            if ns is None:
                problems.append(reason)
            if not made[0]:
                silent.append(index)
            continue
        new_calls = list(seen)[seen_before:]
        if problems[problems_before:]:
            status, reason = "unscorable", problems[problems_before]
        elif new_calls:
            status, reason = "need", "called with arguments not recorded"
        elif failures:
            status, reason = "fail", f"the candidate's call failed: {failures[0]}"
        results.append({"status": status, "reason": reason, "need": new_calls})
    if mode == "record":
        return {"calls": list(seen), "problems": problems, "silent": silent}
    return {"results": results}


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def serve(memory_mb: int) -> None:
    """Answer jobs on stdin, one JSON line in, one JSON line out, until stdin closes."""
    import resource

    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    reply = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what test code prints goes nowhere
    sys.stdout = open(1, "w", closefd=False)
    sys.setrecursionlimit(10_000)
    reply.write('{"ready": true}\n')
    reply.flush()
    for line in sys.stdin:
        try:
            answer = run_job(json.loads(line))
        except MemoryError:
            answer = {"error": "out of memory"}
        except BaseException as exc:  # noqa: BLE001 - a broken job must not end the server
            answer = {"error": _describe(exc)}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
