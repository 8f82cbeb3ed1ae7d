"""A test kit for provider authors, shipped with the package.

- :class:`FakeBatchProvider`, :class:`FakeAudienceProvider`: in-process fake providers of
  both families, with fault injection (``fail_next``, ``latency``, ``accept_then_drop``)
  and a ``history`` of what each recipient received, for short engine tests.
- :class:`BatchProviderContract`, :class:`AudienceProviderContract`: the contract suite a
  provider runs against its own fake server, through a :class:`Harness` it writes.

``newsletter.testing`` imports pytest only in :mod:`newsletter.testing.contract`; the
fakes work without it.  See ``docs/plugins.md``.
"""

from __future__ import annotations

from .fakes import FAULTS, FakeAudienceProvider, FakeBatchProvider, Received, fault_error

__all__ = [
    "FAULTS", "AudienceProviderContract", "BatchProviderContract", "FakeAudienceProvider", "FakeBatchProvider",
    "Harness", "Received", "fault_error",
]  # fmt: skip


def __getattr__(name: str):
    """The contract suite on first use, so that importing the fakes does not need pytest."""
    if name in ("AudienceProviderContract", "BatchProviderContract", "Harness"):
        from . import contract

        return getattr(contract, name)
    raise AttributeError(name)
