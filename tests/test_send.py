"""newsletter send / status / mark-sent / preview through the real CLI and the outbox."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta
from pathlib import Path

from checks import SUBSCRIBERS, ledger_rows, subscribe
from conftest import FIXED_NOW, TOKEN_KEY, seed_posts, write_post
from newsletter.config import Secret, load_config
from newsletter.errors import EXIT_NOTHING_TO_SEND
from newsletter.tokens import UNSUBSCRIBE, verify_token

NEWEST = "social-business-parcours-singulier"


def outbox_files(project: Path) -> list[Path]:
    return sorted((project / "outbox" / "new").glob("*.eml"))


def parse(path: Path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_send_writes_one_eml_per_subscriber_for_the_newest_post(run, project):
    subscribe(run)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Recipients: 3" in outcome.stdout and "Provider:   outbox" in outcome.stdout
    files = outbox_files(project)
    assert len(files) == 3
    newest_title = seed_posts()[0][0]
    recipients = set()
    for path in files:
        message = parse(path)
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert str(message["Subject"]) == newest_title
        recipients.add(str(message["To"]))
    assert recipients == set(SUBSCRIBERS)


def test_each_recipient_gets_a_distinct_signed_unsubscribe_url(run, project, config):
    """SEC-09, LIST-01, LIST-05: the URL in the body and in List-Unsubscribe is personal and verifies."""
    subscribe(run)
    run("send", "--yes")
    urls = set()
    for path in outbox_files(project):
        message = parse(path)
        header = str(message["List-Unsubscribe"])
        url = header.split(">")[0].lstrip("<")
        assert url.startswith(config.email.unsubscribe_url)
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert f'href="{url}"' in html and url in text
        token = url.rsplit("/", 1)[1]
        claims = verify_token(token, [Secret("k", TOKEN_KEY)], purpose=UNSUBSCRIBE, list_id=config.email.list_id)
        row = ledger_rows(project, f"SELECT email FROM subscribers WHERE id = {claims.subscriber_id}")
        assert row[0][0] == str(message["To"])
        assert str(message["To"]).split("@")[0] not in token  # no address in clear
        urls.add(url)
    assert len(urls) == 3


def test_second_send_refuses_and_sends_nothing(run, project):
    subscribe(run)
    assert run("send", "--yes").exit_code == 0
    before = [p.read_bytes() for p in outbox_files(project)]
    again = run("send", "--yes")
    assert again.exit_code == EXIT_NOTHING_TO_SEND
    assert "already sent" in again.stdout
    assert [p.read_bytes() for p in outbox_files(project)] == before


def test_sending_a_named_post_twice_is_refused_with_exit_1(run, project):
    subscribe(run)
    assert run("send", "--yes", NEWEST).exit_code == 0
    again = run("send", "--yes", NEWEST)
    assert again.exit_code == 1
    assert again.stderr.startswith("Error: ") and "already sent" in again.stderr
    assert len(outbox_files(project)) == 3


def test_status_json_shows_the_sent_issue_with_its_three_deliveries(run, project):
    subscribe(run)
    run("send", "--yes")
    outcome = run("status", "--json")
    assert outcome.exit_code == 0
    posts = json.loads(outcome.stdout)["posts"]
    assert [p["slug"] for p in posts][0] == NEWEST
    sent = posts[0]
    assert sent["state"] == "sent"
    (issue,) = sent["issues"]
    assert issue["provider"] == "outbox" and issue["recipients"] == 3 and issue["sent_at"]
    assert issue["counts"] == {"accepted": 3}
    assert sorted(d["email"] for d in issue["deliveries"]) == SUBSCRIBERS
    assert all(d["state"] == "accepted" and d["provider_message_id"] for d in issue["deliveries"])
    assert {p["state"] for p in posts[1:]} == {"not sent"}


def test_status_text_lists_every_post(run):
    subscribe(run)
    run("send", "--yes")
    lines = run("status").stdout.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("sent") and "to 3 via outbox" in lines[0]


def test_ledger_records_issue_and_deliveries_with_message_ids(run, project):
    subscribe(run)
    run("send", "--yes")
    (issue,) = ledger_rows(project, "SELECT post_id, content_hash, subject, status, provider FROM issues")
    assert issue[0].startswith("urn:uuid:") and len(issue[1]) == 64 and issue[3] == "sent" and issue[4] == "outbox"
    deliveries = ledger_rows(project, "SELECT email, state, provider_message_id FROM deliveries ORDER BY email")
    message_ids = {str(parse(p)["Message-ID"]) for p in outbox_files(project)}
    assert [d[0] for d in deliveries] == SUBSCRIBERS
    assert {d[2] for d in deliveries} == message_ids
    chunks = ledger_rows(project, "SELECT number, state, idempotency_key FROM chunks")
    assert len(chunks) == 1 and chunks[0][1] == "accepted" and chunks[0][2].endswith(":0")


def test_dry_run_renders_everything_and_records_nothing(run, project):
    subscribe(run)
    outcome = run("send", "--dry-run")
    assert outcome.exit_code == 0
    assert "Dry run: 3 messages rendered" in outcome.stdout
    assert not (project / "outbox").exists()
    assert ledger_rows(project, "SELECT count(*) FROM issues") == [(0,)]
    assert run("send", "--yes").exit_code == 0  # the dry run did not mark anything sent


def test_without_yes_and_without_a_terminal_nothing_is_sent(run, project):
    subscribe(run)
    outcome = run("send")
    assert outcome.exit_code == 2
    assert "--yes" in outcome.stderr
    assert ledger_rows(project, "SELECT count(*) FROM issues") == [(0,)]


def test_no_subscribers_means_nothing_to_send(run, project):
    outcome = run("send", "--yes")
    assert outcome.exit_code == EXIT_NOTHING_TO_SEND
    assert "no active subscribers" in outcome.stdout
    assert ledger_rows(project, "SELECT count(*) FROM issues") == [(0,)]


def test_unsubscribed_addresses_receive_nothing(run, project):
    subscribe(run)
    assert run("subscribers", "remove", "bruno@example.org").exit_code == 0
    run("send", "--yes")
    assert sorted(str(parse(p)["To"]) for p in outbox_files(project)) == ["alice@example.org", "camille@example.org"]


def test_mark_sent_all_keeps_the_back_catalogue_from_being_mailed(run, project):
    subscribe(run)
    outcome = run("mark-sent", "--all")
    assert outcome.exit_code == 0 and outcome.stdout.count("marked sent") == 5
    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND
    assert not outbox_files(project)
    states = {p["state"] for p in json.loads(run("status", "--json").stdout)["posts"]}
    assert states == {"marked"}
    # A new post after that is the one sent.
    write_post(project / "content" / "posts", "nouveau-billet", date='"2026-11-20T10:00:00+01:00"')
    assert run("send", "--yes").exit_code == 0
    assert {str(parse(p)["Subject"]) for p in outbox_files(project)} == {"Titre nouveau-billet"}


def test_mark_sent_needs_slugs_or_all(run):
    outcome = run("mark-sent")
    assert outcome.exit_code == 2 and "--all" in outcome.stderr


def test_older_unsent_posts_are_never_picked_implicitly(run, project):
    subscribe(run)
    run("send", "--yes")
    # The four older posts are unsent, yet a plain `send` does not mail them.
    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND
    assert len(outbox_files(project)) == 3


def test_drafts_and_future_posts_are_not_sent(run, project):
    posts = project / "content" / "posts"
    write_post(posts, "brouillon", date='"2026-11-25T10:00:00+01:00"', draft="true")
    write_post(posts, "plus-tard", date='"2026-12-25T10:00:00+01:00"')
    subscribe(run)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0
    assert NEWEST in outcome.stdout
    assert run("send", "--yes", "brouillon").exit_code == 1
    # Once its date has passed, the scheduled post is the newest.
    later = run("send", "--yes", now=FIXED_NOW + timedelta(days=40))
    assert later.exit_code == 0 and "plus-tard" in later.stdout


def test_unknown_slug_is_one_line_error(run):
    subscribe(run)
    outcome = run("send", "--yes", "no-such-post")
    assert outcome.exit_code == 1
    assert outcome.stderr.count("\n") == 1 and "no-such-post" in outcome.stderr and "Traceback" not in outcome.stderr


def test_interrupted_send_resumes_without_duplicates(run, project, monkeypatch):
    """A crash after the outbox wrote the messages but before the ledger settled: resume, no copy twice."""
    subscribe(run)
    from newsletter import send_ledger

    real_settle = send_ledger.SendLedger.settle_chunk
    calls = {"n": 0}

    def crash_once(self, issue_id, chunk, outcomes, *, now):
        if outcomes and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt  # the process dies between the delivery and its record
        return real_settle(self, issue_id, chunk, outcomes, now=now)

    monkeypatch.setattr(send_ledger.SendLedger, "settle_chunk", crash_once)
    first = run("send", "--yes")
    assert first.exit_code == 130
    assert ledger_rows(project, "SELECT DISTINCT state FROM deliveries") == [("in_flight",)]
    written = {p.name: p.read_bytes() for p in outbox_files(project)}
    assert len(written) == 3
    second = run("send", "--yes")
    assert second.exit_code == 0, second.stderr
    assert "Resuming" in second.stdout
    assert {p.name: p.read_bytes() for p in outbox_files(project)} == written
    assert ledger_rows(project, "SELECT DISTINCT state FROM deliveries") == [("accepted",)]
    assert ledger_rows(project, "SELECT status FROM issues") == [("sent",)]


def test_a_post_edited_during_an_unfinished_send_is_not_resumed_silently(run, project, monkeypatch):
    subscribe(run)
    from newsletter import send_ledger

    monkeypatch.setattr(send_ledger.SendLedger, "start_chunk", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run("send", "--yes").exit_code == 130
    monkeypatch.undo()
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)
    source = project / "content" / "posts" / f"{NEWEST}.md"
    source.write_text(source.read_text(encoding="utf-8") + "\nUn ajout.\n", encoding="utf-8")
    outcome = run("send", "--yes")
    assert outcome.exit_code == 1 and "changed while its issue was being sent" in outcome.stderr
    assert not outbox_files(project)


def test_preview_writes_html_text_and_eml_without_recording(run, project):
    subscribe(run)
    outcome = run("preview", "e20-petite-entreprise")
    assert outcome.exit_code == 0
    folder = project / "preview" / "e20-petite-entreprise"
    html = (folder / "email.html").read_text(encoding="utf-8")
    text = (folder / "email.txt").read_text(encoding="utf-8")
    assert 'lang="fr"' in html and "E20 : ma petite entreprise" in html
    assert "1. Chacun, l’employé" in text
    assert parse(folder / "email.eml")["Subject"] == seed_posts()[2][0]
    assert ledger_rows(project, "SELECT count(*) FROM issues") == [(0,)]
    assert run("preview", "nope").exit_code == 1


def test_preview_defaults_to_the_newest_post_and_needs_no_key(run, project, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_TOKEN_KEY")
    outcome = run("preview")
    assert outcome.exit_code == 0
    assert (project / "preview" / NEWEST / "email.html").is_file()


def test_missing_signing_key_is_one_line_naming_the_variable(run, project, monkeypatch):
    subscribe(run)
    monkeypatch.delenv("NEWSLETTER_TOKEN_KEY")
    outcome = run("send", "--yes")
    assert outcome.exit_code == 1
    assert "NEWSLETTER_TOKEN_KEY" in outcome.stderr and outcome.stderr.count("\n") == 1
    assert not (project / "outbox").exists()


def test_chunks_follow_the_providers_batch_size(run, project, monkeypatch):
    from newsletter.providers.base import Capabilities
    from newsletter.providers.outbox import OutboxProvider

    monkeypatch.setattr(
        OutboxProvider, "capabilities",
        Capabilities("batch", 2, True, True, True, "ours"),
    )  # fmt: skip
    subscribe(run, *[f"reader{n}@example.org" for n in range(5)])
    assert run("send", "--yes").exit_code == 0
    chunks = ledger_rows(project, "SELECT number, state, idempotency_key FROM chunks ORDER BY number")
    assert [c[0] for c in chunks] == [0, 1, 2] and {c[1] for c in chunks} == {"accepted"}
    assert len({c[2] for c in chunks}) == 3
    sizes = ledger_rows(project, "SELECT chunk, count(*) FROM deliveries GROUP BY chunk ORDER BY chunk")
    assert sizes == [(0, 2), (1, 2), (2, 1)]
    assert len(outbox_files(project)) == 5


def test_config_is_found_in_the_working_directory(project, monkeypatch):
    from click.testing import CliRunner

    from newsletter.cli import State, cli

    monkeypatch.chdir(project)
    result = CliRunner().invoke(cli, ["status"], obj=State(clock=lambda: FIXED_NOW))
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 5
    assert load_config(project / "newsletter.toml").root == project.resolve()
