"""A live run resolves each node as its dumps arrive and keeps the result, not the text
(`Inputs.resolved`, `app.resolve_node`, `fanout.run_all(handle=...)`): the answer must be the one the
text path gives — the same ServiceMap JSON, problem lines, exit status and proxy-mode findings — and the
fan-out must hand results over as they come, without letting answers pile up. No root, no network
beyond loopback (the API emulator)."""

from __future__ import annotations

import json
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from kubectl_svcnet import proxymode
from kubectl_svcnet.app import RunResult, build_map, resolve_node, write_snapshot
from kubectl_svcnet.collect import files
from kubectl_svcnet.collect.fanout import NodeResult, run_all
from kubectl_svcnet.errors import ExitStatus
from kubectl_svcnet.objects import build_cluster
from kubectl_svcnet.render import render_paths, to_dict
from tests.test_proxymode import (
    CILIUM_DUMP,
    KUBELET_ONLY_DUMP,
    cilium_objects,
    kube_proxy_pod_on,
    proxy_findings,
    snapshot,
    stale_iptables_beside_nft,
)

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-cluster"


def as_live(inputs: files.Inputs, only: Optional[str] = None) -> files.Inputs:
    """The same inputs the way a live run leaves them: every readable node resolved, its text dropped."""
    out = files.Inputs(objects=inputs.objects, source_kind=dict(inputs.source_kind), errors=dict(inputs.errors),
                       warnings=list(inputs.warnings), node_info=dict(inputs.node_info))  # fmt: skip
    out.cluster = build_cluster(inputs.objects) if inputs.objects else None
    for node, dumps in inputs.nodes.items():
        out.nodes[node] = []
        if node not in inputs.errors:
            kind = inputs.source_kind.get(node, "file")
            out.resolved[node] = resolve_node(list(dumps), node, kind, only, out.cluster)
    return out


def answer(r: RunResult) -> Tuple[Any, ...]:
    """Everything a command prints from a RunResult: JSON, the trace's paths, stderr lines, exit status."""
    return json.dumps(to_dict(r.service_map), sort_keys=True), render_paths(r.service_map), r.problems, r.status


def both_ways(inputs: files.Inputs, only: Optional[str] = None, namespace: Optional[str] = None) -> RunResult:
    text = build_map(inputs, only=only, namespace=namespace)
    live = build_map(as_live(inputs, only), only=only, namespace=namespace)
    assert answer(live) == answer(text)
    assert proxy_findings(live.service_map) == proxy_findings(text.service_map)
    return live


# ----------------------------------------------------------------------------------------------
# The same answer both ways


@pytest.mark.parametrize("only", [None, "default/db-service", "default/web"])
def test_seed_cluster_resolved_as_it_arrives_answers_like_the_text(only: Optional[str]) -> None:
    r = both_ways(files.read_snapshot(str(SEED)), only=only)
    assert r.status == ExitStatus.OK and r.problems == [] and len(r.service_map.nodes) == 3
    both_ways(files.read_snapshot(str(SEED)), namespace="default")


def test_seed_dumps_without_objects() -> None:
    specs = [f"{n}={SEED / 'nodes' / n / 'iptables-nft-save.txt'}" for n in ("controlplane", "node01", "node02")]
    r = both_ways(files.read_from_files(specs))
    assert r.status == ExitStatus.OK and {n.name for n in r.service_map.nodes} == {"controlplane", "node01", "node02"}


def test_a_dump_that_is_not_one_is_its_nodes_error_once(tmp_path) -> None:
    d = snapshot(tmp_path, dumps={"node02": "this is not a dump\n"})
    inputs = files.read_snapshot(str(d))
    r = both_ways(inputs)
    (line,) = r.problems
    assert line.startswith("node node02: not a kube-proxy dump") and r.status == ExitStatus.INPUT
    assert {n.name: bool(n.error) for n in r.service_map.nodes} == {"controlplane": False, "node01": False,
                                                                     "node02": True}  # fmt: skip
    # With an unreachable node besides, the exit status is what it was (the last node's word).
    inputs.nodes["node03"] = []
    inputs.errors["node03"] = "connection refused"
    r = both_ways(inputs)
    assert r.problems == [line, "node node03: connection refused"] and r.status == ExitStatus.PARTIAL


def test_a_damaged_dump_read_as_far_as_it_goes(tmp_path) -> None:
    """An nft ruleset without kube-proxy's table: an ERROR finding, the node's error, exit status 4."""
    p = tmp_path / "n1.nft"
    p.write_text("table ip filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n")
    r = both_ways(files.read_from_files([f"n1={p}", f"n2={SEED / 'nodes' / 'node01' / 'iptables-nft-save.txt'}"]))
    assert r.status == ExitStatus.INPUT and len(r.problems) == 1 and r.problems[0].startswith("node n1: ")


def test_trace_of_a_service_nowhere_is_not_found_both_ways() -> None:
    from kubectl_svcnet.errors import NotFoundError

    inputs = files.read_snapshot(str(SEED))
    for i in (inputs, as_live(inputs, "default/nope")):
        with pytest.raises(NotFoundError):
            build_map(i, only="default/nope")


def test_resolved_for_another_service_is_refused() -> None:
    live = as_live(files.read_snapshot(str(SEED)), "default/web")
    with pytest.raises(ValueError, match="resolved for 'default/web'"):
        build_map(live, only="default/db-service")
    with pytest.raises(ValueError, match="dumps' text"):
        write_snapshot(live, "/nonexistent/never-written")


# ----------------------------------------------------------------------------------------------
# Proxy-mode findings: the same both ways (tests/test_proxymode.py's cases)


def test_node_without_kube_proxy_rules_is_none_both_ways(tmp_path) -> None:
    d = snapshot(tmp_path, add=cilium_objects(), drop_pods=[kube_proxy_pod_on("node02")], dumps={"node02": CILIUM_DUMP})
    smap = both_ways(files.read_snapshot(str(d))).service_map
    assert {n.name: n.proxy_mode for n in smap.nodes}["node02"] == "none"
    assert [f.code for f in proxy_findings(smap)] == ["kube-proxy-replaced"]

    d = snapshot(tmp_path, "b", drop_pods=[kube_proxy_pod_on("node02")], dumps={"node02": KUBELET_ONLY_DUMP})
    smap = both_ways(files.read_snapshot(str(d))).service_map
    assert [(f.code, f.node) for f in proxy_findings(smap)] == [("kube-proxy-not-running", "node02")]

    p = tmp_path / "node02.txt"
    p.write_text(CILIUM_DUMP)
    smap = both_ways(files.read_from_files([f"node02={p}"])).service_map
    assert [f.code for f in proxy_findings(smap)] == ["no-kube-proxy-rules"]


def test_proxy_mode_mismatch_both_ways(tmp_path) -> None:
    d = snapshot(tmp_path, mode="ipvs")
    for only in (None, "default/db-service"):
        found = proxy_findings(both_ways(files.read_snapshot(str(d)), only=only).service_map)
        assert [f.code for f in found] == ["proxy-mode-mismatch"] * 3


def test_stale_rules_of_another_mode_both_ways() -> None:
    nft_plane, cm, dumps = stale_iptables_beside_nft()
    text = proxymode.diagnose([nft_plane], proxymode.ProxyInputs([cm], {"n1": dumps}))
    scan = proxymode.scan_node(nft_plane, dumps)
    # (a plane without Services: every dump's markers are taken too, to tell "no kube-proxy" apart)
    assert scan == proxymode.NodeScan(True, frozenset({"iptables", "kube-proxy", "nftables"}), frozenset({"iptables"}))
    assert proxymode.diagnose([nft_plane], proxymode.ProxyInputs([cm], {}, {"n1": scan})) == text
    assert [f.code for f in text[1]] == ["stale-proxy-rules"]
    # A node without dumps: nothing to scan, nothing to say.
    assert proxymode.scan_node(nft_plane, []) == proxymode.NodeScan(False)


# ----------------------------------------------------------------------------------------------
# The fan-out hands each result over as it arrives


def test_handle_runs_in_the_calling_thread_as_results_come() -> None:
    seen: List[Tuple[str, str]] = []

    def handle(r: NodeResult) -> NodeResult:
        seen.append((r.node, threading.current_thread().name))
        return NodeResult(r.node, value=f"kept-{r.value}", seconds=r.seconds) if r.ok else r

    def work(n: str) -> str:
        if n == "bad":
            raise RuntimeError("boom")
        return n.upper()

    res = run_all(["a", "bad", "c"], work, parallel=2, handle=handle)
    assert [(n, r.value) for n, r in res.items()] == [("a", "kept-A"), ("bad", None), ("c", "kept-C")]
    assert "boom" in str(res["bad"].error)
    assert sorted(seen) == [(n, threading.current_thread().name) for n in ("a", "bad", "c")]


def test_the_clients_own_work_does_not_count_against_the_deadline() -> None:
    """Resolving takes 0.4 s per node here, the deadline is 0.5 s: every node still answers."""

    def handle(r: NodeResult) -> NodeResult:
        time.sleep(0.4)
        return r

    res = run_all([f"n{i}" for i in range(4)], lambda n: n, parallel=2, timeout=0.5, handle=handle)
    assert all(r.ok for r in res.values()), {n: r.error for n, r in res.items()}
    # A node that does not answer still fails at the deadline.
    stop = threading.Event()
    try:
        res = run_all(["ok", "hang"], lambda n: n if n == "ok" else stop.wait(10), parallel=2, timeout=0.5,
                      handle=handle)  # fmt: skip
    finally:
        stop.set()
    assert res["ok"].ok and not res["hang"].ok and "no answer within" in str(res["hang"].error)


def test_answers_do_not_pile_up_beyond_parallel() -> None:
    """While the calling thread is busy with one result, at most `parallel` nodes are started and not
    yet handled: the node count does not decide how many answers are held."""
    lock = threading.Lock()
    state: Dict[str, int] = {"open": 0, "most": 0}

    def work(n: str) -> str:
        with lock:
            state["open"] += 1
            state["most"] = max(state["most"], state["open"])
        return n

    def handle(r: NodeResult) -> NodeResult:
        time.sleep(0.02)  # slower than the nodes
        with lock:
            state["open"] -= 1
        return r

    res = run_all([f"n{i}" for i in range(40)], work, parallel=3, timeout=30, handle=handle)
    assert len(res) == 40 and all(r.ok for r in res.values())
    assert state["most"] <= 3


def test_a_handled_answer_is_not_pinned_by_its_worker() -> None:
    """Once handled (its text dropped), a node's answer is gone, though the worker that read it goes
    on to the next node."""

    class Answer:
        pass

    refs: List[Any] = []
    seen_alive: List[bool] = []

    def work(n: str) -> Any:
        if n == "a":
            answer = Answer()
            refs.append(weakref.ref(answer))
            return answer
        if n == "c":  # the worker that read "a" (b holds the other slot until c is started)
            seen_alive.append(refs[0]() is not None)
        else:
            time.sleep(0.3)
        return n

    res = run_all(["a", "b", "c"], work, parallel=2, handle=lambda r: NodeResult(r.node, value="kept"))
    assert [r.value for r in res.values()] == ["kept"] * 3 and seen_alive == [False]


# ----------------------------------------------------------------------------------------------
# The live path end to end (debug pods on the API emulator): resolved as they arrive, no text kept


@pytest.fixture
def emu(tmp_path, monkeypatch):
    from tests.apiemu import ApiEmulator
    from tests.test_debugpod import node_handler

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path))
    with ApiEmulator.from_dir(SEED, tmp_path / "emu") as e:
        e.exec_handler = node_handler
        yield e


@pytest.mark.parametrize("service", [None, "db-service"])
def test_live_run_resolves_each_node_and_keeps_no_text(emu, service: Optional[str]) -> None:
    from kubectl_svcnet.collect.live import LiveOptions, read_live

    opts = LiveOptions(kubeconfig=str(emu.kubeconfig), via="pod", node_timeout=60, all_namespaces=service is None)
    text, ns = read_live(opts, service=service)
    live, _ = read_live(opts, service=service, resolve=True)
    assert all(text.nodes[n] for n in ("controlplane", "node01", "node02"))
    assert live.nodes == {"controlplane": [], "node01": [], "node02": []}
    assert sorted(live.resolved) == sorted(live.nodes)
    assert live.cluster is not None and live.errors == text.errors == {}
    only = f"{ns}/{service}" if service else None
    assert answer(build_map(live, only=only)) == answer(build_map(text, only=only))
