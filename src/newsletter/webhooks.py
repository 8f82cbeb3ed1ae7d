"""Bounce and complaint webhooks: the pieces every provider's verifier shares, and the replay guard.

Each provider proves its calls its own way, in its own module
(``verify_webhook`` / ``parse_events`` on the provider class).  What is the
same for all lives here: reading a body defensively (bounded size and depth,
so no RecursionError and no unbounded memory), the freshness window for
signed timestamps, and :func:`accept_call`, which remembers each call's
one-time id so that a captured call cannot be replayed with other event data.
Nothing is changed before the proof checks out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .config import secret
from .tokens import check_webhook_secret

if TYPE_CHECKING:
    from .store import Ledger

MAX_WEBHOOK_BYTES = 256 * 1024  # a provider's event is a few KB; anything this large is not one
MAX_JSON_DEPTH = 32  # provider events nest 3-4 levels deep
MAX_AGE_SECONDS = 5 * 60  # a signed timestamp further than this from our clock is refused (replay window)
NEW, REPEAT, CONFLICT = "new", "repeat", "conflict"


class BadSignature(ValueError):
    """The call cannot be shown to come from the provider (401); refused without detail."""


class BadPayload(ValueError):
    """The body is not an event we can read (too large, too deep, not JSON): 400, nothing changed."""


@dataclass(frozen=True)
class WebhookCall:
    """One webhook request as the provider sent it: the raw body and its headers (names in lower case)."""

    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class WebhookProof:
    """What a verified call proves: the id it may be used once under, and when it was signed.

    ``replay_id`` is the provider's one-time value (Mailgun's token, Svix's message id,
    Postmark's event id).  ``signed_at`` is ``None`` when the provider signs no time (Postmark).
    """

    replay_id: str
    signed_at: float | None = None


@dataclass(frozen=True)
class SuppressionEvent:
    """An address the provider says must not be mailed again, and why (``bounced``/``complained``)."""

    address: str
    reason: str


def read_json(body: bytes) -> dict:
    """A webhook body as a JSON object: bounded size and depth, never a RecursionError (BadPayload)."""
    if len(body) > MAX_WEBHOOK_BYTES:
        raise BadPayload("too large")
    if nesting_depth(body) > MAX_JSON_DEPTH:
        raise BadPayload("nested too deep")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadPayload("not JSON") from None
    if not isinstance(data, dict):
        raise BadPayload("not a JSON object")
    return data


def nesting_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """The deepest ``[``/``{`` nesting outside strings (stops counting past ``limit``)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def signed_time(timestamp: Any) -> float:
    """A provider's signed Unix timestamp as a number (BadSignature when it is not one)."""
    try:
        value = float(str(timestamp))
    except ValueError:
        raise BadSignature("invalid") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadSignature("invalid")
    return value


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256, the signature every signing provider uses."""
    return hmac.new(key, data, hashlib.sha256).digest()


def same(expected: str | bytes, given: str | bytes) -> bool:
    """Constant-time comparison of two signatures or credentials."""
    left = expected.encode() if isinstance(expected, str) else expected
    right = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(left, right)


def basic_credentials(user: str, password: str) -> str:
    """The ``Authorization`` value HTTP Basic sends for ``user:password``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def webhook_secret(settings: Mapping[str, Any], setting: str, default_variable: str, environ: Mapping[str, str]) -> str:
    """The webhook secret named by ``[providers.X] <setting>`` (an environment variable), revealed."""
    return check_webhook_secret(secret(settings.get(setting, default_variable), environ)).reveal()


def accept_call(
    provider: Any,
    call: WebhookCall,
    *,
    settings: Mapping[str, Any],
    environ: Mapping[str, str],
    ledger: Ledger,
    now: datetime,
    apply: Callable[[list[SuppressionEvent]], None],
) -> bool:
    """Verify a call, refuse stale timestamps and replays, then ``apply`` its events once.

    Returns ``False`` for an exact repeat of a call already applied (the provider retrying
    after a lost answer: nothing to do, answer 200).  A call whose one-time id was already
    used with another body is a replay of a captured signature: :class:`BadSignature`.
    """
    proof = provider.verify_webhook(call, settings=settings, environ=environ, now=now.timestamp())
    if proof.signed_at is not None and abs(now.timestamp() - proof.signed_at) > MAX_AGE_SECONDS:
        raise BadSignature("invalid")
    events = provider.parse_events(call)
    digest = hashlib.sha256(call.body).hexdigest()
    seen = ledger.remember_webhook(provider.name, proof.replay_id, digest, now=now)
    if seen == CONFLICT:
        raise BadSignature("invalid")
    if seen == REPEAT:
        return False
    try:
        apply(events)
    except BaseException:
        ledger.forget_webhook(provider.name, proof.replay_id)  # let the provider's retry apply it
        raise
    return True
