"""Built-in plugin: math problems, a verifier worth choosing on purpose, and length shaping.

Registers the task source ``math`` (JSONL/JSON/Parquet in plain, GSM8K or MATH format), the env
``r1gym/Math-v0`` (defaults to a small shipped sample), and the rewards ``math_accuracy`` (1/0, unscorable
when the reference does not parse or the check times out), ``overlong`` (DAPO) and ``cosine_length``
(Yeo et al.). Modules: ``extract`` (finding the final answer), ``normalize`` (answers as numbers, letters,
text or LaTeX; the exact fast path), ``verify`` (sympy equivalence), ``pool`` (worker processes with a hard
time limit, cache), ``rewards``, ``data``. Nothing heavy is imported here: sympy and math-verify load in the
pool's worker processes when a check needs them.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl

SAMPLE = "pkg://r1gym.plugins.math/data/sample_math.jsonl"


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.plugins.math.data import MathSource

    register("math", MathSource, description="math problems from JSONL/JSON/Parquet: plain, GSM8K (####) or MATH (\\boxed)")


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.math.rewards import cosine_length, math_accuracy, overlong

    register("math_accuracy", math_accuracy, description="1.0 if the final answer is mathematically equal to the reference")
    register("overlong", overlong, description="DAPO soft overlong punishment: 0 .. -1 over the last `cache` of max_length")
    register("cosine_length", cosine_length, description="cosine-scaled length reward by correctness (Yeo et al. 2025)")


@hookimpl
def r1gym_register_envs(register) -> None:
    register(
        "r1gym/Math-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={"source": {"name": "math", "path": SAMPLE, "id_field": "id"}, "rewards": {"math_accuracy": 1.0, "format": 0.1}},
        description="math problems (plain, GSM8K or MATH format), one answer per episode",
    )
