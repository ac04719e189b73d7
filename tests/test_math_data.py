"""Math data (GSM8K, MATH and plain formats; JSONL, JSON, Parquet), the r1gym/Math-v0 env, and the
``r1gym score`` / ``r1gym data check`` commands, all on small files written here."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import pytest

from r1gym.core.cli import main
from r1gym.envs import make
from r1gym.envs.base import SingleTurnEnv
from r1gym.plugins.math.data import MathSource

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "plugins" / "math" / "data" / "sample_math.jsonl"

RECORDS = [
    {"id": "eggs", "question": "Ducks lay 16 eggs; 3 are eaten and 4 baked. How many are left?",
     "answer": "16 - 3 - 4 = <<16-3-4=9>>9\n#### 9"},
    {"id": "half", "problem": "What is $\\frac{2}{4}$ in lowest terms?",
     "solution": "Divide by 2: $\\boxed{\\frac{1}{2}}$.", "level": "Level 1"},
    {"id": "roots", "problem": "Solve $x^2 = 4$.", "answer": "-2, 2"},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def data_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "mixed.jsonl", RECORDS)


def test_formats_are_detected_per_record(data_file):
    src = MathSource(data_file, id_field="id")
    assert [(t.id, t.meta["format"], t.fields["answer"]) for t in src.tasks] == [
        ("eggs", "gsm8k", "9"), ("half", "math", "\\frac{1}{2}"), ("roots", "plain", "-2, 2")]
    assert src[0].prompt.startswith("Ducks") and src[1].prompt.startswith("What is")


def test_explicit_format_and_fields(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"q": "1+1?", "sol": "It is 2.\n#### 2"}])
    src = MathSource(path, format="gsm8k", prompt_field="q", answer_field="sol", prompt_template="Q: {problem}")
    assert src[0].fields["answer"] == "2" and src[0].prompt == "Q: 1+1?"
    with pytest.raises(ValueError, match="#### <answer>"):
        MathSource(write_jsonl(tmp_path / "bad.jsonl", [{"question": "?", "answer": "2"}]), format="gsm8k")
    with pytest.raises(ValueError, match=r"bad2.jsonl:1: record has no field 'problem'.*its fields are \['q'\]"):
        MathSource(write_jsonl(tmp_path / "bad2.jsonl", [{"q": "?"}]), prompt_field="problem")
    with pytest.raises(ValueError, match="public info"):
        MathSource(path, meta_fields=["answer"])


def test_parquet_and_json(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"problem": "2+2?", "answer": "4"}]), tmp_path / "d.parquet")
    assert MathSource(tmp_path / "d.parquet")[0].fields["answer"] == "4"
    (tmp_path / "d.json").write_text(json.dumps([{"problem": "3+3?", "solution": "$\\boxed{6}$"}]))
    assert MathSource(tmp_path / "d.json")[0].fields["answer"] == "6"


def test_splits_are_disjoint_and_cover_the_file():
    train, test, everything = (MathSource(split=s, test_fraction=0.2) for s in ("train", "test", "all"))
    ids = lambda s: {t.id for t in s.tasks}  # noqa: E731
    assert ids(train).isdisjoint(ids(test)) and ids(train) | ids(test) == ids(everything)
    assert len(test) > 0 and len(train) > len(test)


def test_sample_file_mixes_formats_and_every_reference_parses():
    src = MathSource(id_field="id")
    assert len(src) >= 30
    assert {t.meta["format"] for t in src.tasks} == {"gsm8k", "math", "plain"}
    from r1gym.plugins.math.pool import default_checker

    problems = {t.id: default_checker().reference_problem(t.fields["answer"]) for t in src.tasks}
    assert not {k: v for k, v in problems.items() if v}


@pytest.mark.parametrize(("task_id", "right", "wrong"), [("eggs", "9", "10"), ("half", "0.5", "2/4 + 1"), ("roots", "2, -2", "2")])
def test_math_env_scores_gsm8k_math_and_plain_records(data_file, task_id, right, wrong):
    env = SingleTurnEnv({"name": "math", "path": str(data_file), "id_field": "id"}, {"math_accuracy": 1.0, "format": 0.1})
    index = [t.id for t in env.source.tasks].index(task_id)
    obs, info = env.reset(options={"index": index})
    assert info["task_id"] == task_id and "answer" not in info
    _, reward, terminated, _, step_info = env.step(f"<think> ok </think> <answer> {right} </answer>")
    assert reward == pytest.approx(1.1) and terminated and step_info["rewards"]["math_accuracy"] == 1.0
    env.reset(options={"index": index})
    _, reward, *_ = env.step(f"<think> ok </think> <answer> {wrong} </answer>")
    assert reward == pytest.approx(0.1)


def test_registered_env_reads_the_shipped_sample():
    env = make("r1gym/Math-v0")
    assert env.spec.id == "r1gym/Math-v0" and len(env.unwrapped.source) >= 30
    src = env.unwrapped.source
    gsm = next(i for i, t in enumerate(src.tasks) if t.meta["format"] == "gsm8k")
    env.reset(options={"index": gsm})
    _, reward, *_ = env.step(f"<think> ok </think> <answer> {src[gsm].fields['answer']} </answer>")
    assert reward == pytest.approx(1.1)
    assert "r1gym/Math-v0" in gymnasium.registry


def test_unscorable_reference_masks_the_sample(tmp_path):
    path = write_jsonl(tmp_path / "broken.jsonl", [{"problem": "?", "answer": "\\frac{1}{"}])
    env = SingleTurnEnv({"name": "math", "path": str(path)}, {"math_accuracy": 1.0})
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step("<answer> 1 </answer>")
    assert reward != reward and info["scorable"] is False  # nan: masked, not 0
    assert "does not parse" in info["unscorable"]["math_accuracy"]


# -- CLI ------------------------------------------------------------------------------------------------------
def test_score_command(tmp_path, capsys):
    records = [
        {"completion": "<answer> \\frac{1}{2} </answer>", "answer": "0.5", "id": 1},
        {"completion": "<answer> 3 </answer>", "answer": "4", "id": 2},
        {"completion": "<answer> 3 </answer>", "answer": "\\sqrt{", "id": 3},
    ]
    src, out = write_jsonl(tmp_path / "in.jsonl", records), tmp_path / "out.jsonl"
    assert main(["score", "math_accuracy", "--input", str(src), "--output", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["reward"]) for r in scored] == [(1, 1.0), (2, 0.0), (3, None)]
    assert scored[0]["reason"] is None and "does not parse" in scored[2]["reason"]
    assert scored[0]["completion"] == records[0]["completion"]  # the record is written back whole
    err = capsys.readouterr().err
    assert "3 records, 2 scored, mean 0.5, 1 cannot be scored" in err and "does not parse" in err


def test_score_command_params_and_errors(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"completion": "x" * 8}])
    assert main(["score", "overlong", "--input", str(src), "--param", "max_length=10", "--param", "cache=5"]) == 0
    assert json.loads(capsys.readouterr().out)["reward"] == pytest.approx(-0.6)
    assert main(["score", "overlong", "--input", str(src), "--param", "max_lenght=10"]) == 2
    assert "unknown parameter" in capsys.readouterr().err
    assert main(["score", "math_acuracy", "--input", str(src)]) == 2
    assert "Did you mean 'math_accuracy'" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"answer": "1"}])
    assert main(["score", "math_accuracy", "--input", str(bad)]) == 2
    assert "bad.jsonl:1: each record needs a 'completion' field" in capsys.readouterr().err


def test_data_check_passes_on_good_data(data_file, capsys):
    assert main(["data", "check", "env=math", f"env.kwargs.source.path={data_file}", "env.kwargs.source.split=all"]) == 0
    assert "3 ok, 0 with a problem" in capsys.readouterr().out


def test_data_check_reports_bad_gold_answers(tmp_path, capsys):
    records = RECORDS + [
        {"id": "broken", "problem": "?", "answer": "\\frac{1}{"},
        {"id": "nobox", "problem": "?", "solution": "the answer is 3"},
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    assert main(["data", "check", "env=math", f"env.kwargs.source.path={path}", "env.kwargs.source.split=all"]) == 1
    out = capsys.readouterr().out
    assert "3 ok, 2 with a problem" in out
    assert "broken: '\\\\frac{1}{': cannot be scored: reference answer does not parse" in out
    assert "nobox: '': cannot be scored: reference answer is empty" in out


def test_data_check_of_the_shipped_config_and_its_eval_split(capsys):
    assert main(["data", "check", "env=math"]) == 0
    assert main(["data", "check", "--eval", "env=math"]) == 0
    out = capsys.readouterr().out
    assert "(train data," in out and "(eval data," in out


def test_from_records_reads_records_in_memory_as_the_file_reads_them(data_file):
    from_file = MathSource(data_file, id_field="id")
    from_records = MathSource.from_records(iter(RECORDS), "mine", id_field="id")  # a generator will do
    assert [(t.id, t.prompt, t.fields, t.meta["format"]) for t in from_records] == [
        (t.id, t.prompt, t.fields, t.meta["format"]) for t in from_file]
    assert from_records[0].meta["source"] == "mine" and MathSource.from_records(RECORDS, "mine")[2].id == "mine-2"
    with pytest.raises(ValueError, match=r"^mine row 1: record has none of the prompt fields .* its fields are \['q'\]"):
        MathSource.from_records([RECORDS[0], {"q": "?"}], "mine")
    with pytest.raises(ValueError, match="format must be one of"):  # the constructor's checks, too
        MathSource.from_records(RECORDS, format="latex")
