"""The keys ``newsletter.toml`` may hold: every one the code reads, so a typo is refused, not ignored."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

CONFIG_FILE = "newsletter.toml"

# Every key the code reads, by table: anything else is a typo, refused with a did-you-mean.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "site": frozenset({"title", "id", "base_url", "language", "timezone", "author", "description"}),
    "email": frozenset(
        {"from_name", "from_address", "postal_address", "list_id", "unsubscribe_url", "reply_to", "unsubscribe_mailto"}
    ),
    "paths": frozenset({"content", "public", "templates", "preview", "static"}),
    "send": frozenset(
        {
            "provider",
            "database",
            "token_key_env",
            "retry_attempts",
            "retry_base_delay",
            "retry_max_delay",
            "retry_deadline",
        }
    ),
    "feed": frozenset({"entries", "complete", "websub_hub", "per_page"}),
    "service": frozenset({"url"}),
    "providers": frozenset(),  # a table of [providers.NAME] tables, checked below
}
# The settings each built-in provider reads (a plug-in's own table is its business).
_HTTP_SETTINGS = {"base_url", "timeout", "tracking", "batch_size"}
PROVIDER_KEYS: dict[str, frozenset[str]] = {
    "outbox": frozenset({"path", "batch_size"}),
    "smtp": frozenset(
        {
            "host",
            "port",
            "security",
            "username",
            "password_env",
            "timeout",
            "envelope_from",
            "ca_file",
            "batch_size",
            "idn_domains",
            "connections",
        }
    ),
    "mailgun": frozenset(_HTTP_SETTINGS | {"domain", "region", "api_key_env", "webhook_key_env"}),
    "postmark": frozenset(
        _HTTP_SETTINGS
        | {"server_token_env", "message_stream", "transactional_stream", "webhook_user", "webhook_password_env"}
    ),
    "resend": frozenset(_HTTP_SETTINGS | {"api_key_env", "webhook_secret_env"}),
    "buttondown": frozenset(_HTTP_SETTINGS | {"api_key_env", "api_version"}),
    "ses": frozenset(
        _HTTP_SETTINGS
        | {
            "region",
            "access_key_id_env",
            "secret_access_key_env",
            "session_token_env",
            "from_address",
            "configuration_set",
        }
    ),
}


def unknown_keys(raw: Mapping[str, Any], source: str = CONFIG_FILE) -> list[ConfigError]:
    """A :class:`ConfigError` for every table or key the code never reads, with a did-you-mean.

    A typo (``form_address``) would otherwise be ignored and its default used in silence.
    """
    found = []
    for table, section in raw.items():
        if table not in KNOWN_KEYS:
            found.append(_unknown(f"[{table}]", table, KNOWN_KEYS, source, f"{source}: {table}", "table"))
            continue
        if not isinstance(section, dict):
            continue  # reported by the reader as "must be a table"
        if table == "providers":
            for name, settings in section.items():
                allowed = PROVIDER_KEYS.get(name)
                if allowed is None or not isinstance(settings, dict):
                    continue  # a plug-in provider: its settings are its own
                for key in settings:
                    if key not in allowed:
                        found.append(
                            _unknown(key, key, allowed, source, f"{source}: providers.{name}.{key}", "setting")
                        )
            continue
        for key in section:
            if key not in KNOWN_KEYS[table]:
                found.append(_unknown(key, key, KNOWN_KEYS[table], source, f"{source}: {table}.{key}", "key"))
    return found


def did_you_mean(name: object, known: Any, *, otherwise: str = "remove it") -> str:
    """The hint for an unknown name: the closest known one, else the list of known ones."""
    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known: {', '.join(sorted(known))}" if known else otherwise


def _unknown(shown: str, name: str, known: Any, source: str, where: str, kind: str) -> ConfigError:
    return ConfigError(f"unknown {kind} {str(shown)[:60]!r}", where=where, hint=did_you_mean(name, known))
