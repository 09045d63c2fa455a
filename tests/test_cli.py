"""The CLI as a user runs it: `kubectl-svcnet` / `python -m kubectl_svcnet`, exit statuses, one-line
errors on stderr, machine output only on stdout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_svcnet import __version__

ROOT = Path(__file__).resolve().parent.parent
IPT = ROOT / "tests" / "fixtures" / "kube-proxy" / "iptables"
OVERALL = IPT / "modern-overall" / "dump.txt"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubectl_svcnet", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_version():
    r = run("version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"kubectl-svcnet {__version__}"


def test_map_json_follows_the_contract():
    r = run("map", "--from-file", f"node-a={OVERALL}", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["apiVersion"] == "svcnet/v1alpha1" and doc["kind"] == "ServiceMap"
    assert doc["nodes"] == [
        {"name": "node-a", "source": "file", "proxyMode": "iptables", "iptablesBackend": "nft", "error": None}
    ]
    svc4 = next(s for s in doc["services"] if s["name"] == "svc4")
    assert (svc4["namespace"], svc4["portName"], svc4["protocol"]) == ("ns4", "p80", "TCP")
    cip = next(f for f in svc4["frontends"] if f["type"] == "ClusterIP")
    assert (cip["ip"], cip["port"], cip["node"]) == ("172.30.0.44", 80, "node-a")
    (route,) = cip["routes"]
    assert route["from"] == "any" and route["verdict"] == "forward" and route["affinity"] is None
    assert sorted((b["ip"], b["probability"]) for b in route["backends"]) == [("10.180.0.4", 0.5), ("10.180.0.5", 0.5)]
    assert set(route["backends"][0]) == {"ip", "port", "probability", "local", "pod"}
    svc6 = next(s for s in doc["services"] if s["name"] == "svc6")
    assert svc6["frontends"][0]["routes"][0]["verdict"] == "reject"


def test_yaml_is_the_same_document():
    yaml = pytest.importorskip("yaml")
    j = json.loads(run("map", "--from-file", str(OVERALL), "-o", "json").stdout)
    y = yaml.safe_load(run("map", "--from-file", str(OVERALL), "-o", "yaml").stdout)
    assert j == y
    assert j["nodes"][0]["name"] == "dump"  # no NODE=: named after the file


def test_trace_shows_the_chain_path_with_line_numbers():
    r = run("trace", "svc4", "-n", "ns4", "--from-file", f"n1={OVERALL}")
    assert r.returncode == 0, r.stderr
    lines = OVERALL.read_text().splitlines()
    path_lines = [ln for ln in r.stdout.splitlines() if "DNAT 10.180.0.5:80" in ln and "KUBE-SVC-" in ln]
    assert path_lines, r.stdout
    # Every CHAIN:LINE hop points at a rule of that chain in the dump the user has.
    for hop in path_lines[0].split(" -> ")[:-1]:
        chain, _, line = hop.strip().rpartition(":")
        assert lines[int(line) - 1].startswith(f"-A {chain} "), hop
    assert "ns1/svc1" not in r.stdout


def test_trace_unknown_service_is_one_line_error():
    r = run("trace", "nope", "--from-file", str(OVERALL))
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines()[0] == 'error: service "nope" not found in namespace "default" (dump)'


def test_stdin_and_no_headers():
    r = run("map", "--from-file", "n=-", "--no-headers", stdin=OVERALL.read_text())
    assert r.returncode == 0
    assert not r.stdout.startswith("SERVICE")
    assert all(len(line.split()) >= 4 for line in r.stdout.splitlines())


@pytest.mark.parametrize(
    "content,where",
    [
        ("hello world\n", "bad.txt:1"),
        ("*nat\n:KUBE-SERVICES - [0:0]\nbogus line\nCOMMIT\n", "bad.txt:3"),
    ],
)
def test_not_a_dump_is_one_line_with_file_and_line(tmp_path, content, where):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    r = run("map", "--from-file", f"n1={bad}", "--from-file", f"n2={OVERALL}", "-o", "json")
    assert r.returncode == 4
    err = [ln for ln in r.stderr.splitlines() if ln]
    assert len(err) == 1 and err[0].startswith("error: node n1: ") and err[0].endswith(f"{bad.parent}/{where})")
    doc = json.loads(r.stdout)  # the other node's answers are all still there
    assert {n["name"]: bool(n["error"]) for n in doc["nodes"]} == {"n1": True, "n2": False}
    assert len(doc["services"]) == 6


def test_truncated_dump_reports_what_it_could_read(tmp_path):
    text = OVERALL.read_text()
    cut = text[: text.index("-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment") + 30]
    p = tmp_path / "cut.txt"
    p.write_text(cut)
    r = run("map", "--from-file", f"n1={p}", "-o", "json")
    assert r.returncode == 4
    assert "truncated" in r.stderr or "no COMMIT" in r.stderr
    assert str(p) in r.stderr
    doc = json.loads(r.stdout)
    assert any(s["name"] == "svc4" for s in doc["services"])


def test_no_input_and_no_cluster_is_a_usage_error(tmp_path):
    """Without --snapshot/--from-file the live path needs a kubeconfig; none is a usage error."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "map"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.startswith("error: no cluster configured")
    assert "--snapshot" in r.stderr  # the hint names the offline way
    assert "Traceback" not in r.stderr


def test_bad_option_is_one_line():
    r = run("map", "-o", "xml", "--from-file", str(OVERALL))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")


def test_offline_path_imports_neither_kubernetes_nor_paramiko():
    code = (
        "import sys; from kubectl_svcnet.cli import main\n"
        "try:\n main(['map', '--from-file', %r, '-o', 'json'])\n"
        "except SystemExit: pass\n"
        "print('LOADED', 'kubernetes' in sys.modules, 'paramiko' in sys.modules, file=sys.stderr)\n"
    ).replace("%r", repr(str(OVERALL)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "LOADED False False" in r.stderr


@pytest.mark.skipif(
    shutil.which("kubectl") is None or shutil.which("kubectl-svcnet") is None,
    reason="kubectl or the installed kubectl-svcnet script is missing",
)
def test_kubectl_finds_the_plugin():
    env = dict(os.environ)
    listed = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert "kubectl-svcnet" in listed.stdout
    r = subprocess.run(["kubectl", "svcnet", "version"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"kubectl-svcnet {__version__}"
