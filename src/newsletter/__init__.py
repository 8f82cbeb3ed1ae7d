"""newsletter: Markdown posts in git → Atom feed, web archive and email issues sent exactly once.

The Python API is one object per project::

    from newsletter import Newsletter

    with Newsletter.open("my-newsletter") as nl:
        nl.build()
        report = nl.send(nl.plan())

See ``docs/api.md``.  Importing this package is cheap: :class:`Newsletter`
loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Newsletter", "__version__"]

if TYPE_CHECKING:
    from .project import Newsletter


def __getattr__(name: str) -> Any:
    if name == "Newsletter":
        from .project import Newsletter

        return Newsletter
    raise AttributeError(f"module 'newsletter' has no attribute {name!r}")
