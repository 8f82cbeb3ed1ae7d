"""Resend (batch family): ``POST /emails/batch``, up to 100 emails per call, idempotent.

The chunk's derived key goes in ``Idempotency-Key`` (kept 24 hours by Resend), so
replaying a chunk after a timeout or a crash returns the first answer instead of
sending again.  Resend requires a ``User-Agent``; its rate-limit headers are obeyed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from ..config import Config, secret
from ..errors import ProviderAuthError, ProviderError, ProviderRejected
from ..store import BOUNCED, COMPLAINED
from ..webhooks import (
    BadSignature,
    SuppressionEvent,
    WebhookCall,
    WebhookProof,
    hmac_sha256,
    read_json,
    same,
    signed_time,
    webhook_secret,
)  # fmt: skip
from .base import BATCH, BatchProvider, Capabilities, ChunkRequest, DeliveryResult, ascii_recipients, message_parts
from .http import HTTP_CONCURRENCY, HttpClient, api_base_url, check_access, timeout_setting

BASE_URL = "https://api.resend.com"


class ResendProvider(BatchProvider):
    """Resend's batch API with idempotency keys, and Svix-signed webhooks.

    Open and click tracking are settings of the sending domain at Resend, not of a request:
    none of our requests asks for them, and ``tracking`` is not offered here.
    """

    name = "resend"
    capabilities = Capabilities(
        family=BATCH, max_batch=100, idempotency=True, lookup=False, custom_headers=True, unsubscribe="ours",
        webhooks=True, concurrency=HTTP_CONCURRENCY,
    )  # fmt: skip

    def __init__(self, client: HttpClient, key_variable: str = "NEWSLETTER_RESEND_API_KEY") -> None:
        self.client = client
        self.key_variable = key_variable

    def __repr__(self) -> str:
        return "ResendProvider(key=****)"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> ResendProvider:
        key_variable = settings.get("api_key_env", "NEWSLETTER_RESEND_API_KEY")
        key = secret(key_variable, environ)
        client = HttpClient(
            "resend",
            api_base_url(settings, "resend", BASE_URL),
            secret_headers=lambda: {"Authorization": f"Bearer {key.reveal()}"},
            timeout=timeout_setting(settings, "resend"),
            # 409 for a key whose first request is still running: wait and replay.
            transient_errors=("concurrent_idempotent_requests",),
        )
        return cls(client, key_variable)

    def check_access(self) -> None:
        """``GET /domains`` (Resend API: List Domains), read-only.  A key with sending access only
        answers 401 ``restricted_api_key`` there (Resend API: Errors): a valid key, enough to send."""
        try:
            check_access(
                self.client, "/domains", key_variable=self.key_variable,
                where_to_get="an API key from Resend's API Keys page (sending access is enough)",
            )  # fmt: skip
        except ProviderAuthError as error:
            if "restricted_api_key" not in error.message:
                raise

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        request, refused = ascii_recipients(request, self.name)
        return refused + (self._send_ascii_chunk(request) if request.recipients else [])

    def _send_ascii_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        issue = request.issue
        tag = re.sub(r"[^A-Za-z0-9_-]", "_", issue.key)
        emails = [
            {
                "from": str(issue.sender),
                "to": [recipient.email],
                "subject": issue.subject,
                "html": issue.personal_html(recipient),
                "text": issue.personal_text(recipient),
                "headers": {
                    "List-Unsubscribe": issue.list_unsubscribe(recipient),
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "List-Id": issue.list_id_header,
                    "List-Archive": issue.list_archive,
                },
                "tags": [{"name": "issue", "value": tag}],
                **({"reply_to": issue.reply_to} if issue.reply_to else {}),
            }
            for recipient in request.recipients
        ]
        try:
            answer = self.client.request(
                "POST", "/emails/batch", json=emails, headers={"Idempotency-Key": request.idempotency_key[:256]}
            )
        except ProviderError as error:
            # Both 409s mean Resend already holds a request under this key: the chunk may have
            # gone out, so the ledger must not record it as proven undelivered.
            if "invalid_idempotent_request" in error.message:
                raise ProviderRejected(
                    error.message, where=error.where, maybe_delivered=True,
                    hint="Resend already took this chunk's key with a different body (signing key changed"
                    " since?); check the Resend dashboard, then settle it with 'newsletter resolve'",
                ) from None  # fmt: skip
            if "concurrent_idempotent_requests" in error.message:
                error.maybe_delivered = True
            raise
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(request.recipients):
            raise ProviderError(
                "answered without one id per email", where="resend /emails/batch", maybe_delivered=True,
                hint="check the Resend dashboard; a replay with the same key is safe",
            )  # fmt: skip
        answered = zip(request.recipients, data, strict=False)
        return [DeliveryResult(r.subscriber_id, True, item.get("id")) for r, item in answered]

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        parts = message_parts(message)
        answer = self.client.request(
            "POST", "/emails",
            json={"from": parts["from"], "to": [parts["to"]], "subject": parts["subject"], "text": parts["text"],
                  "html": parts["html"]},
            headers={"Idempotency-Key": key[:256]},
        )  # fmt: skip
        return answer.get("id", "") if isinstance(answer, dict) else ""

    def close(self) -> None:
        self.client.close()

    @classmethod
    def verify_webhook(
        cls, call: WebhookCall, *, settings: Mapping[str, Any], environ: Mapping[str, str], now: float
    ) -> WebhookProof:
        """Svix: HMAC-SHA256 of ``id.timestamp.body`` with the ``whsec_`` secret; ``svix-id`` is the one-time id."""
        secret_value = webhook_secret(settings, "webhook_secret_env", "NEWSLETTER_RESEND_WEBHOOK_SECRET", environ)
        message_id, timestamp = call.headers.get("svix-id", ""), call.headers.get("svix-timestamp", "")
        try:
            key = base64.b64decode(secret_value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise BadSignature("invalid") from None
        signed = f"{message_id}.{timestamp}.".encode() + call.body
        expected = base64.b64encode(hmac_sha256(key, signed)).decode()
        signatures = call.headers.get("svix-signature", "").split()
        given = [part.split(",", 1)[1] for part in signatures if part.startswith("v1,")]
        if not message_id or not any(same(expected, g) for g in given):
            raise BadSignature("invalid")
        return WebhookProof(replay_id=message_id, signed_at=signed_time(timestamp))

    @classmethod
    def parse_events(cls, call: WebhookCall) -> list[SuppressionEvent]:
        """``email.bounced`` (not transient) → bounced; ``email.complained`` → complained."""
        data = read_json(call.body)
        event, payload = data.get("type"), data.get("data")
        if not isinstance(payload, dict):
            return []
        addresses = payload.get("to") or []
        addresses = [addresses] if isinstance(addresses, str) else addresses
        if not isinstance(addresses, list):
            return []
        found = payload.get("bounce")
        bounce = found if isinstance(found, dict) else {}
        if event == "email.complained":
            return [SuppressionEvent(str(a), COMPLAINED) for a in addresses]
        if event == "email.bounced" and bounce.get("type", "Permanent") != "Transient":
            return [SuppressionEvent(str(a), BOUNCED) for a in addresses]
        return []
