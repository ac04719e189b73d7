"""The math checker on labels r1gym did not write: r1gym and plain math-verify side by side.

Rows: ``bench/data/math_eval/*.jsonl`` (built by ``bench/math_eval_build.py`` from math-verify's own tests,
MATH-500 and OpenAI's GSM8K model outputs; each row names its source). Each ``candidate`` is graded against its
``gold`` by

* ``r1gym``: ``MathChecker().grade(candidate, gold)`` (answer extraction, then the check: what the
  ``math_accuracy`` reward does; "cannot be scored" counts as a disagreement, and is counted);
* ``math-verify``: plain ``math_verify.verify(math_verify.parse(gold), math_verify.parse(candidate))`` with
  default settings, as most training code calls it.

Reported: agreement with the labels, false positives (labelled different, called equal: the ones a policy
learns to exploit), false negatives, per dataset, per category and per error class (``tags``), and every row
where r1gym calls a pair equal that the label says is not.

    python bench/math_eval.py --write-md
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its siblings

import report  # noqa: E402
from math_verifier import mathverify_checker, rates  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "math_eval"


def load(paths: Sequence[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "dataset": path.stem})
    return rows


def grade_all(rows: list[dict], workers: int, timeout: float) -> tuple[dict[str, list[bool | None]], list[str | None], list[str]]:
    """Verdicts of r1gym as shipped (second opinion on its default kinds), of r1gym's own check alone (no
    second opinion) and of plain math-verify; the second-opinion kind of each row (on the own check's verdict)
    and the reason of each shipped verdict."""
    from r1gym.plugins.math.pool import MathChecker, second_opinion_kind

    plain = mathverify_checker(wrap=False)

    def mv(gold: str, cand: str) -> bool | None:
        try:
            return plain(gold, cand)
        except Exception:  # math-verify raising is its failure to decide
            return None

    with MathChecker(workers=workers, timeout=timeout, second_opinion=()) as checker:
        own = [checker.grade(r["candidate"], r["gold"]) for r in rows]
    with MathChecker(workers=workers, timeout=timeout) as checker:
        shipped = [checker.grade(r["candidate"], r["gold"]) for r in rows]
    kinds = [second_opinion_kind(r["candidate"], r["gold"], v) for r, v in zip(rows, own)]
    verdicts = {"r1gym": [v.correct for v in shipped], "r1gym own": [v.correct for v in own],
                "math-verify": [mv(r["gold"], r["candidate"]) for r in rows]}
    return verdicts, kinds, [v.reason for v in shipped]


def second_opinion_table(rows: list[dict], verdicts: dict[str, list[bool | None]], kinds: list[str | None]) -> tuple[list[str], list[list]]:
    """Per kind of pair (and dataset): rows where r1gym's own check said no and the kind applies, how many of
    those plain math-verify calls equal, and of those how many the label says are equal (fixed) or not (a false
    positive the second opinion would add)."""
    from r1gym.plugins.math.pool import SECOND_OPINION_KINDS

    head = ["kind", "dataset", "own 'no' rows", "math-verify equal", "label equal (fixed)", "label different (FP added)"]
    out = []
    for kind in SECOND_OPINION_KINDS:
        for dataset in sorted({r["dataset"] for r in rows}) + ["all"]:
            idx = [i for i, r in enumerate(rows) if kinds[i] == kind and dataset in (r["dataset"], "all")]
            eq = [i for i in idx if verdicts["math-verify"][i] is True]
            if dataset == "all" or idx:
                out.append([kind, dataset, len(idx), len(eq), sum(rows[i]["label"] for i in eq),
                            sum(not rows[i]["label"] for i in eq)])
    return head, out


def table(rows: list[dict], verdicts: dict[str, list[bool | None]], groups: dict[str, list[int]]) -> tuple[list[str], list[list]]:
    head = ["group", "rows", "equal"] + [h for name in verdicts for h in (f"{name} agree", f"{name} FP", f"{name} FN", f"{name} unscorable")]
    out = []
    for name, idx in groups.items():
        sub = [rows[i] for i in idx]
        cells: list = [name, len(idx), sum(r["label"] for r in sub)]
        for checker, vs in verdicts.items():
            rr = rates(sub, [vs[i] for i in idx], label="label")
            cells += [rr["agreement"], rr["fp"], rr["fn"], rr["unscorable"]]
        out.append(cells)
    return head, out


def _short(text: str, n: int = 70) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= n else "…" + text[-n:]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=sorted(str(x) for x in DATA.glob("*.jsonl")), help="row files")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--guard", default=str(ROOT / "bench" / "data" / "math_equivalence.jsonl"),
                   help="hand-written near misses (gold, pred, equivalent) also graded, reported apart ('' for none)")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    info = report.start(None)
    from r1gym.plugins.math.pool import DEFAULT_SECOND_OPINION

    rows = load([Path(x) for x in args.data])
    verdicts, kinds, reasons = grade_all(rows, args.workers, args.timeout)
    guard = load([Path(args.guard)]) if args.guard else []
    for r in guard:  # the hand-written set names its fields differently
        r.update(candidate=r["pred"], label=r["equivalent"], category=f"hand-written/{r['kind']}", tags=[], source={"file": args.guard})
    guard_verdicts, guard_kinds, _ = grade_all(guard, args.workers, args.timeout) if guard else ({}, [], [])

    def group_by(key) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            for k in key(r):
                groups.setdefault(k, []).append(i)
        return groups

    undisputed = [i for i, r in enumerate(rows) if not r.get("disputed")]
    sections = [
        ("all rows", {"all": list(range(len(rows))), "all but the disputed labels": undisputed}),
        ("per dataset", group_by(lambda r: [r["dataset"]])),
        ("per category", group_by(lambda r: [r["category"]])),
        ("per error class of issue 14 (tags; a row may have several, most have none)", group_by(lambda r: r["tags"])),
    ]
    disputed_set = {i for i, r in enumerate(rows) if r.get("disputed")}
    if disputed_set:  # the groups that hold a disputed row, counted without it
        with_disputed: dict[str, list[int]] = {}
        for _, groups in sections[1:]:
            for name, idx in groups.items():
                if disputed_set & set(idx):
                    with_disputed[name] = [i for i in idx if i not in disputed_set]
        sections.append(("groups that hold a disputed label, counted without it", with_disputed))
    fps = [i for i, v in enumerate(verdicts["r1gym"]) if v is True and not rows[i]["label"]]
    worse = [i for i, r in enumerate(rows)
             if (verdicts["r1gym"][i] is True) != r["label"] and (verdicts["math-verify"][i] is True) == r["label"]]
    wrong_head = ["category", "gold", "candidate", "label", "r1gym", "math-verify", "source"]

    def wrong_rows(idx: list[int]) -> list[list]:
        return [[rows[i]["category"], _short(rows[i]["gold"], 40), _short(rows[i]["candidate"]), str(rows[i]["label"]),
                 str(verdicts["r1gym"][i]), str(verdicts["math-verify"][i]),
                 f"{rows[i]['source'].get('path') or rows[i]['source'].get('file')}:{rows[i]['source'].get('line')}"] for i in idx]

    text, md = [], []
    for title, groups in sections:
        head, body = table(rows, verdicts, groups)
        text += [f"\n{title}:", report.text_table(head, body)]
        md += [f"{title[0].upper() + title[1:]}:\n", report.markdown_table(head, body), ""]
    for title, idx in ((f"r1gym false positives: {len(fps)}", fps),
                       (f"rows r1gym gets wrong and math-verify right: {len(worse)}", worse)):
        text += [f"\n{title}"] + ([report.text_table(wrong_head, wrong_rows(idx))] if idx else [])
        md += [f"{title[0].upper() + title[1:]}\n"] + ([report.markdown_table(wrong_head, wrong_rows(idx)), ""] if idx else [""])
    fallback = collections.Counter(reason for reason, v in zip(reasons, verdicts["r1gym"]) if v is True
                                   and reason in ("identical", "math-verify second opinion"))
    disputed = [i for i, r in enumerate(rows) if r.get("disputed")]
    so_head, so_body = second_opinion_table(rows, verdicts, kinds)
    so_title = ("second opinion of plain math-verify on r1gym's own 'no', by kind of pair (r1gym as shipped asks "
                f"it on: {', '.join(DEFAULT_SECOND_OPINION)}); verdicts with the fallback flag: "
                + (", ".join(f"{n} by {k!r}" for k, n in sorted(fallback.items())) or "none"))
    text += [f"\n{so_title}:", report.text_table(so_head, so_body)]
    md += [f"{so_title[0].upper() + so_title[1:]}:\n", report.markdown_table(so_head, so_body), ""]
    if guard:
        g_head, g_body = second_opinion_table(guard, guard_verdicts, guard_kinds)
        g_rows = table(guard, guard_verdicts, {"all": list(range(len(guard)))})
        g_title = (f"the same on the hand-written near misses ({Path(args.guard).relative_to(ROOT)}, {len(guard)} rows, "
                   "labelled by r1gym's authors: weaker evidence, a stricter guard against false positives)")
        text += [f"\n{g_title}:", report.text_table(*g_rows), report.text_table(g_head, g_body)]
        md += [f"{g_title[0].upper() + g_title[1:]}:\n", report.markdown_table(*g_rows), "", report.markdown_table(g_head, g_body), ""]
    if disputed:
        d_head = ["gold", "candidate", "label", "disputed because", "r1gym", "math-verify", "source"]
        d_body = [[_short(rows[i]["gold"], 40), _short(rows[i]["candidate"]), str(rows[i]["label"]), rows[i]["disputed"],
                   str(verdicts["r1gym"][i]), str(verdicts["math-verify"][i]),
                   f"{rows[i]['source'].get('path') or rows[i]['source'].get('file')}:{rows[i]['source'].get('line')}"] for i in disputed]
        text += [f"\nrows whose upstream label is disputed (counted in every table but the 'all but' row): {len(disputed)}",
                 report.text_table(d_head, d_body)]
        md += [f"Rows whose upstream label is disputed (counted in every table but the 'all but' row): {len(disputed)}\n",
               report.markdown_table(d_head, d_body), ""]
    print("\n".join(text))
    if args.write_md:
        files = ", ".join(f"`{Path(x).relative_to(ROOT)}`" for x in args.data)
        body = (f"- rows: {len(rows)} from {files} (built by `bench/math_eval_build.py`; labels by math-verify's "
                "authors, MATH-500's authors and OpenAI's GSM8K `is_correct`, see its docstring). `r1gym` = "
                "`MathChecker().grade(candidate, gold)`; `math-verify` = `verify(parse(gold), parse(candidate))`, "
                "defaults. FP = labelled different, called equal; FN = labelled equal, not called equal; "
                "unscorable counts as a disagreement.\n\n" + "\n".join(md))
        path = report.append_section("math_eval", body, info, path=args.md_path)
        print(f"\nappended to {path}")


if __name__ == "__main__":
    main()
