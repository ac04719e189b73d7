"""r1gym.envs: gymnasium environments for LLM episodes and the task sources behind them.

Environments are registered by plugins when the plugin host is built, so use :func:`make` (or build
``r1gym.core.plugins.default_host()`` once before ``gymnasium.make``)::

    from r1gym.envs import make
    env = make("r1gym/Countdown-v0")
"""

from __future__ import annotations

from typing import Any


def make(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make`` after loading the plugins, with r1gym's error (known ids, closest match) for a
    name no plugin registered."""
    import gymnasium

    from r1gym.core.plugins import default_host

    host = default_host()
    if env_id not in host.envs and env_id not in gymnasium.registry:
        host.envs.get(env_id)  # raises UnknownNameError listing the known ids
    return gymnasium.make(env_id, **kwargs)
