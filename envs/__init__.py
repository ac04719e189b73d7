"""r1gym.envs: what every task family shares: the gymnasium env classes for LLM episodes (:mod:`.base`),
their spaces, mixtures of envs and file-backed task sources. A family's own source, rewards and envs live in
its plugin package, ``plugins/<family>/`` (README, "Task families").

Environments are registered by plugins when the plugin host is built, so use :func:`make` (or build
``r1gym.core.plugins.default_host()`` once before ``gymnasium.make``)::

    from r1gym.envs import make
    env = make("r1gym/Countdown-v0")
"""

from __future__ import annotations

from typing import Any


def make(env_id: str, *, host: Any = None, **kwargs: Any) -> Any:
    """``gymnasium.make`` after loading the plugins, with r1gym's error (known ids, closest match) for a
    name no plugin registered. ``host``: the plugin host to make it from (its task source, rewards,
    sandbox); default: the process-wide one."""
    import gymnasium

    from r1gym.core.plugins import default_host

    plugins = host or default_host()
    if env_id not in plugins.envs and env_id not in gymnasium.registry:
        plugins.envs.get(env_id)  # raises UnknownNameError listing the known ids
    return gymnasium.make(env_id, **kwargs, **({"host": host} if host is not None else {}))
