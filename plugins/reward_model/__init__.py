"""Built-in plugin: scalar reward models (issue #6) -- R1's helpfulness and harmlessness rewards.

Registers the reward ``reward_model`` (:mod:`.model`): any ``AutoModelForSequenceClassification`` from a local
folder, batched across the reward threads, scored on the span the config names.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.reward_model.model import reward_model

    register("reward_model", reward_model, description="a sequence-classification reward model's score of a span")
