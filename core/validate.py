"""Checking a composed run config before anything heavy happens, and reporting every problem at once.

Why: a misspelled reward parameter, env kwarg or logger name used to surface only when the object was built,
after the model had loaded (seconds on a laptop, a queue slot on a cluster), and one mistake per try.
:func:`check_config` reads the config against what the plugins registered and against the signatures of the
functions and classes the names stand for (``inspect.signature``; nothing is called, so no model, tokenizer,
data set or torch is loaded) and raises one :class:`ConfigCheckError` that lists every problem, each with
the did-you-mean of :class:`~r1gym.core.registry.UnknownNameError`.

Checked: ``stage.kind``; the env id, the env's kwargs (registered defaults + ``env.kwargs``, and with
``env.eval_kwargs`` over them) against the env class's ``__init__`` (following ``**kwargs`` to the base
classes), its task source (name or ``_target_``, parameters against the factory) and rewards (names,
``reward:`` aliases, ``_target_`` / ``"module:function"`` references, weights, parameters against the
function's signature: the task fields a reward reads are arguments too, so a config may set them); members of
a mixture env, recursively; the sandbox (``sandbox``) and judge backend (``backend``) names of rewards and
envs that look such names up in the plugin host (those that take ``host``); ``sample.judge`` and
``sample.accuracy_reward``; the rollout backend; logger names and their parameters; the names of variants
chosen from a table (:data:`CHOICES`: ``algo.advantage``, ``algo.loss_aggregation``, ``algo.is_correction``,
LR schedules, ``trainer.matmul``, ...). Not checked: values only the callee can judge (a path that may be a hub id,
numeric ranges), and the parameters of factories that take ``**params`` (the built-in rollout, sandbox and
judge factories import their class lazily; those parameters are checked when the object is built).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import inspect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from r1gym.core.config import to_plain
from r1gym.core.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

log = logging.getLogger(__name__)

#: parameters by which a reward or env that takes ``host`` names a registered backend, and that backend's options
#: the keys of a member of a mixture env (:class:`r1gym.envs.mixture.MixtureEnv`)
MEMBER_KEYS = ("id", "weight", "kwargs", "name")
BACKEND_PARAMS = {"sandbox": ("sandboxes", "sandbox_options"), "backend": ("judges", "backend_options")}


class ConfigCheckError(ValueError):
    """Every problem :func:`check_config` found, one per line (``where: what``)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = "\n".join(f"  - {where}: {what}" for where, what in problems)
        super().__init__(f"the config has {len(problems)} problem(s), found before loading anything:\n{lines}")


@dataclass
class _Problems:
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        if (where, what) not in self.items:
            self.items.append((where, what))

    def unknown(self, where: str, kind: str, name: Any, known: Iterable[str], failed: Mapping[str, str] | None = None) -> None:
        self.add(where, UnknownNameError(kind, str(name), list(known), failed).message)

    def name_in(self, where: str, registry: Registry, name: Any) -> bool:
        if isinstance(name, str) and name in registry:
            return True
        self.unknown(where, registry.kind, name, registry, registry.failed_plugins)
        return False


# -- signatures --------------------------------------------------------------------------------------------------
def accepted_keywords(obj: Any, *, skip_positional: int = 0) -> frozenset[str] | None:
    """The keyword arguments ``obj`` accepts, or ``None`` when it takes any (``**kwargs`` that go nowhere we can
    see). A class is read through its ``__init__``, following ``**kwargs`` to the next base class's
    ``__init__`` (``CodeExecEnv`` -> ``MultiTurnEnv`` -> ``SingleTurnEnv``). The first ``skip_positional``
    parameters are the ones the caller fills (a reward's completion, a logger's run folder)."""
    if inspect.isclass(obj):
        inits = [vars(k)["__init__"] for k in obj.__mro__ if "__init__" in vars(k) and k is not object]
    else:
        inits = [obj]
    names: set[str] = set()
    for depth, fn in enumerate(inits):
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature: cannot tell
            return None
        params = params[(1 if inspect.isclass(obj) else 0) + (skip_positional if depth == 0 else 0):]
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return frozenset(names)
    return None


def _check_params(p: _Problems, where: str, what: str, accepted: frozenset[str] | None, given: Iterable[Any],
                  note: str = "") -> None:
    """Each of ``given`` must be one of ``accepted`` (``None``: anything goes); ``note`` explains the list."""
    if accepted is None:
        return
    for key in given:
        if str(key) not in accepted:
            msg = f"{what} takes no parameter {str(key)!r}; it takes {', '.join(sorted(accepted)) or '(none)'}{note}."
            close = difflib.get_close_matches(str(key), sorted(accepted), n=1)
            p.add(f"{where}.{key}", msg + (f" Did you mean {close[0]!r}?" if close else ""))


def _located(p: _Problems, where: str, ref: Any, kind: str) -> Any | None:
    """The object a ``"module:attr"`` / ``"file.py:attr"`` / ``_target_`` reference names, imported and not called
    (:func:`r1gym.core.targets.locate`); ``None`` after recording why it does not resolve."""
    from r1gym.core.targets import locate

    try:
        obj = locate(str(ref), kind)
    except Exception as exc:  # unknown module or attribute (with a did-you-mean), a missing file, the module's own error
        p.add(where, str(exc) if isinstance(exc, (UnknownNameError, FileNotFoundError, ModuleNotFoundError))
              else f"importing {ref!r} failed: {type(exc).__name__}: {exc}")
        return None
    if not callable(obj):
        p.add(where, f"{kind} {ref!r} is a {type(obj).__name__}, not a function or class")
        return None
    return obj


@functools.lru_cache(maxsize=None)
def source_names(module: str, variable: str | None = None, *, kind: str | None = None) -> tuple[str, ...]:
    """The names of a table of variants read from ``module``'s source, without importing it (the tables of
    advantage estimators, loss aggregations and LR schedules live in modules that import torch, which this
    check avoids): the keys (or items) of the module-level literal ``variable``, or of the dict literal given
    to ``pick(..., kind)``. tests/test_validate.py checks them against the imported tables."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(spec.loader.get_source(module))  # type: ignore[union-attr]
    for node in ast.walk(tree):
        value = None
        if variable and isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
                value = node.value
        elif kind and isinstance(node, ast.Call) and getattr(node.func, "id", None) == "pick" and len(node.args) == 3:
            if isinstance(node.args[2], ast.Constant) and node.args[2].value == kind:
                value = node.args[0]
        if isinstance(value, ast.Dict):
            return tuple(k.value for k in value.keys if isinstance(k, ast.Constant))
        if isinstance(value, (ast.Tuple, ast.List)):
            return tuple(e.value for e in value.elts if isinstance(e, ast.Constant))
    raise LookupError(f"no table {variable or kind!r} in {module}")


#: config key -> (what it names, module, table variable or ``pick:<kind>``, names accepted besides the table's)
CHOICES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "stage.kind": ("stage kind", "r1gym.core.stages", "RUNNERS", ()),
    "algo.advantage": ("advantage estimator", "r1gym.core.advantages", "ADVANTAGE_ESTIMATORS", ()),
    "algo.loss_aggregation": ("loss aggregation", "r1gym.core.losses", "LOSS_AGGREGATIONS", ()),
    "algo.is_correction": ("importance correction", "r1gym.core.losses", "IS_MODES", ("auto",)),
    "algo.is_level": ("importance ratio level", "r1gym.core.losses", "IS_LEVELS", ()),
    "algo.optim.schedule": ("LR schedule", "r1gym.core.runtime", "pick:LR schedule", ()),
    "sft.optim.schedule": ("LR schedule", "r1gym.core.runtime", "pick:LR schedule", ()),
    "trainer.matmul": ("matmul mode", "r1gym.core.onednn", "MODES", ()),
    "trainer.autocast": ("autocast mode", "r1gym.core.runtime", "pick:trainer.autocast mode", ()),
    "model.prompt_format": ("prompt format", "r1gym.core.prompts", "PROMPT_FORMATS", ()),
    "sft.loss_on": ("SFT loss mask", "r1gym.core.sft", "MASKS", ()),
}


def choices(key: str) -> tuple[str, ...]:
    """The names ``key`` may take (:data:`CHOICES`)."""
    _, module, table, extra = CHOICES[key]
    if table.startswith("pick:"):
        return extra + source_names(module, kind=table[len("pick:"):])
    return extra + source_names(module, table)


# -- the parts of a config -----------------------------------------------------------------------------------------
def _check_backend_refs(p: _Problems, where: str, accepted: frozenset[str] | None, params: Mapping[str, Any],
                        host: PluginHost) -> None:
    """``sandbox: local`` / ``backend: openai`` of a callable that looks them up in the host (it takes ``host``)."""
    if accepted is None or "host" not in accepted:
        return
    for param, (registry_attr, options_param) in BACKEND_PARAMS.items():
        if param in accepted and params.get(param) is not None:
            registry = getattr(host, registry_attr)
            if p.name_in(f"{where}.{param}", registry, params[param]) and params.get(options_param):
                factory = registry.get(params[param])
                _check_params(p, f"{where}.{options_param}", f"{registry.kind} {params[param]!r}",
                              accepted_keywords(factory), params[options_param])


def _check_reward_fn(p: _Problems, where: str, fn: Any, label: str, params: Mapping[str, Any], host: PluginHost) -> None:
    accepted = accepted_keywords(fn, skip_positional=1)
    if "host" in params:
        p.add(f"{where}.host", "'host' is not a config parameter (the plugin host is passed in)")
    _check_params(p, where, label, None if accepted is None else accepted - {"host"},
                  [k for k in params if k != "host"], " (its config parameters and the task fields it reads)")
    _check_backend_refs(p, where, accepted, params, host)


def check_reward(p: _Problems, where: str, name: str, node: Any, host: PluginHost) -> None:
    """One entry of a reward spec, read the way :func:`r1gym.envs.base.config_rewards` reads it: ``name: weight``
    or ``name: {weight, **params}`` with the function named by the key, ``reward``, ``fn`` or ``_target_`` (a
    registered name, or a reference: ``"module:function"``, ``"file.py:function"``, a dotted ``_target_``)."""
    from r1gym.core.targets import TARGET_KEY, is_reference

    if node is None or (isinstance(node, (int, float)) and not isinstance(node, bool)):
        node = {}
    elif not isinstance(node, Mapping):
        p.add(where, f"a reward is a weight or a mapping with 'weight' and its parameters, got {node!r}")
        return
    weight = node.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        p.add(f"{where}.weight", f"a reward weight is a number, got {weight!r}")
    given = [k for k in (TARGET_KEY, "fn", "reward") if k in node]
    if len(given) > 1:
        p.add(where, f"reward {name!r} names its function more than once ({', '.join(given)}); keep one")
        return
    ref, at = (node[given[0]], f"{where}.{given[0]}") if given else (name, where)
    params = {k: v for k, v in node.items() if k not in (*given, "weight") and not str(k).startswith("_")}
    if is_reference(ref) or given == [TARGET_KEY]:
        fn = _located(p, at, ref, "reward function")
        if fn is None:
            return
        if inspect.isclass(fn):  # built once with the parameters (by Hydra); the instance is the reward
            _check_params(p, where, f"reward class {ref}", accepted_keywords(fn), params)
            return
    elif p.name_in(at, host.rewards, ref):
        fn = host.rewards.get(ref)
    else:
        return
    _check_reward_fn(p, where, fn, f"reward {ref!r}", params, host)


def check_rewards(p: _Problems, where: str, rewards: Any, host: PluginHost) -> None:
    if not isinstance(rewards, Mapping):
        return  # a RewardSet object built in code
    from r1gym.envs.base import reward_names

    if not any(v is not None for v in rewards.values()):
        p.add(where, "an environment needs at least one reward; the reward spec is empty")
    try:
        reward_names(rewards)  # two rewards logged under one component name, or a name the metrics use
    except ValueError as exc:
        p.add(where, str(exc))
    for name, node in rewards.items():
        check_reward(p, f"{where}.{name}", str(name), node, host)


def check_source(p: _Problems, where: str, source: Any, host: PluginHost) -> None:
    """A task source config: its name or reference (:func:`r1gym.envs.base.source_factory`, which finds the
    factory without calling it) and its parameters against the factory's signature."""
    from r1gym.envs.base import source_factory

    if not isinstance(source, Mapping):
        return  # a TaskSource object built in code
    try:
        factory, params = source_factory(source, host)
    except Exception as exc:  # unknown name or reference (with a did-you-mean), a missing 'name'
        key = "_target_" if "_target_" in source else "name"
        p.add(f"{where}.{key}" if key in source else where, str(exc))
        return
    label = f"task source {source.get('_target_') or source.get('name')!r}"
    _check_params(p, where, label, accepted_keywords(factory), [k for k in params if not str(k).startswith("_")])


def _env_spec(p: _Problems, where: str, env_id: Any, host: PluginHost) -> tuple[Any, dict[str, Any]] | None:
    """The env class (or creator function) ``env.id`` stands for and its registered kwargs, found without
    making the env (:func:`r1gym.core.env_factory.env_spec`); ``None`` after recording a problem."""
    from r1gym.core.env_factory import env_spec

    try:
        spec = env_spec(str(env_id), host)
    except Exception as exc:  # unknown id (known ids, closest match) or a reference that does not resolve
        p.add(where, str(exc))
        return None
    entry_point = spec.entry_point
    creator = _located(p, where, entry_point, "environment") if isinstance(entry_point, str) else entry_point
    return (creator, dict(spec.kwargs or {})) if creator is not None else None


def check_env(p: _Problems, where: str, env_id: Any, kwargs: Mapping[str, Any], host: PluginHost) -> None:
    """An env id and its kwargs (``kwargs``: what the config gives, merged over the registered ones here)."""
    from r1gym.core.env_factory import deep_merge
    from r1gym.core.rewards import UNSCORABLE_POLICIES
    from r1gym.envs.base import SingleTurnEnv
    from r1gym.envs.mixture import MixtureEnv

    found = _env_spec(p, f"{where}.id", env_id, host)
    if found is None:
        return
    cls, registered = found
    merged = deep_merge(registered, kwargs)
    accepted = accepted_keywords(cls)
    _check_params(p, f"{where}.kwargs", f"env {env_id!r}", None if accepted is None else accepted - {"host"},
                  [k for k in kwargs if k != "host"])
    _check_backend_refs(p, f"{where}.kwargs", accepted, merged, host)
    if inspect.isclass(cls) and issubclass(cls, SingleTurnEnv):  # what its source, rewards, unscorable mean
        if "source" in merged:
            check_source(p, f"{where}.kwargs.source", merged["source"], host)
        if "rewards" in merged:
            check_rewards(p, f"{where}.kwargs.rewards", merged["rewards"], host)
        if merged.get("unscorable", "mask") not in UNSCORABLE_POLICIES:
            p.unknown(f"{where}.kwargs.unscorable", "unscorable setting", merged["unscorable"], UNSCORABLE_POLICIES)
    if inspect.isclass(cls) and issubclass(cls, MixtureEnv):
        for i, member in enumerate(merged.get("envs") or []):
            at = f"{where}.kwargs.envs[{i}]"
            if not isinstance(member, Mapping) or "id" not in member:
                p.add(at, f"a mixture member is a mapping with 'id' (and 'weight', 'kwargs', 'name'), got {member!r}")
                continue
            for key in member:
                if key not in MEMBER_KEYS:
                    p.unknown(f"{at}.{key}", "mixture member key", key, MEMBER_KEYS)
            check_env(p, at, member["id"], dict(member.get("kwargs") or {}), host)


def check_loggers(p: _Problems, logger_cfg: Any, host: PluginHost) -> None:
    names = list(logger_cfg.get("names") or [])
    params = dict(logger_cfg.get("params") or {})
    for i, name in enumerate(names):
        p.name_in(f"logger.names[{i}]", host.loggers, name)
    for name, given in params.items():
        if not p.name_in(f"logger.params.{name}", host.loggers, name):
            continue
        if name not in names:  # a preset's parameters for a logger switched off: ignored at run time, said here
            log.warning("logger.params.%s: parameters for logger %r, which logger.names (%s) does not run; they are "
                        "ignored", name, name, ", ".join(names))
        _check_params(p, f"logger.params.{name}", f"logger {name!r}",
                      accepted_keywords(host.loggers.get(name), skip_positional=1), dict(given or {}))


def check_rollout(p: _Problems, rollout_cfg: Any, host: PluginHost) -> None:
    backend = rollout_cfg.get("backend")
    if p.name_in("rollout.backend", host.rollout_backends, backend):
        _check_params(p, "rollout.params", f"rollout backend {backend!r}",
                      accepted_keywords(host.rollout_backends.get(backend), skip_positional=2),
                      dict(rollout_cfg.get("params") or {}))
        if rollout_cfg.get("overlap"):  # only backends that generate in a process of their own
            from r1gym.core.overlap import overlap_problem

            if (problem := overlap_problem(backend, host.rollout_backends.get(backend))) is not None:
                p.add("rollout.overlap", problem)


def check_sample(p: _Problems, cfg: Any, host: PluginHost) -> None:
    """``sample.judge`` (the parameters of ``llm_judge``) and ``sample.accuracy_reward`` (a reward of the env)."""
    sample = cfg.get("sample") or {}
    judge = dict(sample.get("judge") or {})
    if judge and p.name_in("sample.judge", host.rewards, "llm_judge"):
        _check_reward_fn(p, "sample.judge", host.rewards.get("llm_judge"), "reward 'llm_judge'", judge, host)
    accuracy = sample.get("accuracy_reward")
    if accuracy is not None:
        rewards = _merged_env_kwargs(cfg, host).get("rewards")
        if isinstance(rewards, Mapping) and accuracy not in rewards:
            p.unknown("sample.accuracy_reward", "reward of the env", accuracy, [str(k) for k in rewards])


def _merged_env_kwargs(cfg: Any, host: PluginHost) -> dict[str, Any]:
    """The training env's kwargs as the run will make it: the registered ones with ``env.kwargs`` over them."""
    from r1gym.core.env_factory import deep_merge, env_spec

    return deep_merge(env_spec(cfg.env.id, host).kwargs or {}, to_plain(cfg.env.kwargs) or {})


def collect_problems(cfg: Any, host: PluginHost | None = None) -> list[tuple[str, str]]:
    """Every problem of a composed run config as ``(where, what)`` pairs (empty: it may run)."""
    from r1gym.core.env_factory import deep_merge
    from r1gym.core.plugins import default_host

    host = host or default_host()
    p = _Problems()
    for key in CHOICES:
        value = cfg
        for part in key.split("."):
            value = value.get(part) if value is not None else None
        if value is not None and value not in choices(key):
            p.unknown(key, CHOICES[key][0], value, choices(key))
    env = cfg.get("env")
    if env is not None:
        kwargs = to_plain(env.get("kwargs")) or {}
        check_env(p, "env", env.get("id"), kwargs, host)
        eval_kwargs = to_plain(env.get("eval_kwargs")) or {}
        if eval_kwargs:  # the held-out env: problems the training env does not already have
            seen = {what for _, what in p.items}
            q = _Problems()
            check_env(q, "env(eval)", env.get("id"), deep_merge(kwargs, eval_kwargs), host)
            for where, what in q.items:
                if what not in seen:
                    p.add(where.replace("env(eval).kwargs", "env.eval_kwargs", 1), what)
    if cfg.get("rollout") is not None:
        check_rollout(p, cfg.rollout, host)
    if cfg.get("logger") is not None:
        check_loggers(p, cfg.logger, host)
    if env is not None and not any(where.startswith("env.id") for where, _ in p.items):
        check_sample(p, cfg, host)
    return p.items


def check_config(cfg: Any, host: PluginHost | None = None) -> None:
    """Raise :class:`ConfigCheckError` listing every problem of a composed run config; return if there is none.
    ``host``: the plugins the run will use (default: the process-wide host)."""
    problems = collect_problems(cfg, host)
    if problems:
        raise ConfigCheckError(problems)


def check_configs(cfgs: Iterable[tuple[str, Any]], host: PluginHost | None = None) -> None:
    """Check several named configs (a pipeline's stages) and raise one error listing the problems of all of them,
    each prefixed with its config's name."""
    problems: list[tuple[str, str]] = []
    for name, cfg in cfgs:
        problems += [(f"{name}: {where}", what) for where, what in collect_problems(cfg, host)]
    if problems:
        raise ConfigCheckError(problems)


__all__ = ["ConfigCheckError", "accepted_keywords", "check_config", "check_configs", "collect_problems"]
