"""Memory and process caps for a sandbox run as a whole: one control group per run, where the host lets us.

``RLIMIT_AS`` caps each process's address space and ``RLIMIT_NPROC`` their number, but not their sum: 64
processes of 512 MB each are 32 GB. A control group caps the run's whole process tree, tmpfs pages it wrote
included, and counts what the kernel killed for it. Which kind is used is decided once per process:

* **cgroup v2** (``/sys/fs/cgroup/cgroup.controllers`` lists ``memory`` and ``pids``) when this process may
  make child groups with both controllers: its own group already enables them for its children
  (``cgroup.subtree_control``), as systemd's ``Delegate=yes`` or a container runtime's delegation does;
* **cgroup v1** when the ``memory`` and ``pids`` hierarchies are mounted and this process may make a group
  in both (root in most containers that still mount v1);
* **accounting** otherwise (:class:`TreeAccountant`): every 50 ms the resident memory of the run's process
  tree is summed from ``/proc`` and the whole run is killed past the cap. Its weakness, said plainly: it
  samples, so a tree can exceed the cap between two looks (by what it allocates in 50 ms) and a short-lived
  process can be missed; it reads ``/proc/<pid>/task/<tid>/children``, which needs a kernel with
  ``CONFIG_PROC_CHILDREN`` (without it there is no fallback and the warning says so); and it counts resident
  pages only (the capped tmpfs mounts are bounded by their size). :meth:`RunGroups.describe` says which kind
  is in use, and why not the better ones.

A run's group is made before the sandbox starts, the sandbox's first process moves itself into it before
anything of the program runs (a shell line in front of ``setpriv``), and the group is removed after the run.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
ROOT = "/sys/fs/cgroup"
_counter = itertools.count()


def _own_path(controller: str | None) -> str | None:
    """This process's group path in the hierarchy of ``controller`` (``None``: the v2 hierarchy)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                if (controller is None and names == "") or (controller and controller in names.split(",")):
                    return path
    except OSError:
        return None
    return None


def _try_group(parent: str) -> str | None:
    """Why a child group cannot be made under ``parent``, or ``None`` when it can."""
    probe = os.path.join(parent, f"r1gym-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        return None
    except OSError as exc:
        return f"cannot make a group in {parent}: {exc.strerror}"


class RunGroups:
    """The per-run control groups of this host: ``kind`` is ``"v2"``, ``"v1"`` or ``None``; ``why`` says
    why the better kinds are not usable."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.bases: dict[str, str] = {}
        reasons = []
        v2 = os.path.join(ROOT, "cgroup.controllers")
        own = _own_path(None)
        if os.path.exists(v2) and own is not None:
            base = os.path.join(ROOT, own.lstrip("/"))
            try:
                enabled = open(os.path.join(base, "cgroup.subtree_control")).read().split()
            except OSError:
                enabled = []
            if {"memory", "pids"} <= set(enabled):
                why = _try_group(base)
                if why is None:
                    self.kind, self.bases = "v2", {"": base}
                reasons.append(why or "")
            else:
                reasons.append(f"cgroup v2: {base} does not delegate memory and pids to its children")
        else:
            reasons.append("cgroup v2: not mounted at /sys/fs/cgroup")
        if self.kind is None:
            bases = {}
            for controller in ("memory", "pids"):
                own = _own_path(controller)
                mount = os.path.join(ROOT, controller)
                if own is None or not os.path.isdir(mount):
                    reasons.append(f"cgroup v1: no {controller} hierarchy")
                    break
                base = os.path.join(mount, own.lstrip("/"))
                why = _try_group(base)
                if why:
                    reasons.append(f"cgroup v1: {why}")
                    break
                bases[controller] = base
            else:
                self.kind, self.bases = "v1", bases
        self.why = "; ".join(r for r in reasons if r)

    def describe(self) -> str:
        if self.kind:
            return f"per-run control groups: cgroup {self.kind} ({', '.join(self.bases.values())})"
        if TreeAccountant.available():
            return (f"no per-run control groups ({self.why}): the run's memory is accounted from /proc every "
                    f"{TreeAccountant.INTERVAL * 1000:.0f} ms instead (it can be exceeded between two looks)")
        return (f"no per-run control groups ({self.why}) and no /proc/*/task/*/children to account from: each process "
                "keeps its own limits, not the run as a whole")

    def make(self, memory_bytes: int, pids: int) -> RunGroup | None:
        """A fresh group capped at ``memory_bytes`` and ``pids``, or ``None`` (no kind usable, or it failed)."""
        if self.kind is None:
            return None
        name = f"r1gym-run-{os.getpid()}-{next(_counter)}"
        paths = {c: os.path.join(base, name) for c, base in self.bases.items()}
        try:
            for path in paths.values():
                os.mkdir(path)
            if self.kind == "v2":
                path = paths[""]
                _write(path, "memory.max", memory_bytes)
                _write(path, "memory.swap.max", 0, required=False)
                _write(path, "pids.max", pids)
            else:
                _write(paths["memory"], "memory.limit_in_bytes", memory_bytes)
                _write(paths["memory"], "memory.memsw.limit_in_bytes", memory_bytes, required=False)
                _write(paths["pids"], "pids.max", pids)
        except OSError as exc:
            log.warning("sandbox: could not make a run's control group (%s); this run has per-process limits only", exc)
            RunGroup(self.kind, paths).remove()
            return None
        return RunGroup(self.kind, paths)


def _write(path: str, name: str, value: int, required: bool = True) -> None:
    try:
        with open(os.path.join(path, name), "w") as f:
            f.write(str(value))
    except OSError:
        if required:
            raise


class RunGroup:
    """One run's group: the files a process writes its pid into to join, and what the kernel counted."""

    def __init__(self, kind: str, paths: dict[str, str]):
        self.kind, self.paths = kind, paths

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(p, "cgroup.procs") for p in self.paths.values()]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the run for the group's memory limit."""
        memory = self.paths.get("" if self.kind == "v2" else "memory")
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        try:
            with open(os.path.join(memory, name)) as f:
                counts = dict(line.split() for line in f if len(line.split()) == 2)
            if "oom_kill" in counts:
                return int(counts["oom_kill"]) > 0
            if self.kind == "v1":  # kernels before 4.13 have no oom_kill count: the limit was hit at all
                with open(os.path.join(memory, "memory.failcnt")) as f:
                    return int(f.read()) > 0
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> None:
        """Remove the group (its processes are gone; a zombie not yet reaped may hold it for a moment)."""
        for path in self.paths.values():
            for attempt in range(20):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005 * (attempt + 1))
            else:
                log.debug("sandbox: control group %s still busy; left for the host to remove", path)


class TreeAccountant:
    """The fallback where no control group can be made (see the module docstring): a thread that sums the
    resident memory of a process tree every :attr:`INTERVAL` seconds and calls ``kill`` past ``cap_bytes``."""

    INTERVAL = 0.05
    _PAGE = os.sysconf("SC_PAGE_SIZE")

    @staticmethod
    def available() -> bool:
        return os.path.exists(f"/proc/self/task/{os.getpid()}/children")

    def __init__(self, root_pid: int, cap_bytes: int, kill: Callable[[], None]):
        self.root, self.cap, self.kill = root_pid, cap_bytes, kill
        self.exceeded = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="r1gym-sandbox-accounting")
        self._thread.start()

    def resident_bytes(self) -> int:
        total, todo, seen = 0, [self.root], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * self._PAGE
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except (OSError, ValueError, IndexError):
                continue  # it ended between two reads
        return total

    def _watch(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            if self.resident_bytes() > self.cap:
                self.exceeded = True
                self.kill()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


@functools.cache
def run_groups() -> RunGroups:
    """This process's :class:`RunGroups`, detected once (and said once, in the log)."""
    groups = RunGroups()
    (log.info if groups.kind else log.warning)("sandbox: %s", groups.describe())
    return groups
