"""Amazon SES v2 (batch family): ``SendEmail`` with ``Content.Raw``, one message per call.

The message is our own MIME (``Issue.message_bytes``), so every header we set
(List-Unsubscribe, List-Unsubscribe-Post, List-Id, Message-ID) reaches the
reader as written.  One recipient per chunk, as for SMTP: SES has neither an
idempotency key nor a way to look a message up, so the ledger records every
single message before and after it is handed over, and an answer lost after
sending stops the send for that one message instead of re-sending it.

The only importer of boto3/botocore, which sign the requests (SigV4).  botocore's
own retries are off: retrying belongs to the send engine, which knows what is safe.
SES tracks opens and clicks only through a configuration set with tracking
options; none is named unless ``configuration_set`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from ..config import Config, Secret, secret
from ..errors import (
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTransient,
)
from ..textutil import is_email_address
from .base import BATCH, BatchProvider, Capabilities, ChunkRequest, DeliveryResult, ascii_recipients
from .http import RETRY_LATER, api_base_url, timeout_setting

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
QUOTA_WORDS = ("quota", "Daily message")  # "Daily message quota exceeded": the 24-hour limit, not the rate
AUTH = {
    "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "IncompleteSignature",
    "MissingAuthenticationToken",
}  # fmt: skip
ACCOUNT = {"AccountSuspendedException", "SendingPausedException", "MailFromDomainNotVerifiedException"}
TRANSIENT = {"InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException"}
QUOTA_HINT = "the account's SES sending quota is used up: run 'newsletter send' again later to resume"


class SesProvider(BatchProvider):
    """Amazon SES v2 ``SendEmail`` with raw MIME, signed by botocore."""

    name = "ses"
    capabilities = Capabilities(
        family=BATCH, max_batch=1, idempotency=False, lookup=False, custom_headers=True, unsubscribe="ours"
    )

    def __init__(self, client: Any, *, region: str, sender: str, configuration_set: str = "") -> None:
        self.client = client
        self.region = region
        self.sender = sender
        self.configuration_set = configuration_set
        self.key_variables = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

    def __repr__(self) -> str:
        return f"SesProvider({self.region}, key=****)"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> SesProvider:
        where = "newsletter.toml: providers.ses"
        region = settings.get("region")
        if not isinstance(region, str) or not REGION.match(region):
            raise ConfigError("region is missing or not an AWS region", where=f"{where}.region",
                              hint='e.g. region = "eu-west-1"')  # fmt: skip
        key_variables = (
            settings.get("access_key_id_env", "AWS_ACCESS_KEY_ID"),
            settings.get("secret_access_key_env", "AWS_SECRET_ACCESS_KEY"),
        )
        key_id, key = secret(key_variables[0], environ), secret(key_variables[1], environ)
        token_variable = settings.get("session_token_env", "AWS_SESSION_TOKEN")
        token: Secret | None = secret(token_variable, environ) if environ.get(token_variable) else None
        sender = settings.get("from_address", config.email.from_address)
        if not isinstance(sender, str) or not is_email_address(sender):
            raise ConfigError("from_address is not an email address", where=f"{where}.from_address",
                              hint="the address of a verified SES identity")  # fmt: skip
        configuration_set = settings.get("configuration_set", "")
        if not isinstance(configuration_set, str):
            raise ConfigError("must be text", where=f"{where}.configuration_set", hint='configuration_set = "news"')
        connect, read = timeout_setting(settings, "ses")
        endpoint = None
        if "base_url" in settings:
            endpoint = api_base_url(settings, "ses", f"https://email.{region}.amazonaws.com")
        client = boto3.session.Session().client(
            "sesv2", region_name=region, endpoint_url=endpoint, aws_access_key_id=key_id.reveal(),
            aws_secret_access_key=key.reveal(), aws_session_token=token.reveal() if token else None,
            config=botocore.config.Config(
                connect_timeout=connect, read_timeout=read, retries={"total_max_attempts": 1},
                user_agent_extra="newsletter",
            ),
        )  # fmt: skip
        provider = cls(client, region=region, sender=sender, configuration_set=configuration_set)
        provider.key_variables = key_variables
        return provider

    def check_access(self) -> None:
        """``GetEmailIdentity`` for the sender's address, then its domain (SES API v2), read-only:
        the keys are taken and the sender is an identity of this account in this region."""
        for identity in (self.sender, self.sender.rpartition("@")[2]):
            try:
                self.client.get_email_identity(EmailIdentity=identity)
                return
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") == "NotFoundException":
                    continue
                found = error_for(error, where="ses GetEmailIdentity")
                if isinstance(found, ProviderAuthError):
                    variables = " and ".join(self.key_variables)
                    found.hint = f"{variables} hold keys SES does not accept (AWS: IAM access keys)"
                raise found from None
            except botocore.exceptions.BotoCoreError as error:
                raise ProviderTransient(
                    f"cannot reach SES ({type(error).__name__})", where="ses GetEmailIdentity", hint=RETRY_LATER
                ) from None
        raise ProviderRejected(
            f"neither {self.sender} nor its domain is an SES identity in {self.region}", where="ses GetEmailIdentity",
            hint="verify the domain (or the address) in the SES console for this region",
        )  # fmt: skip

    def _send_raw(self, data: bytes, to: str, tags: list[dict[str, str]]) -> str:
        arguments: dict[str, Any] = {
            "FromEmailAddress": self.sender, "Destination": {"ToAddresses": [to]}, "Content": {"Raw": {"Data": data}},
        }  # fmt: skip
        if tags:
            arguments["EmailTags"] = tags
        if self.configuration_set:
            arguments["ConfigurationSetName"] = self.configuration_set
        try:
            answer = self.client.send_email(**arguments)
        except botocore.exceptions.ClientError as error:
            raise error_for(error) from None
        except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError):
            # The request went out; SES may have accepted the message.
            raise ProviderTransient("no answer from SES", where="ses SendEmail", maybe_delivered=True,
                                    hint=RETRY_LATER) from None  # fmt: skip
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
            raise ProviderTransient("cannot connect to SES", where="ses SendEmail", hint=RETRY_LATER) from None
        except botocore.exceptions.BotoCoreError as error:
            raise ProviderTransient(f"request failed ({type(error).__name__})", where="ses SendEmail",
                                    maybe_delivered=True, hint=RETRY_LATER) from None  # fmt: skip
        return str(answer.get("MessageId", ""))

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        request, refused = ascii_recipients(request, self.name)
        return refused + (self._send_ascii_chunk(request) if request.recipients else [])

    def _send_ascii_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        tag = re.sub(r"[^A-Za-z0-9_-]", "_", request.issue.key)[:256]
        results = []
        for recipient in request.recipients:
            data = request.issue.message_bytes(recipient, date=request.date)
            self._send_raw(data, recipient.email, [{"Name": "issue", "Value": tag}])
            results.append(DeliveryResult(recipient.subscriber_id, True, request.issue.message_id(recipient)))
        return results

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        self._send_raw(message.as_bytes(), str(message["To"]), [])
        return str(message["Message-ID"] or key)

    def close(self) -> None:
        self.client.close()


def error_for(error: botocore.exceptions.ClientError, where: str = "ses SendEmail") -> ProviderError:
    """The typed error for an SES error answer (its code, HTTP status and message)."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = str(details.get("Message", "")) or code
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    detail = f"{code}: {message}" if code and code not in message else message
    if code == "LimitExceededException" or (code in THROTTLED and any(w in message for w in QUOTA_WORDS)):
        return ProviderRejected(detail, where=where, hint=QUOTA_HINT)
    if code in THROTTLED or status == 429:
        return ProviderRateLimited(detail, where=where, retry_after=None, hint=RETRY_LATER)
    if code in AUTH or status in (401, 403):
        return ProviderAuthError(detail, where=where, hint="check the AWS key variables and the key's SES permissions")
    if code in ACCOUNT:
        return ProviderRejected(detail, where=where, hint="sending is paused or not allowed for this account or domain")
    if code in TRANSIENT or status >= 500:
        return ProviderTransient(detail, where=where, hint=RETRY_LATER)
    if code == "MessageRejected":
        return ProviderRejected(detail, where=where, hint="check that the sender is a verified SES identity"
                                " (and, in the SES sandbox, the recipients too)")  # fmt: skip
    return ProviderRejected(detail, where=where, hint="SES refused the request as written")
