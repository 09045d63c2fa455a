"""`kubectl svcnet ranges`: the cluster's service and pod address ranges, its node-port range, where
each comes from, and whether they collide. Pure: API objects (dicts, as `kubectl get -o json` prints
them) and recorded dry-run answers in, a `Ranges` value out; `render_ranges.py` prints it.

Where each range can come from, in the order they are trusted:

- service CIDRs: ServiceCIDR objects (networking.k8s.io/v1, v1beta1 on older servers), the
  kube-apiserver static pod's `--service-cluster-ip-range`, the kubeadm-config ConfigMap's
  `networking.serviceSubnet`, and — when none of those is readable — a server-side dry run: creating
  a Service with `dryRun=All` and a ClusterIP outside any plausible range makes the API answer with
  "The range of valid IPs is …" (nothing is created);
- pod CIDRs: kube-controller-manager's `--cluster-cidr`, kube-proxy's `clusterCIDR`, kubeadm's
  `networking.podSubnet`, the CNI's own setting (cilium-config, kube-flannel-cfg, Calico IPPools), and
  each Node's `spec.podCIDRs`;
- node ports: `--service-node-port-range` (or its absence on a visible kube-apiserver: the default),
  kubeadm's `apiServer.extraArgs`, the dry run with an out-of-range nodePort, else the default
  30000-32767, marked as assumed.

A live source feeds the same dicts: `compute_ranges(objects, dry_runs)`. `needed_probes(objects)` says
which dry runs are worth sending, `dry_run_service_body()` builds each request body, and
`answer_from_status()` / `answer_from_message()` turn what the API returned into a `DryRunAnswer`.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from kubectl_svcnet.errors import ExitStatus
from kubectl_svcnet.model import ERROR, INFO, WARNING, Finding
from kubectl_svcnet.objects import flatten, parse_service

Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

IPV4 = "IPv4"
IPV6 = "IPv6"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)  # kube-apiserver's --service-node-port-range default

# Probes: which allocator a dry run asks about.
PROBE_CLUSTER_IP = "clusterIP"
PROBE_NODE_PORT = "nodePort"
# Addresses no cluster uses for Services: TEST-NET-1 (RFC 5737) and the IPv6 discard prefix (RFC 6666).
PROBE_IPS = {IPV4: "192.0.2.1", IPV6: "100::1"}
PROBE_NODE_PORT_NUMBER = 1  # valid for validation (1-65535), outside every sane node-port range
PROBE_NAME_PREFIX = "svcnet-range-probe-"

# Source kinds (the JSON contract's sources[].kind).
SRC_SERVICE_CIDR = "ServiceCIDR"
SRC_APISERVER = "kube-apiserver"
SRC_KUBEADM = "kubeadm-config"
SRC_DRY_RUN = "dry-run"
SRC_NODE = "Node"
SRC_KCM = "kube-controller-manager"
SRC_KUBE_PROXY = "kube-proxy"
SRC_CILIUM = "cilium-config"
SRC_FLANNEL = "kube-flannel-cfg"
SRC_CALICO = "IPPool"
SRC_DEFAULT = "default"

SCOPE_CLUSTER = "cluster"
SCOPE_NODE = "node"

# Checks (the JSON contract's checks[].code) and what each one asks.
CHECK_OVERLAP = "service-pod-overlap"
CHECK_NODE_ADDRESSES = "node-address-in-range"
CHECK_NODE_POD_CIDRS = "node-podcidr-outside-cluster-cidr"
CHECK_SOURCES = "sources-disagree"
CHECK_TEXT = {
    CHECK_OVERLAP: "service ranges do not overlap pod ranges",
    CHECK_NODE_ADDRESSES: "no node address is inside a service or pod range",
    CHECK_NODE_POD_CIDRS: "every node's podCIDR is inside the cluster's pod range",
    CHECK_SOURCES: "the sources agree with each other",
}
OK = "ok"
FAILED = "failed"
UNCHECKED = "unchecked"


# -- values ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where a range was read: the kind of source, the object (ns/name, or a node's name), the field
    or flag, and the value as written there (`None`: the field is not set, so the component's
    built-in default applies)."""

    kind: str
    name: Optional[str] = None
    field: Optional[str] = None
    value: Optional[str] = None

    def short(self) -> str:
        """`kube-apiserver-controlplane --service-cluster-ip-range`, for tables and messages."""
        name = (self.name or "").rpartition("/")[2]
        if self.kind == SRC_DEFAULT:
            return "default (assumed)"
        if self.kind == SRC_DRY_RUN:
            return f"dry run ({self.field})" if self.field else "dry run"
        if self.kind in (SRC_NODE, SRC_SERVICE_CIDR, SRC_CALICO):
            return f"{self.kind} {name}"
        text = " ".join(x for x in (name or self.kind, self.field) if x)
        return text + (" (not set: default)" if self.value is None else "")

    def long(self) -> str:
        """The short form with the value as written: `… --service-cluster-ip-range=10.96.0.0/12`."""
        if self.value is None or self.kind == SRC_DEFAULT:
            return self.short()
        if self.kind in (SRC_NODE, SRC_SERVICE_CIDR, SRC_CALICO, SRC_DRY_RUN):
            return f"{self.short()} {self.value}"
        sep = "=" if (self.field or "").startswith("--") else ": "
        return f"{self.short()}{sep}{self.value}"

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "field": self.field, "value": self.value}


@dataclass(frozen=True)
class NodeSubnets:
    """How a cluster pod range is cut into per-node ranges (kube-controller-manager's IPAM)."""

    mask_size: int
    total: int
    in_use: int


@dataclass(frozen=True)
class CIDRRange:
    cidr: str
    family: str
    sources: Tuple[Source, ...]
    size: int  # service ranges: allocatable ClusterIPs; pod ranges: addresses
    in_use: Optional[int] = None  # None: the objects to count were not there
    scope: str = SCOPE_CLUSTER  # pod ranges: "cluster" (the whole pod range) or "node" (one node's)
    node_subnets: Optional[NodeSubnets] = None

    @property
    def net(self) -> Net:
        return ipaddress.ip_network(self.cidr)


@dataclass(frozen=True)
class PortRange:
    lo: int
    hi: int
    sources: Tuple[Source, ...]
    assumed: bool = False
    in_use: Optional[int] = None

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1

    def __str__(self) -> str:
        return f"{self.lo}-{self.hi}"


@dataclass(frozen=True)
class Check:
    code: str
    status: str  # ok | failed | unchecked
    reason: str = ""  # why it could not be checked

    @property
    def description(self) -> str:
        return CHECK_TEXT[self.code]


@dataclass(frozen=True)
class Ranges:
    service_cidrs: Tuple[CIDRRange, ...]
    pod_cidrs: Tuple[CIDRRange, ...]
    node_port_range: PortRange
    findings: Tuple[Finding, ...]
    checks: Tuple[Check, ...]
    problems: Tuple[str, ...] = ()  # one line each, for stderr: sources that failed
    status: ExitStatus = ExitStatus.OK


@dataclass(frozen=True)
class DryRunAnswer:
    """What the API answered to one dry-run create. `probe` None: the answer names no field (a 403,
    a 500 …), so it stands for every probe — RBAC allows or forbids all of them alike."""

    probe: Optional[str]
    message: str
    code: Optional[int] = None  # HTTP status; 422 (Invalid) is the answer that names a range
    reason: str = ""  # Status.reason: Invalid, Forbidden, Unauthorized …
    family: Optional[str] = None  # the ClusterIP probe's family, when known

    @property
    def failed(self) -> bool:
        """The request itself was refused or broke (as opposed to: answered, with or without a range)."""
        if self.code is not None:
            return self.code != 422 and self.code >= 400
        return self.reason not in ("", "Invalid")


# -- the dry-run trick ----------------------------------------------------------------------------
# The wordings, as kube-apiserver writes them (Status.message; kubectl prints it after "The "):
#  1.8-1.19, rest.go:  spec.clusterIP: Invalid value: "192.0.2.1": provided IP is not in the valid range.
#                      The range of valid IPs is 10.96.0.0/12
#  1.20, rest.go:      spec.clusterIPs: Invalid value: []string{"192.0.2.1"}: failed to allocated ip:192.0.2.1
#                      with error:provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12
#  then storage/alloc.go: spec.clusterIPs: Invalid value: []string{"192.0.2.1"}: failed to allocate IP
#                      192.0.2.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12
#  later ipallocator:  … failed to allocate IP 192.0.2.1: the provided IP (192.0.2.1) is not in the valid
#                      range. The range of valid IPs is 10.96.0.0/12
#  no range at all:    before 1.8 ("provided IP is not in the valid range"), and with the ServiceCIDR
#                      allocator when the IP is in no ServiceCIDR ("the provided network does not match
#                      the current range") — then the ServiceCIDR objects say it.
#  node ports (portallocator, every release): spec.ports[0].nodePort: Invalid value: 1: provided port is
#                      not in the valid range. The range of valid ports is 30000-32767
_IP_RANGE_RE = re.compile(r"range of valid IPs is\s+(?:CIDRs?\s+)?([0-9A-Fa-f:.,/\[\]\s\"']+)")
_PORT_RANGE_RE = re.compile(r"range of valid ports is\s+(\d+)\s*(?:-\s*(\d+))?")
_FAMILY_ABSENT_RE = re.compile(
    r"(IPv4|IPv6) is not configured on this cluster"
    r"|Invalid value: \"(IPv4|IPv6)\": not configured on this cluster"
    r"|only the following families are allowed: (IPv4|IPv6)\b"
)


def parse_dry_run_ip_error(message: str) -> List[str]:
    """The service CIDRs an API error names ("… The range of valid IPs is 10.96.0.0/12"), normalised
    (`10.96.0.0/12`, `fd00::/108`); [] when the message names none (old servers, the ServiceCIDR
    allocator's "the provided network does not match the current range", other errors)."""
    out: List[str] = []
    for m in _IP_RANGE_RE.finditer(message or ""):
        for tok in re.split(r"[\s,\[\]\"']+", m.group(1)):
            tok = tok.rstrip(".")
            if "/" not in tok:
                continue
            try:
                cidr = str(ipaddress.ip_network(tok, strict=False))
            except ValueError:
                continue
            if cidr not in out:
                out.append(cidr)
    return out


def parse_dry_run_port_error(message: str) -> Optional[Tuple[int, int]]:
    """The node-port range an API error names ("… The range of valid ports is 30000-32767") as
    (lo, hi), inclusive; None when the message names none."""
    m = _PORT_RANGE_RE.search(message or "")
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    return (lo, hi) if 0 < lo <= hi <= 65535 else None


def family_not_configured(message: str) -> Optional[str]:
    """`IPv6 is not configured on this cluster` (a probe of the other family on a single-stack
    cluster) -> "IPv6"; None otherwise."""
    m = _FAMILY_ABSENT_RE.search(message or "")
    if not m:
        return None
    if m.group(3):  # "only the following families are allowed: IPv4" -> the other one is absent
        return IPV6 if m.group(3) == IPV4 else IPV4
    return m.group(1) or m.group(2)


def dry_run_service_body(
    probe: str = PROBE_CLUSTER_IP, family: str = IPV4, namespace: str = "default", ip: Optional[str] = None
) -> Dict[str, Any]:
    """The Service to POST to /api/v1/namespaces/{namespace}/services?dryRun=All (nothing is created):
    for the `clusterIP` probe, a ClusterIP Service asking for an address outside any plausible range;
    for the `nodePort` probe, a NodePort Service asking for node port 1. Only the fields every server
    since 1.8 knows are set, so old servers answer the same way as new ones."""
    if probe not in (PROBE_CLUSTER_IP, PROBE_NODE_PORT):
        raise ValueError(f"unknown probe {probe!r}")
    spec: Dict[str, Any] = {
        "type": "ClusterIP",
        "ports": [{"name": "probe", "port": 80, "protocol": "TCP", "targetPort": 80}],
    }
    if probe == PROBE_CLUSTER_IP:
        spec["clusterIP"] = ip or PROBE_IPS[family]
    else:
        spec["type"] = "NodePort"
        spec["ports"][0]["nodePort"] = PROBE_NODE_PORT_NUMBER
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "generateName": PROBE_NAME_PREFIX,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kubectl-svcnet"},
        },
        "spec": spec,
    }


def dry_run_path(namespace: str = "default") -> str:
    return f"/api/v1/namespaces/{namespace}/services?dryRun=All"


def _probe_of(status: Dict[str, Any], message: str) -> Optional[str]:
    fields = [str(c.get("field") or "") for c in ((status.get("details") or {}).get("causes") or []) if c]
    text = " ".join(fields) + " " + message
    if "nodePort" in text or "range of valid ports" in text:
        return PROBE_NODE_PORT
    if re.search(r"spec\.clusterIPs?\b|spec\.ipFamil|range of valid IPs", text):
        return PROBE_CLUSTER_IP
    return None


def answer_from_status(
    status: Dict[str, Any], probe: Optional[str] = None, family: Optional[str] = None
) -> DryRunAnswer:
    """A Status object (the body of the API's error answer) -> DryRunAnswer. The probe and family are
    read from the answer when not given (details.causes[].field, the message)."""
    message = str(status.get("message") or "")
    code = status.get("code")
    code = int(code) if isinstance(code, (int, str)) and str(code).isdecimal() else None
    probe = probe or _probe_of(status, message)
    if family is None and probe == PROBE_CLUSTER_IP:
        cidrs = parse_dry_run_ip_error(message)
        if cidrs:
            family = _family(ipaddress.ip_network(cidrs[0]))
        else:
            family = family_not_configured(message)
    return DryRunAnswer(probe, message, code, str(status.get("reason") or ""), family)


def answer_from_message(
    message: str, probe: Optional[str] = None, code: Optional[int] = None, family: Optional[str] = None
) -> DryRunAnswer:
    """For a source that only has the error text (e.g. `kubectl create --dry-run=server` output)."""
    st: Dict[str, Any] = {"message": message}
    if code is not None:
        st["code"] = code
    return answer_from_status(st, probe, family)


def answers_from_objects(objs: Iterable[Dict[str, Any]]) -> List[DryRunAnswer]:
    """Recorded dry-run answers in a snapshot: every `kind: Status` object (e.g. `dryrun.json`)."""
    return [answer_from_status(o) for o in flatten(objs) if o.get("kind") == "Status"]


# -- reading the objects --------------------------------------------------------------------------
def _family(net: Net) -> str:
    return IPV4 if net.version == 4 else IPV6


def parse_cidrs(value: Any) -> Tuple[List[Net], List[str]]:
    """A comma-separated CIDR list as flags and config files write it -> (networks, unparsable parts).
    Host bits are masked the way the API server's ParseCIDRSloppy does."""
    nets: List[Net] = []
    bad: List[str] = []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = re.split(r"[,\s]+", str(value or "").strip())
    for part in parts:
        part = part.strip().strip("\"'")
        if not part:
            continue
        try:
            if "/" not in part:
                raise ValueError
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            bad.append(part)
            continue
        if net not in nets:
            nets.append(net)
    return nets, bad


def parse_port_range(value: str) -> Optional[Tuple[int, int]]:
    """`--service-node-port-range`: "30000-32767", "30000+2767" (base+offset) or "30000"."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:([-+])\s*(\d+))?\s*", value or "")
    if not m:
        return None
    lo = int(m.group(1))
    hi = lo if not m.group(2) else (int(m.group(3)) if m.group(2) == "-" else lo + int(m.group(3)))
    return (lo, hi) if 0 < lo <= hi <= 65535 else None


def _meta(o: Dict[str, Any]) -> Tuple[str, str]:
    m = o.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def _ref(o: Dict[str, Any]) -> str:
    ns, name = _meta(o)
    return f"{ns}/{name}" if ns else name


def pod_flags(pod: Dict[str, Any]) -> Dict[str, str]:
    """`--name=value` / `--name value` flags of a pod's containers (command + args; a `sh -c "…"`
    string is split like a shell would). A repeated flag keeps its last value, as the component's
    flag parser does."""
    out: Dict[str, str] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        words: List[str] = []
        for w in list(c.get("command") or []) + list(c.get("args") or []):
            w = str(w)
            if "--" in w and any(ch.isspace() for ch in w.strip()):
                try:
                    words.extend(shlex.split(w))
                except ValueError:
                    words.extend(w.split())
            else:
                words.append(w)
        i = 0
        while i < len(words):
            w = words[i]
            if w.startswith("--") and len(w) > 2:
                k, eq, v = w[2:].partition("=")
                if not eq:
                    if i + 1 < len(words) and not words[i + 1].startswith("-"):
                        v = words[i + 1]
                        i += 1
                    else:
                        v = "true"
                out[k] = v
            i += 1
    return out


def _component(pod: Dict[str, Any]) -> Optional[str]:
    ns, name = _meta(pod)
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for comp in (SRC_APISERVER, SRC_KCM, SRC_KUBE_PROXY):
        if labels.get("component") == comp or labels.get("k8s-app") == comp:
            return comp
        if ns == "kube-system" and name.startswith(comp + "-"):
            return comp
    return None


def _load_yaml(text: str) -> Dict[str, Any]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml comes with the kubernetes client
        return _flat_yaml(text)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _flat_yaml(text: str) -> Dict[str, Any]:
    """Enough YAML for the keys read here, when PyYAML is missing: `key: value` at any depth, nested
    under the last key with a lower indent."""
    root: Dict[str, Any] = {}
    stack: List[Tuple[int, Dict[str, Any]]] = [(-1, root)]
    for line in text.splitlines():
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):\s*(.*?)\s*$", line)
        if not m:
            continue
        indent, key, val = len(m.group(1)), m.group(2), m.group(3).strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if val:
            parent[key] = val
        else:
            child: Dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
    return root


def _extra_args(section: Any) -> Dict[str, str]:
    """kubeadm's extraArgs: a map (v1beta3) or a list of {name, value} (v1beta4)."""
    args = (section or {}).get("extraArgs") if isinstance(section, dict) else None
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    if isinstance(args, list):
        return {str(a.get("name")): str(a.get("value")) for a in args if isinstance(a, dict) and a.get("name")}
    return {}


@dataclass
class _Claim:
    """One source's word on a range: all the CIDRs it names (complete: the whole range, every family it
    knows), or — for a dry run — the one CIDR the server named (partial)."""

    source: Source
    nets: List[Net]
    partial: bool = False


@dataclass
class _Read:
    """Everything read from the objects, before it is judged."""

    service: List[_Claim] = field(default_factory=list)
    service_extra: List[_Claim] = field(default_factory=list)  # further ServiceCIDRs: extensions
    pod: List[_Claim] = field(default_factory=list)
    node_pod: List[Tuple[str, List[Net], Source]] = field(default_factory=list)
    node_addresses: List[Tuple[str, str, str]] = field(default_factory=list)  # node, type, address
    ports: List[Tuple[Source, Optional[Tuple[int, int]]]] = field(default_factory=list)  # None: default
    mask_sizes: Dict[str, int] = field(default_factory=dict)  # family -> kcm node mask size
    has_service_cidr_api: bool = False
    has_apiserver: bool = False
    cluster_ips: Optional[List[str]] = None
    node_ports: Optional[List[int]] = None
    pod_ips: Optional[List[str]] = None
    findings: List[Finding] = field(default_factory=list)


def _claim(read: _Read, target: List[_Claim], source: Source, value: Any) -> None:
    nets, bad = parse_cidrs(value)
    if bad:
        read.findings.append(
            Finding(WARNING, "invalid-cidr", f"{source.short()}: not a CIDR: {', '.join(bad)} (ignored)")
        )
    if nets:
        target.append(_Claim(source, nets))


def _read_pod(read: _Read, o: Dict[str, Any]) -> None:
    comp = _component(o)
    if comp is None:
        return
    flags = pod_flags(o)
    ref = _ref(o)
    if comp == SRC_APISERVER:
        read.has_apiserver = True
        if "service-cluster-ip-range" in flags:
            v = flags["service-cluster-ip-range"]
            _claim(read, read.service, Source(SRC_APISERVER, ref, "--service-cluster-ip-range", v), v)
        v = flags.get("service-node-port-range")
        src = Source(SRC_APISERVER, ref, "--service-node-port-range", v)
        if v is None:
            read.ports.append((src, None))
        elif parse_port_range(v):
            read.ports.append((src, parse_port_range(v)))
        else:
            read.findings.append(Finding(WARNING, "invalid-port-range", f"{src.short()}: not a port range: {v}"))
    elif comp == SRC_KCM:
        if flags.get("cluster-cidr"):
            v = flags["cluster-cidr"]
            _claim(read, read.pod, Source(SRC_KCM, ref, "--cluster-cidr", v), v)
        if flags.get("allocate-node-cidrs", "false").lower() == "true":
            generic = flags.get("node-cidr-mask-size")
            for fam, default in ((IPV4, 24), (IPV6, 64)):
                v = flags.get(f"node-cidr-mask-size-{fam.lower()}") or generic
                if v is not None and v.isdecimal():
                    read.mask_sizes[fam] = int(v)
                elif v is None:
                    read.mask_sizes[fam] = default
    elif comp == SRC_KUBE_PROXY and flags.get("cluster-cidr"):
        v = flags["cluster-cidr"]
        _claim(read, read.pod, Source(SRC_KUBE_PROXY, ref, "--cluster-cidr", v), v)


def _read_configmap(read: _Read, o: Dict[str, Any]) -> None:
    ns, name = _meta(o)
    data = o.get("data") or {}
    ref = _ref(o)
    if name == "kubeadm-config" and data.get("ClusterConfiguration"):
        cfg = _load_yaml(str(data["ClusterConfiguration"]))
        net = cfg.get("networking") or {}
        if net.get("serviceSubnet"):
            v = str(net["serviceSubnet"])
            _claim(read, read.service, Source(SRC_KUBEADM, ref, "networking.serviceSubnet", v), v)
        if net.get("podSubnet"):
            v = str(net["podSubnet"])
            _claim(read, read.pod, Source(SRC_KUBEADM, ref, "networking.podSubnet", v), v)
        v = _extra_args(cfg.get("apiServer")).get("service-node-port-range")
        src = Source(SRC_KUBEADM, ref, "apiServer.extraArgs.service-node-port-range", v)
        read.ports.append((src, parse_port_range(v) if v is not None else None))
    elif ns == "kube-system" and name.startswith("kube-proxy"):
        for key, text in sorted(data.items()):
            if "KubeProxyConfiguration" not in str(text):
                continue
            v = _load_yaml(str(text)).get("clusterCIDR")
            if v:
                fld = "clusterCIDR" if key == "config.conf" else f"data[{key}].clusterCIDR"
                _claim(read, read.pod, Source(SRC_KUBE_PROXY, ref, fld, str(v)), str(v))
    elif name == "cilium-config":
        ipam = str(data.get("ipam") or "cluster-pool")
        if ipam.startswith("cluster-pool"):
            for key in ("cluster-pool-ipv4-cidr", "cluster-pool-ipv6-cidr"):
                # cilium's Helm chart writes space-separated lists; several keys make one claim
                if data.get(key):
                    _claim(read, read.pod, Source(SRC_CILIUM, ref, key, str(data[key])), str(data[key]))
            _merge_last_claims(read.pod, SRC_CILIUM, ref)
    elif name == "kube-flannel-cfg" and data.get("net-conf.json"):
        import json

        try:
            conf = json.loads(str(data["net-conf.json"]))
        except ValueError:
            read.findings.append(Finding(WARNING, "invalid-config", f"{ref} net-conf.json is not JSON (ignored)"))
            return
        if conf.get("EnableIPv4", True) is not False and conf.get("Network"):
            v = str(conf["Network"])
            _claim(read, read.pod, Source(SRC_FLANNEL, ref, "net-conf.json Network", v), v)
        if conf.get("EnableIPv6") and conf.get("IPv6Network"):
            v = str(conf["IPv6Network"])
            _claim(read, read.pod, Source(SRC_FLANNEL, ref, "net-conf.json IPv6Network", v), v)
            _merge_last_claims(read.pod, SRC_FLANNEL, ref)


def _merge_last_claims(claims: List[_Claim], kind: str, ref: str) -> None:
    """One object's keys for each family (cilium's v4 and v6 pools) are one claim."""
    mine = [c for c in claims if c.source.kind == kind and c.source.name == ref]
    if len(mine) < 2:
        return
    for c in mine:
        claims.remove(c)
    fields = " + ".join(c.source.field or "" for c in mine)
    value = ",".join(c.source.value or "" for c in mine)
    claims.append(_Claim(Source(kind, ref, fields, value), [n for c in mine for n in c.nets]))


def read_objects(objs: Iterable[Dict[str, Any]]) -> _Read:
    read = _Read()
    pools: List[Tuple[Net, Source]] = []
    for o in flatten(objs):
        kind = o.get("kind")
        api = str(o.get("apiVersion") or "")
        if kind == "ServiceCIDR" and api.startswith("networking.k8s.io/"):
            read.has_service_cidr_api = True
            _, name = _meta(o)
            cidrs = (o.get("spec") or {}).get("cidrs") or []
            src = Source(SRC_SERVICE_CIDR, name, "spec.cidrs", ",".join(map(str, cidrs)))
            _claim(read, read.service if name == "kubernetes" else read.service_extra, src, cidrs)
            conds = {c.get("type"): c for c in (o.get("status") or {}).get("conditions") or [] if isinstance(c, dict)}
            ready = conds.get("Ready")
            if ready is not None and ready.get("status") != "True":
                read.findings.append(
                    Finding(
                        INFO, "servicecidr-not-ready", f"ServiceCIDR {name} is not Ready: {ready.get('message') or ''}"
                    )
                )
        elif kind == "Pod":
            _read_pod(read, o)
            if read.pod_ips is None:
                read.pod_ips = []
            spec, status = o.get("spec") or {}, o.get("status") or {}
            if not spec.get("hostNetwork"):
                ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")] or (
                    [status["podIP"]] if status.get("podIP") else []
                )
                read.pod_ips.extend(str(i) for i in ips)
        elif kind == "ConfigMap":
            _read_configmap(read, o)
        elif kind == "IPPool" and "projectcalico.org" in api:
            spec = o.get("spec") or {}
            if spec.get("disabled") or not spec.get("cidr"):
                continue
            nets, bad = parse_cidrs(spec["cidr"])
            for n in nets:
                pools.append((n, Source(SRC_CALICO, _ref(o), "spec.cidr", str(spec["cidr"]))))
        elif kind == "Node":
            _, name = _meta(o)
            spec = o.get("spec") or {}
            cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
            nets, _bad = parse_cidrs(cidrs)
            if nets:
                read.node_pod.append((name, nets, Source(SRC_NODE, name, "spec.podCIDRs", ",".join(cidrs))))
            for a in (o.get("status") or {}).get("addresses") or []:
                if a.get("type") in ("InternalIP", "ExternalIP") and a.get("address"):
                    read.node_addresses.append((name, str(a["type"]), str(a["address"])))
        elif kind == "Service":
            svc = parse_service(o)
            read.cluster_ips = (read.cluster_ips or []) + [ip for ip in svc.cluster_ips if ip and ip != "None"]
            ports = [p.node_port for p in svc.ports if p.node_port]
            if svc.health_check_node_port:
                ports.append(int(svc.health_check_node_port))
            read.node_ports = (read.node_ports or []) + ports
    if pools:
        value = ",".join(str(n) for n, _ in pools)
        names = sorted({s.name or "" for _, s in pools})
        read.pod.append(_Claim(Source(SRC_CALICO, ",".join(names), "spec.cidr", value), [n for n, _ in pools]))
    return read


# -- judging --------------------------------------------------------------------------------------
def service_range_size(net: Net, ipaddress_allocator: bool = False) -> int:
    """Allocatable ClusterIPs in a service CIDR, by kube-apiserver's own rule
    (pkg/registry/core/service/ipallocator): IPv4 never hands out the network and broadcast
    addresses (2^n - 2, both allocators); IPv6 skips only the network address, and the older bitmap
    allocator (bitmap.go, used without ServiceCIDR objects) caps its bitmap at 65536 addresses
    (min(2^n, 65536) - 1), while the ServiceCIDR/IPAddress allocator (ipallocator.go,
    hostsPerNetwork) does not (2^n - 1, at most 2^64 - 1)."""
    host_bits = net.max_prefixlen - net.prefixlen
    if net.version == 4:
        return max(0, 2**host_bits - 2)
    if ipaddress_allocator:
        return 2**64 - 1 if host_bits >= 64 else 2**host_bits - 1
    return min(2**host_bits, 65536) - 1


def _count_in(net: Net, addrs: Optional[Sequence[str]]) -> Optional[int]:
    if addrs is None:
        return None
    n = 0
    for a in set(addrs):
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        if ip.version == net.version and ip in net:
            n += 1
    return n


def _sort_key(net: Net) -> Tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


# The order sources are listed in: the API's own objects, then the components' flags, then config.
_SOURCE_ORDER = {
    k: i
    for i, k in enumerate(
        (SRC_SERVICE_CIDR, SRC_DRY_RUN, SRC_APISERVER, SRC_KCM, SRC_KUBE_PROXY, SRC_KUBEADM, SRC_CILIUM,
         SRC_FLANNEL, SRC_CALICO, SRC_NODE, SRC_DEFAULT)
    )
}  # fmt: skip


def _source_key(s: Source) -> Tuple[int, str, str]:
    return (_SOURCE_ORDER.get(s.kind, 99), s.name or "", s.field or "")


def _entries(claims: Sequence[_Claim]) -> Dict[Net, List[Source]]:
    by_net: Dict[Net, List[Source]] = {}
    for c in claims:
        for n in c.nets:
            srcs = by_net.setdefault(n, [])
            if c.source not in srcs:
                srcs.append(c.source)
    return {n: sorted(by_net[n], key=_source_key) for n in sorted(by_net, key=_sort_key)}


def _nets_text(nets: Iterable[Net]) -> str:
    return ",".join(str(n) for n in nets) or "none"


def _disagreements(what: str, claims: Sequence[_Claim]) -> List[Finding]:
    """Complete claims must name the same set; a dry run's CIDR must be one of them."""
    full = [c for c in claims if not c.partial]
    out: List[Finding] = []
    sets: Dict[frozenset, List[_Claim]] = {}
    for c in full:
        sets.setdefault(frozenset(c.nets), []).append(c)
    if len(sets) > 1:
        parts = [
            f"{_nets_text(sorted(s, key=_sort_key))} ({', '.join(c.source.short() for c in cs)})"
            for s, cs in sets.items()
        ]
        out.append(Finding(WARNING, CHECK_SOURCES, f"sources disagree on the {what} range: " + " vs ".join(parts)))
    known = {n for c in full for n in c.nets}
    for c in claims:
        if c.partial and known:
            odd = [n for n in c.nets if n not in known]
            if odd:
                out.append(
                    Finding(
                        WARNING,
                        CHECK_SOURCES,
                        f"sources disagree on the {what} range: {c.source.short()} names {_nets_text(odd)}, "
                        f"the others {_nets_text(sorted(known, key=_sort_key))}",
                    )
                )
    return out


def needed_probes(objs: Iterable[Dict[str, Any]]) -> List[Tuple[str, Optional[str]]]:
    """The dry runs worth sending for these objects, as (probe, family): the ClusterIP probes (one per
    family) when no ServiceCIDR, kube-apiserver flag or kubeadm-config says the service range, the
    node-port probe when neither a visible kube-apiserver nor kubeadm-config says the node ports."""
    read = read_objects(objs)
    out: List[Tuple[str, Optional[str]]] = []
    if not read.service and not read.service_extra:
        out += [(PROBE_CLUSTER_IP, IPV4), (PROBE_CLUSTER_IP, IPV6)]
    if not read.ports:
        out.append((PROBE_NODE_PORT, None))
    return out


def run_probes(
    create: Callable[[Dict[str, Any], str], Any], objs: Iterable[Dict[str, Any]], namespace: str = "default"
) -> List[DryRunAnswer]:
    """Send the dry runs `needed_probes` names through `create(body, namespace)` — a POST with
    `dryRun=All`, e.g. `collect.api.create_service_dry_run` with its session bound — and collect the
    answers. An exception is the API's answer: its `.status` (the Status dict), else its `.code`,
    `.reason` and message. A create that succeeds means the probe value was inside the range."""
    out: List[DryRunAnswer] = []
    for probe, fam in needed_probes(objs):
        try:
            create(dry_run_service_body(probe, fam or IPV4, namespace), namespace)
        except Exception as e:  # the answer, whatever the client library raised
            st = getattr(e, "status", None)
            if not isinstance(st, dict):
                code = getattr(e, "code", None)
                st = {
                    "message": str(getattr(e, "message", None) or e),
                    "code": code if isinstance(code, int) and code else None,
                    "reason": str(getattr(e, "reason", None) or "Error"),
                }
            out.append(answer_from_status(st, probe, fam))
            continue
        what = "address" if probe == PROBE_CLUSTER_IP else "node port"
        out.append(DryRunAnswer(probe, f"the server accepted the probe's {what}: it is inside the range", 201, "", fam))
    return out


def _apply_dry_runs(read: _Read, answers: Sequence[DryRunAnswer], problems: List[str]) -> None:
    need_service = not read.service and not read.service_extra
    need_ports = not read.ports
    absent: List[str] = []
    for a in answers:
        probes = [a.probe] if a.probe else [PROBE_CLUSTER_IP, PROBE_NODE_PORT]
        what = " and ".join("service range" if p == PROBE_CLUSTER_IP else "node-port range" for p in probes)
        if a.failed:
            needed = (PROBE_CLUSTER_IP in probes and need_service) or (PROBE_NODE_PORT in probes and need_ports)
            code = f"HTTP {a.code}" if a.code else (a.reason or "error")
            if a.code in (401, 403) or a.reason in ("Forbidden", "Unauthorized"):
                why = "forbidden: the dry run needs permission to create Services (nothing is created)"
            else:
                why = "failed"
            msg = f"dry run for the {what} {why} ({code}: {a.message})"
            read.findings.append(Finding(WARNING if needed else INFO, "dry-run-failed", msg))
            if needed:
                problems.append(msg)
            continue
        if a.probe == PROBE_CLUSTER_IP:
            cidrs = parse_dry_run_ip_error(a.message)
            if cidrs:
                src = Source(SRC_DRY_RUN, None, "spec.clusterIP", ",".join(cidrs))
                read.service.append(_Claim(src, [ipaddress.ip_network(c) for c in cidrs], partial=True))
                continue
            fam = family_not_configured(a.message)
            if fam:
                absent.append(fam)
                continue
            read.findings.append(
                Finding(INFO, "dry-run-no-range", f"the dry run's answer names no service range: {a.message}")
            )
        elif a.probe == PROBE_NODE_PORT:
            rng = parse_dry_run_port_error(a.message)
            if rng:
                read.ports.append((Source(SRC_DRY_RUN, None, "spec.ports[0].nodePort", f"{rng[0]}-{rng[1]}"), rng))
                continue
            read.findings.append(
                Finding(INFO, "dry-run-no-range", f"the dry run's answer names no node-port range: {a.message}")
            )
    for fam in absent:
        read.findings.append(
            Finding(INFO, "family-not-configured", f"the dry run says {fam} is not configured for Services")
        )


def compute_ranges(objs: Iterable[Dict[str, Any]], dry_runs: Sequence[DryRunAnswer] = ()) -> Ranges:
    """All objects of a run (any kinds) and the dry-run answers -> Ranges."""
    objs = list(objs)
    read = read_objects(objs)
    problems: List[str] = []
    _apply_dry_runs(read, dry_runs, problems)
    findings = read.findings

    # -- service ranges --
    new_allocator = read.has_service_cidr_api
    svc_entries = _entries(read.service + read.service_extra)
    service_cidrs = tuple(
        CIDRRange(
            cidr=str(n),
            family=_family(n),
            sources=tuple(srcs),
            size=service_range_size(n, new_allocator),
            in_use=_count_in(n, read.cluster_ips),
        )
        for n, srcs in svc_entries.items()
    )

    # -- pod ranges: the cluster's, then each node's --
    pod_entries = _entries(read.pod)
    pod_cidrs: List[CIDRRange] = []
    node_nets = [(node, n) for node, nets, _ in read.node_pod for n in nets]
    for n, srcs in pod_entries.items():
        subnets = None
        mask = read.mask_sizes.get(_family(n))
        if mask is not None and mask >= n.prefixlen:
            used = sum(1 for _, nn in node_nets if nn.version == n.version and nn.subnet_of(n))  # type: ignore[arg-type]
            subnets = NodeSubnets(mask, 2 ** (mask - n.prefixlen), used)
        pod_cidrs.append(
            CIDRRange(
                str(n), _family(n), tuple(srcs), n.num_addresses, _count_in(n, read.pod_ips), SCOPE_CLUSTER, subnets
            )
        )
    for _node, nets, src in sorted(read.node_pod, key=lambda t: t[0]):
        for n in nets:
            pod_cidrs.append(
                CIDRRange(str(n), _family(n), (src,), n.num_addresses, _count_in(n, read.pod_ips), SCOPE_NODE)
            )

    # -- node ports --
    explicit = [(s, r) for s, r in read.ports if r is not None]
    defaults = [s for s, r in read.ports if r is None]
    if explicit:
        order = {SRC_DRY_RUN: 0, SRC_APISERVER: 1, SRC_KUBEADM: 2}
        explicit.sort(key=lambda t: order.get(t[0].kind, 9))
        lo, hi = explicit[0][1]  # type: ignore[misc]
        same = [s for s, r in explicit if r == (lo, hi)]
        port_sources = same + (defaults if (lo, hi) == DEFAULT_NODE_PORT_RANGE else [])
        assumed = False
    elif defaults:
        lo, hi = DEFAULT_NODE_PORT_RANGE
        port_sources, assumed = defaults, False
    else:
        lo, hi = DEFAULT_NODE_PORT_RANGE
        port_sources, assumed = [Source(SRC_DEFAULT, None, None, f"{lo}-{hi}")], True
        findings.append(
            Finding(INFO, "node-port-range-assumed", f"node-port range not readable: assuming the default {lo}-{hi}")
        )
    in_use = None
    if read.node_ports is not None:
        in_use = sum(1 for p in set(read.node_ports) if lo <= p <= hi)
    node_port_range = PortRange(lo, hi, tuple(sorted(port_sources, key=_source_key)), assumed, in_use)

    # -- checks --
    checks: List[Check] = []
    svc_nets = [r.net for r in service_cidrs]
    cluster_pods = [r for r in pod_cidrs if r.scope == SCOPE_CLUSTER]
    node_pods = [r for r in pod_cidrs if r.scope == SCOPE_NODE]
    if not service_cidrs:
        findings.append(
            Finding(
                WARNING,
                "service-range-unknown",
                "service range unknown: no ServiceCIDR object, kube-apiserver pod, kubeadm-config or dry-run answer"
                " to read it from",
            )
        )
    if not pod_cidrs:
        findings.append(
            Finding(
                WARNING,
                "pod-range-unknown",
                "pod range unknown: no node has a podCIDR, and no kube-controller-manager, kube-proxy, kubeadm or"
                " CNI setting was readable",
            )
        )

    # 1. overlaps
    if not service_cidrs or not pod_cidrs:
        checks.append(
            Check(
                CHECK_OVERLAP,
                UNCHECKED,
                "the service range is unknown" if not service_cidrs else "the pod range is unknown",
            )
        )
    else:
        n_before = len(findings)
        for s in service_cidrs:
            hit_cluster = []
            for p in cluster_pods:
                if s.net.overlaps(p.net):
                    hit_cluster.append(p)
                    findings.append(
                        Finding(
                            ERROR,
                            CHECK_OVERLAP,
                            f"service range {s.cidr} ({_srcs(s)}) overlaps pod range {p.cidr} ({_srcs(p)}): "
                            "ClusterIPs and pod IPs can collide (DNS unreachable is the classic symptom)",
                        )
                    )
            for p in node_pods:
                if s.net.overlaps(p.net) and not any(
                    p.net.subnet_of(c.net) for c in hit_cluster if c.family == p.family
                ):  # type: ignore[arg-type]
                    node = p.sources[0].name
                    findings.append(
                        Finding(
                            ERROR,
                            CHECK_OVERLAP,
                            f"service range {s.cidr} ({_srcs(s)}) overlaps node {node}'s podCIDR {p.cidr}",
                            node,
                        )
                    )
        checks.append(Check(CHECK_OVERLAP, FAILED if len(findings) > n_before else OK))

    # 2. node addresses
    if not read.node_addresses:
        checks.append(Check(CHECK_NODE_ADDRESSES, UNCHECKED, "no node addresses (no Node objects)"))
    elif not service_cidrs and not pod_cidrs:
        checks.append(Check(CHECK_NODE_ADDRESSES, UNCHECKED, "no range is known"))
    else:
        n_before = len(findings)
        for node, typ, addr in read.node_addresses:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                continue
            inside = [("service", r) for r in service_cidrs if ip.version == r.net.version and ip in r.net]
            inside += [("pod", r) for r in cluster_pods if ip.version == r.net.version and ip in r.net]
            if not any(k == "pod" for k, _ in inside):
                inside += [
                    (f"node {r.sources[0].name}'s pod", r)
                    for r in node_pods
                    if ip.version == r.net.version and ip in r.net
                ]
            for k, r in inside:
                findings.append(
                    Finding(
                        WARNING,
                        CHECK_NODE_ADDRESSES,
                        f"node {node}'s {typ} {addr} is inside the {k} range {r.cidr} ({_srcs(r)})",
                        node,
                    )
                )
        checks.append(Check(CHECK_NODE_ADDRESSES, FAILED if len(findings) > n_before else OK))

    # 3. node podCIDRs inside the cluster's pod range
    if not node_pods:
        checks.append(Check(CHECK_NODE_POD_CIDRS, UNCHECKED, "no node has a podCIDR"))
    elif not cluster_pods:
        checks.append(Check(CHECK_NODE_POD_CIDRS, UNCHECKED, "the cluster's pod range is unknown"))
    else:
        n_before = len(findings)
        for p in node_pods:
            fam = [c for c in cluster_pods if c.family == p.family]
            if fam and not any(p.net.subnet_of(c.net) for c in fam):  # type: ignore[arg-type]
                node = p.sources[0].name
                findings.append(
                    Finding(
                        WARNING,
                        CHECK_NODE_POD_CIDRS,
                        f"node {node}'s podCIDR {p.cidr} is outside the cluster's pod range "
                        f"{_nets_text(c.net for c in fam)}",
                        node,
                    )
                )
        checks.append(Check(CHECK_NODE_POD_CIDRS, FAILED if len(findings) > n_before else OK))

    # 4. sources agree
    n_before = len(findings)
    findings.extend(_disagreements("service", read.service))
    findings.extend(_disagreements("pod", read.pod))
    distinct_ports = {r for _, r in explicit} | ({DEFAULT_NODE_PORT_RANGE} if defaults else set())
    if len(distinct_ports) > 1:
        by: Dict[Tuple[int, int], List[str]] = {}
        for s, r in read.ports:
            by.setdefault(r or DEFAULT_NODE_PORT_RANGE, []).append(s.short())
        parts = [f"{a}-{b} ({', '.join(names)})" for (a, b), names in sorted(by.items())]
        findings.append(
            Finding(WARNING, CHECK_SOURCES, "sources disagree on the node-port range: " + " vs ".join(parts))
        )
    compared = len(read.service) > 1 or len(read.pod) > 1 or len(read.ports) > 1
    if len(findings) > n_before:
        checks.append(Check(CHECK_SOURCES, FAILED))
    elif compared:
        checks.append(Check(CHECK_SOURCES, OK))
    else:
        checks.append(Check(CHECK_SOURCES, UNCHECKED, "no range has more than one source"))

    # -- usage outside the ranges --
    if read.cluster_ips and svc_nets:
        outside = sorted(
            {ip for ip in read.cluster_ips if _is_ip(ip) and not any(_in(ip, n) for n in svc_nets)},
            key=lambda a: (ipaddress.ip_address(a).version, int(ipaddress.ip_address(a))),
        )
        if outside:
            findings.append(
                Finding(
                    WARNING,
                    "clusterip-outside-range",
                    f"{len(outside)} ClusterIP(s) outside every known service range: {', '.join(outside[:10])}"
                    + (" …" if len(outside) > 10 else ""),
                )
            )
    if read.node_ports and not assumed:
        odd = sorted({p for p in read.node_ports if not lo <= p <= hi})
        if odd:
            findings.append(
                Finding(
                    WARNING,
                    "nodeport-outside-range",
                    f"node port(s) outside the range {lo}-{hi}: {', '.join(map(str, odd[:10]))}",
                )
            )

    status = ExitStatus.PARTIAL if problems else ExitStatus.OK
    return Ranges(
        service_cidrs, tuple(pod_cidrs), node_port_range, tuple(findings), tuple(checks), tuple(problems), status
    )


def _srcs(r: CIDRRange) -> str:
    return ", ".join(s.short() for s in r.sources)


def _is_ip(a: str) -> bool:
    try:
        ipaddress.ip_address(a)
    except ValueError:
        return False
    return True


def _in(a: str, net: Net) -> bool:
    ip = ipaddress.ip_address(a)
    return ip.version == net.version and ip in net
