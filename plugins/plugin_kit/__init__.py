"""Built-in plugin: the plugin kit, ``r1gym plugin new NAME``, which writes a new plugin package to start from.

Its command comes in through the same hook as any plugin's (``r1gym_register_cli_commands``), so the command
line knows nothing of it; the writer and its templates are in :mod:`.kit` and ``templates/``.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


@hookimpl
def r1gym_register_cli_commands(register) -> None:
    from r1gym.plugins.plugin_kit.kit import new_arguments, new_command

    register("plugin new", new_command, arguments=new_arguments,
             description="write a new plugin package (entry point, reward, env, config folder, tests, README)")
