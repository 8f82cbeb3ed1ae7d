"""WebSub: tell the hub which feeds changed, so readers get new posts at once instead of polling.

A publish ping is the form-encoded ``hub.mode=publish`` POST that hubs accept
(one per topic URL), retried with the send engine's policy on rate limits,
server errors and lost connections.  Only subscription documents are topics:
archive pages never change.  The standard library's HTTP client is enough
here (requests belongs to the providers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import __version__
from .errors import NewsletterError
from .retry import Attempts, RetryPolicy

TIMEOUT = 10.0
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class PingFailed(NewsletterError):
    """The hub refused, or never took, a publish ping."""


def topic_paths(paths: Iterable[str]) -> list[str]:
    """The subscription documents among site paths: ``feed.xml``, ``feed.json``, ``tags/*/feed.xml``."""
    return sorted(
        p for p in paths if p in ("feed.xml", "feed.json") or (p.startswith("tags/") and p.endswith("/feed.xml"))
    )


def topic_digests(public_dir: Path) -> dict[str, str]:
    """What the topics hold before a build: ``path → sha256``, to tell afterwards which changed."""
    found = [public_dir / "feed.xml", public_dir / "feed.json", *public_dir.glob("tags/*/feed.xml")]
    return {str(p.relative_to(public_dir)): _digest(p.read_bytes()) for p in found if p.is_file()}


def changed_topics(before: Mapping[str, str], files: Mapping[str, bytes]) -> list[str]:
    """Topic paths whose bytes differ from ``before`` (new ones included)."""
    return [p for p in topic_paths(files) if before.get(p) != _digest(files[p])]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ping(hub: str, topics: Iterable[str], policy: RetryPolicy | None = None) -> list[str]:
    """Notify ``hub`` that each topic URL changed; returns the topics pinged."""
    policy = policy or RetryPolicy()
    done = []
    for topic in topics:
        _ping_one(hub, topic, policy)
        done.append(topic)
    return done


def _ping_one(hub: str, topic: str, policy: RetryPolicy) -> None:
    import urllib.error  # here: every build reads the topics, few ping (http.client is slow to load)
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": topic}).encode("ascii")
    attempts = Attempts(policy)
    while True:
        request = urllib.request.Request(
            hub, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": f"newsletter/{__version__}"},
        )  # fmt: skip
        retry_after: float | None = None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - the hub URL is validated config
                answer.read(65536)
            return
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_STATUS:
                raise PingFailed(
                    f"the hub refused the ping for {topic} (HTTP {error.code})",
                    where="newsletter.toml: feed.websub_hub",
                    hint="check the hub URL; the feeds were built and are published as they are",
                ) from None  # fmt: skip
            from .providers.http import retry_after_seconds  # the one Retry-After parser

            retry_after = retry_after_seconds(dict(error.headers.items()))
            problem = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            problem = str(getattr(error, "reason", error))
        delay = attempts.next_wait(retry_after)
        if delay is None:
            raise PingFailed(
                f"the hub did not take the ping for {topic} ({problem})", where="newsletter.toml: feed.websub_hub",
                hint="run 'newsletter build --ping' again later; the feeds were built",
            )  # fmt: skip
        attempts.sleep(delay)
