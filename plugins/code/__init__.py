"""Code plugin (issue #5, in progress): running untrusted programs safely.

So far: :mod:`.sandbox` (the ``Sandbox`` protocol, ``RunResult`` statuses, the ``local`` backend under
bubblewrap or unshare, ``SandboxPool``), registered as the sandbox ``local``; ``r1gym sandbox run``; the
rewards ``code_tests`` and ``code_format`` (:mod:`.rewards`). Still to come: the ``e2b`` backend and the
code envs (``r1gym/Code-v0``, ``r1gym/CodeExec-v0``) with a sample task set.
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


@hookimpl
def r1gym_register_sandboxes(register) -> None:
    register("local", _local, description="Linux namespaces (bubblewrap, else unshare) + rlimits, as uid 65534")
