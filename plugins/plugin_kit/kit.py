"""``r1gym plugin new NAME``: write a plugin package that installs and passes its own tests as written.

The package is the smallest complete plugin, laid out as ``examples/r1gym-echo-plugin`` is: a task source, a
reward and an env registered through hooks, a Hydra option shipped as package data, tests that run r1gym's
conformance checks (:mod:`r1gym.testing`) on them, and a README. Its task (count the vowels of a made-up
word) is there to be replaced; everything around it is what a real plugin keeps.

Templates are files in ``templates/`` filled by :class:`string.Template` (``$name``; ``$$`` is a dollar sign),
so they read as the files they become.
"""

from __future__ import annotations

import argparse
import keyword
import re
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from r1gym.core.hookspecs import API_VERSION

#: output path (with ``{package}``/``{name}`` filled in) -> template file
LAYOUT = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "{package}/__init__.py": "package_init.py.tmpl",
    "{package}/plugin.py": "plugin.py.tmpl",
    "{package}/tasks.py": "tasks.py.tmpl",
    "{package}/conf/__init__.py": "empty.tmpl",
    "{package}/conf/env/__init__.py": "empty.tmpl",
    "{package}/conf/env/{name}.yaml": "env.yaml.tmpl",
    "tests/test_{name}.py": "test_plugin.py.tmpl",
}
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*")


@dataclass(frozen=True)
class PluginNames:
    """Every name the new plugin uses, derived from the one the user gave."""

    name: str  # plugin (entry point), task source and Hydra option: "word_count"
    dist: str  # distribution: "r1gym-word-count"
    package: str  # import package: "r1gym_word_count"
    title: str  # "WordCount"
    env_id: str  # "word_count/WordCount-v0"
    reward: str  # "word_count_exact"
    api: str = API_VERSION


def plugin_names(raw: str) -> PluginNames:
    """The names of a plugin called ``raw`` (lower case letters, digits, ``-`` or ``_``; starts with a letter)."""
    if not _NAME.fullmatch(raw):
        hint = re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")
        hint = hint if hint and hint[0].isalpha() else f"my_{hint}".rstrip("_")
        raise ValueError(f"plugin name {raw!r}: use lower case letters, digits, '-' or '_', starting with a letter "
                         f"(e.g. {hint!r})")
    name = raw.replace("-", "_")
    if keyword.iskeyword(name):
        raise ValueError(f"plugin name {raw!r} is a Python keyword; pick another, e.g. {name + '_task'!r}")
    title = "".join(part.capitalize() for part in name.split("_"))
    return PluginNames(name, f"r1gym-{name.replace('_', '-')}", f"r1gym_{name}", title, f"{name}/{title}-v0",
                       f"{name}_exact")


def write_plugin(names: PluginNames, parent: Path) -> list[Path]:
    """Write the package into ``parent/<dist>``; return the files written. The folder must not exist yet."""
    root = parent / names.dist
    if root.exists():
        raise ValueError(f"{root} exists already; remove it or pass another --dir")
    values = asdict(names)
    written = []
    for out, template in LAYOUT.items():
        path = root / out.format(**values)
        text = files(__package__).joinpath("templates", template).read_text(encoding="utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values), encoding="utf-8")
        written.append(path)
    return written


def new_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the plugin's name: lower case letters, digits, '-' or '_' (e.g. word-count)")
    parser.add_argument("--dir", default=".", help="the folder to write the package folder in (default: here)")


def new_command(args: argparse.Namespace, host: Any) -> int:
    names = plugin_names(args.name)
    if names.name in host.plugins:
        raise ValueError(f"a plugin named {names.name!r} is already loaded ({host.plugins[names.name].source}): "
                         "plugin names are global; pick another name")
    files_written = write_plugin(names, Path(args.dir))
    root = (Path(args.dir) / names.dist).resolve()
    print(f"wrote {names.dist} ({len(files_written)} files) in {root}:")
    for path in files_written:
        print(f"  {path.resolve().relative_to(root)}")
    print(f"next:\n  cd {root}\n  pip install -e .\n  python -m pytest\n  r1gym env check {names.env_id}\n"
          f"  r1gym train env={names.name} trainer.max_steps=5")
    return 0
