"""The math verifier: agreement with labels, false positives/negatives, and throughput with time limits on.

1. Labelled equivalence set (``bench/data/math_equivalence.jsonl``, hand-written: each line a ``gold``, a
   ``pred``, ``equivalent`` and a ``kind``; half equivalent, half near misses). Checkers compared on the same
   strings:

   * ``r1gym``: ``MathChecker().check(gold, pred)`` (a "cannot be scored" counts as a disagreement);
   * ``math-verify``: plain ``math_verify.verify(math_verify.parse(gold), math_verify.parse(pred))``, as most
     training code calls it on bare reference answers;
   * ``math-verify $..$``: the same with both strings wrapped in ``$...$`` (how math-verify wants LaTeX).

   Agreement = share of pairs where the checker matches the label; false-positive rate = share of
   non-equivalent pairs called equal; false-negative rate = share of equivalent pairs called different.

2. Throughput, with the checker's time limit in force (``--timeout``, default 5 s, worker pool of
   ``--workers`` processes): distinct plain-number pairs (integers, decimals, fractions, percentages; the fast
   path, no sympy, one thread), distinct generated LaTeX-expression pairs (radicals, polynomials, fractions
   with pi, intervals, tuples; half equivalent) checked from ``--threads`` threads through the pool, the
   MATH-500 answers that need sympy (``answer`` field against the last ``\\boxed{}`` of the solution), and the
   same LaTeX pairs again (cache hits). A fresh checker for each measurement, so no pair is cached before.

    python bench/math_verifier.py --write-md
    python bench/math_verifier.py --numeric 2000 --latex 200   # quicker
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its sibling report.py

import report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "math_equivalence.jsonl"
MATH500 = ROOT.parent / "shared" / "data" / "math500.jsonl"


# -- 1. labelled equivalence set ------------------------------------------------------------------------------
def mathverify_checker(wrap: bool) -> Callable[[str, str], bool | None]:
    from math_verify import parse, verify

    def check(gold: str, pred: str) -> bool | None:
        g, p = (f"${gold}$", f"${pred}$") if wrap else (gold, pred)
        return bool(verify(parse(g), parse(p)))

    return check


def evaluate(rows: list[dict], check: Callable[[str, str], bool | None]) -> list[bool | None]:
    return [check(r["gold"], r["pred"]) for r in rows]


def rates(rows: list[dict], verdicts: list[bool | None], label: str = "equivalent") -> dict[str, float]:
    """Agreement, false-positive/negative rates and counts of ``verdicts`` against ``row[label]``."""
    pos = [v for r, v in zip(rows, verdicts) if r[label]]
    neg = [v for r, v in zip(rows, verdicts) if not r[label]]
    agree = sum((v is True) == r[label] and v is not None for r, v in zip(rows, verdicts))
    return {
        "n": len(rows),
        "agreement": agree / len(rows),
        "fpr": sum(v is True for v in neg) / len(neg) if neg else float("nan"),
        "fnr": sum(v is not True for v in pos) / len(pos) if pos else float("nan"),
        "fp": sum(v is True for v in neg),
        "fn": sum(v is not True for v in pos),
        "unscorable": sum(v is None for v in verdicts),
    }


# -- 2. throughput ----------------------------------------------------------------------------------------------
def numeric_pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            a = rng.randint(-10**6, 10**6)
            g, p = str(a), str(a if rng.random() < 0.5 else a + rng.randint(1, 9))
        elif kind == 1:
            a = rng.randint(0, 10**6) / 1000
            g, p = f"{a:.3f}", f"{a:.3f}".rstrip("0") if rng.random() < 0.5 else f"{a + 0.001:.3f}"
        elif kind == 2:
            a, b = rng.randint(1, 999), rng.randint(2, 999)
            g, p = f"\\frac{{{a}}}{{{b}}}", f"{a * 2}/{b * 2}" if rng.random() < 0.5 else f"{a + 1}/{b}"
        else:
            a = rng.randint(1, 999)
            g, p = f"{a}\\%", f"{a / 100:g}" if rng.random() < 0.5 else f"{a + 1}"
        out.append((g, p))
    return out


def latex_pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    out, seen = [], set()
    while len(out) < n:
        a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
        same = rng.random() < 0.5
        kind = len(out) % 5
        if kind == 0:  # radicals
            g, p = f"{a}\\sqrt{{{c}}}", f"\\sqrt{{{a * a * c if same else a * a * c + 1}}}"
        elif kind == 1:  # polynomials
            g, p = f"(x+{a})(x-{b})", f"x^2{a - b:+d}x-{a * b if same else a * b + 1}"
        elif kind == 2:  # fractions with pi
            g, p = f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a * c}}}{{{b * c}}}\\pi" if same else f"\\frac{{{a}}}{{{b + 1}}}\\pi"
        elif kind == 3:  # intervals
            g, p = f"[{a}, {a + b})", f"[{a},{a + b})" if same else f"({a},{a + b}]"
        else:  # points
            g, p = f"\\left({a}, \\frac{{{b}}}{{{c}}}\\right)", f"({a}, {b / c if b % c == 0 else b}/{1 if b % c == 0 else c})" if same else f"({b}, {a})"
        if (g, p) not in seen:
            seen.add((g, p))
            out.append((g, p))
    return out


def math500_pairs() -> list[tuple[str, str]]:
    from r1gym.plugins.math.extract import last_boxed
    from r1gym.plugins.math.normalize import classify

    if not MATH500.is_file():
        return []
    pairs = []
    for line in MATH500.read_text().splitlines():
        r = json.loads(line)
        pred = last_boxed(r["solution"]) or ""
        if "latex" in (classify(r["answer"]).kind, classify(pred).kind):
            pairs.append((r["answer"], pred))
    return sorted(set(pairs))


def throughput(pairs: list[tuple[str, str]], threads: int, make_checker: Callable, repeat_cached: bool = False) -> dict:
    checker = make_checker()
    if pairs and threads > 1:
        checker.pool.wait_ready()
    run = lambda p: checker.check(*p)  # noqa: E731
    if repeat_cached:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(run, pairs))
    t0 = time.perf_counter()
    if threads > 1:
        with ThreadPoolExecutor(threads) as ex:
            verdicts = list(ex.map(run, pairs))
    else:
        verdicts = [run(p) for p in pairs]
    seconds = time.perf_counter() - t0
    stats = dict(checker.stats)
    checker.close()
    kinds = collections.Counter("unscorable" if v.correct is None else str(v.correct) for v in verdicts)
    return {"n": len(pairs), "seconds": seconds, "rate": len(pairs) / seconds if seconds else float("nan"),
            "verdicts": dict(kinds), "stats": stats}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DATA), help="labelled pairs (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="verifier worker processes (default: %(default)s)")
    p.add_argument("--threads", type=int, default=4, help="caller threads for the LaTeX throughput (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-check time limit in seconds (default: %(default)s)")
    p.add_argument("--numeric", type=int, default=20_000, help="plain-number pairs to time (default: %(default)s)")
    p.add_argument("--latex", type=int, default=2_000, help="generated LaTeX pairs to time (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "Timeout during parsing" warnings
    from r1gym.plugins.math.pool import MathChecker

    info = report.machine_info()
    make_checker = lambda: MathChecker(workers=args.workers, timeout=args.timeout)  # noqa: E731

    # 1. agreement
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    ours_checker = make_checker()
    ours_checker.pool.wait_ready()
    checkers = {
        "r1gym": lambda g, pr: ours_checker.check(g, pr).correct,
        "math-verify": mathverify_checker(wrap=False),
        "math-verify $..$": mathverify_checker(wrap=True),
    }
    verdicts = {name: evaluate(rows, fn) for name, fn in checkers.items()}
    ours_checker.close()
    overall = [[name, *(lambda r: [r["n"], r["agreement"], r["fpr"], r["fnr"], r["fp"], r["fn"], r["unscorable"]])(rates(rows, v))]
               for name, v in verdicts.items()]
    head = ["checker", "pairs", "agreement", "false-pos rate", "false-neg rate", "FP", "FN", "unscorable"]
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    per_kind = []
    for kind in kinds:
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        sub = [rows[i] for i in idx]
        cells: list = [kind, len(idx)]
        for name in checkers:
            rr = rates(sub, [verdicts[name][i] for i in idx])
            cells += [rr["agreement"], f"{rr['fp']}/{rr['fn']}"]
        per_kind.append(cells)
    kind_head = ["kind", "pairs"] + [h for name in checkers for h in (f"{name} agree", f"{name} FP/FN")]
    known = [[f"`{r['gold']}` vs `{r['pred']}`", *[str(verdicts[n][i]) for n in checkers]]
             for i, r in enumerate(rows) if r["kind"] == "known_fp"]
    wrong = [[r["kind"], f"`{r['gold']}` vs `{r['pred']}`", str(r["equivalent"]), str(verdicts["r1gym"][i])]
             for i, r in enumerate(rows) if verdicts["r1gym"][i] is not r["equivalent"]]

    # 2. throughput
    rng = random.Random(args.seed)
    tp = [
        ("plain numbers (fast path)", 1, throughput(numeric_pairs(args.numeric, rng), 1, make_checker)),
        (f"LaTeX expressions (pool, {args.threads} threads)", args.threads,
         throughput(latex_pairs(args.latex, rng), args.threads, make_checker)),
    ]
    m500 = math500_pairs()
    if m500:
        tp.append((f"MATH-500 answers needing sympy ({args.threads} threads)", args.threads,
                   throughput(m500, args.threads, make_checker)))
    tp.append((f"LaTeX expressions again (cache hits, {args.threads} threads)", args.threads,
               throughput(latex_pairs(args.latex, random.Random(args.seed + 1)), args.threads, make_checker, repeat_cached=True)))
    tp_rows = [[name, r["n"], r["seconds"], r["rate"], ", ".join(f"{k}: {v}" for k, v in sorted(r["verdicts"].items()))]
               for name, _, r in tp]
    tp_head = ["checks", "pairs", "seconds", "checks/s", "verdicts"]

    print(report.machine_line(info))
    if report.busy_warning(info):
        print(report.busy_warning(info))
    print(f"\nlabelled pairs: {args.data} ({len(rows)} pairs, {sum(r['equivalent'] for r in rows)} equivalent)\n")
    print(report.text_table(head, overall))
    print()
    print(report.text_table(kind_head, per_kind))
    print("\nknown false positives of other checkers (True = called equal):")
    print(report.text_table(["pair", *checkers], known))
    print(f"\nr1gym disagreements with the labels: {len(wrong)}")
    if wrong:
        print(report.text_table(["kind", "pair", "label", "r1gym"], wrong))
    print(f"\nthroughput (time limit {args.timeout:g} s per check, {args.workers} worker processes):")
    print(report.text_table(tp_head, tp_rows))

    if args.write_md:
        body = (
            f"- labelled pairs: `{Path(args.data).relative_to(ROOT) if Path(args.data).is_relative_to(ROOT) else args.data}`, "
            f"{len(rows)} hand-written pairs ({sum(r['equivalent'] for r in rows)} equivalent), {len(kinds)} kinds. "
            "`r1gym` = `MathChecker().check(gold, pred)` (cannot-be-scored counts as a disagreement); `math-verify` = "
            "`verify(parse(gold), parse(pred))` on the bare strings; `math-verify $..$` = both wrapped in `$...$`.\n"
            f"- throughput: time limit {args.timeout:g} s per check in force, {args.workers} worker processes; "
            "distinct pairs, a fresh checker (empty cache) per row except the cache-hit row.\n\n"
            + report.markdown_table(head, overall) + "\n\n"
            + report.markdown_table(kind_head, per_kind) + "\n\n"
            + "Known false positives of other checkers (`True` = called equal):\n\n"
            + report.markdown_table(["pair", *checkers], known) + "\n\n"
            + (f"r1gym's disagreements with the labels:\n\n{report.markdown_table(['kind', 'pair', 'label', 'r1gym'], wrong)}\n\n"
               if wrong else "r1gym agrees with every label.\n\n")
            + report.markdown_table(tp_head, tp_rows) + "\n"
        )
        path = report.append_section("math_verifier", body, info, path=args.md_path)
        print(f"\nappended to {path}")


if __name__ == "__main__":
    main()
