"""The one Jinja2 environment: the project's ``templates/`` first, packaged defaults behind.

Autoescape is on for HTML and XML and for templates given as strings (SEC-02).
Post HTML is marked safe only because :mod:`newsletter.content` sanitized it.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .errors import TemplateFailure

PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"

# Labels of the default templates, by site language; a project template may ignore them.
LABELS = {
    "en": {
        "view_in_browser": "View this issue in your browser",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_note": "You receive this email because you subscribed to",
        "links": "Links:",
        "archive": "All issues",
        "feed": "Atom feed",
        "published": "Published",
        "correction": "[Correction] ",
        "confirm_subject": "Confirm your subscription to {site}",
        "confirm_intro": "Someone, hopefully you, asked to receive {site} by email.",
        "confirm_action": "Confirm my subscription",
        "confirm_ignore": "If it was not you, ignore this email: you will receive nothing.",
        "subscribe_title": "Subscribe",
        "subscribe_action": "Subscribe",
        "subscribe_consent": "I want to receive each new post by email. I can unsubscribe at any time, in one click.",
        "subscribe_done": "Almost there: check your inbox and confirm your subscription.",
        "confirm_done": "Thank you! Your subscription is confirmed.",
        "invalid_link": "This link is not valid any more.",
        "unsubscribe_question": "Stop receiving {site} by email?",
        "unsubscribe_done": "You are unsubscribed. You will receive nothing more.",
        "invalid_address": "This email address does not look valid.",
        "slow_down": "Too many attempts: please try again later.",
        "email_label": "Email address",
        "subscribe_by_email": "Receive each new post by email:",
        "page": "Page",
        "pages": "Pages",
        "newer": "Newer posts",
        "older": "Older posts",
        "tag": "Tag",
        "tags": "Tags",
        "tag_heading": "Posts tagged “{tag}”",
        "tag_feed": "The feed of this tag",
        "not_found_title": "Page not found",
        "not_found_text": "This page does not exist, or not any more.",
        "feed_what": "This is a feed: the newest posts of this site, for a feed reader.",
        "feed_how": "To follow it, copy this address into your feed reader (NetNewsWire, Feedly, Thunderbird…):",
        "feed_by_email": "Or receive each new post by email",
    },
    "fr": {
        "view_in_browser": "Voir ce numéro dans votre navigateur",
        "unsubscribe": "Se désabonner",
        "unsubscribe_note": "Vous recevez ce courriel car vous êtes abonné·e à",
        "links": "Liens :",
        "archive": "Tous les numéros",
        "feed": "Flux Atom",
        "published": "Publié le",
        "correction": "[Correctif] ",
        "confirm_subject": "Confirmez votre abonnement à {site}",
        "confirm_intro": "Quelqu’un, vous sans doute, a demandé à recevoir {site} par courriel.",
        "confirm_action": "Confirmer mon abonnement",
        "confirm_ignore": "Si ce n’était pas vous, ignorez ce courriel : vous ne recevrez rien.",
        "subscribe_title": "S’abonner",
        "subscribe_action": "S’abonner",
        "subscribe_consent": "Je veux recevoir chaque nouveau billet par courriel. Je peux me désabonner à tout moment, en un clic.",
        "subscribe_done": "Presque fini : vérifiez votre boîte de réception et confirmez votre abonnement.",
        "confirm_done": "Merci ! Votre abonnement est confirmé.",
        "invalid_link": "Ce lien n’est plus valable.",
        "unsubscribe_question": "Ne plus recevoir {site} par courriel\u00a0?",
        "unsubscribe_done": "Vous êtes désabonné·e. Vous ne recevrez plus rien.",
        "invalid_address": "Cette adresse ne semble pas valide.",
        "slow_down": "Trop de tentatives : réessayez plus tard.",
        "email_label": "Adresse électronique",
        "subscribe_by_email": "Recevoir chaque nouveau billet par courriel :",
        "page": "Page",
        "pages": "Pages",
        "newer": "Billets plus récents",
        "older": "Billets plus anciens",
        "tag": "Mot-clé",
        "tags": "Mots-clés",
        "tag_heading": "Billets classés « {tag} »",
        "tag_feed": "Le flux de ce mot-clé",
        "not_found_title": "Page introuvable",
        "not_found_text": "Cette page n’existe pas, ou plus.",
        "feed_what": "Ceci est un flux : les derniers billets de ce site, pour un lecteur de flux.",
        "feed_how": "Pour le suivre, copiez cette adresse dans votre lecteur de flux (NetNewsWire, Feedly, Thunderbird…) :",
        "feed_by_email": "Ou recevez chaque nouveau billet par courriel",
    },
}


def make_environment(project_templates: Path | None) -> jinja2.Environment:
    """A Jinja2 environment that looks in ``project_templates`` before the packaged defaults."""
    from .content import code_stylesheet

    search = [str(p) for p in (project_templates, PACKAGED_TEMPLATES) if p is not None and p.is_dir()]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(["html", "xml", "xsl"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # The code highlighter's colours, for the <style> of the site and the email (issue 15).
    env.globals["code_css"] = Markup(code_stylesheet())
    return env


def env_filename(env: jinja2.Environment, name: str) -> str:
    """The file template ``name`` is read from (the project's override or the packaged default)."""
    try:
        return env.get_template(name).filename or name
    except jinja2.TemplateError:
        return name


def render(env: jinja2.Environment, name: str, **context: Any) -> str:
    """Render template ``name``; a missing, broken, raising or endlessly recursing template is a
    :class:`TemplateFailure` naming the template file and line (a template is the user's code)."""
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateFailure(f"template {exc.name!r} not found", hint="restore it or remove the override") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailure(
            f"line {exc.lineno}: {exc.message}", where=exc.filename or name, hint="fix the template syntax"
        ) from None
    except RecursionError as exc:
        where, line = _template_frame(env, exc, name)
        raise TemplateFailure(
            f"line {line}: the template calls itself without end (RecursionError)", where=where,
            hint="check the macros, includes and extends that call one another",
        ) from None  # fmt: skip
    except jinja2.TemplateError as exc:
        where, line = _template_frame(env, exc, name)
        hint = "check the variables the template uses"
        raise TemplateFailure(f"line {line}: {exc}", where=where, hint=hint) from None
    except Exception as exc:  # noqa: BLE001 -- any error raised by template code is the template's
        where, line = _template_frame(env, exc, name)
        detail = " ".join(str(exc).split())[:200]
        raise TemplateFailure(
            f"line {line}: the template failed with {type(exc).__name__}" + (f" ({detail})" if detail else ""),
            where=where, hint="fix the expression on that line",
        ) from None  # fmt: skip


def _template_frame(env: jinja2.Environment, exc: BaseException, name: str) -> tuple[str, int | str]:
    """The innermost template file and line in ``exc``'s traceback (Jinja2 rewrites its frames so
    that they carry the template's file name and line number)."""
    roots = tuple(str(Path(root)) + "/" for root in getattr(env.loader, "searchpath", []))
    found: tuple[str, int | str] = (env_filename(env, name), "?")
    for frame in traceback.extract_tb(exc.__traceback__):
        if roots and frame.filename.startswith(roots):
            found = (frame.filename, frame.lineno or "?")
    return found


def labels(language: str) -> dict[str, str]:
    """Labels for ``language`` (its primary subtag), English when unknown."""
    return LABELS.get(language.split("-")[0].lower(), LABELS["en"])


def trusted_html(sanitized: str) -> Markup:
    """Mark HTML that went through the sanitizer as safe for autoescaping templates."""
    return Markup(sanitized)
