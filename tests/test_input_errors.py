"""Inputs that cannot be read, as a kubectl user meets them: a node whose dump is empty or not one is
`unknown` with its error (not a node "without kube-proxy"), an empty dump says it is empty, a Service
not found names where it was looked for and the Services of a close name, a snapshot node folder
without dumps is an unreadable input (exit status 4), and a kubeconfig that is a directory or binary
is one clear line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kubectl_svcnet import proxymode
from kubectl_svcnet.app import build_map, similar_services
from kubectl_svcnet.collect import api, files
from kubectl_svcnet.dataplane import read_node
from kubectl_svcnet.errors import DumpParseError, ExitStatus, InputError, NotFoundError, UsageError
from kubectl_svcnet.model import NodeDataPlane, NodeInfo
from tests.clirun import Run
from tests.clirun import svcnet as run_svcnet

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"
FIXTURES = ROOT / "tests" / "fixtures" / "kube-proxy"
OVERALL = FIXTURES / "iptables" / "modern-overall" / "dump.txt"  # Services ns1/svc1 … ns6/svc6
NFT_TEXT = FIXTURES / "nftables" / "overall" / "dump.txt"
NFT_JSON = FIXTURES / "nftables" / "overall" / "dump.json"
NO_KUBE_PROXY = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"  # read, but none of its rules
EMPTY_SAYS = "not a kube-proxy dump: it is empty (iptables-save prints nothing to stdout when not run as root)"


def svcnet(capsys, *args: str) -> Run:
    """`kubectl svcnet ARGS` in-process (tests.clirun), and never a traceback."""
    r = run_svcnet(capsys, *args)
    assert "Traceback" not in r.err
    return r


def seed_copy(tmp_path: Path) -> Path:
    d = tmp_path / "snap"
    shutil.copytree(SEED, d)
    return d


# -- 1. a node whose dump could not be read: proxy mode unknown, its error, no proxy finding ----------------
@pytest.mark.parametrize("content", ["", "\n  \n", "this is not a dump\n"])
def test_an_unreadable_dump_is_unknown_in_nodes(capsys, tmp_path, content):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    r = svcnet(capsys, "nodes", "--from-file", str(bad), "--from-file", f"good={OVERALL}", "-o", "json")
    assert r.code == int(ExitStatus.INPUT)
    rows = {n["name"]: n for n in json.loads(r.out)["items"]}
    assert rows["bad"]["proxyMode"] == "unknown" and rows["bad"]["error"].startswith("not a kube-proxy dump")
    assert rows["good"]["proxyMode"] == "iptables" and rows["good"]["error"] is None
    table = svcnet(capsys, "nodes", "--from-file", str(bad), "--no-headers").out.split()
    assert table[:3] == ["bad", "file", "unknown"]


@pytest.mark.parametrize("content", ["", "this is not a dump\n"])
def test_an_unreadable_dump_gets_its_error_not_a_no_kube_proxy_finding(capsys, tmp_path, content):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    r = svcnet(capsys, "map", "--from-file", str(bad), "--from-file", f"good={OVERALL}", "-o", "json")
    assert r.code == int(ExitStatus.INPUT)
    doc = json.loads(r.out)
    assert [f for f in doc["findings"] if f["node"] == "bad"] == []
    assert {n["name"]: n["proxyMode"] for n in doc["nodes"]} == {"bad": "unknown", "good": "iptables"}
    assert r.errors() == [f"error: node bad: {doc['nodes'][0]['error']}"]
    # With the cluster's objects too (a snapshot): no "kube-proxy not running there" either.
    snap = seed_copy(tmp_path)
    (snap / "nodes" / "node01" / "iptables-nft-save.txt").write_text(content)
    doc = json.loads(svcnet(capsys, "map", "--snapshot", str(snap), "-o", "json").out)
    assert [f["code"] for f in doc["findings"] if f["node"] == "node01"] == []
    assert next(n for n in doc["nodes"] if n["name"] == "node01")["proxyMode"] == "unknown"


def test_a_dump_without_kube_proxy_rules_is_still_none_with_its_finding(capsys, tmp_path):
    """What was read and holds none of kube-proxy's rules is not the same as what could not be read."""
    p = tmp_path / "n1.txt"
    p.write_text(NO_KUBE_PROXY)
    r = svcnet(capsys, "map", "--from-file", str(p), "-o", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["nodes"][0]["proxyMode"] == "none" and doc["nodes"][0]["error"] is None
    assert [f["code"] for f in doc["findings"]] == ["no-kube-proxy-rules"]


def test_diagnose_leaves_a_node_that_was_never_read_alone():
    """Also when the diagnosis is given the dumps' text rather than a scan (ProxyInputs.dumps)."""
    plane = NodeDataPlane(NodeInfo("n1", error="not a kube-proxy dump (x)"))
    planes, found = proxymode.diagnose([plane], proxymode.ProxyInputs([], {"n1": [("garbage\n", "x")]}))
    assert planes == [plane] and planes[0].info.proxy_mode == "unknown" and found == []


# -- 2. an empty dump says it is empty ----------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n", " \t\n\n"])
def test_read_node_says_an_empty_dump_is_empty(text):
    with pytest.raises(DumpParseError) as e:
        read_node([(OVERALL.read_text(), "v4.txt"), (text, "v6.txt")], "n1")
    assert e.value.one_line() == f"{EMPTY_SAYS} (v6.txt)" and e.value.line == 0


def test_read_node_names_the_line_of_a_dump_that_is_not_one():
    with pytest.raises(DumpParseError) as e:
        read_node([("hello\n", "x.txt")], "n1")
    assert e.value.message.startswith("not a kube-proxy dump: expected iptables-save") and e.value.where == "x.txt:1"


def test_an_empty_file_is_its_nodes_error_saying_so(capsys, tmp_path):
    empty = tmp_path / "node1.txt"
    empty.write_text("")
    r = svcnet(capsys, "trace", "svc1", "-n", "ns1", "--from-file", str(empty), "--from-file", f"n2={OVERALL}")
    assert r.code == int(ExitStatus.INPUT)
    assert r.errors() == [f"error: node node1: {EMPTY_SAYS} ({empty})"]
    assert "DNAT" in r.out  # the other node still answers


# -- 3. a Service that is not there ---------------------------------------------------------------------
def many_nodes(n: int) -> files.Inputs:
    return files.read_from_files([f"n{i}={OVERALL}" for i in range(n)])


def test_not_found_names_up_to_five_nodes_then_counts_them():
    with pytest.raises(NotFoundError) as e:
        build_map(many_nodes(5), only="default/nope")
    assert e.value.where == "n0, n1, n2, n3, n4"
    with pytest.raises(NotFoundError) as e:
        build_map(many_nodes(6), only="default/nope")
    assert e.value.one_line() == 'service "nope" not found in namespace "default" (6 nodes)'


@pytest.mark.parametrize(
    "args, hint",
    [
        (["db-servce"], "did you mean default/db-service?"),  # a typo
        (["db-service", "-n", "kube-system"], "did you mean default/db-service?"),  # the wrong namespace
        (["kube-dns"], "did you mean kube-system/kube-dns?"),  # no -n
        (["web-l"], "did you mean default/web-lb, default/web?"),  # closest first
        (["db"], "did you mean default/db-service?"),  # the start of a name
    ],
)
def test_not_found_in_a_snapshot_suggests_close_services(capsys, args, hint):
    r = svcnet(capsys, "trace", *args, "--snapshot", str(SEED))
    assert r.code == int(ExitStatus.ERROR) and r.out == ""
    assert len(r.errors()) == 1 and "not found in namespace" in r.errors()[0]
    assert r.hint() == f"hint: {hint} (give NAMESPACE/NAME, or -n NAMESPACE)"


@pytest.mark.parametrize("dump", [OVERALL, NFT_TEXT, NFT_JSON], ids=["iptables", "nft", "nft-json"])
def test_not_found_in_dumps_suggests_the_services_their_rules_name(capsys, dump):
    """Without API objects, the Services are those kube-proxy's rule comments name (`ns/name:port`)."""
    r = svcnet(capsys, "trace", "svc2", "--from-file", f"node1={dump}")
    assert r.errors() == ['error: service "svc2" not found in namespace "default" (node1)']
    assert r.hint() == "hint: did you mean ns2/svc2? (give NAMESPACE/NAME, or -n NAMESPACE)"


def test_not_found_without_anything_close_keeps_the_plain_hint(capsys):
    r = svcnet(capsys, "trace", "zzzzzz", "--snapshot", str(SEED))
    assert r.hint() == "hint: check -n/--namespace, or list services with `kubectl svcnet map`"


def test_similar_services_ranks_the_same_name_then_close_names_in_the_namespace_first():
    names = ["a/web", "b/web", "c/web", "d/web", "a/webb", "z/wbe"]
    assert similar_services("x/web", names) == ["a/web", "b/web", "c/web"]  # same name: only those, at most 3
    assert similar_services("z/webx", ["a/webb", "z/web", "q/nothing"]) == ["z/web", "a/webb"]
    assert similar_services("a/web", ["a/web"]) == []  # never itself


def test_a_headless_service_says_so_instead_of_not_found(capsys, tmp_path):
    snap = seed_copy(tmp_path)
    extra = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "db-headless"},
         "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "ext"},
         "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
    ]  # fmt: skip
    (snap / "more-services.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": extra}))
    r = svcnet(capsys, "trace", "db-headless", "--snapshot", str(snap))
    assert r.code == int(ExitStatus.ERROR)
    assert r.errors() == [f'error: service "db-headless" in namespace "default" is headless (clusterIP: None): '
                          f"kube-proxy writes no rules for it ({snap})"]  # fmt: skip
    r = svcnet(capsys, "trace", "ext", "--snapshot", str(snap))
    assert "is an ExternalName Service (db.example.com): kube-proxy writes no rules" in r.errors()[0]
    assert r.hint() == "hint: its DNS name resolves to a CNAME for db.example.com, not through kube-proxy"


# -- 3b. exit status: a snapshot node folder without dumps is an unreadable input -------------------------
def test_a_snapshot_node_folder_without_dumps_is_exit_status_4(capsys, tmp_path):
    snap = seed_copy(tmp_path)
    (snap / "nodes" / "node03").mkdir()
    for command in ("map", "nodes"):
        r = svcnet(capsys, command, "--snapshot", str(snap))
        assert r.code == int(ExitStatus.INPUT), (command, r.err)
        assert r.errors() == [f"error: node node03: no dumps in {snap / 'nodes' / 'node03'}"]
        assert "node01" in r.out  # the rest is printed
    # ... as an empty dump is (the same input, one file in it)
    (snap / "nodes" / "node03" / "iptables-save.txt").write_text("")
    assert svcnet(capsys, "map", "--snapshot", str(snap)).code == int(ExitStatus.INPUT)


def test_a_node_that_did_not_answer_is_still_exit_status_3():
    inputs = files.read_snapshot(str(SEED))
    inputs.nodes["node03"] = []
    inputs.errors["node03"] = "connection refused"
    inputs.source_kind["node03"] = "ssh"
    r = build_map(inputs)
    assert r.status == ExitStatus.PARTIAL and r.problems == ["node node03: connection refused"]


# -- 4. kubeconfig: a directory, a binary file ------------------------------------------------------------
def test_a_kubeconfig_directory_says_it_is_a_directory(capsys, tmp_path):
    with pytest.raises(UsageError) as e:
        api.kubeconfig_files(str(tmp_path))
    assert e.value.one_line() == f"kubeconfig {tmp_path} is a directory, not a kubeconfig file (--kubeconfig)"
    r = svcnet(capsys, "map", "--kubeconfig", str(tmp_path))
    assert r.code == int(ExitStatus.USAGE) and r.out == ""
    assert r.errors() == [f"error: kubeconfig {tmp_path} is a directory, not a kubeconfig file (--kubeconfig)"]
    with pytest.raises(UsageError, match="does not exist"):
        api.kubeconfig_files(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "data, line",
    [(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 1), (b"apiVersion: v1\nkind: Config\n\xff\xfe\x00", 3)],
    ids=["gzip", "binary-after-text"],
)
def test_a_binary_kubeconfig_is_one_line_naming_the_file(capsys, tmp_path, data, line):
    kc = tmp_path / "config"
    kc.write_bytes(data)
    want = f"error: invalid kubeconfig: not text (invalid UTF-8) ({kc}:{line})"
    with pytest.raises(InputError) as e:
        api.load_kubeconfig([str(kc)])
    assert f"error: {e.value.one_line()}" == want
    r = svcnet(capsys, "map", "--kubeconfig", str(kc))
    assert r.code == int(ExitStatus.INPUT) and r.errors() == [want]
    assert "codec" not in r.err and "decode byte" not in r.err


def test_broken_kubeconfig_yaml_names_its_line(tmp_path):
    kc = tmp_path / "config"
    kc.write_text("apiVersion: v1\nclusters: [oops\n")
    with pytest.raises(InputError) as e:
        api.load_kubeconfig([str(kc)])
    assert e.value.message.startswith("invalid kubeconfig: ") and e.value.where == f"{kc}:3"
    assert "\n" not in e.value.one_line()
