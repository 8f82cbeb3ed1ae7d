"""A post's identity cannot change by accident (issue 10, item 3).

The ledger knows a sent post by its id, its slug and its content.  Editing ``id:`` of a sent
post, or reusing its slug or its text under a new id, stops ``send`` with one line naming the
earlier issue and the explicit ways forward; each way forward is tested to work.  Everything
runs through the real CLI with the outbox provider, and a refused send changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from checks import assert_one_line_error, ledger_rows, subscribe
from newsletter.errors import EXIT_NOTHING_TO_SEND, EXIT_USAGE

NEWEST = "social-business-parcours-singulier"
NEWEST_ID = "urn:uuid:5f282f84-25bf-4382-952c-84d1d078a94f"
OTHER_ID = "urn:uuid:0c0ffee0-1234-4abc-8def-000000000042"
SUBJECT = "Social Business : un parcours singulier à conjuguer au pluriel !"


def post_file(project: Path) -> Path:
    return project / "content" / "posts" / f"{NEWEST}.md"


def edit(project: Path, old: str, new: str) -> None:
    path = post_file(project)
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def state(project: Path) -> tuple:
    """Everything a refused send must leave alone: the outbox files and every ledger row."""
    files = sorted(
        (str(p.relative_to(project)), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in (project / "outbox").rglob("*")
        if p.is_file()
    )
    tables = [name for (name,) in ledger_rows(project, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = {name: ledger_rows(project, f"SELECT * FROM [{name}]") for name in tables}
    return files, rows


def sent_once(run, project: Path) -> None:
    subscribe(run)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert len(list((project / "outbox" / "new").glob("*.eml"))) == 3


def mails(project: Path) -> int:
    return len(list((project / "outbox" / "new").glob("*.eml")))


def test_an_edited_id_stops_the_send_naming_the_earlier_issue_and_the_ways_forward(run, project):
    sent_once(run, project)
    edit(project, NEWEST_ID, OTHER_ID)
    before = state(project)
    for args in (("send", "--yes"), ("send", "--yes", NEWEST)):
        line = assert_one_line_error(run(*args), f"{NEWEST}.md", SUBJECT, f"the slug '{NEWEST}'", NEWEST_ID)
        assert f"put back id: {NEWEST_ID}" in line
        assert f"newsletter send --new-issue {NEWEST}" in line and f"newsletter mark-sent {NEWEST}" in line
        assert "sent to 3 via outbox" in line
        assert state(project) == before


def test_new_issue_says_it_is_a_new_issue_and_it_is_sent(run, project):
    sent_once(run, project)
    edit(project, NEWEST_ID, OTHER_ID)
    outcome = run("send", "--yes", "--new-issue")
    assert outcome.exit_code == 0, outcome.stderr
    assert mails(project) == 6
    assert ledger_rows(project, "SELECT post_id, status FROM issues ORDER BY id") == [
        (NEWEST_ID, "sent"), (OTHER_ID, "sent"),
    ]  # fmt: skip
    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND


def test_mark_sent_accepts_the_new_id_without_mailing_anyone(run, project):
    sent_once(run, project)
    edit(project, NEWEST_ID, OTHER_ID)
    assert run("mark-sent", NEWEST).exit_code == 0
    again = run("send", "--yes")
    assert again.exit_code == EXIT_NOTHING_TO_SEND and "already marked as sent" in again.stdout
    assert mails(project) == 3


def test_a_sent_id_under_a_new_slug_stops_the_send(run, project):
    """The id was sent; the file now carries another slug (a copied post, or a rename)."""
    sent_once(run, project)
    edit(project, f"slug: {NEWEST}", "slug: parcours-renomme")
    before = state(project)
    line = assert_one_line_error(
        run("send", "--yes"), f"{NEWEST}.md", NEWEST_ID, SUBJECT, f"'{NEWEST}'", "'parcours-renomme'"
    )
    assert re.search(r'a new post needs its own id \(id: "urn:uuid:[0-9a-f-]{36}"\)', line)
    assert f"put back slug: {NEWEST}" in line and "newsletter mark-sent parcours-renomme" in line
    assert "newsletter send --correction parcours-renomme" in line
    assert state(project) == before
    # --new-issue cannot make one id two issues: the id must change.
    assert_one_line_error(run("send", "--yes", "--new-issue"), "a new post needs its own id")
    assert state(project) == before


def test_a_renamed_post_is_recorded_with_mark_sent_and_never_mailed_again(run, project):
    sent_once(run, project)
    edit(project, f"slug: {NEWEST}", "slug: parcours-renomme")
    marked = run("mark-sent", "parcours-renomme")
    assert marked.exit_code == 0 and "marked sent    parcours-renomme" in marked.stdout, marked.stdout + marked.stderr
    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND
    assert run("mark-sent", "parcours-renomme").stdout.startswith("already sent")
    assert mails(project) == 3


def test_a_renamed_and_edited_post_can_be_mailed_as_a_correction(run, project):
    sent_once(run, project)
    edit(project, f"slug: {NEWEST}", "slug: parcours-renomme")
    edit(project, 'title: "Social Business', 'title: "Social Business (corrigé)')
    outcome = run("send", "--yes", "--correction", "parcours-renomme")
    assert outcome.exit_code == 0, outcome.stderr
    assert mails(project) == 6
    assert ledger_rows(project, "SELECT kind FROM issues ORDER BY id") == [("issue",), ("correction",)]


def test_the_same_content_under_a_new_id_and_slug_stops_the_send(run, project):
    sent_once(run, project)
    edit(project, NEWEST_ID, OTHER_ID)
    edit(project, f"slug: {NEWEST}", "slug: copie-du-parcours")
    before = state(project)
    assert_one_line_error(
        run("send", "--yes"), "the same content", f"'{NEWEST}'", NEWEST_ID, "--new-issue copie-du-parcours"
    )
    assert state(project) == before


def test_new_issue_and_correction_together_are_a_usage_error(run, project):
    sent_once(run, project)
    before = state(project)
    assert_one_line_error(run("send", "--yes", "--new-issue", "--correction", NEWEST), "--new-issue", code=EXIT_USAGE)
    assert state(project) == before


def test_an_ordinary_new_post_is_not_mistaken_for_an_old_one(run, project):
    """The checks recognise only a real match: a new post with its own id, slug and text is sent."""
    sent_once(run, project)
    path = project / "content" / "posts" / "nouveau.md"
    path.write_text(
        '---\ntitle: "Nouveau"\nid: "urn:uuid:6d1f3e2a-8b4c-4d5e-9f60-7a8b9c0d1e2f"\n'
        'date: "2024-05-01T10:00:00+02:00"\n---\nUn autre texte.\n',
        encoding="utf-8",
    )
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert mails(project) == 6


def test_an_unfinished_send_whose_post_lost_its_id_says_which_id_to_put_back(run, project):
    from contextlib import closing as closed

    from conftest import FIXED_NOW
    from newsletter.store import Ledger

    subscribe(run)
    with closed(Ledger(project / "newsletter.db")) as ledger:
        ledger.issues.plan_issue(
            key="k-unfinished", post_id=NEWEST_ID, slug=NEWEST, content_hash="h", subject=SUBJECT,
            provider="outbox", chunk_size=10, now=FIXED_NOW,
        )  # fmt: skip
    edit(project, NEWEST_ID, OTHER_ID)
    before = state(project)
    line = assert_one_line_error(run("send", "--yes"), "unfinished", NEWEST_ID)
    assert f"put back id: {NEWEST_ID} in {NEWEST}.md" in line
    assert state(project) == before
