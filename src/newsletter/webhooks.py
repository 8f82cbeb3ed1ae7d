"""Bounce and complaint webhooks: each provider's own way of proving a call is theirs.

- Mailgun signs ``timestamp + token`` with HMAC-SHA256 and the webhook signing key.
- Postmark does not sign: the webhook URL carries HTTP Basic credentials we check.
- Resend delivers through Svix: HMAC-SHA256 of ``id.timestamp.body`` with the
  ``whsec_`` secret, in the ``svix-signature`` header.

Each verifier returns the ``(address, reason)`` pairs to suppress, or raises
:class:`BadSignature`; nothing is changed before the signature checks out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Mapping

from .store import BOUNCED, COMPLAINED

MAX_AGE_SECONDS = 15 * 60  # older signed calls are refused (replay protection)
PERMANENT_BOUNCES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "SpamNotification", "Blocked"}


class BadSignature(ValueError):
    """The call cannot be shown to come from the provider; refused without detail."""


def _json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadSignature("invalid") from None
    if not isinstance(data, dict):
        raise BadSignature("invalid")
    return data


def _fresh(timestamp: str, now: float) -> None:
    try:
        if abs(now - float(timestamp)) > MAX_AGE_SECONDS:
            raise BadSignature("invalid")
    except ValueError:
        raise BadSignature("invalid") from None


def mailgun_events(body: bytes, signing_key: str, now: float) -> list[tuple[str, str]]:
    """Mailgun: ``failed`` with severity ``permanent`` → bounced; ``complained`` → complained."""
    data = _json(body)
    signature = data.get("signature") or {}
    timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
    expected = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not token or not hmac.compare_digest(expected, given):
        raise BadSignature("invalid")
    _fresh(timestamp, now)
    event = data.get("event-data") or {}
    recipient = str(event.get("recipient", ""))
    if event.get("event") == "complained":
        return [(recipient, COMPLAINED)]
    if event.get("event") == "failed" and event.get("severity") == "permanent":
        return [(recipient, BOUNCED)]
    return []


def postmark_events(body: bytes, authorization: str | None, user: str, password: str) -> list[tuple[str, str]]:
    """Postmark: Basic credentials from the webhook URL; hard bounces and spam complaints."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if not authorization or not hmac.compare_digest(authorization.encode(), expected.encode()):
        raise BadSignature("invalid")
    data = _json(body)
    address = str(data.get("Email", ""))
    if data.get("RecordType") == "SpamComplaint":
        return [(address, COMPLAINED)]
    if data.get("RecordType") == "Bounce" and (data.get("Type") in PERMANENT_BOUNCES or data.get("Inactive")):
        return [(address, BOUNCED)]
    return []


def resend_events(body: bytes, headers: Mapping[str, str], secret: str, now: float) -> list[tuple[str, str]]:
    """Resend (Svix): ``email.bounced`` (not transient) → bounced; ``email.complained`` → complained."""
    message_id, timestamp = headers.get("svix-id", ""), headers.get("svix-timestamp", "")
    signatures = headers.get("svix-signature", "")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except (binascii.Error, ValueError):
        raise BadSignature("invalid") from None
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    if not message_id or not any(hmac.compare_digest(expected, g) for g in given):
        raise BadSignature("invalid")
    _fresh(timestamp, now)
    data = _json(body)
    event, payload = data.get("type"), data.get("data") or {}
    addresses = payload.get("to") or []
    addresses = [addresses] if isinstance(addresses, str) else addresses
    if event == "email.complained":
        return [(str(a), COMPLAINED) for a in addresses]
    if event == "email.bounced" and (payload.get("bounce") or {}).get("type", "Permanent") != "Transient":
        return [(str(a), BOUNCED) for a in addresses]
    return []
