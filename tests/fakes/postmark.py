"""Fake Postmark API: ``POST /email``, ``POST /email/batch``, ``GET /messages/outbound``, ``GET /server``.

Contract (Postmark docs: postmarkapp.com developer docs, postmark-python SDK,
postmarker cassettes): ``X-Postmark-Server-Token`` (else 401 ErrorCode 10);
``Accept`` and ``Content-Type`` ``application/json`` (else ErrorCode 409 "JSON
required"); a batch is a JSON array of ≤500 messages (else 422 ErrorCode 410) and is
answered **200 even when some messages fail**: one item per message, in order,
``{"ErrorCode": 0, "Message": "OK", "MessageID", "SubmittedAt", "To"}`` or
``{"ErrorCode": 300|406|…, "Message"}``; ≤50 recipients per message; errors are
``{"ErrorCode", "Message"}`` (422 for bad requests); ``GET /messages/outbound``
needs ``count`` (≤500) and ``offset`` (count+offset ≤10,000), filters ``recipient``,
``tag``, ``subject``, ``fromemail``, ``messagestream`` and one ``metadata_<key>``;
``GET /server`` answers the token's server (``ID``, ``Name``, ``ApiTokens``, tracking settings…).

Assumptions [U]: without ``messagestream`` the search looks at the "outbound"
stream only (set ``search_default_stream=None`` to search all); 429/5xx bodies use
the HTTP status as ErrorCode; unknown stream → ErrorCode 1235.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .base import DEFAULT, Delivery, FakeServer, Request, Response, bare_addresses, now_iso

INACTIVE = ("You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: {}. "
            "Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual "
            "suppression.")


class FakePostmark(FakeServer):
    """``FakePostmark(server_token=..., streams=("outbound", "broadcast"), inactive=[...])``.

    Records: ``messages`` (one dict per accepted message, as the search returns it plus
    HtmlBody/TextBody/Headers), ``delivered`` (one :class:`Delivery` per recipient of each
    accepted message; failed batch items are not delivered).  ``inactive`` addresses
    always fail with ErrorCode 406, like Postmark's suppression list.
    """

    name = "postmark"
    default_retry_after = None
    partial_path = r"^/email(/batch)?$"

    def __init__(self, server_token: str = "pm-test-token", *, streams: tuple[str, ...] = ("outbound", "broadcast"),
                 inactive: list[str] | tuple[str, ...] = (), search_default_stream: str | None = "outbound",
                 max_request_bytes: int = 50 * 1024 * 1024) -> None:
        super().__init__()
        self.server_token = server_token
        self.streams = tuple(streams)
        self.inactive = {a.lower() for a in inactive}
        self.search_default_stream = search_default_stream
        self.max_request_bytes = max_request_bytes
        self.messages: list[dict[str, Any]] = []

    def error(self, status: int, message: str | None = None, *, retry_after: Any = DEFAULT,
              code: int | None = None) -> Response:
        defaults = {401: (10, "Request does not contain a valid Server token."),
                    413: (300, "Request too large: a batch may not exceed 50 MB."),
                    422: (300, "Invalid email request"), 429: (429, "Rate limit exceeded.")}
        default_code, default_message = defaults.get(status, (status, "Internal server error."))
        body = {"ErrorCode": default_code if code is None else code, "Message": message or default_message}
        return Response.json(status, body, self.retry_after_header(retry_after, status))

    # -- dispatch ---------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        token = req.headers.get("X-Postmark-Server-Token")
        if token is None:
            return self.error(401, "No Account or Server API tokens were supplied in the HTTP headers. Please add "
                                   "a header for either X-Postmark-Server-Token or X-Postmark-Account-Token.")
        if token != self.server_token:
            return self.error(401)
        json_ok = "application/json" in (req.headers.get("Accept") or "")
        if req.method == "POST":
            json_ok = json_ok and (req.headers.get("Content-Type") or "").startswith("application/json")
        if not json_ok:
            return self.error(422, "Your HTTP request does not have the Accept and Content-Type headers set to "
                                   "'application/json'.", code=409)
        if req.path in ("/email", "/email/batch") and req.method == "POST":
            try:
                payload = req.json()
            except ValueError:
                return self.error(422, "Received invalid JSON input.", code=402)
            return self._batch(req, payload) if req.path == "/email/batch" else self._single(req, payload)
        if req.path == "/messages/outbound" and req.method == "GET":
            return self._search(req)
        if req.path == "/server" and req.method == "GET":
            return Response.json(200, {"ID": 1, "Name": "Le Journal", "ApiTokens": [self.server_token],
                                       "Color": "blue", "SmtpApiActivated": True, "RawEmailEnabled": False,
                                       "DeliveryType": "Live", "TrackOpens": False, "TrackLinks": "None"})
        return self.error(404, "Not found.", code=0)

    # -- sending ----------------------------------------------------------------
    def _single(self, req: Request, payload: Any) -> Response:
        if not isinstance(payload, dict):
            return self.error(422, "Incompatible JSON: expected an object.", code=403)
        item = self._accept(payload, 0, req.fault)
        return Response.json(200 if item["ErrorCode"] == 0 else 422, item)

    def _batch(self, req: Request, payload: Any) -> Response:
        if not isinstance(payload, list) or not all(isinstance(m, dict) for m in payload):
            return self.error(422, "Incompatible JSON: expected an array of messages.", code=403)
        if len(payload) > 500:
            return self.error(422, "Too many batch messages. You may only send up to 500 messages in a batch.",
                              code=410)
        return Response.json(200, [self._accept(message, i, req.fault) for i, message in enumerate(payload)])

    def _accept(self, message: dict[str, Any], index: int, fault: Any) -> dict[str, Any]:
        problem = self._validate(message)
        if problem:
            return {"ErrorCode": problem[0], "Message": problem[1]}
        fields = [message.get(k) or "" for k in ("To", "Cc", "Bcc")]
        to, cc, bcc = (bare_addresses(f) for f in fields)
        recipients = to + cc + bcc
        hit = fault is not None and (index in fault.indexes or any(a.lower() in fault.addresses for a in recipients))
        if hit and fault.error_code not in (None, 406):
            text = f"Invalid 'To' address: '{message['To']}'." if fault.error_code == 300 else "Injected failure."
            return {"ErrorCode": fault.error_code, "Message": text}
        failed = [a for a in recipients if a.lower() in self.inactive] or (recipients if hit else [])
        if failed:
            return {"ErrorCode": 406, "Message": INACTIVE.format(", ".join(failed))}
        message_id, submitted = str(uuid.uuid4()), now_iso()
        headers = {h["Name"]: h["Value"] for h in message.get("Headers") or []}
        stream = message.get("MessageStream") or "outbound"
        metadata = dict(message.get("Metadata") or {})
        self.messages.append({
            "MessageID": message_id, "MessageStream": stream, "Tag": message.get("Tag") or "",
            "To": [{"Email": a, "Name": None} for a in to], "Cc": [{"Email": a, "Name": None} for a in cc],
            "Bcc": [{"Email": a, "Name": None} for a in bcc], "Recipients": recipients, "ReceivedAt": submitted,
            "From": message["From"], "Subject": message.get("Subject") or "", "Attachments": [], "Status": "Sent",
            "TrackOpens": bool(message.get("TrackOpens")), "TrackLinks": message.get("TrackLinks") or "None",
            "Metadata": metadata, "Sandboxed": False,
            "HtmlBody": message.get("HtmlBody"), "TextBody": message.get("TextBody"), "Headers": headers})
        for address in recipients:
            self.deliver(Delivery(address, message_id, message.get("Subject") or "", message.get("HtmlBody"),
                                  message.get("TextBody"), headers,
                                  {"stream": stream, "tag": message.get("Tag"), "metadata": metadata,
                                   "TrackOpens": message.get("TrackOpens"), "TrackLinks": message.get("TrackLinks")}))
        return {"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "SubmittedAt": submitted,
                "To": message["To"]}

    def _validate(self, message: dict[str, Any]) -> tuple[int, str] | None:
        if not bare_addresses(message.get("From") or ""):
            return 300, "Invalid 'From' address: 'missing'."
        recipients = [a for k in ("To", "Cc", "Bcc") for a in bare_addresses(message.get(k) or "")]
        if not recipients:
            return 300, "Zero recipients specified"
        if len(recipients) > 50:
            return 300, "Maximum of 50 recipients allowed per email message"
        bad = [a for a in recipients if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", a)]
        if bad:
            return 300, f"Invalid 'To' address: '{bad[0]}'."
        if not (message.get("HtmlBody") or message.get("TextBody")):
            return 300, "Provide either email TextBody or HtmlBody or both."
        if (message.get("MessageStream") or "outbound") not in self.streams:
            return 1235, f"The message stream '{message['MessageStream']}' was not found on this server."
        headers = message.get("Headers") or []
        if not isinstance(headers, list) or not all(isinstance(h, dict) and set(h) == {"Name", "Value"}
                                                    for h in headers):
            return 300, "Headers must be a list of {\"Name\": ..., \"Value\": ...} objects."
        if not isinstance(message.get("Metadata") or {}, dict):
            return 300, "Metadata must be an object."
        if "TrackOpens" in message and not isinstance(message["TrackOpens"], bool):
            return 300, "TrackOpens must be true or false."
        if message.get("TrackLinks", "None") not in ("None", "HtmlAndText", "HtmlOnly", "TextOnly"):
            return 300, "TrackLinks must be one of None, HtmlAndText, HtmlOnly, TextOnly."
        return None

    # -- search -----------------------------------------------------------------
    def _search(self, req: Request) -> Response:
        try:
            count, offset = int(req.q("count", "")), int(req.q("offset", ""))
        except ValueError:
            return self.error(422, "The 'count' and 'offset' parameters are required.", code=300)
        if not (0 < count <= 500 and offset >= 0 and count + offset <= 10_000):
            return self.error(422, "Count must be 1-500 and count + offset at most 10,000.", code=300)
        stream = req.q("messagestream", self.search_default_stream)
        meta = [(k[len("metadata_"):], v[0]) for k, v in req.query.items() if k.startswith("metadata_")]
        wanted = {"recipient": req.q("recipient"), "tag": req.q("tag"), "subject": req.q("subject"),
                  "fromemail": req.q("fromemail")}

        def keep(m: dict[str, Any]) -> bool:
            if stream and m["MessageStream"] != stream:
                return False
            if wanted["recipient"] and wanted["recipient"].lower() not in (r.lower() for r in m["Recipients"]):
                return False
            if wanted["tag"] and m["Tag"] != wanted["tag"]:
                return False
            if wanted["subject"] and m["Subject"] != wanted["subject"]:
                return False
            if wanted["fromemail"] and wanted["fromemail"].lower() not in m["From"].lower():
                return False
            return all(str(m["Metadata"].get(k)) == v for k, v in meta)

        found = [m for m in reversed(self.messages) if keep(m)]
        listed = [{k: v for k, v in m.items() if k not in ("HtmlBody", "TextBody", "Headers")}
                  for m in found[offset:offset + count]]
        return Response.json(200, {"TotalCount": len(found), "Messages": listed})
