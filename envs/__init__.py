"""r1gym.envs: what every task family shares: the gymnasium env classes for LLM episodes (:mod:`.base`),
their spaces, mixtures of envs and file-backed task sources. A family's own source, rewards and envs live in
its plugin package, ``plugins/<family>/`` (README, "Task families").

Importing this package registers the env ids of every installed plugin in gymnasium's registry, the way a
gymnasium env package does (built-ins, entry points of the group ``r1gym``, ``R1GYM_PLUGINS``)::

    import gymnasium
    import r1gym.envs  # noqa: F401   (or: gymnasium.make("r1gym.envs:r1gym/Countdown-v0"))

    env = gymnasium.make("r1gym/Countdown-v0")

Registration is data: each id gets its ``"module:Class"`` entry point and kwargs, read from the plugins'
``r1gym_register_envs`` hook alone (:func:`r1gym.core.plugins.declared_envs`), so the import loads no model
library and no task code. Making an env builds the process-wide plugin host for its task source and rewards;
:func:`make` does the same with r1gym's error for an unknown id (known ids, closest match) and takes the host
to make it from.
"""

from __future__ import annotations

from typing import Any


def register_plugin_envs() -> list[str]:
    """Put every env id the installed plugins declare into gymnasium's registry (ids already there are left
    as they are: a host built earlier registered the same specs). Returns the ids added. Runs at import."""
    import gymnasium

    from r1gym.core.plugins import declared_envs

    added = []
    for _, entry in declared_envs():
        if entry.env_id not in gymnasium.registry:
            gymnasium.register(id=entry.env_id, entry_point=entry.entry_point, kwargs=dict(entry.kwargs))
            added.append(entry.env_id)
    return added


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


register_plugin_envs()
