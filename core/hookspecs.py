"""The whole plugin contract of r1gym: every hook a plugin may implement.

This module only *declares*. Each hook receives a ``register`` callback and calls it once per thing it
contributes, so a hook never returns values that the caller must merge, and a plugin contributes many
things from one function. All hooks are called when a plugin host is built
(:func:`r1gym.core.plugins.load_plugins`), in plugin registration order (built-ins first, then entry
points of the group ``r1gym``); :func:`r1gym_register_envs` is also called alone at ``import r1gym.envs``. An implementation may accept fewer arguments than its spec, so hooks can
gain arguments later without breaking old plugins. An implementation whose name starts with ``r1gym_``
but matches no hook below is an error that marks its plugin as failed.

Each ``register`` callback has a type declared here (:class:`RegisterReward`, :class:`RegisterSandbox`, ...) and
named in its hook's annotation; the host checks every call against it, so a call with a missing or unknown
argument fails its plugin with a message that shows the right call. The contracts those callbacks take are
core types (:mod:`r1gym.core.contracts`, :mod:`r1gym.core.rollout`, :mod:`r1gym.core.loggers`,
:mod:`r1gym.core.rewards`; tasks: :mod:`r1gym.envs.base`), never a built-in plugin's.

The contract has a version, :data:`API_VERSION` (``MAJOR.MINOR``). A plugin module says which one it was
written for with a module attribute ``R1GYM_API = "1.0"``; the host loads it when the major versions are
equal and the plugin's minor is not newer than r1gym's (a minor adds hooks or ``register`` arguments, a
major removes or changes them), and otherwise records it as failed, naming both versions. Each hook's
``versionadded`` below is the API version that introduced it.

Implement hooks with :data:`hookimpl`::

    from r1gym.core.hookspecs import hookimpl

    R1GYM_API = "1.0"

    @hookimpl
    def r1gym_register_rewards(register):
        register("shouting", lambda completion, **_: float(completion.isupper()), description="all caps")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:  # annotations only: declaring the contract imports none of its implementations
    import argparse

    from r1gym.core.contracts import ChatBackend, Sandbox
    from r1gym.core.loggers import Logger
    from r1gym.core.plugins import PluginHost
    from r1gym.core.rewards import RewardFn
    from r1gym.core.rollout import RolloutBackend
    from r1gym.envs.base import TaskSource

PROJECT = "r1gym"
#: the version of this contract (``MAJOR.MINOR``) that plugins declare they target with ``R1GYM_API``;
#: 1.0 is the contract of r1gym 0.1.0, every hook below included
API_VERSION = "1.0"
#: the module attribute a plugin declares its target API version in
API_ATTRIBUTE = "R1GYM_API"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class RegisterEnv(Protocol):
    """The ``register`` of :func:`r1gym_register_envs`."""

    def __call__(self, env_id: str, entry_point: str, *, kwargs: Mapping[str, Any] | None = None,
                 description: str = "") -> None: ...


class RegisterReward(Protocol):
    """The ``register`` of :func:`r1gym_register_rewards`."""

    def __call__(self, name: str, fn: RewardFn, *, description: str = "") -> None: ...


class RegisterTaskSource(Protocol):
    """The ``register`` of :func:`r1gym_register_task_sources`."""

    def __call__(self, name: str, factory: Callable[..., TaskSource], *, description: str = "") -> None: ...


class RegisterRolloutBackend(Protocol):
    """The ``register`` of :func:`r1gym_register_rollout_backends`."""

    def __call__(self, name: str, factory: Callable[..., RolloutBackend], *, description: str = "") -> None: ...


class RegisterSandbox(Protocol):
    """The ``register`` of :func:`r1gym_register_sandboxes`."""

    def __call__(self, name: str, factory: Callable[..., Sandbox], *, description: str = "") -> None: ...


class RegisterJudge(Protocol):
    """The ``register`` of :func:`r1gym_register_judges`."""

    def __call__(self, name: str, factory: Callable[..., ChatBackend], *, description: str = "") -> None: ...


class RegisterLogger(Protocol):
    """The ``register`` of :func:`r1gym_register_loggers`."""

    def __call__(self, name: str, factory: Callable[..., Logger], *, description: str = "") -> None: ...


class RegisterConfigDir(Protocol):
    """The ``register`` of :func:`r1gym_register_config_dirs`."""

    def __call__(self, path: str) -> None: ...


class RegisterCliCommand(Protocol):
    """The ``register`` of :func:`r1gym_register_cli_commands`."""

    def __call__(self, name: str, run: Callable[[argparse.Namespace, PluginHost], int], *,
                 arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 description: str = "") -> None: ...


@hookspec
def r1gym_register_envs(register: RegisterEnv) -> None:
    """Register gymnasium environments.

    Call ``register(env_id, entry_point, *, kwargs=None, description="")`` once per environment.
    ``env_id`` is a versioned gymnasium id such as ``"r1gym/Countdown-v0"`` (namespace, name, version);
    ``entry_point`` is a lazy ``"package.module:ClassName"`` string, so registering imports nothing heavy.
    The env lands in gymnasium's own registry: ``gymnasium.make(env_id)`` works afterwards. r1gym makes envs
    with ``host=`` (the :class:`r1gym.core.plugins.PluginHost` their task source and rewards come from), as
    :class:`r1gym.envs.base.SingleTurnEnv` and its subclasses accept; an env class of its own should too.

    Called when the plugin host is built, and also alone at ``import r1gym.envs``
    (:func:`r1gym.core.plugins.declared_envs`), which puts the ids in gymnasium's registry without building a
    host: so call ``register`` and do nothing else here (no imports of task code, no side effects).
    Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_rewards(register: RegisterReward) -> None:
    """Register reward functions by name.

    Call ``register(name, fn, *, description="")``. ``fn(completion: str, **fields) -> float | None`` gets
    the completion text and, by keyword, the task's fields and the reward's parameters from config; it may
    declare only the keywords it needs. Return ``None`` or raise :class:`r1gym.core.rewards.Unscorable` when
    the completion cannot be scored (a crashed or timed-out checker): that is counted and logged, never 0.
    A reward that builds something registered by name (``code_tests``' sandbox, ``llm_judge``'s backend)
    declares a ``host`` keyword: it gets the :class:`r1gym.core.plugins.PluginHost` its env was made from
    (``host`` is never a config parameter).

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_task_sources(register: RegisterTaskSource) -> None:
    """Register task sources (procedural generators, dataset loaders) by name.

    Call ``register(name, factory, *, description="")``; ``factory(**params)`` returns an object with
    ``__len__`` and ``__getitem__(index) -> r1gym.envs.base.Task``.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_rollout_backends(register: RegisterRolloutBackend) -> None:
    """Register rollout (generation) backends by name.

    Call ``register(name, factory, *, description="")``; ``factory(model, tokenizer, **params)`` returns an
    object implementing :class:`r1gym.core.rollout.RolloutBackend`.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_sandboxes(register: RegisterSandbox) -> None:
    """Register code sandboxes by name (``local``, ``e2b``, ...).

    Call ``register(name, factory, *, description="")``; ``factory(**params)`` returns an object implementing
    :class:`r1gym.core.contracts.Sandbox` (``run(program, limits) -> RunResult``).

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_judges(register: RegisterJudge) -> None:
    """Register LLM-judge backends by name (``local``, ``openai``, ...).

    Call ``register(name, factory, *, description="")``; ``factory(**params)`` returns an object implementing
    :class:`r1gym.core.contracts.ChatBackend` (``chat(messages, *, max_tokens, temperature) -> str``),
    the model a judge sends its prompts to.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_loggers(register: RegisterLogger) -> None:
    """Register loggers/callbacks by name.

    Call ``register(name, factory, *, description="")``; ``factory(run_dir, **params)`` returns an object
    implementing :class:`r1gym.core.loggers.Logger` (called at run start, after every step with the step's
    metrics and samples, and at run end).

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_config_dirs(register: RegisterConfigDir) -> None:
    """Add config folders to Hydra's search path.

    Call ``register(path)`` with a Hydra search-path URL: ``"pkg://my_plugin.conf"`` for a package shipped as
    package data, or ``"file:///abs/path"``. Their groups merge with r1gym's own ``conf/``, so a plugin that
    ships ``conf/env/my_env.yaml`` makes ``r1gym train env=my_env`` work after ``pip install``.

    Called once, when the plugin host is built. Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """


@hookspec
def r1gym_register_cli_commands(register: RegisterCliCommand) -> None:
    """Add subcommands to the ``r1gym`` command line.

    Call ``register(name, run, *, arguments=None, description="")``. ``name`` is one or more words: ``"sandbox
    run"`` makes ``r1gym sandbox run`` (the group ``sandbox`` is made on first use; a built-in command's name
    cannot be taken). ``arguments(parser)`` adds the command's options to its :class:`argparse.ArgumentParser`;
    ``run(args, host)`` gets the parsed :class:`argparse.Namespace` and the :class:`r1gym.core.plugins.PluginHost`
    the command line was built from, and returns the exit status. ``description`` is the command's line in
    ``r1gym --help``. ``run`` may raise ``ValueError`` (or :class:`r1gym.core.registry.UnknownNameError`) for
    bad input: the CLI prints it and exits with 2.

    Called once, when the plugin host is built; the CLI reads the commands when it builds its parser.
    Return value ignored.

    .. versionadded:: 1.0 (r1gym 0.1.0)
    """
