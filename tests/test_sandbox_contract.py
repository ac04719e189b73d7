"""One contract for every sandbox backend that is available here: the same programs must end with the same
statuses and outputs on ``local`` (needs bubblewrap), on ``local`` with its weaker ``unshare`` fallback, on ``e2b`` against the real service (needs
``E2B_API_KEY``), and on ``e2b`` wired to the SDK stand-in of ``tests/e2b_standin.py`` (checks the script and
status mapping the e2b backend sends, not the service)."""

from __future__ import annotations

import os
import time

import pytest

from r1gym.core.contracts import Limits, Program
from r1gym.plugins.code.sandbox import LocalSandbox, isolation_tool

LIMITS = Limits(time_s=3.0, memory_mb=256, output_bytes=4096)


def _local():
    if isolation_tool() != "bwrap":
        pytest.skip("local: needs bubblewrap (apt-get install bubblewrap; `make install` does it)")
    return LocalSandbox()


def _local_unshare():
    import shutil

    if not shutil.which("unshare"):
        pytest.skip("local-unshare: needs util-linux's unshare")
    return LocalSandbox(tool="unshare", allow_weak_isolation=True)


def _e2b_service():
    if not os.environ.get("E2B_API_KEY"):
        pytest.skip("e2b: set E2B_API_KEY to run the contract against the real E2B service")
    pytest.importorskip("e2b_code_interpreter", reason="e2b: pip install 'r1gym[e2b]'")
    from r1gym.plugins.code.e2b import E2BSandbox

    return E2BSandbox()


def _e2b_standin():
    pytest.importorskip("e2b", reason="e2b: pip install 'r1gym[e2b]'")
    from e2b_standin import StandInE2B

    from r1gym.plugins.code.e2b import E2BSandbox

    return E2BSandbox(client=StandInE2B(), creations_per_s=100, backoff_s=0.01)


BACKENDS = {"local": _local, "local-unshare": _local_unshare, "e2b": _e2b_service, "e2b-standin-client": _e2b_standin}


@pytest.fixture(scope="module", params=list(BACKENDS))
def backend(request):
    return BACKENDS[request.param]()


def py(source: str, **kw) -> Program:
    return Program("python", source, **kw)


def test_output_stdin_and_extra_files(backend):
    r = backend.run(py("import sys, helper\nprint(helper.X, sys.stdin.read().upper())", stdin="abc",
                       files={"helper.py": "X = 42"}), LIMITS)
    assert (r.status, r.exit_code, r.stdout) == ("ok", 0, "42 ABC\n"), r


def test_exit_code_and_stderr_of_a_crash(backend):
    r = backend.run(py("import sys\nprint('before')\nsys.stderr.write('boom\\n')\nsys.exit(3)"), LIMITS)
    assert (r.status, r.exit_code, r.stdout) == ("runtime_error", 3, "before\n") and "boom" in r.stderr, r
    r = backend.run(py("raise ValueError('bad input')"), LIMITS)
    assert r.status == "runtime_error" and "ValueError: bad input" in r.stderr, r


@pytest.mark.parametrize("source", ["import time\ntime.sleep(30)", "while True: pass"])
def test_a_program_past_its_time_limit_is_a_timeout(backend, source):
    started = time.perf_counter()
    r = backend.run(py(source), LIMITS)
    assert r.status == "timeout", r
    assert time.perf_counter() - started < LIMITS.time_s + 20


def test_output_past_the_limit_is_cut_and_reported(backend):
    r = backend.run(py("import sys\nwhile True: sys.stdout.write('x' * 1000)"), LIMITS)
    assert r.status == "output_limit" and len(r.stdout) <= LIMITS.output_bytes, (r.status, len(r.stdout))
    assert r.stdout and r.stdout == "x" * len(r.stdout), r.stdout[:80]  # the start of what it wrote, cut, not lost


def test_memory_past_the_limit(backend):
    r = backend.run(py("x = bytearray(1 << 30)\nprint(len(x))"), LIMITS)
    assert r.status == "memory_limit" and r.stdout == "", r


def test_cpp_runs_and_compile_errors_are_reported(backend):
    r = backend.run(Program("cpp", "#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a*b<<'\\n';}",
                            stdin="6 7"), LIMITS)
    assert (r.status, r.stdout) == ("ok", "42\n"), r
    r = backend.run(Program("cpp", "int main() { return undefined_name; }"), LIMITS)
    assert r.status == "compile_error" and "undefined_name" in r.stderr, r


def test_unknown_language_and_bad_file_names_are_sandbox_errors_that_say_why(backend):
    r = backend.run(Program("cobol", "DISPLAY 'HI'."), LIMITS)
    assert r.status == "sandbox_error" and "python" in r.detail and "cpp" in r.detail, r
    r = backend.run(py("print(1)", files={"../escape.py": "x"}), LIMITS)
    assert r.status == "sandbox_error" and "escape" in r.detail, r
