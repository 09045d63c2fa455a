"""The nodes of one map share walks (iptables.SharedWalks): a node whose chains read the same as an
earlier node's takes that node's routes instead of walking again, and a chain another node read
without a problem is not read again for its problems. Sharing must never change an answer: each node
resolved after the others, with what they walked, equals that node resolved alone: on every fixture,
on nodes that differ from the first by hypothesis' mutations, by lines moved, by the ways real nodes
differ, and on damaged nodes. It must also really share (hits are counted), or it is no use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane import read_node
from kubectl_svcnet.dataplane.iptables import SharedWalks, parse_iptables
from tests.golden import FIXTURES, generated_dump
from tests.test_fuzz import mutate_lines

ROOT = Path(__file__).resolve().parent.parent
DUMPS = sorted(p for p in (FIXTURES / "iptables").rglob("*.txt")) + sorted(
    (ROOT / "examples" / "seed-cluster" / "nodes").rglob("iptables*-save.txt")
)


def alone(texts: List[str]) -> list:
    return [read_node([(t, f"n{i}.txt")], f"n{i}") for i, t in enumerate(texts)]


def together(texts: List[str]):
    shared = SharedWalks()
    return [read_node([(t, f"n{i}.txt")], f"n{i}", shared=shared) for i, t in enumerate(texts)], shared


def same_either_way(texts: List[str]) -> SharedWalks:
    planes, shared = together(texts)
    for got, want in zip(planes, alone(texts)):
        assert got == want, got.info.name
    return shared


def ports(plane) -> int:
    return len({s.key for s in plane.services if s.frontends})


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_copies_of_every_fixture_share_every_walk(path):
    text = path.read_text()
    shared = same_either_way([text, text, text])
    n = ports(alone([text])[0])
    assert shared.walked + shared.hits >= 3 * n
    if n and shared.walked:  # (walks that met an unevaluable rule or a loop are never shared)
        assert shared.hits == 2 * shared.walked, (shared.hits, shared.walked)


def _shift(text: str) -> str:
    """The same rules on other lines: comments inserted after each table's chain declarations."""
    out = []
    for line in text.split("\n"):
        if line.startswith("-A ") and out and out[-1].startswith(":"):
            out.extend(["# moved", "# down"])
        out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("path", DUMPS[:8], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rules_on_other_lines_still_share(path):
    text = path.read_text()
    shifted = _shift(text)
    assert shifted != text
    shared = same_either_way([text, shifted])
    if ports(alone([text])[0]) and shared.walked:
        assert shared.hits == shared.walked


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_a_node_that_differs_by_a_mutation_reads_as_alone(data):
    path = data.draw(st.sampled_from(DUMPS[:10]))
    text = path.read_text()
    other = mutate_lines(text, data, ["-j", "KUBE-MARK-MASQ", "--dport", "80", "-s", ":KUBE-Y - [0:0]", "DROP"])
    texts = [text, other] if data.draw(st.booleans()) else [other, text]
    try:
        want = alone(texts)
    except Exception as e:  # the parser's own error: the same with sharing
        with pytest.raises(type(e)):
            together(texts)
        return
    planes, _ = together(texts)
    assert planes == want


def _generated(tmp_path, services=60, endpoints=3) -> str:
    # (more than 48 services: KUBE-SERVICES is then a dispatch chain, indexed; see iptables._INDEXED)
    return generated_dump(services, endpoints)


def _sep_chain(text: str, n: int) -> str:
    return sorted(set(re.findall(r"^-A (KUBE-SEP-\w+) ", text, re.M)))[n]


def test_nodes_that_differ_like_real_ones(tmp_path):
    text = _generated(tmp_path)
    sep = _sep_chain(text, 3)
    svc_rule = next(ln for ln in text.split("\n") if ln.startswith("-A KUBE-SVC-") and "--probability" in ln)
    cip_rule = next(ln for ln in text.split("\n") if ln.startswith("-A KUBE-SERVICES -d "))
    variants = {
        "same": text,
        "moved": _shift(text),
        "other port": re.sub(rf"(^-A {sep} .*--to-destination [\d.]+:)8080", r"\g<1>9090", text, flags=re.M),
        "one endpoint fewer": text.replace(svc_rule + "\n", ""),
        "one service fewer": text.replace(cip_rule + "\n", ""),
        "hairpin rule gone": "\n".join(
            ln for ln in text.split("\n") if not (ln.startswith(f"-A {sep} ") and "KUBE-MARK-MASQ" in ln)
        ),
    }
    assert len(set(variants.values())) == len(variants)
    texts = list(variants.values())
    planes, shared = together(texts)
    assert planes == alone(texts)
    # Every node shares all but the service port it differs in.
    n = ports(planes[0])
    assert shared.hits >= (len(texts) - 1) * n - 4, (shared.hits, n)
    port_of = {f.ip: f for s in planes[2].services for f in s.frontends}
    assert any(b.port == 9090 for f in port_of.values() for r in f.routes for b in r.backends)


def test_a_damaged_chain_on_one_node_is_still_found(tmp_path):
    text = _generated(tmp_path)
    sep = _sep_chain(text, 5)
    # Node 2: a rule iptables-save could not print in an endpoint chain, and a chain the third node
    # jumps to is gone (its declaration and rules), so that node's jump leads nowhere.
    bad = text.replace(f"-A {sep} -s", f"-A {sep} -m tcp --dport\n-A {sep} -s", 1)
    gone = _sep_chain(text, 7)
    missing = "\n".join(ln for ln in text.split("\n") if not re.match(rf"^(:|-A ){gone} ", ln))
    texts = [text, bad, missing]
    planes, shared = together(texts)
    assert planes == alone(texts)
    assert not planes[0].findings
    assert [f.code for f in planes[1].findings] == ["bad-rule"], planes[1].findings
    assert "undefined-chain" in [f.code for f in planes[2].findings], planes[2].findings
    assert shared.hits > 0


def _add_to_nat(text: str, declare: List[str], rules: List[str]) -> str:
    """Chains declared and rules appended at the end of the nat table (the dump's last)."""
    out = text.split("\n")
    nat = out.index("*nat")
    out[nat + 1 : nat + 1] = [f":{c} - [0:0]" for c in declare]
    end = len(out) - 1 - out[::-1].index("COMMIT")
    out[end:end] = rules
    return "\n".join(out)


def test_what_each_question_of_a_walk_tells_apart(tmp_path):
    # Pairs of nodes whose dumps differ in one answer to one question a walk asks (a chain's rules,
    # whether a chain exists, what KUBE-SERVICES offers a packet): each pair's second node must not
    # take the first's walk, or its answer is the first node's.
    text = _generated(tmp_path)
    svc = sorted(set(re.findall(r"^-A (KUBE-SVC-\w+) ", text, re.M)))[2]
    cip_rule = next(ln for ln in text.split("\n") if ln.startswith("-A KUBE-SERVICES -d ") and svc in ln)
    cip = re.search(r"-d (\S+)/32", cip_rule).group(1)
    # A jump to a chain that is not there, then that chain there (only whether it exists was asked).
    jump = text.replace(f"-A {svc} ", f"-A {svc} -j KUBE-SEP-LATE\n-A {svc} ", 1)
    late = _add_to_nat(jump, ["KUBE-SEP-LATE"], [f"-A KUBE-SEP-LATE -p tcp -j DNAT --to-destination {cip}0:1"])
    # A rule before the service's own in KUBE-SERVICES, for its packets.
    first = text.replace(cip_rule, f"-A KUBE-SERVICES -d {cip}/32 -p tcp -m tcp --dport 80 -j REJECT\n{cip_rule}")
    for a, b in ((text, first), (jump, late), (late, jump)):
        planes, shared = together([a, b])
        assert planes == alone([a, b])
        assert planes[0] != planes[1]
        assert shared.hits > 0


def test_a_chain_jumping_nowhere_on_one_node_is_found(tmp_path):
    # A chain no walk reads (not a service's: those are read for the unreachable-chain check) is read
    # only for its problems, at the end; one whose text another node read cleanly is not read again,
    # unless a chain it jumps to is missing here.
    text = _generated(tmp_path)
    extra = _add_to_nat(
        text,
        ["CUSTOM-A", "CUSTOM-B"],
        ["-A CUSTOM-A -j CUSTOM-B", "-A CUSTOM-B -p tcp -j DNAT --to-destination 10.244.9.9:80"],
    )
    broken = "\n".join(ln for ln in extra.split("\n") if not re.match(r"(:|-A )CUSTOM-B ", ln))
    planes, _ = together([extra, broken])
    assert planes == alone([extra, broken])
    assert "undefined-chain" not in [f.code for f in planes[0].findings]
    assert "undefined-chain" in [f.code for f in planes[1].findings], planes[1].findings


def test_a_trace_shares_nothing(tmp_path):
    text = _generated(tmp_path)
    shared = SharedWalks()
    for n in ("a", "b"):
        read_node([(text, "d.txt")], n, only="ns1/svc1", shared=shared)
    assert shared.hits == shared.walked == 0


def test_a_walk_reads_chains_only_by_name(tmp_path):
    # What a walk sees of a dump is what it asked for by name; were it to list chains, the answer
    # could not be replayed on another node. Recording refuses it.
    dump = parse_iptables(_generated(tmp_path, services=3), "d.txt", lazy=True)
    chains = dump.tables["nat"].chains
    from kubectl_svcnet.dataplane.iptables import Chains, _Recording

    chains.__class__ = _Recording
    chains._reads = {}
    try:
        with pytest.raises(TypeError):
            list(chains)
        assert "KUBE-SERVICES" in chains and chains.get("KUBE-NOPE") is None
        assert set(chains._reads) == {("c", 2, "KUBE-SERVICES"), ("g", 2, "KUBE-NOPE")}
    finally:
        chains.__class__ = Chains


_NODEPORTS_JUMP = (
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this '
    'chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
)


def _node_ip(text: str, ip: str) -> str:
    """The node with --nodeport-addresses matching its address `ip`: kube-proxy's jump to KUBE-NODEPORTS
    names it (`-d IP`, no addrtype match)."""
    assert _NODEPORTS_JUMP in text
    return text.replace(_NODEPORTS_JUMP, _NODEPORTS_JUMP.replace("-m addrtype --dst-type LOCAL", f"-d {ip}/32"))


def test_nodes_with_addresses_of_their_own_share_what_they_can(tmp_path):
    # --nodeport-addresses: each node's jump to KUBE-NODEPORTS names its own address. Node ports are
    # reached on each (not passed untranslated), and the walks that do not depend on the address (the
    # cluster IPs) are still shared.
    text = _generated(tmp_path)
    texts = [_node_ip(text, f"192.168.0.{i}") for i in (2, 3, 4)]
    planes, shared = together(texts)
    assert planes == alone(texts)
    for plane in planes:
        assert not [f for f in plane.findings if f.code == "unreachable-chain"]
        nodeports = [f for s in plane.services for f in s.frontends if f.type == "NodePort"]
        assert nodeports and all(r.backends for f in nodeports for r in f.routes)
    assert shared.hits >= 2 * (ports(planes[0]) - len(nodeports)), (shared.hits, ports(planes[0]))


def test_whether_an_address_is_the_nodes_is_asked(tmp_path):
    # The same rules, `-d 192.168.0.9 ... -j DROP` before nat's jumps to KUBE-SERVICES, on two nodes: on
    # the node whose address it is, they drop a node port's packets before they reach KUBE-SERVICES; on
    # the other, they do not match them. Nothing a walk asks of a table tells the two apart (the walk on
    # the first asks nothing of KUBE-SERVICES); whether the address is the node's (Walker.node_dst) does.
    text = _generated(tmp_path)
    port = re.search(r"^-A KUBE-NODEPORTS -p tcp .*--dport (\d+) ", text, re.M).group(1)
    guarded = text
    for hook in ("PREROUTING", "OUTPUT"):
        jump = f'-A {hook} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
        drop = f"-A {hook} -d 192.168.0.9/32 -p tcp -m tcp --dport {port} -j DROP\n"
        assert guarded.count(jump) == 1
        guarded = guarded.replace(jump, drop + jump)
    mine, other = _node_ip(guarded, "192.168.0.9"), _node_ip(guarded, "192.168.0.2")
    for texts in ([mine, other], [other, mine]):
        planes, shared = together(texts)
        assert planes == alone(texts)
        assert planes[0] != planes[1]
        assert shared.hits > 0
    (plane,) = alone([mine])
    (dropped,) = [f for s in plane.services for f in s.frontends if f.type == "NodePort" and f.port == int(port)]
    assert [(r.source, r.verdict) for r in dropped.routes] == [("any", "drop")]


def test_whether_the_node_itself_is_in_a_source_range_is_asked():
    """Two nodes with the same rules (a load balancer behind loadBalancerSourceRanges 192.168.0.0/24),
    one with an address in the range and one without: only whether the node's own address is in the
    range (Walker._local_src, question "s") tells their walks apart. Each reads as it would alone."""
    from kubectl_svcnet.model import Cluster, Node
    from tests.test_iptables_cases import _lb_behind_ranges

    text = _lb_behind_ranges(plain=True)
    clusters = [
        Cluster(nodes=(Node(f"n{i}", (("InternalIP", ip),)),)) for i, ip in enumerate(("192.168.0.2", "10.9.9.9"))
    ]
    for order in ((0, 1), (1, 0)):
        shared = SharedWalks()
        got = [read_node([(text, f"n{i}.txt")], f"n{i}", cluster=clusters[i], shared=shared) for i in order]
        want = [read_node([(text, f"n{i}.txt")], f"n{i}", cluster=clusters[i]) for i in order]
        assert got == want
        assert got[0].services != got[1].services  # (the node in the range has its own 'cluster' route)
        assert shared.hits == 1  # (the other Service's walk asks nothing of it: shared)
