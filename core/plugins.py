"""Loading plugins and the typed façade over their hooks.

The rest of r1gym never calls ``pm.hook.<name>`` by string: it builds a :class:`PluginHost` with
:func:`load_plugins` (or takes the process-wide one from :func:`default_host`) and reads its registries.

Loading, in order (as pytest and llm do it):

1. the built-in plugin modules named in :data:`BUILTIN_PLUGINS` (strings: core imports no plugin by name);
2. every entry point of the group ``r1gym`` (``[project.entry-points.r1gym]`` in a plugin's pyproject),
   unless ``R1GYM_DISABLE_PLUGIN_AUTOLOAD=1``;
3. the modules named in ``R1GYM_PLUGINS`` (comma-separated import paths), like pytest's ``-p``: a plugin
   module tried out without packaging it.

A plugin that fails to import, targets a plugin API this r1gym does not provide (``R1GYM_API``, see
:data:`r1gym.core.hookspecs.API_VERSION`), misspells a hook, or raises in a hook is recorded in
:attr:`PluginHost.failed` with its reason and logged; it contributes nothing and the others load anyway.
A later lookup of a name it would have provided fails with that reason attached.

:func:`declared_envs` is the light path beside the host: it calls only the ``r1gym_register_envs`` hook of the
same plugins, so ``import r1gym.envs`` can put every env id in gymnasium's registry without building a host.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from r1gym.core import hookspecs
from r1gym.core.registry import Registry, UnknownNameError, plural

if TYPE_CHECKING:
    import argparse

    from r1gym.core.contracts import ChatBackend, Sandbox
    from r1gym.core.loggers import Logger
    from r1gym.core.rewards import RewardFn
    from r1gym.core.rollout import RolloutBackend
    from r1gym.envs.base import TaskSource

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "r1gym"
DISABLE_AUTOLOAD_ENV = "R1GYM_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "R1GYM_PLUGINS"
BUILTIN_PLUGINS: tuple[str, ...] = (
    "r1gym.plugins.templates",
    "r1gym.plugins.countdown",
    "r1gym.plugins.arithmetic",
    "r1gym.plugins.file_tasks",
    "r1gym.plugins.hf_datasets",
    "r1gym.plugins.hf_rollout",
    "r1gym.plugins.loggers",
    "r1gym.plugins.math",
    "r1gym.plugins.code",
    "r1gym.plugins.judge",
    "r1gym.plugins.reward_model",
    "r1gym.plugins.language",
    "r1gym.plugins.vllm_rollout",
    "r1gym.plugins.plugin_kit",
)
_HOOK_NAMES = tuple(n for n in dir(hookspecs) if n.startswith(f"{hookspecs.PROJECT}_"))


@dataclass(frozen=True)
class EnvEntry:
    """An environment a plugin registered (it also lives in gymnasium's registry under ``env_id``)."""

    env_id: str
    entry_point: str
    kwargs: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class CliCommand:
    """A subcommand a plugin added to the ``r1gym`` command line (hook ``r1gym_register_cli_commands``)."""

    name: str  # words: "sandbox run"
    run: Callable[[argparse.Namespace, PluginHost], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str = ""


@dataclass
class PluginInfo:
    """What ``r1gym plugins`` shows for one plugin."""

    name: str
    version: str
    source: str  # "builtin" or "entry point <dist>"
    contributes: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    api: str | None = None  # the plugin API version it targets (None: it declares none)


@dataclass
class PluginHost:
    """The loaded plugins and everything they registered. Build it with :func:`load_plugins`."""

    pm: pluggy.PluginManager
    envs: Registry[EnvEntry] = field(default_factory=lambda: Registry("environment"))
    rewards: Registry[RewardFn] = field(default_factory=lambda: Registry("reward"))
    task_sources: Registry[Callable[..., TaskSource]] = field(default_factory=lambda: Registry("task source"))
    rollout_backends: Registry[Callable[..., RolloutBackend]] = field(default_factory=lambda: Registry("rollout backend"))
    sandboxes: Registry[Callable[..., Sandbox]] = field(default_factory=lambda: Registry("sandbox"))
    judges: Registry[Callable[..., ChatBackend]] = field(default_factory=lambda: Registry("judge backend"))
    loggers: Registry[Callable[..., Logger]] = field(default_factory=lambda: Registry("logger"))
    cli_commands: Registry[CliCommand] = field(default_factory=lambda: Registry("command"))
    config_dirs: list[str] = field(default_factory=list)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict) -> PluginHost:
        """The host itself: it is process state (plugin modules, pools, loaded judges), shared and never
        copied. gymnasium deep-copies an env's spec, whose kwargs carry the host the env was made with."""
        return self

    def __repr__(self) -> str:  # the registries' contents would fill an error message
        return f"PluginHost(plugins=[{', '.join(self.plugins)}], failed=[{', '.join(self.failed)}])"

    @property
    def failed(self) -> dict[str, str]:
        """Plugin name -> why it failed to load or register."""
        return {n: p.error for n, p in self.plugins.items() if p.error}

    def require(self, plugin: str) -> None:
        """Stop with the plugin's own error when a run needs a plugin that did not load."""
        info = self.plugins.get(plugin)
        if info is None:
            raise UnknownNameError("plugin", plugin, list(self.plugins))
        if info.error:
            raise RuntimeError(f"plugin {plugin!r} is needed but failed to load: {info.error}")


def _registries(host: PluginHost) -> dict[str, Registry]:
    return {
        "r1gym_register_rewards": host.rewards,
        "r1gym_register_task_sources": host.task_sources,
        "r1gym_register_rollout_backends": host.rollout_backends,
        "r1gym_register_sandboxes": host.sandboxes,
        "r1gym_register_judges": host.judges,
        "r1gym_register_loggers": host.loggers,
        "r1gym_register_cli_commands": host.cli_commands,
    }


@functools.lru_cache(maxsize=None)
def _register_signature(hook_name: str) -> inspect.Signature:
    """The signature of a hook's ``register`` callback: the Protocol named in the hookspec's annotation."""
    annotation = getattr(hookspecs, hook_name).__annotations__["register"]
    protocol = getattr(hookspecs, annotation) if isinstance(annotation, str) else annotation
    sig = inspect.signature(protocol.__call__)
    return sig.replace(parameters=list(sig.parameters.values())[1:])  # without self


def _bind(hook_name: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A ``register`` call's arguments by name, defaults filled in; a call that does not fit the callback's
    type is a ``TypeError`` showing the right call (so the plugin fails with it, not some later lookup)."""
    sig = _register_signature(hook_name)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        bare = sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                           return_annotation=sig.empty)
        raise TypeError(f"{hook_name}: {exc}; call it as register{bare}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


class IncompatiblePlugin(RuntimeError):
    """A plugin targets a plugin API version this r1gym does not provide."""


def _api_tuple(version: str) -> tuple[int, int]:
    major, _, minor = str(version).strip().partition(".")
    return int(major), int(minor or 0)


def check_api(plugin: object) -> str | None:
    """The plugin API version a plugin declares (its ``R1GYM_API``; ``None`` when it declares none).

    Raises :class:`IncompatiblePlugin`, naming both versions, when r1gym cannot serve it: a different major
    version (hooks removed or changed), or a newer minor (it may call hooks or ``register`` arguments this
    r1gym lacks). A plugin that declares nothing is loaded as before versions existed.
    """
    declared = getattr(plugin, hookspecs.API_ATTRIBUTE, None)
    if declared is None:
        return None
    ours = hookspecs.API_VERSION
    try:
        want, have = _api_tuple(declared), _api_tuple(ours)
    except ValueError:
        raise IncompatiblePlugin(f"{hookspecs.API_ATTRIBUTE} = {declared!r} is not a version like {ours!r}") from None
    if want[0] != have[0] or want[1] > have[1]:
        fix = "upgrade r1gym" if want > have else f"install a version of the plugin written for API {have[0]}.x"
        raise IncompatiblePlugin(f"it targets r1gym plugin API {declared}, this r1gym provides API {ours} "
                                 f"(it loads plugins written for API {ours} or an older {have[0]}.x); {fix}")
    return str(declared)


def _autoload(autoload: bool | None) -> bool:
    """``None``: follow ``R1GYM_DISABLE_PLUGIN_AUTOLOAD`` (1/true/yes skip entry points)."""
    if autoload is None:
        return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in {"1", "true", "yes"}
    return autoload


def _misspelled_hooks(plugin: object) -> list[str]:
    """Names that look like hook implementations (``r1gym_`` prefix) but match no hook spec."""
    prefix = f"{hookspecs.PROJECT}_"
    names = [n for n in dir(plugin) if n.startswith(prefix) and callable(getattr(plugin, n, None))]
    return [n for n in names if n not in _HOOK_NAMES]


def _plugin_candidates(builtins: Iterable[str], autoload: bool) -> list[tuple[str, str, str, Callable[[], object]]]:
    """(name, version, source, loader) for every plugin to try, built-ins first."""
    from importlib.metadata import version as dist_version

    try:
        own_version = dist_version("r1gym")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        own_version = "0+unknown"
    out = [(m.rsplit(".", 1)[-1], own_version, "builtin", functools.partial(importlib.import_module, m)) for m in builtins]
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            ver = ep.dist.version if ep.dist else "?"
            out.append((ep.name, ver, f"entry point of {dist}", ep.load))
    for module in filter(None, (m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
        out.append((module, "?", f"${EXTRA_PLUGINS_ENV}", functools.partial(importlib.import_module, module)))
    return out


def _run_hooks(host: PluginHost, name: str, plugin: object) -> dict[str, list[dict[str, Any]]]:
    """Call each hook the plugin implements with a staging ``register``; raise on the first error.

    Contributions are staged and only committed when all of a plugin's hooks succeeded, so a plugin that
    breaks halfway contributes nothing rather than half of itself.
    """
    staged: dict[str, list[dict[str, Any]]] = {}
    for impl in host.pm.get_hookcallers(plugin) or []:
        hook_name = impl.name
        calls = staged.setdefault(hook_name, [])

        def register(*args: Any, _calls: list = calls, _hook: str = hook_name, **kwargs: Any) -> None:
            _calls.append(_bind(_hook, args, kwargs))

        for hi in impl.get_hookimpls():
            if hi.plugin is plugin:
                accepted = set(hi.argnames)
                hi.function(**{k: v for k, v in {"register": register}.items() if k in accepted})
    return staged


def _commit(host: PluginHost, name: str, staged: dict[str, list[dict[str, Any]]], info: PluginInfo) -> None:
    """Add a plugin's staged contributions to the host; on any error undo what was added, then raise."""
    import gymnasium

    regs = _registries(host)
    added: list[tuple[Registry, str]] = []
    replaced_specs: dict[str, Any] = {}  # env id -> gymnasium's spec before us (None: there was none)
    n_config_dirs = len(host.config_dirs)
    try:
        for hook_name, calls in staged.items():
            for call in calls:
                if hook_name == "r1gym_register_envs":
                    entry = _env_entry(**call)
                    host.envs.add(entry.env_id, entry, plugin=name, description=entry.description)
                    added.append((host.envs, entry.env_id))
                    spec = gymnasium.registry.get(entry.env_id)
                    if spec is None or spec.entry_point != entry.entry_point:
                        replaced_specs.setdefault(entry.env_id, spec)
                        gymnasium.register(id=entry.env_id, entry_point=entry.entry_point, kwargs=dict(entry.kwargs))
                    info.contributes.setdefault("envs", []).append(entry.env_id)
                elif hook_name == "r1gym_register_config_dirs":
                    path = call["path"]
                    host.config_dirs.append(path)
                    info.contributes.setdefault("config dirs", []).append(path)
                else:
                    reg = regs[hook_name]
                    reg_name, description = call["name"], call["description"]
                    if hook_name == "r1gym_register_cli_commands":
                        obj: Any = CliCommand(**call)
                    else:  # the one argument besides name and description: fn or factory
                        (obj,) = (v for k, v in call.items() if k not in ("name", "description"))
                    reg.add(reg_name, obj, plugin=name, description=description)
                    added.append((reg, reg_name))
                    info.contributes.setdefault(plural(reg.kind), []).append(reg_name)
    except Exception:  # a plugin that fails halfway through its registrations contributes nothing
        for reg, reg_name in added:
            reg.entries.pop(reg_name, None)
        for env_id, spec in replaced_specs.items():
            if spec is None:
                gymnasium.registry.pop(env_id, None)
            else:
                gymnasium.registry[env_id] = spec
        del host.config_dirs[n_config_dirs:]
        raise


def _free_key(taken: dict[str, Any], key: str) -> str:
    n, out = 2, key
    while out in taken:
        out, n = f"{key} #{n}", n + 1
    return out


def _env_entry(env_id: str, entry_point: str, *, kwargs: Mapping[str, Any] | None = None, description: str = "") -> EnvEntry:
    if ":" not in entry_point:
        raise ValueError(f"env {env_id!r}: entry_point must look like 'package.module:ClassName', got {entry_point!r}")
    return EnvEntry(env_id, entry_point, dict(kwargs or {}), description)


def load_plugins(
    builtins: Iterable[str] = BUILTIN_PLUGINS,
    *,
    autoload: bool | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> PluginHost:
    """Build a plugin host: load built-ins, then entry points, then ``extra`` (name, module/object) pairs.

    ``autoload=None`` follows ``R1GYM_DISABLE_PLUGIN_AUTOLOAD`` (set to 1 to skip entry points).
    """
    autoload = _autoload(autoload)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm=pm)
    candidates = _plugin_candidates(builtins, autoload)
    candidates += [(n, "?", "extra", functools.partial(lambda o: o, obj)) for n, obj in extra]
    for name, version, source, loader in candidates:
        info = PluginInfo(name=name, version=version, source=source)
        if name in host.plugins:  # never replace (or unregister) the plugin that has the name already
            info.error = f"a plugin named {name!r} is already loaded ({host.plugins[name].source}); rename one of them"
            host.plugins[_free_key(host.plugins, f"{name} [{source}]")] = info
            log.warning("plugin %r (%s) not loaded: %s", name, source, info.error)
            continue
        host.plugins[name] = info
        try:
            plugin = loader()
            declared = getattr(plugin, hookspecs.API_ATTRIBUTE, None)  # shown even when it does not fit
            info.api = str(declared) if declared is not None else (hookspecs.API_VERSION if source == "builtin" else None)
            check_api(plugin)
            if isinstance(plugin, ModuleType) or inspect.isclass(plugin) or plugin is not None:
                bad = _misspelled_hooks(plugin)
                if bad:
                    hints = "".join(
                        f" Did you mean {close[0]!r} instead of {b!r}?"
                        for b in bad
                        if (close := difflib.get_close_matches(b, _HOOK_NAMES, n=1))
                    )
                    raise ValueError(f"unknown hook(s) {', '.join(bad)}; known hooks: {', '.join(_HOOK_NAMES)}.{hints}")
                pm.register(plugin, name=name)
                pm.check_pending()
                staged = _run_hooks(host, name, plugin)
                _commit(host, name, staged, info)
        except Exception as exc:  # a broken plugin must not take the others down
            if name in (pm.get_name(p) for p in pm.get_plugins()):
                pm.unregister(name=name)
            info.error = f"{type(exc).__name__}: {exc}"
            info.contributes.clear()
            log.warning("plugin %r (%s) failed to load: %s", name, source, info.error)
    for reg in [host.envs, *_registries(host).values()]:
        reg.failed_plugins = host.failed
    return host


def declared_envs(builtins: Iterable[str] = BUILTIN_PLUGINS, *, autoload: bool | None = None) -> list[tuple[str, EnvEntry]]:
    """(plugin name, env) for every env the plugins would register, from their ``r1gym_register_envs`` hook
    alone: the same plugins as :func:`load_plugins` (built-ins, entry points, ``R1GYM_PLUGINS``), none of the
    other hooks run. Importing a plugin module is cheap by contract (its task code is imported inside its
    hooks), so this is what ``import r1gym.envs`` can afford. A plugin that fails here (import error,
    incompatible API, a raising hook, a bad call) is skipped with a debug log: the host reports it with its
    reason when it is built, and the env ids it would have added are not guessed at.
    """
    out: list[tuple[str, EnvEntry]] = []
    for name, _, source, loader in _plugin_candidates(builtins, _autoload(autoload)):
        try:
            plugin = loader()
            check_api(plugin)
            impl = getattr(plugin, "r1gym_register_envs", None)
            if impl is None or not hasattr(impl, f"{hookspecs.PROJECT}_impl"):
                continue
            entries: list[EnvEntry] = []
            impl(**({"register": lambda *a, **k: entries.append(_env_entry(**_bind("r1gym_register_envs", a, k)))}
                    if "register" in inspect.signature(impl).parameters else {}))
        except Exception as exc:  # noqa: BLE001  (reported by the host, with its reason, when one is built)
            log.debug("plugin %r (%s): its envs are not declared: %s: %s", name, source, type(exc).__name__, exc)
            continue
        out += [(name, e) for e in entries]
    return out


@functools.lru_cache(maxsize=1)
def default_host() -> PluginHost:
    """The process-wide plugin host, built on first use (not at import). Tests may ``cache_clear()`` it."""
    return load_plugins()
