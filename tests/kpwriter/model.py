"""The writer's input: one node's service ports, read from an expected.json-shaped dict.

The schema is the one of `tests/fixtures/kube-proxy/*/*/expected.json` (see that folder's README):
``node_name``, ``pod_cidr`` (the local-traffic detector CIDR; null = no detector) and ``services[]``,
one entry per service port, with ``frontends[]`` and ``endpoints[]``. Keys the fixtures do not carry
but a node has (its IP, its node-port addresses) may be added to the spec or passed as options.

What kube-proxy derives from a Service and its EndpointSlices is derived here the same way
(`pkg/proxy/serviceport.go`, `pkg/proxy/topology.go` `CategorizeEndpoints`), so the writers below
only have to follow `syncProxyRules`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    def __str__(self) -> str:
        # net.JoinHostPort
        if ":" in self.ip:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


@dataclass
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # "TCP" | "UDP" | "SCTP"
    svc_type: str
    cluster_ip: Optional[str]
    port: int
    node_port: int = 0
    external_ips: List[str] = field(default_factory=list)
    load_balancer_vips: List[str] = field(default_factory=list)
    load_balancer_source_ranges: List[str] = field(default_factory=list)
    external_policy_local: bool = False
    internal_policy_local: bool = False
    affinity_timeout: Optional[int] = None  # ClientIP affinity timeout, None = no affinity
    health_check_node_port: int = 0
    endpoints: List[Endpoint] = field(default_factory=list)

    @property
    def name_string(self) -> str:
        """proxy.ServicePortName.String(): ``ns/name:port`` or ``ns/name`` when the port is unnamed."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible()

    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible())


@dataclass
class Categorized:
    cluster: List[Endpoint]
    local: List[Endpoint]
    all_reachable: List[Endpoint]
    has_any: bool


def categorize_endpoints(svc: ServicePort) -> Categorized:
    """pkg/proxy/topology.go CategorizeEndpoints, without topology hints."""
    eps = svc.endpoints
    cluster: List[Endpoint] = []
    local: List[Endpoint] = []
    has_any = False
    use_serving_terminating = False
    if svc.uses_cluster_endpoints():
        cluster = [e for e in eps if e.ready]
        if not cluster:
            cluster = [e for e in eps if e.serving and e.terminating]
        if cluster:
            has_any = True
    if not svc.uses_local_endpoints():
        return Categorized(cluster, local, cluster, has_any)
    has_local_ready = has_local_st = False
    for e in eps:
        if e.ready:
            has_any = True
            has_local_ready = has_local_ready or e.local
        elif e.serving and e.terminating:
            has_any = True
            has_local_st = has_local_st or e.local
    if has_local_ready:
        local = [e for e in eps if e.local and e.ready]
    elif has_local_st:
        use_serving_terminating = True
        local = [e for e in eps if e.local and e.serving and e.terminating]
    if not svc.uses_cluster_endpoints():
        return Categorized(cluster, local, local, has_any)
    if not use_serving_terminating:
        return Categorized(cluster, local, cluster, has_any)
    merged: Dict[str, Endpoint] = {}
    for e in cluster + local:
        merged[str(e)] = e
    # kube-proxy iterates a Go map here (random order); sort for a deterministic output.
    return Categorized(cluster, local, [merged[k] for k in sorted(merged)], has_any)


def _norm_cidr(text: str) -> str:
    return str(ipaddress.ip_network(text.strip(), strict=False))


def service_ports(spec: Dict[str, Any]) -> List[ServicePort]:
    """The spec's service ports, in spec order (kube-proxy's own order is a Go map's: random)."""
    out: List[ServicePort] = []
    for s in spec.get("services", []):
        ns, _, name = s["service"].partition("/")
        fronts = s.get("frontends", [])
        cluster_ip = next((f["ip"] for f in fronts if f["kind"] == "ClusterIP"), None)
        port = next((int(f["port"]) for f in fronts if f["kind"] == "ClusterIP"), None)
        if port is None:
            port = next((int(f["port"]) for f in fronts if f["kind"] != "NodePort"), 0)
        node_port = next((int(f["port"]) for f in fronts if f["kind"] == "NodePort"), 0)
        svc_type = s.get("type", "ClusterIP")
        # api/v1/service ExternallyAccessible / ExternalPolicyLocal / NeedsHealthCheck
        ext_ips = [f["ip"] for f in fronts if f["kind"] == "ExternalIP"]
        api_externally_accessible = svc_type in ("LoadBalancer", "NodePort") or (
            svc_type == "ClusterIP" and bool(ext_ips)
        )
        etp_local = api_externally_accessible and s.get("external_traffic_policy") == "Local"
        itp_local = s.get("internal_traffic_policy") == "Local"
        aff = s.get("session_affinity")
        timeout = None
        if aff and (aff.get("type", "ClientIP") == "ClientIP"):
            timeout = int(aff.get("timeout_seconds") or 10800)
        hc = s.get("health_check_node_port") or 0
        if not (svc_type == "LoadBalancer" and etp_local):
            hc = 0
        eps = [
            Endpoint(
                ip=e["ip"],
                port=int(e["port"]),
                local=bool(e.get("local", False)),
                ready=bool(e.get("ready", True)),
                serving=bool(e.get("serving", e.get("ready", True))),
                terminating=bool(e.get("terminating", False)),
            )
            for e in s.get("endpoints", [])
        ]
        # endpointslicecache sorts a service port's endpoints by their "ip:port" string.
        eps.sort(key=str)
        out.append(
            ServicePort(
                namespace=ns,
                name=name,
                port_name=s.get("port_name") or "",
                protocol=(s.get("protocol") or "TCP").upper(),
                svc_type=svc_type,
                cluster_ip=cluster_ip,
                port=port,
                node_port=node_port,
                external_ips=ext_ips,
                load_balancer_vips=[f["ip"] for f in fronts if f["kind"] == "LoadBalancer"],
                load_balancer_source_ranges=[
                    _norm_cidr(c) for c in (s.get("load_balancer_source_ranges") or [])
                ],
                external_policy_local=etp_local,
                internal_policy_local=itp_local,
                affinity_timeout=timeout,
                health_check_node_port=int(hc),
                endpoints=eps,
            )
        )
    return [sp for sp in out if sp.cluster_ip]  # kube-proxy skips headless / IP-less services


def is_ipv6(spec: Dict[str, Any]) -> bool:
    for sp in service_ports(spec):
        if sp.cluster_ip:
            return ipaddress.ip_address(sp.cluster_ip).version == 6
    cidr = spec.get("pod_cidr")
    return bool(cidr) and ipaddress.ip_network(cidr, strict=False).version == 6


def cidr_contains(cidr: str, ip: Optional[str]) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def total_endpoints(sps: List[ServicePort]) -> int:
    return sum(len(sp.endpoints) for sp in sps)


Options = Dict[str, Any]


def merged_options(spec: Dict[str, Any], defaults: Options, overrides: Options) -> Options:
    """Options from (lowest first) the defaults, the spec's ``kube_proxy`` dict, the call's kwargs."""
    opts = dict(defaults)
    if spec.get("node_ip"):
        opts["node_ip"] = spec["node_ip"]
    opts.update(spec.get("kube_proxy") or {})
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(f"unknown writer option(s): {sorted(unknown)}")
    opts.update(overrides)
    return opts


def split_host_port(hp: str) -> Tuple[str, int]:
    host, _, port = hp.rpartition(":")
    return host.strip("[]"), int(port)
