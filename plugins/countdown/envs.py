"""The multi-turn Countdown env: a wrong equation gets a verdict and another try."""

from __future__ import annotations

from r1gym.envs.base import MultiTurnEnv, Task
from r1gym.plugins.countdown.rewards import check_countdown


class CountdownRetryEnv(MultiTurnEnv):
    """Countdown with retries: a wrong equation is answered with what is wrong, up to ``max_turns`` tries.

    Trains the model to use feedback (R1-style "aha" behaviour in the open), and the scored reward is that
    of the last attempt, so a correction after feedback earns as much as a first-time solution.
    """

    def feedback(self, task: Task, completion: str) -> str | None:
        problem = check_countdown(completion, task.fields["numbers"], task.fields["target"])
        if problem is None:
            return None
        return f"{problem} Try again, and give the final equation in <answer> </answer> tags."
