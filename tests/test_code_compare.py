"""Judging stdin/stdout outputs (r1gym.plugins.code.compare) against material the project did not write:
Codeforces statements' examples, testlib's checkers (wcmp, lcmp, fcmp, rcmp/doubleCompare) and its exit-code
convention for special judges (0 OK, 1 WA, 2 PE, 3 FAIL; input, output, answer in that order)."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from r1gym.core.rewards import RewardComponent, RewardSet, Unscorable
from r1gym.plugins.code.compare import Comparison, compare_outputs, parse_comparison
from r1gym.plugins.code.sandbox import isolation_tool

needs_bwrap = pytest.mark.skipif(isolation_tool() != "bwrap",
                                 reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")

# Codeforces 1342C "Yet Another Counting Problem", the statement's example: the answers of a test case on one
# line, space-separated (with a trailing space, as the jury printed it)
CF1342C_INPUT = "2\n4 6 5\n1 1\n1 3\n1 5\n1 7\n1 9\n7 10 2\n7 8\n100 200\n"
CF1342C_OUTPUT = "0 0 0 2 4 \n0 91 \n"
ONE_PER_LINE = "0\n0\n0\n2\n4\n0\n91\n"


def test_tokens_is_codeforces_default_one_number_per_line_against_a_line():
    assert compare_outputs(ONE_PER_LINE, CF1342C_OUTPUT).ok  # the default is tokens
    assert compare_outputs(ONE_PER_LINE, CF1342C_OUTPUT, "tokens").ok
    assert not compare_outputs(ONE_PER_LINE, CF1342C_OUTPUT, "lines").ok
    assert not compare_outputs(ONE_PER_LINE, CF1342C_OUTPUT, "exact").ok
    # the jury's own output, printed the way most programs print it (no trailing spaces)
    assert compare_outputs("0 0 0 2 4\n0 91\n", CF1342C_OUTPUT, "lines").ok
    assert not compare_outputs("0 0 0 2 4\n0 91\n", CF1342C_OUTPUT, "exact").ok  # fcmp keeps trailing spaces


def test_tokens_follows_testlib_wcmp():
    """wcmp: the same words in order; whitespace is space, tab, CR, LF (testlib's blanks); an extra or a
    missing word is a wrong answer ("Participant output contains extra tokens" / "Unexpected EOF")."""
    assert compare_outputs("\t1\r\n2   3\n\n\n", "1 2 3").ok
    assert compare_outputs("", "").ok and compare_outputs("\n \n", "").ok
    extra = compare_outputs("1 2 3 4", "1 2 3")
    early = compare_outputs("1 2", "1 2 3")
    differ = compare_outputs("1 5 3", "1 2 3")
    assert not extra.ok and "extra" in extra.message
    assert not early.ok and "ends early" in early.message
    assert not differ.ok and "token 2" in differ.message and "'2'" in differ.message and "'5'" in differ.message
    assert not compare_outputs("1\xa02", "1 2").ok  # a no-break space is not a blank for testlib (str.split would say it is)
    assert not compare_outputs("YES", "Yes").ok  # letter case counts
    assert not compare_outputs("1.0", "1").ok  # numbers are words too, unless a float tolerance is asked for


def test_lines_keeps_todays_line_by_line_behaviour():
    from r1gym.plugins.code.rewards import outputs_match

    assert compare_outputs("a  b \n c\n\n\n", "a b\nc", "lines").ok  # spacing within a line and trailing blank lines
    assert not compare_outputs("a\nb", "a b", "lines").ok
    assert not compare_outputs("\na b", "a b", "lines").ok  # a leading blank line is a line
    # outputs_match keeps its old meaning (lines, numbers within 1e-6)
    assert outputs_match("1.0000001 \n\n", "1") and not outputs_match("1.1", "1") and not outputs_match("a b", "a")


def test_exact_follows_testlib_fcmp():
    assert compare_outputs("a b\r\nc\n", "a b\nc", "exact").ok  # CRLF is LF; the last line break is optional
    assert not compare_outputs("a b \nc", "a b\nc", "exact").ok
    assert not compare_outputs("a  b\nc", "a b\nc", "exact").ok
    assert not compare_outputs("a b\nc\n\n", "a b\nc", "exact").ok  # a trailing blank line is a line


def test_float_tolerance_follows_testlib_doublecompare():
    """rcmp6's EPS = 1e-6 is both bounds of testlib's doubleCompare: |found - expected| <= EPS, or found within
    EPS * |expected| of expected (relative to the expected value)."""
    rcmp6 = "tokens float_abs=1e-6 float_rel=1e-6"
    assert compare_outputs("1000001000", "1e9", rcmp6).ok  # relative: 1e9 * 1e-6 = 1000
    assert not compare_outputs("1000001000", "1e9", "tokens float_abs=1e-6").ok
    assert not compare_outputs("1000001001", "1e9", rcmp6).ok
    assert compare_outputs("0.0000009", "0", rcmp6).ok  # absolute, where relative cannot help
    assert not compare_outputs("0.0000011", "0", rcmp6).ok
    # relative to the expected value, not symmetric: found 2 for expected 1 is 100% off; for rel=0.6 it fails,
    # while 1 for expected 2 is 50% off and passes
    assert not compare_outputs("2", "1", "tokens float_rel=0.6").ok
    assert compare_outputs("1", "2", "tokens float_rel=0.6").ok
    # Codeforces 1045D (our CodeContests sample) accepts an error of 1e-4: its first expected answer is 1.68040
    assert compare_outputs("1.680395\n", "1.68040", "tokens float_abs=1e-4 float_rel=1e-4").ok
    assert not compare_outputs("1.6807\n", "1.68040", "tokens float_abs=1e-4 float_rel=1e-4").ok
    # words stay words, and only decimal numbers count as numbers (Python's float() would read these)
    assert compare_outputs("YES 0.5000001", "YES 0.5", rcmp6).ok and not compare_outputs("NO 0.5", "YES 0.5", rcmp6).ok
    for not_a_number in ("nan", "inf", "1_000", "0x10"):
        assert not compare_outputs(not_a_number, "1000", "tokens float_abs=1e9").ok, not_a_number
    assert compare_outputs("1.0000001 2\n", "1 2.0", {"mode": "lines", "float_abs": 1e-6}).ok


@pytest.mark.parametrize("spec, expected", [
    (None, Comparison()),
    ("tokens", Comparison("tokens")),
    ("lines", Comparison("lines")),
    ("tokens float_abs=1e-6 float_rel=1e-9", Comparison("tokens", 1e-6, 1e-9)),
    ({"mode": "tokens", "float_abs": 1e-6}, Comparison("tokens", 1e-6)),
    ({"mode": "tokens", "float_rel": "1e-6"}, Comparison("tokens", float_rel=1e-6)),  # as PyYAML reads 1e-6
    ({"mode": "checker", "checker": "import sys"}, Comparison("checker", checker="import sys")),
])
def test_comparison_forms(spec, expected):
    assert parse_comparison(spec) == expected


@pytest.mark.parametrize("spec, says", [
    ("token", "tokens, lines, exact, checker"),
    ("", "tokens, lines, exact, checker"),
    ("tokens float=1e-6", "float_abs=X and float_rel=X"),
    ("tokens float_abs=tiny", "must be a number"),
    ({"mode": "tokens", "float_abs": "tiny"}, "must be a number"),
    ({"mode": "tokens", "float_abs": -1}, ">= 0"),
    ({"mode": "exact", "float_abs": 1e-6}, "tokens and lines"),
    ({"mode": "tokens", "tolerance": 1e-6}, "valid keys: mode, float_abs, float_rel, checker, checker_language"),
    ({"mode": "checker"}, "needs 'checker'"),
    ({"mode": "checker", "checker": "x", "checker_language": "cpp"}, "python"),
    ({"mode": "lines", "checker": "x"}, "needs mode checker"),
    (0.5, "a mode name"),
])
def test_bad_comparisons_say_what_is_valid(spec, says):
    with pytest.raises(ValueError, match="comparison|checker") as err:
        parse_comparison(spec)
    assert says in str(err.value)


def test_a_task_files_bad_comparison_stops_the_loader_with_file_and_line(tmp_path):
    from r1gym.plugins.code.data import CodeSource

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": "p", "tests": [{"stdin": "", "stdout": "1"}], "comparison": "float"}) + "\n")
    with pytest.raises(ValueError, match=r"t.jsonl:1: comparison mode must be one of tokens, lines, exact, checker"):
        CodeSource(path)


# -- special judges (in the sandbox) ------------------------------------------------------------------------
def _shipped_references() -> dict[str, dict]:
    text = files("r1gym.plugins.code").joinpath("data/code_contests_references.jsonl").read_text()
    return {r["name"]: r for r in map(json.loads, text.splitlines())}


def _fenced(code: str) -> str:
    return f"```python\n{code}\n```"


# Codeforces 1025B "Weakened Common Divisor", the statement's first example: 2, 3, 5 and 6 are named as
# WCDs of [(12, 15), (25, 18), (10, 24)]; for this input (17 18 / 15 24 / 12 15) 2, 3 and 6 are, 5 is not
CF1025B = {"stdin": "3\n17 18\n15 24\n12 15\n", "stdout": "6\n"}


@needs_bwrap
def test_the_shipped_wcd_checker_accepts_every_valid_answer_and_only_those():
    from r1gym.plugins.code.rewards import code_tests

    checker = {"mode": "checker", "checker": _shipped_references()["1025_B. Weakened Common Divisor"]["checker"]}
    for answer, ok in (("6", 1.0), ("2", 1.0), ("3", 1.0), ("5", 0.0), ("-1", 0.0), ("1", 0.0), ("6 6", 0.0),
                       ("six", 0.0), ("", 0.0)):
        assert code_tests(_fenced(f"print({answer!r})"), tests=[CF1025B], comparison=checker) == ok, answer
    # the stored answer alone would reject the other right answers
    assert code_tests(_fenced("print(2)"), tests=[CF1025B]) == 0.0


CHECKER_EXITS = {
    "ok": "import sys\nsys.exit(0)",
    "wrong answer": "import sys\nsys.exit(1)",
    "presentation error": "import sys\nsys.exit(2)",
    "fail": "import sys\nsys.exit(3)",
    "crash": "raise ZeroDivisionError('the checker has a bug')",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "timeout": "while True:\n    pass",
}


@needs_bwrap
@pytest.mark.parametrize("kind, expected", [("ok", 1.0), ("wrong answer", 0.0), ("presentation error", 0.0),
                                            ("fail", None), ("crash", None), ("segfault", None), ("timeout", None)])
def test_checker_exit_codes(kind, expected):
    """testlib: 0 OK, 1 WA, 2 PE score 1/0/0; FAIL (3), an exception, a segfault or a timeout is the checker's failure:
    the completion cannot be scored (masked and counted), never 0."""
    from r1gym.plugins.code.rewards import code_tests

    component = RewardComponent("code_tests", code_tests, params={"time_limit": 1.0})
    fields = {"tests": [{"stdin": "1\n", "stdout": "1\n"}], "comparison": {"mode": "checker", "checker": CHECKER_EXITS[kind]}}
    outcome = RewardSet([component]).score(_fenced("print(input())"), fields)
    assert outcome.components["code_tests"] == expected
    if expected is None:
        assert "test 0: the checker failed" in outcome.unscorable["code_tests"]


@needs_bwrap
def test_checker_gets_input_output_answer_in_testlib_order():
    from r1gym.plugins.code.rewards import run_tests

    checker = "\n".join([
        "import os, sys",
        "inp, out, ans = (open(f).read() for f in sys.argv[1:4])",
        "ok = sys.argv[1:4] == ['input.txt', 'output.txt', 'answer.txt'] and inp == 'question\\n'",
        "ok = ok and out == 'the program says 41\\n' and ans == 'jury says 42\\n'",
        "print('ok' if ok else repr((sys.argv, inp, out, ans)), file=sys.stderr)",
        "sys.exit(0 if ok else 1)",
    ])
    runs = run_tests("input()\nprint('the program says 41')", [{"stdin": "question\n", "stdout": "jury says 42\n"}],
                     comparison={"mode": "checker", "checker": checker})
    assert runs[0].passed, runs[0].message
    assert runs[0].message == "checker: ok: ok"


@needs_bwrap
def test_the_candidate_never_sees_the_checker_or_the_answer():
    """The program runs alone (only main.py beside it); the checker, the input, the expected answer and the
    program's output meet in a separate run."""
    from r1gym.plugins.code.rewards import code_tests

    peek = "import os\nprint(sorted(os.listdir('.')))\nprint(open('answer.txt').read())"
    checker = {"mode": "checker", "checker": "import sys\nsys.exit(0 if 'answer' in open('output.txt').read() else 1)"}
    assert code_tests(_fenced(peek), tests=[{"stdin": "", "stdout": "secret\n"}], comparison=checker) == 0.0
    from r1gym.plugins.code.rewards import run_tests

    runs = run_tests("import os\nprint(sorted(os.listdir('.')))", [{"stdin": "", "stdout": "x"}])
    assert runs[0].output.strip() == "['main.py']"


@needs_bwrap
def test_a_program_cannot_make_a_wrong_answer_unscorable_through_the_checkers_message():
    """The verdict comes from the checker's exit code: a wrong output that the checker quotes back (here with
    "MemoryError" in it, which would read as an out-of-memory status) still scores 0, not "cannot be scored"."""
    from r1gym.plugins.code.rewards import code_tests

    quoting = "import sys\nprint('expected 42, found', open('output.txt').read(), file=sys.stderr)\nsys.exit(1)"
    score = code_tests(_fenced("print('MemoryError Traceback')"), tests=[{"stdin": "", "stdout": "42"}],
                       comparison={"mode": "checker", "checker": quoting})
    assert score == 0.0


@needs_bwrap
def test_the_reward_default_comparison_applies_unless_the_task_has_its_own():
    from r1gym.plugins.code.rewards import code_tests

    per_line = _fenced("for x in range(3):\n    print(x)")
    tests = [{"stdin": "", "stdout": "0 1 2\n"}]
    assert code_tests(per_line, tests=tests) == 1.0
    assert code_tests(per_line, tests=tests, default_comparison="lines") == 0.0
    assert code_tests(per_line, tests=tests, default_comparison="lines", comparison="tokens") == 1.0
    with pytest.raises(ValueError, match="tokens, lines, exact, checker"):
        code_tests(per_line, tests=tests, default_comparison="token")


def test_code_contests_records_carry_a_checker_and_references_merge_by_name(tmp_path):
    from r1gym.plugins.code.data import CodeSource

    data = tmp_path / "cc.jsonl"
    record = {"name": "any-divisor", "description": "Print any divisor > 1 of n.",
              "public_tests": {"input": ["6\n"], "output": ["2\n"]}, "checker": "import sys\nsys.exit(0)"}
    data.write_text(json.dumps(record) + "\n" + json.dumps({**record, "name": "other", "checker": None}) + "\n")
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"name": "other", "solution": "print(2)", "comparison": "lines", "note": "why"}) + "\n")
    plain, merged = CodeSource(data), CodeSource(data, references=refs)
    assert plain[0].fields["comparison"] == {"mode": "checker", "checker": "import sys\nsys.exit(0)"}
    assert plain[1].fields["answer"] == "" and "comparison" not in plain[1].fields
    assert merged[1].fields["answer"] == "print(2)" and merged[1].fields["comparison"] == "lines"
    assert merged[1].meta["name"] == "other"
    refs.write_text(json.dumps({"name": "other"}) + "\n")
    with pytest.raises(ValueError, match=r"refs.jsonl:1: a reference needs 'name' and 'solution'"):
        CodeSource(data, references=refs)


def test_shipped_references_name_real_problems_and_valid_comparisons():
    from r1gym.plugins.code.data import read_references

    refs = read_references("pkg://r1gym.plugins.code/data/code_contests_references.jsonl")
    assert len(refs) >= 18
    checkers = [name for name, r in refs.items() if isinstance(r.get("comparison"), dict)]
    assert "1025_B. Weakened Common Divisor" in checkers
    assert refs["1045_D. Interstellar battle"]["comparison"] == "tokens float_abs=1e-4 float_rel=1e-4"


def test_unscorable_is_what_a_failing_checker_raises():
    from r1gym.plugins.code.compare import checker_verdict
    from r1gym.core.contracts import RunResult

    assert checker_verdict(RunResult("ok", 0, "", "fine\n", 0.1, 0.1)).ok
    assert not checker_verdict(RunResult("runtime_error", 1, "", "wrong\n", 0.1, 0.1, "exit code 1")).ok
    assert not checker_verdict(RunResult("memory_limit", 2, "", "MemoryError in output\n", 0.1, 0.1)).ok
    for result in (RunResult("runtime_error", 3, "", "FAIL jury\n", 0.1, 0.1, "exit code 3"),
                   RunResult("timeout", None, "", "", 1.0, 1.0, "wall-clock limit"),
                   RunResult("sandbox_error", None, "", "", 0.0, 0.0, "bwrap: no"),
                   RunResult("output_limit", None, "", "", 0.1, 0.1, "too much")):
        with pytest.raises(Unscorable, match="the checker failed"):
            checker_verdict(result)


ANY_DIVISOR_CHECKER = """\
import sys
n = int(open(sys.argv[1]).read())
found = open(sys.argv[2]).read().split()
if len(found) != 1 or not found[0].isdigit():
    print("expected one number", file=sys.stderr)
    sys.exit(2)
d = int(found[0])
print(f"{d} divides {n}" if d > 1 and n % d == 0 else f"{d} is not a divisor > 1 of {n}", file=sys.stderr)
sys.exit(0 if d > 1 and n % d == 0 else 1)
"""


@needs_bwrap
def test_code_exec_judges_the_public_tests_with_the_tasks_checker_and_shows_its_message(tmp_path):
    from r1gym.envs import make

    path = tmp_path / "divisor.jsonl"
    path.write_text(json.dumps({"id": "divisor", "prompt": "Print any divisor d > 1 of n.",
                                "tests": [{"stdin": "6\n", "stdout": "2\n"}, {"stdin": "35\n", "stdout": "5\n"}],
                                "comparison": {"mode": "checker", "checker": ANY_DIVISOR_CHECKER}}) + "\n")
    env = make("r1gym/CodeExec-v0", source={"name": "code", "path": str(path)}).unwrapped
    env.reset(options={"index": 0})
    obs, _, terminated, _, _ = env.step(_fenced("print(4)"))
    assert not terminated and "checker: wrong answer: 4 is not a divisor > 1 of 6" in obs[-1]["content"]
    largest = "n = int(input())\nprint(max(d for d in range(2, n + 1) if n % d == 0))"
    _, _, terminated, _, info = env.step(_fenced(largest))  # 6 and 35 themselves, not the stored 2 and 5
    assert terminated and info["rewards"]["code_tests"] == 1.0


@needs_bwrap
def test_code_exec_public_tests_use_the_rewards_default_comparison():
    from r1gym.envs import make

    rewards = {"code_tests": {"weight": 1.0, "default_comparison": "lines"}}
    env = make("r1gym/CodeExec-v0", rewards=rewards).unwrapped
    index = next(i for i in range(len(env.source)) if env.source[i].id == "reverse-words")
    env.reset(options={"index": index})
    one_a_line = _fenced("print(*input().split()[::-1], sep='\\n')")  # the right words, one a line
    obs, _, terminated, _, _ = env.step(one_a_line)
    assert not terminated
    assert "Result: wrong output (output ends early on line 1: 1 token found, 3 expected)." in obs[-1]["content"]
    env = make("r1gym/CodeExec-v0").unwrapped  # the shipped default, tokens, accepts it
    env.reset(options={"index": index})
    _, _, terminated, _, info = env.step(one_a_line)
    assert terminated and info["rewards"]["code_tests"] == 1.0


def test_code_contests_reference_is_deepminds_first_python3_solution(tmp_path):
    from r1gym.plugins.code.data import CodeSource

    record = {"name": "double", "description": "Print 2n.", "public_tests": {"input": ["2\n"], "output": ["4\n"]},
              "solutions": {"language": [2, 1, 3, 3], "solution": ["int main(){}", "print 2*input()",
                                                                   "print(2 * int(input()))", "print(int(input()) * 2)"]}}
    path = tmp_path / "cc.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "name": "cpp-only", "solutions": {
        "language": [2], "solution": ["int main(){}"]}}) + "\n")
    source = CodeSource(path)
    assert source[0].fields["answer"] == "print(2 * int(input()))"
    assert source[1].fields["answer"] == ""
