"""``.env`` beside ``newsletter.toml``: the secrets it names, loaded without overriding the environment."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError

ENV_FILE = ".env"
_ENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of a ``.env`` file (``#`` comments, optional quotes, ``export``).

    A line that is not an assignment is an error naming it: a half-read file of secrets
    would fail later, further from the cause.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not valid UTF-8", where=str(path), hint="save the file as UTF-8") from None
    except OSError as exc:
        hint = "check the file's permissions"
        raise ConfigError(f"cannot read ({exc.strerror})", where=str(path), hint=hint) from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        if match is None:
            raise ConfigError(
                "is not a NAME=value line",
                where=f"{path}:{number}",
                hint="write e.g. NEWSLETTER_TOKEN_KEY=… or # a comment",
            )
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def load_env_file(root: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Load ``root/.env`` into the environment, never overriding a variable already set.

    Returns the names it set.  Kept beside ``newsletter.toml`` and out of git, it holds
    the secrets the config file names (SEC-07).
    """
    path = Path(root) / ENV_FILE
    if not path.is_file():
        return []
    env = os.environ if environ is None else environ
    added = []
    for name, value in read_env_file(path).items():
        if name not in env:
            env[name] = value
            added.append(name)
    return added
