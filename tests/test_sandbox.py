"""The local sandbox against hostile programs: each must end with the right status and leave the host as it
was (no stray process, no file outside the scratch dir, this process alive, no secrets read)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from r1gym.plugins.code import sandbox as sandbox_module
from r1gym.plugins.code.conformance import strays as _strays
from r1gym.core.contracts import Limits, Program
from r1gym.plugins.code.sandbox import LocalSandbox, SandboxPool, isolation_tool

pytestmark = pytest.mark.skipif(isolation_tool() != "bwrap",
                                reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")


@pytest.fixture(scope="module")
def sandbox():
    return LocalSandbox()


def py(source: str, **kw) -> Program:
    return Program("python", source, **kw)


FAST = Limits(time_s=2.0)

ATTACKS = {
    # name: (program, the status it must end with)
    "infinite loop": (py("while True: pass"), "timeout"),
    "sleep past the limit": (py("import time; time.sleep(60)"), "timeout"),
    "ignores SIGTERM": (py("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"), "timeout"),
    "memory bomb": (py("x = bytearray(4 << 30)"), "memory_limit"),
    "gigabytes of output": (py("import sys\nwhile True: sys.stdout.write('x' * 65536)"), "output_limit"),
    "fork bomb": (py("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"), "timeout"),
    "thread bomb": (py("import threading, time\nwhile True: threading.Thread(target=time.sleep, args=(60,)).start()"),
                    "timeout"),  # thread creation fails at the process limit; exit then waits for the sleepers
    # Python 3.11 keeps Python frames off the C stack: this grows the heap and dies after ~8 s (SystemError)
    "deep recursion": (py("import sys\nsys.setrecursionlimit(10**9)\ndef f(n): return f(n + 1)\nf(0)"), "timeout"),
    "fill the disk": (py("f = open('big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))"), "runtime_error"),
    "ctypes null write": (py("import ctypes; ctypes.memset(0, 1, 8)"), "runtime_error"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_ends_with_the_right_status_and_no_trace(sandbox, name):
    program, expected = ATTACKS[name]
    started = time.perf_counter()
    result = sandbox.run(program, FAST)
    assert result.status == expected, (result.status, result.detail, result.stderr[-300:])
    assert time.perf_counter() - started < FAST.time_s + 5
    time.sleep(0.2)
    assert _strays() == []


def test_no_secrets_no_network_no_writes_outside(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("R1GYM_TEST_SECRET", "hunter2")
    secret_file = Path("/root/r1gym-test-secret")
    secret_file.write_text("hunter2")
    try:
        probe = py(
            "import os, socket\n"
            "print('env', sorted(os.environ))\n"
            "for path in ('/root/r1gym-test-secret', '/etc/shadow'):\n"
            "    try: print('read', open(path).read())\n"
            "    except OSError as e: print('denied', path, type(e).__name__)\n"
            f"for path in ('{tmp_path}/evil', '/etc/evil', '/work/evil'):\n"
            "    try: open(path, 'w').write('x'); print('wrote', path)\n"
            "    except OSError as e: print('no write', path, type(e).__name__)\n"
            "for addr in (('127.0.0.1', 22), ('1.1.1.1', 80)):\n"
            "    s = socket.socket(); s.settimeout(1)\n"
            "    try: s.connect(addr); print('connected', addr)\n"
            "    except OSError as e: print('no network', addr, type(e).__name__)\n"
        )
        result = sandbox.run(probe, FAST)
    finally:
        secret_file.unlink()
    assert result.status == "ok", result.stderr
    out = result.stdout
    assert "hunter2" not in out and "R1GYM_TEST_SECRET" not in out
    assert "wrote" not in out and "connected" not in out
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()


def test_the_host_is_invisible_and_only_scratch_is_writable(sandbox, tmp_path):
    """Secrets planted where a run would find them (the project folder, /var/tmp, a run folder under /tmp,
    $HOME) cannot be read, and the folders around them do not exist in the sandbox."""
    project = Path(__file__).resolve().parents[1]
    planted = [project / ".planted-secret", Path("/var/tmp/r1gym-planted-secret"), tmp_path / "config.yaml",
               Path.home() / ".r1gym-planted-secret"]
    for p in planted:
        p.write_text("hunter2")
    try:
        paths = [str(p) for p in planted] + [str(project), str(project.parent), "/opt", "/srv", "/mnt", "/var",
                                              "/run", "/home", "/root", "/etc/passwd", "/usr/local/bin", "/sys"]
        result = sandbox.run(py(
            "import json, os, sys\n"
            f"paths = {paths!r}\n"
            "seen = [p for p in paths if os.path.exists(p)]\n"
            "writable = []\n"
            "for d in ('/', '/dev', '/usr', '/usr/local', '/tmp', '/dev/shm'):\n"
            "    try:\n        open(os.path.join(d, 'w'), 'w').write('x'); writable.append(d)\n"
            "    except OSError: pass\n"
            "print(json.dumps({'seen': seen, 'writable': writable, 'root': sorted(os.listdir('/')),\n"
            "                  'site': [p for p in sys.path if 'packages' in p and os.listdir(p)]}))"), FAST)
    finally:
        for p in planted:
            p.unlink()
    assert result.status == "ok", result.stderr
    seen = json.loads(result.stdout)
    assert (seen["seen"], seen["writable"], seen["site"]) == ([], ["/tmp", "/dev/shm"], [])
    assert {"dev", "proc", "tmp", "usr"} <= set(seen["root"]) <= {"bin", "dev", "lib", "lib32", "lib64", "libx32",
                                                                  "proc", "sbin", "tmp", "usr"}


def test_background_processes_and_signals_to_the_parent_leave_the_host_alone(sandbox):
    result = sandbox.run(py(
        "import os, signal, time\n"
        "if os.fork() == 0:\n    os.setsid(); time.sleep(60)\n"
        "for pid in (os.getppid(), 1):\n"
        "    try: os.kill(pid, signal.SIGKILL)\n    except OSError: pass\n"
        "print('done')"), FAST)
    assert result.status == "ok" and result.stdout.strip() == "done"
    time.sleep(0.2)
    assert _strays() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="runs get uids of their own only when started as root")
def test_a_fork_bomb_does_not_starve_runs_in_flight_beside_it(sandbox):
    """RLIMIT_NPROC counts a user's processes: runs in flight at once have different uids, so one run at its
    process limit leaves the others theirs."""
    bomb = py("import os, time\nwhile True:\n    try:\n        if os.fork() == 0: time.sleep(60)\n"
              "    except OSError: time.sleep(0.01)")
    spawner = py("import subprocess\nprint(sum(subprocess.run(['true']).returncode == 0 for _ in range(20)))")
    with SandboxPool(sandbox, 2) as pool:
        held = pool.submit(bomb, Limits(time_s=4.0))
        time.sleep(1.5)  # the bomb is at its limit by now
        beside = pool.submit(spawner, Limits(time_s=4.0, processes=8)).result()
        assert held.result().status == "timeout"
    assert (beside.status, beside.stdout) == ("ok", "20\n"), (beside.status, beside.stderr[-300:])


def test_limits_are_the_same_with_and_without_the_util_linux_wrappers(monkeypatch):
    """Without prlimit/setpriv the limits and uid are set between fork and exec instead; same outcome."""
    probe = py("import os, resource\nprint(os.getuid() != 0, resource.getrlimit(resource.RLIMIT_NPROC)[0],"
               " resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    seen = []
    for wrappers in (True, False):
        sb = LocalSandbox()
        if not wrappers:
            sb._wrappers = None
        seen.append(sb.run(probe, Limits(processes=9, open_files=33)).stdout)
    assert seen == ["True 9 33\n"] * 2


def test_a_program_cannot_pass_itself_off_as_a_sandbox_failure(sandbox):
    """Only bwrap's own status report (an fd the program never sees) marks a run ``sandbox_error``: a wrong
    program that prints what a failing sandbox would print is still the program's failure, and a sandbox
    that really cannot start (here: no processes left for bwrap itself) is ``sandbox_error``."""
    fake = sandbox.run(py("import sys\nsys.stderr.write('bwrap: Creating new namespace failed\\n')\nsys.exit(1)"))
    assert (fake.status, fake.exit_code) == ("runtime_error", 1), fake
    fds = sandbox.run(py("import os; print(sorted(os.listdir('/proc/self/fd')))"))
    assert fds.stdout == "['0', '1', '2', '3']\n"  # stdin/out/err and listdir's own: no status fd
    real = sandbox.run(py("print('never')"), Limits(processes=1))
    assert real.status == "sandbox_error" and "never" not in real.stdout and real.detail, real


def test_megabytes_of_stdin_that_the_program_never_reads_do_not_hang_the_run(sandbox):
    big = "1 2\n" * (4 << 20)  # 16 MB, far past a pipe buffer; CodeContests tests have megabytes of input
    started = time.perf_counter()
    done = sandbox.run(py("print('hi')", stdin=big), FAST)
    sleeper = sandbox.run(py("import time; time.sleep(60)", stdin=big), FAST)
    assert (done.status, done.stdout) == ("ok", "hi\n")
    assert sleeper.status == "timeout"
    assert time.perf_counter() - started < 2 * FAST.time_s + 5
    reader = sandbox.run(py("import sys; print(len(sys.stdin.read()))", stdin=big), FAST)
    assert (reader.status, reader.stdout) == ("ok", f"{len(big)}\n")


def test_ordinary_programs(sandbox):
    started = time.perf_counter()
    r = sandbox.run(py("import sys; print(sys.stdin.read()[::-1])", stdin="abc"))
    outside = time.perf_counter() - started
    assert (r.status, r.stdout, r.exit_code) == ("ok", "cba\n", 0)
    assert 0 < r.wall_s <= outside and 0 < r.cpu_s <= r.wall_s + 0.02  # one thread: no more CPU than wall time
    r = sandbox.run(py("raise SystemExit(3)"))
    assert (r.status, r.exit_code) == ("runtime_error", 3)
    r = sandbox.run(py("import helper; print(helper.X)", files={"helper.py": "X = 42"}))
    assert r.stdout == "42\n"
    r = sandbox.run(py("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"))
    assert r.status == "ok" and 0.25 <= r.cpu_s <= r.wall_s + 0.02  # the loop's 0.3 s of CPU, counted once
    r = sandbox.run(py("while True: pass"), Limits(time_s=5.0, cpu_s=1))
    assert r.status == "timeout" and "CPU" in r.detail and r.wall_s < 4
    assert 0.9 <= r.cpu_s <= r.wall_s + 0.02  # stopped at the 1 s CPU limit, not by the 5 s clock


def test_cpp_compiles_runs_and_reports_compile_errors(sandbox):
    r = sandbox.run(Program("cpp", "#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a+b;}", stdin="2 3"))
    assert (r.status, r.stdout) == ("ok", "5")
    r = sandbox.run(Program("cpp", "int main( { return 0; }"))
    assert r.status == "compile_error" and "error" in r.stderr
    r = sandbox.run(Program("cpp", "#include <vector>\nint main(){std::vector<char> v; while(true) v.resize(v.size()+(1<<26));}"))
    assert r.status == "memory_limit"


def test_unknown_language_is_a_sandbox_error_that_lists_the_known_ones(sandbox):
    r = sandbox.run(Program("rust", "fn main() {}"))
    assert r.status == "sandbox_error" and "python, cpp" in r.detail


def test_cli_sandbox_run_prints_the_result_as_json(tmp_path, capsys):
    import json

    from r1gym.core.cli import main

    prog, stdin = tmp_path / "add.py", tmp_path / "in.txt"
    prog.write_text("print(sum(map(int, input().split())))")
    stdin.write_text("2 40")
    assert main(["sandbox", "run", str(prog), "--stdin", str(stdin), "--timeout", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "ok" and result["stdout"] == "42\n"
    assert main(["sandbox", "run", str(stdin)]) == 2
    assert "pass --language (python, cpp)" in capsys.readouterr().err


def test_local_sandbox_is_registered_and_unknown_names_list_the_known(capsys):
    from r1gym.core.cli import main
    from r1gym.core.plugins import default_host

    local = default_host().sandboxes.get("local")()
    assert type(local) is LocalSandbox and local.run(py("print(6 * 7)"), FAST).stdout == "42\n"
    assert main(["sandbox", "run", "x.py", "--backend", "lokal"]) == 2
    assert "local" in capsys.readouterr().err


def test_pool_runs_many_in_order_and_a_slow_one_does_not_hold_up_the_rest(sandbox):
    from r1gym.plugins.code.sandbox import SandboxPool

    programs = [py("while True: pass") if i % 5 == 0 else py(f"print({i})") for i in range(20)]
    with SandboxPool(sandbox, 4) as pool:
        started = time.perf_counter()
        results = pool.map(programs, Limits(time_s=1.0))
        elapsed = time.perf_counter() - started
    for i, r in enumerate(results):
        assert (r.status, r.stdout) == (("timeout", "") if i % 5 == 0 else ("ok", f"{i}\n"))
    assert elapsed < 4 * 1.0  # 4 one-second timeouts on 4 workers overlap
    time.sleep(0.2)
    assert _strays() == []


# -- rewards ---------------------------------------------------------------------------------------------
SQUARE_TESTS = [{"assert": "assert square(3) == 9"}, {"assert": "assert square(-2) == 4"},
                {"assert": "assert square(0) == 0"}]
SUM_TESTS = [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "10 -4\n", "stdout": "6"},
             {"stdin": "0.5 0.25\n", "stdout": "0.75000000001\n"}]


def _answer(code: str, lang: str = "python") -> str:
    return f"<think>easy</think>\nHere it is:\n```{lang}\n{code}\n```\n"


def test_code_tests_scores_reference_solutions_1_and_wrong_ones_less():
    from r1gym.plugins.code.rewards import code_tests

    assert code_tests(_answer("def square(x):\n    return x * x"), tests=SQUARE_TESTS) == 1.0
    assert code_tests(_answer("def square(x):\n    return x * abs(x)"), tests=SQUARE_TESTS) == pytest.approx(2 / 3)
    assert code_tests(_answer("def square(x):\n    return x * abs(x)"), tests=SQUARE_TESTS, mode="all") == 0.0
    assert code_tests(_answer("def square(x):\n    while True: pass"), tests=SQUARE_TESTS, time_limit=1.0,
                      stop_at_first_failure=True) == 0.0
    assert code_tests("no code here", tests=SQUARE_TESTS) == 0.0
    adder = "a, b = map(float, input().split())\ns = a + b\nprint(int(s) if s == int(s) else s)"
    near = "tokens float_abs=1e-6 float_rel=1e-6"  # the third test expects 0.75000000001
    assert code_tests(_answer(adder), tests=SUM_TESTS, default_comparison=near) == 1.0
    assert code_tests(_answer(adder), tests=SUM_TESTS) == pytest.approx(2 / 3)  # tokens alone: exact
    assert code_tests(_answer("print(3)"), tests=SUM_TESTS, default_comparison=near) == pytest.approx(1 / 3)
    cpp = "#include <iostream>\nint main(){double a,b;std::cin>>a>>b;std::cout<<a+b<<std::endl;}"
    assert code_tests(_answer(cpp, "cpp"), tests=SUM_TESTS, language="cpp", default_comparison=near) == 1.0


@pytest.mark.parametrize("hack", [
    "import atexit, os\natexit.register(lambda: os._exit(0))",  # exit 0 whatever happens after
    "import sys, os\nsys.excepthook = lambda *a: os._exit(0)",  # a failed assert "exits cleanly"
    "import sys\nsys.exit(0)",  # leave before the asserts run
])
def test_an_exit_0_wrapper_cannot_pass_assert_tests(hack):
    """A peer's wrapper exited 0 on exceptions and gave wrong code full reward: exit 0 is not a pass."""
    from r1gym.plugins.code.rewards import code_tests

    wrong = f"def square(x):\n    return 0\n{hack}"
    assert code_tests(_answer(wrong), tests=SQUARE_TESTS) <= 1 / 3  # square(0) == 0 is the only honest pass


def test_infrastructure_failure_is_unscorable_not_zero():
    """A broken sandbox registered through the hook on the test's own host, and chosen by name."""
    from r1gym.core.contracts import RunResult
    from r1gym.core.hookspecs import hookimpl
    from r1gym.core.plugins import load_plugins
    from r1gym.core.rewards import build_reward_set

    class Broken:
        def run(self, program, limits):
            return RunResult("sandbox_error", None, "", "", 0.0, 0.0, "bwrap: cannot create namespace")

    class StandIn:
        @hookimpl
        def r1gym_register_sandboxes(self, register):
            register("broken", Broken, description="fails every run")

    host = load_plugins(("r1gym.plugins.code",), autoload=False, extra=[("stand_in", StandIn())])
    scorer = build_reward_set({"code_tests": {"weight": 1.0, "sandbox": "broken"}}, host.rewards.get, host=host)
    outcome = scorer.score(_answer("def square(x):\n    return x * x"), {"tests": SQUARE_TESTS})
    assert outcome.total is None and "bwrap: cannot create namespace" in outcome.unscorable["code_tests"]


def test_code_format_and_extraction():
    from r1gym.plugins.code.rewards import code_format, extract_code, outputs_match

    two = "```python\nx = 1\n```\ntext\n```py\nx = 2\n```"
    assert extract_code(two) == "x = 2\n" and extract_code("```cpp\nint x;\n```") is None
    assert code_format(two) == 1.0 and code_format("```python\n\n```") == 0.0
    assert outputs_match("1.0000001 \n\n", "1") and not outputs_match("1.1", "1") and not outputs_match("a b", "a")


PLAUSIBLY_WRONG = {  # task id -> a solution a model might write that is not right
    "square": "def square(x):\n    return x * 2\n",
    "is-palindrome": "def is_palindrome(s):\n    return s == s[::-1]\n",  # forgets case and spaces
    "gcd": "def gcd(a, b):\n    return min(a, b)\n",
    "sum-to-n": "n = int(input())\nprint(sum(range(n)))\n",  # off by one
    "reverse-words": "print(input()[::-1])\n",  # reverses characters
    "mean": "import sys\nv = sys.stdin.read().split()\nprint(sum(map(float, v)) / len(v))\n",  # counts n as data
}


def test_code_env_sample_references_score_1_and_plausible_wrong_solutions_less():
    from r1gym.envs import make

    env = make("r1gym/Code-v0")
    source = env.unwrapped.source
    assert {source[i].id for i in range(len(source))} == set(PLAUSIBLY_WRONG)
    for i in range(len(source)):
        env.reset(options={"index": i})
        task = env.unwrapped.task
        _, reward, terminated, _, info = env.step(f"<think>ok</think>\n<answer>\n```python\n{task.fields['answer']}```\n</answer>")
        assert info["rewards"]["code_tests"] == 1.0 and terminated, task.id
        env.reset(options={"index": i})
        _, _, _, _, info = env.step(f"```python\n{PLAUSIBLY_WRONG[task.id]}```")
        assert info["rewards"]["code_tests"] < 1.0, task.id


def test_extra_python_packages_come_only_from_the_allow_list():
    import importlib.util

    probe = subprocess.run(["/usr/bin/python3", "-c", "import yaml"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the system python3 has no PyYAML to allow-list")
    program = py("import yaml; print(yaml.safe_dump({'a': 1}).strip())")
    assert LocalSandbox().run(program, FAST).status == "runtime_error"  # hidden by default
    allowed = LocalSandbox(packages=["yaml"]).run(program, FAST)
    assert (allowed.status, allowed.stdout) == ("ok", "a: 1\n"), allowed.stderr
    with pytest.raises(ValueError, match="not importable"):
        LocalSandbox(packages=["no_such_package_r1gym"])
    assert importlib.util.find_spec("yaml") is not None  # the host's own view is untouched


@pytest.mark.skipif(os.geteuid() != 0, reason="runs switch uids only when r1gym runs as root")
def test_a_uid_another_process_holds_is_not_used(sandbox):
    """Several trainers or DDP ranks on one host must not share run uids (and so their process limits)."""
    import sys

    first = sandbox_module._UIDS._free[-1]  # the uid this process would take next
    lock = os.path.join(sandbox_module._UIDS._lock_dir(), str(first))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({lock!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = sandbox.run(py("import os; print(os.getuid())"), FAST)
        assert result.status == "ok" and int(result.stdout) != first and int(result.stdout) in sandbox_module._UIDS.all
    finally:
        holder.kill()
        holder.wait()
    import fcntl

    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel released it with the holder
    finally:
        os.close(fd)


def test_no_silent_downgrade_to_unshare(caplog):
    import shutil

    if not shutil.which("unshare"):
        pytest.skip("needs util-linux's unshare")
    with pytest.raises(RuntimeError, match="allow_weak_isolation=True"):
        LocalSandbox(tool="unshare")
    with caplog.at_level("WARNING"):
        weak = LocalSandbox(tool="unshare", allow_weak_isolation=True)
    assert weak.tool == "unshare" and "weak isolation" in caplog.text


def test_a_bwrap_that_cannot_make_namespaces_is_refused_with_the_reason(monkeypatch):
    """bwrap present but user namespaces disabled: every run would be a sandbox_error and every sample
    masked; the sandbox refuses to start instead and says what to change."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp())  # the run's uid must be able to exec it: not under pytest's 0700 tmp
    try:
        folder.chmod(0o755)
        fake = folder / "bwrap"
        fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
        monkeypatch.setattr(sandbox_module, "_SELF_TESTED", set())
        with pytest.raises(RuntimeError, match="self-test.*user namespaces"):
            LocalSandbox()
    finally:
        shutil.rmtree(folder)


SYSCALLS_x86_64 = {"ptrace": (101, 16, 0, 0, 0), "unshare(CLONE_NEWUSER)": (272, 0x10000000), "mount": (165, 0, 0, 0, 0, 0),
                   "keyctl": (250, 0), "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, 0, 0, 0),
                   "clone(CLONE_NEWNET)": (56, 0x40000000 | 17, 0, 0, 0, 0), "setns": (308, 0, 0),
                   "kexec_load": (246, 0, 0, 0, 0), "init_module": (175, 0, 0, 0), "io_uring_setup": (425, 1, 0),
                   "userfaultfd": (323, 0), "process_vm_readv": (310, 1, 0, 0, 0, 0, 0), "reboot": (169, 0, 0, 0, 0),
                   "pivot_root": (155, 0, 0), "chroot": (161, 0), "settimeofday": (164, 0, 0), "swapon": (167, 0, 0)}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the system-call numbers below are x86-64's")
def test_the_seccomp_filter_refuses_what_no_test_program_needs(sandbox):
    result = sandbox.run(py(
        "import ctypes, json, os, subprocess, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"calls = {SYSCALLS_x86_64!r}\n"
        "out = {}\n"
        "for name, (nr, *args) in calls.items():\n"
        "    ctypes.set_errno(0)\n"
        "    out[name] = (libc.syscall(nr, *args), ctypes.get_errno())\n"
        "pid = os.fork()\n"
        "if pid == 0: os._exit(7)\n"
        "t = threading.Thread(target=print); t.start(); t.join()\n"
        "out['fork, threads, subprocess'] = (os.waitpid(pid, 0)[1] >> 8, subprocess.run(['true']).returncode)\n"
        "print(json.dumps(out))"), FAST)
    assert result.status == "ok", result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen.pop("fork, threads, subprocess") == [7, 0]  # what programs do need still works
    assert seen == {name: [-1, 1] for name in SYSCALLS_x86_64}  # every one refused with EPERM


#: eight children of 300 MB each, every one under the per-process RLIMIT_AS (512 MB): 2.4 GB together
EIGHT_CHILDREN_OF_300_MB = (
    "import os, time\nkids = []\n"
    "for i in range(8):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        x = bytearray(300 << 20)\n"
    "        for j in range(0, len(x), 4096): x[j] = 1\n"
    "        time.sleep(2); os._exit(0)\n"
    "    kids.append(pid)\n"
    "print(sorted(os.waitpid(k, 0)[1] & 0x7f for k in kids))")  # the signal that ended each child


def test_the_run_as_a_whole_is_capped_where_control_groups_are_usable(sandbox):
    """RLIMIT_AS caps each process (512 MB), not their sum: eight children of 300 MB each would hold 2.4 GB.
    The run's control group caps them together (memory_mb + 2 x scratch_mb = 640 MB by default)."""
    from r1gym.plugins.code.cgroups import run_groups

    groups = run_groups()
    if groups.kind is None or os.geteuid() != 0:
        pytest.skip(groups.describe())
    result = sandbox.run(py(EIGHT_CHILDREN_OF_300_MB), Limits(time_s=10.0))
    assert result.status == "ok", result.stderr
    killed = eval(result.stdout).count(9)  # SIGKILL from the group's memory limit
    assert killed >= 5, result.stdout  # at most two 300 MB children fit beside the parent in 640 MB
    # a run that ends badly after the group's limit killed a process of it is a memory_limit, with that reason
    big = sandbox.run(py("import os, time\nkids = []\nfor i in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
                         "        y = bytearray(300 << 20)\n        for j in range(0, len(y), 4096): y[j] = 1\n"
                         "        time.sleep(1); os._exit(0)\n    kids.append(pid)\n"
                         "raise SystemExit(sum(os.waitpid(k, 0)[1] & 0x7f == 9 for k in kids))"), Limits(time_s=10.0))
    assert (big.status, big.detail) == ("memory_limit", "memory limit of the whole run (640 MB)")


def test_without_control_groups_the_run_is_accounted_from_proc(sandbox, monkeypatch):
    """Where no control group can be made (non-root, no delegation), the fallback sums the process tree's
    resident memory every 50 ms and kills the run past the same cap."""
    from r1gym.plugins.code import cgroups

    if not cgroups.TreeAccountant.available():
        pytest.skip("this kernel has no /proc/<pid>/task/<tid>/children to account from")
    none = cgroups.RunGroups.__new__(cgroups.RunGroups)
    none.kind, none.bases, none.why = None, {}, "disabled for this test"
    monkeypatch.setattr(cgroups, "run_groups", lambda: none)
    assert "accounted from /proc" in none.describe()
    result = sandbox.run(py(EIGHT_CHILDREN_OF_300_MB), Limits(time_s=10.0))
    assert (result.status, result.stdout) == ("memory_limit", ""), (result.status, result.detail, result.stdout)
    assert "accounted from /proc" in result.detail
