"""docs/api.md is executable: its Python blocks run in order, in a copy of the demo project."""

from __future__ import annotations

import os
import re
from pathlib import Path

from conftest import REPO

BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_api_guide_runs_as_written(project, monkeypatch, capsys):
    blocks = BLOCK.findall((REPO / "docs" / "api.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(project)
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
    assert "already sent" in capsys.readouterr().out
    outbox = Path(project / "outbox" / "new")
    assert len(os.listdir(outbox)) == 2
