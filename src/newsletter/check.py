"""The preflight: what a mail client, a spam filter and a reader would trip over in an issue.

``newsletter check`` and ``newsletter send`` run :func:`check_issue` on the issue as it will be
sent (rendered and inlined, with a stand-in recipient's unsubscribe URL).  Findings are
``error`` (the issue should not go out: clipped by Gmail, no unsubscribe link, a relative link,
an image without alt text, unreadable text) or ``warning`` (worth a look: CSS some clients
ignore, a link to the site that the last build did not produce, a long subject, no preheader).
Each finding has a stable ``code`` for CI.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .config import Config
from .content import Post
from .contrast import UncheckedColour, css_features, offending_pairs
from .css_support import unsupported
from .errors import IssueTooLarge, NewsletterError
from .render import MAX_HTML_BYTES, WARN_HTML_BYTES, Issue, Recipient, make_inliner, render_issue
from .tokens import unsubscribe_url

if TYPE_CHECKING:
    from .render import Inliner
    from .templates import Environment

ERROR, WARNING = "error", "warning"
SUBJECT_SHOWN = 60  # desktop clients show about 60 characters of a subject, phones 30 to 40
TEXT_TO_HTML = 0.5  # a text part under half the HTML's visible text looks like a token one to filters
IMAGE_COLUMN_PX = 600  # the email template's column
IMAGE_BYTES = 1_000_000
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class Finding:
    """One thing the preflight found: ``severity`` error or warning, a stable ``code``, a sentence."""

    severity: str
    code: str
    message: str


@dataclass(frozen=True)
class IssueCheck:
    """The preflight report of one issue."""

    slug: str
    subject: str
    findings: tuple[Finding, ...] = field(default=())

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def passed(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"slug": self.slug, "subject": self.subject, "passed": self.passed, "errors": len(self.errors),
                "warnings": len(self.warnings), "findings": [asdict(f) for f in self.findings]}  # fmt: skip


def check_post(config: Config, post: Post, env: Environment, *, inliner: Inliner | None = None) -> IssueCheck:
    """Render ``post`` as an issue and check it; a rendering refusal (clipped, no footer) is a finding."""
    try:
        issue = render_issue(config, post, env, inliner=inliner)
    except IssueTooLarge as error:
        return IssueCheck(post.slug, post.title, (Finding(ERROR, "clip-size", error.one_line()),))
    except NewsletterError as error:
        return IssueCheck(post.slug, post.title, (Finding(ERROR, "render", error.one_line()),))
    return check_issue(config, issue)


def check_posts(config: Config, posts: list[Post], env: Environment) -> list[IssueCheck]:
    """:func:`check_post` for each of ``posts``, with one inliner for all of them."""
    inliner = make_inliner()
    return [check_post(config, post, env, inliner=inliner) for post in posts]


def check_issue(config: Config, issue: Issue) -> IssueCheck:
    """Every preflight check of a rendered ``issue``."""
    recipient = Recipient(0, "check@example.invalid", unsubscribe_url(config.email.unsubscribe_url, "PREFLIGHT"))
    html, text = issue.personal_html(recipient), issue.personal_text(recipient)
    page = _Page(html)
    findings: list[Finding] = []
    findings += _size(issue, html)
    findings += _footer(config, recipient.unsubscribe_url, page, text)
    findings += _links(config, page, recipient.unsubscribe_url)
    findings += _images(config, page)
    findings += _contrast(html)
    findings += _css(html)
    findings += _subject(issue.subject)
    if not issue.post.preheader.strip():
        findings.append(Finding(WARNING, "no-preheader", "no preheader: inboxes show the first words of the body"
                                " instead; set 'preheader' (or 'summary') in the front matter"))  # fmt: skip
    visible = len(page.visible)
    if visible and len(" ".join(text.split())) < TEXT_TO_HTML * visible:
        findings.append(Finding(WARNING, "short-text", f"the plain-text part ({len(text)} characters) is much shorter"
                                f" than the HTML's text ({visible}); spam filters distrust that"))  # fmt: skip
    return IssueCheck(issue.post.slug, issue.subject, tuple(findings))


class _Page(HTMLParser):
    """The links, images and visible text of an HTML part."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self._text: list[str] = []
        self._hidden = 0
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("style", "script", "title"):
            self._hidden += 1
        elif tag == "a" and values.get("href") is not None:
            self.links.append(values["href"] or "")
        elif tag == "img":
            self.images.append(values)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._text.append(data)

    @property
    def visible(self) -> str:
        return " ".join("".join(self._text).split())


def _size(issue: Issue, html: str) -> list[Finding]:
    size = len(html.encode("utf-8"))
    clip = f"{MAX_HTML_BYTES // 1000} KB"
    if size > MAX_HTML_BYTES:
        return [Finding(ERROR, "clip-size", f"the HTML is {size / 1000:.1f} KB; Gmail clips above {clip}")]
    if size > WARN_HTML_BYTES:
        return [Finding(WARNING, "clip-size", f"the HTML is {size / 1000:.1f} KB, close to Gmail's {clip} clip")]
    return []


def _footer(config: Config, unsubscribe: str, page: _Page, text: str) -> list[Finding]:
    findings = []
    postal = " ".join(config.email.postal_address.split())
    if unsubscribe not in page.links:
        findings.append(Finding(ERROR, "no-unsubscribe", "the HTML part has no unsubscribe link"))
    if unsubscribe not in text:
        findings.append(Finding(ERROR, "no-unsubscribe", "the plain-text part has no unsubscribe URL"))
    if postal not in page.visible:
        findings.append(Finding(ERROR, "no-postal-address", "the HTML part does not show the postal address"))
    if postal not in " ".join(text.split()):
        findings.append(Finding(ERROR, "no-postal-address", "the plain-text part does not show the postal address"))
    return findings


def _built_file(config: Config, url: str) -> Path | None:
    """The file of ``public/`` that serves ``url`` (one of the site's own), or None."""
    path = unquote(urlsplit(url).path)
    base = urlsplit(config.site.base_url).path
    relative = path[len(base) :] if path.startswith(base) else path.lstrip("/")
    candidate = config.public_dir / relative
    for option in (candidate, candidate / "index.html"):
        if option.is_file() and config.public_dir.resolve() in option.resolve().parents:
            return option
    return None


def _is_own(config: Config, url: str, unsubscribe: str) -> bool:
    service = [config.service_url] if config.service_url else []
    answered_by_service = (unsubscribe, config.email.unsubscribe_url, *service)
    if url.startswith(answered_by_service):
        return False  # answered by 'newsletter serve', not a file of the build
    return url.startswith(config.site.base_url)


def _urls(config: Config, urls: list[tuple[str, str]], unsubscribe: str) -> list[Finding]:
    findings, unbuilt = [], False
    built = config.public_dir.is_dir()
    for kind, url in urls:
        parts = urlsplit(url.strip())
        if kind == "link" and parts.scheme == "mailto":
            continue
        if parts.scheme not in ("http", "https") or not parts.netloc:
            findings.append(Finding(ERROR, "relative-url", f"{kind} {url!r} is not an absolute http(s) URL;"
                                    " mail clients have no page to resolve it against"))  # fmt: skip
        elif _is_own(config, url, unsubscribe):
            if not built:
                unbuilt = True
            elif _built_file(config, url) is None:
                # A warning: it is most often a build not run yet since the post was written.
                findings.append(Finding(WARNING, "not-built", f"{kind} {url} points at no file of {config.public_dir}"
                                        " (run 'newsletter build', or fix the link)"))  # fmt: skip
    if unbuilt:
        findings.append(Finding(WARNING, "not-built", f"{config.public_dir} does not exist: run 'newsletter build'"
                                " so the links to the site can be checked"))  # fmt: skip
    return findings


def _links(config: Config, page: _Page, unsubscribe: str) -> list[Finding]:
    urls = [("link", href) for href in page.links] + [("image", img.get("src") or "") for img in page.images]
    return _urls(config, urls, unsubscribe)


def _images(config: Config, page: _Page) -> list[Finding]:
    findings = []
    for image in page.images:
        src = image.get("src") or ""
        if image.get("alt") is None:
            message = f"image {src} has no alt text: readers who block images and screen readers get nothing"
            findings.append(Finding(ERROR, "missing-alt", message + '; give it alt="…" (alt="" if decorative)'))
        width = image.get("width") or ""
        if width.isdigit() and int(width) > IMAGE_COLUMN_PX:
            findings.append(Finding(WARNING, "image-size", f"image {src} is {width} px wide, wider than the"
                                    f" {IMAGE_COLUMN_PX} px column"))  # fmt: skip
        local = _built_file(config, src) if src.startswith(config.site.base_url) else None
        if local is not None and local.stat().st_size > IMAGE_BYTES:
            findings.append(Finding(WARNING, "image-size", f"image {src} weighs {local.stat().st_size / 1e6:.1f} MB;"
                                    " readers on phones download it"))  # fmt: skip
    return findings


def _contrast(html: str) -> list[Finding]:
    try:
        problems = offending_pairs(html, "email")
    except UncheckedColour as error:
        return [Finding(WARNING, "contrast-unchecked", str(error))]
    return [Finding(ERROR, "contrast", f"text below WCAG AA contrast: {problem}") for problem in problems]


def _css(html: str) -> list[Finding]:
    findings = []
    for client, features in unsupported(css_features(html)).items():
        missing = [name for name, level in features if level == "no"]
        partial = [name for name, level in features if level == "partial"]
        parts = ([f"ignores {', '.join(missing)}"] if missing else []) + (
            [f"renders only partly {', '.join(partial)}"] if partial else []
        )
        findings.append(Finding(WARNING, "css-unsupported", f"{client} {'; '.join(parts)} (caniemail.com)"))
    return findings


def _subject(subject: str) -> list[Finding]:
    if not subject.strip():
        return [Finding(ERROR, "empty-subject", "the subject is empty: give the post a title")]
    findings = []
    if len(subject) > SUBJECT_SHOWN:
        findings.append(Finding(WARNING, "long-subject", f"the subject has {len(subject)} characters; inboxes show"
                                f" about {SUBJECT_SHOWN} (30 to 40 on phones)"))  # fmt: skip
    letters = _LETTERS.findall(subject)
    if len(letters) >= 4 and subject.upper() == subject and subject.lower() != subject:
        findings.append(Finding(WARNING, "all-caps-subject", "the subject is in capitals: spam filters score it"))
    return findings


def summary(check: IssueCheck) -> str:
    """One line: the issue and its counts."""
    verdict = "ok" if check.passed else "FAILED"
    return f"{check.slug}: {verdict} ({len(check.errors)} errors, {len(check.warnings)} warnings) — «{check.subject}»"
