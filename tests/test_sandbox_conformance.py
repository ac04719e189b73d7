"""The conformance suite of plugins/code/conformance.py (given to plugin authors as r1gym.testing.sandboxes):
every attack through the real local sandbox with the host checked after each, the checks themselves shown to
catch a weak sandbox, the e2b backend's status mapping under the attacks that are safe to run unisolated,
``check_sandbox`` and ``r1gym sandbox check``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1gym.core.contracts import STATUSES, RunResult
from r1gym.plugins.code import conformance  # the module itself, for its constants and to swap ATTACKS in tests
from r1gym.plugins.code.sandbox import LocalSandbox, isolation_tool
from r1gym.testing import check_sandbox
from r1gym.testing.sandboxes import ATTACKS, CATEGORIES, Attack, check_attack, plant, run_conformance, strays

NEEDS_BWRAP = pytest.mark.skipif(isolation_tool() != "bwrap",
                                 reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")
PROJECT = Path(__file__).resolve().parents[1]


def _marks(attack: Attack) -> list:
    """Attacks that sit out a time limit (about 50 of the suite's 60 s) run with --run-slow; the rest always."""
    marks = [pytest.mark.slow] if "timeout" in attack.expect or attack.limits.time_s > 2 else []
    if attack.xfail_reason:
        marks.append(pytest.mark.xfail(reason=attack.xfail_reason, strict=False))
    return marks


@pytest.fixture(scope="module")
def sandbox():
    return LocalSandbox()


@pytest.fixture(scope="module")
def planted():
    with plant(str(PROJECT)) as p:
        yield p


def test_the_suite_covers_every_category_with_at_least_60_distinct_attacks():
    assert len(ATTACKS) >= 60
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)
    per_category = {c: sum(a.category == c for a in ATTACKS) for c in CATEGORIES}
    assert all(n >= 5 for n in per_category.values()), per_category
    for a in ATTACKS:
        assert a.category in CATEGORIES and a.expect and set(a.expect) <= set(STATUSES), a.name
        assert a.language in ("python", "cpp"), a.name


@NEEDS_BWRAP
@pytest.mark.parametrize("attack", [pytest.param(a, id=a.name, marks=_marks(a)) for a in ATTACKS])
def test_attack_on_the_local_sandbox(sandbox, planted, attack):
    outcome = check_attack(sandbox, attack, planted, host_checks=True)
    assert outcome.passed, (outcome.reasons, outcome.result and outcome.result.stdout[-500:],
                            outcome.result and outcome.result.stderr[-300:])


def test_plant_writes_a_fresh_secret_and_removes_every_trace(tmp_path):
    env_before = os.environ.get(conformance.SECRET_ENV)
    with plant(str(tmp_path)) as p:
        assert len(p.paths) == 5 and all(p.secret in Path(x).read_text() for x in p.paths)
        assert os.environ[conformance.SECRET_ENV] == p.secret and any(x.startswith(str(tmp_path)) for x in p.paths)
        with plant(str(tmp_path)) as q:
            assert q.secret != p.secret
    assert not any(os.path.exists(x) for x in p.paths) and not os.path.exists(p.run_dir)
    assert os.environ.get(conformance.SECRET_ENV) == env_before


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux's unshare")
def test_the_suite_catches_a_sandbox_that_shows_the_host(tmp_path):
    """The weak ``unshare`` mode shows the host's files: the suite must say so, naming the attack and the leak."""
    weak = LocalSandbox(tool="unshare", allow_weak_isolation=True)
    leaks = ("open-the-planted-paths", "host-directories", "include-host-files-when-compiling", "host-identity",
             "find-files-of-a-run-in-flight")
    chosen = [a for a in ATTACKS if a.name in (*leaks, "environment")]
    failures = dict(f.split(": ", 1) for f in run_conformance(weak, chosen, project_dir=str(tmp_path)))
    assert set(failures) == set(leaks), failures
    assert "printed the planted secret" in failures["open-the-planted-paths"]
    assert "LEAK read" in failures["open-the-planted-paths"]
    assert "LEAK the compiler sees" in failures["include-host-files-when-compiling"]
    in_flight = failures["find-files-of-a-run-in-flight"]  # its scratch is the host's: a run beside it sees it
    assert "LEAK found a file of an earlier run in /tmp" in in_flight and f"wrote /tmp/{conformance.DROP}" in in_flight


class _Leaky:
    """A 'sandbox' that leaves a process of a sandbox uid and a file outside any scratch behind."""

    def __init__(self, planted, uid: int):
        self.planted, self.uid, self.left = planted, uid, None

    def run(self, program, limits):
        self.left = subprocess.Popen(["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                                      "sleep", "30"], start_new_session=True)
        while os.stat(f"/proc/{self.left.pid}").st_uid != self.uid:  # setpriv has switched
            time.sleep(0.01)
        Path("/tmp", conformance.EVIL).write_text("left behind")
        return RunResult("ok", 0, "", "", 0.01, 0.0)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="runs get sandbox uids of their own only as root (and this needs util-linux's setpriv)")
def test_host_checks_catch_a_process_and_a_file_left_behind(planted):
    from r1gym.plugins.code.sandbox import _UIDS

    leaky = _Leaky(planted, max(_UIDS.all))  # the uid slots hand out the lowest free uid first
    outcome = check_attack(leaky, ATTACKS[0], planted)
    assert any(r.startswith("processes left on the host") for r in outcome.reasons), outcome.reasons
    assert f"wrote /tmp/{conformance.EVIL} on the host" in outcome.reasons
    assert leaky.left.wait(timeout=10) == -9  # killed, so that the next attack is not blamed for it
    assert strays() == [] and not os.path.exists(f"/tmp/{conformance.EVIL}")  # cleaned up for the next attack


#: attacks that do nothing to the machine that runs them even without isolation (no forks left, no host
#: files, no signals to others): only these may run through the e2b stand-in, which runs commands in bash on
#: this machine, as this user, unisolated. The rest would fork-bomb, kill -1 or fill /tmp of the test machine.
UNISOLATED_SAFE = ("memory-bomb", "memory-grown-in-steps", "ignore-sigterm", "sleep-past-the-limit",
                   "wait-on-an-event", "alarm-games", "slow-drip-of-output", "sleep-interrupted-by-timers",
                   "gigabytes-of-stdout", "gigabytes-of-stderr", "one-huge-write", "binary-garbage",
                   "close-stdout-and-stderr", "pretend-to-be-the-sandbox", "terminal-escape-sequences",
                   "huge-stdin-never-read", "huge-stdin-never-read-then-sleep", "close-stdin-half-read")


@pytest.mark.slow
def test_the_e2b_backend_maps_the_safe_attacks_to_the_same_statuses():
    """The e2b backend's script and status mapping (through the SDK stand-in of tests/e2b_standin.py) under
    the attacks that are safe unisolated; the isolation itself is E2B's, checked with E2B_API_KEY by
    ``r1gym sandbox check --backend e2b``."""
    pytest.importorskip("e2b", reason="e2b: pip install 'r1gym[e2b]'")
    sys.path.insert(0, str(Path(__file__).parent))
    from e2b_standin import StandInE2B

    from r1gym.plugins.code.e2b import E2BSandbox

    backend = E2BSandbox(client=StandInE2B(), creations_per_s=100, backoff_s=0.01)
    chosen = [a for a in ATTACKS if a.name in UNISOLATED_SAFE]
    assert len(chosen) == len(UNISOLATED_SAFE)
    assert run_conformance(backend, chosen, host_checks=False) == []


@NEEDS_BWRAP
def test_cli_sandbox_check_prints_a_table_and_exits_1_on_a_failure(capsys, monkeypatch):
    from r1gym.core.cli import main

    assert main(["sandbox", "check", "--only", "environment", "network-tcp"]) == 0
    out = capsys.readouterr().out
    assert "pass   secrets     environment" in out and "network-tcp" in out
    assert "2 of 2 attacks passed against the local sandbox, 0 failed" in out
    failing = Attack("always-leaks", "escape", "print('LEAK on purpose')\n")
    monkeypatch.setattr(conformance, "ATTACKS", (failing,))
    assert main(["sandbox", "check", "--only", "always-leaks"]) == 1
    out = capsys.readouterr().out
    assert "FAIL   escape      always-leaks" in out and "LEAK on purpose" in out and "0 of 1" in out
    known = Attack("known-leak", "escape", "print('LEAK known')\n", xfail_reason="a weakness not fixed yet")
    monkeypatch.setattr(conformance, "ATTACKS", (known,))
    assert main(["sandbox", "check", "--only", "known-leak"]) == 0  # reported, not a failure
    out = capsys.readouterr().out
    assert "xfail  escape      known-leak" in out and "[known: a weakness not fixed yet]" in out
    assert "1 known weaknesses failed as expected (xfail): known-leak" in out
    monkeypatch.setattr(conformance, "ATTACKS", (failing,))
    assert main(["sandbox", "check", "--only", "always-leak"]) == 2
    assert "did you mean always-leaks" in capsys.readouterr().err


@NEEDS_BWRAP
@pytest.mark.skipif(os.geteuid() != 0, reason="runs get sandbox uids of their own only as root")
def test_a_run_returns_only_when_its_processes_are_gone(sandbox):
    """A run's processes die with its PID namespace a moment after bwrap; until they are reaped they still
    count against their uid's RLIMIT_NPROC, so ``run`` hands the uid back only when none is left (the suite's
    process checks found zombies of the run's children after it had returned, about one run in ten)."""
    from r1gym.core.contracts import Limits, Program

    children = Program("python", "import os, time\nfor i in range(20):\n    if os.fork() == 0: time.sleep(60)\n"
                                 "time.sleep(60)\n")
    for _ in range(5):
        assert sandbox.run(children, Limits(time_s=0.5, processes=32)).status == "timeout"
        assert strays() == []  # at once, no settling


@NEEDS_BWRAP
def test_check_sandbox_passes_the_local_sandbox_and_fails_a_weak_one(tmp_path):
    """What a sandbox plugin's CI runs (r1gym.testing.check_sandbox), by attack name."""
    check_sandbox(LocalSandbox(), ["environment", "network-tcp"], host_checks=True)
    if shutil.which("unshare"):
        weak = LocalSandbox(tool="unshare", allow_weak_isolation=True)
        with pytest.raises(AssertionError, match=r"1 of 2 attacks got through LocalSandbox:\n- open-the-planted-paths: "):
            check_sandbox(weak, ["environment", "open-the-planted-paths"], project_dir=str(tmp_path))
    with pytest.raises(KeyError, match="Did you mean 'network-tcp'"):
        check_sandbox(LocalSandbox(), ["network-tpc"])
