"""Built-in plugin: the Countdown task (reach a target with + - * /), single-turn and with retries.

A task family laid out as every one is (README, "Task families"): :mod:`.data` (the task source),
:mod:`.rewards` (its reward and the checker the retry env's feedback shares), :mod:`.envs` (the retry env).
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl

REWARDS = {"countdown": 1.0, "format": 0.1}


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.plugins.countdown.data import CountdownSource

    register("countdown", CountdownSource, description="procedural Countdown puzzles with a known solution")


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.countdown.rewards import countdown_reward

    register("countdown", countdown_reward, description="1.0 if the <answer> equation uses each number once, = target")


@hookimpl
def r1gym_register_envs(register) -> None:
    source = {"name": "countdown"}
    register(
        "r1gym/Countdown-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={"source": source, "rewards": REWARDS},
        description="Countdown, one answer per episode",
    )
    register(
        "r1gym/CountdownRetry-v0",
        "r1gym.plugins.countdown.envs:CountdownRetryEnv",
        kwargs={"source": source, "rewards": REWARDS, "max_turns": 3},
        description="Countdown with feedback on a wrong equation and up to 3 tries",
    )
