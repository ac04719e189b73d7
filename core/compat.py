"""Small shims over transformers API differences, in one place.

transformers 5.24 renamed the KV-cache argument and output field from ``past_key_values`` to ``cache``
(the old argument name still works there, with a deprecation warning). r1gym passes and reads the cache
under whichever name the installed version uses.
"""

from __future__ import annotations

import inspect
from typing import Any


_CACHE_ARG: dict[type, str] = {}


def _cache_arg(module: Any) -> str:
    kind = type(module)
    if kind not in _CACHE_ARG:  # read off the instance: wrappers may forward `.forward` via __getattr__
        params = inspect.signature(module.forward).parameters
        _CACHE_ARG[kind] = "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"
    return _CACHE_ARG[kind]


def base_model(module: Any) -> Any:
    """The transformers model under a peft wrapper (the module itself when it is not wrapped)."""
    return module.get_base_model() if hasattr(module, "get_base_model") else module


def cache_kwargs(module: Any, cache: Any) -> dict[str, Any]:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``, as ``module.forward`` expects (a peft
    wrapper is looked through to the transformers model it wraps)."""
    return {_cache_arg(base_model(module)): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (``output.cache`` or ``output.past_key_values``)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
