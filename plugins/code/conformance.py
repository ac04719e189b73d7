"""A conformance suite for sandbox backends: hostile programs that each try one trick, and what must hold after.

Any object with the :class:`~r1gym.core.contracts.Sandbox` protocol (``local``, ``e2b``, a plugin's)
can run it against itself::

    failures = run_conformance(sandbox)           # [] when every attack ended as it must
    r1gym sandbox check --backend local            # the same from the command line, as a table

Every attack is written from the attacker's side: the program really tries the trick (walks the file system
for a planted secret, reads other processes' environments, connects out, mounts, ptraces, forks a daemon that
should outlive the run, fills every writable place, floods its output, reads inherited descriptors, ...) and
prints ``LEAK ...`` when it got somewhere, so a weakness shows in its output. An attack fails when

* the run did not end in one of its ``expect`` statuses, or took far longer than its limit (it hung);
* the planted secret shows in its stdout or stderr, or it printed ``LEAK``, or its own ``check`` says why;
* with ``host_checks`` (the sandbox runs on this machine): a process of a sandbox uid is left on the host,
  one of the files attacks try to write outside their scratch exists on the host, a scratch dir of the run
  (``r1gym-sbx-*`` holding the attack's source) is left, or after an attack marked ``holds_memory`` the host's
  memory does not come back (polled for :data:`SETTLE_S` seconds: the kernel frees a dead namespace's tmpfs,
  IPC objects and pages a moment after the run): ``Shmem`` in ``/proc/meminfo`` (tmpfs, SysV and memfd pages:
  the ways a run's memory could outlive its processes) must come back to within :data:`SHMEM_SLACK_MB` of
  what it was before, and ``MemAvailable`` within :data:`MEMORY_SLACK_MB`.

Secrets are planted (:func:`plant`) before the suite, world-readable, and removed after: in the project folder
(the working directory or ``project_dir``), a run folder, ``$HOME``, ``/tmp`` and ``/var/tmp``, and in this
process's environment. Attacks that belong together (one leaves something, the next looks for it) are
consecutive in :data:`ATTACKS`; others look while another run holds things (``alongside``: a program run in a
second sandbox run at the same time, as runs are in training). An attack that shows a weakness not fixed yet
carries ``xfail_reason``: it still runs, and its failure is reported as expected, not hidden.

Host checks do not blame runs of other processes on the same host (other trainers, other test sessions): a
scratch dir counts only when it holds this attack's source, and a process counts as a stray only when its
uid is a sandbox uid that no other process holds the lock of (:class:`~r1gym.plugins.code.sandbox._UidSlots`),
which needs runs to get uids of their own (r1gym run as root); as another user every run has that user's uid
and strays cannot be told apart, so that check is skipped. The memory check is coarse by nature, since other processes on the host allocate and free
too: the ``MemAvailable`` margin is a gigabyte (a test session beside us loading a model moves it by that much),
the ``Shmem`` margin 64 MB; a stray process holding memory is caught by the process check instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from r1gym.core.contracts import Limits, Program, RunResult
from r1gym.plugins.code import sandbox as sandbox_module

CATEGORIES = ("escape", "secrets", "other-runs", "resources", "process", "time", "output", "fds")
EVIL = "r1gym-conformance-evil"  # the name attacks try to create outside their scratch
DROP = "r1gym-conformance-drop"  # the name attacks leave for other runs to find
SECRET_NAME = "r1gym-conformance-secret"
SECRET_ENV = "R1GYM_CONFORMANCE_SECRET"
MEMORY_SLACK_MB = 1024
SHMEM_SLACK_MB = 64
SETTLE_S = 5.0
HANG_MARGIN_S = 15.0  # a run that takes its time limit plus this much did not end: it hung


@dataclass(frozen=True)
class Planted:
    """The secret and where it was planted (world-readable files, this process's environment)."""

    secret: str
    paths: tuple[str, ...]
    project_dir: str
    run_dir: str
    home: str

    def evil_paths(self) -> list[str]:
        """The host paths attacks try to create (``<dir>/r1gym-conformance-evil``, ``-drop``); none may exist
        after."""
        dirs = ["/", "/usr", "/usr/lib", "/etc", "/dev", "/dev/shm", "/tmp", "/var/tmp", "/root", "/home",
                self.project_dir, self.run_dir, self.home]
        return [os.path.join(d, name) for d in dict.fromkeys(dirs) for name in (EVIL, DROP)]


@contextlib.contextmanager
def plant(project_dir: str | None = None) -> Iterator[Planted]:
    """Write a fresh random secret into the project folder, a run folder, ``$HOME``, ``/tmp``, ``/var/tmp``
    and ``$R1GYM_CONFORMANCE_SECRET``; remove all of it afterwards."""
    secret = "R1GYM-PLANTED-" + secrets.token_hex(12)
    project = os.path.abspath(project_dir or os.getcwd())
    home = os.path.expanduser("~")
    run_dir = tempfile.mkdtemp(prefix="r1gym-conformance-run-")
    os.chmod(run_dir, 0o755)  # readable by anyone: only the sandbox may keep a run from it
    name = f"{SECRET_NAME}-{secrets.token_hex(4)}"  # two suites at once on one host keep their own
    # the shared places first: a compiler stops at the first file it may not read (in a 0700 home, say)
    paths = [os.path.join(run_dir, "config.yaml"), os.path.join(tempfile.gettempdir(), name),
             os.path.join("/var/tmp", name), os.path.join(project, "." + name), os.path.join(home, "." + name)]
    written, old_env = [], os.environ.get(SECRET_ENV)
    try:
        for p in paths:
            with contextlib.suppress(OSError):
                with open(p, "w") as f:
                    f.write(f"api_key: {secret}\n")
                os.chmod(p, 0o644)
                written.append(p)
        os.environ[SECRET_ENV] = secret
        yield Planted(secret, tuple(written), project, run_dir, home)
    finally:
        for p in written:
            with contextlib.suppress(OSError):
                os.unlink(p)
        shutil.rmtree(run_dir, ignore_errors=True)
        if old_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = old_env


@dataclass(frozen=True)
class Attack:
    """One hostile program. ``source`` may contain ``@PATHS@`` (replaced by the planted paths' list),
    ``@EVIL_DIRS@`` (the host folders attacks try to write in) and ``@INCLUDES@`` (C++ lines that include each
    planted file where the compiler can see it); ``check`` says why a result is wrong."""

    name: str
    category: str
    source: str
    expect: tuple[str, ...] = ("ok",)
    limits: Limits = Limits(time_s=2.0, memory_mb=256, output_bytes=64 << 10, processes=32, file_mb=8,
                            open_files=64, scratch_mb=32)
    check: Callable[[RunResult, Planted], str | None] | None = None
    stdin: str = ""
    language: str = "python"
    holds_memory: bool = False
    xfail_reason: str = ""
    alongside: str = ""  # a Python program run in another sandbox at the same time, started a moment before

    def program(self, planted: Planted) -> Program:
        dirs = list(dict.fromkeys(os.path.dirname(p) for p in planted.evil_paths()))
        includes = "".join(f'#if __has_include("{p}")\n#warning "LEAK the compiler sees {p}"\n#endif\n'
                           for p in planted.paths)
        includes += "".join(f'#if __has_include("{p}")\n#include "{p}"\n#endif\n' for p in planted.paths)
        source = (self.source.replace("@PATHS@", repr(list(planted.paths))).replace("@EVIL_DIRS@", repr(dirs))
                  .replace("@INCLUDES@", includes))
        return Program(self.language, source, stdin=self.stdin)


# -- host post-conditions ----------------------------------------------------------------------------------
def strays() -> list[str]:
    """Processes of a sandbox uid on this host ("uid pid state comm"), except those of uids another process
    holds right now (runs in flight elsewhere). Empty when runs do not get uids of their own (not root)."""
    import fcntl

    uids = sandbox_module._UIDS.all
    if os.geteuid() != 0:
        return []
    found = []
    for pid in filter(str.isdigit, _listdir("/proc")):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            if uid not in uids:
                continue
            with open(f"/proc/{pid}/stat") as f:
                comm, rest = f.read().rsplit(")", 1)
            found.append((uid, f"{uid} {pid} {rest.split()[0]} {comm.split('(', 1)[1]}"))
        except (OSError, IndexError):
            continue
    held_elsewhere = set()
    for uid in {u for u, _ in found}:
        try:
            fd = os.open(os.path.join(sandbox_module._UIDS._lock_dir(), str(uid)), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            held_elsewhere.add(uid)
        finally:
            os.close(fd)
    return [line for uid, line in found if uid not in held_elsewhere]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def meminfo_mb() -> dict[str, float]:
    """``/proc/meminfo`` in MB (``MemAvailable``, ``Shmem``, ...)."""
    with open("/proc/meminfo") as f:
        return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in f)}


def _left_scratch(source: str) -> list[str]:
    """Scratch dirs of the local backend that still hold this source."""
    base = tempfile.gettempdir()
    left = []
    for name in _listdir(base):
        if name.startswith("r1gym-sbx-"):
            for f in ("main.py", "main.cpp"):
                with contextlib.suppress(OSError):
                    with open(os.path.join(base, name, f)) as fh:
                        if fh.read() == source:
                            left.append(os.path.join(base, name))
    return left


def _settled(condition: Callable[[], bool], seconds: float = SETTLE_S) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- running ---------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    attack: Attack
    result: RunResult | None
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.reasons


def check_attack(sandbox: sandbox_module.Sandbox, attack: Attack, planted: Planted, *,
                 host_checks: bool = True) -> Outcome:
    """Run one attack and say everything that went wrong (``Outcome.reasons``, empty when it passed)."""
    program = attack.program(planted)
    before = meminfo_mb() if host_checks and attack.holds_memory else {}
    beside = _Beside(sandbox, attack) if attack.alongside else None
    started = time.perf_counter()
    try:
        result = sandbox.run(program, attack.limits)
    except Exception as exc:  # a backend must never raise for a program's behaviour
        return Outcome(attack, None, [f"the sandbox raised {type(exc).__name__}: {exc}"], time.perf_counter() - started)
    finally:
        if beside is not None:
            beside.join()
    seconds = time.perf_counter() - started
    reasons = [] if beside is None or beside.result.status == "ok" else [
        f"the run beside it ended {beside.result.status}: {beside.result.stderr.strip()[-160:]}"]
    if result.status not in attack.expect:
        reasons.append(f"status {result.status} ({result.detail.strip()[:120] or result.stderr.strip()[-200:]}), "
                       f"expected {' or '.join(attack.expect)}")
    if seconds > attack.limits.time_s + HANG_MARGIN_S:
        reasons.append(f"took {seconds:.1f} s with a limit of {attack.limits.time_s} s")
    if planted.secret in result.stdout or planted.secret in result.stderr:
        reasons.append("printed the planted secret")
    leaks = [line.strip()[:160] for line in result.stdout.splitlines() if line.startswith("LEAK")]
    if leaks:
        reasons.append("; ".join(leaks[:3]))
    if attack.check is not None and (why := attack.check(result, planted)):
        reasons.append(why)
    if host_checks:
        reasons += _host_reasons(attack, program, planted, before)
    return Outcome(attack, result, reasons, seconds)


class _Beside:
    """``attack.alongside`` running in another sandbox run, in a thread, from a moment before the attack."""

    HEAD_START_S = 0.7  # the interpreter starts and makes what it holds well within this (no correctness hinges on it)

    def __init__(self, sandbox: sandbox_module.Sandbox, attack: Attack):
        import threading

        limits = replace(attack.limits, time_s=attack.limits.time_s + 5.0)
        self.result = RunResult("sandbox_error", None, "", "", 0.0, 0.0, "did not end")
        self._thread = threading.Thread(target=self._run, args=(sandbox, Program("python", attack.alongside), limits),
                                        daemon=True)
        self._thread.start()
        time.sleep(self.HEAD_START_S)

    def _run(self, sandbox, program, limits) -> None:
        try:
            self.result = sandbox.run(program, limits)
        except Exception as exc:
            self.result = RunResult("sandbox_error", None, "", "", 0.0, 0.0, f"{type(exc).__name__}: {exc}")

    def join(self) -> None:
        self._thread.join()


def _host_reasons(attack: Attack, program: Program, planted: Planted, before: dict[str, float]) -> list[str]:
    reasons = []
    if not _settled(lambda: not strays()):
        reasons.append(f"processes left on the host: {strays()[:5]}")
        _kill_strays()
    for path in planted.evil_paths():
        if os.path.lexists(path):
            reasons.append(f"wrote {path} on the host")
            with contextlib.suppress(OSError):
                os.unlink(path)
    if left := _left_scratch(program.source):
        reasons.append(f"left its scratch dir {left[0]}")
    if attack.holds_memory:
        def back() -> bool:
            now = meminfo_mb()
            return (now["Shmem"] < before["Shmem"] + SHMEM_SLACK_MB
                    and now["MemAvailable"] > before["MemAvailable"] - MEMORY_SLACK_MB)

        if not _settled(back):
            now = meminfo_mb()
            reasons.append("host memory not back: " + ", ".join(
                f"{k} {now[k]:.0f} MB ({before[k]:.0f} before)" for k in ("Shmem", "MemAvailable")))
    return reasons


def _kill_strays() -> None:
    """Kill what an attack left (so that the next attack is not blamed for it)."""
    import signal

    for line in strays():
        with contextlib.suppress(OSError):
            os.kill(int(line.split()[1]), signal.SIGKILL)


def run_conformance(sandbox: sandbox_module.Sandbox, attacks: Sequence[Attack] | None = None, *,
                    host_checks: bool = True, project_dir: str | None = None,
                    report: Callable[[Outcome], None] | None = None) -> list[str]:
    """Run ``attacks`` (default :data:`ATTACKS`) through ``sandbox``; return ``"<name>: <why>"`` for each failure.
    ``host_checks``: also check this host after each attack (only where the sandbox runs on this machine).
    An attack with ``xfail_reason`` that fails is not a failure (``report`` still sees it)."""
    failures = []
    with plant(project_dir) as planted:
        for attack in ATTACKS if attacks is None else attacks:
            outcome = check_attack(sandbox, attack, planted, host_checks=host_checks)
            if report is not None:
                report(outcome)
            if outcome.reasons and not attack.xfail_reason:
                failures.append(f"{attack.name}: {'; '.join(outcome.reasons)}")
    return failures


# -- the attacks ---------------------------------------------------------------------------------------------
SMALL = Attack.__dataclass_fields__["limits"].default
QUICK = replace(SMALL, time_s=1.0)  # for attacks that must end in a timeout
SCRATCH_CAP_MB = SMALL.scratch_mb
RUN_CAP_MB = SMALL.memory_mb + 2 * SMALL.scratch_mb  # what a control group allows the run as a whole


def _at_most(label: str, limit_mb: float) -> Callable[[RunResult, Planted], str | None]:
    """A check: the largest ``<label> N`` the program printed (MB it held or wrote) is at most ``limit_mb``."""

    def check(result: RunResult, planted: Planted) -> str | None:
        got = [float(x) for x in re.findall(rf"^{label} (\d+(?:\.\d+)?)", result.stdout, re.M)]
        if got and max(got) > limit_mb:
            return f"{label} {max(got):.0f} MB, more than {limit_mb:.0f} MB"
        return None

    return check


def _not_this_host(result: RunResult, planted: Planted) -> str | None:
    import socket

    name = socket.gethostname()
    return f"shows this host's name {name!r}" if name in result.stdout.split() else None


def _no_output(result: RunResult, planted: Planted) -> str | None:
    return f"output that should not exist: {result.stdout[-120:]!r}" if "late" in result.stdout else None


_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
_WALK = """\
import os, stat, time
MARK = ("R1GYM" + "-PLANTED-").encode()
start, seen = time.monotonic(), 0
for top in TOPS:
    for here, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(here, d)) not in ("/proc", "/sys", "/dev")]
        for f in files:
            seen += 1
            path = os.path.join(here, f)
            if os.path.realpath(path).startswith("/usr/") and "r1gym" not in f.lower():
                continue
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue
                with open(path, "rb") as fh:
                    data = fh.read(1 << 16)
            except OSError:
                continue
            if MARK in data:
                print("LEAK", path, data[:100])
        if time.monotonic() - start > 2.5:
            break
print("looked at", seen, "files")
"""

_FILL = """\
import os
wrote, block = 0, b"d" * (1 << 20)
try:
    for i in range(10000):
        with open(f"{FOLDER}/fill{i}", "wb") as f:
            for _ in range(4):
                f.write(block); wrote += 1
except OSError as e:
    print("stopped:", e)
print("wrote", wrote)
"""

_FIND_FILES = """\
import glob, os
for d in ("/tmp", "/dev/shm", "/var/tmp", "/run/shm", os.path.expanduser("~")):
    if os.path.exists(os.path.join(d, "r1gym-conformance-drop")):
        print("LEAK found a file of an earlier run in", d)
for p in glob.glob("/tmp/r1gym-sbx-*") + glob.glob("/tmp/*/main.py"):
    print("LEAK another run's scratch:", p)
print("done")
"""

_FIND_PROCESS = """\
import os, socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\\0r1gym-conformance"); print("LEAK reached a process of an earlier run")
except OSError:
    pass
mine = {str(os.getpid())}
others = [p for p in os.listdir("/proc") if p.isdigit() and p not in mine]
if others:
    print("LEAK processes besides mine:", [open(f"/proc/{p}/cmdline", "rb").read()[:60] for p in others[:5]])
print("done")
"""

_FIND_IPC = _LIBC + """\
KEY = 0x52314759
for name, call in (("shm", lambda: libc.shmget(KEY, 0, 0)), ("msg", lambda: libc.msgget(KEY, 0)),
                   ("sem", lambda: libc.semget(KEY, 0, 0))):
    if call() >= 0:
        print("LEAK found an earlier run's", name)
for p in ("/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"):
    try:
        lines = open(p).read().splitlines()[1:]
        if lines:
            print("LEAK", p, lines[:2])
    except OSError:
        pass
print("done")
"""

_HOLDER = _LIBC + """\
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind("\\0r1gym-conformance")
s.listen()
for d in ("/tmp", "/dev/shm"):
    open(os.path.join(d, "r1gym-conformance-drop"), "w").write("a run in flight")
libc.shmget(0x52314759, 1 << 20, 0o1666)
time.sleep(2)
"""

A = Attack
ATTACKS: tuple[Attack, ...] = (
    # -- escape: see or change the host ----------------------------------------------------------------------
    A("walk-the-whole-file-system", "escape", "TOPS = ['/']\n" + _WALK, limits=replace(SMALL, time_s=5.0)),
    A("walk-up-from-the-scratch-dir", "escape", "TOPS = ['..', '../..', '/tmp/../..', '/proc/self/cwd/..']\n" + _WALK,
      limits=replace(SMALL, time_s=5.0)),
    A("open-the-planted-paths", "escape", """\
import os
for p in @PATHS@:
    for q in (p, "/tmp/../.." + p, "/proc/self/root" + p, "/proc/1/root" + p, "/proc/1/cwd/../.." + p):
        try:
            print("LEAK read", q, open(q).read())
        except OSError:
            pass
    try:
        if os.path.basename(p) in os.listdir(os.path.dirname(p)):
            print("LEAK listed", p)
    except OSError:
        pass
print("done")
"""),
    A("host-directories", "escape", """\
import os
for p in ("/work", "/home", "/root", "/opt", "/srv", "/mnt", "/media", "/var", "/run", "/etc", "/boot", "/sys",
          "/usr/local/bin", "/usr/local/lib", "/snap", "/nix", "/data", "/datasets", "/mnt/data"):
    try:
        print("LEAK", p, os.listdir(p)[:5]) if os.listdir(p) else None
    except OSError:
        pass
for p in @PATHS@:
    d = os.path.dirname(p)
    if d not in ("/tmp",) and os.path.exists(d):
        print("LEAK the planted file's folder exists:", d)
print("done")
"""),
    A("write-outside-the-scratch", "escape", """\
import os
for d in @EVIL_DIRS@ + ["/usr/lib/python3", "/proc/sys", "/sys", "/bin"]:
    try:
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "r1gym-conformance-evil"), "w") as f:
            f.write("x")
        if not d.startswith(("/tmp", "/dev/shm")):  # those two are the run's own
            print("LEAK wrote in", d)
    except OSError as e:
        pass
print("done")
"""),
    A("modify-the-bound-source", "escape", """\
import os
for how in ("append", "unlink", "rename", "chmod"):
    try:
        if how == "append": open("/tmp/main.py", "a").write("# changed")
        if how == "unlink": os.unlink("/tmp/main.py")
        if how == "rename": os.rename("/tmp/main.py", "/tmp/moved.py")
        if how == "chmod": os.chmod("/tmp/main.py", 0o777)
        print("LEAK could", how, "the host's copy of main.py")
    except OSError:
        pass
print("done")
"""),
    A("mount-things", "escape", _LIBC + """\
os.makedirs("/tmp/m", exist_ok=True)
for src, dst, fs, flags in ((b"none", b"/tmp/m", b"tmpfs", 0), (b"proc", b"/tmp/m", b"proc", 0),
                            (b"/", b"/tmp/m", None, 4096), (b"none", b"/", None, 32 | 1 << 14)):  # bind; remount rw
    if libc.mount(src, dst, fs, flags, None) == 0:
        print("LEAK mounted", src, dst, fs, flags)
if libc.umount2(b"/usr", 2) == 0:
    print("LEAK unmounted /usr")
print("done")
"""),
    A("new-namespaces", "escape", _LIBC + """\
for name, flag in (("user", 0x10000000), ("mount", 0x20000), ("net", 0x40000000), ("pid", 0x20000000),
                   ("ipc", 0x08000000), ("uts", 0x04000000), ("cgroup", 0x02000000), ("time", 0x80)):
    if libc.unshare(flag) == 0:
        print("LEAK unshare", name)
fd = os.open("/proc/self/ns/user", os.O_RDONLY)
if libc.setns(fd, 0) == 0:
    print("LEAK setns")
print("done")
"""),
    A("chroot-escape", "escape", _LIBC + """\
os.makedirs("/tmp/jail", exist_ok=True)
if libc.chroot(b"/tmp/jail") == 0:
    for _ in range(64):
        os.chdir("..")
    libc.chroot(b".")
    print("LEAK chroot worked; / has", os.listdir("/")[:10])
print("done")
"""),
    A("ptrace-anything", "escape", _LIBC + """\
import time
child = os.fork()
if child == 0:
    time.sleep(5); os._exit(0)
for what, args in (("traceme", (0, 0, 0, 0)), ("attach to child", (16, child, 0, 0)), ("attach to 1", (16, 1, 0, 0)),
                   ("seize child", (0x4206, child, 0, 0))):
    if libc.ptrace(*args) == 0:
        print("LEAK ptrace", what)
os.kill(child, 9)
print("done")
"""),
    A("become-root", "escape", """\
import os
print("uid", os.getuid(), "euid", os.geteuid())
if os.geteuid() == 0:
    print("LEAK running as root")
for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0]), lambda: os.setresuid(0, 0, 0)):
    try:
        call(); print("LEAK switched to root")
    except OSError:
        pass
caps = [l for l in open("/proc/self/status") if l.startswith(("CapEff", "CapPrm", "CapAmb"))]
if any(int(l.split()[1], 16) for l in caps):
    print("LEAK capabilities", caps)
print("done")
"""),
    A("setuid-binaries", "escape", """\
import os, stat, subprocess
found = []
for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/lib/dbus-1.0", "/usr/lib/openssh"):
    for f in os.listdir(d) if os.path.isdir(d) else []:
        try:
            if os.stat(os.path.join(d, f)).st_mode & stat.S_ISUID:
                found.append(os.path.join(d, f))
        except OSError:
            pass
print("setuid:", found)
os.makedirs("/tmp/m", exist_ok=True)
for argv in (["mount", "-t", "tmpfs", "none", "/tmp/m"], ["su", "-c", "id -u"], ["sudo", "-n", "id", "-u"]):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=1, stdin=subprocess.DEVNULL)
        if p.returncode == 0:
            print("LEAK", argv, p.stdout[:80])
    except (OSError, subprocess.TimeoutExpired):
        pass
print("done")
"""),
    A("device-files", "escape", """\
import os, stat
for p in ("/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/xvda",
          "/dev/tty0", "/dev/fuse", "/dev/net/tun", "/dev/console", "/dev/loop0", "/dev/dri/card0"):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        print("LEAK opened", p)
        os.close(fd)
    except OSError:
        pass
try:
    os.mknod("/tmp/disk", stat.S_IFBLK | 0o600, os.makedev(8, 0))
    print("LEAK read a block device:", open("/tmp/disk", "rb").read(16))
except OSError:
    pass
print("done")
"""),
    A("kernel-knobs", "escape", """\
for path, value in (("/proc/sysrq-trigger", "h"), ("/proc/sys/vm/drop_caches", "1"),
                    ("/proc/sys/kernel/ns_last_pid", "300"), ("/proc/self/oom_score_adj", "-1000"),
                    ("/sys/kernel/mm/transparent_hugepage/enabled", "never")):
    try:
        with open(path, "w") as f:
            f.write(value)
        print("LEAK wrote", path)
    except OSError:
        pass
print("done")
"""),
    A("container-runtime-sockets", "escape", """\
import glob, socket
paths = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock",
         "/run/dbus/system_bus_socket", "/run/systemd/private", "/run/user/0/bus", "/var/run/crio/crio.sock"]
for p in paths + glob.glob("/run/**/*.sock", recursive=True) + glob.glob("/tmp/.X11-unix/*"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p); print("LEAK connected to", p)
    except OSError:
        pass
print("done")
"""),
    A("network-tcp", "escape", """\
import socket
targets = [("127.0.0.1", p) for p in (22, 80, 443, 2375, 5432, 6379, 8000, 8080, 11434)]
targets += [("1.1.1.1", 53), ("1.1.1.1", 443), ("8.8.8.8", 53), ("::1", 22)]
for host, port in targets:
    try:
        socket.create_connection((host, port), timeout=0.3).close()
        print("LEAK connected to", host, port)
    except OSError:
        pass
print("interfaces", socket.if_nameindex())
if [n for _, n in socket.if_nameindex() if n != "lo"]:
    print("LEAK a network interface besides lo")
print("done")
"""),
    A("network-udp-and-dns", "escape", """\
import socket
for fam, addr in ((socket.AF_INET, ("1.1.1.1", 53)), (socket.AF_INET, ("255.255.255.255", 9)),
                  (socket.AF_INET6, ("2606:4700:4700::1111", 53))):
    try:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.sendto(b"r1gym", addr)
        print("LEAK sent a datagram to", addr)
    except OSError:
        pass
try:
    print("LEAK resolved", socket.getaddrinfo("example.com", 80)[0][4])
except OSError:
    pass
print("done")
"""),
    A("raw-and-packet-sockets", "escape", """\
import socket
for fam, kind, proto in ((socket.AF_PACKET, socket.SOCK_RAW, 0x0300), (socket.AF_INET, socket.SOCK_RAW, 1),
                         (socket.AF_NETLINK, socket.SOCK_RAW, 0)):
    try:
        s = socket.socket(fam, kind, proto)
        if fam == socket.AF_NETLINK:
            s.bind((0, 0)); s.close(); continue  # route netlink: an own, empty network namespace
        print("LEAK raw socket", fam, kind)
    except OSError:
        pass
print("done")
"""),
    A("foreign-system-call-abi", "escape", """\
#include <cstdio>
#include <cstdlib>
int main() {
#if defined(__x86_64__)
    long ret;
    asm volatile("int $0x80" : "=a"(ret) : "a"(26L), "b"(0L), "c"(1L) : "memory");  // i386 ptrace(TRACEME)
    std::printf("LEAK the 32-bit ABI answered %ld\\n", ret);
    return 0;
#else
    std::abort();  // no second ABI to try: end as the x86-64 run does
#endif
}
""", expect=("runtime_error",), language="cpp"),
    A("x32-system-calls", "escape", _LIBC + """\
for name, nr, args in (("unshare", 272, (0x10000000,)), ("mount", 165, (b"none", b"/tmp", b"tmpfs", 0, None)),
                       ("ptrace", 101, (0, 0, 0, 0))):
    if libc.syscall(0x40000000 | nr, *args) >= 0:  # the x32 ABI: same architecture, another numbering
        print("LEAK x32", name)
print("done")
""", expect=("ok", "runtime_error")),
    A("raw-system-calls-in-cpp", "escape", """\
#include <cstdio>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
int main() {
    struct { const char* name; long nr, a, b, c; } calls[] = {
        {"unshare(CLONE_NEWUSER)", SYS_unshare, CLONE_NEWUSER, 0, 0},
        {"unshare(CLONE_NEWNS)", SYS_unshare, CLONE_NEWNS, 0, 0},
        {"mount", SYS_mount, (long)"none", (long)"/tmp", (long)"tmpfs"}, {"ptrace(TRACEME)", SYS_ptrace, 0, 0, 0},
        {"bpf", SYS_bpf, 0, 0, 0}, {"keyctl", SYS_keyctl, 0, 0, 0}, {"chroot", SYS_chroot, (long)"/tmp", 0, 0},
        {"perf_event_open", SYS_perf_event_open, 0, 0, -1}, {"io_uring_setup", 425, 1, 0, 0}};
    for (auto& c : calls)
        if (syscall(c.nr, c.a, c.b, c.c, 0, 0) >= 0) std::printf("LEAK %s\\n", c.name);
    long child = syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | 17, 0, 0, 0, 0);
    if (child == 0) _exit(0);
    if (child > 0) std::printf("LEAK clone(CLONE_NEWUSER)\\n");
    std::printf("done\\n");
}
""", language="cpp"),
    # -- secrets -----------------------------------------------------------------------------------------------
    A("environment", "secrets", """\
import os
print(dict(os.environ))
for k in os.environ:
    if any(w in k.upper() for w in ("KEY", "TOKEN", "SECRET", "PASSWORD", "R1GYM", "AWS", "WANDB", "HF_")):
        print("LEAK host variable", k)
"""),
    A("every-process-environ-and-cmdline", "secrets", """\
import os
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self", "thread-self"]:
    for what in ("environ", "cmdline", "cwd", "root", "exe"):
        try:
            p = f"/proc/{pid}/{what}"
            print(pid, what, os.readlink(p) if what in ("cwd", "root", "exe") else open(p, "rb").read()[:2000])
        except OSError:
            pass
"""),
    A("system-secrets", "secrets", """\
import os
for p in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/passwd", "/etc/hostname", "/root/.ssh/id_rsa",
          "/root/.ssh/id_ed25519", "/root/.bash_history", "/root/.netrc", "/root/.aws/credentials",
          "/root/.cache/huggingface/token", "/root/.config/gcloud/credentials.db", "/root/.docker/config.json",
          "/var/run/secrets/kubernetes.io/serviceaccount/token", "/proc/1/environ", os.path.expanduser("~/.netrc")):
    try:
        data = open(p, "rb").read()
        if p != "/proc/1/environ":  # our own (pid 1 of the run) is no secret
            print("LEAK read", p, data[:80])
    except OSError:
        pass
print("done")
"""),
    A("cloud-metadata-service", "secrets", """\
import socket
for host in ("169.254.169.254", "169.254.170.2", "metadata.google.internal", "100.100.100.200"):
    try:
        s = socket.create_connection((host, 80), timeout=0.5)
        s.sendall(b"GET /latest/meta-data/ HTTP/1.0\\r\\n\\r\\n")
        print("LEAK metadata", host, s.recv(200))
    except OSError:
        pass
print("done")
"""),
    A("kernel-log-and-keyrings", "secrets", _LIBC + """\
buf = ctypes.create_string_buffer(1 << 16)
n = libc.klogctl(3, buf, len(buf))
if n > 0:
    print("LEAK kernel log", buf.raw[:80])
try:
    print("LEAK /dev/kmsg", open("/dev/kmsg", "rb").read(80))
except OSError:
    pass
for ring in (-3, -4, -5):  # session, user, user-session keyrings
    if libc.syscall(250, 11, ring, buf, len(buf)) > 0:  # keyctl(KEYCTL_READ)
        print("LEAK keyring", ring, buf.raw[:80])
print("done")
"""),
    A("import-the-project-and-packages", "secrets", """\
import importlib, sys
for name in ("r1gym", "torch", "transformers", "e2b", "requests", "yaml", "numpy"):
    try:
        importlib.import_module(name)
        print("LEAK imported", name, "from", getattr(sys.modules[name], "__file__", "?"))
    except ImportError:
        pass
print(sys.path)
"""),
    A("read-every-open-file-of-every-process", "secrets", """\
import os
MARK = ("R1GYM" + "-PLANTED-").encode()
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
                data = open(f"/proc/{pid}/fd/{fd}", "rb").read(1 << 16)
                if MARK in data:
                    print("LEAK", target, data[:100])
        except OSError:
            pass
print("done")
"""),
    A("include-host-files-when-compiling", "secrets", "@INCLUDES@int main() { return 0; }\n", language="cpp",
      check=lambda r, p: "; ".join(re.findall(r"LEAK[^\n\"]*", r.stderr)[:2]) or None),
    A("host-identity", "secrets", """\
import os, socket
print(socket.gethostname(), os.uname().nodename, open("/proc/sys/kernel/hostname").read().strip())
""", check=_not_this_host),
    # -- other runs: one leaves something, the next looks for it ---------------------------------------------
    A("leave-files-for-the-next-run", "other-runs", """\
import os
for d in ("/tmp", "/dev/shm", "/var/tmp", os.path.expanduser("~")):
    try:
        with open(os.path.join(d, "r1gym-conformance-drop"), "w") as f:
            f.write("left by an earlier run")
        os.chmod(os.path.join(d, "r1gym-conformance-drop"), 0o666)
        print("left a file in", d)
    except OSError:
        pass
"""),
    A("find-files-of-an-earlier-run", "other-runs", _FIND_FILES),
    A("leave-a-listening-process", "other-runs", """\
import os, socket, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        s = socket.socket(socket.AF_UNIX)
        s.bind("\\0r1gym-conformance")
        s.listen()
        os.write(w, b"x")
        time.sleep(30)
    os._exit(0)
os.read(r, 1)
print("a daemon listens")
"""),
    A("find-a-process-of-an-earlier-run", "other-runs", _FIND_PROCESS),
    A("leave-sysv-ipc-objects", "other-runs", _LIBC + """\
KEY = 0x52314759
shm = libc.shmget(KEY, 1 << 20, 0o1666)  # IPC_CREAT | 0666
msg = libc.msgget(KEY, 0o1666)
sem = libc.semget(KEY, 1, 0o1666)
print("made", shm, msg, sem)
"""),
    A("find-sysv-ipc-of-an-earlier-run", "other-runs", _FIND_IPC),
    A("find-files-of-a-run-in-flight", "other-runs", _FIND_FILES, alongside=_HOLDER),
    A("find-a-process-of-a-run-in-flight", "other-runs", _FIND_PROCESS, alongside=_HOLDER),
    A("find-sysv-ipc-of-a-run-in-flight", "other-runs", _FIND_IPC, alongside=_HOLDER),
    A("poison-the-runtime", "other-runs", """\
import os, sys, sysconfig
poison = "print('LEAK poisoned by an earlier run')\\n"
targets = [os.path.join(sysconfig.get_paths()["stdlib"], "sitecustomize.py"),
           os.path.join(sysconfig.get_paths()["purelib"], "r1gym-conformance.pth"),
           os.path.join(sysconfig.get_paths()["stdlib"], "__pycache__", "r1gym-conformance-evil"),
           "/usr/lib/python3/dist-packages/usercustomize.py"]
for t in targets:
    try:
        os.makedirs(os.path.dirname(t), exist_ok=True)
        with open(t, "w") as f:
            f.write(poison if t.endswith(".py") else "import sys; print('LEAK poisoned by an earlier run')\\n")
        print("LEAK wrote", t)
    except OSError:
        pass
print("done")
"""),
    A("run-after-the-poisoning", "other-runs", "print('clean')\n",
      check=lambda r, p: None if r.stdout == "clean\n" else f"output {r.stdout[:80]!r}"),
    # -- resources ---------------------------------------------------------------------------------------------
    A("fork-bomb", "resources", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n",
      expect=("timeout",), limits=QUICK),
    A("fork-bomb-in-cpp", "resources", "#include <unistd.h>\nint main() { for (;;) fork(); }\n",
      expect=("timeout",), limits=QUICK, language="cpp"),
    A("thread-bomb", "resources", """\
import threading, time
while True:
    try:
        threading.Thread(target=time.sleep, args=(60,)).start()
    except RuntimeError:
        pass
""", expect=("timeout",), limits=QUICK),
    A("memory-bomb", "resources", "x = bytearray(4 << 30)\nprint('LEAK got 4 GB')\n", expect=("memory_limit",),
      holds_memory=True),
    A("memory-grown-in-steps", "resources", """\
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
    print("held", 16 * len(chunks), flush=True)
""", expect=("memory_limit",), holds_memory=True, check=_at_most("held", SMALL.memory_mb)),
    A("memory-in-many-processes", "resources", """\
import os, time
kids = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        x = bytearray(120 << 20)
        for j in range(0, len(x), 4096): x[j] = 1
        time.sleep(1.5)
        os._exit(0)
    kids.append(pid)
alive = sum(os.waitpid(k, 0)[1] == 0 for k in kids)
print("held", alive * 120)
""", expect=("ok", "memory_limit"), limits=replace(SMALL, time_s=6.0), holds_memory=True,
      check=_at_most("held", RUN_CAP_MB + 32)),
    A("memory-in-memfds", "resources", """\
import os
fds, block = [], b"m" * (1 << 20)
while len(fds) < 60:
    fd = os.memfd_create("hoard")
    for _ in range(7):
        os.write(fd, block)
    fds.append(fd)
    print("held", 7 * len(fds), flush=True)
""", expect=("ok", "memory_limit", "runtime_error"), holds_memory=True, limits=replace(SMALL, time_s=4.0),
      check=_at_most("held", RUN_CAP_MB + 32)),
    A("memory-in-sysv-shared-memory", "resources", _LIBC + """\
libc.shmat.restype = ctypes.c_void_p
held = 0
for i in range(20):
    sid = libc.shmget(0, 32 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    if sid < 0:
        break
    addr = libc.shmat(sid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        break
    ctypes.memset(addr, 1, 32 << 20)
    libc.shmdt(ctypes.c_void_p(addr))  # detached, it lives on in the IPC namespace, outside RLIMIT_AS
    held += 32
    print("held", held, flush=True)
""", expect=("ok", "memory_limit", "runtime_error"), holds_memory=True, limits=replace(SMALL, time_s=4.0),
      check=_at_most("held", RUN_CAP_MB + 32)),
    A("fill-tmp", "resources", "FOLDER = '/tmp'\n" + _FILL, holds_memory=True,
      check=_at_most("wrote", SCRATCH_CAP_MB + 1)),
    A("fill-dev-shm", "resources", "FOLDER = '/dev/shm'\n" + _FILL, holds_memory=True,
      check=_at_most("wrote", SCRATCH_CAP_MB + 1)),
    A("one-file-past-the-file-size-limit", "resources",
      "f = open('/tmp/big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))\n", expect=("runtime_error",)),
    A("inode-exhaustion", "resources", """\
import os, time
n, start = 0, time.monotonic()
try:
    while time.monotonic() - start < 1.5:
        os.mkdir(f"/tmp/d{n}"); n += 1
except OSError as e:
    print("stopped:", e)
print("made", n, "inodes")
""", expect=("ok", "timeout", "memory_limit"), holds_memory=True),
    A("sparse-huge-files", "resources", """\
import os
for path in ("/tmp/sparse", "/dev/shm/sparse"):
    try:
        with open(path, "wb") as f:
            f.truncate(1 << 40)
    except OSError:
        pass
    try:
        with open(path, "wb") as f:
            f.seek(100 << 30); f.write(b"x")
    except OSError:
        pass
    if os.path.exists(path) and os.path.getsize(path) > 64 << 20:
        print("LEAK a file of", os.path.getsize(path), "bytes in", path)
print("done")
"""),
    A("fallocate", "resources", """\
import os
for path in ("/tmp/falloc", "/dev/shm/falloc"):
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.posix_fallocate(fd, 0, 1 << 30)
        print("LEAK allocated 1 GB in", path)
    except OSError:
        pass
print("done")
""", holds_memory=True),
    A("open-file-exhaustion", "resources", """\
import os, socket
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
try:
    while True:
        held += os.pipe()
except OSError:
    pass
try:
    while True:
        held += [s.detach() for s in socket.socketpair()]
except OSError:
    pass
print("held", len(held), "descriptors")
if len(held) > 64:
    print("LEAK more descriptors than the limit")
"""),
    A("address-space-reservation", "resources", """\
import mmap
try:
    m = mmap.mmap(-1, 64 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)  # MAP_NORESERVE
    print("LEAK reserved 64 GB")
except OSError:
    pass
print("done")
""", expect=("ok", "memory_limit")),
    A("huge-pages", "resources", """\
import mmap
try:  # MAP_HUGETLB: pages from the host's reserved pool, which a memory control group does not count
    m = mmap.mmap(-1, 64 << 21, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40000)
    m[::1 << 21] = b"x" * 64
    print("LEAK took 64 huge pages of the host's pool")
except (OSError, ValueError):
    pass
print("done")
""", expect=("ok", "memory_limit", "runtime_error"), holds_memory=True),
    A("cpu-threads-in-cpp", "resources", """\
#include <thread>
#include <vector>
int main() {
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; i++) ts.emplace_back([] { for (volatile unsigned long n = 0;; n++) {} });
    for (auto& t : ts) t.join();
}
""", expect=("timeout",), limits=QUICK, language="cpp"),
    A("cpu-in-many-processes", "resources", """\
import os
for i in range(8):
    if os.fork() == 0:
        while True: pass
while True: pass
""", expect=("timeout",), limits=QUICK),
    A("realtime-priority", "resources", """\
import os
for what, call in (("SCHED_FIFO", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))),
                   ("SCHED_RR", lambda: os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))),
                   ("nice -10", lambda: os.nice(-10)),
                   ("priority -20", lambda: os.setpriority(os.PRIO_PROCESS, 0, -20))):
    try:
        call(); print("LEAK", what)
    except OSError:
        pass
print("done")
"""),
    A("compile-for-ever", "resources", """\
template <int K> constexpr long f() {
    long s = 0;
    for (long i = 0; i < 200000; i++) for (long j = 0; j < 200000; j++) s += i ^ j ^ K;
    return s;
}
static_assert(f<1>() != 1); static_assert(f<2>() != 1); static_assert(f<3>() != 1); static_assert(f<4>() != 1);
static_assert(f<5>() != 1); static_assert(f<6>() != 1);  // each stops at gcc's -fconstexpr-ops-limit (~7 s)
int main() { return 0; }
""", expect=("compile_error", "timeout"), limits=QUICK, language="cpp"),  # ends at compile_s
    A("deep-recursion", "resources", "import sys\nsys.setrecursionlimit(10**9)\ndef f(n): return f(n + 1)\nf(0)\n",
      expect=("timeout", "memory_limit", "runtime_error"), limits=QUICK, holds_memory=True),
    # -- signals and process tricks ------------------------------------------------------------------------------
    A("crash-and-dump-core", "process", """\
import os, resource
try:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("LEAK raised the core size limit")
except (ValueError, OSError):
    pass
os.abort()
""", expect=("runtime_error",)),
    A("kill-everything", "process", "import os, signal\nfor s in (signal.SIGKILL, signal.SIGTERM):\n"
      "    try: os.kill(-1, s)\n    except OSError: pass\nprint('still here')\n", expect=("ok", "runtime_error")),
    A("kill-the-parent-and-pid-1", "process", """\
import os, signal
for pid in {os.getppid(), 1, 2}:
    for s in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
        try:
            if pid > 0: os.kill(pid, s)
        except OSError:
            pass
print("done")
""", expect=("ok", "runtime_error")),
    A("signal-host-processes", "process", """\
import os
mine = {int(p) for p in os.listdir("/proc") if p.isdigit()}
reached = []
for pid in range(2, 33000):
    try:
        os.kill(pid, 0)
        if pid not in mine:
            reached.append(pid)
    except OSError:
        pass
if reached:
    print("LEAK can signal pids outside the run:", reached[:10])
print("done")
"""),
    A("daemon-outlives-the-run", "process", """\
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for i in range(300):
            time.sleep(0.1)
            with open("/tmp/alive", "w") as f: f.write(str(i))
    os._exit(0)
print("parent done")
"""),
    A("child-holds-stdout-open", "process", """\
import os, sys, time
if os.fork() == 0:
    time.sleep(4)
    print("late", flush=True)
    os._exit(0)
print("parent done", flush=True)
""", check=_no_output, limits=replace(SMALL, time_s=8.0)),
    A("busy-child-after-the-parent-exits", "process", """\
import os
if os.fork() == 0:
    os.closerange(0, 3)
    while True: pass
print("parent done")
"""),
    A("zombie-farm", "process", """\
import os, time
n = 0
for i in range(25):
    try:
        if os.fork() == 0: os._exit(0)
        n += 1
    except OSError:
        break
time.sleep(0.3)
print("zombies", n)
"""),
    A("own-process-groups-that-ignore-signals", "process", """\
import os, signal, time
for i in range(4):
    if os.fork() == 0:
        os.setpgid(0, 0)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        time.sleep(60)
time.sleep(60)
""", expect=("timeout",), limits=QUICK),
    A("ignore-sigterm", "process",
      "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n",
      expect=("timeout",), limits=QUICK),
    A("block-every-signal-and-spin", "process",
      "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())\nwhile True: pass\n",
      expect=("timeout",), limits=QUICK),
    A("catch-the-cpu-limit-signal", "process", """\
import signal
signal.signal(signal.SIGXCPU, lambda *a: print("caught SIGXCPU", flush=True))
while True: pass
""", expect=("timeout",), limits=QUICK),
    A("exec-a-shell-that-spins", "process",
      "import os\nos.execv('/bin/sh', ['sh', '-c', 'while :; do :; done'])\n", expect=("timeout",), limits=QUICK),
    A("stopped-child-waited-for", "process", """\
import os, signal
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
os.waitpid(pid, 0)
""", expect=("timeout",), limits=QUICK),
    A("disguised-daemon", "process", _LIBC + """\
import time
if os.fork() == 0:
    os.setsid()
    libc.prctl(15, b"bwrap", 0, 0, 0)  # PR_SET_NAME
    libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
    if os.fork() == 0:
        libc.prctl(15, b"python3", 0, 0, 0)
        time.sleep(30)
    os._exit(0)
print("done")
"""),
    # -- time tricks -------------------------------------------------------------------------------------------
    A("sleep-past-the-limit", "time", "import time\ntime.sleep(60)\n", expect=("timeout",), limits=QUICK),
    A("block-on-a-fifo", "time", "import os\nos.mkfifo('/tmp/f')\nopen('/tmp/f')\n", expect=("timeout",), limits=QUICK),
    A("wait-on-an-event", "time", "import threading\nthreading.Event().wait()\n", expect=("timeout",), limits=QUICK),
    A("alarm-games", "time", """\
import signal, time
def again(*a):
    signal.alarm(1)
    signal.setitimer(signal.ITIMER_REAL, 0.01)
signal.signal(signal.SIGALRM, again)
signal.signal(signal.SIGVTALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_VIRTUAL, 0.01, 0.01)
again()
while True:
    time.sleep(10)
""", expect=("timeout",), limits=QUICK),
    A("set-the-clocks", "time", _LIBC + """\
import time
class Timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
for clock in (0, 1, 7):  # REALTIME, MONOTONIC, BOOTTIME
    if libc.clock_settime(clock, ctypes.byref(Timespec(0, 0))) == 0:
        print("LEAK set clock", clock)
if libc.settimeofday(ctypes.byref(Timespec(0, 0)), None) == 0:
    print("LEAK settimeofday")
buf = ctypes.create_string_buffer(256)
ctypes.memset(buf, 0, 256); ctypes.c_uint.from_buffer(buf).value = 0x0002  # ADJ_FREQUENCY
if libc.adjtimex(buf) >= 0 and ctypes.get_errno() == 0:
    print("LEAK adjtimex")
print("done")
"""),
    A("slow-drip-of-output", "time", """\
import sys, time
while True:
    sys.stdout.write("."); sys.stdout.flush(); time.sleep(0.05)
""", expect=("timeout",), limits=QUICK),
    A("wait-for-a-sleeping-child", "time",
      "import os, time\npid = os.fork()\nif pid == 0: time.sleep(60)\nos.waitpid(pid, 0)\n",
      expect=("timeout",), limits=QUICK),
    A("cpu-in-a-chain-of-short-children", "time", """\
import os, time
while True:
    pid = os.fork()
    if pid == 0:
        t = time.process_time()
        while time.process_time() - t < 0.5: pass
        os._exit(0)
    os.waitpid(pid, 0)
""", expect=("timeout",), limits=QUICK),
    A("sleep-interrupted-by-timers", "time", """\
import signal, time
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(1)
""", expect=("timeout",), limits=QUICK),
    # -- output tricks -----------------------------------------------------------------------------------------
    A("gigabytes-of-stdout", "output", "import sys\nwhile True: sys.stdout.write('x' * 65536)\n",
      expect=("output_limit",), check=lambda r, p: None if len(r.stdout) <= (64 << 10) else "kept more than the cap"),
    A("gigabytes-of-stderr", "output", "import sys\nwhile True: sys.stderr.write('x' * 65536)\n",
      expect=("output_limit",), check=lambda r, p: None if len(r.stderr) <= (64 << 10) else "kept more than the cap"),
    A("one-huge-write", "output", "import os\nos.write(1, b'x' * (128 << 20))\n", expect=("output_limit",)),
    A("flood-from-many-children", "output", """\
import os
for i in range(8):
    if os.fork() == 0:
        while True: os.write(1 + i % 2, b"y" * 65536)
while True: os.write(1, b"z" * 65536)
""", expect=("output_limit",)),
    A("binary-garbage", "output",
      "import os\nos.write(1, bytes(range(256)) * 16 + os.urandom(4096) + b'\\xff\\xfe\\x00')\n",
      check=lambda r, p: None if isinstance(r.stdout, str) and len(r.stdout) >= 4096 else "binary output lost"),
    A("close-stdout-and-stderr", "output", "import os\nos.close(1)\nos.close(2)\nprint('into nothing')\n",
      expect=("ok", "runtime_error")),
    A("write-to-a-terminal", "output", """\
for p in ("/dev/tty", "/dev/console", "/dev/tty0", "/dev/pts/0"):  # its own /dev/ptmx makes new pseudo-terminals only
    try:
        with open(p, "w") as f:
            f.write("hello from the sandbox\\n")
        print("LEAK wrote to", p)
    except OSError:
        pass
print("done")
"""),
    A("pretend-to-be-the-sandbox", "output", """\
import sys
print('{"child-pid": 2}\\n{"exit-code": 0}')
sys.stderr.write("bwrap: Creating new namespace failed: Operation not permitted\\n")
sys.exit(1)
""", expect=("runtime_error",)),
    A("terminal-escape-sequences", "output", "print('\\x1b[2J\\x1b[31mred\\r\\x1b]0;title\\x07\\x08\\x00done')\n",
      check=lambda r, p: None if "done" in r.stdout else "output lost"),
    # -- file-descriptor tricks --------------------------------------------------------------------------------
    A("list-inherited-descriptors", "fds", """\
import os
for fd in range(3, 1024):
    try:
        os.fstat(fd)
        print("LEAK inherited descriptor", fd, os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
print("done")
"""),
    A("write-to-inherited-descriptors", "fds", """\
import os
for fd in range(3, 65):
    try:
        os.write(fd, b'{"exit-code": 0}\\n')
        print("LEAK wrote to descriptor", fd)
    except OSError:
        pass
print("done")
"""),
    A("read-the-sandbox-status-descriptor", "fds", """\
import os
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) > 2:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith(("pipe:", "anon_inode", "socket:")):
                    print("LEAK a foreign descriptor", pid, fd, link)
            except OSError:
                pass
print("done")
"""),
    A("dup2-tricks", "fds", """\
import os
for src, dst in ((1, 2), (2, 0), (0, 1)):
    os.dup2(src, dst)
try:
    os.write(0, b"into stdin?\\n")
except OSError:
    pass
os.write(1, b"done\\n")
""", expect=("ok", "runtime_error")),
    A("reopen-the-standard-pipes", "fds", """\
import os
for fd, mode in ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_RDONLY)):
    try:
        other = os.open(f"/proc/self/fd/{fd}", mode | os.O_NONBLOCK)
        try:
            got = os.read(other, 100) if mode == os.O_RDONLY else os.write(other, b"x")
        except OSError:
            got = None
        print("reopened", fd, got)
    except OSError:
        pass
print("done")
"""),
    A("huge-stdin-never-read", "fds", "print('hi')\n", stdin="1 2\n" * (2 << 20),
      check=lambda r, p: None if r.stdout == "hi\n" else f"output {r.stdout[:40]!r}"),
    A("huge-stdin-never-read-then-sleep", "fds", "import time\ntime.sleep(60)\n", stdin="x" * (16 << 20),
      expect=("timeout",), limits=QUICK),
    A("close-stdin-half-read", "fds", "import os, sys\nsys.stdin.read(10)\nos.close(0)\nprint('done')\n",
      stdin="y" * (8 << 20)),
    A("descriptors-past-the-limit-by-dup", "fds", """\
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    print("LEAK raised the descriptor limit")
except (ValueError, OSError):
    pass
try:
    os.dup2(1, 4000)
    print("LEAK a descriptor past the limit")
except OSError:
    pass
print("done", soft, hard)
"""),
)
