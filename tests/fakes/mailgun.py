"""Fake Mailgun API: ``POST /v3/<domain>/messages`` and ``GET /v3/<domain>/events``.

Contract (Mailgun docs: api-sending.rst, user_manual.rst,
api-events.rst): HTTP Basic ``api:<key>`` (else 401 ``Forbidden``); fields ``from``,
``to`` (repeatable or comma-separated), ``cc``, ``bcc``, ``subject``, ``text``,
``html``, ``o:tag`` (≤3), ``o:testmode``, ``h:<Header>``, ``v:<var>``,
``recipient-variables`` (JSON, ``%recipient.KEY%`` substitution per recipient);
≤1,000 recipients ("Too many recipients, max is 1000"); success
``{"id": "<…@domain>", "message": "Queued. Thank you."}``; errors ``{"message": …}``;
429 body "… try again after <date>" and no documented ``Retry-After``.  Any host
is served, so the same fake stands for the US and EU bases.

Stricter than Mailgun, to keep clients honest (marked "fake:" in the messages):
only ``multipart/form-data`` is accepted (the urlencoded error is Mailgun's own text);
more than one ``to`` without ``recipient-variables`` is refused (every recipient
would see all addresses); more than 3 ``o:tag`` are refused.  ``%recipient.KEY%``
with no value for that recipient is left as is, so tests can see it.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from email import policy
from email.parser import BytesParser
from email.utils import formatdate, getaddresses
from typing import Any

from .base import DEFAULT, Delivery, FakeServer, Request, Response

PLACEHOLDER = re.compile(r"%recipient(?:\.([A-Za-z0-9_.\-]+)|_(email|name|fname|lname))?%")


class FakeMailgun(FakeServer):
    """``FakeMailgun(api_key=..., domain=..., max_request_bytes=..., max_recipients=1000)``.

    Records: ``messages`` (one dict per accepted API call: id, fields, recipients, tags),
    ``events`` (one "accepted" event per recipient, as the Events API returns them),
    ``delivered`` (one :class:`Delivery` per recipient with its own substituted html/text/
    headers; ``o:testmode=yes`` messages are accepted but not delivered).
    """

    name = "mailgun"
    default_retry_after = None

    def __init__(
        self,
        api_key: str = "key-test",
        *,
        domain: str = "mg.example.org",
        max_request_bytes: int = 52_428_800,
        max_recipients: int = 1000,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.domain = domain
        self.domain_tracking = True  # the domain's tracking setting, used when a request does not say
        self.max_request_bytes = max_request_bytes
        self.max_recipients = max_recipients
        self.messages: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._serial = 0

    def error(self, status: int, message: str | None = None, *, retry_after: Any = DEFAULT) -> Response:
        headers = self.retry_after_header(retry_after, status)
        if status == 401:
            return Response.text(401, "Forbidden", headers)
        if status == 429 and message is None:
            wait = 1 if retry_after in (DEFAULT, None) else float(retry_after)
            message = (
                f"Domain {self.domain} is not allowed to send: request limit exceeded, "
                f"try again after {formatdate(time.time() + wait, usegmt=True)}"
            )
        default = {
            400: "Bad request",
            404: "Not found",
            413: "Request entity too large",
            500: "Internal server error",
            503: "Service unavailable",
        }.get(status, "Error")
        return Response.json(status, {"message": message or default}, headers)

    # -- dispatch ---------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if not self._authorized(req):
            return self.error(401)
        m = re.fullmatch(r"/v3/([^/]+)/(messages|events)(?:/([^/]+))?/?", req.path)
        if not m:
            return self.error(404, "Not found")
        domain, endpoint, page = m.groups()
        if domain != self.domain:
            return self.error(404, "Domain not found")
        if endpoint == "messages" and req.method == "POST" and page is None:
            return self._send(req)
        if endpoint == "events" and req.method == "GET":
            return self._events(req, page)
        return self.error(405, "Method not allowed")

    def _authorized(self, req: Request) -> bool:
        scheme, _, value = (req.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except ValueError:
            return False
        return user == "api" and password == self.api_key

    # -- sending ----------------------------------------------------------------
    def _form(self, req: Request) -> list[tuple[str, Any]] | Response:
        ctype = req.headers.get("Content-Type") or ""
        if not ctype.lower().startswith("multipart/form-data"):
            got = ctype.split(";")[0].strip() or "nothing"
            return self.error(400, f"Invalid request content type. Expecting 'multipart/form-data' but got '{got}'")
        msg = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
        if not msg.is_multipart():
            return self.error(400, "fake: malformed multipart/form-data body")
        fields: list[tuple[str, Any]] = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is None:
                payload = payload.decode(part.get_content_charset() or "utf-8")
            fields.append((name, payload))
        return fields

    def _send(self, req: Request) -> Response:
        form = self._form(req)
        if isinstance(form, Response):
            return form

        def all_of(name: str) -> list[str]:
            return [v for k, v in form if k == name]

        def one(name: str) -> str | None:
            values = all_of(name)
            return values[0] if values else None

        sender, subject = one("from"), one("subject")
        to = [(n, a) for n, a in getaddresses(all_of("to"))]
        copies = [(n, a) for n, a in getaddresses(all_of("cc") + all_of("bcc"))]
        for param, value in (("from", sender), ("to", to), ("subject", subject)):
            if not value:
                return self.error(400, f"{param} parameter is missing")
        if not any(one(k) for k in ("text", "html", "amp-html", "template")):
            return self.error(400, "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified")
        for _name, address in to + copies:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
                return self.error(400, "'to' parameter is not a valid address. please check documentation")
        if len(to) + len(copies) > self.max_recipients:
            return self.error(400, f"Too many recipients, max is {self.max_recipients}")
        raw_vars = one("recipient-variables")
        try:
            rvars = json.loads(raw_vars) if raw_vars is not None else None
        except ValueError:
            rvars = "invalid"
        if rvars is not None and not isinstance(rvars, dict):
            return self.error(400, "'recipient-variables' parameter is not a valid JSON")
        if len(to) > 1 and rvars is None:
            return self.error(
                400, "fake: more than one 'to' needs 'recipient-variables', or every recipient sees every address"
            )
        tags = all_of("o:tag")
        if len(tags) > 3:
            return self.error(400, "fake: at most 3 'o:tag' per message")
        tracking = {}
        for option in ("o:tracking", "o:tracking-clicks", "o:tracking-opens"):
            value = one(option)
            allowed = TRACKING_VALUES + (("htmlonly",) if option == "o:tracking-clicks" else ())
            if value is not None and value.lower() not in allowed:
                return self.error(400, f"'{option}' parameter is not valid")
            tracking[option] = value
        # Without the options, the domain's own setting applies (on, in this fake, as Mailgun's default).
        overall = _yes(tracking["o:tracking"], self.domain_tracking)
        effective = {
            "opens": overall and _yes(tracking["o:tracking-opens"], True),
            "clicks": overall and _yes(tracking["o:tracking-clicks"], True),
        }

        self._serial += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        message_id = f"<{stamp}.{self._serial}.{uuid.uuid4().hex[:8]}@{self.domain}>"
        test_mode = (one("o:testmode") or "").lower() in ("yes", "true")
        headers = {k[2:]: v for k, v in form if k.startswith("h:")}
        user_vars = {k[2:]: v for k, v in form if k.startswith("v:")}
        self.messages.append(
            {
                "id": message_id,
                "fields": form,
                "recipients": [a for _, a in to + copies],
                "tags": tags,
                "test_mode": test_mode,
                "tracking": effective,
            }
        )
        for name, address in to + copies:
            own = (rvars or {}).get(address) or (rvars or {}).get(address.lower()) or {}
            own = own if (name, address) in to else {}
            sub = lambda s, name=name, address=address, own=own: _substitute(s, name, address, own)  # noqa: E731
            to_header = ", ".join(_join(n, a) for n, a in to) if rvars is None else _join(name, address)
            final_headers = {
                "From": sender,
                "To": to_header,
                "Subject": sub(subject),
                "Message-Id": message_id,
                **{k: sub(v) for k, v in headers.items()},
            }
            final_vars = {k: sub(v) for k, v in user_vars.items()}
            self.events.append(
                {
                    "event": "accepted",
                    "id": uuid.uuid4().hex,
                    "timestamp": time.time(),
                    "log-level": "info",
                    "recipient": address,
                    "recipient-domain": address.rpartition("@")[2],
                    "tags": tags,
                    "user-variables": final_vars,
                    "flags": {"is-test-mode": test_mode},
                    "envelope": {"sender": sender, "targets": address, "transport": "smtp"},
                    "message": {
                        "headers": {
                            "message-id": message_id.strip("<>"),
                            "from": sender,
                            "to": to_header,
                            "subject": sub(subject),
                        },
                        "size": len(req.body),
                    },
                }
            )
            if not test_mode:
                self.deliver(
                    Delivery(
                        address,
                        message_id,
                        sub(subject),
                        _maybe(sub, one("html")),
                        _maybe(sub, one("text")),
                        final_headers,
                        {"tags": tags, "user-variables": final_vars, "tracking": effective},
                    )
                )
        return Response.json(200, {"id": message_id, "message": "Queued. Thank you."})

    # -- events -----------------------------------------------------------------
    def _events(self, req: Request, page: str | None) -> Response:
        if page is not None:
            try:
                state = json.loads(base64.urlsafe_b64decode(page.encode()))
            except ValueError:
                return self.error(400, "Invalid page token")
            params, offset = state["params"], state["offset"]
        else:
            params = {k: v[0] for k, v in req.query.items()}
            offset = 0
        try:
            limit = int(params.get("limit", 100))
        except ValueError:
            return self.error(400, "Invalid limit")
        if not 0 < limit <= 300:
            return self.error(400, "limit must be between 1 and 300")
        found = [e for e in self.events if _event_matches(e, params)]
        if params.get("ascending", "no") != "yes":
            found.reverse()
        items = found[offset : offset + limit]
        base = f"{self.url}/v3/{self.domain}/events/"

        def token(at: int) -> str:
            return base + base64.urlsafe_b64encode(json.dumps({"params": params, "offset": at}).encode()).decode()

        paging = {
            "first": token(0),
            "last": token(max(0, len(found) - limit)),
            "next": token(offset + len(items)),
            "previous": token(max(0, offset - limit)),
        }
        return Response.json(200, {"items": items, "paging": paging})


def _event_matches(event: dict[str, Any], params: dict[str, str]) -> bool:
    tag = params.get("tags") or params.get("tag")
    if tag and tag.lower() not in (t.lower() for t in event["tags"]):
        return False
    if params.get("event") and event["event"] != params["event"]:
        return False
    if params.get("recipient") and event["recipient"].lower() != params["recipient"].lower():
        return False
    wanted = params.get("message-id")
    return not wanted or event["message"]["headers"]["message-id"] == wanted.strip("<>")


def _substitute(text: str, name: str, address: str, own: dict[str, Any]) -> str:
    def value(m: re.Match) -> str:
        key, special = m.groups()
        if key is not None:
            return str(own[key]) if key in own else m.group(0)
        first, _, last = name.partition(" ")
        return {None: address, "email": address, "name": name, "fname": first, "lname": last}[special]

    return PLACEHOLDER.sub(value, text)


def _maybe(sub: Any, value: str | None) -> str | None:
    return None if value is None else sub(value)


def _join(name: str, address: str) -> str:
    return f"{name} <{address}>" if name else address


TRACKING_VALUES = ("yes", "no", "true", "false")


def _yes(value: str | None, default: bool) -> bool:
    """A Mailgun yes/no option (``htmlonly`` counts as on), or ``default`` when absent."""
    return default if value is None else value.lower() in ("yes", "true", "htmlonly")
