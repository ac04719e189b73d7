"""Code rewards: ``code_tests`` (run the completion's program against the task's tests) and ``code_format``.

Test cases come with the task (its ``tests`` field), in either of two shapes:

* ``{"stdin": "...", "stdout": "..."}``: the program reads stdin; its stdout must equal the expected one,
  compared line by line after stripping trailing whitespace, numbers within ``float_tolerance``;
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

import math
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from r1gym.core.rewards import Unscorable

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#-]*)[^\n]*\n(.*?)```", re.DOTALL)
_ALIASES = {"python": ("python", "py", "python3"), "cpp": ("cpp", "c++", "cc", "cxx")}


def extract_code(completion: str, language: str = "python") -> str | None:
    """The last fenced code block tagged as ``language`` (or untagged), or ``None``."""
    names = _ALIASES.get(language, (language,))
    blocks = [body for tag, body in _FENCE.findall(completion) if tag.lower() in names or tag == ""]
    return blocks[-1] if blocks else None


def outputs_match(got: str, expected: str, float_tolerance: float = 1e-6) -> bool:
    """Line-by-line, token-by-token comparison; trailing whitespace and blank trailing lines are ignored,
    and tokens that are both numbers compare within ``float_tolerance`` (absolute or relative)."""
    g, e = got.rstrip().splitlines(), expected.rstrip().splitlines()
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e):
        gt, et = gl.split(), el.split()
        if len(gt) != len(et):
            return False
        for a, b in zip(gt, et):
            if a == b:
                continue
            try:
                x, y = float(a), float(b)
            except ValueError:
                return False
            if not math.isclose(x, y, rel_tol=float_tolerance, abs_tol=float_tolerance):
                return False
    return True


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
    """One test case run: the test, what the sandbox returned, whether it passed. ``output`` is what the
    program printed (for an assert test, without our end-of-run token line)."""

    test: dict[str, Any]
    result: Any
    passed: bool
    token: str | None = None

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
    float_tolerance: float = 1e-6,
    sandbox: str = "local",
    sandbox_options: Mapping[str, Any] | None = None,
    workers: int = 4,
) -> list[CaseResult]:
    """Run ``code`` against ``tests`` on the sandbox pool; one :class:`CaseResult` per test run (fewer with
    ``stop_at_first_failure``, which runs them one after another). Raises :class:`Unscorable` when there are
    no tests, a test has neither shape, or the sandbox could not run one."""
    from r1gym.plugins.code.sandbox import Limits, Program

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
    if stop_at_first_failure:
        results = []
        for k, prog in enumerate(programs):
            results.append(pool.submit(prog, limits).result())
            if results[-1].status == "sandbox_error" or not _passed(results[-1], tests[k], tokens[k], float_tolerance):
                break
    else:
        results = pool.map(programs, limits)
    broken = [r for r in results if r.status == "sandbox_error"]
    if broken:
        raise Unscorable(f"sandbox error: {broken[0].detail or broken[0].stderr[-200:]}")
    return [CaseResult(dict(t), r, _passed(r, t, token, float_tolerance), token)
            for r, t, token in zip(results, tests, tokens)]


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
    float_tolerance: float = 1e-6,
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
    """
    if mode not in ("fraction", "all"):
        raise ValueError(f"mode must be 'fraction' or 'all', got {mode!r}")
    if not tests:
        raise Unscorable("the task has no test cases")
    code = extract_code(completion, language)
    if code is None:
        return 0.0
    runs = run_tests(code, tests, language=language, setup=setup, stop_at_first_failure=stop_at_first_failure,
                     time_limit=time_limit, memory_mb=memory_mb, float_tolerance=float_tolerance, sandbox=sandbox,
                     sandbox_options=sandbox_options, workers=workers)
    passed = sum(run.passed for run in runs)
    if mode == "all":
        return 1.0 if passed == len(tests) else 0.0
    return passed / len(tests)


def _passed(result: Any, test: Mapping[str, Any], token: str | None, float_tolerance: float) -> bool:
    if result.status != "ok":
        return False
    if token is not None:  # an assert test: every assert ran and the program reached its last line
        lines = result.stdout.rstrip("\n").split("\n")
        return lines[-1] == token
    return outputs_match(result.stdout, str(test["stdout"]), float_tolerance)


def code_format(completion: str, *, language: str = "python") -> float:
    """1.0 if the completion has a fenced code block of ``language`` (or untagged) with something in it."""
    code = extract_code(completion, language)
    return 1.0 if code is not None and code.strip() else 0.0
