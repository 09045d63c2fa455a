"""Every awk this machine has, for the node-side filter tests (test_nodefilter.py, test_nftfilter.py,
test_ipvsfilter.py): a node may run mawk (Debian), gawk (RHEL), BWK awk or busybox awk, and each filter
program must send the same bytes with every one of them (the `awk_bins` fixture: tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List


def _awks() -> Dict[str, List[str]]:
    """Every distinct awk here: name -> argv prefix."""
    found: Dict[str, List[str]] = {}
    seen = set()
    for name in ("awk", "mawk", "gawk", "original-awk", "nawk", "busybox"):
        path = shutil.which(name)
        if not path:
            continue
        argv = [path, "awk"] if name == "busybox" else [path]
        if name == "busybox" and subprocess.run(argv + ["BEGIN{}"], capture_output=True).returncode != 0:
            continue
        real = os.path.realpath(path) + (" awk" if name == "busybox" else "")
        if real not in seen:
            seen.add(real)
            found[name] = argv
    return found


AWKS = _awks()
