"""Making the trainer's environments from the ``env`` config node (a factory, not env classes: those live
with their task family, ``plugins/<family>/envs.py``, or in :mod:`r1gym.envs.base`). ``env.id`` is a
registered id or, without a plugin, an entry point ``"package.module:MyEnv"`` / ``"path/to/envs.py:MyEnv"``
(:func:`env_spec`).

``env.kwargs`` is deep-merged over the kwargs the env was registered with, so an override can change one
nested key (``env.kwargs.source.seed=3``) and keep the rest; a key the YAML does not have yet is added
with Hydra's ``+`` (``+env.kwargs.source.max_value=99``, ``+env.kwargs.rewards.tag_count=0.1``); ``env.eval_kwargs`` is merged over
that for the held-out evaluation envs (``{source: {split: test}}``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from r1gym.core.config import to_plain
from r1gym.core.plugins import PluginHost, default_host
from r1gym.core.registry import UnknownNameError
from r1gym.core.targets import is_reference, locate


#: keys by which a config node names the object it builds: a node naming another object replaces, not merges
NAMING_KEYS = ("name", "_target_")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base`` key by key, except that a node that names another object than the one
    under it (``source: {name: hf_dataset, ...}`` over the registered ``{name: math, id_field: id}``) replaces it
    whole: the other object's parameters do not fit the new one.

    >>> deep_merge({"source": {"name": "math", "id_field": "id"}}, {"source": {"name": "hf_dataset"}})
    {'source': {'name': 'hf_dataset'}}
    >>> deep_merge({"source": {"name": "math", "split": "train"}}, {"source": {"split": "test"}})
    {'source': {'name': 'math', 'split': 'test'}}
    """
    out = dict(base)
    for k, v in override.items():
        old = out.get(k)
        if isinstance(v, Mapping) and isinstance(old, Mapping) and not _names_another(old, v):
            out[k] = deep_merge(old, v)
        else:
            out[k] = v
    return out


def _named(node: Mapping[str, Any]) -> tuple[str, Any] | None:
    return next(((key, node[key]) for key in NAMING_KEYS if key in node), None)


def _names_another(base: Mapping[str, Any], override: Mapping[str, Any]) -> bool:
    return _named(override) is not None and _named(override) != _named(base)


def env_spec(env_id: str, host: PluginHost | None = None) -> Any:
    """The gymnasium ``EnvSpec`` that ``env.id`` names, found without making the env (a config check can
    read its entry point and default kwargs before any model loads):

    * an id a plugin registered (``r1gym/Math-v0``) or one already in gymnasium's registry;
    * gymnasium's own ``"module:Env-v0"``: the module is imported (it registers the id), then looked up;
    * an entry point ``"package.module:MyEnv"`` or ``"path/to/envs.py:MyEnv"`` (a ``gymnasium.Env`` class or
      a function returning an env): a spec is made for it on the fly, with no default kwargs (``env.kwargs``
      are all it gets). It is not added to gymnasium's registry, whose ``make("a:b")`` reads ``a:b`` as
      "import a, then make b"; :func:`make_envs` makes it from the spec.
    """
    import gymnasium

    host = host or default_host()
    if env_id in host.envs or env_id in gymnasium.registry:
        return gymnasium.spec(env_id)
    if not is_reference(env_id):
        host.envs.get(env_id)  # raises with the known ids and the closest match
    try:
        creator = locate(env_id, "environment")
    except UnknownNameError:
        registered = env_id.rpartition(":")[2]  # gymnasium's "module:Env-v0": importing the module registered it
        if registered in gymnasium.registry:
            return gymnasium.spec(registered)
        raise
    if not callable(creator):
        raise TypeError(f"env {env_id!r} is {type(creator).__name__}: an env entry point is a gymnasium.Env class "
                        "or a function that returns an env")
    from gymnasium.envs.registration import EnvSpec

    return EnvSpec(id=re.sub(r"[^\w.-]+", "_", env_id), entry_point=creator)


def _takes_host(spec: Any) -> bool:
    """Whether an env built from ``spec`` accepts ``host=``: every registered r1gym env does; an entry point
    from config only if its signature says so (a plain ``gymnasium.Env`` does not)."""
    if not callable(spec.entry_point):
        return True
    params = inspect.signature(spec.entry_point).parameters.values()
    return any(p.name == "host" or p.kind is p.VAR_KEYWORD for p in params)


def _with_host(spec: Any, kwargs: dict[str, Any], host: PluginHost | None) -> dict[str, Any]:
    return kwargs if host is None or not _takes_host(spec) else {**kwargs, "host": host}


def env_kwargs(env_cfg: Any, *, eval_split: bool = False, host: PluginHost | None = None) -> dict[str, Any]:
    """The full kwargs for ``gymnasium.make(env_cfg.id, ...)``: registered defaults + config (+ eval); with
    ``host``, the env is made from that host's plugins (``host=`` among the kwargs)."""
    spec = env_spec(env_cfg.id, host)
    kwargs = deep_merge(spec.kwargs or {}, to_plain(env_cfg.kwargs) or {})
    if eval_split:
        kwargs = deep_merge(kwargs, to_plain(env_cfg.eval_kwargs) or {})
    return _with_host(spec, kwargs, host)


def make_env(env_id: str, kwargs: Mapping[str, Any] | None = None, *, host: PluginHost | None = None,
             **make_options: Any) -> Any:
    """One env named in any form ``env.id`` takes (:func:`env_spec`: a registered id, gymnasium's
    ``"module:Env-v0"``, an entry point ``"package.module:MyEnv"`` or ``"path/to/envs.py:MyEnv"``), so that
    every place that makes an env from a name (``r1gym env check``, a mixture's members) takes the same names.
    ``kwargs`` are deep-merged over the registered ones, as ``env.kwargs`` is; with ``host`` the env is made
    from that host's plugins; ``make_options`` go to ``gymnasium.make`` (``disable_env_checker=True``)."""
    import gymnasium

    spec = env_spec(env_id, host)
    kwargs = _with_host(spec, deep_merge(spec.kwargs or {}, to_plain(kwargs) or {}), host)
    return gymnasium.make(spec, **make_options, **kwargs)


def make_envs(env_cfg: Any, n: int, *, eval_split: bool = False, host: PluginHost | None = None) -> list[Any]:
    """``n`` independent instances of the configured env (each episode of a step needs its own), made from
    ``host``'s plugins (default: the process-wide host)."""
    import gymnasium

    spec = env_spec(env_cfg.id, host)
    kwargs = env_kwargs(env_cfg, eval_split=eval_split, host=host)
    # gymnasium.make would merge kwargs shallowly over the spec's; we pass the merged whole
    return [gymnasium.make(spec, disable_env_checker=True, **kwargs) for _ in range(n)]


def primary_reward(env: Any) -> str | None:
    """The name of an env's first reward component: its accuracy reward, by convention."""
    reward_set = getattr(env.unwrapped, "reward_set", None)
    return reward_set.components[0].name if reward_set and reward_set.components else None
