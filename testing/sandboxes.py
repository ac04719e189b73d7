"""The sandbox conformance suite, for a sandbox backend's own CI.

The suite itself (hostile programs, planted secrets, host checks) is the code plugin's
:mod:`r1gym.plugins.code.conformance`, which ``r1gym sandbox check`` runs; this module gives it to plugins
under a stable name, so a backend registered through ``r1gym_register_sandboxes`` is held to the same attacks
as ``local`` and ``e2b``::

    from r1gym.testing import check_sandbox

    def test_my_backend_resists_the_attacks():
        check_sandbox(MySandbox(), host_checks=False)   # host_checks=True when it runs on this machine
"""

from __future__ import annotations

from collections.abc import Sequence

from r1gym.core.contracts import Sandbox
from r1gym.plugins.code.conformance import (
    ATTACKS,
    CATEGORIES,
    Attack,
    Outcome,
    Planted,
    check_attack,
    plant,
    run_conformance,
    strays,
)

__all__ = ["ATTACKS", "CATEGORIES", "Attack", "Outcome", "Planted", "check_attack", "check_sandbox", "plant",
           "run_conformance", "strays"]


def check_sandbox(sandbox: Sandbox, attacks: Sequence[Attack] | Sequence[str] | None = None, *,
                  host_checks: bool = False, project_dir: str | None = None) -> None:
    """Run the conformance suite (or the ``attacks`` named or given) through ``sandbox``; raise
    ``AssertionError`` naming each attack that got through and why. ``host_checks``: also check this machine
    after each attack (stray processes, files left, memory), for a backend that runs programs locally. Attacks
    marked as known weaknesses (``xfail_reason``) are run and not counted."""
    chosen = list(ATTACKS) if attacks is None else [a if isinstance(a, Attack) else _attack(a) for a in attacks]
    failures = run_conformance(sandbox, chosen, host_checks=host_checks, project_dir=project_dir)
    if failures:
        raise AssertionError(f"{len(failures)} of {len(chosen)} attacks got through {type(sandbox).__name__}:\n- "
                             + "\n- ".join(failures))


def _attack(name: str) -> Attack:
    from r1gym.core.registry import pick

    return pick({a.name: a for a in ATTACKS}, name, "attack")
