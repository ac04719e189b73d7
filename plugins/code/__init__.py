"""Code plugin (issue #5, in progress): running untrusted programs safely.

So far: :mod:`.sandbox` (the ``Sandbox`` protocol, ``RunResult`` statuses, the ``local`` backend under
bubblewrap or unshare, ``SandboxPool``), registered as the sandbox ``local``, and ``r1gym sandbox run``.
Still to come: the ``e2b`` backend, the ``code_tests``/``code_format`` rewards and the code envs.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


def _local(**params):
    from r1gym.plugins.code.sandbox import LocalSandbox

    return LocalSandbox(**params)


@hookimpl
def r1gym_register_sandboxes(register) -> None:
    register("local", _local, description="Linux namespaces (bubblewrap, else unshare) + rlimits, as uid 65534")
