"""Signed tokens for unsubscribe and confirmation links (SEC-09, LIST-05): the one token module.

A token is ``base64url(payload || mac)``, compact enough that an unsubscribe URL stays on one
header line even behind a long base URL (LIST-01).  The payload, in bytes:

====================  =====================================================================
version               1 byte, ``2``
key id                4 bytes: the first bytes of SHA-256 of the signing key (which key)
purpose               1 byte: 1 unsubscribe, 2 confirm
subscriber id         unsigned LEB128 varint
issued at             unsigned LEB128 varint, seconds since the epoch
====================  =====================================================================

``mac`` is HMAC-SHA256, truncated to 16 bytes (128 bits), over a domain tag, the list id and
the payload: the list id is bound by the signature, not carried, so a token is scoped to one
list without growing.  No address appears; verification uses ``hmac.compare_digest``; retired
keys still verify during a rotation; unsubscribe tokens never expire (LAW-02).  Every
value has exactly one spelling: any other encoding of the same claims is refused.

Tokens of version 1 (``base64url(JSON) "." base64url(HMAC)``, about 110 characters) are in
mailboxes already; they still verify.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .config import Secret
from .errors import SecretMissing

TOKEN_VERSION = 2
LEGACY_TOKEN_VERSION = 1
UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
_PURPOSE_CODES = {UNSUBSCRIBE: 1, CONFIRM: 2}
_PURPOSES = {code: name for name, code in _PURPOSE_CODES.items()}
KEY_ID_BYTES = 4
MAC_BYTES = 16
# Separates these MACs from any other use of the same key.
_DOMAIN = b"newsletter-token\x00"
# Bounds that keep a hostile token from costing anything: the largest real token is ~45 characters.
MAX_TOKEN_CHARS = 512
_MAX_VARINT_BYTES = 10
# The longest token make_token can write (two 10-byte varints): 56 characters.
LONGEST_TOKEN_CHARS = -(-(1 + KEY_ID_BYTES + 1 + 2 * _MAX_VARINT_BYTES + MAC_BYTES) * 4 // 3)


# The signing key must carry at least as many bits as HMAC-SHA256's output (RFC 2104 §3).
MIN_KEY_BITS = 256
MAKE_KEY_COMMAND = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
# Character classes a key is drawn from; a key's alphabet is the union of those it uses.
_KEY_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_", string.punctuation)
_HEX = frozenset(string.hexdigits)
_BASE64URL = frozenset(string.ascii_letters + string.digits + "-_")
_FEWEST_DISTINCT = 8  # "aaaa…" or "abab…" is long but guessable


def key_bits(value: str) -> int:
    """An upper estimate of the randomness in ``value``: its length times log2 of its alphabet
    (hex 4 bits a character, base64url 6), zero for a key of fewer than 8 distinct characters.

    ``secrets.token_urlsafe(32)`` (43 characters) and ``token_hex(32)`` (64) make 258 and 256.
    """
    if len(set(value)) < _FEWEST_DISTINCT:
        return 0
    used = set(value)
    if used <= _HEX:
        alphabet = 16
    elif used <= _BASE64URL and used & set(string.ascii_lowercase) and used & set(string.ascii_uppercase):
        alphabet = 64  # token_urlsafe's alphabet, whether or not this key happens to hold a digit or "-"
    else:
        alphabet = sum(len(group) for group in _KEY_CLASSES if used & set(group))
        alphabet += 128 if any(ord(c) > 127 for c in value) else 0
    return int(len(value) * math.log2(max(alphabet, 2)))


def check_signing_key(key: Secret) -> Secret:
    """Refuse a signing key of fewer than :data:`MIN_KEY_BITS` bits, naming its variable and a fix."""
    bits = key_bits(key.reveal())
    if bits < MIN_KEY_BITS:
        raise SecretMissing(
            f"the environment variable {key.name} holds a key of about {bits} bits; "
            f"unsubscribe links need at least {MIN_KEY_BITS}",
            hint=f"make one with: {MAKE_KEY_COMMAND}",
        )
    return key


# Values left in from an example file or a tutorial: a secret that says it is not one.
_PLACEHOLDERS = frozenset({"changeme", "placeholder", "secret", "password", "todo", "test", "example", "none",
                           "null", "webhooksecret", "signingkey", "key", "token", "replaceme", "fixme"})  # fmt: skip


def looks_like_placeholder(value: str) -> bool:
    """Whether ``value`` is empty, one repeated character, a placeholder word (``changeme``,
    ``secret``…), ``your…``, ``<…>`` or holds ``...``."""
    lowered = value.strip().lower()
    letters = "".join(c for c in lowered if c.isalnum())
    return (
        len(set(lowered)) <= 1
        or letters in _PLACEHOLDERS
        or lowered.startswith(("your", "<", "${"))
        or "..." in lowered
        or "…" in lowered
    )


def check_webhook_secret(key: Secret) -> Secret:
    """Refuse an empty or placeholder webhook secret, naming its variable."""
    if looks_like_placeholder(key.reveal()):
        raise SecretMissing(
            f"the environment variable {key.name} holds a placeholder, not the provider's webhook secret",
            hint="copy the signing secret from the provider's webhook settings",
        )
    return key


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: why it was made, for which list and subscriber, and when."""

    purpose: str
    list_id: str
    subscriber_id: int
    issued_at: int


class InvalidToken(ValueError):
    """A token that was tampered with, signed by an unknown key, or for another list."""


@dataclass(frozen=True)
class _SigningKey:
    """A key prepared once: its ids and an HMAC object to copy (the key is hashed only here).

    ``inner`` and ``outer`` are HMAC's two SHA-256 states (RFC 2104, as the standard library's
    own fallback computes them): copying two hash objects costs less than copying an HMAC
    object, and :class:`TokenSigner` signs one token per recipient with them.
    """

    key_id: bytes
    legacy_key_id: str
    template: hmac.HMAC
    inner: Any
    outer: Any

    def mac(self, message: bytes) -> bytes:
        signer = self.template.copy()
        signer.update(message)
        return signer.digest()


@functools.lru_cache(maxsize=64)
def _prepare(value: str) -> _SigningKey:
    raw = value.encode("utf-8")
    digest = hashlib.sha256(raw).digest()
    block = (digest if len(raw) > _SHA256_BLOCK else raw).ljust(_SHA256_BLOCK, b"\0")
    inner, outer = hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD))
    template = hmac.new(raw, digestmod=hashlib.sha256)
    return _SigningKey(digest[:KEY_ID_BYTES], digest.hex()[:8], template, inner, outer)


def _signing_key(key: Secret) -> _SigningKey:
    return _prepare(key.reveal())


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # validate=True: characters outside the alphabet are refused, not skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _varint(number: int) -> bytes:
    if number < 0x80:
        return bytes((number,))
    if number < 0x4000:
        return bytes((number & 0x7F | 0x80, number >> 7))
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _read_varint(data: bytes, start: int) -> tuple[int, int]:
    number = shift = 0
    for index in range(start, min(len(data), start + _MAX_VARINT_BYTES)):
        number |= (data[index] & 0x7F) << shift
        shift += 7
        if not data[index] & 0x80:
            return number, index + 1
    raise InvalidToken("invalid token")


def _payload(key: _SigningKey, purpose: str, subscriber_id: int, issued_at: int) -> bytes:
    return (
        bytes([TOKEN_VERSION]) + key.key_id + bytes([_PURPOSE_CODES[purpose]])
        + _varint(subscriber_id) + _varint(issued_at)
    )  # fmt: skip


def _signed_prefix(list_id: str) -> bytes:
    return _DOMAIN + list_id.encode("utf-8") + b"\x00"


def _signed(key: _SigningKey, list_id: str, payload: bytes) -> bytes:
    return key.mac(_signed_prefix(list_id) + payload)[:MAC_BYTES]


def make_token(
    signing_keys: Sequence[Secret], *, purpose: str, list_id: str, subscriber_id: int, issued_at: datetime
) -> str:
    """Sign a token with the current key (the first of ``signing_keys``)."""
    return TokenSigner(signing_keys, purpose=purpose, list_id=list_id, issued_at=issued_at).sign(subscriber_id)


class TokenSigner:
    """:func:`make_token` for many subscribers at one time: ``sign(subscriber_id)``.

    Everything but the subscriber id is prepared once: the key's HMAC state already holds the
    domain tag and the list id, and the payload's fixed bytes are joined up front, so a token
    costs one HMAC copy and one short update (a send signs one per recipient).  Safe to share
    between threads: the prepared state is only ever copied.
    """

    def __init__(self, signing_keys: Sequence[Secret], *, purpose: str, list_id: str, issued_at: datetime) -> None:
        if purpose not in _PURPOSE_CODES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        issued = int(issued_at.timestamp())
        if issued < 0:
            raise ValueError("subscriber ids and times in tokens are never negative")
        key = _signing_key(signing_keys[0])
        self._head = bytes([TOKEN_VERSION]) + key.key_id + bytes([_PURPOSE_CODES[purpose]])
        self._issued = _varint(issued)
        self._inner = key.inner.copy()
        self._inner.update(_signed_prefix(list_id))
        self._outer = key.outer

    def sign(self, subscriber_id: int) -> str:
        if subscriber_id < 0:
            raise ValueError("subscriber ids and times in tokens are never negative")
        payload = self._head + _varint(subscriber_id) + self._issued
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return _b64(payload + outer.digest()[:MAC_BYTES])


_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def verify_token(token: str, keys: Sequence[Secret], *, purpose: str, list_id: str) -> TokenClaims:
    """Check a token's signature, purpose and list; raise :class:`InvalidToken` without detail."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidToken("invalid token")
    if "." in token:  # "." is not in the base64url alphabet: only version 1 has it
        return _verify_legacy(token, keys, purpose=purpose, list_id=list_id)
    try:
        data = _unb64(token)
    except (ValueError, binascii.Error):
        raise InvalidToken("invalid token") from None
    # One spelling per token: base64 ignores the last character's spare bits, we do not.
    if _b64(data) != token or len(data) < 1 + KEY_ID_BYTES + 1 + 2 + MAC_BYTES or data[0] != TOKEN_VERSION:
        raise InvalidToken("invalid token")
    payload, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    key_id = payload[1 : 1 + KEY_ID_BYTES]
    token_purpose = _PURPOSES.get(payload[1 + KEY_ID_BYTES])
    subscriber_id, after = _read_varint(payload, 2 + KEY_ID_BYTES)
    issued_at, end = _read_varint(payload, after)
    if end != len(payload):
        raise InvalidToken("invalid token")
    signers = [k for k in map(_signing_key, keys) if k.key_id == key_id]
    if not any(hmac.compare_digest(_signed(signer, list_id, payload), mac) for signer in signers):
        raise InvalidToken("invalid token")
    # Signed, so these were written by us; a non-minimal varint still fails here.
    if token_purpose != purpose or _payload(signers[0], purpose, subscriber_id, issued_at) != payload:
        raise InvalidToken("invalid token")
    return TokenClaims(token_purpose, list_id, subscriber_id, issued_at)


def _verify_legacy(token: str, keys: Sequence[Secret], *, purpose: str, list_id: str) -> TokenClaims:
    """Version 1: ``base64url(JSON [version, purpose, key id, list, subscriber, issued]) "." base64url(MAC)``."""
    try:
        encoded_payload, encoded_mac = token.split(".")
        payload = _unb64(encoded_payload)
        mac = _unb64(encoded_mac)
        version, token_purpose, key_id, token_list, subscriber_id, issued_at = json.loads(payload)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise InvalidToken("invalid token") from None
    if _b64(payload) != encoded_payload or _b64(mac) != encoded_mac:
        raise InvalidToken("invalid token")
    signer = next((k for k in map(_signing_key, keys) if k.legacy_key_id == key_id), None)
    if signer is None or not hmac.compare_digest(signer.mac(payload), mac):
        raise InvalidToken("invalid token")
    if version != LEGACY_TOKEN_VERSION or token_purpose != purpose or token_list != list_id:
        raise InvalidToken("invalid token")
    if not isinstance(subscriber_id, int) or not isinstance(issued_at, int):
        raise InvalidToken("invalid token")
    return TokenClaims(token_purpose, token_list, subscriber_id, issued_at)


def unsubscribe_url(base: str, token: str) -> str:
    """The personal one-click URL: the configured base followed by the token."""
    return base.rstrip("/") + "/" + token
