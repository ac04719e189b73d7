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


MEMBER_ENVS = '''
from r1gym.envs.base import SingleTurnEnv

ROWS = "pkg://r1gym.envs/data/sample_arithmetic.jsonl"


class SumsEnv(SingleTurnEnv):
    """A user's env in a file of their own: arithmetic from the shipped sample, scored by the arithmetic reward."""

    def __init__(self, **kwargs):
        super().__init__(source={"name": "jsonl", "path": ROWS, "id_field": "id"}, rewards={"arithmetic": 1.0},
                         **kwargs)
'''


def test_members_take_the_entry_point_forms_env_id_takes(tmp_path):
    """A member's id is any form ``env.id`` takes: a registered id, a ``path/to/envs.py:MyEnv`` file (named by
    its class) or a ``package.module:MyEnv`` entry point with its kwargs; a plain gymnasium env is refused."""
    path = tmp_path / "mix_member_envs.py"
    path.write_text(MEMBER_ENVS)
    env = make("r1gym/Mixture-v0", envs=[
        {"id": "r1gym/Countdown-v0", "weight": 1.0},
        {"id": f"{path}:SumsEnv", "weight": 1.0},
        {"id": "r1gym.envs.base:SingleTurnEnv", "name": "plain", "weight": 2.0,
         "kwargs": {"source": {"name": "jsonl", "path": "pkg://r1gym.envs/data/sample_arithmetic.jsonl"},
                    "rewards": {"arithmetic": 1.0}}},
    ], size=40).unwrapped
    assert env.names == ["Countdown-v0", "SumsEnv", "plain"]
    assert Counter(k for k, _ in env.source.pairs) == {0: 10, 1: 10, 2: 20}
    index = next(i for i, (k, _) in enumerate(env.source.pairs) if k == 1)
    _, info = env.reset(options={"index": index})
    answer = env.members[1].task.fields["answer"]
    _, reward, *_, step_info = env.step(f"<think> sum </think> <answer> {answer} </answer>")
    assert info["member"] == "SumsEnv" and info["task_id"].startswith("SumsEnv/") and reward == 1.0
    assert step_info["rewards"] == {"arithmetic": 1.0}
    with pytest.raises(TypeError, match="mixture member 'gymnasium.envs.classic_control:CartPoleEnv' is a "
                                        "CartPoleEnv, which has no task source"):
        make("r1gym/Mixture-v0", envs=[{"id": "gymnasium.envs.classic_control:CartPoleEnv"}])
