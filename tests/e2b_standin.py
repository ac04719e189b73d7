"""A STAND-IN for the E2B SDK, injected at the SDK boundary (``E2BSandbox(client=...)``): not the service.

It has the shape of ``e2b_code_interpreter.Sandbox.create`` and of the sandbox object it returns
(``files.write``, ``commands.run``, ``kill``) and raises the SDK's own exception classes, so the logic *around*
the SDK (rate limit, retries, concurrency bound, deadlines, mapping results and errors to statuses, the shell
script that sets the limits) is tested without the network. Commands really run, in ``bash`` on this machine
in a temporary directory standing for the remote work dir, without isolation: only our tests' own programs
are given to it. Scripted failures: ``create_errors`` (raised by the next creations, in order),
``command_delay_s`` (a command that does not answer), ``command_error`` (raised by every command).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time

from e2b.exceptions import TimeoutException
from e2b.sandbox.commands.command_handle import CommandExitException

from r1gym.plugins.code.e2b import WORKDIR


class StandInE2B:
    def __init__(self, create_errors: list[BaseException] | None = None, command_delay_s: float = 0.0,
                 command_error: BaseException | None = None):
        self.create_errors = list(create_errors or [])
        self.command_delay_s = command_delay_s
        self.command_error = command_error
        self.create_calls: list[float] = []  # monotonic time of every create call, failed ones included
        self.create_kwargs: list[dict] = []
        self.alive = 0
        self.most_alive = 0
        self.killed = 0
        self._lock = threading.Lock()

    def __call__(self, **kwargs) -> _Box:
        with self._lock:
            self.create_calls.append(time.monotonic())
            self.create_kwargs.append(kwargs)
            if self.create_errors:
                raise self.create_errors.pop(0)
            self.alive += 1
            self.most_alive = max(self.most_alive, self.alive)
        return _Box(self)


class _Files:
    def __init__(self, root: str):
        self.root = root

    def write(self, path: str, data: str, request_timeout: float | None = None) -> None:
        assert path.startswith(WORKDIR + "/"), path
        with open(f"{self.root}/{path[len(WORKDIR) + 1:]}", "w") as f:
            f.write(data)


class _Commands:
    def __init__(self, box: _Box):
        self.box = box

    def run(self, cmd: str, cwd: str | None = None, timeout: float = 60, request_timeout: float | None = None):
        owner = self.box.owner
        if owner.command_error is not None:
            raise owner.command_error
        if owner.command_delay_s:
            time.sleep(owner.command_delay_s)
        assert cwd == WORKDIR, cwd
        try:
            p = subprocess.run(["bash", "-c", cmd], cwd=self.box.root, capture_output=True, timeout=timeout,
                               env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.box.root})
        except subprocess.TimeoutExpired:
            raise TimeoutException("context deadline exceeded") from None
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if p.returncode != 0:  # what the SDK does with a non-zero exit
            raise CommandExitException(stderr=err, stdout=out, exit_code=p.returncode, error=None)
        return type("CommandResult", (), {"stdout": out, "stderr": err, "exit_code": 0, "error": None})()


class _Box:
    def __init__(self, owner: StandInE2B):
        self.owner = owner
        self.root = tempfile.mkdtemp(prefix="r1gym-e2b-standin-")
        self.files = _Files(self.root)
        self.commands = _Commands(self)

    def kill(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with self.owner._lock:
            self.owner.alive -= 1
            self.owner.killed += 1
