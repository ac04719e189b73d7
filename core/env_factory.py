"""Making the trainer's environments from the ``env`` config node (a factory, not env classes: those live
with their task family, ``plugins/<family>/envs.py``, or in :mod:`r1gym.envs.base`).

``env.kwargs`` is deep-merged over the kwargs the env was registered with, so an override can change one
nested key (``env.kwargs.source.seed=3``) and keep the rest; a key the YAML does not have yet is added
with Hydra's ``+`` (``+env.kwargs.source.max_value=99``, ``+env.kwargs.rewards.tag_count=0.1``); ``env.eval_kwargs`` is merged over
that for the held-out evaluation envs (``{source: {split: test}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from r1gym.core.config import to_plain
from r1gym.core.plugins import PluginHost, default_host


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def env_kwargs(env_cfg: Any, *, eval_split: bool = False, host: PluginHost | None = None) -> dict[str, Any]:
    """The full kwargs for ``gymnasium.make(env_cfg.id, ...)``: registered defaults + config (+ eval); with
    ``host``, the env is made from that host's plugins (``host=`` among the kwargs)."""
    import gymnasium

    given, host = host, host or default_host()
    env_id = env_cfg.id
    if env_id not in host.envs and env_id not in gymnasium.registry:
        host.envs.get(env_id)  # raises with the known ids and the closest match
    spec = gymnasium.spec(env_id)
    kwargs = deep_merge(spec.kwargs or {}, to_plain(env_cfg.kwargs) or {})
    if eval_split:
        kwargs = deep_merge(kwargs, to_plain(env_cfg.eval_kwargs) or {})
    return kwargs if given is None else {**kwargs, "host": given}


def make_envs(env_cfg: Any, n: int, *, eval_split: bool = False, host: PluginHost | None = None) -> list[Any]:
    """``n`` independent instances of the configured env (each episode of a step needs its own), made from
    ``host``'s plugins (default: the process-wide host)."""
    import gymnasium

    kwargs = env_kwargs(env_cfg, eval_split=eval_split, host=host)
    # gymnasium.make would merge kwargs shallowly over the spec's; we pass the merged whole
    return [gymnasium.make(env_cfg.id, disable_env_checker=True, **kwargs) for _ in range(n)]


def primary_reward(env: Any) -> str | None:
    """The name of an env's first reward component: its accuracy reward, by convention."""
    reward_set = getattr(env.unwrapped, "reward_set", None)
    return reward_set.components[0].name if reward_set and reward_set.components else None
