"""Built-in plugin: tasks from a user's JSONL file, and an env over it.

``r1gym/Dataset-v0`` defaults to a small arithmetic sample shipped with r1gym so that it works with no
arguments; point it at your data with ``gymnasium.make("r1gym/Dataset-v0", source={"name": "jsonl",
"path": "my.jsonl"}, rewards={...})``.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl

SAMPLE = "pkg://r1gym.envs/data/sample_arithmetic.jsonl"


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.envs.datasets import JsonlSource

    register("jsonl", JsonlSource, description="one task per line of a JSONL file (prompt + answer fields)")


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
