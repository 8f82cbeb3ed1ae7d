"""Fuzzing what a user hands the CLI: front matter and Markdown, newsletter.toml, a subscriber CSV.

Each example goes through the real click CLI (in-process, as ``main()`` runs it) and the
contract of issue 10 is checked: the command succeeds, or it fails with exit 1 and exactly one
line ``Error: … — hint`` on stderr, never a traceback or an "Internal error"; a failure
changes nothing (the project's files and every ledger row are as before).

Hypothesis runs derandomized (a fixed seed) with a bounded number of examples, so the test is
deterministic and takes seconds.  Hostile shapes are mixed in on purpose: YAML anchors and
aliases, deep nesting, enormous integers, NaN and infinity, tables where values belong.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from conftest import FIXED_NOW, REPO
from newsletter.cli import State, cli
from newsletter.errors import EXIT_NOTHING_TO_SEND

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SUBSCRIBERS = ("alice@example.org", "bruno@example.org")
POST = "zz-fuzz.md"  # sorts after the demo posts, so a duplicate slug or id is reported on it


# ---------------------------------------------------------------- the contract


def invoke(project: Path, *args: str):
    result = CliRunner().invoke(
        cli, ["--config", str(project / "newsletter.toml"), *args], obj=State(clock=lambda: FIXED_NOW)
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # an exception click did not turn into an exit: a bug
    return result


def snapshot(project: Path) -> tuple:
    """The project's files (ledger excluded) and every row of the ledger."""
    files = {}
    for path in sorted(project.rglob("*")):
        if path.is_file() and not path.name.startswith("newsletter.db"):
            files[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    rows = ()
    database = project / "newsletter.db"
    if database.is_file():
        with closing(sqlite3.connect(database)) as db:
            rows = tuple(line for line in db.iterdump() if "sqlite_sequence" not in line)
    return files, rows


def assert_contract(result, before: tuple, after: tuple, *, allowed: tuple[int, ...] = (0, 1)) -> None:
    output = result.stdout + result.stderr
    if currently_in_test_context():
        event(f"exit {result.exit_code}")
    assert "Traceback" not in output and "Internal error" not in output, output[-800:]
    assert result.exit_code in allowed, (result.exit_code, output[-800:])
    if result.exit_code == 1:
        lines = result.stderr.splitlines()
        # One line per mistake: a config with several is reported whole, each on its own line.
        assert lines and all(line.startswith("Error: ") and " — " in line for line in lines), result.stderr[-800:]
        assert after == before, "a failed command changed the project or the ledger"


def fresh_project(root: Path) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    shutil.copytree(REPO / "content", root / "content")
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo with two subscribers and a built site: copied for each example."""
    root = fresh_project(tmp_path_factory.mktemp("fuzz") / "demo")
    assert invoke(root, "subscribers", "add", *SUBSCRIBERS).exit_code == 0
    assert invoke(root, "build").exit_code == 0
    return root


def copy_of(demo: Path, tmp_path: Path) -> Path:
    target = tmp_path / "site"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(demo, target)
    return target


# ---------------------------------------------------------------- strategies

scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["title", "slug", "id", "date", "updated", "author", "tags", "summary", "preheader", "draft"]
VALID = {
    "title": "Titre",
    "id": "urn:uuid:1a2b3c4d-0000-4000-8000-00000000f022",
    "date": "2024-06-01T09:30:00+02:00",
}
YAML_PIECES = [
    "&a [x, y]", "*a", "[*a, *a, *a]", "{a: {b: {c: [1]}}}", "!!python/object/apply:os.system ['true']",
    "!!binary aGk=", "9" * 5000, ".nan", "-.inf", "0x" + "f" * 40, "'quoted'", '"\\u0000"', "|\n  bloc", "? [a]\n: b",
    "[" * 40 + "]" * 40,
    "2024-06-01", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00", "~", "- a\n- b", "<<: *a", "\t", "---",
]  # fmt: skip
MARKDOWN_PIECES = [
    "> " * 60 + "fond", "<ol start=\"²\"><li>x</li></ol>", "<blockquote>" * 80, "</blockquote>", "[a](http://[oops)",
    "*" * 70 + "x" + "*" * 70, "  " * 30 + "- liste", "<td colspan=\"٣\">", "&#0;&#xD800;&#1114112;",
    "<script>x</script>",
    "{{ 7*7 }}", "[" * 200, "\u2028", "\x1b", "![i](javascript:alert(1))", "1. un\n2. deux", "| a |\n|---|\n| b |",
]  # fmt: skip


@st.composite
def front_matters(draw) -> str:
    """YAML text: valid fields with one or more replaced by random values, raw pieces or noise."""
    fields = dict(VALID)
    for name in draw(st.lists(st.sampled_from(FIELDS + ["inconnu"]), max_size=3)):
        fields[name] = draw(values)
    try:
        text = json.dumps(fields, ensure_ascii=False, allow_nan=True).replace("NaN", ".nan").replace("Infinity", ".inf")
    except (TypeError, ValueError):
        text = "{}"
    kind = draw(st.sampled_from(["json", "pieces", "noise"]))
    if kind == "pieces":
        lines = [f"{k}: {json.dumps(v)}" for k, v in VALID.items()]
        for _ in range(draw(st.integers(1, 4))):
            key = draw(st.sampled_from(FIELDS))
            lines.append(f"{key}: {draw(st.sampled_from(YAML_PIECES))}")
        text = "\n".join(lines)
    elif kind == "noise":
        noise = st.sampled_from(list("[]{}:-&*!|>'\"#%@`, \n\t?~") + ["a", "é", "\x00"])
        text += "\n" + draw(st.text(alphabet=noise, max_size=60))
    return text


ELEVEN_ALIASES = ", ".join(["*a"] * 11)
markdown_bodies = st.lists(st.sampled_from(MARKDOWN_PIECES) | st.text(max_size=40), max_size=6).map("\n".join)


# ---------------------------------------------------------------- front matter and Markdown


@FUZZ
@given(front=front_matters(), body=markdown_bodies)
@example(
    front=f'title: "t"\nid: "{VALID["id"]}"\ndate: "{VALID["date"]}"\nsummary: &a [x]\nslug: [{ELEVEN_ALIASES}]',
    body="",
)
@example(front=f'title: "t"\nid: "{VALID["id"]}"\ndate: "{VALID["date"]}"', body=">" * 300 + " fond")
@example(front=f'title: {"9" * 5000}\nid: "{VALID["id"]}"\ndate: "{VALID["date"]}"', body="")
def test_random_front_matter_and_markdown_build_or_fail_in_one_line(demo, tmp_path, front, body):
    project = copy_of(demo, tmp_path)
    (project / "content" / "posts" / POST).write_text(f"---\n{front}\n---\n{body}\n", encoding="utf-8")
    before = snapshot(project)
    result = invoke(project, "build")
    assert_contract(result, before, snapshot(project))


# ---------------------------------------------------------------- newsletter.toml

DEMO_TOML = (REPO / "newsletter.toml").read_text(encoding="utf-8")
TOML_VALUES = [
    "nan", "inf", "-inf", "-1", "0", "0.5", "2.5", "1e308", "9" * 30, "9" * 5000, '"texte"', '""', '"\\u0000"', "true",
    "[]", "[1, [2, [3]]]", "{}", "{ a = 1 }", "1979-05-27T07:32:00Z", "[" * 300 + "]" * 300,
    "{a=" * 200 + "1" + "}" * 200,
    '["NEWSLETTER_TOKEN_KEY"]', "70000", "65535", "100", "1000001",
]  # fmt: skip
SEND_KEYS = ["retry_attempts", "retry_base_delay", "retry_max_delay", "retry_deadline", "token_key_env", "provider"]
PROVIDER_KEYS = [
    "port",
    "timeout",
    "batch_size",
    "host",
    "security",
    "path",
    "base_url",
    "api_key_env",
    "region",
    "domain",
]
PROVIDERS = ["outbox", "smtp", "resend", "mailgun", "postmark", "buttondown", "inconnu"]


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


SEND_BLOCK = DEMO_TOML[DEMO_TOML.index("[send]\n") : DEMO_TOML.index("[providers.outbox]")]
DEMO_SEND = {"provider": '"outbox"', "database": '"newsletter.db"', "token_key_env": '"NEWSLETTER_TOKEN_KEY"'}


@st.composite
def configs(draw) -> str:
    """The demo config with [send] settings and a provider's table given hostile TOML values,
    the providers table broken in shape, or noise appended."""
    send = dict(DEMO_SEND)
    for _ in range(draw(st.integers(0, 3))):
        send[draw(st.sampled_from(SEND_KEYS))] = draw(st.sampled_from(TOML_VALUES))
    provider = draw(st.sampled_from(PROVIDERS))
    if draw(st.booleans()):
        send["provider"] = toml_string(provider)
    block = "[send]\n" + "".join(f"{key} = {value}\n" for key, value in send.items()) + "\n"
    text = DEMO_TOML.replace(SEND_BLOCK, block)
    settings = {
        draw(st.sampled_from(PROVIDER_KEYS)): draw(st.sampled_from(TOML_VALUES)) for _ in range(draw(st.integers(0, 3)))
    }
    shape = draw(st.sampled_from(["table", "table", "scalar", "array"]))
    if shape == "table" and provider != "outbox":
        text += f"\n[providers.{provider}]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    elif shape == "scalar":
        text = text.replace(
            '[providers.outbox]\npath = "outbox"', f"[providers]\noutbox = {draw(st.sampled_from(TOML_VALUES))}"
        )
    elif shape == "array":
        text = text.replace('[providers.outbox]\npath = "outbox"', '[[providers]]\nname = "outbox"')
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.text(alphabet=st.sampled_from(list("[]{}=\"'.#\n \\") + ["a", "1", "é"]), max_size=40))
    return text


@FUZZ
@given(text=configs())
@example(text=DEMO_TOML.replace("[send]\n", "[send]\nretry_attempts = nan\n"))
@example(text=DEMO_TOML.replace('[providers.outbox]\npath = "outbox"', '[providers]\noutbox = "outbox"'))
@example(text=DEMO_TOML + "\nprofond = " + "[" * 3000 + "]" * 3000 + "\n")
def test_random_config_sends_dry_or_fails_in_one_line(demo, tmp_path, text):
    project = copy_of(demo, tmp_path)
    (project / "newsletter.toml").write_text(text, encoding="utf-8")
    before = snapshot(project)
    result = invoke(project, "send", "--dry-run")
    after = snapshot(project)
    assert_contract(result, before, after, allowed=(0, 1, EXIT_NOTHING_TO_SEND))
    assert after == before, "a dry run changed the project or the ledger"


# ---------------------------------------------------------------- subscriber CSV

CSV_FIELD_LIMIT = csv.field_size_limit()
csv_cells = st.one_of(
    st.sampled_from(["email", "Email", "nom", "a@example.org", "Bruno@Example.ORG", " c@example.org ", "x@y", "@", ""]),
    st.emails().map(str),
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(list(',;"\r\n\t \x00\ufeff') + ["a", "@", "."]), max_size=20),
)
csv_texts = st.lists(st.lists(csv_cells, max_size=4).map(",".join), max_size=12).map("\n".join)


def import_outcome(project: Path, data: bytes):
    path = project / "abonnes.csv"
    path.write_bytes(data)
    before = snapshot(project)
    result = invoke(project, "subscribers", "import", str(path))
    return result, before, snapshot(project)


@FUZZ
@given(text=csv_texts, encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
@example(text='email\n"jamais fermé\nd@example.org', encoding="utf-8")
@example(text="email\nd@example.org\x00\n", encoding="utf-8")
def test_random_csv_imports_or_fails_in_one_line(demo, tmp_path, text, encoding):
    """Fields stay under the csv module's limit here: the field-size failure is the test below."""
    project = copy_of(demo, tmp_path)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    result, before, after = import_outcome(project, data)
    assert_contract(result, before, after)
    if result.exit_code == 0:
        assert result.stdout.startswith("Imported "), result.stdout
        assert all(line.startswith("Skipped ") for line in result.stderr.splitlines()), result.stderr


def test_a_csv_field_over_the_csv_modules_limit_fails_in_one_line(demo, tmp_path):
    project = copy_of(demo, tmp_path)
    data = ("email\n" + "x" * (CSV_FIELD_LIMIT + 10) + "@example.org\n").encode("utf-8")
    result, before, after = import_outcome(project, data)
    assert_contract(result, before, after)
