"""Name -> model builder registry: the one public way to make a network.

Configs and tools outside the code base name a model (``enet_sad``, ``resnet18_sad``,
``resnet34_sad``) and call :func:`build_model`; the builders register themselves with
:func:`register_model` when their module is imported.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}
# Modules whose import registers the built-in networks (imported lazily, on first use).
_BUILTIN_MODULES = ("lanesad_ros.model.enet_sad", "lanesad_ros.model.resnet_sad")


def register_model(name: str) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator: register ``builder(num_lanes=..., input_size=..., **options)`` under ``name``."""

    def decorate(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model name {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorate


def _load_builtin() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    _load_builtin()
    return sorted(_BUILDERS)


def build_model(name: str, num_lanes: int = 4, input_size: tuple[int, int] = (288, 800), **options) -> torch.nn.Module:
    """Build a freshly initialised network.

    ``input_size`` is the (height, width) the network is configured for (both divisible by
    16); ``options`` go to the model's constructor. The model carries ``.name``,
    ``.num_lanes``, ``.input_size`` and ``.options``.
    """
    _load_builtin()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name](num_lanes=num_lanes, input_size=input_size, **options)
