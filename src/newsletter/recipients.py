"""Who a message goes to: a subscriber with their signed unsubscribe URL (no address in the token; SEC-09)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .config import Config, Secret
from .render import Recipient
from .tokens import UNSUBSCRIBE, TokenSigner, unsubscribe_url


class RecipientMaker:
    """``make(subscriber_id, email)``: the recipients of one send, all signed at the same time.

    The key, the list and the time are prepared once (:class:`~newsletter.tokens.TokenSigner`),
    so a recipient costs one short HMAC; one maker may be shared by the delivery threads.
    """

    def __init__(self, config: Config, signing_keys: Sequence[Secret], issued: datetime) -> None:
        self._signer = TokenSigner(signing_keys, purpose=UNSUBSCRIBE, list_id=config.email.list_id, issued_at=issued)
        self._base = unsubscribe_url(config.email.unsubscribe_url, "")

    def __call__(self, subscriber_id: int, email: str) -> Recipient:
        return Recipient(subscriber_id, email, self._base + self._signer.sign(subscriber_id))


def recipient_for(
    config: Config, signing_keys: Sequence[Secret], subscriber_id: int, email: str, issued: datetime
) -> Recipient:
    """One recipient with their signed unsubscribe URL (for many, a :class:`RecipientMaker`)."""
    return RecipientMaker(config, signing_keys, issued)(subscriber_id, email)


def preview_recipient(config: Config, signing_keys: Sequence[Secret] | None, now: datetime) -> Recipient:
    """A stand-in recipient for previews (a real signed URL when a key is set)."""
    if signing_keys:
        return recipient_for(config, signing_keys, 0, "preview@example.invalid", now)
    return Recipient(0, "preview@example.invalid", unsubscribe_url(config.email.unsubscribe_url, "PREVIEW"))
