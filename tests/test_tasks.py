"""Task sources: solvable, deterministic, disjoint splits, knobs respected; the JSONL loader's mapping and errors."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from r1gym.envs.datasets import SAMPLE_ARITHMETIC, JsonlSource
from r1gym.envs.rewards import format_reward
from r1gym.plugins.arithmetic.data import ArithmeticSource
from r1gym.plugins.arithmetic.rewards import arithmetic_reward
from r1gym.plugins.countdown.data import CountdownSource
from r1gym.plugins.countdown.rewards import countdown_reward, evaluate_equation


def _countdown_key(task):
    return (tuple(sorted(task.fields["numbers"])), task.fields["target"])


# -- Countdown ---------------------------------------------------------------------------------------------
def _solves(solution: str, numbers: list[int], target: int) -> bool:
    """Checked without the module under test: the solution's whole numbers are the task's numbers, each once,
    and Python's exact evaluation of it (every literal a Fraction) is the target. (``eval`` of a string the
    task source generated, never model text.)"""
    literals = sorted(int(x) for x in re.findall(r"\d+", solution))
    value = eval(re.sub(r"(\d+)", r"Fraction(\1)", solution), {"Fraction": Fraction})
    return literals == sorted(numbers) and value == target


def test_countdown_tasks_are_solvable_by_their_kept_solution():
    source = CountdownSource()
    for i in range(50):
        task, solution = source[i], source.solution(i)
        assert _solves(solution, **task.fields), (i, task.fields, solution)
        completion = f"<think>x</think><answer>{solution}</answer>"
        assert countdown_reward(completion, **task.fields) == 1.0, (i, task.fields, solution)
        assert format_reward(completion) == 1.0


def test_countdown_prompt_states_the_problem_but_not_the_solution():
    source = CountdownSource()
    task = source[0]
    assert str(task.fields["numbers"]) in task.prompt and f"equals {task.fields['target']}." in task.prompt
    assert "<answer>" in task.prompt and source.solution(0) not in task.prompt
    assert task.meta == {"difficulty": len(task.fields["numbers"]), "split": "train"}


def test_countdown_splits_are_disjoint():
    train, test = CountdownSource(split="train"), CountdownSource(split="test")
    train_keys = {_countdown_key(train[i]) for i in range(500)}
    test_keys = {_countdown_key(test[i]) for i in range(500)}
    assert len(test_keys) > 400  # the test split is not a handful of repeats
    assert not train_keys & test_keys
    assert all(test[i].meta["split"] == "test" for i in range(5))


def test_countdown_is_deterministic_across_instances_and_seeded():
    a, b = CountdownSource(seed=3), CountdownSource(seed=3)
    assert [a[i] for i in (0, 17, 9999)] == [b[i] for i in (0, 17, 9999)]
    assert [a[9999], a[0]] == [b[9999], b[0]]  # task i does not depend on which tasks were built before
    c = CountdownSource(seed=4)
    assert [a[i].fields for i in range(10)] != [c[i].fields for i in range(10)]


def test_countdown_difficulty_knobs_are_respected():
    source = CountdownSource(num_numbers=(4, 5), min_number=2, max_number=9, min_target=20, max_target=30, size=200)
    counts = set()
    for i in range(200):
        numbers, target = source[i].fields["numbers"], source[i].fields["target"]
        counts.add(len(numbers))
        assert all(2 <= n <= 9 for n in numbers) and 20 <= target <= 30
        assert evaluate_equation(source.solution(i)) == target and _solves(source.solution(i), numbers, target)
    assert counts == {4, 5}
    assert {len(t.fields["numbers"]) for t in (CountdownSource(num_numbers=3)[i] for i in range(20))} == {3}


def test_countdown_index_and_knob_errors():
    with pytest.raises(IndexError, match="out of range"):
        CountdownSource(size=5)[5]
    with pytest.raises(ValueError, match="split"):
        CountdownSource(split="validation")
    with pytest.raises(ValueError, match="num_numbers"):
        CountdownSource(num_numbers=(4, 3))


# -- Arithmetic --------------------------------------------------------------------------------------------
def _expression(task):
    return re.match(r"What is (.+?)\? ", task.prompt).group(1)


def test_arithmetic_answers_are_correct():
    source = ArithmeticSource(num_operands=(2, 4), ops="+-*/")
    for i in range(100):
        task = source[i]
        expr = _expression(task)
        assert re.fullmatch(r"\d+( [-+*/] \d+)+", expr)
        # checked independently: Python's own evaluation of a string we generated (never model text)
        assert eval(expr) == int(task.fields["answer"]), (expr, task.fields)
        assert arithmetic_reward(f"<answer>{task.fields['answer']}</answer>", **task.fields) == 1.0


def test_arithmetic_splits_are_disjoint_and_deterministic():
    train, test = ArithmeticSource(split="train"), ArithmeticSource(split="test")
    train_exprs = {_expression(train[i]) for i in range(500)}
    test_exprs = {_expression(test[i]) for i in range(500)}
    assert not train_exprs & test_exprs and len(test_exprs) > 100
    assert [ArithmeticSource(seed=2)[i] for i in range(20)] == [ArithmeticSource(seed=2)[i] for i in range(20)]
    assert [ArithmeticSource(seed=2)[i] for i in range(20)] != [ArithmeticSource(seed=3)[i] for i in range(20)]


def test_arithmetic_difficulty_knobs_are_respected():
    source = ArithmeticSource(num_operands=(3, 5), min_value=1, max_value=9, ops="-*", allow_negative=False)
    sizes = set()
    for i in range(200):
        task = source[i]
        tokens = _expression(task).split()
        values, ops = tokens[::2], tokens[1::2]
        sizes.add(len(values))
        assert task.meta["difficulty"] == len(values)
        assert all(1 <= int(v) <= 9 for v in values) and set(ops) <= {"-", "*"}
        assert int(task.fields["answer"]) >= 0
    assert sizes == {3, 4, 5}
    with pytest.raises(ValueError, match="ops"):
        ArithmeticSource(ops="+^")


# -- JSONL -------------------------------------------------------------------------------------------------
def write_jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_shipped_sample_loads_and_its_answers_are_right():
    source = JsonlSource(SAMPLE_ARITHMETIC, id_field="id")
    assert len(source) == 20 and source[0].id == "sample-001"
    for task in source:
        expr = re.match(r"What is (.+?)\? ", task.prompt).group(1)
        assert eval(expr) == int(task.fields["answer"]), task.prompt  # our own file, not model text


def test_jsonl_field_mapping(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"question": "2+2?", "solution": "4", "unit": "apples", "lvl": 1, "uid": "a"},
        "",  # blank lines are skipped
        {"question": "3+3?", "solution": "6", "unit": "pears", "lvl": 2, "uid": "b"},
    ])
    source = JsonlSource(path, prompt_field="question", answer_field="solution", id_field="uid",
                         fields={"what": "unit"}, meta_fields=["lvl"])
    assert len(source) == 2
    task = source[1]
    assert (task.id, task.prompt) == ("b", "3+3?")
    assert task.fields == {"answer": "6", "what": "pears"}
    assert task.meta == {"source": "d.jsonl", "lvl": 2}
    plain = JsonlSource(path, prompt_field="question", answer_field="solution", fields=["unit"], limit=1)
    assert len(plain) == 1 and plain[0].fields == {"answer": "4", "unit": "apples"} and plain[0].id == "d-1"


def test_jsonl_missing_field_names_file_line_field_and_fields_present(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"}, {"prompt": "b", "label": "2"}])
    with pytest.raises(ValueError) as err:
        JsonlSource(path)
    message = str(err.value)
    assert "d.jsonl:2" in message and "'answer'" in message and "['label', 'prompt']" in message


def test_jsonl_bad_json_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"}, '{"prompt": "b", "answer": '])
    with pytest.raises(ValueError, match=r"d\.jsonl:2: invalid JSON"):
        JsonlSource(path)


def test_jsonl_refuses_to_publish_the_answer_and_reports_missing_files(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"}])
    with pytest.raises(ValueError, match="public info"):
        JsonlSource(path, meta_fields=["answer"])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        JsonlSource(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="expected a JSON object"):
        JsonlSource(write_jsonl(tmp_path / "e.jsonl", ["[1, 2]"]))


def test_jsonl_meta_reaches_info_as_a_copy(tmp_path):
    from r1gym.envs.base import SingleTurnEnv

    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "2+2?", "answer": "4", "tags": {"topic": "sums"}}])
    env = SingleTurnEnv(JsonlSource(path, meta_fields=["tags"]), {"arithmetic": 1.0})  # a source object, not a config
    _, info = env.reset(options={"index": 0})
    assert info["tags"] == {"topic": "sums"} and "answer" not in info
    info["tags"]["topic"] = "changed by the caller"
    assert env.reset(options={"index": 0})[1]["tags"] == {"topic": "sums"}
