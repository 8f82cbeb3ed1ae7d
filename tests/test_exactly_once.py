"""Exactly once, proven: random SIGKILLs, concurrent senders, stale locks, corrections, resolve,
and builds killed mid-write.  Senders run as real subprocesses."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree

from chaos import COMMAND, lock_holder, run_chaos, wait_until
from checks import ledger_rows
from conftest import TOKEN_KEY, write_post
from fakes import FakeResend
from newsletter.errors import EXIT_LOCKED, EXIT_NOTHING_TO_SEND
from newsletter.lock import SendLock

NEWEST = "social-business-parcours-singulier"


def cli_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_CONFIG"}
    return {**env, "NEWSLETTER_TOKEN_KEY": TOKEN_KEY, **extra}


def newsletter(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMMAND, *args], cwd=project, env=env or cli_env(), capture_output=True, text=True, timeout=300
    )


def import_readers(project: Path, count: int, env: dict | None = None) -> None:
    (project / "people.csv").write_text("email\n" + "".join(f"r{n}@example.org\n" for n in range(count)))
    assert newsletter(project, "subscribers", "import", "people.csv", env=env).returncode == 0


# -- chaos ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["resend", "postmark"])
def test_random_sigkills_never_duplicate_or_lose_a_send(tmp_path, provider):
    """2,000 subscribers, 10% transient faults, latency, ≥20 SIGKILLs at random moments, resumed to the end.

    Resend replays with the same Idempotency-Key; Postmark has none and is reconciled by its
    metadata search.  By the fake's own record every subscriber got exactly one copy (SEC-12).
    """
    report = run_chaos(tmp_path / "site", provider, subscribers=2000, kills=20, seed=7)
    print(report.line())
    assert report.kills >= 20
    assert report.faults > 0
    assert report.duplicates == 0
    assert report.missing <= report.unknown_resolved  # only what was reported unknown and resolved
    if provider == "resend":
        assert report.missing == 0 and report.unknown_resolved == 0


# -- one sender at a time ---------------------------------------------------------------------


def test_two_concurrent_senders_exactly_one_sends(project):
    import_readers(project, 1500)
    processes = [
        subprocess.Popen(
            [COMMAND, "send", "--yes"],
            cwd=project,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, EXIT_NOTHING_TO_SEND], [0, EXIT_LOCKED])
    if EXIT_LOCKED in codes:
        refused = next(err for code, err in outcomes if code == EXIT_LOCKED)
        assert "another newsletter send is running" in refused and refused.count("\n") == 1
    files = list((project / "outbox" / "new").glob("*.eml"))
    assert len(files) == 1500 and len({f.name for f in files}) == 1500
    assert ledger_rows(project, "SELECT count(*) FROM issues") == [(1,)]


def test_a_held_lock_stops_a_second_send_at_once(project, config):
    import_readers(project, 3)
    with SendLock(config.database_path.with_name("newsletter.db.lock")):
        started = time.monotonic()
        result = newsletter(project, "send", "--yes")
        assert time.monotonic() - started < 10
    assert result.returncode == EXIT_LOCKED
    assert f"pid {os.getpid()}" in result.stderr
    assert not (project / "outbox").exists()
    assert newsletter(project, "send", "--yes").returncode == 0


def test_a_killed_senders_lock_is_taken_over_and_the_send_finished(project):
    with FakeResend() as fake:
        fake.latency = 0.05
        config = project / "newsletter.toml"
        text = config.read_text().replace('provider = "outbox"', 'provider = "resend"')
        config.write_text(text + f'\n[providers.resend]\nbase_url = "{fake.url}"\nbatch_size = 5\n')
        env = cli_env(NEWSLETTER_RESEND_API_KEY="re_test_key")
        import_readers(project, 200, env)
        sender = subprocess.Popen([COMMAND, "send", "--yes"], cwd=project, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)  # fmt: skip
        lock_file = project / "newsletter.db.lock"
        # Killed mid-send: it holds the lock and the fake has some, not all, of the messages.
        wait_until(
            lambda: lock_holder(lock_file) == sender.pid and fake.count_by_recipient(),
            timeout=120, what="the sender to hold the lock and deliver a first batch",
        )  # fmt: skip
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        assert 0 < len(fake.count_by_recipient()) < 200
        lock = json.loads(lock_file.read_text())
        assert lock["pid"] == sender.pid  # left behind by the killed process
        result = newsletter(project, "send", "--yes", env=env)
        assert result.returncode == 0, result.stderr
        assert f"took over the lock left by pid {sender.pid}" in result.stderr
        assert "Resuming" in result.stdout
        counts = fake.count_by_recipient()
    assert len(counts) == 200 and set(counts.values()) == {1}
    assert (project / "newsletter.db.lock").read_text() == ""  # released cleanly


# -- edited after sending ---------------------------------------------------------------------


def test_an_edited_post_is_never_resent_automatically_but_can_be_corrected(run, project):
    run("subscribers", "add", "alice@example.org", "bruno@example.org", "camille@example.org")
    assert run("send", "--yes").exit_code == 0
    run("subscribers", "remove", "bruno@example.org")
    run("subscribers", "add", "late@example.org")  # joined after the issue: gets no correction
    source = project / "content" / "posts" / f"{NEWEST}.md"
    source.write_text(
        source.read_text(encoding="utf-8").replace("Pour en parler", "Pour en reparler"), encoding="utf-8"
    )

    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND
    again = run("send", "--yes", NEWEST)
    assert again.exit_code == 1 and "--correction" in again.stderr
    status = json.loads(run("status", "--json", "--summary").stdout)["posts"][0]
    assert status["issues"][0]["changed_since_sent"] is True
    assert "(changed since sent)" in run("status").stdout.splitlines()[0]

    corrected = run("send", "--yes", "--correction", NEWEST)
    assert corrected.exit_code == 0, corrected.stderr
    assert "Recipients: 2" in corrected.stdout
    subjects = {}
    for path in (project / "outbox" / "new").glob("*.eml"):
        import email
        import email.policy

        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subjects.setdefault(str(message["Subject"]), set()).add(str(message["To"]))
    correction = next(s for s in subjects if s.startswith("[Correctif] "))
    assert subjects[correction] == {"alice@example.org", "camille@example.org"}
    assert run("send", "--yes", "--correction", NEWEST).exit_code == EXIT_NOTHING_TO_SEND
    lines = run("status").stdout.splitlines()
    assert "correction sent" in lines[0] and "changed since sent" not in lines[0]


def test_correction_of_a_post_never_sent_is_refused(run):
    run("subscribers", "add", "alice@example.org")
    outcome = run("send", "--yes", "--correction", "e20-petite-entreprise")
    assert outcome.exit_code == 1 and "never mailed" in outcome.stderr


# -- unknown deliveries and resolve -------------------------------------------------------------


def crash_after_provider_call(monkeypatch):
    """The process dies after the provider took the chunk and before the ledger heard of it."""
    from newsletter import send_ledger

    def die(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(send_ledger.SendLedger, "settle_chunk", die)


@pytest.mark.parametrize("decision, copies", [("--assume-sent", 1), ("--resend", 2)])
def test_resolve_lets_the_editor_decide_what_nothing_can_tell(run, project, monkeypatch, decision, copies):
    """A provider with neither idempotency nor lookup: the chunk stays unknown until resolved."""
    from dataclasses import replace

    from newsletter.providers.outbox import OutboxProvider

    blind = replace(OutboxProvider.capabilities, idempotency=False, lookup=False)
    monkeypatch.setattr(OutboxProvider, "capabilities", blind)
    run("subscribers", "add", "alice@example.org")
    crash_after_provider_call(monkeypatch)
    assert run("send", "--yes").exit_code == 130
    monkeypatch.undo()
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)
    monkeypatch.setattr(OutboxProvider, "capabilities", blind)
    stopped = run("send", "--yes")
    assert stopped.exit_code == 1 and "may or may not have been delivered" in stopped.stderr
    assert ledger_rows(project, "SELECT state FROM deliveries") == [("unknown",)]  # reported, not guessed
    assert run("resolve", NEWEST).exit_code == 2  # a decision is required
    resolved = run("resolve", NEWEST, decision)
    assert resolved.exit_code == 0 and resolved.stdout.startswith("1 uncertain deliveries")
    # The outbox is idempotent by file name, so count the provider calls instead.
    calls = []
    real = OutboxProvider.send_chunk
    monkeypatch.setattr(OutboxProvider, "send_chunk", lambda self, request: calls.append(1) or real(self, request))
    assert run("send", "--yes").exit_code in (0, EXIT_NOTHING_TO_SEND)
    assert len(calls) == copies - 1
    assert ledger_rows(project, "SELECT status FROM issues") == [("sent",)]


def test_resolve_of_an_unknown_issue_is_a_clear_error(run):
    outcome = run("resolve", "nothing-pending", "--assume-sent")
    assert outcome.exit_code == 1 and "no unfinished issue" in outcome.stderr


# -- atomic outputs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_killing_build_50_times_never_leaves_an_unparsable_feed(project):
    """Temp file + rename: at any instant feed.xml is the old document or the new one.

    Each round edits a post (so the feed really is rewritten), starts `newsletter build` and
    SIGKILLs it at a random moment of its run, until 50 builds have been killed.
    """
    posts = project / "content" / "posts"
    for n in range(150):
        write_post(posts, f"billet-{n}", date=f'"2020-01-01T{n % 24:02d}:{n % 60:02d}:00+01:00"',
                   id=f'"urn:uuid:00000000-0000-4000-8000-{n:012d}"', body="Texte « long ». " * 100)  # fmt: skip
    assert newsletter(project, "build").returncode == 0
    # The builds killed are rebuilds (one post edited), shorter than the first; their length is
    # measured, and measured again whenever one ends before its kill (the machine's load varies).
    write_post(posts, "billet-0", body="Version 0 « modifiée ».", id='"urn:uuid:00000000-0000-4000-8000-000000000000"')
    started = time.monotonic()
    assert newsletter(project, "build").returncode == 0
    duration = time.monotonic() - started
    rng = random.Random(3)
    feed = project / "public" / "feed.xml"
    kills = rounds = 0
    while kills < 50 and rounds < 200:
        rounds += 1
        write_post(
            posts,
            "billet-0",
            body=f"Version {rounds} « modifiée ».",
            id='"urn:uuid:00000000-0000-4000-8000-000000000000"',
        )
        started = time.monotonic()
        process = subprocess.Popen([COMMAND, "build"], cwd=project, env=cli_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            process.wait(timeout=rng.uniform(0.3, 1.0) * duration)
            duration = time.monotonic() - started
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        root = etree.parse(str(feed), etree.XMLParser(recover=False)).getroot()
        assert root.tag == "{http://www.w3.org/2005/Atom}feed" and len(root.findall("{*}entry")) >= 20
        for archive in (project / "public" / "feed" / "archive").glob("*.xml"):  # RFC 5005 pages too
            assert len(etree.parse(str(archive), etree.XMLParser(recover=False)).getroot().findall("{*}entry")) == 20
        for page in (project / "public").glob("*/index.html"):
            assert page.read_bytes().rstrip().endswith(b"</html>")
    assert kills == 50
    assert newsletter(project, "build").returncode == 0
    assert not list((project / "public").rglob(".*.tmp"))
