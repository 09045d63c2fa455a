"""`trace --logs`: kube-proxy's log lines about one Service or a failed sync, per node — the filter,
the API read (`api.pod_logs`, through the emulator), the live and snapshot paths, and the output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubectl_svcnet.collect import api, files
from kubectl_svcnet.collect.live import LiveOptions, read_kube_proxy_logs
from kubectl_svcnet.errors import ApiError
from kubectl_svcnet.proxymode import filter_log, log_line_kind
from tests.apiemu import ApiEmulator, isolate_client_env

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"

# kube-proxy's own wordings (pkg/proxy/iptables/proxier.go, pkg/proxy/servicechangetracker.go, klog text format).
LOG = """\
I0105 09:00:00.100000       1 server_linux.go:69] "Using iptables proxy"
I0105 09:00:00.200000       1 server.go:652] "Version info" version="v1.29.6"
I0105 09:00:01.000000       1 servicechangetracker.go:325] "Adding new service port" portName="default/web:http" servicePort="10.104.20.30:80/TCP"
I0105 09:00:01.000001       1 servicechangetracker.go:325] "Adding new service port" portName="default/web-lb:http" servicePort="10.98.77.40:80/TCP"
I0105 09:00:01.000002       1 servicechangetracker.go:325] "Adding new service port" portName="default/db-service" servicePort="10.103.132.104:3306/TCP"
I0105 09:00:02.000000       1 proxier.go:805] "Syncing iptables rules"
E0105 09:00:02.500000       1 proxier.go:1520] "Failed to execute iptables-restore" err="exit status 1 (iptables-restore: line 86 failed)"
I0105 09:00:02.500100       1 proxier.go:810] "Sync failed" retryingTime="30s"
I0105 09:00:03.000000       1 proxier.go:1564] "SyncProxyRules complete" elapsed="20ms"
I0105 09:00:04.000000       1 endpointslicecache.go:348] "Setting endpoints for service port" portName="default/web:http" endpoints=["10.244.1.3:8080","10.244.2.2:8080"]
I0105 09:00:05.000000       1 proxier.go:1564] "SyncProxyRules complete" elapsed="18ms"
"""  # noqa: E501
WEB_LINES = [LOG.splitlines()[i] for i in (2, 6, 7, 9)]


def test_filter_keeps_the_service_and_failed_syncs_and_drops_the_rest():
    assert filter_log(LOG, "default/web", 50) == WEB_LINES
    # default/web-lb and default/db-service are other Services: dropped for default/web, kept for themselves.
    assert log_line_kind(LOG.splitlines()[3], "default/web") is None
    assert log_line_kind(LOG.splitlines()[3], "default/web-lb") == "service"
    assert [ln for ln in filter_log(LOG, "default/db-service", 50) if "db-service" in ln] == [LOG.splitlines()[4]]
    # Bounded: the most recent N, oldest first.
    assert filter_log(LOG, "default/web", 2) == WEB_LINES[-2:]
    assert filter_log(LOG, "default/web", 1) == WEB_LINES[-1:]
    # Other kinds of failure: nftables, IPVS, a W/E line, JSON logging, `kubectl logs --timestamps`.
    for line, kind in [
        ('E0105 10:00:00.000000       1 proxier.go:1789] "nftables sync failed" err="signal: killed"', "sync"),
        ('I0105 10:00:00.000000       1 proxier.go:810] "Sync failed" ipFamily="IPv4" retryingTime="30s"', "sync"),
        ('E0105 10:00:00.000000       1 proxier.go:1100] "Failed to sync ipset entries" err="x"', "sync"),
        ('W0105 10:00:00.000000       1 server.go:100] "Something odd"', "error"),
        ('{"ts":1736067600.0,"caller":"iptables/proxier.go:1520","msg":"Failed to execute iptables-restore",'
         '"err":"exit status 1"}', "sync"),
        ('{"ts":1736067600.0,"msg":"Something broke","err":"boom"}', "error"),
        ('{"ts":1736067600.0,"msg":"SyncProxyRules complete","v":2}', None),
        ('2025-01-05T09:00:01.000000001Z I0105 09:00:01.000000 1 x.go:1] "Adding new service port" '
         'portName="default/web:http"', "service"),
        ('I0105 10:00:00.000000       1 proxier.go:1564] "SyncProxyRules complete" elapsed="20ms"', None),
        ('I0105 10:00:00.000000       1 x.go:1] "Removing service port" portName="default/webapp:http"', None),
        ('I0105 10:00:00.000000       1 x.go:1] "Network programming" endpoint="default/web" elapsed=0.1', "service"),
    ]:  # fmt: skip
        assert log_line_kind(line, "default/web") == kind, line
    assert filter_log("", "default/web", 5) == []


# ----------------------------------------------------------------------------------------------
# The API: pod_logs through the emulator


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    isolate_client_env(monkeypatch, tmp_path)


@pytest.fixture
def emu(tmp_path):
    with ApiEmulator.from_dir(SEED, tmp_path / "emu") as e:
        yield e


def kube_proxy_pods():
    """node -> its kube-proxy pod's name, in the seed cluster."""
    pods = json.loads((SEED / "pods.json").read_text())["items"]
    return {
        p["spec"]["nodeName"]: p["metadata"]["name"]
        for p in pods
        if p["metadata"]["labels"].get("k8s-app") == "kube-proxy"
    }  # noqa: E501


def test_pod_logs_reads_the_tail_and_translates_errors(emu):
    pod = kube_proxy_pods()["node01"]
    emu.set_pod_log("kube-system", pod, LOG)
    with api.connect(kubeconfig=str(emu.kubeconfig)) as s:
        assert api.pod_logs(s, "kube-system", pod, "kube-proxy", 3) == "".join(LOG.splitlines(True)[-3:])
        assert api.pod_logs(s, "kube-system", pod, None, None) == LOG
        with pytest.raises(ApiError) as e:
            api.pod_logs(s, "kube-system", pod, "nope", 10)
        assert e.value.code == 400 and "container nope is not valid" in e.value.one_line()
        with pytest.raises(ApiError) as e:
            api.pod_logs(s, "kube-system", "kube-proxy-gone", "kube-proxy", 10)
        assert e.value.one_line() == 'not found: pods "kube-proxy-gone" in namespace "kube-system"'
        emu.forbid("pods/log", "kube-system")
        with pytest.raises(ApiError) as e:
            api.pod_logs(s, "kube-system", pod, "kube-proxy", 10)
        assert e.value.code == 403
        assert e.value.one_line() == f'forbidden: cannot get pods/log "{pod}" in namespace "kube-system" (RBAC)'
        assert "kubectl auth can-i get pods/log -n kube-system" in e.value.hint
    (r, *_) = emu.requests_to(f"/api/v1/namespaces/kube-system/pods/{pod}/log")
    assert r.query == {"container": ["kube-proxy"], "tailLines": ["3"]}


def test_live_logs_per_node_with_one_failure_as_a_warning(emu):
    pods = kube_proxy_pods()
    for node, pod in pods.items():
        emu.set_pod_log("kube-system", pod, LOG.replace("09:00", f"09:{len(node):02d}"))
    emu.fault(f"/api/v1/namespaces/kube-system/pods/{pods['node02']}/log", 500, message="kubelet unreachable")
    opts = LiveOptions(kubeconfig=str(emu.kubeconfig))
    logs, warnings = read_kube_proxy_logs(opts, ["controlplane", "node01", "node02", "node03"], 100)
    assert sorted(logs) == ["controlplane", "node01"]
    assert logs["node01"] == LOG.replace("09:00", "09:06")
    assert warnings == [
        "node node02: kube-proxy's log not read: server error (500): Internal error occurred: kubelet unreachable "
        f'(get pods/log "{pods["node02"]}" in namespace "kube-system")',
        "node node03: no kube-proxy pod (label k8s-app=kube-proxy) runs there: no log",
    ]
    reqs = emu.requests_to(f"/api/v1/namespaces/kube-system/pods/{pods['node01']}/log")
    assert reqs[0].q("tailLines") == "100" and reqs[0].q("container") == "kube-proxy"
    # Pods/log forbidden everywhere: warnings, no exception.
    emu.forbid("pods/log")
    logs, warnings = read_kube_proxy_logs(opts, ["node01"], 100)
    assert logs == {} and warnings[0].startswith(
        "node node01: kube-proxy's log not read: forbidden: cannot get pods/log"
    )


def test_cli_live_trace_with_logs(emu, tmp_path, monkeypatch):
    """The CLI's live path, its nodes answered from the seed's dumps instead of SSH (no network)."""
    from kubectl_svcnet import cli
    from kubectl_svcnet.collect import live

    def read_live(opts, service=None, progress=None, resolve=False):
        with api.connect(kubeconfig=opts.kubeconfig) as s:
            objects, warnings = api.read_cluster(s, opts.namespace or s.namespace, service=service, proxy=True)
        inputs = files.read_snapshot(str(SEED))
        inputs.objects, inputs.warnings = objects, warnings
        for n in inputs.source_kind:
            inputs.source_kind[n] = "ssh"
        return inputs, opts.namespace or "default"

    monkeypatch.setattr(live, "read_live", read_live)
    pods = kube_proxy_pods()
    emu.set_pod_log("kube-system", pods["node01"], LOG)
    emu.set_pod_log("kube-system", pods["node02"], 'I0105 09:00:00.000000 1 x.go:1] "Nothing to see"\n')
    emu.fault(
        f"/api/v1/namespaces/kube-system/pods/{pods['controlplane']}/log", 403, message="no logs for you", times=None
    )
    runner = CliRunner()
    r = runner.invoke(cli.svcnet, ["trace", "web", "--kubeconfig", str(emu.kubeconfig), "--logs", "-o", "json"])
    assert r.exit_code == 0, (r.output, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["logs"] == {"node01": WEB_LINES, "node02": []}
    assert "warning: node controlplane: kube-proxy's log not read: forbidden: no logs for you" in r.stderr
    log_reqs = [q for q in emu.requests if q.path.endswith("/log")]
    assert {q.q("tailLines") for q in log_reqs} == {"5000"}
    # The table: chain paths, then the logs section.
    r = runner.invoke(cli.svcnet, ["trace", "web", "--kubeconfig", str(emu.kubeconfig), "--logs", "--log-lines", "2"])
    assert r.exit_code == 0
    out = r.stdout
    assert out.index("default/web on node01:") < out.index("\nKUBE-PROXY LOGS\n")
    section = out[out.index("\nKUBE-PROXY LOGS\n") :]
    assert section.splitlines()[2:] == ["node01:", *[f"  {ln}" for ln in WEB_LINES[-2:]], "node02:",
                                        "  (no matching lines)"]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Snapshots: nodes/<node>/kube-proxy.log


def run(*args):
    return subprocess.run([sys.executable, "-m", "kubectl_svcnet", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)  # fmt: skip


def test_snapshot_logs(tmp_path):
    d = tmp_path / "snap"
    shutil.copytree(SEED, d)
    (d / "nodes" / "node01" / "kube-proxy.log").write_text(LOG)
    (d / "nodes" / "node02" / "kube-proxy.log").write_bytes(b'E0105 09:00:00.000000 1 x.go:1] "bad \xff byte"\n')
    inputs = files.read_snapshot(str(d))
    assert sorted(inputs.logs) == ["node01", "node02"]
    assert [src for _, src in inputs.nodes["node01"]] == [str(d / "nodes" / "node01" / "iptables-nft-save.txt")]

    r = run("trace", "web", "--snapshot", str(d), "--logs", "-o", "json", "--log-lines", "3")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["logs"] == {"node01": WEB_LINES[-3:], "node02": ['E0105 09:00:00.000000 1 x.go:1] "bad \ufffd byte"']}
    assert "warning: --logs: node controlplane: no kube-proxy log in the snapshot" in r.stderr

    r = run("trace", "web", "--snapshot", str(d), "--logs")
    assert r.returncode == 0
    assert "\nKUBE-PROXY LOGS\nnode01:\n  " + "\n  ".join(WEB_LINES) + "\nnode02:\n" in r.stdout
    # --no-headers: stdout stays the rows; the section goes to stderr with the findings.
    r = run("trace", "web", "--snapshot", str(d), "--logs", "--no-headers")
    assert "KUBE-PROXY LOGS" not in r.stdout and "KUBE-PROXY LOGS" in r.stderr

    # Without --logs nothing changes: no "logs" key, no section, and the log is not read as a dump.
    r = run("trace", "web", "--snapshot", str(d), "-o", "json")
    assert r.returncode == 0 and "logs" not in json.loads(r.stdout)
    r = run("map", "--snapshot", str(d))
    assert r.returncode == 0 and "KUBE-PROXY LOGS" not in r.stdout and r.stderr == ""


def test_dump_files_have_no_logs(tmp_path):
    r = run("trace", "web", "--from-file", f"node01={SEED / 'nodes' / 'node01' / 'iptables-nft-save.txt'}", "--logs",
            "-o", "json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["logs"] == {}
    assert "warning: --logs: dump files carry no kube-proxy log" in r.stderr
