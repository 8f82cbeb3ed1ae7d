"""The editor's day: config that helps, scheduling that drops no post, reports that say what happened."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from checks import subscribe
from conftest import FIXED_NOW, TOKEN_KEY, write_post
from newsletter.config import find_config
from newsletter.envfile import load_env_file, read_env_file
from newsletter.errors import EXIT_NOTHING_TO_SEND, ConfigError

NEWEST = "social-business-parcours-singulier"


def subjects(project: Path) -> list[str]:
    """The subjects in the outbox, oldest file first (the outbox names files by time and sequence)."""
    files = sorted((project / "outbox" / "new").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    seen: list[str] = []
    for path in files:
        subject = str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Subject"])
        if subject not in seen:
            seen.append(subject)
    return seen


# -- scheduling ---------------------------------------------------------------------------------


def test_two_posts_due_between_two_runs_are_both_sent_oldest_first_each_once(run, project):
    subscribe(run, "alice@example.org")
    assert run("send", "--yes").exit_code == 0  # the first send: the newest post only
    posts = project / "content" / "posts"
    write_post(posts, "plus-ancien", date='"2026-11-26T08:00:00+01:00"')
    write_post(posts, "plus-recent", date='"2026-11-26T09:00:00+01:00"')
    write_post(posts, "demain", date='"2026-11-27T09:00:00+01:00"')  # not due yet
    planned = run("send", "--dry-run")
    assert "Due:        2 posts not yet sent, oldest first, each once: plus-ancien, plus-recent" in planned.stdout
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.index("«Titre plus-ancien»") < outcome.stdout.index("«Titre plus-recent»")
    assert "Done: 2 issues, 2 accepted" in outcome.stdout
    assert subjects(project)[1:] == ["Titre plus-ancien", "Titre plus-recent"]
    again = run("send", "--yes")
    assert again.exit_code == EXIT_NOTHING_TO_SEND
    tomorrow = run("send", "--yes", now=FIXED_NOW + timedelta(days=1))
    assert tomorrow.exit_code == 0 and "Done: 1 issue," in tomorrow.stdout
    assert subjects(project)[-1] == "Titre demain"
    states = {p["slug"]: p["state"] for p in json.loads(run("status", "--json").stdout)["posts"]}
    assert [states[s] for s in ("plus-ancien", "plus-recent", "demain", NEWEST)] == ["sent"] * 4
    assert list(states.values()).count("sent") == 4  # the back catalogue before the first send stays unsent


def test_a_post_backdated_before_the_last_issue_is_not_picked_implicitly(run, project):
    subscribe(run, "alice@example.org")
    run("send", "--yes")
    write_post(project / "content" / "posts", "retro", date='"2005-01-01T08:00:00+01:00"')
    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND
    assert run("send", "--yes", "retro").exit_code == 0  # by name it goes


# -- config -------------------------------------------------------------------------------------


def test_every_config_error_is_reported_in_one_run(run, project):
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        'from_address = "lettre@claudesuper.example.org"', 'form_address = "lettre@claudesuper.example.org"'
    )
    text = text.replace('timezone = "Europe/Paris"', 'timezone = "Europe/Pariss"')
    text = text.replace("[paths]", "[path]")
    path.write_text(text, encoding="utf-8")
    outcome = run("build")
    assert outcome.exit_code == 1
    lines = outcome.stderr.splitlines()
    assert all(line.startswith("Error: ") and "newsletter.toml" in line and " — " in line for line in lines), lines
    joined = "\n".join(lines)
    assert "email.form_address: unknown key 'form_address' — did you mean 'from_address'?" in joined
    assert "unknown table '[path]' — did you mean 'paths'?" in joined
    assert "site.timezone: unknown time zone 'Europe/Pariss'" in joined
    assert "email.from_address: is missing" in joined
    assert len(lines) == 4


def test_unknown_provider_setting_gets_a_did_you_mean_and_plugin_tables_are_left_alone(run, project):
    path = project / "newsletter.toml"
    base = path.read_text(encoding="utf-8")
    path.write_text(base.replace('path = "outbox"', 'paht = "outbox"'), encoding="utf-8")
    outcome = run("build")
    assert (
        outcome.exit_code == 1
        and "providers.outbox.paht: unknown setting 'paht' — did you mean 'path'?" in outcome.stderr
    )
    path.write_text(base + '\n[providers.postcard]\nstamp = "rare"\n', encoding="utf-8")
    assert run("build").exit_code == 0


def test_config_is_found_from_any_subfolder_or_with_dash_c(project, tmp_path):
    deep = project / "content" / "posts"
    assert find_config(deep) == project / "newsletter.toml"
    lonely = tmp_path / "elsewhere"
    lonely.mkdir()
    try:
        find_config(lonely)
    except ConfigError as error:
        assert "newsletter init" in error.one_line()
    else:  # pragma: no cover - the temp folder has no newsletter.toml above it
        raise AssertionError("found a config where there is none")
    script = Path(sys.executable).with_name("newsletter")
    for argv, cwd in (([str(script), "status"], deep), ([str(script), "-C", str(deep), "status"], lonely)):
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0 and NEWEST in result.stdout, result.stderr


def test_dotenv_never_overrides_the_environment(tmp_path):
    (tmp_path / ".env").write_text(
        "# secrets\nexport A=from-file\nB='quoted value'\nC=\"double\"  \nD=plain # a comment\n", encoding="utf-8"
    )
    assert read_env_file(tmp_path / ".env") == {"A": "from-file", "B": "quoted value", "C": "double", "D": "plain"}
    environ = {"A": "from-the-environment"}
    assert load_env_file(tmp_path, environ) == ["B", "C", "D"]
    assert environ["A"] == "from-the-environment"
    (tmp_path / ".env").write_text("not an assignment\n", encoding="utf-8")
    try:
        read_env_file(tmp_path / ".env")
    except ConfigError as error:
        assert error.where.endswith(".env:1") and "NAME=value" in error.message
    else:  # pragma: no cover
        raise AssertionError("a broken .env line was accepted")


# -- reports ------------------------------------------------------------------------------------


def test_no_progress_line_without_a_terminal_and_the_report_has_counts_and_time(run):
    subscribe(run, "alice@example.org", "bruno@example.org")
    outcome = run("send", "--yes")
    assert "\r" not in outcome.stdout + outcome.stderr and outcome.stderr == ""
    last = outcome.stdout.strip().splitlines()[-1]
    assert last.startswith("Done: 1 issue, 2 accepted, in ") and last.endswith(" s.")


def test_status_counts_bounces_and_complaints_per_issue(run, project):
    subscribe(run, "alice@example.org", "bruno@example.org", "camille@example.org")
    run("send", "--yes")
    from contextlib import closing

    from newsletter.store import Ledger

    with closing(Ledger(project / "newsletter.db")) as ledger:  # what a webhook records
        later = FIXED_NOW + timedelta(hours=1)
        ledger.subscribers.set_status(
            ledger.subscribers.subscriber_by_email("bruno@example.org")["id"], "bounced", now=later
        )
        ledger.subscribers.set_status(
            ledger.subscribers.subscriber_by_email("camille@example.org")["id"], "complained", now=later
        )
    row = next(p for p in json.loads(run("status", "--json", "--summary").stdout)["posts"] if p["slug"] == NEWEST)
    assert row["issues"][0]["feedback"] == {"bounced": 1, "complained": 1}
    line = next(line for line in run("status").stdout.splitlines() if NEWEST in line)
    assert "delivered 3, rejected 0, bounced 1, complained 1" in line


def test_subscribers_list_json(run):
    subscribe(run, "alice@example.org", "bruno@example.org")
    rows = json.loads(run("subscribers", "list", "--json").stdout)
    assert [r["email"] for r in rows] == ["alice@example.org", "bruno@example.org"]
    assert {r["status"] for r in rows} == {"active"}
    assert json.loads(run("subscribers", "list", "--json", "--status", "bounced").stdout) == []


# -- digest -------------------------------------------------------------------------------------


def test_digest_gathers_the_due_posts_into_one_issue_and_marks_them_sent(run, project):
    subscribe(run, "alice@example.org", "bruno@example.org")
    assert run("send", "--yes").exit_code == 0
    posts = project / "content" / "posts"
    write_post(posts, "premier", date='"2026-11-26T08:00:00+01:00"', summary='"Le résumé du premier."')
    write_post(posts, "second", date='"2026-11-26T09:00:00+01:00"')
    planned = run("send", "--digest", "--dry-run")
    assert "Digest:     2 posts in one issue, oldest first: premier, second" in planned.stdout
    outcome = run("send", "--digest", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Done: 1 issue, 2 accepted" in outcome.stdout
    new = [p for p in (project / "outbox" / "new").glob("*.eml")]
    digests = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in new]
    digests = [m for m in digests if str(m["Subject"]) == "Titre premier · Titre second"]
    assert len(digests) == 2
    html = digests[0].get_body(("html",)).get_content()
    text = digests[0].get_body(("plain",)).get_content()
    for part in (html, text):
        assert "Le résumé du premier." in part
        assert "https://claudesuper.example.org/premier/" in part and "https://claudesuper.example.org/second/" in part
    assert text.index("Titre premier") < text.index("Titre second")
    # Its posts are never mailed again on their own, and nothing is due now.
    states = {p["slug"]: p["state"] for p in json.loads(run("status", "--json").stdout)["posts"]}
    assert states["premier"] == states["second"] == "marked"
    assert run("send", "--yes").exit_code == EXIT_NOTHING_TO_SEND
    assert run("send", "--digest", "--yes").exit_code == EXIT_NOTHING_TO_SEND


def test_a_project_template_overrides_the_digest(run, project):
    subscribe(run, "alice@example.org")
    run("send", "--yes")
    write_post(project / "content" / "posts", "unique", date='"2026-11-26T08:00:00+01:00"')
    folder = project / "templates" / "email"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digest.html").write_text(
        "{% for post in posts %}<p>MON RÉCAP {{ post.title }}</p>{% endfor %}\n", encoding="utf-8"
    )
    (folder / "digest.txt").write_text(
        "{% for post in posts %}MON RÉCAP TEXTE {{ post.title }}{% endfor %}\n", encoding="utf-8"
    )
    assert run("send", "--digest", "--yes").exit_code == 0
    message = max((project / "outbox" / "new").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    parsed = email.message_from_bytes(message.read_bytes(), policy=email.policy.default)
    assert "MON RÉCAP Titre unique" in parsed.get_body(("html",)).get_content()
    assert "MON RÉCAP TEXTE Titre unique" in parsed.get_body(("plain",)).get_content()


def _on_a_terminal(project: Path, *args: str) -> str:
    """``newsletter ARGS`` with stderr on a pseudo-terminal; returns what the terminal showed."""
    import os
    import pty

    script = Path(sys.executable).with_name("newsletter")
    master, slave = pty.openpty()
    env = {**os.environ, "NEWSLETTER_TOKEN_KEY": TOKEN_KEY}
    process = subprocess.Popen(
        [str(script), *args], cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal (EIO on Linux)
            break
        if not chunk:
            break
        shown += chunk
    process.communicate(timeout=120)
    os.close(master)
    assert process.returncode == 0, shown
    return shown.decode("utf-8", "replace")


def _send_on_a_terminal(project: Path, *extra: str) -> str:
    """``newsletter send --yes`` with stderr on a pseudo-terminal; returns what the terminal showed."""
    return _on_a_terminal(project, *extra, "send", "--yes")


def test_progress_with_an_eta_on_a_terminal_and_none_with_quiet(run, project):
    subscribe(run, "alice@example.org", "bruno@example.org")
    path = project / "newsletter.toml"  # one recipient per chunk: two steps to show
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('[providers.outbox]\npath = "outbox"', '[providers.outbox]\npath = "outbox"\nbatch_size = 1'),
        encoding="utf-8",
    )
    shown = _send_on_a_terminal(project)
    assert "Sending [" in shown and "2/2" in shown and "ETA" in shown
    write_post(project / "content" / "posts", "encore", date='"2026-11-26T08:00:00+01:00"')
    quiet = _send_on_a_terminal(project, "--quiet")
    assert "ETA" not in quiet and "Sending [" not in quiet


def test_a_large_import_shows_progress_on_a_terminal_and_none_with_quiet(project):
    """12,000 rows are written in three slices: the terminal sees the line move to 12000/12000."""
    (project / "big.csv").write_text("email\n" + "".join(f"reader{n}@example.org\n" for n in range(12_000)))
    shown = _on_a_terminal(project, "subscribers", "import", "big.csv")
    assert "Importing [" in shown and "5000/12000" in shown and "12000/12000" in shown and "ETA" in shown
    with sqlite3.connect(project / "newsletter.db") as db:
        assert db.execute("SELECT count(*) FROM subscribers WHERE status = 'active'").fetchone() == (12_000,)
    (project / "more.csv").write_text("email\n" + "".join(f"other{n}@example.org\n" for n in range(6_000)))
    quiet = _on_a_terminal(project, "--quiet", "subscribers", "import", "more.csv")
    assert "Importing [" not in quiet and "ETA" not in quiet


def test_a_build_shows_progress_on_a_terminal_and_none_with_quiet(project):
    """The posts parsed, then the post pages written: each phase ends at n/n on the terminal line."""
    posts = len([p for p in (project / "content" / "posts").iterdir() if p.suffix == ".md" or p.is_dir()])
    shown = _on_a_terminal(project, "build")
    assert "Building [" in shown and f"{posts}/{posts}" in shown and "ETA" in shown
    write_post(project / "content" / "posts", "encore", date='"2026-11-20T08:00:00+01:00"')
    quiet = _on_a_terminal(project, "--quiet", "build")
    assert "Building [" not in quiet and "ETA" not in quiet
    assert (project / "public" / "encore" / "index.html").exists()
