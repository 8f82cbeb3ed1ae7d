"""The hostile-input corpus: every case in ``tests/data/bad/`` driven through the real CLI.

Each case is a folder ``tests/data/bad/<name>/`` holding a ``case.toml`` and the hostile
input itself (posts, a broken ``newsletter.toml``, a CSV...).  Binary and huge inputs are
generated here from a recipe, so the repository stays small.  Folders starting with ``_``
are shared material, not cases.

How a case runs: a fresh copy of the demo project (the ``project`` fixture) receives the
``public/``, ``outbox/`` and ledger of a good baseline (``subscribers add`` ×3, ``build``,
``send --yes``, done once per session); the case is applied; the whole temporary tree and
every ledger table are snapshotted; the installed ``newsletter`` console script runs as a
subprocess (so a traceback would really show); then the contract is checked:

- the exit code (1 bad input, 2 bad usage, 0 for inputs that must be accepted safely);
- an error is exactly one line on stderr, ``Error: …``, naming the file or field, with a
  hint after `` — `` (click's own usage errors: ``format = "click-usage"``);
- no ``Traceback`` and no secret value in stdout or stderr;
- the temporary tree (``public/``, ``outbox/`` and everything else) is unchanged after an
  error, and fully rebuilt or fully sent after a success; the ledger is unchanged unless
  the case documents otherwise (provider answers after which the provider may have sent).

``case.toml`` keys (all optional except the first four):

``kind``            post | config | environment | provider | state | usage (for reading only)
``command``         the CLI arguments, e.g. ``["send", "--yes"]``
``exit_code``       the expected exit code
``message``         substring(s) the one error line must contain
``description``     what the case is about
``expect``          "error" (default) or "success"
``format``          "one-line" (default) or "click-usage"
``outputs``         success only: "rebuilt" (public/ rebuilt, valid) or "sent" (new issue in outbox/)
``ledger``          "unchanged" (default) | "no-unconfirmed-accepts" | "new-issue-sent"
``chunk_state``     with "no-unconfirmed-accepts": the state every chunk of the new issue must be in
``require``/``forbid``  strings that must / must not appear in the outputs (public/ files, or the
                    decoded new emails); ``forbid`` is also checked against stdout and stderr
``warning``         success only: substrings of the one ``Warning: …`` line stderr must hold
``forbid_paths``    file names that must not appear anywhere in the temporary tree
``new_post``        copy ``_shared/nouveau-billet.md`` (a valid post newer than the demo's)
``*.md`` files      copied into ``content/posts/``; ``newsletter.toml`` replaces the config
``config_replace``  ``[[old, new], ...]`` applied to newsletter.toml (old must be present)
``config_append``   text appended to newsletter.toml
``generate``        ``{kind = windows-1252 | binary | empty | pad | garbage-pages | long-field,
                    path, source, size}``, or
                    ``{kind = "repeat", path, head, unit, count, middle, close, tail}``: head, unit ×
                    count, middle, close × count, tail (deep nesting without a huge file here);
                    ``append = true`` adds it to the end of an existing file
``replace``         ``[[replace]] path, old, new``: edit a file of the project (old must be present)
``write``           ``[[write]] path, text``; ``mkdir``, ``remove``, ``symlink = [[link, target]]``
``env``/``unset_env``  environment changes (``{tmp}``, ``{project}``, ``{resend_key}`` expanded)
``cwd``             where to run (default: the project)
``provider``        "resend": a local FakeResend with fast retries; ``[[fault]]`` to inject
``provider_requests``  how many requests the fake must have received
``lock_db``         hold ``BEGIN EXCLUSIVE`` on the ledger while the command runs
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree

from conftest import REPO
from fakes import FakeResend, Fault
from newsletter.config import load_config
from newsletter.content import published, read_posts
from newsletter.files import MANIFEST
from newsletter.site import site_files
from newsletter.templates import make_environment

COMMAND = str(Path(sys.executable).with_name("newsletter"))
CASES_DIR = Path(__file__).resolve().parent / "data" / "bad"
SHARED = CASES_DIR / "_shared"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))

# Recognisable secrets: none may ever show in what the CLI prints.
SECRET_TOKEN_KEY = "sekret-token-key-XYZ-7f3a9c-long-enough-for-256-bits"
SECRET_OLD_TOKEN_KEY = "sekret-old-token-key-XYZ-99e1"
SECRET_RESEND_KEY = "re_sekret-resend-key-XYZ-51b2"
SECRET_SMTP_PASSWORD = "sekret-smtp-password-XYZ-0c4d"
SECRETS = (SECRET_TOKEN_KEY, SECRET_OLD_TOKEN_KEY, SECRET_RESEND_KEY, SECRET_SMTP_PASSWORD, "sekret-")

SUBSCRIBERS = ("alice@example.org", "bruno@example.org", "camille@example.org")
LEDGER_FILES = {
    "newsletter.db",
    "newsletter.db-wal",
    "newsletter.db-shm",
    "newsletter.db-journal",
    "newsletter.db.lock",
}
ATOM = "{http://www.w3.org/2005/Atom}"
# Markup that must never survive sanitizing (SEC-01), whatever the post holds.
DANGEROUS_TAGS = {"script", "iframe", "object", "embed", "form", "input", "svg", "frame", "frameset", "applet", "base"}
SAFE_SCHEMES = {"", "http", "https", "mailto"}
EXPECTED_HEADERS = {
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
    "List-Archive", "MIME-Version", "Content-Type",
}  # fmt: skip


# ---------------------------------------------------------------- environment and subprocess


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_TOKEN_KEY=SECRET_TOKEN_KEY,
        NEWSLETTER_TOKEN_KEY_OLD=SECRET_OLD_TOKEN_KEY,
        NEWSLETTER_RESEND_API_KEY=SECRET_RESEND_KEY,
        NEWSLETTER_SMTP_PASSWORD=SECRET_SMTP_PASSWORD,
        PYTHONIOENCODING="utf-8",
    )
    return env


def newsletter(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMMAND, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        encoding="utf-8", errors="replace", timeout=120,
    )  # fmt: skip


def copy_demo(root: Path) -> Path:
    """What the ``project`` fixture of conftest does: the demo config and posts in ``root``."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    shutil.copytree(REPO / "content", root / "content")
    return root


@pytest.fixture(scope="session")
def baseline(tmp_path_factory) -> Path:
    """The demo after a good ``build`` and a good ``send --yes`` to three subscribers."""
    root = copy_demo(tmp_path_factory.mktemp("baseline") / "site")
    env = base_env()
    for args in (("subscribers", "add", *SUBSCRIBERS), ("build",), ("send", "--yes")):
        done = newsletter(*args, cwd=root, env=env)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert len(list((root / "outbox" / "new").glob("*.eml"))) == len(SUBSCRIBERS)
    return root


def install_baseline(project: Path, baseline: Path) -> None:
    for name in ("public", "outbox"):
        shutil.copytree(baseline / name, project / name)
    for name in LEDGER_FILES:
        if (baseline / name).is_file():
            shutil.copy2(baseline / name, project / name)


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    spec: dict

    @classmethod
    def load(cls, name: str) -> Case:
        folder = CASES_DIR / name
        return cls(name, folder, tomllib.loads((folder / "case.toml").read_text(encoding="utf-8")))

    def get(self, key: str, default=None):
        return self.spec.get(key, default)

    @property
    def messages(self) -> list[str]:
        message = self.spec.get("message", [])
        return [message] if isinstance(message, str) else list(message)


@dataclass
class Result:
    case: Case
    project: Path
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    tree_before: dict
    tree_after: dict
    ledger_before: tuple
    ledger_after: tuple
    new_issues: list[dict] = field(default_factory=list)
    new_deliveries: list[dict] = field(default_factory=list)
    new_chunks: list[dict] = field(default_factory=list)
    fake_requests: int | None = None
    fake_email_ids: set[str] = field(default_factory=set)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def expand(text: str, *, project: Path, tmp: Path) -> str:
    return text.replace("{project}", str(project)).replace("{tmp}", str(tmp)).replace("{resend_key}", SECRET_RESEND_KEY)


def where(path: str, *, project: Path, tmp: Path) -> Path:
    return Path(expand(path, project=project, tmp=tmp)) if "{" in path else project / path


PAD_PARAGRAPH = (
    "Le commerce de proximité se réinvente chaque jour : vitrines, marchés, réseaux de quartier "
    "et boutiques en ligne se répondent, et chacun y trouve sa place.\n\n"
)


def generate(recipe: dict, case: Case, *, project: Path, tmp: Path) -> None:
    target = where(recipe["path"], project=project, tmp=tmp)
    kind = recipe["kind"]
    if kind == "windows-1252":
        source = expand(recipe["source"], project=project, tmp=tmp)
        source_path = Path(source) if Path(source).is_absolute() else case.folder / source
        data = source_path.read_text(encoding="utf-8").encode("cp1252")
    elif kind == "binary":
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02X" + bytes(range(256)) * 16
    elif kind == "empty":
        data = b""
    elif kind == "repeat":
        count = recipe["count"]
        parts = (
            recipe.get("head", ""),
            recipe["unit"] * count,
            recipe.get("middle", ""),
            recipe.get("close", "") * count,
        )
        data = ("".join(parts) + recipe.get("tail", "")).encode("utf-8")
        if recipe.get("append"):
            data = target.read_bytes() + b"\n" + data
    elif kind == "pad":
        head = (case.folder / recipe["source"]).read_bytes()
        paragraph = PAD_PARAGRAPH.encode("utf-8")
        data = head + paragraph * (1 + (recipe["size"] - len(head)) // len(paragraph))
    elif kind == "garbage-pages":  # every page after the first (the schema) overwritten in place
        original = target.read_bytes()
        page = int.from_bytes(original[16:18], "big") or 65536
        data = original[:page] + bytes([0xA5]) * (len(original) - page)
    elif kind == "long-field":  # one CSV field longer than the csv module's limit
        data = ("email,note\nann@example.org,ok\nbob@example.org," + "x" * recipe["size"] + "\n").encode("utf-8")
    else:
        raise ValueError(f"{case.name}: unknown generate kind {kind!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def configure_resend(project: Path, url: str) -> None:
    """provider = resend against the fake, with fast retries (as in test_provider_resend)."""
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    assert 'provider = "outbox"' in text
    text = text.replace(
        'provider = "outbox"',
        'provider = "resend"\nretry_base_delay = 0.01\nretry_max_delay = 0.05\nretry_attempts = 2',
    )
    path.write_text(text + f'\n[providers.resend]\nbase_url = "{url}"\n', encoding="utf-8")


def fault_of(spec: dict) -> Fault:
    if spec.get("kind", "http") != "http":
        raise ValueError(f"unsupported fault {spec!r}")
    body = spec["json"] if "json" in spec else spec.get("body")
    times = spec.get("times", 1) or None  # 0: every request
    return Fault.http(spec["status"], body=body, retry_after=None, times=times)


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` except the live ledger files and the build cache (regenerable,
    like __pycache__: any command may fill it): dirs, links and file hashes."""
    entries = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.name in LEDGER_FILES and path.parent.name == "site":
            continue
        if ".newsletter-cache" in path.relative_to(root).parts:
            continue
        if path.is_symlink():
            entries[relative] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[relative] = ("dir",)
        else:
            data = path.read_bytes()
            entries[relative] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return entries


def _ledger_copy(project: Path, directory: Path) -> Path | None:
    source = project / "newsletter.db"
    if not source.is_file():
        return None
    copy = directory / "copy.db"
    shutil.copy(source, copy)
    if (project / "newsletter.db-wal").is_file():
        shutil.copy(project / "newsletter.db-wal", directory / "copy.db-wal")
    return copy


def ledger_dump(project: Path) -> tuple:
    """Every table of the ledger (``iterdump`` of a copy), or the raw bytes' hash if it is not a database."""
    source = project / "newsletter.db"
    if not source.exists():
        return ("missing",)
    if not source.is_file():
        return ("not a file",)
    with tempfile.TemporaryDirectory() as directory:
        copy = _ledger_copy(project, Path(directory))
        try:
            with sqlite3.connect(copy) as db:
                return tuple(db.iterdump())
        except sqlite3.DatabaseError:
            return ("raw", hashlib.sha256(source.read_bytes()).hexdigest())


def ledger_rows(project: Path, sql: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as directory:
        copy = _ledger_copy(project, Path(directory))
        if copy is None:
            return []
        try:
            db = sqlite3.connect(copy)
            db.row_factory = sqlite3.Row
            try:
                return [dict(row) for row in db.execute(sql)]
            finally:
                db.close()
        except sqlite3.DatabaseError:
            return []


def run_case(case: Case, project: Path, baseline: Path, *, extra_args: tuple[str, ...] = ()) -> Result:
    """Apply ``case`` to ``project`` (a fresh demo copy), run the CLI once, snapshot before and after."""
    tmp = project.parent
    spec = case.spec
    install_baseline(project, baseline)
    env = base_env()
    with ExitStack() as stack:
        if spec.get("new_post"):
            shutil.copy(SHARED / "nouveau-billet.md", project / "content" / "posts" / "nouveau-billet.md")
        for post in sorted(case.folder.glob("*.md")):
            shutil.copy(post, project / "content" / "posts" / post.name)
        if (case.folder / "newsletter.toml").is_file():
            shutil.copy(case.folder / "newsletter.toml", project / "newsletter.toml")
        config = project / "newsletter.toml"
        for old, new in spec.get("config_replace", []):
            text = config.read_text(encoding="utf-8")
            assert old in text, f"{case.name}: {old!r} not in newsletter.toml"
            config.write_text(text.replace(old, new), encoding="utf-8")
        if "config_append" in spec:
            config.write_text(config.read_text(encoding="utf-8") + "\n" + spec["config_append"], encoding="utf-8")
        fake = None
        if spec.get("provider") == "resend":
            fake = stack.enter_context(FakeResend(api_key=SECRET_RESEND_KEY))
            configure_resend(project, fake.url)
            for fault in spec.get("fault", []):
                fake.inject(fault_of(fault))
        for name in spec.get("remove", []):
            shutil.rmtree(where(name, project=project, tmp=tmp))
        for name in spec.get("mkdir", []):
            where(name, project=project, tmp=tmp).mkdir(parents=True, exist_ok=True)
        for item in spec.get("write", []):
            target = where(item["path"], project=project, tmp=tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item["text"].encode("utf-8"))
        for item in spec.get("replace", []):
            target = where(item["path"], project=project, tmp=tmp)
            text = target.read_text(encoding="utf-8")
            assert item["old"] in text, f"{case.name}: {item['old']!r} not in {item['path']}"
            target.write_text(text.replace(item["old"], item["new"]), encoding="utf-8")
        for link, target in spec.get("symlink", []):
            where(link, project=project, tmp=tmp).symlink_to(expand(target, project=project, tmp=tmp))
        if "generate" in spec:
            generate(spec["generate"], case, project=project, tmp=tmp)
        for name, value in spec.get("env", {}).items():
            env[name] = expand(value, project=project, tmp=tmp)
        for name in spec.get("unset_env", []):
            env.pop(name, None)
        cwd = Path(expand(spec["cwd"], project=project, tmp=tmp)) if "cwd" in spec else project
        argv = [*extra_args, *spec["command"]]

        tree_before, ledger_before = tree(tmp), ledger_dump(project)
        baseline_keys = {row["key"] for row in ledger_rows(project, "SELECT key FROM issues")}
        if spec.get("lock_db"):
            holder = sqlite3.connect(project / "newsletter.db", isolation_level=None)
            stack.callback(holder.close)
            holder.execute("BEGIN EXCLUSIVE")
            stack.callback(holder.execute, "ROLLBACK")
        done = newsletter(*argv, cwd=cwd, env=env)
        stack.close()  # release the lock and stop the fake before looking at the results

    issues = [r for r in ledger_rows(project, "SELECT * FROM issues") if r["key"] not in baseline_keys]
    ids = ",".join(str(r["id"]) for r in issues) or "-1"
    return Result(
        case=case, project=project, argv=argv, exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr,
        tree_before=tree_before, tree_after=tree(tmp), ledger_before=ledger_before, ledger_after=ledger_dump(project),
        new_issues=issues,
        new_deliveries=ledger_rows(project, f"SELECT * FROM deliveries WHERE issue_id IN ({ids})"),
        new_chunks=ledger_rows(project, f"SELECT * FROM chunks WHERE issue_id IN ({ids})"),
        fake_requests=len(fake.requests) if fake else None,
        fake_email_ids=set(fake.emails) if fake else set(),
    )  # fmt: skip


# ---------------------------------------------------------------- checks


def tree_changes(before: dict, after: dict, *, ignore: tuple[str, ...] = ()) -> list[str]:
    def kept(path: str) -> bool:
        return not any(path == prefix or path.startswith(prefix + "/") for prefix in ignore)

    changes = []
    for path in sorted(set(before) | set(after)):
        if not kept(path) or before.get(path) == after.get(path):
            continue
        what = "added" if path not in before else "removed" if path not in after else "changed"
        changes.append(f"{what}: {path}")
    return changes


def ledger_lines(dump: tuple) -> set[str]:
    return {line for line in dump if "sqlite_sequence" not in line}


def public_text(project: Path) -> str:
    folder = project / "public"
    if not folder.is_dir():
        return ""
    texts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            texts.append(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            continue  # a copied image: what the build generates is UTF-8 text
    return "\n".join(texts)


class _MarkupAudit(HTMLParser):
    """Collects dangerous tags, event-handler attributes and non-http(s) URLs in HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in DANGEROUS_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "formaction", "xlink:href") and value is not None:
                # Browsers ignore ASCII whitespace and controls inside a URL's scheme.
                scheme = urlsplit(re.sub(r"[\x00-\x20]", "", value)).scheme.lower()
                if scheme not in SAFE_SCHEMES:
                    self.found.append(f"<{tag} {name}={value[:40]!r}>")


def markup_problems(html: str) -> list[str]:
    audit = _MarkupAudit()
    audit.feed(html)
    audit.close()
    return audit.found


def html_outputs(result: Result) -> dict[str, str]:
    """Every HTML the command produced: pages, the feed's entry contents, emails' HTML parts."""
    outputs = {}
    public = result.project / "public"
    if result.case.get("outputs") == "rebuilt" and public.is_dir():
        for page in sorted(public.rglob("*.html")):
            outputs[str(page.relative_to(public))] = page.read_text(encoding="utf-8")
        try:
            root = etree.parse(str(public / "feed.xml")).getroot()
            for number, content in enumerate(root.iter(f"{ATOM}content")):
                outputs[f"feed.xml entry {number}"] = content.text or ""
        except (OSError, etree.XMLSyntaxError):
            pass
    for path in new_emails(result):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() == "text/html":
                outputs[path.name] = part.get_content()
    return outputs


def decoded_email(path: Path) -> tuple[email.message.EmailMessage, str]:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    texts = [f"{name}: {value}" for name, value in message.items()]
    texts += [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return message, "\n".join(texts)


def new_emails(result: Result) -> list[Path]:
    added = [p for p in set(result.tree_after) - set(result.tree_before) if p.startswith("site/outbox/new/")]
    return [result.project.parent / p for p in sorted(added)]


def check_error_line(result: Result, problems: list[str]) -> None:
    case = result.case
    if case.get("exit_code") == 3:
        lines = [line for line in result.stdout.splitlines() if line.startswith("Nothing to send:")]
        if len(lines) != 1 or result.stderr.strip():
            problems.append(f"exit 3 must print one 'Nothing to send:' line and nothing on stderr: {result.output!r}")
        line = lines[0] if lines else ""
    elif case.get("format", "one-line") == "click-usage":
        lines = result.stderr.strip().splitlines()
        line = lines[-1] if lines else ""
        if not (lines and lines[0].startswith("Usage: ") and line.startswith("Error: ")):
            problems.append(f"not click's usage format: {result.stderr!r}")
    else:
        lines = result.stderr.splitlines()
        line = lines[0] if lines else ""
        if len(lines) != 1:
            problems.append(f"stderr must be exactly one line, got {len(lines)}: {result.stderr!r}")
        if not line.startswith("Error: "):
            problems.append(f"the line must start with 'Error: ': {line!r}")
        if " — " not in line:
            problems.append(f"no fix hint after ' — ': {line!r}")
    for fragment in case.messages:
        if fragment not in line:
            problems.append(f"{fragment!r} missing from the error line {line!r}")


def check_success_outputs(result: Result, problems: list[str]) -> str:
    """Outputs of a command that must succeed; returns the text to search for require/forbid."""
    case, project = result.case, result.project
    mode = case.get("outputs")
    if mode == "rebuilt":
        for change in tree_changes(result.tree_before, result.tree_after, ignore=("site/public",)):
            problems.append(f"outside public/: {change}")
        config = load_config(project / "newsletter.toml")
        posts = published(read_posts(config), datetime.now(UTC))
        expected = set(site_files(config, posts, make_environment(config.templates_dir))) | {MANIFEST}
        files = {str(p.relative_to(project / "public")) for p in (project / "public").rglob("*") if p.is_file()}
        if files != expected:
            problems.append(f"public/ is not exactly the site: extra {files - expected}, missing {expected - files}")
        try:
            root = etree.parse(str(project / "public" / "feed.xml")).getroot()
            ids = {e.findtext(f"{ATOM}id") for e in root.iter(f"{ATOM}entry")}
            if ids != {p.id for p in posts}:
                problems.append("the feed's entries are not the published posts")
        except (OSError, etree.XMLSyntaxError) as error:
            problems.append(f"public/feed.xml does not parse: {error}")
        return public_text(project)
    if mode == "sent":
        outside = tree_changes(result.tree_before, result.tree_after, ignore=("site/outbox/new",))
        problems.extend(f"outside outbox/new/: {change}" for change in outside)
        old_messages = [p for p in result.tree_before if p.startswith("site/outbox/new/")]
        gone = [p for p in old_messages if result.tree_after.get(p) != result.tree_before[p]]
        problems.extend(f"a message of the baseline changed or vanished: {p}" for p in gone)
        paths = new_emails(result)
        if len(paths) != len(SUBSCRIBERS):
            problems.append(f"expected {len(SUBSCRIBERS)} new messages in outbox/new/, found {len(paths)}")
        texts = []
        for path in paths:
            message, text = decoded_email(path)
            if set(message.keys()) != EXPECTED_HEADERS or len(message.keys()) != len(EXPECTED_HEADERS):
                problems.append(f"{path.name}: unexpected headers {message.keys()}")
            texts.append(text)
        return "\n".join(texts)
    problems.append(f"unknown outputs mode {mode!r}")
    return ""


def check_ledger(result: Result, problems: list[str]) -> None:
    mode = result.case.get("ledger", "unchanged")
    if mode == "unchanged":
        if result.ledger_after != result.ledger_before:
            added = sorted(ledger_lines(result.ledger_after) - ledger_lines(result.ledger_before))
            problems.append(f"the ledger changed: {len(added)} new or changed rows, e.g. {added[:3]}")
        return
    lost = sorted(ledger_lines(result.ledger_before) - ledger_lines(result.ledger_after))
    if lost:
        problems.append(f"rows of the baseline changed: {lost[:3]}")
    if mode == "new-issue-sent":
        issues = result.new_issues
        if len(issues) != 1 or issues[0]["status"] != "sent":
            problems.append(f"expected one new issue, sent: {issues}")
        states = {d["state"] for d in result.new_deliveries}
        if states != {"accepted"} or len(result.new_deliveries) != len(SUBSCRIBERS):
            problems.append(f"every subscriber must be recorded accepted: {result.new_deliveries}")
        names = {Path(p).name for p in map(str, new_emails(result))}
        for delivery in result.new_deliveries:
            if issues and f"{issues[0]['key']}.{delivery['subscriber_id']}.eml" not in names:
                problems.append(f"accepted but not in outbox/new/: {delivery['email']}")
    elif mode == "no-unconfirmed-accepts":
        for delivery in result.new_deliveries:
            if delivery["state"] == "accepted" and delivery["provider_message_id"] not in result.fake_email_ids:
                problems.append(f"recorded accepted without the provider's confirmation: {delivery}")
        if any(issue["status"] == "sent" for issue in result.new_issues):
            problems.append("an issue is marked sent although the provider never confirmed it")
        wanted = result.case.get("chunk_state")
        if wanted and {c["state"] for c in result.new_chunks} != {wanted}:
            problems.append(f"chunks must be {wanted!r}: {[c['state'] for c in result.new_chunks]}")
    else:
        problems.append(f"unknown ledger mode {mode!r}")


def contract_problems(result: Result) -> list[str]:
    """Every way ``result`` breaks the contract of its case (empty: it holds)."""
    case = result.case
    problems: list[str] = []
    if "Traceback" in result.output:
        problems.append("a traceback was printed")
    for secret in SECRETS:
        if secret in result.output:
            problems.append(f"a secret value was printed ({secret[:10]}…)")
    if result.exit_code != case.get("exit_code"):
        problems.append(f"exit code {result.exit_code}, expected {case.get('exit_code')}")
    for name in case.get("forbid_paths", []):
        found = [p for p in result.tree_after if Path(p).name == name]
        if found:
            problems.append(f"{name!r} appeared: {found}")
    searched = ""
    if case.get("expect", "error") == "error":
        check_error_line(result, problems)
        problems.extend(tree_changes(result.tree_before, result.tree_after))
        searched = public_text(result.project)
    else:
        warned = [line for line in result.stderr.splitlines() if line.strip()]
        expected_warning = case.get("warning", [])
        if not expected_warning and warned:
            problems.append(f"a success prints nothing on stderr: {result.stderr!r}")
        elif expected_warning and not (
            len(warned) == 1 and warned[0].startswith("Warning: ") and all(w in warned[0] for w in expected_warning)
        ):
            problems.append(f"expected one 'Warning: …' line with {expected_warning}, got {result.stderr!r}")
        searched = check_success_outputs(result, problems)
        for name, html in html_outputs(result).items():
            problems.extend(f"{name}: dangerous markup {found}" for found in markup_problems(html))
        for fragment in case.get("require", []):
            if fragment not in searched:
                problems.append(f"{fragment!r} missing from the outputs")
    for fragment in case.get("forbid", []):
        if fragment in searched or fragment in result.output:
            problems.append(f"{fragment!r} found in the outputs")
    check_ledger(result, problems)
    if "provider_requests" in case.spec and result.fake_requests != case.get("provider_requests"):
        problems.append(f"the provider got {result.fake_requests} requests, expected {case.get('provider_requests')}")
    return problems


def describe(result: Result, problems: list[str]) -> str:
    return "\n".join(
        [f"case {result.case.name}: newsletter {' '.join(result.argv)} → exit {result.exit_code}"]
        + [f"  - {p}" for p in problems]
        + [f"  stdout: {result.stdout[-600:]!r}", f"  stderr: {result.stderr[-600:]!r}"]
    )


# ---------------------------------------------------------------- tests

RESULTS: dict[str, Result] = {}


def test_corpus_is_large_and_well_formed():
    assert len(CASES) >= 40
    kinds = set()
    for name in CASES:
        case = Case.load(name)
        for key in ("kind", "command", "exit_code", "description"):
            assert key in case.spec, (name, key)
        if case.get("expect", "error") == "error":
            assert case.messages, name
        assert case.get("exit_code") in (0, 1, 2, 3), name
        kinds.add(case.get("kind"))
    assert {"post", "config", "environment", "provider", "state", "usage"} <= kinds


def test_the_driver_detects_what_it_must(tmp_path):
    """The detectors the corpus relies on do fire: dangerous markup, a changed tree, a changed ledger."""
    assert markup_problems('<p><a href=" jav\tascript:alert(1)">x</a><img src=x onerror=y><iframe></iframe></p>')
    assert markup_problems('<a href="data:text/html,x">d</a>')
    assert not markup_problems('<p><a href="https://example.org/">ok</a> <img src="https://e.org/i.png" alt="i"></p>')
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "public").mkdir()
    before = tree(tmp_path)
    (tmp_path / "site" / "public" / "feed.xml").write_bytes(b"<feed/>")
    assert tree_changes(before, tree(tmp_path)) == ["added: site/public/feed.xml"]
    db = sqlite3.connect(tmp_path / "site" / "newsletter.db")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    first = ledger_dump(tmp_path / "site")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()
    assert ledger_dump(tmp_path / "site") != first


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, project, baseline):
    """One case of tests/data/bad/ through the real CLI: message, exit code, unchanged state."""
    result = run_case(Case.load(name), project, baseline)
    RESULTS[name] = result
    problems = contract_problems(result)
    assert not problems, describe(result, problems)


def test_debug_shows_the_traceback_but_no_secret(project, baseline):
    """--debug is the one way to get a traceback; it never carries a secret either."""
    result = run_case(Case.load("yaml-malformed"), project, baseline, extra_args=("--debug",))
    assert result.exit_code != 0
    assert "Traceback" in result.stderr and "PostError" in result.stderr and "invalid YAML" in result.stderr
    assert not any(secret in result.output for secret in SECRETS)
    assert not tree_changes(result.tree_before, result.tree_after)
    assert result.ledger_after == result.ledger_before


def test_whole_corpus_prints_no_traceback_and_no_secret(tmp_path, baseline):
    """Every case (reusing the runs above, running the missing ones): the combined captured
    output holds no traceback and no secret value."""
    missing = [name for name in CASES if name not in RESULTS]

    def run_one(name: str) -> Result:
        return run_case(Case.load(name), copy_demo(tmp_path / name / "site"), baseline)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for result in pool.map(run_one, missing):
            RESULTS[result.case.name] = result
    combined = "\n".join(RESULTS[name].output for name in CASES)
    assert combined.strip(), "the corpus printed nothing at all"
    assert "Traceback" not in combined, [n for n in CASES if "Traceback" in RESULTS[n].output]
    for secret in SECRETS:
        assert secret not in combined, [n for n in CASES if secret in RESULTS[n].output]
