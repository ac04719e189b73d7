"""Objects that config names directly, without a plugin: ``"module:function"``, ``"path/to/file.py:function"``
or a dotted ``_target_`` path (Hydra's spelling).

TRL takes a reward as a callable and verl as a file path plus a function name (``custom_reward_function.path``
and ``.name``); r1gym takes either where it takes a registered name (rewards, task sources, env ids):

* ``"package.module:attr"``: the module is imported and ``attr`` (dots allowed: ``Class.method``) read from it;
* ``"path/to/file.py:attr"``: a user's own file that is not an importable package, loaded once per path with
  :func:`importlib.util.spec_from_file_location` (relative paths as :func:`r1gym.core.paths.resolve_path`
  resolves them, ``pkg://`` included, then from Hydra's original working directory if a Hydra job changed it);
* ``"package.module.attr"`` (a ``_target_``): the longest importable prefix is the module, as Hydra resolves it.

:func:`locate` only imports: it never calls what it found, so a config check can resolve every name before a
model loads. A name that does not resolve fails with what exists in that place and the closest spelling
(:class:`~r1gym.core.registry.UnknownNameError`); an error raised *inside* the user's module is left as it is.
Standard library only at import time (task sources resolve names in lean processes, see core/paths.py).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from r1gym.core.paths import resolve_path
from r1gym.core.registry import UnknownNameError

#: keys of a config node that say where its object comes from (the rest are the object's parameters)
TARGET_KEY = "_target_"
#: the prefix of the module names that users' files are loaded under (in ``sys.modules``)
USER_MODULES = "r1gym_user_code"


class UnknownTargetError(UnknownNameError):
    """A reference to a module or attribute that is not there: where it looked, what is there, the closest
    name (an :class:`UnknownNameError`, so callers that handle unknown registered names handle these too)."""

    def __init__(self, kind: str, name: str, known: list[str], where: str):
        super().__init__(kind, name, known)
        close = difflib.get_close_matches(name, self.known, n=1)
        self.message = (f"{where} has no {kind} {name!r}; there: {', '.join(self.known) or '(nothing)'}."
                        + (f" Did you mean {close[0]!r}?" if close else ""))
        self.args = (self.message,)


def is_reference(name: object) -> bool:
    """Whether ``name`` points at an object (``"module:attr"``, ``"file.py:attr"``) rather than naming a
    registered one: registered names (``math_accuracy``, ``r1gym/Math-v0``) never contain ``:``."""
    return isinstance(name, str) and ":" in name and not name.startswith(":") and not name.endswith(":")


def locate(ref: str, kind: str = "object") -> Any:
    """The object ``ref`` names (see the module docstring), imported but never called.

    >>> locate("os.path:join") is locate("os.path.join")
    True
    """
    if not isinstance(ref, str) or not ref.strip():
        raise TypeError(f"a {kind} reference must be 'module:name', 'path/to/file.py:name' or 'module.name', got {ref!r}")
    ref = ref.strip()
    if ":" in ref:
        where, _, attr = ref.rpartition(":")  # rpartition: a Windows drive letter stays in the path
        module = _load_file(where) if _is_file(where) else _import(where, kind, ref)
        return _getattr_path(module, attr, kind, ref)
    parts = ref.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest importable prefix, as Hydra's _locate does
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and not module_name.startswith(exc.name) and not exc.name.startswith(module_name):
                raise  # the module exists but one of *its* imports is missing: the user's error, as it is
            continue
        return _getattr_path(module, ".".join(parts[i:]), kind, ref)
    _import(ref, kind, ref)  # no prefix imports: raises with the modules there are
    raise ValueError(f"{kind} reference {ref!r} names a module, not something in it; write 'module:name'")


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def file_path(where: str) -> Path:
    """The file a ``path/to/file.py`` reference means: as :func:`resolve_path` reads it, else relative to the
    directory Hydra started in (a Hydra job with ``hydra.job.chdir=true`` runs elsewhere)."""
    path = resolve_path(where)
    if not path.is_absolute() and not path.exists():
        try:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.initialized():
                from hydra.utils import get_original_cwd

                started_in = Path(get_original_cwd()) / path
                # only a file that is there: Hydra's record of the last job outlives it in this process, and a
                # missing file is reported where it was looked for first (the working folder)
                path = started_in if started_in.exists() else path
        except ImportError:  # Hydra is a dependency; only a lean install without it gets here
            pass
    return path.resolve()


def _load_file(where: str) -> ModuleType:
    """The module of a user's ``.py`` file, executed once per path (its functions keep their identity, and
    pickling finds them through ``sys.modules``)."""
    path = file_path(where)
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.py")) if path.parent.is_dir() else []
        close = difflib.get_close_matches(path.name, siblings, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise FileNotFoundError(f"no Python file {where!r} (looked at {path}); .py files there: "
                                f"{', '.join(siblings) or '(none)'}.{hint}")
    digest = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    name = f"{USER_MODULES}.{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # a parent package in sys.modules, so the module's dotted name imports (Hydra's instantiate and pickle
    # re-resolve a class or function by its __module__ and __qualname__)
    parent = sys.modules.setdefault(USER_MODULES, ModuleType(USER_MODULES, "users' files named in config"))
    parent.__path__ = getattr(parent, "__path__", [])
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(parent, name.rpartition(".")[2], module)
    return module


def _import(module_name: str, kind: str, ref: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if not module_name.startswith(missing):
            raise  # the module itself imports something that is not installed: its own error, unchanged
    parent, _, leaf = missing.rpartition(".")
    if parent:
        search = getattr(importlib.import_module(parent), "__path__", None)
        known = [m.name for m in pkgutil.iter_modules(search)] if search is not None else []
        what = f"package {parent!r}" if search is not None else f"{parent!r} (a module, not a package)"
        raise UnknownTargetError("module", leaf, known, f"{kind} {ref!r}: {what}") from None
    known = sorted({m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")})
    close = difflib.get_close_matches(missing, known, n=3)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ModuleNotFoundError(f"{kind} {ref!r}: no module named {missing!r} on the Python path.{hint} A file that is "
                              f"not an installed package is named by its path: 'path/to/file.py:name'.", name=missing)


def _getattr_path(module: ModuleType, attr: str, kind: str, ref: str) -> Any:
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            user_file = module.__name__.startswith(USER_MODULES + ".")
            owner = str(module.__file__) if user_file else module.__name__
            owner = ".".join([owner, *attr.split(".")[:i]]) if i else owner
            known = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            raise UnknownTargetError(kind, part, known, f"{kind} {ref!r}: {owner!r}")
        obj = getattr(obj, part)
    return obj
