"""Build bench/data/math_eval/*.jsonl: a labelled set for the math checker whose labels r1gym did not write.

Every row is ``{"gold", "candidate", "label", "category", "tags", "source"}``: ``gold`` is the reference answer
as the upstream data writes it, ``candidate`` a completion or answer as written upstream, ``label`` whether
upstream says they agree, ``source`` where exactly the row came from (repository, path, commit and line, or
dataset file and id). Nothing in a row is edited; rows are only selected.

* ``math_verify.jsonl``: every literal ``(gold, pred, expected)`` case of ``@pytest.mark.parametrize`` in
  huggingface/Math-Verify's ``tests/`` (labels by math-verify's authors; many ``pred``s are real model outputs:
  ``test_open_thoughts``, ``test_numina_cases``, ``test_yujianll``, ``test_boxed``, the MATH solutions in
  ``test_all``). Category: ``math_verify/<test function>``. Left out: ``test_set_rel_assymetry`` (its labels
  depend on a math-verify option, ``allow_set_relation_comp``), cases labelled for ``strict=False``, and
  cases that are not plain literals (f-strings computing a float).
* ``math500.jsonl``: each MATH-500 problem's ``answer`` against the last ``\\boxed{...}`` of its reference
  solution (``../shared/data/math500.jsonl``, Lightman et al.'s 500-problem test split of Hendrycks' MATH;
  label true: the dataset's authors give both). Category: ``math500/<subject>``.
* ``gsm8k_model_outputs.jsonl``: OpenAI's GPT-3 solutions to GSM8K test problems
  (openai/grade-school-math, ``example_model_solutions.jsonl``: four models per problem, with OpenAI's
  ``is_correct``), against the problem's ``#### n`` answer from the same repository's ``test.jsonl``; the first
  ``--gsm8k-problems`` problems (default 60, 240 rows). Category: ``gsm8k/<model>``.

A sample (:func:`sample`) is written to ``tests/data/math_eval_sample.jsonl`` for the unit tests, without the
rows whose upstream label r1gym disputes (:data:`DISPUTED`).

``tags`` marks rows that fall into the error classes issue 14 names, found by the patterns in :data:`TAGS`
(applied mechanically, on the row as it is): ``bare_latex``, ``nested_boxed``, ``latex_shorthand``,
``repeating_decimal``, ``inequality_interval``, ``letter_case``, ``radicals``.

    python bench/math_eval_build.py --math-verify-git /work/.mirror/huggingface+Math-Verify/repo \\
        --gsm8k-git /work/.mirror/openai+grade-school-math/repo
(the git directories are what ``fetch github:huggingface/Math-Verify`` and ``fetch github:openai/grade-school-math``
give; any clone works: ``--math-verify-git path/to/Math-Verify/.git``).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "data" / "math_eval"
MATH500 = ROOT.parent / "shared" / "data" / "math500.jsonl"
EXCLUDED_TESTS = {"test_set_rel_assymetry"}
#: a case labelled for another value of one of these math-verify options is left out
MATH_VERIFY_DEFAULTS = {"strict": True}


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True).stdout


# -- tags: the error classes of issue 14, as patterns -------------------------------------------------------
def _no_marker(text: str) -> bool:
    return not re.search(r"\\boxed|\\fbox|<answer>|answer|####", text, re.IGNORECASE)


def _case_only(gold: str, cand: str) -> bool:
    g, c = (re.sub(r"[\s$]", "", s) for s in (gold, cand))
    return g != c and g.lower() == c.lower() and any(ch.isalpha() for ch in g)


_INEQ = re.compile(r"<|>|\\le|\\ge|\\leq|\\geq")
_INTERVAL = re.compile(r"[\[(][^\[\]()]*,[^\[\]()]*[\])]|\\cup")
TAGS = {
    "bare_latex": lambda g, c: _no_marker(c) and "\\" in c and len(c) < 200,
    "nested_boxed": lambda g, c: bool(re.search(r"\\boxed\{[^{}]*(\{[^{}]*\}[^{}]*)*\\boxed", c)),
    "latex_shorthand": lambda g, c: bool(re.search(r"\\[dt]frac|\\frac\s*\d|\\sqrt\s*\d", g + c)),
    "repeating_decimal": lambda g, c: bool(re.search(r"\\overline\{\d+\}|\\dot\{\d\}|\d\.\d*\(\d+\)|\d\.\d+\.\.\.", g + c)),
    "inequality_interval": lambda g, c: bool((_INEQ.search(g) and _INTERVAL.search(c)) or (_INEQ.search(c) and _INTERVAL.search(g))),
    "letter_case": _case_only,
    "radicals": lambda g, c: "\\sqrt" in g and "\\sqrt" in c,
}


def tags(gold: str, cand: str) -> list[str]:
    return [name for name, rule in TAGS.items() if rule(gold, cand)]


def row(gold: str, cand: str, label: bool, category: str, source: dict) -> dict:
    return {"gold": gold, "candidate": cand, "label": bool(label), "category": category, "tags": tags(gold, cand), "source": source}


# -- sources ----------------------------------------------------------------------------------------------------
def math_verify_rows(git_dir: str) -> Iterator[dict]:
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    files = [p for p in _git(git_dir, "ls-tree", "-r", "--name-only", "HEAD", "tests/").split() if p.endswith(".py")]
    for path in sorted(files):
        tree = ast.parse(_git(git_dir, "show", f"HEAD:{path}"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef) or fn.name in EXCLUDED_TESTS:
                continue
            for dec in fn.decorator_list:
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize" and len(dec.args) >= 2):
                    continue
                names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
                if names[:2] != ["gold", "pred"] or not isinstance(dec.args[1], ast.List):
                    continue
                for case in dec.args[1].elts:
                    try:
                        values = ast.literal_eval(case)
                    except ValueError:  # an f-string or a call: not a plain literal
                        continue
                    case_args = dict(zip(names, values))
                    if any(case_args.get(k, v) != v for k, v in MATH_VERIFY_DEFAULTS.items()):
                        continue  # labelled for a non-default math-verify option
                    gold, pred = case_args["gold"], case_args["pred"]
                    expected = case_args.get("expected", case_args.get("result"))
                    yield row(gold, pred, bool(expected), f"math_verify/{fn.name}",
                              {"repo": "huggingface/Math-Verify", "path": path, "commit": commit, "line": case.lineno})


def math500_rows(path: Path) -> Iterator[dict]:
    import sys

    sys.path.insert(0, str(ROOT))
    from r1gym.plugins.math.extract import find_boxed

    for i, line in enumerate(path.read_text().splitlines()):
        r = json.loads(line)
        boxes = find_boxed(r["solution"])
        if not boxes:
            continue
        start, end, _ = boxes[-1]
        yield row(r["answer"], r["solution"][start:end], True, f"math500/{r.get('subject', 'unknown')}",
                  {"dataset": "MATH-500 (HuggingFaceH4/MATH-500, PRM800K test split)", "file": "math500.jsonl",
                   "line": i + 1, "unique_id": r.get("unique_id")})


def gsm8k_rows(git_dir: str, problems: int) -> Iterator[dict]:
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    test = [json.loads(x) for x in _git(git_dir, "show", "HEAD:grade_school_math/data/test.jsonl").splitlines()]
    sols = [json.loads(x) for x in _git(git_dir, "show", "HEAD:grade_school_math/data/example_model_solutions.jsonl").splitlines()]
    by_question = {t["question"]: (i, t["answer"]) for i, t in enumerate(test)}
    for n, s in enumerate(sols[:problems]):
        index, answer = by_question[s["question"]]
        gold = answer.rsplit("####", 1)[1].strip()
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            yield row(gold, s[model]["solution"], s[model]["is_correct"], f"gsm8k/{model}",
                      {"repo": "openai/grade-school-math", "commit": commit,
                       "path": "grade_school_math/data/example_model_solutions.jsonl", "line": n + 1, "model": model,
                       "gold_path": "grade_school_math/data/test.jsonl", "gold_line": index + 1})


#: upstream labels that r1gym disputes: the row keeps its upstream label and gains a ``disputed`` field with this
#: reason (bench/math_eval.py reports the numbers with and without them); left out of the shipped test sample
DISPUTED = {
    ("tests/test_all.py", 132): "inline math over several lines ($ \\n 9 \\n $) labelled no answer; TeX reads a line "
                                "break in math as a space, so the completion states 9",
    ("tests/test_all.py", 133): "the same with \\( \\n 9 \\n \\)",
    ("tests/test_yujianll.py", 28): "1 - 1/e labelled equal to 1 + 1/e: they differ by 2/e (math-verify reads both as 1)",
}


def mark_disputed(rows: list[dict]) -> list[dict]:
    """``rows`` with a ``disputed`` reason on each row :data:`DISPUTED` names (labels unchanged)."""
    for r in rows:
        reason = DISPUTED.get((r["source"].get("path"), r["source"].get("line")))
        if reason and r["source"].get("repo") == "huggingface/Math-Verify":
            r["disputed"] = reason
    return rows
SAMPLE = ROOT / "tests" / "data" / "math_eval_sample.jsonl"


def sample(sets: dict[str, list[dict]]) -> list[dict]:
    """The unit test's share: every math-verify case labelled different (the false positives that matter) and
    one in three labelled equal, every tenth MATH-500 pair, the GSM8K outputs of the first 12 problems."""
    out = []
    for i, r in enumerate(sets["math_verify"]):
        if r.get("disputed"):
            continue
        if not r["label"] or i % 3 == 0:
            out.append(r)
    out += sets["math500"][::10]
    out += sets["gsm8k_model_outputs"][: 12 * 4]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--math-verify-git", required=True, help="git directory of huggingface/Math-Verify")
    p.add_argument("--gsm8k-git", required=True, help="git directory of openai/grade-school-math")
    p.add_argument("--math500", default=str(MATH500), help="MATH-500 JSONL (default: %(default)s)")
    p.add_argument("--gsm8k-problems", type=int, default=60)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--sample", default=str(SAMPLE), help="the unit test's sample (default: %(default)s)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {
        "math_verify": mark_disputed(list(math_verify_rows(args.math_verify_git))),
        "math500": list(math500_rows(Path(args.math500))),
        "gsm8k_model_outputs": list(gsm8k_rows(args.gsm8k_git, args.gsm8k_problems)),
    }
    outputs = {out / f"{name}.jsonl": rows for name, rows in sets.items()}
    outputs[Path(args.sample)] = sample(sets)
    for path, rows in outputs.items():
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"{path.relative_to(ROOT)}: {len(rows)} rows, {sum(r['label'] for r in rows)} labelled equal, "
              f"{path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
