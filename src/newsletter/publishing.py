"""Publishing, as the project does it: build the site and feeds, tell the WebSub hub,
preview an issue's email, and run the preflight (``newsletter check``) on what would be sent.

Plain functions of a :class:`~newsletter.project.Newsletter`; its methods of the same names
call them.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Secret
from .errors import NewsletterError, PreflightFailed, UsageError

if TYPE_CHECKING:
    from .check import IssueCheck
    from .content import Post
    from .preview import LivePreview, Screenshots
    from .project import Newsletter, Progress
    from .send_session import PlannedSend


@dataclass(frozen=True)
class BuildReport:
    """What :meth:`Newsletter.build` wrote."""

    posts: int
    files: int
    public_dir: Path
    removed: tuple[str, ...] = ()  # files an earlier build wrote that this one no longer generates
    changed_feeds: tuple[str, ...] = ()  # subscription documents whose bytes changed
    pinged: tuple[str, ...] = ()  # their URLs, when the WebSub hub was told


@dataclass(frozen=True)
class PreviewReport:
    """Where :meth:`Newsletter.preview` wrote an issue's email, and what to know about it."""

    post: Post
    folder: Path
    html_bytes: int
    warnings: tuple[str, ...]


def build(project: Newsletter, *, ping: bool = False, progress: Progress | None = None) -> BuildReport:
    """Write the feeds and the web archive into ``public/`` (atomically: a failure changes nothing).

    With ``ping`` and ``[feed] websub_hub`` set, the hub is told which feeds changed.
    ``progress(done, total)`` hears the posts parsed, then the post pages written.
    """
    from .buildcache import PostCache

    # Posts come through the build cache: metadata only, parsed again only when changed.
    cache = PostCache(project.config)
    now = project.clock()
    # Reading the cache makes a million objects that all live until the build ends: the garbage
    # collector is kept from walking them again and again (a good part of a rebuild after one edit).
    collecting = gc.isenabled()
    gc.disable()
    try:
        last = cache.unchanged_build(now)
        if last is not None:  # nothing changed since the last build: nothing to render or ping
            return BuildReport(last[0], last[1], project.config.public_dir, (), (), ())
        from .site import build_site, rebuild_edited
        from .websub import changed_topics, topic_digests

        edit = cache.edited(now)  # only the text of a few posts changed: their pages and feeds
        if edit is not None:  # (a few pages: the collector stays off until the end)
            before = topic_digests(project.config.public_dir)
            result = rebuild_edited(project.config, project.environment(), cache, edit)
            cache.record_edit(now, edit, result.names, set(result.names) - result.kept)
            published = edit.posts_count
        else:
            posts = [post for post in cache.read(progress) if post.is_published(now)]
            gc.freeze()  # (rendering makes garbage: collected as usual, without walking what was read)
            if collecting:
                gc.enable()
            before = topic_digests(project.config.public_dir)
            result = build_site(project.config, posts, project.environment(), cache, progress)
            cache.record_build(now, len(posts), result.names, result.kept, result.feeds, result.tag_slugs)
            published = len(posts)
    finally:
        gc.unfreeze()  # (a long-running process, such as the live preview, builds again and again)
        if collecting:
            gc.enable()
        cache.close()
    changed = tuple(changed_topics(before, result.files))
    pinged: tuple[str, ...] = ()
    if ping and project.config.feed.websub_hub:
        pinged = tuple(project.ping_hub(changed))
    return BuildReport(published, len(result.names), project.config.public_dir, tuple(result.removed), changed, pinged)


def ping_hub(project: Newsletter, paths: Sequence[str] = ("feed.xml", "feed.json")) -> list[str]:
    """Tell the WebSub hub that the feeds at ``paths`` (site-relative) changed; returns their URLs."""
    from .websub import ping

    hub = project.config.feed.websub_hub
    if not hub:
        return []
    return ping(hub, [project.config.site.base_url + path for path in paths], project.config.retry)


def preview(project: Newsletter, slug: str | None = None) -> PreviewReport:
    """Write the email of ``slug`` (default: the newest published post) to ``preview/SLUG/``."""
    from .files import write_tree
    from .recipients import preview_recipient
    from .render import render_issue
    from .send_plan import pick_post

    now = project.clock()
    post = pick_post(project.posts(), now, slug)
    issue = render_issue(project.config, post, project.environment())
    try:
        signing_keys: list[Secret] | None = project.signing_keys()
    except NewsletterError:
        signing_keys = None
    recipient = preview_recipient(project.config, signing_keys, now)
    write_tree(
        project.config.preview_dir,
        {
            f"{post.slug}/email.html": issue.personal_html(recipient).encode("utf-8"),
            f"{post.slug}/email.txt": issue.personal_text(recipient).encode("utf-8"),
            f"{post.slug}/email.eml": issue.message_bytes(recipient, date=now),
        },
    )
    return PreviewReport(post, project.config.preview_dir / post.slug, issue.html_bytes, issue.warnings)


def check(project: Newsletter, slug: str | None = None, *, all_posts: bool = False) -> list[IssueCheck]:
    """The preflight of ``slug`` (default: the newest published post), or of every published post."""
    from .check import check_posts
    from .send_plan import pick_post

    if all_posts and slug:
        raise UsageError("SLUG and --all contradict each other", hint="pass one of them")
    posts = project.published() if all_posts else [pick_post(project.posts(), project.clock(), slug)]
    return check_posts(project.config, posts, project.environment())


def check_planned(project: Newsletter, planned: PlannedSend) -> IssueCheck:
    """The preflight of the issue ``planned`` is about to send, exactly as rendered for it."""
    from .check import check_issue

    if planned.preflight is None:
        planned.preflight = check_issue(project.config, planned.plan.issue)
    return planned.preflight


def refuse_failing(project: Newsletter, planned: PlannedSend, *, force: bool = False) -> None:
    """Raise :class:`PreflightFailed` when the preflight of ``planned`` finds errors, unless
    ``force``.  A resumed send is never refused: part of the list already has that issue."""
    report = project.check_planned(planned)
    if report.errors and not force and planned.plan.resuming is None:
        raise PreflightFailed(
            f"not sent: the preflight found {len(report.errors)} errors in «{planned.plan.post.title}»"
            f" (first: [{report.errors[0].code}] {report.errors[0].message})",
            hint=f"fix them (newsletter check {planned.plan.post.slug}) or send anyway with --force",
        )


def live_preview(project: Newsletter, *, interval: float = 0.5) -> LivePreview:
    """See :meth:`Newsletter.live_preview`: each rebuild opens the project afresh."""
    from .preview import LivePreview
    from .project import Newsletter

    return LivePreview(lambda: Newsletter(project.config, clock=project.clock), interval=interval)


def screenshots(project: Newsletter, slug: str | None = None, *, chromium: str | None = None) -> Screenshots:
    """See :meth:`Newsletter.screenshots`."""
    from .preview import take_screenshots

    return take_screenshots(project, slug, chromium=chromium)


def new_post(project: Newsletter, title: str) -> Path:
    """See :meth:`Newsletter.new_post`."""
    from .scaffold import new_post

    return new_post(project.config, title, project.clock())
