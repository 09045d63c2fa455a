"""analyze.py's judgement of a node's rules against the API, on hand-built planes (the rules' side) and
API objects, no dumps: dual-stack Services (each IP family's proxier reads only that family's
EndpointSlices, and no FQDN slices), internalTrafficPolicy Local."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Sequence

from kubectl_svcnet.analyze import analyze
from kubectl_svcnet.model import (
    Backend,
    Cluster,
    Endpoint,
    Frontend,
    NodeDataPlane,
    NodeInfo,
    Route,
    Service,
    ServiceKey,
    ServicePort,
    ServiceRules,
)
from kubectl_svcnet.objects import build_cluster

KEY = ServiceKey("default", "db", "", "TCP")
SVC = Service("default", "db", cluster_ips=("10.96.0.5", "fd00::5"), ports=(ServicePort("", "TCP", 3306),))
EPS = (Endpoint("10.244.1.2", 3306, node_name="n1"), Endpoint("fd00:10::2", 3306, node_name="n1"))
CLUSTER = Cluster(services=(SVC,), endpoints={KEY: EPS}, has_services=True, has_endpoints=True)


def _frontend(node: str, ip: str, backends: Sequence[str], empty: str = "reject") -> Frontend:
    bs = tuple(Backend(b, 3306, 1.0 / len(backends)) for b in backends)
    return Frontend("ClusterIP", ip, 3306, node, (Route("any", "forward" if bs else empty, bs),))


def _plane(node: str, rules: Dict[str, Sequence[str]], empty: str = "reject") -> NodeDataPlane:
    """A node whose rules send each ClusterIP (`rules`: ClusterIP -> backend IPs) to those backends (none:
    the `empty` verdict)."""
    fes = tuple(_frontend(node, ip, bs, empty) for ip, bs in rules.items())
    return NodeDataPlane(NodeInfo(node, "file", "iptables", "nft"), (ServiceRules(KEY, fes),))


def findings(*planes: NodeDataPlane, cluster: Cluster = CLUSTER):
    (view,) = analyze(planes, cluster).services
    return sorted((f.code, f.node, f.message) for f in view.findings)


def test_each_family_against_its_own_endpoints():
    both = {"10.96.0.5": ["10.244.1.2"], "fd00::5": ["fd00:10::2"]}
    assert findings(_plane("n1", both)) == []
    assert findings(_plane("n1", {"10.96.0.5": ["10.244.1.2"]})) == []  # IPv4 rules read only: IPv6 not judged
    no6 = {"10.96.0.5": ["10.244.1.2"], "fd00::5": []}
    assert findings(_plane("n1", no6)) == [
        ("missing-endpoint", "n1", "endpoint fd00:10::2:3306 is in the EndpointSlices but not in node n1's rules"),
        ("stale-no-endpoints", "n1", "node n1 rejects fd00::5:3306 but the service has endpoints"),
    ]


def test_nodes_disagree_within_one_family():
    n1 = _plane("n1", {"10.96.0.5": ["10.244.1.2"], "fd00::5": ["fd00:10::2"]})
    n2 = _plane("n2", {"10.96.0.5": ["10.244.1.2"], "fd00::5": ["fd00:10::9"]})
    got = [f for f in findings(n1, n2) if f[0] == "nodes-disagree"]
    assert got == [
        ("nodes-disagree", None,
         "nodes send default/db to different backends (n1: forward fd00:10::2:3306; n2: forward fd00:10::9:3306)"),
    ]  # fmt: skip


def test_fqdn_slices_are_not_kube_proxys():
    def slice_(name, address_type, addresses):
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": address_type,
                "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
                "ports": [{"name": "", "port": 3306, "protocol": "TCP"}],
                "endpoints": [{"addresses": addresses, "conditions": {"ready": True}}]}  # fmt: skip

    cluster = build_cluster([slice_("db-a", "IPv4", ["10.244.1.2"]), slice_("db-b", "FQDN", ["db.example.org"])])
    assert [e.ip for e in cluster.endpoints[KEY]] == ["10.244.1.2"]


def test_internal_traffic_policy_local_without_a_local_endpoint():
    """ITP Local: a node with no local endpoint drops its pods' connections — right, and worth a warning."""
    svc = replace(SVC, cluster_ips=("10.96.0.5",), internal_traffic_policy="Local")
    cluster = replace(CLUSTER, services=(svc,), endpoints={KEY: EPS[:1]})  # 10.244.1.2, on n1
    n1 = _plane("n1", {"10.96.0.5": ["10.244.1.2"]})
    n2 = _plane("n2", {"10.96.0.5": []}, empty="drop")
    assert findings(n1, n2, cluster=cluster) == [
        ("no-local-endpoints", "n2", "internalTrafficPolicy Local: node n2 has no local endpoint; connections from"
         " its pods to 10.96.0.5:3306 are dropped there"),
    ]  # fmt: skip
    # n2 sending to n1's endpoint anyway is drift: it should only use its own.
    assert findings(n1, _plane("n2", {"10.96.0.5": ["10.244.1.2"]}), cluster=cluster) == [
        ("unexpected-endpoint", "n2", "node n2 sends traffic to 10.244.1.2:3306, which is not on that node"
         " (internalTrafficPolicy Local) (stale rules?)"),
    ]  # fmt: skip


def test_an_endpoint_that_is_not_ready_any_more():
    """The endpoint failed its readiness probe; a node whose rules still send to it missed the update."""
    eps = (EPS[0], replace(Endpoint("10.244.1.9", 3306, node_name="n1"), ready=False, serving=False))
    cluster = replace(CLUSTER, endpoints={KEY: eps})
    assert findings(_plane("n1", {"10.96.0.5": ["10.244.1.2"]}), cluster=cluster) == []
    assert findings(_plane("n1", {"10.96.0.5": ["10.244.1.2", "10.244.1.9"]}), cluster=cluster) == [
        ("unexpected-endpoint", "n1", "node n1 sends traffic to 10.244.1.9:3306, which is not ready (stale rules?)"),
    ]
