"""newsletter.toml: validation, bounded parsing, one-line errors, secrets from the environment.

Covers SEC-07/08, LAW-01, INJ-01, ATOM-17/26 and issue 10 item 7 (every number finite and in range).
"""

from __future__ import annotations

import logging
import re
import tomllib
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from checks import assert_one_line_error
from conftest import FIXED_NOW, REPO, TOKEN_KEY
from newsletter.cli import State, cli
from newsletter.config import Secret, load_config, parse_config, secret
from newsletter.config_shape import MAX_CONFIG_DEPTH, PROVIDER_NUMBERS, SEND_NUMBERS
from newsletter.errors import ConfigError, SecretMissing

DEMO = tomllib.loads((REPO / "newsletter.toml").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- helpers


def set_value(project: Path, key: str, toml_value: str | None) -> Path:
    """Replace the line ``key = ...`` of the project's newsletter.toml (None deletes it)."""
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(key)} = .*\n", re.MULTILINE)
    assert len(pattern.findall(text)) == 1, key
    line = "" if toml_value is None else f"{key} = {toml_value}\n"
    path.write_text(pattern.sub(lambda _: line, text), encoding="utf-8")
    return path


def parse(table: str, key: str, value) -> object:
    """``parse_config`` on the demo config with one value changed (None deletes it)."""
    raw = {name: dict(section) for name, section in DEMO.items()}
    if value is None:
        raw[table].pop(key)
    else:
        raw[table][key] = value
    return parse_config(raw, root=Path("/srv/lettre"), source="/srv/lettre/newsletter.toml")


def subscribed(run) -> None:
    outcome = run("subscribers", "add", "lectrice@example.org")
    assert outcome.exit_code == 0, outcome.stderr


# ---------------------------------------------------------------- the demo config


def test_demo_config_loads(config, project):
    site, email = config.site, config.email
    assert site.base_url == "https://claudesuper.example.org/"
    assert site.feed_url == site.base_url + "feed.xml"
    assert site.language == "fr" and site.timezone == ZoneInfo("Europe/Paris")
    assert site.id == "urn:uuid:3a0f6f0e-6c55-4f5e-9f57-2b8f0d1c9e41"
    assert str(email.sender) == "Claude Super <lettre@claudesuper.example.org>"
    assert email.postal_address.startswith("Claude Super, 12 rue")
    assert config.content_dir == project.resolve() / "content" / "posts"
    assert config.public_dir == project.resolve() / "public"
    assert config.provider == "outbox" and config.token_key_env == "NEWSLETTER_TOKEN_KEY"
    assert dict(config.provider_settings("outbox")) == {"path": "outbox"}


def test_defaults_fill_optional_values():
    raw = {
        "site": {"title": "T", "id": "tag:example.org,2025:lettre", "base_url": "https://example.org", "author": "A"},
        "email": {"from_address": "news@example.org", "postal_address": "1 rue X, Paris"},
    }
    config = parse_config(raw, root=Path("/srv"))
    assert config.site.base_url == "https://example.org/" and config.site.language == "en"
    assert config.site.timezone == ZoneInfo("UTC") and config.email.from_name == "A"
    assert config.email.list_id == "newsletter.example.org"
    assert config.email.unsubscribe_url == "https://example.org/unsubscribe/"
    assert config.provider == "outbox" and config.database_path == Path("/srv/newsletter.db")


# ---------------------------------------------------------------- finding the file


def test_missing_config_given_with_option(project, run):
    outcome = run("build", root=project / "ailleurs")
    assert_one_line_error(outcome, str(project / "ailleurs" / "newsletter.toml"), "not found", "--config")


def test_no_config_in_the_working_folder(tmp_path, monkeypatch):
    empty = tmp_path / "vide"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = CliRunner().invoke(cli, ["build"], obj=State(clock=lambda: FIXED_NOW))
    assert_one_line_error(result, str(empty), "no newsletter.toml here", "--config")
    assert list(empty.iterdir()) == []


def test_invalid_toml_is_one_line_naming_the_file(project, run, built):
    path = project / "newsletter.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n[site\ntitle = \n", encoding="utf-8")
    assert_one_line_error(run("build"), str(path), "invalid TOML")
    assert (project / "public" / "feed.xml").read_bytes() == built


def test_config_not_utf8_is_one_line(project, run):
    path = project / "newsletter.toml"
    path.write_bytes(path.read_bytes().replace("’".encode(), b"\x92"))
    assert_one_line_error(run("build"), str(path), "not valid UTF-8")


# ---------------------------------------------------------------- bad values, through the CLI

BAD_VALUES = {
    "base-url-missing": ("base_url", None, "site.base_url: is missing"),
    "base-url-relative": ("base_url", '"blog/"', "site.base_url: 'blog/' is not an absolute http(s) URL"),
    "base-url-ftp": ("base_url", '"ftp://x"', "site.base_url: 'ftp://x' is not an absolute http(s) URL"),
    "base-url-bad-port": ("base_url", '"https://example.org:99999/"', "site.base_url"),
    "base-url-port-not-a-number": ("base_url", '"https://example.org:abc/"', "site.base_url"),
    "base-url-space-in-host": ("base_url", '"https://claude super.example.org/"', "site.base_url"),
    "from-address-invalid": ("from_address", '"not-an-address"', "email.from_address: 'not-an-address' is not a valid"),
    "from-address-with-name": ("from_address", '"Claude <a@example.org>"', "email.from_address"),
    "from-name-newline": ("from_name", '"Claude\\nBcc: x@example.org"', "email.from_name: contains a line break"),
    "title-carriage-return": ("title", '"Le blog\\r\\nBcc: x@example.org"', "site.title: contains a line break"),
    "timezone-unknown": ("timezone", '"Mars/Olympus_Mons"', "site.timezone: unknown time zone 'Mars/Olympus_Mons'"),
    "author-email": ("author", '"claude@example.org"', "site.author: must be a name, not an email address (ATOM-26)"),
    "list-id-spaces": ("list_id", '"ma lettre"', "email.list_id: 'ma lettre' is not a valid List-Id"),
    "title-not-text": ("title", "42", "site.title: must be a string"),
    "unsubscribe-url-javascript": ("unsubscribe_url", '"javascript:alert(1)"', "email.unsubscribe_url"),
    "base-url-broken-ipv6": ("base_url", '"https://[oops/"', "site.base_url: 'https://[oops/' is not a valid URL"),
    "unsubscribe-url-broken-ipv6": (
        "unsubscribe_url",
        '"http://[::1"',
        "email.unsubscribe_url: 'http://[::1' is not a",
    ),
    "timezone-too-long": ("timezone", '"' + "Europe/" * 700 + '"', "site.timezone: unknown time zone"),
    "language-not-a-tag": ("language", '"fr<b onload=x>"', "site.language: 'fr<b onload=x>' is not a language tag"),
}


@pytest.mark.parametrize("key, value, fragment", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_value_is_one_line_naming_file_and_field(project, run, built, key, value, fragment):
    set_value(project, key, value)
    before = sorted(p.name for p in project.iterdir())
    line = assert_one_line_error(run("build"), str(project / "newsletter.toml"), fragment)
    assert "Internal error" not in line
    assert (project / "public" / "feed.xml").read_bytes() == built
    assert sorted(p.name for p in project.iterdir()) == before


@pytest.mark.parametrize("value", [None, '"feed-claude-super"', '"urn:uuid:"', '"tag: avec espace"'])
def test_site_id_must_be_permanent_and_hint_has_a_fresh_uuid(value):
    minted = []
    for _ in range(2):
        with pytest.raises(ConfigError) as caught:
            parse("site", "id", None if value is None else value.strip('"'))
        assert caught.value.where.endswith("site.id") and "ATOM-14/15" in caught.value.message
        match = re.search(r'id = "urn:uuid:([0-9a-f-]{36})"', caught.value.hint)
        assert match, caught.value.hint
        minted.append(uuid.UUID(match.group(1)))
    assert minted[0].version == 4 and minted[0] != minted[1]


def test_site_id_error_through_the_cli(project, run):
    set_value(project, "id", '"feed-1"')
    line = assert_one_line_error(run("build"), "site.id", "urn:uuid:")
    assert re.search(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-", line)


# ---------------------------------------------------------------- base_url normalization (ATOM-17)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("HTTPS://ClaudeSuper.Example.ORG/", "https://claudesuper.example.org/"),
        ("https://ClaudeSuper.example.org", "https://claudesuper.example.org/"),
        ("https://example.org:443/Lettre", "https://example.org/Lettre/"),
        ("http://example.org:80/", "http://example.org/"),
        ("http://example.org:8080/blog/", "http://example.org:8080/blog/"),
        ("  https://example.org/  ", "https://example.org/"),
        ("http://[::1]:8000/", "http://[::1]:8000/"),
    ],
)
def test_base_url_is_normalized_with_a_trailing_slash(value, expected):
    site = parse("site", "base_url", value).site
    assert site.base_url == expected
    assert site.feed_url == expected + "feed.xml" and site.post_url("x") == expected + "x/"


def test_normalized_base_url_reaches_the_feed(project, run):
    set_value(project, "base_url", '"HTTPS://ClaudeSuper.Example.ORG"')
    assert run("build").exit_code == 0
    feed = (project / "public" / "feed.xml").read_text(encoding="utf-8")
    assert 'href="https://claudesuper.example.org/feed.xml"' in feed
    assert "ClaudeSuper" not in feed and "HTTPS:" not in feed


# ---------------------------------------------------------------- postal address (LAW-01)


@pytest.mark.parametrize("value", ['""', '"   "', None])
def test_empty_postal_address_stops_any_issue(project, run, value):
    subscribed(run)
    set_value(project, "postal_address", value)
    assert_one_line_error(run("preview"), "email.postal_address")
    assert not (project / "preview").exists()
    assert_one_line_error(run("send", "--yes"), "email.postal_address")
    assert not (project / "outbox").exists()


def test_postal_address_is_in_the_issue(project, run):
    assert run("preview").exit_code == 0
    address = DEMO["email"]["postal_address"]
    (folder,) = (project / "preview").iterdir()
    assert address in (folder / "email.txt").read_text(encoding="utf-8")
    assert address in (folder / "email.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------- providers


def test_unknown_provider_lists_the_known_ones(project, run):
    set_value(project, "provider", '"chimpanze"')
    subscribed(run)
    line = assert_one_line_error(run("send", "--yes"), "send.provider", "'chimpanze'")
    assert re.search(r"use one of: .*\boutbox\b", line)
    assert not (project / "outbox").exists()
    assert TOKEN_KEY not in line


# ---------------------------------------------------------------- secrets (SEC-07, SEC-08)


def test_missing_token_key_stops_send(project, run, monkeypatch):
    subscribed(run)
    monkeypatch.delenv("NEWSLETTER_TOKEN_KEY")
    assert_one_line_error(run("send", "--yes"), "NEWSLETTER_TOKEN_KEY", "not set")
    assert not (project / "outbox").exists()


def test_blank_token_key_counts_as_missing(run, monkeypatch):
    subscribed(run)
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", "   ")
    assert_one_line_error(run("send", "--yes"), "NEWSLETTER_TOKEN_KEY")


def test_token_key_variable_name_comes_from_the_config(project, run, monkeypatch):
    set_value(project, "token_key_env", '"LETTRE_CLE"')
    subscribed(run)
    monkeypatch.delenv("LETTRE_CLE", raising=False)
    assert_one_line_error(run("send", "--yes"), "LETTRE_CLE")


def test_build_does_not_need_the_token_key(project, run, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_TOKEN_KEY")
    assert run("build").exit_code == 0


def test_secret_never_shows_its_value():
    value = "s3cr3t-ne-pas-montrer"
    key = Secret("NEWSLETTER_TOKEN_KEY", value)
    for shown in (repr(key), str(key), f"{key}", f"{key}", repr([key]), repr({"k": key})):
        assert value not in shown and "NEWSLETTER_TOKEN_KEY" in shown
    assert key.reveal() == value


def test_secret_reads_the_environment_only():
    assert secret("X_KEY", {"X_KEY": "v"}).reveal() == "v"
    with pytest.raises(SecretMissing) as caught:
        secret("X_KEY", {})
    assert "X_KEY" in caught.value.message and "newsletter.toml" in caught.value.hint


def test_secret_absent_from_output_and_logs_of_a_failing_send(project, run, caplog):
    set_value(project, "provider", '"absent"')
    subscribed(run)
    caplog.set_level(logging.DEBUG)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 1
    assert TOKEN_KEY not in outcome.stdout + outcome.stderr + caplog.text


def test_token_keys_current_first_then_retired(config, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY_OLD", "a,b")
    keys = config.token_keys()
    assert [k.reveal() for k in keys] == [TOKEN_KEY, "a", "b"]
    assert keys[0].name == "NEWSLETTER_TOKEN_KEY" and {k.name for k in keys[1:]} == {"NEWSLETTER_TOKEN_KEY_OLD"}
    assert all(v not in repr(keys) for v in (TOKEN_KEY, "a,", "'a'", "'b'"))


def test_token_keys_from_explicit_environ(config):
    keys = config.token_keys({"NEWSLETTER_TOKEN_KEY": TOKEN_KEY, "NEWSLETTER_TOKEN_KEY_OLD": " old1 , ,old2 "})
    assert [k.reveal() for k in keys] == [TOKEN_KEY, "old1", "old2"]
    assert [k.reveal() for k in config.token_keys({"NEWSLETTER_TOKEN_KEY": TOKEN_KEY})] == [TOKEN_KEY]
    with pytest.raises(SecretMissing):
        config.token_keys({"NEWSLETTER_TOKEN_KEY_OLD": "old1"})


def test_config_repr_holds_no_secret(config, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY_OLD", "retired-key-value")
    assert TOKEN_KEY not in repr(config) and "retired-key-value" not in repr(config)
    assert "NEWSLETTER_TOKEN_KEY" in (REPO / "newsletter.toml").read_text(encoding="utf-8")
    assert TOKEN_KEY not in (REPO / "newsletter.toml").read_text(encoding="utf-8")


# ---------------------------------------------------------------- numbers, shapes and bounds (issue 10, item 7)


def with_send(key: str, value) -> object:
    return parse("send", key, value)


def with_provider(name: str, settings) -> object:
    raw = {table: dict(section) for table, section in DEMO.items()}
    raw["providers"] = {**raw["providers"], name: settings}
    return parse_config(raw, root=Path("/srv/lettre"), source="/srv/lettre/newsletter.toml")


@pytest.mark.parametrize("key", sorted(SEND_NUMBERS))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1, 10**7, True, "5", [1]])
def test_every_send_number_is_finite_and_in_range_with_an_error_naming_key_and_range(key, value):
    allowed = SEND_NUMBERS[key]
    with pytest.raises(ConfigError) as caught:
        with_send(key, value)
    line = caught.value.one_line()
    assert f"send.{key}" in line and allowed.describe() in line and f"{key} = " in caught.value.hint
    assert "\n" not in line


@pytest.mark.parametrize("key", sorted(SEND_NUMBERS))
def test_each_send_number_accepts_its_bounds(key):
    allowed = SEND_NUMBERS[key]
    for value in (allowed.minimum, allowed.maximum, allowed.example):
        config = with_send(key, int(value) if allowed.whole else float(value))
        field = {"retry_attempts": "max_attempts", "retry_base_delay": "base_delay",
                 "retry_max_delay": "max_delay", "retry_deadline": "deadline"}[key]  # fmt: skip
        assert getattr(config.retry, field) == value


def test_retry_attempts_must_be_whole():
    with pytest.raises(ConfigError, match="whole number from 1 to 100"):
        with_send("retry_attempts", 2.5)
    assert with_send("retry_attempts", 3.0).retry.max_attempts == 3


@pytest.mark.parametrize("key", sorted(PROVIDER_NUMBERS))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1, 10**9, "30", False])
def test_every_provider_number_is_checked_at_load_for_every_provider(key, value):
    with pytest.raises(ConfigError) as caught:
        with_provider("smtp", {"host": "127.0.0.1", key: value})
    assert f"providers.smtp.{key}" in caught.value.one_line()
    assert PROVIDER_NUMBERS[key].describe() in caught.value.one_line()


@pytest.mark.parametrize("settings", ["outbox", 5, ["a"], True])
def test_a_providers_entry_that_is_not_a_table_is_a_config_error(settings):
    with pytest.raises(ConfigError, match="must be a table of settings") as caught:
        with_provider("smtp", settings)
    assert caught.value.where.endswith("providers.smtp")


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"host": ["a"]}, "providers.x.host: must be a string"),
        ({"path": {"a": 1}}, "providers.x.path: must be a string"),
        ({"extra": [1, 2]}, "providers.x.extra: must be a single value"),
        ({"api_key_env": ["A"]}, "providers.x.api_key_env: must name an environment variable"),
        ({"api_key_env": "NOT A NAME"}, "providers.x.api_key_env: must name an environment variable"),
        ({"host": "a\x00b"}, "providers.x.host: contains the control character U+0000"),
        ({"big": 2**64}, "providers.x.big: is too large a number"),
        ({"ratio": float("nan")}, "providers.x.ratio: is nan, not a finite number"),
    ],
)
def test_provider_settings_are_typed_at_load(settings, fragment):
    with pytest.raises(ConfigError) as caught:
        with_provider("x", settings)
    assert fragment in caught.value.one_line()


def test_depth_is_bounded_for_any_key():
    deep: dict = {"b": 1}
    for _ in range(MAX_CONFIG_DEPTH):
        deep = {"a": deep}
    with pytest.raises(ConfigError, match=f"nested more than {MAX_CONFIG_DEPTH} levels deep"):
        parse("site", "extra", deep)
    with pytest.raises(ConfigError, match="unknown key 'extra'"):  # a few levels pass the shape check
        parse("site", "extra", {"a": {"b": [1, [2]]}})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply for a config"),
        ("x = " + "{a=" * 3000 + "1" + "}" * 3000, "nested too deeply for a config"),
        ("x = " + "9" * 5000, "holds a number too long to read"),
        ("# " + "x" * 1_100_000, "is over 1 MB"),
    ],
    ids=["arrays", "inline-tables", "long-integer", "huge"],
)
def test_the_toml_parser_is_bounded(tmp_path, text, fragment):
    path = tmp_path / "newsletter.toml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment) as caught:
        load_config(path)
    assert caught.value.where == str(path)


def test_only_a_regular_file_is_read_as_config():
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(Path("/dev/zero"))


@pytest.mark.parametrize("name", [["NEWSLETTER_TOKEN_KEY"], 42, None, "A B", ""])
def test_secret_refuses_a_variable_name_that_is_not_one(name):
    with pytest.raises(ConfigError, match="is not the name of an environment variable"):
        secret(name, {"A B": "x"})
