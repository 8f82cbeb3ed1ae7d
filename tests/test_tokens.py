"""The compact token layout of ``newsletter.tokens`` (SEC-09, LIST-05), and version-1 tokens.

Round trips, tampering, scoping and rotation are also covered in test_subscribers.py and
test_security.py; this file covers what the binary layout adds.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from newsletter import tokens
from newsletter.config import Secret
from newsletter.tokens import (
    CONFIRM,
    MAC_BYTES,
    UNSUBSCRIBE,
    InvalidToken,
    make_token,
    verify_token,
)  # fmt: skip

KEY = Secret("K", "clef-de-2024")
LIST = "lettre.claudesuper.example.org"
ISSUED = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
# Made by the version-1 code (base64url JSON) before the compact layout, with KEY above; links
# like these sit in subscribers' mailboxes and must keep working (LAW-02).
LEGACY_UNSUBSCRIBE = (
    "WzEsInVuc3Vic2NyaWJlIiwiMzAyNTNiMTciLCJsZXR0cmUuY2xhdWRlc3VwZXIuZXhhbXBsZS5vcmciLDE1MDMsMTcxNDU1MDQwMF0"
    ".Fb4gMayi3iVJFFGpImMq9fVcJLTWOKrr-87lVLdJpyo"
)
LEGACY_CONFIRM = (
    "WzEsImNvbmZpcm0iLCIzMDI1M2IxNyIsImxldHRyZS5jbGF1ZGVzdXBlci5leGFtcGxlLm9yZyIsNywxNzE0NTUwNDAwXQ"
    ".JHmfMk4FiK9sSNZOCUnvuJewQpcs-wWSrkjcD5D-sjc"
)


def _token(subscriber_id=1503, keys=(KEY,), purpose=UNSUBSCRIBE, issued=ISSUED) -> str:
    return make_token(list(keys), purpose=purpose, list_id=LIST, subscriber_id=subscriber_id, issued_at=issued)


def _bytes(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize("subscriber_id", [0, 1, 127, 128, 1503, 1_000_000, 2**40])
def test_round_trip_for_small_and_large_subscriber_ids(subscriber_id):
    claims = verify_token(_token(subscriber_id), [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    assert (claims.subscriber_id, claims.issued_at, claims.list_id) == (subscriber_id, int(ISSUED.timestamp()), LIST)


def test_token_is_well_under_half_the_110_characters_of_version_1():
    """A million subscribers, issued in 2100: still under 45 base64url characters (no "." or "=")."""
    assert len(LEGACY_UNSUBSCRIBE) > 110  # the same claims in version 1
    longest = _token(1_000_000, issued=datetime(2100, 1, 1, tzinfo=UTC))
    assert len(longest) <= 45 < 110 / 2
    assert set(longest) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_layout_version_key_id_purpose_and_truncated_mac():
    data = _bytes(_token(1503))
    assert data[0] == tokens.TOKEN_VERSION == 2
    assert data[1:5] == hashlib.sha256(KEY.reveal().encode()).digest()[:4]
    assert data[5] == 1  # unsubscribe
    assert data[6:8] == bytes([1503 & 0x7F | 0x80, 1503 >> 7])  # LEB128
    assert len(data) == 8 + 5 + MAC_BYTES  # the issue time is a 5-byte varint until 2038 and beyond
    assert _bytes(_token(1503, purpose=CONFIRM))[5] == 2


def test_each_claim_is_covered_by_the_signature():
    data = _bytes(_token(1503))
    for index in range(len(data) - MAC_BYTES):
        changed = bytearray(data)
        changed[index] ^= 0x01
        with pytest.raises(InvalidToken):
            verify_token(_encode(bytes(changed)), [KEY], purpose=UNSUBSCRIBE, list_id=LIST)


def test_truncated_extended_or_non_minimal_tokens_are_refused():
    token = _token(5)
    data = _bytes(token)
    payload, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    # Subscriber 5 written as the two-byte varint 0x85 0x00: same number, another spelling.
    padded = payload[:6] + b"\x85\x00" + payload[7:]
    for bad in (token[:-1], token + "A", _encode(data + b"\x00"), _encode(padded + mac), _encode(payload[:7] + mac)):
        with pytest.raises(InvalidToken):
            verify_token(bad, [KEY], purpose=UNSUBSCRIBE, list_id=LIST)


def test_confirm_and_unsubscribe_tokens_are_not_interchangeable():
    with pytest.raises(InvalidToken):
        verify_token(_token(purpose=CONFIRM), [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    with pytest.raises(InvalidToken):
        verify_token(_token(purpose=UNSUBSCRIBE), [KEY], purpose=CONFIRM, list_id=LIST)


@pytest.mark.parametrize("garbage", ["A" * 600, "é" * 40, "AAAA AAAA", "AA==", "\x00" * 30, "+/+/" * 10])
def test_hostile_strings_are_refused_without_detail(garbage):
    with pytest.raises(InvalidToken) as caught:
        verify_token(garbage, [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    assert str(caught.value) == "invalid token"


def test_version_1_tokens_still_verify_and_stay_scoped():
    claims = verify_token(LEGACY_UNSUBSCRIBE, [Secret("NEW", "clef-de-2025"), KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    assert (claims.subscriber_id, claims.issued_at) == (1503, int(ISSUED.timestamp()))
    assert verify_token(LEGACY_CONFIRM, [KEY], purpose=CONFIRM, list_id=LIST).subscriber_id == 7
    for keys, purpose, list_id in (
        ([Secret("NEW", "clef-de-2025")], UNSUBSCRIBE, LIST),  # the key was retired
        ([KEY], CONFIRM, LIST),
        ([KEY], UNSUBSCRIBE, "autre.liste.example.org"),
    ):
        with pytest.raises(InvalidToken):
            verify_token(LEGACY_UNSUBSCRIBE, keys, purpose=purpose, list_id=list_id)
    payload, mac = LEGACY_UNSUBSCRIBE.split(".")
    with pytest.raises(InvalidToken):
        verify_token(payload + "." + mac[:-2] + "AA", [KEY], purpose=UNSUBSCRIBE, list_id=LIST)


def test_the_key_is_prepared_once_not_hashed_per_token(monkeypatch):
    """Issue 13: signing a million tokens must not re-hash the key each time."""
    key = Secret("K", "une-clef-neuve-pour-ce-test")
    make_token([key], purpose=UNSUBSCRIBE, list_id=LIST, subscriber_id=1, issued_at=ISSUED)
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(tokens.hashlib, "sha256", lambda *a: calls.append(a) or real(*a))
    for subscriber_id in range(100):
        token = make_token([key], purpose=UNSUBSCRIBE, list_id=LIST, subscriber_id=subscriber_id, issued_at=ISSUED)
        verify_token(token, [key], purpose=UNSUBSCRIBE, list_id=LIST)
    assert calls == []


@pytest.mark.parametrize("value", ["clef-de-2024", "k" * 64, "x" * 65 + "-longer than one SHA-256 block-" * 3, "clé-é"])
def test_the_signer_signs_as_the_standard_hmac_does(value):
    """TokenSigner computes HMAC-SHA256 from the key's two prepared hash states; hmac.new must agree."""
    import hmac

    key = Secret("K", value)
    signer = tokens.TokenSigner([key], purpose=UNSUBSCRIBE, list_id=LIST, issued_at=ISSUED)
    for subscriber_id in (0, 1, 127, 128, 16383, 16384, 1503, 2**40):
        token = signer.sign(subscriber_id)
        payload, mac = _bytes(token)[:-MAC_BYTES], _bytes(token)[-MAC_BYTES:]
        expected = hmac.new(value.encode(), b"newsletter-token\x00" + LIST.encode() + b"\x00" + payload, hashlib.sha256)
        assert mac == expected.digest()[:MAC_BYTES]
        assert token == _token(subscriber_id, keys=(key,))
        assert verify_token(token, [key], purpose=UNSUBSCRIBE, list_id=LIST).subscriber_id == subscriber_id
    with pytest.raises(ValueError):
        signer.sign(-1)
