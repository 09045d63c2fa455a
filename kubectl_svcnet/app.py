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
    from kubectl_svcnet.proxymode import scan_node

    try:
        plane = read_node(dumps, node, kind, only, cluster, shared)
    except DumpParseError as e:
        plane = NodeDataPlane(NodeInfo(node, kind, error=e.one_line()))
        return ResolvedNode(plane, scan_node(plane, dumps), [f"node {node}: {e.one_line()}"], ExitStatus.INPUT, only)
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
            status = ExitStatus.PARTIAL
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
        ns, _, name = only.partition("/")
        raise NotFoundError(
            f'service "{name}" not found in namespace "{ns}"',
            where=", ".join(sorted(inputs.nodes)) or None,
            hint="check -n/--namespace, or list services with `kubectl svcnet map`",
        )
    return RunResult(smap, status, problems)


def kube_proxy_versions(objects: List[dict]) -> Dict[str, str]:
    """node name -> the kube-proxy version its pod runs (the image tag), from the API's Pods."""
    from kubectl_svcnet.objects import flatten

    out: Dict[str, str] = {}
    for o in flatten(objects):
        meta = o.get("metadata") or {}
        if o.get("kind") != "Pod" or (meta.get("labels") or {}).get("k8s-app") != "kube-proxy":
            continue
        spec = o.get("spec") or {}
        for c in spec.get("containers") or []:
            image = str(c.get("image") or "")
            if c.get("name") == "kube-proxy" and spec.get("nodeName"):
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else image
                out[spec["nodeName"]] = tag.split("@", 1)[0]
    return out


def node_rows(
    smap: ServiceMap, objects: List[dict], node_info: Optional[Dict[str, Dict[str, Any]]] = None
) -> List[Dict[str, object]]:
    """`kubectl svcnet nodes`: one row per node, from what its rules hold, and from `node_info`
    (Inputs.node_info: kube-proxy's /healthz answer, a rules-in-both-backends warning) when read."""
    from kubectl_svcnet.collect.nodecmds import parse_healthz

    versions = kube_proxy_versions(objects)
    info = node_info or {}
    health: Dict[str, Dict[str, Any]] = {}
    for name, extra in info.items():
        hz = extra.get("healthz")
        if isinstance(hz, dict):
            health[name] = parse_healthz(hz.get("body"), hz.get("statusCode"))
    unknown = {"lastSync": None, "healthy": None, "syncAgeSeconds": None, "nodeEligible": None}
    services: Dict[str, set] = {}
    endpoints: Dict[str, set] = {}
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
            "kubeProxyVersion": versions.get(n.name),
            "servicePorts": len(services.get(n.name, ())),
            "endpoints": len(endpoints.get(n.name, ())),
            **health.get(n.name, unknown),
            "backendWarning": info.get(n.name, {}).get("backendWarning"),
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
