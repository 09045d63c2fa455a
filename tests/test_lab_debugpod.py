"""`--via pod` end to end in the lab: `kubectl svcnet` in the client namespace asks the API (the emulator,
on that namespace's loopback) for a debug pod per node and runs the node commands through pods/exec; the
emulator plays the kubelet and runs each argv inside that node's real network namespace (`ip netns exec`),
so what comes back is the node's real iptables-save. The answer must be the one SSH gives, and no pod
may be left behind.

Marker `lab` (root). Nothing here touches the root namespace: the CLI and the emulator run in the lab's
client namespace, the commands in node namespaces, and the lab removes everything it made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_svcnet.collect.nodecmds import ALL_COMMANDS, GZIP_SCRIPT
from tests.lab.cluster import ROOT, ClusterLab, ClusterSpec, LabApi, cluster_skip_reason

pytestmark = pytest.mark.lab

MARK = "SVCNET-DEBUGPOD-MARK"  # a chain only node01's namespace holds, to see whose rules were read


@pytest.fixture(scope="module")
def lab():
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    with ClusterLab(ClusterSpec(silent=False, private=False, user=False)) as lab:
        yield lab


@pytest.fixture(scope="module")
def emu(lab, tmp_path_factory):
    config = {"exec_netns": {n: lab.node(n).ns for n in lab.nodes}, "pod_start_delay": 0.3}
    with LabApi(lab, tmp_path_factory.mktemp("apiemu"), config=config) as e:
        yield e


def svcnet(lab, emu, *args, via="pod", timeout=120):
    """The CLI in the client namespace: over SSH with the lab's key, or through debug pods."""
    how = ["--via", "pod"] if via == "pod" else [
        "--ssh-user", "root", "--ssh-key", lab.client_key, "--ssh-known-hosts", lab.known_hosts, "--ssh-config",
        "none", "--ssh-connect-timeout", "5"]  # fmt: skip
    argv = ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "kubectl_svcnet", *args,
            "--kubeconfig", str(emu.kubeconfig), *how]  # fmt: skip
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path(lab.tmp)), "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)


def debug_pods(state):
    return [p for p in state["pods"] if p["labels"].get("app.kubernetes.io/managed-by") == "kubectl-svcnet"]


def test_trace_via_pod_answers_like_ssh(lab, emu):
    by_ssh = svcnet(lab, emu, "trace", "db-service", "-o", "json", via="ssh")
    before = emu.state()
    by_pod = svcnet(lab, emu, "trace", "db-service", "-o", "json")
    assert by_ssh.returncode == 0, by_ssh.stderr
    assert by_pod.returncode == 0, by_pod.stderr
    a, b = json.loads(by_ssh.stdout), json.loads(by_pod.stdout)
    assert {(n["name"], n["source"], n["error"]) for n in b["nodes"]} == {
        ("controlplane", "pod", None), ("node01", "pod", None), ("node02", "pod", None)
    }  # fmt: skip
    for n in a["nodes"] + b["nodes"]:
        n.pop("source")
    assert a == b
    (svc,) = b["services"]
    assert {fe["node"] for fe in svc["frontends"]} == {"controlplane", "node01", "node02"}

    state = emu.state()
    assert debug_pods(state) == []
    new = state["requests"][len(before["requests"]) :]
    created = [r["path"] for r in new if r["method"] == "POST"]
    deleted = [r for r in new if r["method"] == "DELETE"]
    assert created == ["/api/v1/namespaces/default/pods"] * 3
    assert len(deleted) == 3 and all(r["query"]["gracePeriodSeconds"] == ["0"] and r["status"] == 200
                                     for r in deleted)  # fmt: skip
    execs = state["execs"][len(before["execs"]) :]
    assert {e["node"] for e in execs} == {"controlplane", "node01", "node02"}
    programs = {c[0] for c in ALL_COMMANDS}
    for e in execs:  # only nodecmds' programs ran, each as an argv (dumps gzip-wrapped over the websocket)
        argv = e["argv"]
        if argv[:3] == ["sh", "-c", GZIP_SCRIPT]:
            argv = argv[4:]
        assert argv[0] in programs, e
        assert e["error"] == "" and e["exit_code"] is not None
    assert any(e["argv"][:3] == ["sh", "-c", GZIP_SCRIPT] for e in execs)  # dumps travelled compressed, as bytes


def test_what_is_read_is_the_node_namespace_itself(lab, emu, tmp_path):
    """A chain added in node01's namespace only shows up in node01's dump (`snapshot --via pod`)."""
    node01 = lab.node("node01")
    lab.host.run(["iptables-nft", "-t", "filter", "-N", MARK], netns=node01.ns)
    try:
        r = svcnet(lab, emu, "snapshot", str(tmp_path / "snap"))
    finally:
        lab.host.run(["iptables-nft", "-t", "filter", "-X", MARK], netns=node01.ns)
    assert r.returncode == 0, r.stderr
    dumps = {d.name: "".join(p.read_text() for p in d.glob("*.txt")) for d in (tmp_path / "snap" / "nodes").iterdir()}
    assert sorted(dumps) == ["controlplane", "node01", "node02"]
    assert f":{MARK} " in dumps["node01"]
    assert all(MARK not in text for node, text in dumps.items() if node != "node01")
    assert debug_pods(emu.state()) == []
