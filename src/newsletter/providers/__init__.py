"""Provider plug-ins, discovered through the ``newsletter.providers`` entry-point group.

Built-ins are registered in this project's ``pyproject.toml`` exactly as a
third-party package registers its own, so there is one path for both.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Mapping

from ..config import Config
from ..errors import ConfigError, ProviderNotFound

GROUP = "newsletter.providers"


def available() -> dict[str, type]:
    """Every registered provider class by name, loaded lazily on first use."""
    found = {}
    for entry in entry_points(group=GROUP):
        try:
            found[entry.name] = entry.load()
        except Exception as exc:  # a broken third-party plug-in must not hide the others
            found[entry.name] = _BrokenPlugin(entry.name, exc)
    return dict(sorted(found.items()))


def load_provider(config: Config, name: str | None = None, environ: Mapping[str, str] | None = None):
    """Build the provider the config selects (or ``name``); unknown names list the known ones."""
    name = name or config.provider
    providers = available()
    if name not in providers:
        raise ProviderNotFound(
            f"unknown provider {name!r}",
            where="newsletter.toml: send.provider",
            hint=f"use one of: {', '.join(providers) or 'none installed'}",
        )
    factory = providers[name]
    if isinstance(factory, _BrokenPlugin):
        raise ConfigError(f"provider plug-in {name!r} failed to load ({factory.error})", hint="reinstall it")
    return factory.from_config(
        config.provider_settings(name), config=config, environ=os.environ if environ is None else environ
    )


class _BrokenPlugin:
    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
