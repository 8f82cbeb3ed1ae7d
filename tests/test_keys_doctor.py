"""Keys you can trust (issue 15): a signing key of at least 256 bits, webhook secrets that are not
placeholders, and `newsletter doctor` reading the setup as an operator would."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from checks import assert_one_line_error
from conftest import TOKEN_KEY
from newsletter.config import Secret
from newsletter.doctor import OK, PROBLEM, WARNING, file_mode, python_version
from newsletter.errors import SecretMissing
from newsletter.tokens import MIN_KEY_BITS, check_signing_key, check_webhook_secret, key_bits

MAKE_KEY = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


@pytest.mark.parametrize("value", [
    "a", "clef", "x" * 200, "abab" * 30, "test-signing-key-not-a-secret",
    # fresh 128-bit keys: random, but named, so every test worker collects the same ids
    pytest.param(secrets.token_hex(16), id="random-128-bit-hex"),
    pytest.param(secrets.token_urlsafe(16), id="random-128-bit-urlsafe"),
])  # fmt: skip
def test_short_or_repetitive_signing_keys_are_refused_with_one_line_and_a_fix(value, monkeypatch, run, project):
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", value)
    outcome = run("send", "--yes")
    assert_one_line_error(outcome, "NEWSLETTER_TOKEN_KEY", str(MIN_KEY_BITS))
    assert MAKE_KEY in outcome.stderr and (len(value) < 8 or value not in outcome.stderr)
    assert not (project / "outbox").exists()


def test_the_suggested_command_makes_an_accepted_key_every_time():
    made = subprocess.run([sys.executable, "-c", MAKE_KEY.split('"')[1]], capture_output=True, text=True, check=True)
    assert key_bits(made.stdout.strip()) >= MIN_KEY_BITS
    # token_urlsafe's alphabet counts whole even when one draw holds no digit or "-".
    assert all(key_bits(secrets.token_urlsafe(32)) >= MIN_KEY_BITS for _ in range(2000))
    assert all(key_bits(secrets.token_hex(32)) >= MIN_KEY_BITS for _ in range(2000))
    assert check_signing_key(Secret("K", TOKEN_KEY)).reveal() == TOKEN_KEY


@pytest.mark.parametrize("value", ["changeme", "CHANGE-ME", "your-webhook-secret", "<secret>", "xxxxxxxx",
                                   "whsec_...", "${WEBHOOK_KEY}", "secret", "placeholder"])  # fmt: skip
def test_placeholder_webhook_secrets_are_refused(value):
    with pytest.raises(SecretMissing) as caught:
        check_webhook_secret(Secret("NEWSLETTER_MAILGUN_WEBHOOK_KEY", value))
    assert "NEWSLETTER_MAILGUN_WEBHOOK_KEY" in caught.value.one_line() and "placeholder" in caught.value.one_line()


def test_real_webhook_secrets_pass():
    for value in ("key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "whsec_" + secrets.token_urlsafe(24), "pm-hook-password"):
        assert check_webhook_secret(Secret("V", value)).reveal() == value


@pytest.mark.parametrize(
    "version, level",
    [((3, 11, 9), PROBLEM), ((3, 11, 10), OK), ((3, 12, 4), PROBLEM), ((3, 12, 5), OK), ((3, 13, 0), OK),
     ((3, 10, 14), PROBLEM)],
)  # fmt: skip
def test_doctor_python_versions_with_the_header_injection_fixes(version, level):
    assert python_version(version).level == level


def test_file_modes_are_read_from_the_file_system(tmp_path):
    path = tmp_path / ".env"
    path.write_text("NEWSLETTER_TOKEN_KEY=x\n")
    for mode, level in ((0o600, OK), (0o640, WARNING), (0o644, PROBLEM)):
        os.chmod(path, mode)
        finding = file_mode(path, ".env")
        assert finding.level == level and f"{mode:o}" in finding.detail


def test_doctor_command_reports_every_check(run, project, monkeypatch):
    env_file = project / ".env"
    env_file.write_text(f"NEWSLETTER_TOKEN_KEY={TOKEN_KEY}\n")
    os.chmod(env_file, 0o644)
    outcome = run("doctor")
    lines = outcome.stdout.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == ["python", "signing", "ledger", ".env", "provider"]
    assert any(line.startswith("PROBLEM") and "chmod 600" in line and ".env" in line for line in lines)
    assert any("signing key" in line and line.startswith("ok") for line in lines)
    assert any("provider outbox" in line and "preflight" in line for line in lines)
    assert outcome.exit_code == 1
    os.chmod(env_file, 0o600)
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", "short")
    weak = run("doctor")
    assert any(line.startswith("PROBLEM") and "NEWSLETTER_TOKEN_KEY" in line for line in weak.stdout.splitlines())
    assert weak.exit_code == 1
