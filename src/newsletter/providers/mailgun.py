"""Mailgun (batch family): ``POST /v3/<domain>/messages``, up to 1,000 recipients per call.

Recipients never see each other: every call carries ``recipient-variables``,
which also carry each person's signed unsubscribe URL (``%recipient.unsubscribe_url%``).
Each chunk gets its own tag, so after a crash the events API says which
recipients Mailgun accepted.  Mailgun has no idempotency key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

from ..config import Config, secret
from ..errors import ConfigError, ProviderRateLimited
from ..render import Recipient
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
from .http import HTTP_CONCURRENCY, HttpClient, api_base_url, check_access, timeout_setting, tracking_setting

BASE_URLS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
PER_RECIPIENT_URL = "%recipient.unsubscribe_url%"
# A 429 says when to come back in its body, not in a Retry-After header (Mailgun API docs).
TRY_AGAIN_AFTER = re.compile(r"try again after (.+?)\s*$", re.IGNORECASE)


def chunk_tag(idempotency_key: str) -> str:
    """A Mailgun tag (ASCII, ≤128 characters) naming one chunk of one issue."""
    return ("nl-" + re.sub(r"[^A-Za-z0-9_.-]", "-", idempotency_key))[:128]


# Mailgun limits sending per plan (messages an hour) and answers 429 when a limit is reached, which
# the pacer honours (Retry-After); it sets no limit on requests in flight.  Eight calls of 1,000
# recipients at once keep a 100,000-reader send near two seconds at a 50 ms round trip.
MAILGUN_CONCURRENCY = 2 * HTTP_CONCURRENCY


class MailgunProvider(BatchProvider):
    """Mailgun's messages API, with the events API for lookups and signed webhooks."""

    name = "mailgun"
    capabilities = Capabilities(
        family=BATCH, max_batch=1000, idempotency=False, lookup=True, custom_headers=True, unsubscribe="ours",
        webhooks=True, tracking=True, concurrency=MAILGUN_CONCURRENCY,
    )  # fmt: skip

    def __init__(
        self,
        client: HttpClient,
        domain: str,
        *,
        tracking: bool = False,
        key_variable: str = "NEWSLETTER_MAILGUN_API_KEY",
    ) -> None:
        self.client = client
        self.domain = domain
        self.tracking = tracking
        self.key_variable = key_variable

    def __repr__(self) -> str:
        return f"MailgunProvider({self.domain}, key=****)"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> MailgunProvider:
        where = "newsletter.toml: providers.mailgun"
        domain = settings.get("domain")
        if not isinstance(domain, str) or not domain:
            raise ConfigError("domain is missing", where=where, hint='add domain = "mg.example.org"')
        region = settings.get("region", "us")
        if region not in BASE_URLS:
            raise ConfigError(f"region {region!r} is unknown", where=where, hint='use "us" or "eu"')
        key_variable = settings.get("api_key_env", "NEWSLETTER_MAILGUN_API_KEY")
        key = secret(key_variable, environ)
        client = HttpClient(
            "mailgun",
            api_base_url(settings, "mailgun", BASE_URLS[region]),
            basic_auth=("api", key),
            timeout=timeout_setting(settings, "mailgun"),
        )
        return cls(client, domain, tracking=tracking_setting(settings, "mailgun"), key_variable=key_variable)

    def check_access(self) -> None:
        """The events API for our domain, one event (Mailgun API docs, Events): the key, the domain,
        and the read permission the send's crash recovery (lookup_chunk) needs, in one GET."""
        check_access(
            self.client, f"/v3/{self.domain}/events", params={"limit": 1}, key_variable=self.key_variable,
            where_to_get="a Mailgun private API key (Mailgun: API Security), not a domain sending key",
        )  # fmt: skip

    def _tracking_fields(self) -> list[tuple[str, str]]:
        """Mailgun tracks opens and clicks unless told not to: every request says which (privacy by default)."""
        value = "yes" if self.tracking else "no"
        return [("o:tracking", value), ("o:tracking-clicks", value), ("o:tracking-opens", value)]

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        request, refused = ascii_recipients(request, self.name)
        return refused + (self._send_ascii_chunk(request) if request.recipients else [])

    def _send_ascii_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        issue = request.issue
        tag = chunk_tag(request.chunk_key)
        fields: list[tuple[str, str]] = [
            ("from", str(issue.sender)),
            ("subject", issue.subject),
            ("text", issue.text_with_url(PER_RECIPIENT_URL)),
            ("html", issue.html_with_url(PER_RECIPIENT_URL)),
            ("o:tag", tag),
            # The same value as every other provider's (LIST-01), with Mailgun filling in each URL.
            ("h:List-Unsubscribe", issue.list_unsubscribe(Recipient(0, "", PER_RECIPIENT_URL))),
            ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("h:List-Id", issue.list_id_header),
            ("h:List-Archive", issue.list_archive),
            ("v:subscriber-id", "%recipient.subscriber_id%"),
            ("v:issue", issue.key),
            *self._tracking_fields(),
        ]
        if issue.reply_to:
            fields.append(("h:Reply-To", issue.reply_to))
        variables = {}
        for recipient in request.recipients:
            fields.append(("to", recipient.email))
            variables[recipient.email] = {
                "unsubscribe_url": recipient.unsubscribe_url,
                "subscriber_id": recipient.subscriber_id,
            }
        fields.append(("recipient-variables", json.dumps(variables)))
        # files= with (None, value) parts: multipart/form-data (which Mailgun requires), no file names.
        multipart = [(name, (None, value)) for name, value in fields]
        answer = self._request("POST", f"/v3/{self.domain}/messages", files=multipart)
        message_id = answer.get("id") if isinstance(answer, dict) else None
        return [DeliveryResult(r.subscriber_id, True, message_id) for r in request.recipients]

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        parts = message_parts(message)
        fields = [(name, (None, parts[name])) for name in ("from", "to", "subject", "text", "html")]
        fields.append(("h:Message-Id", (None, str(message["Message-ID"]))))
        fields += [(name, (None, value)) for name, value in self._tracking_fields()]
        answer = self.client.request("POST", f"/v3/{self.domain}/messages", files=fields)
        return answer.get("id", "") if isinstance(answer, dict) else ""

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult] | None:
        """Who Mailgun accepted under this chunk's tag (events API, followed page by page)."""
        accepted: dict[str, str] = {}
        wanted = {r.email.lower() for r in request.recipients}
        path = f"/v3/{self.domain}/events"
        params: dict[str, Any] | None = {"tags": chunk_tag(request.chunk_key), "event": "accepted", "limit": 300}
        for _ in range(100):
            page = self._request("GET", path, params=params)
            items = page.get("items", []) if isinstance(page, dict) else []
            if not items:
                break
            for item in items:
                recipient = str(item.get("recipient", "")).lower()
                accepted[recipient] = _message_id((item.get("message") or {}).get("headers", {}).get("message-id"))
            if wanted <= accepted.keys():
                break  # everyone is accounted for: further pages cannot change the answer
            following = (page.get("paging") or {}).get("next")
            if not following or not following.startswith(self.client.base_url):
                break
            path, params = following.removeprefix(self.client.base_url), None
        return [
            DeliveryResult(r.subscriber_id, r.email.lower() in accepted, accepted.get(r.email.lower()) or None)
            for r in request.recipients
        ]

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self.client.request(method, path, **kwargs)
        except ProviderRateLimited as error:
            if error.retry_after is None:
                error.retry_after = _try_again_after(error.message)
            raise

    def close(self) -> None:
        self.client.close()

    @classmethod
    def verify_webhook(
        cls, call: WebhookCall, *, settings: Mapping[str, Any], environ: Mapping[str, str], now: float
    ) -> WebhookProof:
        """HMAC-SHA256 of ``timestamp + token`` with the webhook signing key; the token is the one-time id.

        Mailgun signs neither the event nor the body, so the token must never be accepted twice.
        """
        key = webhook_secret(settings, "webhook_key_env", "NEWSLETTER_MAILGUN_WEBHOOK_KEY", environ)
        signature = read_json(call.body).get("signature")
        if not isinstance(signature, dict):
            raise BadSignature("invalid")
        timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
        expected = hmac_sha256(key.encode(), f"{timestamp}{token}".encode()).hex()
        if not token or not same(expected, given):
            raise BadSignature("invalid")
        return WebhookProof(replay_id=token, signed_at=signed_time(timestamp))

    @classmethod
    def parse_events(cls, call: WebhookCall) -> list[SuppressionEvent]:
        """``failed`` with severity ``permanent`` → bounced; ``complained`` → complained."""
        event = read_json(call.body).get("event-data")
        if not isinstance(event, dict):
            return []
        recipient = str(event.get("recipient", ""))
        if event.get("event") == "complained":
            return [SuppressionEvent(recipient, COMPLAINED)]
        if event.get("event") == "failed" and event.get("severity") == "permanent":
            return [SuppressionEvent(recipient, BOUNCED)]
        return []


def _message_id(value: Any) -> str:
    """The events API gives the Message-Id bare; the send answer gives it in angle brackets, as we record it."""
    if not isinstance(value, str) or not value.strip("<> "):
        return ""
    return f"<{value.strip('<> ')}>"


def _try_again_after(message: str) -> float | None:
    """Seconds until the "try again after <date>" of a Mailgun 429 body, ``None`` when it has none."""
    match = TRY_AGAIN_AFTER.search(message)
    if not match:
        return None
    try:
        when = parsedate_to_datetime(match.group(1))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
