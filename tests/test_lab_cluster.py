"""Live collection over real SSH, on a lab cluster of real hosts (tests/lab/cluster.py).

Three node namespaces of the seed cluster (controlplane, node01, node02) each run a real sshd and hold
their kube-proxy rules; node02 runs kube-proxy on the legacy backend while the nft backend holds stale
rules. The code under test (kubectl_svcnet.collect: fanout -> nodecmds -> ssh) runs in the lab's
client namespace (`lab.drive`), never in the root namespace. Each fault has its own test, and each
fault test fans out over every node: the faulty node gets its one-line error and the other nodes'
answers stay intact.

Needs root, iproute2, iptables (nft and legacy), openssh-server, paramiko (else skipped); marked `lab`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from kubectl_svcnet.collect.nodecmds import ALL_COMMANDS, GZIP_SCRIPT, PROBE
from kubectl_svcnet.collect.runner import quote_argv
from kubectl_svcnet.dataplane import read_node
from tests.lab.cluster import (
    PRIVATE_IP,
    ROOT,
    SILENT_IP,
    ClusterLab,
    ClusterSpec,
    cluster_skip_reason,
    normalize_save,
    reap_stale_users,
)
from tests.lab.host import LocalHost
from tests.lab.lab import list_netns, reap_stale

pytestmark = pytest.mark.lab
NODES = ("controlplane", "node01", "node02")
SAVE = {"nft": "iptables-nft-save", "legacy": "iptables-legacy-save"}
CONNECT_TIMEOUT = 2.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _sshd_pids() -> List[int]:
    out = subprocess.run(["pgrep", "-x", "sshd"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture(scope="module")
def lab() -> Iterator[ClusterLab]:
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    cluster = ClusterLab(ClusterSpec(legacy={"node02": "node01"}))
    with cluster:
        print(f"\nlab cluster built in {time.monotonic() - started:.1f}s: {len(cluster.namespaces)} namespaces")
        yield cluster
    # Everything it made is gone: namespaces, processes (sshd), the user, the keys.
    assert not set(cluster.namespaces) & set(list_netns(LocalHost()))
    assert not [p for p in cluster.pids if _alive(p)]
    assert cluster.user and cluster.user not in Path("/etc/passwd").read_text()
    assert not cluster.tmp.exists()


def _drive(lab: ClusterLab, nodes: Dict[str, str], **options: Any) -> Dict[str, Any]:
    request = {
        "op": "collect",
        "nodes": nodes,
        "options": lab.ssh_options(connect_timeout=CONNECT_TIMEOUT, **options),
        "timeout": 60.0,
    }
    return lab.drive(request)


def _assert_intact(lab: ClusterLab, out: Dict[str, Any], nodes: List[str]) -> None:
    """These nodes answered, with exactly the rules their kube-proxy backend holds."""
    for name in nodes:
        r = out["results"][name]
        assert r["ok"], f"{name}: {r.get('error')}"
        node = lab.nodes[name]
        assert r["backend"] == node.backend
        (text, source), *_ = r["dumps"]
        assert source == f"{name}:{SAVE[node.backend]}"
        assert normalize_save(text) == normalize_save(lab.node_save(name, SAVE[node.backend]))
        if node.backend == "nft":  # this machine's plain iptables-save is the nft one
            assert normalize_save(text) == normalize_save(lab.node_save(name, "iptables-save"))


# ---------------------------------------------------------------------------------------------
# Collection works.


def test_collect_over_ssh_returns_each_nodes_real_rules(lab: ClusterLab) -> None:
    for n in NODES:
        lab.clear_command_log(n)
    out = _drive(lab, lab.addresses())
    assert list(out["results"]) == list(NODES)
    _assert_intact(lab, out, list(NODES))
    for name in NODES:
        r = out["results"][name]
        # The tool's reader understands what came back: the seed cluster's services, with node-local pods.
        plane = read_node([tuple(d) for d in r["dumps"]], name, "ssh")
        services = {s.key.service for s in plane.services}
        assert {"default/web", "default/db-service", "kube-system/kube-dns", "default/web-lb"} <= services
        # (NodeDumps.backend is the authority: the reader takes the backend from the dump's header, and
        # iptables-nft-save's header names itself "iptables-nft-save", which it does not recognise.)
        # What sshd received is exactly what the client sent, quoted, in order — nothing else ran.
        assert lab.command_log(name) == [quote_argv(a) for a in r["sent"]] == r["commands"]
        assert r["sent"][0] == list(PROBE)
        for argv in r["sent"][1:]:
            assert argv[:4] == ["sh", "-c", GZIP_SCRIPT, "sh"] and tuple(argv[4:]) in ALL_COMMANDS
        assert "Accepted publickey for root from 192.168.56.100" in lab.sshd_log(name)
    assert out["results"]["controlplane"]["warnings"] == out["results"]["node01"]["warnings"] == []


def test_legacy_backend_is_chosen_and_the_stale_nft_rules_are_reported(lab: ClusterLab) -> None:
    out = _drive(lab, lab.addresses(["node02"]))
    r = out["results"]["node02"]
    assert r["backend"] == "legacy"
    assert r["backend_reason"] == "kubelet's hint chain in iptables-legacy-save"
    assert [s for _, s in r["dumps"]] == ["node02:iptables-legacy-save"]
    assert len(r["warnings"]) == 1
    assert r["warnings"][0].startswith("node node02: the nft iptables backend also holds kube-proxy chains (")
    # The wrong backend would have shown node01's pods as node02's local ones: a stale, wrong picture.
    right = read_node([tuple(r["dumps"][0])], "node02", "ssh")
    wrong = read_node([(lab.node_save("node02", "iptables-nft-save"), "nft")], "node02", "ssh")

    def local_web(plane: Any) -> set:
        return {
            b.ip
            for s in plane.services
            if s.key.service == "default/web-lb"
            for f in s.frontends
            for route in f.routes
            for b in route.backends
            if route.source == "external"
        }

    assert local_web(right) == {"10.244.2.2", "10.244.2.3"}
    assert local_web(wrong) == {"10.244.1.3"}


def test_lab_is_a_data_plane_pods_answer_through_the_service_rules(lab: ClusterLab) -> None:
    spec = {"timeout": 1.5, "parallel": 16, "targets": [
        {"id": "web", "ip": "10.104.20.30", "port": 80, "count": 60, "src": None, "max_timeouts": 5, "group": None},
        {"id": "api", "ip": "10.96.0.1", "port": 443, "count": 5, "src": None, "max_timeouts": 5, "group": None},
    ]}  # fmt: skip
    out = lab.host.run([sys.executable, str(ROOT / "tests" / "lab" / "probe.py"), json.dumps(spec)],
                       netns=lab.nodes["node01"].ns, timeout=60)  # fmt: skip
    res = json.loads(out.stdout)["results"]
    assert set(res["web"]["answers"]) == {"10.244.1.3:8080", "10.244.2.2:8080", "10.244.2.3:8080"}, res["web"]
    assert res["api"]["answers"] == {"192.168.56.10:6443": 5}, res["api"]


def test_fanout_time_all_nodes_vs_one(lab: ClusterLab) -> None:
    """Benchmark-ish, not a timed assertion: fan-out over every node vs one node."""
    one = _drive(lab, lab.addresses(["node01"]))
    everything = _drive(lab, lab.addresses())
    assert all(r["ok"] for r in everything["results"].values())
    per_node = ", ".join(f"{n} {r['seconds']:.2f}s" for n, r in everything["results"].items())
    print(
        f"\nfan-out: 1 node {one['elapsed']:.2f}s; {len(everything['results'])} nodes in parallel"
        f" {everything['elapsed']:.2f}s ({per_node})"
    )


# ---------------------------------------------------------------------------------------------
# Faults: each with its own test; the other nodes' answers stay intact.


def test_node_with_sshd_down_is_connection_refused(lab: ClusterLab) -> None:
    lab.stop_sshd("node01")
    try:
        out = _drive(lab, lab.addresses())
    finally:
        lab.start_sshd("node01")
    r = out["results"]["node01"]
    assert not r["ok"] and r["message"] == "connection refused (192.168.56.11:22)"
    assert r["error"] == "connection refused (192.168.56.11:22) (node01)"
    _assert_intact(lab, out, ["controlplane", "node02"])


def test_node_that_accepts_and_never_answers_times_out_bounded(lab: ClusterLab) -> None:
    nodes = {**lab.addresses(), "silent": SILENT_IP}
    out = _drive(lab, nodes)
    r = out["results"]["silent"]
    assert not r["ok"]
    assert r["message"].startswith(f"timed out after {CONNECT_TIMEOUT:g}s connecting to {SILENT_IP}:22")
    assert r["seconds"] < CONNECT_TIMEOUT + 1.5, r["seconds"]
    _assert_intact(lab, out, list(NODES))


def test_a_command_that_hangs_is_stopped_at_the_command_timeout(lab: ClusterLab) -> None:
    request = {
        "op": "run",
        "argv": ["sleep", "5"],
        "nodes": lab.addresses(["node01"]),
        "options": lab.ssh_options(connect_timeout=CONNECT_TIMEOUT, command_timeout=1.0),
    }
    r = lab.drive(request)["results"]["node01"]
    assert r["message"] == "timed out after 1s running sleep 5"
    assert r["seconds"] < 1 + CONNECT_TIMEOUT, r["seconds"]


def _fingerprint(pub_line: str) -> str:
    p = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=pub_line, capture_output=True, text=True, check=True)
    return p.stdout.split()[1]


def test_unknown_host_key_is_refused_and_accepted_only_with_the_opt_out(lab: ClusterLab) -> None:
    kh = lab.write_file("kh-no-node01", lab.known_hosts_line("controlplane") + lab.known_hosts_line("node02"))
    before = Path(kh).read_text()
    out = _drive(lab, lab.addresses(), known_hosts=[kh])
    r = out["results"]["node01"]
    fp = _fingerprint(lab.host_key("node01"))
    assert r["message"] == (
        f"host key for node01 (192.168.56.11) is not in known_hosts: ssh-ed25519 {fp}"
        " — add it or pass --ssh-insecure-skip-host-key-check"
    )
    _assert_intact(lab, out, ["controlplane", "node02"])
    lab.clear_command_log("node01")
    assert not lab.command_log("node01")
    # The explicit opt-out connects, and remembers nothing.
    out = _drive(lab, lab.addresses(), known_hosts=[kh], insecure_skip_host_key_check=True)
    _assert_intact(lab, out, list(NODES))
    assert Path(kh).read_text() == before


def test_changed_host_key_is_refused_with_both_fingerprints(lab: ClusterLab) -> None:
    fake = lab.tmp / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    old = Path(str(fake) + ".pub").read_text().strip()
    kind, blob = old.split()[:2]
    kh = lab.write_file(
        "kh-changed",
        lab.known_hosts_line("controlplane") + lab.known_hosts_line("node01") + f"192.168.56.12 {kind} {blob}\n",
    )
    lab.clear_command_log("node02")
    out = _drive(lab, lab.addresses(), known_hosts=[kh])
    r = out["results"]["node02"]
    assert r["message"].startswith(
        f"host key CHANGED for node02 (192.168.56.12): it offers ssh-ed25519 {_fingerprint(lab.host_key('node02'))},"
        f" known_hosts has ssh-ed25519 {_fingerprint(old)} — refusing"
    )
    assert lab.command_log("node02") == []  # refused before anything was sent
    _assert_intact(lab, out, ["controlplane", "node01"])


def test_non_root_user_without_sudo_rights(lab: ClusterLab) -> None:
    """node01 is reached as a throw-away user (set per host in an ssh config, which is honoured)."""
    assert lab.user
    cfg = lab.write_file("ssh_config", f"Host 192.168.56.11\n  User {lab.user}\nHost *\n  User root\n")
    out = _drive(lab, lab.addresses(), user=None, ssh_config=cfg)
    r = out["results"]["node01"]
    uid = subprocess.run(["id", "-u", lab.user], capture_output=True, text=True).stdout.strip()
    assert r["message"] == (
        "nothing could be read on node01: none of iptables-save, iptables-nft-save, iptables-legacy-save, nft"
        f" found (connected as uid {uid}: connect as root or use sudo)"
    )
    assert f"Accepted publickey for {lab.user}" in lab.sshd_log("node01")
    _assert_intact(lab, out, ["controlplane", "node02"])
    # With sudo: root's sudo -n runs the commands; the user's asks for a password -> a clear error.
    lab.clear_command_log("node02")
    out = _drive(lab, lab.addresses(), user=None, ssh_config=cfg, sudo=True)
    r = out["results"]["node01"]
    assert r["message"] == "sudo needs a password on node01 (use a user with passwordless sudo or root)"
    assert r["error_type"] == "SudoError"
    _assert_intact(lab, out, ["controlplane", "node02"])
    received = lab.command_log("node02")
    assert received == ["sudo -n -- " + quote_argv(a) for a in out["results"]["node02"]["sent"]]


def test_crafted_node_names_inject_nothing(lab: ClusterLab) -> None:
    canary = lab.tmp / "canary"
    names = {
        f"n1; touch {canary}-1": lab.nodes["node01"].ip,
        f"$(touch {canary}-2)": lab.nodes["controlplane"].ip,
        f"`touch {canary}-3`' \"": lab.nodes["node02"].ip,
    }
    baseline = _drive(lab, lab.addresses(["node01"]))["results"]["node01"]
    for n in NODES:
        lab.clear_command_log(n)
    out = _drive(lab, names)
    by_ip = {lab.nodes[n].ip: n for n in NODES}
    for name, ip in names.items():
        r = out["results"][name]
        assert r["ok"], r.get("error")
        assert r["sent"] == baseline["sent"]  # the exact argv lists a plain node name gets
        assert not any(name in word or "touch" in word for argv in r["sent"] for word in argv)
        assert lab.command_log(by_ip[ip]) == [quote_argv(a) for a in r["sent"]]  # sshd received only those
        assert [s for _, s in r["dumps"]][0].startswith(name + ":")  # the name only labels the output
    assert not list(lab.tmp.glob("canary*")), "a command in a node name ran"


def test_jump_host_reaches_a_private_node(lab: ClusterLab) -> None:
    direct = _drive(lab, {"private": PRIVATE_IP})["results"]["private"]
    assert direct["message"] == f"no route to {PRIVATE_IP}:22"
    out = _drive(lab, {"private": PRIVATE_IP, **lab.addresses()}, jump="root@192.168.56.10:22")
    r = out["results"]["private"]
    assert r["ok"], r.get("error")
    assert normalize_save(r["dumps"][0][0]) == normalize_save(lab.node_save("private", "iptables-nft-save"))
    assert "Accepted publickey for root from 10.99.0.1" in lab.sshd_log("private")  # it came via the controlplane
    _assert_intact(lab, out, list(NODES))  # the LAN nodes were also reached through the bastion
    # A jump host that cannot reach the target says so, for that node only.
    nodes = {"refusing": f"{PRIVATE_IP[:-1]}1", "nowhere": f"{PRIVATE_IP[:-1]}77", "node01": lab.nodes["node01"].ip}
    out = _drive(lab, nodes, jump="root@192.168.56.10")
    assert (
        out["results"]["refusing"]["message"] == f"jump host could not connect to {PRIVATE_IP[:-1]}1:22: Connect failed"
    )
    assert out["results"]["nowhere"]["message"] == (
        f"timed out after {CONNECT_TIMEOUT:g}s connecting to {PRIVATE_IP[:-1]}77:22 through the jump host"
    )
    _assert_intact(lab, out, ["node01"])
    # A dead bastion fails every node behind it, each with one line, after one connect timeout.
    out = _drive(lab, lab.addresses(), jump=f"root@{SILENT_IP}")
    msgs = {n: r["message"] for n, r in out["results"].items()}
    want = f"jump host {SILENT_IP}: timed out after {CONNECT_TIMEOUT:g}s connecting to {SILENT_IP}:22"
    assert all(m.startswith(want) for m in msgs.values()), msgs
    assert out["elapsed"] < 2 * CONNECT_TIMEOUT + 1.5, out["elapsed"]


# ---------------------------------------------------------------------------------------------
# The lab leaves nothing behind, also when interrupted.


def test_cluster_lab_cleans_up_on_sigint_in_a_child_process() -> None:
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    sshd_before = set(_sshd_pids())
    script = textwrap.dedent(
        """
        import json, time
        from tests.lab.cluster import ClusterLab, ClusterSpec
        with ClusterLab(ClusterSpec(pods=False, private=False, silent=False)) as lab:
            print(json.dumps({"ns": lab.namespaces, "pids": lab.pids, "user": lab.user, "tmp": str(lab.tmp),
                              "sshd": [p.pid for p in lab.sshd.values()]}), flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=str(ROOT), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = child.stdout.readline()
        assert line, f"child failed: {child.stderr.read()}"
        made = json.loads(line)
        assert made["sshd"] and all(_alive(p) for p in made["sshd"])
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        leftover_ns = reap_stale()
        leftover_users = reap_stale_users()
    assert child.returncode != 0 and "KeyboardInterrupt" in child.stderr.read()
    assert not leftover_ns and not leftover_users, (leftover_ns, leftover_users)
    assert not set(made["ns"]) & set(list_netns(LocalHost()))
    assert not [p for p in made["pids"] if _alive(p)]
    assert set(_sshd_pids()) <= sshd_before
    assert made["user"] not in Path("/etc/passwd").read_text()
    assert not Path(made["tmp"]).exists()
