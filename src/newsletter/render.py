"""Post → :class:`Issue`: email HTML with CSS inlined once, a plain-text part, MIME per recipient.

The only importer of premailer and of the ``email`` package.  An issue is
rendered and inlined once; each recipient then only gets their own
unsubscribe URL by plain string substitution (INL-08, INL-10), and their own
``To``/``Message-ID``/``List-Unsubscribe`` headers.
"""

from __future__ import annotations

import hashlib
import html as html_escaping
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import cssutils
import jinja2
from premailer import Premailer

from .config import Config
from .content import Post
from .errors import IssueTooLarge
from .plaintext import html_to_text
from .templates import labels, render, trusted_html
from .textutil import check_header_value

# A marker premailer leaves alone (no characters it would URL-encode) and no post contains.
UNSUBSCRIBE_PLACEHOLDER = "NEWSLETTER-UNSUBSCRIBE-URL-5b0e2c"
WARN_HTML_BYTES = 90_000
MAX_HTML_BYTES = 102_000  # Gmail clips above ~102 KB, hiding the footer and unsubscribe link (SIZE-01)
# The longest unsubscribe URL a recipient can get; used to measure the worst case.
_LONGEST_TOKEN = "x" * 120

_inliner_log = logging.getLogger("newsletter.inliner")


@dataclass(frozen=True)
class Recipient:
    """One person an issue goes to, with their signed unsubscribe URL."""

    subscriber_id: int
    email: str
    unsubscribe_url: str


@dataclass(frozen=True)
class Issue:
    """A post rendered once for email: subject, inlined HTML, plain text, list headers."""

    post: Post
    key: str
    subject: str
    html: str
    text: str
    sender: Address
    reply_to: str
    list_name: str
    list_id: str
    domain: str
    unsubscribe_mailto: str
    warnings: tuple[str, ...] = ()

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    def personal_html(self, recipient: Recipient) -> str:
        return self.html.replace(UNSUBSCRIBE_PLACEHOLDER, html_escaping.escape(recipient.unsubscribe_url))

    def personal_text(self, recipient: Recipient) -> str:
        return self.text.replace(UNSUBSCRIBE_PLACEHOLDER, recipient.unsubscribe_url)

    def message_id(self, recipient: Recipient) -> str:
        """Deterministic per (issue, recipient): a replay after a crash carries the same id."""
        return f"<{self.key}.{recipient.subscriber_id}@{self.domain}>"

    def list_unsubscribe(self, recipient: Recipient) -> str:
        """RFC 2369/8058 value: the HTTPS one-click URL first, then the mailto if configured."""
        value = f"<{recipient.unsubscribe_url}>"
        if self.unsubscribe_mailto:
            value += f", <mailto:{self.unsubscribe_mailto}?subject=unsubscribe>"
        return value

    def message_for(self, recipient: Recipient, *, date: datetime) -> EmailMessage:
        """The complete MIME message for one recipient (HDR-01…06, MIME-01…04, LIST-01/02/06)."""
        check_header_value(recipient.email, field="recipient address")
        check_header_value(recipient.unsubscribe_url, field="unsubscribe URL")
        message = EmailMessage(policy=SMTP)
        message["From"] = self.sender
        message["To"] = Address(addr_spec=recipient.email)
        if self.reply_to:
            message["Reply-To"] = Address(addr_spec=self.reply_to)
        message.set_raw("Subject", _encoded("Subject", self.subject))
        message["Date"] = format_datetime(date)
        message["Message-ID"] = self.message_id(recipient)
        message.set_raw("List-Id", f"{_encoded('List-Id', _quoted_phrase(self.list_name))}\r\n <{self.list_id}>")
        message["List-Unsubscribe"] = self.list_unsubscribe(recipient)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(self.personal_text(recipient), subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(self.personal_html(recipient), subtype="html", charset="utf-8", cte="quoted-printable")
        # Deterministic too, so a replay is byte-identical; "=" never occurs in a QP body unescaped.
        message.set_boundary(f"=={self.key}.{recipient.subscriber_id}==")
        return message

    def message_bytes(self, recipient: Recipient, *, date: datetime) -> bytes:
        return self.message_for(recipient, date=date).as_bytes()


def confirmation_message(
    config: Config, env: jinja2.Environment, *, to: str, confirm_url: str, date: datetime, key: str
) -> EmailMessage:
    """The double opt-in email: one link to a page with a confirm button (LAW-06)."""
    check_header_value(to, field="subscriber address")
    site = config.site
    context = {"site": site, "labels": labels(site.language), "confirm_url": confirm_url,
               "postal_address": config.email.postal_address}  # fmt: skip
    text = render(env, "email/confirm.txt", **context)
    html = make_inliner().transform(render(env, "email/confirm.html", **context), pretty_print=False)
    message = EmailMessage(policy=SMTP)
    message["From"] = config.email.sender
    message["To"] = Address(addr_spec=to)
    message.set_raw("Subject", _encoded("Subject", labels(site.language)["confirm_subject"].format(site=site.title)))
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<confirm.{key}@{site.domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def issue_key(post: Post, variant: str = "") -> str:
    """A short stable id for one rendering of a post: same post and content, same key."""
    digest = hashlib.sha256(f"{post.id}\n{post.content_hash}\n{variant}".encode("utf-8")).hexdigest()
    return digest[:20]


class _OfflinePremailer(Premailer):
    """premailer's ``allow_network=False`` stops ``<link>`` fetches only; cssutils would still
    follow ``@import url(https://…)``.  Its fetcher is replaced by one that fetches nothing."""

    def _parse_css_string(self, css_body, validate=True):
        return cssutils.CSSParser(fetcher=lambda url: (None, ""), validate=validate).parseString(css_body)


def _encoded(name: str, value: str) -> str:
    """RFC 2047 encoding done by ``email.header``: the policy's own folding of non-ASCII
    subjects can exceed 75-character encoded-words and lose spaces (HDR-04, CPython gh-144156)."""
    if value.isascii() and "=?" not in value:  # ASCII that looks like an encoded-word is encoded too
        return value
    return Header(value, "utf-8", maxlinelen=76, header_name=name).encode(linesep="\r\n")


def _quoted_phrase(text: str) -> str:
    """An RFC 5322 phrase: quoted when it holds specials such as ``<``, ``,`` or ``"`` (INJ-03)."""
    specials = set('()<>[]:;@\\,."')
    if not any(c in specials for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_inliner() -> Premailer:
    """One premailer instance for every issue (INL-10), with the network off (INL-06)."""
    return _OfflinePremailer(
        strip_important=False,  # INL-01: media queries keep their !important and still win
        allow_network=False,
        allow_loading_external_files=False,
        disable_link_rewrites=True,  # URLs are already absolute; the placeholder must stay intact
        keep_style_tags=False,
        disable_validation=True,
        disable_basic_attributes=["width", "height"],  # keep the template's width="600" (EML-01)
        cssutils_logging_handler=_CssErrorCollector(),
        cssutils_logging_level=logging.WARNING,
    )


class _CssErrorCollector(logging.Handler):
    """Routes cssutils messages to our log: ERRORs visible, vendor-prefix WARNINGs quiet (INL-05)."""

    def emit(self, record: logging.LogRecord) -> None:
        level = logging.ERROR if record.levelno >= logging.ERROR else logging.DEBUG
        _inliner_log.log(level, "cssutils: %s", record.getMessage())


def render_issue(
    config: Config,
    post: Post,
    env: jinja2.Environment,
    *,
    inliner: Premailer | None = None,
    subject_prefix: str = "",
    variant: str = "",
) -> Issue:
    """Render and inline ``post`` once; refuse it when Gmail would clip it."""
    where = str(post.source)
    subject = check_header_value(f"{subject_prefix}{post.title}", field="title (the Subject)", where=where)
    site, mail = config.site, config.email
    common = {
        "site": site,
        "post": post,
        "subject": subject,
        "labels": labels(site.language),
        "postal_address": mail.postal_address,
        "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
    }
    raw_html = render(env, "email/issue.html", content=trusted_html(post.html), preheader=post.preheader, **common)
    inlined = (inliner or make_inliner()).transform(raw_html, pretty_print=False)
    text = html_to_text(post.html)
    text_part = render(env, "email/issue.txt", body=text.body, links=text.links, **common)
    issue = Issue(
        post=post,
        key=issue_key(post, variant),
        subject=subject,
        html=inlined,
        text=text_part,
        sender=mail.sender,
        reply_to=mail.reply_to,
        list_name=site.title,
        list_id=mail.list_id,
        domain=site.domain,
        unsubscribe_mailto=mail.unsubscribe_mailto,
    )
    check_header_value(issue.list_name, field="site.title (the List-Id)", where=where)
    return _check_size(issue, config.email.unsubscribe_url)


def _check_size(issue: Issue, unsubscribe_base: str) -> Issue:
    """SIZE-01/02: measured after inlining, with the longest personal URL substituted."""
    worst = Recipient(0, "x@example.org", unsubscribe_base + _LONGEST_TOKEN)
    size = len(issue.personal_html(worst).encode("utf-8"))
    if size > MAX_HTML_BYTES:
        raise IssueTooLarge(
            f"the email HTML is {size / 1000:.1f} KB after inlining; Gmail clips above {MAX_HTML_BYTES // 1000} KB",
            where=str(issue.post.source),
            hint="shorten the post or split it into two issues",
        )
    if size > WARN_HTML_BYTES:
        warning = f"the email HTML is {size / 1000:.1f} KB; Gmail clips above {MAX_HTML_BYTES // 1000} KB"
        return replace(issue, warnings=issue.warnings + (warning,))
    return issue
