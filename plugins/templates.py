"""Built-in plugin: rewards for the R1 output template (``<think> … </think> <answer> … </answer>``)."""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.envs.rewards import format_reward, tag_count_reward

    register("format", format_reward, description="1.0 if the completion is <think>…</think> <answer>…</answer>")
    register("tag_count", tag_count_reward, description="0.25 per template tag used exactly once")
