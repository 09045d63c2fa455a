"""Specs for the writers (write_iptables, write_nft), in the fixtures' expected.json shape."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

# kube-proxy's proxier_test.go constants, the same in its iptables and nftables tests (the packet-flow
# tests use them as node addresses and clients).
TEST_NODE_IP = "192.168.0.2"
TEST_NODE_IP_ALT = "192.168.1.2"
TEST_EXTERNAL_IP = "192.168.99.11"
TEST_NODE_IPV6 = "2001:db8::1"
TEST_NODE_IPV6_ALT = "2001:db8:1::2"
TEST_EXTERNAL_CLIENT = "203.0.113.2"
TEST_EXTERNAL_CLIENT_BLOCKED = "203.0.113.130"


def service_port(
    name: str,
    cluster_ip: str,
    port: int = 80,
    *,
    port_name: str = "p80",
    protocol: str = "TCP",
    type: str = "ClusterIP",
    node_port: Optional[int] = None,
    external_ips: Sequence[str] = (),
    lb_ips: Sequence[str] = (),
    etp: Optional[str] = None,
    itp: Optional[str] = None,
    source_ranges: Sequence[str] = (),
    hc: Optional[int] = None,
    endpoints: Sequence[Dict[str, Any]] = (),
) -> Dict[str, Any]:
    """One service port (`name` is "ns/svc"): its frontends, policies (None: Cluster) and endpoints."""
    fronts: List[Dict[str, Any]] = [{"kind": "ClusterIP", "ip": cluster_ip, "port": port}]
    if node_port:
        fronts.append({"kind": "NodePort", "ip": None, "port": node_port})
    fronts += [{"kind": "ExternalIP", "ip": ip, "port": port} for ip in external_ips]
    fronts += [{"kind": "LoadBalancer", "ip": ip, "port": port} for ip in lb_ips]
    return {
        "service": name,
        "port_name": port_name,
        "protocol": protocol,
        "type": type,
        "frontends": fronts,
        "external_traffic_policy": etp,
        "internal_traffic_policy": itp,
        "session_affinity": None,
        "load_balancer_source_ranges": list(source_ranges),
        "health_check_node_port": hc,
        "endpoints": list(endpoints),
    }
