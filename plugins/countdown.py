"""Built-in plugin: the Countdown task (reach a target with + - * /), single-turn and with retries."""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl

REWARDS = {"countdown": 1.0, "format": 0.1}


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.envs.countdown import CountdownSource

    register("countdown", CountdownSource, description="procedural Countdown puzzles with a known solution")


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.envs.countdown import countdown_reward

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
        "r1gym.envs.countdown:CountdownRetryEnv",
        kwargs={"source": source, "rewards": REWARDS, "max_turns": 3},
        description="Countdown with feedback on a wrong equation and up to 3 tries",
    )
