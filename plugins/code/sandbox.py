"""Running untrusted programs: the ``local`` sandbox backend (the ``Sandbox`` protocol, ``Program``, ``Limits`` and
``RunResult`` are core contracts, :mod:`r1gym.core.contracts`).

The local backend runs every program in a fresh, size-limited scratch directory under Linux namespaces:

* **bubblewrap** (``bwrap``, Debian package ``bubblewrap``) when installed: a file-system view of only
  what the runtime needs, read-only: ``/usr`` (the interpreter, its standard library, the compiler, shared
  libraries) and the ``/bin``, ``/lib``, ``/lib64``, ``/sbin`` links into it, a private ``/dev`` (``null``,
  ``zero``, ``urandom``, ...), its own ``/proc``, no ``/etc``; ``/usr/local`` and the interpreter's
  site-packages are hidden (extra Python packages come from the ``packages`` allow-list), and nothing else
  of the host exists in there: not the project, run folders, datasets, home directories, ``/opt``,
  ``/srv``, ``/mnt``, ``/var`` or ``/run``. The writable places are a private tmpfs as ``/tmp`` (the
  scratch dir, capped at ``scratch_mb``) and ``/dev/shm`` (capped the same); the root and ``/dev`` are
  remounted read-only, so nothing else can hold memory. Its own PID, network (none), IPC and UTS
  namespaces (hostname ``r1gym``, not the host's), a new session (no terminal injection), the parent's
  death kills it;
* ``unshare`` (util-linux) only when asked for with ``allow_weak_isolation=True``: own user, PID, network,
  IPC and mount namespaces, but the program sees the host's files (protected by ordinary permissions only),
  its scratch dir is a host temporary directory and the parent's death does not kill it. Without bwrap and
  without that switch, ``LocalSandbox`` refuses to start and says how to install bwrap: never a silent
  downgrade.

Before its first run, a ``LocalSandbox`` runs a self-test program through its isolation and checks what
it promises (for bwrap: the host's files invisible, the root read-only, PID 1 of its own namespace, no
network, not root); a bwrap that cannot make namespaces here (user namespaces disabled) fails that test,
and the sandbox refuses to start with the reason instead of making every run a ``sandbox_error``.

In both, the program runs as an unprivileged uid/gid of its own, set *before* the namespaces are made, so
``RLIMIT_NPROC`` binds (it does not bind root) and a fork or thread bomb stops at ``processes``. That limit
counts a *user's* processes, so runs that are in flight at the same time get different uids (a slot from
:data:`SANDBOX_UIDS`, 65000-65533 by default, Debian's reserved range below ``nobody``): a fork bomb in one
run cannot starve the others of processes. Run as a non-root user, programs keep that user's uid.
Resource limits (CPU seconds, address space, processes, file size, open files) and the uid are set by
util-linux's ``prlimit`` and ``setpriv`` in front of the sandbox tool, not by a Python ``preexec_fn``: that
would make ``subprocess`` fork (copy the page tables of) the whole calling process, a trainer with the
model in memory, per run, which was most of a run's cost there (28 vs 17 ms with 128 MB resident, more
with gigabytes); without the two tools we fall back to ``preexec_fn``. The environment is replaced by a
fixed minimal one (no host variables, so no secrets); a wall-clock limit kills the whole process group;
stdout and stderr are read concurrently and capped. Whether the *sandbox* failed (``sandbox_error``) is
told by bwrap's status report on a pipe the program never sees (``--json-status-fd``), never by what the
program prints, so a program cannot make itself unscorable by imitating a sandbox failure.

What is reused between runs, and what is not: worker threads, the uid slots and the page cache are; a
process, directory or namespace never is, because a program could leave something behind (a background
process, a file, a modified module) for the next program to find.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from r1gym.core.contracts import LANGUAGES, Limits, Program, RunResult, Sandbox

NOBODY = 65534
SANDBOX_UIDS = range(65000, 65534)  # one per run in flight in this process; override with R1GYM_SANDBOX_UIDS=lo-hi
_IN_FLIGHT: set[int] = set()  # pids of sandbox processes that their own thread will wait for
_IN_FLIGHT_LOCK = threading.Lock()
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}


class _UidSlots:
    """The uids that runs in flight use, one each, unique on the host. Run as root, a run takes a uid from
    :data:`SANDBOX_UIDS` that no thread of this process holds *and* whose lock file (``<locks>/<uid>``, an
    ``flock``) no other process holds: DDP ranks, several trainers and test runs on one machine never share
    a uid, so one run's fork bomb cannot use up another's ``RLIMIT_NPROC``. The kernel drops a dead
    process's locks. All taken: it waits. Not root: every run keeps this process's uid (the system does
    not let us switch)."""

    def __init__(self, uids: range, locks: str | None = None):
        self.all = frozenset(uids)
        self._free = list(reversed(uids))
        self._held: dict[int, int] = {}  # uid -> its lock file's descriptor
        self._cond = threading.Condition()
        self._locks = locks

    def _lock_dir(self) -> str:
        if self._locks is None:
            base = "/run/lock" if os.access("/run/lock", os.W_OK) else tempfile.gettempdir()
            self._locks = os.environ.get("R1GYM_SANDBOX_LOCKS") or os.path.join(base, "r1gym-sandbox-uids")
        os.makedirs(self._locks, mode=0o700, exist_ok=True)
        return self._locks

    def _try_lock(self, uid: int) -> bool:
        import fcntl

        fd = os.open(os.path.join(self._lock_dir(), str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._held[uid] = fd
        return True

    def acquire(self) -> int:
        if os.geteuid() != 0:
            return os.geteuid()
        with self._cond:
            while True:
                for k in range(len(self._free) - 1, -1, -1):
                    if self._try_lock(self._free[k]):
                        return self._free.pop(k)
                self._cond.wait(0.05)  # every uid is held here or by another process: wait for one

    def release(self, uid: int) -> None:
        if uid in self.all:
            with self._cond:
                fd = self._held.pop(uid, None)
                if fd is not None:
                    os.close(fd)
                self._free.append(uid)
                self._cond.notify()


def _uid_range() -> range:
    text = os.environ.get("R1GYM_SANDBOX_UIDS", "")
    if not text:
        return SANDBOX_UIDS
    try:
        lo, hi = (int(x) for x in text.split("-"))
        if not 0 < lo <= hi:
            raise ValueError
    except ValueError:
        raise ValueError(f"R1GYM_SANDBOX_UIDS must look like 65000-65533 (lowest-highest uid), got {text!r}") from None
    return range(lo, hi + 1)


_UIDS = _UidSlots(_uid_range())
log = logging.getLogger(__name__)
_SELF_TESTED: set[tuple] = set()
#: what every run of a LocalSandbox must see (printed as JSON of property -> holds)
_SELF_TEST = """\
import json, os, socket
def writable(d):
    try:
        open(os.path.join(d, ".r1gym-self-test"), "w").close()
        return True
    except OSError:
        return False
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    net = True
except OSError:
    net = False
print(json.dumps({{"host_invisible": not os.path.exists({marker!r}) and not os.path.exists("/etc/hostname"),
                  "root_read_only": not writable("/"), "pid_namespace": os.getpid() <= 3,
                  "no_network": not net, "not_root": os.getuid() != 0, "scratch_writable": writable("/tmp")}}))
"""


def isolation_tool() -> str | None:
    """``"bwrap"``, ``"unshare"`` or ``None`` (no way to isolate a program on this machine)."""
    if shutil.which("bwrap"):
        return "bwrap"
    if shutil.which("unshare"):
        return "unshare"
    return None


class LocalSandbox:
    """The default backend: see the module docstring. ``tool`` forces ``bwrap`` or ``unshare``."""

    def __init__(self, tool: str | None = None, python: str | None = None, cxx: str = "g++",
                 packages: Sequence[str] = (), allow_weak_isolation: bool = False):
        """``python``: the interpreter for Python programs, default the system's ``python3`` (``/usr/bin``);
        one installed elsewhere (``/opt/python3.11``) has its prefix shown read-only too. ``packages``: the
        allow-list of extra Python packages programs may import (``["numpy"]``), found with that
        interpreter and shown read-only in its otherwise hidden site-packages. ``allow_weak_isolation``:
        run with ``unshare`` where bwrap is missing (see the module docstring for what that loses)."""
        self.tool = tool or ("bwrap" if shutil.which("bwrap") else "unshare" if shutil.which("unshare") else None)
        if self.tool not in ("bwrap", "unshare"):
            raise RuntimeError(f"unknown isolation tool {self.tool!r}; known: bwrap (the default), unshare"
                               if tool else "the local sandbox needs bubblewrap: apt-get install bubblewrap "
                               "(`make install` does it); neither bwrap nor util-linux's unshare is on PATH")
        if self.tool == "unshare":
            if not allow_weak_isolation:
                raise RuntimeError(
                    "the local sandbox needs bubblewrap (apt-get install bubblewrap; `make install` does it). "
                    "util-linux's unshare is here, but with it programs see the host's files, scratch dirs live "
                    "on the host and the parent's death does not kill them; to accept that, pass "
                    "allow_weak_isolation=True (sandbox_options: {allow_weak_isolation: true})")
            log.warning("sandbox: weak isolation (unshare, allow_weak_isolation=True): programs can read the host's "
                        "world-readable files, scratch dirs are on the host, the parent's death does not kill them")
        self._bwrap = shutil.which("bwrap") or "bwrap"
        from r1gym.plugins.code.seccomp import filter_program

        self._seccomp = filter_program()
        if self._seccomp is None and self.tool == "bwrap":
            log.warning("sandbox: no seccomp table for %s; programs run without a system-call filter", os.uname().machine)
        self.python = python or shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable
        self.cxx = cxx
        self._view = _host_view(self.python, shutil.which(cxx) or cxx, tuple(packages)) if self.tool == "bwrap" else []
        prlimit, setpriv = (shutil.which(t, path="/usr/bin:/bin:/usr/sbin:/sbin") for t in ("prlimit", "setpriv"))
        self._wrappers = (prlimit, setpriv) if prlimit and setpriv else None
        _become_subreaper()
        self._self_test()

    def _self_test(self) -> None:
        """Run :data:`_SELF_TEST` once per (tool, interpreter, view) in this process; raise with the reason
        when the isolation does not hold what it promises."""
        key = (self.tool, self.python, tuple(self._view))
        if key in _SELF_TESTED:
            return
        test = Program("python", _SELF_TEST.format(marker=os.path.abspath(__file__)))
        result = self.run(test, Limits(time_s=30.0))
        if result.status != "ok":  # once more: a loaded host can refuse a namespace for a moment (EAGAIN)
            time.sleep(0.5)
            result = self.run(test, Limits(time_s=30.0))
        if result.status != "ok":
            hint = (" bwrap could not make its namespaces: enable unprivileged user namespaces "
                    "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0) or run where they "
                    "are allowed (docker: --security-opt seccomp=unconfined, or --privileged)"
                    if "namespace" in (result.detail + result.stderr) else "")
            raise RuntimeError(f"the {self.tool} sandbox failed its self-test: {result.status} "
                               f"({(result.detail or result.stderr).strip()[-300:]}).{hint}")
        broken = [k for k, ok in json.loads(result.stdout.strip().splitlines()[-1]).items()
                  if not ok and (self.tool == "bwrap" or k in ("pid_namespace", "no_network"))]
        if broken:
            raise RuntimeError(f"the {self.tool} sandbox failed its self-test: {', '.join(broken)} does not hold")
        _SELF_TESTED.add(key)

    # -- public ----------------------------------------------------------------------------------------
    def run(self, program: Program, limits: Limits = Limits()) -> RunResult:
        if program.language not in LANGUAGES:
            return RunResult("sandbox_error", None, "", "", 0.0, 0.0,
                             f"unknown language {program.language!r}; known: {', '.join(LANGUAGES)}")
        uid = _UIDS.acquire()
        scratch = tempfile.mkdtemp(prefix="r1gym-sbx-")
        try:
            os.chmod(scratch, 0o755)
            files = {"main.py" if program.language == "python" else "main.cpp": program.source, **program.files}
            for name, text in files.items():
                if "/" in name or name.startswith("."):
                    return RunResult("sandbox_error", None, "", "", 0.0, 0.0, f"bad extra file name {name!r}")
                path = os.path.join(scratch, name)
                with open(path, "w") as f:
                    f.write(text)
                os.chmod(path, 0o644)
            if program.language == "cpp":
                compiled = self._exec(scratch, [self.cxx, "-O2", "-std=c++17", "-o", "main", "main.cpp"], "",
                                      Limits(time_s=limits.compile_s, memory_mb=2048, output_bytes=64 << 10, file_mb=256,
                                             scratch_mb=max(limits.scratch_mb, 256)), uid, writable_copy=True)
                if compiled.status != "ok":
                    compiled.status = "compile_error" if compiled.status == "runtime_error" else compiled.status
                    return compiled
                return self._exec(scratch, ["./main"], program.stdin, limits, uid)
            return self._exec(scratch, [self.python, "-E", "-s", "main.py"], program.stdin, limits, uid)
        except OSError as exc:
            return RunResult("sandbox_error", None, "", "", 0.0, 0.0, f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            # the run's processes die with its PID namespace, a moment after bwrap: the uid (and its RLIMIT_NPROC
            # count, which zombies hold too) goes back only when none of them is left, or after 2 s at most
            deadline = time.monotonic() + 2.0
            while _reap_orphans(uid if uid in _UIDS.all else None) and time.monotonic() < deadline:
                time.sleep(0.005)
            _UIDS.release(uid)

    # -- internals -------------------------------------------------------------------------------------
    def _command(self, scratch: str, argv: list[str], limits: Limits, writable_copy: bool,
                 uid: int, status_fd: int | None, seccomp_fd: int | None = None) -> tuple[list[str], str]:
        """(the full command line, the directory the program sees as its working directory)."""
        if self.tool == "bwrap":
            cmd = [self._bwrap, *self._view, "--dev", "/dev", "--size", str(limits.scratch_mb << 20), "--tmpfs", "/dev/shm",
                   "--proc", "/proc"]
            if writable_copy:  # compiling: the compiler's output must outlive this sandbox
                cmd += ["--bind", scratch, "/tmp"]
            else:  # a private, size-capped tmpfs with the program's files bound in read-only
                cmd += ["--size", str(limits.scratch_mb << 20), "--tmpfs", "/tmp"]
                for name in sorted(os.listdir(scratch)):
                    cmd += ["--ro-bind", os.path.join(scratch, name), f"/tmp/{name}"]
            cmd += ["--remount-ro", "/dev", "--remount-ro", "/"]  # bwrap's own tmpfs root and /dev: uncapped
            cmd += ["--chdir", "/tmp", "--unshare-all", "--unshare-user", "--hostname", "r1gym", "--disable-userns",
                    "--as-pid-1", "--die-with-parent", "--new-session", "--clearenv"]
            if seccomp_fd is not None:  # plugins/code/seccomp.py: the calls no test program needs
                cmd += ["--seccomp", str(seccomp_fd)]
            if status_fd is not None:  # bwrap reports the program's exit there; the program cannot see the fd
                cmd += ["--json-status-fd", str(status_fd)]
            for k, v in _ENV.items():
                cmd += ["--setenv", k, v]
            return cmd + ["--", *argv], "/"
        # unshare: as the run's uid (set before exec), a user namespace maps it to itself
        if os.geteuid() == 0:
            os.chown(scratch, uid, uid)
            for name in os.listdir(scratch):
                os.chown(os.path.join(scratch, name), uid, uid)
        cmd = ["unshare", "--user", "--net", "--pid", "--ipc", "--uts", "--mount", "--fork", "--kill-child",
               "--mount-proc", "--", *argv]
        return cmd, scratch

    def _exec(self, scratch: str, argv: list[str], stdin: str, limits: Limits, uid: int,
              writable_copy: bool = False) -> RunResult:
        if writable_copy and os.geteuid() == 0:  # the compiler writes its output next to the source
            os.chown(scratch, uid, uid)
        status_r, status_w = os.pipe() if self.tool == "bwrap" else (None, None)
        seccomp_r = None
        if self.tool == "bwrap" and self._seccomp is not None:  # bwrap reads the filter from a descriptor
            seccomp_r, seccomp_w = os.pipe()
            os.write(seccomp_w, self._seccomp)  # a few hundred bytes: well under a pipe's buffer
            os.close(seccomp_w)
        group = None
        if os.geteuid() == 0:  # the whole run's memory (tmpfs included) and processes: plugins/code/cgroups.py
            from r1gym.plugins.code.cgroups import run_groups

            group = run_groups().make((limits.memory_mb + 2 * limits.scratch_mb) << 20, limits.processes + 8)
        try:
            result = self._exec_with(scratch, argv, stdin, limits, uid, writable_copy, status_r, status_w, seccomp_r,
                                     group)
            if group is not None and result.status not in ("ok", "sandbox_error") and group.oom_killed():
                result.status = "memory_limit"
                result.detail = f"memory limit of the whole run ({(limits.memory_mb + 2 * limits.scratch_mb)} MB)"
            return result
        finally:
            if group is not None:
                _reap_orphans()
                group.remove()
            for fd in (status_r, status_w, seccomp_r):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def _exec_with(self, scratch: str, argv: list[str], stdin: str, limits: Limits, uid: int, writable_copy: bool,
                   status_r: int | None, status_w: int | None, seccomp_r: int | None = None,
                   group: object = None) -> RunResult:
        cmd, cwd = self._command(scratch, argv, limits, writable_copy, uid, status_w, seccomp_r)
        cpu = max(1, int(limits.cpu_s if limits.cpu_s is not None else limits.time_s + 0.999))
        rlimits = ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, limits.memory_mb << 20),
                   (resource.RLIMIT_NPROC, limits.processes), (resource.RLIMIT_FSIZE, limits.file_mb << 20),
                   (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0))
        as_root = os.geteuid() == 0
        preexec = None
        if self._wrappers:  # util-linux's prlimit and setpriv: set limits, drop to the run's uid, exec the sandbox
            names = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "as", resource.RLIMIT_NPROC: "nproc",
                     resource.RLIMIT_FSIZE: "fsize", resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_CORE: "core"}
            wrap = [self._wrappers[0], *(f"--{names[r]}={v}" for r, v in rlimits), "--"]
            if group is not None:  # join the run's group before anything of the program exists
                files = group.procs_files
                wrap += ["/bin/sh", "-c", _JOIN_GROUPS, "sh", str(len(files)), *files]
            if as_root:
                wrap += [self._wrappers[1], f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
            cmd = wrap + cmd
        else:  # the same in Python between fork and exec (slower: it rules out vfork in a large process)
            preexec = _drop_and_limit(uid if as_root else None, rlimits, group.procs_files if group is not None else ())

        start = time.perf_counter()
        try:
            with _IN_FLIGHT_LOCK:  # registered before any other thread's reaping can see it exit
                proc = subprocess.Popen(cmd, cwd=cwd, env=dict(_ENV), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, preexec_fn=preexec, start_new_session=True,
                                        pass_fds=tuple(fd for fd in (status_w, seccomp_r) if fd is not None))
                _IN_FLIGHT.add(proc.pid)
        except OSError as exc:
            return RunResult("sandbox_error", None, "", "", 0.0, 0.0, f"could not start {cmd[0]}: {exc}")
        out, err, flooded = bytearray(), bytearray(), threading.Event()

        def pump(stream, buf: bytearray) -> None:
            while chunk := stream.read(65536):
                room = limits.output_bytes - len(buf)
                buf += chunk[: max(0, room)]
                if len(chunk) > room:
                    flooded.set()
                    _kill_group(proc)
                    break
            stream.close()

        def feed() -> None:  # beside the clock, not before it: a program that never reads must not block us
            try:
                proc.stdin.write(stdin.encode())
                proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass

        readers = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, err), daemon=True)]
        feeder = threading.Thread(target=feed, daemon=True)
        for t in (*readers, feeder):
            t.start()
        accountant = None
        if group is None and self.tool == "bwrap":  # no control group: account the tree's memory from /proc
            from r1gym.plugins.code.cgroups import TreeAccountant, run_groups

            if run_groups().kind is None and TreeAccountant.available():
                accountant = TreeAccountant(proc.pid, (limits.memory_mb + 2 * limits.scratch_mb) << 20,
                                            lambda: _kill_group(proc))
        try:
            status_word, usage, timed_out = _wait(proc, limits.time_s)
        finally:
            with _IN_FLIGHT_LOCK:
                _IN_FLIGHT.discard(proc.pid)
            if accountant is not None:
                accountant.stop()
        for t in (*readers, feeder):
            t.join(timeout=5)
        wall = time.perf_counter() - start
        cpu_used = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
        code = os.waitstatus_to_exitcode(status_word) if status_word is not None else None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        program_ended = None  # did the program itself run to an end? (bwrap tells; unshare does not)
        if status_r is not None:  # bwrap has exited, so what it wrote is in the pipe (closed by the caller)
            os.set_blocking(status_r, False)
            try:
                program_ended = b'"exit-code"' in os.read(status_r, 1 << 16)
            except BlockingIOError:
                program_ended = False
        status, detail = classify_exit(code, stderr, timed_out, flooded.is_set(), cpu_used, cpu, limits, program_ended)
        if status == "sandbox_error" and not detail:
            detail = stderr.strip()[-500:]
        if accountant is not None and accountant.exceeded and status != "ok":
            status = "memory_limit"
            detail = f"memory of the whole run past {limits.memory_mb + 2 * limits.scratch_mb} MB (accounted from /proc)"
        return RunResult(status, code, stdout, stderr, wall, cpu_used, detail)


_VIEW_PROBE = """\
import importlib.util, json, site, sys
paths = [p for p in sys.path + site.getsitepackages() if 'site-packages' in p or 'dist-packages' in p]
found = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    found[name] = None if spec is None else (list(spec.submodule_search_locations or []) or [spec.origin])
print(json.dumps({"prefix": sys.base_prefix, "site": sorted(set(paths)), "packages": found}))
"""


def _host_view(python: str, cxx: str, packages: tuple[str, ...]) -> list[str]:
    """bwrap arguments for the read-only view a program gets: ``/usr`` and the links into it, the
    interpreter's and the compiler's prefixes if they live elsewhere, site-packages and ``/usr/local``
    hidden by empty read-only tmpfs, and each allow-listed package bound back into its place."""
    import json

    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    probe = subprocess.run([python, "-E", "-s", "-c", _VIEW_PROBE, *packages], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        raise RuntimeError(f"could not ask {python} where its packages are: {probe.stderr.strip()[-300:]}")
    info = json.loads(probe.stdout)
    shown = ["/usr"]
    for tool in (os.path.realpath(python), os.path.realpath(cxx)):
        prefix = os.path.dirname(os.path.dirname(tool))
        if tool.startswith("/") and not any(tool.startswith(s + "/") for s in shown) and prefix != "/":
            args += ["--ro-bind", prefix, prefix]
            shown.append(prefix)
    hidden: list[str] = []
    for p in ["/usr/local", *info["site"]]:  # an outer folder first: what is under a hidden one is gone already
        if (os.path.isdir(p) and not any(p.startswith(h + "/") for h in hidden)
                and not any(os.path.realpath(t).startswith(p + "/") for t in (python, cxx))):
            hidden.append(p)
    for path in hidden:
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", path]
    missing = [name for name, where in info["packages"].items() if not where]
    if missing:
        raise ValueError(f"sandbox packages {missing} are not importable by {python}; install them for that "
                         "interpreter or remove them from the allow-list")
    for where in info["packages"].values():
        for path in where:
            args += ["--ro-bind", path, path]
    for path in hidden:
        args += ["--remount-ro", path]
    return args


#: a shell line that writes its own pid into each of N cgroup.procs files, then execs the rest of its arguments
_JOIN_GROUPS = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'


def _drop_and_limit(uid: int | None, rlimits: tuple, groups: Sequence[str] = ()) -> Callable[[], None]:
    """A ``preexec_fn``: join ``groups`` (cgroup.procs files), switch to ``uid`` (when given) and set
    ``rlimits``, in the child before ``exec``."""

    def run() -> None:
        for procs in groups:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        if uid is not None:
            os.setgid(uid)
            os.setgroups([])
            os.setuid(uid)
        for res, value in rlimits:
            resource.setrlimit(res, (value, value))

    return run


def _wait(proc: subprocess.Popen, limit_s: float) -> tuple[int | None, resource.struct_rusage | None, bool]:
    """Wait for the sandbox process (killing its group at the wall-clock limit); return (wait status, its own
    resource usage, timed out). ``os.wait4`` gives this child's CPU time even when other runs go on in
    other threads, which RUSAGE_CHILDREN would mix in. A pidfd (Linux 5.3+) wakes us the moment the process
    exits; without one we poll every 2 ms."""
    deadline = time.monotonic() + limit_s
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(max(0.0, limit_s) * 1000):
                _kill_group(proc)
                pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                return status, usage, True
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, 0 if timed_out or pidfd is not None else os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return status, usage, timed_out
            if time.monotonic() >= deadline:
                timed_out = True
                _kill_group(proc)
            else:
                time.sleep(0.002)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _become_subreaper() -> None:
    """Orphans of a sandbox (a program's background processes, killed with its PID namespace; bwrap's own
    helper) are re-parented to this process instead of PID 1, which in a container often reaps nothing, so
    :func:`_reap_orphans` can collect them. Linux only; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap_orphans(uid: int | None = None) -> int:
    """Reap this process's exited children that ran as a sandbox uid (never another subprocess's, nor a
    sandbox process whose run is still waiting for it in another thread). Returns how many processes of
    ``uid`` (a sandbox uid) are still alive, or 0 without one."""
    me = str(os.getpid())
    alive = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for pid in filter(str.isdigit, entries):
        try:
            owner = os.stat(f"/proc/{pid}").st_uid
            if owner not in _UIDS.all:
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            alive += owner == uid and fields[0] != "Z"
            if fields[0] != "Z" or fields[1] != me:
                continue
            with _IN_FLIGHT_LOCK:  # a run in another thread waits for its own process
                if int(pid) not in _IN_FLIGHT:
                    os.waitpid(int(pid), os.WNOHANG)
        except (OSError, IndexError, ChildProcessError):
            continue
    return alive


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def classify_exit(code: int | None, stderr: str, timed_out: bool, flooded: bool, cpu_used: float, cpu_limit: int,
              limits: Limits, program_ended: bool | None) -> tuple[str, str]:
    """The run's status and why. ``program_ended``: bwrap's status report says the program ran and ended
    (``None`` where the tool gives no such report). A sandbox failure is told by that report, never by what
    the program prints: a program that writes ``bwrap: ...`` to stderr must not make itself unscorable."""
    if flooded:
        return "output_limit", f"more than {limits.output_bytes} bytes of output"
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.time_s} s"
    if program_ended is False:
        return "sandbox_error", stderr.strip()[-500:] or f"the sandbox ended with exit code {code} before the program did"
    if code == 0:
        return "ok", ""
    # a program that used up its CPU seconds hit the CPU limit, however it was reported (the unshare fallback may
    # itself fail and exit 1 when the kernel kills its child)
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU) or (code != 0 and cpu_used >= cpu_limit - 0.05):
        return "timeout", f"CPU limit of {cpu_limit} s"
    if "MemoryError" in stderr or "std::bad_alloc" in stderr or "Cannot allocate memory" in stderr:
        return "memory_limit", f"address-space limit of {limits.memory_mb} MB"
    if program_ended is None and stderr.startswith(("unshare:", "prlimit:", "setpriv:")):
        return "sandbox_error", stderr.strip()[:500]  # weaker: a program could print this itself
    return "runtime_error", f"exit code {code}"


class SandboxPool:
    """Runs many programs at once on one sandbox with at most ``workers`` in flight (threads: each run is a
    separate process tree, so the GIL is not the limit). ``map`` keeps the input order."""

    def __init__(self, sandbox: Sandbox, workers: int | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.sandbox = sandbox
        self.workers = workers or max(2, 2 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="r1gym-sandbox")

    def submit(self, program: Program, limits: Limits = Limits()):
        return self._executor.submit(self.sandbox.run, program, limits)

    def map(self, programs: list[Program], limits: Limits = Limits()) -> list[RunResult]:
        return [f.result() for f in [self.submit(p, limits) for p in programs]]

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
