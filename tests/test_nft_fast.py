"""The nftables rule reader's fast path (`nft._analyse_fast`) against its general reader.

`analyse_rule` reads kube-proxy's common rule shapes with one regex and everything else with the general
recursive-descent reader. Wherever the fast path answers, its answer must be the general reader's.
"""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane.nft import _analyse_fast, _analyse_general, analyse_rule, parse_nft
from kubectl_svcnet.errors import DumpParseError
from tests.golden import FIXTURES, load_expected
from tests.kpwriter.nft import transaction_lines, write_nft


def _rule_texts() -> List[str]:
    """Every rule of every nftables dump fixture, as the parser keeps it, and every rule kube-proxy's
    writer (tests/kpwriter) makes for each fixture's objects."""
    out: List[str] = []
    for path in sorted((FIXTURES / "nftables").rglob("dump.*")):
        ruleset = parse_nft(path.read_text(), str(path))
        out += [r.text for t in ruleset.tables for c in t.chains.values() for r in c.rules]
    for exp in sorted((FIXTURES / "nftables").rglob("expected.json")):
        for line in transaction_lines(write_nft(load_expected(exp.parent))):
            if line.startswith("add rule "):
                out.append(line.split(" ", 5)[5])
    return out


RULES = _rule_texts()


def test_fast_and_general_readers_agree_on_every_fixture_rule():
    fast = 0
    for text in RULES:
        a = _analyse_fast(text)
        if a is not None:
            fast += 1
            assert a == _analyse_general(text), text
        assert analyse_rule(text) == _analyse_general(text), text
    # The shapes the fast path exists for really take it (else this test proves nothing).
    assert fast >= 100, (fast, len(RULES))
    shapes = {"jump", "goto", "dnat", "numgen"}
    assert shapes <= {_analyse_fast(t).action.kind for t in RULES if _analyse_fast(t) is not None}


def test_fast_path_leaves_keywords_to_the_general_reader():
    """Values the general reader takes for keywords (set, vmap, operators) or for composite selectors."""
    for text in (
        "meta mark set 0x4000 jump x",
        "ip saddr == 10.0.0.1 jump x",
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "meta mark and 0x4000 == 0 return",
        'iifname "eth0" goto x',
        "ip saddr @affinity-x goto endpoint-y",
        "numgen inc mod 2 vmap { 0 : goto a, 1 : goto b }",
        "numgen random mod 2 vmap { 0 : goto a,  1 : goto b }",
        "meta l4proto tcp dnat to 10.0.0.1:80 fully-random",
    ):
        assert _analyse_fast(text) is None, text
        assert analyse_rule(text) == _analyse_general(text)


_WORDS = [
    "ip", "ip6", "meta", "th", "tcp", "saddr", "daddr", "dport", "l4proto", "!=", "==", "set", "vmap",
    "jump", "goto", "dnat", "to", "numgen", "random", "mod", "{", "}", ":", ",", "0", "1", "2", ".",
    "10.0.0.1", "10.0.0.0/8", "[fd00::1]:80", "10.0.0.1:80", "mark-for-masquerade", "comment", '"c"',
    "tcp,", "and", "@set", "x",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_and_general_readers_agree_on_mutations(data):
    base = data.draw(st.sampled_from(RULES))
    words = base.split(" ")
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(["swap", "drop", "insert", "space"]))
        if not words:
            break
        i = data.draw(st.integers(0, len(words) - 1))
        if op == "swap":
            words[i] = data.draw(st.sampled_from(_WORDS))
        elif op == "drop":
            del words[i]
        elif op == "insert":
            words.insert(i, data.draw(st.sampled_from(_WORDS)))
        else:
            words[i] = words[i] + " "
    text = " ".join(words)
    a = _analyse_fast(text)
    if a is not None:
        assert a == _analyse_general(text), text


def _resolved(text: str):
    from kubectl_svcnet.dataplane.nft import resolve_nft

    plane = resolve_nft(parse_nft(text, "d"), "n", paths=True)
    return plane.services, plane.findings, plane.pod_cidr_detector


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_path_changes_no_answer(data):
    """The whole resolution (routes, hops, findings, detector) with the fast path and without it (every
    rule through the general reader: check_rules and reachability then build every analysis), on the
    fixtures with rule lines dropped, duplicated or changed."""
    import pytest

    import kubectl_svcnet.dataplane.nft as nft
    from kubectl_svcnet.errors import DumpParseError
    from tests.test_nft_trace import damaged

    path = data.draw(st.sampled_from(sorted((FIXTURES / "nftables").rglob("dump.txt"))))
    text = damaged(data, path.read_text(), ["drop", "dup", "word"], (0, 3), _WORDS)
    try:
        parse_nft(text, "d")
    except DumpParseError:
        return  # (a mutation the parser refuses: nothing to resolve)
    fast = _resolved(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nft, "_fast_parts", lambda text: None)
        slow = _resolved(text)
    assert fast == slow


def test_json_read_item_by_item_is_the_json_read_whole():
    """`nft -j` output is decoded one item of its "nftables" list at a time; anything but that plain
    shape is decoded whole, as before, and says the same thing."""
    import json

    from kubectl_svcnet.dataplane.nft import _parse_json_whole

    for path in sorted((FIXTURES / "nftables").rglob("dump.json")):
        text = path.read_text()
        assert parse_nft(text, "j") == _parse_json_whole(text, "j")
        spaced = json.dumps(json.loads(text), indent=2)  # (nft -j prints one line; people reformat it)
        assert parse_nft(spaced, "j") == _parse_json_whole(spaced, "j")
    text = (FIXTURES / "nftables" / "overall" / "dump.json").read_text()
    doc = json.loads(text)
    for variant in (
        json.dumps({"other": 1, "nftables": doc["nftables"]}),  # another key first
        json.dumps({"nftables": []}),
        text.rstrip() + " x",  # trailing junk
        text[: len(text) // 2],  # cut
        text.replace('"rule"', '"rule" "', 1),  # a broken item
    ):
        try:
            want = _parse_json_whole(variant, "j")
        except DumpParseError as e:
            with pytest.raises(DumpParseError) as got:
                parse_nft(variant, "j")
            assert (got.value.message, got.value.line) == (e.message, e.line)
        else:
            assert parse_nft(variant, "j") == want
