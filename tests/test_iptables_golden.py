"""Golden tests: every genuine kube-proxy iptables dump maps exactly as its expected.json says,
from both iptables backends (their table order and headers differ)."""

from __future__ import annotations

import pytest

from kubectl_svcnet.dataplane import read_node
from kubectl_svcnet.dataplane.iptables import parse_iptables
from tests.golden import actual_services, expected_services, fixture_dirs, load_expected

CASES = [
    pytest.param(d, f, id=f"{d.name}/{f}")
    for d in fixture_dirs("iptables")
    for f in ("dump.txt", "dump.iptables-legacy.txt", "dump.iptables-nft.txt")
    if (d / f).exists()
]


@pytest.mark.parametrize("fixture,dump_name", CASES)
def test_fixture_maps_exactly(fixture, dump_name):
    text = (fixture / dump_name).read_text()
    plane = read_node([(text, dump_name)], "test-node")
    assert actual_services(plane) == expected_services(load_expected(fixture))
    assert plane.info.proxy_mode == "iptables"
    assert not [f for f in plane.findings if f.severity == "error"]


@pytest.mark.parametrize("fixture,dump_name", CASES)
def test_backend_is_read_from_the_header(fixture, dump_name):
    dump = parse_iptables((fixture / dump_name).read_text(), dump_name)
    header = (fixture / dump_name).read_text().splitlines()[0]
    assert dump.backend == ("nft" if "(nf_tables)" in header else "legacy")


def test_restore_input_with_deleted_chains_maps_like_the_dump():
    """kube-proxy's own iptables-restore input (with -X lines for deleted chains) reads the same."""
    fixture = next(d for d in fixture_dirs("iptables") if d.name == "modern-repeated-4-service-without-endpoints")
    text = (fixture / "kube-proxy-restore-input.txt").read_text()
    plane = read_node([(text, "restore-input")], "n")
    assert actual_services(plane) == expected_services(load_expected(fixture))


@pytest.mark.parametrize("fixture,dump_name", CASES)
def test_trace_reads_only_what_it_needs_and_answers_the_same(fixture, dump_name):
    """`trace` reads one Service's lines and the chains they jump to; the answer (routes, paths,
    line numbers) is exactly what a full read gives."""
    from kubectl_svcnet.dataplane.iptables import parse_iptables_for, resolve_iptables

    text = (fixture / dump_name).read_text()
    full = parse_iptables(text, dump_name)
    for svc in sorted({s["service"] for s in load_expected(fixture)["services"]}):
        sparse = parse_iptables_for(text, dump_name, svc)
        assert sparse is not None
        assert sum(len(c) for t in sparse.tables.values() for c in t.chains.values()) < sum(
            len(c) for t in full.tables.values() for c in t.chains.values()
        )
        a = resolve_iptables([sparse], "n", only=svc)
        b = resolve_iptables([full], "n", only=svc)
        assert a.services == b.services and a.services
        assert not [f for f in a.findings if f.severity == "error"]
