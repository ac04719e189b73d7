"""Evaluation: pass@1 over k samples and cons@k (majority vote over graded answers), the answers rewards
attach, and `r1gym eval` end to end on a tiny model (files, checkpoint folders, the console table)."""

from __future__ import annotations

import json
import math
import time

import pytest

from r1gym.core.cli import main
from r1gym.core.evaluation import ProblemResult, summarize
from r1gym.core.rewards import Graded, RewardComponent, RewardSet


def _problem(correct, answers):
    return ProblemResult(0, correct=list(correct), answers=list(answers), lengths=[1] * len(correct))


def test_pass_at_1_averages_the_scorable_samples():
    assert _problem([1.0, 0.0, 1.0, 1.0], [None] * 4).pass_at_1 == 0.75
    assert _problem([1.0, None, 0.0], [None] * 3).pass_at_1 == 0.5  # the unscorable sample is left out
    assert _problem([None, None], [None] * 2).pass_at_1 is None


@pytest.mark.parametrize(
    ("correct", "answers", "cons"),
    [
        ([0.0, 0.0, 1.0], ["3", "3", "4"], 0.0),  # the majority is wrong, though one sample is right
        ([1.0, 0.0, 1.0, 0.0, 0.0], ["4", "3", "4", "5", None], 1.0),  # "4" twice beats "3" and "5" once
        ([0.0, 1.0, 1.0, 0.0], ["3", "4", "4", "3"], 0.0),  # a tie goes to the answer seen first
        ([0.0, 0.0], [None, None], 0.0),  # nobody answered
        ([None, None, 1.0], ["7", "7", "8"], None),  # the majority answer's verdict is unknown
    ],
)
def test_cons_at_k_is_the_verdict_of_the_majority_answer(correct, answers, cons):
    assert _problem(correct, answers).cons_at_k == cons


def test_summarize_averages_over_problems_and_reports_cons_only_with_voting():
    problems = [_problem([1.0, 1.0, 0.0, 0.0], ["2", "2", "3", "4"]), _problem([0.0, 0.0, 0.0, 1.0], ["1", "1", "5", "6"]),
                _problem([None] * 4, [None] * 4)]
    s = summarize(problems, voting=True)
    assert s["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert s["cons@4"] == pytest.approx(0.5)  # right on the first, wrong on the second; the third is left out
    assert s["problems"] == 3 and s["problems_unscorable"] == 1 and s["samples_unscorable"] == 4
    assert "cons@4" not in summarize(problems, voting=False)


def test_graded_answers_travel_from_reward_to_env_info():
    def accuracy(completion, *, answer):
        return Graded(float(completion.strip() == answer), answer=completion.strip())

    outcome = RewardSet([RewardComponent("acc", accuracy), RewardComponent("len", lambda c: 0.0)]).score(" 5 ", {"answer": "5"})
    assert outcome.total == 1.0 and outcome.answers == {"acc": "5"}

    from r1gym.envs import make

    env = make("r1gym/Math-v0")
    env.reset(options={"index": 0})
    answer = env.unwrapped.task.fields["answer"]
    _, reward, *_, info = env.step(f"<think>x</think><answer>{answer}</answer>")
    assert info["rewards"]["math_accuracy"] == 1.0 and info["answers"]["math_accuracy"] == answer
    wrong = str(int(answer) + 1)  # a wrong answer travels as well: it is what the completion said, not the reference
    env.reset(options={"index": 0})
    _, _, *_, info = env.step(f"<think>x</think><answer>{wrong}</answer>")
    assert info["rewards"]["math_accuracy"] == 0.0 and info["answers"]["math_accuracy"] == wrong


def test_math_answer_keys_put_equal_numbers_in_one_vote():
    from r1gym.plugins.math.rewards import math_accuracy

    keys = {math_accuracy(f"<answer>{a}</answer>", answer="1/2").answer for a in ("0.5", r"\frac{2}{4}", "x = 1/2")}
    assert keys == {"1/2"}
    assert math_accuracy("no answer here", answer="1/2").answer is None


def _eval_args(tiny_model_dir, tmp_path, *extra):
    return ["eval", f"model.name_or_path={tiny_model_dir}", "env=math", "rollout.max_new_tokens=6",
            "trainer.threads=1", "eval.samples=3", "logger=jsonl_only", f"run_dir={tmp_path / 'eval'}", *extra]


def test_r1gym_eval_writes_metrics_and_every_sample(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "mini.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(4)))
    started = time.perf_counter()
    assert main(_eval_args(tiny_model_dir, tmp_path, f"eval.datasets=['mini={data}']")) == 0
    wall = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "pass@1" in out and "cons@3" in out and "mini" in out
    run = tmp_path / "eval"
    results = json.loads((run / "eval.json").read_text())
    assert results["sampling"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 6, "greedy": False}
    m = results["datasets"]["mini"]
    assert m["problems"] == 4 and m["samples_per_problem"] == 3 and "cons@3" in m
    assert 0 < m["seconds"] <= wall  # the dataset's time was measured, inside the command
    rows = [json.loads(line) for line in (run / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["task_id"] for r in rows} == {"q0", "q1", "q2", "q3"}
    # pass@1 in eval.json is what the samples file says
    per_task: dict[str, list[float]] = {}
    for r in rows:
        per_task.setdefault(r["task_id"], []).append(r["correct"])
    assert m["pass@1"] == pytest.approx(sum(sum(v) / len(v) for v in per_task.values()) / 4)
    assert json.loads((run / "manifest.json").read_text())["kind"] == "eval"


def test_r1gym_eval_of_a_training_run_folder(tiny_model_dir, tmp_path, capsys):
    train_dir = tmp_path / "train"
    assert main(["train", f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "algo.prompts_per_step=1",
                 "algo.group_size=2", "rollout.max_new_tokens=4", "trainer.max_steps=1", "trainer.save_every=1",
                 "trainer.threads=1", "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only",
                 f"run_dir={train_dir}"]) == 0
    assert main(["eval", f"eval.checkpoint={train_dir}", "env=arithmetic", "rollout.max_new_tokens=4", "eval.samples=2",
                 "eval.num_problems=3", "trainer.threads=1", "logger=jsonl_only", f"run_dir={tmp_path / 'ev'}"]) == 0
    results = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert results["model"].endswith("step_000001")
    m = results["datasets"]["Arithmetic-v0 (eval split)"]
    assert m["problems"] == 3 and "cons@2" in m and not math.isnan(m["pass@1"])


def test_r1gym_eval_errors_say_what_to_do(tiny_model_dir, tmp_path, capsys):
    assert main(_eval_args(tiny_model_dir, tmp_path, f"eval.checkpoint={tmp_path / 'nope'}")) == 2
    assert "give a run folder or a checkpoint folder" in capsys.readouterr().err
    assert main(_eval_args(tiny_model_dir, tmp_path, "resume=x")) == 2
    assert "eval.checkpoint=RUN_DIR" in capsys.readouterr().err
