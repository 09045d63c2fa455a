"""kube-proxy's old userspace mode (removed in v1.26): portals in iptables-save -> NodeDataPlane.

The userspace proxier (pkg/proxy/userspace/proxier.go, up to v1.25) does not DNAT to pods. For every
service port it opens a socket in the kube-proxy process (the "proxy port", random) and writes nat
rules that send the service's address to it:

- ``KUBE-PORTALS-CONTAINER`` (from PREROUTING: pods, external clients): ``-d ClusterIP/32 -p tcp --dport P
  -j REDIRECT --to-ports N`` (or ``-j DNAT --to-destination BindIP:N`` when kube-proxy binds one address);
  an external IP or load-balancer IP gets two rules, ``-m physdev ! --physdev-is-in`` and
  ``-m addrtype --dst-type LOCAL``.
- ``KUBE-PORTALS-HOST`` (from OUTPUT: the node itself): the same, ``-j DNAT --to-destination NodeIP:N``.
- ``KUBE-NODEPORT-CONTAINER`` / ``KUBE-NODEPORT-HOST`` (reached with ``--dst-type LOCAL``): the node port,
  no ``-d``; filter ``KUBE-NODEPORT-NON-LOCAL`` accepts the proxy port.

Every rule carries the service port's name as its comment (``ns/name:port``). The choice of pod then
happens inside kube-proxy (round robin over the ready endpoints, with ClientIP affinity if the Service
asks for it). So each frontend gets one route ``any`` with verdict ``forward``: with API objects (a
`Cluster`) its backends are the ready endpoints, 1/n each; without them the backends are empty. Either
way an info finding ``userspace-proxy`` names the kube-proxy port the connections go to. A service port
whose EndpointSlices list no ready endpoint is ``reject`` (kube-proxy accepts and closes the connection).
A frontend reached by REDIRECT in KUBE-PORTALS-CONTAINER is a ClusterIP when its rule has no physdev /
addrtype match, else an external IP (LoadBalancer if the Service lists the IP as an ingress IP).

``NodeInfo.proxy_mode`` is ``"userspace"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

from kubectl_svcnet.dataplane.iptables import IptablesDump, Rule, chain_size, service_key
from kubectl_svcnet.model import (
    CLUSTER_IP,
    EXTERNAL_IP,
    FORWARD,
    FROM_ANY,
    FRONTEND_ORDER,
    INFO,
    LOAD_BALANCER,
    NODE_PORT,
    REJECT,
    Affinity,
    Backend,
    Cluster,
    Finding,
    Frontend,
    NodeDataPlane,
    NodeInfo,
    Route,
    ServiceKey,
    ServiceRules,
)

PORTAL_CHAINS = ("KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST", "KUBE-NODEPORT-CONTAINER", "KUBE-NODEPORT-HOST")
_TO_PORTS = re.compile(r"--to-ports (\d+)")


def _dumps(dump) -> List[IptablesDump]:
    if isinstance(dump, IptablesDump):
        return [dump]
    return list(dump)


def looks_like_userspace(dump: Union[str, IptablesDump, Iterable[IptablesDump]]) -> bool:
    """Whether an iptables-save dump (text, or parsed, or several) is kube-proxy's userspace mode: portal
    chains with rules, and no iptables-mode service chains."""
    if isinstance(dump, str):
        return bool(re.search(r"^-A KUBE-(?:PORTALS|NODEPORT)-(?:CONTAINER|HOST) ", dump, re.M)) and not re.search(
            r"^-A KUBE-SVC-", dump, re.M
        )
    found = False
    for d in _dumps(dump):
        nat = d.tables.get("nat")
        if nat is None:
            continue
        # Rule counts only: a lazily read dump is not read here.
        chains = nat.chains
        if any(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) and chain_size(chains, c) for c in chains):
            return False
        found = found or any(chain_size(chains, c) for c in PORTAL_CHAINS if c in chains)
    return found


def _proxy_target(r: Rule) -> Tuple[Optional[str], Optional[int]]:
    """Where a portal rule sends the connection: (address or None for REDIRECT, kube-proxy's port)."""
    if r.target == "REDIRECT":
        m = _TO_PORTS.search(r.text)
        return None, int(m.group(1)) if m else None
    if r.target == "DNAT" and r.to_destination:
        dest = r.to_destination
        if dest.startswith("["):
            host, _, port = dest[1:].partition("]:")
        else:
            host, _, port = dest.rpartition(":")
        return host or None, int(port) if port.isdecimal() else None
    return None, None


@dataclass
class _Portal:
    key: ServiceKey
    type: str
    ip: Optional[str]
    port: int
    rules: List[Rule] = field(default_factory=list)
    proxy_ports: List[int] = field(default_factory=list)
    dnat_hosts: List[str] = field(default_factory=list)


def resolve_userspace(
    dumps: Union[IptablesDump, Iterable[IptablesDump]],
    node: str,
    source_kind: str = "file",
    only: Optional[str] = None,
    cluster: Optional[Cluster] = None,
) -> NodeDataPlane:
    """Each portal of the userspace proxier as a frontend whose route is kube-proxy itself."""
    portals: Dict[Tuple[ServiceKey, Optional[str], int], _Portal] = {}
    findings: List[Finding] = []
    backend = None
    for dump in _dumps(dumps):
        backend = backend or dump.backend
        findings.extend(Finding(f.severity, f.code, f.message, node) for f in dump.findings)
        for chain in PORTAL_CHAINS:
            for r in dump.chain("nat", chain) or ():
                key = service_key(r.comment, r.proto)
                if key is None or r.dport is None or not r.dport.isdecimal():
                    continue
                if only is not None and key.service != only:
                    continue
                if chain.startswith("KUBE-NODEPORT-"):
                    typ, ip = NODE_PORT, None
                else:
                    ip = r.dst_host
                    if ip is None:
                        continue
                    external = "--physdev-is-in" in r.text or r.dst_type == "LOCAL"
                    typ = EXTERNAL_IP if external else CLUSTER_IP
                k = (key, ip, int(r.dport))
                p = portals.get(k)
                if p is None:
                    p = portals[k] = _Portal(key, typ, ip, int(r.dport))
                elif typ == EXTERNAL_IP:
                    p.type = EXTERNAL_IP
                p.rules.append(r)
                host, port = _proxy_target(r)
                if port is not None and port not in p.proxy_ports:
                    p.proxy_ports.append(port)
                if host and host not in p.dnat_hosts:
                    p.dnat_hosts.append(host)
    svcs = {(s.namespace, s.name): s for s in (cluster.services if cluster else ())}
    services: Dict[ServiceKey, List[Frontend]] = {}
    svc_findings: Dict[ServiceKey, List[Finding]] = {}
    for p in portals.values():
        svc = svcs.get((p.key.namespace, p.key.name))
        typ = p.type
        if typ == EXTERNAL_IP and svc is not None and p.ip in svc.load_balancer_ips:
            typ = LOAD_BALANCER
        path = tuple(r.hop for r in p.rules[:1])
        ports = ", ".join(str(x) for x in p.proxy_ports) or "?"
        where = f"{typ} {p.ip}:{p.port}" if p.ip else f"node port {p.port}"
        if cluster is not None and cluster.has_endpoints:
            eps = [e for e in cluster.endpoints.get(p.key, ()) if e.ready]
            if eps:
                share = 1.0 / len(eps)
                backends = tuple(Backend(e.ip, e.port, share, pod=e.pod) for e in eps)
                aff = Affinity(svc.session_affinity_timeout) if svc and svc.session_affinity_timeout else None
                route = Route(FROM_ANY, FORWARD, backends, aff, path)
                how = "round robin over the ready endpoints" + (" with ClientIP affinity" if aff else "")
                msg = f"{where}: connections go to kube-proxy's userspace proxy on port {ports}, which picks the " \
                      f"endpoint itself ({how})"  # fmt: skip
            else:
                route = Route(FROM_ANY, REJECT, (), None, path)
                msg = f"{where}: connections go to kube-proxy's userspace proxy on port {ports}; the service has " \
                      "no ready endpoints, so kube-proxy closes them"  # fmt: skip
        else:
            route = Route(FROM_ANY, FORWARD, (), None, path)
            msg = f"{where}: connections go to kube-proxy's userspace proxy on port {ports}, which picks the " \
                  "endpoint itself (round robin); without the API's EndpointSlices the backends are "\
                  "unknown"  # fmt: skip
        services.setdefault(p.key, []).append(Frontend(typ, p.ip, p.port, node, (route,)))
        svc_findings.setdefault(p.key, []).append(Finding(INFO, "userspace-proxy", msg, node))
    out = []
    for key in sorted(services):
        fes = sorted(services[key], key=lambda f: (FRONTEND_ORDER.get(f.type, 9), f.ip or "", f.port))
        out.append(ServiceRules(key, tuple(fes), None, tuple(svc_findings[key])))
    return NodeDataPlane(NodeInfo(node, source_kind, "userspace", backend), tuple(out), tuple(findings))
