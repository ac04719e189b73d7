"""The whole plugin contract of r1gym: every hook a plugin may implement.

This module only *declares*. Each hook receives a ``register`` callback and calls it once per thing it
contributes, so a hook never returns values that the caller must merge, and a plugin contributes many
things from one function. All hooks are called once per process, when the plugin host is built
(:func:`r1gym.core.plugins.load_plugins`), in plugin registration order (built-ins first, then entry
points of the group ``r1gym``). An implementation may accept fewer arguments than its spec, so hooks can
gain arguments later without breaking old plugins. An implementation whose name starts with ``r1gym_``
but matches no hook below is an error that marks its plugin as failed.

Implement hooks with :data:`hookimpl`::

    from r1gym.core.hookspecs import hookimpl

    @hookimpl
    def r1gym_register_rewards(register):
        register("shouting", lambda completion, **_: float(completion.isupper()), description="all caps")
"""

from __future__ import annotations

import pluggy

PROJECT = "r1gym"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def r1gym_register_envs(register) -> None:
    """Register gymnasium environments.

    Call ``register(env_id, entry_point, *, kwargs=None, description="")`` once per environment.
    ``env_id`` is a versioned gymnasium id such as ``"r1gym/Countdown-v0"`` (namespace, name, version);
    ``entry_point`` is a lazy ``"package.module:ClassName"`` string, so registering imports nothing heavy.
    The env lands in gymnasium's own registry: ``gymnasium.make(env_id)`` works afterwards.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def r1gym_register_rewards(register) -> None:
    """Register reward functions by name.

    Call ``register(name, fn, *, description="")``. ``fn(completion: str, **fields) -> float | None`` gets
    the completion text and, by keyword, the task's fields and the reward's parameters from config; it may
    declare only the keywords it needs. Return ``None`` or raise :class:`r1gym.core.rewards.Unscorable` when
    the completion cannot be scored (a crashed or timed-out checker): that is counted and logged, never 0.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def r1gym_register_task_sources(register) -> None:
    """Register task sources (procedural generators, dataset loaders) by name.

    Call ``register(name, factory, *, description="")``; ``factory(**params)`` returns an object with
    ``__len__`` and ``__getitem__(index) -> r1gym.envs.base.Task``.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def r1gym_register_rollout_backends(register) -> None:
    """Register rollout (generation) backends by name.

    Call ``register(name, factory, *, description="")``; ``factory(model, tokenizer, **params)`` returns an
    object implementing :class:`r1gym.core.rollout.RolloutBackend`.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def r1gym_register_sandboxes(register) -> None:
    """Register code sandboxes by name (``local``, ``e2b``, ...).

    Call ``register(name, factory, *, description="")``; ``factory(**params)`` returns an object implementing
    :class:`r1gym.core.contracts.Sandbox` (``run(program, limits) -> RunResult``).

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.2
    """


@hookspec
def r1gym_register_judges(register) -> None:
    """Register LLM-judge backends by name (``local``, ``openai``, ...).

    Call ``register(name, factory, *, description="")``; ``factory(**params)`` returns an object implementing
    :class:`r1gym.core.contracts.ChatBackend` (``chat(messages, *, max_tokens, temperature) -> str``),
    the model a judge sends its prompts to.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.3
    """


@hookspec
def r1gym_register_loggers(register) -> None:
    """Register loggers/callbacks by name.

    Call ``register(name, factory, *, description="")``; ``factory(run_dir, **params)`` returns an object
    implementing :class:`r1gym.core.loggers.Logger` (called at run start, after every step with the step's
    metrics and samples, and at run end).

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def r1gym_register_config_dirs(register) -> None:
    """Add config folders to Hydra's search path.

    Call ``register(path)`` with a Hydra search-path URL: ``"pkg://my_plugin.conf"`` for a package shipped as
    package data, or ``"file:///abs/path"``. Their groups merge with r1gym's own ``conf/``, so a plugin that
    ships ``conf/env/my_env.yaml`` makes ``r1gym train env=my_env`` work after ``pip install``.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 0.1
    """
