"""Fake Buttondown API (``/v1``): emails created, drafted, published and sent to an audience.

``GET /v1/newsletters`` lists the key's newsletter (Buttondown API docs: Newsletters), as a page
(``results``, ``count``, ``next``, ``previous``); a wrong key gets the same 401 as everywhere.

Contract (Buttondown API docs): ``Authorization: Token <key>``;
``POST /v1/emails`` with ``EmailInput`` (unknown fields → 422 ``extra_forbidden``);
``status`` defaults to ``about_to_send``, so a bare create SENDS; on API version
2026-04-01+ such a create needs ``X-Buttondown-Live-Dangerously: true`` (first use
per key) else 400 ``sending_requires_confirmation``; a body with YAML front matter →
400 ``body_contains_frontmatter``; ``X-Idempotency-Key`` (≤200 chars) replays the
original answer; ``X-RateLimit-Limit/Remaining/Reset`` on every answer, ``Retry-After``
on 429.  Errors: 400 ``{code, detail, metadata}``, 422 ``{detail: [...]}``.

Assumptions where the docs are silent [U]: a key reused while its first request is
still running → 409; a key longer than 200 chars → 400 ``idempotency_key_invalid``;
only 2xx answers are kept for replay; ``about_to_send`` again on an email already
sending or sent changes nothing and sends nothing; the ``subject`` list filter is exact.

Subscribers (Buttondown API docs): ``POST /v1/subscribers`` with ``{email_address, tags, metadata,
type, notes, referrer_url, utm_*, ip_address, referring_subscriber_id}`` (unknown fields → 422);
``X-Buttondown-Collision-Behavior: no_op|overwrite|add``, ``no_op`` → 400 when the address
exists; at most 100 creations a day, then **400** (not 429).  [U]: the error codes
``email_already_exists``, ``email_invalid`` and ``rate_limited`` for those 400s; no header
behaves as ``no_op``; a new subscriber without ``type`` is ``unactivated`` and gets Buttondown's
own confirmation mail (recorded in ``confirmations``) and joins ``subscribers`` but receives no
issue until confirmed; an existing one is never re-activated.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from typing import Any

from .base import DEFAULT, Delivery, FakeServer, Request, Response, now_iso

STATUSES = ("draft", "about_to_send", "scheduled", "in_flight", "imported", "managed_by_rss",
            "deleted", "paused", "sent", "errored")
SENDING = ("about_to_send", "in_flight", "sent")
FIELDS = {"subject", "body", "status", "publish_date", "slug", "description", "canonical_url", "image",
          "metadata", "secondary_id", "filters", "template", "archival_mode", "commenting_mode",
          "attachments", "related_email_ids", "featured", "should_trigger_pay_per_email_billing", "email_type"}
FRONT_MATTER = re.compile(r"\A\s*---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(\r?\n|\Z)", re.S)
CONFIRMATION_VERSION = "2026-04-01"
SUBSCRIBER_FIELDS = {"email_address", "tags", "metadata", "type", "notes", "referrer_url", "utm_campaign",
                     "utm_medium", "utm_source", "ip_address", "referring_subscriber_id"}
SUBSCRIBER_TYPES = ("regular", "unactivated", "unsubscribed", "undeliverable", "complained", "premium", "gifted",
                    "churning", "removed", "trialed", "paused", "blocked", "spammy")
COLLISION_BEHAVIORS = ("no_op", "overwrite", "add")
SUBSCRIBERS_PER_DAY = 100


class FakeButtondown(FakeServer):
    """``FakeButtondown(api_key=..., subscribers=[...], api_version=...)``.

    Records: ``emails`` (id → email dict, with ``status_history`` and ``status_defaulted``),
    ``sends`` (one dict per send: email_id, kind "send"|"send-draft", recipients),
    ``delivered`` (one :class:`Delivery` per subscriber per sent email; send-draft previews
    are in ``sends`` only).
    """

    name = "buttondown"
    default_retry_after = 1

    def __init__(self, api_key: str = "bd-test-key", *, subscribers: list[str] | tuple[str, ...] = (),
                 api_version: str = CONFIRMATION_VERSION, rate_limit: int | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.subscribers = list(subscribers)
        self.api_version = api_version  # the newsletter's pinned version, used without X-API-Version
        self.rate_limit = rate_limit  # requests/minute to enforce with 429; None: report 600, never refuse
        self.emails: dict[str, dict[str, Any]] = {}
        self.sends: list[dict[str, Any]] = []
        self._confirmed_keys: set[str] = set()
        self._idem: dict[tuple[str, str], Response | None] = {}  # None: still running
        self._calls: deque[float] = deque()  # times of the requests of the last 60 s
        # Subscribers created or known through /v1/subscribers (address → record); the
        # constructor's ``subscribers`` are known too, as ``regular``.
        self.subscriber_records: dict[str, dict[str, Any]] = {}
        self.confirmations: list[str] = []  # addresses Buttondown sent its own opt-in mail to
        self._created_today: deque[float] = deque()

    # -- errors -----------------------------------------------------------------
    def error(self, status: int, message: str | None = None, *, retry_after: Any = DEFAULT,
              code: str | None = None) -> Response:
        headers = self.retry_after_header(retry_after, status)
        if status == 422:
            return Response.json(422, {"detail": [{"type": code or "value_error", "loc": ["body", "payload"],
                                                   "msg": message or "Invalid input"}]})
        if status == 401:
            code, message = code or "authentication_invalid", message or "Please provide a valid API key."
        elif status == 429:
            code, message = code or "rate_limited", message or "Request was throttled."
        default = {404: "Not Found", 413: "Request body too large.", 500: "Internal server error.",
                   503: "Service unavailable."}.get(status, "Error.")
        body: dict[str, Any] = {"code": code or "error", "detail": message or default}
        if status == 400:
            body["metadata"] = {}
        return Response.json(status, body, headers)

    def _invalid(self, field: str, type_: str, msg: str) -> Response:
        return Response.json(422, {"detail": [{"type": type_, "loc": ["body", "payload", field], "msg": msg}]})

    def decorate(self, req: Request, resp: Response) -> None:
        limit, window = self.rate_limit or 600, self._recent(time.time())
        remaining = 0 if resp.status == 429 else max(0, limit - len(window))
        resp.headers.setdefault("X-RateLimit-Limit", str(limit))
        resp.headers.setdefault("X-RateLimit-Remaining", str(remaining))
        reset = (window[0] if window else time.time()) + 60
        if resp.status == 429 and "Retry-After" in resp.headers:
            # The window frees up when the 429 says it does: keep both headers consistent.
            reset = time.time() + float(resp.headers["Retry-After"])
        resp.headers.setdefault("X-RateLimit-Reset", str(int(reset + 0.999)))

    def _recent(self, now: float) -> deque:
        while self._calls and self._calls[0] <= now - 60:
            self._calls.popleft()
        return self._calls

    # -- dispatch ---------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        now = time.time()
        window = self._recent(now)
        if self.rate_limit is not None and len(window) >= self.rate_limit:
            return self.error(429, retry_after=max(1, int(window[0] + 60 - now + 0.999)))
        window.append(now)
        if req.headers.get("Authorization") != f"Token {self.api_key}":
            return self.error(401)
        key = req.headers.get("X-Idempotency-Key")
        if key is None:
            return self._route(req)
        if not key or len(key) > 200:
            return self.error(400, "X-Idempotency-Key must be 1 to 200 characters.", code="idempotency_key_invalid")
        slot = (self.api_key, key)
        if slot in self._idem:
            stored = self._idem[slot]
            if stored is None:
                return self.error(409, "A request with this idempotency key is in progress.", code="conflict")
            return Response(stored.status, stored.body, dict(stored.headers))
        self._idem[slot] = None

        def keep(resp: Response) -> None:
            if 200 <= resp.status < 300:
                self._idem[slot] = Response(resp.status, resp.body, dict(resp.headers))
            else:
                del self._idem[slot]

        req.after.append(keep)
        return self._route(req)

    def _route(self, req: Request) -> Response:
        if re.fullmatch(r"/v1/newsletters/?", req.path):
            if req.method != "GET":
                return self.error(405, "Method not allowed.")
            newsletter = {"id": "497f6eca-6276-4993-bfeb-53cbbbba6f08", "username": "journal", "name": "Le Journal",
                          "description": "", "creation_date": now_iso(), "api_key": self.api_key}
            return Response.json(200, {"results": [newsletter], "next": None, "previous": None, "count": 1})
        if re.fullmatch(r"/v1/subscribers/?", req.path):
            return self._create_subscriber(req) if req.method == "POST" else self.error(405, "Method not allowed.")
        m = re.fullmatch(r"/v1/emails(?:/([^/]+))?(/publish|/send-draft)?/?", req.path)
        if not m:
            return self.error(404)
        email_id, action = m.groups()
        if email_id is None:
            if req.method == "POST":
                return self._create(req)
            if req.method == "GET":
                return self._list(req)
        elif email_id not in self.emails:
            return self.error(404)
        elif action is None and req.method == "GET":
            return Response.json(200, self._public(self.emails[email_id]))
        elif action is None and req.method == "PATCH":
            return self._update(req, self.emails[email_id], publish=False)
        elif action == "/publish" and req.method == "POST":
            return self._update(req, self.emails[email_id], publish=True)
        elif action == "/send-draft" and req.method == "POST":
            return self._send_draft(req, self.emails[email_id])
        return self.error(405, "Method not allowed.")

    # -- endpoints --------------------------------------------------------------
    def _json_object(self, req: Request, allowed: Any) -> dict[str, Any] | Response:
        """The body as a JSON object of ``allowed`` fields, or the 422 Buttondown answers instead."""
        try:
            data = req.json() if req.body else {}
        except ValueError:
            return Response.json(422, {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "Invalid JSON"}]})
        if not isinstance(data, dict):
            return Response.json(422, {"detail": [{"type": "model_type", "loc": ["body", "payload"],
                                                   "msg": "Input should be an object"}]})
        for name in data:
            if name not in allowed:
                return self._invalid(name, "extra_forbidden", "Extra inputs are not permitted")
        return data

    def _payload(self, req: Request) -> dict[str, Any] | Response:
        data = self._json_object(req, FIELDS)
        if isinstance(data, Response):
            return data
        if "subject" in data and not isinstance(data["subject"], str):
            return self._invalid("subject", "string_type", "Input should be a valid string")
        if len(data.get("subject") or "") > 2000:
            return self._invalid("subject", "string_too_long", "String should have at most 2000 characters")
        if "status" in data and data["status"] not in STATUSES:
            return self._invalid("status", "enum", f"Input should be one of {', '.join(STATUSES)}")
        if "slug" in data and not re.fullmatch(r"[a-zA-Z0-9_-]{1,100}", str(data["slug"])):
            return self.error(400, "The slug is invalid.", code="slug_invalid")
        body = data.get("body")
        if isinstance(body, str) and FRONT_MATTER.match(body) and not self._dangerous(req):
            return self.error(400, "The body starts with front matter; strip it.", code="body_contains_frontmatter")
        return data

    def _dangerous(self, req: Request) -> bool:
        return (req.headers.get("X-Buttondown-Live-Dangerously") or "").lower() == "true"

    def _create(self, req: Request) -> Response:
        data = self._payload(req)
        if isinstance(data, Response):
            return data
        if "subject" not in data:
            return self._invalid("subject", "missing", "Field required")
        slug = data.get("slug")
        if slug and any(e.get("slug") == slug for e in self.emails.values()):
            return self.error(400, "The slug is already in use.", code="slug_invalid")
        status = data.get("status", "about_to_send")
        if status == "scheduled" and not data.get("publish_date"):
            return self.error(400, "A scheduled email needs a publish_date.", code="publish_date_missing")
        version = req.headers.get("X-API-Version") or self.api_version
        if status == "about_to_send" and version >= CONFIRMATION_VERSION and self.api_key not in self._confirmed_keys:
            if not self._dangerous(req):
                return self.error(400, "Sending from the API needs X-Buttondown-Live-Dangerously: true the first "
                                       "time.", code="sending_requires_confirmation")
            self._confirmed_keys.add(self.api_key)
        email_id = "em_" + uuid.uuid4().hex[:26]
        email = {**{k: v for k, v in data.items() if k != "status"}, "id": email_id, "status": "draft",
                 "creation_date": now_iso(), "modification_date": now_iso(), "source": "api",
                 "absolute_url": f"{self.url}/archive/{slug or email_id}/", "status_history": [],
                 "status_defaulted": "status" not in data}
        email.setdefault("body", "")
        email.setdefault("metadata", {})
        email.setdefault("publish_date", None)
        self.emails[email_id] = email
        self._set_status(email, status)
        return Response.json(201, self._public(email))

    def _update(self, req: Request, email: dict[str, Any], *, publish: bool) -> Response:
        data = self._payload(req)
        if isinstance(data, Response):
            return data
        status = data.pop("status", "about_to_send" if publish else None)
        if publish and data.get("publish_date") and str(data["publish_date"]) > now_iso():
            status = "scheduled"
        email.update(data, modification_date=now_iso())
        if status is not None:
            self._set_status(email, status)
        return Response.json(200, self._public(email))

    def _set_status(self, email: dict[str, Any], status: str) -> None:
        if status == email["status"] and email["status_history"]:
            return
        if status == "about_to_send" and email["status"] in SENDING:
            return  # already sending or sent: nothing new happens [U]
        email["status"] = status
        email["status_history"].append(status)
        if status == "about_to_send":
            self._send(email)

    def _send(self, email: dict[str, Any]) -> None:
        receiving = [a for a in self.subscribers
                     if self.subscriber_records.get(a.lower(), {}).get("type", "regular") != "unactivated"]
        self.sends.append({"email_id": email["id"], "kind": "send", "recipients": receiving})
        for n, address in enumerate(receiving):
            unsubscribe = f"{self.url}/unsubscribe/{email['id']}/{n}"
            html = re.sub(r"\{\{\s*subscriber\.email\s*\}\}", address, email.get("body") or "")
            html = re.sub(r"\{\{\s*unsubscribe_url\s*\}\}", unsubscribe, html)
            self.deliver(Delivery(address, f"{email['id']}.{n}", email["subject"], html, None,
                                  {"List-Unsubscribe": f"<{unsubscribe}>",
                                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                                  {"email_id": email["id"], "metadata": email.get("metadata")}))

    def _send_draft(self, req: Request, email: dict[str, Any]) -> Response:
        try:
            data = req.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or set(data) - {"recipients", "subscribers"}:
            return self._invalid("recipients", "extra_forbidden", "Only recipients and subscribers are allowed")
        recipients = list(data.get("recipients") or []) + list(data.get("subscribers") or [])
        if not recipients:
            return self._invalid("recipients", "missing", "Field required")
        self.sends.append({"email_id": email["id"], "kind": "send-draft", "recipients": recipients,
                           "subject": f"[PREVIEW] {email['subject']}"})
        return Response.json(200, {})

    def _create_subscriber(self, req: Request) -> Response:
        data = self._json_object(req, SUBSCRIBER_FIELDS)
        if isinstance(data, Response):
            return data
        address = data.get("email_address")
        if address is None:
            return self._invalid("email_address", "missing", "Field required")
        if not isinstance(address, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
            return self.error(400, "The email address is invalid.", code="email_invalid")
        if "type" in data and data["type"] not in SUBSCRIBER_TYPES:
            return self._invalid("type", "enum", f"Input should be one of {', '.join(SUBSCRIBER_TYPES)}")
        behavior = req.headers.get("X-Buttondown-Collision-Behavior") or "no_op"
        if behavior not in COLLISION_BEHAVIORS:
            return self.error(400, "Unknown collision behavior.", code="collision_behavior_invalid")
        address = address.lower()
        existing = self.subscriber_records.get(address)
        if existing is None and address in (a.lower() for a in self.subscribers):
            existing = self.subscriber_records[address] = self._subscriber(address, {"type": "regular"})
        if existing is not None:
            if behavior == "no_op":
                return self.error(400, "A subscriber with this email address already exists.",
                                  code="email_already_exists")
            changes = {k: v for k, v in data.items() if k not in ("email_address", "type")}
            if behavior == "add":
                existing["tags"] = sorted(set(existing["tags"]) | set(changes.pop("tags", [])))
                existing["metadata"] = {**existing["metadata"], **changes.pop("metadata", {})}
            existing.update(changes)  # never the type: a subscriber who left stays gone
            return Response.json(200, existing)
        now = time.time()
        while self._created_today and self._created_today[0] <= now - 86400:
            self._created_today.popleft()
        if len(self._created_today) >= SUBSCRIBERS_PER_DAY:
            return self.error(400, "You can create at most 100 subscribers a day through the API; use an import.",
                              code="rate_limited")
        self._created_today.append(now)
        record = self.subscriber_records[address] = self._subscriber(address, data)
        self.subscribers.append(address)  # in the audience; an unactivated one receives no issue yet
        if record["type"] == "unactivated":
            self.confirmations.append(address)
        return Response.json(201, record)

    @staticmethod
    def _subscriber(address: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": "sub_" + uuid.uuid4().hex[:26], "email_address": address, "creation_date": now_iso(),
                "type": data.get("type", "unactivated"), "tags": list(data.get("tags") or []),
                "metadata": dict(data.get("metadata") or {}), "notes": data.get("notes", ""),
                "ip_address": data.get("ip_address"), "referrer_url": data.get("referrer_url", ""),
                "source": "api"}

    def _list(self, req: Request) -> Response:
        found = [e for e in self.emails.values()
                 if ("subject" not in req.query or e["subject"] in req.query["subject"])
                 and ("status" not in req.query or e["status"] in req.query["status"])]
        return Response.json(200, {"results": [self._public(e) for e in found], "next": None,
                                   "previous": None, "count": len(found)})

    @staticmethod
    def _public(email: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in email.items() if k not in ("status_history", "status_defaulted")}
