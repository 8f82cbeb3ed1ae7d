"""Read messages back with a non-Python mail parser: nodemailer's ``mailparser`` under Node.

The suite owns its Node dependencies in ``tests/node/`` (package.json and package-lock.json
committed, ``node_modules/`` ignored).  ``make test`` installs them with ``npm ci``; when they
are missing anyway (pytest run directly), the first use installs them the same way.  Without
Node the tests fail with a message saying what to install: a skip would hide that the check
did not run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "readback.mjs"
INSTALLED = NODE_DIR / "node_modules" / "mailparser" / "package.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"{name} is not installed: the mail read-back tests need Node.js 18+ and npm "
            "(Debian: apt-get install nodejs npm), then run make test"
        )
    return path


def ensure_installed() -> None:
    """``npm ci --prefix tests/node`` unless mailparser is already there (idempotent)."""
    if INSTALLED.is_file():
        return
    done = subprocess.run(
        [_tool("npm"), "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and INSTALLED.is_file(), f"npm ci in {NODE_DIR} failed:\n{done.stderr[-2000:]}"


def read_back(*paths: Path) -> list[dict]:
    """What mailparser finds in each message file: subject, ids, list headers, html and text."""
    ensure_installed()
    done = subprocess.run(
        [_tool("node"), str(SCRIPT), *map(str, paths)], capture_output=True, text=True, timeout=120, cwd=NODE_DIR
    )
    assert done.returncode == 0, f"mailparser failed:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)
