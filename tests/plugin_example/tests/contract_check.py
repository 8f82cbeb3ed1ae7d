"""The plug-in's own tests: the shipped contract suite, with the postcard folder as its "server".

(Named ``contract_check.py`` so that the main project's test run does not collect it before
the plug-in is installed; ``tests/test_plugin_example.py`` installs the plug-in and runs it.)
"""

import json

import pytest
from newsletter_postcard import PostcardProvider

from newsletter.testing import BatchProviderContract, Harness, Received


class PostcardHarness(Harness):
    def __init__(self, folder):
        self.folder = folder

    def provider(self):
        return PostcardProvider(self.folder)

    def received(self):
        cards = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns) if self.folder.exists() else []
        found = []
        for card in cards:
            data = json.loads(card.read_text(encoding="utf-8"))
            found.append(Received(data["to"], data["subject"], data["text"], data["html"], data["headers"]))
        return found


class TestPostcardContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, tmp_path):
        return PostcardHarness(tmp_path / "cards")
