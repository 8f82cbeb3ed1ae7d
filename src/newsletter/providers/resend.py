"""Resend (batch family): ``POST /emails/batch``, up to 100 emails per call, idempotent.

The chunk's derived key goes in ``Idempotency-Key`` (kept 24 hours by Resend), so
replaying a chunk after a timeout or a crash returns the first answer instead of
sending again.  Resend requires a ``User-Agent``; its rate-limit headers are obeyed.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from ..config import Config, secret
from ..errors import ProviderError, ProviderRejected
from .base import BATCH, Capabilities, ChunkRequest, DeliveryResult, message_parts
from .http import HttpClient, api_base_url, timeout_setting

BASE_URL = "https://api.resend.com"


class ResendProvider:
    name = "resend"
    capabilities = Capabilities(
        family=BATCH, max_batch=100, idempotency=True, lookup=False, custom_headers=True, unsubscribe="ours"
    )

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return "ResendProvider(key=****)"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> "ResendProvider":
        key = secret(settings.get("api_key_env", "NEWSLETTER_RESEND_API_KEY"), environ)
        client = HttpClient(
            "resend",
            api_base_url(settings, "resend", BASE_URL),
            secret_headers=lambda: {"Authorization": f"Bearer {key.reveal()}"},
            timeout=timeout_setting(settings, "resend"),
            # 409 for a key whose first request is still running: wait and replay.
            transient_errors=("concurrent_idempotent_requests",),
        )
        return cls(client)

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
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
                    "List-Id": f"{issue.list_name} <{issue.list_id}>",
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
        return [DeliveryResult(r.subscriber_id, True, item.get("id")) for r, item in zip(request.recipients, data)]

    def send_message(self, message, *, key: str) -> str:
        parts = message_parts(message)
        answer = self.client.request(
            "POST", "/emails",
            json={"from": parts["from"], "to": [parts["to"]], "subject": parts["subject"], "text": parts["text"],
                  "html": parts["html"]},
            headers={"Idempotency-Key": key[:256]},
        )  # fmt: skip
        return answer.get("id", "") if isinstance(answer, dict) else ""

    def lookup_chunk(self, request: ChunkRequest) -> None:
        """Resend cannot list a batch by key; the idempotent replay answers instead."""
        return None

    def close(self) -> None:
        self.client.close()
