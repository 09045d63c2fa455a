"""Data planes: a node's dump text -> NodeDataPlane, one module per kube-proxy mode.

`read_node` takes every dump of one node (iptables-save, ip6tables-save, nft text or JSON, in any
mix), recognises each by its content, and merges what they say into one NodeDataPlane.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from kubectl_svcnet.dumptext import text_of
from kubectl_svcnet.errors import DumpParseError
from kubectl_svcnet.model import NodeDataPlane, NodeInfo, ServiceRules

IPTABLES = "iptables"
NFT_TEXT = "nft"
NFT_JSON = "nft-json"
IPVSADM = "ipvsadm"
IPSET = "ipset"
# What an empty dump is; `iptables-save > dump.txt` as a user other than root leaves one.
EMPTY_DUMP = "it is empty (iptables-save prints nothing to stdout when not run as root)"
_NFT_TABLE = re.compile(r"^table (ip|ip6|inet|arp|bridge|netdev) \S+ \{", re.M)


def detect_format(text: str) -> Optional[str]:
    """What kind of dump this is, from its content alone."""
    from kubectl_svcnet.dataplane import iptables

    start = text[:4096].lstrip()  # (not text.lstrip(): that copies a 48 MB dump)
    head = start[:1] if start else text.lstrip()[:1]
    if head == "{":
        return NFT_JSON
    if iptables.looks_like_iptables(text):
        return IPTABLES
    if _NFT_TABLE.search(text[:65536]):
        return NFT_TEXT
    from kubectl_svcnet.dataplane import ipvs

    if ipvs.looks_like_ipvsadm(text):
        return IPVSADM
    if ipvs.looks_like_ipset(text):
        return IPSET
    return None


def ipvs_wanted(cluster, only: Optional[str]):
    """For a trace of one Service, the IPVS virtual servers the API's objects say are its (ipvs.Wanted);
    None when there is no trace or the objects do not hold that Service (then every line is read)."""
    if only is None or cluster is None:
        return None
    from kubectl_svcnet.dataplane.ipvs import Wanted, ip_text

    ns, _, name = only.partition("/")
    svc = next((s for s in cluster.services if (s.namespace, s.name) == (ns, name)), None)
    if svc is None:
        return None
    addresses = set()
    for ip in svc.cluster_ips + svc.external_ips + svc.load_balancer_ips:
        try:
            addresses.update((ip_text(ip), str(p.port)) for p in svc.ports)
        except ValueError:
            return None  # (an address the API should not hold: read everything, as a map would)
    return Wanted(addresses, {str(p.node_port) for p in svc.ports if p.node_port})


def _node_ips(cluster, node: str) -> Tuple[str, ...]:
    """The node's own addresses (InternalIP, ExternalIP) as the API's Node lists them; () without it."""
    for n in getattr(cluster, "nodes", ()) or ():
        if n.name == node:
            return tuple(a for t, a in n.addresses if t in ("InternalIP", "ExternalIP"))
    return ()


def read_node(
    dumps: Sequence[Tuple[str, str]],
    node: str,
    source_kind: str = "file",
    only: Optional[str] = None,
    cluster=None,
    shared=None,
) -> NodeDataPlane:
    """Parse and resolve all (text, source) dumps of one node. Raises DumpParseError for a dump
    that is not one at all. `cluster` (model.Cluster, optional) names IPVS virtual servers and gives
    userspace-mode portals their endpoints. `shared` (iptables.SharedWalks, optional): what the other
    nodes of the same map walked, reused where this node's chains are the same."""
    ipt, nfts, ipvs_dumps = [], [], []
    formats = [(detect_format(text), text, source) for text, source in dumps]
    if any(f in (IPVSADM, IPSET) for f, _, _ in formats):
        only_ipt = None  # IPVS-mode iptables rules name no service: read them whole
    else:
        only_ipt = only
    for fmt, text, source in formats:
        if fmt != IPTABLES or not only_ipt:
            text = text_of(text)  # (a DumpBytes is read as bytes only by parse_iptables_for)
        if fmt is None and (not text or text.isspace()):  # (strip() would copy a big dump)
            raise DumpParseError(f"not a kube-proxy dump: {EMPTY_DUMP}", source)
        if fmt is None:
            raise DumpParseError(
                "not a kube-proxy dump: expected iptables-save, nft list ruleset or nft -j output,"
                " ipvsadm-save -n or ipset output",
                source,
                1,
            )
        if fmt in (IPVSADM, IPSET):
            ipvs_dumps.append((text, source))
        elif fmt == IPTABLES:
            from kubectl_svcnet.dataplane.iptables import parse_iptables, parse_iptables_for

            # For one Service, read only the lines it can touch (fast on 10,000-service nodes).
            sparse = parse_iptables_for(text, source, only_ipt) if only_ipt else None
            # Lazy: rules are read as their chains are walked and let go after (resolve_iptables).
            ipt.append(sparse if sparse is not None else parse_iptables(text_of(text), source, lazy=True))
        else:
            from kubectl_svcnet.dataplane.nft import parse_nft

            nfts.append(parse_nft(text, source))
    planes: List[NodeDataPlane] = []
    if ipvs_dumps:
        from kubectl_svcnet.dataplane.ipvs import parse_ipvs, resolve_ipvs

        for d in ipt:
            d.finish()  # the IPVS reader reads whole dumps

        data = parse_ipvs(ipvs_dumps, ipt, ipvs_wanted(cluster, only))
        if data.active or not ipt:
            planes.append(resolve_ipvs(data, node, source_kind, only, cluster))
            ipt = []
    if ipt:
        from kubectl_svcnet.dataplane.userspace import looks_like_userspace, resolve_userspace

        if looks_like_userspace(ipt):
            for d in ipt:
                d.finish()  # so does the userspace one
            planes.append(resolve_userspace(ipt, node, source_kind, only, cluster))
            ipt = []
    if ipt:
        from kubectl_svcnet.dataplane.iptables import resolve_iptables

        planes.append(resolve_iptables(ipt, node, source_kind, only, shared, _node_ips(cluster, node)))
    for rs in nfts:
        from kubectl_svcnet.dataplane.nft import resolve_nft

        planes.append(resolve_nft(rs, node, source_kind, only))
    return merge_planes(planes, node, source_kind)


def merge_planes(planes: Sequence[NodeDataPlane], node: str, source_kind: str) -> NodeDataPlane:
    """One node's planes (IPv4 and IPv6, or iptables and nft) as one. The proxy mode is the one
    whose rules hold services; nftables wins a tie, as kube-proxy in nftables mode leaves
    iptables-nft tables around."""
    if len(planes) == 1:
        return planes[0]
    if not planes:
        return NodeDataPlane(NodeInfo(node, source_kind))
    services: dict = {}
    for p in planes:
        for s in p.services:
            prev = services.get(s.key)
            if prev is None:
                services[s.key] = s
            else:
                services[s.key] = ServiceRules(
                    s.key,
                    prev.frontends + s.frontends,
                    prev.health_check_node_port or s.health_check_node_port,
                    prev.findings + s.findings,
                )
    with_services = [p for p in planes if p.services] or list(planes)
    mode = (
        "nftables" if any(p.info.proxy_mode == "nftables" for p in with_services) else with_services[0].info.proxy_mode
    )
    backend = next((p.info.iptables_backend for p in planes if p.info.iptables_backend), None)
    return NodeDataPlane(
        NodeInfo(node, source_kind, mode, backend),
        tuple(services[k] for k in sorted(services)),
        tuple(f for p in planes for f in p.findings),
        next((p.pod_cidr_detector for p in planes if p.pod_cidr_detector), None),
        tuple(a for p in planes for a in p.nodeport_addresses),
    )
