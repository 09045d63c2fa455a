"""`make lab-demo`: watch `kubectl svcnet trace` answer from three SSH-reached nodes.

Builds the test lab (root; network namespaces only, nothing connected to this machine's own network):
three seed-cluster nodes with real sshd and kube-proxy rules, their pods, and a client namespace where
the API emulator listens on loopback and the CLI runs. Runs `trace db-service`, `map` and `nodes`
there, prints what a user would see, and removes everything it made.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab.cluster import ClusterLab, ClusterSpec, LabApi, cluster_skip_reason  # noqa: E402


def main() -> int:
    reason = cluster_skip_reason()
    if reason:
        print(f"lab-demo cannot run here: {reason}", file=sys.stderr)
        return 2
    with ClusterLab(ClusterSpec(silent=False, private=False, user=False)) as lab, tempfile.TemporaryDirectory() as work:
        with LabApi(lab, Path(work)) as api:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": work, "PYTHONPATH": str(ROOT)}
            common = ["--kubeconfig", str(api.kubeconfig), "--ssh-user", "root", "--ssh-key", lab.client_key,
                      "--ssh-known-hosts", lab.known_hosts, "--ssh-config", "none"]  # fmt: skip
            for args in (["trace", "db-service"], ["map", "-n", "default"], ["nodes"]):
                print(f"\n$ kubectl svcnet {' '.join(args)}      # in the lab's client namespace", flush=True)
                subprocess.run(
                    ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "kubectl_svcnet", *args, *common],
                    cwd=str(ROOT), env=env, timeout=120,
                )  # fmt: skip
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("lab-demo needs root (it builds network namespaces): sudo make lab-demo", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
