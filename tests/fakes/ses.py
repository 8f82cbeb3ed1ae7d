"""A fault-injecting front for moto's SES v2 server.

moto (``ThreadedMotoServer``) is the local SES: it checks identities and recipients and
keeps every raw message sent.  It cannot fail on purpose, so this fake sits in front
of it: requests pass through to moto unless a :class:`~fakes.base.Fault` is queued,
and faults answer as SES documents its errors (JSON ``{"message"}`` with the code in
``x-amzn-ErrorType``).  ``delivered`` is read back from moto's ``/moto-api/data.json``.

moto takes any credentials; ``FakeSes(moto_url, access_key_id="AKID…")`` refuses a request signed
with another key id as SES does (403 ``UnrecognizedClientException``, "The security token included
in the request is invalid."), so a wrong key can be shown to fail.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from typing import Any

import requests

from .base import DEFAULT, Delivery, FakeServer, Request, Response

ERRORS = {
    400: ("BadRequestException", "Bad request."),
    401: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    403: ("AccessDeniedException", "User is not authorized to perform ses:SendEmail."),
    429: ("TooManyRequestsException", "Maximum sending rate exceeded."),
    500: ("InternalFailure", "An internal error occurred."),
    503: ("ServiceUnavailable", "Service unavailable."),
}


class FakeSes(FakeServer):
    """``FakeSes(moto_url)``: SES v2 as moto serves it, with fault injection in front."""

    name = "ses"

    def __init__(self, moto_url: str, *, access_key_id: str | None = None) -> None:
        super().__init__()
        self.moto_url = moto_url.rstrip("/")
        self.access_key_id = access_key_id
        self.session = requests.Session()

    def handle(self, req: Request) -> Response:
        if self.access_key_id is not None:
            signed = re.search(r"Credential=([^/,\s]+)/", req.headers.get("Authorization") or "")
            if not signed or signed.group(1) != self.access_key_id:
                return self.error(403, ERRORS[401][1], code="UnrecognizedClientException")
        query = "&".join(f"{k}={v}" for k, values in req.query.items() for v in values)
        headers = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length")}
        answer = self.session.request(req.method, self.moto_url + req.path + (f"?{query}" if query else ""),
                                      data=req.body, headers=headers, timeout=30)  # fmt: skip
        passed = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "x-amzn-errortype",
                                                                          "x-amzn-requestid")}  # fmt: skip
        return Response(answer.status_code, answer.content, passed)

    def error(self, status: int, message: str | None = None, *, retry_after: Any = DEFAULT,
              code: str | None = None) -> Response:  # fmt: skip
        default_code, default_message = ERRORS.get(status, ("InternalFailure", "Error."))
        code = code or default_code
        return Response.json(status, {"message": message or default_message},
                             {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"})

    def sent(self) -> list[dict[str, Any]]:
        """The raw messages moto kept, oldest first."""
        data = self.session.get(f"{self.moto_url}/moto-api/data.json", timeout=30).json()
        return list(data.get("ses", {}).get("RawMessage", []))

    @property
    def delivered(self) -> list[Delivery]:  # type: ignore[override]
        found = []
        for raw in self.sent():
            message = email.message_from_string(raw["raw_data"], policy=email.policy.default)
            text, html = message.get_body(("plain",)), message.get_body(("html",))
            for address in dict.fromkeys(raw["destinations"]):  # moto lists the To address twice
                found.append(Delivery(
                    address, raw["id"], str(message["Subject"]), html.get_content() if html else None,
                    text.get_content() if text else None, {k: str(v) for k, v in message.items()},
                    {"source": raw["source"]},
                ))  # fmt: skip
        return found

    @delivered.setter
    def delivered(self, value: list[Delivery]) -> None:
        """The base class starts with an empty list; moto is the record here."""

    def dump(self) -> str:
        return json.dumps(self.sent(), indent=2)
