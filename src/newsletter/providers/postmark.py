"""Postmark (batch family): ``POST /email/batch``, up to 500 messages per call on a broadcast stream.

A 200 answer can still refuse some messages (``ErrorCode`` ≠ 0, e.g. 406 for an
inactive recipient): each is recorded as rejected for that recipient only.
Each message carries the chunk in its ``Metadata``, so after a crash the
outbound-messages search says which ones Postmark has.  No idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from ..config import Config, secret
from ..errors import ProviderError, ProviderRejected
from ..store import BOUNCED, COMPLAINED
from ..webhooks import (
    BadPayload,
    BadSignature,
    SuppressionEvent,
    WebhookCall,
    WebhookProof,
    basic_credentials,
    read_json,
    same,
    webhook_secret,
)  # fmt: skip
from .base import BATCH, BatchProvider, Capabilities, ChunkRequest, DeliveryResult, ascii_recipients, message_parts
from .http import HTTP_CONCURRENCY, HttpClient, api_base_url, check_access, timeout_setting, tracking_setting

BASE_URL = "https://api.postmarkapp.com"
# ErrorCodes worth another try later (rate or account limits); everything else is final.
RETRYABLE_CODES = {429}
# ErrorCodes about one message's recipients (300 invalid address, 406 inactive): that recipient is
# rejected.  Any other code (1235 unknown stream, 400/401 sender signature, 405 not allowed to send,
# 412 account pending...) is about the whole request: when it refuses every message of a chunk the
# send stops with the reason, rather than recording the issue as sent to nobody.
RECIPIENT_CODES = {300, 406}
PERMANENT_BOUNCES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "SpamNotification", "Blocked"}


class PostmarkProvider(BatchProvider):
    """Postmark's batch API on a broadcast stream, with metadata search for lookups."""

    name = "postmark"
    capabilities = Capabilities(
        family=BATCH, max_batch=500, idempotency=False, lookup=True, custom_headers=True, unsubscribe="ours",
        webhooks=True, tracking=True, concurrency=HTTP_CONCURRENCY,
    )  # fmt: skip

    def __init__(
        self, client: HttpClient, stream: str, transactional_stream: str = "outbound", *, tracking: bool = False
    ) -> None:
        self.client = client
        self.stream = stream
        self.transactional_stream = transactional_stream
        self.tracking = tracking
        self.key_variable = "NEWSLETTER_POSTMARK_SERVER_TOKEN"

    def _tracking_fields(self) -> dict[str, Any]:
        """Open and link tracking, off unless ``[providers.postmark] tracking = true`` (privacy by default)."""
        return {"TrackOpens": self.tracking, "TrackLinks": "HtmlAndText" if self.tracking else "None"}

    def __repr__(self) -> str:
        return f"PostmarkProvider({self.stream}, token=****)"

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]
    ) -> PostmarkProvider:
        token_variable = settings.get("server_token_env", "NEWSLETTER_POSTMARK_SERVER_TOKEN")
        token = secret(token_variable, environ)
        client = HttpClient(
            "postmark",
            api_base_url(settings, "postmark", BASE_URL),
            headers={"Accept": "application/json", "Content-Type": "application/json"},
            secret_headers=lambda: {"X-Postmark-Server-Token": token.reveal()},
            timeout=timeout_setting(settings, "postmark"),
        )
        provider = cls(
            client, settings.get("message_stream", "broadcast"), settings.get("transactional_stream", "outbound"),
            tracking=tracking_setting(settings, "postmark"),
        )  # fmt: skip
        provider.key_variable = token_variable
        return provider

    def check_access(self) -> None:
        """``GET /server``, the server the token belongs to (Postmark API: Server), read-only."""
        check_access(
            self.client, "/server", key_variable=self.key_variable,
            where_to_get="the Server API token from the server's API Tokens tab (not an Account token)",
        )  # fmt: skip

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        request, refused = ascii_recipients(request, self.name)
        return refused + (self._send_ascii_chunk(request) if request.recipients else [])

    def _send_ascii_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        issue = request.issue
        messages = []
        for recipient in request.recipients:
            messages.append(
                {
                    "From": str(issue.sender),
                    "To": recipient.email,
                    "Subject": issue.subject,
                    "HtmlBody": issue.personal_html(recipient),
                    "TextBody": issue.personal_text(recipient),
                    "MessageStream": self.stream,
                    "Headers": [
                        {"Name": "List-Unsubscribe", "Value": issue.list_unsubscribe(recipient)},
                        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                        {"Name": "List-Id", "Value": issue.list_id_header},
                        {"Name": "List-Archive", "Value": issue.list_archive},
                    ],
                    "Metadata": {"chunk": request.chunk_key, "subscriber": str(recipient.subscriber_id)},
                    **self._tracking_fields(),
                    **({"ReplyTo": issue.reply_to} if issue.reply_to else {}),
                }
            )
        answers = self.client.request("POST", "/email/batch", json=messages)
        results = []
        for recipient, answer in zip(request.recipients, answers if isinstance(answers, list) else [], strict=False):
            code = answer.get("ErrorCode", -1) if isinstance(answer, dict) else -1
            if code == 0:
                results.append(DeliveryResult(recipient.subscriber_id, True, answer.get("MessageID")))
            else:
                said = answer.get("Message", "") if isinstance(answer, dict) else answer
                error = f"Postmark ErrorCode {code}: {said}"
                results.append(DeliveryResult(recipient.subscriber_id, False, None, error, code in RETRYABLE_CODES))
        if len(results) != len(request.recipients):
            raise ProviderError(
                f"answered {len(results)} results for {len(request.recipients)} messages",
                where="postmark /email/batch",
                maybe_delivered=True,
            )
        if not any(r.accepted for r in results):
            for answer in answers:
                code = answer.get("ErrorCode") if isinstance(answer, dict) else None
                if code not in RECIPIENT_CODES and code not in RETRYABLE_CODES:
                    raise ProviderRejected(
                        f"refused every message: {answer.get('Message', '')} (ErrorCode {code})",
                        where="postmark POST /email/batch",
                        hint="check [providers.postmark] (message_stream) and the sender on the Postmark server",
                    )
        return results

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        """Transactional mail goes through its own stream (``transactional_stream``, default outbound)."""
        parts = message_parts(message)
        answer = self.client.request(
            "POST", "/email",
            json={"From": parts["from"], "To": parts["to"], "Subject": parts["subject"], "TextBody": parts["text"],
                  "HtmlBody": parts["html"], "MessageStream": self.transactional_stream, **self._tracking_fields()},
        )  # fmt: skip
        return answer.get("MessageID", "") if isinstance(answer, dict) else ""

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult] | None:
        """Which messages of this chunk Postmark has, by their ``chunk`` metadata."""
        found: dict[str, str] = {}
        offset = 0
        while True:
            page = self.client.request(
                "GET",
                "/messages/outbound",
                params={"count": 500, "offset": offset, "messagestream": self.stream,
                        "metadata_chunk": request.chunk_key},
            )  # fmt: skip
            messages = page.get("Messages", []) if isinstance(page, dict) else []
            for message in messages:
                subscriber = (message.get("Metadata") or {}).get("subscriber")
                if subscriber is not None:
                    found[str(subscriber)] = message.get("MessageID", "")
            offset += len(messages)
            if not messages or offset >= int(page.get("TotalCount", 0)):
                break
        return [
            DeliveryResult(r.subscriber_id, str(r.subscriber_id) in found, found.get(str(r.subscriber_id)) or None)
            for r in request.recipients
        ]

    def close(self) -> None:
        self.client.close()

    @classmethod
    def verify_webhook(
        cls, call: WebhookCall, *, settings: Mapping[str, Any], environ: Mapping[str, str], now: float
    ) -> WebhookProof:
        """Postmark signs nothing: the webhook URL carries HTTP Basic credentials, which we check.

        The one-time id is the event's own (``ID``), else its record type, message and time.
        """
        password = webhook_secret(settings, "webhook_password_env", "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD", environ)
        expected = basic_credentials(str(settings.get("webhook_user", "newsletter")), password)
        given = call.headers.get("authorization", "")
        if not given or not same(expected, given):
            raise BadSignature("invalid")
        data = read_json(call.body)
        if data.get("ID") not in (None, ""):
            return WebhookProof(replay_id=f"{data.get('RecordType')}:{data['ID']}")
        when = data.get("BouncedAt") or data.get("ReceivedAt") or data.get("ChangedAt") or ""
        if not data.get("MessageID") and not when:
            raise BadPayload("an event without an id")
        return WebhookProof(replay_id=f"{data.get('RecordType')}:{data.get('MessageID')}:{when}")

    @classmethod
    def parse_events(cls, call: WebhookCall) -> list[SuppressionEvent]:
        """Hard bounces (or any bounce that made the address inactive) and spam complaints."""
        data = read_json(call.body)
        address = str(data.get("Email", ""))
        if data.get("RecordType") == "SpamComplaint":
            return [SuppressionEvent(address, COMPLAINED)]
        if data.get("RecordType") == "Bounce" and (data.get("Type") in PERMANENT_BOUNCES or data.get("Inactive")):
            return [SuppressionEvent(address, BOUNCED)]
        return []
