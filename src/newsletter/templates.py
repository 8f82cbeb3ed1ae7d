"""The one Jinja2 environment: the project's ``templates/`` first, packaged defaults behind.

Autoescape is on for HTML and XML and for templates given as strings (SEC-02).
Post HTML is marked safe only because :mod:`newsletter.content` sanitized it.
"""

from __future__ import annotations

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
    },
}


def make_environment(project_templates: Path | None) -> jinja2.Environment:
    """A Jinja2 environment that looks in ``project_templates`` before the packaged defaults."""
    search = [str(p) for p in (project_templates, PACKAGED_TEMPLATES) if p is not None and p.is_dir()]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(env: jinja2.Environment, name: str, **context: Any) -> str:
    """Render template ``name``; a missing or broken template is a :class:`TemplateFailure`."""
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateFailure(f"template {exc.name!r} not found", hint="restore it or remove the override")
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailure(
            f"line {exc.lineno}: {exc.message}", where=exc.filename or name, hint="fix the template syntax"
        )
    except jinja2.TemplateError as exc:
        raise TemplateFailure(f"{exc}", where=name, hint="check the variables the template uses")


def labels(language: str) -> dict[str, str]:
    """Labels for ``language`` (its primary subtag), English when unknown."""
    return LABELS.get(language.split("-")[0].lower(), LABELS["en"])


def trusted_html(sanitized: str) -> Markup:
    """Mark HTML that went through the sanitizer as safe for autoescaping templates."""
    return Markup(sanitized)
