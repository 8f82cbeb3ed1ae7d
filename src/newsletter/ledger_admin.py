"""The ledger as the editor reads and corrects it: status, backups, marking posts as sent
without mailing, and settling an interrupted send nothing could reconcile.

Plain functions of a :class:`~newsletter.project.Newsletter`; its methods of the same names
call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFound, UsageError
from .lock import SendLock

if TYPE_CHECKING:
    from .project import Newsletter


@dataclass(frozen=True)
class ResolveReport:
    """What :meth:`Newsletter.resolve` settled."""

    subject: str
    changed: int
    assume_sent: bool


def backup(project: Newsletter, path: str | Path | None = None) -> tuple[Path, int]:
    """Write a consistent copy of the ledger (safe while sends and the service run).

    Default: ``<ledger stem>-YYYYMMDD-HHMMSS.db`` beside the ledger.  Never overwrites a
    file.  Returns the path written and its size.
    """
    database = project.config.database_path
    target = (
        Path(path) if path is not None else database.with_name(f"{database.stem}-{project.clock():%Y%m%d-%H%M%S}.db")
    )
    if target.exists():
        raise UsageError(f"{target} already exists", hint="choose a new file name; a backup never overwrites a file")
    if target.resolve() == database.resolve():
        raise UsageError(f"{target} is the ledger itself", hint="choose another path")
    return target, project.ledger.backup(target)


def status(project: Newsletter, *, deliveries: bool = False) -> list[dict[str, Any]]:
    """Each post with its state (sent, marked, sending, draft, scheduled, not sent) and its issues."""
    from .buildcache import PostCache
    from .status import post_statuses

    # Metadata and content hashes from the build cache: no Markdown is parsed for an unchanged post.
    posts = project.posts_if_read() or PostCache(project.config).read()
    return post_statuses(posts, project.ledger, project.clock(), deliveries=deliveries)


def mark_sent(project: Newsletter, slugs: Sequence[str] = (), *, all_posts: bool = False) -> list[tuple[str, str]]:
    """Record posts as sent without mailing anyone; returns ``(slug, "marked" | "already sent")``."""
    from .send_plan import mark_posts_sent

    if not slugs and not all_posts:
        raise UsageError("name the posts to mark", hint="pass SLUG... or --all")
    candidates = project.published()
    if not all_posts:
        by_slug = {p.slug: p for p in candidates}
        missing = [s for s in slugs if s not in by_slug]
        if missing:
            raise NotFound(f"slug {missing[0]!r} matches no published post", hint="run 'newsletter status'")
        candidates = [by_slug[s] for s in slugs]
    return mark_posts_sent(project.config, project.ledger, candidates, project.environment(), project.clock())


def resolve(project: Newsletter, issue: str, *, assume_sent: bool, chunks: Sequence[int] = ()) -> ResolveReport:
    """Settle the deliveries of an unfinished ``issue`` (slug or key) that nothing could reconcile."""
    with SendLock(project.lock_path):
        records = [r for r in project.ledger.issues.unfinished_issues() if issue in (r.slug, r.key)]
        if not records:
            raise NotFound(
                f"no unfinished issue named {issue!r}", hint="run 'newsletter status' to see unfinished sends"
            )
        record = records[0]
        changed = project.ledger.issues.resolve(record.id, assume_sent=assume_sent, now=project.clock(), chunks=chunks)
    return ResolveReport(record.subject, changed, assume_sent)


def doctor(project: Newsletter) -> list[Any]:
    """See :meth:`Newsletter.doctor`."""
    from .doctor import diagnose

    return diagnose(project.config)
