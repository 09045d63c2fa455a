"""The tree keeps the style it is written in: `ruff check` and `ruff format --check` (configured in
pyproject.toml) pass. ruff is a test dependency (setup.cfg, pinned: a new release may add rules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(args):
    pytest.importorskip("ruff", reason="ruff is installed with the test extras (pip install -e '.[test]')")
    r = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
