"""One issue's MIME bytes for many recipients, by substitution into a message serialised once.

Building an ``EmailMessage`` per recipient spends most of its time in the header registry and
the quoted-printable encoder, yet all recipients' messages are the same but for ``To``,
``Message-ID``, the multipart boundary (both carry the subscriber id), ``List-Unsubscribe`` and
the body lines holding the unsubscribe URL.  :class:`PersonalMessages` serialises the message
once for a stand-in recipient through the very same code (:meth:`Issue.message_for`), cuts it
at those places, and per recipient fills them in:

- quoted-printable encodes each line on its own (soft breaks never cross a line end), so only
  the lines that hold the URL are encoded again, by the standard library's own encoder;
- ``List-Unsubscribe`` and ``Message-ID`` are raw headers we fold ourselves (``folded``);
- ``To`` goes through the policy's own header factory and folding, except a plain ASCII
  address on a short line, which that code writes unchanged;
- how the ``Content-Type`` boundary parameter folds depends on the boundary's length only, so
  there is one cut message per number of digits of the subscriber id.

Each cut message is checked when made: filled in for its stand-in it must give back the stand-in's
bytes exactly, else this recipient count falls back to building every message from scratch.
tests/test_personal_mime.py compares both paths byte for byte over many recipients.
"""

from __future__ import annotations

import html as html_escaping
import re
from collections.abc import Callable
from datetime import datetime
from email import quoprimime

from .render import _POLICY, Issue, Recipient, _address, folded
from .textutil import check_header_value

_STAND_IN_ADDRESS = "stand-in@example.invalid"
_STAND_IN_URL = "https://example.invalid/unsubscribe/stand-in"
# Written by the header registry as "To: <address>" unchanged when the line stays short.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_SHORT_TO = 78 - len("To: ")

# A cut message is a list of pieces: bytes, or one of these slot names filled per recipient.
_TO, _MESSAGE_ID, _LIST_UNSUBSCRIBE, _SUBSCRIBER_ID, _TEXT, _HTML = "to", "mid", "lu", "id", "text", "html"


class _Body:
    """One text part's quoted-printable payload, split into lines encoded once and lines with the URL."""

    def __init__(self, template: str, placeholder: str, escape: Callable[[str], str]) -> None:
        self.placeholder = placeholder
        self.escape = escape
        lines = [line.decode("latin-1") for line in template.encode("utf-8").splitlines()]
        # Runs of static lines are joined once; a line holding the placeholder stays a str to fill.
        self.pieces: list[tuple[bool, str]] = []
        static: list[str] = []
        for line in lines:
            if placeholder in line:
                if static:
                    self.pieces.append((False, "\r\n".join(_encode_line(s) for s in static) + "\r\n"))
                    static = []
                self.pieces.append((True, line))
            else:
                static.append(line)
        self.pieces.append((False, "\r\n".join(_encode_line(s) for s in static) + "\r\n" if static else ""))

    def encoded(self, url: str) -> bytes:
        value = self.escape(url).encode("utf-8").decode("latin-1")
        out = [
            _encode_line(piece.replace(self.placeholder, value)) + "\r\n" if personal else piece
            for personal, piece in self.pieces
        ]
        return "".join(out).encode("ascii")


def _encode_line(line: str) -> str:
    # As email.contentmanager encodes, with the transport line ends the generator writes.
    return quoprimime.body_encode(line, _POLICY.max_line_length or 78, eol="\r\n")


class PersonalMessages:
    """``bytes_for(recipient)``: the bytes of ``issue.message_for(recipient, date=date).as_bytes()``."""

    def __init__(self, issue: Issue, date: datetime) -> None:
        self.issue = issue
        self.date = date
        self._text = _Body(issue.text, issue.placeholder, lambda url: url)
        self._html = _Body(issue.html, issue.placeholder, html_escaping.escape)
        self._cut: dict[int, list[bytes | str] | None] = {}

    def bytes_for(self, recipient: Recipient) -> bytes:
        check_header_value(recipient.email, field="recipient address")
        check_header_value(recipient.unsubscribe_url, field="unsubscribe URL")
        digits = len(str(recipient.subscriber_id))
        if digits not in self._cut:
            self._cut[digits] = self._make_cut(digits)
        cut = self._cut[digits]
        # A non-ASCII address gets the SMTPUTF8 policy for the whole message: built from scratch.
        if cut is None or recipient.subscriber_id < 0 or not recipient.email.isascii():
            return self.issue.message_for(recipient, date=self.date).as_bytes()
        return self._fill(cut, recipient)

    def _fill(self, cut: list[bytes | str], recipient: Recipient) -> bytes:
        slots = {
            _TO: _to_header(recipient.email),
            _MESSAGE_ID: _raw_header("Message-ID", folded("Message-ID", [self.issue.message_id(recipient)])),
            _LIST_UNSUBSCRIBE: _raw_header(
                "List-Unsubscribe", folded("List-Unsubscribe", self.issue.list_unsubscribe_items(recipient))
            ),
            _SUBSCRIBER_ID: str(recipient.subscriber_id).encode("ascii"),
            _TEXT: self._text.encoded(recipient.unsubscribe_url),
            _HTML: self._html.encoded(recipient.unsubscribe_url),
        }
        return b"".join(slots[piece] if isinstance(piece, str) else piece for piece in cut)

    def _make_cut(self, digits: int) -> list[bytes | str] | None:
        """The stand-in's message cut at every personal place, or ``None`` if it cannot be cut exactly."""
        stand_in = Recipient(int("9" * digits), _STAND_IN_ADDRESS, _STAND_IN_URL)
        message = self.issue.message_for(stand_in, date=self.date)
        whole = message.as_bytes()
        head_end = whole.find(b"\r\n\r\n") + 2
        if head_end < 2:
            return None
        pieces: list[bytes | str] = []
        for field in re.split(rb"\r\n(?=[^ \t])", whole[: head_end - 2]):
            name = field.split(b":", 1)[0].lower()
            slot = {b"to": _TO, b"message-id": _MESSAGE_ID, b"list-unsubscribe": _LIST_UNSUBSCRIBE}.get(name)
            pieces.append(slot if slot else field + b"\r\n")
        body = whole[head_end:]
        for part, slot in zip(message.iter_parts(), (_TEXT, _HTML), strict=True):
            payload = str(part.get_payload()).replace("\n", "\r\n").encode("ascii")
            if body.count(payload) != 1:
                return None
            before, body = body.split(payload)
            pieces += [before, slot]
        pieces.append(body)
        boundary_id = f"=={self.issue.key}.{stand_in.subscriber_id}==".encode("ascii")
        cut: list[bytes | str] = []
        for piece in pieces:
            if isinstance(piece, str):
                cut.append(piece)
                continue
            for index, segment in enumerate(piece.split(boundary_id)):
                if index:
                    cut += [f"=={self.issue.key}.".encode("ascii"), _SUBSCRIBER_ID, b"=="]
                cut.append(segment)
        cut = [piece for piece in cut if piece != b""]
        if self._fill(cut, stand_in) != whole:
            return None
        return cut


def _raw_header(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode("ascii")


def _to_header(email: str) -> bytes:
    if len(email) <= _SHORT_TO and _PLAIN_ADDRESS.match(email):
        return b"To: " + email.encode("ascii") + b"\r\n"
    name, value = _POLICY.header_store_parse("To", _address(email))
    return _POLICY.fold_binary(name, value)
