"""A lazily read dump (parse_iptables(..., lazy=True), what `map` reads) answers exactly as one read
whole: same routes, same findings in the same order, on every fixture, on damaged dumps, and on a
generated many-service dump; and it lets walked chains go again (its memory is the point)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane.iptables import (
    _INDEXED,
    PER_SERVICE_PREFIXES,
    Chains,
    _Raw,
    marks_matter_in_nat,
    parse_iptables,
    resolve_iptables,
)
from tests.golden import FIXTURES, generated_dump
from tests.test_fuzz import mutate_lines

ROOT = Path(__file__).resolve().parent.parent
DUMPS = sorted(p for p in (FIXTURES / "iptables").rglob("*.txt")) + sorted(
    (ROOT / "examples" / "seed-cluster" / "nodes").rglob("iptables*-save.txt")
)


def both(text: str, only=None):
    eager = resolve_iptables([parse_iptables(text, "d.txt")], "n1", only=only)
    lazy = resolve_iptables([parse_iptables(text, "d.txt", lazy=True)], "n1", only=only)
    return eager, lazy


def test_there_are_dumps_to_compare():
    assert len(DUMPS) >= 10


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lazy_reads_every_fixture_as_eager(path):
    eager, lazy = both(path.read_text())
    assert eager == lazy


def test_findings_of_a_damaged_dump_come_in_the_same_order():
    text = (FIXTURES / "iptables" / "modern-overall" / "dump.txt").read_text()
    lines = text.splitlines()
    # A rule iptables-save could not print, two jumps to undefined chains in different chains, a rule
    # in an undeclared chain, and the table cut before COMMIT.
    nat = lines.index("*nat")
    lines.insert(nat + 1, ":KUBE-NEW - [0:0]")
    at = next(i for i, ln in enumerate(lines) if ln.startswith("-A KUBE-SERVICES "))
    lines.insert(at, "-A KUBE-SERVICES -m tcp --dport")
    lines.insert(at, "-A KUBE-SERVICES -j KUBE-NOWHERE-1")
    lines.insert(at, "-A KUBE-NEW -j KUBE-NOWHERE-2")
    lines.insert(at, "-A KUBE-UNDECLARED -j ACCEPT")
    del lines[len(lines) - 1 - lines[::-1].index("COMMIT")]  # the last table (nat) loses its COMMIT
    cut = "\n".join(lines) + "\n"
    eager, lazy = both(cut)
    codes = [f.code for f in eager.findings]
    assert {"bad-rule", "undefined-chain", "undeclared-chain", "truncated-dump"} <= set(codes), codes
    assert [f.message for f in lazy.findings] == [f.message for f in eager.findings]
    assert eager == lazy


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_dumps_read_the_same_lazily(data):
    path = data.draw(st.sampled_from(DUMPS[:8]))
    text = mutate_lines(path.read_text(), data, ["-j", "KUBE-SVC-X", "--mark", "0x4000", "-g", ":KUBE-Y - [0:0]"])
    try:
        eager = resolve_iptables([parse_iptables(text, "d.txt")], "n1")
    except Exception as e:  # the parser's own error: the lazy reader must raise the same
        with pytest.raises(type(e)):
            resolve_iptables([parse_iptables(text, "d.txt", lazy=True)], "n1")
        return
    assert resolve_iptables([parse_iptables(text, "d.txt", lazy=True)], "n1") == eager


def _generated(tmp_path, services=120, endpoints=4) -> str:
    return generated_dump(services, endpoints)


def test_a_walked_chain_is_let_go_again(tmp_path):
    text = _generated(tmp_path)
    dump = parse_iptables(text, "d.txt", lazy=True)
    nat = dump.tables["nat"].chains
    assert isinstance(nat, Chains)
    assert all(dict.get(nat, c).__class__ is _Raw for c in nat), "nothing is read before it is asked for"
    eager, lazy = both(text)
    assert eager == lazy
    resolve_iptables([dump], "n1")
    parsed = [c for c in nat if dict.get(nat, c).__class__ is not _Raw]
    # Only the big dispatch chains (indexed) and the few every walk passes stay read; every service's
    # and endpoint's own chains went again.
    assert parsed and all(nat.size(c) >= _INDEXED or not c.startswith(PER_SERVICE_PREFIXES) for c in parsed), parsed
    assert "KUBE-SERVICES" in parsed
    assert len(parsed) < 10, parsed


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_marks_are_judged_the_same_without_reading_rules(path):
    text = path.read_text()
    assert marks_matter_in_nat(parse_iptables(text, "d.txt", lazy=True)) == marks_matter_in_nat(
        parse_iptables(text, "d.txt")
    )


def test_a_mark_test_on_the_way_in_is_seen_without_reading_rules():
    text = (FIXTURES / "iptables" / "modern-overall" / "dump.txt").read_text()
    marked = text.replace(
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
        "-A PREROUTING -m mark --mark 0x1/0x1 -j KUBE-MARK-MASQ",
        1,
    )
    assert marked != text
    assert marks_matter_in_nat(parse_iptables(marked, "d.txt"))
    assert marks_matter_in_nat(parse_iptables(marked, "d.txt", lazy=True))
    eager, lazy = both(marked)
    assert eager == lazy


def test_a_chain_whose_rules_come_apart_reads_whole(tmp_path):
    # iptables-restore input may interleave chains' rules; iptables-save groups them. Each chain must
    # read the same rules, in the same order, either way (a chain's rules leave the table's shared
    # arrays for their own once they come apart; see _Raw).
    text = _generated(tmp_path, services=60, endpoints=3)
    lines = text.split("\n")
    nat = lines.index("*nat")
    end = nat + lines[nat:].index("COMMIT")
    rules = [ln for ln in lines[nat:end] if ln.startswith("-A ")]
    head = [ln for ln in lines[nat:end] if not ln.startswith("-A ")]
    # Deal the rules out round-robin over 7 piles: every chain's rules end up apart (some reordered,
    # which makes some endpoint chains unreachable: `grouped` has each chain's rules in the same order).
    dealt = [ln for k in range(7) for ln in rules[k::7]]
    by_chain: dict = {}
    for ln in dealt:
        by_chain.setdefault(ln.split(" ", 2)[1], []).append(ln)
    mixed = "\n".join(lines[:nat] + head + dealt + lines[end:])
    grouped = "\n".join(lines[:nat] + head + [ln for c in by_chain for ln in by_chain[c]] + lines[end:])
    a = parse_iptables(mixed, "d.txt", lazy=True)
    chains = a.tables["nat"].chains
    apart = [c for c in chains if chains.raw[c].lines is not None]
    assert len(apart) > 10  # the case under test happened
    for c in apart:
        got = [(n, mixed.split("\n")[n - 1]) for n in chains.lines_of(chains.raw[c])]
        assert [t for _, t in got] == by_chain[c], c
        assert chains.texts(c) == [t.split(" ", 2)[2] for t in by_chain[c]]
    got = resolve_iptables([a], "n1")
    want = resolve_iptables([parse_iptables(grouped, "d.txt", lazy=True)], "n1")
    assert got.services == want.services  # (findings name lines, which differ)
    assert [f.code for f in got.findings] == [f.code for f in want.findings]


def test_chains_with_refuses_an_empty_needle():
    # (A chain named "" exists in a dump with `-A  X`; an empty needle used to loop forever.)
    dump = parse_iptables("*nat\n:X - [0:0]\n-A X -j RETURN\nCOMMIT\n", "d.txt", lazy=True)
    with pytest.raises(ValueError):
        dump.tables["nat"].chains.chains_with("")
    assert dump.tables["nat"].chains.chains_with("-j RETURN") == {"X"}
