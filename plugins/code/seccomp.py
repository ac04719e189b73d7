"""The seccomp filter every sandboxed program runs under: system calls no test program needs are refused.

bubblewrap loads a classic BPF program from a descriptor (``--seccomp FD``); this module writes that program
(no libseccomp needed). It checks the architecture first (a program of another ABI, x86-64's 32-bit or x32
calls, would otherwise get other numbers past the list), then refuses with ``EPERM``:

* debugging and reading other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``kcmp``;
* mounts and namespaces: ``mount``, ``umount2``, ``pivot_root``, ``chroot``, the new mount API
  (``fsopen``, ``fsmount``, ``move_mount``, ...), ``unshare``, ``setns``, and ``clone`` with any
  ``CLONE_NEW*`` flag (``clone3`` answers ``ENOSYS``: its flags sit in memory a filter cannot read, and libc
  then falls back to ``clone``);
* the kernel's keyring, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, ``fanotify_init``;
* the machine's state: ``kexec_*``, module loading, ``reboot``, ``swapon``/``swapoff``, clocks
  (``settimeofday``, ``clock_settime``, ``adjtimex``), ``acct``, ``quotactl``, ``syslog``, ``iopl``/``ioperm``,
  ``vhangup``, file handles (``open_by_handle_at``).

Most of these already fail for an unprivileged user in its own namespaces; the filter makes that hold even
where a kernel bug or a capability inside the user namespace would let one through (what Docker's default
profile and nsjail do). Only x86-64 and AArch64 have tables; elsewhere :func:`filter_program` returns
``None`` and the sandbox runs without a filter (it says so in its self-test report).
"""

from __future__ import annotations

import errno
import platform
import struct

# classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h)
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL_PROCESS = 0x80000000
_X32_BIT = 0x40000000
_CLONE_NEW = 0x7E020080  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME

#: (AUDIT_ARCH, {name: number}) per machine; the numbers are the kernel's (arch/*/syscall tables)
_TABLES = {
    "x86_64": (0xC000003E, {
        "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "adjtimex": 159, "chroot": 161,
        "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
        "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
        "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
        "unshare": 272, "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
        "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
        "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442,
    }, 56, 435),  # clone, clone3
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "syslog": 116, "vhangup": 58, "pivot_root": 41, "adjtimex": 171, "chroot": 51,
        "acct": 89, "settimeofday": 170, "mount": 40, "umount2": 39, "swapon": 224, "swapoff": 225,
        "reboot": 142, "init_module": 105, "delete_module": 106, "quotactl": 60, "clock_settime": 112,
        "kexec_load": 104, "add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97,
        "perf_event_open": 241, "fanotify_init": 262, "name_to_handle_at": 264, "open_by_handle_at": 265,
        "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "finit_module": 273, "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    }, 220, 435),
}

#: the refused calls by name (the same on every machine with a table)
DENIED = tuple(sorted(_TABLES["x86_64"][1]))


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_program(machine: str | None = None) -> bytes | None:
    """The BPF program (``struct sock_filter[]`` bytes) for ``machine`` (default: this one), or ``None``
    where there is no table."""
    table = _TABLES.get(machine or platform.machine())
    if table is None:
        return None
    arch, numbers, clone, clone3 = table
    deny = _op(_RET_K, _ERRNO | errno.EPERM)
    body = [_op(_LD_W_ABS, 0)]  # the call's number
    if arch == 0xC000003E:
        body.append(_op(_JGE_K, _X32_BIT, jt=len(numbers) + 6, jf=0))  # x32 calls: refused
    for k, nr in enumerate(sorted(numbers.values())):
        body.append(_op(_JEQ_K, nr, jt=len(numbers) - k + 5, jf=0))  # to the deny at the end
    body += [
        _op(_JEQ_K, clone3, jt=0, jf=1), _op(_RET_K, _ERRNO | errno.ENOSYS),
        _op(_JEQ_K, clone, jt=0, jf=2),
        _op(_LD_W_ABS, 16),  # clone's flags (args[0], low 32 bits)
        _op(_JSET_K, _CLONE_NEW, jt=1, jf=0),
        _op(_RET_K, _ALLOW),
        deny,
    ]
    head = [_op(_LD_W_ABS, 4), _op(_JEQ_K, arch, jt=1, jf=0), _op(_RET_K, _KILL_PROCESS)]  # another ABI: killed
    return b"".join(head + body)
