"""newsletter: Markdown posts in git → Atom feed, web archive and email issues sent exactly once."""

__version__ = "0.1.0"
