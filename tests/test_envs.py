"""Every registered env (parametrized over the plugin registry, so new envs are covered automatically):
gymnasium's own checker, seeded determinism, no answer in ``info``, episodes that end, token-limit truncation."""

from __future__ import annotations

import math
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

from r1gym.core.plugins import default_host
from r1gym.envs.base import Completion

ENV_IDS = sorted(default_host().envs)


def make(env_id: str) -> gymnasium.Env:
    return gymnasium.make(env_id).unwrapped


def test_builtin_envs_are_registered():
    assert {"r1gym/Countdown-v0", "r1gym/CountdownRetry-v0", "r1gym/Arithmetic-v0", "r1gym/Dataset-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The one warning we cannot avoid honestly: gymnasium asks every render mode for an fps, which a
        # text transcript ("ansi") does not have; declaring a made-up fps would only silence the checker.
        warnings.filterwarnings("ignore", message=r".*No render fps was declared")
        check_env(make(env_id))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_observation_and_info(env_id):
    obs_a, info_a = make(env_id).reset(seed=7)
    obs_b, info_b = make(env_id).reset(seed=7)
    assert obs_a == obs_b and info_a == info_b
    # and the seed matters (over a few seeds at least one task differs)
    others = [make(env_id).reset(seed=s)[1]["task_id"] for s in range(8, 12)]
    assert any(task_id != info_a["task_id"] for task_id in others)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_options_index_pins_the_task_regardless_of_seed(env_id):
    env = make(env_id)
    obs_a, info_a = env.reset(seed=1, options={"index": 3})
    obs_b, info_b = make(env_id).reset(seed=999, options={"index": 3})
    assert obs_a == obs_b and info_a == info_b
    assert info_a["index"] == 3
    with pytest.raises(IndexError):
        env.reset(options={"index": len(env.source)})


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_text_same_reward(env_id):
    text = "<think> 1 + 2 = 3 </think> <answer> 3 </answer>"
    results = []
    for _ in range(2):
        env = make(env_id)
        env.reset(seed=5)
        results.append(env.step(text))
    (obs_a, r_a, term_a, trunc_a, info_a), (obs_b, r_b, term_b, trunc_b, info_b) = results
    assert r_a == r_b and (term_a, trunc_a) == (term_b, trunc_b) and info_a == info_b and obs_a == obs_b
    assert info_a["scorable"], "built-in tasks always have a scorable answer"


def _leaks(secret: object, public: object) -> bool:
    """Whether a public info value gives away a secret task field.

    Equal values leak. Small integers (< 10) are exempt from equality: they coincide with public counts
    such as ``difficulty`` by chance. A string secret of 3+ characters also leaks when it appears inside a
    public string (an id built from the answer)."""
    if isinstance(secret, (int, str)) and str(secret).lstrip("-").isdigit() and abs(int(secret)) < 10:
        return False
    if secret == public or str(secret) == str(public):
        return True
    return isinstance(secret, str) and isinstance(public, str) and len(secret) >= 3 and secret in public


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_info_never_contains_the_answer(env_id):
    env = make(env_id)
    for seed in range(20):
        _, info = env.reset(seed=seed)
        fields = dict(env.task.fields)
        assert not set(fields) & set(info), f"task fields {set(fields) & set(info)} copied into info"
        public = {k: v for k, v in info.items() if k != "index"}  # the caller's own index is not task data
        leaks = [(f, k) for f, v in fields.items() for k, p in public.items() if _leaks(v, p)]
        assert not leaks, f"info gives away task fields: {leaks} (info={info})"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sampled_actions_run_to_the_end(env_id):
    env = make(env_id)
    env.reset(seed=3)
    env.action_space.seed(3)
    for step in range(1, 51):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs in env.observation_space and isinstance(reward, float)  # gymnasium's type; its value next:
        # the reward is the weighted sum of the components that info reports (none before the last turn), or
        # the configured stand-in when a weighted component could not score the text
        if info["scorable"]:
            weights = {c.name: c.weight for c in env.reward_set.components}
            assert reward == pytest.approx(sum(weights[k] * (v or 0.0) for k, v in info["rewards"].items()))
        else:  # masked (NaN) or the configured score (a mixture has no stand-in of its own)
            assert math.isnan(reward) or reward == getattr(env, "unscorable_score", math.nan)
        if terminated or truncated:
            break
    assert terminated or truncated, "episode did not end within 50 steps"
    assert step <= getattr(env, "max_turns", 1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_completion_cut_by_the_token_limit_is_truncated(env_id):
    env = make(env_id)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(Completion("<think> let me see, first I", "length"))
    assert truncated is True and terminated is False
    assert "rewards" in info


def test_r1gym_make_loads_plugins_and_names_unknown_ids():
    from r1gym.core.registry import UnknownNameError
    from r1gym.envs import make

    env = make("r1gym/Arithmetic-v0")
    obs, info = env.reset(seed=0)
    assert obs[-1]["role"] == "user" and "task_id" in info
    with pytest.raises(UnknownNameError, match="Did you mean 'r1gym/Arithmetic-v0'"):
        make("r1gym/Arithmetc-v0")
