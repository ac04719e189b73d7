"""How a stdin/stdout test's output is judged: the ``comparison`` of a task (or the reward's default).

Modes, after the checkers contest judges use (Codeforces' testlib: ``wcmp``, ``lcmp``, ``fcmp``, ``rcmp``):

* ``tokens`` (the default, testlib's ``wcmp``, Codeforces' default checker): both outputs as sequences of
  tokens separated by whitespace (space, tab, CR, LF; line breaks are whitespace like any other), which must
  be equal. ``1\\n2\\n3`` matches ``1 2 3``.
* ``lines`` (testlib's ``lcmp``): the same tokens, but line by line; trailing blank lines are ignored.
* ``exact`` (testlib's ``fcmp``): the lines must be equal character for character (CRLF counts as LF and the
  final line break is optional; trailing spaces and blank lines count).
* ``float_abs`` / ``float_rel`` (options of ``tokens`` and ``lines``, testlib's ``rcmp`` /
  ``doubleCompare``): two tokens that differ but are both decimal numbers match when
  ``|found - expected| <= float_abs`` or ``found`` lies within ``float_rel * |expected|`` of ``expected``
  (relative to the *expected* value, as testlib does). Other tokens still compare exactly.
* ``checker`` (a special judge, for problems with several correct outputs): a Python program run in the
  sandbox, separately from the candidate, testlib-style: ``checker.py input.txt output.txt answer.txt``
  (the test input, the *program's* output, the expected answer, in testlib's order; the files sit in its
  working directory). Exit code 0 is accepted, 1 wrong answer, 2 presentation error (both score 0);
  anything else (3 is testlib's FAIL, an exception, a crash, a timeout) is a checker failure and makes the
  completion *cannot be scored*, never 0. Its stderr is the message.

Written as a mode name, a mapping, or a compact string::

    "tokens"   "lines"   "exact"
    {"mode": "tokens", "float_abs": 1e-6, "float_rel": 1e-6}   or   "tokens float_abs=1e-6 float_rel=1e-6"
    {"mode": "checker", "checker": "<python source>"}

>>> compare_outputs("1\\n2\\n3\\n", "1 2 3", "tokens").ok, compare_outputs("1\\n2\\n3\\n", "1 2 3", "lines").ok
(True, False)
>>> compare_outputs("0.3333333", "0.333333333", "tokens float_abs=1e-6").ok
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

MODES = ("tokens", "lines", "exact", "checker")
CHECKER_LANGUAGES = ("python",)
#: checker exit codes (testlib's): accepted, wrong answer, presentation error; any other is a checker failure
CHECKER_OK, CHECKER_WA, CHECKER_PE = 0, 1, 2
_BLANKS = re.compile(r"[ \t\r\n]+")  # testlib's whitespace; str.split() would also split on \xa0, \x0c, ...
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CHECKER_MAIN = """\
import os, runpy, sys, traceback
sys.argv = ["checker.py", "input.txt", "output.txt", "answer.txt"]
try:
    runpy.run_path("checker.py", run_name="__main__")
except SystemExit:
    raise
except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(3)
"""


@dataclass(frozen=True)
class Comparison:
    """A validated comparison (see the module docstring); build one with :func:`parse_comparison`."""

    mode: str = "tokens"
    float_abs: float | None = None
    float_rel: float | None = None
    checker: str | None = None
    checker_language: str = "python"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"comparison mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        for name in ("float_abs", "float_rel"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.mode not in ("tokens", "lines"):
                raise ValueError(f"comparison option {name} applies to the modes tokens and lines, not {self.mode!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"comparison option {name} must be a number >= 0, got {value!r}")
        if self.mode == "checker":
            if not isinstance(self.checker, str) or not self.checker.strip():
                raise ValueError("comparison mode checker needs 'checker': the checker program's source")
            if self.checker_language not in CHECKER_LANGUAGES:
                raise ValueError(f"checker_language must be one of {', '.join(CHECKER_LANGUAGES)} (C++ testlib "
                                 f"checkers need testlib.h, which r1gym does not ship); got {self.checker_language!r}")
        elif self.checker is not None:
            raise ValueError(f"comparison option checker needs mode checker, not {self.mode!r}")


_KEYS = tuple(f.name for f in fields(Comparison))


def parse_comparison(spec: Any) -> Comparison:
    """A :class:`Comparison` from ``None`` (the default, ``tokens``), a mode name, a compact string
    (``"tokens float_abs=1e-6"``), a mapping with ``mode`` and options, or a :class:`Comparison`. Anything
    else, an unknown mode or option, or a bad value raises ``ValueError`` naming the valid choices."""
    if spec is None:
        return Comparison()
    if isinstance(spec, Comparison):
        return spec
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError(f"comparison must name a mode ({', '.join(MODES)}), got an empty string")
        mode, *options = spec.split()
        parsed: dict[str, Any] = {"mode": mode}
        for opt in options:
            key, sep, value = opt.partition("=")
            if not sep or key not in ("float_abs", "float_rel"):
                raise ValueError(f"comparison {spec!r}: options are float_abs=X and float_rel=X, got {opt!r}")
            try:
                parsed[key] = float(value)
            except ValueError:
                raise ValueError(f"comparison {spec!r}: {key} must be a number, got {value!r}") from None
        return Comparison(**parsed)
    if isinstance(spec, Mapping):
        unknown = sorted(set(map(str, spec)) - set(_KEYS))
        if unknown:
            raise ValueError(f"comparison has unknown key(s) {unknown}; valid keys: {', '.join(_KEYS)}")
        parsed = {str(k): v for k, v in spec.items()}
        for key in ("float_abs", "float_rel"):  # YAML 1.1 (PyYAML) reads 1e-6 as a string
            if isinstance(parsed.get(key), str):
                try:
                    parsed[key] = float(parsed[key])
                except ValueError:
                    raise ValueError(f"comparison option {key} must be a number >= 0, got {parsed[key]!r}") from None
        return Comparison(**parsed)
    raise ValueError(f"comparison must be a mode name ({', '.join(MODES)}), a string like 'tokens float_abs=1e-6' "
                     f"or a mapping with 'mode'; got {type(spec).__name__} {spec!r}")


@dataclass(frozen=True)
class Verdict:
    """Whether an output is accepted, and a testlib-like message saying why (or why not)."""

    ok: bool
    message: str


def compare_outputs(got: str, expected: str, comparison: Any = None) -> Verdict:
    """Judge ``got`` against ``expected`` with ``comparison`` (anything :func:`parse_comparison` takes). The
    ``checker`` mode needs a sandbox: see :func:`checker_program` and :func:`checker_verdict`."""
    cmp = parse_comparison(comparison)
    if cmp.mode == "tokens":
        return _tokens(_BLANKS.split(got.strip(" \t\r\n")), _BLANKS.split(expected.strip(" \t\r\n")), cmp, "")
    if cmp.mode == "lines":
        g, e = _lines(got, blank_tail=False), _lines(expected, blank_tail=False)
        for i, (gl, el) in enumerate(zip(g, e), 1):
            v = _tokens(_BLANKS.split(gl.strip(" \t\r")), _BLANKS.split(el.strip(" \t\r")), cmp, f" on line {i}")
            if not v.ok:
                return v
        if len(g) != len(e):
            return Verdict(False, f"{_count(len(g), 'line')} found, {len(e)} expected")
        return Verdict(True, _count(len(e), "line"))
    if cmp.mode == "exact":
        g, e = _lines(got, blank_tail=True), _lines(expected, blank_tail=True)
        for i, (gl, el) in enumerate(zip(g, e), 1):
            if gl != el:
                return Verdict(False, f"line {i} differs - expected: {_part(el)!r}, found: {_part(gl)!r}")
        if len(g) != len(e):
            return Verdict(False, f"{_count(len(g), 'line')} found, {len(e)} expected")
        return Verdict(True, _count(len(e), "line"))
    raise ValueError("comparison mode checker runs a program: use checker_program() and checker_verdict()")


def _lines(text: str, blank_tail: bool) -> list[str]:
    """Lines (CRLF as LF, no final line break); without ``blank_tail`` also no trailing blank lines."""
    text = text.replace("\r\n", "\n")
    text = text[:-1] if text.endswith("\n") else text
    lines = text.split("\n") if text else []
    while lines and not blank_tail and not lines[-1].strip(" \t\r"):
        lines.pop()
    return lines


def _tokens(got: list[str], expected: list[str], cmp: Comparison, where: str) -> Verdict:
    got, expected = [t for t in got if t], [t for t in expected if t]
    for n, (g, e) in enumerate(zip(got, expected), 1):
        if g != e and not _close(g, e, cmp):
            return Verdict(False, f"token {n}{where} differs - expected: {_part(e)!r}, found: {_part(g)!r}")
    if len(got) > len(expected):
        return Verdict(False, f"extra tokens{where}: {len(got)} found, {len(expected)} expected")
    if len(got) < len(expected):
        return Verdict(False, f"output ends early{where}: {_count(len(got), 'token')} found, {len(expected)} expected")
    return Verdict(True, _count(len(expected), "token"))


def _close(got: str, expected: str, cmp: Comparison) -> bool:
    """testlib's doubleCompare, with the absolute and the relative bound as separate options."""
    if (cmp.float_abs is None and cmp.float_rel is None) or not (_NUMBER.fullmatch(got) and _NUMBER.fullmatch(expected)):
        return False
    p, j = float(got), float(expected)
    if math.isinf(j) or math.isinf(p):  # overflowed literals: only the same infinity matches
        return p == j
    if cmp.float_abs is not None and abs(p - j) <= cmp.float_abs + 1e-15:
        return True
    return cmp.float_rel is not None and abs(p - j) <= cmp.float_rel * abs(j) + 1e-15


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _part(token: str, limit: int = 64) -> str:
    return token if len(token) <= limit else token[: limit - 3] + "..."


# -- special judges -----------------------------------------------------------------------------------------
def checker_program(comparison: Comparison, stdin: str, expected: str, got: str) -> Any:
    """The sandbox :class:`~r1gym.core.contracts.Program` that runs ``comparison``'s checker on one test:
    a fixed ``main.py`` that runs ``checker.py input.txt output.txt answer.txt`` and turns an exception in the
    checker into exit code 3 (a Python exception would otherwise exit 1, "wrong answer")."""
    from r1gym.core.contracts import Program

    return Program("python", _CHECKER_MAIN, files={"checker.py": str(comparison.checker), "input.txt": stdin,
                                                   "output.txt": got, "answer.txt": expected})


def checker_verdict(result: Any) -> Verdict:
    """The verdict of a checker run (a sandbox ``RunResult``). Raises :class:`Unscorable` when the checker
    failed: an exit code other than 0/1/2, a timeout, an output or memory overrun, a sandbox error."""
    from r1gym.core.rewards import Unscorable

    message = (result.stderr.strip().splitlines() or [""])[-1][:300]
    if result.status in ("ok", "runtime_error", "memory_limit") and result.exit_code in (CHECKER_OK, CHECKER_WA, CHECKER_PE):
        # by exit code, not status: a checker's WA message may quote the program's output ("MemoryError", ...)
        if result.exit_code == CHECKER_OK:
            return Verdict(True, f"checker: ok{': ' + message if message else ''}")
        kind = "wrong answer" if result.exit_code == CHECKER_WA else "presentation error"
        return Verdict(False, f"checker: {kind}{': ' + message if message else ''}")
    why = result.detail or f"exit code {result.exit_code}"
    raise Unscorable(f"the checker failed ({result.status}, {why}){': ' + message if message else ''}")
