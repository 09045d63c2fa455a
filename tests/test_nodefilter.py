"""The node-side filter for `trace` (collect/nodefilter.py), run for real: the constant awk program in
FILTER_SCRIPT, through `sh`, with every awk this machine has (awk, mawk, gawk, busybox awk, BWK awk),
over real kube-proxy dumps and generated large ones. For every Service, the trace read from the
filtered-and-rebuilt text must be the trace read from the whole dump: the same JSON, the same
CHAIN:LINE paths, the same findings — and the backend choice, the stale-backend warning and the
proxy-mode markers must read the same off both.

No root needed. `SVCNET_NODEFILTER_ALL=1` checks every Service of the 2,000-service dump (slow: one
awk run over 9.5 MB per Service) instead of a sample.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from kubectl_svcnet import proxymode
from kubectl_svcnet.app import build_map
from kubectl_svcnet.collect import nodecmds
from kubectl_svcnet.collect.files import Inputs
from kubectl_svcnet.collect.nodecmds import collect_node
from kubectl_svcnet.collect.nodefilter import (
    ANYWHERE,
    AWK_PROGRAM,
    FILTER_SCRIPT,
    MARKS,
    filter_command,
    is_filtered,
    rebuild,
    valid_service,
)
from kubectl_svcnet.collect.runner import LocalRunner
from kubectl_svcnet.render import render_paths, to_dict
from tests.filtertools import AWKS, FALLBACK_IDS, FALLBACKS, make_node, trace_answer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "kube-proxy" / "iptables"
# Both backends, kube-proxy's restore input (not a save: sent whole), and a userspace-mode node.
DUMPS = sorted(FIXTURES.glob("*/*.txt")) + sorted((FIXTURES.parent / "userspace").glob("*/dump.txt"))
_COMMENT = re.compile(r'--comment "?([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*)')


def run_filter(text: str, service: str, bindir: Optional[str] = None) -> Tuple[str, int]:
    """The real FILTER_SCRIPT + AWK_PROGRAM over `text` (as the dump command `cat` prints it)."""
    env = dict(os.environ)
    if bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    r = subprocess.run(["sh", "-c", FILTER_SCRIPT, "sh", AWK_PROGRAM, service, "cat"], input=text.encode(),
                       capture_output=True, env=env, timeout=300)  # fmt: skip
    assert r.stderr == b"", r.stderr
    return r.stdout.decode(), r.returncode


def services_in(text: str) -> List[str]:
    return sorted({m.group(1) for m in _COMMENT.finditer(text)})


def trace(text: str, service: str) -> Tuple:
    """What a trace says about one node holding `text` (trace_answer)."""
    return trace_answer([(text, "node1:iptables-save")], service)


def filtered_text(text: str, service: str, bindir: Optional[str] = None) -> Tuple[str, Optional[int]]:
    """The text the client rebuilds from the filter's output, and the node's KUBE- rule count."""
    out, code = run_filter(text, service, bindir)
    assert code == 0
    if not is_filtered(out):
        assert out == text  # sent whole, unchanged
        return out, None
    dump = rebuild(out)
    assert dump is not None
    return dump.text, dump.kube_rules


def assert_same(text: str, service: str, bindir: Optional[str] = None) -> Tuple[str, Optional[int]]:
    small, rules = filtered_text(text, service, bindir)
    assert trace(small, service) == trace(text, service), service
    return small, rules


def assert_checks_agree(text: str, small: str, rules: Optional[int]) -> None:
    """What nodecmds and proxymode read off a dump besides the trace."""
    # The stale-backend warning names the first four chains, "…" past four, and counts the rules.
    (chains, n), (chains0, n0) = nodecmds.kube_proxy_chains(small, rules), nodecmds.kube_proxy_chains(text)
    assert (chains[:4], len(chains) > 4, n) == (chains0[:4], len(chains0) > 4, n0)
    assert set(chains) <= set(chains0)
    for i in range(2):
        pair = ([small], []) if i == 0 else ([], [small])
        assert nodecmds.choose_backend(*pair) == nodecmds.choose_backend(*(([text], []) if i == 0 else ([], [text])))
    assert nodecmds.has_kubelet_hint(small, True) == nodecmds.has_kubelet_hint(text, True)
    assert nodecmds.shows_ipvs(small) == nodecmds.shows_ipvs(text)
    assert nodecmds.header_backend(small) == nodecmds.header_backend(text)
    assert nodecmds.has_tables(small) == nodecmds.has_tables(text)
    assert proxymode.scan_dump(small) == proxymode.scan_dump(text)


@pytest.fixture(scope="module")
def gen_dumps(tmp_path_factory) -> Dict[str, str]:
    d = tmp_path_factory.mktemp("gen")
    out = {}
    for n in (200, 2000):
        path = d / f"dump-{n}.txt"
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_dump.py"), str(n), "10", str(path)],
                       check=True, capture_output=True)  # fmt: skip
        out[str(n)] = path.read_text()
    return out


def large_cluster_mode(text: str) -> str:
    """kube-proxy's large-cluster mode (> 1000 endpoints): no comments on the endpoint rules (KUBE-SEP
    chains, and the KUBE-SVC rules that pick an endpoint)."""
    out = []
    for line in text.splitlines(True):
        if line.startswith("-A KUBE-SEP-") or (line.startswith("-A KUBE-SVC-") and " -> " in line):
            line = re.sub(r' -m comment --comment "[^"]*"', "", line)
        out.append(line)
    return "".join(out)


# ---------------------------------------------------------------------------------------------


def test_there_is_an_awk() -> None:
    assert AWKS, "no awk on this machine"


def test_service_names_are_validated_before_they_become_an_argv_word() -> None:
    assert valid_service("default/db-service") and valid_service("ns7/svc1007")
    for bad in ("default", "a/b/c", "Default/x", "ns/$(reboot)", "ns/a b", "ns/-x", "ns/x-", "ns/a'b", "/x", "x/",
                "ns/" + "a" * 64, "ns/a\\tb"):  # fmt: skip
        assert not valid_service(bad), bad
        with pytest.raises(ValueError):
            filter_command(("iptables-save",), bad)
    argv = filter_command(("iptables-nft-save",), "ns/web")
    assert argv == ("sh", "-c", FILTER_SCRIPT, "sh", AWK_PROGRAM, "ns/web", "iptables-nft-save")
    assert "ns/web" not in FILTER_SCRIPT + AWK_PROGRAM  # the program is constant
    assert "\n" not in FILTER_SCRIPT + AWK_PROGRAM  # one line in the node's logs


def test_the_marker_regex_covers_every_anywhere_marker() -> None:
    marks = re.compile(MARKS)
    for needle in ANYWHERE:
        assert marks.search("x " + needle + " y"), needle
    # Every marker proxymode and nodecmds search for is either a line start that the program keeps by rule
    # (a chain declaration) or one the regex catches.
    for tup in (proxymode.IPTABLES_MODE, proxymode.IPVS_MODE, proxymode.USERSPACE_MODE, proxymode.NFTABLES_MODE,
                proxymode.KUBE_PROXY_ANY, proxymode.CILIUM, proxymode.CALICO, proxymode.KUBE_ROUTER):  # fmt: skip
        for needle in tup:
            assert needle.startswith("\n:") or needle in ANYWHERE, needle
    assert marks.search("-A -t 10.96.0.1:443 -s rr") and not marks.search("-A KUBE-SVC-X -j KUBE-SEP-Y")


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixtures_every_service_every_awk(path: Path, awk_bins: Dict[str, str]) -> None:
    text = path.read_text()
    services = services_in(text) + ["nope/nothing"]
    for name, bindir in awk_bins.items():
        for svc in services:
            assert_checks_agree(text, *assert_same(text, svc, bindir))
        if path.name == "kube-proxy-restore-input.txt":  # not iptables-save output: sent whole
            assert not is_filtered(run_filter(text, services[0], bindir)[0]), name


@pytest.mark.parametrize("path", [p for p in DUMPS if p.name.startswith("dump")], ids=lambda p: p.parent.name)
def test_fixtures_in_large_cluster_mode(path: Path) -> None:
    text = large_cluster_mode(path.read_text())
    for svc in services_in(path.read_text()):
        assert_same(text, svc)


def test_all_awks_send_the_same_bytes(gen_dumps: Dict[str, str], awk_bins: Dict[str, str]) -> None:
    text = gen_dumps["200"]
    for svc in ("ns0/svc0", "ns7/svc107", "ns49/svc199"):
        outs = {name: run_filter(text, svc, d)[0] for name, d in awk_bins.items()}
        assert len(set(outs.values())) == 1, sorted(outs)
        assert is_filtered(next(iter(outs.values())))


def test_generated_200_every_service(gen_dumps: Dict[str, str]) -> None:
    text = gen_dumps["200"]
    services = services_in(text)
    assert len(services) == 200
    for i, svc in enumerate(services):
        small, rules = assert_same(text, svc)
        if i % 20 == 0:
            assert_checks_agree(text, small, rules)


def test_generated_200_large_cluster_mode_every_service(gen_dumps: Dict[str, str]) -> None:
    text = large_cluster_mode(gen_dumps["200"])
    assert "-A KUBE-SEP-" in text and not re.search(r"^-A KUBE-SEP-.*--comment", text, re.M)
    for svc in services_in(gen_dumps["200"]):
        assert_same(text, svc)


def test_generated_2000(gen_dumps: Dict[str, str]) -> None:
    text = gen_dumps["2000"]
    services = services_in(text)
    assert len(services) == 2000
    if not os.environ.get("SVCNET_NODEFILTER_ALL"):
        # A sample: node-port services (every 10th), prefixes of others (ns1/svc1 < ns1/svc101), the ends.
        services = sorted({services[i] for i in range(0, len(services), 97)} | {"ns0/svc0", "ns1/svc1", "ns1/svc101",
                          "ns10/svc10", "ns49/svc1999", "ns7/svc1007"})  # fmt: skip
    for svc in services:
        assert_same(text, svc)


def test_a_service_with_node_ports(gen_dumps: Dict[str, str]) -> None:
    text = gen_dumps["200"]
    out, _ = run_filter(text, "ns10/svc10")
    small = rebuild(out).text
    jump = re.compile(r"^-A KUBE-SERVICES .*-j KUBE-NODEPORTS$", re.M)
    assert jump.search(small)  # KUBE-SERVICES' jump into KUBE-NODEPORTS came along
    doc = json.loads(trace(small, "ns10/svc10")[0])
    assert {fe["type"] for fe in doc["services"][0]["frontends"]} == {"ClusterIP", "NodePort"}
    assert not jump.search(rebuild(run_filter(text, "ns11/svc11")[0]).text)  # no node port: not needed


def test_a_name_that_is_a_prefix_of_another(gen_dumps: Dict[str, str]) -> None:
    text = re.sub(r"ns1/svc1(?=[: \"])", "ns/db", gen_dumps["200"])
    text = re.sub(r"ns1/svc51(?=[: \"])", "ns/db-2", text)
    assert "ns/db-2:" in text and "ns/db:" in text
    for svc, other in (("ns/db", "ns/db-2"), ("ns/db-2", "ns/db:")):
        assert_same(text, svc)
        out, _ = run_filter(text, svc)
        assert other not in out
    assert trace(rebuild(run_filter(text, "ns/d")[0]).text, "ns/d")[0] == "error"  # nothing named ns/d


def test_line_numbers_are_the_dumps_own(gen_dumps: Dict[str, str]) -> None:
    text = gen_dumps["2000"]
    lines = text.splitlines()
    out, _ = run_filter(text, "ns7/svc1007")
    rows = out.splitlines()
    assert rows[0] == f"#svcnet-filter 1 {len(lines)} {sum(1 for ln in lines if ln.startswith('-A KUBE-'))}"
    assert rows[-1] == "#svcnet-end"
    for row in rows[1:-1]:
        n, _, line = row.partition("\t")
        assert lines[int(n) - 1] == line
    assert len(out) < len(text) / 500
    paths = trace(rebuild(out).text, "ns7/svc1007")[1]
    for chain, line in re.findall(r"([A-Z][A-Z0-9-]+):(\d+)", paths):
        assert lines[int(line) - 1].startswith(f"-A {chain} ")


def test_ipvs_mode_and_odd_input_are_sent_whole() -> None:
    ipvs = (FIXTURES.parent / "ipvs").glob("*/*.txt")
    texts = [p.read_text() for p in ipvs if p.read_text().startswith("# Generated by ip")]
    assert texts
    base = (FIXTURES / "modern-overall" / "dump.txt").read_text()
    texts += [
        base.replace("# Completed", "# Done", 1),  # COMMITs only sometimes followed by "# Completed"
        base + "*nat\nCOMMIT\n",  # a table twice
        base + "*raw\n",  # a table without COMMIT
        "\n" + base,  # not starting with iptables-save's header
    ]
    for text in texts:
        out, code = run_filter(text, "ns4/svc4")
        assert code == 0 and out == text


def test_rebuild_refuses_damaged_output(gen_dumps: Dict[str, str]) -> None:
    out, _ = run_filter(gen_dumps["200"], "ns7/svc107")
    assert rebuild(out) is not None
    rows = out.splitlines(True)
    assert rebuild("".join(rows[:-1])) is None  # cut short: no end line
    assert rebuild("".join(rows[:1] + rows[3:2:-1] + rows[2:3] + rows[4:])) is None  # out of order
    assert rebuild("#svcnet-filter 1 x 2\n#svcnet-end\n") is None
    assert rebuild(out.replace("\t", " ", 1)) is None
    assert rebuild("") is None and rebuild("# Generated by iptables-save\n") is None


def test_filter_script_keeps_the_dump_commands_status(tmp_path: Path) -> None:
    def run(*command: str, bindir: Optional[str] = None) -> Tuple[int, bytes, str]:
        env = dict(os.environ, PATH=(bindir + os.pathsep if bindir else "") + os.environ["PATH"])
        r = subprocess.run(["sh", "-c", FILTER_SCRIPT, "sh", AWK_PROGRAM, "ns/x", *command], capture_output=True,
                           env=env)  # fmt: skip
        return r.returncode, r.stdout, r.stderr.decode()

    assert run("no-such-program-svcnet")[0] == 127
    assert run("sh", "-c", "echo partial; exit 4")[0] == 4
    broken = tmp_path / "awk"
    broken.write_text("#!/bin/sh\necho boom >&2\nexit 2\n")
    broken.chmod(0o755)
    code, _, err = run("cat", "/dev/null", bindir=str(tmp_path))
    assert code == 86 and "awk exited 2" in err


# ---------------------------------------------------------------------------------------------
# collect_node with the filter, on a "node" made of real programs: fake save commands that print a
# dump, the real sh, gzip and awk (tests/filtertools.make_node: LocalRunner with its own PATH).


def collect_both(runner: LocalRunner, service: str) -> Tuple[nodecmds.NodeDumps, nodecmds.NodeDumps]:
    return collect_node(runner, "node1"), collect_node(runner, "node1", only=service)


def assert_same_collection(whole: nodecmds.NodeDumps, part: nodecmds.NodeDumps, service: str) -> None:
    assert (part.backend, part.backend_reason, part.warnings, part.backend_warning, part.stale_backend) == (
        whole.backend, whole.backend_reason, whole.warnings, whole.backend_warning, whole.stale_backend)  # fmt: skip
    assert [s for _, s in part.dumps] == [s for _, s in whole.dumps]
    inputs = [Inputs(nodes={"node1": list(d.dumps)}, source_kind={"node1": "ssh"}) for d in (whole, part)]
    results = []
    for i in inputs:
        r = build_map(i, only=service)
        results.append((json.dumps(to_dict(r.service_map), sort_keys=True), render_paths(r.service_map), r.problems))
    assert results[0] == results[1]


def with_hint(text: str) -> str:
    """kubelet's canary chain in the mangle table: this backend is the one kube-proxy uses."""
    return text.replace("*mangle\n", "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\n", 1)


def test_collect_node_filters_and_answers_the_same(tmp_path: Path, gen_dumps: Dict[str, str]) -> None:
    runner = make_node(tmp_path, {"iptables-nft-save": gen_dumps["2000"]})
    whole, part = collect_both(runner, "ns7/svc1007")
    assert_same_collection(whole, part, "ns7/svc1007")
    assert sum(len(t) for t, _ in part.dumps) < sum(len(t) for t, _ in whole.dumps)
    assert any("LC_ALL=C awk" in c for c in part.commands) and not any("awk" in c for c in whole.commands[1:])
    assert len(part.notes) == 1 and " lines sent for ns7/svc1007 " in part.notes[0], part.notes


@pytest.mark.parametrize("stale_in", ["nft", "legacy"])
def test_collect_node_backend_choice_and_stale_warning_are_the_same(
    tmp_path: Path, gen_dumps: Dict[str, str], stale_in: str
) -> None:
    used = with_hint((FIXTURES / "modern-overall" / "dump.txt").read_text())
    stale = gen_dumps["200"]  # an old kube-proxy's rules, many chains: the warning names 4 and counts rules
    saves = {"iptables-nft-save": stale, "iptables-legacy-save": used}
    if stale_in == "legacy":
        saves = {"iptables-nft-save": used, "iptables-legacy-save": stale}
    runner = make_node(tmp_path, saves)
    whole, part = collect_both(runner, "ns4/svc4")
    assert whole.stale_backend == stale_in and whole.backend_warning
    assert_same_collection(whole, part, "ns4/svc4")


def test_collect_node_in_ipvs_mode_reads_whole_dumps(tmp_path: Path) -> None:
    ipvs = next(p for p in (FIXTURES.parent / "ipvs").glob("*/*.txt") if p.read_text().startswith("# Generated"))
    runner = make_node(tmp_path, {"iptables-nft-save": ipvs.read_text()})
    whole, part = collect_both(runner, "ns1/svc1")
    assert [t for t, _ in part.dumps] == [t for t, _ in whole.dumps]
    assert any("sent whole by the node" in n for n in part.notes)


@pytest.mark.parametrize("awk, note", FALLBACKS, ids=FALLBACK_IDS)
def test_collect_node_falls_back_to_whole_dumps(tmp_path: Path, awk: Optional[str], note: str) -> None:
    text = (FIXTURES / "modern-overall" / "dump.txt").read_text()
    runner = make_node(tmp_path, {"iptables-nft-save": text}, awk=awk)
    whole, part = collect_both(runner, "ns4/svc4")
    assert [t for t, _ in part.dumps] == [text] == [t for t, _ in whole.dumps]
    assert part.warnings == whole.warnings == []
    assert any(note in n for n in part.notes), part.notes


def test_collect_node_with_a_name_that_is_no_service_name_reads_whole(tmp_path: Path) -> None:
    text = (FIXTURES / "modern-overall" / "dump.txt").read_text()
    runner = make_node(tmp_path, {"iptables-nft-save": text})
    part = collect_node(runner, "node1", only="ns/$(reboot)")
    assert [t for t, _ in part.dumps] == [text]
    assert not any("awk" in c for c in part.commands[1:])
