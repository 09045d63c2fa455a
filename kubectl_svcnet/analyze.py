"""Pure analysis: node data planes x API objects -> the ServiceMap, with findings where they disagree.

With API objects present each backend gets its pod's name and whether it runs on the node whose
rules were read, frontends get their true type (an external IP and a load-balancer IP look alike in
some rules), and the rules are checked against the EndpointSlices and against the other nodes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from kubectl_svcnet.model import (
    CLUSTER_IP,
    DROP,
    ERROR,
    EXTERNAL_IP,
    FORWARD,
    FROM_ANY,
    FROM_CLUSTER,
    FROM_EXTERNAL,
    INFO,
    LOAD_BALANCER,
    NODE_PORT,
    REJECT,
    WARNING,
    Cluster,
    Endpoint,
    Finding,
    Frontend,
    NodeDataPlane,
    Route,
    Service,
    ServiceKey,
    ServiceMap,
    ServiceView,
)
from kubectl_svcnet.proxymode import MODE_NONE, ProxyInputs, diagnose

EMPTY = Cluster()


def _annotate(
    fe: Frontend, cluster: Cluster, ep_nodes: Dict[Tuple[str, int], Endpoint], svc: Optional[Service]
) -> Frontend:
    typ = fe.type
    if svc is not None and fe.ip is not None:
        if fe.ip in svc.load_balancer_ips:
            typ = LOAD_BALANCER
        elif fe.ip in svc.external_ips:
            typ = EXTERNAL_IP
    # Objects are copied only where something changes: without API objects nothing does, and a
    # 10,000-service map is not copied backend by backend.
    routes = []
    changed = typ != fe.type
    for r in fe.routes:
        backends = []
        for b in r.backends:
            ep = ep_nodes.get((b.ip, b.port))
            pod = (ep.pod if ep else None) or cluster.pods_by_ip.get(b.ip)
            node = ep.node_name if ep and ep.node_name else (cluster.pod_nodes.get(pod) if pod else None)
            local = (node == fe.node) if node else None
            backends.append(b if (pod, local) == (b.pod, b.local) else replace(b, pod=pod, local=local))
        if any(x is not y for x, y in zip(backends, r.backends)):
            r = replace(r, backends=tuple(backends))
            changed = True
        routes.append(r)
    return replace(fe, type=typ, routes=tuple(routes)) if changed else fe


def _cluster_route(fe: Frontend) -> Optional[Route]:
    """The route pods take (the one every ClusterIP check is about)."""
    for r in fe.routes:
        if r.source in (FROM_ANY, FROM_CLUSTER):
            return r
    return None


def expected_backends(
    svc: Optional[Service], eps: Sequence[Endpoint], node: str, zone: Optional[str] = None, topology: bool = True
) -> Set[Tuple[str, int]]:
    """The endpoints kube-proxy on `node` (in `zone`) should use for cluster traffic, as
    pkg/proxy/topology.go's CategorizeEndpoints decides: ready ones — with internalTrafficPolicy Local
    only those on the node; else, with `topology`, only those the EndpointSlice hints give this node
    (topologyModeFromHints) — and if none is ready, the serving-and-terminating ones."""
    if svc is not None and svc.internal_traffic_policy == "Local":
        eps = [e for e in eps if e.node_name == node]
        ready = [e for e in eps if e.ready]
    else:
        mode = topology_mode(eps, node, zone) if topology else None
        ready = [e for e in eps if e.ready and _available(e, mode, node, zone)]
    if not ready:
        ready = [e for e in eps if e.serving and e.terminating]
    return {(e.ip, e.port) for e in ready}


def topology_mode(eps: Sequence[Endpoint], node: str, zone: Optional[str]) -> Optional[str]:
    """kube-proxy's topologyModeFromHints: "PreferSameNode" when every ready endpoint has a node hint and
    one names this node; else "PreferSameZone" when every ready endpoint has a zone hint and one names
    this node's zone; else None (every ready endpoint)."""
    ready = [e for e in eps if e.ready]
    if not ready:
        return None
    if all(e.node_hints for e in ready) and any(node in e.node_hints for e in ready):
        return "PreferSameNode"
    if all(e.zone_hints for e in ready) and zone and any(zone in e.zone_hints for e in ready):
        return "PreferSameZone"
    return None


def _available(e: Endpoint, mode: Optional[str], node: str, zone: Optional[str]) -> bool:
    if mode == "PreferSameNode":
        return node in e.node_hints
    if mode == "PreferSameZone":
        return zone in e.zone_hints
    return True


def _why_not(e: Endpoint, svc: Optional[Service], node: str) -> str:
    """Why kube-proxy on `node` should not use an endpoint the EndpointSlices list (expected_backends)."""
    if not e.ready and not (e.serving and e.terminating):
        return "which is not ready"
    if svc is not None and svc.internal_traffic_policy == "Local" and e.node_name != node:
        return "which is not on that node (internalTrafficPolicy Local)"
    if not e.ready:
        return "which is terminating while ready endpoints are there"
    return "which the EndpointSlice's topology hints give to other nodes"


def _hinted(eps: Sequence[Endpoint]) -> bool:
    """Whether topology hints can make nodes use different endpoints (then nodes may rightly disagree)."""
    return any(e.zone_hints or e.node_hints for e in eps if e.ready)


def _check_node(
    key: ServiceKey,
    fes: Sequence[Frontend],
    node: str,
    svc: Optional[Service],
    eps: Sequence[Endpoint],
    cluster: Cluster,
    zone: Optional[str] = None,
) -> List[Finding]:
    """`node`'s rules for one service port against the API (`zone`: the node's topology zone)."""
    out: List[Finding] = []
    cip = [f for f in fes if f.type == CLUSTER_IP]
    if cluster.has_endpoints:
        known = {(e.ip, e.port) for e in eps}
        for fe in {_family(f.ip): f for f in reversed(cip)}.values():  # the first of each IP family
            # Each IP family's proxier reads only that family's EndpointSlices (dual-stack Services).
            same = [e for e in eps if _family(e.ip) == _family(fe.ip)]
            want = expected_backends(svc, same, node, zone)
            route = _cluster_route(fe)
            have = {(b.ip, b.port) for b in route.backends} if route else set()
            if have != want and _hinted(same) and have == expected_backends(svc, same, node, zone, topology=False):
                want = have  # a kube-proxy that does not use topology hints (older, or its feature gate off)
            for ip, port in sorted(want - have):
                out.append(
                    Finding(
                        ERROR,
                        "missing-endpoint",
                        f"endpoint {ip}:{port} is in the EndpointSlices but not in node {node}'s rules",
                        node,
                    )
                )
            for ip, port in sorted((have & known) - want):
                e = next(e for e in same if (e.ip, e.port) == (ip, port))
                out.append(
                    Finding(
                        ERROR,
                        "unexpected-endpoint",
                        f"node {node} sends traffic to {ip}:{port}, {_why_not(e, svc, node)} (stale rules?)",
                        node,
                    )
                )
            for ip, port in sorted(have - known):
                out.append(
                    Finding(
                        ERROR,
                        "stale-endpoint",
                        f"node {node} still sends traffic to {ip}:{port}, which no EndpointSlice lists",
                        node,
                    )
                )
            if svc is not None and route is not None and route.verdict == FORWARD:
                out.extend(_affinity_drift(key, node, svc, route))
            if route is not None and route.verdict != FORWARD and want:
                out.append(
                    Finding(
                        ERROR,
                        "stale-no-endpoints",
                        f"node {node} {route.verdict}s {fe.ip}:{fe.port} but the service has endpoints",
                        node,
                    )
                )
    if svc is not None:
        port = next((p for p in svc.ports if p.name == key.port_name and p.protocol == key.protocol), None)
        have_types = {(f.type, f.ip, f.port) for f in fes}
        wanted = []
        if port is not None:
            wanted += [(CLUSTER_IP, ip, port.port) for ip in svc.cluster_ips]
            wanted += [(EXTERNAL_IP, ip, port.port) for ip in svc.external_ips]
            wanted += [(LOAD_BALANCER, ip, port.port) for ip in svc.load_balancer_ips]
            if port.node_port:
                wanted.append((NODE_PORT, None, port.node_port))
        fam = {":" in (f.ip or "") for f in fes if f.ip}
        for t, ip, p in wanted:
            if (t, ip, p) not in have_types and (ip is None or not fam or (":" in ip) in fam):
                what = f"{ip}:{p}" if ip else f"node port {p}"
                out.append(Finding(ERROR, "missing-frontend", f"node {node} has no rule for {t} {what}", node))
        places = {(ip, p) for _, ip, p in wanted}
        for f in fes:
            if (f.ip, f.port) not in places:  # a removed port, node port, external or load-balancer IP
                what = f"{f.ip}:{f.port}" if f.ip else f"node port {f.port}"
                out.append(
                    Finding(
                        ERROR,
                        "stale-frontend",
                        f"node {node} still has rules for {f.type} {what}, which {key} does not have (stale rules?)",
                        node,
                    )
                )
        if svc.internal_traffic_policy == "Local":
            for fe in fes:
                route = _cluster_route(fe) if fe.type == CLUSTER_IP else None
                if route is not None and route.verdict == DROP:
                    out.append(
                        Finding(
                            WARNING,
                            "no-local-endpoints",
                            f"internalTrafficPolicy Local: node {node} has no local endpoint; connections from its"
                            f" pods to {fe.ip}:{fe.port} are dropped there",
                            node,
                        )
                    )
        if svc.external_traffic_policy == "Local":
            for fe in fes:
                for r in fe.routes:
                    if r.source == FROM_EXTERNAL and r.verdict == DROP:
                        where = f"{fe.ip}:{fe.port}" if fe.ip else f"node port {fe.port}"
                        out.append(
                            Finding(
                                WARNING,
                                "no-local-endpoints",
                                f"externalTrafficPolicy Local: node {node} has no local endpoint; "
                                f"external traffic to {where} is dropped there",
                                node,
                            )
                        )
                        break
    return out


def _affinity_drift(key: ServiceKey, node: str, svc: Service, route: Route) -> List[Finding]:
    """ClientIP session affinity (and its timeout) as the Service asks and as the node's rules keep it."""
    want = svc.session_affinity_timeout
    have = route.affinity.timeout_seconds if route.affinity is not None else None
    if want == have:
        return []
    if have is None:
        msg = f"{key} asks for ClientIP session affinity ({want}s), but node {node}'s rules keep none"
    elif want is None:
        msg = f"node {node}'s rules keep ClientIP session affinity ({have}s) for {key}, which asks for none"
    else:
        msg = f"{key} asks for ClientIP session affinity for {want}s, but node {node}'s rules keep it {have}s"
    return [Finding(WARNING, "affinity-drift", msg, node)]


def _family(ip: Optional[str]) -> int:
    return 6 if ip and ":" in ip else 4


def _disagreement(key: ServiceKey, fes: Sequence[Frontend]) -> List[Finding]:
    """Nodes that send the same ClusterIP's traffic to different backends (each IP family apart)."""
    by_family: Dict[int, Dict[str, Tuple]] = {}
    for fe in fes:
        if fe.type != CLUSTER_IP:
            continue
        r = _cluster_route(fe)
        sig = (r.verdict, tuple(sorted((b.ip, b.port) for b in r.backends))) if r else ("none", ())
        by_family.setdefault(_family(fe.ip), {})[fe.node] = sig
    out = []
    for _, by_node in sorted(by_family.items()):
        if len(set(by_node.values())) <= 1:
            continue
        groups: Dict[Tuple, List[str]] = {}
        for node, sig in sorted(by_node.items()):
            groups.setdefault(sig, []).append(node)
        desc = "; ".join(
            f"{','.join(nodes)}: {verdict} {' '.join(f'{ip}:{p}' for ip, p in bs) or '-'}"
            for (verdict, bs), nodes in groups.items()
        )
        out.append(Finding(WARNING, "nodes-disagree", f"nodes send {key} to different backends ({desc})"))
    return out


def analyze(
    planes: Iterable[NodeDataPlane],
    cluster: Optional[Cluster] = None,
    only: Optional[str] = None,
    namespace: Optional[str] = None,
    proxy: Optional[ProxyInputs] = None,
) -> ServiceMap:
    """Join the nodes' rules with the API objects. `only` = "ns/name" keeps one Service;
    `namespace` keeps one namespace. `proxy` (the run's objects and dumps) adds proxymode's diagnosis:
    nodes without kube-proxy's rules get proxy mode "none" and a finding why, and a configured mode
    the rules contradict is a finding."""
    cluster = cluster or EMPTY
    planes = list(planes)
    proxy_findings: List[Finding] = []
    if proxy is not None:
        planes, proxy_findings = diagnose(planes, proxy)
    svc_by_name = {(s.namespace, s.name): s for s in cluster.services}

    def wanted(key: ServiceKey) -> bool:
        return (only is None or key.service == only) and (namespace is None or key.namespace == namespace)

    frontends: Dict[ServiceKey, List[Frontend]] = {}
    findings: Dict[ServiceKey, List[Finding]] = {}
    node_rules: Dict[ServiceKey, Set[str]] = {}
    zones = {n.name: n.zone for n in cluster.nodes}
    for plane in planes:
        node = plane.info.name
        for rules in plane.services:
            if not wanted(rules.key):
                continue
            svc = svc_by_name.get((rules.key.namespace, rules.key.name))
            eps = cluster.endpoints.get(rules.key, ())
            ep_index = {(e.ip, e.port): e for e in eps}
            fes = [_annotate(fe, cluster, ep_index, svc) for fe in rules.frontends]
            frontends.setdefault(rules.key, []).extend(fes)
            node_rules.setdefault(rules.key, set()).add(node)
            f = findings.setdefault(rules.key, [])
            f.extend(rules.findings)
            if cluster.has_services and svc is None:
                f.append(
                    Finding(
                        WARNING,
                        "unknown-service",
                        f"node {node} has rules for {rules.key}, which the API does not list (stale rules?)",
                        node,
                    )
                )
            if svc is not None and svc.proxy_name:
                f.append(
                    Finding(
                        WARNING,
                        "other-proxy-service",
                        f"node {node} has rules for {rules.key}, which is for another service proxy,"
                        f' "{svc.proxy_name}" (label service.kubernetes.io/service-proxy-name): kube-proxy ignores'
                        " it (stale rules?)",
                        node,
                    )
                )
                continue
            f.extend(_check_node(rules.key, fes, node, svc, eps, cluster, zones.get(node)))
    # Service ports the API has and a node's rules lack entirely.
    answered = [p.info.name for p in planes if p.info.error is None and p.info.proxy_mode not in ("unknown", MODE_NONE)]
    for svc in cluster.services:
        if svc.headless or svc.external_name or not svc.cluster_ips or svc.proxy_name:
            continue
        for port in svc.ports:
            key = svc.key(port)
            if not wanted(key):
                continue
            findings.setdefault(key, [])
            frontends.setdefault(key, [])
            missing = [n for n in answered if n not in node_rules.get(key, set())]
            for n in missing:
                findings[key].append(
                    Finding(ERROR, "missing-service", f"node {n}'s rules do not serve {key} at all", n)
                )
    for key in frontends:
        fs = findings.setdefault(key, [])
        if cluster.has_endpoints:
            eps = cluster.endpoints.get(key, ())
            if not any(e.ready or (e.serving and e.terminating) for e in eps):
                fs.append(Finding(WARNING, "no-endpoints", f"{key} has no ready endpoints: connections are refused"))
        elif any(r.verdict == REJECT for fe in frontends[key] if fe.type == CLUSTER_IP for r in fe.routes):
            fs.append(Finding(INFO, "no-endpoints", f"{key} has no endpoints in the rules: connections are refused"))
        svc = svc_by_name.get((key.namespace, key.name))
        local = svc is not None and svc.internal_traffic_policy == "Local"
        if not local and not (cluster.has_endpoints and _hinted(cluster.endpoints.get(key, ()))):
            # (with topology hints or internalTrafficPolicy Local, each node is checked on its own)
            fs.extend(_disagreement(key, frontends[key]))
        fs.extend(_undeclared_ports(key, cluster))
    views = []
    for key in sorted(frontends):
        fes = sorted(frontends[key], key=lambda f: (_type_order(f.type), f.ip or "", f.port, f.node))
        views.append(ServiceView(key, tuple(fes), tuple(_dedupe(findings.get(key, ())))))
    node_findings = tuple(f for p in planes for f in p.findings) + tuple(proxy_findings)
    return ServiceMap(tuple(p.info for p in planes), tuple(views), node_findings)


def _undeclared_ports(key: ServiceKey, cluster: Cluster) -> List[Finding]:
    """Endpoints whose pod declares container ports, none of them the endpoint's: the Service's
    targetPort names a port nothing in the pod says it listens on, the usual cause of "connection
    refused" with endpoints ready and the rules right. (Declaring ports is optional, so a pod that
    declares none is not judged.)"""
    out = []
    for e in cluster.endpoints.get(key, ()):
        pod = e.pod or cluster.pods_by_ip.get(e.ip)
        declared = cluster.pod_ports.get(pod) if pod else None
        if declared and (e.port, key.protocol) not in declared:
            shown = ", ".join(f"{p}/{proto}" for p, proto in sorted(declared))
            out.append(
                Finding(
                    WARNING,
                    "undeclared-target-port",
                    f"{key}: endpoint {e.ip}:{e.port} is pod {pod}, whose containers declare {shown}, not"
                    f" {e.port}/{key.protocol}: connections to it may be refused (check the Service's targetPort)",
                )
            )
    return out


def _type_order(t: str) -> int:
    return {CLUSTER_IP: 0, NODE_PORT: 1, EXTERNAL_IP: 2, LOAD_BALANCER: 3}.get(t, 9)


def _dedupe(fs: Iterable[Finding]) -> List[Finding]:
    seen, out = set(), []
    for f in fs:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out
