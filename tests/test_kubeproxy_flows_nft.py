"""kube-proxy's own packet-flow expectations, held against the nftables engine (through kpwriter).

kube-proxy's nftables unit tests build Services and EndpointSlices, sync, and trace packets through
the rules with ``runPacketFlowTests`` (pkg/proxy/nftables/helpers_test.go ``tracePacket``): a source
IP and a destination IP:port give an ``output`` (the DNAT'd endpoints, comma-separated, or "REJECT" /
"DROP", or "" when no rule of kube-proxy's matches) and a ``masq`` flag. Each case here is one of
those tests (or one of its sub-tests) re-expressed as a kpwriter spec: `write_nft` writes kube-proxy's
transaction, real ``nft`` loads it in a throw-away network namespace (one for all cases, the ruleset
flushed between them) and ``nft list ruleset`` gives what a node would show; `parse_nft` +
`resolve_nft` then say, per frontend, where each client class goes.

How an upstream packet becomes one of our routes:

- the destination picks the frontend: a ClusterIP / external IP / load-balancer IP frontend with that
  IP, port and protocol, else the service port's node port when the destination is one of the node's
  ``nodeport-ips`` (the order of kube-proxy's ``services`` chain: ``@service-ips`` first);
- the source picks the route: inside the local-traffic detector's pod CIDR = a pod ("cluster" or
  "any"), one of the node's IPs (the tracer's ``fib saddr type local``) = the node ("cluster" or
  "any"), anything else = "external" (or "any"). Without a local detector a pod is not told apart
  from an outside client, so it is "external" too — as kube-proxy's tracer sees it. On a frontend
  guarded by loadBalancerSourceRanges the route is the allowed range that holds the source, else
  "other";
- the route must have exactly the upstream endpoints (as a set of IP:port; upstream says nothing about
  shares) or the upstream verdict.

Not expressible in our model, so not asserted (each place says so): ``masq`` (a route carries no
masquerade flag), and the verdicts of ``cluster-ips-check`` — a packet to a port of a ClusterIP that no
Service port uses (reject) or to an unallocated address of the service CIDR (drop) has no frontend in
our per-Service model; for those the test only checks that no frontend claims the packet.

Two-step upstream tests (sync, delete the EndpointSlice, sync again) are two cases here, the second a
fresh full sync of the state without endpoints (kpwriter writes first syncs only; the flushed stale
chains kube-proxy would keep for a while carry no rules and lead nowhere).

Provenance: kubernetes/kubernetes @ 81810de635aa13aa0a32992f6def3aa9d6025ebc (newest in the library
index), pkg/proxy/nftables/proxier_test.go — the test named in each case's ``upstream`` — and
pkg/proxy/nftables/helpers_test.go @ 803d40a57714b8d054430fedb25b48c20ba9d52c (packetFlowTest,
tracePacket). Its NewFakeProxier: pod CIDR
10.0.0.0/8 (fd00:10::/64), service CIDR 172.30.0.0/16 (fd00:10:96::/112), node IP 192.168.0.2
(2001:db8::1), nodePortAddresses = the node IP, node IPs for the tracer = testNodeIPs.

The iptables-era names TestClusterIPReject, TestExternalIPsReject, TestNodePortsReject,
TestLoadBalancerReject, TestOnlyLocalExternalIPs, TestNonLocalExternalIPs, TestOnlyLocalLoadBalancing and
TestHealthCheckNodePort are not in that file: their flows live on in TestNoEndpointsReject and
TestExternalTrafficPolicyLocal/Cluster (ported here), and nftables mode writes no health-check-node-port
rule to trace.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from kubectl_svcnet.dataplane.nft import parse_nft, resolve_nft
from kubectl_svcnet.model import (
    FORWARD,
    FROM_ANY,
    FROM_CLUSTER,
    FROM_EXTERNAL,
    FROM_OTHER,
    NODE_PORT,
    Frontend,
    NodeDataPlane,
    Route,
)
from tests.kpwriter import write_nft
from tests.kpwriter.spec import (
    TEST_EXTERNAL_CLIENT,
    TEST_EXTERNAL_CLIENT_BLOCKED,
    TEST_EXTERNAL_IP,
    TEST_NODE_IP,
    TEST_NODE_IP_ALT,
    TEST_NODE_IPV6,
    TEST_NODE_IPV6_ALT,
    service_port,
)

UPSTREAM_COMMIT = "81810de635aa13aa0a32992f6def3aa9d6025ebc"
UPSTREAM_FILE = "pkg/proxy/nftables/proxier_test.go"
NODE_NAME = "test-node"

# proxier_test.go's constants
TEST_NODE_IPS = (TEST_NODE_IP, TEST_NODE_IP_ALT, TEST_EXTERNAL_IP, TEST_NODE_IPV6, TEST_NODE_IPV6_ALT)

POD_CIDR = "10.0.0.0/8"
POD_CIDR_V6 = "fd00:10::/64"
V4_OPTIONS: Dict[str, Any] = {"node_ip": TEST_NODE_IP, "service_cidrs": ["172.30.0.0/16"]}
V6_OPTIONS: Dict[str, Any] = {"node_ip": TEST_NODE_IPV6, "service_cidrs": ["fd00:10:96::/112"]}

# What a flow's output is when no frontend should claim the packet.
NO_MATCH = ""  # upstream: no kube-proxy rule matches (e.g. a node port on an address not in nodeport-ips)
CLUSTER_IPS_CHECK = "cluster-ips-check"  # upstream: REJECT/DROP from cluster-ips-check, not per frontend


# ---- cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One upstream packetFlowTest."""

    name: str
    source: str
    dest_ip: str
    dest_port: int
    output: str  # as upstream writes it: "ip:port, ip:port" | "REJECT" | "DROP" | ""
    protocol: str = "TCP"
    masq: bool = False  # recorded for reference; not asserted (our routes carry no masquerade flag)
    no_frontend_verdict: Optional[str] = None  # the cluster-ips-check verdict we cannot express


@dataclass
class Case:
    id: str
    upstream: str  # test (and sub-test) name in UPSTREAM_FILE
    spec: Dict[str, Any]
    options: Dict[str, Any]
    flows: List[Flow]
    node_ips: Tuple[str, ...] = TEST_NODE_IPS


def ep(
    ip: str,
    port: int = 80,
    local: bool = False,
    ready: bool = True,
    serving: Optional[bool] = None,
    terminating: bool = False,
) -> Dict[str, Any]:
    """An EndpointSlice endpoint; ``local`` = NodeName is testNodeName; serving defaults to ready."""
    return {
        "ip": ip,
        "port": port,
        "local": local,
        "ready": ready,
        "serving": ready if serving is None else serving,
        "terminating": terminating,
    }


svc = service_port


def spec(*services: Dict[str, Any], pod_cidr: Optional[str] = POD_CIDR) -> Dict[str, Any]:
    return {"node_name": NODE_NAME, "pod_cidr": pod_cidr, "services": list(services)}


def _no_endpoints_reject() -> List[Case]:
    s = spec(
        svc(
            "ns1/svc1",
            "172.30.0.41",
            type="LoadBalancer",
            node_port=3001,
            external_ips=["192.168.99.11"],
            lb_ips=["1.2.3.4"],
        )
    )
    flows = [
        Flow("pod to cluster IP with no endpoints", "10.0.0.2", "172.30.0.41", 80, "REJECT"),
        Flow("external to external IP with no endpoints", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, "REJECT"),
        Flow("pod to NodePort with no endpoints", "10.0.0.2", TEST_NODE_IP, 3001, "REJECT"),
        Flow("external to NodePort with no endpoints", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "REJECT"),
        Flow("pod to LoadBalancer IP with no endpoints", "10.0.0.2", "1.2.3.4", 80, "REJECT"),
        Flow("external to LoadBalancer IP with no endpoints", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
    ]
    return [Case("no-endpoints-reject", "TestNoEndpointsReject", s, V4_OPTIONS, flows)]


def _cluster_ip_general() -> List[Case]:
    both = [ep("10.180.0.1", local=True), ep("10.180.2.1")]
    s = spec(
        svc("ns1/svc1", "172.30.0.41", 80, port_name="http", endpoints=[ep("10.180.0.1", local=True)]),
        svc("ns2/svc2", "172.30.0.42", 80, port_name="http", endpoints=both),
        svc("ns2/svc2", "172.30.0.42", 443, port_name="https", endpoints=[dict(e, port=8443) for e in both]),
        svc(
            "ns2/svc2",
            "172.30.0.42",
            53,
            port_name="dns-udp",
            protocol="UDP",
            endpoints=[dict(e, port=53) for e in both],
        ),
        svc("ns2/svc2", "172.30.0.42", 53, port_name="dns-tcp", endpoints=[dict(e, port=5353) for e in both]),
        svc(
            "ns2/svc2",
            "172.30.0.42",
            53,
            port_name="dns-sctp",
            protocol="SCTP",
            endpoints=[dict(e, port=53) for e in both],
        ),
    )
    flows = [
        Flow("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
        Flow("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", masq=True),
        Flow("clusterIP with multiple endpoints", "10.180.0.2", "172.30.0.42", 80, "10.180.0.1:80, 10.180.2.1:80"),
        Flow("clusterIP with TargetPort", "10.180.0.2", "172.30.0.42", 443, "10.180.0.1:8443, 10.180.2.1:8443"),
        Flow(
            "clusterIP with TCP, UDP, and SCTP on same port (TCP)",
            "10.180.0.2",
            "172.30.0.42",
            53,
            "10.180.0.1:5353, 10.180.2.1:5353",
        ),
        # (upstream names this one "(TCP)" as well; its protocol is UDP)
        Flow(
            "clusterIP with TCP, UDP, and SCTP on same port (TCP)",
            "10.180.0.2",
            "172.30.0.42",
            53,
            "10.180.0.1:53, 10.180.2.1:53",
            protocol="UDP",
        ),
        Flow(
            "clusterIP with TCP, UDP, and SCTP on same port (SCTP)",
            "10.180.0.2",
            "172.30.0.42",
            53,
            "10.180.0.1:53, 10.180.2.1:53",
            protocol="SCTP",
        ),
        Flow(
            "TCP-only port does not match UDP traffic",
            "10.180.0.2",
            "172.30.0.42",
            80,
            CLUSTER_IPS_CHECK,
            protocol="UDP",
            no_frontend_verdict="REJECT",
        ),
        Flow(
            "svc1 does not accept svc2's ports",
            "10.180.0.2",
            "172.30.0.41",
            443,
            CLUSTER_IPS_CHECK,
            no_frontend_verdict="REJECT",
        ),
        Flow(
            "packet to unallocated cluster ip",
            "10.180.0.2",
            "172.30.0.50",
            80,
            CLUSTER_IPS_CHECK,
            no_frontend_verdict="DROP",
        ),
    ]
    return [Case("cluster-ip-general", "TestClusterIPGeneral", s, V4_OPTIONS, flows)]


def _load_balancer() -> List[Case]:
    s = spec(
        svc(
            "ns1/svc1",
            "172.30.0.41",
            type="LoadBalancer",
            node_port=3001,
            lb_ips=["1.2.3.4", "5.6.7.8"],
            source_ranges=["192.168.0.0/24", " 203.0.113.0/25"],
            endpoints=[ep("10.180.0.1")],
        )
    )
    out = "10.180.0.1:80"
    flows = [
        Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out),
        Flow("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, out, masq=True),
        Flow(
            "nodePort bypasses LoadBalancerSourceRanges",
            TEST_EXTERNAL_CLIENT_BLOCKED,
            TEST_NODE_IP,
            3001,
            out,
            masq=True,
        ),
        Flow("accepted external to LB1", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, out, masq=True),
        Flow("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, out, masq=True),
        Flow("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP"),
        Flow("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP"),
        Flow("pod to LB1 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "1.2.3.4", 80, "DROP"),
        Flow("pod to LB2 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "5.6.7.8", 80, "DROP"),
        Flow("node to LB1 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "1.2.3.4", 80, out, masq=True),
        Flow("node to LB2 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "5.6.7.8", 80, out, masq=True),
        Flow("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "1.2.3.4", 80, out, masq=True),
        Flow("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "5.6.7.8", 80, out, masq=True),
    ]
    return [Case("load-balancer", "TestLoadBalancer", s, V4_OPTIONS, flows)]


def _node_ports() -> List[Case]:
    cases = []
    subtests = [
        # (sub-test, IPv6?, nodeport-ips kube-proxy fills from --nodeport-addresses, allowAltNodeIP)
        ("ipv4", False, None, False),
        ("ipv4, multiple nodeport-addresses", False, [TEST_NODE_IP, TEST_NODE_IP_ALT], True),
        ("ipv6", True, None, False),
        ("ipv6, multiple nodeport-addresses", True, [TEST_NODE_IPV6, TEST_NODE_IPV6_ALT], True),
    ]
    for name, v6, nodeport_ips, allow_alt in subtests:
        if v6:
            svc_ip, ep1, ep2, node_ip = "fd00:172:30::41", "fd00:10:180::1", "fd00:10:180::2:1", TEST_NODE_IPV6
            pod_ip, client, alt = "fd00:10::2", "2600:5200::1", TEST_NODE_IPV6_ALT
            opts, pod_cidr = dict(V6_OPTIONS), POD_CIDR_V6
            output = f"[{ep1}]:80, [{ep2}]:80"
        else:
            svc_ip, ep1, ep2, node_ip = "172.30.0.41", "10.180.0.1", "10.180.2.1", TEST_NODE_IP
            pod_ip, client, alt = "10.0.0.2", TEST_EXTERNAL_CLIENT, TEST_NODE_IP_ALT
            opts, pod_cidr = dict(V4_OPTIONS), POD_CIDR
            output = f"{ep1}:80, {ep2}:80"
        if nodeport_ips:
            # NewNodePortAddresses(family, CIDRs): the node's addresses inside them (fake interfaces
            # hold testNodeIPs); 192.168.99.11 is in none of the CIDRs.
            opts["nodeport_ips"] = nodeport_ips
        s = spec(
            svc("ns1/svc1", svc_ip, type="NodePort", node_port=3001, endpoints=[ep(ep1), ep(ep2, local=True)]),
            pod_cidr=pod_cidr,
        )
        flows = [
            Flow("pod to cluster IP", pod_ip, svc_ip, 80, output),
            Flow("external to nodePort", client, node_ip, 3001, output, masq=True),
            Flow("node to nodePort", node_ip, node_ip, 3001, output, masq=True),
        ]
        if allow_alt:
            flows.append(Flow("external to nodePort on secondary IP", client, alt, 3001, output, masq=True))
        else:
            flows.append(Flow("secondary nodeIP ignores NodePorts", client, alt, 3001, NO_MATCH))
        cases.append(Case("node-ports-" + _slug(name), f"TestNodePorts/{name}", s, opts, flows))
    return cases


def _external_traffic_policy(local: bool) -> List[Case]:
    s = spec(
        svc(
            "ns1/svc1",
            "172.30.0.41",
            type="LoadBalancer",
            node_port=3001,
            external_ips=["192.168.99.11"],
            lb_ips=["1.2.3.4"],
            etp="Local" if local else "Cluster",
            endpoints=[ep("10.180.0.1"), ep("10.180.2.1", local=True)],
        )
    )
    both, only_local = "10.180.0.1:80, 10.180.2.1:80", "10.180.2.1:80"
    if local:
        flows = [
            Flow("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, both),
            Flow("pod to external IP hits both endpoints, unmasqueraded", "10.0.0.2", "192.168.99.11", 80, both),
            Flow(
                "external to external IP hits only local endpoint, unmasqueraded",
                TEST_EXTERNAL_CLIENT,
                "192.168.99.11",
                80,
                only_local,
            ),
            Flow("pod to LB IP hits only both endpoints, unmasqueraded", "10.0.0.2", "1.2.3.4", 80, both),
            Flow(
                "external to LB IP hits only local endpoint, unmasqueraded",
                TEST_EXTERNAL_CLIENT,
                "1.2.3.4",
                80,
                only_local,
            ),
            Flow("pod to NodePort hits both endpoints, unmasqueraded", "10.0.0.2", TEST_NODE_IP, 3001, both),
            Flow(
                "external to NodePort hits only local endpoint, unmasqueraded",
                TEST_EXTERNAL_CLIENT,
                TEST_NODE_IP,
                3001,
                only_local,
            ),
        ]
        return [Case("etp-local", "TestExternalTrafficPolicyLocal", s, V4_OPTIONS, flows)]
    flows = [
        Flow("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, both),
        Flow("pod to external IP hits both endpoints, masqueraded", "10.0.0.2", "192.168.99.11", 80, both, masq=True),
        Flow(
            "external to external IP hits both endpoints, masqueraded",
            TEST_EXTERNAL_CLIENT,
            "192.168.99.11",
            80,
            both,
            masq=True,
        ),
        Flow("pod to LB IP hits both endpoints, masqueraded", "10.0.0.2", "1.2.3.4", 80, both, masq=True),
        Flow(
            "external to LB IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, both, masq=True
        ),
        Flow("pod to NodePort hits both endpoints, masqueraded", "10.0.0.2", TEST_NODE_IP, 3001, both, masq=True),
        Flow(
            "external to NodePort hits both endpoints, masqueraded",
            TEST_EXTERNAL_CLIENT,
            TEST_NODE_IP,
            3001,
            both,
            masq=True,
        ),
    ]
    return [Case("etp-cluster", "TestExternalTrafficPolicyCluster", s, V4_OPTIONS, flows)]


def _internal_traffic_policy() -> List[Case]:
    cases = []
    subtests = [
        (
            "internalTrafficPolicy is cluster",
            "Cluster",
            (True, False, False),
            "pod to ClusterIP hits all endpoints",
            "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80",
        ),
        (
            "internalTrafficPolicy is local and there is one local endpoint",
            "Local",
            (True, False, False),
            "pod to ClusterIP hits only local endpoint",
            "10.0.1.1:80",
        ),
        (
            "internalTrafficPolicy is local and there are multiple local endpoints",
            "Local",
            (True, True, False),
            "pod to ClusterIP hits all local endpoints",
            "10.0.1.1:80, 10.0.1.2:80",
        ),
        (
            "internalTrafficPolicy is local and there are no local endpoints",
            "Local",
            (False, False, False),
            "no endpoints",
            "DROP",
        ),
    ]
    for name, itp, local, flow_name, output in subtests:
        eps = [ep(f"10.0.1.{i + 1}", local=loc) for i, loc in enumerate(local)]
        upstream = f"TestInternalTrafficPolicy/{name}"
        base = "itp-" + _slug(name.replace("internalTrafficPolicy is ", ""))
        s = spec(svc("ns1/svc1", "172.30.1.1", port_name="", itp=itp, endpoints=eps))
        cases.append(Case(base, upstream, s, V4_OPTIONS, [Flow(flow_name, "10.0.0.2", "172.30.1.1", 80, output)]))
        gone = spec(svc("ns1/svc1", "172.30.1.1", port_name="", itp=itp))
        cases.append(
            Case(
                base + "-deleted",
                upstream + " (after the EndpointSlice is deleted)",
                gone,
                V4_OPTIONS,
                [Flow("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT")],
            )
        )
    return cases


def _terminating(local: bool) -> List[Case]:
    """TestTerminatingEndpointsTrafficPolicyLocal / ...Cluster: LoadBalancer 1.2.3.4, no node port."""
    etp = "Local" if local else "Cluster"
    test = f"TestTerminatingEndpointsTrafficPolicy{etp}"
    ready = {"ready": True}
    serving_term = {"ready": False, "serving": True, "terminating": True}
    dead = {"ready": False, "serving": False, "terminating": True}
    if local:
        subtests = [
            (
                "ready endpoints exist",
                [
                    ("10.0.1.1", True, ready),
                    ("10.0.1.2", True, ready),
                    ("10.0.1.3", True, serving_term),
                    ("10.0.1.4", True, dead),
                    ("10.0.1.5", False, ready),
                ],
                "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
                "10.0.1.1:80, 10.0.1.2:80",
            ),
            (
                "only terminating endpoints exist",
                [
                    ("10.0.1.2", True, serving_term),
                    ("10.0.1.3", True, serving_term),
                    ("10.0.1.4", True, dead),
                    ("10.0.1.5", False, ready),
                ],
                "10.0.1.5:80",
                "10.0.1.2:80, 10.0.1.3:80",
            ),
            ("terminating endpoints on remote node", [("10.0.1.5", False, serving_term)], "10.0.1.5:80", "DROP"),
            (
                "no usable endpoints on any node",
                [("10.0.1.5", True, dead), ("10.0.1.5", False, dead)],
                "REJECT",
                "REJECT",
            ),
        ]
    else:
        subtests = [
            (
                "ready endpoints exist",
                [
                    ("10.0.1.1", True, ready),
                    ("10.0.1.2", True, ready),
                    ("10.0.1.3", False, serving_term),
                    ("10.0.1.4", False, dead),
                    ("10.0.1.5", False, ready),
                ],
                "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
                "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
            ),
            (
                "only terminating endpoints exist",
                [
                    ("10.0.1.2", True, serving_term),
                    ("10.0.1.3", True, serving_term),
                    ("10.0.1.4", False, dead),
                    ("10.0.1.5", False, serving_term),
                ],
                "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80",
                "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80",
            ),
            ("terminating endpoints on remote node", [("10.0.1.5", False, serving_term)], "10.0.1.5:80", "10.0.1.5:80"),
            (
                "no usable endpoints on any node",
                [("10.0.1.5", True, dead), ("10.0.1.5", False, dead)],
                "REJECT",
                "REJECT",
            ),
        ]
    cases = []
    for name, eps, to_cluster_ip, to_lb in subtests:
        endpoints = [ep(ip, local=loc, **cond) for ip, loc, cond in eps]
        s = spec(
            svc(
                "ns1/svc1",
                "172.30.1.1",
                port_name="",
                type="LoadBalancer",
                lb_ips=["1.2.3.4"],
                etp=etp,
                endpoints=endpoints,
            )
        )
        base = f"terminating-{etp.lower()}-{_slug(name)}"
        flows = [
            Flow("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, to_cluster_ip),
            Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, to_lb, masq=not local and to_lb[0].isdigit()),
        ]
        cases.append(Case(base, f"{test}/{name}", s, V4_OPTIONS, flows))
        gone = spec(svc("ns1/svc1", "172.30.1.1", port_name="", type="LoadBalancer", lb_ips=["1.2.3.4"], etp=etp))
        cases.append(
            Case(
                base + "-deleted",
                f"{test}/{name} (after the EndpointSlice is deleted)",
                gone,
                V4_OPTIONS,
                [
                    Flow("pod to clusterIP after endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT"),
                    Flow("external to LB after endpoints deleted", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
                ],
            )
        )
    return cases


def _internal_external_masquerade() -> List[Case]:
    def services(pod_cidr: Optional[str]) -> Dict[str, Any]:
        return spec(
            svc(
                "ns1/svc1",
                "172.30.0.41",
                type="LoadBalancer",
                node_port=3001,
                lb_ips=["1.2.3.4"],
                endpoints=[ep("10.180.0.1", local=True), ep("10.180.1.1")],
            ),
            svc(
                "ns2/svc2",
                "172.30.0.42",
                type="LoadBalancer",
                node_port=3002,
                lb_ips=["5.6.7.8"],
                etp="Local",
                endpoints=[ep("10.180.0.2", local=True), ep("10.180.1.2")],
            ),
            svc(
                "ns3/svc3",
                "172.30.0.43",
                type="LoadBalancer",
                node_port=3003,
                lb_ips=["9.10.11.12"],
                itp="Local",
                endpoints=[ep("10.180.0.3", local=True), ep("10.180.1.3")],
            ),
            pod_cidr=pod_cidr,
        )

    s1, s2, s3 = "10.180.0.1:80, 10.180.1.1:80", "10.180.0.2:80, 10.180.1.2:80", "10.180.0.3:80, 10.180.1.3:80"
    pod, node, ext = "10.0.0.2", TEST_NODE_IP, TEST_EXTERNAL_CLIENT
    base = [
        Flow("pod to ClusterIP", pod, "172.30.0.41", 80, s1),
        Flow("pod to NodePort", pod, node, 3001, s1, masq=True),
        Flow("pod to LB", pod, "1.2.3.4", 80, s1, masq=True),
        Flow("node to ClusterIP", node, "172.30.0.41", 80, s1, masq=True),
        Flow("node to NodePort", node, node, 3001, s1, masq=True),
        Flow("node to LB", node, "1.2.3.4", 80, s1, masq=True),
        Flow("external to ClusterIP", ext, "172.30.0.41", 80, s1, masq=True),
        Flow("external to NodePort", ext, node, 3001, s1, masq=True),
        Flow("external to LB", ext, "1.2.3.4", 80, s1, masq=True),
        Flow("pod to ClusterIP with eTP:Local", pod, "172.30.0.42", 80, s2),
        Flow("pod to NodePort with eTP:Local", pod, node, 3002, s2),
        Flow("pod to LB with eTP:Local", pod, "5.6.7.8", 80, s2),
        Flow("node to ClusterIP with eTP:Local", node, "172.30.0.42", 80, s2, masq=True),
        # (upstream sends this one to port 3001, svc1's node port, and expects svc1's endpoints)
        Flow("node to NodePort with eTP:Local", node, node, 3001, s1, masq=True),
        Flow("node to LB with eTP:Local", node, "5.6.7.8", 80, s2, masq=True),
        Flow("external to ClusterIP with eTP:Local", ext, "172.30.0.42", 80, s2, masq=True),
        Flow("external to NodePort with eTP:Local", ext, node, 3002, "10.180.0.2:80"),
        Flow("external to LB with eTP:Local", ext, "5.6.7.8", 80, "10.180.0.2:80"),
        Flow("pod to ClusterIP with iTP:Local", pod, "172.30.0.43", 80, "10.180.0.3:80"),
        Flow("pod to NodePort with iTP:Local", pod, node, 3003, s3, masq=True),
        Flow("pod to LB with iTP:Local", pod, "9.10.11.12", 80, s3, masq=True),
        Flow("node to ClusterIP with iTP:Local", node, "172.30.0.43", 80, "10.180.0.3:80", masq=True),
        Flow("node to NodePort with iTP:Local", node, node, 3003, s3, masq=True),
        Flow("node to LB with iTP:Local", node, "9.10.11.12", 80, s3, masq=True),
        Flow("external to ClusterIP with iTP:Local", ext, "172.30.0.43", 80, "10.180.0.3:80", masq=True),
        Flow("external to NodePort with iTP:Local", ext, node, 3003, s3, masq=True),
        Flow("external to LB with iTP:Local", ext, "9.10.11.12", 80, s3, masq=True),
    ]
    # The sub-tests' output overrides (their masq overrides are not asserted anyway).
    no_detector = {"pod to NodePort with eTP:Local": "10.180.0.2:80", "pod to LB with eTP:Local": "10.180.0.2:80"}
    variants = [
        ("base", False, True, {}),
        ("no LocalTrafficDetector", False, False, no_detector),
        ("masqueradeAll", True, True, {}),
        ("masqueradeAll, no LocalTrafficDetector", True, False, no_detector),
    ]
    cases = []
    for name, masquerade_all, detector, overrides in variants:
        flows = [
            Flow(f.name, f.source, f.dest_ip, f.dest_port, overrides.get(f.name, f.output), f.protocol, f.masq)
            for f in base
        ]
        opts = dict(V4_OPTIONS, masquerade_all=masquerade_all)
        cases.append(
            Case(
                "masq-" + _slug(name),
                f"TestInternalExternalMasquerade/{name}",
                services(POD_CIDR if detector else None),
                opts,
                flows,
            )
        )
    return cases


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


CASES: List[Case] = [
    *_no_endpoints_reject(),
    *_cluster_ip_general(),
    *_load_balancer(),
    *_node_ports(),
    *_external_traffic_policy(local=True),
    *_external_traffic_policy(local=False),
    *_internal_traffic_policy(),
    *_terminating(local=True),
    *_terminating(local=False),
    *_internal_external_masquerade(),
]
CASE_BY_ID = {c.id: c for c in CASES}

# Flows the engine (or kpwriter) gets wrong: flow id -> diagnosis. Each stays xfail(strict) until fixed.
XFAIL: Dict[str, str] = {}


def _flow_id(case: Case, flow: Flow) -> str:
    name = _slug(flow.name) + ("" if flow.protocol == "TCP" else "-" + flow.protocol.lower())
    return f"{case.id}/{name}"


def _flow_params() -> Iterator[Any]:
    for case in CASES:
        for flow in case.flows:
            fid = _flow_id(case, flow)
            marks = [pytest.mark.xfail(strict=True, reason=XFAIL[fid])] if fid in XFAIL else []
            yield pytest.param(case.id, flow, id=fid, marks=marks)


# ---- mapping a packet to a frontend and a route ------------------------------------------------------


def _ip(text: str) -> Any:
    return ipaddress.ip_address(text)


def _host_port(ip: str, port: int) -> str:
    """net.JoinHostPort, as upstream prints endpoints."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def find_frontends(dp: NodeDataPlane, flow: Flow) -> List[Frontend]:
    """The frontends that claim a packet to flow.dest_ip:dest_port/protocol: service IPs first (kube-proxy's
    ``services`` chain looks up @service-ips before @service-nodeports), else node ports on nodeport-ips."""
    dest = _ip(flow.dest_ip)
    by_ip, by_node_port = [], []
    for rules in dp.services:
        if rules.key.protocol != flow.protocol:
            continue
        for fe in rules.frontends:
            if fe.port != flow.dest_port:
                continue
            if fe.type == NODE_PORT:
                if any(_ip(a) == dest for a in dp.nodeport_addresses):
                    by_node_port.append(fe)
            elif fe.ip is not None and _ip(fe.ip) == dest:
                by_ip.append(fe)
    return by_ip or by_node_port


def source_class(case: Case, source: str) -> str:
    """ "pod" (inside the local detector's CIDR), "node" (one of the node's IPs) or "external"."""
    src = _ip(source)
    pod_cidr = case.spec.get("pod_cidr")
    if pod_cidr and src in ipaddress.ip_network(pod_cidr):
        return "pod"
    if any(_ip(a) == src for a in case.node_ips):
        return "node"
    return "external"


def pick_route(fe: Frontend, cls: str, source: str) -> Optional[Route]:
    """The route a packet from `source` (of class `cls`) takes at frontend `fe`."""
    named = {FROM_ANY, FROM_CLUSTER, FROM_EXTERNAL, FROM_OTHER}
    ranges = [r for r in fe.routes if r.source not in named]
    if ranges or any(r.source == FROM_OTHER for r in fe.routes):
        src = _ip(source)
        for r in ranges:
            if src in ipaddress.ip_network(r.source, strict=False):
                return r
        return next((r for r in fe.routes if r.source == FROM_OTHER), None)
    want = FROM_EXTERNAL if cls == "external" else FROM_CLUSTER
    exact = [r for r in fe.routes if r.source == want]
    if exact:
        return exact[0]
    return next((r for r in fe.routes if r.source == FROM_ANY), None)


def outcome(route: Route) -> Any:
    """What upstream's tracer would print for this route: the set of endpoints, or the verdict."""
    if route.verdict == FORWARD:
        return frozenset(_host_port(b.ip, b.port) for b in route.backends)
    return route.verdict.upper()


def expected(flow: Flow) -> Any:
    if flow.output in ("REJECT", "DROP"):
        return flow.output
    return frozenset(part.strip() for part in flow.output.split(","))


def describe(fe: Frontend) -> str:
    lines = [f"{fe.type} {fe.ip or '*'}:{fe.port}"]
    for r in fe.routes:
        lines.append(f"  from {r.source}: {r.verdict} " + ", ".join(_host_port(b.ip, b.port) for b in r.backends))
    return "\n".join(lines)


# ---- pure checks ----------------------------------------------------------------------------------------


def test_cases_are_well_formed():
    """Unique ids, and every case's transaction can be written (what the lab tests load)."""
    assert len(CASE_BY_ID) == len(CASES)
    ids = [_flow_id(c, f) for c in CASES for f in c.flows]
    assert len(ids) == len(set(ids))
    assert set(XFAIL) <= set(ids)
    for case in CASES:
        text = write_nft(case.spec, **case.options)
        family = "ip6" if ":" in case.spec["services"][0]["frontends"][0]["ip"] else "ip"
        assert text.startswith(f"add table {family} kube-proxy")


# ---- lab: load in a network namespace, list, resolve ------------------------------------------------------


@pytest.fixture(scope="module")
def planes() -> Dict[str, NodeDataPlane]:
    """Every case loaded with real nft (one namespace, the ruleset flushed between cases), listed back and
    resolved."""
    from tests.kpwriter.netns import lab_available, load_into_netns, netns, save_from_netns

    ok, why = lab_available()
    if not ok:
        pytest.skip(f"lab unavailable: {why}")
    if not shutil.which("nft"):
        pytest.skip("nft not installed")
    out: Dict[str, NodeDataPlane] = {}
    with netns("kpflow") as ns:
        for case in CASES:
            load_into_netns(ns, "flush ruleset\n" + write_nft(case.spec, **case.options), "nft")
            text = save_from_netns(ns, "nft")
            out[case.id] = resolve_nft(parse_nft(text, f"{case.id}.nft"), NODE_NAME)
    return out


@pytest.mark.lab
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_rules_are_understood(planes: Dict[str, NodeDataPlane], case_id: str):
    """The engine understands every rule kube-proxy wrote for the case: no warnings or errors."""
    dp = planes[case_id]
    findings = list(dp.findings) + [f for s in dp.services for f in s.findings]
    bad = [f"{f.severity} {f.code}: {f.message}" for f in findings if f.severity in ("warning", "error")]
    assert bad == []


@pytest.mark.lab
@pytest.mark.parametrize("case_id,flow", list(_flow_params()))
def test_packet_flow(planes: Dict[str, NodeDataPlane], case_id: str, flow: Flow):
    case = CASE_BY_ID[case_id]
    dp = planes[case_id]
    where = f"{case.upstream} {flow.name!r}: {flow.source} -> {flow.dest_ip}:{flow.dest_port}/{flow.protocol}"
    fronts = find_frontends(dp, flow)
    if flow.output in (NO_MATCH, CLUSTER_IPS_CHECK):
        # NO_MATCH: no rule of kube-proxy's matches upstream either. CLUSTER_IPS_CHECK: upstream's verdict
        # (flow.no_frontend_verdict) comes from cluster-ips-check, which guards the ClusterIP range as a
        # whole; our model has no frontend for such a packet, so only that is checked.
        upstream = flow.no_frontend_verdict or "no match"
        assert fronts == [], f"{where}: upstream: {upstream} outside any service port; we say\n" + "\n".join(
            map(describe, fronts)
        )
        return
    assert len(fronts) == 1, f"{where}: want one frontend, got {[describe(f) for f in fronts]}"
    fe = fronts[0]
    cls = source_class(case, flow.source)
    route = pick_route(fe, cls, flow.source)
    assert route is not None, f"{where}: no route for a {cls} client in\n{describe(fe)}"
    # flow.masq is not asserted: a route carries no masquerade flag in our model.
    assert outcome(route) == expected(flow), f"{where}: {cls} client takes route from {route.source}\n{describe(fe)}"
