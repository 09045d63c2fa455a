"""The one model of kubectl-svcnet: frozen values, no I/O.

Two halves meet here. The data-plane half is what a node's kube-proxy rules say (parsed by
`dataplane/`): per service port, its frontends (ClusterIP, NodePort, external IP, load-balancer IP),
and per frontend the routes a new connection can take depending on where it comes from. The API half
is what the cluster's objects say (Services, EndpointSlices, Nodes, Pods, built by `objects.py`).
`analyze.py` joins the two into a `ServiceMap`, which `render.py` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

# Who a route applies to (the JSON contract's `from`).
FROM_ANY = "any"  # every client
FROM_EXTERNAL = "external"  # clients outside the cluster
FROM_CLUSTER = "cluster"  # pods and the node itself
FROM_OTHER = "other"  # everyone not matched by an earlier route (after source-range routes)

FORWARD = "forward"
REJECT = "reject"
DROP = "drop"

# Frontend types.
CLUSTER_IP = "ClusterIP"
NODE_PORT = "NodePort"
EXTERNAL_IP = "ExternalIP"
LOAD_BALANCER = "LoadBalancer"
FRONTEND_ORDER = {CLUSTER_IP: 0, NODE_PORT: 1, EXTERNAL_IP: 2, LOAD_BALANCER: 3}

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True, order=True)
class ServiceKey:
    """One service port, named as kube-proxy names it: ``ns/name:port`` (``ns/name`` if unnamed)."""

    namespace: str
    name: str
    port_name: str = ""
    protocol: str = "TCP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Hop:
    """One rule a packet takes: the chain it is in, its line in the dump, and its text."""

    __slots__ = ("chain", "line", "rule")  # one per walked rule: 100,000s on a big node

    chain: str
    line: int
    rule: str


@dataclass(frozen=True)
class Backend:
    """Where a share of new connections ends up: pod IP and port, with the hops that DNAT it there."""

    ip: str
    port: int
    probability: float
    local: Optional[bool] = None
    pod: Optional[str] = None
    path: Tuple[Hop, ...] = ()


@dataclass(frozen=True)
class Affinity:
    """ClientIP session affinity: a client sticks to its first backend for timeout_seconds."""

    timeout_seconds: int
    type: str = "ClientIP"


@dataclass(frozen=True)
class Route:
    """What happens to new connections from one class of clients (`source`) to a frontend."""

    source: str
    verdict: str
    backends: Tuple[Backend, ...] = ()
    affinity: Optional[Affinity] = None
    path: Tuple[Hop, ...] = ()


@dataclass(frozen=True)
class Frontend:
    """An address:port a Service answers on, on one node. ``ip`` None: a node port on every address
    that accepts node ports."""

    type: str
    ip: Optional[str]
    port: int
    node: str
    routes: Tuple[Route, ...]


@dataclass(frozen=True)
class Finding:
    """Something worth telling: where the rules disagree with the API, with each other, or look odd."""

    severity: str
    code: str
    message: str
    node: Optional[str] = None


@dataclass(frozen=True)
class ServiceRules:
    """What one node's rules say about one service port."""

    key: ServiceKey
    frontends: Tuple[Frontend, ...]
    health_check_node_port: Optional[int] = None
    findings: Tuple[Finding, ...] = ()


@dataclass(frozen=True)
class NodeInfo:
    """A node as the JSON contract's `nodes[]` describes it."""

    name: str
    source: str = "file"  # file | snapshot | ssh | pod
    proxy_mode: str = "unknown"  # iptables | nftables | ipvs | unknown
    iptables_backend: Optional[str] = None  # nft | legacy | None
    error: Optional[str] = None


@dataclass(frozen=True)
class NodeDataPlane:
    """Everything one node's dump says: its services, and findings about the dump itself."""

    info: NodeInfo
    services: Tuple[ServiceRules, ...] = ()
    findings: Tuple[Finding, ...] = ()
    # The source CIDR kube-proxy uses to tell pod traffic apart (its "local traffic detector").
    pod_cidr_detector: Optional[str] = None
    # Addresses that accept node ports when restricted (--nodeport-addresses / nft nodeport-ips).
    nodeport_addresses: Tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# The API half: what Services, EndpointSlices, Nodes and Pods say.


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str
    port: int
    target_port: str = ""
    node_port: Optional[int] = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ips: Tuple[str, ...] = ()
    external_ips: Tuple[str, ...] = ()
    load_balancer_ips: Tuple[str, ...] = ()
    ports: Tuple[ServicePort, ...] = ()
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    session_affinity_timeout: Optional[int] = None
    load_balancer_source_ranges: Tuple[str, ...] = ()
    health_check_node_port: Optional[int] = None
    headless: bool = False
    external_name: Optional[str] = None

    def key(self, port: ServicePort) -> ServiceKey:
        return ServiceKey(self.namespace, self.name, port.name, port.protocol)


@dataclass(frozen=True)
class Endpoint:
    """One address of an EndpointSlice, for one service port."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: Optional[str] = None
    pod: Optional[str] = None  # ns/name from targetRef


@dataclass(frozen=True)
class Node:
    name: str
    addresses: Tuple[Tuple[str, str], ...] = ()  # (type, address)
    pod_cidrs: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Cluster:
    """The API objects a run read (all optional: a dump alone gives a map too)."""

    services: Tuple[Service, ...] = ()
    endpoints: Dict[ServiceKey, Tuple[Endpoint, ...]] = field(default_factory=dict)
    nodes: Tuple[Node, ...] = ()
    pods_by_ip: Dict[str, str] = field(default_factory=dict)  # pod IP -> ns/name
    pod_nodes: Dict[str, str] = field(default_factory=dict)  # ns/name -> node name
    has_services: bool = False
    has_endpoints: bool = False
    has_pods: bool = False


# ---------------------------------------------------------------------------------------------
# The answer.


@dataclass(frozen=True)
class ServiceView:
    """One service port across every node: its frontends (one per node) and what disagrees."""

    key: ServiceKey
    frontends: Tuple[Frontend, ...]
    findings: Tuple[Finding, ...] = ()


@dataclass(frozen=True)
class ServiceMap:
    nodes: Tuple[NodeInfo, ...]
    services: Tuple[ServiceView, ...]
    findings: Tuple[Finding, ...] = ()  # node-level findings (dump problems, unreachable chains)
