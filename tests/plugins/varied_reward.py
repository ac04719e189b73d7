"""A test-only plugin module, loaded through R1GYM_PLUGINS=varied_reward (with this folder on PYTHONPATH).

Its reward varies with any text, so GRPO on a tiny random model gets non-zero advantages and real
gradients: the end-to-end resume test then compares trajectories that actually move.
"""

from r1gym.core.hookspecs import hookimpl


def char_variety(completion: str) -> float:
    """Share of distinct characters: ``char_variety("aab") == 2/3``; 0.0 for an empty completion."""
    return len(set(completion)) / len(completion) if completion else 0.0


@hookimpl
def r1gym_register_rewards(register):
    register("char_variety", char_variety, description="test-only: share of distinct characters")
