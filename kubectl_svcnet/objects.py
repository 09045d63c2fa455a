"""Kubernetes API objects (as `kubectl get -o json` prints them, already decoded) -> the model's
Cluster. Pure: dicts in, frozen values out; the API client and the snapshot reader both feed it."""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from kubectl_svcnet.model import Cluster, Endpoint, Node, Service, ServiceKey, ServicePort

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"
# kube-proxy lists Services without this label only (cmd/kube-proxy: LabelServiceProxyName DoesNotExist).
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
DEFAULT_AFFINITY_TIMEOUT = 10800


def flatten(objs: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Items of List objects (kind List, ServiceList, ...) and single objects, in order."""
    out: List[Dict[str, Any]] = []
    for o in objs:
        if not isinstance(o, dict):
            continue
        if isinstance(o.get("items"), list) and str(o.get("kind", "List")).endswith("List"):
            kind = str(o.get("kind", "List"))
            for item in o["items"]:
                if isinstance(item, dict):
                    if "kind" not in item and kind != "List":
                        item = dict(item, kind=kind[: -len("List")])
                    out.append(item)
        elif o.get("kind"):
            out.append(o)
    return out


def _meta(o: Dict[str, Any]) -> Tuple[str, str]:
    m = o.get("metadata") or {}
    return str(m.get("namespace") or "default"), str(m.get("name") or "")


def parse_service(o: Dict[str, Any]) -> Service:
    ns, name = _meta(o)
    spec = o.get("spec") or {}
    status = o.get("status") or {}
    cluster_ips = tuple(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    headless = cluster_ips == ("None",) or spec.get("clusterIP") == "None"
    ports = tuple(
        ServicePort(
            name=str(p.get("name") or ""),
            protocol=str(p.get("protocol") or "TCP").upper(),
            port=int(p.get("port") or 0),
            target_port=str(p.get("targetPort") if p.get("targetPort") is not None else p.get("port", "")),
            node_port=int(p["nodePort"]) if p.get("nodePort") else None,
        )
        for p in spec.get("ports") or []
    )
    # kube-proxy writes no rules for a load-balancer IP whose ipMode is Proxy (the load balancer proxies
    # to the node ports; pkg/proxy's IsVIPMode): only VIP-mode ingress IPs (the default) are frontends.
    lb_ips = tuple(
        i.get("ip")
        for i in ((status.get("loadBalancer") or {}).get("ingress") or [])
        if isinstance(i, dict) and i.get("ip") and i.get("ipMode") != "Proxy"
    )
    timeout = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        timeout = int(cfg) if cfg else DEFAULT_AFFINITY_TIMEOUT
    return Service(
        namespace=ns,
        name=name,
        type=str(spec.get("type") or "ClusterIP"),
        cluster_ips=() if headless else cluster_ips,
        external_ips=tuple(spec.get("externalIPs") or ()),
        load_balancer_ips=lb_ips,
        ports=ports,
        external_traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
        internal_traffic_policy=str(spec.get("internalTrafficPolicy") or "Cluster"),
        session_affinity_timeout=timeout,
        load_balancer_source_ranges=tuple(s.strip() for s in spec.get("loadBalancerSourceRanges") or ()),
        health_check_node_port=spec.get("healthCheckNodePort"),
        headless=headless,
        proxy_name=((o.get("metadata") or {}).get("labels") or {}).get(PROXY_NAME_LABEL) or None,
        external_name=spec.get("externalName"),
    )


def _cond(conds: Dict[str, Any], name: str, default: bool) -> bool:
    v = conds.get(name)
    return default if v is None else bool(v)


def _pod_ref(ref: Optional[Dict[str, Any]], ns: str) -> Optional[str]:
    if isinstance(ref, dict) and ref.get("kind", "Pod") == "Pod" and ref.get("name"):
        return f"{ref.get('namespace') or ns}/{ref['name']}"
    return None


def endpoints_from_slice(o: Dict[str, Any]) -> Dict[ServiceKey, List[Endpoint]]:
    """An EndpointSlice's endpoints per service port (discovery.k8s.io/v1 semantics: a nil `ready`
    means ready, a nil `serving` means the value of `ready`)."""
    ns, _ = _meta(o)
    labels = (o.get("metadata") or {}).get("labels") or {}
    svc = labels.get(SERVICE_NAME_LABEL)
    out: Dict[ServiceKey, List[Endpoint]] = {}
    if not svc or o.get("addressType") == "FQDN":  # kube-proxy reads IPv4 and IPv6 slices only
        return out
    for p in o.get("ports") or [{}]:
        key = ServiceKey(ns, svc, str(p.get("name") or ""), str(p.get("protocol") or "TCP").upper())
        eps = out.setdefault(key, [])
        if p.get("port") is None:
            continue
        for e in o.get("endpoints") or []:
            conds = e.get("conditions") or {}
            ready = _cond(conds, "ready", True)
            for addr in e.get("addresses") or []:
                eps.append(
                    Endpoint(
                        ip=str(addr),
                        port=int(p["port"]),
                        ready=ready,
                        serving=_cond(conds, "serving", ready),
                        terminating=_cond(conds, "terminating", False),
                        node_name=e.get("nodeName"),
                        pod=_pod_ref(e.get("targetRef"), ns),
                        zone_hints=_hints(e, "forZones"),
                        node_hints=_hints(e, "forNodes"),
                    )
                )
    return out


def _hints(endpoint: Dict[str, Any], kind: str) -> Tuple[str, ...]:
    """An EndpointSlice endpoint's `hints.forZones` or `hints.forNodes` names (topology-aware routing)."""
    hints = endpoint.get("hints") or {}
    return tuple(str(h["name"]) for h in hints.get(kind) or [] if isinstance(h, dict) and h.get("name"))


def endpoints_from_core(o: Dict[str, Any]) -> Dict[ServiceKey, List[Endpoint]]:
    """core/v1 Endpoints, for servers without EndpointSlices."""
    ns, svc = _meta(o)
    out: Dict[ServiceKey, List[Endpoint]] = {}
    for subset in o.get("subsets") or []:
        for p in subset.get("ports") or []:
            key = ServiceKey(ns, svc, str(p.get("name") or ""), str(p.get("protocol") or "TCP").upper())
            eps = out.setdefault(key, [])
            for addrs, ready in ((subset.get("addresses") or [], True), (subset.get("notReadyAddresses") or [], False)):
                for a in addrs:
                    eps.append(Endpoint(str(a.get("ip")), int(p.get("port") or 0), ready, ready, False,
                                        a.get("nodeName"), _pod_ref(a.get("targetRef"), ns)))  # fmt: skip
    return out


def parse_node(o: Dict[str, Any]) -> Node:
    _, name = _meta(o)
    spec = o.get("spec") or {}
    addrs = tuple((str(a.get("type")), str(a.get("address"))) for a in (o.get("status") or {}).get("addresses") or [])
    cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    zone = ((o.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL)
    return Node(name, addrs, cidrs, str(zone) if zone else None)


def _declared_ports(spec: Dict[str, Any]) -> FrozenSet[Tuple[int, str]]:
    """The (containerPort, protocol) a pod's containers declare — and its sidecars' (init containers that
    keep running: restartPolicy Always). Declaring is optional: an empty set says nothing."""
    containers = list(spec.get("containers") or []) + [
        c for c in spec.get("initContainers") or [] if isinstance(c, dict) and c.get("restartPolicy") == "Always"
    ]
    out = set()
    for c in containers:
        for p in (c.get("ports") or []) if isinstance(c, dict) else []:
            if isinstance(p, dict) and isinstance(p.get("containerPort"), int):
                out.add((p["containerPort"], str(p.get("protocol") or "TCP")))
    return frozenset(out)


def build_cluster(objs: Iterable[Dict[str, Any]]) -> Cluster:
    """All objects of a run -> Cluster. Unknown kinds are ignored (a snapshot may hold anything)."""
    services: List[Service] = []
    slices: Dict[ServiceKey, List[Endpoint]] = {}
    core: Dict[ServiceKey, List[Endpoint]] = {}
    nodes: List[Node] = []
    pods_by_ip: Dict[str, str] = {}
    pod_nodes: Dict[str, str] = {}
    pod_ports: Dict[str, FrozenSet[Tuple[int, str]]] = {}
    kinds = set()
    for o in flatten(objs):
        kind = o.get("kind")
        kinds.add(kind)
        if kind == "Service":
            services.append(parse_service(o))
        elif kind == "EndpointSlice":
            for k, eps in endpoints_from_slice(o).items():
                slices.setdefault(k, []).extend(eps)
        elif kind == "Endpoints":
            for k, eps in endpoints_from_core(o).items():
                core.setdefault(k, []).extend(eps)
        elif kind == "Node":
            nodes.append(parse_node(o))
        elif kind == "Pod":
            ns, name = _meta(o)
            spec, status = o.get("spec") or {}, o.get("status") or {}
            ref = f"{ns}/{name}"
            if spec.get("nodeName"):
                pod_nodes[ref] = spec["nodeName"]
            declared = _declared_ports(spec)
            if declared:
                pod_ports[ref] = declared
            if spec.get("hostNetwork"):
                continue  # shares the node's IP: it names no pod IP
            ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")] or (
                [status["podIP"]] if status.get("podIP") else []
            )
            for ip in ips:
                pods_by_ip[ip] = ref
    endpoints = slices if "EndpointSlice" in kinds else core
    return Cluster(
        services=tuple(sorted(services, key=lambda s: (s.namespace, s.name))),
        endpoints={k: tuple(v) for k, v in endpoints.items()},
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        pods_by_ip=pods_by_ip,
        pod_nodes=pod_nodes,
        pod_ports=pod_ports,
        has_services="Service" in kinds,
        has_endpoints="EndpointSlice" in kinds or "Endpoints" in kinds,
        has_pods="Pod" in kinds,
    )
