"""Privacy by default: no provider tracks opens or clicks unless the editor turns it on.

The fakes see the request fields as the provider's API would (Mailgun's ``o:tracking*``
options, Postmark's ``TrackOpens``/``TrackLinks``) and work out what the real service
would do with them: a Mailgun request that says nothing inherits the domain's tracking.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from fakes import FakeMailgun, FakePostmark, FakeResend
from newsletter.errors import ConfigError
from newsletter.providers.mailgun import MailgunProvider
from newsletter.providers.postmark import PostmarkProvider
from newsletter.providers.resend import ResendProvider
from newsletter.testing.contract import chunk, recipients


def confirmation() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "news@example.org"
    message["To"] = "new@example.org"
    message["Subject"] = "Confirmez"
    message["Message-ID"] = "<c@example.org>"
    message.set_content("https://example.org/confirm/t")
    return message


def mailgun(fake, config, **settings):
    environ = {"NEWSLETTER_MAILGUN_API_KEY": fake.api_key}
    return MailgunProvider.from_config({"domain": fake.domain, "base_url": fake.url, **settings}, config=config,
                                       environ=environ)  # fmt: skip


def postmark(fake, config, **settings):
    environ = {"NEWSLETTER_POSTMARK_SERVER_TOKEN": fake.server_token}
    return PostmarkProvider.from_config({"base_url": fake.url, **settings}, config=config, environ=environ)


def test_mailgun_asks_for_no_tracking_in_issues_and_confirmations(config):
    with FakeMailgun() as fake:
        assert fake.domain_tracking  # the domain would track if the request did not say otherwise
        provider = mailgun(fake, config)
        provider.send_chunk(chunk(recipients(2)))
        provider.send_message(confirmation(), key="confirm-1")
        provider.close()
    assert len(fake.messages) == 2
    for message in fake.messages:
        fields = dict(message["fields"])
        assert (fields["o:tracking"], fields["o:tracking-clicks"], fields["o:tracking-opens"]) == ("no", "no", "no")
        assert message["tracking"] == {"opens": False, "clicks": False}


def test_mailgun_tracking_can_be_turned_on_per_provider(config):
    with FakeMailgun() as fake:
        fake.domain_tracking = False
        provider = mailgun(fake, config, tracking=True)
        provider.send_chunk(chunk(recipients(1)))
        provider.close()
    (message,) = fake.messages
    assert dict(message["fields"])["o:tracking"] == "yes"
    assert message["tracking"] == {"opens": True, "clicks": True}


def test_postmark_asks_for_no_tracking_in_issues_and_confirmations(config):
    with FakePostmark() as fake:
        provider = postmark(fake, config)
        provider.send_chunk(chunk(recipients(2)))
        provider.send_message(confirmation(), key="confirm-1")
        provider.close()
    assert len(fake.messages) == 3
    assert {(m["TrackOpens"], m["TrackLinks"]) for m in fake.messages} == {(False, "None")}
    assert {(d.meta["TrackOpens"], d.meta["TrackLinks"]) for d in fake.delivered} == {(False, "None")}


def test_postmark_tracking_can_be_turned_on_per_provider(config):
    with FakePostmark() as fake:
        provider = postmark(fake, config, tracking=True)
        provider.send_chunk(chunk(recipients(1)))
        provider.close()
    assert [(m["TrackOpens"], m["TrackLinks"]) for m in fake.messages] == [(True, "HtmlAndText")]


def test_resend_requests_carry_no_tracking_option(config):
    """Resend tracks per domain, not per request: nothing we send may ask for it."""
    with FakeResend() as fake:
        provider = ResendProvider.from_config({"base_url": fake.url}, config=config,
                                              environ={"NEWSLETTER_RESEND_API_KEY": fake.api_key})  # fmt: skip
        provider.send_chunk(chunk(recipients(2)))
        provider.close()
    body = b"".join(r.body for r in fake.requests).lower()
    assert fake.requests and b"track" not in body


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_a_tracking_setting_that_is_not_a_boolean_is_a_one_line_config_error(config, value):
    with FakeMailgun() as fake:
        with pytest.raises(ConfigError) as caught:
            mailgun(fake, config, tracking=value)
    assert "providers.mailgun.tracking" in caught.value.one_line() and "\n" not in caught.value.one_line()
