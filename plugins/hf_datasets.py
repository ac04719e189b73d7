"""Built-in plugin: Hugging Face ``datasets`` as a task source, ``hf_dataset`` (the source itself, its layouts
and loading: :mod:`r1gym.plugins.hf_source`; the user's guide: docs/datasets.md).

Like every plugin module this one imports nothing at its top level but the hook marker: ``import r1gym.envs``
loads the plugins to register their env ids, and the source, ``datasets`` and the env classes load only when
the plugin host collects task sources.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


@hookimpl
def r1gym_register_task_sources(register) -> None:
    from r1gym.plugins.hf_source import HFDatasetSource

    register("hf_dataset", HFDatasetSource,
             description="a Hugging Face dataset (hub id, save_to_disk folder or data files); known layouts need no mapping")
