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

* ``{"assert": "assert f(2) == 4"}``: the assert statement is appended to the program, followed by a line
  that prints a random per-run token; the test passes only if the program exits 0 *and* its last output
  line is that token (the HumanEval/MBPP style; a ``setup`` field of the task, if any, goes first). Exit
  status alone is not enough: a solution that registers ``atexit(os._exit(0))`` or exits early would pass
  every assert (a known reward hack, caught by ``test_an_exit_0_wrapper_cannot_pass_assert_tests``). Code
  that reads its own source file or the interpreter's frames could still find the token; the sandbox
  keeps that inside one run.

A sandbox that could not run a test (``sandbox_error``) makes the completion *cannot be scored*, never 0; a
timeout, crash, memory or output overrun is the program's failure.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from r1gym.core.rewards import Unscorable
from r1gym.plugins.code.compare import Comparison, Verdict, checker_program, checker_verdict, compare_outputs, parse_comparison

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


_POOLS: dict[tuple[str, int, str], Any] = {}
_POOLS_LOCK = threading.Lock()


def _pool(name: str, workers: int, options: Mapping[str, Any] | None = None) -> Any:
    """The sandbox pool for (backend, workers, options), made once per process and shared by all calls."""
    from r1gym.core.plugins import default_host
    from r1gym.plugins.code.sandbox import SandboxPool

    key = (name, workers, repr(sorted((options or {}).items())))
    with _POOLS_LOCK:
        if key not in _POOLS:
            factory = default_host().sandboxes.get(name)  # an unknown name lists the known ones
            _POOLS[key] = SandboxPool(factory(**dict(options or {})), workers)
        return _POOLS[key]


@dataclass
class CaseResult:
    """One test case run: the test, what the sandbox returned, whether it passed and why (``message``: the
    comparison's or the checker's words, or the run's status). ``output`` is what the program printed (for
    an assert test, without our end-of-run token line)."""

    test: dict[str, Any]
    result: Any
    passed: bool
    token: str | None = None
    message: str = ""

    @property
    def output(self) -> str:
        out = self.result.stdout
        if self.token is not None and out.rstrip("\n").endswith(self.token):
            out = out.rstrip("\n")[: -len(self.token)]
        return out


def run_tests(
    code: str,
    tests: Sequence[dict[str, Any]],
    *,
    language: str = "python",
    setup: str = "",
    stop_at_first_failure: bool = False,
    time_limit: float = 5.0,
    memory_mb: int = 512,
    comparison: Any = None,
    sandbox: str = "local",
    sandbox_options: Mapping[str, Any] | None = None,
    workers: int = 4,
) -> list[CaseResult]:
    """Run ``code`` against ``tests`` on the sandbox pool; one :class:`CaseResult` per test run (fewer with
    ``stop_at_first_failure``, which runs them one after another). ``comparison`` judges the stdin/stdout
    tests (anything :func:`~r1gym.plugins.code.compare.parse_comparison` takes; ``None`` is ``tokens``); a
    checker runs in a sandbox run of its own, after the program's, under the same limits. Raises
    :class:`Unscorable` when there are no tests, a test has neither shape, the sandbox could not run one, or
    a checker failed."""
    from r1gym.plugins.code.sandbox import Limits, Program

    comparison = parse_comparison(comparison)
    if not tests:
        raise Unscorable("the task has no test cases")
    programs, tokens = [], []
    for t in tests:
        if "assert" in t:
            if language != "python":
                raise Unscorable(f"assert-style tests need language python, got {language!r}")
            token = secrets.token_hex(16)
            tokens.append(token)
            programs.append(Program(language, f"{setup}\n{code}\n\n{t['assert']}\nprint({token!r})\n"))
        elif "stdout" in t:
            tokens.append(None)
            programs.append(Program(language, code, stdin=str(t.get("stdin", ""))))
        else:
            raise Unscorable(f"a test case needs 'assert' or 'stdout', got keys {sorted(t)}")
    limits = Limits(time_s=time_limit, memory_mb=memory_mb)
    pool = _pool(sandbox, workers, sandbox_options)
    judge = _Judge(comparison, pool, limits)
    if stop_at_first_failure:
        cases = []
        for k, prog in enumerate(programs):
            cases.append(judge(tests[k], pool.submit(prog, limits).result(), tokens[k]))
            if not cases[-1].passed:
                break
        return cases
    results = pool.map(programs, limits)
    _raise_if_broken(results)
    checks = [judge.submit_checker(t, r, token) for t, r, token in zip(tests, results, tokens)]
    return [judge(t, r, token, checked) for t, r, token, checked in zip(tests, results, tokens, checks)]


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

    def submit_checker(self, test: Mapping[str, Any], result: Any, token: str | None) -> Any:
        if self.comparison.mode != "checker" or token is not None or result.status != "ok":
            return None
        program = checker_program(self.comparison, str(test.get("stdin", "")), str(test["stdout"]), result.stdout)
        return self.pool.submit(program, self.limits)

    def __call__(self, test: Mapping[str, Any], result: Any, token: str | None, checked: Any = None) -> CaseResult:
        _raise_if_broken([result])
        if checked is None:
            checked = self.submit_checker(test, result, token)
        verdict = _passed(result, test, token, self.comparison, checked.result() if checked is not None else None)
        return CaseResult(dict(test), result, verdict.ok, token, verdict.message)


def code_tests(
    completion: str,
    *,
    tests: Sequence[dict[str, Any]],
    language: str = "python",
    setup: str = "",
    mode: str = "fraction",
    stop_at_first_failure: bool = False,
    time_limit: float = 5.0,
    memory_mb: int = 512,
    comparison: Any = None,
    default_comparison: Any = "tokens",
    sandbox: str = "local",
    sandbox_options: Mapping[str, Any] | None = None,
    workers: int = 4,
) -> float:
    """Share of ``tests`` passed (``mode="fraction"``) or 1/0 for all of them (``mode="all"``).

    ``sandbox`` names a registered backend (``local``, ``e2b``, ...) and ``sandbox_options`` are its
    parameters (e.g. ``{"max_concurrent": 16}`` for e2b). No code block is 0.0. A test the sandbox could
    not run raises :class:`Unscorable`. With ``stop_at_first_failure`` the tests run one after another and
    stop at the first failure (cheaper for all-or-nothing scoring); otherwise they run concurrently on the
    sandbox pool.

    ``comparison`` is the task's own way of judging stdin/stdout outputs (its ``comparison`` field);
    without one, ``default_comparison`` (the reward's config) applies: ``tokens``, ``lines``, ``exact``,
    ``"tokens float_abs=1e-6 float_rel=1e-6"``, ``{"mode": "checker", "checker": ...}`` (see the module
    docstring). A program that prints ``1``, ``2`` and ``3`` on three lines passes a test expecting
    ``1 2 3`` under ``tokens``, not under ``lines``.
    """
    if mode not in ("fraction", "all"):
        raise ValueError(f"mode must be 'fraction' or 'all', got {mode!r}")
    if not tests:
        raise Unscorable("the task has no test cases")
    code = extract_code(completion, language)
    if code is None:
        return 0.0
    runs = run_tests(code, tests, language=language, setup=setup, stop_at_first_failure=stop_at_first_failure,
                     time_limit=time_limit, memory_mb=memory_mb,
                     comparison=default_comparison if comparison is None else comparison, sandbox=sandbox,
                     sandbox_options=sandbox_options, workers=workers)
    passed = sum(run.passed for run in runs)
    if mode == "all":
        return 1.0 if passed == len(tests) else 0.0
    return passed / len(tests)


def _passed(result: Any, test: Mapping[str, Any], token: str | None, comparison: Comparison,
            checked: Any = None) -> Verdict:
    """The verdict on one run: ``checked`` is the checker's run for ``comparison`` mode ``checker``."""
    if result.status != "ok":
        return Verdict(False, result.status + (f" ({result.detail})" if result.detail else ""))
    if token is not None:  # an assert test: every assert ran and the program reached its last line
        lines = result.stdout.rstrip("\n").split("\n")
        ok = lines[-1] == token
        return Verdict(ok, "" if ok else "an assert failed, or the program ended before the last one")
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
