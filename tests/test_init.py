"""From an empty folder to a first issue, as a new user does it: install, init, new, build, send.

The session runs in subprocesses in a temporary folder: the project is pip-installed
(``--no-deps``) into a fresh virtualenv whose dependencies come from this test venv, so
the console script, the packaged templates and the entry points are those of a wheel,
not of this checkout.  Then git, as the editor would run it, must not see a secret, the
ledger, the outbox or the build output.
"""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

from conftest import REPO
from newsletter.scaffold import slugify

FIVE_MINUTES = 300


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """A command of the session; stdin is not a terminal (as in CI and cron)."""
    return subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with newsletter pip-installed into it; returns its ``newsletter`` script."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    # The dependencies come from the test venv (a plain path: its editable newsletter is not loaded).
    (purelib / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    source = tmp_path_factory.mktemp("source") / "newsletter"
    shutil.copytree(
        REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "public", "outbox", "preview", "*.db*", "build")
    )
    install = subprocess.run(
        # --ignore-installed: never uninstall this test venv's own (editable) newsletter.
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed",
         "--disable-pip-version-check", "--prefix", str(venv), str(source)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    script = venv / "bin" / "newsletter"
    assert script.is_file()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import newsletter; print(newsletter.__file__)"],
                           capture_output=True, text=True, timeout=60, check=False, env=clean_env(venv))  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the installed copy, not this checkout
    return script


def clean_env(home: Path) -> dict[str, str]:
    # A clean machine: no newsletter variables, and no PYTHONPATH that would shadow the installed copy.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") and k != "PYTHONPATH"}
    env.update(HOME=str(home), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", TZ="UTC")
    return env


def test_empty_folder_to_first_issue_in_five_minutes_and_git_sees_no_secret(installed, tmp_path):
    started = time.monotonic()
    env = clean_env(tmp_path)
    work = tmp_path / "letter"
    work.mkdir()
    newsletter = str(installed)
    ok(run([newsletter, "init", "--title", "Carnets d’été", "--url", "https://carnets.example.org",
            "--language", "fr", "--from", "carnets@example.org"], work, env))  # fmt: skip
    config = tomllib.loads((work / "newsletter.toml").read_text(encoding="utf-8"))
    assert config["site"]["title"] == "Carnets d’été" and config["site"]["id"].startswith("urn:uuid:")
    # Not given and no terminal: the defaults.
    assert config["send"]["provider"] == "outbox" and config["email"]["postal_address"]
    secret_line = (work / ".env").read_text(encoding="utf-8")
    assert stat.S_IMODE((work / ".env").stat().st_mode) == 0o600
    key = next(line.split("=", 1)[1] for line in secret_line.splitlines() if line.startswith("NEWSLETTER_TOKEN_KEY="))
    assert len(key) >= 43  # token_urlsafe(32): 256 bits
    assert (work / "templates").is_dir() and [p.name for p in (work / "templates").iterdir()] == ["README.md"]

    # From a subfolder: the config is found upwards, .env beside it is loaded.
    posts = work / "content" / "posts"
    created = ok(run([newsletter, "new", "Été à Paris, déjà !"], posts, env))
    post = posts / "ete-a-paris-deja.md"
    assert str(post) in created.stdout and post.is_file()
    ok(run([newsletter, "subscribers", "add", "lectrice@example.org"], posts, env))
    built = ok(run([newsletter, "build"], work, env))
    assert "Built 2 posts" in built.stdout
    sent = ok(run([newsletter, "send", "--yes"], work, env))
    assert "Done: 1 issue" in sent.stdout and "elapsed" not in sent.stderr
    messages = list((work / "outbox").rglob("*.eml"))
    assert len(messages) == 1
    message = email.message_from_bytes(messages[0].read_bytes(), policy=email.policy.default)
    assert str(message["Subject"]) == "Été à Paris, déjà !" and str(message["To"]) == "lectrice@example.org"
    assert time.monotonic() - started < FIVE_MINUTES

    ok(run(["git", "init", "-q"], work, env))
    ok(run(["git", "add", "-A"], work, env))
    tracked = ok(run(["git", "status", "--porcelain"], work, env)).stdout.splitlines()
    paths = [line[3:] for line in tracked]
    assert sorted(paths) == sorted([".gitignore", "content/posts/ete-a-paris-deja.md", "content/posts/welcome.md",
                                    "newsletter.toml", "templates/README.md"]), paths  # fmt: skip
    for line in tracked:
        assert key not in (work / line[3:]).read_text(encoding="utf-8")


def test_init_refuses_to_overwrite_and_new_never_reuses_a_file(installed, tmp_path):
    env = clean_env(tmp_path)
    ok(run([str(installed), "init", "letter"], tmp_path, env))
    before = (tmp_path / "letter" / "newsletter.toml").read_bytes()
    again = run([str(installed), "init", "letter"], tmp_path, env)
    assert again.returncode == 2 and again.stderr.startswith("Error: ") and "already exists" in again.stderr
    assert (tmp_path / "letter" / "newsletter.toml").read_bytes() == before
    first = ok(run([str(installed), "-C", "letter", "-q", "new", "Même titre"], tmp_path, env)).stdout.strip()
    second = ok(run([str(installed), "-C", "letter", "-q", "new", "Même titre"], tmp_path, env)).stdout.strip()
    assert Path(first).name == "meme-titre.md" and Path(second).name == "meme-titre-2.md"
    ids = {
        line
        for path in (first, second)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.startswith("id:")
    }
    assert len(ids) == 2  # each post its own permanent id
    bad = run([str(installed), "init", "other", "--from", "not-an-address"], tmp_path, env)
    assert bad.returncode == 2 and "not an email address" in bad.stderr and not (tmp_path / "other").exists()


def test_the_real_environment_wins_over_dotenv(installed, tmp_path):
    env = clean_env(tmp_path)
    ok(run([str(installed), "init", "letter"], tmp_path, env))
    project = tmp_path / "letter"
    ok(run([str(installed), "subscribers", "add", "a@example.org"], project, env))
    env["NEWSLETTER_TOKEN_KEY"] = secrets.token_urlsafe(32)  # not the key of .env
    ok(run([str(installed), "send", "--yes"], project, env))
    # The unsubscribe link is signed with the key of the environment, not with that of .env.
    from newsletter.config import Secret, load_config
    from newsletter.envfile import read_env_file
    from newsletter.tokens import UNSUBSCRIBE, InvalidToken, verify_token

    config = load_config(project / "newsletter.toml")
    message = email.message_from_bytes(
        next((project / "outbox").rglob("*.eml")).read_bytes(), policy=email.policy.default
    )
    link = str(message["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]
    token = link.rstrip("/").rsplit("/", 1)[-1]
    real = Secret("k", env["NEWSLETTER_TOKEN_KEY"])
    assert verify_token(token, [real], purpose=UNSUBSCRIBE, list_id=config.email.list_id)
    from_file = Secret("k", read_env_file(project / ".env")["NEWSLETTER_TOKEN_KEY"])
    with pytest.raises(InvalidToken):
        verify_token(token, [from_file], purpose=UNSUBSCRIBE, list_id=config.email.list_id)


@pytest.mark.parametrize(
    "title, slug",
    [
        ("Été à Paris", "ete-a-paris"),
        ("Œuvres & Straße", "oeuvres-strasse"),
        ("  !!!  ", "post"),
        ("Ça va ? Ça va.", "ca-va-ca-va"),
    ],
)
def test_slugs_fold_accents(title, slug):
    assert slugify(title) == slug


def test_init_asks_at_a_terminal_for_what_the_options_do_not_give(installed, tmp_path):
    import pty

    env = clean_env(tmp_path)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(installed), "init", "letter", "--provider", "outbox", "--timezone", "Europe/Paris"],
        cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    # Title, URL, language, sender, postal address: typed ahead, read line by line by the prompts.
    answers = "Notes du lundi\nhttps://lundi.example.org/\nfr\nlundi@example.org\n1 rue du Test, Paris\n"
    os.write(master, answers.encode("utf-8"))
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0, shown
    os.close(master)
    assert b"Title" in shown and b"Postal address" in shown and b"Provider" not in shown
    config = tomllib.loads((tmp_path / "letter" / "newsletter.toml").read_text(encoding="utf-8"))
    assert config["site"]["title"] == "Notes du lundi" and config["site"]["timezone"] == "Europe/Paris"
    assert config["email"] == {
        "from_name": "Notes du lundi",
        "from_address": "lundi@example.org",
        "postal_address": "1 rue du Test, Paris",
    }
