"""The debug-pod transport (`--via pod`, collect/debugpod.py) against the API emulator: the pod it makes,
its lifecycle (create, wait for Running, exec over the websocket, delete), and above all that the pod
is deleted whatever happens — a command failing, collect raising, Ctrl-C, SIGTERM, a pod that never
starts. Exec answers here are canned by the test (tests/test_lab_debugpod.py runs the real commands
in real node namespaces). Loopback only, no root.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kubectl_svcnet.collect import api
from kubectl_svcnet.collect.debugpod import (
    CONTAINER,
    DEFAULT_IMAGE,
    MANAGED_BY,
    PodOptions,
    PodRunner,
    PodRunnerFactory,
    pod_manifest,
    pod_name,
    sigterm_raises,
)
from kubectl_svcnet.collect.fanout import collect_nodes
from kubectl_svcnet.collect.live import LiveOptions, read_live
from kubectl_svcnet.collect.runner import CommandFailed
from kubectl_svcnet.errors import ApiError, NodeAccessError
from tests.apiemu import ApiEmulator, isolate_client_env
from tests.apiemu.admission import pod_security
from tests.apiemu.kubelet import exec_status

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"
NODES = ("controlplane", "node01", "node02")
NAME = re.compile(r"^svcnet-[0-9a-f]{8}-[0-9a-f]{6}$")
PODS = "/api/v1/namespaces/default/pods"
BASELINE = {"pod-security.kubernetes.io/enforce": "baseline"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    isolate_client_env(monkeypatch, tmp_path)


@pytest.fixture
def emu(tmp_path):
    with ApiEmulator.from_dir(SEED, tmp_path / "emu") as e:
        yield e


@pytest.fixture
def session(emu):
    with api.connect(kubeconfig=str(emu.kubeconfig)) as s:
        yield s


def node_handler(call):
    """A canned node: the probe finds iptables-nft-save (no gzip: plain text), which prints the seed's dump."""
    argv = call.argv
    if argv[:2] == ["sh", "-c"] and "have=" in argv[2]:
        return b"uid=0\nhave=iptables-nft-save\n", b"", 0
    if argv == ["iptables-nft-save"]:
        return (SEED / "nodes" / call.node / "iptables-nft-save.txt").read_bytes(), b"", 0
    return b"", f"{argv[0]}: not found\n".encode(), 127


def debug_pods(emu):
    return [p for p in emu.objects("Pod") if (p["metadata"].get("labels") or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]]


def created_and_deleted(emu):
    """(names POSTed and admitted, names DELETEd)."""
    created = {r.body["metadata"]["name"] for r in emu.requests_to(PODS, "POST") if r.status == 201}
    deleted = {r.path.rsplit("/", 1)[1] for r in emu.requests if r.method == "DELETE" and r.path.startswith(PODS)}
    return created, deleted


def cli(emu, *args, timeout=60):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(emu.workdir), "PYTHONPATH": str(ROOT),
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}  # fmt: skip
    argv = [sys.executable, "-m", "kubectl_svcnet", *args, "--kubeconfig", str(emu.kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)


def errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- the pod ---------------------------------------------------------------------------------------------


def test_the_pod_is_what_reading_rules_needs_and_no_more():
    name = pod_name("node01")
    assert NAME.match(name) and name != pod_name("node01")  # unique per run
    assert name.split("-")[1] == pod_name("node01").split("-")[1]  # the node part is stable
    doc = pod_manifest(name, "node01", "default", PodOptions(deadline_seconds=600))
    meta, spec = doc["metadata"], doc["spec"]
    assert (meta["name"], meta["namespace"], meta["labels"]) == (name, "default", {MANAGED_BY[0]: MANAGED_BY[1]})
    assert (spec["nodeName"], spec["hostNetwork"], spec["hostPID"], spec["restartPolicy"]) == (
        "node01", True, False, "Never")  # fmt: skip
    assert spec["activeDeadlineSeconds"] == 600 and spec["tolerations"] == [{"operator": "Exists"}]
    assert "volumes" not in spec and spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert (c["name"], c["image"], c["command"]) == (CONTAINER, DEFAULT_IMAGE, ["sleep", "600"])
    assert c["securityContext"] == {"privileged": True}


def test_exec_status_channel_is_read_as_kube_apiserver_writes_it():
    assert api._exec_status(json.dumps(exec_status(0, ["true"]))) == (0, "")
    assert api._exec_status(json.dumps(exec_status(3, ["sh", "-c", "exit 3"])).encode()) == (3, "")
    code, message = api._exec_status(json.dumps(exec_status(0, ["nope"], error="exec: \"nope\": executable file "
                                                            "not found in $PATH: unknown")))  # fmt: skip
    assert code == 127 and "executable file not found" in message


# -- lifecycle -------------------------------------------------------------------------------------------


def test_create_wait_exec_delete(emu, session):
    seen = []

    def handler(call):
        seen.append((call.node, call.container, call.argv, call.protocol))
        return b"\x1f\x8b binary \xff", b"a warning\n", 0

    emu.exec_handler = handler
    emu.pod_start_delay = 0.6  # Pending first: the runner waits
    with PodRunner("node01", session, "default") as r:
        tricky = ["printf", "%s", "$(id); rm -rf / 'x'"]  # words travel as argv: no shell sees them
        res = r.run(tricky)
        assert (res.stdout, res.stderr, res.exit_code) == (b"\x1f\x8b binary \xff", "a warning\n", 0)
        (pod,) = debug_pods(emu)
        assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"] == "node01"
    assert seen == [("node01", CONTAINER, tricky, "v5.channel.k8s.io")]
    assert debug_pods(emu) == []
    methods = [(q.method, q.path.rsplit("/", 1)[-1]) for q in emu.requests if q.path.startswith(PODS)]
    name = r.pod
    assert methods[0] == ("POST", "pods") and methods[-1] == ("DELETE", name)
    assert ("GET", name) in methods[1:-2] and methods[-2] == ("GET", "exec")
    (delete,) = [q for q in emu.requests if q.method == "DELETE"]
    assert delete.q("gracePeriodSeconds") == "0"


def test_a_v4_only_server_and_exit_codes(emu, session):
    emu.exec_protocols = ("v4.channel.k8s.io",)
    emu.exec_handler = lambda call: (b"", b"iptables: permission denied\n", 4)
    with PodRunner("node02", session, "default") as r:
        res = r.run(["iptables-save"], check=False)
        assert (res.exit_code, res.stderr) == (4, "iptables: permission denied\n")
        with pytest.raises(CommandFailed) as e:
            r.run(["iptables-save"])
        assert e.value.exit_code == 4 and e.value.where == "node02" and "permission denied" in e.value.message
    assert {c.protocol for c in emu.execs} == {"v4.channel.k8s.io"}
    assert debug_pods(emu) == []


def test_a_pod_that_never_runs_times_out_and_is_deleted(emu, session):
    emu.pod_start_delay = None  # the image pull never ends
    r = PodRunner("node01", session, "default", PodOptions(start_timeout=1.0))
    t0 = time.monotonic()
    with pytest.raises(NodeAccessError) as e:
        r.run(["true"])
    assert time.monotonic() - t0 < 5
    assert re.fullmatch(r'timeout: pod "svcnet-\w+-\w+" in namespace "default" is still Pending after 1s, '
                        r"container svcnet: ContainerCreating", e.value.message), e.value.message  # fmt: skip
    assert len(debug_pods(emu)) == 1  # until close
    r.close()
    r.close()  # idempotent
    assert debug_pods(emu) == [] and len([q for q in emu.requests if q.method == "DELETE"]) == 1


def test_an_image_that_cannot_be_pulled_fails_at_once(emu, session):
    emu.unpullable["example.com/nope:1"] = 'failed to pull image "example.com/nope:1": not found'
    r = PodRunner("node01", session, "default", PodOptions(image="example.com/nope:1", start_timeout=60))
    t0 = time.monotonic()
    with pytest.raises(NodeAccessError) as e:
        with r:
            r.run(["true"])
    assert time.monotonic() - t0 < 5
    assert e.value.message == (f'pod "{r.pod}" in namespace "default" cannot run: container svcnet: ErrImagePull: '
                               'failed to pull image "example.com/nope:1": not found')  # fmt: skip
    assert debug_pods(emu) == []


def test_exec_into_a_pod_that_is_not_running_is_the_servers_refusal(emu, session):
    """A refused upgrade reaches the client as the websocket library's handshake error: read as a Status."""
    emu.pod_start_delay = None
    api.create_pod(session, "default", pod_manifest("svcnet-0-0", "node01", "default", PodOptions()))
    with pytest.raises(ApiError) as e:
        api.exec_pod(session, "default", "svcnet-0-0", CONTAINER, ["true"], 10, 1 << 20)
    assert e.value.message == 'bad request (400): unable to upgrade connection: container not found ("svcnet")'
    assert api.delete_pod(session, "default", "svcnet-0-0") and not api.delete_pod(session, "default", "svcnet-0-0")


def test_exec_refused_by_rbac_is_one_line_and_the_pod_is_deleted(emu, session):
    emu.forbid("pods/exec", "default", "get")
    with PodRunner("node01", session, "default") as r:
        with pytest.raises(NodeAccessError) as e:
            r.run(["true"])
    assert e.value.message == 'forbidden: cannot get pods/exec "' + r.pod + '" in namespace "default"'
    assert "kubectl auth can-i get pods/exec -n default" in e.value.hint
    assert debug_pods(emu) == []


def test_collect_raising_still_deletes_the_pod(emu, session):
    emu.exec_handler = node_handler

    def collect(runner, node):
        runner.run(["iptables-nft-save"])
        if node == "node01":
            raise RuntimeError("a bug after the first command")
        if node == "node02":
            raise KeyboardInterrupt  # in a worker thread: that node's error, the pod still goes
        return "ok"

    factory = PodRunnerFactory(session)
    try:
        results = collect_nodes({n: "" for n in NODES}, factory, collect=collect, timeout=30)
    finally:
        factory.close()
    assert results["controlplane"].value == "ok"
    assert "RuntimeError: a bug after the first command" in results["node01"].error.message
    assert "KeyboardInterrupt" in results["node02"].error.message
    created, deleted = created_and_deleted(emu)
    assert len(created) == 3 and created == deleted and debug_pods(emu) == []
    assert factory.leftovers == []


def test_ctrl_c_deletes_every_pod(emu):
    """A real SIGINT while the nodes' commands run: KeyboardInterrupt in the main thread, and every pod
    is deleted before it leaves read_live (the running execs are cut off)."""
    release = threading.Event()
    started = []

    def handler(call):
        started.append(call.node)
        if len(started) == len(NODES):
            os.kill(os.getpid(), signal.SIGINT)
        release.wait(20)
        return b"", b"", 1

    emu.exec_handler = handler
    opts = LiveOptions(kubeconfig=str(emu.kubeconfig), via="pod", node_timeout=30)
    try:
        with pytest.raises(KeyboardInterrupt):
            read_live(opts, service="db-service")
    finally:
        release.set()
    created, deleted = created_and_deleted(emu)
    assert len(created) == 3 and created == deleted and debug_pods(emu) == []


def test_sigterm_raises_and_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_to_the_cli_deletes_every_pod(emu):
    release = threading.Event()
    started = []

    def handler(call):
        started.append(call.node)
        release.wait(30)
        return b"", b"", 1

    emu.exec_handler = handler
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(emu.workdir), "PYTHONPATH": str(ROOT),
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}  # fmt: skip
    argv = [sys.executable, "-m", "kubectl_svcnet", "trace", "db-service", "--via", "pod", "--kubeconfig",
            str(emu.kubeconfig)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT), env=env)
    try:
        deadline = time.monotonic() + 30
        while len(started) < len(NODES) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(started) == len(NODES), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and errors(err) == ["error: interrupted"], err
    created, deleted = created_and_deleted(emu)
    assert len(created) == 3 and created == deleted and debug_pods(emu) == []


# -- PodSecurity -----------------------------------------------------------------------------------------


def test_pod_security_refusal_is_one_line_per_node_and_exit_3(emu):
    emu.label_namespace("default", BASELINE)
    r = cli(emu, "trace", "db-service", "--via", "pod", "-o", "json")
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert {(n["name"], n["source"]) for n in doc["nodes"]} == {(n, "pod") for n in NODES}
    lines = errors(r.stderr)
    assert len(lines) == 3
    for line, node in zip(lines, NODES):
        assert re.fullmatch(
            rf'error: node {node}: forbidden: pods "svcnet-[0-9a-f]{{8}}-[0-9a-f]{{6}}" is forbidden: violates '
            r'PodSecurity "baseline:latest": host namespaces \(hostNetwork=true\), privileged \(container "svcnet" '
            r'must not set securityContext.privileged=true\) \(namespace "default"\); use --pod-namespace with a '
            r"privileged namespace",
            line,
        ), line
    assert debug_pods(emu) == [] and not [q for q in emu.requests if q.method == "DELETE"]


def test_pod_security_refusing_one_node_leaves_the_others_answers(emu):
    """An admission step refuses node02's pod only: node02 is one error line, controlplane and node01 answer
    through their pods (canned dumps), and both of those pods are deleted."""
    emu.exec_handler = node_handler
    emu.pod_admission = lambda doc, ns, name: (
        pod_security(doc, name, BASELINE) if doc["spec"]["nodeName"] == "node02" else None
    )
    r = cli(emu, "trace", "db-service", "--via", "pod", "-o", "json")
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert {n["source"] for n in nodes.values()} == {"pod"}
    assert nodes["controlplane"]["error"] is None and nodes["node01"]["error"] is None
    assert 'violates PodSecurity "baseline:latest"' in nodes["node02"]["error"]
    assert nodes["node02"]["error"].endswith('(namespace "default"); use --pod-namespace with a privileged namespace')
    assert errors(r.stderr) == [f"error: node node02: {nodes['node02']['error']}"]
    (svc,) = doc["services"]
    assert {fe["node"] for fe in svc["frontends"]} == {"controlplane", "node01"}
    created, deleted = created_and_deleted(emu)
    assert len(created) == 2 and created == deleted and debug_pods(emu) == []


def test_pod_namespace_option_and_the_context_namespace(emu, tmp_path):
    """Pods go to --pod-namespace, else to the context's namespace — not to -n (the Services')."""
    emu.exec_handler = node_handler
    emu.label_namespace("default", BASELINE)
    emu.label_namespace("svcnet-debug", {"pod-security.kubernetes.io/enforce": "privileged"})
    r = cli(emu, "trace", "db-service", "--via", "pod", "--pod-namespace", "svcnet-debug", "-o", "json")
    assert r.returncode == 0, r.stderr
    posts = [q.path for q in emu.requests if q.method == "POST"]
    assert posts == ["/api/v1/namespaces/svcnet-debug/pods"] * 3
    ctx = emu.write_kubeconfig(tmp_path / "kc", namespace="svcnet-debug")
    emu.clear_log()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "NO_PROXY": "127.0.0.1"}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "trace", "db-service", "-n", "default", "--via",
                        "pod", "--kubeconfig", str(ctx), "-o", "json"], capture_output=True, text=True, timeout=60,
                       cwd=str(ROOT), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert {q.path for q in emu.requests if q.method == "POST"} == {"/api/v1/namespaces/svcnet-debug/pods"}
    assert debug_pods(emu) == []
