"""Which service proxy each node runs, and why a node has none of kube-proxy's rules. Pure.

Three questions, answered from the cluster's objects (DaemonSets, ConfigMaps, Pods, Nodes, Calico's
FelixConfiguration) and from the text of each node's dumps:

- A node without kube-proxy's rules: is a replacement doing the job (Cilium's kube-proxy replacement,
  Calico's eBPF data plane, kube-router's service proxy) — and then which command shows its table — or
  is kube-proxy simply not running there (no pod on the node, a DaemonSet that does not select it), or
  running without writing rules? Such a node gets ``proxyMode: "none"`` and one node-level finding.
- Mode detection: kube-proxy's ConfigMap (``config.conf``, ``mode:``; ``""`` is iptables on Linux)
  against the mode of the rules found; a difference is ``proxy-mode-mismatch``, and another mode's
  rules left next to the current ones are ``stale-proxy-rules``.
- ``trace --logs``: which lines of kube-proxy's log are about one Service or a failed sync
  (`filter_log`).

Dumps are scanned only where the answer needs them (a node whose rules hold no Service; the dumps of
another mode than the one read), with plain substring searches, so a 48 MB dump costs nothing extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from kubectl_svcnet.model import ERROR, INFO, WARNING, Finding, NodeDataPlane, frozen

MODE_NONE = "none"  # the JSON contract's proxyMode for a node without any of kube-proxy's rules
MODE_UNKNOWN = "unknown"  # ... and for a node that could not be read (model.NodeInfo's default)
KUBE_PROXY_MODES = ("iptables", "ipvs", "nftables", "userspace")
KUBE_SYSTEM = "kube-system"

# Markers in a dump's text. Chain declarations (":NAME" in iptables-save, "chain NAME" in nft) are
# searched rather than rules, so an empty chain counts too.
IPTABLES_MODE = ("\n:KUBE-SVC-", "\n:KUBE-SVL-", "\n:KUBE-SEP-", "chain KUBE-SVC-", '"KUBE-SVC-')
IPVS_MODE = ("\n:KUBE-NODE-PORT ", "KUBE-CLUSTER-IP", "chain KUBE-NODE-PORT ")
USERSPACE_MODE = ("\n:KUBE-PORTALS-CONTAINER ", "chain KUBE-PORTALS-CONTAINER ")
NFTABLES_MODE = ("table ip kube-proxy", "table ip6 kube-proxy", '"name": "kube-proxy"', '"name":"kube-proxy"')
KUBE_PROXY_ANY = ("\n:KUBE-SERVICES ", "\n:KUBE-PROXY-CANARY ", "chain KUBE-SERVICES ", "chain KUBE-PROXY-CANARY ")
CILIUM = ("\n:CILIUM_", "chain CILIUM_", '"CILIUM_')
CALICO = ("\n:cali-", "chain cali-", '"cali-')
KUBE_ROUTER = ("\n:KUBE-ROUTER-", "chain KUBE-ROUTER-", "kube-router-svip", '"KUBE-ROUTER-')
# Regular expressions are given as text and compiled where first used (`re` keeps them): start-up counts.
IPVS_VIRTUAL_SERVER = r"(?m)^-A -[tuf] "


def _has(text: str, needles: Sequence[str]) -> bool:
    """Whether any needle is in the text; a needle "\nX" also matches X at the very start."""
    return any(n in text or (n[0] == "\n" and text.startswith(n[1:])) for n in needles)


def _needles_for(fmt: Optional[str]) -> Optional[Tuple[str, ...]]:
    """The prefixes a needle can have in a dump of this format (dataplane.detect_format), or None for
    all: a 48 MB iptables-save dump is scanned once per needle, so needles it cannot hold are skipped."""
    return {"iptables": ("\n:", "\n-"), "nft": ("chain ", "table "), "nft-json": ('"',)}.get(fmt or "")


def scan_dump(text: str) -> Set[str]:
    """What one dump shows: the kube-proxy modes whose rules are in it ("iptables", "ipvs", "nftables",
    "userspace"), "kube-proxy" (any of its chains), "cilium", "calico", "kube-router", and
    "ipvs-services" (IPVS virtual servers, whoever made them)."""
    from kubectl_svcnet.dataplane import detect_format
    from kubectl_svcnet.dumptext import text_of

    text = text_of(text)  # (a trace's dump file kept as bytes: the scan reads all of it)
    fmt = detect_format(text)
    forms = _needles_for(fmt)
    syntax = ("\n:", "\n-", "chain ", "table ", '"')

    def has(needles: Sequence[str]) -> bool:
        if forms is not None:
            # Keep the needles of this format's syntax, and those of no particular syntax.
            needles = [n for n in needles if n.startswith(forms) or not n.startswith(syntax)]
        return _has(text, needles)

    found: Set[str] = set()
    if has(IPTABLES_MODE):
        found.add("iptables")
    if has(IPVS_MODE):
        found.add("ipvs")
    if has(USERSPACE_MODE):
        found.add("userspace")
    if has(NFTABLES_MODE):
        found.add("nftables")
    if found or has(KUBE_PROXY_ANY):
        found.add("kube-proxy")
    if has(CILIUM):
        found.add("cilium")
    if has(CALICO):
        found.add("calico")
    if has(KUBE_ROUTER):
        found.add("kube-router")
    if fmt in (None, "ipvsadm") and re.search(IPVS_VIRTUAL_SERVER, text):
        found.add("ipvs-services")
    return found


# ---------------------------------------------------------------------------------------------
# The cluster's side


@frozen
class Replacement:
    """A service proxy other than kube-proxy, as the cluster's objects show it."""

    key: str  # cilium | calico | kube-router (also the node marker of scan_dump)
    name: str  # "Cilium's kube-proxy replacement"
    evidence: Tuple[str, ...]  # what says so, e.g. 'ConfigMap kube-system/cilium-config kube-proxy-replacement: "true"'
    namespace: str  # where its agent runs
    daemonset: str
    container: Optional[str]
    command: Tuple[str, ...]  # what shows its service table, run in its agent's pod on the node

    def command_for(self, pod: Optional[str]) -> str:
        target = pod or f"ds/{self.daemonset}"
        container = f" -c {self.container}" if self.container else ""
        return f"kubectl -n {self.namespace} exec {target}{container} -- {' '.join(self.command)}"


@frozen
class ClusterProxy:
    """What the objects say about service proxies."""

    configured_mode: Optional[str] = None  # kube-proxy's mode from its ConfigMap / flags; None: unknown
    mode_source: str = ""
    kube_proxy_pods: Mapping[str, str] = field(default_factory=dict)  # node -> ns/pod
    pods_known: bool = False  # kube-system's pods were read
    kube_proxy_ds: Optional[Dict[str, Any]] = None
    daemonsets_known: bool = False
    replacements: Tuple[Replacement, ...] = ()
    agents: Mapping[Tuple[str, str], str] = field(default_factory=dict)  # (key, node) -> pod name
    agent_daemonsets: Tuple[str, ...] = ()  # "ns/name" of replacement agents present but not replacing
    node_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def _flatten(objects: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    from kubectl_svcnet.objects import flatten

    return flatten(objects)


def _meta(o: Dict[str, Any]) -> Tuple[str, str]:
    m = o.get("metadata") or {}
    return str(m.get("namespace") or "default"), str(m.get("name") or "")


def _truthy(v: Any) -> bool:
    return str(v).strip().strip('"').lower() in ("true", "1", "yes")


# A KubeProxyConfiguration as kubeadm writes it is plain YAML: block mappings and lists, one scalar a
# line. There the answer is its one top-level `mode:` line, read without importing PyYAML (25 ms of a
# trace's start-up). Anything else (flow collections, anchors, tags, block or multi-line scalars,
# trailing comments, a `mode` that YAML would not read as a string) goes to PyYAML as before.
_PLAIN_VALUE = r"""(?:[-A-Za-z0-9_./][-A-Za-z0-9_./:@+=]*|"[^"\\]*"|'[^']*'|\[\]|\{\})"""
_PLAIN_LINE = (
    rf" *(?:#[^\r\x85\u2028\u2029]*|(?:- +)?[A-Za-z0-9_][-A-Za-z0-9_./]*:(?: +{_PLAIN_VALUE})?|- +{_PLAIN_VALUE})? *"
)
_PLAIN_MODE = r"""mode:(?: +(?:([A-Za-z]+)|"([A-Za-z]*)"|'([A-Za-z]*)'))? *"""
_YAML_WORDS = frozenset(
    "yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF null Null NULL".split()
)
_NOT_PLAIN = object()


def _plain_config_mode(conf: str) -> object:
    """What _config_mode answers for plain text (see above), without PyYAML; _NOT_PLAIN otherwise."""
    lines = conf.split("\n")
    if not all(re.fullmatch(_PLAIN_LINE, line) for line in lines):
        return _NOT_PLAIN
    content = [(i, line) for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    modes = [i for i, line in content if line.startswith("mode")]
    if not content or content[0][1][0] in " -" or len(modes) > 1:
        return _NOT_PLAIN  # the top level must be a mapping at column 0; two modes: YAML takes the last
    if not modes:
        return None
    m = re.fullmatch(_PLAIN_MODE, lines[modes[0]])
    after = next((line for i, line in content if i > modes[0]), "")  # the next line that is not a comment
    if m is None or after[:1] in (" ", "-") or m.group(1) in _YAML_WORDS:
        return _NOT_PLAIN  # a value YAML would continue, nest, or read as a bool or null
    plain, double, single = m.groups()
    return plain or double or single or ""


def _config_mode(conf: str) -> Optional[str]:
    """`mode:` of a KubeProxyConfiguration (YAML or JSON text); None when the text names none."""
    found = _plain_config_mode(conf)
    if found is not _NOT_PLAIN:
        return found  # type: ignore[return-value]
    import yaml

    try:
        doc = yaml.safe_load(conf)
    except yaml.YAMLError:
        doc = None  # a damaged config: the `mode:` line itself, below
    if isinstance(doc, dict):
        return str(doc.get("mode") or "") if "mode" in doc else None
    m = re.search(r"""^mode:\s*["']?([A-Za-z]*)["']?\s*$""", conf, re.M)
    return m.group(1) if m else None


def _containers(ds: Dict[str, Any]) -> List[Dict[str, Any]]:
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for c in spec.get("containers") or [] if isinstance(c, dict)]


def _args(c: Dict[str, Any]) -> List[str]:
    return [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]


def _flag(args: Sequence[str], name: str) -> Optional[str]:
    """The value of --name=V or --name V (a bare boolean flag: "true")."""
    for i, a in enumerate(args):
        if a == f"--{name}":
            nxt = args[i + 1] if i + 1 < len(args) else ""
            return "true" if not nxt or nxt.startswith("-") else nxt
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def _env(ds: Dict[str, Any], name: str) -> Optional[str]:
    for c in _containers(ds):
        for e in c.get("env") or []:
            if isinstance(e, dict) and e.get("name") == name and "value" in e:
                return str(e["value"])
    return None


def cluster_proxy(objects: Sequence[Dict[str, Any]]) -> ClusterProxy:
    """The service-proxy facts of a run's objects (any of them may be missing)."""
    objs = _flatten(objects)
    daemonsets = {(_meta(o)): o for o in objs if o.get("kind") == "DaemonSet"}
    configmaps = {(_meta(o)): o for o in objs if o.get("kind") == "ConfigMap"}
    pods = [o for o in objs if o.get("kind") == "Pod"]
    labels = {_meta(o)[1]: dict((o.get("metadata") or {}).get("labels") or {}) for o in objs if o.get("kind") == "Node"}

    # kube-proxy's configured mode: its ConfigMap (kubeadm: config.conf), else its DaemonSet's flag.
    mode, source = None, ""
    cm = configmaps.get((KUBE_SYSTEM, "kube-proxy"))
    if cm is not None:
        for key, text in sorted((cm.get("data") or {}).items()):
            if isinstance(text, str) and (key == "config.conf" or "KubeProxyConfiguration" in text):
                found = _config_mode(str(text))
                if found is not None:
                    mode = found or "iptables"
                    source = f'ConfigMap {KUBE_SYSTEM}/kube-proxy {key} mode: "{found}"'
                    break
    kp_ds = daemonsets.get((KUBE_SYSTEM, "kube-proxy"))
    if mode is None and kp_ds is not None:
        for c in _containers(kp_ds):
            args = _args(c)
            flag = _flag(args, "proxy-mode")
            if flag is not None and _flag(args, "config") is None:
                mode, source = flag or "iptables", f'DaemonSet {KUBE_SYSTEM}/kube-proxy --proxy-mode="{flag}"'

    pods_known = any(_meta(p)[0] == KUBE_SYSTEM for p in pods)
    kube_proxy_pods: Dict[str, str] = {}
    agents: Dict[Tuple[str, str], str] = {}
    app_keys = {"kube-proxy": "kube-proxy", "cilium": "cilium", "calico-node": "calico", "kube-router": "kube-router"}
    for p in pods:
        ns, name = _meta(p)
        app = ((p.get("metadata") or {}).get("labels") or {}).get("k8s-app")
        node = (p.get("spec") or {}).get("nodeName")
        if not node or app not in app_keys:
            continue
        if (p.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
            continue
        if app == "kube-proxy":
            kube_proxy_pods[node] = f"{ns}/{name}"
        else:
            agents[(app_keys[app], node)] = name

    replacements: List[Replacement] = []
    present: List[str] = []
    # Cilium: cilium-config kube-proxy-replacement (true/strict; partial/probe before 1.14).
    cilium_ds = next(((k, v) for k, v in sorted(daemonsets.items()) if k[1] == "cilium"), None)
    ccm = configmaps.get((KUBE_SYSTEM, "cilium-config"))
    kpr = str((ccm.get("data") or {}).get("kube-proxy-replacement", "")) if ccm else ""
    if kpr.lower() in ("true", "strict", "partial", "probe"):
        ns = cilium_ds[0][0] if cilium_ds else KUBE_SYSTEM
        ev = [f'ConfigMap {KUBE_SYSTEM}/cilium-config kube-proxy-replacement: "{kpr}"']
        if cilium_ds:
            ev.append(f"DaemonSet {ns}/cilium")
        partial = " (partial)" if kpr.lower() in ("partial", "probe") else ""
        replacements.append(Replacement("cilium", f"Cilium's kube-proxy replacement{partial}", tuple(ev), ns,
                                        "cilium", None, ("cilium-dbg", "service", "list")))  # fmt: skip
    elif cilium_ds:
        present.append(f"{cilium_ds[0][0]}/cilium (kube-proxy-replacement: {kpr or 'not set'})")
    # Calico eBPF: FelixConfiguration default bpfEnabled, or FELIX_BPFENABLED on calico-node.
    calico_ds = next(((k, v) for k, v in sorted(daemonsets.items()) if k[1] == "calico-node"), None)
    ev = []
    for o in objs:
        if o.get("kind") == "FelixConfiguration" and _truthy((o.get("spec") or {}).get("bpfEnabled", "")):
            ev.append(f"FelixConfiguration {_meta(o)[1]} bpfEnabled: true")
    if calico_ds and _truthy(_env(calico_ds[1], "FELIX_BPFENABLED") or ""):
        ev.append(f"DaemonSet {calico_ds[0][0]}/calico-node FELIX_BPFENABLED=true")
    if ev:
        ns = calico_ds[0][0] if calico_ds else KUBE_SYSTEM
        if calico_ds and ev[-1].startswith("FelixConfiguration"):
            ev.append(f"DaemonSet {ns}/calico-node")
        for (cns, cname), _ in sorted(configmaps.items()):
            if cname == "kubernetes-services-endpoint":
                ev.append(f"ConfigMap {cns}/kubernetes-services-endpoint")
        replacements.append(Replacement("calico", "Calico's eBPF data plane", tuple(ev), ns, "calico-node",
                                        "calico-node", ("calico-node", "-bpf", "nat", "dump")))  # fmt: skip
    elif calico_ds:
        present.append(f"{calico_ds[0][0]}/calico-node (eBPF data plane not enabled)")
    # kube-router: its service proxy is on unless --run-service-proxy=false.
    router = next(((k, v) for k, v in sorted(daemonsets.items()) if k[1] == "kube-router"), None)
    if router:
        flags = [f for c in _containers(router[1]) for f in [_flag(_args(c), "run-service-proxy")] if f is not None]
        if not flags or any(_truthy(f) for f in flags):
            what = f"--run-service-proxy={flags[0]}" if flags else "--run-service-proxy (default true)"
            replacements.append(Replacement("kube-router", "kube-router's service proxy (IPVS)",
                                            (f"DaemonSet {router[0][0]}/kube-router {what}",), router[0][0],
                                            "kube-router", None, ("ipvsadm", "-Ln")))  # fmt: skip
        else:
            present.append(f"{router[0][0]}/kube-router (--run-service-proxy=false)")
    return ClusterProxy(
        configured_mode=mode,
        mode_source=source,
        kube_proxy_pods=kube_proxy_pods,
        pods_known=pods_known,
        kube_proxy_ds=kp_ds,
        daemonsets_known=bool(daemonsets),
        replacements=tuple(replacements),
        agents=agents,
        agent_daemonsets=tuple(present),
        node_labels=labels,
    )


def _selects(ds: Dict[str, Any], labels: Mapping[str, str]) -> Tuple[bool, str]:
    """Whether a DaemonSet's nodeSelector and required node affinity admit a node with `labels`
    (taints are not considered: kube-proxy tolerates them all). Returns (selects, why not)."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    for k, v in sorted((spec.get("nodeSelector") or {}).items()):
        if labels.get(k) != str(v):
            have = f"{k}={labels[k]}" if k in labels else f"no label {k}"
            return False, f"its nodeSelector {k}={v} does not match ({have})"
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution") or {})  # fmt: skip
    terms = [t for t in req.get("nodeSelectorTerms") or [] if isinstance(t, dict)]
    if not terms:
        return True, ""

    def expr_ok(e: Dict[str, Any]) -> bool:
        key, op, vals = e.get("key"), e.get("operator"), [str(v) for v in e.get("values") or []]
        if op == "In":
            return labels.get(key) in vals
        if op == "NotIn":
            return labels.get(key) not in vals
        if op == "Exists":
            return key in labels
        if op == "DoesNotExist":
            return key not in labels
        return True  # Gt/Lt and field selectors: not judged here

    for t in terms:
        if all(expr_ok(e) for e in t.get("matchExpressions") or [] if isinstance(e, dict)):
            return True, ""
    exprs = "; ".join(
        f"{e.get('key')} {e.get('operator')} {','.join(str(v) for v in e.get('values') or [])}".rstrip()
        for t in terms for e in t.get("matchExpressions") or [] if isinstance(e, dict)
    )  # fmt: skip
    return False, f"its required node affinity ({exprs}) does not match the node's labels"


# ---------------------------------------------------------------------------------------------
# Per node


@frozen
class NodeScan:
    """What the diagnosis reads of one node's dumps, given the node's plane: taken while their text is
    at hand, so a live run can keep this and drop the text as each node arrives (`scan_node`)."""

    has_dumps: bool  # False: unreachable, no dumps, or dumps that could not be read (nothing to say of its proxy)
    markers: FrozenSet[str] = frozenset()  # scan_dump of every dump; only taken when the plane holds no Service
    other_modes: FrozenSet[str] = frozenset()  # kube-proxy modes whose rules sit in dumps of another format


def scan_node(plane: NodeDataPlane, dumps: Sequence[Tuple[str, str]]) -> NodeScan:
    """Scan one node's (text, source) dumps for what `diagnose` asks of them: every dump's markers when
    the plane holds no Service, and the other modes' rules in the dumps its own mode is not read from.
    Each dump is scanned at most once, and only where the answer needs it."""
    from kubectl_svcnet.dataplane import detect_format

    if not dumps:
        return NodeScan(False)
    found: Dict[int, Set[str]] = {}

    def scan(i: int) -> Set[str]:
        if i not in found:
            found[i] = scan_dump(dumps[i][0])
        return found[i]

    markers: Set[str] = set()
    if not plane.services:
        for i in range(len(dumps)):
            markers |= scan(i)
    mode = plane.info.proxy_mode
    others: Set[str] = set()
    if mode in KUBE_PROXY_MODES:
        own = _plane_format(mode)
        for i, (text, _) in enumerate(dumps):
            if detect_format(text) in own:  # (IPVS mode's iptables dumps are scanned: KUBE-SVC chains there are stale)
                continue
            others |= scan(i) & set(KUBE_PROXY_MODES)
        others.discard(mode)
    return NodeScan(True, frozenset(markers), frozenset(others))


@dataclass
class ProxyInputs:
    """What the diagnosis reads besides the data planes: the run's objects, and per node its dumps'
    text or, when that was dropped already (a live run), what `scan_node` took from them."""

    objects: Sequence[Dict[str, Any]]
    dumps: Mapping[str, Sequence[Tuple[str, str]]]
    scans: Mapping[str, NodeScan] = field(default_factory=dict)  # node -> its scan; wins over `dumps`


def _plane_format(mode: str) -> Tuple[str, ...]:
    """The dump formats (dataplane.detect_format) a mode's rules are read from."""
    return {"iptables": ("iptables",), "userspace": ("iptables",), "nftables": ("nft", "nft-json"),
            "ipvs": ("ipvsadm", "ipset")}.get(mode, ())  # fmt: skip


def diagnose(planes: Sequence[NodeDataPlane], inputs: ProxyInputs) -> Tuple[List[NodeDataPlane], List[Finding]]:
    """The planes with ``proxy_mode`` "none" where a node has none of kube-proxy's rules, and the
    node-level findings that say why, and where the configured mode and the rules disagree."""
    facts = cluster_proxy(inputs.objects) if inputs.objects else ClusterProxy()
    out_planes: List[NodeDataPlane] = []
    findings: List[Finding] = []
    for plane in planes:
        node = plane.info.name
        if plane.info.error is not None and plane.info.proxy_mode == MODE_UNKNOWN:
            out_planes.append(plane)  # never read (a dump that is not one): its error says why, not a finding
            continue
        scan = inputs.scans.get(node) or scan_node(plane, list(inputs.dumps.get(node) or ()))
        if not scan.has_dumps:  # unreachable, or no dumps: nothing to say about its proxy
            out_planes.append(plane)
            continue
        mode = plane.info.proxy_mode
        windows = facts.node_labels.get(node, {}).get("kubernetes.io/os") == "windows"
        if not plane.services:
            markers = set(scan.markers)
            if not (markers & {"kube-proxy", "ipvs-services"}):
                out_planes.append(replace(plane, info=replace(plane.info, proxy_mode=MODE_NONE)))
                findings.append(_why_none(node, markers, facts))
                continue
            if "ipvs-services" in markers and "kube-proxy" not in markers:
                findings.extend(_foreign_ipvs(node, markers, facts))
                out_planes.append(plane)
                continue
        out_planes.append(plane)
        if mode not in KUBE_PROXY_MODES or windows:
            continue
        # Rules of another mode than the one read (scan_node looked only at the other formats' dumps).
        others = set(scan.other_modes)
        if facts.configured_mode and facts.configured_mode != mode:
            findings.append(Finding(
                WARNING, "proxy-mode-mismatch",
                f"node {node}: kube-proxy is configured for {facts.configured_mode} mode ({facts.mode_source}) but "
                f"the node's rules are {mode} mode's: rules left from a previous mode, kube-proxy not restarted "
                f"since the change, or kube-proxy falling back (e.g. no ip_vs kernel modules for ipvs); "
                f"kube-proxy's log says which mode it runs in",
                node,
            ))  # fmt: skip
        stale = sorted(others - {facts.configured_mode or mode})
        if stale:
            findings.append(Finding(
                WARNING, "stale-proxy-rules",
                f"node {node} also holds kube-proxy's {' and '.join(stale)} rules next to its {mode} rules: "
                f"leftovers of a previous mode, which can still catch traffic "
                f"(`kube-proxy --cleanup` on the node removes them)",
                node,
            ))  # fmt: skip
        # kube-proxy's rules where a replacement runs and no kube-proxy does: leftovers too.
        rep = next((r for r in facts.replacements if r.key != "kube-router"), None)
        if rep is not None and facts.pods_known and node not in facts.kube_proxy_pods:
            findings.append(Finding(
                WARNING, "stale-proxy-rules",
                f"node {node} holds kube-proxy's {mode} rules, but no kube-proxy pod runs there and {rep.name} "
                f"handles Services ({'; '.join(rep.evidence)}): the rules are leftovers; what really happens: "
                f"{rep.command_for(facts.agents.get((rep.key, node)))}",
                node,
            ))  # fmt: skip
    return out_planes, findings


def _why_none(node: str, markers: Set[str], facts: ClusterProxy) -> Finding:
    """The one finding for a node without kube-proxy's rules."""
    agents = facts.agents
    base = f"node {node} has none of kube-proxy's rules"
    rep = next((r for r in facts.replacements if r.key in markers or (r.key, node) in agents), None)
    rep = rep or (facts.replacements[0] if facts.replacements else None)
    if rep is not None:
        ev = list(rep.evidence)
        if rep.key in markers:
            own = {"cilium": "Cilium's CILIUM_* chains", "calico": "Calico's cali-* chains",
                   "kube-router": "kube-router's KUBE-ROUTER-* chains"}[rep.key]  # fmt: skip
            ev.append(f"the node's rules hold {own} and no KUBE-SVC chains")
        pod = agents.get((rep.key, node))
        if pod:
            ev.append(f"pod {rep.namespace}/{pod} runs on the node")
        return Finding(
            INFO, "kube-proxy-replaced",
            f"{base}: Services there are handled by {rep.name} ({'; '.join(ev)}), whose tables this tool does "
            f"not read; see them with: {rep.command_for(pod)}",
            node,
        )  # fmt: skip
    # No replacement named by the objects: what the node's own rules show.
    hints = {
        "cilium": ("Cilium's CILIUM_* chains", "kubectl -n kube-system exec ds/cilium -- cilium-dbg service list"),
        "calico": (
            "Calico's cali-* chains",
            "kubectl -n calico-system exec ds/calico-node -c calico-node -- calico-node -bpf nat dump",
        ),
        "kube-router": ("kube-router's chains", "kubectl -n kube-system exec ds/kube-router -- ipvsadm -Ln"),
    }
    seen = [k for k in ("cilium", "calico", "kube-router") if k in markers]
    hint = ""
    if seen:
        what, cmd = hints[seen[0]]
        hint = f"; its rules hold {what}: if that handles Services here, see them with: {cmd}"
    if not facts.pods_known:
        return Finding(WARNING, "no-kube-proxy-rules",
                       f"{base} (no iptables KUBE-SVC chains, no nftables kube-proxy table, no IPVS services); "
                       f"whether kube-proxy runs there is unknown (its pods were not read){hint}", node)  # fmt: skip
    pod = facts.kube_proxy_pods.get(node)
    if pod:
        ns, _, name = pod.partition("/")
        return Finding(
            ERROR, "kube-proxy-no-rules",
            f"{base} although kube-proxy pod {pod} runs there: it has not synced, is failing, or writes to the "
            f"other iptables backend; see: kubectl -n {ns} logs {name} (or `kubectl svcnet trace NAME --logs`){hint}",
            node,
        )  # fmt: skip
    why = "no kube-proxy pod runs on it"
    ds = facts.kube_proxy_ds
    if ds is not None:
        ok, reason = _selects(ds, facts.node_labels.get(node, {}))
        why += (f": DaemonSet {KUBE_SYSTEM}/kube-proxy does not select the node ({reason})" if not ok
                else f" although DaemonSet {KUBE_SYSTEM}/kube-proxy selects it (see: kubectl -n {KUBE_SYSTEM} "
                f"describe ds kube-proxy)")  # fmt: skip
    elif facts.daemonsets_known:
        why += f" (there is no DaemonSet {KUBE_SYSTEM}/kube-proxy)"
    if facts.agent_daemonsets:
        why += f"; present but not replacing kube-proxy: {', '.join(facts.agent_daemonsets)}"
    return Finding(
        ERROR, "kube-proxy-not-running",
        f"{base}: kube-proxy is not running there — {why}; Services do not work from this node unless another "
        f"proxy handles them; check with: kubectl -n {KUBE_SYSTEM} get pods -l k8s-app=kube-proxy -o wide "
        f"--field-selector spec.nodeName={node}{hint}",
        node,
    )  # fmt: skip


def _foreign_ipvs(node: str, markers: Set[str], facts: ClusterProxy) -> List[Finding]:
    """IPVS virtual servers without kube-proxy's ipsets or chains: another proxy's (kube-router's)."""
    rep = next((r for r in facts.replacements if r.key == "kube-router"), None)
    if rep is None and "kube-router" not in markers:
        return []
    pod = facts.agents.get(("kube-router", node))
    cmd = rep.command_for(pod) if rep else "kubectl -n kube-system exec ds/kube-router -- ipvsadm -Ln"
    ev = list(rep.evidence) if rep else []
    if "kube-router" in markers:
        ev.append("the node's ipsets/chains are kube-router's, none of kube-proxy's KUBE- ones")
    return [Finding(INFO, "kube-proxy-replaced",
                    f"node {node}'s IPVS services are kube-router's, not kube-proxy's ({'; '.join(ev)}); "
                    f"see them with: {cmd}", node)]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# kube-proxy's log (trace --logs)

# What kube-proxy logs when a sync fails (pkg/proxy/{iptables,nftables,ipvs}/proxier.go, the sync
# runner): matched case-insensitively anywhere in a line, whatever its level.
SYNC_FAILURES = (
    "failed to execute iptables-restore",
    "sync failed",
    "nftables sync failed",
    "failed to sync",
    "error syncing",
    "failed to ensure chain",
    "failed to list ipvs",
    "failed to add ipvs",
    "failed to bind service address",
    "failed to delete stale service",
    "can't use ipvs proxier",
    "can't use the ipvs proxier",
)
LOG_SCAN_LINES = 5000  # live `trace --logs`: the tail of each kube-proxy log that is read and filtered
_KLOG_LEVEL = r"^\s*([IWEF])\d{4} \d\d:\d\d:\d\d"
_JSON_ERROR = r'(?i)^\s*\{.*"err(or)?"\s*:'
_TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)? "  # --timestamps


def log_line_kind(line: str, service: Optional[str]) -> Optional[str]:
    """Why a kube-proxy log line is kept: "service" (it names `service` ns/name, as a word: default/web
    does not match default/web-lb), "sync" (a failed sync), "error" (a klog E/F/W line or a JSON line
    with an err field), or None (dropped)."""
    body = re.sub(_TIMESTAMP, "", line, count=1)
    if service and re.search(rf"(?<![\w./-]){re.escape(service)}(?![\w.-])", body):
        return "service"
    low = body.lower()
    if any(s in low for s in SYNC_FAILURES):
        return "sync"
    m = re.match(_KLOG_LEVEL, body)
    if (m and m.group(1) in "EFW") or re.match(_JSON_ERROR, body):
        return "error"
    return None


def filter_log(text: str, service: Optional[str], limit: int) -> List[str]:
    """The last `limit` lines of kube-proxy's log `text` that mention `service` (ns/name) or a failed
    sync or are warnings/errors, oldest first, without trailing whitespace."""
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip() and log_line_kind(ln, service)]
    return kept[-limit:] if limit > 0 else []
