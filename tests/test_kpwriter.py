"""The kube-proxy rule writer (tests/kpwriter) reproduces the genuine kube-proxy fixtures.

Pure tests compare text: the writer's output, put in the order kube-proxy's unit tests compare in
(`sort_iptables_rules`), must equal each fixture's ``kube-proxy-restore-input.txt``.

Lab tests (``-m lab``; root, network namespaces, real iptables) load the writer's output and the
fixture's restore input into two fresh namespaces (each after kube-proxy's canary chains and jump
rules), ``iptables-save`` both and compare rule by rule; the writer's save must also equal the
fixture's ``dump.txt``. This kernel has no ``nfacct`` match, so `` -m nfacct --nfacct-name <name>``
is stripped from every side before loading or comparing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.kpwriter import (
    iptables_setup_text,
    parse_restore,
    sort_iptables_rules,
    split_syncs,
    write_iptables,
)
from tests.kpwriter.names import ext_chain, fw_chain, sep_chain, svc_chain, svl_chain

FIXTURES = Path(__file__).parent / "fixtures" / "kube-proxy"
IPT = FIXTURES / "iptables"
COVERED_ERAS = ("modern", "v128")  # the xlb (≈v1.23, KUBE-XLB chains) era is not written


def _spec(d: Path) -> Dict[str, Any]:
    return json.loads((d / "expected.json").read_text())


def _ipt_fixtures(covered: bool = True) -> List[Path]:
    out = []
    for d in sorted(p for p in IPT.iterdir() if (p / "expected.json").exists()):
        if (_spec(d).get("era") in COVERED_ERAS) == covered:
            out.append(d)
    return out


def _strip_comments(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))


# ---- pure ------------------------------------------------------------------------------------------


def test_chain_names_are_kube_proxys_hashes():
    # values from kube-proxy's own tests
    assert svc_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert ext_chain("ns2/svc2:p80", "tcp") == "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
    assert fw_chain("ns5/svc5:p80", "tcp") == "KUBE-FW-NUKIZ6OKUXPJNT4C"
    assert svl_chain("ns1/svc1:p80", "tcp") == "KUBE-SVL-XPGD46QRK7WJZT7O"
    assert sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert svc_chain("ns1/svc1", "tcp") == "KUBE-SVC-AQI2S6QIMU7PVVRP"  # unnamed port


def test_covers_the_modern_fixtures():
    names = [d.name for d in _ipt_fixtures()]
    assert "modern-overall" in names and "modern-repeated-4-service-without-endpoints" in names


@pytest.mark.parametrize("fixture", _ipt_fixtures(), ids=lambda p: p.name)
def test_restore_input_text_matches_fixture(fixture: Path):
    spec = _spec(fixture)
    syncs = split_syncs((fixture / "kube-proxy-restore-input.txt").read_text())
    want = _strip_comments(syncs[-1])
    if len(syncs) == 1:
        got = sort_iptables_rules(write_iptables(spec))
    else:
        # The last of several syncs is a partial one: services that did not change are left out.
        # Those are the ones whose KUBE-SERVICES rules appear without their chains being declared.
        declared = {c[1:].split()[0] for t in parse_restore(want) for c in t[1]}
        unchanged = [
            s["service"]
            for s in spec["services"]
            if s["endpoints"]
            and svc_chain(s["service"] + (f":{s['port_name']}" if s["port_name"] else ""), s["protocol"])
            not in declared
        ]
        got = sort_iptables_rules(write_iptables(spec, unchanged_services=unchanged))
    assert got == want


def test_full_sync_is_consistent():
    """Every nat chain the writer declares is jumped to and has rules; every jump target exists."""
    for d in _ipt_fixtures():
        for table, chain_lines, rules in parse_restore(write_iptables(_spec(d))):
            declared = {c[1:].split()[0] for c in chain_lines}
            targets = set()
            for chain, rs in rules.items():
                assert chain in declared, (d.name, table, chain)
                for r in rs:
                    words = r.split()
                    if "-j" in words:
                        targets.add(words[words.index("-j") + 1])
            kube_targets = {t for t in targets if t.startswith("KUBE-")}
            assert kube_targets <= declared | {"KUBE-MARK-MASQ"}, (d.name, table, kube_targets - declared)
            if table == "nat":
                for c in declared:
                    if c.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SVL-")):
                        assert c in targets, (d.name, c, "declared but never jumped to")
                        assert rules.get(c), (d.name, c, "jumped to but empty")


def test_sort_keeps_nodeports_rule_last():
    spec = _spec(IPT / "modern-overall")
    text = sort_iptables_rules(write_iptables(spec))
    nat_services = [line for line in text.splitlines() if line.startswith("-A KUBE-SERVICES")]
    assert "must be the last rule" in nat_services[-1]


def test_real_node_options():
    from tests.kpwriter import REAL_NODE

    spec = _spec(IPT / "modern-overall")
    text = write_iptables(spec, **REAL_NODE)
    assert "nfacct" not in text
    assert "-j MASQUERADE --random-fully" in text
    assert "--or-mark 0x004000" in text
    # without nfacct, no separate localhost NodePort rule
    assert "-d 127.0.0.0/8 --dport" not in text


def test_setup_text_jump_order():
    text = iptables_setup_text()
    filt = [line for line in text.split("*filter")[1].splitlines() if line.startswith("-A INPUT")]
    assert [line.split("-j ")[-1] for line in filt] == [
        "KUBE-FIREWALL",
        "KUBE-PROXY-FIREWALL",
        "KUBE-NODEPORTS",
        "KUBE-EXTERNAL-SERVICES",
    ]


def test_itp_local_and_terminating_endpoints():
    spec = {
        "node_name": "n1",
        "pod_cidr": "10.244.0.0/16",
        "services": [
            {
                "service": "ns/a",
                "port_name": "",
                "protocol": "UDP",
                "type": "ClusterIP",
                "frontends": [{"kind": "ClusterIP", "ip": "10.96.0.5", "port": 53}],
                "internal_traffic_policy": "Local",
                "external_traffic_policy": "Cluster",
                "endpoints": [
                    {"ip": "10.244.1.2", "port": 53, "local": False},
                    {
                        "ip": "10.244.0.9",
                        "port": 53,
                        "local": True,
                        "ready": False,
                        "serving": True,
                        "terminating": True,
                    },
                ],
            }
        ],
    }
    text = write_iptables(spec)
    svl = svl_chain("ns/a", "udp")
    assert (
        f'-A KUBE-SERVICES -m comment --comment "ns/a cluster IP" -m udp -p udp -d 10.96.0.5 --dport 53 -j {svl}'
    ) in text
    assert "--to-destination 10.244.0.9:53" in text
    assert "10.244.1.2:53" not in text  # ITP Local: only the local (serving, terminating) endpoint


# ---- lab: real iptables in network namespaces -------------------------------------------------------


def _lab():
    from tests.kpwriter.netns import lab_available

    ok, why = lab_available()
    if not ok:
        pytest.skip(f"lab unavailable: {why}")


@pytest.mark.lab
@pytest.mark.parametrize("fixture", _ipt_fixtures(), ids=lambda p: p.name)
def test_loaded_rules_match_fixture(fixture: Path):
    _lab()
    from tests.kpwriter.netns import diff_saves, load_iptables_node, netns, save_from_netns, strip_nfacct

    spec = _spec(fixture)
    with netns() as mine, netns() as theirs:
        load_iptables_node(mine, [write_iptables(spec)])
        load_iptables_node(theirs, split_syncs((fixture / "kube-proxy-restore-input.txt").read_text()))
        got, want = save_from_netns(mine), save_from_netns(theirs)
    assert diff_saves(got, want, "writer", "fixture restore input") == []
    dump = (fixture / "dump.txt").read_text()
    assert diff_saves(got, dump, "writer", "dump.txt") == []
    assert got == strip_nfacct(dump)  # byte for byte, timestamps fixed alike


@pytest.mark.lab
@pytest.mark.parametrize("fixture", _ipt_fixtures(), ids=lambda p: p.name)
def test_loaded_rules_match_legacy_dump(fixture: Path):
    """The same through the iptables-legacy backend (its save lists tables in kernel order)."""
    _lab()
    from tests.kpwriter.netns import NetnsError, diff_saves, load_iptables_node, netns, save_from_netns

    legacy = fixture / "dump.iptables-legacy.txt"
    if not legacy.exists():
        pytest.skip("fixture has no legacy dump")
    with netns() as mine:
        try:
            load_iptables_node(mine, [write_iptables(_spec(fixture))], kind="iptables-legacy")
        except NetnsError as e:
            pytest.skip(f"iptables-legacy unusable here: {e}")
        got = save_from_netns(mine, "iptables-legacy")
    assert got.startswith("# Generated by iptables-save v1.8.9 on Thu Jan  1 00:00:00 2026")
    assert diff_saves(got, legacy.read_text(), "writer", "dump.iptables-legacy.txt") == []


@pytest.mark.lab
@pytest.mark.parametrize("fixture", _ipt_fixtures(covered=False), ids=lambda p: p.name)
def test_older_era_not_covered(fixture: Path):
    """The xlb era (≈v1.23) is not written; record that the writer's modern shape differs from it."""
    _lab()
    from tests.kpwriter.netns import diff_saves, load_iptables_node, netns, save_from_netns

    with netns() as mine:
        load_iptables_node(mine, [write_iptables(_spec(fixture))])
        got = save_from_netns(mine)
    assert diff_saves(got, (fixture / "dump.txt").read_text()) != []


# ---- nftables -------------------------------------------------------------------------------------------

NFT = FIXTURES / "nftables"
# What kube-proxy's nftables unit tests run with (testNodeIP, the service CIDR of the fake proxier).
NFT_NODE = {"node_ip": "192.168.0.2", "service_cidrs": ["172.30.0.0/16"]}


def _nft_fixtures() -> List[Path]:
    return sorted(p for p in NFT.iterdir() if (p / "expected.json").exists())


def test_nft_chain_names():
    from tests.kpwriter.nft import hash_and_truncate

    assert hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


@pytest.mark.parametrize("fixture", _nft_fixtures(), ids=lambda p: p.name)
def test_nft_transaction_matches_fixture(fixture: Path):
    from tests.kpwriter import transaction_lines, write_nft

    got = transaction_lines(write_nft(_spec(fixture), **NFT_NODE))
    want = transaction_lines((fixture / "kube-proxy-transaction.nft").read_text())
    assert got == want  # kube-proxy's tests compare transactions ignoring line order too


@pytest.mark.lab
@pytest.mark.parametrize("fixture", _nft_fixtures(), ids=lambda p: p.name)
@pytest.mark.parametrize("flushes", [False, True], ids=["state", "with-flushes"])
def test_nft_loaded_rules_match_fixture(fixture: Path, flushes: bool):
    _lab()
    import shutil

    if not shutil.which("nft"):
        pytest.skip("nft not installed")
    from tests.kpwriter import load_into_netns, netns, normalize_nft_list, save_from_netns, write_nft

    with netns() as mine, netns() as theirs:
        load_into_netns(mine, write_nft(_spec(fixture), flushes=flushes, **NFT_NODE), "nft")
        load_into_netns(theirs, (fixture / "kube-proxy-transaction.nft").read_text(), "nft")
        got = save_from_netns(mine, "nft", "ip kube-proxy")
        want = save_from_netns(theirs, "nft", "ip kube-proxy")
    assert normalize_nft_list(got) == normalize_nft_list(want)
    assert normalize_nft_list(got) == normalize_nft_list((fixture / "dump.txt").read_text())
