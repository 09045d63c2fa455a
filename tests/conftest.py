"""Fixtures more than one test module uses."""

from __future__ import annotations

from typing import Dict

import pytest

from tests.filtertools import AWKS


@pytest.fixture(scope="module")
def awk_bins(tmp_path_factory) -> Dict[str, str]:
    """name -> a directory whose `awk` is that awk (put first in PATH, the filter script runs it)."""
    out = {}
    for name, argv in AWKS.items():
        d = tmp_path_factory.mktemp(f"awk-{name}")
        (d / "awk").write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in argv) + ' "$@"\n')
        (d / "awk").chmod(0o755)
        out[name] = str(d)
    return out
