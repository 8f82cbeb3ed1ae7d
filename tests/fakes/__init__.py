"""Local fake HTTP servers for the mailing providers, for tests only.

Each fake speaks real HTTP on 127.0.0.1 (port chosen by the OS), follows the
provider's public API documentation and can be told
to fail on purpose (see :class:`tests.fakes.base.Fault`)::

    from fakes import FakeMailgun, Fault   # tests/ is on sys.path, as for conftest

    with FakeMailgun() as fake:
        fake.inject(Fault.http(429))
        ...  # point the client at fake.url
        assert fake.count_by_recipient()["ann@example.org"] == 1
"""

from .base import DEFAULT, TRANSIENT_KINDS, Delivery, FakeServer, Fault, Recorded
from .buttondown import FakeButtondown
from .mailgun import FakeMailgun
from .postmark import FakePostmark
from .resend import FakeResend

__all__ = [
    "DEFAULT",
    "TRANSIENT_KINDS",
    "Delivery",
    "FakeButtondown",
    "FakeMailgun",
    "FakePostmark",
    "FakeResend",
    "FakeServer",
    "Fault",
    "Recorded",
]
