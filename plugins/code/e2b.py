"""The ``e2b`` sandbox backend: each run in a fresh E2B cloud sandbox (``pip install 'r1gym[e2b]'``).

E2B (https://e2b.dev) runs programs in Firecracker micro-VMs; the SDK is ``e2b-code-interpreter``. The API key
comes from ``E2B_API_KEY`` (or ``api_key=``). What this module adds around the SDK, all of it on our side:

* **bounded concurrency**: at most ``max_concurrent`` sandboxes alive at once from this process;
* **a creation rate limit**: at most ``creations_per_s`` sandbox creations per second, spaced evenly;
* **retries with backoff on transport failures only** (connection errors, request timeouts, HTTP 429 rate
  limiting): ``retries`` more attempts, ``backoff_s`` doubled each time. A program's own failure, a bad key or
  a bad argument is never retried;
* **time limits**: the program's own (wall ``timeout``, CPU ``ulimit -t``) are enforced inside the sandbox, so a
  program that overruns is a ``timeout`` reported by the sandbox itself. Around that: the service kills the
  sandbox after ``lifetime_s``; we kill it when the run ends; and an SDK call that has not answered ``grace_s``
  after the program's limit is abandoned and the sandbox killed. That run is a ``sandbox_error`` -- an
  infrastructure delay is never scored as the program's timeout;
* **the same statuses as the local backend**: limits are set with ``ulimit`` and ``timeout`` inside the
  sandbox and both output streams are cut at ``output_bytes`` there (``head -c``), so a flood never crosses
  the network; the SDK's exceptions map to ``sandbox_error`` (with what to do, e.g. set ``E2B_API_KEY``).

``client`` is the SDK boundary: a callable with the signature of ``e2b_code_interpreter.Sandbox.create``
returning an object with ``files.write``, ``commands.run`` and ``kill``. It defaults to the real SDK; tests
inject a stand-in there to check the logic above without the service.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from typing import Any

from r1gym.core.contracts import LANGUAGES, Limits, Program, RunResult
from r1gym.plugins.code.sandbox import classify_exit

WORKDIR = "/home/user/r1gym"
KEY_HELP = ("set E2B_API_KEY to your E2B API key (https://e2b.dev/dashboard?tab=keys), or choose another "
            "sandbox (sandbox=local)")


class SandboxUnavailable(Exception):
    """The service could not give us a sandbox (after the retries): the run is a ``sandbox_error``."""


class NoAnswer(Exception):
    """An SDK call did not return within the deadline we set for it."""


def _sdk_create() -> Callable[..., Any]:
    try:
        from e2b_code_interpreter import Sandbox
    except ImportError as exc:
        raise ImportError("the e2b sandbox needs the E2B SDK: pip install 'r1gym[e2b]' "
                          "(e2b-code-interpreter)") from exc
    return Sandbox.create


def _is_transport(exc: BaseException) -> bool:
    """Worth another try: the request did not get through, timed out, or was rate limited (HTTP 429)."""
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:
        pass
    try:
        from e2b.exceptions import RateLimitException, SandboxNotRunningException, TimeoutException

        return isinstance(exc, (RateLimitException, TimeoutException)) and not isinstance(exc, SandboxNotRunningException)
    except ImportError:
        return isinstance(exc, (ConnectionError, TimeoutError))


def _is_command_timeout(exc: BaseException) -> bool:
    """The SDK ended a command at the ``timeout`` we gave it (not: the sandbox is gone)."""
    try:
        from e2b.exceptions import SandboxNotRunningException, TimeoutException
    except ImportError:
        return False
    return isinstance(exc, TimeoutException) and not isinstance(exc, SandboxNotRunningException)


def _is_auth(exc: BaseException) -> bool:
    try:
        from e2b.exceptions import AuthenticationException

        return isinstance(exc, AuthenticationException)
    except ImportError:
        return False


class RateLimiter:
    """At most ``per_s`` events per second, spaced evenly (thread-safe). ``wait`` returns when one may go."""

    def __init__(self, per_s: float):
        if per_s <= 0:
            raise ValueError(f"creations_per_s must be > 0, got {per_s}")
        self.interval = 1.0 / per_s
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


class E2BSandbox:
    """Runs each program in a new E2B sandbox; see the module docstring for what is enforced where."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        template: str | None = None,
        max_concurrent: int = 8,
        creations_per_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        lifetime_s: int = 300,
        request_timeout_s: float = 30.0,
        grace_s: float = 10.0,
        internet: bool = False,
        client: Callable[..., Any] | None = None,
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.api_key = api_key
        self.template = template
        self.retries, self.backoff_s = retries, backoff_s
        self.lifetime_s, self.request_timeout_s, self.grace_s = lifetime_s, request_timeout_s, grace_s
        self.internet = internet
        self.client = client or _sdk_create()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._rate = RateLimiter(creations_per_s)
        self.stats = {"created": 0, "retries": 0, "sandbox_errors": 0}
        self._stats_lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------------------
    def run(self, program: Program, limits: Limits = Limits()) -> RunResult:
        if program.language not in LANGUAGES:
            return RunResult("sandbox_error", None, "", "", 0.0, 0.0,
                             f"unknown language {program.language!r}; known: {', '.join(LANGUAGES)}")
        for name in program.files:
            if "/" in name or name.startswith("."):
                return RunResult("sandbox_error", None, "", "", 0.0, 0.0, f"bad extra file name {name!r}")
        with self._slots:
            try:
                box = self._create()
            except SandboxUnavailable as exc:
                self._count("sandbox_errors")
                return RunResult("sandbox_error", None, "", "", 0.0, 0.0, str(exc))
            try:
                return self._run_in(box, program, limits)
            finally:
                self._kill(box)

    # -- internals -------------------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _create(self) -> Any:
        kwargs: dict[str, Any] = {"timeout": int(self.lifetime_s), "allow_internet_access": self.internet,
                                  "request_timeout": self.request_timeout_s}
        if self.template:
            kwargs["template"] = self.template
        if self.api_key:
            kwargs["api_key"] = self.api_key
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            self._rate.wait()
            try:
                box = self.client(**kwargs)
                self._count("created")
                return box
            except Exception as exc:  # noqa: BLE001 -- sorted below: retry, or say why not
                if _is_auth(exc):
                    raise SandboxUnavailable(f"E2B authentication failed ({type(exc).__name__}): {KEY_HELP}") from exc
                if not _is_transport(exc) or attempt == self.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise SandboxUnavailable(f"could not create an E2B sandbox{tries}: "
                                             f"{type(exc).__name__}: {exc}") from exc
                self._count("retries")
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    @staticmethod
    def _call(fn: Callable[[], Any], deadline_s: float) -> Any:
        """Run one SDK call on a thread of its own and give up on it after ``deadline_s`` (:class:`NoAnswer`):
        the SDK's own timeouts are not all we rely on (a stalled connection, a paused sandbox). An abandoned
        call ends when the sandbox is killed."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True, name="r1gym-e2b-call")
        thread.start()
        thread.join(deadline_s)
        if thread.is_alive():
            raise NoAnswer(f"no answer within {deadline_s:.0f} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _run_in(self, box: Any, program: Program, limits: Limits) -> RunResult:
        started = time.perf_counter()
        main = "main.py" if program.language == "python" else "main.cpp"
        files = {main: program.source, "stdin.txt": program.stdin, **program.files}
        try:
            for name, text in files.items():
                self._call(lambda n=name, t=text: box.files.write(f"{WORKDIR}/{n}", t,
                                                                  request_timeout=self.request_timeout_s),
                           self.request_timeout_s + self.grace_s)
            if program.language == "cpp":
                compiled = self._command(box, "g++ -O2 -std=c++17 -o main main.cpp",
                                         Limits(time_s=limits.compile_s, memory_mb=2048, output_bytes=64 << 10,
                                                file_mb=256),
                                         started)
                if compiled.status != "ok":
                    if compiled.status == "runtime_error":
                        compiled.status = "compile_error"
                    return compiled
                argv = "./main"
            else:
                argv = "python3 -E -s main.py"
            return self._command(box, argv, limits, started)
        except NoAnswer:
            self._count("sandbox_errors")
            return RunResult("sandbox_error", None, "", "", time.perf_counter() - started, 0.0,
                             f"E2B did not answer within {self.request_timeout_s + self.grace_s:.0f} s while "
                             "writing the program's files")
        except Exception as exc:  # noqa: BLE001 -- the service failed, not the program
            self._count("sandbox_errors")
            return RunResult("sandbox_error", None, "", "", time.perf_counter() - started, 0.0,
                             f"E2B failed: {type(exc).__name__}: {exc}")

    def _command(self, box: Any, argv: str, limits: Limits, started: float) -> RunResult:
        cap = limits.output_bytes + 1  # one byte more than allowed: getting it means the program overran
        cpu = max(1, int(limits.cpu_s if limits.cpu_s is not None else limits.time_s + 0.999))
        script = (
            f"set -o pipefail; ulimit -t {cpu} -v {limits.memory_mb << 10} -u {limits.processes} "
            f"-f {limits.file_mb << 10} -n {limits.open_files} -c 0; "
            f"timeout -k 1 {limits.time_s} {argv} < stdin.txt 2> >(head -c {cap} >&2) | head -c {cap}"
        )
        call_started = time.perf_counter()

        def call() -> tuple[str, str, int]:
            try:
                r = box.commands.run(f"bash -c {shlex.quote(script)}", cwd=WORKDIR, timeout=limits.time_s + self.grace_s,
                                     request_timeout=self.request_timeout_s)
                return r.stdout or "", r.stderr or "", r.exit_code
            except Exception as exc:  # a non-zero exit comes as CommandExitException, with the same fields
                if hasattr(exc, "exit_code") and hasattr(exc, "stdout"):
                    return exc.stdout or "", exc.stderr or "", exc.exit_code
                raise

        try:
            stdout, stderr, code = self._call(call, limits.time_s + 2 * self.grace_s)
        except NoAnswer:  # the program's own limit is enforced inside: this is the service, not the program
            self._count("sandbox_errors")
            return RunResult("sandbox_error", None, "", "", time.perf_counter() - started, 0.0,
                             f"no answer from E2B {limits.time_s + 2 * self.grace_s:.0f} s after the start, though "
                             f"the program is killed at {limits.time_s} s inside the sandbox; the sandbox was killed")
        except Exception as exc:
            if not _is_command_timeout(exc):
                raise
            self._count("sandbox_errors")
            return RunResult("sandbox_error", None, "", "", time.perf_counter() - started, 0.0,
                             f"E2B ended the command at its {limits.time_s + self.grace_s:.0f} s timeout, though the "
                             f"program is killed at {limits.time_s} s inside the sandbox: {exc}")
        wall = time.perf_counter() - call_started
        flooded = len(stdout.encode()) > limits.output_bytes or len(stderr.encode()) > limits.output_bytes
        timed_out = code == 124 or (code == 137 and wall >= limits.time_s)
        status, detail = classify_exit(code, stderr, timed_out, flooded, cpu_used=0.0, cpu_limit=cpu, limits=limits,
                                       program_ended=True)
        if flooded:
            stdout = stdout.encode()[: limits.output_bytes].decode(errors="replace")
            stderr = stderr.encode()[: limits.output_bytes].decode(errors="replace")
        return RunResult(status, code, stdout, stderr, time.perf_counter() - started, 0.0, detail)

    def _kill(self, box: Any) -> None:
        try:
            self._call(box.kill, self.request_timeout_s)
        except Exception:  # noqa: BLE001 -- the service ends it at lifetime_s anyway
            pass
