"""The deploy recipes, read as their tools read them: the workflow YAML, the Dockerfile, the units.

Docker and GitHub cannot run here, so each ``newsletter …`` command line the recipes run is
parsed by the real CLI (an unknown command or option fails), the workflow is parsed as YAML
and checked for what makes a send exactly-once (one job at a time, the ledger kept), and the
Dockerfile's instructions are checked for a small non-root image whose files exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from conftest import REPO
from newsletter.cli import cli

DEPLOY = REPO / "deploy"


def newsletter_commands(text: str) -> list[list[str]]:
    """Every ``newsletter …`` invocation in shell text, as argument lists (up to ; && || or a pipe)."""
    found = []
    for match in re.finditer(r"(?:^|[\s'\"/])newsletter\s+([a-z][^;&|\n'}]*)", text):
        found.append(shlex.split(match.group(1).replace("$", "X"), comments=True))
    return found


def parse_with_cli(argv: list[str]) -> None:
    """Fail if the CLI would refuse ``argv`` (unknown command, option or value)."""
    with click.Context(cli) as parent:
        command = cli.get_command(parent, argv[0])
        assert command is not None, f"'newsletter {argv[0]}' is not a command"
        command.make_context(argv[0], argv[1:], parent=parent)


def test_workflow_parses_and_keeps_the_ledger_one_job_at_a_time():
    workflow = yaml.safe_load((DEPLOY / "github" / "newsletter.yml").read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true, as GitHub's parser does not
    assert triggers["schedule"][0]["cron"].count(" ") == 4
    assert workflow["concurrency"]["cancel-in-progress"] is False
    job = workflow["jobs"]["build-and-send"]
    assert all(value.startswith("${{ secrets.") for value in job["env"].values())
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    commands = newsletter_commands(runs)
    assert [c[0] for c in commands] == ["build", "send", "backup"], commands
    for argv in commands:
        parse_with_cli(argv)
    assert '"$status" -ne 3' in runs  # nothing due is not a failure
    names = [step.get("name", "") for step in job["steps"]]
    assert names.index("Fetch the ledger") < names.index("Send due issues") < names.index("Keep the ledger")
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in job["steps"])


def dockerfile() -> list[tuple[str, str]]:
    lines = []
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            lines.append((instruction.upper(), rest))
    return lines


def test_dockerfile_is_small_runs_as_a_user_and_its_commands_exist():
    steps = dockerfile()
    bases = [rest for instruction, rest in steps if instruction == "FROM"]
    assert all(base.startswith("python:3.11-slim") for base in bases)
    users = [rest for instruction, rest in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [i for i, _ in steps].index("USER") < [i for i, _ in steps].index("ENTRYPOINT")
    for instruction, rest in steps:
        if instruction == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
    entry = yaml.safe_load(next(rest for i, rest in steps if i == "ENTRYPOINT"))
    default = yaml.safe_load(next(rest for i, rest in steps if i == "CMD"))
    assert entry == ["newsletter"]
    parse_with_cli(default)
    # The usage lines in the header: the service and the send job.
    header = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "newsletter send --yes" in header
    parse_with_cli(["send", "--yes"])


@pytest.mark.parametrize("unit", ["newsletter.service", "newsletter-send.service"])
def test_systemd_units_run_real_commands(unit):
    text = (DEPLOY / unit).read_text(encoding="utf-8")
    exec_lines = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
    commands = [c for line in exec_lines for c in newsletter_commands(line)]
    assert commands
    for argv in commands:
        parse_with_cli(argv)


def test_the_send_timer_is_persistent():
    timer = (DEPLOY / "newsletter-send.timer").read_text(encoding="utf-8")
    assert "Persistent=true" in timer and "OnCalendar=" in timer
    assert Path(DEPLOY / "newsletter-send.service").is_file()
