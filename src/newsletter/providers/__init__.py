"""Provider plug-ins, discovered through the ``newsletter.providers`` entry-point group.

Built-ins are registered in this project's ``pyproject.toml`` exactly as a
third-party package registers its own, so there is one path for both.  Every
entry is checked when it is loaded (:func:`~newsletter.providers.base.check_provider_class`):
a plug-in missing an abstract method is refused then, in one line naming it,
not in the middle of a send.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ..config import Config
from ..errors import ConfigError, ProviderNotFound
from .base import Provider, check_provider_class

GROUP = "newsletter.providers"


@dataclass(frozen=True)
class BrokenPlugin:
    """A registered plug-in that cannot be used, with the one-line reason."""

    name: str
    error: str


def _load(entry: EntryPoint) -> type[Provider] | BrokenPlugin:
    try:
        return check_provider_class(entry.name, entry.load())
    except TypeError as exc:
        return BrokenPlugin(entry.name, str(exc))
    except Exception as exc:  # a broken third-party plug-in must not hide the others
        return BrokenPlugin(entry.name, f"provider plug-in {entry.name!r} failed to load ({exc})")


def available() -> dict[str, type[Provider] | BrokenPlugin]:
    """Every registered provider class by name; a plug-in that fails to load or check is a :class:`BrokenPlugin`."""
    return dict(sorted((entry.name, _load(entry)) for entry in entry_points(group=GROUP)))


def provider_class(name: str) -> type[Provider]:
    """The registered class for ``name`` (only that plug-in is imported); unknown names list the known ones."""
    entries = {entry.name: entry for entry in entry_points(group=GROUP)}
    if name not in entries:
        raise ProviderNotFound(
            f"unknown provider {name!r}",
            where="newsletter.toml: send.provider",
            hint=f"use one of: {', '.join(sorted(entries)) or 'none installed'}",
        )
    factory = _load(entries[name])
    if isinstance(factory, BrokenPlugin):
        raise ConfigError(factory.error, hint="fix or reinstall the plug-in")
    return factory


def load_provider(config: Config, name: str | None = None, environ: Mapping[str, str] | None = None) -> Provider:
    """Build the provider the config selects (or ``name``)."""
    name = name or config.provider
    factory = provider_class(name)
    return factory.from_config(
        config.provider_settings(name), config=config, environ=os.environ if environ is None else environ
    )
