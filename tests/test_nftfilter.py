"""The node-side filter for `trace` on nftables nodes (collect/nodefilter.py, NFT_AWK_PROGRAM), run for real:
the constant awk program through FILTER_SCRIPT and `sh`, with every awk this machine has, over `nft list`
output. For every Service, the trace read from the filtered-and-rebuilt table must be the trace read from the
whole one: the same JSON (hops and their line numbers included), the same findings, the same exit status.

No root needed, except for the tests marked `lab`: they load kube-proxy's transaction for a few hundred
generated Services (tests/kpwriter) into a throwaway network namespace and read real `nft list table` output
back, the way a node prints it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_svcnet.collect import nodecmds
from kubectl_svcnet.collect.nodecmds import NFT_TABLES, collect_node
from kubectl_svcnet.collect.nodefilter import (
    _NFT_KINDS,
    _NFT_TEACHERS,
    AWK_PROGRAM,
    FILTER_SCRIPT,
    NFT_AWK_PROGRAM,
    is_filtered,
    nft_filter_command,
    rebuild,
)
from kubectl_svcnet.collect.runner import LocalRunner
from kubectl_svcnet.dataplane.nft import _teaches_detector, parse_nft, parse_service_chain_name, resolve_nft
from tests.filtertools import AWK_CUTS_SHORT, AWK_FAILS, FALLBACK_IDS, make_node, trace_answer
from tests.kpwriter.spec import service_port
from tests.test_nft_trace import _add_chains, _chain, _endpoint, _with, bare_chains, chains_through_others, damaged

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "kube-proxy" / "nftables"
DUMPS = sorted(FIXTURES.glob("*/dump.txt"))  # real `nft list ruleset` output of one kube-proxy table
OVERALL = (FIXTURES / "overall" / "dump.txt").read_text()
_NAMES = re.compile(r'-([a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9]*)/|comment "([a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9]*)[:"]')


def run_filter(text: str, service: str, bindir: Optional[str] = None) -> str:
    """The real FILTER_SCRIPT + NFT_AWK_PROGRAM over `text` (as the table command `cat` prints it)."""
    env = dict(os.environ)
    if bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    r = subprocess.run(["sh", "-c", FILTER_SCRIPT, "sh", NFT_AWK_PROGRAM, service, "cat"], input=text.encode(),
                       capture_output=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0 and r.stderr == b"", (r.returncode, r.stderr)
    return r.stdout.decode()


def services_in(text: str) -> List[str]:
    """Every Service a table names: in its per-Service chains' names and in its elements' comments."""
    return sorted({a or b for a, b in _NAMES.findall(text)})


def trace(text: str, service: str) -> Tuple:
    """What a trace says about one node holding `text` (trace_answer)."""
    return trace_answer([(text, "node1:nft-ip-kube-proxy")], service)


def filtered_text(text: str, service: str, bindir: Optional[str] = None) -> Optional[str]:
    """The table the client rebuilds from the filter's output; None when the node sent it whole."""
    out = run_filter(text, service, bindir)
    if not is_filtered(out):
        assert out == text  # sent whole, unchanged
        return None
    dump = rebuild(out)
    assert dump is not None
    assert dump.lines == len(text.splitlines())
    return dump.text


def assert_same(text: str, service: str, bindir: Optional[str] = None, whole: Optional[Tuple] = None) -> Optional[str]:
    """The trace of `service` over the filtered table is the one over the whole table; returns the
    filtered table (None: sent whole)."""
    small = filtered_text(text, service, bindir)
    if small is not None:
        assert trace(small, service) == (whole or trace(text, service)), service
    return small


def kept_lines(small: str) -> int:
    return sum(1 for line in small.split("\n") if line)


# ---------------------------------------------------------------------------------------------


def test_the_program_is_one_constant_and_the_service_one_argv_word() -> None:
    argv = nft_filter_command(("nft", "list", "table", "ip", "kube-proxy"), "ns/web")
    assert argv == ("sh", "-c", FILTER_SCRIPT, "sh", NFT_AWK_PROGRAM, "ns/web", "nft", "list", "table", "ip",
                    "kube-proxy")  # fmt: skip
    assert "ns/web" not in FILTER_SCRIPT + NFT_AWK_PROGRAM  # no text built from data
    assert "\n" not in NFT_AWK_PROGRAM and NFT_AWK_PROGRAM != AWK_PROGRAM
    for bad in ("default", "a/b/c", "Default/x", "ns/$(reboot)", "ns/a b", "ns/-x", "ns/a'b", "ns/a\\tb"):
        with pytest.raises(ValueError):
            nft_filter_command(NFT_TABLES[0], bad)


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: p.parent.name)
def test_fixtures_every_service_every_awk(path: Path, awk_bins: Dict[str, str]) -> None:
    text = path.read_text()
    services = services_in(text) + ["nope/nothing"]
    wholes = {svc: trace(text, svc) for svc in services}
    sent = {}
    for name, bindir in awk_bins.items():
        for svc in services:
            sent[name, svc] = run_filter(text, svc, bindir)
            small = assert_same(text, svc, bindir, wholes[svc])
            assert small is not None, (name, svc)  # real `nft list` output: filtered
    for svc in services:
        assert len({sent[name, svc] for name in awk_bins}) == 1, svc  # every awk sends the same bytes


def test_only_what_the_trace_reads_travels() -> None:
    small = filtered_text(OVERALL, "ns1/svc1")
    assert small is not None
    # The Service's chains whole, the structure, every chain that is no Service's ...
    for needle in ("chain service-ULMVA6XW-ns1/svc1/tcp/p80 {", "chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1",
                   "chain services {", "chain mark-for-masquerade {", "172.30.0.41 . tcp . 80 : goto service-ULMVA6XW",
                   "map no-endpoint-nodeports {", "type ipv4_addr . inet_proto . inet_service : verdict"):  # fmt: skip
        assert needle in small, needle
    # ... but not another Service's endpoint, nor its elements in the middle of a list.
    assert "endpoint-5RFCDDV7-ns4/svc4" not in small and "192.168.99.33 . tcp . 80" not in small
    # Line numbers are the table's own.
    lines = OVERALL.split("\n")
    for n, line in enumerate(small.split("\n")):
        assert not line or line == lines[n]


def test_blank_lines_where_rows_were_dropped_parse_as_the_rows_left() -> None:
    """The nft reader skips blank lines, inside an elements list too: what is left is the same elements,
    on the same lines."""
    lines = OVERALL.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("elements = { 1.2.3.4 . tcp . 80 : goto"))
    cut = list(lines)
    cut[start + 1] = cut[start + 3] = ""
    whole, part = (parse_nft("\n".join(x), "d").tables[0].sets["service-ips"].elements for x in (lines, cut))
    assert [(e.line, e.text) for e in part] == [(e.line, e.text) for e in whole if e.line not in (start + 2, start + 4)]


def test_the_programs_names_are_the_readers() -> None:
    """Which chains are a Service's, and which teach the detector, as dataplane/nft.py decides."""
    for kind in ("service", "local", "external", "endpoint", "firewall", "affinity", "mark", "reject", "nat"):
        assert (parse_service_chain_name(f"{kind}-HASH-ns/name/tcp/p80") is not None) == (kind in _NFT_KINDS), kind
        assert _teaches_detector(f"{kind}-HASH-ns/name/tcp/p80", "ip saddr 10.0.0.0/8") == (kind in _NFT_TEACHERS)


def test_odd_chain_names() -> None:
    """Names nft._service_of does and does not read as a Service's, side by side with the fixture's chains:
    with "__" early, no hash, three parts, a namespace with a dash, an unnamed port."""
    names = ["service-H-ns1/svc1/tcp/p80__x", "service-H-ns1__x/svc1/tcp/p80", "service-ns1/svc1/tcp/p80",
             "endpoint-H-ns1/svc1/tcp", "service-H-x-ns1/svc1/tcp/p80", "local-H-ns1/svc1/tcp/",
             "affinity-H-ns1/svc1/tcp/p", "external-H-ns2/svc2/tcp/p80/x"]  # fmt: skip
    rules = ("ip saddr 10.0.0.0/8 goto service-ULMVA6XW-ns1/svc1/tcp/p80", "ip daddr 1.2.3.4 ip saddr != 10.1.0.0/16 "
             "jump mark-for-masquerade", "jump endpoint-nowhere-ns1/svc1/tcp/p80")  # fmt: skip
    text = _add_chains(OVERALL, *(_chain(n, *rules) for n in names))
    for svc in services_in(text) + ["x-ns1/svc1", "ns1__x/svc1"]:
        assert assert_same(text, svc) is not None, svc


def test_a_name_that_is_a_prefix_of_another() -> None:
    text = OVERALL.replace("ns1/svc1/", "ns/db/").replace("ns3/svc3/", "ns/db-2/").replace("ns2/svc2", "x-ns/db")
    for svc in ("ns/db", "ns/db-2", "x-ns/db", "ns/d"):
        small = assert_same(text, svc)
        assert small is not None
    assert "chain endpoint-UEIP74TE-ns/db-2/" not in filtered_text(text, "ns/db")
    assert "chain endpoint-5OJB2KTY-ns/db/" not in filtered_text(text, "ns/db-2")


def test_paths_through_other_services_chains_and_stale_chains() -> None:
    """tests/test_nft_trace.py's hand-edited tables: a stale chain of the Service, a chain reached only through
    another Service's chain or through a custom one, and the same chains reached by nothing."""
    stale = _add_chains(OVERALL, _endpoint("AAAAAAAA", "10.180.9.9"))
    through, bare = chains_through_others(), bare_chains()
    # Two levels: ns3's chain leads to ns2's, which leads to the Service's.
    ns3 = "\tchain external-4AT6LBPK-ns3/svc3/tcp/p80 {"
    deeper = _with(through, ns3, "\t\tip saddr 192.0.2.3 jump external-42NFTM6N-ns2/svc2/tcp/p80")
    for text in (stale, through, bare, deeper):
        for svc in services_in(text):
            assert assert_same(text, svc) is not None, svc
    assert "chain external-42NFTM6N-ns2/svc2/tcp/p80 {" in filtered_text(through, "ns1/svc1")


def test_the_detector_comes_from_other_services_chains() -> None:
    """ns6/svc6 has no chain of its own: the local-traffic detector (what `cluster` routes are told by) is
    learnt from others'; and with it taught by several chains, the order of its CIDRs is the table's."""
    text = OVERALL.replace(
        "\tchain service-4AT6LBPK-ns3/svc3/tcp/p80 {\n\t\tip daddr 172.30.0.43 ip saddr != 10.0.0.0/8",
        "\tchain service-4AT6LBPK-ns3/svc3/tcp/p80 {\n\t\tip daddr 172.30.0.43 ip saddr != 10.96.0.0/12",
    )
    assert text != OVERALL
    for t, detector in ((OVERALL, "10.0.0.0/8"), (text, "10.0.0.0/8,10.96.0.0/12")):
        for svc in ("ns6/svc6", "ns2/svc2", "nope/nothing"):
            small = assert_same(t, svc)
            assert small is not None
            for tt in (t, small):
                assert resolve_nft(parse_nft(tt, "d"), "n", only=svc).pod_cidr_detector == detector


WORDS = ["goto", "jump", "drop", "mark-for-masquerade", "reject-chain", "services", "@service-ips", "@firewall-ips",
         "ns1/svc1", "service-42NFTM6N-ns2/svc2/tcp/p80", "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80", "ip",
         "saddr", "10.0.0.0/8", "!=", ",", ":", ".", "@affinity-X", "vmap", '"ns1/svc1:p80"', "{", "}", '"', "#",
         "\t", "chain"]  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_tables_trace_the_same_or_travel_whole(data) -> None:
    """Rule and element rows dropped, doubled, moved into another chain or list, or a word swapped
    (tests/test_nft_trace.py's `damaged`): for every Service, the filtered table traces as the whole one,
    or the node sends the table whole."""
    text = data.draw(st.sampled_from([p.read_text() for p in DUMPS]))
    hurt = damaged(data, text, ["drop", "dup", "move", "word"], (1, 4), WORDS)
    for svc in services_in(text) + ["nope/nothing"]:
        assert_same(hurt, svc)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: "\n" + t,  # not starting with the table
        lambda t: t.replace("table ip kube-proxy {", "table inet kube-proxy {"),  # a table the node does not list
        lambda t: t + "table ip6 kube-proxy {\n}\n",  # a second table
        lambda t: t.replace("\treject\n", "\treject\n\t}\n"),  # unbalanced braces
        lambda t: t[: t.index("\tchain services {")],  # cut short
        lambda t: t.replace("chain reject-chain {", "chain masquerading {"),  # a chain twice
        lambda t: t.replace('comment "rules for kube-proxy"', 'comment "rules # kube-proxy"'),  # a "#"
        lambda t: t.replace("rules for kube-proxy", "rules for kube-proxy \u00e9"),  # not ASCII
        lambda t: t.replace('comment "ns2/svc2:p80" : drop,', 'comment "ns2/svc2:p80" timeout 3s : drop,'),
        lambda t: t.replace("tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80,", "tcp . 80 : drop, x,"),
    ],
    ids=["leading-blank", "inet", "two-tables", "unbalanced", "cut-short", "chain-twice", "hash", "non-ascii",
         "element-option", "two-elements-a-row"],
)  # fmt: skip
def test_odd_tables_are_sent_whole(edit: Any) -> None:
    text = edit(OVERALL)
    assert text != OVERALL
    for svc in ("ns1/svc1", "ns2/svc2"):
        assert run_filter(text, svc) == text


def test_an_empty_table_output_is_nothing() -> None:
    assert run_filter("", "ns1/svc1") == ""


def test_rebuild_refuses_damaged_output() -> None:
    out = run_filter(OVERALL, "ns1/svc1")
    assert rebuild(out) is not None and rebuild(out).text.split("\n")[0] == "table ip kube-proxy {"
    rows = out.splitlines(True)
    assert rebuild("".join(rows[:-1])) is None  # cut short
    assert rebuild("".join(rows[:1] + rows[3:2:-1] + rows[2:3] + rows[4:])) is None  # out of order
    assert rebuild(out.replace("\t", " ", 1)) is None


# ---------------------------------------------------------------------------------------------
# collect_node with the filter, on a "node" of real programs: a fake `nft` that prints a table, the real
# sh, gzip and awk (tests/filtertools.make_node: LocalRunner with its own PATH).


def nft_node(tmp_path: Path, v4: str, v6: Optional[str] = None, awk: Optional[str] = "real") -> LocalRunner:
    runner = make_node(tmp_path, {}, awk)
    tables = {"ip": v4, "ip6": v6}
    cases = []
    for family, text in tables.items():
        if text is None:
            cases.append(f"{family}) echo 'Error: No such file or directory' >&2; exit 1;;")
        else:
            (tmp_path / f"{family}.txt").write_text(text)
            cases.append(f"{family}) exec cat '{tmp_path / (family + '.txt')}';;")
    script = '#!/bin/sh\n[ "$1 $2 $4" = "list table kube-proxy" ] || exit 2\ncase "$3" in\n' + "\n".join(cases)
    nft = tmp_path / "bin" / "nft"
    nft.write_text(script + "\n*) exit 2;;\nesac\n")
    nft.chmod(0o755)
    return runner


def same_answer(whole: nodecmds.NodeDumps, part: nodecmds.NodeDumps, service: str) -> None:
    assert [s for _, s in part.dumps] == [s for _, s in whole.dumps]
    assert part.warnings == whole.warnings
    assert trace_answer(part.dumps, service) == trace_answer(whole.dumps, service)


def test_collect_node_sends_the_filtered_table_for_a_trace(tmp_path: Path) -> None:
    v6 = OVERALL.replace("table ip kube-proxy", "table ip6 kube-proxy")  # (a second table: its own filter run)
    runner = nft_node(tmp_path, OVERALL, v6)
    whole, part = collect_node(runner, "node1"), collect_node(runner, "node1", only="ns4/svc4")
    assert [s for _, s in whole.dumps] == ["node1:nft-ip-kube-proxy", "node1:nft-ip6-kube-proxy"]
    assert [t for t, _ in whole.dumps] == [OVERALL, v6]  # map: whole, no awk
    assert not any("awk" in c for c in whole.commands[1:]) and whole.notes == []
    same_answer(whole, part, "ns4/svc4")
    assert all(len(p) < len(w) for (p, _), (w, _) in zip(part.dumps, whole.dumps))
    assert sum("LC_ALL=C awk" in c for c in part.commands) == 2
    assert len(part.notes) == 2, part.notes
    for note, family in zip(part.notes, ("ip", "ip6")):
        assert re.fullmatch(rf"nft list table {family} kube-proxy: \d+ of 227 lines sent for ns4/svc4 \(\d+ bytes\)",
                            note)  # fmt: skip


def test_collect_node_without_an_ip6_table(tmp_path: Path) -> None:
    runner = nft_node(tmp_path, OVERALL)
    whole, part = collect_node(runner, "node1"), collect_node(runner, "node1", only="ns1/svc1")
    same_answer(whole, part, "ns1/svc1")
    assert len(part.dumps) == 1 and part.warnings == [] and len(part.notes) == 1


@pytest.mark.parametrize(
    "awk, note",
    [
        (None, "no awk on the node"),
        (AWK_FAILS, "kube-proxy: the filter failed (awk exited 3); read whole"),
        (AWK_CUTS_SHORT, "nft list table ip kube-proxy: the filter's output is damaged; read whole"),
    ],
    ids=FALLBACK_IDS,
)  # fmt: skip
def test_collect_node_falls_back_to_the_whole_table(tmp_path: Path, awk: Optional[str], note: str) -> None:
    runner = nft_node(tmp_path, OVERALL, awk=awk)
    part = collect_node(runner, "node1", only="ns1/svc1")
    assert [t for t, _ in part.dumps] == [OVERALL]
    assert part.warnings == []
    assert any(note in n for n in part.notes), part.notes


def test_collect_node_sends_an_odd_table_whole(tmp_path: Path) -> None:
    odd = OVERALL.replace('comment "rules for kube-proxy"', 'comment "rules # kube-proxy"')
    part = collect_node(nft_node(tmp_path, odd), "node1", only="ns1/svc1")
    assert [t for t, _ in part.dumps] == [odd]
    assert part.notes == [
        "nft list table ip kube-proxy: sent whole by the node (not `nft list table` output the filter reads)"
    ]


def test_collect_node_never_gives_awk_a_name_that_is_no_service_name(tmp_path: Path) -> None:
    runner = nft_node(tmp_path, OVERALL)
    part = collect_node(runner, "node1", only="ns/$(reboot)")
    assert [t for t, _ in part.dumps] == [OVERALL]
    assert not any("awk" in c or "reboot" in c for c in part.commands[1:])


# ---------------------------------------------------------------------------------------------
# lab: kube-proxy's transaction for a few hundred Services (tests/kpwriter), loaded with the real `nft -f` in a
# throwaway network namespace and listed back as a node lists it.


def _ep(ip: str, port: int = 8080, local: bool = False, ready: bool = True, ending: bool = False) -> Dict[str, Any]:
    return {"ip": ip, "port": port, "local": local, "ready": ready, "serving": True, "terminating": ending}


def mixed_v4(n: int = 240) -> Dict[str, Any]:
    """ClusterIP, NodePort, LoadBalancer with source ranges, externalTrafficPolicy Local with and without local
    endpoints, internalTrafficPolicy Local, affinity, no endpoints (reject), external IPs, UDP beside TCP,
    unnamed ports, terminating endpoints; namespaces with a dash (x-ns1/svc1 beside ns1/svc1) and names that
    are prefixes of others (ns1/db, ns1/db-2)."""
    out = []
    for i in range(n):
        name = f"{'x-' if i % 13 == 0 else ''}ns{i % 7}/svc{i}"
        cip, np, k = f"172.30.{i // 250}.{i % 250 + 1}", 30000 + i, i % 12
        eps = [_ep(f"10.180.{i // 200}.{(i * 7 + j) % 250 + 1}", local=j == 0 and i % 3 == 0) for j in range(1 + i % 4)]
        if k == 0:
            https = [dict(e, port=8443) for e in eps]
            out += [service_port(name, cip, 80, port_name="http", endpoints=eps),
                    service_port(name, cip, 443, port_name="https", endpoints=https)]  # fmt: skip
        elif k == 1:
            out.append(service_port(name, cip, type="NodePort", node_port=np, endpoints=eps))
        elif k == 2:
            out.append(service_port(name, cip, type="LoadBalancer", node_port=np, lb_ips=[f"5.6.{i // 250}.{i % 250}"],
                                    source_ranges=["203.0.113.0/25", "10.0.0.0/8"], endpoints=eps))  # fmt: skip
        elif k == 3:
            out.append(service_port(name, cip, type="LoadBalancer", node_port=np, lb_ips=[f"1.2.{i // 250}.{i % 250}"],
                                    etp="Local", hc=32000 + i, endpoints=eps))  # fmt: skip
        elif k == 4:
            out.append(service_port(name, cip, type="NodePort", node_port=np, etp="Local",
                                    endpoints=[dict(e, local=False) for e in eps]))  # fmt: skip
        elif k == 5:
            out.append(service_port(name, cip))
        elif k == 6:
            out.append(service_port(name, cip, type="NodePort", node_port=np, external_ips=[f"192.168.99.{i % 250}"]))
        elif k == 7:
            out.append(dict(service_port(name, cip, endpoints=eps), session_affinity={"timeout_seconds": 600 + i}))
        elif k == 8:
            out.append(service_port(name, cip, itp="Local", endpoints=eps))
        elif k == 9:
            dns = [dict(e, port=53) for e in eps]
            out += [service_port(name, cip, 53, port_name="dns", protocol="UDP", endpoints=dns),
                    service_port(name, cip, 53, port_name="dns-tcp", endpoints=dns)]  # fmt: skip
        elif k == 10:
            out.append(service_port(name, cip, external_ips=[f"192.168.98.{i % 250}"], etp="Local", endpoints=eps))
        else:
            out.append(service_port(name, cip, port_name="", endpoints=[
                _ep(e["ip"], 80, ready=False, ending=True) for e in eps]))  # fmt: skip
    out += [service_port("ns1/db", "172.30.9.1", 5432, port_name="pg", endpoints=[_ep("10.180.9.1", 5432)]),
            service_port("ns1/db-2", "172.30.9.2", 5432, port_name="pg", endpoints=[_ep("10.180.9.2", 5432)]),
            service_port("ns1/svc1", "172.30.9.3", 81, port_name="alt", endpoints=[_ep("10.180.9.3", 81)])]  # fmt: skip
    return {"node_name": "node1", "pod_cidr": "10.0.0.0/8", "services": out,
            "kube_proxy": {"node_ip": "192.168.0.2", "service_cidrs": ["172.30.0.0/16"]}}  # fmt: skip


def mixed_v6(n: int = 40) -> Dict[str, Any]:
    out = []
    for i in range(n):
        name, cip, np, k = f"ns{i % 5}/v6svc{i}", f"fd00:10:96::{i + 1:x}", 31000 + i, i % 5
        eps = [_ep(f"fd00:10:180::{i:x}:{j + 1:x}", local=j == 0) for j in range(1 + i % 3)]
        if k == 0:
            out.append(service_port(name, cip, endpoints=eps))
        elif k == 1:
            out.append(service_port(name, cip, type="NodePort", node_port=np, etp="Local", endpoints=eps))
        elif k == 2:
            out.append(service_port(name, cip, type="LoadBalancer", node_port=np, lb_ips=[f"2001:db8:2::{i:x}"],
                                    source_ranges=["2001:db8:3::/64"], endpoints=eps))  # fmt: skip
        elif k == 3:
            out.append(service_port(name, cip))
        else:
            out.append(dict(service_port(name, cip, endpoints=eps), session_affinity={"timeout_seconds": 100}))
    return {"node_name": "node1", "pod_cidr": "fd00:10::/64", "services": out,
            "kube_proxy": {"node_ip": "2001:db8::1", "service_cidrs": ["fd00:10:96::/112"]}}  # fmt: skip


@pytest.fixture(scope="module")
def lab_tables() -> Iterator[Dict[str, Any]]:
    """{"ip": text, "ip6": text, "ns": namespace} of the mixed specs, listed by `nft list table`; the namespace
    lives as long as the module's tests (the collect_node test reads it live) and is removed after."""
    from tests.kpwriter import write_nft
    from tests.kpwriter.netns import lab_available, load_into_netns, netns, save_from_netns

    ok, why = lab_available()
    if not ok:
        pytest.skip(f"lab unavailable: {why}")
    if not shutil.which("nft"):
        pytest.skip("nft not installed")
    with netns("nftfilter") as ns:
        load_into_netns(ns, write_nft(mixed_v4()), "nft")
        load_into_netns(ns, write_nft(mixed_v6()), "nft")
        yield {family: save_from_netns(ns, "nft", f"{family} kube-proxy") for family in ("ip", "ip6")} | {"ns": ns}


@pytest.mark.lab
@pytest.mark.parametrize("family", ["ip", "ip6"])
def test_lab_every_service(lab_tables: Dict[str, Any], family: str) -> None:
    text = lab_tables[family]
    services = services_in(text)
    assert len(services) >= (240 if family == "ip" else 40)
    total = len(text.splitlines())
    for svc in services + ["nope/nothing"]:
        small = assert_same(text, svc)
        assert small is not None, svc
        if family == "ip":
            assert kept_lines(small) < total * 0.05, (svc, kept_lines(small), total)


@pytest.mark.lab
def test_lab_every_awk_sends_the_same_bytes(lab_tables: Dict[str, Any], awk_bins: Dict[str, str]) -> None:
    """Every awk sends the same bytes (the default awk's trace: test_lab_every_service), for a spread of
    every 8th Service (all of them take busybox awk over a minute; the fixtures' test runs every one)."""
    for family in ("ip", "ip6"):
        text = lab_tables[family]
        for svc in services_in(text)[::8]:
            outs = {name: run_filter(text, svc, d) for name, d in awk_bins.items()}
            assert len(set(outs.values())) == 1, (svc, sorted(outs))


@pytest.mark.lab
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_lab_damaged_tables(lab_tables: Dict[str, Any], data) -> None:
    text = lab_tables["ip"]
    hurt = damaged(data, text, ["drop", "dup", "move", "word"], (1, 8), WORDS + services_in(text)[:20])
    for svc in data.draw(st.lists(st.sampled_from(services_in(text)), min_size=2, max_size=2)):
        assert_same(hurt, svc)


@pytest.mark.lab
def test_lab_collect_node_in_the_namespace(lab_tables: Dict[str, Any]) -> None:
    """collect_node on the namespace as on a node: the real nft, sh, gzip and awk."""
    runner = LocalRunner("node1", prefix=["ip", "netns", "exec", lab_tables["ns"]])
    runner.remote = True
    whole = collect_node(runner, "node1")
    assert [t for t, s in whole.dumps if "nft" in s] == [lab_tables["ip"], lab_tables["ip6"]]
    for svc in ("ns2/svc2", "ns1/svc1", "ns3/v6svc3", "ns4/svc4"):
        part = collect_node(runner, "node1", only=svc)
        same_answer(whole, part, svc)
        assert [n for n in part.notes if " lines sent for " in n][0].startswith("nft list table ip kube-proxy: ")
