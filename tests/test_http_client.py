"""The requests adapter's own encoding: multipart/form-data written as requests writes it."""

from __future__ import annotations

import email
import email.policy

import requests

from newsletter.providers.http import form_data


def test_text_fields_are_encoded_byte_for_byte_as_requests_encodes_them():
    fields = [
        ("from", (None, "Lettre <lettre@example.org>")),
        ("to", (None, "alice@example.org")),
        ("to", (None, "zoé@exemple.fr")),
        ("subject", (None, "Numéro 1 : « été »\r\nligne")),
        ('h:X-"odd"\nname', (None, "")),
        ("recipient-variables", (None, '{"alice@example.org": {"unsubscribe_url": "https://x/u/abc"}}')),
    ]
    theirs, their_type = requests.models.RequestEncodingMixin._encode_files(fields, {})
    boundary = their_type.split("boundary=", 1)[1]
    ours, our_type = form_data(fields, boundary=boundary)
    assert (ours, our_type) == (theirs, their_type)
    # And a MIME parser reads the same fields back.
    head = b"Content-Type: " + our_type.encode() + b"\r\n\r\n"
    parsed = email.message_from_bytes(head + ours, policy=email.policy.default)
    assert [part.get_payload(decode=True).decode() for part in parsed.iter_parts()] == [v for _, (_, v) in fields]


def test_random_boundaries_and_anything_but_text_is_left_to_requests():
    fields = [("to", (None, "alice@example.org"))]
    first, second = form_data(fields), form_data(fields)
    assert first is not None and second is not None and first[1] != second[1]
    assert len(first[1].split("boundary=", 1)[1]) == 32  # 128 random bits, as urllib3 draws them
    assert form_data([("file", ("name.txt", "text"))]) is None
    assert form_data([("file", (None, b"bytes"))]) is None
    assert form_data({"to": "alice@example.org"}) is None
