"""The local subscriber list as the editor manages it: add, remove, list, import, export.

For providers where we keep the list.  Addresses that unsubscribed, bounced or
complained are never re-activated from here (LAW-07).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, TYPE_CHECKING

from .audience import (
    ImportReport,
    confirm_subscription,
    export_csv,
    import_csv,
    normalize_address,
    subscriber_for_token,
    suppress,
    unsubscribe_with_token,
)  # fmt: skip
from .errors import NewsletterError, NotFound

if TYPE_CHECKING:
    from .project import Newsletter

CONFIRM_MAX_AGE = timedelta(days=3)

ADD_OUTCOMES = {"added": "added", "known": "already subscribed", "suppressed": "suppressed, not added"}


@dataclass(frozen=True)
class Change:
    """What one command did to one address: ``outcome`` is a short phrase for people."""

    address: str
    outcome: str


class SubscriberBook:
    """The subscriber operations of a project, over its ledger (see :attr:`Newsletter.subscribers`)."""

    def __init__(self, project: Newsletter) -> None:
        self.project = project
        self.ledger = project.ledger
        self.clock = project.clock

    def add(self, emails: Iterable[str], *, source: str = "cli") -> list[Change]:
        """Add addresses as active (the editor vouches for their consent); every address is checked first."""
        addresses = [normalize_address(e) for e in emails]
        changes = []
        for address in addresses:
            _, outcome = self.ledger.subscribers.add_subscriber(address, source=source, now=self.clock())
            changes.append(Change(address, ADD_OUTCOMES[outcome]))
        return changes

    def remove(self, emails: Iterable[str]) -> list[Change]:
        """Unsubscribe addresses; they stay in the ledger, suppressed, so no import re-adds them."""
        addresses = [normalize_address(e) for e in emails]
        changes = []
        for address in addresses:
            row = self.ledger.subscribers.subscriber_by_email(address)
            if row is None:
                raise NotFound(f"{address} is not a subscriber", hint="run 'newsletter subscribers list'")
            changed = self.ledger.subscribers.unsubscribe(row["id"], now=self.clock())
            changes.append(Change(address, "unsubscribed" if changed else "already unsubscribed"))
        return changes

    def list(self, status: str | None = None) -> Iterator[dict]:
        """Stream subscribers (id order), optionally only those with ``status``."""
        return self.ledger.subscribers.stream(status)

    def count(self, status: str | None = None) -> int:
        return self.ledger.subscribers.count_subscribers(status)

    def import_csv(self, handle: IO[str], *, source: str) -> ImportReport:
        """Import a CSV export (an ``email`` column, else the first); see :func:`audience.import_csv`."""
        try:
            return import_csv(self.ledger, handle, source=source, now=self.clock(), name=getattr(handle, "name", ""))
        except UnicodeDecodeError:
            raise NewsletterError("not valid UTF-8", where=getattr(handle, "name", "CSV"), hint="save the CSV as UTF-8")

    def reactivate(self, email: str, *, overrides: Iterable[str]) -> Change:
        """Make a suppressed address active again, lifting only the suppressions named in ``overrides``
        (``unsubscribed``, ``bounced``, ``complained``); any other raises :class:`SubscriberError`."""
        address = normalize_address(email)
        lifted = self.ledger.subscribers.reactivate(address, overrides=overrides, now=self.clock())
        return Change(address, f"active (was {lifted})" if lifted != "active" else "active (was not suppressed)")

    def export_csv(self, handle: IO[str]) -> int:
        """Write every subscriber as CSV; returns how many."""
        return export_csv(self.ledger.subscribers.stream(), handle)

    # -- what subscribers do themselves, through the service ---------------------------------

    def request(self, email: str, *, source: str, client_ip: str = "", user_agent: str = "") -> None:
        """Record a subscription request; the confirmation goes out later (:mod:`newsletter.outgoing`).

        The same single write whatever the address's state, so the answer reveals nothing.
        """
        from .outgoing import queue_subscription

        queue_subscription(
            self.ledger, email, now=self.clock(), source=source, client_ip=client_ip, user_agent=user_agent
        )

    def holder_of(self, token: str, *, purpose: str) -> dict:
        """The subscriber a signed ``confirm`` or ``unsubscribe`` token names (raises InvalidToken)."""
        return subscriber_for_token(self.ledger, self.project.signing_keys(), self._list_id, token, purpose=purpose)

    def confirm(self, token: str) -> None:
        """Double opt-in: a valid, fresh confirm token makes a pending subscriber active."""
        confirm_subscription(
            self.ledger, self.project.signing_keys(), self._list_id, token, now=self.clock(), max_age=CONFIRM_MAX_AGE
        )

    def unsubscribe(self, token: str) -> None:
        """One-click unsubscribe: the signed token is the only authorization (idempotent)."""
        unsubscribe_with_token(self.ledger, self.project.signing_keys(), self._list_id, token, now=self.clock())

    def suppress(self, email: str, reason: str) -> None:
        """A bounce or complaint the provider reported: the address is suppressed for good."""
        suppress(self.ledger, email, reason, now=self.clock())

    @property
    def _list_id(self) -> str:
        return self.project.config.email.list_id


def outcome_lines(changes: Sequence[Change]) -> list[str]:
    return [f"{c.outcome}  {c.address}" for c in changes]
