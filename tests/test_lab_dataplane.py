"""Real packets through real kube-proxy rules must go where kubectl-svcnet says they go.

For every fixture dump, the tool (`python -m kubectl_svcnet map --from-file labnode=DUMP -o json`) says
per frontend and client class where new connections go. A lab (tests/lab/) loads the same dump into
a node namespace with a namespace per pod, and opens new TCP connections from the node itself, from
a pod in the pod CIDR and from an external client. Each probe must agree with the route the tool
reports for that client: forward routes connect, only to the reported backends, in the reported
shares (or all to one backend with ClientIP affinity); reject routes are refused; drop routes time out.

Needs root, iproute2, iptables-nft and nft (else skipped); marked `lab` (`pytest -m "not lab"` skips).
SVCNET_LAB_ORACLE=expected swaps the CLI for predictions written from expected.json (development aid
only; see tests/lab/oracle.py).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List

import pytest

from tests.lab import Lab, LabSpec, ProbeTarget, lab_skip_reason, list_netns, reap_stale
from tests.lab.host import CommandError, LocalHost
from tests.lab.oracle import LAB_NODE, ROOT, node_info, service_map_for
from tests.lab.plan import make_plan, run_plan
from tests.lab.rules import IPTABLES, detect_format

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).parent / "fixtures" / "kube-proxy"
DUMPS = sorted(FIXTURES.glob("iptables/*/dump.txt")) + sorted(FIXTURES.glob("nftables/*/dump.txt"))
NODEPORT_FIXTURE = FIXTURES / "iptables" / "xlb-nodeport-cluster"
MY_PREFIX = f"svl{os.getpid()}-"


def _require(*need: str) -> None:
    reason = lab_skip_reason(need)
    if reason:
        pytest.skip(reason)


def _netns() -> List[str]:
    return list_netns(LocalHost())


@pytest.fixture(autouse=True)
def _no_leftovers():
    """After every test: none of this run's lab namespaces may remain."""
    yield
    if lab_skip_reason(("ip",)) is None:
        left = [ns for ns in _netns() if ns.startswith(MY_PREFIX)]
        assert not left, f"lab namespaces left behind: {left}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The tool against the packets.


@pytest.mark.parametrize("dump", DUMPS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_packets_go_where_the_tool_says(dump: Path) -> None:
    rules = dump.read_text()
    mode = detect_format(rules)
    _require("ip", "iptables" if mode == IPTABLES else "nft")
    fixture = dump.parent
    expected = json.loads((fixture / "expected.json").read_text())

    service_map = service_map_for(fixture, dump)  # the real CLI: a failure here fails the test
    info = node_info(service_map, LAB_NODE)
    assert info["proxyMode"] == mode, f"tool read the dump as {info['proxyMode']}, it is {mode}"
    plan = make_plan(service_map, expected, rules, mode, LAB_NODE)
    assert any(c.target for c in plan.cases), "the tool reported no frontend the lab can probe"

    started = time.monotonic()
    with Lab(plan.spec) as lab:
        outcome = run_plan(lab, plan)
    took = time.monotonic() - started

    report = [f"{dump.relative_to(FIXTURES)}: {len(outcome)} probes in {took:.1f}s"]
    failures = []
    for case, res, problems in outcome:
        verdict = case.route["verdict"] if case.route else "-"
        saw = res.summary() if res else "-"
        line = f"  {'FAIL' if problems else 'ok  '} {case.label}: tool says {verdict}; saw {saw}"
        report.append(line)
        if problems:
            failures.append(line + "".join(f"\n        {p}" for p in problems))
    report += [f"  note: {n}" for n in plan.notes]
    print("\n".join(report))
    assert not failures, f"{len(failures)} of {len(outcome)} probes disagree with the tool:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# The lab itself: it must leave nothing behind.


def _small_spec() -> LabSpec:
    return LabSpec(
        rules=(NODEPORT_FIXTURE / "dump.txt").read_text(),
        pods={"10.180.0.1": {80}},
        frontend_ips=["10.20.30.41"],
        pod_client_ip="10.0.0.200",
    )


def _assert_gone(namespaces: List[str], pids: List[int]) -> None:
    present = set(_netns())
    assert not present & set(namespaces), f"namespaces still there: {sorted(present & set(namespaces))}"
    alive = [p for p in pids if _alive(p)]
    assert not alive, f"processes still alive: {alive}"


def test_lab_works_and_cleans_up_on_normal_exit() -> None:
    _require("ip", "iptables")
    with Lab(_small_spec()) as lab:
        namespaces, pids = lab.namespaces, lab.pids
        assert set(namespaces) <= set(_netns())
        assert pids and all(_alive(p) for p in pids)
        assert all(ns.startswith(MY_PREFIX) for ns in namespaces)
        res = lab.probe(lab.pod_client_ns, [ProbeTarget("a", "10.20.30.41", 80, count=10)])["a"]
        assert res.answers == {"10.180.0.1:80": 10}, res.summary()
    _assert_gone(namespaces, pids)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_lab_cleans_up_when_the_body_raises(exc: type) -> None:
    _require("ip", "iptables")
    seen = {}
    with pytest.raises(exc):
        with Lab(_small_spec()) as lab:
            seen["ns"], seen["pids"] = lab.namespaces, lab.pids
            raise exc("boom")
    assert seen["ns"] and seen["pids"]
    _assert_gone(seen["ns"], seen["pids"])


def test_lab_cleans_up_when_the_build_fails() -> None:
    _require("ip", "iptables")
    spec = _small_spec()
    spec.rules = "*nat\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n"
    lab = Lab(spec)
    with pytest.raises(CommandError):
        with lab:
            pass
    assert lab.namespaces, "the build should have created namespaces before loading rules"
    _assert_gone(lab.namespaces, lab.pids)


def test_lab_finalizer_cleans_up_an_unclosed_lab() -> None:
    _require("ip", "iptables")
    lab = Lab(_small_spec()).__enter__()
    namespaces, pids = lab.namespaces, lab.pids
    del lab
    gc.collect()
    _assert_gone(namespaces, pids)


def test_lab_cleans_up_on_sigint_in_a_child_process() -> None:
    """A real ^C (SIGINT) to a process inside `with Lab(...)`: KeyboardInterrupt unwinds it."""
    _require("ip", "iptables")
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from tests.lab import Lab, LabSpec
        spec = LabSpec(rules=open({str(NODEPORT_FIXTURE / "dump.txt")!r}).read(),
                       pods={{"10.180.0.1": {{80}}}}, frontend_ips=["10.20.30.41"])
        with Lab(spec) as lab:
            print(json.dumps({{"ns": lab.namespaces, "pids": lab.pids}}), flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline()
        assert line, f"child failed: {child.stderr.read()}"
        made = json.loads(line)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        # The child is gone either way: make sure its namespaces are too, then judge.
        leftover = reap_stale()
    assert child.returncode != 0 and "KeyboardInterrupt" in child.stderr.read()
    assert not leftover, f"the interrupted child left namespaces behind: {leftover}"
    _assert_gone(made["ns"], made["pids"])


def test_reap_stale_removes_namespaces_of_dead_runs() -> None:
    _require("ip")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not _alive(dead.pid)
    name = f"svl{dead.pid}-1-node"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in reap_stale()
        assert name not in _netns()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
