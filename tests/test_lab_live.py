"""End to end, as a user runs it: `kubectl svcnet` inside the lab's client namespace reads the API
(the emulator, on that namespace's loopback) and every node over real SSH, and its answers are checked
against the objects and against real connections.

Marker `lab` (root). Nothing here touches the root namespace: the CLI, the emulator and the probes
run in lab namespaces, and the lab removes everything it made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.cluster import ROOT, ClusterLab, ClusterSpec, LabApi, cluster_skip_reason

pytestmark = pytest.mark.lab

DB_IP, DB_PORT, DB_POD = "10.103.132.104", 3306, "10.244.1.2"


@pytest.fixture(scope="module")
def lab():
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    with ClusterLab(ClusterSpec(silent=False, private=False, user=False)) as lab:
        yield lab


@pytest.fixture(scope="module")
def api(lab, tmp_path_factory):
    """The API emulator serving the seed cluster's objects inside the client namespace."""
    with LabApi(lab, tmp_path_factory.mktemp("apiemu")) as emu:
        yield emu.kubeconfig


def svcnet(lab, kubeconfig, *args, timeout=120):
    """The CLI in the client namespace, with the lab's key and known_hosts, nothing else."""
    ssh = ["--ssh-user", "root", "--ssh-key", lab.client_key, "--ssh-known-hosts", lab.known_hosts,
           "--ssh-config", "none", "--ssh-connect-timeout", "5"]  # fmt: skip
    argv = ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "kubectl_svcnet", *args,
            "--kubeconfig", str(kubeconfig), *ssh]  # fmt: skip
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path(lab.tmp)), "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)


def test_trace_over_ssh_from_every_node(lab, api):
    r = svcnet(lab, api, "trace", "db-service", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {(n["name"], n["source"], n["error"]) for n in doc["nodes"]} == {
        ("controlplane", "ssh", None), ("node01", "ssh", None), ("node02", "ssh", None)
    }  # fmt: skip
    (svc,) = doc["services"]
    assert {fe["node"] for fe in svc["frontends"]} == {"controlplane", "node01", "node02"}
    for fe in svc["frontends"]:
        assert (fe["type"], fe["ip"], fe["port"]) == ("ClusterIP", DB_IP, DB_PORT)
        (route,) = fe["routes"]
        (b,) = route["backends"]
        assert (b["ip"], b["port"], b["pod"], b["local"]) == (DB_POD, DB_PORT, "default/db", fe["node"] == "node01")
    # What ran on the nodes is the fixed read-only list, nothing else.
    for node in ("node01", "node02"):
        assert lab.command_log(node), "sshd recorded no command"
        assert all(c.split()[0].endswith(("-save", "gzip", "sh", "command", "nft", "true")) or "save" in c
                   for c in lab.command_log(node)), lab.command_log(node)  # fmt: skip


def test_trace_by_address_over_ssh(lab, api):
    """`trace IP:PORT` live: the API's Services (every namespace) name the one at the address, and the nodes
    answer over SSH exactly as for its name."""
    by_ip = svcnet(lab, api, "trace", f"{DB_IP}:{DB_PORT}", "-o", "json")
    assert by_ip.returncode == 0, by_ip.stderr
    by_name = svcnet(lab, api, "trace", "db-service", "-o", "json")
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_ip.stdout) == json.loads(by_name.stdout)
    missing = svcnet(lab, api, "trace", f"{DB_IP}:{DB_PORT + 1}")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.splitlines()[0] == f"error: no Service at {DB_IP}:{DB_PORT + 1} in any namespace"


def test_a_real_connection_lands_on_the_pod_the_tool_named(lab, api):
    r = svcnet(lab, api, "map", "-A", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    web = next(s for s in doc["services"] if s["name"] == "web")
    node02 = lab.node("node02")
    src_ns = next(iter(node02.pods.values()))  # a pod on node02 is the client
    probed = 0
    for fe in web["frontends"]:
        if fe["node"] != "node02" or fe["type"] not in ("ClusterIP", "NodePort"):
            continue
        named = {f"{b['ip']}:{b['port']}" for route in fe["routes"] for b in route["backends"]}
        dst = fe["ip"] or node02.ip
        req = {"timeout": 2.0, "parallel": 8,
               "targets": [{"id": "t", "ip": dst, "port": fe["port"], "count": 40, "src": None,
                            "max_timeouts": 3, "group": None}]}  # fmt: skip
        argv = ["ip", "netns", "exec", src_ns, sys.executable, "-m", "tests.lab.probe", json.dumps(req)]
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(ROOT))
        res = json.loads(probe.stdout)["results"]["t"]
        assert sum(res["answers"].values()) == 40, res
        assert set(res["answers"]) <= named, (fe, res)
        probed += 1
    assert probed == 2  # the ClusterIP and the node port


def test_a_node_that_cannot_be_reached_hides_nothing_else(lab, api):
    lab.stop_sshd("node02")
    try:
        r = svcnet(lab, api, "trace", "db-service", "-o", "json")
    finally:
        lab.start_sshd("node02")
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    errors = {n["name"]: n["error"] for n in doc["nodes"]}
    assert errors["node01"] is None and errors["controlplane"] is None
    assert "refused" in errors["node02"]
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: node node02: {errors['node02']}"
    ]
    assert {fe["node"] for fe in doc["services"][0]["frontends"]} == {"controlplane", "node01"}


def test_unknown_host_key_is_refused(lab, api, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ssh = ["--ssh-user", "root", "--ssh-key", lab.client_key, "--ssh-known-hosts", str(empty), "--ssh-config", "none"]
    argv = ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "kubectl_svcnet", "trace", "db-service",
            "--kubeconfig", str(api), "--node", "node01", *ssh]  # fmt: skip
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(ROOT), env=env)
    assert r.returncode == 3
    assert "not in known_hosts" in r.stderr and "SHA256:" in r.stderr
    r2 = subprocess.run(argv + ["--ssh-insecure-skip-host-key-check"], capture_output=True, text=True, timeout=60,
                        cwd=str(ROOT), env=env)  # fmt: skip
    assert r2.returncode == 0, r2.stderr


def test_snapshot_round_trips(lab, api, tmp_path):
    snap = tmp_path / "snap"
    r = svcnet(lab, api, "snapshot", str(snap))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (snap / "nodes").iterdir()) == ["controlplane", "node01", "node02"]
    live = svcnet(lab, api, "map", "-A", "-o", "json")
    replay = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "map", "--snapshot", str(snap), "-o", "json"],
                            capture_output=True, text=True, timeout=60, cwd=str(ROOT))  # fmt: skip
    assert live.returncode == 0 and replay.returncode == 0, (live.stderr, replay.stderr)
    a, b = json.loads(live.stdout), json.loads(replay.stdout)
    assert [n["source"] for n in b["nodes"]] == ["snapshot"] * 3
    for n in a["nodes"] + b["nodes"]:
        n.pop("source")

    def unpath(doc):  # dumps are the same text, but their file names differ between the two runs
        return json.dumps(doc["services"], sort_keys=True)

    assert a["nodes"] == b["nodes"]
    assert unpath(a) == unpath(b)
    # The snapshot also holds what `ranges` reads: replayed, it answers as the live run does.
    live_ranges = svcnet(lab, api, "ranges", "-o", "json")
    replay_ranges = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "ranges", "--snapshot", str(snap), "-o",
                                    "json"], capture_output=True, text=True, timeout=60, cwd=str(ROOT))  # fmt: skip
    assert live_ranges.returncode == 0 and replay_ranges.returncode == 0, (live_ranges.stderr, replay_ranges.stderr)
    assert json.loads(live_ranges.stdout) == json.loads(replay_ranges.stdout)


def test_nodes_reports_each_node(lab, api):
    r = svcnet(lab, api, "nodes", "-o", "json")
    assert r.returncode == 0, r.stderr
    items = {i["name"]: i for i in json.loads(r.stdout)["items"]}
    assert set(items) == {"controlplane", "node01", "node02"}
    for i in items.values():
        assert (i["source"], i["proxyMode"], i["kubeProxyVersion"], i["error"]) == ("ssh", "iptables", "v1.29.6", None)
        assert i["servicePorts"] >= 7 and i["endpoints"] >= 8


def test_a_node_whose_kube_proxy_wrote_no_rules_is_explained(lab, api):
    """node02's rules are flushed (kube-proxy crashed before its first sync, say): the node is reported
    with proxyMode none and why, the other nodes still answer, and no Service is blamed on it."""
    node = lab.node("node02")
    for table in ("nat", "filter", "mangle"):
        lab.host.run(["iptables-nft", "-t", table, "-F"], netns=node.ns)
        lab.host.run(["iptables-nft", "-t", table, "-X"], netns=node.ns)
    try:
        r = svcnet(lab, api, "map", "-A", "-o", "json")
        n = svcnet(lab, api, "nodes", "-o", "json")
    finally:
        lab._load_rules(node)  # back as it was, for any test after this one
    assert n.returncode in (0, 3), n.stderr
    modes = {i["name"]: i["proxyMode"] for i in json.loads(n.stdout)["items"]}
    assert modes == {"controlplane": "iptables", "node01": "iptables", "node02": "none"}
    doc = json.loads(r.stdout)
    why = [f for f in doc["findings"] if f["node"] == "node02"]
    assert why and any("kube-proxy" in f["message"] for f in why), doc["findings"]
    assert not any(f["code"] == "missing-service" for s in doc["services"] for f in s["findings"])
    assert {fe["node"] for s in doc["services"] for fe in s["frontends"]} == {"controlplane", "node01"}


def test_trace_reads_only_the_services_lines_from_each_node(lab, api):
    """`trace` runs each iptables-save through the node-side filter (collect/nodefilter.py): the node
    sends a few lines instead of its whole dump, and the answer is the one the whole dump gives."""
    from kubectl_svcnet.collect.nodefilter import filter_command, rebuild
    from kubectl_svcnet.dataplane import read_node

    nodes = ("controlplane", "node01", "node02")
    for n in nodes:
        lab.clear_command_log(n)
    r = svcnet(lab, api, "trace", "db-service", "-o", "json")
    assert r.returncode == 0, r.stderr
    (svc,) = json.loads(r.stdout)["services"]
    got = {(fe["node"], fe["ip"], b["ip"]) for fe in svc["frontends"] for rt in fe["routes"] for b in rt["backends"]}
    assert got == {(n, DB_IP, DB_POD) for n in nodes}
    for n in nodes:  # the filter ran on every node, with the Service's name as one quoted word
        assert any("LC_ALL=C awk" in c and " default/db-service " in c for c in lab.command_log(n)), lab.command_log(n)
    # `map` reads whole dumps.
    lab.clear_command_log("node01")
    assert svcnet(lab, api, "map", "-A", "-o", "json", "--node", "node01").returncode == 0
    assert not any("LC_ALL=C awk" in c for c in lab.command_log("node01"))
    # Fewer bytes, the same data plane: the filtered and the whole dump over real SSH, side by side.
    addresses = lab.addresses(list(nodes))
    whole = lab.drive({"op": "run", "nodes": addresses, "options": lab.ssh_options(), "argv": ["iptables-nft-save"]})
    part = lab.drive({"op": "run", "nodes": addresses, "options": lab.ssh_options(),
                      "argv": list(filter_command(("iptables-nft-save",), "default/db-service"))})  # fmt: skip
    for n in nodes:
        w, p = whole["results"][n], part["results"][n]
        assert w["exit_code"] == p["exit_code"] == 0, (w["stderr"], p["stderr"])
        assert len(p["stdout"]) < len(w["stdout"]) / 2, (len(p["stdout"]), len(w["stdout"]))
        small = rebuild(p["stdout"])
        assert small is not None and small.lines == w["stdout"].count("\n")
        planes = [read_node([(t, "x")], n, "ssh", only="default/db-service") for t in (small.text, w["stdout"])]
        assert planes[0] == planes[1] and planes[0].services
