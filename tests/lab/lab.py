"""A Kubernetes node built from Linux network namespaces, with real kube-proxy rules loaded.

    with Lab(LabSpec(rules=dump_text, pods={"10.180.0.1": {80}}, frontend_ips=["172.30.0.41"],
                     pod_client_ip="10.0.0.200")) as lab:
        results = lab.probe(lab.node_ns, [ProbeTarget("a", "172.30.0.41", 80, count=300)])

Topology (every namespace and interface name starts with the lab's unique prefix; nothing is ever
connected to the root namespace, and no namespace has a route out of the lab):

    client ns ── veth ── node ns ── veth ── pod ns (one per endpoint IP, listener on its ports)
    (external)      192.168.0.2/24  │ ├─ veth ── pod-client ns (a pod in the pod CIDR, no listener)
                                    │ └─ veth ── void ns (swallows frontend IPs nobody DNATs)
                                    └─ kube-proxy rules (iptables-nft or nft), ip_forward=1

- node ns: the node's own address (`node_ip`, 192.168.0.2 by default, which nft fixtures list in
  nodeport-ips) sits on its side of the client veth. Each pod veth's node side has 169.254.1.1/32
  and a /32 route to the pod. Frontend IPs (ClusterIPs, external IPs, LB IPs) are routed to the void
  namespace (forwarding off: it silently discards what it is not the destination of), so the node's
  own connections to them have a route, as on a real node, and a packet the rules do not DNAT
  vanishes (the client sees a timeout) as it would past a real node's gateway, but stays in the lab.
- pod ns: the pod IP/32, default route via 169.254.1.1 (the node); runs `server.py`.
- client ns: `client_ip`/24 on the node's subnet plus any `client_extra_ips` (/32, for
  load-balancer source ranges); /32 routes via the node to each frontend IP only.

Names: namespaces `svl<pid>-<n>-<role>` (n counts Labs in this process), interfaces
`s<pid base36><n base36><role>` (at most 15 characters); interfaces are created inside the lab's
namespaces, never in the root namespace. Commands go through a host object (host.py: `LocalHost`),
so a multi-node lab can drive remote nodes the same way.

The Lab owns everything it creates and removes it in `close()` (called by `__exit__`, by a
weakref finalizer at garbage collection or interpreter exit, and after a failed build), also when
interrupted: processes are killed first, then namespaces deleted (which deletes their interfaces
and rules). `reap_stale()` removes what a killed earlier run left behind.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import select
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from tests.lab.host import CommandError, LocalHost
from tests.lab.rules import IPTABLES, detect_format, iptables_nft_restore, load_rules

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.py"
PROBE = HERE / "probe.py"

NS_PREFIX = "svl"
_NS_RE = re.compile(r"^svl(\d+)-\d+-")
_counter = itertools.count(1)

GATEWAY = "169.254.1.1"  # the node side of every pod veth, as pods see their default gateway
VOID = "169.254.2.2"  # the void namespace's address: the node's next hop for frontend IPs
MAX_IFNAME = 15


def lab_skip_reason(need: Iterable[str] = ("ip",)) -> Optional[str]:
    """Why a lab cannot run here (None if it can). `need`: any of "ip", "iptables", "nft"."""
    if sys.platform != "linux":
        return "lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, iptables, nft)"
    host = LocalHost()
    for what in need:
        if what == "ip" and not host.has("ip"):
            return "lab needs `ip` (iproute2)"
        if what == "iptables" and iptables_nft_restore(host) is None:
            return "lab needs iptables-restore with the nf_tables backend (iptables-nft)"
        if what == "nft" and not host.has("nft"):
            return "lab needs `nft` (nftables)"
    return None


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_netns(host: LocalHost) -> List[str]:
    out = host.run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_netns_pids(host: LocalHost, ns: str) -> None:
    out = host.run(["ip", "netns", "pids", ns], check=False).stdout
    for tok in out.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


def _delete_netns(host: LocalHost, ns: str) -> None:
    _kill_netns_pids(host, ns)
    host.run(["ip", "netns", "del", ns], check=False)


def reap_stale(host: Optional[LocalHost] = None) -> List[str]:
    """Delete lab namespaces whose owning test process (the pid in the name) is gone."""
    host = host or LocalHost()
    reaped = []
    for ns in list_netns(host):
        m = _NS_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _delete_netns(host, ns)
            reaped.append(ns)
    return reaped


@dataclass
class LabSpec:
    """What to build. `rules`: iptables-save or nft text ("" loads none). `pods` maps each endpoint IP
    to the TCP ports its pod listens on."""

    rules: str
    pods: Mapping[str, Iterable[int]] = field(default_factory=dict)
    frontend_ips: Sequence[str] = ()
    pod_client_ip: Optional[str] = None
    node_ip: str = "192.168.0.2"
    client_ip: str = "192.168.0.10"
    client_extra_ips: Sequence[str] = ()
    prefix_len: int = 24  # of the node/client subnet


@dataclass
class ProbeTarget:
    id: str
    ip: str
    port: int
    count: int = 300
    src: Optional[str] = None
    max_timeouts: Optional[int] = None
    group: Optional[str] = None  # targets of one group: one attempt in flight at a time (affinity)

    def as_json(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "ip": self.ip,
            "port": self.port,
            "count": self.count,
            "src": self.src,
            "max_timeouts": self.max_timeouts,
            "group": self.group,
        }


@dataclass
class ProbeResult:
    attempts: int
    answers: Dict[str, int]  # "ip:port" of the pod that answered -> connections
    peers: Dict[str, int]  # source address the pods saw -> connections
    refused: int
    timeout: int
    unreachable: int
    skipped: int
    other: Dict[str, int]

    @property
    def answered(self) -> int:
        return sum(self.answers.values())

    @property
    def failed(self) -> int:
        return self.refused + self.timeout + self.unreachable + sum(self.other.values())

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.answers.items())]
        for name in ("refused", "timeout", "unreachable", "skipped"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        parts += [f"{k}={v}" for k, v in sorted(self.other.items())]
        return f"{self.attempts} attempts: " + (", ".join(parts) or "nothing")


class _Resources:
    """What a Lab created, kept apart from the Lab so a finalizer can release it."""

    def __init__(self, host: LocalHost):
        self.host = host
        self.namespaces: List[str] = []
        self.processes: List[Any] = []
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        # A ^C during cleanup would leave half of it behind: ignore SIGINT until done.
        old = None
        if threading.current_thread() is threading.main_thread():
            try:
                old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            except (ValueError, OSError):
                old = None
        try:
            for proc in self.processes:
                try:
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait(timeout=5)
                except Exception:  # noqa: BLE001 - keep cleaning up
                    pass
                for stream in (proc.stdout, proc.stderr):
                    try:
                        if stream:
                            stream.close()
                    except Exception:  # noqa: BLE001
                        pass
            for ns in reversed(self.namespaces):
                try:
                    _delete_netns(self.host, ns)
                except Exception:  # noqa: BLE001
                    pass
            self.released = True
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)


class Owner:
    """What every lab shares: it owns its resources (`_res`, released by `_finalizer` — also at garbage
    collection and interpreter exit), builds on `with`, and releases everything on exit or on a failed
    build. Subclasses set `_res` and `_finalizer` in __init__ and define `build()`."""

    _res: _Resources
    _finalizer: Any

    def build(self) -> None:  # pragma: no cover - every lab defines it
        raise NotImplementedError

    def __enter__(self):
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()

    @property
    def namespaces(self) -> List[str]:
        return list(self._res.namespaces)

    @property
    def pids(self) -> List[int]:
        return [p.pid for p in self._res.processes]


class Lab(Owner):
    """One node with its pods and an external client, in network namespaces. A context manager."""

    def __init__(self, spec: LabSpec, host: Optional[LocalHost] = None):
        self.spec = spec
        self.host = host or LocalHost()
        self.id = f"{NS_PREFIX}{os.getpid()}-{next(_counter)}"
        # Interface names must fit IFNAMSIZ (15): a shorter form of the same unique prefix.
        self._if = f"s{_b36(os.getpid())}{_b36(int(self.id.rsplit('-', 1)[1]))}"
        self.node_ns = f"{self.id}-node"
        self.client_ns = f"{self.id}-client"
        self.void_ns = f"{self.id}-void"
        self.pod_client_ns: Optional[str] = f"{self.id}-podcl" if spec.pod_client_ip else None
        self.pod_ns: Dict[str, str] = {}
        self.servers: Dict[str, Any] = {}  # pod ip -> Popen
        self.mode = detect_format(spec.rules) if spec.rules.strip() else None
        self._res = _Resources(self.host)
        self._finalizer = weakref.finalize(self, _Resources.release, self._res)

    # -- building ----------------------------------------------------------------------------

    def ifname(self, role: str) -> str:
        name = f"{self._if}{role}"
        if len(name) > MAX_IFNAME:
            raise ValueError(f"interface name {name!r} longer than {MAX_IFNAME}")
        return name

    def _ip(self, ns: str, *args: str) -> None:
        self.host.run(["ip", "-n", ns, *args])

    def _sysctl(self, ns: str, *settings: str) -> None:
        self.host.run(["sysctl", "-q", "-w", *settings], netns=ns)

    def _add_netns(self, ns: str) -> None:
        self.host.run(["ip", "netns", "add", ns])
        self._res.namespaces.append(ns)
        self._ip(ns, "link", "set", "lo", "up")

    def build(self) -> None:
        reap_stale(self.host)
        s = self.spec
        node = self.node_ns
        self._add_netns(node)
        self._sysctl(
            node,
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            # REJECT answers forwarded clients with ICMP port-unreachable, which the kernel rate-limits
            # per destination (about one a second after a burst of 6): a probe of a reject route
            # would see mostly timeouts. Unlimited here so every refused attempt is seen as refused.
            "net.ipv4.icmp_ratelimit=0",
        )
        if self.mode == IPTABLES:
            # kube-proxy's iptables mode sets this so node ports answer on 127.0.0.1.
            self._sysctl(node, "net.ipv4.conf.all.route_localnet=1")

        # External client, on the node's subnet.
        self._add_netns(self.client_ns)
        n_cl, cl = self.ifname("ncl"), self.ifname("cl")
        self._ip(node, "link", "add", n_cl, "type", "veth", "peer", "name", cl, "netns", self.client_ns)
        self._ip(node, "addr", "add", f"{s.node_ip}/{s.prefix_len}", "dev", n_cl)
        self._ip(node, "link", "set", n_cl, "up")
        self._ip(self.client_ns, "addr", "add", f"{s.client_ip}/{s.prefix_len}", "dev", cl)
        self._ip(self.client_ns, "link", "set", cl, "up")
        for extra in s.client_extra_ips:
            self._ip(self.client_ns, "addr", "add", f"{extra}/32", "dev", cl)
            self._ip(node, "route", "add", f"{extra}/32", "via", s.client_ip, "dev", n_cl)

        # Frontend IPs: routed from the node into the void, and from the client via the node.
        self._add_netns(self.void_ns)
        self._sysctl(self.void_ns, "net.ipv4.ip_forward=0")
        n_vd, vd = self.ifname("nvd"), self.ifname("vd")
        self._ip(node, "link", "add", n_vd, "type", "veth", "peer", "name", vd, "netns", self.void_ns)
        self._ip(node, "link", "set", n_vd, "up")
        self._ip(self.void_ns, "addr", "add", f"{VOID}/32", "dev", vd)
        self._ip(self.void_ns, "link", "set", vd, "up")
        subnet = ipaddress.ip_network(f"{s.node_ip}/{s.prefix_len}", strict=False)
        for ip in sorted(set(s.frontend_ips), key=ipaddress.ip_address):
            self._ip(node, "route", "add", f"{ip}/32", "via", VOID, "dev", n_vd, "onlink", "src", s.node_ip)
            if ipaddress.ip_address(ip) not in subnet:
                self._ip(self.client_ns, "route", "add", f"{ip}/32", "via", s.node_ip, "dev", cl)

        # Pods (and the pod-CIDR client, a pod without a listener).
        pods = sorted(s.pods, key=ipaddress.ip_address)
        for i, ip in enumerate(pods):
            self.pod_ns[ip] = f"{self.id}-pod{i}"
            self._add_pod(self.pod_ns[ip], ip, f"p{i}")
        if s.pod_client_ip and self.pod_client_ns:
            self._add_pod(self.pod_client_ns, s.pod_client_ip, "pc")

        if self.mode:
            load_rules(self.host, node, s.rules)

        for ip in pods:
            self._start_server(ip, sorted({int(p) for p in s.pods[ip]}))
        self._wait_servers_ready(timeout=20.0)

    def _add_pod(self, ns: str, ip: str, role: str) -> None:
        self._add_netns(ns)
        outer, inner = self.ifname(f"n{role}"), self.ifname(f"e{role}")
        self._ip(self.node_ns, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
        self._ip(self.node_ns, "addr", "add", f"{GATEWAY}/32", "dev", outer)
        self._ip(self.node_ns, "link", "set", outer, "up")
        self._ip(self.node_ns, "route", "add", f"{ip}/32", "dev", outer)
        self._ip(ns, "addr", "add", f"{ip}/32", "dev", inner)
        self._ip(ns, "link", "set", inner, "up")
        self._ip(ns, "route", "add", GATEWAY, "dev", inner, "scope", "link")
        self._ip(ns, "route", "add", "default", "via", GATEWAY, "dev", inner)

    def _start_server(self, ip: str, ports: List[int]) -> None:
        argv = [
            sys.executable,
            str(SERVER),
            "--ports",
            ",".join(map(str, ports)),
            "--parent-pid",
            str(os.getpid()),
        ]
        proc = self.host.spawn(argv, netns=self.pod_ns[ip])
        self._res.processes.append(proc)
        self.servers[ip] = proc

    def _wait_servers_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = dict(self.servers)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"pod listeners not ready: {sorted(waiting)}")
            streams = {p.stdout: ip for ip, p in waiting.items()}
            ready, _, _ = select.select(list(streams), [], [], min(left, 1.0))
            for stream in ready:
                ip = streams[stream]
                line = stream.readline()
                if line.strip() == "ready":
                    del waiting[ip]
                else:
                    proc = waiting[ip]
                    proc.wait(timeout=5)
                    raise RuntimeError(f"pod listener {ip} failed: {proc.stderr.read()}")

    # -- probing -----------------------------------------------------------------------------

    def probe(
        self,
        ns: str,
        targets: Sequence[ProbeTarget],
        timeout: float = 1.5,
        parallel: int = 32,
    ) -> Dict[str, ProbeResult]:
        """Open each target's `count` new connections from namespace `ns` (see probe.py)."""
        if ns not in self._res.namespaces:
            raise ValueError(f"{ns} is not a namespace of this lab")
        if not targets:
            return {}
        spec = {"timeout": timeout, "parallel": parallel, "targets": [t.as_json() for t in targets]}
        attempts = sum(t.count for t in targets)
        bound = 30.0 + timeout * (attempts / parallel + 2)  # a generous hard stop, never unbounded
        try:
            out = self.host.run([sys.executable, str(PROBE), json.dumps(spec)], netns=ns, timeout=bound)
        except CommandError as e:
            raise RuntimeError(f"prober failed in {ns}: {e.stderr}") from e
        raw = json.loads(out.stdout)["results"]
        return {tid: ProbeResult(**r) for tid, r in raw.items()}
