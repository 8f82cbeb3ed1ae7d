"""The one Jinja2 environment: the project's ``templates/`` first, packaged defaults behind.

Autoescape is on for HTML and XML and for templates given as strings (SEC-02).
Post HTML is marked safe only because :mod:`newsletter.content` sanitized it.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from markupsafe import Markup

from .cachestore import digest
from .errors import TemplateFailure
from .i18n import Catalogue, catalogue

Environment = jinja2.Environment  # the type other modules annotate with (jinja2 is imported here only)
PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"

# The labels the default templates print come from newsletter/locales/LANG.toml (newsletter.i18n);
# a project template may ignore them.


def make_environment(project_templates: Path | None) -> jinja2.Environment:
    """A Jinja2 environment that looks in ``project_templates`` before the packaged defaults."""
    from .commonmark import code_stylesheets

    search = [str(p) for p in (project_templates, PACKAGED_TEMPLATES) if p is not None and p.is_dir()]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(["html", "xml", "xsl"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # The code highlighter's colours, for the <style> of the site and the email (issue 15).
    light, dark = code_stylesheets()
    env.globals["code_css"] = Markup(f"{light}\n{dark}")
    env.globals["code_css_light"], env.globals["code_css_dark"] = Markup(light), Markup(dark)
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


def labels(language: str) -> Catalogue:
    """The message catalogue for ``language`` (its primary subtag), English when unknown."""
    return catalogue(language)


def trusted_html(sanitized: str) -> Markup:
    """Mark HTML that went through the sanitizer as safe for autoescaping templates."""
    return Markup(sanitized)


def template_digest(env: Environment, name: str) -> str:
    """A hash of template ``name`` and of every template it extends, includes or imports."""
    seen: dict[str, str] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        try:
            source = env.loader.get_source(env, current)[0] if env.loader else ""
            pending += [n for n in jinja2.meta.find_referenced_templates(env.parse(source)) if isinstance(n, str)]
        except jinja2.TemplateError:
            source = ""  # a missing or broken template fails when rendered, with its own message
        seen[current] = source
    return digest(*(f"{n}\0{seen[n]}" for n in sorted(seen)))
