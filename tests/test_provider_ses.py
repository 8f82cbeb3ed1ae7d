"""Amazon SES v2 against a local SES server (moto), with a fault-injecting front (tests/fakes/ses.py).

Requests are signed by botocore and sent over real HTTP; what SES "sent" is read back from
moto's ``/moto-api/data.json`` as raw MIME and parsed the way a mail client would.
"""

from __future__ import annotations

import email
import email.policy

import boto3
import botocore.exceptions
import pytest
from moto.server import ThreadedMotoServer

from fakes.base import Fault
from fakes.ses import FakeSes
from newsletter.errors import ConfigError, ProviderAuthError, ProviderRateLimited, ProviderRejected, ProviderTransient
from newsletter.providers.ses import SesProvider, error_for
from newsletter.testing import BatchProviderContract
from newsletter.testing.contract import chunk, recipients
from test_provider_contract import FakeServerHarness

REGION = "eu-west-1"
KEY_ID, KEY = "AKIDNEWSLETTERTEST", "ses-secret-key-0123456789"
ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": KEY}


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def ses(moto_url):
    """A fresh SES account whose domain example.org is a verified identity, behind the fault front."""
    import requests

    requests.post(f"{moto_url}/moto-api/reset", timeout=30).raise_for_status()
    admin = boto3.session.Session().client("sesv2", region_name=REGION, endpoint_url=moto_url,
                                           aws_access_key_id=KEY_ID, aws_secret_access_key=KEY)  # fmt: skip
    admin.create_email_identity(EmailIdentity="example.org")
    admin.close()
    with FakeSes(moto_url, access_key_id=KEY_ID) as fake:
        yield fake


def settings_for(fake: FakeSes) -> dict:
    return {"region": REGION, "base_url": fake.url, "from_address": "news@example.org"}


class SesHarness(FakeServerHarness):
    """The secret checked is the secret access key; the key id variable is checked first, so it is the one named.

    No "drop": a connection closed before the answer looks the same to the client whether or not SES
    acted, and with neither lookup nor idempotency the engine rightly stops (checked by accept_then_drop).
    """

    faults = ("rate_limited", "unavailable", "auth", "accept_then_drop")

    def provider(self):
        return SesProvider.from_config(self.settings, config=self.config, environ=ENV)

    def with_wrong_secret(self):
        """A key id the account does not have (the fake front checks the id; moto takes any key)."""
        wrong = {**ENV, "AWS_ACCESS_KEY_ID": "AKIDNOTTHEACCOUNTS"}
        return lambda: SesProvider.from_config(self.settings, config=self.config, environ=wrong)


class TestSesContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, ses, config):
        return SesHarness(ses, SesProvider, settings_for(ses), "AWS_ACCESS_KEY_ID", KEY, config)


def test_raw_mime_keeps_our_headers_as_written(ses, config):
    provider = SesProvider.from_config(settings_for(ses), config=config, environ=ENV)
    people = recipients(1)
    provider.send_chunk(chunk(people))
    provider.close()
    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=email.policy.default)
    issue = chunk(people).issue
    assert message["Message-ID"] == issue.message_id(people[0])
    assert message["List-Unsubscribe"] == f"<{people[0].unsubscribe_url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "journal.example.org" in message["List-Id"]
    assert raw["source"] == "news@example.org"
    # The request is SigV4-signed by botocore for the SES service in the configured region.
    authorization = ses.requests[-1].headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 ") and f"/{REGION}/ses/aws4_request" in authorization


def test_an_unverified_sender_is_refused_by_ses_and_stops_with_a_hint(ses, config):
    settings = {**settings_for(ses), "from_address": "news@not-verified.example"}
    provider = SesProvider.from_config(settings, config=config, environ=ENV)
    with pytest.raises(ProviderRejected) as caught:
        provider.send_chunk(chunk(recipients(1)))
    provider.close()
    assert "MessageRejected" in caught.value.message and "verified SES identity" in caught.value.hint
    assert not caught.value.retryable and ses.sent() == []


@pytest.mark.parametrize(
    "status, code, message, error_class, retryable",
    [
        (429, "TooManyRequestsException", "Maximum sending rate exceeded.", ProviderRateLimited, True),
        (400, "LimitExceededException", "Too many requests.", ProviderRejected, False),
        (429, "TooManyRequestsException", "Daily message quota exceeded.", ProviderRejected, False),
        (400, "AccountSuspendedException", "Account suspended.", ProviderRejected, False),
        (400, "SendingPausedException", "Sending paused.", ProviderRejected, False),
        (403, "AccessDeniedException", "Not authorized.", ProviderAuthError, False),
        (500, "InternalFailure", "Internal.", ProviderTransient, True),
        (503, "ServiceUnavailable", "Unavailable.", ProviderTransient, True),
    ],
)
def test_documented_throttling_quota_and_account_errors_map_to_typed_errors(
    ses, config, status, code, message, error_class, retryable
):
    provider = SesProvider.from_config(settings_for(ses), config=config, environ=ENV)
    ses.inject(Fault.http(status, body={"message": message},
                          headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"}))  # fmt: skip
    with pytest.raises(error_class) as caught:
        provider.send_chunk(chunk(recipients(1)))
    provider.close()
    error = caught.value
    assert type(error) is error_class and error.retryable is retryable and not error.maybe_delivered
    assert code in error.message and "\n" not in error.one_line()
    if "quota" in message or code == "LimitExceededException":
        assert "quota" in error.hint
    assert ses.sent() == []


def test_error_mapping_reads_botocores_parsed_answer():
    answer = {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."},
              "ResponseMetadata": {"HTTPStatusCode": 400}}  # fmt: skip
    assert isinstance(error_for(botocore.exceptions.ClientError(answer, "SendEmail")), ProviderRateLimited)


def test_an_unknown_region_or_missing_key_is_a_one_line_config_error(ses, config):
    with pytest.raises(ConfigError) as caught:
        SesProvider.from_config({**settings_for(ses), "region": "moon"}, config=config, environ=ENV)
    assert "region" in caught.value.one_line()
    with pytest.raises(ConfigError) as caught:
        SesProvider.from_config(settings_for(ses), config=config, environ={"AWS_ACCESS_KEY_ID": KEY_ID})
    assert "AWS_SECRET_ACCESS_KEY" in caught.value.one_line()
    with pytest.raises(ConfigError):
        SesProvider.from_config({**settings_for(ses), "base_url": "http://ses.example.org"}, config=config, environ=ENV)


def test_an_issue_is_sent_through_ses_by_the_cli_to_each_subscriber_once(ses, run, project, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    toml = project / "newsletter.toml"
    text = toml.read_text(encoding="utf-8").replace('provider = "outbox"', 'provider = "ses"')
    toml.write_text(text + f'\n[providers.ses]\nregion = "{REGION}"\nbase_url = "{ses.url}"\n'
                    'from_address = "news@example.org"\n', encoding="utf-8")  # fmt: skip
    people = project / "people.csv"
    people.write_text("email\nann@example.org\nbob@example.org\ncy@example.org\n", encoding="utf-8")
    assert run("subscribers", "import", str(people)).exit_code == 0
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert sorted(d.address for d in ses.delivered) == ["ann@example.org", "bob@example.org", "cy@example.org"]
    assert run("send", "--yes").exit_code != 0
    assert len(ses.sent()) == 3


def test_check_access_finds_the_sender_identity_by_its_domain_and_sends_nothing(ses, config):
    """GetEmailIdentity for news@example.org (not an identity), then example.org (verified): ok."""
    provider = SesProvider.from_config(settings_for(ses), config=config, environ=ENV)
    provider.check_access()
    provider.close()
    assert [(r.method, r.path) for r in ses.requests] == [
        ("GET", "/v2/email/identities/news%40example.org"), ("GET", "/v2/email/identities/example.org")]
    assert ses.sent() == []


def test_check_access_of_a_sender_without_an_identity_says_what_to_verify(ses, config):
    settings = {**settings_for(ses), "from_address": "news@not-verified.example"}
    provider = SesProvider.from_config(settings, config=config, environ=ENV)
    with pytest.raises(ProviderRejected) as caught:
        provider.check_access()
    provider.close()
    assert "news@not-verified.example" in caught.value.message and REGION in caught.value.message
    assert "verify the domain" in caught.value.hint and ses.sent() == []
