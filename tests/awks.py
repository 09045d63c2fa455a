"""Every awk this machine has, for the node-side filter tests (test_nodefilter.py, test_nftfilter.py,
test_ipvsfilter.py): a node may run mawk (Debian), gawk (RHEL), BWK awk or busybox awk, and each filter
program must send the same bytes with every one of them (the `awk_bins` fixture: tests/conftest.py); and
`make_node`, a "node" made of real programs for collect_node."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from kubectl_svcnet.collect.runner import LocalRunner


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


def make_node(tmp_path: Path, saves: Dict[str, str], awk: Optional[str] = "real") -> LocalRunner:
    """A node for collect_node: fake save commands (`saves`: program -> the text it prints), the real sh,
    cat, gzip and id, and awk — the real one, a script (`awk` text), or none — on a PATH of its own."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for prog in ("sh", "cat", "gzip", "id"):
        (bindir / prog).symlink_to(shutil.which(prog))
    if awk == "real":
        (bindir / "awk").symlink_to(shutil.which("awk"))
    elif awk is not None:
        (bindir / "awk").write_text(awk)
        (bindir / "awk").chmod(0o755)
    for prog, text in saves.items():
        (tmp_path / f"{prog}.txt").write_text(text)
        (bindir / prog).write_text(f"#!/bin/sh\nexec cat '{tmp_path / (prog + '.txt')}'\n")
        (bindir / prog).chmod(0o755)
    runner = LocalRunner("node1", env={"PATH": str(bindir)})
    runner.remote = True  # as over SSH: gzip in the pipe too
    return runner
