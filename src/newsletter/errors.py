"""Typed errors of the newsletter library.

Every error a user can cause carries *where* it happened (a file, a field, a
slug), *what* is wrong and a *hint* saying how to fix it.  Only the CLI turns
them into one line on stderr and an exit code.
"""

from __future__ import annotations

# Exit codes shared by the CLI and documented in the README.
EXIT_ERROR = 1  # bad input: a post, the config, a provider answer, the ledger
EXIT_USAGE = 2  # bad usage of a command (click uses 2 as well)
EXIT_NOTHING_TO_SEND = 3  # not a failure: the newest issue is already sent
EXIT_LOCKED = 4  # another send holds the lock: nothing was done


class NewsletterError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str = "", where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        """The error as one line: ``where: message (hint)``, newlines folded."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text} — {self.hint}"
        return " ".join(text.split())


class ConfigError(NewsletterError):
    """``newsletter.toml`` is missing, unreadable or holds a wrong value."""


class ConfigErrors(ConfigError):
    """Several mistakes in ``newsletter.toml``, found in one reading: ``errors`` holds each one.

    The CLI prints one line per error, so an editor fixes them all in one go.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message, hint=first.hint, where=first.where)
        self.errors = list(errors)

    def lines(self) -> list[str]:
        """One line per error, in the order the file holds them."""
        return [error.one_line() for error in self.errors]


class SecretMissing(ConfigError):
    """A secret's environment variable is not set."""


class PostError(NewsletterError):
    """A post cannot be read: front matter, date, slug, id, encoding."""


class NotFound(NewsletterError):
    """A slug, subscriber or issue named on the command line does not exist."""


class HeaderInjection(NewsletterError):
    """A value bound for a mail header holds CR, LF or NUL (INJ-01)."""


class IssueTooLarge(NewsletterError):
    """The inlined HTML would be clipped by Gmail (SIZE-01)."""


class PreflightFailed(NewsletterError):
    """``send`` refused an issue in which the preflight (``newsletter check``) found errors."""


class TemplateFailure(NewsletterError):
    """A template is missing or fails to render."""


class SubscriberError(NewsletterError):
    """An address or subscriber file is invalid."""


class LedgerError(NewsletterError):
    """The SQLite ledger cannot be opened or written."""


class LedgerBusy(LedgerError):
    """Another process held the ledger's write lock for longer than the bounded wait.

    Nothing was written; the same call may succeed after ``retry_after`` seconds
    (the service answers 503 with ``Retry-After``, never 500).
    """

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class LedgerCorrupt(LedgerError):
    """The ledger file is not a SQLite database or one of its pages is damaged."""


class OutputError(NewsletterError):
    """An output folder (``public/``, ``outbox/``, previews) cannot be written."""


class NothingToSend(NewsletterError):
    """The newest published post was already sent: nothing new to mail."""

    exit_code = EXIT_NOTHING_TO_SEND


class AlreadySent(NewsletterError):
    """An issue named explicitly was already sent; it is never sent twice."""


class SendConflict(NewsletterError):
    """A send cannot go on safely as things stand (for example the post changed mid-send)."""


class SendLocked(NewsletterError):
    """Another ``newsletter send`` is running against the same ledger."""

    exit_code = EXIT_LOCKED


class UsageError(NewsletterError):
    """A command was called in a way that cannot work (for example no ``--yes``)."""

    exit_code = EXIT_USAGE


class ProviderError(NewsletterError):
    """A provider refused or failed a delivery.

    ``retryable``: the same request may succeed later.  ``maybe_delivered``:
    the provider may have accepted it before the failure (a timeout, a
    connection dropped after the request was sent), so a blind retry could
    deliver twice.  The send engine decides what to do; providers only say.
    """

    retryable = False

    def __init__(self, message: str, *, hint: str = "", where: str = "", maybe_delivered: bool = False) -> None:
        super().__init__(message, hint=hint, where=where)
        self.maybe_delivered = maybe_delivered


class ProviderAuthError(ProviderError):
    """Credentials refused (HTTP 401/403, SMTP 535): never retried."""


class ProviderRejected(ProviderError):
    """The request itself is wrong (validation, size): retrying cannot help."""


class ProviderTransient(ProviderError):
    """A temporary failure (5xx, a dropped connection, a timeout): retried with backoff."""

    retryable = True


class ProviderRateLimited(ProviderTransient):
    """HTTP 429 or SMTP 421/451 throttling; ``retry_after`` seconds when the provider said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DeliveryUncertain(ProviderError):
    """A chunk may or may not have been delivered and nothing can tell: the editor decides."""


class ProviderNotFound(ConfigError):
    """The config names a provider no installed plug-in registers."""
