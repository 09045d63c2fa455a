"""Golden comparison: a fixture's expected.json and a parsed NodeDataPlane, in one normal form.

expected.json (see tests/fixtures/kube-proxy/README.md) is written from kube-proxy's test inputs; this
module turns it into the routes the tool must report, by the rules below, so every fixture (iptables
and nftables alike) is checked against the same reading:

- ClusterIP frontend: one route `any` to the endpoints used for cluster traffic, with their shares;
  with no endpoints, `any` gets `no_endpoints_action` (reject/drop).
- NodePort / ExternalIP / LoadBalancer frontends: with externalTrafficPolicy Local, `cluster` (pods and
  the node itself short-circuit to the cluster-wide endpoints) and `external` (only node-local
  endpoints, or `external_no_local_endpoints_action` when there are none); otherwise one route `any`.
- A LoadBalancer frontend with loadBalancerSourceRanges: one route per allowed range (what an external
  client in that range gets), then `other` dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

from kubectl_svcnet.model import NodeDataPlane

FIXTURES = Path(__file__).parent / "fixtures" / "kube-proxy"
SOURCE_ORDER = {"any": 0, "cluster": 1, "external": 2, "other": 99}


def generated_dump(services: int, endpoints: int) -> str:
    """The text of benchmarks/gen_dump.py's iptables-save dump (kube-proxy's current shape)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import gen_dump
    finally:
        sys.path.pop(0)
    return "\n".join(gen_dump.generate(services, endpoints)) + "\n"


def fixture_dirs(mode: str = "") -> List[Path]:
    base = FIXTURES / mode if mode else FIXTURES
    return sorted(p.parent for p in base.rglob("expected.json"))


def load_expected(fixture: Path) -> Dict[str, Any]:
    return json.loads((fixture / "expected.json").read_text())


def _key(ns_name: str, port_name: str, protocol: str) -> str:
    return f"{ns_name}:{port_name}/{protocol}" if port_name else f"{ns_name}/{protocol}"


def _backends(endpoints: Iterable[Dict[str, Any]]) -> Tuple[Tuple[str, int, float], ...]:
    return tuple(sorted((e["ip"], int(e["port"]), round(float(e["probability"]), 4)) for e in endpoints))


def _route_sort(route: Tuple) -> Tuple:
    return (SOURCE_ORDER.get(route[0], 50), route[0])


def expected_services(expected: Dict[str, Any]) -> Dict[str, Any]:
    """Normal form of what expected.json says: key -> sorted frontends with routes."""
    out: Dict[str, Any] = {}
    for svc in expected["services"]:
        affinity = svc.get("session_affinity")
        timeout = affinity["timeout_seconds"] if affinity else None
        cluster_eps = [e for e in svc["endpoints"] if e.get("used_for_cluster_traffic", True)]
        no_eps = (svc.get("no_endpoints_action") or "REJECT").lower()

        def fwd(source: str, eps: List[Dict[str, Any]], action: str = no_eps, timeout=timeout) -> Tuple:
            if eps:
                return (source, "forward", _backends(eps), timeout)
            return (source, action, (), None)

        frontends = []
        for fe in svc["frontends"]:
            if fe["kind"] == "ClusterIP" or not cluster_eps:
                routes = [fwd("any", cluster_eps)]
            elif svc.get("external_traffic_policy") == "Local":
                ext_action = (svc.get("external_no_local_endpoints_action") or "DROP").lower()
                external = svc.get("external_endpoints", [])
                routes = [fwd("cluster", cluster_eps), fwd("external", external, ext_action)]
            else:
                routes = [fwd("any", cluster_eps)]
            ranges = [r.strip() for r in svc.get("load_balancer_source_ranges") or []]
            if fe["kind"] == "LoadBalancer" and ranges and cluster_eps:
                # A client from an allowed range is an external client.
                external_view = [r for r in routes if r[0] in ("any", "external")][0]
                routes = [(cidr,) + external_view[1:] for cidr in ranges] + [("other", "drop", (), None)]
            frontends.append((fe["kind"], fe["ip"], int(fe["port"]), tuple(sorted(routes, key=_route_sort))))
        out[_key(svc["service"], svc["port_name"], svc["protocol"])] = sorted(
            frontends, key=lambda f: (f[0], f[1] or "", f[2])
        )
    return out


def actual_services(plane: NodeDataPlane) -> Dict[str, Any]:
    """The same normal form of what the tool read from a node's rules."""
    out: Dict[str, Any] = {}
    for rules in plane.services:
        k = rules.key
        frontends = []
        for fe in rules.frontends:
            routes = []
            for r in fe.routes:
                backends = tuple(sorted((b.ip, b.port, round(b.probability, 4)) for b in r.backends))
                timeout = r.affinity.timeout_seconds if r.affinity else None
                routes.append((r.source, r.verdict, backends, timeout))
            frontends.append((fe.type, fe.ip, fe.port, tuple(sorted(routes, key=_route_sort))))
        out[_key(k.service, k.port_name, k.protocol)] = sorted(frontends, key=lambda f: (f[0], f[1] or "", f[2]))
    return out
