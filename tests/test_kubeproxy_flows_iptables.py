"""kube-proxy's own packet-flow expectations, held against the engine through the rule writer.

kube-proxy's iptables unit tests (kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go`) build
Services and EndpointSlices, sync, and then trace packets through the rules they wrote
(`runPacketFlowTests`): a source IP and a destination IP:port give the DNAT'd endpoints (all of them,
comma-separated, where a `--probability` rule splits the traffic), or REJECT / DROP / ACCEPT, or ""
(no rule matches). Here each ported test's inputs are written as a `tests/kpwriter` spec, the writer
produces what kube-proxy would restore, the engine resolves it, and every upstream flow is asked of the
route our tool reports for that frontend and class of client.

Revision read: the newest `pkg/proxy/iptables/proxier_test.go` of kubernetes/kubernetes in the library
index (its read_file id 191206484; the index does not report that file's commit): the v1.31+ revision
with `nfAcctCounters`, `TestInternalExternalMasquerade`, `TestLoadBalancerIngressRouteTypeProxy` (which
pins an emulation version of 1.31) and `ptr.To`. Its tests TestClusterIPReject, TestExternalIPsReject,
TestOnlyLocalExternalIPs, TestNonLocalExternalIPs, TestNodePortsReject, TestLoadBalancerReject and
TestOnlyLocalLoadBalancing no longer exist there (folded into TestNoEndpointsReject and the tests below).

The upstream test constants (NewFakeProxier): node `test-node` with local addresses 127.0.0.1, ::1,
192.168.0.2 (testNodeIP, also kube-proxy's nodeIP), 192.168.1.2, 192.168.99.11, 2001:db8::1,
2001:db8:1::2; the local traffic detector `NewDetectLocalByCIDR("10.0.0.0/8")` (IPv6 "fd00:10::/64");
localhost node ports on; --nodeport-addresses unset (every local address); masquerade mark 0x4000;
external client 203.0.113.2, one outside the source ranges 203.0.113.130.

How an upstream flow is asked of our model:
- the destination picks the frontend: a ClusterIP / external IP / load-balancer IP by address and port,
  else (a node address, or 127.0.0.1) the node port of that number; the protocol picks the service port;
- the source picks the route: a source inside a route's CIDR (loadBalancerSourceRanges) takes that route;
  a pod (inside the detector's CIDR) and the node itself (one of its local addresses) take `cluster`; any
  other client `external`; a class with no route of its own falls to `external` / `other`. Without a
  local traffic detector kube-proxy cannot tell pods from external clients, and our model says so by
  answering pods with the `external` route (routes.py: `cluster` then shows the node);
- the upstream output must equal the route's verdict, or the set of its backends' `ip:port` (shares are
  not compared: the tracer lists every endpoint a probability rule can reach and says nothing of shares);
- "" (no rule matches) means no such frontend; ACCEPT is the health-check node port's filter rule, which
  our model carries as the service port's `health_check_node_port`.

Not expressible: the `masq` half of every flow (the model has no masquerade bit), and a loopback client
of a node port where upstream expects it ignored (`--iptables-localhost-nodeports=false` without
--nodeport-addresses: the model has no way to say "every local address but 127.0.0.0/8"). Those are
listed with their reason and skipped.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from kubectl_svcnet.dataplane import read_node
from kubectl_svcnet.model import NodeDataPlane, Route
from tests.kpwriter import sort_iptables_rules, split_syncs, write_iptables
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
from tests.test_kubeproxy_cases import as_node

UPSTREAM = "kubernetes/kubernetes pkg/proxy/iptables/proxier_test.go (library id 191206484, v1.31+ revision)"

# ---------------------------------------------------------------------------------------------
# The upstream test constants.

TEST_NODE_NAME = "test-node"
# testNodeIPs, plus the loopback addresses the tracer always counts as LOCAL.
LOCAL_IPS = {"127.0.0.1", "::1", TEST_NODE_IP, TEST_NODE_IP_ALT, TEST_EXTERNAL_IP, TEST_NODE_IPV6, TEST_NODE_IPV6_ALT}
POD_CIDR = {4: "10.0.0.0/8", 6: "fd00:10::/64"}
# The node's interface addresses, for --nodeport-addresses (GetNodeIPs of the fake network interfacer).
INTERFACE_IPS = [
    "127.0.0.1",
    "::1",
    TEST_NODE_IP,
    TEST_NODE_IP_ALT,
    TEST_EXTERNAL_IP,
    TEST_NODE_IPV6,
    TEST_NODE_IPV6_ALT,
]

# ---------------------------------------------------------------------------------------------
# Inputs, in the writer's spec format (tests/fixtures/kube-proxy/README.md).


def ep(ip: str, port: int = 80, node: Optional[str] = None, ready: bool = True, serving: Optional[bool] = None,
       terminating: bool = False) -> Dict[str, Any]:  # fmt: skip
    """An EndpointSlice endpoint; `node` is its NodeName (local = this node), conditions as the API
    defaults them (serving = ready unless given, terminating false)."""
    return {
        "ip": ip,
        "port": port,
        "local": node == TEST_NODE_NAME,
        "ready": ready,
        "serving": ready if serving is None else serving,
        "terminating": terminating,
    }


svc = service_port


def spec(*services: Dict[str, Any], family: int = 4, detector: bool = True) -> Dict[str, Any]:
    return {"node_name": TEST_NODE_NAME, "pod_cidr": POD_CIDR[family] if detector else None, "services": list(services)}


def nodeport_ips(cidrs: List[str]) -> List[str]:
    """proxyutil NodePortAddresses.GetNodeIPs: the interface addresses inside the CIDRs."""
    return [ip for ip in INTERFACE_IPS if any(ipaddress.ip_address(ip) in ipaddress.ip_network(c) for c in cidrs)]


# ---------------------------------------------------------------------------------------------
# Flows and cases.


@dataclass(frozen=True)
class Flow:
    """One upstream packetFlowTest (its `masq` is not kept: see the module docstring)."""

    name: str
    src: str
    dst: str
    port: int
    output: str
    proto: str = "tcp"
    skip: str = ""  # why this flow cannot be asked of our model


@dataclass
class Case:
    id: str
    upstream: str  # the upstream test (and subtest) the inputs and flows come from
    spec: Dict[str, Any]
    flows: List[Flow]
    options: Dict[str, Any] = field(default_factory=dict)  # write_iptables options (proxier settings)
    family: int = 4


CASES: List[Case] = []


def case(*args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("options", {})
    kwargs["options"].setdefault("node_ip", TEST_NODE_IP)  # NewFakeProxier: nodeIP = testNodeIP
    CASES.append(Case(*args, **kwargs))


def F(name: str, src: str, dst: str, port: int, output: str, **kw: Any) -> Flow:
    return Flow(name, src, dst, port, output, **kw)


# TestTracePacket's flows, asked of TestOverallIPTablesRules' services (TestTracePacket's static rules
# are that test's expected output; its flows name those services).
OVERALL = spec(
    svc("ns1/svc1", "172.30.0.41", endpoints=(ep("10.180.0.1"),)),
    svc(
        "ns2/svc2",
        "172.30.0.42",
        type="LoadBalancer",
        etp="Local",
        node_port=3001,
        lb_ips=("1.2.3.4",),
        external_ips=("192.168.99.22",),
        hc=30000,
        endpoints=(ep("10.180.0.2"),),
    ),
    svc("ns3/svc3", "172.30.0.43", type="NodePort", node_port=3003, endpoints=(ep("10.180.0.3"),)),
    svc(
        "ns4/svc4",
        "172.30.0.44",
        type="NodePort",
        external_ips=("192.168.99.33",),
        endpoints=(ep("10.180.0.4"), ep("10.180.0.5", node=TEST_NODE_NAME)),
    ),
    dict(
        svc(
            "ns5/svc5",
            "172.30.0.45",
            type="LoadBalancer",
            etp="Cluster",
            node_port=3002,
            lb_ips=("5.6.7.8",),
            hc=30000,
            source_ranges=(" 203.0.113.0/25",),
            endpoints=(ep("10.180.0.3"),),
        ),
        session_affinity={"type": "ClientIP", "timeout_seconds": 10800},
    ),
    svc("ns6/svc6", "172.30.0.46"),
)
case("trace-packet", "TestTracePacket (flows) + TestOverallIPTablesRules (inputs)", OVERALL, [
    F("no match", "10.0.0.2", "10.0.0.3", 80, ""),
    F("single endpoint", "10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
    F("multiple endpoints", "10.0.0.2", "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80"),
    F("LOCAL, KUBE-MARK-MASQ", TEST_NODE_IP, "192.168.99.22", 80, "10.180.0.2:80"),
    F("DROP", TEST_EXTERNAL_CLIENT, "192.168.99.22", 80, "DROP"),
    F("ACCEPT (NodePortHealthCheck)", TEST_NODE_IP, TEST_NODE_IP, 30000, "ACCEPT"),
    F("REJECT", "10.0.0.2", "172.30.0.46", 80, "REJECT"),
])  # fmt: skip

case("no-endpoints-reject", "TestNoEndpointsReject", spec(
    svc("ns1/svc1", "172.30.0.41", type="LoadBalancer", node_port=3001, external_ips=("192.168.99.11",),
        lb_ips=("1.2.3.4",)),
), [
    F("pod to cluster IP with no endpoints", "10.0.0.2", "172.30.0.41", 80, "REJECT"),
    F("external to external IP with no endpoints", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, "REJECT"),
    F("pod to NodePort with no endpoints", "10.0.0.2", TEST_NODE_IP, 3001, "REJECT"),
    F("external to NodePort with no endpoints", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "REJECT"),
    F("pod to LoadBalancer IP with no endpoints", "10.0.0.2", "1.2.3.4", 80, "REJECT"),
    F("external to LoadBalancer IP with no endpoints", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
])  # fmt: skip

_SVC2_EPS = (ep("10.180.0.1", node=TEST_NODE_NAME), ep("10.180.2.1", node="node2"))
case("cluster-ip-general", "TestClusterIPGeneral", spec(
    svc("ns1/svc1", "172.30.0.41", port_name="http", endpoints=(ep("10.180.0.1", node=TEST_NODE_NAME),)),
    svc("ns2/svc2", "172.30.0.42", port_name="http", endpoints=_SVC2_EPS),
    svc("ns2/svc2", "172.30.0.42", 443, port_name="https", endpoints=tuple(dict(e, port=8443) for e in _SVC2_EPS)),
    svc("ns2/svc2", "172.30.0.42", 53, port_name="dns-udp", protocol="UDP",
        endpoints=tuple(dict(e, port=53) for e in _SVC2_EPS)),
    svc("ns2/svc2", "172.30.0.42", 53, port_name="dns-tcp", endpoints=tuple(dict(e, port=5353) for e in _SVC2_EPS)),
    svc("ns2/svc2", "172.30.0.42", 53, port_name="dns-sctp", protocol="SCTP",
        endpoints=tuple(dict(e, port=53) for e in _SVC2_EPS)),
), [
    F("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
    F("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80"),
    F("clusterIP with multiple endpoints", "10.180.0.2", "172.30.0.42", 80, "10.180.0.1:80, 10.180.2.1:80"),
    F("clusterIP with TargetPort", "10.180.0.2", "172.30.0.42", 443, "10.180.0.1:8443, 10.180.2.1:8443"),
    F("clusterIP with TCP, UDP, and SCTP on same port (TCP)", "10.180.0.2", "172.30.0.42", 53,
      "10.180.0.1:5353, 10.180.2.1:5353", proto="tcp"),
    F("clusterIP with TCP, UDP, and SCTP on same port (UDP)", "10.180.0.2", "172.30.0.42", 53,
      "10.180.0.1:53, 10.180.2.1:53", proto="udp"),
    F("clusterIP with TCP, UDP, and SCTP on same port (SCTP)", "10.180.0.2", "172.30.0.42", 53,
      "10.180.0.1:53, 10.180.2.1:53", proto="sctp"),
    F("TCP-only port does not match UDP traffic", "10.180.0.2", "172.30.0.42", 80, "", proto="udp"),
    F("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, ""),
])  # fmt: skip

_EP = "10.180.0.1:80"
case("load-balancer", "TestLoadBalancer", spec(
    svc("ns1/svc1", "172.30.0.41", type="LoadBalancer", node_port=3001, lb_ips=("1.2.3.4", "5.6.7.8"),
        source_ranges=("192.168.0.0/24", " 203.0.113.0/25"), endpoints=(ep("10.180.0.1"),)),
), [
    F("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, _EP),
    F("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, _EP),
    F("nodePort bypasses LoadBalancerSourceRanges", TEST_EXTERNAL_CLIENT_BLOCKED, TEST_NODE_IP, 3001, _EP),
    F("accepted external to LB1", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, _EP),
    F("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, _EP),
    F("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP"),
    F("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP"),
    F("pod to LB1 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "1.2.3.4", 80, "DROP"),
    F("pod to LB2 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "5.6.7.8", 80, "DROP"),
    F("node to LB1 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "1.2.3.4", 80, _EP),
    F("node to LB2 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "5.6.7.8", 80, _EP),
    F("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "1.2.3.4", 80, _EP),
    F("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "5.6.7.8", 80, _EP),
])  # fmt: skip

# TestNodePorts: (subtest, family, localhostNodePorts, nodePortAddresses, allowAltNodeIP)
NODE_PORTS = [
    ("ipv4, localhost-nodeports enabled", 4, True, None, True),
    ("ipv4, localhost-nodeports disabled", 4, False, None, True),
    ("ipv4, localhost-nodeports disabled, localhost in nodeport-addresses", 4, False,
     ["192.168.0.0/24", "127.0.0.1/32"], False),
    ("ipv4, localhost-nodeports enabled, multiple nodeport-addresses", 4, False,
     ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], True),
    ("ipv6, localhost-nodeports enabled", 6, True, None, True),
    ("ipv6, localhost-nodeports disabled", 6, False, None, True),
    ("ipv6, localhost-nodeports disabled, multiple nodeport-addresses", 6, False,
     ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], False),
]  # fmt: skip
for _name, _fam, _lhnp, _npa, _alt in NODE_PORTS:
    if _fam == 4:
        _svc_ip, _ep1, _ep2 = "172.30.0.41", "10.180.0.1", "10.180.2.1"
        _pod, _ext, _node, _alt_ip, _lo = "10.0.0.2", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, TEST_NODE_IP_ALT, "127.0.0.1"
    else:
        _svc_ip, _ep1, _ep2 = "fd00:172:30::41", "fd00:10:180::1", "fd00:10:180::2:1"
        _pod, _ext, _node, _alt_ip, _lo = "fd00:10::2", "2600:5200::1", TEST_NODE_IPV6, TEST_NODE_IPV6_ALT, "::1"
    _both = f"{_ep1}:80, {_ep2}:80" if _fam == 4 else f"[{_ep1}]:80, [{_ep2}]:80"
    _opts: Dict[str, Any] = {"localhost_nodeports": _lhnp}
    if _npa is not None:
        # NewNodePortAddresses(family, cidrs) keeps the CIDRs of the proxier's family.
        _cidrs = [c for c in _npa if ipaddress.ip_network(c).version == _fam]
        _opts.update(nodeport_addresses=_cidrs, nodeport_ips=nodeport_ips(_cidrs))
    _flows = [
        F("pod to cluster IP", _pod, _svc_ip, 80, _both),
        F("external to nodePort", _ext, _node, 3001, _both),
        F("node to nodePort", _node, _node, 3001, _both),
    ]
    if _fam == 4 and _lhnp:
        _flows.append(F("localhost to nodePort gets masqueraded", _lo, _lo, 3001, _both))
    else:
        _why = ""
        if _npa is None:
            _why = ("every local address but loopback accepts node ports (`! -d 127.0.0.0/8` or IPv6): the model "
                    "says 'every local address' and has no way to leave out 127.0.0.0/8 / ::1")  # fmt: skip
        _flows.append(F("localhost to nodePort is ignored", _lo, _lo, 3001, "", skip=_why))
    if _alt:
        _flows.append(F("external to nodePort on secondary IP", _ext, _alt_ip, 3001, _both))
    else:
        _flows.append(F("secondary nodeIP ignores NodePorts", _ext, _alt_ip, 3001, ""))
    case(
        f"node-ports-{_name.replace(', ', '-').replace(' ', '-')}",
        f"TestNodePorts/{_name}",
        spec(
            svc(
                "ns1/svc1",
                _svc_ip,
                type="NodePort",
                node_port=3001,
                endpoints=(ep(_ep1), ep(_ep2, node=TEST_NODE_NAME)),
            ),
            family=_fam,
        ),
        _flows,
        options=_opts,
        family=_fam,
    )

_HC_SVC = svc("ns1/svc1", "172.30.0.42", type="LoadBalancer", etp="Local", node_port=3001, hc=30000)
_HC_OPTS = {"nodeport_addresses": ["127.0.0.0/8"], "nodeport_ips": nodeport_ips(["127.0.0.0/8"])}
case("health-check-node-port", "TestHealthCheckNodePort", spec(_HC_SVC), [
    F("firewall accepts HealthCheckNodePort", "1.2.3.4", TEST_NODE_IP, 30000, "ACCEPT"),
], options=dict(_HC_OPTS))  # fmt: skip
case("health-check-node-port-deleted", "TestHealthCheckNodePort (after OnServiceDelete)", spec(), [
    F("HealthCheckNodePort no longer has any rule", "1.2.3.4", TEST_NODE_IP, 30000, ""),
], options=dict(_HC_OPTS))  # fmt: skip

_E1, _E2 = "10.180.0.1:80", "10.180.2.1:80"
_BOTH = f"{_E1}, {_E2}"
_ETP_EPS = (ep("10.180.0.1"), ep("10.180.2.1", node=TEST_NODE_NAME))
case("etp-local", "TestExternalTrafficPolicyLocal", spec(
    svc("ns1/svc1", "172.30.0.41", type="LoadBalancer", etp="Local", node_port=3001, hc=30000,
        external_ips=("192.168.99.11",), lb_ips=("1.2.3.4",), endpoints=_ETP_EPS),
), [
    F("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, _BOTH),
    F("pod to external IP hits both endpoints, unmasqueraded", "10.0.0.2", "192.168.99.11", 80, _BOTH),
    F("external to external IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80,
      _E2),
    F("pod to LB IP hits only both endpoints, unmasqueraded", "10.0.0.2", "1.2.3.4", 80, _BOTH),
    F("external to LB IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, _E2),
    F("pod to NodePort hits both endpoints, unmasqueraded", "10.0.0.2", TEST_NODE_IP, 3001, _BOTH),
    F("external to NodePort hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, _E2),
])  # fmt: skip

case("etp-cluster", "TestExternalTrafficPolicyCluster", spec(
    svc("ns1/svc1", "172.30.0.41", type="LoadBalancer", etp="Cluster", node_port=3001,
        external_ips=("192.168.99.11",), lb_ips=("1.2.3.4",), endpoints=_ETP_EPS),
), [
    F("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, _BOTH),
    F("pod to external IP hits both endpoints, masqueraded", "10.0.0.2", "192.168.99.11", 80, _BOTH),
    F("external to external IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, _BOTH),
    F("pod to LB IP hits both endpoints, masqueraded", "10.0.0.2", "1.2.3.4", 80, _BOTH),
    F("external to LB IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, _BOTH),
    F("pod to NodePort hits both endpoints, masqueraded", "10.0.0.2", TEST_NODE_IP, 3001, _BOTH),
    F("external to NodePort hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, _BOTH),
])  # fmt: skip

# TestInternalTrafficPolicy: (subtest, itp, endpoints as (ip, nodeName), expected output)
ITP = [
    ("internalTrafficPolicy is cluster", "Cluster",
     [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")],
     "pod to ClusterIP hits all endpoints", "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    ("internalTrafficPolicy is local and there is one local endpoint", "Local",
     [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")],
     "pod to ClusterIP hits only local endpoint", "10.0.1.1:80"),
    ("internalTrafficPolicy is local and there are multiple local endpoints", "Local",
     [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", TEST_NODE_NAME), ("10.0.1.3", "node2")],
     "pod to ClusterIP hits all local endpoints", "10.0.1.1:80, 10.0.1.2:80"),
    ("internalTrafficPolicy is local and there are no local endpoints", "Local",
     [("10.0.1.1", "node0"), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")],
     "no endpoints", "DROP"),
]  # fmt: skip
for _i, (_name, _itp, _eps, _flow, _out) in enumerate(ITP):
    _s = svc("ns1/svc1", "172.30.1.1", port_name="", itp=_itp, endpoints=tuple(ep(ip, node=n) for ip, n in _eps))
    case(f"itp-{_i}", f"TestInternalTrafficPolicy/{_name}", spec(_s), [F(_flow, "10.0.0.2", "172.30.1.1", 80, _out)])
    case(f"itp-{_i}-deleted", f"TestInternalTrafficPolicy/{_name} (after OnEndpointSliceDelete)",
         spec(dict(_s, endpoints=[])), [F("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT")])  # fmt: skip


def _term(ip: str, node: str, ready: bool, serving: bool, terminating: bool) -> Dict[str, Any]:
    return ep(ip, node=node, ready=ready, serving=serving, terminating=terminating)


# TestTerminatingEndpointsTrafficPolicy{Local,Cluster}: (subtest, endpoints, pod->clusterIP, external->LB)
_R, _T, _NS = (True, True, False), (False, True, True), (False, False, True)  # ready / serving+terminating / neither
TERMINATING = {
    "Local": [
        ("ready endpoints exist",
         [("10.0.1.1", TEST_NODE_NAME, _R), ("10.0.1.2", TEST_NODE_NAME, _R), ("10.0.1.3", TEST_NODE_NAME, _T),
          ("10.0.1.4", TEST_NODE_NAME, _NS), ("10.0.1.5", "node-1", _R)],
         "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80"),
        ("only terminating endpoints exist",
         [("10.0.1.2", TEST_NODE_NAME, _T), ("10.0.1.3", TEST_NODE_NAME, _T), ("10.0.1.4", TEST_NODE_NAME, _NS),
          ("10.0.1.5", "node-1", _R)],
         "10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80"),
        ("terminating endpoints on remote node", [("10.0.1.5", "node-1", _T)], "10.0.1.5:80", "DROP"),
        ("no usable endpoints on any node", [("10.0.1.5", TEST_NODE_NAME, _NS), ("10.0.1.5", "node-1", _NS)],
         "REJECT", "REJECT"),
    ],
    "Cluster": [
        ("ready endpoints exist",
         [("10.0.1.1", TEST_NODE_NAME, _R), ("10.0.1.2", TEST_NODE_NAME, _R), ("10.0.1.3", "another-node", _T),
          ("10.0.1.4", "another-node", _NS), ("10.0.1.5", "another-node", _R)],
         "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80"),
        ("only terminating endpoints exist",
         [("10.0.1.2", TEST_NODE_NAME, _T), ("10.0.1.3", TEST_NODE_NAME, _T), ("10.0.1.4", "another-node", _NS),
          ("10.0.1.5", "another-node", _T)],
         "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80"),
        ("terminating endpoints on remote node", [("10.0.1.5", "node-1", _T)], "10.0.1.5:80", "10.0.1.5:80"),
        ("no usable endpoints on any node", [("10.0.1.5", TEST_NODE_NAME, _NS), ("10.0.1.5", "node-1", _NS)],
         "REJECT", "REJECT"),
    ],
}  # fmt: skip
for _policy, _subs in TERMINATING.items():
    # The Service: LoadBalancer 1.2.3.4 (no node port), unnamed port 80, healthCheckNodePort 30000.
    _base = svc("ns1/svc1", "172.30.1.1", port_name="", type="LoadBalancer", etp=_policy, lb_ips=("1.2.3.4",),
                hc=30000)  # fmt: skip
    for _i, (_name, _eps, _pod_out, _ext_out) in enumerate(_subs):
        _test = f"TestTerminatingEndpointsTrafficPolicy{_policy}/{_name}"
        case(f"terminating-{_policy.lower()}-{_i}", _test, spec(
            dict(_base, endpoints=[_term(ip, n, *c) for ip, n, c in _eps])), [
            F("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, _pod_out),
            F("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, _ext_out),
        ])  # fmt: skip
        case(f"terminating-{_policy.lower()}-{_i}-deleted", f"{_test} (after OnEndpointSliceDelete)", spec(_base), [
            F("pod to clusterIP after endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT"),
            F("external to LB after endpoints deleted", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
        ])  # fmt: skip

# TestInternalExternalMasquerade: three LoadBalancers (svc2 eTP:Local, svc3 iTP:Local), one local and one
# remote endpoint each, and 30 flows, run with and without the local traffic detector and --masquerade-all.
_IEM_SERVICES = [
    svc("ns1/svc1", "172.30.0.41", type="LoadBalancer", node_port=3001, hc=30001, lb_ips=("1.2.3.4",),
        endpoints=(ep("10.180.0.1", node=TEST_NODE_NAME), ep("10.180.1.1", node="remote"))),
    svc("ns2/svc2", "172.30.0.42", type="LoadBalancer", node_port=3002, hc=30002, etp="Local", lb_ips=("5.6.7.8",),
        endpoints=(ep("10.180.0.2", node=TEST_NODE_NAME), ep("10.180.1.2", node="remote"))),
    svc("ns3/svc3", "172.30.0.43", type="LoadBalancer", node_port=3003, hc=30003, itp="Local",
        lb_ips=("9.10.11.12",), endpoints=(ep("10.180.0.3", node=TEST_NODE_NAME), ep("10.180.1.3", node="remote"))),
]  # fmt: skip
_S1, _S2, _S3 = "10.180.0.1:80, 10.180.1.1:80", "10.180.0.2:80, 10.180.1.2:80", "10.180.0.3:80, 10.180.1.3:80"
_EXT = TEST_EXTERNAL_CLIENT
IEM_FLOWS = [
    F("pod to ClusterIP", "10.0.0.2", "172.30.0.41", 80, _S1),
    F("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, _S1),
    F("pod to LB", "10.0.0.2", "1.2.3.4", 80, _S1),
    F("node to ClusterIP", TEST_NODE_IP, "172.30.0.41", 80, _S1),
    F("node to NodePort", TEST_NODE_IP, TEST_NODE_IP, 3001, _S1),
    F("localhost to NodePort", "127.0.0.1", "127.0.0.1", 3001, _S1),
    F("node to LB", TEST_NODE_IP, "1.2.3.4", 80, _S1),
    F("external to ClusterIP", _EXT, "172.30.0.41", 80, _S1),
    F("external to NodePort", _EXT, TEST_NODE_IP, 3001, _S1),
    F("external to LB", _EXT, "1.2.3.4", 80, _S1),
    F("pod to ClusterIP with eTP:Local", "10.0.0.2", "172.30.0.42", 80, _S2),
    F("pod to NodePort with eTP:Local", "10.0.0.2", TEST_NODE_IP, 3002, _S2),
    F("pod to LB with eTP:Local", "10.0.0.2", "5.6.7.8", 80, _S2),
    F("node to ClusterIP with eTP:Local", TEST_NODE_IP, "172.30.0.42", 80, _S2),
    # (upstream sends this one to port 3001, svc1's node port, and expects svc1's endpoints)
    F("node to NodePort with eTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3001, _S1),
    F("localhost to NodePort with eTP:Local", "127.0.0.1", "127.0.0.1", 3002, _S2),
    F("node to LB with eTP:Local", TEST_NODE_IP, "5.6.7.8", 80, _S2),
    F("external to ClusterIP with eTP:Local", _EXT, "172.30.0.42", 80, _S2),
    F("external to NodePort with eTP:Local", _EXT, TEST_NODE_IP, 3002, "10.180.0.2:80"),
    F("external to LB with eTP:Local", _EXT, "5.6.7.8", 80, "10.180.0.2:80"),
    F("pod to ClusterIP with iTP:Local", "10.0.0.2", "172.30.0.43", 80, "10.180.0.3:80"),
    F("pod to NodePort with iTP:Local", "10.0.0.2", TEST_NODE_IP, 3003, _S3),
    F("pod to LB with iTP:Local", "10.0.0.2", "9.10.11.12", 80, _S3),
    F("node to ClusterIP with iTP:Local", TEST_NODE_IP, "172.30.0.43", 80, "10.180.0.3:80"),
    F("node to NodePort with iTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3003, _S3),
    F("localhost to NodePort with iTP:Local", "127.0.0.1", "127.0.0.1", 3003, _S3),
    F("node to LB with iTP:Local", TEST_NODE_IP, "9.10.11.12", 80, _S3),
    F("external to ClusterIP with iTP:Local", _EXT, "172.30.0.43", 80, "10.180.0.3:80"),
    F("external to NodePort with iTP:Local", _EXT, TEST_NODE_IP, 3003, _S3),
    F("external to LB with iTP:Local", _EXT, "9.10.11.12", 80, _S3),
]
# Each variant's output overrides (its masq overrides are not kept).
_NO_DETECTOR = {"pod to NodePort with eTP:Local": "10.180.0.2:80", "pod to LB with eTP:Local": "10.180.0.2:80"}
IEM_VARIANTS = [
    ("base", False, True, {}),
    ("no LocalTrafficDetector", False, False, _NO_DETECTOR),
    ("masqueradeAll", True, True, {}),
    ("masqueradeAll, no LocalTrafficDetector", True, False, _NO_DETECTOR),
]
for _name, _masq_all, _det, _over in IEM_VARIANTS:
    _flows = [Flow(f.name, f.src, f.dst, f.port, _over.get(f.name, f.output)) for f in IEM_FLOWS]
    case(f"internal-external-masquerade-{_name.replace(', ', '-').replace(' ', '-')}",
         f"TestInternalExternalMasquerade/{_name}", spec(*_IEM_SERVICES, detector=_det), _flows,
         options={"masquerade_all": _masq_all})  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Asking a flow of the engine's answer.

FORMS = ["restore-input", "node-dump"]


def _case(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


@functools.cache
def plane_of(case_id: str, form: str) -> NodeDataPlane:
    c = _case(case_id)
    text = write_iptables(c.spec, **c.options)
    if form == "node-dump":
        text = as_node(text, c.family)
    return read_node([(text, f"{form}.txt")], TEST_NODE_NAME)


def _ip(text: str) -> Any:
    return ipaddress.ip_address(text.strip("[]"))


def _local_address(dst: str) -> bool:
    return dst in LOCAL_IPS


def find_frontend(plane: NodeDataPlane, dst: str, port: int, proto: str) -> Optional[Any]:
    """The frontend a new connection to dst:port/proto meets: a service IP by address, else a node port."""
    node_ports = []
    for s in plane.services:
        if s.key.protocol.lower() != proto:
            continue
        for fe in s.frontends:
            if fe.port != port:
                continue
            if fe.ip is not None and _ip(fe.ip) == _ip(dst):
                return fe
            if fe.ip is None:
                node_ports.append(fe)
    if node_ports and _local_address(dst) and node_port_accepted(plane, dst):
        (fe,) = node_ports
        return fe
    return None


def node_port_accepted(plane: NodeDataPlane, dst: str) -> bool:
    """Whether node ports are accepted on local address dst: every local address when unrestricted."""
    if not plane.nodeport_addresses:
        return True
    return any(_ip(dst) in ipaddress.ip_network(a, strict=False) for a in plane.nodeport_addresses)


def client_class(plane: NodeDataPlane, src: str) -> str:
    if src in LOCAL_IPS:
        return "cluster"  # the node itself
    det = plane.pod_cidr_detector
    if det and _ip(src) in ipaddress.ip_network(det, strict=False):
        return "cluster"  # a pod, as the local traffic detector tells
    return "external"  # (without a detector, a pod too: kube-proxy cannot tell it apart)


def route_for(fe: Any, plane: NodeDataPlane, src: str) -> Route:
    routes = {r.source: r for r in fe.routes}
    if "any" in routes:
        return routes["any"]
    inside = [
        (ipaddress.ip_network(k, strict=False), r)
        for k, r in routes.items()
        if k not in ("cluster", "external", "other") and _ip(src) in ipaddress.ip_network(k, strict=False)
    ]
    if inside:
        return max(inside, key=lambda nr: nr[0].prefixlen)[1]
    cls = client_class(plane, src)
    if cls in routes:
        return routes[cls]
    return routes.get("external") or routes["other"]


def describe(route: Optional[Route]) -> str:
    """A route in the tracer's terms: the verdict, or the sorted `ip:port` of the backends."""
    if route is None:
        return ""
    if route.verdict != "forward":
        return route.verdict.upper()
    return ", ".join(sorted(f"[{b.ip}]:{b.port}" if ":" in b.ip else f"{b.ip}:{b.port}" for b in route.backends))


def expected(flow: Flow) -> str:
    return ", ".join(sorted(x.strip() for x in flow.output.split(","))) if flow.output else ""


def _params() -> List[Any]:
    out = []
    for c in CASES:
        for f in c.flows:
            out.append(pytest.param(c.id, f, id=f"{c.id}:{f.name}"))
    return out


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case_id,flow", _params())
def test_upstream_flow(case_id: str, flow: Flow, form: str) -> None:
    c = _case(case_id)
    if flow.skip:
        pytest.skip(f"{c.upstream}: {flow.name}: not expressible: {flow.skip}")
    plane = plane_of(case_id, form)
    where = f"{c.upstream} [{UPSTREAM}]: {flow.name}: {flow.src} -> {flow.dst}:{flow.port}/{flow.proto}"
    # kube-proxy's filter ACCEPT for a health-check node port: a service port's health_check_node_port.
    health_checks = {s.health_check_node_port for s in plane.services if s.health_check_node_port}
    if flow.output == "ACCEPT":
        assert flow.port in health_checks, f"{where}: health check node ports {health_checks}"
        return
    fe = find_frontend(plane, flow.dst, flow.port, flow.proto)
    if flow.output == "":
        assert fe is None, f"{where}: upstream matches no rule, we report {fe}"
        assert flow.port not in health_checks or not _local_address(flow.dst), where
        if _local_address(flow.dst) and plane.nodeport_addresses:
            assert not node_port_accepted(plane, flow.dst), where
        return
    assert fe is not None, f"{where}: no frontend for it (services: {[str(s.key) for s in plane.services]})"
    got = describe(route_for(fe, plane, flow.src))
    assert got == expected(flow), f"{where}: upstream {flow.output!r}, we say {got!r} (routes {fe.routes})"


def test_every_case_has_flows_and_unique_ids() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert all(c.flows for c in CASES)


def test_overall_spec_is_the_upstream_text() -> None:
    """The inputs transcribed for TestTracePacket's flows write exactly TestOverallIPTablesRules' expected
    text (the `modern-overall` fixture holds it verbatim; the same text is in the revision read)."""
    fixture = Path(__file__).parent / "fixtures" / "kube-proxy" / "iptables" / "modern-overall"
    (want,) = split_syncs((fixture / "kube-proxy-restore-input.txt").read_text())
    want = "".join(line + "\n" for line in want.splitlines() if not line.startswith("#"))
    assert sort_iptables_rules(write_iptables(OVERALL)) == want
