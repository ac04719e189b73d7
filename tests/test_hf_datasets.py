"""The ``hf_dataset`` task source (r1gym.plugins.hf_source): small datasets built by hand in the real column
layouts of GSM8K, MATH, MATH-500, NuminaMath-CoT, OpenR1-Math, HumanEval, MBPP, CodeContests, APPS and TACO,
saved with ``save_to_disk`` and read back offline; splits, streaming, column mapping and the errors."""

from __future__ import annotations

import json
import logging
import os

import gymnasium
import pytest

datasets = pytest.importorskip("datasets", reason="the hf_dataset source needs `datasets` (a dependency of r1gym)")

from r1gym.core.plugins import default_host  # noqa: E402
from r1gym.core.registry import UnknownNameError  # noqa: E402
from r1gym.envs.base import resolve_source  # noqa: E402
from r1gym.plugins.code.data import CodeSource  # noqa: E402
from r1gym.plugins.hf_source import HFDatasetSource, detect_layout  # noqa: E402
from r1gym.plugins.math.data import MathSource  # noqa: E402

assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest sets it: nothing here may reach the hub

GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nShe earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "What is 1,000 + 234?", "answer": "1000 + 234 = 1234\n#### 1,234"},
]
HENDRYCKS_MATH = [
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "The common denominator is 6, so the sum is $\\boxed{\\frac{5}{6}}$."},
    {"problem": "Solve $x + 3 = 5$.", "level": "Level 1", "type": "Algebra", "solution": "$x = \\boxed{2}$."},
]
MATH500 = [
    {"problem": "Convert the point $(0,3)$ to polar coordinates.", "solution": "... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
    {"problem": "What is $2^{10}$?", "solution": "$2^{10} = \\boxed{1024}$", "answer": "1024", "subject": "Algebra",
     "level": 1, "unique_id": "test/algebra/1.json"},
]
NUMINA = [
    {"source": "synthetic_math", "problem": "Compute $7 \\times 8$.",
     "solution": "Multiplying, $7 \\times 8 = \\boxed{56}$.",
     "messages": [{"role": "user", "content": "Compute $7 \\times 8$."},
                  {"role": "assistant", "content": "Multiplying, $7 \\times 8 = \\boxed{56}$."}]},
]
OPENR1 = [
    {"problem": "Find the sum of the roots of $x^2 - 5x + 6 = 0$.", "solution": "By Vieta, the sum is $5$.",
     "answer": "5", "problem_type": "Algebra", "question_type": "math-word-problem", "source": "olympiads",
     "uuid": "0b8e4f1c", "is_reasoning_complete": [True, True], "generations": ["<think>...</think> 5", "5"],
     "correctness_math_verify": [True, True], "correctness_llama": None, "finish_reasons": None,
     "correctness_count": 2,
     "messages": [{"role": "user", "content": "Find the sum..."}, {"role": "assistant", "content": "5"}]},
]
HUMANEVAL = [
    {"task_id": "HumanEval/53", "prompt": "\n\ndef add(x: int, y: int):\n    \"\"\"Add two numbers x and y\n    >>> add(2, 3)\n    5\n    \"\"\"\n",
     "canonical_solution": "    return x + y\n",
     "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(0, 1) == 1\n    assert candidate(5, 7) == 12\n",
     "entry_point": "add"},
]
MBPP = [
    {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character from the string.",
     "code": "def remove_Occ(s,ch):\n    s = s.replace(ch, '', 1)\n    return s[::-1].replace(ch, '', 1)[::-1]",
     "test_list": ["assert remove_Occ(\"hello\",\"l\") == \"heo\"", "assert remove_Occ(\"abcda\",\"a\") == \"bcd\""],
     "test_setup_code": "", "challenge_test_list": []},
]
MBPP_SANITIZED = [
    {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 2,
     "prompt": "Write a function to find the shared elements from the given two lists.",
     "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
     "test_imports": ["import math"],
     "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"]},
]
CODE_CONTESTS = [
    {"name": "1548_A. Web of Lies", "description": "Given two integers, print their sum.",
     "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
     "private_tests": {"input": ["5 5\n"], "output": ["10\n"]},
     "generated_tests": {"input": ["0 0\n", "7 1\n"], "output": ["0\n", "8\n"]},
     "source": 2, "difficulty": 7,
     "solutions": {"language": [2, 3], "solution": ["#include <cstdio>\nint main(){}", "a, b = map(int, input().split())\nprint(a + b)"]},
     "incorrect_solutions": {"language": [], "solution": []},
     "cf_contest_id": 1548, "cf_index": "A", "cf_points": 500.0, "cf_rating": 800, "cf_tags": ["math"],
     "is_description_translated": False, "untranslated_description": "", "time_limit": {"seconds": 2, "nanos": 0},
     "memory_limit_bytes": 256000000, "input_file": "", "output_file": ""},
]
APPS = [
    {"problem_id": 4001, "question": "Read n and print n squared.",
     "solutions": json.dumps(["n = int(input())\nprint(n * n)"]),
     "input_output": json.dumps({"inputs": ["3\n", "5\n"], "outputs": ["9\n", "25\n"]}),
     "difficulty": "introductory", "url": "https://codeforces.com/problemset/problem/1/A", "starter_code": ""},
    {"problem_id": 4002, "question": "Return the sum of a list of numbers.",
     "solutions": json.dumps(["def total(xs):\n    return sum(xs)"]),
     "input_output": json.dumps({"fn_name": "total", "inputs": [[[1, 2, 3]], [[]]], "outputs": [[6], [0]]}),
     "difficulty": "introductory", "url": "https://www.codewars.com/kata/1", "starter_code": "def total(xs):\n\t"},
    {"problem_id": 4003, "question": "Given nums, return twice each.",
     "solutions": json.dumps(["class Solution:\n    def twice(self, nums):\n        return [2 * x for x in nums]"]),
     "input_output": json.dumps({"fn_name": "twice", "inputs": [[[1]]], "outputs": [[2]]}),
     "difficulty": "interview", "url": "https://leetcode.com/problems/x", "starter_code": "class Solution:\n    def twice(self, nums):\n        "},
    {"problem_id": 4004, "question": "A problem whose tests were never collected.", "solutions": "[]", "input_output": "",
     "difficulty": "competition", "url": "", "starter_code": ""},
]
TACO = [
    {"question": "Print the maximum of two integers.", "solutions": json.dumps(["a, b = map(int, input().split())\nprint(max(a, b))"]),
     "starter_code": "", "input_output": json.dumps({"inputs": ["1 2\n", "9 4\n"], "outputs": ["2\n", "9\n"]}),
     "difficulty": "EASY", "raw_tags": "['Math']", "name": "max2", "source": "codechef", "tags": "['Mathematics']",
     "skill_types": "[]", "url": "https://www.codechef.com/problems/MAX2", "Expected Auxiliary Space": None,
     "time_limit": "1 seconds", "date": "2021-05-01", "picture_num": "0", "memory_limit": "256 megabytes",
     "Expected Time Complexity": None},
]


def saved(tmp_path, rows, name="ds", splits=None):
    """``rows`` (or ``{split: rows}``) saved with save_to_disk, as the folder's path."""
    folder = tmp_path / name
    if splits:
        datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in splits.items()}).save_to_disk(str(folder))
    else:
        datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    return str(folder)


def as_jsonl(tmp_path, rows, name):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("rows", "layout", "answers"), [
    (GSM8K, "gsm8k", ["72", "10", "1,234"]),
    (HENDRYCKS_MATH, "math", ["\\frac{5}{6}", "2"]),
    (MATH500, "math", ["\\left( 3, \\frac{\\pi}{2} \\right)", "1024"]),
    (NUMINA, "math", ["56"]),
    (OPENR1, "math", ["5"]),
], ids=["gsm8k", "hendrycks_math", "math500", "numinamath_cot", "openr1_math"])
def test_math_layouts_are_recognised_and_read_as_the_math_source_reads_them(tmp_path, rows, layout, answers):
    source = HFDatasetSource(saved(tmp_path, rows), split=None)
    assert source.layout == layout and [t.fields["answer"] for t in source.tasks] == answers
    from_file = MathSource(as_jsonl(tmp_path, rows, layout))  # the same records as a file: the same tasks
    assert [(t.prompt, dict(t.fields)) for t in source.tasks] == [(t.prompt, dict(t.fields)) for t in from_file.tasks]
    assert all("answer" not in t.meta and t.meta["layout"] == layout for t in source.tasks)


def test_math_ids_come_from_the_rows_and_the_env_scores_the_reference_as_correct(tmp_path):
    env = gymnasium.make("r1gym/Math-v0", source={"name": "hf_dataset", "path": saved(tmp_path, MATH500), "split": None},
                         rewards={"math_accuracy": 1.0}).unwrapped
    _, info = env.reset(options={"index": 1})
    assert info["task_id"] == "test/algebra/1.json" and "1024" not in json.dumps(info)
    assert env.step("<think> 2^10 </think> <answer> 1024 </answer>")[1] == 1.0
    env.reset(options={"index": 1})
    assert env.step("<think> hm </think> <answer> 1000 </answer>")[1] == 0.0


@pytest.mark.parametrize(("rows", "layout"), [(HUMANEVAL, "humaneval"), (MBPP, "mbpp"), (CODE_CONTESTS, "code_contests")])
def test_code_layouts_give_the_code_sources_tasks(tmp_path, rows, layout):
    source = HFDatasetSource(saved(tmp_path, rows), split=None)
    from_file = CodeSource(as_jsonl(tmp_path, rows, layout))
    assert source.layout == layout
    assert [(t.prompt, dict(t.fields)) for t in source.tasks] == [(t.prompt, dict(t.fields)) for t in from_file.tasks]
    assert source[0].fields["tests"]


def test_code_contests_tests_meta_and_reference(tmp_path):
    (task,) = HFDatasetSource(saved(tmp_path, CODE_CONTESTS), split=None).tasks
    assert [t["stdin"] for t in task.fields["tests"]] == ["1 2\n", "5 5\n", "0 0\n", "7 1\n"]
    assert task.fields["public_tests"] == [{"stdin": "1 2\n", "stdout": "3\n"}]
    assert task.fields["answer"].startswith("a, b = map")  # the first Python 3 solution
    assert task.id == "1548_A. Web of Lies" and task.meta["difficulty"] == 7


def test_mbpp_sanitized_layout_uses_its_prompt_and_imports(tmp_path):
    (task,) = HFDatasetSource(saved(tmp_path, MBPP_SANITIZED), split=None).tasks
    assert task.meta["layout"] == "mbpp_sanitized" and task.fields["setup"] == "import math"
    assert task.prompt.startswith("Write a function to find the shared elements")
    assert task.fields["tests"] == [{"assert": MBPP_SANITIZED[0]["test_list"][0]}]
    namespace: dict = {}
    exec(task.fields["setup"] + "\n" + task.fields["answer"] + "\n" + task.fields["tests"][0]["assert"], namespace)


def test_apps_and_taco_give_stdin_tests_or_call_asserts_and_skip_what_cannot_be_judged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="r1gym.plugins.hf_source"):
        apps = HFDatasetSource(saved(tmp_path, APPS, "apps"), split=None)
    assert [t.id for t in apps.tasks] == ["4001", "4002"]  # the class-based call problem and the untested one skipped
    assert "skipped 2 row(s)" in caplog.text and "class" in caplog.text
    stdin_task, call_task = apps.tasks
    assert stdin_task.fields["tests"] == [{"stdin": "3\n", "stdout": "9\n"}, {"stdin": "5\n", "stdout": "25\n"}]
    assert call_task.fields["entry_point"] == "total" and "def total(xs):" in call_task.prompt
    for test in call_task.fields["tests"]:  # each assert holds for the reference solution (and fails otherwise)
        exec(call_task.fields["answer"] + "\n" + test["assert"], {})
        with pytest.raises(AssertionError):
            exec("def total(xs):\n    return -1\n" + test["assert"], {})
    (taco,) = HFDatasetSource(saved(tmp_path, TACO, "taco"), split=None).tasks
    assert taco.meta["layout"] == "apps" and taco.id == "max2" and taco.meta["difficulty"] == "EASY"
    assert taco.fields["tests"][1] == {"stdin": "9 4\n", "stdout": "9\n"}


def test_splits_slices_and_a_single_dataset(tmp_path):
    folder = saved(tmp_path, None, splits={"train": GSM8K, "test": GSM8K[:1]})
    assert len(HFDatasetSource(folder)) == 3 and len(HFDatasetSource(folder, split="test")) == 1
    head, tail = HFDatasetSource(folder, split="train[:2]"), HFDatasetSource(folder, split="train[2:]")
    assert [t.fields["answer"] for t in head.tasks + tail.tasks] == ["72", "10", "1,234"]
    with pytest.raises(UnknownNameError, match=r"unknown split of .* 'tset'.*Did you mean 'test'"):
        HFDatasetSource(folder, split="tset")
    with pytest.raises(ValueError, match=r"has the splits \['test', 'train'\]: choose one"):
        HFDatasetSource(folder, split=None)
    with pytest.raises(ValueError, match="single dataset with no splits; use split: null"):
        HFDatasetSource(saved(tmp_path, GSM8K, "single"), split="test")


def test_streaming_keeps_the_first_limit_rows_or_a_shuffled_sample(tmp_path):
    rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(20)]
    folder = saved(tmp_path, rows)
    first = HFDatasetSource(folder, split=None, streaming=True, limit=5)
    assert len(first) == 5 and [t.fields["answer"] for t in first.tasks] == ["1", "2", "3", "4", "5"]
    shuffled = HFDatasetSource(folder, split=None, streaming=True, limit=5, shuffle_buffer=10, seed=3)
    again = HFDatasetSource(folder, split=None, streaming=True, limit=5, shuffle_buffer=10, seed=3)
    assert [t.prompt for t in shuffled.tasks] == [t.prompt for t in again.tasks] != [t.prompt for t in first.tasks]
    files = HFDatasetSource("json", data_files=str(as_jsonl(tmp_path, rows, "stream")), streaming=True, limit=3)
    assert len(files) == 3 and files.layout == "gsm8k" and files[2].fields["answer"] == "3"
    with pytest.raises(ValueError, match="streaming: true needs a limit"):
        HFDatasetSource(folder, split=None, streaming=True)
    assert len(HFDatasetSource(folder, split=None, shuffle=True, seed=1, limit=4)) == 4


def test_column_mapping_reads_any_layout(tmp_path):
    rows = [{"instruction": "Compute 6*7.", "output": "6*7 = \\boxed{42}", "uid": "a"},
            {"instruction": "Compute 5+5.", "output": "Ten.\n#### 10", "uid": "b"},
            {"instruction": "Name the capital of France.", "output": "Paris", "uid": "c"}]
    source = resolve_source({"name": "hf_dataset", "path": saved(tmp_path, rows), "split": None,
                             "columns": {"prompt": "instruction", "answer": "output", "id": "uid"}}, default_host())
    assert [(t.id, t.prompt, t.fields["answer"]) for t in source.tasks] == [
        ("a", "Compute 6*7.", "42"), ("b", "Compute 5+5.", "10"), ("c", "Name the capital of France.", "Paris")]
    plain = HFDatasetSource(saved(tmp_path, rows, "p"), split=None, columns={"prompt": "instruction", "answer": "output"},
                            answer_format="plain")
    assert plain[0].fields["answer"] == "6*7 = \\boxed{42}"
    with pytest.raises(ValueError, match=r"columns \['solution'\] are not in the dataset; its columns are \['instruction', 'output', 'uid'\]"):
        HFDatasetSource(saved(tmp_path, rows, "m"), split=None, columns={"prompt": "instruction", "answer": "solution"})


def test_an_unknown_layout_lists_its_columns_and_the_known_layouts(tmp_path):
    with pytest.raises(ValueError, match=r"no known layout has these columns: \['input', 'target'\]\. Known layouts.*"
                                         r"humaneval.*gsm8k \(answer, question\).*columns: \{prompt"):
        HFDatasetSource(saved(tmp_path, [{"input": "x", "target": "y"}]), split=None)
    with pytest.raises(UnknownNameError, match="Did you mean 'gsm8k'"):
        HFDatasetSource(saved(tmp_path, GSM8K, "g"), split=None, layout="gsm8kk")
    assert detect_layout(["question", "answer", "extra"]) == "gsm8k" and detect_layout(["a"]) is None


def test_a_hub_id_that_is_not_cached_says_how_to_get_it_offline():
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE is set and it is not in the local cache.*save_to_disk"):
        HFDatasetSource("r1gym-tests/no-such-dataset", config="main")


def test_the_hf_dataset_env_config_works_offline_as_shipped():
    """conf/env/hf_dataset.yaml reads the shipped math sample (mixed GSM8K/MATH/plain rows) as the math source
    does, 80% for training and the rest held out."""
    from r1gym.core.config import compose
    from r1gym.core.env_factory import make_envs

    assert "hf_dataset" in default_host().task_sources
    cfg = compose(["env=hf_dataset"]).env
    (train,), (held_out,) = make_envs(cfg, 1), make_envs(cfg, 1, eval_split=True)
    tasks = train.unwrapped.source.tasks + held_out.unwrapped.source.tasks
    from_file = MathSource("pkg://r1gym.plugins.math/data/sample_math.jsonl")
    assert len(held_out.unwrapped.source) == len(from_file) - len(train.unwrapped.source) > 0
    assert [dict(t.fields) for t in tasks] == [dict(t.fields) for t in from_file.tasks]


@pytest.mark.skipif(__import__("r1gym.plugins.code.sandbox", fromlist=["x"]).isolation_tool() != "bwrap",
                    reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")
@pytest.mark.parametrize(("rows", "layout"), [(HUMANEVAL, "humaneval"), (MBPP, "mbpp"), (MBPP_SANITIZED, "mbpp_sanitized"),
                                              (CODE_CONTESTS, "code_contests"), (APPS, "apps"), (TACO, "apps")])
def test_each_code_layouts_reference_solution_passes_its_tests_in_the_sandbox(tmp_path, rows, layout):
    """The tests the source writes (APPS's call asserts included) are the ones the code_tests reward runs: the
    reference solution passes them, a wrong program does not."""
    from r1gym.envs.base import resolve_rewards

    rewards = resolve_rewards({"code_tests": {"weight": 1.0, "mode": "all"}}, default_host())
    source = HFDatasetSource(saved(tmp_path, rows), split=None)
    assert source.layout == layout
    for task in source.tasks:
        right = rewards.score(f"```python\n{task.fields['answer']}\n```", task.fields)
        assert right.total == 1.0, (task.id, right.unscorable)
        wrong = "def " + (task.fields.get("entry_point") or "f") + "(*a):\n    return None\nprint(0)"
        assert rewards.score(f"```python\n{wrong}\n```", task.fields).total == 0.0, task.id
