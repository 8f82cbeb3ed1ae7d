"""Fake Resend API: ``POST /emails``, ``POST /emails/batch``, ``GET /emails/{id}``, ``GET /domains``.

Contract (Resend docs: resend-openapi, resend docs mirror): a ``User-Agent``
header is mandatory (missing → 403 "error code: 1010", a non-JSON body from the
edge); ``Authorization: Bearer re_…`` (missing → 401 ``missing_api_key``, wrong →
403 ``invalid_api_key``); errors ``{"statusCode", "name", "message"}``; a batch is a
JSON array of ≤100 emails, each ``from``, ``to`` (≤50), ``subject``, ``html``/``text``,
``headers``, ``tags`` ``[{name, value}]``, no ``attachments``/``scheduled_at``;
``x-batch-validation: strict`` (default: one bad email fails the call with 422) or
``permissive`` (``{"data": [...], "errors": [{"index", "message"}]}``);
``Idempotency-Key`` (1–256 chars, else 400 ``invalid_idempotency_key``) kept 24 h:
same body → the original answer, nothing sent; other body → 409
``invalid_idempotent_request``; same key while the first is running → 409
``concurrent_idempotent_requests``; every answer has ``ratelimit-limit/remaining/reset``,
a 429 also ``retry-after``; ``GET /domains`` lists ``{"object": "list", "data": [...]}``, and a key
with sending access only gets 401 ``restricted_api_key`` there (Resend API: Errors).

Assumptions [U]: payload problems answer 422 ``validation_error`` (or
``missing_required_field``); bodies are compared as parsed JSON; only 2xx answers are
kept for replay; 413 uses ``validation_error``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import deque
from typing import Any

from .base import DEFAULT, Delivery, FakeServer, Request, Response, bare_addresses, now_iso

NAMES = {400: "validation_error", 401: "missing_api_key", 403: "invalid_api_key", 404: "not_found",
         405: "method_not_allowed", 409: "concurrent_idempotent_requests", 413: "validation_error",
         422: "validation_error", 429: "rate_limit_exceeded", 500: "application_error", 503: "service_unavailable"}
MESSAGES = {401: "Missing API key in the authorization header.", 403: "API key is invalid",
            404: "The requested endpoint does not exist.", 405: "Method is not allowed for the requested path.",
            409: "There is another request in progress with the same idempotency key.",
            413: "Request body too large.", 429: "Too many requests. Please limit the number of requests per second.",
            500: "An unexpected error occurred.", 503: "API is temporarily unavailable"}
TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")


class FakeResend(FakeServer):
    """``FakeResend(api_key="re_…", rate_limit=None, idempotency_ttl=86400)``.

    Records: ``emails`` (one dict per accepted email: id, payload, idempotency_key, batch),
    ``delivered`` (one :class:`Delivery` per to/cc/bcc address of each accepted email).
    ``rate_limit`` (requests per second) turns on 429 ``rate_limit_exceeded``.
    """

    name = "resend"
    default_retry_after = 1
    partial_path = r"^/emails/batch$"

    def __init__(self, api_key: str = "re_test_key", *, rate_limit: int | None = None,
                 idempotency_ttl: float = 86_400.0, max_request_bytes: int = 40 * 1024 * 1024,
                 sending_only: bool = False, domain: str = "example.org") -> None:
        super().__init__()
        self.api_key = api_key
        self.sending_only = sending_only  # the key has "Sending access" only, not "Full access"
        self.domain = domain
        self.rate_limit = rate_limit
        self.idempotency_ttl = idempotency_ttl
        self.max_request_bytes = max_request_bytes
        self.emails: dict[str, dict[str, Any]] = {}
        self._idem: dict[tuple[str, str, str], tuple[str, Response | None, float]] = {}
        self._calls: deque[float] = deque()  # times of the requests of the last second

    def error(self, status: int, message: str | None = None, *, retry_after: Any = DEFAULT,
              name: str | None = None) -> Response:
        body = {"statusCode": status, "name": name or NAMES.get(status, "application_error"),
                "message": message or MESSAGES.get(status, "An error was found with one or more fields.")}
        headers = {k.lower(): v for k, v in self.retry_after_header(retry_after, status).items()}
        return Response.json(status, body, headers)

    def decorate(self, req: Request, resp: Response) -> None:
        limit, window = self.rate_limit or 10, self._recent(time.time())
        remaining = 0 if resp.status == 429 else max(0, limit - len(window))
        resp.headers.setdefault("ratelimit-limit", str(limit))
        resp.headers.setdefault("ratelimit-remaining", str(remaining))
        resp.headers.setdefault("ratelimit-reset", "1")

    def _recent(self, now: float) -> deque:
        while self._calls and self._calls[0] <= now - 1:
            self._calls.popleft()
        return self._calls

    # -- dispatch ---------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if not req.headers.get("User-Agent"):
            return Response.text(403, "error code: 1010")
        auth = req.headers.get("Authorization")
        if not auth:
            return self.error(401)
        if auth != f"Bearer {self.api_key}":
            return self.error(403)
        now = time.time()
        window = self._recent(now)
        if self.rate_limit is not None and len(window) >= self.rate_limit:
            return self.error(429, retry_after=1)
        window.append(now)
        if re.fullmatch(r"/domains/?", req.path):
            return self._domains(req)
        m = re.fullmatch(r"/emails(?:/(batch|[^/]+))?/?", req.path)
        if not m:
            return self.error(404)
        target = m.group(1)
        if req.method == "GET" and target not in (None, "batch"):
            email = self.emails.get(target)
            return Response.json(200, email["object"]) if email else self.error(404, "Email not found")
        if req.method != "POST" or target not in (None, "batch"):
            return self.error(405)
        try:
            payload = req.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON.")
        key = req.headers.get("Idempotency-Key")
        if key is not None:
            replay = self._idempotent(req, key, payload)
            if replay is not None:
                return replay
        return self._batch(req, payload) if target == "batch" else self._single(req, payload, key)

    def _domains(self, req: Request) -> Response:
        if self.sending_only:
            return self.error(401, "This API key is restricted to only send emails.", name="restricted_api_key")
        if req.method != "GET":
            return self.error(405)
        return Response.json(200, {"object": "list", "has_more": False, "data": [
            {"id": "d91cd9bd-1176-453e-8fc1-35364d380206", "name": self.domain, "status": "verified",
             "created_at": now_iso(), "region": "eu-west-1", "capabilities": {"sending": "enabled"}}]})

    def _idempotent(self, req: Request, key: str, payload: Any) -> Response | None:
        if not 1 <= len(key) <= 256:
            return self.error(400, "Idempotency keys, if present, must have between 1 and 256 characters.",
                              name="invalid_idempotency_key")
        slot, fingerprint, now = (req.method, req.path, key), json.dumps(payload, sort_keys=True), time.time()
        if slot in self._idem and self._idem[slot][2] > now:
            stored_fp, stored, _ = self._idem[slot]
            if stored is None:
                return self.error(409, name="concurrent_idempotent_requests")
            if stored_fp != fingerprint:
                return self.error(409, "This idempotency key has been used with this HTTP method and endpoint "
                                       "within the last 24 hours, but the request body was modified and doesn't "
                                       "match the original request.", name="invalid_idempotent_request")
            return Response(stored.status, stored.body, dict(stored.headers))
        self._idem[slot] = (fingerprint, None, now + self.idempotency_ttl)

        def keep(resp: Response) -> None:
            if 200 <= resp.status < 300:
                self._idem[slot] = (fingerprint, Response(resp.status, resp.body, dict(resp.headers)),
                                    now + self.idempotency_ttl)
            else:
                del self._idem[slot]

        req.after.append(keep)
        return None

    # -- sending ----------------------------------------------------------------
    def _single(self, req: Request, payload: Any, key: str | None) -> Response:
        problem = self._validate(payload, batch=False)
        if problem:
            return self.error(422, problem[1], name=problem[0])
        return Response.json(200, {"id": self._accept(payload, key, batch=False)})

    def _batch(self, req: Request, payload: Any) -> Response:
        mode = (req.headers.get("x-batch-validation") or "strict").lower()
        if mode not in ("strict", "permissive"):
            return self.error(422, "x-batch-validation must be 'strict' or 'permissive'.")
        if not isinstance(payload, list) or not payload:
            return self.error(422, "The batch must be a non-empty JSON array of emails.")
        if len(payload) > 100:
            return self.error(422, "Too many emails in the batch: the maximum is 100.")
        fault, errors = req.fault, []
        for index, email in enumerate(payload):
            problem = self._validate(email, batch=True)
            if not problem and fault is not None and (
                    index in fault.indexes or {a.lower() for a in _recipients(email)} & set(fault.addresses)):
                problem = ("validation_error", f"emails[{index}]: injected failure (fake partial fault).")
            if problem and mode == "strict":
                return self.error(422, problem[1], name=problem[0])
            if problem:
                errors.append({"index": index, "message": problem[1]})
        failed = {e["index"] for e in errors}
        key = req.headers.get("Idempotency-Key")
        data = [{"id": self._accept(email, key, batch=True)} for i, email in enumerate(payload) if i not in failed]
        return Response.json(200, {"data": data, "errors": errors} if mode == "permissive" else {"data": data})

    def _validate(self, email: Any, *, batch: bool) -> tuple[str, str] | None:
        if not isinstance(email, dict):
            return "validation_error", "Each email must be a JSON object."
        for field in ("from", "to", "subject"):
            if not email.get(field):
                return "missing_required_field", f"Missing `{field}` field."
        to = email["to"] if isinstance(email["to"], list) else [email["to"]]
        if not all(isinstance(a, str) for a in to) or len(to) > 50:
            return "validation_error", "Invalid `to` field: a string or an array of at most 50 addresses."
        for address in [email["from"], *to, *_as_list(email.get("cc")), *_as_list(email.get("bcc"))]:
            if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", (bare_addresses(address) or [""])[0]):
                return "validation_error", (f"Invalid address `{address}`: use `email@example.com` or "
                                            "`Name <email@example.com>`.")
        if not (email.get("html") or email.get("text") or email.get("template")):
            return "validation_error", "Missing `html` or `text` field."
        headers = email.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return "validation_error", "`headers` must be an object of strings."
        tags = email.get("tags") or []
        if not isinstance(tags, list) or not all(
                isinstance(t, dict) and TAG.fullmatch(str(t.get("name", ""))) and TAG.fullmatch(str(t.get("value", "")))
                for t in tags):
            return "validation_error", "Tags need `name` and `value` of ASCII letters, digits, `_` or `-`."
        if batch and ("attachments" in email or "scheduled_at" in email):
            return "validation_error", "`attachments` and `scheduled_at` are not supported in batch emails."
        return None

    def _accept(self, email: dict[str, Any], key: str | None, *, batch: bool) -> str:
        email_id = str(uuid.uuid4())
        headers = dict(email.get("headers") or {})
        tags = {t["name"]: t["value"] for t in email.get("tags") or []}
        to = _as_list(email["to"])
        self.emails[email_id] = {"id": email_id, "payload": email, "idempotency_key": key, "batch": batch,
                                 "object": {"object": "email", "id": email_id, "to": to, "from": email["from"],
                                            "subject": email["subject"], "html": email.get("html"),
                                            "text": email.get("text"), "created_at": now_iso(),
                                            "last_event": "sent"}}
        for address in _recipients(email):
            self.deliver(Delivery(address, email_id, email["subject"], email.get("html"), email.get("text"),
                                  headers, {"tags": tags}))
        return email_id


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return list(value) if isinstance(value, list) else [value]


def _recipients(email: dict[str, Any]) -> list[str]:
    fields = _as_list(email.get("to")) + _as_list(email.get("cc")) + _as_list(email.get("bcc"))
    return bare_addresses(*fields) if fields else []
