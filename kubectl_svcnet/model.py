"""The one model of kubectl-svcnet: frozen values, no I/O.

Two halves meet here. The data-plane half is what a node's kube-proxy rules say (parsed by
`dataplane/`): per service port, its frontends (ClusterIP, NodePort, external IP, load-balancer IP),
and per frontend the routes a new connection can take depending on where it comes from. The API half
is what the cluster's objects say (Services, EndpointSlices, Nodes, Pods, built by `objects.py`).
`analyze.py` joins the two into a `ServiceMap`, which `render.py` prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from operator import attrgetter
from reprlib import recursive_repr
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple, Type, TypeVar

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

_T = TypeVar("_T")


def frozen(cls: Optional[Type[_T]] = None, *, order: bool = False) -> Any:
    """``@dataclass(frozen=True)`` with ``__slots__`` (Python 3.10's ``slots=True``, on 3.9 too), made
    without generating code at import.

    Start-up counts (kubectl runs the plugin for every call): ``@dataclass`` compiles six methods per
    class from source text as the class is made, ~1 ms a class on a slow machine, 20 ms for this
    module. Here the dataclass machinery only records the fields (``fields``, ``replace`` and
    ``asdict`` work as before), and each method dataclasses would generate (``__init__``, ``__eq__``,
    ``__hash__``, the order) is the same code, compiled the first time it is called: a command pays
    only for what it uses. Slots: no ``__dict__`` per instance (a map holds ~100,000 backends); the
    instances stay immutable (``dataclasses.FrozenInstanceError``), and repr, copy and pickle as before.
    """
    if cls is None:
        return lambda c: frozen(c, order=order)
    cls = dataclass(cls, init=False, repr=False, eq=False)  # only the fields: no code generated
    fields = dataclasses.fields(cls)
    for f in fields:
        if not (f.init and f.repr and f.compare and f.hash is None and not f.metadata):
            raise TypeError(f"{cls.__name__}.{f.name}: frozen() supports plain fields with defaults only")
    names = tuple(f.name for f in fields)
    ns = dict(cls.__dict__)
    ns["__slots__"] = names
    for n in names:
        ns.pop(n, None)  # the defaults: they live in the fields (and __init__), slots take their names
    ns.pop("__dict__", None)
    ns.pop("__weakref__", None)
    new = type(cls)(cls.__name__, cls.__bases__, ns)
    new.__qualname__ = cls.__qualname__
    values: Callable[[Any], tuple] = attrgetter(*names) if len(names) > 1 else lambda o: (getattr(o, names[0]),)
    field_names = frozenset(names)

    @recursive_repr()
    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}({', '.join(f'{n}={v!r}' for n, v in zip(names, values(self)))})"

    def __setattr__(self, name: str, value: Any) -> None:
        if type(self) is new or name in field_names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(new, self).__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if type(self) is new or name in field_names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(new, self).__delattr__(name)

    def __getstate__(self) -> list:  # copy and pickle: slots and a frozen __setattr__ need these
        return list(values(self))

    def __setstate__(self, state: list) -> None:
        for n, v in zip(names, state):
            object.__setattr__(self, n, v)

    own = "".join(f"self.{n}," for n in names)
    other = "".join(f"other.{n}," for n in names)
    compare = (
        "def {}(self, other):\n if other.__class__ is self.__class__:\n  return ({}) {} ({})\n return NotImplemented\n"
    )
    lazy = {
        "__init__": lambda: _init_source(new, fields),
        "__eq__": lambda: (compare.format("__eq__", own, "==", other), {}),
        "__hash__": lambda: (f"def __hash__(self):\n return hash(({own}))\n", {}),
    }
    if order:
        for name, op in (("__lt__", "<"), ("__le__", "<="), ("__gt__", ">"), ("__ge__", ">=")):
            lazy[name] = lambda name=name, op=op: (compare.format(name, own, op, other), {})
    methods = [__repr__, __setattr__, __delattr__, __getstate__, __setstate__]
    methods += [_compiled_on_first_call(new, name, source) for name, source in lazy.items()]
    for m in methods:
        if m.__name__ in ns:
            raise TypeError(f"{cls.__name__} defines {m.__name__}, which frozen() makes")
        m.__qualname__ = f"{new.__qualname__}.{m.__name__}"
        setattr(new, m.__name__, m)
    return new


def _compiled_on_first_call(cls: type, name: str, source: Callable[[], Tuple[str, Dict[str, Any]]]) -> Callable:
    """A stand-in for method `name` of `cls` that compiles it (`source()`: its text and globals), puts
    it on the class in its own place, and calls it."""

    def stand_in(self: Any, *args: Any, **kwargs: Any) -> Any:
        text, env = source()
        exec(text, env)
        method = env[name]
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
        return method(self, *args, **kwargs)

    stand_in.__name__ = name
    return stand_in


def _init_source(cls: type, fields: Tuple[dataclasses.Field, ...]) -> Tuple[str, Dict[str, Any]]:
    """A frozen class's __init__, as dataclasses writes it, but values go straight into the slots."""
    env: Dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    params, body = [], []
    for f in fields:
        env[f"_set_{f.name}"] = getattr(cls, f.name).__set__  # the slot's own setter: no __setattr__
        value = f.name
        if f.default is not dataclasses.MISSING:
            env[f"_dflt_{f.name}"] = f.default
            params.append(f"{f.name}=_dflt_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_fact_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            value = f"_fact_{f.name}() if {f.name} is _MISSING else {f.name}"
        else:
            params.append(f.name)
        body.append(f"  _set_{f.name}(self, {value})\n")
    return f"def __init__(self, {', '.join(params)}):\n" + ("".join(body) or "  pass\n"), env


@frozen(order=True)
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


@frozen
class Hop:
    """One rule a packet takes: the chain it is in, its line in the dump, and its text."""

    chain: str
    line: int
    rule: str


@frozen
class Backend:
    """Where a share of new connections ends up: pod IP and port, with the hops that DNAT it there."""

    ip: str
    port: int
    probability: float
    local: Optional[bool] = None
    pod: Optional[str] = None
    path: Tuple[Hop, ...] = ()


@frozen
class Affinity:
    """ClientIP session affinity: a client sticks to its first backend for timeout_seconds."""

    timeout_seconds: int
    type: str = "ClientIP"


@frozen
class Route:
    """What happens to new connections from one class of clients (`source`) to a frontend."""

    source: str
    verdict: str
    backends: Tuple[Backend, ...] = ()
    affinity: Optional[Affinity] = None
    path: Tuple[Hop, ...] = ()


@frozen
class Frontend:
    """An address:port a Service answers on, on one node. ``ip`` None: a node port on every address
    that accepts node ports."""

    type: str
    ip: Optional[str]
    port: int
    node: str
    routes: Tuple[Route, ...]


@frozen
class Finding:
    """Something worth telling: where the rules disagree with the API, with each other, or look odd."""

    severity: str
    code: str
    message: str
    node: Optional[str] = None


@frozen
class ServiceRules:
    """What one node's rules say about one service port."""

    key: ServiceKey
    frontends: Tuple[Frontend, ...]
    health_check_node_port: Optional[int] = None
    findings: Tuple[Finding, ...] = ()


@frozen
class NodeInfo:
    """A node as the JSON contract's `nodes[]` describes it."""

    name: str
    source: str = "file"  # file | snapshot | ssh | pod
    proxy_mode: str = "unknown"  # iptables | nftables | ipvs | unknown
    iptables_backend: Optional[str] = None  # nft | legacy | None
    error: Optional[str] = None


@frozen
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


@frozen
class ServicePort:
    """One port of a Service, as its spec lists it."""

    name: str
    protocol: str
    port: int
    target_port: str = ""
    node_port: Optional[int] = None


@frozen
class Service:
    """A Service as the API has it: its addresses, ports and traffic policies."""

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
    # label service.kubernetes.io/service-proxy-name: another service proxy's Service, which kube-proxy ignores
    proxy_name: Optional[str] = None
    external_name: Optional[str] = None

    def key(self, port: ServicePort) -> ServiceKey:
        return ServiceKey(self.namespace, self.name, port.name, port.protocol)


@frozen
class Endpoint:
    """One address of an EndpointSlice, for one service port."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: Optional[str] = None
    pod: Optional[str] = None  # ns/name from targetRef
    zone_hints: Tuple[str, ...] = ()  # hints.forZones: the zones whose nodes should use it (topology)
    node_hints: Tuple[str, ...] = ()  # hints.forNodes: the nodes that should use it (PreferSameNode)


@frozen
class Node:
    """A Node: its addresses, pod CIDRs and zone."""

    name: str
    addresses: Tuple[Tuple[str, str], ...] = ()  # (type, address)
    pod_cidrs: Tuple[str, ...] = ()
    zone: Optional[str] = None  # label topology.kubernetes.io/zone


@frozen
class Cluster:
    """The API objects a run read (all optional: a dump alone gives a map too)."""

    services: Tuple[Service, ...] = ()
    endpoints: Dict[ServiceKey, Tuple[Endpoint, ...]] = field(default_factory=dict)
    nodes: Tuple[Node, ...] = ()
    pods_by_ip: Dict[str, str] = field(default_factory=dict)  # pod IP -> ns/name
    pod_nodes: Dict[str, str] = field(default_factory=dict)  # ns/name -> node name
    # ns/name -> the (port, protocol) its containers declare, for pods that declare any
    pod_ports: Dict[str, FrozenSet[Tuple[int, str]]] = field(default_factory=dict)
    has_services: bool = False
    has_endpoints: bool = False
    has_pods: bool = False


# ---------------------------------------------------------------------------------------------
# The answer.


@frozen
class ServiceView:
    """One service port across every node: its frontends (one per node) and what disagrees."""

    key: ServiceKey
    frontends: Tuple[Frontend, ...]
    findings: Tuple[Finding, ...] = ()


@frozen
class ServiceMap:
    """The answer: every node, every service port across them, and node-level findings."""

    nodes: Tuple[NodeInfo, ...]
    services: Tuple[ServiceView, ...]
    findings: Tuple[Finding, ...] = ()  # node-level findings (dump problems, unreachable chains)
