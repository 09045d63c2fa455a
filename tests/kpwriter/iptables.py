"""kube-proxy's iptables proxier (v1.29+ shape), as a text writer.

`write_iptables(spec)` returns what `syncProxyRules` feeds `iptables-restore --noflush` on a full
sync (pkg/proxy/iptables/proxier.go): a ``*filter`` and a ``*nat`` section, chains declared and rules
written in the proxier's order. kube-proxy walks its services in Go map order (random); here they
come in spec order. `sort_iptables_rules` is the order-independent form kube-proxy's own unit tests
compare (proxier_test.go ``sortIPTablesRules``), which is what the fixtures'
``kube-proxy-restore-input.txt`` files hold.

`iptables_setup_text()` is the rest of what a node shows: the ``KUBE-PROXY-CANARY`` chains
(``iptables.Monitor``) and the jump rules kube-proxy inserts into the built-in chains with
``iptables -I`` (``iptablesJumpChains`` + ``iptablesKubeletJumpChains``), written as restore input
with the rules already in their final order, for loading into an empty network namespace before the
proxier's text.

Options (keyword arguments, or a ``kube_proxy`` dict in the spec; defaults are the unit tests'
fake proxier, `REAL_NODE` the flags a real node's kube-proxy ends up with):

- ``node_ip``: the node's IP (a LoadBalancer source range containing it allows the LB IPs as sources)
- ``localhost_nodeports`` (True): ``--iptables-localhost-nodeports``
- ``nfacct`` (True): the nfacct counters exist (kube-proxy then adds ``-m nfacct`` matches)
- ``random_fully`` (False): iptables supports ``--random-fully`` (real iptables does)
- ``masquerade_all`` (False), ``masquerade_mark`` ("0x4000"; real kube-proxy formats 1<<14 with
  ``%#08x``, i.e. "0x004000", which iptables prints back as 0x4000)
- ``conntrack_tcp_liberal`` (False): nf_conntrack_tcp_be_liberal set, no INVALID drop rule
- ``nodeport_addresses`` (None = all local addresses) and ``nodeport_ips`` (the node's IPs in them)
- ``large_cluster_mode`` (None = automatic, more than 1000 endpoints): comments left out of SEP rules
- a partial sync: ``unchanged_services`` ("ns/name" whose SVC/SVL/EXT/FW/SEP chains are left out, as
  kube-proxy leaves out services that did not change since the last sync) and ``deleted_chains``
  (stale service chains to flush and ``-X``)
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Any, Dict, List, Optional, Tuple

from .model import ServicePort, categorize_endpoints, cidr_contains, merged_options, service_ports
from .names import ext_chain, fw_chain, sep_chain, svc_chain, svl_chain

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"

NFACCT_CT_INVALID = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NP = "localhost_nps_accepted_pkts"

LARGE_CLUSTER_THRESHOLD = 1000

DEFAULTS: Dict[str, Any] = {
    "node_ip": None,
    "localhost_nodeports": True,
    "nfacct": True,
    "random_fully": False,
    "masquerade_all": False,
    "masquerade_mark": "0x4000",
    "conntrack_tcp_liberal": False,
    "nodeport_addresses": None,
    "nodeport_ips": None,
    "large_cluster_mode": None,
    "unchanged_services": (),
    "deleted_chains": (),
}

#: What kube-proxy on a real node runs with, where the nfacct match is not available (as on this
#: machine's kernel): kube-proxy then logs the failure and writes no ``-m nfacct`` matches.
REAL_NODE: Dict[str, Any] = {
    "random_fully": True,
    "masquerade_mark": "0x004000",
    "nfacct": False,
}

_NEW = ["-m", "conntrack", "--ctstate", "NEW"]

# (table, chain kube-proxy owns, built-in chain, comment, extra args) — iptablesJumpChains.
JUMP_CHAINS: List[Tuple[str, str, str, str, List[str]]] = [
    ("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", []),
    ("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", _NEW),
    ("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", _NEW),
    ("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", []),
    ("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", []),
    ("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals", []),
    ("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules", []),
    # iptablesKubeletJumpChains (no comment)
    ("filter", KUBE_FIREWALL, "INPUT", "", []),
    ("filter", KUBE_FIREWALL, "OUTPUT", "", []),
]

BUILTIN_CHAINS = {
    "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    "filter": ["INPUT", "FORWARD", "OUTPUT"],
    "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
}


def _q(text: str) -> str:
    """A comment as kube-proxy writes it: always double-quoted (fmt `"%s ..."`)."""
    return f'"{text}"'


class _Buf:
    def __init__(self) -> None:
        self.lines: List[str] = []

    def write(self, *parts: Any) -> None:
        words: List[str] = []
        for p in parts:
            if isinstance(p, (list, tuple)):
                words.extend(str(x) for x in p)
            else:
                words.append(str(p))
        self.lines.append(" ".join(words))

    def chain(self, name: str) -> None:
        self.lines.append(f":{name} - [0:0]")


def _probability(n: int) -> str:
    return "%0.10f" % (1.0 / n)


def _options(spec: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    defaults = dict(DEFAULTS)
    if spec.get("era") == "v128":
        defaults["nfacct"] = False  # the v1.28 proxier had no nfacct counters
    return merged_options(spec, defaults, overrides)


def write_iptables(spec: Dict[str, Any], **options: Any) -> str:
    """The iptables-restore input of one full kube-proxy sync for the node `spec` describes."""
    opts = _options(spec, options)
    sps = service_ports(spec)
    ipv6 = _family_is_v6(spec, sps)
    pod_cidr: Optional[str] = spec.get("pod_cidr")
    detector = bool(pod_cidr)
    mark = opts["masquerade_mark"]
    nodeport_addresses = opts["nodeport_addresses"]
    match_all = not nodeport_addresses
    localhost_nodeports = bool(opts["localhost_nodeports"]) and not ipv6
    if not match_all and not any(cidr_contains(c, "127.0.0.1") for c in nodeport_addresses):
        localhost_nodeports = False
    nfacct = bool(opts["nfacct"])
    large = opts["large_cluster_mode"]
    if large is None:
        large = sum(len(sp.endpoints) for sp in sps) > LARGE_CLUSTER_THRESHOLD

    filter_chains, filter_rules, nat_chains, nat_rules = _Buf(), _Buf(), _Buf(), _Buf()
    for c in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL):
        filter_chains.chain(c)
    for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ):
        nat_chains.chain(c)

    nat_rules.write("-A", KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    nat_rules.write("-A", KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    masq = ["-A", KUBE_POSTROUTING, "-m", "comment", "--comment",
            _q("kubernetes service traffic requiring SNAT"), "-j", "MASQUERADE"]
    if opts["random_fully"]:
        masq.append("--random-fully")
    nat_rules.write(masq)
    nat_rules.write("-A", KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)

    if not ipv6 and localhost_nodeports:
        filter_chains.chain(KUBE_FIREWALL)
        filter_rules.write(
            "-A", KUBE_FIREWALL, "-m", "comment", "--comment", _q("block incoming localnet connections"),
            "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
            "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP",
        )

    def svc_comment(args: List[str], text: str) -> List[str]:
        return args if large else args + ["-m", "comment", "--comment", text]

    unchanged = set(opts["unchanged_services"] or ())
    for sp in sps:
        _write_service(sp, opts, filter_rules, nat_chains, nat_rules, pod_cidr, detector,
                       localhost_nodeports and nfacct and not ipv6, svc_comment,
                       skip_chains=f"{sp.namespace}/{sp.name}" in unchanged)

    for chain in opts["deleted_chains"] or ():
        nat_chains.chain(chain)
        nat_rules.write("-X", chain)

    if match_all:
        dest = ["-m", "addrtype", "--dst-type", "LOCAL"]
        if ipv6:
            dest += ["!", "-d", "::1/128"]
        elif not localhost_nodeports:
            dest += ["!", "-d", "127.0.0.0/8"]
        nat_rules.write(
            "-A", KUBE_SERVICES, "-m", "comment", "--comment",
            _q("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
            dest, "-j", KUBE_NODEPORTS,
        )
    else:
        for ip in opts["nodeport_ips"] or []:
            if ipaddress.ip_address(ip).is_loopback and (ipv6 or not localhost_nodeports):
                continue
            nat_rules.write(
                "-A", KUBE_SERVICES, "-m", "comment", "--comment",
                _q("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
                "-d", ip, "-j", KUBE_NODEPORTS,
            )

    if not opts["conntrack_tcp_liberal"]:
        rule = ["-A", KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID"]
        if nfacct:
            rule += ["-m", "nfacct", "--nfacct-name", NFACCT_CT_INVALID]
        filter_rules.write(rule, "-j", "DROP")
    filter_rules.write(
        "-A", KUBE_FORWARD, "-m", "comment", "--comment", _q("kubernetes forwarding rules"),
        "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT",
    )
    filter_rules.write(
        "-A", KUBE_FORWARD, "-m", "comment", "--comment", _q("kubernetes forwarding conntrack rule"),
        "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT",
    )

    out = ["*filter", *filter_chains.lines, *filter_rules.lines, "COMMIT",
           "*nat", *nat_chains.lines, *nat_rules.lines, "COMMIT"]
    return "\n".join(out) + "\n"


def _family_is_v6(spec: Dict[str, Any], sps: List[ServicePort]) -> bool:
    for sp in sps:
        if sp.cluster_ip:
            return ipaddress.ip_address(sp.cluster_ip).version == 6
    cidr = spec.get("pod_cidr")
    return bool(cidr) and ipaddress.ip_network(cidr, strict=False).version == 6


def _write_service(sp: ServicePort, opts: Dict[str, Any], filter_rules: _Buf, nat_chains: _Buf,
                   nat_rules: _Buf, pod_cidr: Optional[str], detector: bool, localhost_np_rule: bool,
                   svc_comment: Any, skip_chains: bool = False) -> None:
    proto = sp.proto
    spn = sp.name_string
    cat = categorize_endpoints(sp)
    has_endpoints = cat.has_any

    cluster_policy_chain = svc_chain(spn, proto)
    uses_cluster_chain = bool(cat.cluster) and sp.uses_cluster_endpoints()
    local_policy_chain = svl_chain(spn, proto)
    uses_local_chain = bool(cat.local) and sp.uses_local_endpoints()

    internal_chain = cluster_policy_chain
    has_internal = has_endpoints
    if sp.internal_policy_local:
        internal_chain = local_policy_chain
        if not cat.local:
            has_internal = False

    external_policy_chain = cluster_policy_chain
    has_external = has_endpoints
    if sp.external_policy_local:
        external_policy_chain = local_policy_chain
        if not cat.local:
            has_external = False
    external_chain = ext_chain(spn, proto)
    uses_external_chain = has_endpoints and sp.externally_accessible()

    lb_chain = external_chain
    fwc = fw_chain(spn, proto)
    uses_fw = has_endpoints and bool(sp.load_balancer_vips) and bool(sp.load_balancer_source_ranges)
    if uses_fw:
        lb_chain = fwc

    int_target = int_comment = ext_target = ext_comment = ""
    if not has_endpoints:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = _q(f"{spn} has no endpoints")
    else:
        if not has_internal:
            int_target, int_comment = "DROP", _q(f"{spn} has no local endpoints")
        if not has_external:
            ext_target, ext_comment = "DROP", _q(f"{spn} has no local endpoints")

    port = str(sp.port)
    if has_internal:
        nat_rules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", _q(f"{spn} cluster IP"),
                        "-m", proto, "-p", proto, "-d", sp.cluster_ip, "--dport", port, "-j", internal_chain)
    else:
        filter_rules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", int_comment,
                           "-m", proto, "-p", proto, "-d", sp.cluster_ip, "--dport", port, "-j", int_target)

    for eip in sp.external_ips:
        if has_endpoints:
            nat_rules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", _q(f"{spn} external IP"),
                            "-m", proto, "-p", proto, "-d", eip, "--dport", port, "-j", external_chain)
        if not has_external:
            filter_rules.write("-A", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", ext_comment,
                               "-m", proto, "-p", proto, "-d", eip, "--dport", port, "-j", ext_target)

    for lbip in sp.load_balancer_vips:
        if has_endpoints:
            nat_rules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", _q(f"{spn} loadbalancer IP"),
                            "-m", proto, "-p", proto, "-d", lbip, "--dport", port, "-j", lb_chain)
        if uses_fw:
            filter_rules.write("-A", KUBE_PROXY_FIREWALL, "-m", "comment", "--comment",
                               _q(f"{spn} traffic not accepted by {fwc}"),
                               "-m", proto, "-p", proto, "-d", lbip, "--dport", port, "-j", "DROP")
    if not has_external:
        for lbip in sp.load_balancer_vips:
            filter_rules.write("-A", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", ext_comment,
                               "-m", proto, "-p", proto, "-d", lbip, "--dport", port, "-j", ext_target)

    if sp.node_port:
        np = str(sp.node_port)
        if has_endpoints:
            if localhost_np_rule:
                nat_rules.write("-A", KUBE_NODEPORTS, "-m", "comment", "--comment", spn,
                                "-m", proto, "-p", proto, "-d", "127.0.0.0/8", "--dport", np,
                                "-m", "nfacct", "--nfacct-name", NFACCT_LOCALHOST_NP, "-j", external_chain)
            nat_rules.write("-A", KUBE_NODEPORTS, "-m", "comment", "--comment", spn,
                            "-m", proto, "-p", proto, "--dport", np, "-j", external_chain)
        if not has_external:
            filter_rules.write("-A", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", ext_comment,
                               "-m", "addrtype", "--dst-type", "LOCAL",
                               "-m", proto, "-p", proto, "--dport", np, "-j", ext_target)

    if sp.health_check_node_port:
        filter_rules.write("-A", KUBE_NODEPORTS, "-m", "comment", "--comment",
                           _q(f"{spn} health check node port"),
                           "-m", "tcp", "-p", "tcp", "--dport", str(sp.health_check_node_port),
                           "-j", "ACCEPT")

    if skip_chains:  # partial sync: this service's own chains are not rewritten
        nat_chains, nat_rules = _Buf(), _Buf()

    if has_internal:
        args = ["-m", "comment", "--comment", _q(f"{spn} cluster IP"),
                "-m", proto, "-p", proto, "-d", sp.cluster_ip, "--dport", port]
        if opts["masquerade_all"]:
            nat_rules.write("-A", internal_chain, args, "-j", KUBE_MARK_MASQ)
        elif detector:
            nat_rules.write("-A", internal_chain, args, "!", "-s", pod_cidr, "-j", KUBE_MARK_MASQ)

    if uses_external_chain:
        nat_chains.chain(external_chain)
        if not sp.external_policy_local:
            nat_rules.write("-A", external_chain, "-m", "comment", "--comment",
                            _q(f"masquerade traffic for {spn} external destinations"), "-j", KUBE_MARK_MASQ)
        else:
            if detector:
                nat_rules.write("-A", external_chain, "-m", "comment", "--comment",
                                _q(f"pod traffic for {spn} external destinations"),
                                "-s", pod_cidr, "-j", cluster_policy_chain)
            nat_rules.write("-A", external_chain, "-m", "comment", "--comment",
                            _q(f"masquerade LOCAL traffic for {spn} external destinations"),
                            "-m", "addrtype", "--src-type", "LOCAL", "-j", KUBE_MARK_MASQ)
            nat_rules.write("-A", external_chain, "-m", "comment", "--comment",
                            _q(f"route LOCAL traffic for {spn} external destinations"),
                            "-m", "addrtype", "--src-type", "LOCAL", "-j", cluster_policy_chain)
        if has_external:
            nat_rules.write("-A", external_chain, "-j", external_policy_chain)

    if uses_fw:
        nat_chains.chain(fwc)
        args = ["-A", fwc, "-m", "comment", "--comment", _q(f"{spn} loadbalancer IP")]
        allow_from_node = False
        for cidr in sp.load_balancer_source_ranges:
            nat_rules.write(args, "-s", cidr, "-j", external_chain)
            if cidr_contains(cidr, opts.get("node_ip")):
                allow_from_node = True
        if allow_from_node:
            for lbip in sp.load_balancer_vips:
                nat_rules.write(args, "-s", lbip, "-j", external_chain)
        nat_rules.write("-A", fwc, "-m", "comment", "--comment",
                        _q(f"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"))

    if uses_cluster_chain:
        nat_chains.chain(cluster_policy_chain)
        _write_service_to_endpoint_rules(nat_rules, sp, cluster_policy_chain, cat.cluster, svc_comment)
    if uses_local_chain:
        nat_chains.chain(local_policy_chain)
        _write_service_to_endpoint_rules(nat_rules, sp, local_policy_chain, cat.local, svc_comment)

    for ep in cat.all_reachable:
        sep = sep_chain(spn, proto, str(ep))
        nat_chains.chain(sep)
        args = svc_comment(["-A", sep], spn)
        nat_rules.write(args, "-s", ep.ip, "-j", KUBE_MARK_MASQ)
        if sp.affinity_timeout is not None:
            args = args + ["-m", "recent", "--name", sep, "--set"]
        nat_rules.write(args, "-m", proto, "-p", proto, "-j", "DNAT", "--to-destination", str(ep))


def _write_service_to_endpoint_rules(nat_rules: _Buf, sp: ServicePort, chain: str, endpoints: List[Any],
                                     svc_comment: Any) -> None:
    spn, proto = sp.name_string, sp.proto
    if sp.affinity_timeout is not None:
        for ep in endpoints:
            sep = sep_chain(spn, proto, str(ep))
            args = svc_comment(["-A", chain], _q(f"{spn} -> {ep}"))
            nat_rules.write(args, "-m", "recent", "--name", sep, "--rcheck", "--seconds",
                            str(sp.affinity_timeout), "--reap", "-j", sep)
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        sep = sep_chain(spn, proto, str(ep))
        args = svc_comment(["-A", chain], _q(f"{spn} -> {ep}"))
        if i < n - 1:
            args = args + ["-m", "statistic", "--mode", "random", "--probability", _probability(n - i)]
        nat_rules.write(args, "-j", sep)


# ---- what else a node has -------------------------------------------------------------------------


def iptables_setup_text(ipv6: bool = False) -> str:
    """Restore input (for an empty namespace) creating the canary chains and kube-proxy's jump rules.

    kube-proxy creates ``KUBE-PROXY-CANARY`` in mangle, nat and filter (``iptables.Monitor``) and, on
    every full sync, ``EnsureChain`` + ``EnsureRule(Prepend, ...)`` for each `JUMP_CHAINS` entry in
    order; prepending reverses the order within a built-in chain, which the rules below already have.
    Load this with plain ``iptables-restore`` (it flushes only these tables), then the proxier's text
    with ``--noflush``. The KUBE-FIREWALL chain is created empty here; kube-proxy fills it.
    """
    per_table: Dict[str, Dict[str, List[str]]] = {"mangle": {}, "filter": {}, "nat": {}}
    chains: Dict[str, List[str]] = {"mangle": [KUBE_PROXY_CANARY], "filter": [KUBE_PROXY_CANARY],
                                    "nat": [KUBE_PROXY_CANARY]}
    for table, dst, src, comment, extra in JUMP_CHAINS:
        if dst not in chains[table]:
            chains[table].append(dst)
        rule = list(extra)
        if comment:
            rule += ["-m", "comment", "--comment", _q(comment)]
        rule += ["-j", dst]
        per_table[table].setdefault(src, []).insert(0, " ".join(rule))
    out: List[str] = []
    for table in ("mangle", "filter", "nat"):
        out.append(f"*{table}")
        for b in BUILTIN_CHAINS[table]:
            out.append(f":{b} ACCEPT [0:0]")
        for c in sorted(chains[table]):
            out.append(f":{c} - [0:0]")
        for b in BUILTIN_CHAINS[table]:
            for rule in per_table[table].get(b, []):
                out.append(f"-A {b} {rule}")
        out.append("COMMIT")
    return "\n".join(out) + "\n"


# ---- the order kube-proxy's unit tests compare in -------------------------------------------------

_COMMENT_RE = re.compile(r'--comment (?:"([^"]*)"|(\S+))')


def _comment(rule: str) -> Optional[str]:
    m = _COMMENT_RE.search(rule)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def _svc_name_of(rule: str) -> Optional[str]:
    c = _comment(rule)
    if c is None:
        return None
    i = min([j for j in (c.find(" "), c.find(":")) if j != -1], default=-1)
    return c[:i] if i != -1 else c


def _stable_sort_by_service(rules: List[str], keep_last: bool = False) -> List[str]:
    """sort.SliceStable with orderByCommentServiceName (rules without a comment keep their place)."""

    def less(a: str, b: str) -> bool:
        if keep_last:
            ca, cb = _comment(a), _comment(b)
            if ca is not None and "must be the last rule" in ca:
                return False
            if cb is not None and "must be the last rule" in cb:
                return True
        na, nb = _svc_name_of(a), _svc_name_of(b)
        if na is None or nb is None:
            return False
        return na < nb

    # insertion sort: stable, and only uses less() like Go's sort.SliceStable
    out: List[str] = []
    for r in rules:
        i = len(out)
        while i > 0 and less(r, out[i - 1]):
            i -= 1
        out.insert(i, r)
    return out


def parse_restore(text: str) -> List[Tuple[str, List[str], Dict[str, List[str]]]]:
    """[(table, [chain lines], {chain: [rule lines]})] of restore input / save output, in order.

    ``-X`` lines are kept in a pseudo chain ``"-X"``.
    """
    tables: List[Tuple[str, List[str], Dict[str, List[str]]]] = []
    cur: Optional[Tuple[str, List[str], Dict[str, List[str]]]] = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = (line[1:], [], {})
            tables.append(cur)
        elif line == "COMMIT":
            cur = None
        elif cur is None:
            raise ValueError(f"line outside a table: {line!r}")
        elif line.startswith(":"):
            cur[1].append(line)
            cur[2].setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            cur[2].setdefault(chain, []).append(line)
        elif line.startswith("-X "):
            cur[2].setdefault("-X", []).append(line)
        else:
            cur[2].setdefault("?", []).append(line)
    return tables


def sort_iptables_rules(text: str) -> str:
    """proxier_test.go sortIPTablesRules: tables by name; KUBE-NODEPORTS, KUBE-SERVICES, other KUBE-*
    chains (alphabetical), then the rest; KUBE-NODEPORTS and KUBE-SERVICES rules stably by service."""
    tables = parse_restore(text)
    tables.sort(key=lambda t: t[0])
    out: List[str] = []

    def chain_key(name: str) -> Tuple[int, str]:
        if name == KUBE_NODEPORTS:
            return (0, "")
        if name == KUBE_SERVICES:
            return (1, "")
        return (2 if name.startswith("KUBE-") else 3, name)

    for table, chain_lines, rules in tables:
        names = [c[1:].split()[0] for c in chain_lines]
        decl = {c[1:].split()[0]: c for c in chain_lines}
        order = sorted(names, key=chain_key)
        out.append(f"*{table}")
        out.extend(decl[n] for n in order)
        for n in order:
            rs = rules.get(n, [])
            if n in (KUBE_NODEPORTS, KUBE_SERVICES):
                rs = _stable_sort_by_service(rs, keep_last=(table == "nat" and n == KUBE_SERVICES))
            out.extend(rs)
        out.extend(rules.get("-X", []))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def split_syncs(text: str) -> List[str]:
    """A fixture's restore input may hold several syncs, each after a ``# ---- sync #N`` line."""
    parts: List[List[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("# ---- sync") and any(x.strip() for x in parts[-1]):
            parts.append([])
        parts[-1].append(line)
    return ["\n".join(p).strip() + "\n" for p in parts if any(x.strip() and not x.startswith("#") for x in p)]


def shell_words(rule: str) -> List[str]:
    return shlex.split(rule)
