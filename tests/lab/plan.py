"""Turn the tool's ServiceMap into a lab and a list of probes, and judge what the probes saw.

Clients (each probes from its own namespace and source address):
- `node`: the node itself (kube-proxy: source type LOCAL), a `cluster` client. Probes node ports on
  the node's address, and in iptables mode also on 127.0.0.1 (kube-proxy sets route_localnet).
- `pod`: a pod inside the pod CIDR (expected.json's `pod_cidr`) that is no endpoint, a `cluster` client.
- `external`: a client outside the cluster, on the node's subnet. For every load-balancer source
  range the tool reports, one more external source address inside that range.

Which route applies to a client: a source-range route whose CIDR holds the client's address, else
`other` (when the frontend has source-range routes); else `cluster` for node and pod and `external`
for the external client, when reported; else `any`.

What each probe must show (`judge`): a `forward` route connects every time, only to the reported
backends, spread as the reported probabilities say (exact binomial test, stats.py), or with
ClientIP affinity all on one backend; `reject` is refused every time; `drop` times out every time.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from tests.lab.lab import Lab, LabSpec, ProbeResult, ProbeTarget
from tests.lab.rules import IPTABLES
from tests.lab.stats import ALPHA, shares_by_backend, spread_problems

N_FORWARD = 300  # new connections per forward route without affinity
N_AFFINITY = 60  # with ClientIP affinity (all must land on one backend)
N_REFUSED = 20  # reject routes
N_DROPPED = 8  # drop routes: all in flight at once, so one timeout's worth of time
MAX_TIMEOUTS = 5  # a forward/reject route that times out stops after this many

NODE, POD, EXTERNAL = "node", "pod", "external"
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Client:
    name: str
    kind: str  # node | pod | external
    ns_role: str  # node | pod | client (resolved to a namespace by the Lab)
    ip: str  # the source address kube-proxy's rules see
    bind: bool = False  # bind the source address (the client namespace has several)


@dataclass
class Case:
    service: str
    frontend: Dict[str, Any]
    client: Client
    dst: str
    port: int
    route: Optional[Dict[str, Any]]
    target: Optional[ProbeTarget] = None

    @property
    def label(self) -> str:
        fe = self.frontend
        where = fe["ip"] if fe["ip"] else "node port"
        return f"{self.service} {fe['type']} {where}:{fe['port']} <- {self.client.name} to {self.dst}:{self.port}"


@dataclass
class Plan:
    spec: LabSpec
    cases: List[Case] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # what was not probed, and why


def service_key(svc: Dict[str, Any]) -> str:
    base = f"{svc['namespace']}/{svc['name']}"
    return (f"{base}:{svc['portName']}" if svc.get("portName") else base) + f"/{svc['protocol']}"


def _free_host(cidr: str, used: Set[str], skip: int = 200) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    hosts = net.num_addresses - 2
    for offset in list(range(min(skip, hosts), hosts + 1)) + list(range(1, min(skip, hosts))):
        ip = str(net.network_address + offset)
        if ip not in used:
            return ip
    raise ValueError(f"no free address in {cidr}")


def _is_cidr(source: str) -> bool:
    return "/" in source


def select_route(routes: List[Dict[str, Any]], client: Client) -> Optional[Dict[str, Any]]:
    src = ipaddress.ip_address(client.ip)
    if any(_is_cidr(r["from"]) or r["from"] == "other" for r in routes):
        for r in routes:
            if _is_cidr(r["from"]) and src in ipaddress.ip_network(r["from"], strict=False):
                return r
        for r in routes:
            if r["from"] == "other":
                return r
    by_from = {r["from"]: r for r in routes}
    if client.kind in (NODE, POD) and "cluster" in by_from:
        return by_from["cluster"]
    if client.kind == EXTERNAL and "external" in by_from:
        return by_from["external"]
    return by_from.get("any")


def make_plan(service_map: Dict[str, Any], expected: Dict[str, Any], rules: str, mode: str, node: str) -> Plan:
    """The lab (pods for every backend the tool or the fixture names, frontend IPs routed) and the
    probes. `mode` is the dump's format (iptables | nftables)."""
    services = list(service_map.get("services") or [])
    pods: Dict[str, Set[int]] = {}
    frontend_ips: Set[str] = set()
    cidrs: Set[str] = set()

    def add_pod(ip: str, port: int) -> None:
        pods.setdefault(ip, set()).add(int(port))

    for svc in services:
        for fe in svc["frontends"]:
            if fe.get("node") != node:
                continue
            if fe.get("ip"):
                frontend_ips.add(fe["ip"])
            for r in fe["routes"]:
                if _is_cidr(r["from"]):
                    cidrs.add(r["from"])
                for b in r["backends"]:
                    add_pod(b["ip"], b["port"])
    # The fixture's truth too: a backend the tool missed still answers, and is caught as unreported.
    for svc in expected.get("services", []):
        for e in list(svc.get("endpoints", [])) + list(svc.get("external_endpoints", [])):
            add_pod(e["ip"], e["port"])
        for fe in svc.get("frontends", []):
            if fe.get("ip"):
                frontend_ips.add(fe["ip"])

    node_ip, client_ip = "192.168.0.2", "192.168.0.10"
    used = set(pods) | frontend_ips | {node_ip, client_ip}
    pod_client_ip = _free_host(expected["pod_cidr"], used)
    used.add(pod_client_ip)
    extra: Dict[str, str] = {}
    for cidr in sorted(cidrs):
        extra[cidr] = _free_host(cidr, used, skip=1)
        used.add(extra[cidr])

    spec = LabSpec(
        rules=rules,
        pods=pods,
        frontend_ips=sorted(frontend_ips),
        pod_client_ip=pod_client_ip,
        node_ip=node_ip,
        client_ip=client_ip,
        client_extra_ips=sorted(extra.values()),
    )
    plan = Plan(spec)

    node_c = Client("node", NODE, "node", node_ip)
    node_lo = Client("node (localhost)", NODE, "node", LOCALHOST)
    pod_c = Client(f"pod {pod_client_ip}", POD, "pod", pod_client_ip)
    ext_c = Client(f"external {client_ip}", EXTERNAL, "client", client_ip, bind=True)
    if any(ipaddress.ip_address(client_ip) in ipaddress.ip_network(c, strict=False) for c in cidrs):
        plan.notes.append(f"external client {client_ip} lies in a source range: `other` routes not probed")
    if mode != IPTABLES:
        plan.notes.append(
            f"{mode}: node ports not probed on {LOCALHOST} (only iptables mode serves localhost node ports)"
        )
    range_clients = {c: Client(f"external {ip} (in {c})", EXTERNAL, "client", ip, bind=True) for c, ip in extra.items()}

    for svc in services:
        key = service_key(svc)
        for fe in svc["frontends"]:
            if fe.get("node") != node:
                continue
            if svc["protocol"] != "TCP":
                plan.notes.append(f"{key} {fe['type']}: {svc['protocol']} is not probed (the lab speaks TCP)")
                continue
            port = int(fe["port"])
            dsts: List[Tuple[Client, str]] = []
            if fe["ip"] is None:  # a node port, on the node's addresses
                dsts += [(node_c, node_ip)]
                if mode == IPTABLES:
                    dsts += [(node_lo, LOCALHOST)]
                dsts += [(pod_c, node_ip), (ext_c, node_ip)]
            else:
                dsts += [(node_c, fe["ip"]), (pod_c, fe["ip"]), (ext_c, fe["ip"])]
            for r in fe["routes"]:
                if _is_cidr(r["from"]):
                    dsts.append((range_clients[r["from"]], fe["ip"] or node_ip))
            untouched = _untranslated_clients(svc, fe)
            for client, dst in dsts:
                route = select_route(fe["routes"], client)
                if client.kind in untouched:
                    # The tool says no kube-proxy rule touches this client's connections: they are
                    # routed as they are, and in the lab the void namespace swallows them (a timeout).
                    route = {"from": client.kind, "verdict": "drop", "backends": [], "affinity": None}
                case = Case(key, fe, client, dst, port, route)
                if route is not None:
                    case.target = _target(case, len(plan.cases))
                plan.cases.append(case)
    return plan


_UNTRANSLATED_WHO = {"the node itself": NODE, "pods": POD, "external clients": EXTERNAL}


def _untranslated_clients(svc: Dict[str, Any], fe: Dict[str, Any]) -> Set[str]:
    """Clients the tool reports (finding `not-translated`) as passing this frontend untranslated."""
    where = f"{fe['ip']}:{fe['port']}" if fe["ip"] else f"node port {fe['port']}"
    out: Set[str] = set()
    for f in svc.get("findings", []):
        if f.get("code") == "not-translated" and f["message"].startswith(f"{fe['type']} {where}:"):
            out |= {kind for words, kind in _UNTRANSLATED_WHO.items() if words in f["message"]}
    return out


def _target(case: Case, index: int) -> ProbeTarget:
    route = case.route or {}
    verdict = route.get("verdict")
    if verdict == "forward":
        count = N_AFFINITY if route.get("affinity") else N_FORWARD
    elif verdict == "reject":
        count = N_REFUSED
    else:
        count = N_DROPPED
    return ProbeTarget(
        id=f"c{index}",
        ip=case.dst,
        port=case.port,
        count=count,
        src=case.client.ip if case.client.bind else None,
        max_timeouts=N_DROPPED if verdict == "drop" else MAX_TIMEOUTS,
        # Affinity: one attempt in flight per client and service, so the first choice sticks.
        group=case.service if route.get("affinity") else None,
    )


def judge(case: Case, res: Optional[ProbeResult], alpha: float = ALPHA) -> List[str]:
    """Problems (empty: the packets agree with the tool) for one probe."""
    route = case.route
    if route is None:
        froms = [r["from"] for r in case.frontend["routes"]]
        return [f"the tool reports no route for this client (routes from {froms})"]
    if res is None:
        return ["not probed"]
    verdict = route["verdict"]
    seen = res.summary()
    if verdict == "forward":
        problems = []
        if res.failed:
            problems.append(f"forward route, but {res.failed} of {res.attempts} connections failed ({seen})")
        shares = shares_by_backend(route["backends"])
        stray = sorted(set(res.answers) - set(shares))
        if stray:
            problems.append(
                f"answered by backends the tool did not report: {stray} (reported {sorted(shares)}; {seen})"
            )
        if not res.answered:
            return problems or [f"no connection answered ({seen})"]
        if route.get("affinity"):
            if len(res.answers) > 1:
                problems.append(
                    f"ClientIP affinity reported, but one client reached {len(res.answers)} backends ({seen})"
                )
        elif not stray:
            problems += [f"spread: {p} ({seen})" for p in spread_problems(res.answers, shares, alpha)]
        return problems
    if verdict == "reject":
        if res.refused != res.attempts or res.attempts == 0:
            return [f"reject route, but not every connection was refused ({seen})"]
        return []
    if verdict == "drop":
        if res.timeout != res.attempts or res.attempts == 0:
            return [f"drop route, but not every connection timed out ({seen})"]
        return []
    return [f"unknown verdict {verdict!r}"]


def namespace_for(lab: Lab, role: str) -> str:
    return {"node": lab.node_ns, "pod": lab.pod_client_ns, "client": lab.client_ns}[role]


def run_plan(lab: Lab, plan: Plan) -> List[Tuple[Case, Optional[ProbeResult], List[str]]]:
    """Probe every case (one prober run per client namespace) and judge each."""
    results: Dict[str, ProbeResult] = {}
    roles: Iterable[str] = sorted({c.client.ns_role for c in plan.cases if c.target is not None})
    for role in roles:
        targets = [c.target for c in plan.cases if c.target is not None and c.client.ns_role == role]
        results.update(lab.probe(namespace_for(lab, role), targets))
    out = []
    for case in plan.cases:
        res = results.get(case.target.id) if case.target else None
        out.append((case, res, judge(case, res)))
    return out
