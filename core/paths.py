"""Paths that config names: a filesystem path, or ``pkg://package.name/relative/path`` inside an installed package.

A module of its own, importing only the standard library, because task sources and rewards resolve paths in
processes that must stay lean (the math reward's caller never imports Hydra, OmegaConf or their ANTLR runtime:
tests/test_math_verify.py::test_nothing_heavy_in_the_calling_process).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

PKG_PREFIX = "pkg://"


def resolve_path(path: str | Path) -> Path:
    """A filesystem path for ``path``; ``pkg://pkg.name/rel/path`` is looked up inside that package.

    Here, not in a task source, because data generation, datasets and plugins all read files that config
    names, and a ``pkg://`` path (the same spelling Hydra uses for ``pkg://r1gym.conf``) works from a wheel
    and from an editable install alike (:mod:`importlib.resources`).
    """
    text = str(path)
    if not text.startswith(PKG_PREFIX):
        return Path(text).expanduser()
    package, _, relative = text[len(PKG_PREFIX) :].partition("/")
    if not package or not relative:
        raise ValueError(f"a package path looks like 'pkg://package.name/relative/file.jsonl', got {text!r}")
    resource = importlib.resources.files(package).joinpath(relative)
    return Path(str(resource))
