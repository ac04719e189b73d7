"""The e2b backend's own logic around the SDK, against the SDK stand-in of ``tests/e2b_standin.py`` (named
as such: it is not the service) and, for the missing key, the real SDK (it fails before any network)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("e2b_code_interpreter", reason="the e2b backend needs pip install 'r1gym[e2b]'")

import httpx  # noqa: E402
from e2b.exceptions import InvalidArgumentException, RateLimitException, SandboxNotRunningException  # noqa: E402
from e2b_standin import StandInE2B  # noqa: E402

from r1gym.plugins.code.e2b import E2BSandbox, RateLimiter  # noqa: E402
from r1gym.core.contracts import Limits, Program  # noqa: E402
from r1gym.plugins.code.sandbox import SandboxPool  # noqa: E402

HELLO = Program("python", "print('hi')")
FAST = Limits(time_s=2.0)


def test_without_a_key_the_real_sdk_fails_at_once_as_a_sandbox_error_naming_E2B_API_KEY(monkeypatch):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    sandbox = E2BSandbox(retries=3, backoff_s=5.0)
    started = time.perf_counter()
    r = sandbox.run(HELLO, FAST)
    assert r.status == "sandbox_error" and "E2B_API_KEY" in r.detail, r
    assert time.perf_counter() - started < 5.0  # not retried: a missing key does not fix itself
    assert sandbox.stats == {"created": 0, "retries": 0, "sandbox_errors": 1}


def test_transport_errors_are_retried_with_growing_backoff_then_the_run_goes_on():
    client = StandInE2B(create_errors=[httpx.ConnectError("connection refused"), RateLimitException("429")])
    sandbox = E2BSandbox(client=client, retries=3, backoff_s=0.1, creations_per_s=1000)
    r = sandbox.run(HELLO, FAST)
    assert (r.status, r.stdout) == ("ok", "hi\n"), r
    gaps = [b - a for a, b in zip(client.create_calls, client.create_calls[1:])]
    assert len(gaps) == 2 and gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps  # 0.1 s, then doubled
    assert sandbox.stats["retries"] == 2 and client.killed == 1


def test_the_backoff_starts_at_backoff_s_and_doubles_exactly(monkeypatch):
    """The test above can only bound the waits from below on a real clock; here the sleeps are recorded (and
    skipped): three transport failures wait 0.1, 0.2 and 0.4 s, then the fourth attempt succeeds."""
    from types import SimpleNamespace

    from r1gym.plugins.code import e2b

    sleeps: list[float] = []
    monkeypatch.setattr(e2b, "time", SimpleNamespace(monotonic=time.monotonic, perf_counter=time.perf_counter,
                                                     sleep=sleeps.append))
    client = StandInE2B(create_errors=[httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), RateLimitException("429")])
    r = E2BSandbox(client=client, retries=3, backoff_s=0.1, creations_per_s=1e9).run(HELLO, FAST)
    assert (r.status, r.stdout) == ("ok", "hi\n"), r
    backoffs = [s for s in sleeps if s > 1e-6]  # (the rate limiter's waits at 1e9 per second are nanoseconds)
    assert backoffs == pytest.approx([0.1, 0.2, 0.4]) and len(client.create_calls) == 4


def test_retries_run_out_into_a_sandbox_error_that_says_how_many():
    client = StandInE2B(create_errors=[httpx.ReadTimeout("timed out")] * 3)
    r = E2BSandbox(client=client, retries=2, backoff_s=0.01, creations_per_s=1000).run(HELLO, FAST)
    assert r.status == "sandbox_error" and "after 3 attempts" in r.detail and "ReadTimeout" in r.detail, r
    assert len(client.create_calls) == 3


def test_other_errors_are_not_retried():
    client = StandInE2B(create_errors=[InvalidArgumentException("bad template")])
    r = E2BSandbox(client=client, retries=3, backoff_s=0.01).run(HELLO, FAST)
    assert r.status == "sandbox_error" and "bad template" in r.detail and len(client.create_calls) == 1, r


def test_creations_are_rate_limited_and_concurrency_is_bounded():
    client = StandInE2B()
    sandbox = E2BSandbox(client=client, creations_per_s=20, max_concurrent=2)
    programs = [Program("python", f"import time; time.sleep(0.2); print({i})") for i in range(6)]
    with SandboxPool(sandbox, 6) as pool:
        results = pool.map(programs, FAST)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    gaps = [b - a for a, b in zip(client.create_calls, client.create_calls[1:])]
    assert min(gaps) >= 0.045, gaps  # 20 per second, spaced evenly
    # two at a time: the bound is reached (each program outlives the 0.05 s between creations), never passed
    assert client.most_alive == 2 and client.killed == 6 and client.alive == 0
    assert client.create_kwargs[0]["allow_internet_access"] is False  # no network unless asked for


def test_a_call_that_does_not_answer_is_abandoned_as_a_sandbox_error_never_a_timeout():
    """The program's limit is enforced inside the sandbox; a silent service is infrastructure, not the
    program, and must not be scored as the program's timeout."""
    client = StandInE2B(command_delay_s=30)
    sandbox = E2BSandbox(client=client, grace_s=0.5)
    started = time.perf_counter()
    r = sandbox.run(HELLO, Limits(time_s=1.0))
    assert r.status == "sandbox_error" and "no answer" in r.detail, r
    assert time.perf_counter() - started < 5 and client.killed == 1


def test_a_sandbox_that_dies_under_the_program_is_a_sandbox_error():
    client = StandInE2B(command_error=SandboxNotRunningException("sandbox was not found"))
    r = E2BSandbox(client=client).run(HELLO, FAST)
    assert r.status == "sandbox_error" and "not found" in r.detail and client.killed == 1, r


def test_a_rate_limiter_spaces_events_evenly():
    limiter = RateLimiter(50)
    started = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - started >= 5 / 50 - 0.005
    with pytest.raises(ValueError, match="creations_per_s"):
        RateLimiter(0)


def test_a_rate_limiter_on_a_fake_clock_spaces_events_exactly_and_saves_no_credit(monkeypatch):
    """The real-clock test above can only bound the time from below; on a clock that moves only when the
    limiter sleeps, the spacing is exact: 1/50 s apart, no sleep for the first event, none after an idle
    second, and no burst then (the idle time is not saved up as credit)."""
    from r1gym.plugins.code import e2b

    clock = {"now": 100.0}
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock["now"] += s

    monkeypatch.setattr(e2b, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock["now"]),
                                                         "sleep": staticmethod(sleep)}))
    limiter, at = RateLimiter(50), []
    for _ in range(4):
        limiter.wait()
        at.append(clock["now"])
    assert at == pytest.approx([100.0, 100.02, 100.04, 100.06]) and sleeps == pytest.approx([0.02] * 3)
    clock["now"] += 1.0  # idle
    sleeps.clear()
    for _ in range(2):
        limiter.wait()
        at.append(clock["now"])
    assert at[4:] == pytest.approx([101.06, 101.08]) and sleeps == pytest.approx([0.02])


def test_code_tests_can_score_on_e2b_with_options(monkeypatch):
    """``code_tests(sandbox="e2b", sandbox_options=...)`` builds the backend from the registry with those
    options; an unknown sandbox name lists the known ones."""
    from r1gym.plugins.code import rewards

    r = rewards.code_tests("```python\nprint(int(input()) * 2)\n```", tests=[{"stdin": "21", "stdout": "42"}],
                           sandbox="e2b", sandbox_options={"client": StandInE2B(), "creations_per_s": 100})
    assert r == 1.0
    with pytest.raises(KeyError, match="local"):
        rewards.code_tests("```python\nprint(1)\n```", tests=[{"stdin": "", "stdout": "1"}], sandbox="nope")
