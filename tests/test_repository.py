"""The repository stands alone: every requirement id it cites is defined in docs/requirements.md,
every test that file names exists, and no tracked file points outside the repository."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO

REQUIREMENTS = REPO / "docs" / "requirements.md"
# ATOM-15 in prose, ATOM_15 in test names; not a longer word or number (XYZ-99e1, RFC_8058).
CITED_ID = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2,5})[-_]([0-9]{2})(?![0-9A-Za-z])")
# Ids that look like requirement ids but are test data, not citations.
NOT_IDS = {"XYZ"}
DEFINED_LINE = re.compile(r"^- ([A-Z]{2,5}-[0-9]{2}) — (.+?) — (.+?) — (.+)$")
# `test_site::test_x` or tests/test_site.py::test_x
TEST_REFERENCE = re.compile(r"(?:tests/)?(test_\w+?)(?:\.py)?::(test_\w+)")


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [name for name in listing.decode("utf-8").split("\0") if name]


def tracked_texts() -> dict[str, str]:
    texts = {}
    for name in tracked_files():
        path = REPO / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def defined_ids() -> dict[str, str]:
    lines = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if match := DEFINED_LINE.match(line):
            lines[match.group(1)] = line
    return lines


def cited_ids() -> dict[str, set[str]]:
    """Every requirement id cited outside docs/requirements.md → the files that cite it.

    Test names also cite ids in lower case (``test_list01_...``); those count for the
    prefixes the repository uses in upper case.
    """
    texts = {name: text for name, text in tracked_texts().items() if name != "docs/requirements.md"}
    cited: dict[str, set[str]] = {}
    for name, text in texts.items():
        for prefix, number in CITED_ID.findall(text):
            if prefix not in NOT_IDS:
                cited.setdefault(f"{prefix}-{number}", set()).add(name)
    prefixes = {identifier.split("-")[0].lower() for identifier in cited}
    for name, text in texts.items():
        if not name.startswith("tests/"):
            continue
        for test in re.findall(r"def (test_\w+)", text):
            for prefix, number in re.findall(r"(?<=_)([a-z]{2,5})_?([0-9]{2})(?=_|$)", test):
                if prefix in prefixes:
                    cited.setdefault(f"{prefix.upper()}-{number}", set()).add(name)
    return cited


def test_the_repository_cites_requirement_ids():
    # Guards the test below against a regex that silently matches nothing.
    assert {"ATOM-15", "SEC-05", "LIST-01"} <= set(cited_ids())


def test_every_cited_requirement_id_is_defined_in_docs_requirements():
    defined = defined_ids()
    missing = {identifier: sorted(files) for identifier, files in cited_ids().items() if identifier not in defined}
    assert missing == {}, "add a line to docs/requirements.md for each of these"


def test_every_requirement_line_names_its_source_and_existing_tests():
    test_names = {}
    for path in (REPO / "tests").glob("test_*.py"):
        test_names[path.stem] = set(re.findall(r"def (test_\w+)", path.read_text(encoding="utf-8")))
    unknown = []
    for identifier, line in defined_ids().items():
        for module, test in TEST_REFERENCE.findall(line):
            if test not in test_names.get(module, set()):
                unknown.append(f"{identifier}: {module}::{test}")
    assert unknown == []
    body = REQUIREMENTS.read_text(encoding="utf-8")
    listed = [line for line in body.splitlines() if re.match(r"^- [A-Z]{2,5}-[0-9]{2} ", line)]
    assert listed and all(DEFINED_LINE.match(line) for line in listed), "one line per id: id — what — source — tests"


def test_no_tracked_file_refers_to_anything_outside_the_repository():
    # The character class keeps this file from matching itself (and from any grep for the plain word).
    outside = re.compile(r"\.\./s[h]ared|/work/s[h]ared")
    offenders = sorted(name for name, text in tracked_texts().items() if outside.search(text))
    assert offenders == []


def test_the_seed_text_is_inside_the_repository():
    seed = REPO / "tests" / "data" / "seed.txt"
    assert "tests/data/seed.txt" in tracked_files() or seed.is_file()
    assert "Jon Husband et Claude Super" in seed.read_text(encoding="utf-8")


MODULE_ROW = re.compile(r"^\| `([\w/]+\.py)` \| (.+) \|$")


def test_docs_modules_lists_every_module_with_its_job():
    """docs/modules.md names each module of src/newsletter once, with its one job, and no module
    that is gone; the guide of about 600 lines a module holds for all of them."""
    package = REPO / "src" / "newsletter"
    modules = {str(path.relative_to(package)) for path in package.rglob("*.py")}
    rows = [MODULE_ROW.match(line) for line in (REPO / "docs" / "modules.md").read_text(encoding="utf-8").splitlines()]
    listed = [row.group(1) for row in rows if row]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert set(listed) == modules, {"not listed": sorted(modules - set(listed)), "gone": sorted(set(listed) - modules)}
    assert all(len(row.group(2)) > 10 for row in rows if row)
    too_long = {name: n for name in modules if (n := len((package / name).read_text().splitlines())) > 620}
    assert not too_long, too_long
