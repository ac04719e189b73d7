"""Throughput of the local code sandbox: trivial Python programs per second with isolation on, and the wall
time to score a GRPO batch of 64 completions against 10 test cases each.

Each program is ``print(i)`` run by ``LocalSandbox`` (bubblewrap: namespaces, read-only system, private tmpfs,
uid 65534, rlimits), first one after another, then through ``SandboxPool`` with several workers; the output
of every run is checked. The overhead per run is the sequential time per program minus that of a bare
``python3 -c pass`` started with ``subprocess.run`` (no sandbox), measured the same way.

The last two rows repeat the pool of 4 while this process holds ``--resident-mb`` of memory, as a trainer
holds its model: once with the limits set by ``prlimit``/``setpriv`` (the default; ``subprocess`` can
``vfork``) and once by a ``preexec_fn`` (the fallback when util-linux lacks them; ``subprocess`` must fork).

Scoring: 64 completions of one stdin/stdout task (half right, a quarter wrong, a quarter crashing), each
run against 10 test cases through ``r1gym/Code-v0`` envs' ``step`` (the ``code_tests`` reward, tests of a
completion on the sandbox pool), scored the way the trainer does it with ``rollout.reward_workers`` = 1
and = ``--reward-workers``.

Function-call tests (issue 14): every HumanEval canonical solution (``../shared/data/humaneval.jsonl``, all
164, when it is there; else the 8 records in ``tests/data/humaneval_sample.jsonl``) and the shipped r1gym
sample's references scored twice on the same pool of 4, 4 tasks at a time: the *legacy* in-process harness
(setup + solution + test + a line printing a token, one sandbox run per assert test: what ``code_tests`` did
before, forgeable) and ``code_tests`` today (record once per task, one sandbox run per completion for all
its assert tests, replay in the judge). Both must pass every reference; the cost per test is compared as a
ratio measured in the same run.

    python bench/sandbox.py                 # 100 programs per row
    python bench/sandbox.py --write-md      # and append the table to docs/benchmarks.md
    python bench/sandbox.py --function-calls-only
    python bench/sandbox.py --before f83b730   # also time that commit's sandbox, same programs, same run

``--before COMMIT`` loads ``plugins/code/sandbox.py`` as it was at ``COMMIT`` (``git show``; it is self-contained)
and times its sequential and pool-of-4 rows beside today's, alternating, so isolation added since then is
measured as a ratio on one machine in one run.
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
    p.add_argument("--reward-workers", type=int, default=16, help="threads scoring completions at once")
    p.add_argument("--resident-mb", type=int, default=2048,
                   help="for the last rows, hold this much memory in this process (as a trainer holds its model)")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    p.add_argument("--function-calls-only", action="store_true", help="only the function-call scoring rows")
    p.add_argument("--before", metavar="COMMIT", help="also time the sandbox of this commit (see the docstring)")
    p.add_argument("--humaneval", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval.jsonl"))
    args = p.parse_args(argv)
    if args.function_calls_only:
        info = report.start(None)
        calls_md = score_function_calls(args.humaneval)
        if args.write_md:
            path = report.append_section("sandbox: function-call tests", _calls_note(args.humaneval) + calls_md + "\n",
                                         info, path=args.md_path)
            print(f"appended to {path}")
        return

    from r1gym.core.contracts import Program
    from r1gym.plugins.code.sandbox import LocalSandbox, SandboxPool

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

    # a trainer holds gigabytes: with a preexec_fn, subprocess must fork (copy the page tables of) all of it
    resident = bytearray(args.resident_mb << 20)
    resident[:: 4096] = b"x" * len(resident[:: 4096])  # touch every page
    for label, wrappers in (("prlimit+setpriv (default)", sandbox._wrappers), ("preexec_fn (fallback)", None)):
        saved, sandbox._wrappers = sandbox._wrappers, wrappers
        with SandboxPool(sandbox, 4) as pool:
            t0 = time.perf_counter()
            results = pool.map(programs)
            dt = time.perf_counter() - t0
        sandbox._wrappers = saved
        assert [r.stdout for r in results] == expected, "a pooled run printed the wrong thing"
        rows.append([f"pool of 4, {args.resident_mb} MiB resident, limits by {label}", str(n), dt, n / dt, ""])
    del resident

    if args.before:
        rows += before_after(args.before, n)
    headers = ["runs", "programs", "seconds", "programs/s", "overhead per run vs bare"]
    print(report.text_table(headers, rows))
    score_rows = score_batch(args.reward_workers)
    score_headers = ["scoring 64 completions x 10 tests", "programs run", "seconds", "mean code_tests"]
    print(report.text_table(score_headers, score_rows))
    calls_md = score_function_calls(args.humaneval)
    if args.write_md:
        body = (f"- each program: `print(i)` in Python ({sandbox.python}), default limits (5 s, 512 MB, 64 "
                "processes, 1 MiB output), isolation on (see `plugins/code/sandbox.py`); outputs checked.\n\n"
                + report.markdown_table(headers, rows) + "\n\n"
                "- scoring: 64 completions (32 right, 16 wrong, 16 crashing) x 10 stdin/stdout tests through "
                "`r1gym/Code-v0` envs' `step` (reward `code_tests`), the way the trainer scores a step.\n\n"
                + report.markdown_table(score_headers, score_rows) + "\n\n"
                + _calls_note(args.humaneval) + calls_md + "\n")
        path = report.append_section("sandbox", body, info, path=args.md_path)
        print(f"appended to {path}")


def score_batch(workers: int) -> list[list[object]]:
    """Score 64 completions x 10 tests with 1 and with ``workers`` reward threads; rows for the table."""
    import tempfile

    from r1gym.core.rollout import Completion, _step_all
    from r1gym.envs import make

    tests = [{"stdin": f"{a} {b}\n", "stdout": f"{a + b}\n"} for a, b in zip(range(10), range(5, 15))]
    task = {"id": "add", "prompt": "Read two integers and print their sum.", "solution": "", "tests": tests,
            "language": "python", "setup": ""}
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    wrong = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"
    crash = "```python\nraise ValueError('no')\n```"
    completions = [right] * 32 + [wrong] * 16 + [crash] * 16
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "add.jsonl"
        path.write_text(__import__("json").dumps(task) + "\n")
        source = {"name": "jsonl", "path": str(path), "answer_field": "solution", "id_field": "id",
                  "fields": ["tests", "language", "setup"]}
        for w in (1, workers):
            envs = [make("r1gym/Code-v0", source=source) for _ in completions]
            for env in envs:
                env.reset(options={"index": 0})
            t0 = time.perf_counter()
            out = _step_all([(env, Completion(c)) for env, c in zip(envs, completions)], w)
            dt = time.perf_counter() - t0
            mean = sum(o[4]["rewards"]["code_tests"] for o in out) / len(out)
            rows.append([f"reward_workers={w}", str(len(completions) * len(tests)), dt, f"{mean:.3f}"])
    return rows


def before_after(commit: str, n: int) -> list[list[object]]:
    """Rows timing the sandbox of ``commit`` and today's, alternately, sequential and on a pool of 4."""
    import importlib.util
    import tempfile

    from r1gym.plugins.code import sandbox as today

    source = subprocess.run(["git", "show", f"{commit}:plugins/code/sandbox.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"sandbox_{commit}", f.name)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    rows, times = [], {}
    for module, label in ((old, f"sandbox at {commit}"), (today, "sandbox today")) * 2:
        sb = module.LocalSandbox()
        programs = [module.Program("python", f"print({i})") for i in range(n)]
        sb.run(programs[0])
        t0 = time.perf_counter()
        results = [sb.run(p) for p in programs]
        seq = time.perf_counter() - t0
        with module.SandboxPool(sb, 4) as pool:
            t0 = time.perf_counter()
            results += pool.map(programs)
            par = time.perf_counter() - t0
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(n)] * 2, f"{label}: wrong output"
        times.setdefault(label, []).append((seq, par))
    for label, runs in times.items():
        seq, par = (min(x) for x in zip(*runs))  # the better of two alternated rounds
        rows.append([f"{label}, sequential (best of 2)", str(n), seq, n / seq, ""])
        rows.append([f"{label}, pool of 4 (best of 2)", str(n), par, n / par, ""])
    return rows


def _function_call_tasks(humaneval: str) -> list[tuple[str, dict]]:
    """(source label, task fields) of every HumanEval record and the shipped r1gym sample's assert tasks."""
    from r1gym.plugins.code.data import SAMPLE, CodeSource

    root = Path(__file__).resolve().parents[1]
    path = humaneval if Path(humaneval).exists() else str(root / "tests" / "data" / "humaneval_sample.jsonl")
    tasks = [(Path(path).name, t.fields) for t in CodeSource(path)]
    tasks += [("sample_code.jsonl", t.fields) for t in CodeSource(SAMPLE) if all("assert" in x for x in t.fields["tests"])]
    return tasks


def _calls_note(humaneval: str) -> str:
    return ("- function-call tests: each task's reference solution, scored by the legacy in-process harness "
            "(solution + test + a printed token, one sandbox run per assert test; forgeable) and by `code_tests` "
            "(record / candidate run / replay, `plugins/code/harness.py`), 4 tasks at a time on a pool of 4. "
            f"Data: {Path(humaneval).name if Path(humaneval).exists() else 'tests/data/humaneval_sample.jsonl'} "
            "(openai/human-eval) and the shipped `sample_code.jsonl`. The first `code_tests` row records each "
            "task's calls (once per task, cached); the second is what every later completion of a task costs.\n\n")


def score_function_calls(humaneval: str) -> str:
    """Legacy vs judged function-call scoring of every reference solution and of the attack suite (see the
    module docstring); prints the tables and returns them as markdown."""
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    from r1gym.plugins.code import harness
    from r1gym.plugins.code.rewards import _pool, code_tests
    from r1gym.core.contracts import Limits, Program

    tasks = _function_call_tasks(humaneval)
    pool = _pool("local", 4)
    n_tests = sum(len(f["tests"]) for _, f in tasks)

    def legacy(fields: dict) -> float:  # what code_tests did before issue 14, inlined to time it beside the new one
        setup = "" if fields.get("entry_point") else fields["setup"]  # HumanEval's setup was "" then
        tokens = [secrets.token_hex(16) for _ in fields["tests"]]
        programs = [Program("python", f"{setup}\n{fields['answer']}\n\n{t['assert']}\nprint({tok!r})\n")
                    for t, tok in zip(fields["tests"], tokens)]
        runs = pool.map(programs, Limits())
        return sum(r.status == "ok" and r.stdout.rstrip("\n").split("\n")[-1] == tok
                   for r, tok in zip(runs, tokens)) / len(tokens)

    def judged(fields: dict) -> float:
        return float(code_tests(f"```python\n{fields['answer']}\n```", tests=fields["tests"], setup=fields["setup"],
                                entry_point=fields.get("entry_point")))

    rows, per_test = [], {}
    harness._RECORDED.clear()
    for label, fn in (("legacy in-process harness (forgeable)", legacy), ("code_tests, first completion of each task", judged),
                      ("code_tests, later completions (calls recorded)", judged)):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as ex:
            scores = list(ex.map(lambda item: fn(item[1]), tasks))
        dt = time.perf_counter() - t0
        per_test[label] = dt / n_tests
        passed = sum(s == 1.0 for s in scores)
        assert passed == len(tasks), f"{label}: {len(tasks) - passed} reference solutions do not score 1.0"
        ratio = per_test[label] / per_test["legacy in-process harness (forgeable)"]
        rows.append([label, f"{len(tasks)} ({n_tests})", f"{passed}/{len(tasks)}", dt, f"{per_test[label] * 1e3:.1f}",
                     f"{ratio:.2f}x"])
    # the attack suite of tests/test_code_harness.py (wrong solutions with a trick each) through both
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_code_harness import ATTACKS, HUMANEVAL, WRONG

    r = HUMANEVAL["HumanEval/2"]
    fields = {"tests": [{"assert": f"{r['test']}\n\ncheck({r['entry_point']})"}], "setup": r["prompt"],
              "entry_point": r["entry_point"]}
    attack_rows = []
    for label, fn in (("legacy in-process harness", legacy), ("code_tests", judged)):
        won = [name for name, hack in ATTACKS.items() if fn({**fields, "answer": f"{WRONG}\n{hack}\n"}) == 1.0]
        attack_rows.append([label, f"{len(won)}/{len(ATTACKS)}", "; ".join(won) or "none"])
    headers = ["scoring reference solutions", "tasks (tests)", "score 1.0", "seconds", "ms per test", "vs legacy"]
    tables = report.markdown_table(headers, rows) + "\n\n" + report.markdown_table(
        ["wrong HumanEval/2 solutions with a trick (tests/test_code_harness.py)", "scored 1.0", "which"], attack_rows)
    print(report.text_table(headers, rows))
    print(report.text_table(["attacks", "scored 1.0", "which"], attack_rows))
    return tables


if __name__ == "__main__":
    main()
