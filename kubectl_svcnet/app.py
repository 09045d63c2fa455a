"""What a command does, between the click layer and the core: read inputs, resolve each node,
analyse, and say how the run went. Every node gets a result or an error; one bad node never hides
the others."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from kubectl_svcnet.collect.files import Inputs
from kubectl_svcnet.errors import DumpParseError, ExitStatus, NotFoundError
from kubectl_svcnet.model import ERROR, NodeDataPlane, NodeInfo, ServiceMap

if TYPE_CHECKING:
    from kubectl_svcnet.proxymode import NodeScan

OFFLINE_SOURCES = ("file", "snapshot")  # NodeInfo.source of the inputs read offline
MAX_NAMED_NODES = 5  # an error names up to this many nodes; more are counted


@dataclass
class RunResult:
    service_map: ServiceMap
    status: ExitStatus
    problems: List[str]  # one line each, for stderr


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The core allocates millions of small objects (rules, outcomes, routes) and frees few, none of
    them in reference cycles: the cyclic collector's repeated full passes over them cost a third of a
    map of 10,000 services and reclaim nothing. Turned off around the core, restored after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class ResolvedNode:
    """One node's dumps, resolved: its plane (its error set when a dump is damaged), the problem lines
    and exit status that makes, and what proxymode.diagnose reads of the dumps — everything a map needs
    of the node, so a live run keeps this and lets the dumps' text go as each node arrives."""

    plane: NodeDataPlane
    scan: NodeScan
    problems: List[str] = field(default_factory=list)
    status: ExitStatus = ExitStatus.OK
    only: Optional[str] = None  # the trace's Service it was resolved for (None: every Service)


def resolve_node(
    dumps: Sequence[Tuple[str, str]],
    node: str,
    kind: str,
    only: Optional[str] = None,
    cluster: Any = None,
    shared: Any = None,
) -> ResolvedNode:
    """Parse and resolve one node's (text, source) dumps (`cluster`: model.Cluster or None; `shared`:
    a `shared_walks()` the nodes of one map share). A dump that is not one is this node's error, exit
    status 4; the other nodes are not touched. Runs with the cyclic GC off, as build_map does (see
    no_cyclic_gc); a live run calls it for each node as it arrives."""
    with no_cyclic_gc():
        return _resolve_node(dumps, node, kind, only, cluster, shared)


def shared_walks(only: Optional[str], nodes: int) -> Any:
    """What the nodes of one map share (dataplane.iptables.SharedWalks), or None where nothing would
    be: a trace (its walks keep hops, which name lines) or a single node."""
    if only is not None or nodes < 2:
        return None
    from kubectl_svcnet.dataplane.iptables import SharedWalks

    return SharedWalks()


def _resolve_node(
    dumps: Sequence[Tuple[str, str]], node: str, kind: str, only: Optional[str], cluster: Any, shared: Any = None
) -> ResolvedNode:
    from kubectl_svcnet.dataplane import read_node
    from kubectl_svcnet.proxymode import NodeScan, scan_node

    try:
        plane = read_node(dumps, node, kind, only, cluster, shared)
    except DumpParseError as e:
        # Proxy mode "unknown", and its error: what is not read says nothing about kube-proxy's rules.
        plane = NodeDataPlane(NodeInfo(node, kind, error=e.one_line()))
        return ResolvedNode(plane, NodeScan(False), [f"node {node}: {e.one_line()}"], ExitStatus.INPUT, only)
    scan = scan_node(plane, dumps)
    errors = [f for f in plane.findings if f.severity == ERROR]
    if not errors:
        return ResolvedNode(plane, scan, [], ExitStatus.OK, only)
    # Read what could be read; the dump itself is damaged, which the exit status says.
    plane = replace(plane, info=replace(plane.info, error=errors[0].message))
    return ResolvedNode(plane, scan, [f"node {node}: {f.message}" for f in errors], ExitStatus.INPUT, only)


def build_map(inputs: Inputs, only: Optional[str] = None, namespace: Optional[str] = None) -> RunResult:
    with no_cyclic_gc():
        return _build_map(inputs, only, namespace)


def _build_map(inputs: Inputs, only: Optional[str], namespace: Optional[str]) -> RunResult:
    """Every node in `inputs.nodes` order: resolved here from its dumps' text, or taken as resolved
    already (`inputs.resolved`, a live run's); then the analysis over all of them."""
    from kubectl_svcnet.analyze import analyze
    from kubectl_svcnet.proxymode import ProxyInputs

    cluster = inputs.cluster
    if cluster is None and inputs.objects:
        from kubectl_svcnet.objects import build_cluster

        cluster = build_cluster(inputs.objects)
    planes: List[NodeDataPlane] = []
    scans: Dict[str, NodeScan] = {}
    problems: List[str] = []
    status = ExitStatus.OK
    shared = shared_walks(only, sum(1 for n in inputs.nodes if n not in inputs.resolved and n not in inputs.errors))
    for node, dumps in inputs.nodes.items():
        kind = inputs.source_kind.get(node, "file")
        if node in inputs.errors:
            planes.append(NodeDataPlane(NodeInfo(node, kind, error=inputs.errors[node])))
            problems.append(f"node {node}: {inputs.errors[node]}")
            # A node folder of a snapshot without dumps is an input that could not be read, as an empty
            # dump is; a node that could not be reached live is a node that failed.
            status = ExitStatus.INPUT if inputs.source_kind.get(node) in OFFLINE_SOURCES else ExitStatus.PARTIAL
            continue
        done = inputs.resolved.get(node)
        if done is None:
            done = _resolve_node(dumps, node, kind, only, cluster, shared)
        elif done.only != only:
            raise ValueError(f"node {node} was resolved for {done.only!r}, not {only!r}")
        planes.append(done.plane)
        scans[node] = done.scan
        problems.extend(done.problems)
        if done.status != ExitStatus.OK:
            status = done.status
    smap = analyze(planes, cluster, only=only, namespace=namespace, proxy=ProxyInputs(inputs.objects, {}, scans))
    if only is not None and not smap.services:
        raise not_found(only, inputs, cluster)
    return RunResult(smap, status, problems)


def not_found(only: str, inputs: Inputs, cluster: Any = None) -> NotFoundError:
    """The error for a Service ("ns/name") that no node's rules hold: where it was looked for (the nodes,
    counted when there are many), and the Services of a close name, if any; for one the API has but
    kube-proxy writes no rules for (headless, ExternalName, another service proxy's), what it is instead."""
    ns, _, name = only.partition("/")
    nodes = sorted(inputs.nodes)
    where = ", ".join(nodes) if len(nodes) <= MAX_NAMED_NODES else f"{len(nodes)} nodes"
    svc = next((s for s in getattr(cluster, "services", ()) if (s.namespace, s.name) == (ns, name)), None)
    if svc is not None:  # the API has it, but kube-proxy writes no rules for it
        if svc.external_name:
            what, dns = f"an ExternalName Service ({svc.external_name})", f"a CNAME for {svc.external_name}"
        elif svc.headless:
            what, dns = "headless (clusterIP: None)", "the addresses of its endpoints"
        elif svc.proxy_name:
            what = f'for another service proxy, "{svc.proxy_name}" (label service.kubernetes.io/service-proxy-name)'
            dns = ""
        else:
            what, dns = "without a ClusterIP or ports", ""
        return NotFoundError(
            f'service "{name}" in namespace "{ns}" is {what}: kube-proxy writes no rules for it',
            where=where or None,
            hint=f"its DNS name resolves to {dns}, not through kube-proxy" if dns else None,
        )
    close = similar_services(only, service_names(inputs, cluster))
    if close:
        hint = f"did you mean {', '.join(close)}? (give NAMESPACE/NAME, or -n NAMESPACE)"
    else:
        hint = "check -n/--namespace, or list services with `kubectl svcnet map`"
    return NotFoundError(f'service "{name}" not found in namespace "{ns}"', where=where or None, hint=hint)


def service_names(inputs: Inputs, cluster: Any = None) -> List[str]:
    """Every Service ("ns/name") the run knows of: the API's, else those the rules of the first node whose
    dumps name any (kube-proxy comments each rule with its `ns/name:port`; every node has every Service).
    Read only for an error: it reads a node's dumps whole (0.4 s for 48 MB)."""
    if cluster is not None and cluster.has_services:
        return sorted({f"{s.namespace}/{s.name}" for s in cluster.services})
    import re

    from kubectl_svcnet.dumptext import text_of

    comment = re.compile(r'comment(?: --comment)?"?:?\s*"?([a-z0-9][-a-z0-9]*)/([a-z0-9][-a-z0-9]*)(?=[:"\s])')
    for dumps in inputs.nodes.values():
        found = {f"{m[1]}/{m[2]}" for text, _ in dumps for m in comment.finditer(text_of(text))}
        if found:
            return sorted(found)
    return []


def similar_services(only: str, names: Sequence[str], limit: int = 3) -> List[str]:
    """What a user who asked for `only` ("ns/name") may have meant, at most `limit`: the same name in
    other namespaces (the usual mistake: no -n); else names that start with the one given (`db` for
    `db-service`), then close names (difflib); the same namespace's first."""
    import difflib

    ns, _, name = only.partition("/")
    by_name: Dict[str, List[str]] = {}
    for full in names:
        if full != only:
            by_name.setdefault(full.partition("/")[2], []).append(full)
    if name in by_name:
        return by_name[name][:limit]
    starting = sorted(n for n in by_name if len(name) >= 2 and n.startswith(name))
    close = difflib.get_close_matches(name, list(by_name), n=limit, cutoff=0.7)
    picked = [f for n in dict.fromkeys(starting + close) for f in by_name[n]]
    return sorted(picked, key=lambda f: f.partition("/")[0] != ns)[:limit]  # (stable: best match first)


def kube_proxy_pods(objects: List[dict]) -> Dict[str, Tuple[str, str]]:
    """node name -> (its kube-proxy pod "ns/name", the version it runs: the image tag), from the Pods."""
    from kubectl_svcnet.objects import flatten

    out: Dict[str, Tuple[str, str]] = {}
    for o in flatten(objects):
        meta = o.get("metadata") or {}
        if o.get("kind") != "Pod" or (meta.get("labels") or {}).get("k8s-app") != "kube-proxy":
            continue
        spec = o.get("spec") or {}
        for c in spec.get("containers") or []:
            image = str(c.get("image") or "")
            if c.get("name") == "kube-proxy" and spec.get("nodeName"):
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else image
                pod = f"{meta.get('namespace') or 'kube-system'}/{meta.get('name') or ''}"
                out[spec["nodeName"]] = (pod, tag.split("@", 1)[0])
    return out


def internal_ips(objects: List[dict]) -> Dict[str, str]:
    """node name -> its first InternalIP, from the API's Nodes."""
    from kubectl_svcnet.objects import flatten, parse_node

    out: Dict[str, str] = {}
    for node in (parse_node(o) for o in flatten(objects) if o.get("kind") == "Node"):
        ip = next((a for t, a in node.addresses if t == "InternalIP"), None)
        if ip:
            out[node.name] = ip
    return out


def node_rows(
    smap: ServiceMap, objects: List[dict], node_info: Optional[Dict[str, Dict[str, Any]]] = None
) -> List[Dict[str, object]]:
    """`kubectl svcnet nodes`: one row per node, from what its rules hold, and from `node_info`
    (Inputs.node_info: kube-proxy's /healthz answer, a rules-in-both-backends warning) when read."""
    from kubectl_svcnet.collect.nodecmds import parse_healthz

    pods = kube_proxy_pods(objects)
    addresses = internal_ips(objects)
    info = node_info or {}
    health: Dict[str, Dict[str, Any]] = {}
    for name, extra in info.items():
        hz = extra.get("healthz")
        if isinstance(hz, dict):
            health[name] = parse_healthz(hz.get("body"), hz.get("statusCode"))
    unknown = {"lastSync": None, "healthy": None, "syncAgeSeconds": None, "nodeEligible": None}
    services: Dict[str, set] = {}
    endpoints: Dict[str, set] = {}
    findings: Dict[str, Dict[str, int]] = {}
    for f in list(smap.findings) + [f for v in smap.services for f in v.findings]:
        if f.node is not None:
            counts = findings.setdefault(f.node, {"error": 0, "warning": 0, "info": 0})
            counts[f.severity] = counts.get(f.severity, 0) + 1
    for v in smap.services:
        for fe in v.frontends:
            services.setdefault(fe.node, set()).add(v.key)
            for r in fe.routes:
                endpoints.setdefault(fe.node, set()).update((b.ip, b.port) for b in r.backends)
    return [
        {
            "name": n.name,
            "source": n.source,
            "proxyMode": n.proxy_mode,
            "iptablesBackend": n.iptables_backend,
            "internalIP": addresses.get(n.name),
            "kubeProxyPod": pods.get(n.name, (None, None))[0],
            "kubeProxyVersion": pods.get(n.name, (None, None))[1],
            "servicePorts": len(services.get(n.name, ())),
            "endpoints": len(endpoints.get(n.name, ())),
            **health.get(n.name, unknown),
            "backendWarning": info.get(n.name, {}).get("backendWarning"),
            "findings": findings.get(n.name, {"error": 0, "warning": 0, "info": 0}),
            "error": n.error,
        }
        for n in smap.nodes
    ]


def write_snapshot(inputs: Inputs, directory: str) -> int:
    """Write a run's inputs in the layout `--snapshot` reads: one List file per kind, and
    nodes/<node>/<command>.txt per dump. Returns how many files were written."""
    import json
    from pathlib import Path

    if inputs.resolved:  # a live run that resolved its nodes as they came kept no dump text to write
        raise ValueError("write_snapshot needs the dumps' text: read the nodes without resolving them")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    from kubectl_svcnet.objects import flatten

    by_kind: Dict[str, List[dict]] = {}
    for o in flatten(inputs.objects):
        by_kind.setdefault(str(o.get("kind") or "Object"), []).append(o)
    count = 0
    for kind, items in sorted(by_kind.items()):
        doc = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
        (root / f"{kind.lower()}s.json").write_text(json.dumps(doc, indent=2) + "\n")
        count += 1
    for node, dumps in sorted(inputs.nodes.items()):
        if not dumps:
            continue
        nd = root / "nodes" / node
        nd.mkdir(parents=True, exist_ok=True)
        for i, (text, source) in enumerate(dumps):
            label = source.rsplit(":", 1)[-1] if ":" in source else f"dump{i}"
            safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip(".") or f"dump{i}"
            (nd / f"{safe}.txt").write_text(text)
            count += 1
        healthz = inputs.node_info.get(node, {}).get("healthz")
        if healthz is not None:  # kube-proxy's /healthz answer, as read (`--snapshot` reads it back)
            from kubectl_svcnet.collect.files import HEALTHZ_FILE

            (nd / HEALTHZ_FILE).write_text(json.dumps(healthz, indent=2) + "\n")
            count += 1
    return count
