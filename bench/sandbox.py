"""Throughput of the local code sandbox: trivial Python programs per second with isolation on.

Each program is ``print(i)`` run by ``LocalSandbox`` (bubblewrap: namespaces, read-only system, private tmpfs,
uid 65534, rlimits), first one after another, then through ``SandboxPool`` with several workers; the output
of every run is checked. The overhead per run is the sequential time per program minus that of a bare
``python3 -c pass`` started with ``subprocess.run`` (no sandbox), measured the same way.

    python bench/sandbox.py                 # 100 programs per row
    python bench/sandbox.py --write-md      # and append the table to docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--programs", type=int, default=100, help="programs per row")
    p.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8], help="pool sizes to time")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)

    from r1gym.plugins.code.sandbox import LocalSandbox, Program, SandboxPool

    info = report.start(None)
    sandbox = LocalSandbox()
    n = args.programs
    programs = [Program("python", f"print({i})") for i in range(n)]
    expected = [f"{i}\n" for i in range(n)]
    sandbox.run(programs[0])  # warm-up: page cache, first namespace set-up

    rows = []
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run([sandbox.python, "-c", "pass"], check=True)
    bare = (time.perf_counter() - t0) / n
    rows.append(["bare `python3 -c pass` (no sandbox), sequential", str(n), bare * n, 1 / bare, ""])

    t0 = time.perf_counter()
    results = [sandbox.run(prog) for prog in programs]
    seq = (time.perf_counter() - t0) / n
    assert [r.stdout for r in results] == expected, "a sandboxed run printed the wrong thing"
    rows.append([f"sandbox ({sandbox.tool}), sequential", str(n), seq * n, 1 / seq, f"{(seq - bare) * 1e3:.1f} ms"])

    for w in args.workers:
        with SandboxPool(sandbox, w) as pool:
            t0 = time.perf_counter()
            results = pool.map(programs)
            dt = time.perf_counter() - t0
        assert [r.stdout for r in results] == expected, "a pooled run printed the wrong thing"
        rows.append([f"sandbox ({sandbox.tool}), pool of {w}", str(n), dt, n / dt, ""])

    headers = ["runs", "programs", "seconds", "programs/s", "overhead per run vs bare"]
    print(report.text_table(headers, rows))
    if args.write_md:
        body = (f"- each program: `print(i)` in Python ({sandbox.python}), default limits (5 s, 512 MB, 64 "
                "processes, 1 MiB output), isolation on (see `plugins/code/sandbox.py`); outputs checked.\n\n"
                + report.markdown_table(headers, rows) + "\n")
        path = report.append_section("sandbox", body, info, path=args.md_path)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
