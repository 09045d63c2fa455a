"""`kubectl svcnet ranges` against a live API (the emulator on loopback): which sources it reads,
when it sends the dry run (and that the dry run really carries dryRun=All), and what a refusal does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apiemu.server import ApiEmulator

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"


def ranges(emu: ApiEmulator, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "kubectl_svcnet", "ranges", "--kubeconfig", str(emu.kubeconfig), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip


def sources(doc, key):
    return sorted({s["kind"] for r in doc[key] for s in r["sources"]})


@pytest.fixture
def emu(tmp_path):
    with ApiEmulator.from_dir(SEED, workdir=tmp_path) as e:
        yield e


def posts(emu):
    return [r for r in emu.requests if r.method == "POST"]


def test_kubeadm_cluster_needs_no_dry_run(emu):
    r = ranges(emu, "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [c["cidr"] for c in doc["serviceCIDRs"]] == ["10.96.0.0/12"]
    assert "10.244.0.0/16" in [c["cidr"] for c in doc["podCIDRs"]]
    assert (doc["nodePortRange"]["from"], doc["nodePortRange"]["to"]) == (30000, 32767)
    assert "kube-apiserver" in sources(doc, "serviceCIDRs")
    assert posts(emu) == []  # nothing is even dry-run created when the flags are readable


def _managed(emu):
    """What a managed cluster shows: no control-plane pods, no kubeadm-config."""
    for kind, name, ns in [
        ("Pod", "kube-apiserver-controlplane", "kube-system"),
        ("Pod", "kube-controller-manager-controlplane", "kube-system"),
        ("ConfigMap", "kubeadm-config", "kube-system"),
    ]:
        emu.remove(kind, name, ns)


def test_managed_cluster_uses_the_dry_run(emu):
    _managed(emu)
    r = ranges(emu, "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [c["cidr"] for c in doc["serviceCIDRs"]] == ["10.96.0.0/12"]
    assert sources(doc, "serviceCIDRs") == ["dry-run"]
    sent = posts(emu)
    assert sent and all(p.query.get("dryRun") == ["All"] for p in sent)
    assert all(p.path.endswith("/services") for p in sent)


def test_forbidden_dry_run_is_clear_and_the_rest_still_shows(emu):
    _managed(emu)
    emu.forbid("services", verbs="create")
    r = ranges(emu, "-o", "json")
    assert r.returncode == 3
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert err and "forbidden" in err[0].lower()
    doc = json.loads(r.stdout)
    assert doc["podCIDRs"]  # the Nodes' podCIDRs and kube-proxy's ConfigMap still say the pod range
