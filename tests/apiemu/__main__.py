"""`python -m tests.apiemu serve DIR WORKDIR [CONFIG]`: serve a snapshot's objects until stdin closes.

For lab tests that run the CLI inside a network namespace: started there with `ip netns exec`, it
listens on that namespace's loopback, writes WORKDIR/kubeconfig, prints one line `READY <url>`, and
stops when its parent closes stdin (or dies), so it never outlives the test.

CONFIG (a JSON file) sets the kubelet's part: ``{"exec_netns": {node: netns}, "pod_start_delay": s}`` —
pods/exec then runs the argv inside the node's network namespace (root). While serving, a line
``state`` on stdin is answered with one JSON line: the pods stored, every request (method, path, query,
status) and every exec (node, argv, exit code) — what a test checks from outside the namespace.
"""

from __future__ import annotations

import json
import sys

from tests.apiemu.server import ApiEmulator


def state(emu: ApiEmulator) -> dict:
    pods = [
        {"namespace": p["metadata"].get("namespace"), "name": p["metadata"]["name"],
         "labels": p["metadata"].get("labels") or {}, "phase": (p.get("status") or {}).get("phase")}
        for p in emu.objects("Pod")
    ]  # fmt: skip
    requests = [{"method": r.method, "path": r.path, "query": r.query, "status": r.status} for r in emu.requests]
    execs = [{"namespace": c.namespace, "pod": c.pod, "node": c.node, "argv": c.argv, "exit_code": c.exit_code,
              "error": c.error, "protocol": c.protocol} for c in emu.execs]  # fmt: skip
    return {"pods": pods, "requests": requests, "execs": execs}


def main(argv: list) -> int:
    if len(argv) not in (3, 4) or argv[0] != "serve":
        print("usage: python -m tests.apiemu serve SNAPSHOT_DIR WORKDIR [CONFIG.json]", file=sys.stderr)
        return 2
    config = {}
    if len(argv) == 4:
        with open(argv[3], encoding="utf-8") as f:
            config = json.load(f)
    with ApiEmulator.from_dir(argv[1], workdir=argv[2]) as emu:
        emu.exec_netns = dict(config.get("exec_netns") or {})
        if "pod_start_delay" in config:
            emu.pod_start_delay = config["pod_start_delay"]
        print(f"READY {emu.url}", flush=True)
        for line in sys.stdin:  # until the parent closes our stdin or goes away
            if line.strip() == "state":
                print(json.dumps(state(emu)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
