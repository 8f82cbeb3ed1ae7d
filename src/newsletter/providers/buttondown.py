"""Buttondown (audience family): Buttondown keeps the list and its unsubscribes.

An issue is created as a **draft** (never relying on the API's default
status, which sends at once) and then published, each call with an
``X-Idempotency-Key`` derived from the issue, under a pinned API version.
The body is the post's sanitized HTML, without front matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from ..config import Config, secret
from ..errors import ProviderError, ProviderRateLimited, ProviderRejected, ProviderTransient
from ..render import Issue
from .base import AUDIENCE, AudienceProvider, Capabilities
from .http import HttpClient, api_base_url, check_access, timeout_setting

BASE_URL = "https://api.buttondown.com"
API_VERSION = "2026-04-01"
FANCY_MODE = "<!-- buttondown-editor-mode: fancy -->\n"


class ButtondownProvider(AudienceProvider):
    """Buttondown's emails API: draft, then send, each call under a derived idempotency key.

    No lookup is declared: a resumed send replays the same two calls under the same keys, and
    Buttondown answers a replayed key with its first answer (the same draft id), so asking for
    the draft's status would add nothing the replay does not already give.
    """

    name = "buttondown"
    capabilities = Capabilities(
        family=AUDIENCE, max_batch=None, idempotency=True, lookup=False, custom_headers=False, unsubscribe="provider"
    )

    def __init__(self, client: HttpClient, key_variable: str = "NEWSLETTER_BUTTONDOWN_API_KEY") -> None:
        self.client = client
        self.key_variable = key_variable

    def __repr__(self) -> str:
        return "ButtondownProvider(key=****)"

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]
    ) -> ButtondownProvider:
        key_variable = settings.get("api_key_env", "NEWSLETTER_BUTTONDOWN_API_KEY")
        key = secret(key_variable, environ)
        client = HttpClient(
            "buttondown",
            api_base_url(settings, "buttondown", BASE_URL),
            headers={"X-API-Version": settings.get("api_version", API_VERSION)},
            secret_headers=lambda: {"Authorization": f"Token {key.reveal()}"},
            timeout=timeout_setting(settings, "buttondown"),
        )
        return cls(client, key_variable)

    def check_access(self) -> None:
        """``GET /v1/newsletters`` (Buttondown API: Newsletters), the key's own newsletter, read-only."""
        check_access(
            self.client, "/v1/newsletters", key_variable=self.key_variable,
            where_to_get="the API key from Buttondown's Settings → Programming page",
        )  # fmt: skip

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; a 409 (our idempotency key's first request is still running) is transient."""
        try:
            return self.client.request(method, path, **kwargs)
        except ProviderRejected as error:
            if not error.message.startswith("HTTP 409"):
                raise
            # The first request under this key may still land: replay later, same key, never a new one.
            raise ProviderTransient(
                error.message, where=error.where, maybe_delivered=True,
                hint="an earlier request with the same idempotency key is still running at Buttondown",
            ) from None  # fmt: skip

    def _draft(self, issue: Issue, idempotency_key: str) -> str:
        payload = {
            "subject": issue.subject,
            "body": FANCY_MODE + issue.post.html,
            "status": "draft",
            "description": issue.post.summary,
            "canonical_url": issue.post.url,
            "metadata": {"newsletter_issue": issue.key, "post_id": issue.post.id},
        }
        answer = self._request(
            "POST", "/v1/emails", json=payload, headers={"X-Idempotency-Key": f"{idempotency_key}:draft"[:200]}
        )
        email_id = answer.get("id") if isinstance(answer, dict) else None
        if not email_id:
            raise ProviderError("created an email without an id", where="buttondown /v1/emails", maybe_delivered=False)
        return email_id

    def publish(self, issue: Issue, *, idempotency_key: str) -> str:
        """Create the draft, then send it to the whole Buttondown audience; returns the email id."""
        email_id = self._draft(issue, idempotency_key)
        self._request(
            "PATCH",
            f"/v1/emails/{email_id}",
            json={"status": "about_to_send"},
            headers={"X-Idempotency-Key": f"{idempotency_key}:send"[:200]},
        )
        return email_id

    def send_test(self, issue: Issue, addresses: list[str]) -> None:
        """A draft sent only to ``addresses`` (Buttondown's send-draft); the audience gets nothing."""
        email_id = self._draft(issue, f"{issue.key}:test")
        self._request("POST", f"/v1/emails/{email_id}/send-draft", json={"recipients": addresses})

    def subscribe(self, email: str, *, key: str, ip_address: str | None = None) -> str | None:
        """Ask Buttondown to add ``email`` (``POST /v1/subscribers``); Buttondown mails its own opt-in.

        An address Buttondown already has (subscribed, unsubscribed, bounced…) is left exactly
        as it is (collision ``no_op``): returns ``None``; otherwise the new subscriber's id.
        The daily creation cap (a 400, not a 429) is a temporary refusal: retried later.
        """
        payload: dict[str, Any] = {"email_address": email}
        if ip_address:
            payload["ip_address"] = ip_address
        headers = {"X-Buttondown-Collision-Behavior": "no_op", "X-Idempotency-Key": f"{key}:subscribe"[:200]}
        try:
            answer = self._request("POST", "/v1/subscribers", json=payload, headers=headers)
        except ProviderRejected as error:
            if "(email_already_exists)" in error.message:
                return None
            if "(rate_limited)" in error.message:
                raise ProviderRateLimited(
                    error.message, where=error.where, retry_after=3600.0,
                    hint="Buttondown creates at most 100 subscribers a day through its API",
                ) from None  # fmt: skip
            raise
        return answer.get("id") if isinstance(answer, dict) else None

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        """Buttondown sends no mail of ours but issues: its own confirmations replace ours."""
        raise ProviderRejected(
            "Buttondown sends no single messages", where="buttondown",
            hint="with an audience provider, subscriptions go through the provider (subscribe)",
        )  # fmt: skip

    def close(self) -> None:
        self.client.close()
