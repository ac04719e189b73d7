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
    register("flaky_parity", flaky_parity, description="test-only: raises on odd-length completions")
    register("flags_even", flags_even, description="test-only: flags even-length completions as a hack pattern")
    register("sandbox_down", sandbox_down, description="test-only: cannot score anything (a dead sandbox)")


def flaky_parity(completion: str) -> float:
    """Raises on completions of odd length (about half of them); else the share of distinct characters.

    Stands in for a checker that crashes on some inputs: the trainer must count and mask these samples.
    """
    if len(completion) % 2:
        raise RuntimeError("checker crashed: odd input")
    return char_variety(completion)


def flags_even(completion: str) -> float:
    """The share of distinct characters, flagged ``hack_pattern`` on even-length completions: stands in for a
    grader that notices a trick (the code harness does), so the trainer must count and show it."""
    from r1gym.core.rewards import Graded

    return Graded(char_variety(completion), flags=("hack_pattern",) if len(completion) % 2 == 0 else ())


def sandbox_down(completion: str) -> float:
    """Never scores: stands in for a reward whose sandbox died mid-run."""
    from r1gym.core.rewards import Unscorable

    raise Unscorable("sandbox error: bwrap: Creating new namespace failed")
