"""Programming tasks in the common benchmark formats (task source ``code``) and the multi-turn
``r1gym/CodeExec-v0``: readers give tests that the reference solutions pass, and the env runs code, shows the
failing example test, ends on a passing submission and scores the last one on all tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1gym.envs import make
from r1gym.plugins.code.data import CodeSource, detect_format
from r1gym.plugins.code.rewards import code_tests
from r1gym.plugins.code.sandbox import isolation_tool

DATA = Path(__file__).parent / "data"
needs_bwrap = pytest.mark.skipif(isolation_tool() != "bwrap",
                                 reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")


def fenced(code: str) -> str:
    return f"Here it is.\n```python\n{code}\n```"


def test_each_format_is_detected_and_read_into_tests():
    he = CodeSource(DATA / "humaneval_format.jsonl")
    assert [t.id for t in he] == ["Sample/0", "Sample/1"] and he[0].meta["format"] == "humaneval"
    assert he[0].fields["tests"] == [{"assert": he[0].fields["tests"][0]["assert"]}]
    assert he[0].fields["tests"][0]["assert"].endswith("check(add)") and "def add(a: int" in he[0].prompt
    mbpp = CodeSource(DATA / "mbpp_format.jsonl")
    assert len(mbpp[0].fields["tests"]) == 3 and mbpp[0].fields["public_tests"] == mbpp[0].fields["tests"][:1]
    assert "assert largest(1, 2, 3) == 3" in mbpp[0].prompt and mbpp[1].fields["setup"] == "import string"
    cc = CodeSource(DATA / "code_contests_format.jsonl")
    assert [t.id for t in cc] == ["sample-double", "7"]
    assert cc[0].fields["public_tests"] == [{"stdin": "4\n", "stdout": "8\n"}] and len(cc[0].fields["tests"]) == 4
    assert cc[1].fields["tests"][1] == {"stdin": "-1 -5\n", "stdout": "-1\n"} and cc[1].meta["difficulty"] == "EASY"
    assert "standard input" in cc[0].prompt
    assert CodeSource(DATA / "code_contests_format.jsonl", max_tests=2)[0].fields["tests"] == cc[0].fields["tests"][:2]


def test_answers_and_tests_never_reach_the_public_info():
    env = make("r1gym/Code-v0", source={"name": "code", "path": str(DATA / "code_contests_format.jsonl")})
    _, info = env.reset(options={"index": 0})
    assert not {"tests", "public_tests", "answer"} & set(info) and "200" not in json.dumps(info)


def test_bad_records_say_what_is_wrong(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "what?", "answer": 1}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: cannot tell the format.*humaneval.*fields are \['answer', 'question'\]"):
        CodeSource(path)
    path.write_text(json.dumps({"prompt": "p", "tests": []}) + "\n")
    with pytest.raises(ValueError, match="no test cases"):
        CodeSource(path)
    path.write_text(json.dumps({"text": "t", "test_list": ["assert 1"]}) + "\n")
    with pytest.raises(ValueError, match="a humaneval record needs the field 'prompt'; its fields are"):
        CodeSource(path, format="humaneval")
    with pytest.raises(ValueError, match="format must be one of"):
        CodeSource(path, format="apps")
    assert detect_format({"prompt": "p", "tests": [1]}) == "r1gym"


@needs_bwrap
@pytest.mark.parametrize("name", ["humaneval_format", "mbpp_format", "code_contests_format"])
def test_reference_solutions_of_every_format_score_1_and_wrong_ones_less(name):
    source = CodeSource(DATA / f"{name}.jsonl")
    refs = json.loads((DATA / f"{name}.solutions.json").read_text()) if name == "code_contests_format" else {}
    for task in source:
        reference = refs.get(task.id) or task.fields["answer"]
        kw = {"tests": task.fields["tests"], "setup": task.fields["setup"]}
        assert code_tests(fenced(reference), **kw) == 1.0, task.id
        assert code_tests(fenced("print('nothing useful')"), **kw) < 1.0, task.id


@needs_bwrap
def test_code_exec_runs_code_then_shows_the_failing_example_then_scores_the_submission_on_all_tests():
    env = make("r1gym/CodeExec-v0", source={"name": "code", "path": str(DATA / "code_contests_format.jsonl")},
               max_turns=4)
    obs, _ = env.reset(options={"index": 0})
    assert "<execute>" in obs[-1]["content"] and "4 turns" in obs[-1]["content"]

    obs, reward, terminated, truncated, info = env.step("<execute>\n```python\nprint(6 * 7)\n```\n</execute>")
    assert (reward, terminated, truncated) == (0.0, False, False) and info["turn"] == 1
    assert "42" in obs[-1]["content"] and obs[-1]["role"] == "user"

    obs, reward, terminated, truncated, _ = env.step(fenced("print(int(input()) + 2)"))  # 4 -> 6, not 8
    feedback = obs[-1]["content"]
    assert not terminated and "Expected output" in feedback and "8" in feedback and "6" in feedback
    assert "200" not in feedback and "-6" not in feedback  # hidden tests stay hidden

    # passes the example (4 -> 8) but only one of the three hidden ones (0 -> 0; not -3, 100): the episode
    # ends, scored on all four tests
    obs, reward, terminated, truncated, info = env.step(fenced("n = int(input())\nprint(8 if n == 4 else n)"))
    assert terminated and not truncated and info["rewards"]["code_tests"] == 0.5
    assert reward == pytest.approx(0.5 + 0.1)


@needs_bwrap
def test_code_exec_ends_at_once_on_a_correct_answer_and_truncates_when_out_of_turns():
    env = make("r1gym/CodeExec-v0", max_turns=2)
    env.reset(options={"index": 0})  # square(x)
    _, reward, terminated, _, info = env.step(fenced("def square(x):\n    return x * x"))
    assert terminated and info["rewards"]["code_tests"] == 1.0 and info["turn"] == 1
    env.reset(options={"index": 0})
    _, _, terminated, _, _ = env.step("I think I need to ponder first.")  # no code: told so, goes on
    assert not terminated and "No ```python code block" in env.unwrapped.messages[-1]["content"]
    _, reward, terminated, truncated, info = env.step(fenced("def square(x):\n    return x + x"))
    assert truncated and not terminated and info["rewards"]["code_tests"] < 1.0


def test_a_sandbox_failure_mid_episode_is_counted_and_never_scored_as_the_program(caplog):
    """A stand-in sandbox that always fails (named so: this tests the env's handling, not a backend),
    registered through the sandbox hook on a host of the test's own and chosen by name, as a user would."""
    from r1gym.core.contracts import RunResult
    from r1gym.core.hookspecs import hookimpl
    from r1gym.core.plugins import BUILTIN_PLUGINS, load_plugins

    class AlwaysFailingSandbox:
        def run(self, program, limits):
            return RunResult("sandbox_error", None, "", "", 0.0, 0.0, "bwrap: cannot create namespace")

    class StandIn:
        @hookimpl
        def r1gym_register_sandboxes(self, register):
            register("always_failing", AlwaysFailingSandbox, description="fails every run")

    host = load_plugins(BUILTIN_PLUGINS, autoload=False, extra=[("stand_in", StandIn())])
    env = make("r1gym/CodeExec-v0", host=host, sandbox="always_failing",  # the env's own runs
               rewards={"code_tests": {"weight": 1.0, "sandbox": "always_failing"}}).unwrapped  # and the scoring
    # (.unwrapped: no passive checker, a nan reward is the point here)
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("<execute>\n```python\nprint(1)\n```\n</execute>")
    assert terminated and info["scorable"] is False and reward != reward  # nan: masked, not 0
    assert env.sandbox_errors == 1 and "sandbox failed while answering a turn" in caplog.text


@needs_bwrap
def test_r1gym_score_code_tests_scores_jsonl_records(tmp_path, capsys):
    from r1gym.core.cli import main

    tests = [{"stdin": "2 3\n", "stdout": "5\n"}, {"stdin": "1 1\n", "stdout": "2\n"}]
    rows = [{"completion": fenced("a, b = map(int, input().split())\nprint(a + b)"), "tests": tests},
            {"completion": fenced("print(5)"), "tests": tests},
            {"completion": "no code here", "tests": tests}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "code_tests", "--input", str(src), "--output", str(out)]) == 0
    assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == [1.0, 0.5, 0.0]
    assert "3 records, 3 scored" in capsys.readouterr().err
    asserts = [{"assert": "assert add(2, 3) == 5"}]
    rows = [{"completion": fenced("def add(a, b):\n    return a + b"), "tests": asserts},
            {"completion": fenced("import os\nos._exit(0)"), "tests": asserts}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "code_tests", "--input", str(src), "--output", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["reward"], r.get("flags")) for r in scored] == [(1.0, None), (0.0, ["hack_pattern", "ended_early"])]
    assert "flagged: 1 x hack_pattern, 1 x ended_early" in capsys.readouterr().err


def test_from_records_reads_records_in_memory_as_the_file_reads_them():
    path = DATA / "code_contests_format.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    from_file, from_records = CodeSource(path, max_tests=2), CodeSource.from_records(records, "rows", max_tests=2)
    assert [(t.id, t.prompt, t.fields) for t in from_records] == [(t.id, t.prompt, t.fields) for t in from_file]
    assert from_records[0].meta["source"] == "rows" and from_records[1].meta["difficulty"] == "EASY"
    with pytest.raises(ValueError, match=r"^rows row 1: a humaneval record needs the field 'test'"):
        CodeSource.from_records([{"task_id": "a", "prompt": "def f(): ...", "entry_point": "f", "test": "..."},
                                 {"task_id": "b", "prompt": "def g(): ...", "entry_point": "g"}], "rows",
                                format="humaneval")
