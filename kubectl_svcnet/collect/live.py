"""A live run: the API's objects, then every selected node's data plane over SSH (or through debug pods,
``--via pod``), as Inputs.

Everything here is I/O glue over api.py (the API), ssh.py, debugpod.py and fanout.py (the nodes); what comes out is
the same `Inputs` a snapshot gives, so analysis and rendering do not know where data came from. One
node that cannot be reached is an error for that node only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

from kubectl_svcnet.collect.files import Inputs
from kubectl_svcnet.errors import NotFoundError, UsageError

ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")


@dataclass
class LiveOptions:
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    cluster: Optional[str] = None
    user: Optional[str] = None
    namespace: Optional[str] = None
    all_namespaces: bool = False
    request_timeout: Optional[str] = None
    nodes: Sequence[str] = ()
    node_selector: Optional[str] = None
    address_type: str = "InternalIP"
    parallel: int = 16
    ssh: Dict[str, Any] = field(default_factory=dict)  # SSHOptions fields
    node_timeout: float = 300.0
    healthz: bool = False  # also read kube-proxy's /healthz on each node (`nodes`, `snapshot`)
    only: Optional[str] = None  # `trace`'s "ns/name": nodes send only the iptables lines its trace reads
    via: str = "ssh"  # how nodes are reached: "ssh", or "pod" (a debug pod per node, collect/debugpod.py)
    pod: Dict[str, Any] = field(default_factory=dict)  # PodOptions fields (--via pod)


_REQ = re.compile(r"^\s*(!?)([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


def match_labels(selector: str, labels: Dict[str, str]) -> bool:
    """A node label selector (`-l`): comma-separated `k=v`, `k==v`, `k!=v`, `k`, `!k`."""
    for part in selector.split(","):
        if not part.strip():
            continue
        m = _REQ.match(part)
        if not m:
            raise UsageError(f"cannot parse node selector {selector!r} at {part.strip()!r}")
        neg, key, op, value = m.groups()
        if op is None:
            if (key in labels) == bool(neg):
                return False
        elif op in ("=", "=="):
            if labels.get(key) != value:
                return False
        elif labels.get(key) == value:
            return False
    return True


def node_address(node: Dict[str, Any], address_type: str) -> Optional[str]:
    addrs = (node.get("status") or {}).get("addresses") or []
    for a in addrs:
        if a.get("type") == address_type and a.get("address"):
            return str(a["address"])
    return None


def select_nodes(objects: List[Dict[str, Any]], opts: LiveOptions) -> Tuple[Dict[str, str], Dict[str, str]]:
    """(node name -> address to reach it at, node name -> why it cannot be reached)."""
    nodes = {(o.get("metadata") or {}).get("name"): o for o in objects if o.get("kind") == "Node"}
    names = list(opts.nodes) or sorted(n for n in nodes if n)
    missing = [n for n in opts.nodes if n not in nodes]
    if missing:
        raise NotFoundError(f'node "{missing[0]}" not found', hint="list nodes with `kubectl get nodes`")
    chosen: Dict[str, str] = {}
    errors: Dict[str, str] = {}
    for name in names:
        node = nodes[name]
        if opts.node_selector and not match_labels(
            opts.node_selector, (node.get("metadata") or {}).get("labels") or {}
        ):
            continue
        addr = node_address(node, opts.address_type)
        if opts.via == "pod":  # a debug pod is placed by node name: no address needed
            chosen[name] = addr or ""
        elif addr is None:
            errors[name] = f"node has no {opts.address_type} address (try --address-type)"
        else:
            chosen[name] = addr
    return chosen, errors


def read_live(
    opts: LiveOptions, service: Optional[str] = None, progress: Optional[IO[str]] = None, resolve: bool = False
) -> Tuple[Inputs, str]:
    """Read the API, then the selected nodes over SSH. Returns (inputs, the namespace used). With
    `resolve` (map, trace, nodes), each node is resolved as its dumps arrive (see collect_ssh)."""
    from kubectl_svcnet.collect import api

    with api.connect(
        opts.kubeconfig, opts.context, opts.cluster, opts.user, opts.namespace, opts.all_namespaces,
        opts.request_timeout,
    ) as session:  # fmt: skip
        namespace = opts.namespace or session.namespace
        list_ns = None if (opts.all_namespaces and not service) else namespace
        objects, warnings = api.read_cluster(session, list_ns, service=service, proxy=True)
    inputs = Inputs(objects=objects)
    inputs.warnings.extend(warnings)
    addresses, errors = select_nodes(objects, opts)
    for name, why in errors.items():
        inputs.nodes[name] = []
        inputs.errors[name] = why
        inputs.source_kind[name] = opts.via
    if service and opts.only is None:
        opts = replace(opts, only=f"{namespace or 'default'}/{service}")
    if addresses:
        collect_ssh(inputs, addresses, opts, progress, resolve=resolve)
    return inputs, namespace


def service_at_address(opts: LiveOptions, addr: Any) -> Tuple[str, List[str]]:
    """`trace ADDRESS`: the one Service ("ns/name") at an address.Address, from the API, and warnings.
    Services of every namespace (of -n's alone when given; of the context's when listing every namespace
    is forbidden, with a warning), and the Nodes when the address may be a node's and a node port."""
    from kubectl_svcnet.address import Address, pick_service, services_at, why_none
    from kubectl_svcnet.collect import api
    from kubectl_svcnet.errors import ApiError
    from kubectl_svcnet.objects import parse_node, parse_service

    warnings: List[str] = []
    with api.connect(
        opts.kubeconfig, opts.context, opts.cluster, opts.user, opts.namespace, False, opts.request_timeout
    ) as session:
        ns = opts.namespace
        try:
            raw = api.list_objects(session, "services", ns)
        except ApiError as e:
            if ns is not None or getattr(e, "code", 0) != 403:
                raise
            ns = session.namespace or "default"
            warnings.append(f'{e.message}: {addr} looked for in namespace "{ns}" only')
            raw = api.list_objects(session, "services", ns)
        services = [parse_service(o) for o in raw]
        hits = services_at(services, (), addr)
        nodes = [] if hits else [parse_node(o) for o in api.list_objects(session, "nodes")]
    if not hits:
        hits = services_at(services, nodes, addr)
    scope = f' in namespace "{ns}"' if ns else " in any namespace"
    hint = "" if hits else why_none(addr, services_at(services, (), Address(addr.ip)), nodes)
    return pick_service(hits, addr, scope=scope, hint=hint), warnings


def collect_ssh(
    inputs: Inputs, addresses: Dict[str, str], opts: LiveOptions, progress: Optional[IO[str]], resolve: bool = False
) -> None:
    """Every node's dumps into `inputs`, through SSH or debug pods. With `resolve`, each node's dumps
    are resolved (app.resolve_node, for `opts.only`) in this thread as they arrive, while the fan-out
    goes on, and only the result is kept (`inputs.resolved`), not the text: what the run holds is
    bounded by the resolved planes and `opts.parallel` nodes' answers, not by every node's dumps.
    `snapshot` does not resolve: it writes the text."""
    from kubectl_svcnet.collect.fanout import NodeResult, collect_nodes, terminal_progress
    from kubectl_svcnet.collect.nodecmds import collect_node
    from kubectl_svcnet.collect.ssh import SSHOptions, SSHRunnerFactory

    wanted = None  # for a trace resolved here: its Service's IPVS virtual servers, which IPVS nodes filter for

    def collect(runner: Any, name: str) -> Any:
        return collect_node(runner, name, healthz=opts.healthz, only=opts.only, ipvs_wanted=wanted)

    handle = None
    if resolve:
        from kubectl_svcnet.app import resolve_node, shared_walks

        shared = shared_walks(opts.only, len(addresses))
        if inputs.cluster is None and inputs.objects:
            from kubectl_svcnet.objects import build_cluster

            inputs.cluster = build_cluster(inputs.objects)
        from kubectl_svcnet.dataplane import ipvs_wanted

        wanted = ipvs_wanted(inputs.cluster, opts.only)

        def handle(r: NodeResult) -> NodeResult:
            if r.ok:
                d = r.value
                inputs.resolved[r.node] = resolve_node(d.dumps, r.node, opts.via, opts.only, inputs.cluster, shared)
                r = replace(r, value=replace(d, dumps=[], extra=[]))  # the text goes now
            return r

    if opts.via == "pod":
        results = _collect_via_pods(inputs, addresses, opts, progress, collect, handle)
    else:
        factory = SSHRunnerFactory(SSHOptions(**opts.ssh))
        try:
            results = collect_nodes(
                addresses, factory, parallel=opts.parallel, timeout=opts.node_timeout,
                progress=terminal_progress(progress) if progress is not None else None, collect=collect,
                handle=handle,
            )  # fmt: skip
        finally:
            factory.close()
    for name in sorted(results):
        r = results[name]
        inputs.source_kind[name] = opts.via
        if r.ok:
            d = r.value
            inputs.nodes[name] = list(d.dumps)
            inputs.warnings.extend(d.warnings)
            info: Dict[str, Any] = {}
            if d.backend_warning:
                info["backendWarning"] = d.backend_warning
            if d.healthz is not None or d.healthz_status is not None:
                info["healthz"] = {"statusCode": d.healthz_status, "body": d.healthz or ""}
            if info:
                inputs.node_info[name] = info
        else:
            inputs.nodes[name] = []
            inputs.errors[name] = getattr(r.error, "message", str(r.error))


def _collect_via_pods(inputs: Inputs, addresses: Dict[str, str], opts: LiveOptions, progress: Optional[IO[str]],
                      collect: Any, handle: Any = None) -> Dict[str, Any]:  # fmt: skip
    """Every node through a debug pod (collect/debugpod.py), in the namespace of --pod-namespace, else
    the kubeconfig context's (as `kubectl debug node` does; -n names the Services, not where a privileged
    pod may run, so it is not used). SIGTERM cleans up like Ctrl-C while pods may exist; pods that could
    not be deleted are warnings."""
    from kubectl_svcnet.collect import api
    from kubectl_svcnet.collect.debugpod import PodOptions, PodRunnerFactory, sigterm_raises
    from kubectl_svcnet.collect.fanout import collect_nodes, interrupts_held, terminal_progress

    with sigterm_raises(), api.connect(
        opts.kubeconfig, opts.context, opts.cluster, opts.user, None, False, opts.request_timeout
    ) as session:  # fmt: skip
        factory = PodRunnerFactory(session, PodOptions(**opts.pod))
        try:
            return collect_nodes(
                addresses, factory, parallel=opts.parallel, timeout=opts.node_timeout,
                progress=terminal_progress(progress) if progress is not None else None, collect=collect,
                handle=handle,
            )  # fmt: skip
        finally:
            with interrupts_held():  # every pod is deleted, whatever arrives meanwhile
                factory.close()
            inputs.warnings.extend(factory.leftovers)


def sorted_objects(objects: Sequence[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """Objects grouped by kind, for snapshot files (services.json, pods.json, …)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for o in objects:
        out.setdefault(str(o.get("kind") or "Object"), []).append(o)
    return out


# What `ranges` reads: (resource, namespace, fallback resource on 404). Each is optional — a 403 or a
# 404 only means that source is missing, and the others still count.
RANGE_SOURCES = (
    ("servicecidrs", None, "servicecidrs/v1beta1"),
    ("nodes", None, None),
    ("services", None, None),
    ("pods", None, None),
    ("configmaps", "kube-system", None),
    ("configmaps", "kube-flannel", None),
    ("ippools", None, None),
)


def _range_objects(session: Any) -> Tuple[List[Dict[str, Any]], List[str]]:
    """Every RANGE_SOURCES object the session can read: (objects, warnings). A 403 skips that source
    with a warning, a 404 (the resource does not exist here) silently; anything else is an error."""
    from kubectl_svcnet.collect import api
    from kubectl_svcnet.errors import ApiError

    objects: List[Dict[str, Any]] = []
    warnings: List[str] = []
    for resource, namespace, fallback in RANGE_SOURCES:
        try:
            objects.extend(api.list_objects(session, resource, namespace))
        except ApiError as e:
            code = getattr(e, "code", 0)
            if code == 404 and fallback:
                try:
                    objects.extend(api.list_objects(session, fallback, namespace))
                    continue
                except ApiError as e2:
                    e, code = e2, getattr(e2, "code", 0)
            if code not in (403, 404):
                raise
            if code == 403:
                warnings.append(f"{e.message}: that source is not read")
    return objects, warnings


def read_ranges(opts: LiveOptions):
    """The objects `ranges` needs and the dry-run answers, from a live cluster: (objects, answers,
    warnings). Dry runs are sent only when no readable object names the ranges."""
    from kubectl_svcnet import ranges
    from kubectl_svcnet.collect import api

    with api.connect(
        opts.kubeconfig, opts.context, opts.cluster, opts.user, opts.namespace, False, opts.request_timeout
    ) as session:
        objects, warnings = _range_objects(session)
        namespace = opts.namespace or session.namespace

        def create(body: Dict[str, Any], ns: str) -> Any:
            return api.create_service_dry_run(session, body, ns)

        answers = ranges.run_probes(create, objects, namespace)
    return objects, answers, warnings


def add_range_objects(inputs: Inputs, opts: LiveOptions) -> None:
    """Add what `ranges` reads (ServiceCIDRs, kube-system's ConfigMaps, IPPools, ...) to a snapshot's
    objects, so `ranges --snapshot DIR` answers as `ranges` does live. Reads only: no dry runs."""
    from kubectl_svcnet.collect import api

    def key(obj: Dict[str, Any]) -> tuple:
        meta = obj.get("metadata") or {}
        return obj.get("kind"), meta.get("namespace"), meta.get("name")

    with api.connect(
        opts.kubeconfig, opts.context, opts.cluster, opts.user, opts.namespace, False, opts.request_timeout
    ) as session:
        objects, warnings = _range_objects(session)
    seen = {key(o) for o in inputs.objects}
    for obj in objects:
        if key(obj) not in seen:
            seen.add(key(obj))
            inputs.objects.append(obj)
    inputs.warnings.extend(f"{w} (`ranges --snapshot` will not see it)" for w in warnings)


KUBE_PROXY_CONTAINER = "kube-proxy"
LOG_LIMIT_BYTES = 16 * 1024 * 1024  # per node: a tail of very long lines stays bounded


def read_kube_proxy_logs(
    opts: LiveOptions, nodes: Sequence[str], tail_lines: int, since_seconds: Optional[int] = None
) -> Tuple[Dict[str, str], List[str]]:
    """The last `tail_lines` lines of the kube-proxy pod on each of `nodes` (label k8s-app=kube-proxy,
    spec.nodeName; container "kube-proxy", else the pod's first): (node -> text, warnings). Nothing
    here fails the run: a node without a kube-proxy pod, or whose log cannot be read, is one warning."""
    from concurrent.futures import ThreadPoolExecutor

    from kubectl_svcnet.collect import api
    from kubectl_svcnet.errors import ApiError, SvcnetError

    logs: Dict[str, str] = {}
    warnings: List[str] = []
    if not nodes:
        return logs, warnings
    try:
        session = api.connect(
            opts.kubeconfig, opts.context, opts.cluster, opts.user, opts.namespace, False, opts.request_timeout
        )
    except SvcnetError as e:
        return logs, [f"kube-proxy logs not read: {e.one_line()}"]
    with session:
        try:
            pods = api.kube_proxy_pods_by_node(session)
        except ApiError as e:
            return logs, [f"kube-proxy logs not read: {e.one_line()}"]

        def one(node: str) -> Tuple[str, Optional[str], Optional[str]]:
            pod = pods.get(node)
            if pod is None:
                return node, None, f"node {node}: no kube-proxy pod (label k8s-app=kube-proxy) runs there: no log"
            meta = pod.get("metadata") or {}
            names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name")]
            container = KUBE_PROXY_CONTAINER if KUBE_PROXY_CONTAINER in names or not names else names[0]
            ns, name = str(meta.get("namespace") or "kube-system"), str(meta.get("name") or "")
            try:
                text = api.pod_logs(session, ns, name, container, tail_lines, since_seconds, LOG_LIMIT_BYTES)
            except ApiError as e:
                return node, None, f"node {node}: kube-proxy's log not read: {e.one_line()}"
            return node, text, None

        with ThreadPoolExecutor(max_workers=max(1, min(opts.parallel, len(nodes), 16))) as pool:
            for node, text, why in pool.map(one, list(nodes)):
                if text is not None:
                    logs[node] = text
                if why:
                    warnings.append(why)
    return logs, warnings
