"""kube-proxy's IPVS mode: ``ipvsadm-save -n`` / ``ipvsadm -Ln`` + ``ipset`` + ``iptables-save`` -> NodeDataPlane.

In IPVS mode kube-proxy (pkg/proxy/ipvs/proxier.go) makes one IPVS *virtual server* per frontend — the
ClusterIP, every external IP, every load-balancer ingress IP, and a node port on *every node address*
— and gives it the service's endpoints as *real servers* (weight 1; weight 0 while a removed endpoint
drains, see graceful_termination.go). The iptables rules it still writes only mark packets for SNAT
and filter; which ipset a frontend is in says what kind of frontend it is.

Reading:

- `parse_ipvsadm` reads ``ipvsadm-save -n`` (= ``ipvsadm -S -n``: ``-A -t 10.96.0.1:443 -s rr [-p 10800]``
  / ``-a -t 10.96.0.1:443 -r 10.244.1.5:6443 -m -w 1``) and ``ipvsadm -Ln`` as users paste it, including
  ``--stats``, ``--rate``, ``--thresholds`` and ``--persistent-conn`` (the first three carry no weights:
  then every real server counts as weight 1 and an info finding ``weights-unknown`` says so).
  Host or service names (``ipvsadm-save`` without ``-n``) are refused with a hint to use ``-n``.
- `parse_ipset` reads ``ipset save`` and ``ipset list``. IPv6 sets are named ``KUBE-6-…`` (and cut to
  31 characters); they are read as the IPv4 names.
- Malformed lines raise DumpParseError naming ``source:line``.

Resolving (`resolve_ipvs`):

- Frontend type: from the API objects when a `Cluster` is given (ClusterIP / externalIPs / LB ingress IPs
  / nodePort numbers); else from the ipsets (``KUBE-CLUSTER-IP``, ``KUBE-EXTERNAL-IP(-LOCAL)``,
  ``KUBE-LOAD-BALANCER``, ``KUBE-NODE-PORT-*``); else guessed — a port in the default node-port range
  30000-32767 on an address not in ``KUBE-IPVS-IPS`` is a node port, anything else a ClusterIP — with
  an info finding ``frontend-type-guessed``.
- Names: IPVS carries none. With a `Cluster`, each virtual server is named by the Service port it
  matches. Without one — or for a virtual server no Service matches (then a ``unknown-virtual-server``
  warning) — the convention is ``ServiceKey(namespace="", name="<unknown>", port_name="<VIP>:<port>")``
  (``[v6]:port`` for IPv6), one key per ClusterIP virtual server. A node port, external IP or LB
  virtual server joins that key when exactly one ClusterIP virtual server of its protocol has the same
  real servers (for externalTrafficPolicy Local frontends: a superset of them), and for an external /
  LB IP also the same port; otherwise it gets a key of its own (``<IP>:<port>``, or ``*:<nodePort>``).
- Node ports: one virtual server per node address; they become ONE frontend (type NodePort, ip None)
  and the addresses go to `NodeDataPlane.nodeport_addresses`. If the addresses disagree, each address
  gets its own frontend (ip set) and a warning ``nodeport-addresses-disagree``.
- Shares: ``rr`` ignores weights (every real server with weight > 0 gets an equal share); ``wrr`` gives
  weight / total weight. For every other scheduler (lc, wlc, sed, nq, lblc, lblcr, sh, dh, mh, fo, ovf,
  twos) the share depends on load or on a hash of the client: the weight-proportional share is given as
  the nominal probability, with an info finding ``share-depends-on-load``.
- Weight 0 (a terminating endpoint draining its connections): excluded from the routes (IPVS gives it no
  new connections) and named in an info finding ``terminating-real-servers``. A virtual server with no
  real server of weight > 0 answers new connections with ICMP port unreachable (ip_vs_leave): verdict
  ``reject``.
- Session affinity is IPVS persistence: ``-p T`` -> `Affinity(T)`.
- Routes: IPVS does not look at the source, so every client gets the same real servers: one route
  ``any``. externalTrafficPolicy Local shows up as the virtual server having only the node-local
  endpoints (for everyone, pods included — unlike iptables mode); when the node has none, kube-proxy
  falls back to all endpoints (kubernetes#97081) and external clients' replies are lost, which a
  warning ``etp-local-no-local-endpoints`` says when ``KUBE-LOOP-BACK`` shows no local endpoint.
  loadBalancerSourceRanges: an LB ip,proto:port in ``KUBE-LOAD-BALANCER-FW`` is filtered by
  KUBE-PROXY-FIREWALL -> KUBE-SOURCE-RANGES-FIREWALL (older: nat KUBE-FIREWALL -> KUBE-MARK-DROP):
  allowed are the sources in ``KUBE-LOAD-BALANCER-SOURCE-CIDR`` (one route per CIDR), the node itself
  when ``KUBE-LOAD-BALANCER-SOURCE-IP`` holds lbIP,proto:port,lbIP, pods when the local-traffic CIDR
  (read from the iptables rules) is inside an allowed range; everyone else (``other``) is dropped.
- Hops: a virtual server is ``Hop("IPVS", line, "-A -t VIP:port -s rr")`` and a real server
  ``Hop("IPVS", line, "-a -t ... -r ...")`` with the line in the ipvsadm dump; a source-range drop points
  at the iptables DROP rule when that dump is given, else at the ipset entry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from kubectl_svcnet.dataplane.routes import EXTERNAL, LOCAL, POD, RANGE_PREFIX, End, cidr_contains, group_routes
from kubectl_svcnet.errors import DumpParseError
from kubectl_svcnet.model import (
    CLUSTER_IP,
    DROP,
    EXTERNAL_IP,
    FORWARD,
    FRONTEND_ORDER,
    INFO,
    LOAD_BALANCER,
    NODE_PORT,
    REJECT,
    WARNING,
    Cluster,
    Finding,
    Frontend,
    Hop,
    NodeDataPlane,
    NodeInfo,
    Service,
    ServiceKey,
    ServicePort,
    ServiceRules,
)

UNKNOWN_NAME = "<unknown>"
IPVS_CHAIN = "IPVS"
WEIGHT_SCHEDULERS = frozenset({"rr", "wrr"})
HASH_SCHEDULERS = frozenset({"sh", "dh", "mh"})
NODE_PORT_RANGE = (30000, 32767)  # the API server's default --service-node-port-range
PROTOCOLS = {"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP",
             "--sctp-service": "SCTP"}  # fmt: skip
_LIST_PROTOS = {"TCP": "TCP", "UDP": "UDP", "SCTP": "SCTP"}
_FORWARD_FLAGS = {"-m": "masq", "--masquerading": "masq", "-g": "route", "--gatewaying": "route",
                  "-i": "tunnel", "--ipip": "tunnel"}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Parsed IPVS state.


@dataclass
class RealServer:
    ip: str
    port: int
    weight: int
    line: int
    text: str
    forward: str = "masq"


@dataclass
class VirtualServer:
    protocol: str  # TCP | UDP | SCTP
    ip: str
    port: int
    scheduler: Optional[str]  # None: not in the dump (ipvsadm --stats/--rate)
    line: int
    text: str
    source: str
    persistent: Optional[int] = None
    netmask: Optional[str] = None
    reals: List[RealServer] = field(default_factory=list)
    weights_known: bool = True

    @property
    def key(self) -> Tuple[str, str, int]:
        return (self.protocol, self.ip, self.port)

    @property
    def hop(self) -> Hop:
        return Hop(IPVS_CHAIN, self.line, self.text)


@dataclass
class IpSet:
    name: str  # as dumped
    type: str
    line: int
    source: str
    family: str = "inet"
    entries: List[Tuple[str, int]] = field(default_factory=list)  # (entry, line)

    @property
    def kube_name(self) -> str:
        return kube_set_name(self.name)


@dataclass
class IpvsData:
    """Everything one node's IPVS-mode dumps say."""

    services: Dict[Tuple[str, str, int], VirtualServer] = field(default_factory=dict)
    sets: Dict[str, List[IpSet]] = field(default_factory=dict)  # kube name (IPv4 spelling) -> sets
    iptables: list = field(default_factory=list)  # IptablesDump
    findings: List[Finding] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    fwmark_services: int = 0

    @property
    def active(self) -> bool:
        """Whether kube-proxy's IPVS mode is programmed here (else the node is another mode)."""
        if self.services:
            return True
        return any(s.entries for sets in self.sets.values() for s in sets if s.kube_name.startswith("KUBE-"))


KNOWN_SETS = (
    "KUBE-LOOP-BACK", "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL", "KUBE-LOAD-BALANCER",
    "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-SOURCE-IP",
    "KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-UDP",
    "KUBE-NODE-PORT-LOCAL-UDP", "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
    "KUBE-HEALTH-CHECK-NODE-PORT", "KUBE-IPVS-IPS",
)  # fmt: skip


def kube_set_name(name: str) -> str:
    """kube-proxy's IPv6 sets are ``KUBE-6-<name>`` cut to 31 characters: back to the IPv4 name."""
    if not name.startswith("KUBE-6-"):
        return name
    v4 = "KUBE-" + name[len("KUBE-6-") :]
    if v4 in KNOWN_SETS:
        return v4
    for known in KNOWN_SETS:
        if known.startswith(v4):
            return known
    return v4


# ---------------------------------------------------------------------------------------------
# Detection.

_IPVSADM_RULE = re.compile(r"^-[Aa] (?:-[tuf]|--(?:tcp|udp|sctp|fwmark)-service) ", re.M)
_IPSET_SAVE = re.compile(r"^create \S+ (?:hash|bitmap|list):\S+", re.M)


def _first_line(text: str) -> str:
    for line in text[:8192].splitlines():
        if line.strip():
            return line.strip()
    return ""


def looks_like_ipvsadm(text: str) -> bool:
    first = _first_line(text)
    return (
        first.startswith("IP Virtual Server version")
        or first.startswith("Prot LocalAddress:Port")
        or bool(_IPVSADM_RULE.match(first))
    )


def looks_like_ipset(text: str) -> bool:
    first = _first_line(text)
    return first.startswith("Name: ") or bool(_IPSET_SAVE.match(first))


# ---------------------------------------------------------------------------------------------
# ipvsadm.


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}\Z")


def ip_text(host: str) -> str:
    """``str(ipaddress.ip_address(host))`` (ValueError if it is none), without building the object for
    the common case: a dotted quad already in canonical form (no leading zeros) is its own text. A
    10,000-service node lists 200,000 addresses; ip_address takes most of reading them."""
    if _IPV4.match(host):
        return host
    return str(ipaddress.ip_address(host))


def _addr_port(value: str, source: str, lineno: int, default_port: Optional[int] = None) -> Tuple[str, int]:
    """``10.0.0.1:80`` / ``[fd00::1]:80`` (numeric only) -> (ip, port)."""
    host, port = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise DumpParseError(f"bad address {value!r}", source, lineno)
        host, rest = value[1:end], value[end + 1 :]
        if rest.startswith(":"):
            port = rest[1:]
        elif rest:
            raise DumpParseError(f"bad address {value!r}", source, lineno)
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ip = ip_text(host)
    except ValueError:
        raise DumpParseError(
            f"not a numeric address: {value!r}", source, lineno, hint="dump with `ipvsadm-save -n` (or -Ln)"
        ) from None
    if not port:
        if default_port is None:
            raise DumpParseError(f"address without a port: {value!r}", source, lineno)
        return ip, default_port
    if not port.isdecimal() or int(port) > 65535:
        raise DumpParseError(
            f"not a numeric port: {value!r}", source, lineno, hint="dump with `ipvsadm-save -n` (or -Ln)"
        )
    return ip, int(port)


def _int(value: Optional[str], what: str, source: str, lineno: int) -> int:
    if value is None or not value.isdecimal():
        raise DumpParseError(f"{what} is not a number: {value!r}", source, lineno)
    return int(value)


def _lines(text: str, source: str, data: IpvsData) -> List[str]:
    """The dump's lines, recorded as read into `data`; a cut last line is dropped with an error finding."""
    data.sources.append(source)
    lines = text.split("\n")
    if text and not text.endswith("\n") and len(lines) > 1:
        data.findings.append(
            Finding("error", "truncated-dump", f"dump ends mid-line; last line ignored ({source}:{len(lines)})")
        )
        lines = lines[:-1]
    return lines


# The protocol flags of a virtual server given by address:port (not -f, a firewall mark).
_PORT_SERVICE_FLAGS = frozenset(PROTOCOLS)


class Wanted:
    """The virtual servers a trace of one Service reads: on one of its addresses (ClusterIPs, external
    IPs, load-balancer IPs) and ports, or on one of its node ports (any address) — those the API's
    Service names (see _name_with_cluster). Addresses as ip_text gives them; ports as text."""

    def __init__(self, addresses: Set[Tuple[str, str]], node_ports: Set[str]):
        self.addresses, self.node_ports = addresses, node_ports

    def skips(self, address: str) -> bool:
        """Whether an ipvsadm-save virtual-server address (``10.96.0.10:80``) is surely not wanted: only
        a dotted quad in canonical form is judged (anything else is read, and named as usual)."""
        host, _, port = address.rpartition(":")
        return port not in self.node_ports and (host, port) not in self.addresses and _IPV4.match(host) is not None


def parse_ipvsadm(text: str, source: str, data: Optional[IpvsData] = None, wanted: Optional[Wanted] = None) -> IpvsData:
    """Parse ``ipvsadm-save -n`` or ``ipvsadm -Ln`` (any of its column variants) into `data`.

    `wanted` (a trace of one Service): ``ipvsadm-save`` lines of other TCP/UDP/SCTP virtual servers
    are not read (a 10,000-service node lists 110,000 lines; one Service's are a few)."""
    data = data if data is not None else IpvsData()
    lines = _lines(text, source, data)
    columns = "default"
    current: Optional[VirtualServer] = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        s = line.strip()
        if not s:
            continue
        if s.startswith("-A ") or s.startswith("-a "):
            if wanted is not None:
                args = s.split(None, 3)
                if len(args) > 2 and args[1] in _PORT_SERVICE_FLAGS and wanted.skips(args[2]):
                    continue
            current = _save_line(s, source, lineno, data, current)
            continue
        if s.startswith("IP Virtual Server version"):
            continue
        if s.startswith("Prot LocalAddress:Port"):
            columns = _columns(s)
            continue
        if s.startswith("-> RemoteAddress:Port"):
            continue
        if s.startswith("->"):
            if current is None:
                raise DumpParseError("real server before any virtual server", source, lineno)
            if current.protocol == "FWM":
                continue
            current.reals.append(_list_real(s, columns, current, source, lineno))
            continue
        word = s.split(None, 1)[0]
        if word in _LIST_PROTOS or word == "FWM":
            current = _list_virtual(s, columns, source, lineno, data)
            continue
        raise DumpParseError(f"not ipvsadm output: unexpected line {s[:60]!r}", source, lineno)
    return data


def _columns(header: str) -> str:
    if "Scheduler" in header:
        return "default"
    if "Conns" in header:
        return "stats"
    if "CPS" in header:
        return "rate"
    if "Uthreshold" in header:
        return "thresholds"
    if "PersistConn" in header:
        return "persistent-conn"
    return "default"


def _add_virtual(vs: VirtualServer, data: IpvsData, lineno: int) -> VirtualServer:
    prev = data.services.get(vs.key)
    if prev is not None:
        data.findings.append(
            Finding("warning", "duplicate-virtual-server",
                    f"virtual server {vs.protocol} {_fmt(vs.ip, vs.port)} listed twice ({vs.source}:{lineno})")
        )  # fmt: skip
        return prev
    data.services[vs.key] = vs
    return vs


def _save_line(s: str, source: str, lineno: int, data: IpvsData, current: Optional[VirtualServer]):
    args = s.split()
    op = args[0]
    proto = None
    addr = None
    i = 1
    opts: Dict[str, Optional[str]] = {}
    flags: Set[str] = set()
    n = len(args)
    while i < n:
        a = args[i]
        nxt = args[i + 1] if i + 1 < n else None
        if a in PROTOCOLS:
            proto, addr = PROTOCOLS[a], nxt
            i += 2
        elif a in ("-f", "--fwmark-service"):
            proto, addr = "FWM", nxt
            i += 2
        elif a in ("-s", "--scheduler", "-r", "--real-server", "-w", "--weight", "-M", "--netmask", "-x",
                   "--u-threshold", "-y", "--l-threshold", "--pe", "pe", "-b", "--sched-flags", "--tun-type",
                   "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum"):  # fmt: skip
            if nxt is None:
                raise DumpParseError(f"option {a} without a value", source, lineno)
            opts[a] = nxt
            i += 2
        elif a in ("-p", "--persistent"):
            if nxt is not None and nxt.isdecimal():
                opts["-p"] = nxt
                i += 2
            else:
                opts["-p"] = "300"  # ipvsadm's default persistence timeout
                i += 1
        elif a in _FORWARD_FLAGS or a in ("-o", "--ops", "ops", "-6", "--ipv6"):
            flags.add(a)
            i += 1
        else:
            raise DumpParseError(f"not ipvsadm-save output: unknown option {a!r}", source, lineno)
    if proto is None or addr is None:
        raise DumpParseError("rule without -t/-u/--sctp-service/-f service", source, lineno)
    if proto == "FWM":
        if op == "-A":
            data.fwmark_services += 1
            return VirtualServer("FWM", addr, 0, None, lineno, s, source)
        return current
    ip, port = _addr_port(addr, source, lineno)
    if op == "-A":
        sched = opts.get("-s") or opts.get("--scheduler")
        if sched is None:
            raise DumpParseError("virtual server without -s scheduler", source, lineno)
        pers = opts.get("-p")
        vs = VirtualServer(proto, ip, port, sched, lineno, s, source,
                           persistent=int(pers) if pers else None,
                           netmask=opts.get("-M") or opts.get("--netmask"))  # fmt: skip
        return _add_virtual(vs, data, lineno)
    # -a: a real server of the virtual server it names.
    vs = data.services.get((proto, ip, port))
    if vs is None:
        raise DumpParseError(f"real server for undeclared virtual server {addr}", source, lineno)
    rs_addr = opts.get("-r") or opts.get("--real-server")
    if rs_addr is None:
        raise DumpParseError("real server line without -r", source, lineno)
    rip, rport = _addr_port(rs_addr, source, lineno, default_port=port)
    weight = _int(opts.get("-w") or opts.get("--weight") or "1", "weight", source, lineno)
    fwd = next((_FORWARD_FLAGS[f] for f in flags if f in _FORWARD_FLAGS), "route")
    vs.reals.append(RealServer(rip, rport, weight, lineno, s, fwd))
    return vs


def _list_virtual(s: str, columns: str, source: str, lineno: int, data: IpvsData) -> VirtualServer:
    parts = s.split()
    if parts[0] == "FWM":
        data.fwmark_services += 1
        return VirtualServer("FWM", parts[1] if len(parts) > 1 else "", 0, None, lineno, s, source)
    if len(parts) < 2:
        raise DumpParseError("virtual server line without an address", source, lineno)
    proto = _LIST_PROTOS[parts[0]]
    ip, port = _addr_port(parts[1], source, lineno)
    rest = parts[2:]
    sched: Optional[str] = None
    persistent = None
    netmask = None
    known = columns in ("default", "persistent-conn", "thresholds")
    if known:
        if not rest or rest[0].isdecimal():
            raise DumpParseError("virtual server line without a scheduler", source, lineno)
        sched = rest[0]
        j = 1
        while j < len(rest):
            w = rest[j]
            if w == "persistent":
                persistent = _int(rest[j + 1] if j + 1 < len(rest) else None, "persistence timeout", source, lineno)
                j += 2
            elif w == "mask":
                netmask = rest[j + 1] if j + 1 < len(rest) else None
                j += 2
            elif w == "pe":
                j += 2
            else:
                j += 1  # ops, (scheduler flags)
    vs = VirtualServer(proto, ip, port, sched, lineno, s, source, persistent, netmask,
                       weights_known=columns in ("default", "persistent-conn"))  # fmt: skip
    return _add_virtual(vs, data, lineno)


def _list_real(s: str, columns: str, vs: VirtualServer, source: str, lineno: int) -> RealServer:
    parts = s.split()
    if len(parts) < 2:
        raise DumpParseError("real server line without an address", source, lineno)
    ip, port = _addr_port(parts[1], source, lineno, default_port=vs.port)
    weight = 1
    fwd = "masq"
    if columns == "default":
        if len(parts) < 4:
            raise DumpParseError("real server line without forward method and weight", source, lineno)
        fwd = parts[2].lower()
        weight = _int(parts[3], "weight", source, lineno)
    elif columns == "persistent-conn":
        weight = _int(parts[2] if len(parts) > 2 else None, "weight", source, lineno)
    return RealServer(ip, port, weight, lineno, s, fwd)


# ---------------------------------------------------------------------------------------------
# ipset.


def parse_ipset(text: str, source: str, data: Optional[IpvsData] = None) -> IpvsData:
    """Parse ``ipset save`` or ``ipset list`` output into `data`."""
    data = data if data is not None else IpvsData()
    lines = _lines(text, source, data)
    if _first_line(text).startswith("Name: "):
        _parse_ipset_list(lines, source, data)
    else:
        _parse_ipset_save(lines, source, data)
    return data


def _add_set(data: IpvsData, st: IpSet) -> None:
    data.sets.setdefault(st.kube_name, []).append(st)


def _family(words: Sequence[str]) -> str:
    for k, w in enumerate(words[:-1]):
        if w == "family":
            return words[k + 1]
    return "inet"


def _parse_ipset_save(lines: List[str], source: str, data: IpvsData) -> None:
    sets: Dict[str, IpSet] = {}
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s:
            continue
        words = s.split()
        if words[0] == "create":
            if len(words) < 3:
                raise DumpParseError("create without a set type", source, lineno)
            st = IpSet(words[1], words[2], lineno, source, _family(words[3:]))
            sets[words[1]] = st
            _add_set(data, st)
        elif words[0] == "add":
            if len(words) < 3:
                raise DumpParseError("add without an entry", source, lineno)
            st = sets.get(words[1])
            if st is None:
                raise DumpParseError(f"add to set {words[1]} that was not created", source, lineno)
            _check_entry(st, words[2], source, lineno)
            st.entries.append((words[2], lineno))
        else:
            raise DumpParseError(f"not ipset save output: unexpected line {s[:60]!r}", source, lineno)


_LIST_KEYS = ("Name", "Type", "Revision", "Header", "Size in memory", "References", "Number of entries", "Members")


def _parse_ipset_list(lines: List[str], source: str, data: IpvsData) -> None:
    st: Optional[IpSet] = None
    in_members = False
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s:
            in_members = False
            continue
        if s.startswith("Name: "):
            st = IpSet(s[len("Name: ") :].strip(), "", lineno, source)
            _add_set(data, st)
            in_members = False
            continue
        if st is None:
            raise DumpParseError(f"not ipset list output: unexpected line {s[:60]!r}", source, lineno)
        if in_members:
            entry = s.split()[0]
            if not st.type:
                raise DumpParseError(f"set {st.name} has members but no Type", source, lineno)
            _check_entry(st, entry, source, lineno)
            st.entries.append((entry, lineno))
            continue
        key, sep, value = s.partition(":")
        if not sep or key not in _LIST_KEYS:
            raise DumpParseError(f"not ipset list output: unexpected line {s[:60]!r}", source, lineno)
        if key == "Type":
            st.type = value.strip()
        elif key == "Header":
            st.family = _family(value.split())
        elif key == "Members":
            in_members = True


_PROTO_PORT = re.compile(r"^(tcp|udp|sctp|udplite|icmp|icmpv6):(\d+)$")


def _split_entry(set_type: str, entry: str) -> Optional[tuple]:
    """An entry as a tuple of its parts, or None if it does not fit the set type."""
    kinds = set_type.partition(":")[2].split(",")
    # IPv6 addresses contain ':' but never ','; entries are comma separated.
    parts = entry.split(",")
    if set_type.startswith("bitmap:port"):
        p = entry.rpartition(":")[2] if ":" in entry else entry
        return (int(p),) if p.isdecimal() and int(p) <= 65535 else None
    if len(parts) != len(kinds):
        return None
    out: list = []
    for kind, part in zip(kinds, parts):
        if kind == "ip":
            try:
                out.append(ip_text(part))
            except ValueError:
                try:  # a range or a cidr in a hash:ip entry
                    out.append(str(ipaddress.ip_network(part, strict=False)))
                except ValueError:
                    return None
        elif kind == "port":
            m = _PROTO_PORT.match(part)
            if m:
                out.append((m.group(1), int(m.group(2))))
            elif part.isdecimal():
                out.append(("tcp", int(part)))
            else:
                return None
        elif kind == "net":
            try:
                out.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                return None
        else:
            out.append(part)
    return tuple(out)


def _check_entry(st: IpSet, entry: str, source: str, lineno: int) -> None:
    if st.type.startswith(("hash:", "bitmap:port")) and _split_entry(st.type, entry) is None:
        raise DumpParseError(f"entry {entry!r} does not fit set {st.name} ({st.type})", source, lineno)


# ---------------------------------------------------------------------------------------------
# Reading a node's dumps.


def parse_ipvs(dumps: Sequence[Tuple[str, str]], iptables: Iterable = (), wanted: Optional[Wanted] = None) -> IpvsData:
    """All of one node's IPVS-mode dumps — ipvsadm and ipset text as (text, source), iptables-save
    already parsed (`kubectl_svcnet.dataplane.iptables.parse_iptables`) — as one `IpvsData`. `wanted`:
    see parse_ipvsadm."""
    data = IpvsData()
    for text, source in dumps:
        if looks_like_ipvsadm(text):
            parse_ipvsadm(text, source, data, wanted)
        elif looks_like_ipset(text):
            parse_ipset(text, source, data)
        else:
            raise DumpParseError("not ipvsadm or ipset output", source, 1 if text.strip() else 0)
    data.iptables = list(iptables)
    for dump in data.iptables:
        data.findings.extend(dump.findings)
    return data


class _Sets:
    """The ipset contents kube-proxy keeps, as lookups."""

    def __init__(self, data: IpvsData):
        self.data = data
        self.present = set(data.sets)

    def entries(self, name: str) -> List[Tuple[tuple, int, IpSet]]:
        out = []
        for st in self.data.sets.get(name, ()):
            for entry, line in st.entries:
                parts = _split_entry(st.type, entry)
                if parts is not None:
                    out.append((parts, line, st))
        return out

    def ip_port(self, name: str) -> Set[Tuple[str, str, int]]:
        """(PROTO, ip, port) of a hash:ip,port set."""
        out = set()
        for parts, _, _ in self.entries(name):
            if len(parts) >= 2 and isinstance(parts[1], tuple):
                out.add((parts[1][0].upper(), parts[0], parts[1][1]))
        return out

    def ports(self, name: str, proto: str) -> Set[Tuple[str, int]]:
        out = set()
        for parts, _, _ in self.entries(name):
            if len(parts) == 1 and isinstance(parts[0], int):
                out.add((proto, parts[0]))
            elif len(parts) == 2 and isinstance(parts[1], tuple):  # SCTP hash:ip,port
                out.add((parts[1][0].upper(), parts[1][1]))
        return out

    def third(self, name: str) -> Dict[Tuple[str, str, int], List[Tuple[str, int, IpSet]]]:
        """ip,proto:port,X sets -> {(PROTO, ip, port): [(X, line, set)]}."""
        out: Dict[Tuple[str, str, int], List[Tuple[str, int, IpSet]]] = {}
        for parts, line, st in self.entries(name):
            if len(parts) == 3 and isinstance(parts[1], tuple):
                out.setdefault((parts[1][0].upper(), parts[0], parts[1][1]), []).append((parts[2], line, st))
        return out

    def line_of(self, name: str, key: Tuple[str, str, int]) -> Optional[Hop]:
        for parts, line, st in self.entries(name):
            if len(parts) >= 2 and isinstance(parts[1], tuple) and (parts[1][0].upper(), parts[0], parts[1][1]) == key:
                return Hop(st.name, line, f"add {st.name} {_entry_text(parts)}")
        return None


def _entry_text(parts: tuple) -> str:
    return ",".join(f"{p[0]}:{p[1]}" if isinstance(p, tuple) else str(p) for p in parts)


def _fmt(ip: Optional[str], port: int) -> str:
    if ip is None:
        return f"*:{port}"
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# ---------------------------------------------------------------------------------------------
# Resolving.


@dataclass
class _Fe:
    """One frontend in the making: its virtual servers (several for a node port)."""

    type: str
    vss: List[VirtualServer]
    key: Optional[ServiceKey] = None
    svc: Optional[Service] = None
    etp_local: bool = False
    guessed: bool = False

    @property
    def vs(self) -> VirtualServer:
        return self.vss[0]


def _usable(vs: VirtualServer) -> List[RealServer]:
    return [r for r in vs.reals if r.weight > 0]


def _rs_set(vs: VirtualServer) -> frozenset:
    return frozenset((r.ip, r.port) for r in _usable(vs))


def _ends(vs: VirtualServer) -> List[End]:
    usable = _usable(vs)
    if not usable:
        return [End(REJECT, None, None, 1.0, (vs.hop,))]
    if vs.scheduler == "rr" or not vs.weights_known:
        weights = [1] * len(usable)
    else:
        weights = [r.weight for r in usable]
    total = float(sum(weights))
    return [
        End(FORWARD, r.ip, r.port, w / total, (vs.hop, Hop(IPVS_CHAIN, r.line, r.text)), vs.persistent)
        for r, w in zip(usable, weights)
    ]


def _detector(data: IpvsData) -> Optional[str]:
    """The local-traffic CIDR: ``-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s CIDR -j KUBE-MARK-MASQ``."""
    for dump in data.iptables:
        for r in dump.chain("nat", "KUBE-SERVICES") or ():
            if r.src and r.src_neg and r.target == "KUBE-MARK-MASQ" and "KUBE-CLUSTER-IP" in r.text:
                return r.src
    return None


def _drop_hop(data: IpvsData, sets: _Sets, key: Tuple[str, str, int]) -> Tuple[Hop, ...]:
    for dump in data.iptables:
        for table, chain in (("filter", "KUBE-SOURCE-RANGES-FIREWALL"), ("nat", "KUBE-FIREWALL")):
            for r in dump.chain(table, chain) or ():
                if r.target in ("DROP", "KUBE-MARK-DROP") and r.src is None:
                    return (r.hop,)
    hop = sets.line_of("KUBE-LOAD-BALANCER-FW", key)
    return (hop,) if hop else ()


def _routes(fe: _Fe, vs: VirtualServer, data: IpvsData, sets: _Sets, detector: Optional[str]):
    ends = _ends(vs)
    key = vs.key
    fw = fe.type == LOAD_BALANCER and key in sets.ip_port("KUBE-LOAD-BALANCER-FW")
    if not fw:
        return group_routes({EXTERNAL: ends})
    ranges = [c for c, _, _ in sets.third("KUBE-LOAD-BALANCER-SOURCE-CIDR").get(key, [])]
    node_ok = any(ip2 == vs.ip for ip2, _, _ in sets.third("KUBE-LOAD-BALANCER-SOURCE-IP").get(key, []))
    drop = [End(DROP, None, None, 1.0, _drop_hop(data, sets, key))]
    pod_ok = detector is not None and any(cidr_contains(c, detector) for c in ranges)
    per_class: Dict[str, List[End]] = {POD: ends if pod_ok else drop, LOCAL: ends if node_ok else drop,
                                       EXTERNAL: drop}  # fmt: skip
    for c in ranges:
        per_class[RANGE_PREFIX + c] = ends
    routes = group_routes(per_class)
    return routes


def _classify(data: IpvsData, sets: _Sets) -> Tuple[Dict[Tuple[str, str, int], str], Set, bool]:
    """Each virtual server's frontend type, the ETP-Local frontends, and whether types were guessed."""
    cluster_ips = sets.ip_port("KUBE-CLUSTER-IP")
    ext = sets.ip_port("KUBE-EXTERNAL-IP") | sets.ip_port("KUBE-EXTERNAL-IP-LOCAL")
    lb = sets.ip_port("KUBE-LOAD-BALANCER")
    nodeports = (sets.ports("KUBE-NODE-PORT-TCP", "TCP") | sets.ports("KUBE-NODE-PORT-UDP", "UDP")
                 | sets.ports("KUBE-NODE-PORT-SCTP-HASH", "SCTP"))  # fmt: skip
    local = sets.ip_port("KUBE-EXTERNAL-IP-LOCAL") | sets.ip_port("KUBE-LOAD-BALANCER-LOCAL")
    local_np = (sets.ports("KUBE-NODE-PORT-LOCAL-TCP", "TCP") | sets.ports("KUBE-NODE-PORT-LOCAL-UDP", "UDP")
                | sets.ports("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "SCTP"))  # fmt: skip
    have_sets = bool(sets.present & {"KUBE-CLUSTER-IP", "KUBE-NODE-PORT-TCP", "KUBE-LOAD-BALANCER"})
    bound = {parts[0] for parts, _, _ in sets.entries("KUBE-IPVS-IPS") if parts}
    types: Dict[Tuple[str, str, int], str] = {}
    etp_local: Set = set()
    guessed = False
    for k, vs in data.services.items():
        if vs.protocol == "FWM":
            continue
        if k in cluster_ips:
            types[k] = CLUSTER_IP
        elif k in lb:
            types[k] = LOAD_BALANCER
        elif k in ext:
            types[k] = EXTERNAL_IP
        elif (vs.protocol, vs.port) in nodeports:
            types[k] = NODE_PORT
            if (vs.protocol, vs.port) in local_np:
                etp_local.add(k)
        elif have_sets:
            types[k] = CLUSTER_IP  # in no set: not kube-proxy's, or the sets are stale; named unknown below
        else:
            guessed = True
            in_range = NODE_PORT_RANGE[0] <= vs.port <= NODE_PORT_RANGE[1]
            types[k] = NODE_PORT if in_range and vs.ip not in bound else CLUSTER_IP
        if k in local:
            etp_local.add(k)
    return types, etp_local, guessed


def _unknown_key(vs: VirtualServer, typ: str) -> ServiceKey:
    return ServiceKey("", UNKNOWN_NAME, _fmt(None if typ == NODE_PORT else vs.ip, vs.port), vs.protocol)


def _name_with_cluster(fes: List[_Fe], cluster: Cluster) -> None:
    by_ip: Dict[Tuple[str, str, int], Tuple[Service, ServicePort, str]] = {}
    by_np: Dict[Tuple[str, int], Tuple[Service, ServicePort]] = {}
    for svc in cluster.services:
        for p in svc.ports:
            for ip in svc.cluster_ips:
                by_ip[(p.protocol, _norm(ip), p.port)] = (svc, p, CLUSTER_IP)
            for ip in svc.external_ips:
                by_ip.setdefault((p.protocol, _norm(ip), p.port), (svc, p, EXTERNAL_IP))
            for ip in svc.load_balancer_ips:
                by_ip.setdefault((p.protocol, _norm(ip), p.port), (svc, p, LOAD_BALANCER))
            if p.node_port:
                by_np[(p.protocol, p.node_port)] = (svc, p)
    for fe in fes:
        vs = fe.vs
        hit = by_ip.get(vs.key)
        if hit is not None and not (fe.type == NODE_PORT and hit[2] == CLUSTER_IP):
            svc, p, typ = hit
            fe.key, fe.svc, fe.type = svc.key(p), svc, typ
            fe.etp_local = fe.etp_local or (typ != CLUSTER_IP and svc.external_traffic_policy == "Local")
            continue
        np = by_np.get((vs.protocol, vs.port))
        if np is not None and (fe.type == NODE_PORT or hit is None):
            svc, p = np
            fe.key, fe.svc, fe.type = svc.key(p), svc, NODE_PORT
            fe.etp_local = fe.etp_local or svc.external_traffic_policy == "Local"


def _norm(ip: str) -> str:
    try:
        return ip_text(ip)
    except ValueError:
        return ip


def _name_unknown(fes: List[_Fe]) -> None:
    cips = [fe for fe in fes if fe.type == CLUSTER_IP and fe.key is None]
    for fe in cips:
        fe.key = _unknown_key(fe.vs, CLUSTER_IP)
    for fe in fes:
        if fe.key is not None:
            continue
        mine = _rs_set(fe.vs)
        cands = []
        if mine:
            for c in cips:
                if c.vs.protocol != fe.vs.protocol or c.key is None or c.key.name != UNKNOWN_NAME:
                    continue
                if fe.type in (EXTERNAL_IP, LOAD_BALANCER) and c.vs.port != fe.vs.port:
                    continue
                theirs = _rs_set(c.vs)
                if theirs == mine or (fe.etp_local and mine <= theirs):
                    cands.append(c)
        fe.key = cands[0].key if len(cands) == 1 else _unknown_key(fe.vs, fe.type)


def resolve_ipvs(
    parsed: IpvsData,
    node: str,
    source_kind: str = "file",
    only: Optional[str] = None,
    cluster: Optional[Cluster] = None,
) -> NodeDataPlane:
    """Map every IPVS virtual server of one node to its routes (see the module docstring).

    `only` ("ns/name") keeps one Service; `cluster` names virtual servers after the API's Services."""
    data = parsed
    sets = _Sets(data)
    findings: List[Finding] = [Finding(f.severity, f.code, f.message, node) for f in data.findings]
    types, etp_local, guessed = _classify(data, sets)
    detector = _detector(data)
    # Frontends: one per virtual server, node ports grouped by (protocol, port).
    fes: List[_Fe] = []
    nodeports: Dict[Tuple[str, int], _Fe] = {}
    for k, vs in data.services.items():
        typ = types.get(k)
        if typ is None:
            continue
        if typ == NODE_PORT:
            fe = nodeports.get((vs.protocol, vs.port))
            if fe is None:
                fe = nodeports[(vs.protocol, vs.port)] = _Fe(NODE_PORT, [], etp_local=k in etp_local, guessed=guessed)
                fes.append(fe)
            fe.vss.append(vs)
        else:
            fes.append(_Fe(typ, [vs], etp_local=k in etp_local, guessed=guessed))
    if cluster is not None and cluster.services:
        _name_with_cluster(fes, cluster)
        for fe in fes:
            # (Not in a trace: a live one reads only its Service from the API, so every other virtual
            # server would match none — 10,000 warnings on a big node — and none of them is its.)
            if fe.key is None and only is None:
                findings.append(
                    Finding(WARNING, "unknown-virtual-server",
                            f"IPVS virtual server {fe.vs.protocol} {_fmt(fe.vs.ip, fe.vs.port)} matches no Service: "
                            f"stale? ({fe.vs.source}:{fe.vs.line})", node)
                )  # fmt: skip
    _name_unknown(fes)
    if guessed and fes:
        findings.append(
            Finding(INFO, "frontend-type-guessed",
                    "no kube-proxy ipsets in the dumps: frontend types (ClusterIP / NodePort) are guessed; "
                    "add `ipset save` output to know them", node)
        )  # fmt: skip
    if data.fwmark_services:
        findings.append(
            Finding(INFO, "fwmark-virtual-servers",
                    f"{data.fwmark_services} firewall-mark virtual server(s) ignored: kube-proxy does not make them",
                    node)
        )  # fmt: skip
    findings.extend(_stale_iptables(data, node))
    loopback = {(parts[0], parts[1][1]) for parts, _, _ in sets.entries("KUBE-LOOP-BACK") if len(parts) == 3}
    has_loopback = "KUBE-LOOP-BACK" in sets.present

    services: Dict[ServiceKey, List[Frontend]] = {}
    svc_findings: Dict[ServiceKey, List[Finding]] = {}
    health: Dict[ServiceKey, int] = {}
    nodeport_addrs: List[str] = []
    for fe in fes:
        key = fe.key
        assert key is not None
        if only is not None and key.service != only:
            continue
        fl = svc_findings.setdefault(key, [])
        if fe.svc is not None and fe.svc.health_check_node_port:
            health[key] = fe.svc.health_check_node_port
        if fe.type == NODE_PORT:
            for vs in fe.vss:
                if vs.ip not in nodeport_addrs:
                    nodeport_addrs.append(vs.ip)
            per_addr = [
                (vs, _routes(fe, vs, data, sets, detector)) for vs in sorted(fe.vss, key=lambda v: _ipkey(v.ip))
            ]
            sigs = {_route_sig(r) for _, r in per_addr}
            if len(sigs) == 1:
                services.setdefault(key, []).append(Frontend(NODE_PORT, None, fe.vs.port, node, per_addr[0][1]))
            else:
                for vs, routes in per_addr:
                    services.setdefault(key, []).append(Frontend(NODE_PORT, vs.ip, vs.port, node, routes))
                fl.append(Finding(WARNING, "nodeport-addresses-disagree",
                                  f"node port {fe.vs.port}/{fe.vs.protocol}: the node's addresses have different real "
                                  "servers (a sync in progress, or stale virtual servers)", node))  # fmt: skip
        else:
            services.setdefault(key, []).append(
                Frontend(fe.type, fe.vs.ip, fe.vs.port, node, _routes(fe, fe.vs, data, sets, detector))
            )
        fl.extend(_vs_findings(fe, node, has_loopback, loopback))
    out = []
    for key in sorted(services):
        frontends = sorted(services[key], key=lambda f: (FRONTEND_ORDER.get(f.type, 9), f.ip or "", f.port))
        out.append(ServiceRules(key, tuple(frontends), health.get(key), tuple(_dedupe(svc_findings.get(key, ())))))
    backend = next((d.backend for d in data.iptables if d.backend), None)
    info = NodeInfo(node, source_kind, "ipvs", backend)
    return NodeDataPlane(info, tuple(out), tuple(findings), detector, tuple(nodeport_addrs))


def _ipkey(ip: str):
    try:
        a = ipaddress.ip_address(ip)
        return (a.version, int(a))
    except ValueError:
        return (9, 0)


def _route_sig(routes) -> tuple:
    return tuple(
        (r.source, r.verdict, tuple(sorted((b.ip, b.port, round(b.probability, 9)) for b in r.backends)), r.affinity)
        for r in routes
    )


def _vs_findings(fe: _Fe, node: str, has_loopback: bool, loopback: Set[Tuple[str, int]]) -> List[Finding]:
    out = []
    where = f"{fe.type} {_fmt(None if fe.type == NODE_PORT else fe.vs.ip, fe.vs.port)}"
    vs = fe.vs
    sched = vs.scheduler
    if sched is not None and sched not in WEIGHT_SCHEDULERS:
        how = "a hash of the connection's addresses" if sched in HASH_SCHEDULERS else "the real servers' load"
        out.append(Finding(INFO, "share-depends-on-load",
                           f"{where}: IPVS scheduler {sched} picks by {how}; shares shown are weight-proportional "
                           "(nominal)", node))  # fmt: skip
    if not vs.weights_known:
        out.append(Finding(INFO, "weights-unknown",
                           f"{where}: this ipvsadm listing shows no scheduler or weights; shares assume equal "
                           "weights", node))  # fmt: skip
    terminating = sorted({_fmt(r.ip, r.port) for v in fe.vss for r in v.reals if r.weight == 0})
    if terminating:
        out.append(Finding(INFO, "terminating-real-servers",
                           f"{where}: real server(s) {', '.join(terminating)} have weight 0 (terminating, draining "
                           "existing connections) and get no new connections", node))  # fmt: skip
    if fe.etp_local and has_loopback and fe.type != CLUSTER_IP:
        reals = [(r.ip, r.port) for r in _usable(vs)]
        if reals and not any(r in loopback for r in reals):
            out.append(Finding(WARNING, "etp-local-no-local-endpoints",
                               f"{where}: externalTrafficPolicy Local but no endpoint on node {node}; IPVS sends "
                               "external clients to remote endpoints without SNAT, so their replies are lost",
                               node))  # fmt: skip
    return out


def _stale_iptables(data: IpvsData, node: str) -> List[Finding]:
    out = []
    for dump in data.iptables:
        nat = dump.tables.get("nat")
        if nat is None:
            continue
        stale = sorted(c for c, rules in nat.chains.items() if c.startswith(("KUBE-SVC-", "KUBE-SEP-")) and rules)
        if stale:
            out.append(Finding(WARNING, "stale-iptables-mode-rules",
                               f"{len(stale)} iptables-mode chain(s) ({stale[0]}, ...) left in an IPVS-mode node; "
                               f"ignored ({dump.source})", node))  # fmt: skip
    return out


def _dedupe(fs: Iterable[Finding]) -> List[Finding]:
    seen: set = set()
    out = []
    for f in fs:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out
