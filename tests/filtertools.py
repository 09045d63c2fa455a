"""What the node-side filter tests (test_nodefilter.py, test_nftfilter.py, test_ipvsfilter.py) share.

Every awk this machine has: a node may run mawk (Debian), gawk (RHEL), BWK awk or busybox awk, and each filter
program must send the same bytes with every one of them (the `awk_bins` fixture: tests/conftest.py); and
`make_node`, a "node" made of real programs for collect_node; and `trace_answer`, what a trace says,
to compare over filtered and whole dumps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from kubectl_svcnet.app import build_map
from kubectl_svcnet.collect.files import Inputs
from kubectl_svcnet.collect.runner import LocalRunner
from kubectl_svcnet.errors import SvcnetError
from kubectl_svcnet.render import render_paths, to_dict


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

# A node's awk that fails, and one whose output is cut short (make_node's `awk`): with no awk at all,
# what each filter test gives its collector to fall back from, reading the dumps whole.
AWK_FAILS = "#!/bin/sh\ncat >/dev/null; exit 3\n"
AWK_CUTS_SHORT = "#!/bin/sh\ncat >/dev/null; printf '#svcnet-filter 1 9 0\\n1\\tx\\n'\n"
FALLBACK_IDS = ["no-awk", "awk-fails", "cut-short"]
FALLBACKS = [(None, "no awk on the node"), (AWK_FAILS, "the filter failed"), (AWK_CUTS_SHORT, "damaged")]


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


def trace_answer(dumps: Sequence[Tuple[str, str]], service: str, cluster=None, node: str = "node1") -> Tuple:
    """What `trace SERVICE -o json` and its paths say about one node holding `dumps` (its JSON, its
    CHAIN:LINE paths, its problems and exit status; or the one-line error)."""
    inputs = Inputs(nodes={node: list(dumps)}, source_kind={node: "ssh"}, cluster=cluster)
    try:
        result = build_map(inputs, only=service)
    except SvcnetError as e:
        return ("error", e.one_line())
    doc = to_dict(result.service_map)
    return json.dumps(doc, sort_keys=True), render_paths(result.service_map), result.problems, int(result.status)
