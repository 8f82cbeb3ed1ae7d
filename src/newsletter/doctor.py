"""``newsletter doctor``: what a deployment should check before it trusts its setup.

Each check is one :class:`Finding` (ok, warning or problem) with a line a person can act on:
the Python version (the email package's header-injection fixes), the signing key's strength,
the file modes of the ledger and ``.env`` (secrets and addresses readable by other users),
and whether the configured provider answers its preflight: the outbox creates its folders, SMTP
logs in and quits, an HTTP API answers one authenticated read-only call.  Nothing is ever sent.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import NewsletterError

OK, WARNING, PROBLEM = "ok", "warning", "problem"
# CPython releases with the email header-injection fixes (gh-121650, CVE-2024-6923).
SAFE_PYTHONS = {(3, 11): (3, 11, 10), (3, 12): (3, 12, 5)}


@dataclass(frozen=True)
class Finding:
    """One check's outcome: its name, ``ok``/``warning``/``problem``, and what it found."""

    check: str
    level: str
    detail: str

    def line(self) -> str:
        mark = {OK: "ok     ", WARNING: "warning", PROBLEM: "PROBLEM"}[self.level]
        return f"{mark}  {self.check}: {self.detail}"


def python_version(version: tuple[int, int, int] | None = None) -> Finding:
    """Python ≥ 3.11.10 (3.11) or ≥ 3.12.5 (3.12); 3.13 and later have the fixes from the start."""
    found: tuple[int, int, int] = version or (sys.version_info[0], sys.version_info[1], sys.version_info[2])
    shown = ".".join(map(str, found))
    least = SAFE_PYTHONS.get(found[:2])
    if found[:2] < (3, 11) or (least and found < least):
        need = ".".join(map(str, least)) if least else "3.11.10"
        return Finding("python", PROBLEM, f"{shown} lacks the email header-injection fixes; upgrade to {need} or later")
    return Finding("python", OK, f"{shown}")


def signing_key(config: Config, environ: Mapping[str, str]) -> Finding:
    """The unsubscribe signing key is set and carries at least 256 bits."""
    from .tokens import MIN_KEY_BITS, key_bits

    try:
        signing_keys = config.token_keys(environ)
    except NewsletterError as error:
        return Finding("signing key", PROBLEM, error.one_line())
    weak_old = [k for k in signing_keys[1:] if key_bits(k.reveal()) < MIN_KEY_BITS]
    detail = f"{config.token_key_env} carries about {key_bits(signing_keys[0].reveal())} bits"
    if weak_old:
        return Finding(
            "signing key",
            WARNING,
            f"{detail}; {len(weak_old)} retired key(s) in "
            f"{config.token_key_env}_OLD are weaker than {MIN_KEY_BITS} bits: retire them when you can",
        )
    return Finding("signing key", OK, detail)


def file_mode(path: Path, label: str) -> Finding:
    """A file readable or writable by other users is a problem; a missing one is only reported."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return Finding(label, OK, f"{path} does not exist yet")
    except OSError as error:
        return Finding(label, PROBLEM, f"cannot read {path}'s mode ({error.strerror})")
    if mode & 0o007:
        return Finding(label, PROBLEM, f"{path} is mode {mode:o}, open to every user; run: chmod 600 {path}")
    if mode & 0o070:
        return Finding(label, WARNING, f"{path} is mode {mode:o}, open to its group; run: chmod 600 {path}")
    return Finding(label, OK, f"{path} is mode {mode:o}")


def provider_preflight(config: Config) -> Finding:
    """The configured provider can be built from its settings, answers its preflight, and takes
    our credentials (:meth:`~newsletter.providers.base.Provider.check_access`: an SMTP login and
    QUIT, one read-only API call).  Nothing is sent and the ledger is not touched."""
    from .providers import load_provider
    from .providers.base import Provider

    label = f"provider {config.provider}"
    try:
        provider = load_provider(config)
        try:
            provider.preflight()
            provider.check_access()
        finally:
            provider.close()
    except NewsletterError as error:
        return Finding(label, PROBLEM, error.one_line())
    except Exception as error:  # a plug-in's own bug: reported, not a traceback
        return Finding(label, PROBLEM, f"the plug-in failed its check ({type(error).__name__}: {error})"[:300])
    if type(provider).check_access is Provider.check_access:
        return Finding(label, OK, "answers its preflight (it has no server to ask)")
    return Finding(label, OK, "answers its preflight: the server took our credentials, nothing was sent")


def diagnose(config: Config, environ: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check, in the order ``newsletter doctor`` prints them."""
    env = os.environ if environ is None else environ
    return [
        python_version(),
        signing_key(config, env),
        file_mode(config.database_path, "ledger"),
        file_mode(config.root / ".env", ".env"),
        provider_preflight(config),
    ]
