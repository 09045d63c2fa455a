"""kube-proxy nftables mode: parser and resolver (kubectl_svcnet/dataplane/nft.py).

The inline rulesets follow what kube-proxy's pkg/proxy/nftables/proxier.go writes (and its
proxier_test.go asserts), in the form `nft list ruleset` prints it back.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import List

import pytest

from kubectl_svcnet.dataplane.nft import (
    analyse_rule,
    looks_like_nft_json,
    looks_like_nft_text,
    parse_duration,
    parse_nft,
    parse_service_chain_name,
    resolve_nft,
)
from kubectl_svcnet.errors import DumpParseError
from kubectl_svcnet.model import NodeDataPlane, ServiceKey
from tests.golden import FIXTURES, actual_services, expected_services, load_expected

NFT_FIXTURES = sorted(p.parent for p in (FIXTURES / "nftables").rglob("expected.json"))


def plane_of(text: str, node: str = "node-a", only=None) -> NodeDataPlane:
    return resolve_nft(parse_nft(text, "dump"), node, only=only, paths=True)


def service(plane: NodeDataPlane, key: ServiceKey):
    for rules in plane.services:
        if rules.key == key:
            return rules
    raise AssertionError(f"{key} not in {[str(r.key) for r in plane.services]}")


def frontend(rules, ftype, ip, port):
    for fe in rules.frontends:
        if (fe.type, fe.ip, fe.port) == (ftype, ip, port):
            return fe
    raise AssertionError(f"{ftype} {ip}:{port} not in {[(f.type, f.ip, f.port) for f in rules.frontends]}")


def routes_by_source(fe):
    return {r.source: r for r in fe.routes}


def shares(route):
    return {(b.ip, b.port): round(b.probability, 4) for b in route.backends}


def numgen(*targets: str) -> str:
    """kube-proxy's load-balancing rule: ``numgen random mod N vmap { 0 : goto a, ... }``."""
    entries = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
    return f"numgen random mod {len(targets)} vmap {{ {entries} }}"


def codes(plane: NodeDataPlane) -> List[str]:
    out = [f.code for f in plane.findings]
    for rules in plane.services:
        out.extend(f.code for f in rules.findings)
    return out


# ---------------------------------------------------------------------------------------------
# Golden: both fixtures, from the text dump and from `nft -j` JSON.


@pytest.mark.parametrize("fixture", NFT_FIXTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("dump", ["dump.txt", "dump.json"])
def test_golden(fixture: Path, dump: str) -> None:
    path = fixture / dump
    plane = resolve_nft(parse_nft(path.read_text(), str(path)), "test-node")
    assert actual_services(plane) == expected_services(load_expected(fixture))
    assert plane.info.proxy_mode == "nftables"
    assert plane.info.iptables_backend is None
    assert plane.info.name == "test-node"
    assert plane.pod_cidr_detector == "10.0.0.0/8"
    assert plane.nodeport_addresses == ("192.168.0.2",)
    assert plane.findings == ()
    for rules in plane.services:
        assert rules.findings == ()
        for fe in rules.frontends:
            assert fe.node == "test-node"
            for route in fe.routes:
                if route.verdict == "forward":
                    assert abs(sum(b.probability for b in route.backends) - 1.0) < 1e-9


@pytest.mark.parametrize("fixture", NFT_FIXTURES, ids=lambda p: p.name)
def test_text_and_json_give_the_same_trace(fixture: Path) -> None:
    text = resolve_nft(parse_nft((fixture / "dump.txt").read_text(), "t"), "n", paths=True)
    js = resolve_nft(parse_nft((fixture / "dump.json").read_text(), "j"), "n", paths=True)

    def rules_taken(plane):
        return sorted(
            (h.chain, h.rule)
            for s in plane.services
            for fe in s.frontends
            for r in fe.routes
            for h in r.path + tuple(x for b in r.backends for x in b.path)
        )

    assert rules_taken(text) == rules_taken(js)


def test_overall_paths_point_at_dump_lines() -> None:
    path = FIXTURES / "nftables" / "overall" / "dump.txt"
    lines = path.read_text().split("\n")
    plane = plane_of(path.read_text())
    svc4 = service(plane, ServiceKey("ns4", "svc4", "p80", "TCP"))
    route = frontend(svc4, "ExternalIP", "192.168.99.33", 80).routes[0]
    assert route.source == "any"
    assert [h.chain for h in route.path] == [
        "services",
        "service-ips",
        "external-LAUZTJTB-ns4/svc4/tcp/p80",
        "service-LAUZTJTB-ns4/svc4/tcp/p80",
    ]
    for hop in route.path[2:] + tuple(h for b in route.backends for h in b.path):
        assert lines[hop.line - 1].strip() == hop.rule
    assert shares(route) == {("10.180.0.4", 80): 0.5, ("10.180.0.5", 80): 0.5}
    assert route.backends[0].path[0].rule == "meta l4proto tcp dnat to 10.180.0.4:80"
    assert route.path[1].line == 43  # the map element's own line in the multi-line elements list

    svc5 = service(plane, ServiceKey("ns5", "svc5", "p80", "TCP"))
    lb = routes_by_source(frontend(svc5, "LoadBalancer", "5.6.7.8", 80))
    assert set(lb) == {"203.0.113.0/25", "other"}
    assert lb["other"].verdict == "drop"
    assert lb["other"].path[-1].rule == "ip saddr != 203.0.113.0/25 drop"
    assert lb["203.0.113.0/25"].affinity is not None and lb["203.0.113.0/25"].affinity.timeout_seconds == 10800


def test_json_hops_use_rule_handles() -> None:
    path = FIXTURES / "nftables" / "overall" / "dump.json"
    handles = {o["rule"]["handle"] for o in json.loads(path.read_text())["nftables"] if "rule" in o}
    plane = plane_of(path.read_text())
    svc1 = service(plane, ServiceKey("ns1", "svc1", "p80", "TCP"))
    route = svc1.frontends[0].routes[0]
    rule_hops = [h for h in route.path if h.chain not in ("service-ips",)] + list(route.backends[0].path)
    assert rule_hops and all(h.line in handles for h in rule_hops)


def test_only_restricts_to_one_service() -> None:
    path = FIXTURES / "nftables" / "overall" / "dump.txt"
    plane = plane_of(path.read_text(), only="ns5/svc5")
    assert [str(r.key) for r in plane.services] == ["ns5/svc5:p80"]
    assert {fe.type for fe in plane.services[0].frontends} == {"ClusterIP", "NodePort", "LoadBalancer"}


# ---------------------------------------------------------------------------------------------
# Inline rulesets (as `nft list ruleset` prints them).

BASE_V4 = """\
table ip kube-proxy {
    comment "rules for kube-proxy"
    set cluster-ips {
        type ipv4_addr
        comment "Active ClusterIPs"
        elements = { %(cluster_ips)s }
    }

    set nodeport-ips {
        type ipv4_addr
        comment "IPs that accept NodePort traffic"
        elements = { 192.168.0.2 }
    }

    map firewall-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        comment "destinations that are subject to LoadBalancerSourceRanges"
%(firewall_ips)s    }

    map no-endpoint-nodeports {
        type inet_proto . inet_service : verdict
        comment "vmap to drop or reject packets to service nodeports with no endpoints"
%(no_endpoint_nodeports)s    }

    map no-endpoint-services {
        type ipv4_addr . inet_proto . inet_service : verdict
        comment "vmap to drop or reject packets to services with no endpoints"
%(no_endpoint_services)s    }

    map service-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
%(service_ips)s    }

    map service-nodeports {
        type inet_proto . inet_service : verdict
        comment "NodePort traffic"
%(service_nodeports)s    }

    chain filter-prerouting-pre-dnat {
        type filter hook prerouting priority dstnat - 10; policy accept;
        ct state new jump firewall-check
    }

    chain filter-input {
        type filter hook input priority filter; policy accept;
        ct state new jump nodeport-endpoints-check
        ct state new jump service-endpoints-check
    }

    chain filter-output {
        type filter hook output priority filter; policy accept;
        ct state new jump service-endpoints-check
    }

    chain firewall-check {
        ip daddr . meta l4proto . th dport vmap @firewall-ips
    }

    chain mark-for-masquerade {
        meta mark set meta mark | 0x00004000
    }

    chain nat-output {
        type nat hook output priority -100; policy accept;
        jump services
    }

    chain nat-prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }

    chain nodeport-endpoints-check {
        ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
    }

    chain reject-chain {
        comment "helper for @no-endpoint-services / @no-endpoint-nodeports"
        reject
    }

    chain services {
        ip daddr . meta l4proto . th dport vmap @service-ips
        ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
    }

    chain service-endpoints-check {
        ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    }
%(chains)s}
"""


def v4(chains: str = "", **maps: str) -> str:
    values = {
        "cluster_ips": "172.30.0.41",
        "firewall_ips": "",
        "no_endpoint_nodeports": "",
        "no_endpoint_services": "",
        "service_ips": "",
        "service_nodeports": "",
    }
    for name, elements in maps.items():
        values[name] = elements if name == "cluster_ips" else f"        elements = {{ {elements} }}\n"
    values["chains"] = textwrap.indent(textwrap.dedent(chains), "    ")
    return BASE_V4 % values


# kube-proxy's TestOverallNFTablesRules conventions: pods 10.0.0.0/8, services 172.30.0.0/16, node
# 192.168.0.2, LB IPs 1.2.3.4 / 5.6.7.8. ExternalTrafficPolicy Local, one local endpoint of two.
ETP_LOCAL = v4(
    service_ips="1.2.3.4 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80,\n"
    "            172.30.0.41 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80",
    service_nodeports="tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80",
    chains="""
    chain service-42NFTM6N-ns2/svc2/tcp/p80 {
        ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
        NUMGEN_SVC2
    }

    chain local-42NFTM6N-ns2/svc2/tcp/p80 {
        numgen random mod 1 vmap { 0 : goto endpoint-JVGR3GHM-ns2/svc2/tcp/p80__10.180.1.2/80 }
    }

    chain external-42NFTM6N-ns2/svc2/tcp/p80 {
        ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
        fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
        fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
        goto local-42NFTM6N-ns2/svc2/tcp/p80
    }

    chain endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 {
        ip saddr 10.180.0.2 jump mark-for-masquerade
        meta l4proto tcp dnat to 10.180.0.2:80
    }

    chain endpoint-JVGR3GHM-ns2/svc2/tcp/p80__10.180.1.2/80 {
        ip saddr 10.180.1.2 jump mark-for-masquerade
        meta l4proto tcp dnat to 10.180.1.2:80
    }
    """.replace(
        "NUMGEN_SVC2",
        numgen(
            "endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80",
            "endpoint-JVGR3GHM-ns2/svc2/tcp/p80__10.180.1.2/80",
        ),
    ),
)


def test_etp_local_with_a_local_endpoint() -> None:
    plane = plane_of(ETP_LOCAL)
    assert codes(plane) == []
    rules = service(plane, ServiceKey("ns2", "svc2", "p80", "TCP"))
    cluster_ip = routes_by_source(frontend(rules, "ClusterIP", "172.30.0.41", 80))
    assert set(cluster_ip) == {"any"}
    assert shares(cluster_ip["any"]) == {("10.180.0.2", 80): 0.5, ("10.180.1.2", 80): 0.5}
    for fe in (frontend(rules, "LoadBalancer", "1.2.3.4", 80), frontend(rules, "NodePort", None, 3001)):
        routes = routes_by_source(fe)
        assert set(routes) == {"cluster", "external"}
        assert shares(routes["cluster"]) == {("10.180.0.2", 80): 0.5, ("10.180.1.2", 80): 0.5}
        assert shares(routes["external"]) == {("10.180.1.2", 80): 1.0}
        assert routes["external"].backends[0].local is True
        assert routes["external"].path[-2].rule == "goto local-42NFTM6N-ns2/svc2/tcp/p80"
        assert routes["cluster"].path[2].rule.endswith('comment "short-circuit pod traffic"')


IPV6_UDP = """\
table ip6 kube-proxy {
    comment "rules for kube-proxy"
    set cluster-ips {
        type ipv6_addr
        comment "Active ClusterIPs"
        elements = { fd00:10:96::1 }
    }

    map service-ips {
        type ipv6_addr . inet_proto . inet_service : verdict
        comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
        elements = { fd00:10:96::1 . udp . 53 : goto service-3BOV45WF-ns1/svc1/udp/ }
    }

    set affinity-AAAA-ns1/svc1/udp/__fd00.10.180..1/53 {
        type ipv6_addr
        size 65535
        flags dynamic,timeout
        timeout 1h30m
    }

    chain nat-prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }

    chain services {
        ip6 daddr . meta l4proto . th dport vmap @service-ips
    }

    chain mark-for-masquerade {
        meta mark set meta mark | 0x00004000
    }

    chain service-3BOV45WF-ns1/svc1/udp/ {
        ip6 daddr fd00:10:96::1 ip6 saddr != fd00:10::/64 jump mark-for-masquerade
        ip6 saddr @affinity-AAAA-ns1/svc1/udp/__fd00.10.180..1/53 goto endpoint-AAAA-ns1/svc1/udp/__fd00.10.180..1/53
        NUMGEN_V6
    }

    chain endpoint-AAAA-ns1/svc1/udp/__fd00.10.180..1/53 {
        ip6 saddr fd00:10:180::1 jump mark-for-masquerade
        update @affinity-AAAA-ns1/svc1/udp/__fd00.10.180..1/53 { ip6 saddr }
        meta l4proto udp dnat to [fd00:10:180::1]:53
    }

    chain endpoint-BBBB-ns1/svc1/udp/__fd00.10.180..2/53 {
        ip6 saddr fd00:10:180::2 jump mark-for-masquerade
        meta l4proto udp dnat to [fd00:10:180::2]:53
    }

    chain endpoint-CCCC-ns1/svc1/udp/__fd00.10.180..3/53 {
        ip6 saddr fd00:10:180::3 jump mark-for-masquerade
        meta l4proto udp dnat to [fd00:10:180::3]:53
    }
}
""".replace(
    "NUMGEN_V6",
    numgen(*(f"endpoint-{h}-ns1/svc1/udp/__fd00.10.180..{i}/53" for i, h in ((1, "AAAA"), (2, "BBBB"), (3, "CCCC")))),
)


def test_ipv6_udp_unnamed_port_three_endpoints_and_affinity() -> None:
    plane = plane_of(IPV6_UDP)
    assert codes(plane) == []
    assert plane.pod_cidr_detector == "fd00:10::/64"
    assert plane.nodeport_addresses == ()
    rules = service(plane, ServiceKey("ns1", "svc1", "", "UDP"))
    assert str(rules.key) == "ns1/svc1"
    (route,) = frontend(rules, "ClusterIP", "fd00:10:96::1", 53).routes
    assert route.source == "any" and route.verdict == "forward"
    assert shares(route) == {
        ("fd00:10:180::1", 53): 0.3333,
        ("fd00:10:180::2", 53): 0.3333,
        ("fd00:10:180::3", 53): 0.3333,
    }
    assert abs(sum(b.probability for b in route.backends) - 1.0) < 1e-9
    assert route.affinity is not None and route.affinity.timeout_seconds == 5400
    assert route.backends[0].path[-1].rule == "meta l4proto udp dnat to [fd00:10:180::1]:53"


SCTP_AND_NO_ENDPOINTS = v4(
    cluster_ips="172.30.0.41, 172.30.0.42, 172.30.0.43",
    service_ips="172.30.0.41 . sctp . 3868 : goto service-ABCDEFGH-ns1/diameter/sctp/dia",
    no_endpoint_services='172.30.0.42 . tcp . 80 comment "ns2/empty:http" : goto reject-chain,\n'
    '            172.30.0.43 . tcp . 80 comment "ns3/itp-local" : drop',
    chains="""
    chain service-ABCDEFGH-ns1/diameter/sctp/dia {
        ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
        numgen random mod 1 vmap { 0 : goto endpoint-ABCDEFGH-ns1/diameter/sctp/dia__10.180.0.9/3868 }
    }

    chain endpoint-ABCDEFGH-ns1/diameter/sctp/dia__10.180.0.9/3868 {
        ip saddr 10.180.0.9 jump mark-for-masquerade
        meta l4proto sctp dnat to 10.180.0.9:3868
    }
    """,
)


def test_sctp_and_no_endpoints_reject_vs_drop() -> None:
    plane = plane_of(SCTP_AND_NO_ENDPOINTS)
    assert codes(plane) == []
    sctp = service(plane, ServiceKey("ns1", "diameter", "dia", "SCTP"))
    assert shares(sctp.frontends[0].routes[0]) == {("10.180.0.9", 3868): 1.0}
    empty = service(plane, ServiceKey("ns2", "empty", "http", "TCP"))
    (reject,) = frontend(empty, "ClusterIP", "172.30.0.42", 80).routes
    assert (reject.source, reject.verdict, reject.backends) == ("any", "reject", ())
    assert [h.chain for h in reject.path] == ["service-endpoints-check", "no-endpoint-services", "reject-chain"]
    assert reject.path[-1].rule == "reject"
    itp = service(plane, ServiceKey("ns3", "itp-local", "", "TCP"))
    (drop,) = frontend(itp, "ClusterIP", "172.30.0.43", 80).routes
    assert (drop.source, drop.verdict) == ("any", "drop")


FIREWALL_TWO_RANGES = v4(
    service_ips="5.6.7.8 . tcp . 443 : goto external-HVFWP5L3-ns5/svc5/tcp/https,\n"
    "            172.30.0.41 . tcp . 443 : goto service-HVFWP5L3-ns5/svc5/tcp/https",
    firewall_ips="5.6.7.8 . tcp . 443 : goto firewall-HVFWP5L3-ns5/svc5/tcp/https",
    service_nodeports="tcp . 30443 : goto external-HVFWP5L3-ns5/svc5/tcp/https",
    chains="""
    chain service-HVFWP5L3-ns5/svc5/tcp/https {
        ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
        numgen random mod 1 vmap { 0 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/https__10.180.0.3/8443 }
    }

    chain external-HVFWP5L3-ns5/svc5/tcp/https {
        jump mark-for-masquerade
        goto service-HVFWP5L3-ns5/svc5/tcp/https
    }

    chain endpoint-GTK6MW7G-ns5/svc5/tcp/https__10.180.0.3/8443 {
        ip saddr 10.180.0.3 jump mark-for-masquerade
        meta l4proto tcp dnat to 10.180.0.3:8443
    }

    chain firewall-HVFWP5L3-ns5/svc5/tcp/https {
        ip saddr != { 198.51.100.0/24, 203.0.113.0/25 } drop
    }
    """,
)


def test_load_balancer_source_ranges() -> None:
    plane = plane_of(FIREWALL_TWO_RANGES)
    assert codes(plane) == []
    rules = service(plane, ServiceKey("ns5", "svc5", "https", "TCP"))
    routes = routes_by_source(frontend(rules, "LoadBalancer", "5.6.7.8", 443))
    assert set(routes) == {"198.51.100.0/24", "203.0.113.0/25", "other"}
    assert shares(routes["198.51.100.0/24"]) == {("10.180.0.3", 8443): 1.0}
    assert routes["other"].verdict == "drop" and routes["other"].backends == ()
    # node ports are not subject to loadBalancerSourceRanges
    assert set(routes_by_source(frontend(rules, "NodePort", None, 30443))) == {"any"}


def test_unreachable_chain_is_a_finding_not_a_service() -> None:
    text = v4(
        service_ips="172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80",
        chains="""
        chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
            numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
        }

        chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
            meta l4proto tcp dnat to 10.180.0.1:80
        }

        chain service-STALESTA-ns9/gone/tcp/p80 {
            numgen random mod 1 vmap { 0 : goto endpoint-STALESTA-ns9/gone/tcp/p80__10.180.9.9/80 }
        }

        chain endpoint-STALESTA-ns9/gone/tcp/p80__10.180.9.9/80 {
            meta l4proto tcp dnat to 10.180.9.9:80
        }
        """,
    )
    plane = plane_of(text)
    assert [str(r.key) for r in plane.services] == ["ns1/svc1:p80"]
    unreachable = [f for f in plane.findings if f.code == "unreachable-chain"]
    assert len(unreachable) == 2
    assert all("ns9/gone" in f.message and f.node == "node-a" for f in unreachable)
    stale_line = text.split("\n").index("    chain service-STALESTA-ns9/gone/tcp/p80 {") + 1
    assert any(f.message.startswith(f"line {stale_line}:") for f in unreachable)


def test_undefined_chain_and_unknown_rule_name_their_lines() -> None:
    text = v4(
        service_ips="172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80",
        chains="""
        chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
            NUMGEN_MISSING
        }

        chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
            limit rate 10/second
            meta l4proto tcp dnat to 10.180.0.1:80
        }
        """.replace(
            "NUMGEN_MISSING",
            numgen(
                "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
                "endpoint-MISSING0-ns1/svc1/tcp/p80__10.180.0.2/80",
            ),
        ),
    )
    lines = text.split("\n")
    numgen_line = next(i for i, ln in enumerate(lines, 1) if "numgen random mod 2" in ln)
    limit_line = next(i for i, ln in enumerate(lines, 1) if "limit rate" in ln)
    plane = plane_of(text)
    findings = list(plane.findings) + [f for r in plane.services for f in r.findings]
    undefined = [f for f in findings if f.code == "undefined-chain"]
    assert len(undefined) == 1 and f"line {numgen_line}:" in undefined[0].message
    assert "endpoint-MISSING0" in undefined[0].message
    unknown = [f for f in findings if f.code == "unknown-rule"]
    assert len(unknown) == 1 and f"line {limit_line}:" in unknown[0].message
    # The defined half is still reported, with its real share.
    route = service(plane, ServiceKey("ns1", "svc1", "p80", "TCP")).frontends[0].routes[0]
    assert shares(route) == {("10.180.0.1", 80): 0.5}


OLDER_KUBE_PROXY = """\
table ip kube-proxy {
    comment "rules for kube-proxy"
    map no-endpoint-services {
        type ipv4_addr . inet_proto . inet_service : verdict
        comment "vmap to drop or reject packets to services with no endpoints"
        elements = { 172.30.0.42 . tcp . 80 comment "ns2/svc2:p80" : goto reject-chain }
    }

    map no-endpoint-nodeports {
        type inet_proto . inet_service : verdict
        comment "vmap to drop or reject packets to service nodeports with no endpoints"
    }

    map service-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
        elements = { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
    }

    map service-nodeports {
        type inet_proto . inet_service : verdict
        comment "NodePort traffic"
        elements = { tcp . 3001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80 }
    }

    chain filter-input {
        type filter hook input priority -110; policy accept;
        ct state new jump endpoints-check
    }

    chain endpoints-check {
        ip daddr . meta l4proto . th dport vmap @no-endpoint-services
        fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
    }

    chain nat-prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }

    chain services {
        ip daddr . meta l4proto . th dport vmap @service-ips
        fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
    }

    chain mark-for-masquerade {
        meta mark set meta mark | 0x00004000
    }

    chain reject-chain {
        comment "helper for @no-endpoint-services / @no-endpoint-nodeports"
        reject
    }

    chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
        ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
        numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
    }

    chain external-ULMVA6XW-ns1/svc1/tcp/p80 {
        jump mark-for-masquerade
        goto service-ULMVA6XW-ns1/svc1/tcp/p80
    }

    chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
        ip saddr 10.180.0.1 jump mark-for-masquerade
        meta l4proto tcp dnat to 10.180.0.1:80
    }
}

table ip nat {
    chain PREROUTING {
        type nat hook prerouting priority dstnat; policy accept;
        counter packets 0 bytes 0 jump KUBE-SERVICES
    }

    chain KUBE-SERVICES {
    }
}
"""


def test_older_kube_proxy_layout_and_foreign_tables() -> None:
    # v1.29-era: one endpoints-check chain, no cluster-ips / nodeport-ips sets (node ports on every
    # local address), "tcp dport" in the masquerade rule; plus an iptables-nft table to ignore.
    plane = plane_of(OLDER_KUBE_PROXY)
    assert codes(plane) == []
    assert plane.nodeport_addresses == ()
    svc1 = service(plane, ServiceKey("ns1", "svc1", "p80", "TCP"))
    assert {(f.type, f.ip, f.port) for f in svc1.frontends} == {
        ("ClusterIP", "172.30.0.41", 80),
        ("NodePort", None, 3001),
    }
    svc2 = service(plane, ServiceKey("ns2", "svc2", "p80", "TCP"))
    (route,) = svc2.frontends[0].routes
    assert (svc2.frontends[0].type, route.verdict) == ("ClusterIP", "reject")


def test_missing_kube_proxy_table_is_a_finding() -> None:
    plane = plane_of(
        "table ip filter {\n    chain INPUT {\n        type filter hook input priority filter; policy accept;\n"
        "    }\n}\n"
    )
    assert plane.services == ()
    assert [f.code for f in plane.findings] == ["no-kube-proxy-table"]


# ---------------------------------------------------------------------------------------------
# Pieces.


def test_sniffing() -> None:
    text = (FIXTURES / "nftables" / "overall" / "dump.txt").read_text()
    js = (FIXTURES / "nftables" / "overall" / "dump.json").read_text()
    assert looks_like_nft_text(text) and not looks_like_nft_json(text)
    assert looks_like_nft_json(js) and not looks_like_nft_text(js)
    assert not looks_like_nft_text("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    assert not looks_like_nft_json('{"items": []}')


def test_names_durations_and_rules() -> None:
    assert parse_service_chain_name("service-ULMVA6XW-ns1/svc1/tcp/p80") == ("ns1", "svc1", "tcp", "p80")
    assert parse_service_chain_name("endpoint-5OJB2KTY-my-ns/svc1/udp/__10.180.0.1/80") == (
        "my-ns",
        "svc1",
        "udp",
        "",
    )
    assert parse_service_chain_name("services") is None
    assert parse_duration("3h") == 10800
    assert parse_duration("1d2h3m4s") == 93784
    assert parse_duration("10800s") == 10800
    assert parse_duration("bogus") is None
    a = analyse_rule("ip saddr != { 203.0.113.0/25, 5.6.7.8 } drop")
    assert a.unknown is None and a.action.kind == "drop"
    assert (a.conds[0].selector, a.conds[0].negated) == ("ip saddr", True)
    a = analyse_rule("meta l4proto tcp dnat ip6 to [fd00::1]:80")
    assert a.action.dnat == ("fd00::1", 80)


def test_json_input_matches_text_input_for_inline_ruleset() -> None:
    # The same rules as nft -j prints them (a hand-written subset of the JSON schema).
    doc = {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "ip6", "name": "kube-proxy", "handle": 1}},
            {
                "map": {
                    "family": "ip6",
                    "name": "service-ips",
                    "table": "kube-proxy",
                    "handle": 2,
                    "type": ["ipv6_addr", "inet_proto", "inet_service"],
                    "map": "verdict",
                    "elem": [
                        [{"concat": ["fd00:10:96::1", "tcp", 80]}, {"goto": {"target": "service-X-ns1/svc1/tcp/p80"}}]
                    ],
                }
            },
            {
                "chain": {
                    "family": "ip6",
                    "table": "kube-proxy",
                    "name": "nat-prerouting",
                    "handle": 3,
                    "type": "nat",
                    "hook": "prerouting",
                    "prio": -100,
                    "policy": "accept",
                }
            },
            {"chain": {"family": "ip6", "table": "kube-proxy", "name": "services", "handle": 4}},
            {"chain": {"family": "ip6", "table": "kube-proxy", "name": "service-X-ns1/svc1/tcp/p80", "handle": 5}},
            {
                "chain": {
                    "family": "ip6",
                    "table": "kube-proxy",
                    "name": "endpoint-Y-ns1/svc1/tcp/p80__fd00.1/80",
                    "handle": 6,
                }
            },
            {
                "rule": {
                    "family": "ip6",
                    "table": "kube-proxy",
                    "chain": "nat-prerouting",
                    "handle": 7,
                    "expr": [{"jump": {"target": "services"}}],
                }
            },
            {
                "rule": {
                    "family": "ip6",
                    "table": "kube-proxy",
                    "chain": "services",
                    "handle": 8,
                    "expr": [
                        {
                            "vmap": {
                                "key": {
                                    "concat": [
                                        {"payload": {"protocol": "ip6", "field": "daddr"}},
                                        {"meta": {"key": "l4proto"}},
                                        {"payload": {"protocol": "th", "field": "dport"}},
                                    ]
                                },
                                "data": "@service-ips",
                            }
                        }
                    ],
                }
            },
            {
                "rule": {
                    "family": "ip6",
                    "table": "kube-proxy",
                    "chain": "service-X-ns1/svc1/tcp/p80",
                    "handle": 9,
                    "expr": [
                        {
                            "vmap": {
                                "key": {"numgen": {"mode": "random", "mod": 1, "offset": 0}},
                                "data": {"set": [[0, {"goto": {"target": "endpoint-Y-ns1/svc1/tcp/p80__fd00.1/80"}}]]},
                            }
                        }
                    ],
                }
            },
            {
                "rule": {
                    "family": "ip6",
                    "table": "kube-proxy",
                    "chain": "endpoint-Y-ns1/svc1/tcp/p80__fd00.1/80",
                    "handle": 10,
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                        {"dnat": {"addr": "fd00::1", "port": 80}},
                    ],
                }
            },
        ]
    }
    plane = plane_of(json.dumps(doc))
    assert codes(plane) == []
    (route,) = service(plane, ServiceKey("ns1", "svc1", "p80", "TCP")).frontends[0].routes
    assert shares(route) == {("fd00::1", 80): 1.0}
    assert route.backends[0].path[0] == route.backends[0].path[0].__class__(
        "endpoint-Y-ns1/svc1/tcp/p80__fd00.1/80", 10, "meta l4proto tcp dnat to [fd00::1]:80"
    )


# ---------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "text, line",
    [
        ("hello world\n", 1),
        ("\n\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", 3),
        ("table ip kube-proxy {\n    chain services {\n        ip daddr . meta l4proto . th dport vmap @m\n", 3),
        ("table ip kube-proxy {\n    chain a {\n        numgen random mod 2 vmap { 0 : goto b, 1 : go\n", 3),
        ("table ip kube-proxy {\n    set s {\n        elements = { 1.2.3.4,\n            5.6.7.8,\n", 4),
        ('table ip kube-proxy {\n    chain a {\n        jump b comment "unterminated\n    }\n}\n', 3),
        ("}\n", 1),
        ("", 1),
    ],
)
def test_bad_text_raises_dump_parse_error_with_line(text: str, line: int) -> None:
    with pytest.raises(DumpParseError) as info:
        parse_nft(text, "node-a.nft")
    assert info.value.source == "node-a.nft"
    assert info.value.line == line


def test_truncated_fixture_is_rejected() -> None:
    text = (FIXTURES / "nftables" / "overall" / "dump.txt").read_text()
    cut = text[: len(text) // 2]
    with pytest.raises(DumpParseError) as info:
        parse_nft(cut, "cut.txt")
    assert info.value.line == len(cut.rstrip("\n").split("\n"))
    assert "truncated" in info.value.message


@pytest.mark.parametrize(
    "text, line",
    [
        ('{"nftables": [\n  {"table": {"family": "ip", "name": "kube-proxy"}},\n  oops\n]}', 3),
        ('{"nftables": {}}', 1),
        ('{"nftables": [{"rule": {"family": "ip", "table": "kube-proxy", "chain": "x", "expr": []}}]}', 1),
        ("[1, 2", 1),
    ],
)
def test_bad_json_raises_dump_parse_error(text: str, line: int) -> None:
    with pytest.raises(DumpParseError) as info:
        parse_nft(text, "node-a.json")
    assert info.value.source == "node-a.json"
    assert info.value.line == line


def test_truncated_json_fixture_is_rejected() -> None:
    text = (FIXTURES / "nftables" / "overall" / "dump.json").read_text()
    with pytest.raises(DumpParseError):
        parse_nft(text[: len(text) - 40], "cut.json")


# ---------------------------------------------------------------------------------------------
# Scale: a node with many services stays fast (the parser and resolver are linear).


def test_ten_thousand_services_is_linear() -> None:
    n = 10000
    service_ips = ",\n            ".join(
        f"172.30.{i // 250}.{i % 250 + 1} . tcp . 80 : goto service-H{i:07d}-ns/s{i}/tcp/p" for i in range(n)
    )
    chains = "".join(
        f"""
    chain service-H{i:07d}-ns/s{i}/tcp/p {{
        ip daddr 172.30.{i // 250}.{i % 250 + 1} ip saddr != 10.0.0.0/8 jump mark-for-masquerade
        {numgen(f"endpoint-A{i:07d}-ns/s{i}/tcp/p__10.1.0.1/80", f"endpoint-B{i:07d}-ns/s{i}/tcp/p__10.1.0.2/80")}
    }}

    chain endpoint-A{i:07d}-ns/s{i}/tcp/p__10.1.0.1/80 {{
        meta l4proto tcp dnat to 10.1.0.1:80
    }}

    chain endpoint-B{i:07d}-ns/s{i}/tcp/p__10.1.0.2/80 {{
        meta l4proto tcp dnat to 10.1.0.2:80
    }}
"""
        for i in range(n)
    )
    text = v4(service_ips=service_ips)
    text = text[: text.rstrip().rfind("}")] + textwrap.indent(textwrap.dedent(chains), "    ") + "}\n"
    start = time.monotonic()
    plane = plane_of(text)
    elapsed = time.monotonic() - start
    assert len(plane.services) == n
    assert codes(plane) == []
    assert elapsed < 30, elapsed


def test_source_ranges_that_hold_pods_and_the_node_keep_their_short_circuit() -> None:
    """externalTrafficPolicy Local behind loadBalancerSourceRanges that hold the pod CIDR and the node's
    address: pods and the node pass the firewall and are short-circuited to every endpoint, as without
    ranges ('cluster'); an external client from a range reaches only the local endpoint."""
    svc, ext, loc, fw = (f"{p}-42NFTM6N-ns2/svc2/tcp/p80" for p in ("service", "external", "local", "firewall"))
    ep_a, ep_b = (
        f"endpoint-{h}-ns2/svc2/tcp/p80__{ip}/80" for h, ip in (("AAAAAAAA", "10.180.0.1"), ("BBBBBBBB", "10.180.2.1"))
    )
    text = v4(
        cluster_ips="172.30.0.42",
        service_ips=f"1.2.3.4 . tcp . 80 : goto {ext},\n            172.30.0.42 . tcp . 80 : goto {svc}",
        firewall_ips=f"1.2.3.4 . tcp . 80 : goto {fw}",
        chains=f"""
        chain {svc} {{
            ip daddr 172.30.0.42 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
            {numgen(ep_a, ep_b)}
        }}

        chain {ext} {{
            ip saddr 10.0.0.0/8 goto {svc} comment "short-circuit pod traffic"
            fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
            fib saddr type local goto {svc} comment "short-circuit local traffic"
            goto {loc}
        }}

        chain {loc} {{
            {numgen(ep_b)}
        }}

        chain {ep_a} {{
            ip saddr 10.180.0.1 jump mark-for-masquerade
            meta l4proto tcp dnat to 10.180.0.1:80
        }}

        chain {ep_b} {{
            ip saddr 10.180.2.1 jump mark-for-masquerade
            meta l4proto tcp dnat to 10.180.2.1:80
        }}

        chain {fw} {{
            ip saddr != {{ 192.168.0.0/24, 10.0.0.0/8 }} drop
        }}
        """,
    )
    plane = plane_of(text)
    rules = service(plane, ServiceKey("ns2", "svc2", "p80", "TCP"))
    lb = routes_by_source(frontend(rules, "LoadBalancer", "1.2.3.4", 80))
    assert set(lb) == {"cluster", "192.168.0.0/24", "10.0.0.0/8", "other"}
    assert shares(lb["cluster"]) == {("10.180.0.1", 80): 0.5, ("10.180.2.1", 80): 0.5}
    assert shares(lb["192.168.0.0/24"]) == shares(lb["10.0.0.0/8"]) == {("10.180.2.1", 80): 1.0}
    assert lb["other"].verdict == "drop"
    assert "firewall-cluster-partial" not in codes(plane)
    # Ranges that hold neither: pods and the node are dropped with everyone else ("other").
    narrow = plane_of(text.replace("192.168.0.0/24, 10.0.0.0/8", "203.0.113.0/24"))
    lb = routes_by_source(
        frontend(service(narrow, ServiceKey("ns2", "svc2", "p80", "TCP")), "LoadBalancer", "1.2.3.4", 80)
    )
    assert set(lb) == {"203.0.113.0/24", "other"}
