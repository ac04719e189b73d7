"""r1gym.testing: what a plugin's own CI runs to show it keeps r1gym's contracts.

A pytest plugin (entry point ``r1gym`` of the group ``pytest11``, loaded by pytest whenever r1gym is installed)
with fixtures (:mod:`r1gym.testing.plugin`): ``r1gym_host`` (the plugins as ``r1gym`` loads them, with the plugin
under test required to have loaded), ``r1gym_plugin_envs`` (the env ids it registers) and ``make_env``; and
the conformance checks, plain functions that raise ``AssertionError`` listing every violation:

* :func:`check_env`: gymnasium's ``check_env``, seeded determinism, pinned tasks, the step contract;
* :func:`check_reward`: the reward contract: numbers in range or "cannot be scored" (``None`` /
  :class:`~r1gym.core.rewards.Unscorable`) where it must be, deterministic, thread safe, fast, never
  mutating its inputs, and robust to empty, garbage and huge completions;
* :func:`check_sandbox`: the sandbox conformance suite of hostile programs, for a sandbox backend
  (:mod:`r1gym.testing.sandboxes` re-exports the suite itself).

A plugin's test file, in full (``r1gym plugin new`` writes one like it)::

    from r1gym.testing import check_env, check_reward

    def test_envs(r1gym_plugin_envs, r1gym_host):
        for env_id in r1gym_plugin_envs:
            check_env(env_id, host=r1gym_host)

    def test_reward(r1gym_host):
        check_reward("my_reward", [("<answer> 4 </answer>", {"answer": "4"}, 1.0)], host=r1gym_host,
                     unscorable=[("<answer> 4 </answer>", {})])

This module imports nothing heavy (pytest imports it in every session): each check lives in its own module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_env", "check_reward", "check_sandbox"]
_WHERE = {"check_env": "envs", "check_reward": "rewards", "check_sandbox": "sandboxes"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; it has {', '.join(__all__)}")
