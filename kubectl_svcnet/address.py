"""`trace ADDRESS[:PORT]` and `trace DNS-NAME[:PORT]`: the Service at an address, and only its frontends there.

An engineer usually starts from an address, not a name: "connection refused to 10.96.45.3:8080" in an
application's log. `trace` takes `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address where it takes a
Service's name (a Service name never parses as one: it starts with a letter and holds no ':'), finds
the Service whose ClusterIP, external IP or load-balancer IP it is — or, for a node's address and a
port, whose node port it is — and keeps, of that Service's trace, the frontends at that address.

It also takes a Service's DNS name as applications are configured with it (`NAME.NAMESPACE`,
`NAME.NAMESPACE.svc.cluster.local`, with an optional `:PORT`): that resolves to the ClusterIP, so the
trace keeps the ClusterIP frontends (on that port).

Where the Service at an address comes from:
- the API's objects (live, or a snapshot's): `services_at`;
- without objects (`--from-file`), the rules themselves: `services_in_map` over a map of every Service.

Pure: no I/O. Errors are the project's one-line errors.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from kubectl_svcnet.errors import NotFoundError, UsageError
from kubectl_svcnet.model import CLUSTER_IP, NODE_PORT, Cluster, Frontend, Node, Service, ServiceMap

# The node's addresses a node port is reached at (as `--address-type` names them).
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")
MAX_LISTED = 5  # an ambiguity error names this many Services, and counts the rest


@dataclass(frozen=True)
class Address:
    ip: str  # canonical text (ipaddress's compressed form)
    port: Optional[int] = None

    def __str__(self) -> str:
        if self.port is None:
            return self.ip
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def canonical(ip: str) -> str:
    """An address's canonical text (`fd00:0::1` -> `fd00::1`); text that is not an address, as it is."""
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return ip


def parse_address(text: str) -> Optional[Address]:
    """`IP`, `IP:PORT`, `[IPv6]:PORT` or `IPv6` -> Address; None when the text is not an address at all
    (a Service's name). An address with a port that is not one is a UsageError."""
    s = text.strip()
    port_text: Optional[str] = None
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif s.count(":") == 1:
        host, _, port_text = s.partition(":")
    else:
        host = s
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return Address(ip.compressed, None if port_text is None else _port(text, port_text))


@dataclass(frozen=True)
class DnsName:
    """A Service's DNS name, as applications are configured with it: it resolves to the ClusterIP."""

    namespace: str
    name: str
    port: Optional[int] = None


# A Service's name is a DNS-1035 label (it starts with a letter); a namespace's a DNS-1123 label.
_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")


def parse_dns_name(text: str) -> Optional[DnsName]:
    """`NAME.NAMESPACE`, `NAME.NAMESPACE.svc` or `NAME.NAMESPACE.svc.DOMAIN` (cluster.local, a trailing
    dot allowed), each with an optional `:PORT` -> DnsName; None for anything else. A bad port is a
    UsageError."""
    host, sep, port_text = text.strip().partition(":")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(labels) < 2 or (len(labels) > 2 and labels[2] != "svc") or not all(labels):
        return None
    if not _NAME.match(labels[0]) or not _NAMESPACE.match(labels[1]):
        return None
    return DnsName(labels[1], labels[0], _port(text, port_text) if sep else None)


def _port(text: str, port_text: str) -> int:
    if not port_text.isdecimal() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"invalid port in {text!r}: a port is a number from 1 to 65535")
    return int(port_text)


def node_addresses(nodes: Iterable[Node]) -> FrozenSet[str]:
    """Every node's InternalIP and ExternalIP (canonical): where node ports are reached."""
    return frozenset(canonical(a) for n in nodes for t, a in n.addresses if t in NODE_ADDRESS_TYPES)


def frontend_at(f: Frontend, addr: Address, node_ips: FrozenSet[str]) -> bool:
    """Whether a frontend answers at `addr`. A node port on every address that accepts node ports (ip
    None) answers at the nodes' addresses; with no Node objects (a bare dump) at any address."""
    if addr.port is not None and f.port != addr.port:
        return False
    if f.ip is not None:
        return canonical(f.ip) == addr.ip
    return addr.port is not None and f.type == NODE_PORT and (not node_ips or addr.ip in node_ips)


def services_at(
    services: Sequence[Service], nodes: Sequence[Node], addr: Address, namespace: Optional[str] = None
) -> List[Tuple[str, str]]:
    """The API's Services at `addr` (in `namespace`, if given): [("ns/name", what it is there)]. First
    the Services that have the address as their own (ClusterIP, external IP, load-balancer IP); else, for
    a node's address and a port, the Service with that node port."""
    hits: List[Tuple[str, str]] = []
    mine = [s for s in services if namespace is None or s.namespace == namespace]
    for s in mine:
        ports = [p for p in s.ports if addr.port is None or p.port == addr.port]
        if not ports:
            continue
        for what, ips in (("ClusterIP", s.cluster_ips), ("external IP", s.external_ips),
                          ("load-balancer IP", s.load_balancer_ips)):  # fmt: skip
            if any(canonical(ip) == addr.ip for ip in ips):
                hits.append((f"{s.namespace}/{s.name}", f"{what} {_ports(ports)}"))
                break
    if hits or addr.port is None or addr.ip not in node_addresses(nodes):
        return hits
    for s in mine:
        on = ", ".join(f"{p.node_port}/{p.protocol}" for p in s.ports if p.node_port == addr.port)
        if on:
            hits.append((f"{s.namespace}/{s.name}", f"node port {on}"))
    return hits


def services_in_map(smap: ServiceMap, addr: Address) -> List[Tuple[str, str]]:
    """The Services whose frontends, on some node, answer at `addr`, read from the rules (no API
    objects, so no node addresses): [("ns/name", what it is there)]. Frontends at the address itself
    come first; only without one, node ports with that port."""
    exact: Dict[str, Set[str]] = {}
    any_address: Dict[str, Set[str]] = {}
    for view in smap.services:
        for f in view.frontends:
            if frontend_at(f, addr, frozenset()):
                found = exact if f.ip is not None else any_address
                found.setdefault(f"{view.key.namespace}/{view.key.name}", set()).add(
                    f"{f.type} {f.port}/{view.key.protocol}"
                )
    return [(name, ", ".join(sorted(what))) for name, what in sorted((exact or any_address).items())]


def pick_service(
    hits: Sequence[Tuple[str, str]], addr: Address, where: Optional[str] = None, scope: str = "", hint: str = ""
) -> str:
    """The one Service ("ns/name") at `addr`: none is a NotFoundError (`scope`: where it was looked for,
    e.g. ' in namespace "prod"'; `hint`: what the address is instead, see `why_none`), several a
    UsageError naming them."""
    names = sorted({name for name, _ in hits})
    if len(names) == 1:
        return names[0]
    if not names:
        hint = hint or "list every Service IP:port with `kubectl svcnet map -A`"
        raise NotFoundError(f"no Service at {addr}{scope}", where=where, hint=hint)
    shown = "; ".join(f"{name} ({what})" for name, what in hits[:MAX_LISTED])
    more = f"; and {len(hits) - MAX_LISTED} more" if len(hits) > MAX_LISTED else ""
    hint = "give IP:PORT, or the Service's NAMESPACE/NAME" if addr.port is None else "give the Service's NAMESPACE/NAME"
    raise UsageError(f"{addr} is an address of {len(names)} Services: {shown}{more}", hint=hint)


def why_none(
    addr: Address,
    same_ip: Sequence[Tuple[str, str]],
    nodes: Sequence[Node] = (),
    backend_of: Sequence[str] = (),
    pod: Optional[str] = None,
) -> str:
    """A hint for an address no Service answers at: the Services at its IP on other ports (`same_ip`:
    services_at or services_in_map of the IP alone), the node it belongs to, or the Services it is a
    backend of (`backend_of`, "ns/name": backends_in_cluster or backends_in_map; `pod`: whose IP it is)."""
    if addr.port is not None and same_ip:
        shown = "; ".join(f"{name} ({what})" for name, what in same_ip[:MAX_LISTED])
        return f"{addr.ip} is an address of {shown}: not on port {addr.port}"
    node = next((n.name for n in nodes if addr.ip in node_addresses((n,))), None)
    if node is not None:
        if addr.port is None:
            return f"{addr.ip} is node {node}'s address: give IP:PORT with a node port"
        return f"{addr.ip} is node {node}'s address, and no Service has node port {addr.port}"
    if backend_of:
        who = f"pod {pod}, " if pod else ""
        return f"{addr} is {who}a backend of {', '.join(backend_of[:MAX_LISTED])}: trace that Service instead"
    return ""


def backends_in_cluster(cluster: Cluster, addr: Address) -> List[str]:
    """The API's Services with an endpoint at `addr` ("ns/name")."""
    return sorted({f"{k.namespace}/{k.name}" for k, eps in cluster.endpoints.items() for e in eps
                   if canonical(e.ip) == addr.ip and addr.port in (None, e.port)})  # fmt: skip


def backends_in_map(smap: ServiceMap, addr: Address) -> List[str]:
    """The Services whose rules send connections to `addr` ("ns/name"), as the nodes' rules say."""
    return sorted({f"{v.key.namespace}/{v.key.name}" for v in smap.services for f in v.frontends
                   for r in f.routes for b in r.backends
                   if canonical(b.ip) == addr.ip and addr.port in (None, b.port)})  # fmt: skip


def narrow(smap: ServiceMap, addr: Address, node_ips: FrozenSet[str]) -> ServiceMap:
    """The map with only the frontends at `addr` (and the service ports that have one). Frontends at the
    address itself win: node ports come in only where none is (a node's address and a node port)."""
    exact = any(f.ip is not None and frontend_at(f, addr, node_ips) for v in smap.services for f in v.frontends)
    return _keep(smap, lambda f: (f.ip is not None or not exact) and frontend_at(f, addr, node_ips))


def narrow_to_cluster_ip(smap: ServiceMap, port: Optional[int]) -> ServiceMap:
    """The map with only the ClusterIP frontends (on `port`, if given): where a DNS name leads."""
    return _keep(smap, lambda f: f.type == CLUSTER_IP and (port is None or f.port == port))


def _keep(smap: ServiceMap, keep: Callable[[Frontend], bool]) -> ServiceMap:
    views = []
    for view in smap.services:
        kept = tuple(f for f in view.frontends if keep(f))
        if kept:
            views.append(view if len(kept) == len(view.frontends) else replace(view, frontends=kept))
    return replace(smap, services=tuple(views))


def _ports(ports: Sequence) -> str:
    return ", ".join(f"{p.port}/{p.protocol}" for p in ports)
