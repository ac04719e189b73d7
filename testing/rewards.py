"""The reward contract, checked on a reward function the way the trainer calls it.

The trainer calls a reward from many threads at once, on whatever the policy wrote, and trusts what comes
back: a number in the reward's range, or "cannot be scored" (``None`` or
:class:`~r1gym.core.rewards.Unscorable`) when the *task* or the checker cannot decide, which is masked and
counted, never a silent 0. An empty or malformed completion is the model's failure, so it gets a number
(usually 0), not a mask the policy could hide behind. A reward that is slow, flaky, or edits the task's fields
in place breaks training in ways that show up far from the reward, so each is checked here.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

#: completions that are the model's failure: each must get a number in range, whatever the task
GARBAGE = ("", " \n\t ", "\x00\xff\ufffd\U0001F600 garbage", "<answer>", "<answer></answer>", "</think></answer><think>",
           "<think>" * 1000, "\\boxed{" * 200, "```python\n" + "(" * 500)
Example = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], float]


def _resolve(reward: Callable[..., Any] | str, host: Any) -> tuple[str, Callable[..., Any], Any]:
    if not isinstance(reward, str):
        return getattr(reward, "__name__", repr(reward)), reward, host
    if host is None:
        from r1gym.core.plugins import default_host

        host = default_host()
    return reward, host.rewards.get(reward), host


def check_reward(reward: Callable[..., Any] | str, examples: Sequence[Example], *,
                 unscorable: Sequence[tuple[str, Mapping[str, Any]]] = (), host: Any = None,
                 params: Mapping[str, Any] | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                 timeout_s: float = 5.0, threads: int = 8, huge_chars: int = 1_000_000) -> None:
    """Check a reward (a function, or a name registered in ``host``; default: the process-wide host) against
    the contract; raise ``AssertionError`` listing every violation.

    ``examples``: ``(completion, fields)`` or ``(completion, fields, expected)`` that it can score; ``fields``
    are a task's fields, ``params`` the reward's parameters from config (both passed as the trainer does:
    by keyword, only those it accepts). ``unscorable``: ``(completion, fields)`` that it must say it cannot score
    (a missing or broken reference answer). Checked:

    * each example gives a number (not a bool), finite, within ``bounds``, equal to ``expected`` when given;
    * the same call gives the same value three times, and from ``threads`` threads at once;
    * no call mutates the fields or the parameters;
    * every call returns within ``timeout_s`` seconds;
    * :data:`GARBAGE` completions get a number in range with each example's fields; completions of
      ``huge_chars`` characters get a number in range or "cannot be scored", in time;
    * each ``unscorable`` case returns ``None`` or raises ``Unscorable`` (not a number, not another error).
    """
    from r1gym.core.rewards import RewardComponent, Unscorable

    name, fn, host = _resolve(reward, host)
    component = RewardComponent(name, fn, 1.0, dict(params or {}), host)
    kept_params = copy.deepcopy(dict(component.params))
    lo, hi = bounds
    problems: list[str] = []
    pool = ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="r1gym-reward-check")

    def call(completion: str, fields: Mapping[str, Any]) -> tuple[str, Any]:
        """("value", v) | ("unscorable", reason) | ("error", text) | ("timeout", seconds)."""
        kept = copy.deepcopy(dict(fields))
        started = time.perf_counter()
        future = pool.submit(component, completion, fields)
        try:
            out: tuple[str, Any] = ("value", future.result(timeout=timeout_s))
        except FutureTimeout:
            return "timeout", time.perf_counter() - started
        except Unscorable as exc:
            out = ("unscorable", str(exc) or "Unscorable")
        except Exception as exc:  # noqa: BLE001  (a violation, reported below)
            out = ("error", f"{type(exc).__name__}: {exc}")
        if out == ("value", None):
            out = ("unscorable", "returned None")
        if dict(fields) != kept:
            problems.append(f"{_show(completion)}: the call changed the task's fields: {kept!r} -> {dict(fields)!r}")
        if dict(component.params) != kept_params:
            problems.append(f"{_show(completion)}: the call changed the reward's parameters")
        return out

    def number(where: str, out: tuple[str, Any], *, may_be_unscorable: bool = False) -> float | None:
        kind, value = out
        if kind == "timeout":
            problems.append(f"{where}: no result after {value:.1f} s (timeout_s={timeout_s})")
        elif kind == "error":
            problems.append(f"{where}: raised {value}; return None or raise Unscorable when it cannot score")
        elif kind == "unscorable":
            if not may_be_unscorable:
                problems.append(f"{where}: said it cannot score ({value}); a completion the model got wrong is "
                                "scored (usually 0), only a broken task or checker is unscorable")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: returned {value!r} ({type(value).__name__}), not a float")
        elif not (math.isfinite(value) and lo <= value <= hi):
            problems.append(f"{where}: returned {value!r}, outside [{lo}, {hi}]")
        else:
            return float(value)
        return None

    try:
        if not examples:
            problems.append("no examples given: pass a few (completion, fields[, expected]) it can score")
        cases = [(ex[0], ex[1]) for ex in examples]
        sequential = []
        for ex in examples:
            completion, fields = ex[0], ex[1]
            where = f"example {_show(completion)}"
            value = number(where, call(completion, fields))
            sequential.append(value)
            if value is not None and len(ex) > 2 and not math.isclose(value, ex[2], rel_tol=1e-9, abs_tol=1e-9):
                problems.append(f"{where}: returned {value!r}, expected {ex[2]!r}")
            again = [call(completion, fields) for _ in range(2)]
            if any(a != ("value", value) for a in again) and value is not None:
                problems.append(f"{where}: not deterministic: {value!r}, then {[a[1] for a in again]}")
        if cases:
            with ThreadPoolExecutor(max_workers=max(threads, 1)) as many:
                together = list(many.map(lambda c: call(*c), cases * 4))
            expected = [("value", v) for v in sequential] * 4
            differ = [(_show(c[0]), e[1], t) for c, e, t in zip(cases * 4, expected, together, strict=True)
                      if e[1] is not None and t != e]
            if differ:
                problems.append(f"not thread safe: {len(differ)} of {len(together)} calls from {threads} threads "
                                f"differed from the same calls one at a time, e.g. {differ[0]}")
        for fields in {id(f): f for _, f in cases}.values():
            for completion in GARBAGE:
                number(f"garbage completion {_show(completion)}", call(completion, fields))
            for completion in ("x" * huge_chars, "<answer> " + "9" * huge_chars + " </answer>"):
                number(f"a completion of {len(completion):,} characters", call(completion, fields),
                       may_be_unscorable=True)
        for completion, fields in unscorable:
            kind, value = call(completion, fields)
            if kind != "unscorable":
                problems.append(f"unscorable case {_show(completion)} with fields {dict(fields)!r}: "
                                f"{'returned ' + repr(value) if kind == 'value' else kind + ' ' + str(value)}; "
                                "it must return None or raise Unscorable")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a call that hangs cannot be stopped, only left behind
    if problems:
        raise AssertionError(f"reward {name!r} breaks the reward contract:\n- " + "\n- ".join(problems))


def _show(completion: str) -> str:
    return repr(completion) if len(completion) <= 40 else repr(completion[:37] + "...")
