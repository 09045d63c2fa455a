"""kube-proxy's nftables proxier, as a text writer.

`write_nft(spec)` returns the ``nft -f`` transaction of kube-proxy's first full sync
(pkg/proxy/nftables/proxier.go ``setupNFTables`` + ``syncProxyRules``, in knftables' text form) for
the node `spec` describes — the shape of kubernetes/kubernetes @030880a5 that the fixtures in
``tests/fixtures/kube-proxy/nftables`` come from (v1.31 era: ``filter-*-pre-dnat`` chains, the
``nodeport-ips`` set always filled, service-chain masquerade rules without a port match).

On a first sync into an empty table the ``flush`` commands knftables adds (and the add+delete of the
base chains) change nothing; they are left out unless ``flushes=True``.

Options (keyword arguments or a ``kube_proxy`` dict in the spec):

- ``node_ip`` / ``nodeport_ips``: the node's IPs that accept NodePort traffic (``@nodeport-ips``);
  kube-proxy's unit tests use 192.168.0.2
- ``service_cidrs``: the service CIDRs (``cluster-ips-check`` drops traffic to unallocated ones);
  the unit tests use 172.30.0.0/16
- ``masquerade_all`` (False), ``masquerade_mark`` ("0x4000"), ``flushes`` (False)
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from typing import Any, Dict, List, Optional, Tuple

from .model import Endpoint, ServicePort, categorize_endpoints, cidr_contains, merged_options, service_ports

TABLE = "kube-proxy"

DEFAULTS: Dict[str, Any] = {
    "node_ip": None,
    "nodeport_ips": None,
    "service_cidrs": None,
    "masquerade_all": False,
    "masquerade_mark": "0x4000",
    "flushes": False,
}

# (name, type, hook, priority) — nftablesBaseChains at the fixtures' revision
BASE_CHAINS: List[Tuple[str, str, str, str]] = [
    ("filter-prerouting-pre-dnat", "filter", "prerouting", "-110"),
    ("filter-output-pre-dnat", "filter", "output", "-110"),
    ("filter-forward", "filter", "forward", "0"),
    ("filter-input", "filter", "input", "0"),
    ("filter-output", "filter", "output", "0"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
]

# (chain jumped to, base chain, match) — nftablesJumpChains at the fixtures' revision
JUMP_CHAINS: List[Tuple[str, str, str]] = [
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting-pre-dnat", "ct state new"),
    ("firewall-check", "filter-output-pre-dnat", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output", "ct state new"),
]


def hash_and_truncate(name: str) -> str:
    """nftables hashAndTruncate: 8 base32 chars of sha256(name), "-", name (cut to 240 chars)."""
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    out = encoded[:8] + "-" + name
    if len(out) > 240:
        out = out[: 240 - 3] + "..."
    return out


def chain_name_base(sp: ServicePort) -> str:
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}")


def endpoint_chain_name_base(sp: ServicePort, ep: Endpoint) -> str:
    ip = ep.ip.replace(":", ".")
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}__{ip}/{ep.port}")


class _Tx:
    def __init__(self, family: str, flushes: bool) -> None:
        self.family = family
        self.flushes = flushes
        self.lines: List[str] = []
        self.created: set = set()

    def _obj(self, kind: str, name: str, props: Optional[List[str]] = None) -> str:
        head = f"add {kind} {self.family} {TABLE} {name}"
        return head + (" { " + " ; ".join(props) + " ; }" if props else "")

    def table(self) -> None:
        self.lines.append(f'add table {self.family} {TABLE} {{ comment "rules for kube-proxy" ; }}')

    def chain(self, name: str, props: Optional[List[str]] = None, flush: bool = True) -> None:
        self.lines.append(self._obj("chain", name, props))
        if self.flushes and flush:
            self.lines.append(f"flush chain {self.family} {TABLE} {name}")

    def ensure_chain(self, name: str) -> None:
        if name in self.created:
            return
        self.created.add(name)
        self.chain(name)

    def set(self, name: str, props: List[str]) -> None:
        self.lines.append(self._obj("set", name, props))

    def map(self, name: str, props: List[str]) -> None:
        self.lines.append(self._obj("map", name, props))

    def flush(self, kind: str, name: str) -> None:
        if self.flushes:
            self.lines.append(f"flush {kind} {self.family} {TABLE} {name}")

    def rule(self, chain: str, rule: str, comment: Optional[str] = None) -> None:
        text = f"add rule {self.family} {TABLE} {chain} {rule}"
        if comment is not None:
            text += f' comment "{comment}"'
        self.lines.append(text)

    def element(self, container: str, key: str, value: Optional[str] = None,
                comment: Optional[str] = None) -> None:
        body = key
        if comment is not None:
            body += f' comment "{comment}"'
        if value is not None:
            body += f" : {value}"
        self.lines.append(f"add element {self.family} {TABLE} {container} {{ {body} }}")


def _options(spec: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    return merged_options(spec, DEFAULTS, overrides)


def write_nft(spec: Dict[str, Any], **options: Any) -> str:
    """The nft transaction of kube-proxy's first full sync for the node `spec` describes."""
    opts = _options(spec, options)
    sps = service_ports(spec)
    ipv6 = any(ipaddress.ip_address(sp.cluster_ip).version == 6 for sp in sps[:1])
    family = "ip6" if ipv6 else "ip"
    ipx = family
    addr_type = "ipv6_addr" if ipv6 else "ipv4_addr"
    mark = opts["masquerade_mark"]
    pod_cidr: Optional[str] = spec.get("pod_cidr")
    tx = _Tx(family, bool(opts["flushes"]))

    # ---- setupNFTables
    tx.table()
    if tx.flushes:
        for name, *_ in BASE_CHAINS:
            tx.lines.append(f"add chain {family} {TABLE} {name}")
            tx.lines.append(f"delete chain {family} {TABLE} {name}")
    for name, typ, hook, prio in BASE_CHAINS:
        tx.chain(name, [f"type {typ} hook {hook} priority {prio}"])
    for dst, src, match in JUMP_CHAINS:
        tx.ensure_chain(dst)
        tx.rule(src, f"{match} jump {dst}" if match else f"jump {dst}")
    for c in ("services", "cluster-ips-check", "masquerading", "mark-for-masquerade"):
        tx.ensure_chain(c)
    tx.rule("mark-for-masquerade", f"mark set mark or {mark}")
    tx.rule("masquerading", f"mark and {mark} == 0 return")
    tx.rule("masquerading", f"mark set mark xor {mark}")
    tx.rule("masquerading", "masquerade fully-random")
    tx.set("cluster-ips", [f"type {addr_type}", 'comment "Active ClusterIPs"'])
    tx.rule("cluster-ips-check", f"{ipx} daddr @cluster-ips reject",
            comment="Reject traffic to invalid ports of ClusterIPs")
    cidrs = opts["service_cidrs"]
    if cidrs:
        joined = ",".join(cidrs) if isinstance(cidrs, (list, tuple)) else str(cidrs)
        tx.rule("cluster-ips-check", f"{ipx} daddr {{ {joined} }} drop",
                comment="Drop traffic to unallocated ClusterIPs")
    tx.set("nodeport-ips", [f"type {addr_type}", 'comment "IPs that accept NodePort traffic"'])
    tx.flush("set", "nodeport-ips")
    np_ips = opts["nodeport_ips"]
    if np_ips is None:
        np_ips = [opts["node_ip"]] if opts.get("node_ip") else []
    for ip in np_ips:
        if not ipaddress.ip_address(ip).is_loopback:
            tx.element("nodeport-ips", ip)
    tx.map("no-endpoint-services", [f"type {addr_type} . inet_proto . inet_service : verdict",
                                    'comment "vmap to drop or reject packets to services with no endpoints"'])
    tx.map("no-endpoint-nodeports", ["type inet_proto . inet_service : verdict",
                                     'comment "vmap to drop or reject packets to service nodeports with no '
                                     'endpoints"'])
    tx.chain("reject-chain", ['comment "helper for @no-endpoint-services / @no-endpoint-nodeports"'])
    tx.created.add("reject-chain")
    tx.rule("reject-chain", "reject")
    tx.rule("service-endpoints-check", f"{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services")
    tx.rule("nodeport-endpoints-check",
            f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    tx.map("firewall-ips", [f"type {addr_type} . inet_proto . inet_service : verdict",
                            'comment "destinations that are subject to LoadBalancerSourceRanges"'])
    tx.ensure_chain("firewall-check")
    tx.rule("firewall-check", f"{ipx} daddr . meta l4proto . th dport vmap @firewall-ips")
    tx.map("service-ips", [f"type {addr_type} . inet_proto . inet_service : verdict",
                           'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"'])
    tx.map("service-nodeports", ["type inet_proto . inet_service : verdict", 'comment "NodePort traffic"'])
    tx.rule("services", f"{ipx} daddr . meta l4proto . th dport vmap @service-ips")
    tx.rule("services", f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    for kind, name in (("set", "cluster-ips"), ("map", "service-ips"), ("map", "firewall-ips"),
                       ("map", "no-endpoint-services"), ("map", "no-endpoint-nodeports"),
                       ("map", "service-nodeports")):
        tx.flush(kind, name)

    # ---- syncProxyRules
    for sp in sps:
        _write_service(tx, sp, opts, ipx, addr_type, pod_cidr)
    return "\n".join(tx.lines) + "\n"


def _write_service(tx: _Tx, sp: ServicePort, opts: Dict[str, Any], ipx: str, addr_type: str,
                   pod_cidr: Optional[str]) -> None:
    proto = sp.proto
    spn = sp.name_string
    base = chain_name_base(sp)
    cat = categorize_endpoints(sp)
    has_endpoints = cat.has_any
    ep_chain = {str(e): "endpoint-" + endpoint_chain_name_base(sp, e) for e in sp.endpoints}
    affinity = {str(e): "affinity-" + endpoint_chain_name_base(sp, e) for e in sp.endpoints}

    for ep in cat.all_reachable:
        tx.ensure_chain(ep_chain[str(ep)])

    cluster_chain = "service-" + base
    uses_cluster = bool(cat.cluster) and sp.uses_cluster_endpoints()
    if uses_cluster:
        tx.ensure_chain(cluster_chain)
    local_chain = "local-" + base
    uses_local = bool(cat.local) and sp.uses_local_endpoints()
    if uses_local:
        tx.ensure_chain(local_chain)

    internal_chain, has_internal = cluster_chain, has_endpoints
    if sp.internal_policy_local:
        internal_chain = local_chain
        if not cat.local:
            has_internal = False
    external_policy_chain, has_external = cluster_chain, has_endpoints
    if sp.external_policy_local:
        external_policy_chain = local_chain
        if not cat.local:
            has_external = False
    external_chain = "external-" + base
    uses_external = has_endpoints and sp.externally_accessible()
    if uses_external:
        tx.ensure_chain(external_chain)

    int_verdict = ext_verdict = ""
    if not has_endpoints:
        int_verdict = ext_verdict = "goto reject-chain"
    else:
        if not has_internal:
            int_verdict = "drop"
        if not has_external:
            ext_verdict = "drop"

    port = str(sp.port)
    tx.element("cluster-ips", sp.cluster_ip)
    if has_internal:
        tx.element("service-ips", f"{sp.cluster_ip} . {proto} . {port}", f"goto {internal_chain}")
    else:
        tx.element("no-endpoint-services", f"{sp.cluster_ip} . {proto} . {port}", int_verdict, comment=spn)

    for eip in sp.external_ips:
        if has_endpoints:
            tx.element("service-ips", f"{eip} . {proto} . {port}", f"goto {external_chain}")
        if not has_external:
            tx.element("no-endpoint-services", f"{eip} . {proto} . {port}", ext_verdict, comment=spn)

    uses_fw = bool(sp.load_balancer_vips) and bool(sp.load_balancer_source_ranges)
    fw_chain = "firewall-" + base
    if uses_fw:
        tx.ensure_chain(fw_chain)
    for lbip in sp.load_balancer_vips:
        if has_endpoints:
            tx.element("service-ips", f"{lbip} . {proto} . {port}", f"goto {external_chain}")
        if uses_fw:
            tx.element("firewall-ips", f"{lbip} . {proto} . {port}", f"goto {fw_chain}")
    if not has_external:
        for lbip in sp.load_balancer_vips:
            tx.element("no-endpoint-services", f"{lbip} . {proto} . {port}", ext_verdict, comment=spn)

    if sp.node_port:
        if has_endpoints:
            tx.element("service-nodeports", f"{proto} . {sp.node_port}", f"goto {external_chain}")
        if not has_external:
            tx.element("no-endpoint-nodeports", f"{proto} . {sp.node_port}", ext_verdict, comment=spn)

    if has_internal:
        if opts["masquerade_all"]:
            tx.rule(internal_chain, f"{ipx} daddr {sp.cluster_ip} jump mark-for-masquerade")
        elif pod_cidr:
            tx.rule(internal_chain, f"{ipx} daddr {sp.cluster_ip} {ipx} saddr != {pod_cidr} "
                                    "jump mark-for-masquerade")

    if uses_external:
        if not sp.external_policy_local:
            tx.rule(external_chain, "jump mark-for-masquerade")
        else:
            if pod_cidr:
                tx.rule(external_chain, f"{ipx} saddr {pod_cidr} goto {cluster_chain}",
                        comment="short-circuit pod traffic")
            tx.rule(external_chain, "fib saddr type local jump mark-for-masquerade",
                    comment="masquerade local traffic")
            tx.rule(external_chain, f"fib saddr type local goto {cluster_chain}",
                    comment="short-circuit local traffic")
        if has_external:
            tx.rule(external_chain, f"goto {external_policy_chain}")

    if uses_fw:
        sources: List[str] = []
        allow_from_node = False
        for cidr in sp.load_balancer_source_ranges:
            sources.append(cidr)
            if cidr_contains(cidr, opts.get("node_ip")):
                allow_from_node = True
        if allow_from_node:
            sources.extend(sp.load_balancer_vips)
        tx.rule(fw_chain, f"{ipx} saddr != {{ {' , '.join(sources)} }} drop")

    if sp.affinity_timeout is not None:
        for ep in cat.all_reachable:
            tx.set(affinity[str(ep)], [f"type {addr_type}", "flags dynamic,timeout",
                                       f"timeout {sp.affinity_timeout}s"])

    for chain, eps in ((cluster_chain, cat.cluster if uses_cluster else []),
                       (local_chain, cat.local if uses_local else [])):
        if not eps:
            continue
        if sp.affinity_timeout is not None:
            for ep in eps:
                tx.rule(chain, f"{ipx} saddr @{affinity[str(ep)]} goto {ep_chain[str(ep)]}")
        elems = " , ".join(f"{i} : goto {ep_chain[str(ep)]}" for i, ep in enumerate(eps))
        tx.rule(chain, f"numgen random mod {len(eps)} vmap {{ {elems} }}")

    for ep in cat.all_reachable:
        chain = ep_chain[str(ep)]
        tx.rule(chain, f"{ipx} saddr {ep.ip} jump mark-for-masquerade")
        if sp.affinity_timeout is not None:
            tx.rule(chain, f"update @{affinity[str(ep)]} {{ {ipx} saddr }}")
        tx.rule(chain, f"meta l4proto {proto} dnat to {ep}")


# ---- comparing `nft list` output ------------------------------------------------------------------

_BLOCK_RE = re.compile(r"^\t(set|map|chain) (\S+) \{$")


def normalize_nft_list(text: str) -> Dict[str, List[str]]:
    """`nft list table|ruleset` text -> {"chain NAME"/"set NAME"/"map NAME"/"table": lines}.

    The order of blocks (creation order) and of set/map elements (kernel order) is not compared:
    elements are split and sorted; a chain's rules keep their order.
    """
    out: Dict[str, List[str]] = {}
    cur: Optional[str] = None
    buf: List[str] = []
    for raw in text.splitlines():
        m = _BLOCK_RE.match(raw)
        if m:
            cur = f"{m.group(1)} {m.group(2)}"
            buf = []
            continue
        if cur is not None and raw == "\t}":
            out[cur] = _fold_elements(buf)
            cur = None
            continue
        if cur is not None:
            buf.append(raw.strip())
        elif raw.strip() and raw.strip() != "}":
            out.setdefault("table", []).append(raw.strip())
    return out


def _fold_elements(lines: List[str]) -> List[str]:
    out: List[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("elements = {"):
            body = line[len("elements = {"):]
            while not body.rstrip().endswith("}") and i + 1 < len(lines):
                i += 1
                body += " " + lines[i]
            body = body.rstrip()[:-1]
            elems = sorted(e.strip() for e in _split_top(body))
            out.append("elements = { " + " | ".join(elems) + " }")
        else:
            out.append(line)
        i += 1
    return out


def _split_top(body: str) -> List[str]:
    parts, depth, cur, quote = [], 0, "", False
    for ch in body:
        if ch == '"':
            quote = not quote
        if not quote:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def transaction_lines(text: str) -> List[str]:
    """A transaction's commands, sorted, without comments, blank lines and (no-op) flushes."""
    return sorted(
        line.strip() for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not line.startswith(("flush ", "delete "))
    )
