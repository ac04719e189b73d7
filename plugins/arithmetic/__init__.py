"""Built-in plugin: procedural integer arithmetic, the smallest task that exercises the whole GRPO loop.

A task family laid out as every one is (README, "Task families"): :mod:`.data` (the task source),
:mod:`.rewards` (its reward); the env is the generic single-turn one.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.plugins.arithmetic.data import ArithmeticSource

    register("arithmetic", ArithmeticSource, description="procedural integer expressions such as 7 + 3 * 4")


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.arithmetic.rewards import arithmetic_reward

    register("arithmetic", arithmetic_reward, description="1.0 if the number in <answer> equals the reference")


@hookimpl
def r1gym_register_envs(register) -> None:
    register(
        "r1gym/Arithmetic-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={"source": {"name": "arithmetic"}, "rewards": {"arithmetic": 1.0, "format": 0.1}},
        description="integer arithmetic, one answer per episode",
    )
