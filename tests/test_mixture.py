"""Mixtures of envs (R1's RL for all scenarios) and prompt-only tasks for judges and reward models."""

from __future__ import annotations

from collections import Counter

import pytest

from r1gym.envs import make


def test_members_are_drawn_by_weight_and_an_index_pins_member_and_task():
    env = make("r1gym/Mixture-v0", envs=[{"id": "r1gym/Arithmetic-v0", "weight": 3.0},
                                        {"id": "r1gym/Countdown-v0", "weight": 1.0}], size=400).unwrapped
    shares = Counter(env.source.pairs[i][0] for i in range(len(env.source)))
    assert len(env.source) == 400 and shares == {0: 300, 1: 100}
    a, info_a = env.reset(options={"index": 7})
    b, info_b = env.reset(seed=99, options={"index": 7})
    assert a == b and info_a == info_b and info_a["member"] in ("Arithmetic-v0", "Countdown-v0")
    assert info_a["task_id"].startswith(info_a["member"] + "/")
    _, _, terminated, _, info = env.step("<think> hm </think> <answer> 1 </answer>")
    expected = {"Arithmetic-v0": "arithmetic", "Countdown-v0": "countdown"}[info_a["member"]]
    assert terminated and info["member"] == info_a["member"] and expected in info["rewards"]


def test_bad_mixtures_say_what_is_wrong():
    with pytest.raises(ValueError, match="at least one member"):
        make("r1gym/Mixture-v0", envs=[])
    with pytest.raises(ValueError, match="needs an 'id'"):
        make("r1gym/Mixture-v0", envs=[{"weight": 1.0}])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        make("r1gym/Mixture-v0", envs=[{"id": "r1gym/Arithmetic-v0", "weight": -1.0}])


def test_general_prompts_carry_the_question_for_the_judges_and_no_answer(tmp_path):
    env = make("r1gym/General-v0").unwrapped
    obs, info = env.reset(options={"index": 0})
    assert obs[-1]["content"] == env.task.fields["question"] and "answer" not in env.task.fields
    assert [c.name for c in env.reward_set.components] == ["helpfulness", "harmlessness"]
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "hi"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: record has no field 'prompt'.*fields are \['text'\]"):
        make("r1gym/General-v0", source={"name": "prompts", "path": str(path)})
