"""newsletter.toml: validation, one-line errors, secrets from the environment (SEC-07/08, LAW-01, INJ-01, ATOM-17/26)."""

from __future__ import annotations

import logging
import re
import tomllib
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from checks import assert_one_line_error
from click.testing import CliRunner
from conftest import FIXED_NOW, REPO, TOKEN_KEY

from newsletter.cli import State, cli
from newsletter.config import Secret, parse_config, secret
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
    for shown in (repr(key), str(key), f"{key}", "%s" % key, repr([key]), repr({"k": key})):
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
    keys = config.token_keys({"NEWSLETTER_TOKEN_KEY": "cur", "NEWSLETTER_TOKEN_KEY_OLD": " old1 , ,old2 "})
    assert [k.reveal() for k in keys] == ["cur", "old1", "old2"]
    assert [k.reveal() for k in config.token_keys({"NEWSLETTER_TOKEN_KEY": "cur"})] == ["cur"]
    with pytest.raises(SecretMissing):
        config.token_keys({"NEWSLETTER_TOKEN_KEY_OLD": "old1"})


def test_config_repr_holds_no_secret(config, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY_OLD", "retired-key-value")
    assert TOKEN_KEY not in repr(config) and "retired-key-value" not in repr(config)
    assert "NEWSLETTER_TOKEN_KEY" in (REPO / "newsletter.toml").read_text(encoding="utf-8")
    assert TOKEN_KEY not in (REPO / "newsletter.toml").read_text(encoding="utf-8")
