"""Code rewards: ``code_tests`` (run the completion's program against the task's tests) and ``code_format``.

Test cases come with the task (its ``tests`` field), in either of two shapes:

* ``{"stdin": "...", "stdout": "..."}``: the program reads stdin; its stdout is judged against the expected
  one by the task's ``comparison`` (default: the reward's ``default_comparison``, ``"tokens"``), see
  :mod:`r1gym.plugins.code.compare`:

  - ``tokens``: Codeforces' default (testlib's ``wcmp``): the same whitespace-separated tokens, line breaks
    counting as whitespace (``1\\n2\\n3`` matches ``1 2 3``);
  - ``lines``: the same tokens line by line, trailing blank lines ignored;
  - ``exact``: the same lines, character for character (CRLF as LF, the final line break optional);
  - ``{"mode": "tokens", "float_abs": 1e-6, "float_rel": 1e-6}`` (or ``"tokens float_abs=1e-6
    float_rel=1e-6"``): numbers match within an absolute or a relative error (testlib's ``rcmp``);
  - ``{"mode": "checker", "checker": "<python source>"}``: a special judge for problems with several correct
    outputs, run in its own sandbox run as ``checker.py input.txt output.txt answer.txt`` (testlib's order:
    test input, program output, expected answer); exit 0 passes, 1 (wrong answer) and 2 (presentation
    error) fail, any other ending (3, an exception, a timeout) makes the completion *cannot be scored*;

* ``{"assert": "assert f(2) == 4"}`` (any test code: HumanEval's ``check(f)``, MBPP's asserts): a
  function-call test, judged by :mod:`r1gym.plugins.code.harness` so that the candidate never shares a
  process or a file with the test: the test's calls are recorded without the candidate, only their
  arguments go to the sandbox, the return values come back as plain data and the test runs on them in a
  judge process that never ran candidate code. The task's ``entry_point`` (HumanEval) names the function
  under test; without one, the names the test uses and does not define. ``setup`` (HumanEval's prompt,
  MBPP's ``test_setup_code``) runs before the candidate's code and before the test. All the assert tests
  of a task share one sandbox run.

``code_tests`` returns a :class:`~r1gym.core.rewards.Graded` with ``flags``: ``ended_early`` (the program
exited cleanly before answering every call) and ``hack_pattern`` (the code uses a trick from
:data:`r1gym.plugins.code.harness.HACK_PATTERNS`), counted per step by the trainer.

A sandbox that could not run a test (``sandbox_error``) makes the completion *cannot be scored*, never 0; a
timeout, crash, memory or output overrun is the program's failure.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r1gym.core.rewards import Graded, Unscorable
from r1gym.plugins.code.compare import Comparison, Verdict, checker_program, checker_verdict, compare_outputs, parse_comparison

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#-]*)[^\n]*\n(.*?)```", re.DOTALL)
_ALIASES = {"python": ("python", "py", "python3"), "cpp": ("cpp", "c++", "cc", "cxx")}


def extract_code(completion: str, language: str = "python") -> str | None:
    """The last fenced code block tagged as ``language`` (or untagged), or ``None``."""
    names = _ALIASES.get(language, (language,))
    blocks = [body for tag, body in _FENCE.findall(completion) if tag.lower() in names or tag == ""]
    return blocks[-1] if blocks else None


def outputs_match(got: str, expected: str, comparison: Any = "lines float_abs=1e-6 float_rel=1e-6") -> bool:
    """Whether ``got`` passes against ``expected`` under ``comparison`` (see :mod:`r1gym.plugins.code.compare`;
    the default is the line-by-line comparison with numbers within 1e-6 that ``code_tests`` used before
    ``tokens`` became its default)."""
    return compare_outputs(got, expected, comparison).ok


_POOLS: dict[tuple[int, str, int, str], tuple[Any, Any]] = {}  # key -> (the host, kept alive so its id stays its own; pool)
_POOLS_LOCK = threading.Lock()


def _pool(name: str, workers: int, options: Mapping[str, Any] | None = None, host: PluginHost | None = None) -> Any:
    """The sandbox pool for (host, backend, workers, options), made once per process and shared by all calls;
    the backend ``name`` is looked up in ``host`` (default: the process-wide host)."""
    from r1gym.core.plugins import default_host
    from r1gym.plugins.code.sandbox import SandboxPool

    host = host or default_host()
    key = (id(host), name, workers, repr(sorted((options or {}).items())))
    with _POOLS_LOCK:
        if key not in _POOLS:
            factory = host.sandboxes.get(name)  # an unknown name lists the known ones
            _POOLS[key] = (host, SandboxPool(factory(**dict(options or {})), workers))
        return _POOLS[key][1]


@dataclass
class CaseResult:
    """One test case run: the test, what the sandbox returned, whether it passed and why (``message``: the
    comparison's, the checker's or the judge's words, or the run's status), and the harness's ``flags``.
    For an assert test, ``result`` is the sandbox run of the candidate that all the task's assert tests
    share."""

    test: dict[str, Any]
    result: Any
    passed: bool
    message: str = ""
    flags: tuple[str, ...] = ()

    @property
    def output(self) -> str:
        """What the program printed (a stdin/stdout test's output)."""
        return self.result.stdout


def run_tests(
    code: str,
    tests: Sequence[dict[str, Any]],
    *,
    language: str = "python",
    setup: str = "",
    entry_point: str | Sequence[str] | None = None,
    stop_at_first_failure: bool = False,
    time_limit: float = 5.0,
    memory_mb: int = 512,
    comparison: Any = None,
    sandbox: str = "local",
    sandbox_options: Mapping[str, Any] | None = None,
    workers: int = 4,
    host: PluginHost | None = None,
) -> list[CaseResult]:
    """Run ``code`` against ``tests`` on the sandbox pool; one :class:`CaseResult` per test run (fewer with
    ``stop_at_first_failure``, which runs them one after another). ``comparison`` judges the stdin/stdout
    tests (anything :func:`~r1gym.plugins.code.compare.parse_comparison` takes; ``None`` is ``tokens``); a
    checker runs in a sandbox run of its own, after the program's, under the same limits. The assert tests
    are judged together by :func:`r1gym.plugins.code.harness.run_call_tests` (``setup``, ``entry_point``).
    Raises :class:`Unscorable` when there are no tests, a test has neither shape, the sandbox could not run
    one, or a checker or the judge failed."""
    from r1gym.core.contracts import Limits, Program
    from r1gym.plugins.code.harness import run_call_tests

    comparison = parse_comparison(comparison)
    if not tests:
        raise Unscorable("the task has no test cases")
    for t in tests:
        if "assert" not in t and "stdout" not in t:
            raise Unscorable(f"a test case needs 'assert' or 'stdout', got keys {sorted(t)}")
    limits = Limits(time_s=time_limit, memory_mb=memory_mb)
    pool = _pool(sandbox, workers, sandbox_options, host)
    cases: dict[int, CaseResult] = {}
    calls = [k for k, t in enumerate(tests) if "assert" in t]
    if calls:
        if language != "python":
            raise Unscorable(f"assert-style tests need language python, got {language!r}")
        verdicts = run_call_tests(code, [str(tests[k]["assert"]) for k in calls], setup=setup, entry_point=entry_point,
                                  time_limit=time_limit, memory_mb=memory_mb, pool=pool)
        for k, passed, reason in zip(calls, verdicts.passed, verdicts.reasons):
            cases[k] = CaseResult(dict(tests[k]), verdicts.run, passed, reason, tuple(verdicts.flags))
    io = [k for k, t in enumerate(tests) if "assert" not in t]
    judge = _Judge(comparison, pool, limits)
    programs = {k: Program(language, code, stdin=str(tests[k].get("stdin", ""))) for k in io}
    if stop_at_first_failure:
        ordered = []
        for k in range(len(tests)):
            if k not in cases:
                cases[k] = judge(k, tests[k], pool.submit(programs[k], limits).result())
            ordered.append(cases[k])
            if not cases[k].passed:
                break
        return ordered
    results = dict(zip(io, pool.map([programs[k] for k in io], limits)))
    _raise_if_broken(list(results.values()))
    checks = {k: judge.submit_checker(tests[k], results[k]) for k in io}
    cases.update({k: judge(k, tests[k], results[k], checks[k]) for k in io})
    return [cases[k] for k in range(len(tests))]


def _raise_if_broken(results: Sequence[Any]) -> None:
    broken = [r for r in results if r.status == "sandbox_error"]
    if broken:
        raise Unscorable(f"sandbox error: {broken[0].detail or broken[0].stderr[-200:]}")


@dataclass
class _Judge:
    """Judges one test's run: the comparison, or the checker's own sandbox run (started by
    :meth:`submit_checker` so that the checkers of many tests run at once)."""

    comparison: Comparison
    pool: Any
    limits: Any

    def submit_checker(self, test: Mapping[str, Any], result: Any) -> Any:
        if self.comparison.mode != "checker" or result.status != "ok":
            return None
        program = checker_program(self.comparison, str(test.get("stdin", "")), str(test["stdout"]), result.stdout)
        return self.pool.submit(program, self.limits)

    def __call__(self, index: int, test: Mapping[str, Any], result: Any, checked: Any = None) -> CaseResult:
        _raise_if_broken([result])
        if checked is None:
            checked = self.submit_checker(test, result)
        try:
            verdict = _passed(result, test, self.comparison, checked.result() if checked is not None else None)
        except Unscorable as exc:  # a checker failure: say on which test
            raise Unscorable(f"test {index}: {exc}") from None
        return CaseResult(dict(test), result, verdict.ok, verdict.message)


def code_tests(
    completion: str,
    *,
    tests: Sequence[dict[str, Any]],
    language: str = "python",
    setup: str = "",
    entry_point: str | Sequence[str] | None = None,
    mode: str = "fraction",
    stop_at_first_failure: bool = False,
    time_limit: float = 5.0,
    memory_mb: int = 512,
    comparison: Any = None,
    default_comparison: Any = "tokens",
    sandbox: str = "local",
    sandbox_options: Mapping[str, Any] | None = None,
    workers: int = 4,
    host: PluginHost | None = None,
) -> float:
    """Share of ``tests`` passed (``mode="fraction"``) or 1/0 for all of them (``mode="all"``).

    ``sandbox`` names a registered backend (``local``, ``e2b``, ...) and ``sandbox_options`` are its
    parameters (e.g. ``{"max_concurrent": 16}`` for e2b), looked up in ``host`` (the env's plugin host, passed
    in by the reward set; default: the process-wide host). No code block is 0.0. A test the sandbox could
    not run raises :class:`Unscorable`. With ``stop_at_first_failure`` the tests run one after another and
    stop at the first failure (cheaper for all-or-nothing scoring); otherwise they run concurrently on the
    sandbox pool.

    ``comparison`` is the task's own way of judging stdin/stdout outputs (its ``comparison`` field);
    without one, ``default_comparison`` (the reward's config) applies: ``tokens``, ``lines``, ``exact``,
    ``"tokens float_abs=1e-6 float_rel=1e-6"``, ``{"mode": "checker", "checker": ...}`` (see the module
    docstring). A program that prints ``1``, ``2`` and ``3`` on three lines passes a test expecting
    ``1 2 3`` under ``tokens``, not under ``lines``.

    Assert tests (``entry_point``: the function under test, HumanEval's field) are judged without the
    candidate seeing them (see the module docstring); the value's ``flags`` say what the harness noticed.
    """
    if mode not in ("fraction", "all"):
        raise ValueError(f"mode must be 'fraction' or 'all', got {mode!r}")
    if not tests:
        raise Unscorable("the task has no test cases")
    code = extract_code(completion, language)
    if code is None:
        return 0.0
    runs = run_tests(code, tests, language=language, setup=setup, entry_point=entry_point,
                     stop_at_first_failure=stop_at_first_failure, time_limit=time_limit, memory_mb=memory_mb,
                     comparison=default_comparison if comparison is None else comparison, sandbox=sandbox,
                     sandbox_options=sandbox_options, workers=workers, host=host)
    passed = sum(run.passed for run in runs)
    flags = [f for run in runs for f in run.flags]
    if mode == "all":
        return Graded(1.0 if passed == len(tests) else 0.0, flags=flags)
    return Graded(passed / len(tests), flags=flags)


def _passed(result: Any, test: Mapping[str, Any], comparison: Comparison, checked: Any = None) -> Verdict:
    """The verdict on one stdin/stdout run: ``checked`` is the checker's run for ``comparison`` mode ``checker``."""
    if result.status != "ok":
        return Verdict(False, result.status + (f" ({result.detail})" if result.detail else ""))
    if comparison.mode == "checker":
        return checker_verdict(checked)
    return compare_outputs(result.stdout, str(test["stdout"]), comparison)


def check_reference(
    reference: str,
    *,
    tests: Sequence[dict[str, Any]],
    comparison: Any = None,
    default_comparison: Any = "tokens",
    mode: str = "fraction",
    stop_at_first_failure: bool = False,
    **settings: Any,
) -> str | None:
    """Why a task's reference solution (plain code, not a completion) does not pass all its ``tests`` with
    the settings ``code_tests`` would use (its keyword arguments; ``mode`` and ``stop_at_first_failure`` are
    ignored: every test runs), or ``None`` when it does: the first failing test's index, its verdict and the
    tail of its stderr, and how many fail. ``r1gym data check`` calls this (as ``code_tests.check_reference``);
    raises :class:`Unscorable` as ``code_tests`` does."""
    if not str(reference).strip():
        return "the task has no reference solution"
    runs = run_tests(str(reference), tests, comparison=default_comparison if comparison is None else comparison,
                     **settings)
    failed = [k for k, run in enumerate(runs) if not run.passed]
    if not failed:
        return None
    first = runs[failed[0]]
    verdict = f"wrong answer: {first.message}" if first.result.status == "ok" else first.message
    stderr = " | ".join(first.result.stderr.strip().splitlines()[-3:])[-300:]
    return (f"{len(failed)} of {len(runs)} tests fail; first: test {failed[0]}: {verdict}"
            + (f"; stderr: {stderr}" if stderr else ""))


code_tests.check_reference = check_reference  # type: ignore[attr-defined]


def code_format(completion: str, *, language: str = "python") -> float:
    """1.0 if the completion has a fenced code block of ``language`` (or untagged) with something in it."""
    code = extract_code(completion, language)
    return 1.0 if code is not None and code.strip() else 0.0
