"""Code plugin (issue #5): running untrusted programs safely, and rewards and environments built on it.

* :mod:`.sandbox`: the ``local`` backend of the :class:`r1gym.core.contracts.Sandbox` protocol (bubblewrap
  or unshare only with allow_weak_isolation, rlimits, a uid per run), ``SandboxPool``;
* :mod:`.e2b`: the ``e2b`` backend (E2B cloud sandboxes; extra ``[e2b]``, ``E2B_API_KEY``);
* :mod:`.rewards`: ``code_tests`` and ``code_format``;
* :mod:`.data`: the task source ``code`` (r1gym, HumanEval, MBPP and CodeContests formats);
* the envs ``r1gym/Code-v0`` (one completion per task, scored by the task's tests) and
  ``r1gym/CodeExec-v0`` (:mod:`.envs`: several turns, running code and seeing failing example tests),
  defaulting to a small sample of our own.
* :mod:`.commands`: ``r1gym sandbox run`` and ``r1gym sandbox check``, added to the CLI through a hook.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


def _local(**params):
    from r1gym.plugins.code.sandbox import LocalSandbox

    return LocalSandbox(**params)


def _e2b(**params):
    from r1gym.plugins.code.e2b import E2BSandbox

    return E2BSandbox(**params)


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.code.rewards import code_format, code_tests

    register("code_tests", code_tests, description="share (or all) of the task's tests the last code block passes, sandboxed")
    register("code_format", code_format, description="1.0 for a fenced code block of the language")


SAMPLE = "pkg://r1gym.plugins.code/data/sample_code.jsonl"


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.plugins.code.data import CodeSource

    register("code", CodeSource, description="programming tasks with tests: r1gym, HumanEval, MBPP or CodeContests format")


@hookimpl
def r1gym_register_envs(register) -> None:
    register(
        "r1gym/Code-v0",
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={"source": {"name": "code", "path": SAMPLE}, "rewards": {"code_tests": 1.0, "code_format": 0.1}},
        description="programming tasks with tests (r1gym, HumanEval, MBPP, CodeContests JSONL), scored by running them",
    )
    register(
        "r1gym/CodeExec-v0",
        "r1gym.plugins.code.envs:CodeExecEnv",
        kwargs={"source": {"name": "code", "path": SAMPLE}, "rewards": {"code_tests": 1.0, "code_format": 0.1},
                "max_turns": 4},
        description="multi-turn programming: run code and see the output or the failing example test, then submit",
    )


@hookimpl
def r1gym_register_sandboxes(register) -> None:
    register("local", _local, description="bubblewrap: a read-only minimal view, namespaces, rlimits, a host-unique uid per run")
    register("e2b", _e2b, description="a fresh E2B cloud sandbox per run (pip install 'r1gym[e2b]', E2B_API_KEY)")


@hookimpl
def r1gym_register_cli_commands(register) -> None:
    from r1gym.plugins.code.commands import check_arguments, run_arguments, sandbox_check, sandbox_run

    register("sandbox run", sandbox_run, arguments=run_arguments,
             description="run a program in the sandbox and print the result as JSON")
    register("sandbox check", sandbox_check, arguments=check_arguments,
             description="run the conformance suite of hostile programs against a sandbox backend; exit 1 if any attack got through")
