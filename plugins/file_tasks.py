"""Built-in plugin: tasks from a user's JSONL file and envs over them; general prompts; mixtures of envs.

``r1gym/Dataset-v0`` defaults to a small arithmetic sample shipped with r1gym so that it works with no
arguments; point it at your data with ``gymnasium.make("r1gym/Dataset-v0", source={"name": "jsonl",
"path": "my.jsonl"}, rewards={...})``.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl

SAMPLE = "pkg://r1gym.envs/data/sample_arithmetic.jsonl"


GENERAL = "pkg://r1gym.envs/data/general_prompts.jsonl"
#: R1's all-scenario rewards for general prompts: helpfulness on the final summary, harmlessness on everything
GENERAL_REWARDS = {
    "helpfulness": {"reward": "llm_judge", "weight": 1.0, "template": "helpfulness", "span": "summary", "mode": "choose"},
    "harmlessness": {"reward": "llm_judge", "weight": 1.0, "template": "harmlessness", "span": "all", "mode": "choose"},
}


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.envs.datasets import JsonlSource, PromptSource

    register("jsonl", JsonlSource, description="one task per line of a JSONL file (prompt + answer fields)")
    register("prompts", PromptSource, description="prompts with no reference answer (for judges and reward models)")


@hookimpl
def r1gym_register_envs(register) -> None:
    register(
        "r1gym/Dataset-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={
            "source": {"name": "jsonl", "path": SAMPLE, "id_field": "id", "meta_fields": ["level"]},
            "rewards": {"arithmetic": 1.0, "format": 0.1},
        },
        description="prompts and answers from a JSONL file (default: a shipped arithmetic sample)",
    )
    register(
        "r1gym/General-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={"source": {"name": "prompts", "path": GENERAL, "id_field": "id"}, "rewards": GENERAL_REWARDS,
                "system_prompt": "none"},
        description="general prompts scored by judges: helpfulness of the summary, harmlessness of it all",
    )
    register(
        "r1gym/Mixture-v0",
        "r1gym.envs.mixture:MixtureEnv",
        kwargs={"envs": [{"id": "r1gym/Arithmetic-v0", "weight": 0.5}, {"id": "r1gym/General-v0", "weight": 0.5}]},
        description="several envs drawn by weight (R1's RL for all scenarios: reasoning + general prompts)",
    )
