"""A third-party provider, installed from tests/plugin_example/ as its own package, as a user would.

It is pip-installed (``--no-deps``) into a temporary folder put on the path of fresh
processes, so this test venv is left as it was; then ``newsletter providers`` lists it,
its own tests pass the shipped contract suite, and ``newsletter send`` delivers through it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent / "plugin_example"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("plugin")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (target / "newsletter_postcard").is_dir()
    return target


def environ(plugin_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def newsletter(plugin_path: Path, *args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "newsletter"), *args], cwd=cwd, env=environ(plugin_path, **extra),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_installed_plugin_is_listed_by_newsletter_providers(plugin_path, project):
    listed = newsletter(plugin_path, "--config", str(project / "newsletter.toml"), "providers", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["postcard"]["family"] == "batch" and rows["postcard"]["max_batch"] == 25
    assert "error" not in rows["postcard"]


def test_the_plugin_passes_the_shipped_contract_suite(plugin_path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE),
         "--confcutdir", str(EXAMPLE), str(EXAMPLE / "tests" / "contract_check.py")],
        cwd=tmp_path, env=environ(plugin_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 14 and "failed" not in result.stdout, result.stdout


def test_an_issue_is_sent_through_the_plugin_to_each_subscriber_once(plugin_path, project):
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace('provider = "outbox"', 'provider = "postcard"')
    config.write_text(text + '\n[providers.postcard]\nfolder = "cards"\n', encoding="utf-8")
    people = project / "people.csv"
    people.write_text("email\nann@example.org\nbob@example.org\n", encoding="utf-8")
    args = ("--config", str(config))
    assert newsletter(plugin_path, *args, "subscribers", "import", str(people)).returncode == 0
    sent = newsletter(plugin_path, *args, "send", "--yes")
    assert sent.returncode == 0, sent.stderr
    cards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((project / "cards").glob("*.json"))]
    assert sorted(card["to"] for card in cards) == ["ann@example.org", "bob@example.org"]
    assert all("/unsubscribe/" in card["headers"]["list-unsubscribe"] for card in cards)
    again = newsletter(plugin_path, *args, "send", "--yes")
    assert again.returncode != 0 and len(list((project / "cards").glob("*.json"))) == 2
