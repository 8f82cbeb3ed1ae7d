"""Issue 14 item 3: ``newsletter check``, the preflight, passes the demo and finds each kind of
broken issue with the right finding; ``send`` refuses a failing issue unless ``--force``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import write_post
from newsletter.check import Finding, _subject
from newsletter.css_support import CLIENTS, SUPPORT
from newsletter.templates import PACKAGED_TEMPLATES

SLUG = "brise"


def _findings(run, *args: str) -> tuple[int, list[dict]]:
    outcome = run("check", "--json", *args)
    issues = json.loads(outcome.stdout)["issues"]
    return outcome.exit_code, [finding for issue in issues for finding in issue["findings"]]


def _post(project: Path, run, **fields) -> None:
    """A new post, then a build, so its own page exists as it would before a send."""
    write_post(project / "content" / "posts", SLUG, **fields)
    assert run("build").exit_code == 0


def _codes(findings: list[dict], severity: str) -> set[str]:
    return {f["code"] for f in findings if f["severity"] == severity}


def _override_issue_template(project: Path, old: str, new: str) -> None:
    """A project template: the packaged issue.html with ``old`` replaced by ``new``."""
    folder = project / "templates" / "email"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("issue.html", "issue.txt"):
        shutil.copy(PACKAGED_TEMPLATES / "email" / name, folder / name)
    page = (folder / "issue.html").read_text(encoding="utf-8")
    assert old in page
    (folder / "issue.html").write_text(page.replace(old, new, 1), encoding="utf-8")


def test_the_demo_passes_every_post(run, built):
    outcome = run("check", "--all")
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    assert outcome.stdout.count(": ok (0 errors") == 5
    code, findings = _findings(run, "--all")
    assert code == 0 and not _codes(findings, "error")
    # The packaged template's dark mode is a progressive enhancement Gmail ignores: said, not an error.
    assert any(f["code"] == "css-unsupported" and f["message"].startswith("Gmail ") for f in findings)


def test_a_missing_alt_text_is_an_error(project, run, built):
    """An image without alt text (in a project template: posts always get one)."""
    # Posts always get an alt (the sanitizer's image step adds it); a template can still forget one.
    _override_issue_template(project, '<p>{{ postal_address }}</p>', '<p>{{ postal_address }}</p><img src="https://example.org/photo.png">')
    code, findings = _findings(run)
    assert code == 1
    alt = [f for f in findings if f["code"] == "missing-alt"]
    assert len(alt) == 1 and "https://example.org/photo.png" in alt[0]["message"], findings
    assert alt[0]["severity"] == "error"


def test_an_issue_over_gmails_clip_is_an_error(project, run, built):
    paragraph = "Un paragraphe assez long pour remplir la page, encore et encore, sans fin. " * 20
    _post(project, run, body="\n\n".join([paragraph] * 80))
    code, findings = _findings(run, SLUG)
    assert code == 1
    assert _codes(findings, "error") == {"clip-size"}, findings
    assert "102 KB" in findings[0]["message"]


def test_a_relative_link_is_an_error(project, run, built):
    _override_issue_template(
        project, "<p>{{ postal_address }}</p>", '<p>{{ postal_address }} <a href="/a-propos/">À propos</a></p>'
    )
    code, findings = _findings(run)
    assert code == 1
    relative = [f for f in findings if f["code"] == "relative-url"]
    assert len(relative) == 1 and "'/a-propos/'" in relative[0]["message"], findings


def test_a_link_to_the_site_with_no_built_file_is_a_warning(project, run, built):
    site = "https://claudesuper.example.org/"
    _override_issue_template(
        project, "<p>{{ postal_address }}</p>", f'<p>{{{{ postal_address }}}} <a href="{site}nulle-part/">x</a></p>'
    )
    code, findings = _findings(run)
    assert code == 0  # most often a build not run yet: said loudly, not refused
    assert [(f["severity"], f["message"]) for f in findings if f["code"] == "not-built"] == [
        ("warning",
         f"link {site}nulle-part/ points at no file of {project / 'public'} (run 'newsletter build', or fix the link)")
    ]


def test_low_contrast_text_is_an_error_in_the_mode_it_fails(project, run, built):
    # Light grey footer text on white: 2.3:1 in light mode; dark mode keeps its own colour.
    _override_issue_template(project, "line-height: 1.5; color: #57606a;", "line-height: 1.5; color: #aaaaaa;")
    code, findings = _findings(run)
    assert code == 1
    low = [f["message"] for f in findings if f["code"] == "contrast"]
    assert low and all("[light]" in m and "#aaaaaa on #ffffff" in m for m in low), findings


def test_unsupported_css_is_a_warning_per_client(project, run, built):
    _override_issue_template(
        project, ".container { width: 600px;", ".container { position: relative; border-radius: 8px; width: 600px;"
    )
    code, findings = _findings(run)
    assert code == 0  # warnings only
    css = {next(c for c in CLIENTS if f["message"].startswith(c + " ")): f["message"]
           for f in findings if f["code"] == "css-unsupported"}  # fmt: skip
    assert "position" in css["Gmail"] and "border-radius" not in css["Gmail"]
    assert "position" in css["Outlook for Windows"] and "border-radius" in css["Outlook for Windows"]
    # Apple Mail rounds the corners; it positions only partly (caniemail: not sticky, not fixed), and
    # the packaged template's overflow scrolls only partly on macOS.
    assert css["Apple Mail"] == "Apple Mail renders only partly overflow, position (caniemail.com)"


def test_the_css_table_covers_the_four_clients_for_every_feature():
    assert CLIENTS == ("Gmail", "Apple Mail", "Outlook.com", "Outlook for Windows")
    for feature, row in SUPPORT.items():
        assert tuple(row) == CLIENTS, feature
        assert set(row.values()) <= {"yes", "partial", "no"}, feature


@pytest.mark.parametrize(
    ("subject", "codes"),
    [
        ("", {"empty-subject"}),
        ("   ", {"empty-subject"}),
        ("URGENT : LISEZ CECI", {"all-caps-subject"}),
        ("Un objet " + "très " * 15 + "long", {"long-subject"}),
        ("Un objet sobre", set()),
        ("E20", set()),  # too few letters to be shouting
    ],
)
def test_subject_checks(subject, codes):
    assert {f.code for f in _subject(subject)} == codes
    assert all(isinstance(f, Finding) for f in _subject(subject))


def test_a_missing_preheader_and_a_short_text_part_are_warnings(project, built):
    from dataclasses import replace

    from newsletter import Newsletter
    from newsletter.check import check_issue
    from newsletter.render import render_issue
    from newsletter.templates import make_environment

    with Newsletter.open(project) as nl:
        issue = render_issue(nl.config, nl.posts()[0], make_environment(nl.config.templates_dir))
        assert "no-preheader" not in {f.code for f in check_issue(nl.config, issue).findings}
        bare = replace(issue, post=replace(issue.post, preheader=""))
        assert "no-preheader" in {f.code for f in check_issue(nl.config, bare).warnings}
        short = replace(issue, text=issue.text[-300:])  # the footer only: unsubscribe and address stay
        found = check_issue(nl.config, short)
        assert [f.code for f in found.findings if f.code == "short-text"] == ["short-text"]
        assert "short-text" not in {f.code for f in check_issue(nl.config, issue).findings}


def test_send_refuses_a_failing_issue_and_force_overrides(project, run, built):
    run("subscribers", "add", "alice@example.org")
    _override_issue_template(project, '<p>{{ postal_address }}</p>', '<p>{{ postal_address }}</p><img src="https://example.org/photo.png">')
    refused = run("send", "--yes")
    assert refused.exit_code == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("Error: not sent:")
    assert "[missing-alt]" in refused.stderr and "--force" in refused.stderr
    assert "  error:   [missing-alt] image https://example.org/photo.png" in refused.stdout
    assert not list((project / "outbox").rglob("*.eml")), "nothing may be sent"
    assert json.loads(run("status", "--json").stdout)["posts"][0]["state"] != "sent"
    forced = run("send", "--yes", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert len(list((project / "outbox").rglob("*.eml"))) == 1
