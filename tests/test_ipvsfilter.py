"""The node-side IPVS filter for `trace` (collect/ipvsfilter.py), run for real: the constant awk program
in FILTER_SCRIPT, through `sh`, with every awk this machine has (mawk, gawk, busybox awk, BWK awk), over
the IPVS fixtures, a generated cluster of a few hundred Services (every frontend type, ETP Local, source
ranges, UDP/SCTP, dual-stack, stale virtual servers) and hypothesis' mutations of them. For every
Service, the trace read from the filtered-and-rebuilt ipvsadm-save and ipset list text must be the trace
read from the whole text: the same JSON, the same IPVS:LINE paths, the same findings and problems.

No root needed. `SVCNET_IPVSFILTER_EXAMPLES=N` runs N hypothesis examples per property (100 by default).
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import re
import shlex
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_svcnet import proxymode
from kubectl_svcnet.collect import ipvsfilter
from kubectl_svcnet.collect.ipvsfilter import AWK_PROGRAM, FILTER_SCRIPT, filter_command, is_filtered, rebuild
from kubectl_svcnet.collect.nodecmds import GZIP_SCRIPT, collect_node
from kubectl_svcnet.dataplane import ipvs_wanted
from kubectl_svcnet.dataplane.ipvs import Wanted
from kubectl_svcnet.model import Cluster, Endpoint, Service, ServicePort
from tests.filtertools import AWKS, FALLBACK_IDS, FALLBACKS, make_node, trace_answer
from tests.golden import fixture_dirs, load_expected
from tests.test_fuzz import mutate_lines
from tests.test_ipvs import NODE as FIXTURE_NODE
from tests.test_ipvs import cluster_from_expected

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = fixture_dirs("ipvs")
EXAMPLES = int(os.environ.get("SVCNET_IPVSFILTER_EXAMPLES", "100"))  # hypothesis' examples per property


def run_filter(text: str, words: Sequence[str], bindir: Optional[str] = None) -> Tuple[str, int]:
    """The real FILTER_SCRIPT + AWK_PROGRAM over `text` (as the dump command `cat` prints it)."""
    env = dict(os.environ)
    if bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    r = subprocess.run(filter_command(("cat",), words), input=text.encode(), capture_output=True, env=env, timeout=300)
    assert r.stderr == b"", r.stderr
    return r.stdout.decode("utf-8", errors="replace"), r.returncode


def filtered_text(text: str, words: Sequence[str], bindir: Optional[str] = None) -> Tuple[str, int]:
    """The text the client rebuilds from the filter's output, and the bytes the node sent."""
    out, code = run_filter(text, words, bindir)
    assert code == 0
    if not is_filtered(out):
        assert out == text.encode().decode("utf-8", errors="replace")  # sent whole, unchanged
        return out, len(out.encode())
    dump = rebuild(out)
    assert dump is not None
    return dump.text, len(out.encode())


def trace(dumps: Sequence[Tuple[str, str]], node: str, service: str, cluster: Cluster) -> Tuple:
    """What a trace says about one node holding `dumps` (trace_answer)."""
    return trace_answer(dumps, service, cluster, node)


def words_of(cluster: Cluster, service: str) -> Tuple[str, ...]:
    wanted = ipvs_wanted(cluster, service)
    assert wanted is not None
    words = ipvsfilter.words_for(wanted)
    assert words is not None
    return words


def assert_same(
    ipvsadm: str, ipset: str, iptables: Optional[str], node: str, service: str, cluster: Cluster,
    bindir: Optional[str] = None,
) -> Tuple[int, int]:  # fmt: skip
    """Filter both texts for `service`; the trace must read the same. Returns (bytes sent, bytes whole)."""
    words = words_of(cluster, service)
    small_vs, sent_vs = filtered_text(ipvsadm, words, bindir)
    small_set, sent_set = filtered_text(ipset, words, bindir)
    tail = [(iptables, "n:iptables-save")] if iptables is not None else []
    whole = trace([(ipvsadm, "n:ipvsadm-save"), (ipset, "n:ipset-list")] + tail, node, service, cluster)
    part = trace([(small_vs, "n:ipvsadm-save"), (small_set, "n:ipset-list")] + tail, node, service, cluster)
    assert part == whole, service
    return sent_vs + sent_set, len(ipvsadm.encode()) + len(ipset.encode())


def only_service(cluster: Cluster, service: str) -> Cluster:
    """The cluster as a live trace reads it: the one Service and its endpoints."""
    keep = tuple(s for s in cluster.services if f"{s.namespace}/{s.name}" == service)
    eps = {k: v for k, v in cluster.endpoints.items() if k.service == service}
    return Cluster(services=keep, endpoints=eps, has_services=True, has_endpoints=True)


# ---------------------------------------------------------------------------------------------
# A generated IPVS-mode node, as kube-proxy programs it (pkg/proxy/ipvs/proxier.go): one virtual server per
# ClusterIP / external IP / LB IP and port, one per node address and node port; the sets of ipsetInfo.

NODE = "node1"
NODE_IPS = {4: ("192.168.0.10", "10.0.2.15"), 6: ("2001:db8::10",)}
SETS = [
    ("KUBE-LOOP-BACK", "hash:ip,port,ip"), ("KUBE-CLUSTER-IP", "hash:ip,port"), ("KUBE-EXTERNAL-IP", "hash:ip,port"),
    ("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port"), ("KUBE-LOAD-BALANCER", "hash:ip,port"),
    ("KUBE-LOAD-BALANCER-FW", "hash:ip,port"), ("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port"),
    ("KUBE-LOAD-BALANCER-SOURCE-IP", "hash:ip,port,ip"), ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "hash:ip,port,net"),
    ("KUBE-NODE-PORT-TCP", "bitmap:port"), ("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port"),
    ("KUBE-NODE-PORT-UDP", "bitmap:port"), ("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port"),
    ("KUBE-NODE-PORT-SCTP-HASH", "hash:ip,port"), ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "hash:ip,port"),
    ("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port"), ("KUBE-IPVS-IPS", "hash:ip"),
]  # fmt: skip
FLAG = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}


def ipset_list(members: Dict[int, Dict[str, List[str]]]) -> str:
    """`ipset list` of kube-proxy's sets (IPv4, then IPv6 as KUBE-6-*, cut to 31 characters)."""
    blocks = []
    for family in (4, 6):
        for name, typ in SETS:
            shown = name if family == 4 else ("KUBE-6-" + name[5:])[:31]
            inet = "inet6" if family == 6 else "inet"
            header = f"family {inet} hashsize 1024 maxelem 65536 bucketsize 12 initval 0x6a62db89"
            if typ.startswith("bitmap"):
                header = "range 0-65535"
            entries = members[family].get(name, [])
            blocks.append("\n".join([f"Name: {shown}", f"Type: {typ}", "Revision: 7", f"Header: {header}",
                                     "Size in memory: 264", "References: 1", f"Number of entries: {len(entries)}",
                                     "Members:", *entries]))  # fmt: skip
    return "\n\n".join(blocks) + "\n"


def _at(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def generated(n: int, endpoints: int = 4, dual_stack: bool = True) -> Tuple[Cluster, str, str]:
    """(cluster, ipvsadm-save -n, ipset list) for `n` Services of every kind."""
    services, eps_of = [], {}
    vs_lines: List[str] = []
    members: Dict[int, Dict[str, List[str]]] = {4: defaultdict(list), 6: defaultdict(list)}

    def virtual(proto: str, ip: str, port: int, reals: Sequence[Tuple[str, int]], rr: str = "rr") -> None:
        at = _at(ip, port)
        vs_lines.append(f"-A {FLAG[proto]} {at} -s {rr}")
        vs_lines.extend(f"-a {FLAG[proto]} {at} -r {_at(r, p)} -m -w 1" for r, p in reals)

    for i in range(n):
        ns, name, kind = f"ns{i % 7}", f"svc{i}", i % 10
        proto = {3: "UDP", 5: "SCTP"}.get(kind, "TCP")
        cips = [f"10.96.{i // 250}.{i % 250 + 1}"] + ([f"fd00::{i + 1:x}"] if dual_stack and kind == 4 else [])
        ports = [ServicePort("p", proto, 53 if kind == 3 else (30000 if kind == 9 else 80), "8080",
                             node_port=30000 + i if kind in (0, 1, 5, 7) else None)]  # fmt: skip
        if kind == 6:
            ports.append(ServicePort("https", "TCP", 443, "8443"))
        ext = (f"198.51.100.{i % 250 + 1}",) if kind == 2 else ()
        lb = (f"203.0.113.{i % 250 + 1}",) if kind in (1, 7) else ()
        local = kind in (1, 2) and i % 20 < 10
        ranges = ("10.0.0.0/8", "192.168.0.0/16") if kind == 7 else ()
        typ = "LoadBalancer" if lb else ("NodePort" if ports[0].node_port else "ClusterIP")
        svc = Service(ns, name, typ, tuple(cips), ext, lb, tuple(ports), "Local" if local else "Cluster",
                      load_balancer_source_ranges=ranges,
                      health_check_node_port=32000 + i if local and lb else None)  # fmt: skip
        services.append(svc)
        pods = {4: [f"10.244.{i % 200}.{j + 2}" for j in range(endpoints)],
                6: [f"fd00:244::{i + 1:x}:{j + 2:x}" for j in range(endpoints)]}  # fmt: skip
        # This node holds one endpoint of every eighth Service, and of half the ETP Local ones.
        here = i % 8 == 0 or (local and i % 40 < 20)
        for p in ports:
            eps_of[svc.key(p)] = tuple(Endpoint(ip, 8080, node_name=NODE if j == 0 and here else "node2")
                                       for j, ip in enumerate(pods[4]))  # fmt: skip
            pr = p.protocol.lower()
            for family in (4, 6):
                fam_cips = [c for c in cips if (":" in c) == (family == 6)]
                if not fam_cips:
                    continue
                reals = [(r, 8080) for r in pods[family]]
                near = reals[:1] if local and here else reals  # ETP Local: the node-local one, if any
                m = members[family]
                if here:
                    m["KUBE-LOOP-BACK"].append(f"{pods[family][0]},{pr}:8080,{pods[family][0]}")
                for c in fam_cips:
                    virtual(p.protocol, c, p.port, reals)
                    m["KUBE-CLUSTER-IP"].append(f"{c},{pr}:{p.port}")
                    m["KUBE-IPVS-IPS"].append(c)
                for x in ext if family == 4 else ():
                    virtual(p.protocol, x, p.port, near)
                    m["KUBE-EXTERNAL-IP"].append(f"{x},{pr}:{p.port}")
                    if local:
                        m["KUBE-EXTERNAL-IP-LOCAL"].append(f"{x},{pr}:{p.port}")
                    m["KUBE-IPVS-IPS"].append(x)
                for x in lb if family == 4 else ():
                    virtual(p.protocol, x, p.port, near)
                    m["KUBE-LOAD-BALANCER"].append(f"{x},{pr}:{p.port}")
                    if local:
                        m["KUBE-LOAD-BALANCER-LOCAL"].append(f"{x},{pr}:{p.port}")
                    if ranges:
                        m["KUBE-LOAD-BALANCER-FW"].append(f"{x},{pr}:{p.port}")
                        m["KUBE-LOAD-BALANCER-SOURCE-CIDR"].extend(f"{x},{pr}:{p.port},{r}" for r in ranges)
                        m["KUBE-LOAD-BALANCER-SOURCE-IP"].append(f"{x},{pr}:{p.port},{x}")
                    m["KUBE-IPVS-IPS"].append(x)
                if p.node_port:
                    for node_ip in NODE_IPS[family]:
                        virtual(p.protocol, node_ip, p.node_port, near)
                        if p.protocol == "SCTP":
                            m["KUBE-NODE-PORT-SCTP-HASH"].append(f"{node_ip},sctp:{p.node_port}")
                    if p.protocol != "SCTP":
                        m[f"KUBE-NODE-PORT-{p.protocol}"].append(str(p.node_port))
                        if local:
                            m[f"KUBE-NODE-PORT-LOCAL-{p.protocol}"].append(str(p.node_port))
                if svc.health_check_node_port and family == 4:
                    m["KUBE-HEALTH-CHECK-NODE-PORT"].append(str(svc.health_check_node_port))
    # What a node also holds: a stale virtual server of a deleted Service (IPv4 and IPv6), a firewall-mark
    # service kube-proxy did not make.
    virtual("TCP", "10.96.250.250", 80, [("10.244.250.2", 8080)])
    if dual_stack:
        virtual("TCP", "fd00::fffe", 80, [("fd00:244::fffe:2", 8080)])
    vs_lines += ["-A -f 100 -s rr", "-a -f 100 -r 10.244.250.3:0 -m -w 1"]
    cluster = Cluster(services=tuple(services), endpoints=eps_of, has_services=True, has_endpoints=True)
    return cluster, "\n".join(vs_lines) + "\n", ipset_list(members)


@pytest.fixture(scope="module")
def gen() -> Tuple[Cluster, str, str]:
    return generated(200)


def names(cluster: Cluster) -> List[str]:
    return [f"{s.namespace}/{s.name}" for s in cluster.services]


# ---------------------------------------------------------------------------------------------


def test_there_is_an_awk() -> None:
    assert AWKS, "no awk on this machine"


def test_the_program_is_constant_and_one_line() -> None:
    assert "\n" not in FILTER_SCRIPT + AWK_PROGRAM
    argv = filter_command(("ipvsadm-save", "-n"), ("10.96.0.10,53", "fd00::a,53", "30053"))
    assert argv == ("sh", "-c", FILTER_SCRIPT, "sh", AWK_PROGRAM, "3", "10.96.0.10,53", "fd00::a,53", "30053",
                    "ipvsadm-save", "-n")  # fmt: skip
    assert "10.96.0.10" not in FILTER_SCRIPT + AWK_PROGRAM


@pytest.mark.parametrize(
    "wanted",
    [
        Wanted({("10.96.0.10; reboot", "80")}, set()),
        Wanted({("10.96.0.010", "80")}, set()),
        Wanted({("FD00::1", "80")}, set()),
        Wanted({("fd00:0::1", "80")}, set()),
        Wanted({("fe80::1%eth0", "80")}, set()),
        Wanted({("10.96.0.10", "080")}, set()),
        Wanted({("10.96.0.10", "0")}, set()),
        Wanted({("10.96.0.10", "65536")}, set()),
        Wanted({("10.96.0.10", " 80")}, set()),
        Wanted({("10.96.0.10", "80")}, {"$(reboot)"}),
        Wanted({("10.96.0.10", "80")}, {"३००८०"}),  # digits, but not ASCII
        Wanted({(" 10.96.0.10", "80")}, set()),
    ],
)
def test_values_that_are_not_addresses_or_ports_never_become_words(wanted: Wanted) -> None:
    assert ipvsfilter.words_for(wanted) is None
    words = [f"{ip},{port}" for ip, port in wanted.addresses] + sorted(wanted.node_ports)
    with pytest.raises(ValueError):  # nor are such words given to the node by any other way
        filter_command(("ipset", "list"), words)


def test_words_are_canonical_pairs_then_node_ports() -> None:
    wanted = Wanted({("10.96.0.10", "80"), ("fd00::a", "80"), ("10.96.0.10", "443")}, {"30443", "30080"})
    assert ipvsfilter.words_for(wanted) == ("10.96.0.10,443", "10.96.0.10,80", "fd00::a,80", "30080", "30443")


def test_the_sets_the_resolver_reads_are_each_classified() -> None:
    """Every set dataplane/ipvs.py looks up is one the filter knows how the resolver reads."""
    source = (ROOT / "kubectl_svcnet" / "dataplane" / "ipvs.py").read_text()
    used: Dict[str, set] = defaultdict(set)
    for method, name in re.findall(r'sets\.(ip_port|ports|third|line_of|entries)\("([A-Z0-9-]+)"', source):
        used[method].add(name)
    assert set(used) == {"ip_port", "ports", "third", "line_of", "entries"}
    assert used["ip_port"] | used["third"] | used["line_of"] <= set(ipvsfilter.IP_PORT_SETS)
    assert used["ports"] <= set(ipvsfilter.PORT_SETS)
    assert used["entries"] <= set(ipvsfilter.WHOLE_SETS + ipvsfilter.GUESS_SETS)
    have = re.search(r"have_sets = bool\(sets\.present & \{([^}]*)\}\)", source)
    assert have and set(re.findall(r'"([A-Z-]+)"', have.group(1))) == set(ipvsfilter.TYPE_SETS)
    # The resolver reads nothing else of the sets: no other lookups by name.
    assert set(re.findall(r'sets\.\w+\("([A-Z0-9-]+)"', source)) <= set(
        ipvsfilter.IP_PORT_SETS + ipvsfilter.PORT_SETS + ipvsfilter.WHOLE_SETS + ipvsfilter.GUESS_SETS
    )


def test_the_marker_regex_covers_every_scan_marker() -> None:
    """Every marker proxymode.scan_dump looks for anywhere in a dump keeps its line (so the proxy-mode
    diagnosis reads the same); the cheap pre-check (NEEDLE_HINTS) lets each through."""
    used = set(re.findall(r"has\(([A-Z_]+)\)", inspect.getsource(proxymode.scan_dump)))
    assert used and used <= set(ipvsfilter.MARKER_GROUPS)
    marks = re.compile(ipvsfilter.NEEDLES)
    hints = [h.replace('\\"', '"') for h in ipvsfilter.NEEDLE_HINTS]
    for group in ipvsfilter.MARKER_GROUPS:
        for needle in getattr(proxymode, group):
            line = needle[1:] + " x" if needle.startswith("\n") else "x " + needle + " y"
            assert marks.search(line) and any(h in line for h in hints), needle
    assert not marks.search("-A -t 10.96.0.1:443 -s rr") and not marks.search("10.96.0.1,tcp:443")
    assert proxymode.IPVS_VIRTUAL_SERVER == r"(?m)^-A -[tuf] "  # the first such line is kept by rule


@pytest.mark.parametrize("fixture", FIXTURES, ids=[d.name for d in FIXTURES])
def test_fixtures_every_service_every_awk(fixture: Path, awk_bins: Dict[str, str]) -> None:
    cluster = cluster_from_expected(load_expected(fixture))
    ipvsadm, ipset, iptables = ((fixture / f).read_text() for f in ("ipvsadm-save.txt", "ipset-list.txt",
                                                                      "iptables-save.txt"))  # fmt: skip
    for bindir in awk_bins.values():
        for svc in names(cluster):
            for c in (cluster, only_service(cluster, svc)):
                assert_same(ipvsadm, ipset, iptables, FIXTURE_NODE, svc, c, bindir)
            assert_same(ipvsadm, ipset, None, FIXTURE_NODE, svc, cluster, bindir)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[d.name for d in FIXTURES])
def test_other_outputs_are_sent_whole(fixture: Path) -> None:
    """ipset save, ipvsadm -Ln: not what the program reads — sent as they came."""
    cluster = cluster_from_expected(load_expected(fixture))
    words = words_of(cluster, names(cluster)[0])
    for f in ("ipset-save.txt", "ipvsadm-Ln.txt", "iptables-save.txt"):
        text = (fixture / f).read_text()
        out, code = run_filter(text, words)
        assert code == 0 and out == text, f


def test_generated_every_service(gen: Tuple[Cluster, str, str]) -> None:
    cluster, ipvsadm, ipset = gen
    assert len(cluster.services) == 200 and ipvsadm.count("\n") > 2000
    for svc in names(cluster):
        assert_same(ipvsadm, ipset, None, NODE, svc, cluster)
        assert_same(ipvsadm, ipset, None, NODE, svc, only_service(cluster, svc))


def test_generated_services_are_read_and_named(gen: Tuple[Cluster, str, str]) -> None:
    """The generated node means what it should: each kind of frontend, named after its Service."""
    cluster, ipvsadm, ipset = gen
    kinds = {}
    for svc in ("ns0/svc0", "ns1/svc1", "ns2/svc2", "ns3/svc3", "ns4/svc4", "ns5/svc5", "ns0/svc7", "ns2/svc9"):
        doc = json.loads(trace([(ipvsadm, "v"), (ipset, "s")], NODE, svc, cluster)[0])
        kinds[svc] = sorted({(fe["type"], fe.get("ip") or "") for s in doc["services"] for fe in s["frontends"]})
    assert ("NodePort", "") in kinds["ns0/svc0"] and ("LoadBalancer", "203.0.113.2") in kinds["ns1/svc1"]
    assert ("ExternalIP", "198.51.100.3") in kinds["ns2/svc2"] and ("ClusterIP", "fd00::5") in kinds["ns4/svc4"]
    assert ("NodePort", "") in kinds["ns5/svc5"]


@pytest.mark.parametrize("sample", [("ns0/svc0", "ns1/svc1", "ns4/svc4", "ns0/svc7", "ns2/svc9", "ns3/svc199")])
def test_generated_with_every_awk(gen: Tuple[Cluster, str, str], awk_bins: Dict[str, str], sample) -> None:
    cluster, ipvsadm, ipset = gen
    for svc in sample:
        outs = {}
        for name, bindir in awk_bins.items():
            assert_same(ipvsadm, ipset, None, NODE, svc, cluster, bindir)
            words = words_of(cluster, svc)
            outs[name] = (run_filter(ipvsadm, words, bindir)[0], run_filter(ipset, words, bindir)[0])
        assert len(set(outs.values())) == 1, sorted(outs)  # every awk sends the same bytes


def test_a_few_hundred_services_send_a_small_fraction() -> None:
    cluster, ipvsadm, ipset = generated(400, endpoints=10, dual_stack=False)
    sent = whole = 0
    for svc in names(cluster)[::7]:
        s, w = assert_same(ipvsadm, ipset, None, NODE, svc, cluster)
        sent, whole = sent + s, whole + w
    assert sent < whole * 0.05, (sent, whole)
    # The virtual servers alone: a Service's own lines and the first one.
    words = words_of(cluster, "ns1/svc1")
    out, _ = run_filter(ipvsadm, words)
    assert is_filtered(out) and out.count("\n") < 50 and len(out) < len(ipvsadm) / 100


def test_line_numbers_are_the_nodes_own(gen: Tuple[Cluster, str, str]) -> None:
    cluster, ipvsadm, ipset = gen
    for text in (ipvsadm, ipset):
        lines = text.splitlines()
        out, _ = run_filter(text, words_of(cluster, "ns4/svc11"))
        rows = out.splitlines()
        assert rows[0] == f"#svcnet-filter 1 {len(lines)} 0" and rows[-1] == "#svcnet-end"
        numbers = [int(row.partition("\t")[0]) for row in rows[1:-1]]
        for row in rows[1:-1]:
            n, _, line = row.partition("\t")
            # Each line is the node's, but for a "Members:" on the line of a member left out, right before a
            # member sent (a gap's empty lines would end the set's members when the client reads them).
            assert lines[int(n) - 1] == line or (line == "Members:" and int(n) + 1 in numbers), row
    doc = trace([(ipvsadm, "n:ipvsadm-save"), (ipset, "n:ipset-list")], NODE, "ns4/svc11", cluster)
    hops = re.findall(r"IPVS:(\d+)", doc[1])
    assert hops and all(ipvsadm.splitlines()[int(h) - 1].startswith(("-A ", "-a ")) for h in hops)


@pytest.mark.parametrize(
    "text",
    [
        "",  # no virtual servers
        "-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 192.168.0.1:6443 -m -w 1",  # cut: no newline at the end
        "\n-A -t 10.96.0.1:443 -s rr\n",  # a first line that is empty
        "-A -t 10.96.0.1:443 -s rr\n*nat\n",  # a line of another dump format
        "-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 192.168.0.1:6443 -m -w 1\t\n",  # a tab
        "-A -t 10.96.0.1:443 -s rr # \u00e9\n",  # not ASCII
        "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nMembers:\n10.96.0.1,tcp:443\ntable ip x {\n",
        "IP Virtual Server version 1.2.1 (size=4096)\n",
    ],
)
def test_odd_output_is_sent_whole_and_unchanged(text: str, awk_bins: Dict[str, str]) -> None:
    for bindir in awk_bins.values():
        out, code = run_filter(text, ("10.96.0.10,53",), bindir)
        assert code == 0 and out == text


def test_filter_script_keeps_the_commands_status(tmp_path: Path) -> None:
    def run(*command: str, bindir: Optional[str] = None) -> Tuple[int, str]:
        env = dict(os.environ, PATH=(bindir + os.pathsep if bindir else "") + os.environ["PATH"])
        r = subprocess.run(filter_command(command, ("30080",)), capture_output=True, env=env)
        return r.returncode, r.stderr.decode()

    assert run("no-such-program-svcnet")[0] == 127
    assert run("sh", "-c", "echo -A -t 10.0.0.1:80 -s rr; exit 4")[0] == 4
    broken = tmp_path / "awk"
    broken.write_text("#!/bin/sh\ncat >/dev/null; echo boom >&2\nexit 2\n")
    broken.chmod(0o755)
    code, err = run("cat", "/dev/null", bindir=str(tmp_path))
    assert code == ipvsfilter.AWK_FAILED and "awk exited 2" in err


# ---------------------------------------------------------------------------------------------
# The IPv6 check in the program against Python's ipaddress: a member is dropped only when its address is
# one ipaddress reads (else the client's parse error must stay), and every such address is dropped.

_V6_SET = "Name: KUBE-6-CLUSTER-IP\nType: hash:ip,port\nMembers:\nfd00::1,tcp:80\n{},tcp:9\n\n"


def _python_reads(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.text(alphabet="0123456789abcdefABCDEF:", min_size=1, max_size=41)
        | st.ip_addresses(v=6).map(lambda a: a.exploded if int(a) % 3 == 0 else str(a))
        | st.ip_addresses(v=6).map(lambda a: str(a).upper()),
        min_size=1,
        max_size=40,
    )
)
def test_ipv6_addresses_are_read_as_python_reads_them(candidates: List[str]) -> None:
    # Each candidate the last member of a set of its own (the first member always stays).
    out, _ = run_filter("".join(_V6_SET.format(c) for c in candidates), ("10.96.0.10,80",))
    kept = {int(row.split("\t", 1)[0]) for row in out.splitlines()[1:-1]}
    for i, c in enumerate(candidates):
        assert (6 * i + 5 not in kept) == _python_reads(c), c


# ---------------------------------------------------------------------------------------------
# Why each keep-rule is there: a line that only that rule keeps, which changes the trace when it is gone.

IPVS_IPTABLES = (FIXTURES[0] / "iptables-save.txt").read_text()  # kube-proxy's IPVS-mode rules


def ipset_block(name: str, typ: str, *members: str) -> str:
    return "\n".join([f"Name: {name}", f"Type: {typ}", "Revision: 7", "Header: family inet hashsize 1024",
                      "Size in memory: 264", "References: 1", f"Number of entries: {len(members)}", "Members:",
                      *members]) + "\n"  # fmt: skip


def web(**spec) -> Cluster:
    return Cluster(services=(Service("ns", "web", **spec),), has_services=True)


_LB_80 = web(type="LoadBalancer", cluster_ips=("10.96.0.10",), load_balancer_ips=("203.0.113.5",),
             ports=(ServicePort("p", "TCP", 80),))  # fmt: skip
_CIP = web(cluster_ips=("10.96.0.10",), ports=(ServicePort("p", "TCP", 80),))
_OTHER_VS = "-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.244.0.2:80 -m -w 1\n"
RULE_CASES = {
    # Another IPv6 address on the Service's port: in a set, it is a ClusterIP; left out, a node port (80 is
    # in the node-port set), grouped with the Service's LB virtual server (typed a node port too), and first.
    "ipv6-entries-on-its-ports": (
        "-A -t [fd00::99]:80 -s rr\n-a -t [fd00::99]:80 -r [fd00::1:2]:80 -m -w 1\n"
        "-A -t 203.0.113.5:80 -s rr\n-a -t 203.0.113.5:80 -r 10.244.0.2:80 -m -w 1\n",
        ipset_block("KUBE-NODE-PORT-TCP", "bitmap:port", "80") + "\n"
        + ipset_block("KUBE-6-CLUSTER-IP", "hash:ip,port", "fd00::1,tcp:53", "fd00::99,tcp:80"),
        _LB_80, "set", "fd00::99,tcp:80", True,
    ),
    # No set says what a frontend is: the resolver guesses, a port in the node-port range on an address
    # not bound to kube-ipvs0 being a node port.
    "ipvs-ips-when-types-are-guessed": (
        "-A -t 10.96.0.10:30080 -s rr\n-a -t 10.96.0.10:30080 -r 10.244.0.2:80 -m -w 1\n",
        ipset_block("KUBE-IPVS-IPS", "hash:ip", "10.96.0.1", "10.96.0.10"),
        web(cluster_ips=("10.96.0.10",), ports=(ServicePort("p", "TCP", 30080),)), "set", "10.96.0.10", True,
    ),
    # ... and then it says so (a node-level finding) when a virtual server it reads is in no set: an IPv6 one
    # (the client reads them all) on another port, here.
    "every-member-when-types-are-guessed": (
        "-A -u [fd00::5]:30000 -s rr\n-a -u [fd00::5]:30000 -r [fd00::1:2]:53 -m -w 1\n",
        ipset_block("KUBE-6-NODE-PORT-UDP", "bitmap:port", "80", "30000"), _CIP, "set", "30000", True,
    ),
    # No virtual server of the Service here: a set with members is what says IPVS mode is programmed.
    "first-member-of-each-set": (
        _OTHER_VS, ipset_block("KUBE-CLUSTER-IP", "hash:ip,port", "10.96.0.1,tcp:443"), _CIP, "set",
        "10.96.0.1,tcp:443", True,
    ),
    # proxymode.scan_dump's markers: IPVS virtual servers (the first -A line) and kube-router's.
    "first-virtual-server": (
        "-A --tcp-service 10.96.0.3:443 -s rr\n" + _OTHER_VS, ipset_block("cali40all", "hash:ip", "10.1.1.1"), _CIP,
        "vs", "-A -t 10.96.0.1:443 -s rr", False,
    ),
    "scan-markers": (
        _OTHER_VS + "-A -t 10.96.0.2:443 -s rr kube-router-svip\n", ipset_block("cali40all", "hash:ip", "10.1.1.1"),
        _CIP, "vs", "-A -t 10.96.0.2:443 -s rr kube-router-svip", False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_each_keep_rule_keeps_a_line_that_matters(case: str, awk_bins: Dict[str, str]) -> None:
    ipvsadm, ipset, cluster, which, line, with_iptables = RULE_CASES[case]
    tail = [(IPVS_IPTABLES, "n:iptables-save")] if with_iptables else []

    def read(vs: str, sets: str) -> Tuple:
        return trace([(vs, "n:ipvsadm-save"), (sets, "n:ipset-list")] + tail, NODE, "ns/web", cluster)

    without = (ipvsadm, ipset.replace(f"\n{line}\n", "\n\n")) if which == "set" else (
        ipvsadm.replace(f"{line}\n", "\n"), ipset)  # fmt: skip
    assert without != (ipvsadm, ipset) and read(*without) != read(ipvsadm, ipset)  # the line matters
    for bindir in awk_bins.values():
        assert_same(ipvsadm, ipset, IPVS_IPTABLES if with_iptables else None, NODE, "ns/web", cluster, bindir)
        out, _ = run_filter(ipvsadm if which == "vs" else ipset, words_of(cluster, "ns/web"), bindir)
        assert is_filtered(out) and f"\t{line}\n" in out


# ---------------------------------------------------------------------------------------------
# Hypothesis: damaged and mutated ipvsadm-save and ipset list text read the same filtered as whole.

_SMALL = generated(24, endpoints=2)
_INPUTS = [_SMALL] + [
    (cluster_from_expected(load_expected(d)), (d / "ipvsadm-save.txt").read_text(), (d / "ipset-list.txt").read_text())
    for d in FIXTURES
]
_TOKENS = ["-A", "-a", "-t", "-u", "-f", "--sctp-service", "-r", "-w", "-s", "rr", "-p", "0", "80", "53", "30000",
           "10.96.0.1:80", "10.96.0.3:80", "[fd00::5]:80", "[fd00::5]", "192.168.0.10:30000", "10.244.0.2:8080",
           "Name:", "Name: KUBE-CLUSTER-IP", "Name: KUBE-6-NODE-PORT-TCP", "Type:", "hash:ip,port", "bitmap:port",
           "hash:ip", "Members:", "", "10.96.0.1,tcp:80", "10.96.0.3,udp:53", "fd00::5,tcp:80", "30000", "tcp:080",
           "10.0.0.0/8", "1.2.3.4,tcp:80,10.0.0.0/8", "KUBE-6-", "KUBE-CLUSTER-IP", '"KUBE-SVC-', "chain cali-",
           "::", ",", ":", "*nat", "#", "table ip x {", "999999"]  # fmt: skip


def _mutated_same(cluster: Cluster, ipvsadm: str, ipset: str, service: str, iptables: Optional[str] = None) -> None:
    words = words_of(cluster, service)
    small_vs, _ = filtered_text(ipvsadm, words)
    small_set, _ = filtered_text(ipset, words)
    node = NODE if cluster is _SMALL[0] else FIXTURE_NODE
    tail = [(iptables, "i")] if iptables is not None else []
    whole = trace([(ipvsadm, "v"), (ipset, "s")] + tail, node, service, cluster)
    assert trace([(small_vs, "v"), (small_set, "s")] + tail, node, service, cluster) == whole


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_INPUTS), st.data())
def test_mutated_dumps_read_the_same_filtered(inputs, data) -> None:
    cluster, ipvsadm, ipset = inputs
    service = data.draw(st.sampled_from(names(cluster)))
    which = data.draw(st.sampled_from(["ipvsadm", "ipset", "both"]))
    if which in ("ipvsadm", "both"):
        ipvsadm = mutate_lines(ipvsadm, data, _TOKENS)
    if which in ("ipset", "both"):
        ipset = mutate_lines(ipset, data, _TOKENS)
    _mutated_same(cluster, ipvsadm, ipset, service)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_INPUTS), st.data())
def test_subsets_and_cuts_read_the_same_filtered(inputs, data) -> None:
    cluster, ipvsadm, ipset = inputs
    service = data.draw(st.sampled_from(names(cluster)))
    texts = []
    for text in (ipvsadm, ipset):
        lines = text.splitlines(True)
        keep = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
        text = "".join(line for line, k in zip(lines, keep) if k or data.draw(st.booleans()))
        texts.append(text[: data.draw(st.integers(min_value=0, max_value=len(text)))] if data.draw(st.booleans())
                     else text)  # fmt: skip
    _mutated_same(cluster, texts[0], texts[1] or ipset, service)


# Well-formed nodes made up from the small generated cluster's addresses and ports: virtual servers on its
# ClusterIPs, LB and external IPs, node addresses and strangers, with any port (its ports, node ports,
# others) and protocol; every set with members drawn from the same, so that a Service's address or port
# turns up where it should not (a node port equal to a service port, a ClusterIP in the LB set, ...).
_A4 = ["10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5", "10.96.0.6", "10.96.0.8", "10.96.0.10",
       "203.0.113.2", "203.0.113.8", "198.51.100.3", "192.168.0.10", "10.0.2.15", "10.96.250.250"]  # fmt: skip
# Services with a frontend at those addresses: node ports, LB (ETP Local, source ranges), external IP,
# UDP, dual-stack, SCTP, a port equal to svc0's node port.
_TRACED = ["ns0/svc0", "ns1/svc1", "ns2/svc2", "ns3/svc3", "ns4/svc4", "ns5/svc5", "ns0/svc7", "ns2/svc9", "ns3/svc10"]
_A6 = ["fd00::5", "fd00::f", "2001:db8::10", "fd00::fffe"]
_PORTS = [80, 80, 53, 443, 30000, 30001, 30005, 30007, 9]
_PODS = ["10.244.0.2", "10.244.1.2", "10.244.8.2", "fd00:244::5:2"]


def _made_up(data) -> Tuple[str, str]:
    draw = data.draw
    addr = st.sampled_from(_A4 + _A6)
    port = st.sampled_from(_PORTS)
    vs_lines: List[str] = []
    for _ in range(draw(st.integers(0, 20))):
        proto, ip, p = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP"])), draw(addr), draw(port)
        opts = draw(st.sampled_from(["-s rr", "-s wrr", "-s rr -p 10800", "-s lc"]))
        vs_lines.append(f"-A {FLAG[proto]} {_at(ip, p)} {opts}")
        for r in draw(st.lists(st.sampled_from(_PODS), max_size=3, unique=True)):
            vs_lines.append(f"-a {FLAG[proto]} {_at(ip, p)} -r {_at(r, 8080)} -m -w {draw(st.sampled_from([0, 1, 3]))}")
    members: Dict[int, Dict[str, List[str]]] = {4: defaultdict(list), 6: defaultdict(list)}
    for family in (4, 6):
        for name, typ in SETS:
            for _ in range(draw(st.integers(0, 4))):
                ip, p = draw(st.sampled_from(_A4 if family == 4 else _A6)), draw(port)
                pr = draw(st.sampled_from(["tcp", "udp", "sctp"]))
                pod = draw(st.sampled_from(_PODS))
                third = f"{pod},{pr}:8080,{pod}" if name == "KUBE-LOOP-BACK" else f"{ip},{pr}:{p},{ip}"
                cidr = "10.0.0.0/8" if family == 4 else "fd00::/64"
                entry = {"hash:ip": ip, "bitmap:port": str(p), "hash:ip,port": f"{ip},{pr}:{p}",
                         "hash:ip,port,ip": third, "hash:ip,port,net": f"{ip},{pr}:{p},{cidr}"}[typ]  # fmt: skip
                members[family][name].append(entry)
    ipset = ipset_list(members)
    if draw(st.booleans()):  # some sets missing: then frontend types may be guessed
        gone = draw(st.sets(st.sampled_from([n for n, _ in SETS]), max_size=6))
        if draw(st.booleans()):
            gone |= set(ipvsfilter.TYPE_SETS)
        blocks = ipset.split("\n\n")
        ipset = "\n\n".join(
            b for b in blocks if b.split("\n", 1)[0][len("Name: ") :].replace("KUBE-6-", "KUBE-") not in gone
        )
    return "\n".join(vs_lines) + ("\n" if vs_lines else ""), ipset


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_made_up_nodes_read_the_same_filtered(data) -> None:
    cluster = _SMALL[0]
    ipvsadm, ipset = _made_up(data)
    service = data.draw(st.sampled_from(_TRACED))
    _mutated_same(cluster, ipvsadm, ipset, service, IPVS_IPTABLES if data.draw(st.booleans()) else None)


@settings(max_examples=max(EXAMPLES // 4, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_awk_sends_the_same_bytes(awk_bins: Dict[str, str], data) -> None:
    ipvsadm, ipset = _made_up(data)
    if data.draw(st.booleans()):
        # (Without NUL bytes, which neither program prints: BWK and busybox awk end a line at one.)
        ipvsadm, ipset = (mutate_lines(t, data, _TOKENS).replace("\x00", "") for t in (ipvsadm, ipset))
    words = words_of(_SMALL[0], data.draw(st.sampled_from(_TRACED)))
    for text in (ipvsadm, ipset):
        assert len({run_filter(text, words, bindir) for bindir in awk_bins.values()}) == 1


# ---------------------------------------------------------------------------------------------
# collect_node with the filter, on a "node" made of real programs: fake ipvsadm-save, ipset and
# iptables-nft-save that print fixture text, the real sh, gzip and awk (LocalRunner with its own PATH).


def ipvs_node(tmp_path: Path, fixture: str = "loadbalancer-source-ranges", awk: Optional[str] = "real"):
    d = next(f for f in FIXTURES if f.name == fixture)
    saves = {
        prog: (d / f).read_text()
        for prog, f in (
            ("iptables-nft-save", "iptables-save.txt"),
            ("ipvsadm-save", "ipvsadm-save.txt"),
            ("ipset", "ipset-list.txt"),
        )
    }
    return make_node(tmp_path, saves, awk), cluster_from_expected(load_expected(d)), saves


def ipvs_argv(commands: Sequence[str]) -> List[Tuple[str, ...]]:
    """The filter's argv in each command that ran it (inside the gzip wrapper)."""
    out = []
    for c in commands:
        argv = tuple(shlex.split(c))
        if argv[:4] == ("sh", "-c", GZIP_SCRIPT, "sh"):
            argv = argv[4:]
        if argv[:3] == ("sh", "-c", FILTER_SCRIPT):
            out.append(argv)
    return out


def test_collect_node_filters_ipvs_dumps_for_a_trace(tmp_path: Path) -> None:
    runner, cluster, saves = ipvs_node(tmp_path)
    svc = "ns1/svc1"
    wanted = ipvs_wanted(only_service(cluster, svc), svc)
    whole = collect_node(runner, "node1", only=svc)  # no Wanted (no API objects): whole
    part = collect_node(runner, "node1", only=svc, ipvs_wanted=wanted)
    assert [t for t, s in whole.dumps if "ipvsadm" in s] == [saves["ipvsadm-save"]]
    assert [s for _, s in part.dumps] == [s for _, s in whole.dumps]
    assert sum(len(t.strip()) for t, s in part.dumps if "ipset" in s) < len(saves["ipset"])
    assert len([n for n in part.notes if f" lines sent for {svc} " in n]) == 2, part.notes
    for argv in ipvs_argv(part.commands):
        words = ipvsfilter.words_for(wanted)
        assert argv == ("sh", "-c", FILTER_SCRIPT, "sh", AWK_PROGRAM, str(len(words)), *words, *argv[6 + len(words) :])
        assert argv[6 + len(words) :] in (("ipvsadm-save", "-n"), ("ipset", "list"))
    assert len(ipvs_argv(part.commands)) == 2 and not ipvs_argv(whole.commands)
    c = only_service(cluster, svc)
    assert trace(part.dumps, "node1", svc, c) == trace(whole.dumps, "node1", svc, c)


def test_collect_node_for_a_map_reads_whole(tmp_path: Path) -> None:
    runner, cluster, saves = ipvs_node(tmp_path)
    d = collect_node(runner, "node1", ipvs_wanted=ipvs_wanted(cluster, "ns1/svc1"))  # no `only`: not a trace
    assert [t for t, s in d.dumps if "ipvsadm" in s or "ipset" in s] == [saves["ipvsadm-save"], saves["ipset"]]
    assert not ipvs_argv(d.commands)
    assert ipvs_wanted(cluster, None) is None and ipvs_wanted(None, "ns1/svc1") is None
    assert ipvs_wanted(cluster, "nope/nothing") is None


@pytest.mark.parametrize("awk, note", FALLBACKS, ids=FALLBACK_IDS)
def test_collect_node_falls_back_to_whole_dumps(tmp_path: Path, awk: Optional[str], note: str) -> None:
    runner, cluster, saves = ipvs_node(tmp_path, awk=awk)
    svc = "ns1/svc1"
    part = collect_node(runner, "node1", only=svc, ipvs_wanted=ipvs_wanted(cluster, svc))
    assert [t for t, s in part.dumps if "ipvsadm" in s or "ipset" in s] == [saves["ipvsadm-save"], saves["ipset"]]
    assert part.warnings == []
    assert any(note in n for n in part.notes), part.notes


def test_collect_node_never_sends_values_that_are_not_addresses(tmp_path: Path) -> None:
    runner, cluster, saves = ipvs_node(tmp_path)
    bad = Wanted({("1.2.3.4", "80"), ("10.20.30.41;reboot", "80")}, {"$(reboot)"})
    part = collect_node(runner, "node1", only="ns1/svc1", ipvs_wanted=bad)
    assert [t for t, s in part.dumps if "ipvsadm" in s] == [saves["ipvsadm-save"]]
    assert not ipvs_argv(part.commands) and not any("reboot" in c for c in part.commands)
    assert any("IPVS dumps read whole" in n for n in part.notes), part.notes
