"""`trace` of one Service on an nftables node reads only what leads to it; it must say what `map` says.

resolve_nft(only=...) skips other Services' chains (but for the local-traffic detector) and judges
reachability only over the chains and maps that lead to the Service (`_Resolver._ancestors`). For every
Service of every fixture, and for damaged and hand-edited rulesets, the trace's services and findings
must be the map's, restricted to that Service.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane.nft import parse_nft, resolve_nft
from kubectl_svcnet.errors import DumpParseError
from tests.golden import FIXTURES

OVERALL = (FIXTURES / "nftables" / "overall" / "dump.txt").read_text()
DUMPS = sorted((FIXTURES / "nftables").rglob("dump.*"))


def assert_trace_is_map(text: str) -> List[str]:
    """For each Service in the map of `text`: trace == map restricted to it. Returns the Services."""
    whole = resolve_nft(parse_nft(text, "d"), "n", paths=True)
    names = sorted({s.key.service for s in whole.services})
    for svc in names:
        one = resolve_nft(parse_nft(text, "d"), "n", only=svc, paths=True)
        assert one.services == tuple(s for s in whole.services if s.key.service == svc), svc
        assert set(one.findings) <= set(whole.findings), svc
        for f in set(whole.findings) - set(one.findings):
            assert f"-{svc}/" not in f.message, (svc, f)  # only other Services' problems are left out
        assert one.pod_cidr_detector == whole.pod_cidr_detector
    return names


def test_every_fixture_traces_as_it_maps():
    for path in DUMPS:
        assert assert_trace_is_map(path.read_text()), path


def _with(text: str, after: str, lines: str) -> str:
    assert after in text
    return text.replace(after, after + "\n" + lines, 1)


def _chain(name: str, *rules: str) -> str:
    return f"\tchain {name} {{\n" + "".join(f"\t\t{r}\n" for r in rules) + "\t}\n"


def _add_chains(text: str, *chains: str) -> str:
    """The chains, inserted before the fixture's reject-chain."""
    at = text.index("\tchain reject-chain {")
    return text[:at] + "".join(chains) + text[at:]


def _endpoint(tag: str, ip: str) -> str:
    return _chain(
        f"endpoint-{tag}-ns1/svc1/tcp/p80__{ip}/80",
        f"ip saddr {ip} jump mark-for-masquerade",
        f"meta l4proto tcp dnat to {ip}:80",
    )


def test_a_stale_chain_of_the_service_is_reported_by_its_trace():
    text = _add_chains(OVERALL, _endpoint("AAAAAAAA", "10.180.9.9"))
    assert_trace_is_map(text)
    one = resolve_nft(parse_nft(text, "d"), "n", only="ns1/svc1")
    stale = [f.message for s in one.services for f in s.findings if f.code == "unreachable-chain"]
    assert len(stale) == 1 and "chain endpoint-AAAAAAAA-ns1/svc1/tcp/p80__10.180.9.9/80 is not reached" in stale[0]


def bare_chains() -> str:
    """OVERALL with two more endpoint chains of ns1/svc1 that nothing jumps to."""
    return _add_chains(OVERALL, _endpoint("BBBBBBBB", "10.180.9.9"), _endpoint("CCCCCCCC", "10.180.7.7"))


def chains_through_others() -> str:
    """bare_chains, the first reached only through ns2's chain, the second only through a custom chain
    that only a hook jumps to."""
    text = _add_chains(
        bare_chains(),
        _chain("custom", "ip saddr 192.0.2.2 jump endpoint-CCCCCCCC-ns1/svc1/tcp/p80__10.180.7.7/80"),
    )
    text = _with(
        text,
        "\tchain external-42NFTM6N-ns2/svc2/tcp/p80 {",
        "\t\tip saddr 192.0.2.1 jump endpoint-BBBBBBBB-ns1/svc1/tcp/p80__10.180.9.9/80",
    )
    return _with(text, "type nat hook prerouting priority dstnat; policy accept;", "\t\tip saddr 192.0.2.2 jump custom")


def test_a_chain_reached_only_through_another_services_chain_is_not_stale():
    """Not kube-proxy's shape, but a path is a path: through ns2's chain, and through a custom chain
    that only a hook jumps to."""
    text = chains_through_others()
    assert_trace_is_map(text)
    one = resolve_nft(parse_nft(text, "d"), "n", only="ns1/svc1")
    assert not [f for s in one.services for f in s.findings if f.code == "unreachable-chain"]
    assert not [f for f in one.findings if f.code == "unreachable-chain"]
    # ...and without those jumps both chains are stale, in the trace too.
    one = resolve_nft(parse_nft(bare_chains(), "d"), "n", only="ns1/svc1")
    assert len([f for s in one.services for f in s.findings if f.code == "unreachable-chain"]) == 2


def damaged(data, text: str, ops: Sequence[str], times: Tuple[int, int], words: Sequence[str] = ()) -> str:
    """`text` (an nft list ruleset) with rule lines hurt `times` (least, most) times by hypothesis:
    "drop" blanks one, "dup" doubles one, "move" puts one into another chain, "word" swaps one of its
    words for one of `words`."""
    lines = text.split("\n")
    rules = [i for i, ln in enumerate(lines) if ln.startswith("\t\t") and "{" not in ln and "}" not in ln]
    for _ in range(data.draw(st.integers(*times))):
        i = data.draw(st.sampled_from(rules))
        op = data.draw(st.sampled_from(list(ops)))
        if op == "drop":
            lines[i] = ""
        elif op == "dup":
            lines[i] = lines[i] + "\n" + lines[i]
        elif op == "move":
            j = data.draw(st.sampled_from(rules))
            lines[j], lines[i] = lines[j] + "\n" + lines[i], ""
        else:
            split = lines[i].split(" ")
            split[data.draw(st.integers(0, len(split) - 1))] = data.draw(st.sampled_from(list(words)))
            lines[i] = " ".join(split)
    return "\n".join(lines)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_rulesets_trace_as_they_map(data):
    """Rule lines dropped, duplicated or moved into another chain: stale chains, missing endpoints,
    undefined targets — whatever the map says of a Service, its trace says too."""
    path = data.draw(st.sampled_from([p for p in DUMPS if p.suffix == ".txt"]))
    text = damaged(data, path.read_text(), ["drop", "dup", "move"], (1, 4))
    try:
        parse_nft(text, "d")
    except DumpParseError:
        return
    assert_trace_is_map(text)
