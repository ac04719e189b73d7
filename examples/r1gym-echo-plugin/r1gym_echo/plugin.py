"""The hook implementations of the r1gym-echo plugin (the module the ``r1gym`` entry point names).

Keep this module light: r1gym imports it at start-up for every command, so heavy imports (torch, a
sandbox client) belong inside the functions that need them. Each hook gets a ``register`` callback and
calls it once per contribution; names must be unique across all plugins.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl

#: the r1gym plugin API this plugin is written for: `r1gym plugins` shows it, and an r1gym that does not provide
#: it refuses the plugin with both versions in the message instead of failing somewhere in a hook
R1GYM_API = "1.0"
ENV_ID = "echo/Reverse-v0"


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym_echo.tasks import ReverseWordSource

    register("reverse_words", ReverseWordSource, description="procedural nonsense words to write backwards")


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym_echo.tasks import reverse_exact

    register("reverse_exact", reverse_exact, description="1.0 if <answer> holds the reversed word")


@hookimpl
def r1gym_register_envs(register) -> None:
    # An env is data: r1gym's SingleTurnEnv plus a task source and rewards named by their registered names.
    # The entry point is a "module:Class" string, so registering imports nothing.
    register(
        ENV_ID,
        "r1gym.envs.base:SingleTurnEnv",
        kwargs={"source": {"name": "reverse_words"}, "rewards": {"reverse_exact": 1.0, "format": 0.1}},
        description="write a short word backwards (r1gym-echo example plugin)",
    )


@hookimpl
def r1gym_register_config_dirs(register) -> None:
    # r1gym_echo/conf/env/reverse.yaml becomes the option `env=reverse`
    register("pkg://r1gym_echo.conf")
