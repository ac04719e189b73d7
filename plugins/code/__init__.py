"""Code plugin (issue #5, in progress): running untrusted programs safely.

So far: :mod:`.sandbox` (the ``Sandbox`` protocol, ``RunResult`` statuses, the ``local`` backend under
bubblewrap or unshare, ``SandboxPool``), registered as the sandbox ``local``; ``r1gym sandbox run``; the
rewards ``code_tests`` and ``code_format`` (:mod:`.rewards`); the env ``r1gym/Code-v0`` (one completion
per task, scored by the task's tests) over JSONL tasks, defaulting to a small sample of our own. Still to
come: the ``e2b`` backend and the multi-turn ``r1gym/CodeExec-v0``.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


def _local(**params):
    from r1gym.plugins.code.sandbox import LocalSandbox

    return LocalSandbox(**params)


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.code.rewards import code_format, code_tests

    register("code_tests", code_tests, description="share (or all) of the task's tests the last code block passes, sandboxed")
    register("code_format", code_format, description="1.0 for a fenced code block of the language")


SAMPLE = "pkg://r1gym.plugins.code/data/sample_code.jsonl"


@hookimpl
def r1gym_register_envs(register) -> None:
    register(
        "r1gym/Code-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={
            "source": {"name": "jsonl", "path": SAMPLE, "answer_field": "solution", "id_field": "id",
                       "fields": ["tests", "language", "setup"]},
            "rewards": {"code_tests": 1.0, "code_format": 0.1},
        },
        description="programming tasks (JSONL: prompt, reference solution, tests), scored by running the tests",
    )


@hookimpl
def r1gym_register_sandboxes(register) -> None:
    register("local", _local, description="Linux namespaces (bubblewrap, else unshare) + rlimits, as uid 65534")
