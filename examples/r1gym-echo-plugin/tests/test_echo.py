"""r1gym-echo against r1gym's contracts, with r1gym's pytest plugin (r1gym.testing): run ``python -m pytest``
here once the plugin is installed (``pip install -e .``)."""

from __future__ import annotations

import doctest

import r1gym_echo.tasks
from r1gym.testing import check_env, check_reward

ENV_ID = "echo/Reverse-v0"


def test_it_loads_with_its_parts(r1gym_host, r1gym_plugin_envs):
    assert r1gym_plugin_envs == [ENV_ID]
    assert "reverse_exact" in r1gym_host.rewards and "reverse_words" in r1gym_host.task_sources
    assert r1gym_host.plugins["echo"].api == "1.0"


def test_its_env_keeps_the_env_contract(r1gym_host, r1gym_plugin_envs):
    for env_id in r1gym_plugin_envs:
        check_env(env_id, host=r1gym_host)


def test_its_reward_keeps_the_reward_contract(r1gym_host):
    check_reward(
        "reverse_exact",
        [("<think> t-a-c </think> <answer> TAC </answer>", {"answer": "tac", "word": "cat"}, 1.0),
         ("<answer> cat </answer>", {"answer": "tac", "word": "cat"}, 0.0),
         ("tac", {"answer": "tac", "word": "cat"}, 0.0)],
        unscorable=[("<answer> tac </answer>", {"answer": ""})],
        host=r1gym_host,
    )
    check_reward("reverse_exact", [("<answer> TAC </answer>", {"answer": "tac"}, 0.0)],
                 params={"case_sensitive": True}, host=r1gym_host)


def test_an_episode_scores_the_reversed_word(make_env):
    env = make_env(ENV_ID)
    env.reset(seed=3)
    word = env.unwrapped.task.fields["word"]
    _, reward, terminated, _, info = env.step(f"<think> backwards </think> <answer> {word[::-1]} </answer>")
    assert info["rewards"] == {"reverse_exact": 1.0, "format": 1.0} and terminated


def test_docstring_examples():
    result = doctest.testmod(r1gym_echo.tasks)
    assert result.attempted >= 4 and result.failed == 0
