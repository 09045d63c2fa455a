"""`trace ADDRESS[:PORT]`: from an address to its Service, and only that Service's frontends at it
(kubectl_svcnet/address.py and the `trace` command). Offline: the seed cluster's snapshot (API objects)
and bare dumps (the rules alone); live: the API emulator (no root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_svcnet.address import (
    Address,
    DnsName,
    frontend_at,
    narrow,
    parse_address,
    parse_dns_name,
    pick_service,
    services_at,
    why_none,
)
from kubectl_svcnet.errors import NotFoundError, UsageError
from kubectl_svcnet.model import Frontend, Node, Service, ServiceKey, ServiceMap, ServicePort, ServiceView
from tests.clirun import svcnet

ROOT = Path(__file__).resolve().parent.parent
SEED = str(ROOT / "examples" / "seed-cluster")
OVERALL = ROOT / "tests" / "fixtures" / "kube-proxy"
IPT = f"node1={OVERALL / 'iptables' / 'modern-overall' / 'dump.txt'}"
NFT = f"node1={OVERALL / 'nftables' / 'overall' / 'dump.txt'}"


@pytest.mark.parametrize(
    "text, want",
    [
        ("10.96.0.10", Address("10.96.0.10")),
        ("10.96.0.10:53", Address("10.96.0.10", 53)),
        (" 10.96.0.10:53 ", Address("10.96.0.10", 53)),
        ("fd00:0:0::a", Address("fd00::a")),
        ("[fd00:0::a]:443", Address("fd00::a", 443)),
        ("[fd00::a]", Address("fd00::a")),
        ("db-service", None),  # a Service's name starts with a letter: never an address
        ("default/db-service", None),
        ("10.96.0", None),
        ("[fd00::a]x", None),
        ("[db]:80", None),
    ],
)
def test_parse_address(text, want):
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["10.96.0.10:0", "10.96.0.10:65536", "10.96.0.10:dns", "[fd00::a]:", "1.2.3.4:"])
def test_an_address_with_a_bad_port_is_a_usage_error(text):
    with pytest.raises(UsageError, match="invalid port"):
        parse_address(text)


@pytest.mark.parametrize(
    "text, want",
    [
        ("db.shop", DnsName("shop", "db")),
        ("db.shop:3306", DnsName("shop", "db", 3306)),
        ("db.shop.svc", DnsName("shop", "db")),
        ("db.shop.svc.cluster.local:3306", DnsName("shop", "db", 3306)),
        ("db.shop.svc.cluster.local.", DnsName("shop", "db")),
        ("db.0-ns.svc.example.org", DnsName("0-ns", "db")),
        ("db", None),
        ("shop/db", None),
        ("db.shop.pod.cluster.local", None),  # not a Service's name
        ("db.Shop", None),
        ("9db.shop", None),  # a Service's name starts with a letter
        ("db..svc", None),
        ("10.0.0.1", None),
    ],
)
def test_parse_dns_name(text, want):
    assert parse_dns_name(text) == want


def test_a_dns_name_with_a_bad_port_is_a_usage_error():
    with pytest.raises(UsageError, match=r"^invalid port in 'db\.shop:0': a port is a number from 1 to 65535$"):
        parse_dns_name("db.shop:0")


def test_address_text_round_trips():
    assert [str(a) for a in (Address("10.0.0.1"), Address("10.0.0.1", 80), Address("fd00::1", 80))] == [
        "10.0.0.1", "10.0.0.1:80", "[fd00::1]:80"
    ]  # fmt: skip


def _fe(type_: str, ip, port: int) -> Frontend:
    return Frontend(type_, ip, port, "n1", ())


def test_frontend_at():
    nodes = frozenset({"192.168.0.2"})
    assert frontend_at(_fe("ClusterIP", "10.96.0.10", 53), Address("10.96.0.10"), nodes)
    assert frontend_at(_fe("ClusterIP", "10.96.0.10", 53), Address("10.96.0.10", 53), nodes)
    assert not frontend_at(_fe("ClusterIP", "10.96.0.10", 53), Address("10.96.0.10", 54), nodes)
    assert frontend_at(_fe("ClusterIP", "fd00:0::a", 53), Address("fd00::a", 53), nodes)  # canonical text
    # A node port on every address: at the nodes' addresses, with its port; at any address with no Nodes.
    np = _fe("NodePort", None, 30080)
    assert frontend_at(np, Address("192.168.0.2", 30080), nodes)
    assert not frontend_at(np, Address("192.168.0.3", 30080), nodes)
    assert not frontend_at(np, Address("192.168.0.2"), nodes)  # no port: not a node port
    assert frontend_at(np, Address("192.168.0.3", 30080), frozenset())


def _svc(ns, name, cluster_ip, ports, external=(), lb=()):
    return Service(ns, name, cluster_ips=(cluster_ip,), external_ips=external, load_balancer_ips=lb,
                   ports=tuple(ServicePort(n, "TCP", p, node_port=np) for n, p, np in ports))  # fmt: skip


SHARED = [
    _svc("shop", "web", "10.96.1.1", [("http", 80, 30080)], external=("203.0.113.5",)),
    _svc("shop", "api", "10.96.1.2", [("https", 443, None)], external=("203.0.113.5",)),
    _svc("ops", "mon", "10.96.1.3", [("metrics", 9100, 31000)], lb=("198.51.100.7",)),
]
NODES = [Node("n1", (("InternalIP", "192.168.0.2"), ("Hostname", "n1")))]


def test_services_at_and_the_choice():
    assert services_at(SHARED, NODES, Address("10.96.1.2")) == [("shop/api", "ClusterIP 443/TCP")]
    assert services_at(SHARED, NODES, Address("198.51.100.7", 9100)) == [("ops/mon", "load-balancer IP 9100/TCP")]
    assert services_at(SHARED, NODES, Address("192.168.0.2", 31000)) == [("ops/mon", "node port 31000/TCP")]
    assert services_at(SHARED, NODES, Address("192.168.0.9", 31000)) == []  # not a node's address
    assert services_at(SHARED, NODES, Address("10.96.1.2"), namespace="ops") == []
    # An external IP two Services share: the port tells them apart, or the choice is the user's.
    both = services_at(SHARED, NODES, Address("203.0.113.5"))
    assert [n for n, _ in both] == ["shop/web", "shop/api"]
    with pytest.raises(UsageError) as e:
        pick_service(both, Address("203.0.113.5"))
    assert e.value.message == (
        "203.0.113.5 is an address of 2 Services: shop/web (external IP 80/TCP); shop/api (external IP 443/TCP)"
    )
    assert e.value.hint == "give IP:PORT, or the Service's NAMESPACE/NAME"
    assert pick_service(services_at(SHARED, NODES, Address("203.0.113.5", 443)), Address("203.0.113.5", 443)) == (
        "shop/api"
    )
    with pytest.raises(NotFoundError, match=r'^no Service at 10\.96\.9\.9:80 in namespace "ops"$'):
        pick_service([], Address("10.96.9.9", 80), scope=' in namespace "ops"')


def test_why_none():
    same_ip = services_at(SHARED, NODES, Address("10.96.1.1"))
    assert why_none(Address("10.96.1.1", 81), same_ip, NODES) == (
        "10.96.1.1 is an address of shop/web (ClusterIP 80/TCP): not on port 81"
    )
    assert (
        why_none(Address("192.168.0.2"), [], NODES) == "192.168.0.2 is node n1's address: give IP:PORT with a node port"
    )
    assert why_none(Address("192.168.0.2", 32000), [], NODES) == (
        "192.168.0.2 is node n1's address, and no Service has node port 32000"
    )
    assert why_none(Address("10.9.9.9", 80), [], NODES) == ""


def test_narrow_prefers_frontends_at_the_address_itself():
    key = ServiceKey("ns", "svc", "p", "TCP")
    smap = ServiceMap((), (ServiceView(key, (_fe("ClusterIP", "10.0.0.1", 80), _fe("NodePort", None, 80))),))
    got = narrow(smap, Address("10.0.0.1", 80), frozenset())
    assert [f.type for v in got.services for f in v.frontends] == ["ClusterIP"]
    got = narrow(smap, Address("192.168.0.2", 80), frozenset())
    assert [f.type for v in got.services for f in v.frontends] == ["NodePort"]


# -- the command -------------------------------------------------------------------------------------


def trace_json(capsys, *args):
    r = svcnet(capsys, "trace", *args, "-o", "json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def frontends(doc):
    return sorted({(s["namespace"], s["name"], s["portName"], s["protocol"], f["type"], f["ip"], f["port"])
                   for s in doc["services"] for f in s["frontends"]})  # fmt: skip


def test_a_cluster_ip_traces_its_service(capsys):
    by_name = trace_json(capsys, "db-service", "--snapshot", SEED)
    assert trace_json(capsys, "10.103.132.104", "--snapshot", SEED) == by_name
    assert trace_json(capsys, "10.103.132.104:3306", "--snapshot", SEED) == by_name
    r = svcnet(capsys, "trace", "10.103.132.104:3306", "--snapshot", SEED)
    assert r.code == 0 and "KUBE-SVC-PKJNZ2BPYAP7WCVG" in r.out  # the table, with each node's chain path


def test_only_the_frontends_at_the_address(capsys):
    # web-lb has a ClusterIP, a node port and a load-balancer IP: each address shows its own.
    lb = trace_json(capsys, "192.168.56.240", "--snapshot", SEED)
    assert frontends(lb) == [("default", "web-lb", "http", "TCP", "LoadBalancer", "192.168.56.240", 80)]
    assert {f["node"] for s in lb["services"] for f in s["frontends"]} == {"controlplane", "node01", "node02"}
    whole = trace_json(capsys, "web-lb", "--snapshot", SEED)
    lb_whole = [f for s in whole["services"] for f in s["frontends"] if f["type"] == "LoadBalancer"]
    assert [f for s in lb["services"] for f in s["frontends"]] == lb_whole  # the same routes, untouched
    # A node's address and the node port.
    np = trace_json(capsys, "192.168.56.11:31380", "--snapshot", SEED)
    assert frontends(np) == [("default", "web-lb", "http", "TCP", "NodePort", None, 31380)]
    # Two service ports on one IP:port (kube-dns: dns/UDP and dns-tcp/TCP on 53), not its 9153.
    dns = trace_json(capsys, "10.96.0.10:53", "--snapshot", SEED)
    assert [(p, proto) for _, _, p, proto, *_ in frontends(dns)] == [("dns", "UDP"), ("dns-tcp", "TCP")]


@pytest.mark.parametrize(
    "target, extra, error, hint",
    [
        ("10.104.20.30:81", (), "no Service at 10.104.20.30:81",
         "10.104.20.30 is an address of default/web (ClusterIP 80/TCP): not on port 81"),
        ("192.168.56.11", (), "no Service at 192.168.56.11",
         "192.168.56.11 is node node01's address: give IP:PORT with a node port"),
        ("192.168.56.11:30999", (), "no Service at 192.168.56.11:30999",
         "192.168.56.11 is node node01's address, and no Service has node port 30999"),
        ("10.9.9.9", (), "no Service at 10.9.9.9", "list every Service IP:port with `kubectl svcnet map -A`"),
        ("10.103.132.104", ("-n", "kube-system"), 'no Service at 10.103.132.104 in namespace "kube-system"',
         "list every Service IP:port with `kubectl svcnet map -A`"),
        ("10.244.2.2:8080", (), "no Service at 10.244.2.2:8080",
         "10.244.2.2:8080 is pod default/web-7c5ddbdf54-h8r4m, a backend of default/web, default/web-lb: trace that"
         " Service instead"),
        ("10.244.2.2:9999", (), "no Service at 10.244.2.2:9999",
         "list every Service IP:port with `kubectl svcnet map -A`"),
    ],
)  # fmt: skip
def test_no_service_at_the_address(capsys, target, extra, error, hint):
    r = svcnet(capsys, "trace", target, "--snapshot", SEED, *extra)
    assert r.code == 1 and r.out == ""
    assert r.errors() == [f"error: {error} ({SEED})"]
    assert r.hint() == f"hint: {hint}"


def test_a_dns_name_traces_the_cluster_ip(capsys):
    """An application's DNS name resolves to the ClusterIP: its frontends alone, on the port if given."""
    whole = trace_json(capsys, "web-lb", "-n", "default", "--snapshot", SEED)
    got = trace_json(capsys, "web-lb.default.svc.cluster.local", "--snapshot", SEED)
    assert frontends(got) == [("default", "web-lb", "http", "TCP", "ClusterIP", "10.98.77.40", 80)]
    assert [f for s in got["services"] for f in s["frontends"]] == [
        f for s in whole["services"] for f in s["frontends"] if f["type"] == "ClusterIP"
    ]
    assert trace_json(capsys, "web-lb.default:80", "--snapshot", SEED) == got
    dns = trace_json(capsys, "kube-dns.kube-system.svc:53", "--snapshot", SEED)
    assert [(p, proto) for _, _, p, proto, *_ in frontends(dns)] == [("dns", "UDP"), ("dns-tcp", "TCP")]
    r = svcnet(capsys, "trace", "web-lb.default:81", "--snapshot", SEED)
    assert r.code == 1 and r.errors() == [
        'error: service "web-lb" in namespace "default" has no ClusterIP frontend at web-lb.default:81 in the'
        f" nodes' rules ({SEED})"
    ]
    assert r.hint() == "hint: its ClusterIP frontends: TCP 10.98.77.40:80"
    r = svcnet(capsys, "trace", "db-service.default", "-n", "shop", "--snapshot", SEED)
    assert r.code == 2 and r.errors() == [
        "error: db-service.default is in namespace default, but -n says shop: give one of them"
    ]


@pytest.mark.parametrize("dump", [IPT, NFT], ids=["iptables", "nftables"])
def test_a_bare_dump_finds_the_service_in_its_rules(capsys, dump):
    """No API objects: the rules name the Service (a map of every Service finds the address)."""
    by_name = trace_json(capsys, "svc4", "-n", "ns4", "--from-file", dump)
    cluster_ip = [f for s in by_name["services"] for f in s["frontends"] if f["type"] == "ClusterIP"]
    assert cluster_ip and len(cluster_ip) < sum(len(s["frontends"]) for s in by_name["services"])
    by_ip = trace_json(capsys, f"{cluster_ip[0]['ip']}:80", "--from-file", dump)
    assert [f for s in by_ip["services"] for f in s["frontends"]] == cluster_ip
    # A node port, at whatever address (a bare dump names no node's).
    np = trace_json(capsys, "192.0.2.1:3001", "--from-file", dump)
    assert frontends(np) == [("ns2", "svc2", "p80", "TCP", "NodePort", None, 3001)]
    r = svcnet(capsys, "trace", "172.30.0.44:81", "--from-file", dump)
    assert r.code == 1 and r.errors() == ["error: no Service at 172.30.0.44:81"]
    assert r.hint() == "hint: 172.30.0.44 is an address of ns4/svc4 (ClusterIP 80/TCP): not on port 81"
    # A backend's address: the rules say whose.
    backend = by_name["services"][0]["frontends"][0]["routes"][0]["backends"][0]
    r = svcnet(capsys, "trace", backend["ip"], "--from-file", dump)
    assert r.code == 1 and r.hint() == f"hint: {backend['ip']} is a backend of ns4/svc4: trace that Service instead"


# -- live: the API emulator ------------------------------------------------------------------------


@pytest.fixture
def emu(tmp_path, monkeypatch):
    from tests.apiemu import ApiEmulator, isolate_client_env

    home = tmp_path / "home"
    home.mkdir()
    isolate_client_env(monkeypatch, home)
    with ApiEmulator.from_dir(Path(SEED), tmp_path / "emu") as e:
        yield e


def test_live_lookup_reads_every_namespace_then_the_nodes(emu):
    from kubectl_svcnet.collect.live import LiveOptions, service_at_address

    opts = LiveOptions(kubeconfig=str(emu.kubeconfig))
    assert service_at_address(opts, Address("10.96.0.10", 53)) == ("kube-system/kube-dns", [])
    assert [(r.path, r.q("limit")) for r in emu.requests] == [("/api/v1/services", "500")]
    emu.clear_log()
    assert service_at_address(opts, Address("192.168.56.12", 30080)) == ("default/web", [])
    assert [r.path for r in emu.requests] == ["/api/v1/services", "/api/v1/nodes"]
    with pytest.raises(NotFoundError) as e:
        service_at_address(opts, Address("192.168.56.12", 30999))
    assert e.value.message == "no Service at 192.168.56.12:30999 in any namespace"
    assert e.value.hint == "192.168.56.12 is node node02's address, and no Service has node port 30999"


def test_live_lookup_without_the_right_to_list_every_namespace(emu):
    """RBAC that forbids listing Services cluster-wide: the context's namespace is searched, with a warning."""
    from kubectl_svcnet.collect.live import LiveOptions, service_at_address

    emu.forbid("services", "kube-system", "list")  # (a namespace also denies the all-namespaces list)
    opts = LiveOptions(kubeconfig=str(emu.kubeconfig))
    assert service_at_address(opts, Address("10.103.132.104")) == (
        "default/db-service",
        ['forbidden: cannot list services in all namespaces: 10.103.132.104 looked for in namespace "default" only'],
    )
    with pytest.raises(NotFoundError, match=r'^no Service at 10\.96\.0\.10 in namespace "default"$'):
        service_at_address(opts, Address("10.96.0.10"))
    # -n: that namespace alone; forbidden there, an error that says so.
    with pytest.raises(Exception, match=r'^forbidden: cannot list services in namespace "kube-system"'):
        service_at_address(LiveOptions(kubeconfig=str(emu.kubeconfig), namespace="kube-system"), Address("10.96.0.10"))
