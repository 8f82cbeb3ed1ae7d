"""The requests adapter shared by the HTTP providers (the only importer of requests).

It sets a timeout on every request, maps transport failures and HTTP statuses
to the typed provider errors, reads ``Retry-After`` and rate-limit headers, and
never puts a credential in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from .. import __version__
from ..config import Secret
from ..errors import (
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTransient,
)

USER_AGENT = f"newsletter/{__version__} (+https://github.com/newsletter)"
RETRY_LATER = "a temporary failure: run 'newsletter send' again to resume (nothing is sent twice)"
log = logging.getLogger("newsletter.http")

# Requests one HTTP provider takes at once from a send (Capabilities.concurrency): at 50 ms
# per call, four in flight make a 100-chunk send 4x shorter, well inside every provider's limits.
HTTP_CONCURRENCY = 4


class HttpClient:
    """One provider's API: base URL, credentials (as :class:`Secret`), timeouts, pacing."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret_headers: Callable[[], Mapping[str, str]] | None = None,
        basic_auth: tuple[str, Secret] | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        sleep: Callable[[float], None] = time.sleep,
        transient_errors: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **(headers or {})})
        self._secret_headers = secret_headers or (lambda: {})
        self._basic_auth = basic_auth
        self.timeout = timeout
        self.sleep = sleep
        self._not_before = 0.0  # monotonic time before which the provider asked us to wait
        # Calls a send has in flight at once (several workers share this client): until a first
        # answer says whether the provider counts calls (RateLimit-Remaining), one at a time;
        # then at most what it said remains, or no limit of ours when it says nothing.
        self._budget: int | None = 1
        self._in_flight = 0
        self._calls = threading.Condition()
        self.transient_errors = transient_errors  # provider error names that mean "try again"

    def __repr__(self) -> str:
        return f"HttpClient({self.provider}, {self.base_url})"

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        expect_json: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one request; return the decoded JSON (or text), or raise a typed provider error."""
        self._start_call()
        answered: requests.Response | None = None
        try:
            answered = self._call(method, path, headers, kwargs)
        finally:
            self._end_call(answered)
        return self._read(answered, f"{self.provider} {method} {path}", expect_json)

    def _call(self, method: str, path: str, headers: Mapping[str, str] | None, kwargs: dict) -> requests.Response:
        auth = None
        if self._basic_auth:
            user, password = self._basic_auth
            auth = (user, password.reveal())
        where = f"{self.provider} {method} {path}"
        sent_headers = {**self._secret_headers(), **(headers or {})}
        encoded = form_data(kwargs["files"]) if "files" in kwargs else None
        if encoded is not None:
            kwargs = {**kwargs, "data": encoded[0]}
            del kwargs["files"]
            sent_headers["Content-Type"] = encoded[1]
        try:
            response = self.session.request(
                method, self.base_url + path, headers=sent_headers, auth=auth, timeout=self.timeout, **kwargs
            )
        except requests.exceptions.ConnectTimeout:
            raise ProviderTransient("connection timed out", where=where, hint=RETRY_LATER) from None
        except requests.exceptions.ReadTimeout:
            # The request went out; the provider may have acted on it.
            raise ProviderTransient(
                "no answer before the timeout", where=where, maybe_delivered=True, hint=RETRY_LATER
            ) from None
        except requests.exceptions.ConnectionError as error:
            sent = not _never_connected(error)
            raise ProviderTransient(
                "connection lost before an answer" if sent else "cannot connect", where=where, maybe_delivered=sent,
                hint=RETRY_LATER,
            ) from None  # fmt: skip
        except requests.exceptions.RequestException as error:
            raise ProviderTransient(f"request failed ({type(error).__name__})", where=where, hint=RETRY_LATER) from None
        return response

    def _read(self, response: requests.Response, where: str, expect_json: bool) -> Any:
        log.debug("%s -> %s", where, response.status_code)
        if response.status_code >= 400:
            raise self.error_for(response, where)
        if not expect_json:
            return response.text
        try:
            return response.json()
        except ValueError:
            # A 2xx we cannot read: the provider may well have acted on it.
            raise ProviderError(
                f"answered {response.status_code} with a body that is not JSON ({_snippet(response)})",
                where=where,
                hint="check the provider's status page; nothing is re-sent automatically",
                maybe_delivered=True,
            ) from None

    def error_for(self, response: requests.Response, where: str) -> ProviderError:
        """The typed error for an HTTP error status; the message comes from the provider's body."""
        status = response.status_code
        detail = f"HTTP {status}: {_provider_message(response)}"
        if status == 429:
            return ProviderRateLimited(
                detail, where=where, retry_after=retry_after_seconds(response.headers), hint=RETRY_LATER
            )
        if status in (401, 403):
            return ProviderAuthError(detail, where=where, hint="check the API key variable and its permissions")
        if status >= 500 or status in (408, 425) or any(name in detail for name in self.transient_errors):
            return ProviderTransient(detail, where=where, hint=RETRY_LATER)
        return ProviderRejected(detail, where=where, hint="the provider refused the request as written")

    def _start_call(self) -> None:
        """Wait until a call may start: past any wait the provider asked for, within its budget."""
        with self._calls:
            while True:
                wait = self._not_before - time.monotonic()
                if wait <= 0 and self._budget is not None and self._budget <= 0 and self._not_before:
                    self._budget, self._not_before = 1, 0.0  # a new window: probe it with one call
                if wait <= 0 and (self._budget is None or self._budget > 0):
                    if self._budget is not None:
                        self._budget -= 1
                    self._in_flight += 1
                    return
                if wait > 0:
                    self._calls.release()
                    try:
                        self.sleep(wait)
                    finally:
                        self._calls.acquire()
                else:
                    self._calls.wait(0.05)  # another call's answer will tell what remains

    def _end_call(self, response: requests.Response | None) -> None:
        """Obey ``RateLimit-Remaining``/``RateLimit-Reset``, counting the calls still in flight."""
        with self._calls:
            self._in_flight -= 1
            limit = _rate_limit(response) if response is not None else None
            if limit is not None:
                remaining, wait = limit
                self._budget = remaining - self._in_flight
                if self._budget <= 0:
                    self._not_before = time.monotonic() + wait
            elif response is not None:
                self._budget = None  # the provider counts nothing we can see
            elif self._budget is not None:
                self._budget += 1  # no answer: the call's place is free again
            self._calls.notify_all()


def check_access(client: HttpClient, path: str, *, key_variable: str, where_to_get: str, **kwargs: Any) -> Any:
    """``newsletter doctor``'s one authenticated, read-only GET; a refused key names its variable."""
    try:
        return client.request("GET", path, **kwargs)
    except ProviderAuthError as error:
        raise ProviderAuthError(
            error.message, where=error.where,
            hint=f"{key_variable} holds a key {client.provider} does not accept: {where_to_get}",
        ) from None  # fmt: skip


def form_data(fields: Any, boundary: str | None = None) -> tuple[bytes, str] | None:
    """``(body, Content-Type)`` of text-only ``files=`` fields (``[(name, (None, text)), …]``), byte for
    byte what requests writes, or ``None`` when a field is anything else (left to requests).

    requests builds an object per field; a Mailgun call of 1,000 recipients has over 1,000
    fields, and that cost more than the rest of the send.  Names are quoted as urllib3 quotes
    them (``"``, CR and LF percent-encoded); the boundary is 128 random bits, as urllib3's.
    """
    if not isinstance(fields, (list, tuple)):
        return None
    boundary = boundary or binascii.hexlify(os.urandom(16)).decode("ascii")
    parts = []
    head = f"--{boundary}\r\nContent-Disposition: form-data; name="
    for field in fields:
        if not (isinstance(field, tuple) and len(field) == 2 and isinstance(field[1], tuple) and len(field[1]) == 2):
            return None
        name, (filename, value) = field
        if filename is not None or not isinstance(name, str) or not isinstance(value, str):
            return None
        parts.append(f'{head}"{name.translate(_QUOTED)}"\r\n\r\n{value}\r\n')
    parts.append(f"--{boundary}--\r\n")
    return "".join(parts).encode("utf-8"), f"multipart/form-data; boundary={boundary}"


_QUOTED = {10: "%0A", 13: "%0D", 34: "%22"}


def _rate_limit(response: requests.Response) -> tuple[int, float] | None:
    """``(calls remaining, seconds until the window resets)`` from the rate-limit headers, if any."""
    headers = response.headers
    remaining = headers.get("ratelimit-remaining") or headers.get("x-ratelimit-remaining")
    reset = headers.get("ratelimit-reset") or headers.get("x-ratelimit-reset")
    if remaining is None or reset is None:
        return None
    try:
        remaining_count, reset_value = int(float(remaining)), float(reset)
    except ValueError:
        return None
    # Some providers send seconds to wait, others a Unix time.
    wait = reset_value - time.time() if reset_value > 10**9 else reset_value
    return remaining_count, max(0.0, min(wait, 60.0))


def api_base_url(settings: Mapping[str, Any], provider: str, default: str) -> str:
    """``[providers.X] base_url``: https only (keys travel in headers), plain http only to this machine."""
    url = settings.get("base_url", default)
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts else None
    except ValueError:
        parts, host = None, None
    local = parts is not None and parts.scheme == "http" and host in ("127.0.0.1", "localhost", "::1")
    if parts is None or not host or not (parts.scheme == "https" or local):
        raise ConfigError(
            f"{url!r} is not an https URL", where=f"newsletter.toml: providers.{provider}.base_url",
            hint=f"the API key must not travel in clear; leave it out to use {default}",
        )  # fmt: skip
    return url


def timeout_setting(settings: Mapping[str, Any], provider: str) -> tuple[float, float]:
    """``(connect, read)`` timeouts: every request has one; ``timeout`` sets the read part."""
    value = settings.get("timeout", 30)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            "must be a number of seconds > 0", where=f"newsletter.toml: providers.{provider}.timeout",
            hint="e.g. timeout = 30",
        )  # fmt: skip
    return (min(5.0, float(value)), float(value))


def tracking_setting(settings: Mapping[str, Any], provider: str) -> bool:
    """``[providers.X] tracking``: the provider's own open and click tracking, off unless set to true."""
    value = settings.get("tracking", False)
    if not isinstance(value, bool):
        raise ConfigError(
            "must be true or false", where=f"newsletter.toml: providers.{provider}.tracking",
            hint="tracking = true lets the provider track opens and clicks; leave it out to keep it off",
        )  # fmt: skip
    return value


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date), ``None`` when absent."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_connected(error: requests.exceptions.ConnectionError) -> bool:
    """True when the failure happened before the request could reach the provider."""
    text = repr(error)
    return any(mark in text for mark in ("NewConnectionError", "ConnectionRefused", "NameResolutionError"))


def _provider_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _snippet(response)
    if isinstance(body, dict):
        for key in ("message", "Message", "detail", "error", "name", "code"):
            value = body.get(key)
            if isinstance(value, str) and value:
                code = body.get("ErrorCode") or body.get("code") or body.get("name")
                return f"{value} ({code})" if code and code != value else value
            if isinstance(value, list) and value:
                return json.dumps(value)[:200]
    return _snippet(response)


def _snippet(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    return (text[:120] + "…") if len(text) > 120 else (text or "an empty body")
