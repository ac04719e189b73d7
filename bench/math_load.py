"""The math checker under load and under attack: a burst of checks of which a share is pathological.

1. Burst. ``--checks`` completions (default 512) graded at once from ``--threads`` caller threads through one
   :class:`~r1gym.plugins.math.pool.MathChecker` (``--workers`` processes, ``--timeout`` s per check), as a
   GRPO step's rewards or ``r1gym score`` with several jobs would. ``--pathological`` of them (default 10%)
   are attacks, cycled through:

   * ``tower``: an exponent tower (``9^{9^{9^{9}}}``, ``10^{10^{10^{10}}}``) in an ``<answer>`` tag;
   * ``megabyte``: 1 MB of digits and LaTeX in the answer tag, and 1 MB of prose with no answer;
   * ``nested_frac``: ``\\frac{\\frac{...}{2}}{2}`` nested 60 deep (under the length cap: parsed) and 400 deep;
   * ``repeated_boxed``: 140 KB of repeated ``\\boxed{`` (and of ``\\boxed{1}, ``).

   The others are legitimate: each MATH-500 problem's reference solution (``../shared/data/math500.jsonl``,
   the 500 test problems of Lightman et al.'s PRM800K split of Hendrycks' MATH) graded against its own
   ``answer`` field, so the expected verdict is "correct" (a "wrong" verdict is the checker's disagreement,
   not a lost check). Without that file the shipped sample problems are used. The burst is shuffled with
   ``--seed``. Reported per kind: verdicts (correct / wrong / unscorable, with reasons), the slowest check,
   and the wall time of the whole burst.

2. Extraction cost on degenerate completions (``extract_answer`` in the caller's thread): 35 KB, 140 KB and
   1 MB of a repeated unit, timed in a fresh process with a 20 s limit, for the code in the working tree and,
   with ``--before REV``, for ``plugins/math/extract.py`` as it was at git revision REV.

    python bench/math_load.py --write-md
    python bench/math_load.py --write-md --before cae1c44~1     # also time the extraction before the fix
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its sibling report.py

import report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MATH500 = ROOT.parent / "shared" / "data" / "math500.jsonl"
SAMPLE = ROOT / "plugins" / "math" / "data" / "sample_math.jsonl"
EXTRACT_LIMIT_S = 20


def _nested_frac(depth: int) -> str:
    return "\\frac{" * depth + "1" + "}{2}" * depth


def pathological(rng: random.Random) -> list[tuple[str, str, str]]:
    """``(kind, completion, reference)`` for each attack, in a fixed order."""
    digits = "".join(rng.choice("0123456789") for _ in range(1_000_000))
    return [
        ("tower", "<answer> 9^{9^{9^{9}}} </answer>", "5"),
        ("tower", "so the answer is $\\boxed{10^{10^{10^{10}}}}$", "7"),
        ("megabyte", f"<answer> {digits} </answer>", "5"),
        ("megabyte", "Let me think. " * 75_000, "\\frac{1}{2}"),
        ("megabyte", "<answer>" + "\\frac{1}{2}+" * 90_000 + "1</answer>", "3"),
        ("nested_frac", f"<answer> {_nested_frac(60)} </answer>", "\\frac{1}{2^{60}}"),
        ("nested_frac", f"\\boxed{{{_nested_frac(400)}}}", "2"),
        ("repeated_boxed", "We compute. " + "\\boxed{" * 20_000, "4"),
        ("repeated_boxed", "We compute. " + "\\boxed{1}, " * 12_800, "1"),
    ]


def legitimate() -> tuple[list[tuple[str, str, str]], str]:
    path = MATH500 if MATH500.is_file() else SAMPLE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = [("legitimate", r["solution"], r["answer"]) for r in rows if r.get("solution") and r.get("answer")]
    return out, str(path.relative_to(ROOT.parent) if path.is_relative_to(ROOT.parent) else path)


def burst(items: list[tuple[str, str, str]], workers: int, threads: int, timeout: float) -> tuple[float, list[dict]]:
    from r1gym.plugins.math.pool import MathChecker

    checker = MathChecker(workers=workers, timeout=timeout)
    checker.pool.wait_ready()

    def run(item: tuple[str, str, str]) -> dict:
        kind, completion, reference = item
        t0 = time.perf_counter()
        verdict = checker.grade(completion, reference)
        return {"kind": kind, "verdict": verdict, "seconds": time.perf_counter() - t0}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        results = list(ex.map(run, items))
    wall = time.perf_counter() - t0
    checker.close()
    return wall, results


def _short_reason(reason: str) -> str:
    for prefix in ("timeout", "busy", "answer too long", "verifier error", "prediction does not parse", "no answer found"):
        if reason.startswith(prefix):
            return prefix
    return reason[:40]


DEGENERATE_UNITS = {"\\boxed{": "repeated `\\boxed{`", "<answer> 1 ": "repeated `<answer> 1 `", "\\boxed-": "repeated `\\boxed-`"}
_TIME_ONE = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("extract_under_test", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
text = "We compute. " + sys.argv[2] * (int(sys.argv[3]) // len(sys.argv[2]))
t0 = time.perf_counter(); mod.extract_answer(text); print(time.perf_counter() - t0)
"""


def extraction_cost(source: Path, sizes: Sequence[int]) -> dict[tuple[str, int], float | None]:
    """Seconds of ``extract_answer`` per (unit, size) for the module file ``source``; ``None``: over the limit."""
    out: dict[tuple[str, int], float | None] = {}
    for unit in DEGENERATE_UNITS:
        over = False
        for size in sizes:
            if over:  # a bigger input of a quadratic scan cannot be faster
                out[unit, size] = None
                continue
            try:
                res = subprocess.run([sys.executable, "-c", _TIME_ONE, str(source), unit, str(size)],
                                     capture_output=True, text=True, timeout=EXTRACT_LIMIT_S, check=True)
                out[unit, size] = float(res.stdout.strip())
            except subprocess.TimeoutExpired:
                out[unit, size], over = None, True
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checks", type=int, default=512, help="completions in the burst (default: %(default)s)")
    p.add_argument("--pathological", type=float, default=0.10, help="share of attacks (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="verifier worker processes (default: %(default)s)")
    p.add_argument("--threads", type=int, default=8, help="caller threads (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-check time limit in seconds (default: %(default)s)")
    p.add_argument("--before", metavar="REV", help="also time extraction with plugins/math/extract.py at git revision REV")
    p.add_argument("--sizes", type=int, nargs="+", default=[35_000, 140_000, 1_000_000], help="degenerate input sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    info = report.start(None)

    rng = random.Random(args.seed)
    legit, legit_source = legitimate()
    n_bad = round(args.checks * args.pathological)
    attacks = pathological(rng)
    items = [attacks[i % len(attacks)] for i in range(n_bad)]
    items += [legit[i % len(legit)] for i in range(args.checks - n_bad)]
    rng.shuffle(items)
    wall, results = burst(items, args.workers, args.threads, args.timeout)

    by_kind: dict[str, list[dict]] = collections.defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r)
    head = ["kind", "checks", "correct", "wrong", "unscorable", "reasons (wrong / unscorable)", "slowest check, s"]
    rows = []
    for kind in ["legitimate", *dict.fromkeys(a[0] for a in attacks)]:
        rs = by_kind.get(kind, [])
        if not rs:
            continue
        verdicts = [r["verdict"] for r in rs]
        reasons = collections.Counter(_short_reason(v.reason) for v in verdicts if v.correct is not True)
        rows.append([kind, len(rs), sum(v.correct is True for v in verdicts), sum(v.correct is False for v in verdicts),
                     sum(v.correct is None for v in verdicts), ", ".join(f"{k}: {n}" for k, n in reasons.most_common()) or "-",
                     max(r["seconds"] for r in rs)])
    legit_masked = sum(r["verdict"].correct is None for r in by_kind["legitimate"])
    summary = (f"{args.checks} checks ({n_bad} pathological, {args.checks - n_bad} legitimate from {legit_source}), "
               f"{args.threads} caller threads, {args.workers} worker processes, time limit {args.timeout:g} s per check: "
               f"wall time {wall:.1f} s; legitimate checks masked (unscorable): {legit_masked}")

    sources = {"working tree": ROOT / "plugins" / "math" / "extract.py"}
    tmp = None
    if args.before:
        import tempfile

        tmp = Path(tempfile.mkdtemp()) / "extract_before.py"
        tmp.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.before}:plugins/math/extract.py"],
                                      capture_output=True, text=True, check=True).stdout)
        sources = {f"before ({args.before})": tmp, **sources}
    costs = {name: extraction_cost(path, args.sizes) for name, path in sources.items()}
    cost_head = ["input", *[f"{name}, {s // 1000} KB" for name in sources for s in args.sizes]]
    cost_rows = [[label, *[(f"{c:.3f}" if (c := costs[name][unit, s]) is not None else f"> {EXTRACT_LIMIT_S}")
                          for name in sources for s in args.sizes]] for unit, label in DEGENERATE_UNITS.items()]

    print("\n" + summary + "\n")
    print(report.text_table(head, rows))
    print("\nextract_answer seconds on degenerate completions (fresh process each):")
    print(report.text_table(cost_head, cost_rows))
    if args.write_md:
        body = (
            f"- burst: {summary}. Legitimate = each MATH-500 reference solution graded against its own answer "
            "(expected: correct). Pathological kinds as in `bench/math_load.py`'s docstring.\n\n"
            + report.markdown_table(head, rows) + "\n\n"
            + "`extract_answer` seconds on degenerate completions (a fresh process each, "
            f"limit {EXTRACT_LIMIT_S} s):\n\n" + report.markdown_table(cost_head, cost_rows) + "\n"
        )
        path = report.append_section("math_load", body, info, path=args.md_path)
        print(f"\nappended to {path}")


if __name__ == "__main__":
    main()
