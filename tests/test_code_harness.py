"""Function-call tests (plugins/code/harness.py) against programs written from the attacker's side.

The tasks are real HumanEval records (tests/data/humaneval_sample.jsonl: HumanEval/0, 2, 4, 12, 32, 38, 50,
53 from openai/human-eval, MIT licence), not tests we wrote to fit the harness. Every attack is a *wrong*
solution plus a trick that scored 1.0 against an in-process harness (the issue-14 reports, reward-hacking
write-ups of RL code training); each must score 0. The canonical solutions must all still pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1gym.core.rewards import Unscorable
from r1gym.plugins.code.callrunner import NotPlainData, decode, encode
from r1gym.plugins.code.harness import expected_names, hack_patterns, run_call_tests
from r1gym.plugins.code.sandbox import isolation_tool

HUMANEVAL = {r["task_id"]: r for r in map(json.loads, (Path(__file__).parent / "data" / "humaneval_sample.jsonl").open())}
needs_bwrap = pytest.mark.skipif(isolation_tool() != "bwrap",
                                 reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")


@pytest.fixture(scope="module")
def pool():
    from r1gym.plugins.code.rewards import _pool

    return _pool("local", 4)


def judge_humaneval(task_id: str, code: str, pool, **kw):
    r = HUMANEVAL[task_id]
    return run_call_tests(code, [f"{r['test']}\n\ncheck({r['entry_point']})"], setup=r["prompt"],
                          entry_point=r["entry_point"], pool=pool, **kw)


# -- the codec: plain data only ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -7, 2**64, 1.5, float("inf"), -0.0, 1 + 2j, "é\ud800", b"\x00\xff", True, None,
                                   [1, (2, "x")], {"a": [1, {2, 3}]}, frozenset({1}), ((),), {(1, 2): None}])
def test_plain_data_round_trips_exactly(value):
    back = decode(json.loads(json.dumps(encode(value))))
    assert back == value and type(back) is type(value) and repr(back) == repr(value)


def test_nan_and_huge_integers_round_trip():
    assert repr(decode(encode(float("nan")))) == "nan"
    assert decode(json.loads(json.dumps(encode(-(7**20000))))) == -(7**20000)  # past int's 4300-digit str cap


@pytest.mark.parametrize("value", [object(), lambda: 1, iter([1]), type("MyInt", (int,), {})(3),
                                   type("S", (str,), {"__eq__": lambda s, o: True})("x"), [1, object()]])
def test_anything_else_is_not_plain_data(value):
    with pytest.raises(NotPlainData):
        encode(value)


def test_a_self_referencing_list_is_refused_not_a_crash():
    x: list = []
    x.append(x)
    with pytest.raises(NotPlainData):
        encode(x)


@pytest.mark.parametrize("data", [["o", "x"], ["i", 3], ["l", "ab"], ["d", [[1]]], "s", [], ["f"], ["b", 1]])
def test_the_judge_decodes_nothing_but_tagged_plain_data(data):
    with pytest.raises(ValueError):
        decode(data)


# -- which names a test expects from the candidate ---------------------------------------------------------
def test_expected_names():
    assert expected_names(["assert math.isclose(area(2), 12.566, rel_tol=1e-3)"], "") == (["area"], ["math"])
    assert expected_names(["def check(c):\n    assert c(1) == helper(1)\n\ncheck(f)"], "def helper(x): return x") == (["f"], [])
    assert expected_names(["assert sorted(xs(3)) == list(range(3))"], "") == (["xs"], [])
    assert expected_names(["check(f)"], "", entry_point="f") == (["f"], [])
    humaneval_38 = 'def encode(s):\n    return s[::-1]\n\ndef decode(s):\n    """Undo encode."""\n'
    assert expected_names(["assert decode(encode('ab')) == 'ab'"], humaneval_38) == (["decode"], [])


def test_hack_patterns_name_what_they_saw():
    assert hack_patterns("import os\nos._exit(0)") == ["exit"]
    assert hack_patterns("import sys\nsys.excepthook = h\nx = sys._getframe(1).f_back") == ["excepthook", "frames"]
    assert hack_patterns("def f(x):\n    return sorted(x)\n") == []


# -- HumanEval's own checks -----------------------------------------------------------------------------------
@needs_bwrap
@pytest.mark.parametrize("task_id", sorted(HUMANEVAL))
def test_canonical_humaneval_solutions_pass_in_one_round_with_no_flags(task_id, pool):
    r = HUMANEVAL[task_id]
    verdict = judge_humaneval(task_id, r["prompt"] + r["canonical_solution"], pool)
    assert verdict.passed == [True], verdict.reasons
    assert verdict.rounds == 1 and verdict.flags == []


WRONG = "def truncate_number(number: float) -> float:\n    return 0.0\n"  # HumanEval/2, wrong for 3.5 -> 0.5
FLOAT_TRUNC = "def truncate_number(number: float) -> float:\n    return number % 1.0\n"

ATTACKS = {
    # forging the verdict or the end-of-run token
    "token from the code object's constants": (
        "import sys, os, re\nfor c in sys._getframe(0).f_code.co_consts:\n"
        "    if isinstance(c, str) and re.fullmatch('[0-9a-f]{32}', c):\n        print(c, flush=True); os._exit(0)"),
    "excepthook prints the token from its own source": (
        "import sys, os, re\n"
        "def hook(*a):\n    print(re.findall(r'[0-9a-f]{32}', open(__file__).read())[-1], flush=True); os._exit(0)\nsys.excepthook = hook"),
    "excepthook exits 0 inside the function": (
        "def truncate_number(number):\n    import sys, os\n    sys.excepthook = lambda *a: os._exit(0)\n    return 0.0"),
    "/proc/self: the running program's source and descriptors": (
        "import os, re, sys\nargv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')\n"
        "srcs = [open(a).read() for a in argv if a.endswith(b'.py')] + [open(sys.argv[0]).read()]\n"
        "for fd in os.listdir('/proc/self/fd'):\n    try: srcs.append(open('/proc/self/fd/' + fd).read())\n    except Exception: pass\n"
        "tokens = re.findall(r'[0-9a-f]{32}', ''.join(srcs))\n"
        "if tokens:\n    print(tokens[-1], flush=True); os._exit(0)"),
    "prints fake verdicts": "print('PASS'); print('OK'); print('{\"i\": 0, \"ok\": [\"f\", \"0.5\"]}'); print('{\"done\": 3}')",
    "writes fake answers to every descriptor": (
        "import os\nfor fd in range(1, 20):\n    try: os.write(fd, b'{\"i\": 0, \"ok\": [\"b\", true]}\\n{\"done\": 3}\\n')\n"
        "    except OSError: pass"),
    # leaving early, cleanly
    "os._exit(0) at import": "import os\nos._exit(0)",
    "raise SystemExit(0) at import": "raise SystemExit(0)",
    "sys.exit(0) in the call": "def truncate_number(number):\n    import sys\n    sys.exit(0)",
    "os._exit(0) in the call": "def truncate_number(number):\n    import os\n    os._exit(0)",
    "atexit exits 0": "import atexit, os\natexit.register(lambda: os._exit(0))",
    "SystemExit(0) after the tests would run": "import atexit\natexit.register(lambda: (_ for _ in ()).throw(SystemExit(0)))",
    # values that compare equal to anything
    "always-equal object": ("class E:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                            "    def __sub__(self, o): return 0\n    def __rsub__(self, o): return 0\n    def __abs__(self): return 0\n"
                            "    def __lt__(self, o): return True\n"
                            "def truncate_number(number):\n    return E()"),
    "always-true object": "class T:\n    def __bool__(self): return True\n    __eq__ = lambda s, o: T()\n"
                          "def truncate_number(number):\n    return T()",
    "float subclass equal to everything": ("class F(float):\n    def __eq__(self, o): return True\n"
                                           "    def __sub__(self, o): return F(0)\n    def __abs__(self): return F(0)\n"
                                           "def truncate_number(number):\n    return F(1)"),
    "returns a callable": "def truncate_number(number):\n    return truncate_number",
    # patching what the test relies on
    "builtins.abs": "import builtins\nbuiltins.abs = lambda x: 0",
    "builtins.isinstance, sorted, print": ("import builtins\nbuiltins.isinstance = lambda *a: True\n"
                                           "builtins.sorted = lambda x, **k: list(x)\nbuiltins.print = lambda *a, **k: None"),
    "math.isclose": "import math\nmath.isclose = lambda *a, **k: True",
    "AssertionError replaced": "import builtins\nbuiltins.AssertionError = type('A', (BaseException,), {})",
    # walking into the harness
    "frame walking rewrites the caller": (
        "import sys\ndef truncate_number(number):\n    f = sys._getframe(1)\n    while f is not None:\n"
        "        for k in list(f.f_globals):\n            if k in ('check', 'candidate', 'emit'): f.f_globals[k] = lambda *a, **kw: None\n"
        "        f = f.f_back\n    return 0.0"),
    "gc finds the expected values": (
        "import gc\ndef truncate_number(number):\n    for o in gc.get_objects():\n"
        "        if isinstance(o, dict) and 'expected' in o: return o['expected']\n    return 0.0"),
    # files a harness might use
    "reads test files around it": (
        "import os\ndef truncate_number(number):\n    for d in ('.', '/tmp', '/dev/shm', '..'):\n"
        "        for n in os.listdir(d):\n            try: t = open(os.path.join(d, n)).read()\n            except Exception: continue\n"
        "            if 'assert' in t and 'truncate_number' in t: raise SystemExit(t)\n    return 0.0"),
    "writes conftest.py and result files": (
        "import os\nfor d in ('.', '/tmp'):\n    for n, t in (('conftest.py', 'import os\\nos._exit(0)\\n'), ('result.json', '{\"passed\": true}'),\n"
        "                 ('verdict', 'PASS')):\n        try: open(os.path.join(d, n), 'w').write(t)\n        except OSError: pass"),
    "floods its output": "import sys\nwhile True: sys.stdout.write('x' * 65536)",
}


@needs_bwrap
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_wrong_solution_with_a_hack_scores_zero(name, pool):
    verdict = judge_humaneval("HumanEval/2", WRONG + "\n" + ATTACKS[name] + "\n", pool, time_limit=2.0)
    assert verdict.passed == [False], (name, verdict.reasons)


@needs_bwrap
def test_hacks_are_flagged_even_on_right_answers(pool):
    honest_exit = judge_humaneval("HumanEval/2", FLOAT_TRUNC + "import atexit\n", pool)
    assert honest_exit.passed == [True] and honest_exit.flags == ["hack_pattern"]
    early = judge_humaneval("HumanEval/2", FLOAT_TRUNC + "import os\nos._exit(0)\n", pool)
    assert early.passed == [False] and set(early.flags) == {"hack_pattern", "ended_early"}
    assert "ended before answering" in early.reasons[0]
    assert judge_humaneval("HumanEval/2", FLOAT_TRUNC, pool).flags == []


@needs_bwrap
def test_the_candidate_sees_the_arguments_and_nothing_of_the_test(pool):
    spy = ("import os, sys\ndef truncate_number(number):\n    seen = [sorted(os.listdir('.')), number, sys.argv, dict(os.environ), sys.stdin.read()]\n"
           "    raise ValueError(repr(seen))\n")
    verdict = judge_humaneval("HumanEval/2", spy, pool)
    reason = verdict.reasons[0]
    assert "main.py" in reason and "solution.py" in reason and "3.5" in reason  # the files and the arguments
    assert not any(x in reason for x in ("0.5", "0.33", "0.456", "assert", "check", "1e-06"))  # nothing of the test


# -- tests with loops, helpers, exceptions, in-place changes and dependent calls -------------------------------
def _judge(code: str, tests: list[str], pool, **kw):
    return run_call_tests(code, tests, pool=pool, **kw)


@needs_bwrap
def test_in_place_changes_exceptions_and_reference_helpers(pool):
    code = ("def sort_in_place(xs):\n    xs.sort()\n"
            "def safe_div(a, b):\n    if b == 0:\n        raise ZeroDivisionError('no')\n    return a / b\n"
            "def helper(x):\n    return -1\n")  # a candidate's helper must not replace the task's
    tests = ["xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]",
             "try:\n    safe_div(1, 0)\nexcept ZeroDivisionError:\n    pass\nelse:\n    assert False",
             "assert safe_div(6, 3) == helper(2)"]
    verdict = _judge(code, tests, pool, setup="def helper(x):\n    return x\n")
    assert verdict.passed == [True, True, True], verdict.reasons


@needs_bwrap
def test_calls_that_depend_on_earlier_answers_take_more_rounds(pool):
    code = "def encode(s):\n    return s[::-1]\ndef decode(s):\n    return s[::-1]\n"
    verdict = _judge(code, ["for w in ['ab', 'xyz']:\n    assert decode(encode(w)) == w"], pool)
    assert verdict.passed == [True] and verdict.rounds == 2
    wrong = _judge(code.replace("return s[::-1]\ndef decode", "return s + '!'\ndef decode"),
                   ["for w in ['ab', 'xyz']:\n    assert decode(encode(w)) == w"], pool)
    assert wrong.passed == [False]


@needs_bwrap
def test_a_bare_except_cannot_swallow_a_failed_call(pool):
    tests = ["try:\n    r = f(1)\nexcept:\n    r = 'caught'\nassert r in (2, 'caught')"]
    assert _judge("def f(x):\n    return x + 1\n", tests, pool).passed == [True]
    assert _judge("def f(x):\n    return object()\n", tests, pool).passed == [False]  # not plain data, not "caught"


@needs_bwrap
def test_what_the_harness_cannot_judge_is_unscorable_with_the_reason(pool):
    with pytest.raises(Unscorable, match="cannot be sent to the sandbox"):
        _judge("def apply(f, x):\n    return f(x)\n", ["assert apply(lambda x: x + 1, 2) == 3"], pool)
    with pytest.raises(Unscorable, match="took longer than"):
        _judge("def f(x):\n    return x\n", ["while True:\n    pass"], pool, judge_timeout=1.0)
    with pytest.raises(Unscorable, match="test 1 never calls f"):
        _judge("def f(x):\n    return x\n", ["assert f(1) == 1", "assert 1 + 1 == 2"], pool)
    with pytest.raises(Unscorable, match="not valid Python"):
        _judge("def f(x):\n    return x\n", ["assert f(1) =="], pool)


@needs_bwrap
def test_a_solution_that_does_not_load_fails_every_test(pool):
    verdict = _judge("def f(x)\n    return x\n", ["assert f(1) == 1", "assert f(2) == 2"], pool)
    assert verdict.passed == [False, False] and "SyntaxError" in verdict.reasons[0]


# -- through the reward ------------------------------------------------------------------------------------------
@needs_bwrap
def test_code_tests_on_humaneval_records_gives_graded_values_with_flags():
    from r1gym.plugins.code.data import CodeSource
    from r1gym.plugins.code.rewards import code_tests

    task = next(t for t in CodeSource(Path(__file__).parent / "data" / "humaneval_sample.jsonl") if t.id == "HumanEval/38")
    f = task.fields
    kw = {"tests": f["tests"], "setup": f["setup"], "entry_point": f["entry_point"]}
    right = code_tests(f"```python\n{f['answer']}\n```", **kw)
    assert right == 1.0 and right.flags == ()
    # decode_cyclic that re-encodes and hopes the test compares the wrong way round; and a copy of the
    # reference helper that lies: the judge checks with the task's own encode_cyclic
    liar = ("def encode_cyclic(s):\n    return s\n\ndef decode_cyclic(s):\n    return s\n")
    assert code_tests(f"```python\n{liar}\n```", **kw) == 0.0
    early = code_tests(f"```python\n{f['answer']}\nimport os\nos._exit(0)\n```", **kw)
    assert early == 0.0 and set(early.flags) == {"ended_early", "hack_pattern"}


@needs_bwrap
def test_answers_that_make_the_test_overrun_fail_it_rather_than_mask_it(pool):
    """The test ran quickly without the candidate (recording), so a judge that overruns on the candidate's
    answers was made to: that is the candidate's failure, not a sample to drop."""
    test = ["n = f(1)\nwhile n != 0:\n    n = n - 1 if n > 0 else n"]
    slow = _judge("def f(x):\n    return -5\n", test, pool, judge_timeout=1.0)
    assert slow.passed == [False] and "did not finish on the candidate's answers" in slow.reasons[0]
    assert _judge("def f(x):\n    return 3\n", test, pool, judge_timeout=1.0).passed == [True]


def test_builtin_classes_and_the_stdlib_containers_travel_as_genuine_values():
    from collections import Counter, OrderedDict, defaultdict, deque

    for value in (int, str, Counter("abca"), OrderedDict(a=1), deque([1, 2]), [float, {"k": Counter()}]):
        back = decode(json.loads(json.dumps(encode(value))))
        assert back == value and type(back) is type(value)
    dd = decode(encode(defaultdict(list, {"a": [1]})))
    assert type(dd) is defaultdict and dd == {"a": [1]} and dd.default_factory is None  # no factory of theirs
    with pytest.raises(NotPlainData):
        encode(type("Evil", (Counter,), {"__eq__": lambda s, o: True})())
    with pytest.raises(ValueError):
        decode(["T", "eval"])


@needs_bwrap
def test_mbpp_shapes_a_builtin_name_counter_results_and_type_arguments(pool):
    """Shapes from MBPP (google-research/mbpp): task 126 asks for `sum(a, b)`, 40 returns a Counter, 533
    passes `int`; 367 builds its test data from the solution's own class, which cannot be judged."""
    assert _judge("def sum(a, b):\n    return 6\n", ["assert sum(10, 15) == 6"], pool).passed == [True]
    counter = "from collections import Counter\ndef freq(xs):\n    return Counter(xs)\n"
    assert _judge(counter, ["assert freq([1, 1, 2]) == {1: 2, 2: 1}"], pool).passed == [True]
    typed = "def keep(xs, t):\n    return [x for x in xs if not isinstance(x, t)]\n"
    assert _judge(typed, ["assert keep((4, 5.5, 'a'), int) == [5.5, 'a']"], pool).passed == [True]
    with pytest.raises(Unscorable, match="setup or test does not run without the solution"):
        _judge("class Node:\n    pass\ndef depth(n):\n    return 1\n", ["assert depth(root) == 1"], pool,
               setup="root = Node()")
