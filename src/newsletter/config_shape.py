"""The shape of ``newsletter.toml`` before it means anything: a bounded read, bounded nesting,
numbers that are finite and in range, text that holds no control character, provider settings
of the right type.  :mod:`newsletter.config` gives the checked values their meaning.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_keys import PROVIDER_KEYS
from .errors import ConfigError
from .textutil import has_xml_forbidden

# Bounds on what the TOML parser is given and may return: a config is a few KB, a few levels deep.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_DEPTH = 8
LARGEST_INTEGER = 2**63 - 1  # what SQLite and every provider API can hold
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Setting values a provider reads as text (any other type is a config error, not a crash).
PROVIDER_TEXT_SETTINGS = frozenset(
    {
        "host", "security", "username", "envelope_from", "ca_file", "path", "base_url", "domain", "region",
        "api_version", "message_stream", "transactional_stream", "webhook_user",
    }
)  # fmt: skip


@dataclass(frozen=True)
class NumberRange:
    """The values a config number may take: finite, from ``minimum`` to ``maximum``."""

    minimum: float
    maximum: float
    example: float
    whole: bool = False
    unit: str = ""

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind} from {plain_number(self.minimum)} to {plain_number(self.maximum)}{unit}"

    def admits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and (not math.isfinite(value) or (self.whole and not value.is_integer())):
            return False
        return self.minimum <= value <= self.maximum


# Every number newsletter.toml may hold, by key: ``[send]`` keys, then keys of any ``[providers.NAME]``.
SEND_NUMBERS = {
    "retry_attempts": NumberRange(1, 100, 8, whole=True),
    "retry_base_delay": NumberRange(0, 600, 1, unit="seconds"),
    "retry_max_delay": NumberRange(0, 3600, 60, unit="seconds"),
    "retry_deadline": NumberRange(0, 86_400, 600, unit="seconds"),
}
PROVIDER_NUMBERS = {
    "port": NumberRange(1, 65_535, 587, whole=True),
    "timeout": NumberRange(0.01, 3600, 30, unit="seconds"),
    "batch_size": NumberRange(1, 1_000_000, 100, whole=True),
}


def plain_number(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def number_range(key: str) -> NumberRange | None:
    """The range of the config number at dotted ``key`` (``send.retry_attempts``, ``providers.smtp.port``)."""
    table, _, name = key.rpartition(".")
    if table == "send":
        return SEND_NUMBERS.get(name)
    if table.startswith("providers.") and table.count(".") == 1:
        return PROVIDER_NUMBERS.get(name)
    return None


def read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing anything but a regular file of at most :data:`MAX_CONFIG_BYTES`."""
    with open(path, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConfigError(
                "is not a regular file", where=str(path), hint="pass --config with the path of newsletter.toml"
            )
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"is over {MAX_CONFIG_BYTES // 1_000_000} MB; a config is a few KB",
            where=str(path), hint="check that --config names newsletter.toml",
        )  # fmt: skip
    return data


def check_shape(raw: Mapping[str, Any], source: str, errors: list[ConfigError] | None = None) -> None:
    """Every value of the parsed file, whatever its key: bounded depth, finite numbers SQLite can
    hold, text without control characters, environment variable names that are names.

    Walked with an explicit stack, so no input can exhaust the recursion limit.  With
    ``errors``, each problem is appended there and the walk goes on; without, the first raises.
    """
    stack: list[tuple[str, Any, int]] = [("", raw, 0)]
    while stack:
        key, value, depth = stack.pop()
        try:
            _check_value(stack, key, value, depth, source)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)


def _check_value(stack: list[tuple[str, Any, int]], key: str, value: Any, depth: int, source: str) -> None:
    """One value of :func:`check_shape`; its children go on ``stack``."""
    where = f"{source}: {key or 'the top level'}"
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(
            f"is nested more than {MAX_CONFIG_DEPTH} levels deep", where=where, hint="flatten the tables and arrays"
        )
    if isinstance(value, dict):
        for name, item in value.items():
            if has_xml_forbidden(name):
                raise ConfigError("a key holds a control character", where=where, hint="retype the key")
            stack.append((f"{key}.{name}" if key else name, item, depth + 1))
    elif isinstance(value, list):
        stack.extend((f"{key}[{index}]", item, depth + 1) for index, item in enumerate(value))
    elif isinstance(value, float) and not math.isfinite(value):
        allowed = number_range(key)
        if allowed is not None:
            problem, hint = (
                f"must be {allowed.describe()} (got {value})",
                f"e.g. {_last(key)} = {plain_number(allowed.example)}",
            )
        else:
            problem, hint = f"is {value}, not a finite number", "write a plain number"
        raise ConfigError(problem, where=where, hint=hint)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST_INTEGER:
        raise ConfigError("is too large a number", where=where, hint=f"numbers stay below {LARGEST_INTEGER:,}")
    elif isinstance(value, str) and has_xml_forbidden(value):
        character = next(ch for ch in value if has_xml_forbidden(ch))
        raise ConfigError(
            f"contains the control character U+{ord(character):04X}", where=where,
            hint="remove it (often an invisible character pasted by accident)",
        )  # fmt: skip
    if key.endswith("_env") and not (isinstance(value, str) and ENV_NAME.fullmatch(value)):
        raise ConfigError(
            "must name an environment variable", where=where, hint=f'e.g. {_last(key)} = "NEWSLETTER_KEY"'
        )


def _last(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def provider_tables(raw: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """``[providers.NAME]`` tables, each checked: a table, its numbers in range, its text settings text."""
    providers = raw.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError(
            "must be a table of [providers.NAME] tables", where=f"{source}: providers",
            hint="write each provider's settings under its own [providers.NAME] header",
        )  # fmt: skip
    for name, settings in providers.items():
        where = f"{source}: providers.{name}"
        if not isinstance(settings, dict):
            raise ConfigError(
                "must be a table of settings", where=where, hint=f"write its settings under a [providers.{name}] header"
            )
    return providers


def check_provider_settings(name: str, settings: Mapping[str, Any], source: str, errors: list[ConfigError]) -> None:
    """One ``[providers.NAME]`` table: its numbers in range, its text settings text, no tables."""
    where = f"{source}: providers.{name}"
    known = PROVIDER_KEYS.get(name)
    for key, value in settings.items():
        if known is not None and key not in known:
            continue  # refused as unknown (with a did-you-mean); its value says nothing more
        try:
            _check_provider_setting(where, key, value)
        except ConfigError as error:
            errors.append(error)


def _check_provider_setting(where: str, key: str, value: Any) -> None:
    if key in PROVIDER_NUMBERS and not PROVIDER_NUMBERS[key].admits(value):
        raise ConfigError(
            f"must be {PROVIDER_NUMBERS[key].describe()} (got {shown_value(value)})",
            where=f"{where}.{key}", hint=f"e.g. {key} = {plain_number(PROVIDER_NUMBERS[key].example)}",
        )  # fmt: skip
    if key in PROVIDER_TEXT_SETTINGS and not isinstance(value, str):
        raise ConfigError("must be a string", where=f"{where}.{key}", hint='write it in "quotes"')
    if isinstance(value, (dict, list)):
        raise ConfigError(
            "must be a single value (text, number or true/false)", where=f"{where}.{key}",
            hint="no provider setting is a table or an array",
        )  # fmt: skip


def shown_value(value: Any) -> str:
    return str(value)[:40] if isinstance(value, (int, float)) else repr(value)[:40]
