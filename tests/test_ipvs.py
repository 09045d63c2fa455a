"""IPVS mode: ipvsadm + ipset + iptables dumps of kube-proxy's IPVS proxier -> the same routes as iptables mode.

Golden fixtures (tests/fixtures/kube-proxy/ipvs/*) are checked in the normal form of tests/golden.py, with
one IPVS reading applied to expected.json: IPVS has one set of real servers per virtual server, whoever the
client is, so with externalTrafficPolicy Local a node port / external IP / LB frontend has ONE route `any`
to the node-local endpoints (`external_endpoints`), or to all endpoints when the node has none.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane import detect_format, read_node
from kubectl_svcnet.dataplane.ipvs import (
    UNKNOWN_NAME,
    kube_set_name,
    looks_like_ipset,
    looks_like_ipvsadm,
    parse_ipset,
    parse_ipvs,
    parse_ipvsadm,
    resolve_ipvs,
)
from kubectl_svcnet.errors import DumpParseError
from kubectl_svcnet.model import (
    Cluster,
    Endpoint,
    Service,
    ServiceKey,
    ServicePort,
)
from tests.golden import _backends, _route_sort, actual_services, expected_services, fixture_dirs, load_expected

NODE = "test-hostname"
COMBOS = {
    "save": ("ipvsadm-save.txt", "ipset-save.txt", "iptables-save.txt"),
    "list": ("ipvsadm-Ln.txt", "ipset-list.txt"),
    "mixed": ("ipvsadm-save.txt", "ipset-list.txt", "iptables-save.txt"),
}
FIXTURES = fixture_dirs("ipvs")


def cluster_from_expected(expected: Dict[str, Any]) -> Cluster:
    """The API objects a fixture's expected.json describes."""
    services: Dict[tuple, Dict[str, Any]] = {}
    endpoints: Dict[ServiceKey, tuple] = {}
    for e in expected["services"]:
        ns, name = e["service"].split("/")
        s = services.setdefault((ns, name), {"ports": [], "cips": [], "ext": [], "lb": [], "e": e})
        node_port = next((f["port"] for f in e["frontends"] if f["kind"] == "NodePort"), None)
        cport = next(f["port"] for f in e["frontends"] if f["kind"] == "ClusterIP")
        s["ports"].append(ServicePort(e["port_name"], e["protocol"], cport, node_port=node_port))
        for f in e["frontends"]:
            bucket = {"ClusterIP": "cips", "ExternalIP": "ext", "LoadBalancer": "lb"}.get(f["kind"])
            if bucket and f["ip"] not in s[bucket]:
                s[bucket].append(f["ip"])
        endpoints[ServiceKey(ns, name, e["port_name"], e["protocol"])] = tuple(
            Endpoint(x["ip"], x["port"], ready=x["ready"], serving=x["serving"], terminating=x["terminating"],
                     node_name=NODE if x["local"] else "other-node")
            for x in e["endpoints"]
        )  # fmt: skip
    svcs = []
    for (ns, name), s in services.items():
        e = s["e"]
        aff = e.get("session_affinity")
        svcs.append(
            Service(ns, name, e["type"], tuple(s["cips"]), tuple(s["ext"]), tuple(s["lb"]), tuple(s["ports"]),
                    e["external_traffic_policy"], e["internal_traffic_policy"],
                    aff["timeout_seconds"] if aff else None, tuple(e.get("load_balancer_source_ranges") or ()),
                    e.get("health_check_node_port"))
        )  # fmt: skip
    return Cluster(services=tuple(svcs), endpoints=endpoints, has_services=True, has_endpoints=True)


def ipvs_expected(expected: Dict[str, Any]) -> Dict[str, Any]:
    """golden.expected_services, read the IPVS way for externalTrafficPolicy Local (see module docstring)."""
    plain = copy.deepcopy(expected)
    for svc in plain["services"]:
        svc["external_traffic_policy"] = "Cluster"
    out = expected_services(plain)
    for svc in expected["services"]:
        if svc.get("external_traffic_policy") != "Local":
            continue
        key = f"{svc['service']}:{svc['port_name']}/{svc['protocol']}"
        cluster_eps = [e for e in svc["endpoints"] if e.get("used_for_cluster_traffic", True)]
        eps = svc.get("external_endpoints") or cluster_eps
        timeout = svc["session_affinity"]["timeout_seconds"] if svc.get("session_affinity") else None
        route = ("any", "forward", _backends(eps), timeout) if eps else ("any", "reject", (), None)
        fixed = []
        for kind, ip, port, routes in out[key]:
            if kind != "ClusterIP":
                ranges = svc.get("load_balancer_source_ranges") or []
                if kind == "LoadBalancer" and ranges and eps:
                    routes = tuple([(c,) + route[1:] for c in ranges] + [("other", "drop", (), None)])
                else:
                    routes = (route,)
                routes = tuple(sorted(routes, key=_route_sort))
            fixed.append((kind, ip, port, routes))
        out[key] = fixed
    return out


def _read(fixture, combo, cluster=None, only=None):
    dumps = [((fixture / f).read_text(), f) for f in COMBOS[combo]]
    return read_node(dumps, NODE, cluster=cluster, only=only)


@pytest.mark.parametrize("combo", sorted(COMBOS))
@pytest.mark.parametrize("fixture", FIXTURES, ids=[d.name for d in FIXTURES])
def test_fixture_maps_exactly(fixture, combo):
    expected = load_expected(fixture)
    plane = _read(fixture, combo, cluster_from_expected(expected))
    assert plane.info.proxy_mode == "ipvs"
    assert actual_services(plane) == ipvs_expected(expected)
    assert not [f for f in plane.findings if f.severity == "error"]
    assert not [f for f in plane.findings if f.code == "unknown-virtual-server"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[d.name for d in FIXTURES])
def test_fixture_without_api_objects_has_the_same_frontends(fixture):
    """Without API objects every virtual server is still there, with the same routes, under <unknown> names."""
    expected = load_expected(fixture)
    plane = _read(fixture, "save")
    assert all(s.key.namespace == "" and s.key.name == UNKNOWN_NAME for s in plane.services)
    have = sorted(fe for fes in actual_services(plane).values() for fe in fes)
    want = sorted(fe for fes in ipvs_expected(expected).values() for fe in fes)
    assert have == want


@pytest.mark.parametrize("fixture", FIXTURES, ids=[d.name for d in FIXTURES])
def test_unknown_names_group_frontends_under_their_cluster_ip(fixture):
    expected = load_expected(fixture)
    plane = _read(fixture, "save")
    by_key = actual_services(plane)
    assert len(by_key) == len(expected["services"])
    for fes in by_key.values():
        assert [f for f in fes if f[0] == "ClusterIP"], fes


def test_nodeport_on_several_node_addresses_is_one_frontend():
    fixture = next(d for d in FIXTURES if d.name == "nodeport-several-node-ips")
    plane = _read(fixture, "save", cluster_from_expected(load_expected(fixture)))
    assert plane.nodeport_addresses == ("100.101.102.103", "100.101.102.104", "100.101.102.105")
    nps = [fe for s in plane.services for fe in s.frontends if fe.type == "NodePort"]
    assert sorted(fe.port for fe in nps) == [3001, 3002] and all(fe.ip is None for fe in nps)
    sctp = next(s for s in plane.services if s.key.protocol == "SCTP")
    assert sctp.key == ServiceKey("ns1", "svc1", "p80", "SCTP")


def test_terminating_real_server_gets_no_new_connections():
    fixture = next(d for d in FIXTURES if d.name == "terminating-weight-0")
    plane = _read(fixture, "save")
    (svc,) = plane.services
    route = svc.frontends[0].routes[0]
    assert {(b.ip, b.probability) for b in route.backends} == {("10.180.0.1", 0.5), ("10.180.0.2", 0.5)}
    (f,) = [f for f in svc.findings if f.code == "terminating-real-servers"]
    assert "10.180.0.3:80" in f.message


def test_affinity_is_ipvs_persistence():
    fixture = next(d for d in FIXTURES if d.name == "affinity")
    plane = _read(fixture, "list")
    for fe in plane.services[0].frontends:
        assert fe.routes[0].affinity is not None and fe.routes[0].affinity.timeout_seconds == 10800


def test_etp_local_and_health_check_node_port_from_the_api():
    fixture = next(d for d in FIXTURES if d.name == "loadbalancer-etp-local")
    plane = _read(fixture, "save", cluster_from_expected(load_expected(fixture)))
    (svc,) = plane.services
    assert svc.health_check_node_port == 30000
    assert not [f for f in svc.findings if f.code == "etp-local-no-local-endpoints"]


def test_ipv6_sets_are_read_by_their_ipv4_names():
    assert kube_set_name("KUBE-6-CLUSTER-IP") == "KUBE-CLUSTER-IP"
    assert kube_set_name("KUBE-6-LOAD-BALANCER-SOURCE-CID") == "KUBE-LOAD-BALANCER-SOURCE-CIDR"
    assert kube_set_name("KUBE-6-NODE-PORT-LOCAL-SCTP-HAS") == "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
    fixture = next(d for d in FIXTURES if d.name == "ipv6")
    plane = _read(fixture, "list")
    assert plane.nodeport_addresses == ("2001:db8::1:1",)
    assert any(fe.type == "NodePort" for s in plane.services for fe in s.frontends)


def test_trace_of_one_service():
    fixture = next(d for d in FIXTURES if d.name == "clusterip")
    plane = _read(fixture, "save", cluster_from_expected(load_expected(fixture)), only="ns2/svc2")
    assert [str(s.key) for s in plane.services] == ["ns2/svc2:p80"]
    assert plane.services[0].frontends[0].routes[0].verdict == "reject"


def test_formats_are_recognised():
    fixture = next(d for d in FIXTURES if d.name == "clusterip")
    assert detect_format((fixture / "ipvsadm-save.txt").read_text()) == "ipvsadm"
    assert detect_format((fixture / "ipvsadm-Ln.txt").read_text()) == "ipvsadm"
    assert detect_format((fixture / "ipset-save.txt").read_text()) == "ipset"
    assert detect_format((fixture / "ipset-list.txt").read_text()) == "ipset"
    assert detect_format((fixture / "iptables-save.txt").read_text()) == "iptables"
    assert not looks_like_ipvsadm("create KUBE-CLUSTER-IP hash:ip,port\n")
    assert not looks_like_ipset("-A -t 10.0.0.1:80 -s rr\n")


def test_ipvs_mode_iptables_dump_alone_gives_no_bogus_services():
    fixture = next(d for d in FIXTURES if d.name == "loadbalancer-source-ranges")
    plane = read_node([((fixture / "iptables-save.txt").read_text(), "ipt")], NODE)
    assert plane.services == ()


# ---------------------------------------------------------------------------------------------
# Inline cases.


def ipvs(text: str, *more: str, cluster=None, only=None):
    dumps = [(textwrap.dedent(text), "ipvsadm.txt")] + [
        (textwrap.dedent(t), f"dump{i}.txt") for i, t in enumerate(more)
    ]
    return read_node(dumps, "n1", cluster=cluster, only=only)


def _route(plane, i=0):
    return plane.services[i].frontends[0].routes[0]


def test_wrr_shares_follow_weights_and_rr_ignores_them():
    wrr = ipvs("""\
        -A -t 10.96.0.10:80 -s wrr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 3
        -a -t 10.96.0.10:80 -r 10.244.2.2:8080 -m -w 1
    """)
    assert {(b.ip, b.probability) for b in _route(wrr).backends} == {("10.244.1.2", 0.75), ("10.244.2.2", 0.25)}
    assert not wrr.services[0].findings
    rr = ipvs("""\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 3
        -a -t 10.96.0.10:80 -r 10.244.2.2:8080 -m -w 1
    """)
    assert {b.probability for b in _route(rr).backends} == {0.5}


@pytest.mark.parametrize("sched", ["lc", "wlc", "sed", "nq", "sh", "dh", "mh"])
def test_load_dependent_schedulers_say_so(sched):
    plane = ipvs(f"""\
        -A -t 10.96.0.10:80 -s {sched}
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 2
        -a -t 10.96.0.10:80 -r 10.244.2.2:8080 -m -w 2
    """)
    assert {b.probability for b in _route(plane).backends} == {0.5}
    assert [f.code for f in plane.services[0].findings] == ["share-depends-on-load"]
    assert sched in plane.services[0].findings[0].message


def test_all_real_servers_terminating_rejects():
    plane = ipvs("""\
        -A -u 10.96.0.10:53 -s rr -p 600
        -a -u 10.96.0.10:53 -r 10.244.1.2:53 -m -w 0
    """)
    route = _route(plane)
    assert (route.verdict, route.backends) == ("reject", ())
    assert plane.services[0].key == ServiceKey("", UNKNOWN_NAME, "10.96.0.10:53", "UDP")


def test_persistence_becomes_affinity():
    plane = ipvs("""\
        -A -t 10.96.0.10:80 -s rr -p 600
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
    """)
    assert _route(plane).affinity.timeout_seconds == 600
    r = _route(plane)
    hops = r.path + r.backends[0].path  # one backend: its hop is part of the route's common path
    assert [(h.chain, h.line) for h in hops] == [("IPVS", 1), ("IPVS", 2)]
    assert hops[0].rule == "-A -t 10.96.0.10:80 -s rr -p 600"


def test_ipvsadm_list_variants():
    default = ipvs("""\
        IP Virtual Server version 1.2.1 (size=4096)
        Prot LocalAddress:Port Scheduler Flags
          -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
        TCP  [fd00::1]:443 wrr persistent 30
          -> [fd00:10::5]:6443            Masq    1      0          0
          -> [fd00:10::6]:6443            Masq    3      2          0
    """)
    r = _route(default)
    assert r.affinity.timeout_seconds == 30
    assert {(b.ip, b.port, b.probability) for b in r.backends} == {
        ("fd00:10::5", 6443, 0.25),
        ("fd00:10::6", 6443, 0.75),
    }
    assert default.services[0].key.port_name == "[fd00::1]:443"
    stats = ipvs("""\
        IP Virtual Server version 1.2.1 (size=4096)
        Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
          -> RemoteAddress:Port
        TCP  10.96.0.1:443                      12      345        0    20700        0
          -> 192.168.56.10:6443                 12      345        0    20700        0
          -> 192.168.56.11:6443                  0        0        0        0        0
    """)
    assert {b.probability for b in _route(stats).backends} == {0.5}
    assert [f.code for f in stats.services[0].findings] == ["weights-unknown"]
    persist = ipvs("""\
        IP Virtual Server version 1.2.1 (size=4096)
        Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn
          -> RemoteAddress:Port
        UDP  10.96.0.10:53 rr
          -> 10.244.0.2:53                1         0           0          0
          -> 10.244.0.3:53                0         0           0          4
    """)
    assert [b.ip for b in _route(persist).backends] == ["10.244.0.2"]


SETS = """\
    create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
    add KUBE-CLUSTER-IP 10.96.0.10,tcp:80
    create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
    add KUBE-NODE-PORT-TCP 31080
    create KUBE-NODE-PORT-LOCAL-TCP bitmap:port range 0-65535
    add KUBE-NODE-PORT-LOCAL-TCP 31080
    create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
"""


def test_nodeport_joins_its_cluster_ip_and_etp_local_without_local_endpoints_is_named():
    plane = ipvs(
        """\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
        -A -t 192.168.0.5:31080 -s rr
        -a -t 192.168.0.5:31080 -r 10.244.1.2:8080 -m -w 1
        -A -t 10.0.2.15:31080 -s rr
        -a -t 10.0.2.15:31080 -r 10.244.1.2:8080 -m -w 1
        """,
        SETS,
    )
    (svc,) = plane.services
    assert svc.key == ServiceKey("", UNKNOWN_NAME, "10.96.0.10:80", "TCP")
    assert [(fe.type, fe.ip, fe.port) for fe in svc.frontends] == [
        ("ClusterIP", "10.96.0.10", 80),
        ("NodePort", None, 31080),
    ]
    assert plane.nodeport_addresses == ("192.168.0.5", "10.0.2.15")
    assert [f.code for f in svc.findings] == ["etp-local-no-local-endpoints"]


def test_node_addresses_that_disagree_get_a_frontend_each():
    plane = ipvs(
        """\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
        -A -t 192.168.0.5:31080 -s rr
        -a -t 192.168.0.5:31080 -r 10.244.1.2:8080 -m -w 1
        -A -t 10.0.2.15:31080 -s rr
        """,
        SETS,
    )
    nps = [fe for s in plane.services for fe in s.frontends if fe.type == "NodePort"]
    assert sorted(fe.ip for fe in nps) == ["10.0.2.15", "192.168.0.5"]
    assert "nodeport-addresses-disagree" in [f.code for s in plane.services for f in s.findings]


def test_api_objects_name_virtual_servers_and_flag_unknown_ones():
    svc = Service("web", "front", "NodePort", ("10.96.0.10",), ports=(ServicePort("http", "TCP", 80, node_port=31080),))
    cluster = Cluster(services=(svc,), has_services=True)
    plane = ipvs(
        """\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
        -A -t 192.168.0.5:31080 -s rr
        -a -t 192.168.0.5:31080 -r 10.244.1.2:8080 -m -w 1
        -A -t 10.96.0.99:443 -s rr
        """,
        cluster=cluster,
    )
    assert [str(s.key) for s in plane.services] == ["/<unknown>:10.96.0.99:443", "web/front:http"]
    named = plane.services[1]
    assert [(fe.type, fe.port) for fe in named.frontends] == [("ClusterIP", 80), ("NodePort", 31080)]
    (f,) = [f for f in plane.findings if f.code == "unknown-virtual-server"]
    assert "10.96.0.99:443" in f.message and "ipvsadm.txt:5" in f.message
    # A trace of the one Service (a live trace reads only it from the API) says nothing of the others.
    one = ipvs(
        """\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
        -A -t 10.96.0.99:443 -s rr
        """,
        cluster=cluster,
        only="web/front",
    )
    assert [str(s.key) for s in one.services] == ["web/front:http"]
    assert not [f for f in one.findings if f.code == "unknown-virtual-server"]


def test_without_ipsets_types_are_guessed():
    plane = ipvs("""\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
        -A -t 192.168.0.5:31080 -s rr
        -a -t 192.168.0.5:31080 -r 10.244.1.2:8080 -m -w 1
    """)
    (svc,) = plane.services
    assert [fe.type for fe in svc.frontends] == ["ClusterIP", "NodePort"]
    assert "frontend-type-guessed" in [f.code for f in plane.findings]


IPTABLES_STALE = """\
    *nat
    :PREROUTING ACCEPT [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-SVC-AAAA - [0:0]
    -A PREROUTING -j KUBE-SERVICES
    -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "ns/old:http cluster IP" --dport 80 -j KUBE-SVC-AAAA
    -A KUBE-SVC-AAAA -j DNAT --to-destination 10.244.9.9:80
    COMMIT
"""


def test_leftover_iptables_mode_rules_are_named_not_mapped():
    plane = ipvs(
        """\
        -A -t 10.96.0.10:80 -s rr
        -a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1
        """,
        IPTABLES_STALE,
    )
    assert plane.info.proxy_mode == "ipvs"
    assert [s.key.name for s in plane.services] == [UNKNOWN_NAME]
    assert "stale-iptables-mode-rules" in [f.code for f in plane.findings]


def test_empty_ipvs_table_next_to_iptables_rules_is_iptables_mode():
    plane = ipvs(
        """\
        IP Virtual Server version 1.2.1 (size=4096)
        Prot LocalAddress:Port Scheduler Flags
          -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
        """,
        IPTABLES_STALE,
    )
    assert plane.info.proxy_mode == "iptables"
    assert [str(s.key) for s in plane.services] == ["ns/old:http"]


def test_parse_functions_directly():
    data = parse_ipvsadm("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1 -g -w 1\n", "a")
    (vs,) = data.services.values()
    assert (vs.reals[0].port, vs.reals[0].forward) == (80, "route")  # direct routing: no port
    parse_ipset("create KUBE-IPVS-IPS hash:ip family inet\nadd KUBE-IPVS-IPS 10.0.0.1\n", "b", data)
    assert data.sets["KUBE-IPVS-IPS"][0].entries == [("10.0.0.1", 2)]
    plane = resolve_ipvs(parse_ipvs([]), "n")
    assert plane.services == () and plane.info.proxy_mode == "ipvs"


# ---------------------------------------------------------------------------------------------
# Bad input: DumpParseError naming source:line.

BAD = [
    ("-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n", "undeclared virtual server", 1),
    ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w x\n", "weight", 2),
    ("-A -t kubernetes.default:https -s rr\n", "numeric", 1),
    ("-A -t 10.0.0.1:80 -s rr --bogus\n", "unknown option", 1),
    ("-A -t 10.0.0.1:80\n", "scheduler", 1),
    ("IP Virtual Server version 1.2.1 (size=4096)\nTCP  10.0.0.1:80 rr\nhello there\n", "unexpected line", 3),
    ("IP Virtual Server version 1.2.1 (size=4096)\n  -> 10.1.0.1:80 Masq 1 0 0\n", "before any virtual server", 2),
    ("IP Virtual Server version 1.2.1 (size=4096)\nTCP  10.0.0.1:80 rr\n  -> 10.1.0.1:80 Masq one 0 0\n", "weight", 3),
    (
        "create KUBE-CLUSTER-IP hash:ip,port family inet\nadd KUBE-LOOP-BACK 10.0.0.1,tcp:80,10.0.0.1\n",
        "not created",
        2,
    ),
    ("create KUBE-CLUSTER-IP hash:ip,port family inet\nadd KUBE-CLUSTER-IP 10.0.0.1,tcp:http\n", "does not fit", 2),
    ("create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 99999\n", "does not fit", 2),
    ("create KUBE-CLUSTER-IP hash:ip,port family inet\nflush KUBE-CLUSTER-IP\n", "unexpected line", 2),
    ("Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nMembers:\n10.0.0.1,tcp:80\n10.0.0.2\n", "does not fit", 5),
    ("Name: KUBE-CLUSTER-IP\nType: hash:ip,port\ngarbage\n", "unexpected line", 3),
]


@pytest.mark.parametrize("text,what,line", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_malformed_lines_name_source_and_line(text, what, line):
    with pytest.raises(DumpParseError) as exc:
        read_node([(text, "node1/dump.txt")], "n")
    assert what in exc.value.message
    assert exc.value.where == f"node1/dump.txt:{line}"


def test_names_instead_of_numbers_get_a_hint():
    with pytest.raises(DumpParseError) as exc:
        read_node([("-A -t 10.0.0.1:https -s rr\n", "x")], "n")
    assert "-n" in (exc.value.hint or "")


def test_truncated_ipvsadm_dump_is_an_error_finding():
    plane = read_node([("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0", "cut.txt")], "n")
    (f,) = [f for f in plane.findings if f.severity == "error"]
    assert f.code == "truncated-dump" and "cut.txt:2" in f.message


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){2,4}", fullmatch=True), st.ip_addresses().map(str), st.text())
)
def test_ip_text_is_ipaddress_text(host):
    """The dotted-quad shortcut gives what ipaddress gives, and refuses what it refuses."""
    import ipaddress

    from kubectl_svcnet.dataplane.ipvs import ip_text

    try:
        want = str(ipaddress.ip_address(host))
    except ValueError:
        with pytest.raises(ValueError):
            ip_text(host)
    else:
        assert ip_text(host) == want


@pytest.mark.parametrize("combo", sorted(COMBOS))
@pytest.mark.parametrize("fixture", FIXTURES, ids=[d.name for d in FIXTURES])
def test_trace_of_each_service_is_its_part_of_the_map(fixture, combo):
    """A trace reads only its Service's virtual servers from ipvsadm-save; what it says of the
    Service is what the map says, findings included."""
    cluster = cluster_from_expected(load_expected(fixture))
    whole = _read(fixture, combo, cluster)
    names = sorted({s.key.service for s in whole.services if s.key.namespace})
    assert names
    for svc in names:
        one = _read(fixture, combo, cluster, only=svc)
        assert one.services == tuple(s for s in whole.services if s.key.service == svc), svc
        assert set(one.findings) <= set(whole.findings)


def test_trace_skips_other_ports_virtual_servers():
    """The filter is on the virtual server's address and port (or node port): a damaged line of another
    virtual server is not read in a trace (reading the whole dump refuses it); the Service's all are."""
    from kubectl_svcnet.dataplane.ipvs import Wanted, parse_ipvsadm

    text = "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.244.1.2:8080 -m -w 1\n-A -t 10.96.0.11:443 -s\n"
    data = parse_ipvsadm(text, "ipvsadm.txt", wanted=Wanted({("10.96.0.10", "80")}, set()))
    assert [(vs.ip, vs.port, [r.ip for r in vs.reals]) for vs in data.services.values()] == [
        ("10.96.0.10", 80, ["10.244.1.2"])
    ]
    for wanted in (None, Wanted({("10.96.0.10", "80")}, {"443"}), Wanted({("10.96.0.11", "443")}, set())):
        with pytest.raises(DumpParseError, match="-s without a value") as e:
            parse_ipvsadm(text, "ipvsadm.txt", wanted=wanted)
        assert e.value.line == 3
