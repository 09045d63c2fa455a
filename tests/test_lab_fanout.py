"""Fan-out over many SSH nodes in the lab: every node answers, each with its own rules, in parallel.

Marker `lab` (root). Eight extra node namespaces with real sshd and a copy of the seed cluster's node01
rules; the collector (fanout + nodecmds + ssh) runs in the lab's client namespace. No timing is
asserted here: benchmarks/fanout.py measures speed and memory.
"""

from __future__ import annotations

import pytest

from kubectl_svcnet.dataplane import read_node
from tests.lab.cluster import ClusterLab, ClusterSpec, cluster_skip_reason, normalize_save

pytestmark = pytest.mark.lab

N = 8


@pytest.fixture(scope="module")
def lab():
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    spec = ClusterSpec(silent=False, private=False, user=False, pods=False, extra_nodes=N, healthz=True,
                       healthz_stale=("extra03",))  # fmt: skip
    with ClusterLab(spec) as lab:
        yield lab


def test_parallel_fan_out_reaches_every_node(lab: ClusterLab) -> None:
    names = lab.extra_node_names()
    assert len(names) == N
    out = lab.drive({"op": "collect", "nodes": lab.addresses(names), "options": lab.ssh_options(), "parallel": N,
                     "healthz": True, "timeout": 120.0})  # fmt: skip
    assert sorted(out["results"]) == sorted(names)
    for name in names:
        r = out["results"][name]
        assert r["ok"], r.get("error")
        assert r["backend"] == "nft" and r["warnings"] == []
        ((text, source),) = [d for d in r["dumps"] if d[1].endswith("iptables-nft-save")]
        assert source == f"{name}:iptables-nft-save"
        # Each answer is that node's own kernel rules, whole.
        assert normalize_save(text) == normalize_save(lab.node_save(name, "iptables-nft-save"))
        services = {s.key.service for s in read_node([(text, source)], name, "ssh").services}
        assert {"default/web", "default/db-service", "kube-system/kube-dns"} <= services
        assert r["healthz_status"] == (503 if name == "extra03" else 200)
        assert '"lastUpdated"' in r["healthz"]
        # Every node ran the same fixed list, on its own connection.
        assert "Accepted publickey for root from 192.168.56.100" in lab.sshd_log(name)
    sent = {tuple(map(tuple, out["results"][n]["sent"])) for n in names}
    assert len(sent) == 1


def test_fewer_workers_than_nodes_still_reach_every_node(lab: ClusterLab) -> None:
    names = lab.extra_node_names()
    out = lab.drive({"op": "collect", "nodes": lab.addresses(names), "options": lab.ssh_options(), "parallel": 3,
                     "timeout": 120.0})  # fmt: skip
    assert all(out["results"][n]["ok"] and out["results"][n]["dumps"] for n in names)
    assert all(out["results"][n]["healthz"] is None for n in names)  # not asked for
