"""``newsletter.toml`` → a frozen :class:`Config`; secrets from the environment only.

The config file never holds a secret: it names the environment variable that
does (SEC-07), and a :class:`Secret` never shows its value in a ``repr`` or a
message (SEC-08).
"""

from __future__ import annotations

import os
import re
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config_keys import CONFIG_FILE, unknown_keys
from .config_shape import (
    ENV_NAME,
    LARGEST_INTEGER,
    MAX_CONFIG_DEPTH,
    SEND_NUMBERS,
    check_provider_settings,
    check_shape,
    plain_number,
    provider_tables,
    read_bounded,
    shown_value,
)
from .errors import ConfigError, ConfigErrors, SecretMissing
from .retry import RetryPolicy
from .textutil import has_xml_forbidden, header_break, is_dot_atom, is_email_address

if TYPE_CHECKING:
    from email.headerregistry import Address

ID_PREFIXES = ("tag:", "urn:uuid:", "https:", "http:")
_HOST = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+", re.IGNORECASE)
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


class Secret:
    """A secret value that refuses to be shown: ``repr`` and ``str`` mask it."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}=****)"

    __str__ = __repr__


@dataclass(frozen=True)
class SiteConfig:
    title: str
    id: str
    base_url: str
    language: str
    timezone: ZoneInfo
    author: str
    description: str = ""

    @property
    def feed_url(self) -> str:
        return self.base_url + "feed.xml"

    @property
    def domain(self) -> str:
        return urlsplit(self.base_url).hostname or "localhost"

    def post_url(self, slug: str) -> str:
        return f"{self.base_url}{slug}/"


@dataclass(frozen=True)
class EmailConfig:
    from_name: str
    from_address: str
    postal_address: str
    list_id: str
    unsubscribe_url: str
    reply_to: str = ""
    unsubscribe_mailto: str = ""

    @property
    def sender(self) -> Address:
        from email.headerregistry import Address  # here: a build never needs the email package

        return Address(display_name=self.from_name, addr_spec=self.from_address)


@dataclass(frozen=True)
class FeedConfig:
    """``[feed]``: how many entries the subscription documents hold, archives, WebSub."""

    entries: int = 20
    complete: bool = False  # one document with every post (RFC 5005 §2) instead of archives
    websub_hub: str = ""
    per_page: int = 20  # posts per page of the web archive's index


@dataclass(frozen=True)
class Config:
    """Everything ``newsletter.toml`` says, validated, with paths made absolute."""

    root: Path
    site: SiteConfig
    email: EmailConfig
    content_dir: Path
    public_dir: Path
    templates_dir: Path
    preview_dir: Path
    database_path: Path
    provider: str
    token_key_env: str
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    static_dir: Path | None = None  # files published at the root of the site as they are
    feed: FeedConfig = field(default_factory=FeedConfig)
    service_url: str = ""  # where `newsletter serve` is reachable: the site's subscribe forms post there

    def provider_settings(self, name: str) -> Mapping[str, Any]:
        """The ``[providers.NAME]`` table, empty when absent."""
        return self.providers.get(name, MappingProxyType({}))

    def token_keys(self, environ: Mapping[str, str] | None = None) -> list[Secret]:
        """Signing keys for unsubscribe tokens: the current one first, then retired ones.

        Retired keys (``<VAR>_OLD``, comma-separated) still verify tokens from
        older issues during a rotation (SEC-09).
        """
        from .tokens import check_signing_key  # tokens imports this module

        current = check_signing_key(secret(self.token_key_env, environ))
        env = os.environ if environ is None else environ
        old = [k.strip() for k in env.get(self.token_key_env + "_OLD", "").split(",") if k.strip()]
        return [current] + [Secret(self.token_key_env + "_OLD", k) for k in old]


def is_permanent_id(value: str) -> bool:
    """An absolute id that can stay forever: ``tag:``/``http(s):`` with a body, or a valid ``urn:uuid:``."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    if value.startswith("urn:uuid:"):
        try:
            uuid.UUID(value.removeprefix("urn:uuid:"))
        except ValueError:
            return False
        return True
    prefix = next((p for p in ID_PREFIXES if value.startswith(p)), None)
    return prefix is not None and len(value) > len(prefix) + 2


def secret(variable: str, environ: Mapping[str, str] | None = None) -> Secret:
    """Read a secret from the environment, or say which variable to set."""
    if not isinstance(variable, str) or not ENV_NAME.fullmatch(variable):
        raise ConfigError(
            f"{str(variable)[:60]!r} is not the name of an environment variable",
            where=CONFIG_FILE,
            hint='write the variable\'s name in quotes, e.g. "NEWSLETTER_TOKEN_KEY"',
        )
    env = os.environ if environ is None else environ
    value = env.get(variable, "")
    if not value.strip():
        raise SecretMissing(
            f"the environment variable {variable} is not set",
            hint=f"export {variable}=... (never put it in newsletter.toml)",
        )
    if header_break(value):
        raise SecretMissing(
            f"the environment variable {variable} holds a line break or NUL",
            hint="set it again without the trailing newline (e.g. from a file read with $(cat …))",
        )
    return Secret(variable, value.strip())


def find_config(start: Path | None = None) -> Path:
    """The nearest ``newsletter.toml``: in ``start`` (default: the working directory) or a parent, as git does."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        path = folder / CONFIG_FILE
        if path.is_file():
            return path
    raise ConfigError(
        f"no {CONFIG_FILE} here or in any parent folder",
        where=str(here),
        hint=f"run 'newsletter init' to start one, or use 'newsletter -C DIR …' or pass --config PATH/{CONFIG_FILE}",
    )


def config_file_of(path: Path) -> Path:
    """``path`` itself, or the ``newsletter.toml`` in it when ``path`` is a folder."""
    return path / CONFIG_FILE if path.is_dir() else path


def load_config(path: Path) -> Config:
    """Read and validate ``newsletter.toml``; every mistake names its field.

    The parser is bounded: the file's size, its nesting depth (no RecursionError),
    integers SQLite can hold and finite floats only (see :func:`check_shape`).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(read_bounded(path).decode("utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(
            "file not found", where=str(path), hint="pass --config with the path of newsletter.toml"
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigError("not valid UTF-8", where=str(path), hint="save the file as UTF-8") from error
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML ({exc})", where=str(path), hint="fix the TOML syntax at that line") from exc
    except RecursionError as error:
        raise ConfigError(
            f"nested too deeply for a config (at most {MAX_CONFIG_DEPTH} levels of tables and arrays)",
            where=str(path), hint="flatten the arrays and inline tables",
        ) from error  # fmt: skip
    except ValueError as error:  # tomllib's own: an integer of over 4300 digits
        raise ConfigError(
            "holds a number too long to read", where=str(path), hint=f"numbers stay below {LARGEST_INTEGER:,}"
        ) from error
    except OSError as exc:
        raise ConfigError(
            f"cannot read ({exc.strerror})", where=str(path), hint="check the file's permissions"
        ) from exc
    return parse_config(raw, root=path.resolve().parent, source=str(path))


TOKEN_KEY_ENV = "NEWSLETTER_TOKEN_KEY"
MAX_REPORTED_ERRORS = 20  # a file of garbage gets a readable report, not ten thousand lines


def parse_config(raw: Mapping[str, Any], *, root: Path, source: str = CONFIG_FILE) -> Config:
    """Validate an already-parsed TOML mapping (see :func:`load_config`).

    Every mistake is collected, not only the first: one error raises a :class:`ConfigError`,
    several a :class:`ConfigErrors` holding each, so the editor fixes them in one run.
    """
    if not isinstance(raw, dict):
        raise ConfigError("must hold TOML tables", where=source, hint="start with a [site] table")
    errors: list[ConfigError] = []
    check_shape(raw, source, errors)
    if errors:  # a value that is not even data (NaN, control characters, too deep): stop here
        _raise_all(errors)
    errors.extend(unknown_keys(raw, source))
    r = _Reader(raw, source, errors)
    providers = r.get(lambda: provider_tables(raw, source), {})
    for name, settings in providers.items():
        if isinstance(settings, dict):
            check_provider_settings(name, settings, source, errors)
    site = SiteConfig(
        title=r.get(lambda: r.text("site", "title", header=True), "?"),
        id=r.get(lambda: r.feed_id("site", "id"), "urn:uuid:00000000-0000-0000-0000-000000000000"),
        base_url=r.get(lambda: r.base_url("site", "base_url"), "https://invalid.example/"),
        language=r.get(lambda: r.language("site", "language", default="en"), "en"),
        timezone=r.get(lambda: r.zone("site", "timezone", default="UTC"), ZoneInfo("UTC")),
        author=r.get(lambda: r.text("site", "author", header=True), "?"),
        description=r.get(lambda: r.text("site", "description", default=""), ""),
    )
    if "@" in site.author:
        errors.append(ConfigError(
            "must be a name, not an email address (ATOM-26)", where=f"{source}: site.author", hint="write only the name"
        ))  # fmt: skip
    email = EmailConfig(
        from_name=r.get(lambda: r.text("email", "from_name", default=site.author, header=True), "?"),
        from_address=r.get(lambda: r.address("email", "from_address"), "invalid@example.org"),
        postal_address=r.get(lambda: r.text("email", "postal_address"), "?"),
        list_id=r.get(lambda: r.list_id("email", "list_id", default=f"newsletter.{site.domain}"), "invalid.example"),
        unsubscribe_url=r.get(lambda: r.url("email", "unsubscribe_url", default=site.base_url + "unsubscribe/"), ""),
        reply_to=r.get(lambda: r.address("email", "reply_to", default=""), ""),
        unsubscribe_mailto=r.get(lambda: r.address("email", "unsubscribe_mailto", default=""), ""),
    )

    def path(table: str, key: str, default: str) -> Path:
        return root / r.get(lambda: r.text(table, key, default=default), default)

    config = Config(
        root=root,
        site=site,
        email=email,
        content_dir=path("paths", "content", "content/posts"),
        public_dir=path("paths", "public", "public"),
        templates_dir=path("paths", "templates", "templates"),
        preview_dir=path("paths", "preview", "preview"),
        static_dir=path("paths", "static", "content/static"),
        database_path=path("send", "database", "newsletter.db"),
        provider=r.get(lambda: r.text("send", "provider", default="outbox"), "outbox"),
        token_key_env=r.get(lambda: r.text("send", "token_key_env", default=TOKEN_KEY_ENV), TOKEN_KEY_ENV),
        providers=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in providers.items() if isinstance(v, dict)}),
        retry=RetryPolicy(
            max_attempts=int(r.get(lambda: r.number("send", "retry_attempts", default=8), 8)),
            base_delay=r.get(lambda: r.number("send", "retry_base_delay", default=1.0), 1.0),
            max_delay=r.get(lambda: r.number("send", "retry_max_delay", default=60.0), 60.0),
            deadline=r.get(lambda: r.number("send", "retry_deadline", default=600.0), 600.0),
        ),
        feed=FeedConfig(
            entries=r.get(lambda: r.whole("feed", "entries", default=20, maximum=1000), 20),
            complete=r.get(lambda: r.flag("feed", "complete", default=False), False),
            websub_hub=r.get(lambda: r.url("feed", "websub_hub", default="", https=True), "")
            if _has(raw, "feed", "websub_hub")
            else "",
            per_page=r.get(lambda: r.whole("feed", "per_page", default=20, maximum=1000), 20),
        ),
        service_url=r.get(lambda: r.base_url("service", "url"), "") if _has(raw, "service", "url") else "",
    )
    if errors:
        _raise_all(errors)
    return config


def _raise_all(errors: list[ConfigError]) -> None:
    """Raise the one error, or all of them (each once, at most :data:`MAX_REPORTED_ERRORS`)."""
    unique = list({error.one_line(): error for error in errors}.values())[:MAX_REPORTED_ERRORS]
    if len(unique) == 1:
        raise unique[0]
    raise ConfigErrors(unique)


def _has(raw: Mapping[str, Any], table: str, key: str) -> bool:
    section = raw.get(table)
    return isinstance(section, dict) and key in section


class _Reader:
    """Typed access to ``[table] key`` values, each error naming the field."""

    def __init__(self, raw: Mapping[str, Any], source: str, errors: list[ConfigError] | None = None) -> None:
        self.raw = raw
        self.source = source
        self.errors = [] if errors is None else errors

    def get(self, read: Callable[[], Any], fallback: Any) -> Any:
        """``read()``, or ``fallback`` with its error collected: one run reports every mistake."""
        try:
            return read()
        except ConfigError as error:
            self.errors.append(error)
            return fallback

    def _where(self, table: str, key: str) -> str:
        return f"{self.source}: {table}.{key}"

    def _value(self, table: str, key: str, default: Any) -> Any:
        section = self.raw.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(
                f"[{table}] must be a table", where=self.source, hint=f"put its settings under a [{table}] header"
            )
        if key in section:
            return section[key]
        if default is None:
            raise ConfigError("is missing", where=self._where(table, key), hint=f'add {key} = "..." under [{table}]')
        return default

    def text(self, table: str, key: str, *, default: str | None = None, header: bool = False) -> str:
        value = self._value(table, key, default)
        if not isinstance(value, str):
            raise ConfigError("must be a string", where=self._where(table, key), hint='write it in "quotes"')
        if header and header_break(value):
            raise ConfigError(
                f"contains a line break or NUL ({header_break(value)}), which would break mail headers (INJ-01)",
                where=self._where(table, key),
                hint="keep it on one line",
            )
        if has_xml_forbidden(value):
            raise ConfigError(
                "contains a control character that XML and mail headers forbid",
                where=self._where(table, key),
                hint="remove it (often an invisible character pasted by accident)",
            )
        if default is None and not value.strip():
            raise ConfigError("is empty", where=self._where(table, key), hint=f"give {table}.{key} a value")
        return value.strip()

    def number(self, table: str, key: str, *, default: float) -> float:
        """A number of :data:`SEND_NUMBERS`: finite and in its range, or an error naming the range."""
        value = self._value(table, key, default)
        allowed = SEND_NUMBERS[key]
        if not allowed.admits(value):
            raise ConfigError(
                f"must be {allowed.describe()} (got {shown_value(value)})", where=self._where(table, key),
                hint=f"e.g. {key} = {plain_number(allowed.example)}",
            )  # fmt: skip
        return float(value)

    def whole(self, table: str, key: str, *, default: int, maximum: int) -> int:
        value = self._value(table, key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise ConfigError(
                f"must be a whole number from 1 to {maximum}",
                where=self._where(table, key),
                hint=f"e.g. {key} = {default}",
            )
        return value

    def flag(self, table: str, key: str, *, default: bool) -> bool:
        value = self._value(table, key, default)
        if not isinstance(value, bool):
            raise ConfigError("must be true or false", where=self._where(table, key), hint=f"write {key} = true")
        return value

    def url(self, table: str, key: str, *, default: str | None = None, https: bool = False) -> str:
        value = self.text(table, key, default=default, header=True)  # the unsubscribe URL is a header
        where = self._where(table, key)
        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
        except ValueError as error:  # an unbalanced [IPv6] host
            raise ConfigError(
                f"{value[:80]!r} is not a valid URL", where=where, hint="write it in full, e.g. https://example.org/"
            ) from error
        if https and parts.scheme != "https" and host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"{value!r} must be an https:// URL",
                where=where,
                hint="plain http only to this machine, e.g. for tests",
            )
        try:
            port = parts.port
        except ValueError as error:
            raise ConfigError(
                f"{value!r} has an invalid port", where=where, hint="write e.g. https://example.org:8443/"
            ) from error
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigError(
                f"{value!r} is not an absolute http(s) URL",
                where=where,
                hint="write it in full, e.g. https://example.org/",
            )
        if not _HOST.fullmatch(host) or parts.query or parts.fragment:
            raise ConfigError(
                f"{value!r} is not a plain site URL", where=where, hint="no spaces, query string or #fragment"
            )
        # ATOM-17: lowercase scheme and host, no default port.
        netloc = f"[{host}]" if ":" in host else host
        if port and port != {"http": 80, "https": 443}[parts.scheme]:
            netloc += f":{port}"
        return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))

    def base_url(self, table: str, key: str) -> str:
        value = self.url(table, key)
        return value if value.endswith("/") else value + "/"

    def feed_id(self, table: str, key: str) -> str:
        value = self.text(table, key, default="")
        if not is_permanent_id(value):
            raise ConfigError(
                "must be a permanent tag: or urn:uuid: id (ATOM-14/15)",
                where=self._where(table, key),
                hint=f'add id = "urn:uuid:{uuid.uuid4()}" and never change it',
            )
        return value

    def zone(self, table: str, key: str, *, default: str) -> ZoneInfo:
        name = self.text(table, key, default=default)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # OSError: a name too long for a file name
            raise ConfigError(
                f"unknown time zone {name[:60]!r}", where=self._where(table, key),
                hint='use an IANA name such as "Europe/Paris"',
            ) from error  # fmt: skip

    def language(self, table: str, key: str, *, default: str) -> str:
        """A BCP 47 language tag: it goes into every page's lang and the feed's xml:lang."""
        value = self.text(table, key, default=default)
        if not _LANGUAGE_TAG.fullmatch(value):
            raise ConfigError(
                f"{value[:40]!r} is not a language tag", where=self._where(table, key), hint='e.g. "fr" or "en-GB"'
            )
        return value

    def address(self, table: str, key: str, *, default: str | None = None) -> str:
        value = self.text(table, key, default=default, header=True)
        if value == "" and default == "":
            return ""
        if not is_email_address(value):
            raise ConfigError(
                f"{value!r} is not a valid email address",
                where=self._where(table, key),
                hint="write only the address, e.g. news@example.org (the name goes in from_name)",
            )
        return value

    def list_id(self, table: str, key: str, *, default: str) -> str:
        value = self.text(table, key, default=default, header=True)
        if not is_dot_atom(value):
            raise ConfigError(
                f"{value!r} is not a valid List-Id (RFC 2919)",
                where=self._where(table, key),
                hint="use a dotted name such as weekly.news.example.org",
            )
        return value
