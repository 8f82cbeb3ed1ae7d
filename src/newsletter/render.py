"""Post → :class:`Issue`: email HTML with CSS inlined once, a plain-text part, MIME per recipient.

The only importer of premailer and (with personal_mime.py) of the ``email`` package.  An issue is
rendered and inlined once; each recipient then only gets their own
unsubscribe URL by plain string substitution (INL-08, INL-10), and their own
``To``/``Message-ID``/``List-Unsubscribe`` headers.

The substitution marker is a fresh random string per rendering, so no post can name it; after
inlining, each part must hold exactly the unsubscribe links and postal address its template puts
there, or the issue is refused (LIST-07, LAW-01).  Structured headers (``List-Unsubscribe``,
``List-Unsubscribe-Post``, ``List-Id``'s bracketed id, ``Message-ID``) are written raw and folded
only between ``<…>`` items: never RFC 2047-encoded, which would hide them from mail clients (LIST-01).
"""

from __future__ import annotations

import hashlib
import html as html_escaping
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import quote

import cssutils
from premailer import Premailer

from .config import Config
from .content import Post
from .errors import ConfigError, IssueTooLarge, TemplateFailure
from .images import sized_images
from .plaintext import html_to_text
from .templates import Environment, env_filename, labels, render, trusted_html
from .textutil import check_header_value
from .tokens import LONGEST_TOKEN_CHARS, unsubscribe_url

Inliner: TypeAlias = Premailer  # the type other modules annotate with (premailer is imported here only)

# Every substitution marker starts with this and goes on with 32 random hex digits drawn for one
# rendering: characters premailer leaves alone, and a value no post can know in advance (so a
# post linking to "https://evil.example/?<marker>" never receives a subscriber's signed URL).
UNSUBSCRIBE_PLACEHOLDER = "NEWSLETTER-UNSUBSCRIBE-"
ISSUE_HTML = "email/issue.html"
ISSUE_TEXT = "email/issue.txt"
WARN_HTML_BYTES = 90_000
MAX_HTML_BYTES = 102_000  # Gmail clips above ~102 KB, hiding the footer and unsubscribe link (SIZE-01)
# The longest unsubscribe URL a recipient can get; used to measure the worst case.
_LONGEST_TOKEN = "x" * 120
# Python's SMTP policy re-folds any raw header line over 78 characters, RFC 2047-encoding what it
# cannot fold; our raw headers are folded by us, at legal points only, so it must leave them be.
_POLICY = SMTP.clone(refold_source="none")
# RFC 6532: a recipient whose address is not ASCII gets raw UTF-8 headers, sent only with
# SMTPUTF8; every other message keeps the ASCII policy (and its RFC 2047 words).
_UTF8_POLICY = _POLICY.clone(utf8=True)
SOFT_LINE = 78  # RFC 5322 §2.1.1: SHOULD
HARD_LINE = 998  # RFC 5322 §2.1.1: MUST
# RFC 3986 characters allowed raw inside "<…>" of RFC 2369; "," and the rest are percent-encoded.
_URI_SAFE = "-._~:/?#[]@!$&'()*+;=%"

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
    placeholder: str = UNSUBSCRIBE_PLACEHOLDER
    archive_url: str = ""  # the web archive, for List-Archive (RFC 2369)
    warnings: tuple[str, ...] = ()
    # The message serialised once per send date, cut for substitution (personal_mime.py).
    _personal: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    def html_with_url(self, url: str) -> str:
        """The HTML part with ``url`` (escaped once) where the template put the unsubscribe URL."""
        return self.html.replace(self.placeholder, html_escaping.escape(url))

    def text_with_url(self, url: str) -> str:
        """The text part with ``url`` where the template put the unsubscribe URL."""
        return self.text.replace(self.placeholder, url)

    def personal_html(self, recipient: Recipient) -> str:
        return self.html_with_url(recipient.unsubscribe_url)

    def personal_text(self, recipient: Recipient) -> str:
        return self.text_with_url(recipient.unsubscribe_url)

    def message_id(self, recipient: Recipient) -> str:
        """Deterministic per (issue, recipient): a replay after a crash carries the same id."""
        return f"<{self.key}.{recipient.subscriber_id}@{self.domain}>"

    def list_unsubscribe_items(self, recipient: Recipient) -> list[str]:
        """The ``<URI>`` items of List-Unsubscribe: the HTTPS one-click URL first, then the mailto."""
        items = [f"<{header_uri(recipient.unsubscribe_url)}>"]
        if self.unsubscribe_mailto:
            items.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
        return items

    def list_unsubscribe(self, recipient: Recipient) -> str:
        """RFC 2369/8058 value on one line, for providers that take header values as data."""
        return ", ".join(self.list_unsubscribe_items(recipient))

    @property
    def list_archive(self) -> str:
        """RFC 2369 List-Archive value: the web archive, where every issue stays readable."""
        return f"<{header_uri(self.archive_url)}>"

    @property
    def list_id_header(self) -> str:
        """RFC 2919 value on one line: the site title as a quoted phrase, then ``<list id>``."""
        return f"{_quoted_phrase(self.list_name)} <{self.list_id}>"

    def message_for(self, recipient: Recipient, *, date: datetime) -> EmailMessage:
        """The complete MIME message for one recipient (HDR-01…06, MIME-01…04, LIST-01/02/06)."""
        check_header_value(recipient.email, field="recipient address")
        check_header_value(recipient.unsubscribe_url, field="unsubscribe URL")
        message = EmailMessage(policy=_policy_for(recipient.email))
        message["From"] = self.sender
        message["To"] = _address(recipient.email)
        if self.reply_to:
            message["Reply-To"] = Address(addr_spec=self.reply_to)
        message.set_raw("Subject", _encoded("Subject", self.subject))
        message["Date"] = format_datetime(date)
        message.set_raw("Message-ID", folded("Message-ID", [self.message_id(recipient)]))
        message.set_raw("List-Id", folded("List-Id", [_encoded("List-Id", _quoted_phrase(self.list_name)),
                                                      f"<{self.list_id}>"], separator=""))  # fmt: skip
        message.set_raw("List-Unsubscribe", folded("List-Unsubscribe", self.list_unsubscribe_items(recipient)))
        message.set_raw("List-Unsubscribe-Post", folded("List-Unsubscribe-Post", ["List-Unsubscribe=One-Click"]))
        if self.archive_url:
            message.set_raw("List-Archive", folded("List-Archive", [self.list_archive]))
        message.set_content(self.personal_text(recipient), subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(self.personal_html(recipient), subtype="html", charset="utf-8", cte="quoted-printable")
        # Deterministic too, so a replay is byte-identical; "=" never occurs in a QP body unescaped.
        message.set_boundary(f"=={self.key}.{recipient.subscriber_id}==")
        return message

    def message_bytes(self, recipient: Recipient, *, date: datetime) -> bytes:
        """The bytes of :meth:`message_for`, made by substitution into one serialised message."""
        messages = self._personal.get(date)
        if messages is None:
            from .personal_mime import PersonalMessages

            messages = self._personal[date] = PersonalMessages(self, date)
        return messages.bytes_for(recipient)


def confirmation_message(
    config: Config, env: Environment, *, to: str, confirm_url: str, date: datetime, key: str
) -> EmailMessage:
    """The double opt-in email: one link to a page with a confirm button (LAW-06)."""
    check_header_value(to, field="subscriber address")
    site = config.site
    context = {"site": site, "labels": labels(site.language), "confirm_url": confirm_url,
               "postal_address": config.email.postal_address}  # fmt: skip
    text = render(env, "email/confirm.txt", **context)
    html = make_inliner().transform(render(env, "email/confirm.html", **context), pretty_print=False)
    message = EmailMessage(policy=_policy_for(to))
    message["From"] = config.email.sender
    message["To"] = _address(to)
    message.set_raw("Subject", _encoded("Subject", labels(site.language)["confirm_subject"].format(site=site.title)))
    message["Date"] = format_datetime(date)
    message.set_raw("Message-ID", folded("Message-ID", [f"<confirm.{key}@{site.domain}>"]))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def _policy_for(address: str):
    """The SMTPUTF8 policy only for a message to a non-ASCII address (RFC 6532), else ASCII's."""
    return _POLICY if address.isascii() else _UTF8_POLICY


def _address(address: str) -> Address:
    """``address`` as a header value; built from its parts, since parsing an ``addr_spec`` with a
    non-ASCII local part raises even under the UTF-8 policy (CPython's NonASCIILocalPartDefect)."""
    local, _, domain = address.rpartition("@")
    return Address(username=local, domain=domain)


def issue_key(post: Post, variant: str = "") -> str:
    """A short stable id for one rendering of a post: same post and content, same key."""
    digest = hashlib.sha256(f"{post.id}\n{post.content_hash}\n{variant}".encode()).hexdigest()
    return digest[:20]


class _OfflinePremailer(Premailer):
    """premailer's ``allow_network=False`` stops ``<link>`` fetches only; cssutils would still
    follow ``@import url(https://…)``.  Its fetcher is replaced by one that fetches nothing."""

    def _parse_css_string(self, css_body: str, validate: bool = True) -> Any:
        return cssutils.CSSParser(fetcher=lambda url: (None, ""), validate=validate).parseString(css_body)


def _encoded(name: str, value: str) -> str:
    """RFC 2047 encoding done by ``email.header``: the policy's own folding of non-ASCII
    subjects can exceed 75-character encoded-words and lose spaces (HDR-04, CPython gh-144156)."""
    if value.isascii() and "=?" not in value:  # ASCII that looks like an encoded-word is encoded too
        return value
    return Header(value, "utf-8", maxlinelen=76, header_name=name).encode(linesep="\r\n")


def header_uri(url: str) -> str:
    """``url`` as it may stand inside ``<…>`` of a raw RFC 2369 header: ASCII URI characters only,
    anything else (non-ASCII, spaces, commas) percent-encoded; existing escapes kept."""
    return quote(url, safe=_URI_SAFE)


def folded(name: str, items: Sequence[str], *, separator: str = ",") -> str:
    """A raw header value: ``items`` joined by ``separator`` and a space, a line break put only
    between two items and only when the line would pass 78 characters.  An item is never split
    or encoded, so a line may be longer than 78; never longer than RFC 5322's 998."""
    lines = [""]
    for index, item in enumerate(items):
        piece = item + (separator if index < len(items) - 1 else "")
        start = len(name) + 2 if len(lines) == 1 else 1  # "Name: " on the first line, one space after
        if lines[-1] and start + len(lines[-1]) + 1 + len(piece.splitlines()[0]) > SOFT_LINE:
            lines.append(piece)
        else:
            lines[-1] = f"{lines[-1]} {piece}" if lines[-1] else piece
    value = "\r\n ".join(lines)
    width = max(len(line) for line in f"{name}: {value}".split("\r\n"))
    if width > HARD_LINE:
        raise ValueError(f"a {name} header line of {width} characters exceeds the {HARD_LINE} of RFC 5322")
    return value


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
    env: Environment,
    *,
    inliner: Premailer | None = None,
    subject_prefix: str = "",
    variant: str = "",
    text_body: str | None = None,
) -> Issue:
    """Render and inline ``post`` once; refuse it when Gmail would clip it or when a part lacks
    the unsubscribe link or the postal address its template puts there.

    ``text_body`` replaces the plain text derived from the HTML (a digest has its own template)."""
    where = str(post.source)
    subject = check_header_value(f"{subject_prefix}{post.title}", field="title (the Subject)", where=where)
    site, mail = config.site, config.email
    placeholder = UNSUBSCRIBE_PLACEHOLDER + secrets.token_hex(16)
    common = {
        "site": site,
        "post": post,
        "subject": subject,
        "labels": labels(site.language),
        "postal_address": mail.postal_address,
        "unsubscribe_url": placeholder,
    }
    content = sized_images(post.html, _image_roots(config, post))
    raw_html = render(env, ISSUE_HTML, content=trusted_html(content), preheader=post.preheader, **common)
    inlined = (inliner or make_inliner()).transform(raw_html, pretty_print=False)
    # MIME text ends with a line end; ending with one here keeps the part equal to what we rendered.
    inlined = inlined if inlined.endswith("\n") else inlined + "\n"
    text = html_to_text(post.html)
    body, links = (text.body, text.links) if text_body is None else (text_body, [])
    text_part = render(env, ISSUE_TEXT, body=body, links=links, **common)
    # The templates alone, with an empty post: what each part must hold whatever the post says.
    skeleton_html = render(env, ISSUE_HTML, content=trusted_html(""), preheader="", **common)
    skeleton_text = render(env, ISSUE_TEXT, body="", links=[], **common)
    footer = _FooterCheck(env, post, placeholder, mail.postal_address)
    footer.check_html(skeleton_html, inlined)
    footer.check_text(skeleton_text, text_part)
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
        archive_url=config.site.base_url,
        placeholder=placeholder,
    )
    check_header_value(issue.list_name, field="site.title (the List-Id)", where=where)
    _check_header_fits(issue, config.email.unsubscribe_url)
    return _check_size(issue, config.email.unsubscribe_url)


def _image_roots(config: Config, post: Post) -> list[tuple[str, Path]]:
    """Where a post's images are on disk: its page bundle, then the static folder."""
    roots = [(post.url, post.bundle)] if post.bundle is not None else []
    if config.static_dir is not None:
        roots.append((config.site.base_url, config.static_dir))
    return roots


def _check_header_fits(issue: Issue, unsubscribe_base: str) -> None:
    """The longest personal List-Unsubscribe line stays within RFC 5322's 998 characters (MIME-03)."""
    worst = Recipient(0, "x@example.org", unsubscribe_url(unsubscribe_base, "x" * LONGEST_TOKEN_CHARS))
    try:
        folded("List-Unsubscribe", issue.list_unsubscribe_items(worst))
    except ValueError:
        raise ConfigError(
            f"is too long for a mail header line ({len(header_uri(worst.unsubscribe_url))} characters with a token)",
            where="newsletter.toml: email.unsubscribe_url",
            hint="use a shorter unsubscribe URL (a few hundred characters at most)",
        ) from None


class _HtmlFacts(HTMLParser):
    """What a reader sees in an HTML part: the links' targets and the visible text."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self._hidden = 0
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "title"):
            self._hidden += 1
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value is not None)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join("".join(self.text).split())


_SIMPLIFY = "simplify the post's markup (very deep nesting is cut when the email is prepared)"


class _FooterCheck:
    """LIST-07, LAW-01, MIME-05: after rendering and inlining, each part holds exactly the
    unsubscribe links the template puts there (not one fewer, not one more: a post cannot add
    one) and at least the template's postal addresses."""

    def __init__(self, env: Environment, post: Post, placeholder: str, postal_address: str) -> None:
        self.env, self.post, self.placeholder = env, post, placeholder
        self.postal = " ".join(postal_address.split())

    def _template(self, name: str) -> str:
        return env_filename(self.env, name)

    def _refuse(self, name: str, problem: str, hint: str) -> TemplateFailure:
        return TemplateFailure(problem, where=self._template(name), hint=hint)

    def check_html(self, skeleton: str, final: str) -> None:
        template, rendered = _HtmlFacts(skeleton), _HtmlFacts(final)
        links = template.hrefs.count(self.placeholder)
        if links == 0:
            raise self._refuse(ISSUE_HTML, "has no unsubscribe link", 'add <a href="{{ unsubscribe_url }}">…</a>')
        postal = template.visible.count(self.postal)
        if postal == 0:
            raise self._refuse(ISSUE_HTML, "does not show the postal address", "add {{ postal_address }} to it")
        # Every occurrence (also outside links) and every link: the same number as the template's.
        found = (final.count(self.placeholder), rendered.hrefs.count(self.placeholder))
        self._compare(ISSUE_HTML, "HTML", found, (skeleton.count(self.placeholder), links))
        self._compare_postal(ISSUE_HTML, "HTML", rendered.visible.count(self.postal), postal)

    def check_text(self, skeleton: str, final: str) -> None:
        places = skeleton.count(self.placeholder)
        if places == 0:
            raise self._refuse(ISSUE_TEXT, "has no unsubscribe URL", "add {{ unsubscribe_url }} to it")
        postal = " ".join(skeleton.split()).count(self.postal)
        if postal == 0:
            raise self._refuse(ISSUE_TEXT, "does not show the postal address", "add {{ postal_address }} to it")
        self._compare(ISSUE_TEXT, "text", (final.count(self.placeholder),), (places,))
        self._compare_postal(ISSUE_TEXT, "text", " ".join(final.split()).count(self.postal), postal)

    def _compare(self, name: str, part: str, found: tuple[int, ...], wanted: tuple[int, ...]) -> None:
        if found != wanted:
            raise TemplateFailure(
                f"the {part} part of {self.post.source.name} holds {found[0]} unsubscribe URLs where {name} "
                f"puts {wanted[0]}", where=self._template(name), hint=_SIMPLIFY,
            )  # fmt: skip

    def _compare_postal(self, name: str, part: str, found: int, wanted: int) -> None:
        if found < wanted:
            raise TemplateFailure(
                f"the {part} part of {self.post.source.name} lost the postal address that {name} shows",
                where=self._template(name), hint=_SIMPLIFY,
            )  # fmt: skip


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


def css_parser(**options: object) -> cssutils.CSSParser:
    """A cssutils parser (cssutils, premailer's CSS parser, is imported here only)."""
    return cssutils.CSSParser(**options)


def inline_style(text: str) -> cssutils.css.CSSStyleDeclaration:
    """The declarations of a ``style`` attribute, unvalidated."""
    return cssutils.parseStyle(text, validate=False)
