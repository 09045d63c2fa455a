"""Property tests for the IPVS-mode readers (ipvsadm, ipset, with iptables-save) and the userspace reader:
on truncated, mutated or arbitrary input the result is a NodeDataPlane or a DumpParseError, never a traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane import read_node
from kubectl_svcnet.errors import DumpParseError
from tests.golden import fixture_dirs
from tests.test_fuzz import mutate_lines

NAMES = ("ipvsadm-save.txt", "ipvsadm-Ln.txt", "ipset-save.txt", "ipset-list.txt", "iptables-save.txt", "dump.txt")
SETS = [
    tuple((d / n).read_text() for n in NAMES if (d / n).exists())
    for d in fixture_dirs("ipvs") + fixture_dirs("userspace")
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TOKENS = ["-A", "-a", "-t", "-u", "-r", "-w", "-s", "-p", "-m", "rr", "0", "->", "Masq", "TCP", "Name:", "Members:",
           "create", "add", "hash:ip,port", "bitmap:port", ",", ":", "[", "]", "::", "tcp:", "KUBE-6-", "65536",
           "--sctp-service", "persistent", "REDIRECT", "--to-ports"]  # fmt: skip


def read_or_parse_error(dumps) -> None:
    try:
        plane = read_node([(t, f"fuzz{i}.txt") for i, t in enumerate(dumps)], "n")
    except DumpParseError as e:
        assert e.one_line()
        return
    for s in plane.services:
        for fe in s.frontends:
            for r in fe.routes:
                assert r.verdict in ("forward", "reject", "drop")
                total = sum(b.probability for b in r.backends)
                assert not r.backends or abs(total - 1) < 1e-6


@SETTINGS
@given(st.sampled_from(SETS), st.data())
def test_truncated_dumps(dumps, data):
    k = data.draw(st.integers(min_value=0, max_value=len(dumps) - 1))
    cut = data.draw(st.integers(min_value=0, max_value=len(dumps[k])))
    read_or_parse_error([t[:cut] if i == k else t for i, t in enumerate(dumps)])


@SETTINGS
@given(st.sampled_from(SETS), st.data())
def test_mutated_lines(dumps, data):
    k = data.draw(st.integers(min_value=0, max_value=len(dumps) - 1))
    mutated = mutate_lines(dumps[k], data, _TOKENS)
    read_or_parse_error([(mutated if n == k else t) for n, t in enumerate(dumps)])


@SETTINGS
@given(st.lists(st.sampled_from(_TOKENS) | st.text(max_size=10), max_size=40), st.sampled_from(["-A -t ", "Name: ",
       "create ", "IP Virtual Server version 1.2.1\n", "TCP  "]))  # fmt: skip
def test_arbitrary_text_after_a_recognised_start(words, start):
    read_or_parse_error([start + " ".join(words)])
