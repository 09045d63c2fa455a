"""`kubectl svcnet ranges`: service/pod/node-port ranges with their sources, the dry-run trick's parsers,
the checks, and the CLI on snapshot fixtures (tests/fixtures/ranges/, see its README). No network."""

from __future__ import annotations

import copy
import io
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_svcnet.collect.files import read_snapshot
from kubectl_svcnet.errors import ExitStatus
from kubectl_svcnet.ranges import (
    CHECK_NODE_ADDRESSES,
    CHECK_NODE_POD_CIDRS,
    CHECK_OVERLAP,
    CHECK_SOURCES,
    FAILED,
    IPV4,
    IPV6,
    OK,
    PROBE_CLUSTER_IP,
    PROBE_NODE_PORT,
    UNCHECKED,
    answer_from_message,
    answer_from_status,
    answers_from_objects,
    compute_ranges,
    dry_run_path,
    dry_run_service_body,
    family_not_configured,
    needed_probes,
    parse_dry_run_ip_error,
    parse_dry_run_port_error,
    parse_port_range,
    pod_flags,
    run_probes,
    service_range_size,
)
from kubectl_svcnet.render_ranges import render_ranges, size_text, to_dict

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"
FIX = ROOT / "tests" / "fixtures" / "ranges"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubectl_svcnet", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def objects(case: Path):
    return read_snapshot(str(case)).objects


def ranges_of(objs):
    return compute_ranges(objs, answers_from_objects(objs))


def doc_of(objs):
    return to_dict(ranges_of(objs))


def checks(doc):
    return {c["code"]: c["status"] for c in doc["checks"]}


def codes(doc, severity=None):
    return [f["code"] for f in doc["findings"] if severity is None or f["severity"] == severity]


def item(objs, kind, name):
    for o in objs:
        for it in o.get("items", [o]):
            if it.get("kind") == kind and it["metadata"]["name"] == name:
                return it
    raise KeyError(name)


# -- the dry-run trick: the real wordings -------------------------------------------------------------
IP_MESSAGES = [
    # 1.8-1.19, pkg/registry/core/service/rest.go: field spec.clusterIP, ErrNotInRange{ValidRange}
    (
        'Service "p" is invalid: spec.clusterIP: Invalid value: "192.0.2.1": provided IP is not in the valid range. '
        "The range of valid IPs is 10.96.0.0/12",
        ["10.96.0.0/12"],
    ),
    # 1.20, rest.go after the dual-stack rework: "failed to allocated ip:%v with error:%v"
    (
        'Service "p" is invalid: spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: failed to allocated ip:1.1.1.1 '
        "with error:provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
        ["10.96.0.0/12"],
    ),
    # storage/alloc.go: "failed to allocate IP %v: %v"
    (
        "failed to allocate IP 1.1.1.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
        ["10.96.0.0/12"],
    ),
    # later ipallocator: "the provided IP (%v) is not in the valid range. The range of valid IPs is %s"; kubectl
    # prints it after "The "
    (
        'The Service "my-custom-service" is invalid: spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: failed to '
        "allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is "
        "10.128.0.0/12",
        ["10.128.0.0/12"],
    ),
    # IPv6
    (
        'Service "p" is invalid: spec.clusterIPs: Invalid value: []string{"100::1"}: failed to allocate IP 100::1: '
        "the provided IP (100::1) is not in the valid range. The range of valid IPs is fd00:10:96::/112",
        ["fd00:10:96::/112"],
    ),
    # before 1.8: no range in the message
    (
        'Service "kube-dns" is invalid: spec.clusterIP: Invalid value: "10.0.0.10": '
        "provided IP is not in the valid range",
        [],
    ),
    # the ServiceCIDR allocator when the IP is in no ServiceCIDR (seen on EKS)
    (
        'The Service "my-service" is invalid: spec.clusterIPs: Invalid value: []string{"0.0.0.0"}: failed to allocate '
        "IP 0.0.0.0: the provided network does not match the current range",
        [],
    ),
    # several field errors in one Status message
    (
        'Service "p" is invalid: [spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: failed to allocate IP 1.1.1.1: '
        "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12, spec.ports[0].nodePort: "
        "Invalid value: 1: provided port is not in the valid range. The range of valid ports is 30000-32767]",
        ["10.96.0.0/12"],
    ),
    ('services is forbidden: User "x" cannot create resource "services" in API group ""', []),
    ("", []),
]


@pytest.mark.parametrize("message,want", IP_MESSAGES)
def test_parse_dry_run_ip_error(message, want):
    assert parse_dry_run_ip_error(message) == want


def test_parse_dry_run_ip_error_normalises_host_bits():
    assert parse_dry_run_ip_error("The range of valid IPs is 10.96.0.1/12.") == ["10.96.0.0/12"]


@pytest.mark.parametrize(
    "message,want",
    [
        (
            'Service "api-service" is invalid: spec.ports[0].nodePort: Invalid value: 8102: '
            "provided port is not in the valid range. The range of valid ports is 30000-32767",
            (30000, 32767),
        ),
        (
            "spec.ports[0].nodePort: Invalid value: 1: provided port is not in the valid range. "
            "The range of valid ports is 20000-22767",
            (20000, 22767),
        ),  # fmt: skip
        ("The range of valid ports is 30000", (30000, 30000)),
        ("spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated", None),
        ("The range of valid IPs is 10.96.0.0/12", None),
    ],
)
def test_parse_dry_run_port_error(message, want):
    assert parse_dry_run_port_error(message) == want


def test_family_not_configured():
    msg = 'Service "p" is invalid: spec.clusterIPs[0]: Invalid value: []string{"100::1"}: '
    msg += "IPv6 is not configured on this cluster"
    assert family_not_configured(msg) == IPV6
    assert family_not_configured('spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster') == IPV6
    assert family_not_configured("The range of valid IPs is 10.96.0.0/12") is None


def test_dry_run_bodies():
    v4 = dry_run_service_body(PROBE_CLUSTER_IP, IPV4, namespace="team-a")
    assert v4["kind"] == "Service" and v4["metadata"]["namespace"] == "team-a"
    assert v4["metadata"]["generateName"].startswith("svcnet-range-probe-") and "name" not in v4["metadata"]
    assert v4["spec"]["type"] == "ClusterIP" and v4["spec"]["clusterIP"] == "192.0.2.1"
    v6 = dry_run_service_body(PROBE_CLUSTER_IP, IPV6)
    assert ipaddress.ip_address(v6["spec"]["clusterIP"]).version == 6
    np = dry_run_service_body(PROBE_NODE_PORT)
    assert np["spec"]["type"] == "NodePort" and np["spec"]["ports"][0]["nodePort"] == 1
    assert "clusterIP" not in np["spec"]
    assert dry_run_path("team-a") == "/api/v1/namespaces/team-a/services?dryRun=All"
    with pytest.raises(ValueError):
        dry_run_service_body("bogus")


def test_answers_know_their_probe():
    st = json.loads((FIX / "managed-dryrun" / "dryrun.json").read_text())["items"]
    a = [answer_from_status(s) for s in st]
    assert [(x.probe, x.family, x.code, x.failed) for x in a] == [
        (PROBE_CLUSTER_IP, IPV4, 422, False),
        (PROBE_CLUSTER_IP, IPV6, 422, False),
        (PROBE_NODE_PORT, None, 422, False),
    ]
    forbidden = answer_from_status(json.loads((FIX / "dryrun-forbidden" / "dryrun.json").read_text()))
    assert forbidden.probe is None and forbidden.failed and forbidden.code == 403
    # a live source with only the error text
    m = answer_from_message("failed to allocate IP 1.1.1.1: provided IP is not in the valid range. "
                            "The range of valid IPs is 10.96.0.0/12")  # fmt: skip
    assert (m.probe, m.family, m.failed) == (PROBE_CLUSTER_IP, IPV4, False)


# -- sizes: kube-apiserver's allocator rule ----------------------------------------------------------
@pytest.mark.parametrize(
    "cidr,new_allocator,want",
    [
        ("10.96.0.0/12", False, 1_048_574),  # IPv4: network and broadcast are never handed out
        ("10.96.0.0/12", True, 1_048_574),
        ("10.0.0.0/24", False, 254),
        ("10.0.0.0/31", False, 0),
        ("10.0.0.0/32", False, 0),
        ("fd00:10:96::/112", False, 65_535),  # bitmap allocator: min(2^n, 65536) - 1
        ("fd00:10:96::/108", False, 65_535),
        ("fd00:10:96::/120", False, 255),
        ("fd00:10:96::/108", True, 2**20 - 1),  # ServiceCIDR/IPAddress allocator: 2^n - 1
        ("fd00:10:96::/64", True, 2**64 - 1),
    ],
)
def test_service_range_size(cidr, new_allocator, want):
    assert service_range_size(ipaddress.ip_network(cidr), new_allocator) == want


def test_size_text():
    assert size_text(1_048_574) == "1,048,574"
    assert size_text(2**64 - 1) == "2^64-1"
    assert size_text(2**72) == "2^72"


def test_flags_and_port_ranges():
    pod = {"spec": {"containers": [{"command": ["kube-apiserver", "--a=1", "--service-cluster-ip-range", "10.0.0.0/16",
                                                "--flag", "--b=x=y"]}]}}  # fmt: skip
    assert pod_flags(pod) == {"a": "1", "service-cluster-ip-range": "10.0.0.0/16", "flag": "true", "b": "x=y"}
    sh = {
        "spec": {
            "containers": [{"command": ["/bin/sh", "-c"], "args": ["exec kube-proxy --cluster-cidr=10.1.0.0/16 --v=2"]}]
        }
    }
    assert pod_flags(sh)["cluster-cidr"] == "10.1.0.0/16"
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range("30000+2767") == (30000, 32767)
    assert parse_port_range("30000") == (30000, 30000)
    assert parse_port_range("nope") is None and parse_port_range("40000-30000") is None


# -- the seed cluster, through the CLI ----------------------------------------------------------------
def test_seed_cluster_table_through_the_cli():
    r = run("ranges", "--snapshot", str(SEED))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    service = next(line for line in lines if line.startswith("service "))
    assert "10.96.0.0/12" in service and "1,048,574" in service
    assert "kube-apiserver-controlplane --service-cluster-ip-range" in service
    assert "kubeadm-config networking.serviceSubnet" in service
    pod = next(line for line in lines if line.startswith("pod "))
    assert "10.244.0.0/16" in pod and "kube-controller-manager-controlplane --cluster-cidr" in pod
    assert "kube-proxy clusterCIDR" in pod and "kubeadm-config networking.podSubnet" in pod
    ports = next(line for line in lines if line.startswith("node ports"))
    assert "30000-32767" in ports and "--service-node-port-range (not set: default)" in ports
    assert "assumed" not in ports
    assert "ok        service ranges do not overlap pod ranges" in lines
    assert "FINDINGS" not in r.stdout
    # the plain table leaves out node podCIDRs inside the cluster range; wide lists them
    assert "10.244.1.0/24" not in r.stdout
    w = run("ranges", "--snapshot", str(SEED), "-o", "wide")
    assert "Node node01 10.244.1.0/24" in w.stdout and "/24: 3 of 256" in w.stdout
    assert "--service-cluster-ip-range=10.96.0.0/12" in w.stdout


def test_seed_cluster_json_contract():
    r = run("ranges", "--snapshot", str(SEED), "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["apiVersion"] == "svcnet/v1alpha1" and doc["kind"] == "Ranges"
    assert list(doc) == ["apiVersion", "kind", "serviceCIDRs", "podCIDRs", "nodePortRange", "checks", "findings"]
    (svc,) = doc["serviceCIDRs"]
    assert set(svc) == {"cidr", "family", "sources", "size", "inUse"}
    assert (svc["cidr"], svc["family"], svc["size"], svc["inUse"]) == ("10.96.0.0/12", "IPv4", 1_048_574, 6)
    assert {(s["kind"], s["field"], s["value"]) for s in svc["sources"]} == {
        ("kube-apiserver", "--service-cluster-ip-range", "10.96.0.0/12"),
        ("kubeadm-config", "networking.serviceSubnet", "10.96.0.0/12"),
    }
    assert set(svc["sources"][0]) == {"kind", "name", "field", "value"}
    cluster = [p for p in doc["podCIDRs"] if p["scope"] == "cluster"]
    assert [(p["cidr"], p["size"], p["node"]) for p in cluster] == [("10.244.0.0/16", 65536, None)]
    assert cluster[0]["nodeSubnets"] == {"maskSize": 24, "total": 256, "inUse": 3}
    assert {s["kind"] for s in cluster[0]["sources"]} == {"kube-controller-manager", "kube-proxy", "kubeadm-config"}
    nodes = [(p["node"], p["cidr"]) for p in doc["podCIDRs"] if p["scope"] == "node"]
    assert nodes == [("controlplane", "10.244.0.0/24"), ("node01", "10.244.1.0/24"), ("node02", "10.244.2.0/24")]
    npr = doc["nodePortRange"]
    assert (npr["from"], npr["to"], npr["size"], npr["assumed"], npr["inUse"]) == (30000, 32767, 2768, False, 3)
    assert npr["sources"][0] == {
        "kind": "kube-apiserver",
        "name": "kube-system/kube-apiserver-controlplane",
        "field": "--service-node-port-range",
        "value": None,
    }
    assert checks(doc) == {CHECK_OVERLAP: OK, CHECK_NODE_ADDRESSES: OK, CHECK_NODE_POD_CIDRS: OK, CHECK_SOURCES: OK}
    assert doc["findings"] == []


def test_yaml_is_the_same_document():
    yaml = pytest.importorskip("yaml")
    j = run("ranges", "--snapshot", str(SEED), "-o", "json")
    y = run("ranges", "--snapshot", str(SEED), "-o", "yaml")
    assert y.returncode == 0 and yaml.safe_load(y.stdout) == json.loads(j.stdout)


def test_no_headers_sends_checks_and_findings_to_stderr():
    out, err = io.StringIO(), io.StringIO()
    render_ranges(ranges_of(objects(FIX / "overlap")), out, "table", no_headers=True, err=err)
    assert "RANGE" not in out.getvalue() and "CHECKS" not in out.getvalue()
    assert all(line.split()[0] in ("service", "pod", "node") for line in out.getvalue().splitlines())
    assert "FAILED    service ranges do not overlap pod ranges" in err.getvalue()
    assert "error: service range 10.96.0.0/12" in err.getvalue()


def test_without_snapshot_or_cluster_is_a_usage_error(tmp_path):
    """No --snapshot means the live cluster; with no kubeconfig at all that is a usage error."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "ranges"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[0].startswith("error: no cluster configured")
    r = run("ranges", "--from-file", str(SEED / "nodes" / "node01" / "iptables-nft-save.txt"))
    assert r.returncode == 2 and r.stderr.startswith("error: ranges reads API objects")


def test_snapshot_without_objects_is_an_input_error(tmp_path):
    (tmp_path / "nodes" / "n1").mkdir(parents=True)
    (tmp_path / "nodes" / "n1" / "iptables-save.txt").write_text("*nat\nCOMMIT\n")
    r = run("ranges", "--snapshot", str(tmp_path))
    assert r.returncode == 4 and r.stderr.startswith("error: snapshot has no API objects")


# -- the fixtures ----------------------------------------------------------------------------------------
def test_kubeadm_dual_stack():
    objs = objects(FIX / "kubeadm-dualstack")
    doc = doc_of(objs)
    svc = {s["cidr"]: s for s in doc["serviceCIDRs"]}
    assert list(svc) == ["10.96.0.0/16", "fd00:10:96::/112"]
    assert (svc["10.96.0.0/16"]["size"], svc["10.96.0.0/16"]["inUse"]) == (65_534, 3)
    assert (svc["fd00:10:96::/112"]["family"], svc["fd00:10:96::/112"]["size"]) == ("IPv6", 65_535)
    assert svc["fd00:10:96::/112"]["inUse"] == 2
    pods = {p["cidr"]: p for p in doc["podCIDRs"] if p["scope"] == "cluster"}
    assert list(pods) == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert pods["fd00:10:244::/56"]["nodeSubnets"] == {"maskSize": 64, "total": 256, "inUse": 2}
    assert pods["fd00:10:244::/56"]["size"] == 2**72
    npr = doc["nodePortRange"]
    assert (npr["from"], npr["to"], npr["assumed"], npr["inUse"]) == (30000, 32000, False, 1)
    # kubeadm v1beta4 writes extraArgs as a list of {name, value}
    assert {(s["kind"], s["value"]) for s in npr["sources"]} == {
        ("kube-apiserver", "30000-32000"),
        ("kubeadm-config", "30000-32000"),
    }
    assert set(checks(doc).values()) == {OK} and doc["findings"] == []
    assert needed_probes(objs) == []


def test_managed_cluster_service_cidr_objects():
    objs = objects(FIX / "managed-servicecidr")
    doc = doc_of(objs)
    svc = {s["cidr"]: s for s in doc["serviceCIDRs"]}
    assert svc["172.20.0.0/16"]["sources"] == [
        {"kind": "ServiceCIDR", "name": "kubernetes", "field": "spec.cidrs", "value": "172.20.0.0/16"}
    ]
    assert (svc["172.20.0.0/16"]["inUse"], svc["172.21.0.0/24"]["inUse"]) == (3, 1)
    assert svc["172.21.0.0/24"]["sources"][0]["name"] == "extra-2025"
    assert [p["scope"] for p in doc["podCIDRs"]] == ["node", "node"]
    npr = doc["nodePortRange"]
    assert npr["assumed"] is True and (npr["from"], npr["to"]) == (30000, 32767)
    assert npr["sources"] == [{"kind": "default", "name": None, "field": None, "value": "30000-32767"}]
    assert npr["inUse"] == 2  # 31443 and the health-check node port 32001
    c = checks(doc)
    assert c[CHECK_OVERLAP] == OK and c[CHECK_NODE_POD_CIDRS] == UNCHECKED
    assert "node-port-range-assumed" in codes(doc)
    # nothing names the node ports: the live module would probe them, not the service range
    assert needed_probes(objs) == [(PROBE_NODE_PORT, None)]
    r = run("ranges", "--snapshot", str(FIX / "managed-servicecidr"))
    assert r.returncode == 0 and "default (assumed)" in r.stdout and "ServiceCIDR kubernetes" in r.stdout


def test_service_cidr_objects_use_the_ipaddress_allocator_size():
    objs = objects(FIX / "managed-servicecidr")
    v6 = copy.deepcopy(objs)
    item(v6, "ServiceCIDR", "kubernetes")["spec"]["cidrs"] = ["172.20.0.0/16", "fd00:20::/64"]
    svc = {s["cidr"]: s for s in doc_of(v6)["serviceCIDRs"]}
    assert svc["fd00:20::/64"]["size"] == 2**64 - 1


def test_managed_cluster_dry_run_only():
    objs = objects(FIX / "managed-dryrun")
    assert needed_probes(objs) == [
        (PROBE_CLUSTER_IP, IPV4),
        (PROBE_CLUSTER_IP, IPV6),
        (PROBE_NODE_PORT, None),
    ]
    doc = doc_of(objs)
    (svc,) = doc["serviceCIDRs"]
    assert (svc["cidr"], svc["size"], svc["inUse"]) == ("10.52.0.0/20", 4094, 2)
    assert svc["sources"] == [{"kind": "dry-run", "name": None, "field": "spec.clusterIP", "value": "10.52.0.0/20"}]
    # the enabled Calico pool only
    (pod,) = doc["podCIDRs"]
    assert (pod["cidr"], pod["sources"][0]["kind"], pod["sources"][0]["name"]) == (
        "192.168.0.0/16",
        "IPPool",
        "default-ipv4-ippool",
    )
    npr = doc["nodePortRange"]
    assert (npr["from"], npr["to"], npr["assumed"], npr["sources"][0]["kind"]) == (30000, 32767, False, "dry-run")
    assert "family-not-configured" in codes(doc)
    assert checks(doc)[CHECK_OVERLAP] == OK


def test_old_server_older_wording():
    doc = doc_of(objects(FIX / "old-server"))
    assert [(s["cidr"], s["sources"][0]["kind"]) for s in doc["serviceCIDRs"]] == [("10.0.0.0/16", "dry-run")]
    (pod,) = [p for p in doc["podCIDRs"] if p["scope"] == "cluster"]
    assert (pod["cidr"], pod["sources"][0]["kind"], pod["sources"][0]["field"]) == (
        "10.1.0.0/16",
        "kube-flannel-cfg",
        "net-conf.json Network",
    )
    assert doc["nodePortRange"]["from"] == 30000 and doc["nodePortRange"]["inUse"] == 1
    assert checks(doc)[CHECK_OVERLAP] == OK and checks(doc)[CHECK_NODE_POD_CIDRS] == OK


def test_rbac_forbids_the_dry_run():
    case = FIX / "dryrun-forbidden"
    r = run("ranges", "--snapshot", str(case))
    assert r.returncode == int(ExitStatus.PARTIAL)
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: dry run for the service range and node-port range forbidden")
    assert "permission to create Services" in line and "HTTP 403" in line
    # what other sources say is still printed
    assert "10.244.0.0/24" in r.stdout and "Node aks-nodepool1-1" in r.stdout
    assert "default (assumed)" in r.stdout
    assert "unchecked service ranges do not overlap pod ranges (the service range is unknown)" in r.stdout
    j = run("ranges", "--snapshot", str(case), "-o", "json")
    assert j.returncode == 3
    doc = json.loads(j.stdout)
    assert doc["serviceCIDRs"] == [] and doc["nodePortRange"]["assumed"] is True
    assert checks(doc)[CHECK_OVERLAP] == UNCHECKED
    assert {"dry-run-failed", "service-range-unknown"} <= set(codes(doc, "warning"))


def test_forbidden_dry_run_does_not_matter_when_other_sources_answer():
    objs = objects(SEED) + [json.loads((FIX / "dryrun-forbidden" / "dryrun.json").read_text())]
    r = ranges_of(objs)
    assert r.status == ExitStatus.OK and r.problems == ()
    assert [f.severity for f in r.findings if f.code == "dry-run-failed"] == ["info"]


def test_overlap_is_an_error_finding_and_exit_0_like_map():
    case = FIX / "overlap"
    r = run("ranges", "--snapshot", str(case), "-o", "json")
    assert r.returncode == 0, r.stderr  # findings never change the exit status (as with `map`)
    doc = json.loads(r.stdout)
    c = checks(doc)
    assert c[CHECK_OVERLAP] == FAILED and c[CHECK_NODE_ADDRESSES] == FAILED and c[CHECK_NODE_POD_CIDRS] == FAILED
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    assert [f["code"] for f in errors] == [CHECK_OVERLAP]  # node podCIDRs inside the overlapping range: no repeats
    assert "10.96.0.0/12" in errors[0]["message"] and "10.100.0.0/16" in errors[0]["message"]
    warnings = [f["message"] for f in doc["findings"] if f["severity"] == "warning"]
    assert "node n1's InternalIP 10.100.7.1 is inside the service range 10.96.0.0/12" in warnings[0]
    assert any(
        "node n2's podCIDR 10.200.0.0/24 is outside the cluster's pod range 10.100.0.0/16" in w for w in warnings
    )


def test_overlap_with_a_node_podcidr_when_no_cluster_range_is_known():
    objs = copy.deepcopy(objects(FIX / "managed-servicecidr"))
    item(objs, "Node", "ip-10-0-2-41.ec2.internal")["spec"]["podCIDRs"] = ["172.20.128.0/24"]
    r = ranges_of(objs)
    (err,) = [f for f in r.findings if f.severity == "error"]
    assert err.node == "ip-10-0-2-41.ec2.internal" and "172.20.128.0/24" in err.message


def test_disagreeing_sources_are_all_shown():
    objs = copy.deepcopy(objects(SEED))
    kubeadm = item(objs, "ConfigMap", "kubeadm-config")
    kubeadm["data"]["ClusterConfiguration"] = kubeadm["data"]["ClusterConfiguration"].replace(
        "serviceSubnet: 10.96.0.0/12", "serviceSubnet: 10.96.0.0/16"
    )
    proxy = item(objs, "ConfigMap", "kube-proxy")
    proxy["data"]["config.conf"] = proxy["data"]["config.conf"].replace(
        "clusterCIDR: 10.244.0.0/16", "clusterCIDR: 10.32.0.0/12"
    )
    api = item(objs, "Pod", "kube-apiserver-controlplane")
    api["spec"]["containers"][0]["command"].append("--service-node-port-range=30000-31000")
    doc = doc_of(objs)
    assert [s["cidr"] for s in doc["serviceCIDRs"]] == ["10.96.0.0/12", "10.96.0.0/16"]
    assert [p["cidr"] for p in doc["podCIDRs"] if p["scope"] == "cluster"] == ["10.32.0.0/12", "10.244.0.0/16"]
    assert checks(doc)[CHECK_SOURCES] == FAILED
    msgs = [f["message"] for f in doc["findings"] if f["code"] == CHECK_SOURCES]
    assert len(msgs) == 3
    svc_msg = next(m for m in msgs if "service range" in m)
    assert "10.96.0.0/12 (kube-apiserver-controlplane --service-cluster-ip-range)" in svc_msg
    assert "10.96.0.0/16 (kubeadm-config networking.serviceSubnet)" in svc_msg
    pod_msg = next(m for m in msgs if "pod range" in m)
    assert "10.32.0.0/12 (kube-proxy clusterCIDR)" in pod_msg
    port_msg = next(m for m in msgs if "node-port range" in m)
    assert "30000-31000 (kube-apiserver-controlplane --service-node-port-range)" in port_msg
    assert "30000-32767 (kubeadm-config apiServer.extraArgs.service-node-port-range (not set: default))" in port_msg
    # the explicit flag wins over kubeadm's absent setting
    assert (doc["nodePortRange"]["from"], doc["nodePortRange"]["to"]) == (30000, 31000)


def test_a_dry_run_naming_another_range_disagrees():
    answer = {
        "kind": "Status",
        "code": 422,
        "reason": "Invalid",
        "message": 'Service "p" is invalid: spec.clusterIPs: Invalid value: []string{"192.0.2.1"}: failed to allocate '
        "IP 192.0.2.1: the provided IP (192.0.2.1) is not in the valid range. The range of valid IPs is 10.100.0.0/16",
        "details": {"kind": "Service", "causes": [{"field": "spec.clusterIPs"}]},
    }
    doc = doc_of(objects(SEED) + [answer])
    (msg,) = [f["message"] for f in doc["findings"] if f["code"] == CHECK_SOURCES]
    assert "dry run (spec.clusterIP) names 10.100.0.0/16" in msg and "10.96.0.0/12" in msg


def test_cni_settings():
    base = copy.deepcopy(objects(FIX / "managed-servicecidr"))
    cilium = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cilium-config", "namespace": "kube-system"},
        "data": {
            "ipam": "cluster-pool",
            "cluster-pool-ipv4-cidr": "10.0.0.0/8",
            "cluster-pool-ipv6-cidr": "fd00::/104",
        },
    }
    doc = doc_of(base + [cilium])
    cluster = [p for p in doc["podCIDRs"] if p["scope"] == "cluster"]
    assert [p["cidr"] for p in cluster] == ["10.0.0.0/8", "fd00::/104"]
    assert cluster[0]["sources"][0]["field"] == "cluster-pool-ipv4-cidr + cluster-pool-ipv6-cidr"
    # 10.0.0.0/8 holds the nodes' addresses: that is worth a warning
    assert any("10.0.1.17 is inside the pod range 10.0.0.0/8" in f["message"] for f in doc["findings"])
    # with ipam: kubernetes, cilium uses the nodes' podCIDRs and the pool keys mean nothing
    cilium["data"]["ipam"] = "kubernetes"
    assert [p["scope"] for p in doc_of(base + [cilium])["podCIDRs"]] == ["node", "node"]


def test_usage_outside_the_ranges_is_reported():
    objs = copy.deepcopy(objects(SEED))
    web = item(objs, "Service", "web")
    web["spec"]["clusterIP"] = "172.30.0.9"
    web["spec"]["clusterIPs"] = ["172.30.0.9"]
    web["spec"]["ports"][0]["nodePort"] = 8080
    doc = doc_of(objs)
    assert "clusterip-outside-range" in codes(doc, "warning") and "nodeport-outside-range" in codes(doc, "warning")
    assert doc["serviceCIDRs"][0]["inUse"] == 5 and doc["nodePortRange"]["inUse"] == 2


def test_kubeadm_v1beta3_extra_args_map():
    objs = copy.deepcopy(objects(SEED))
    kubeadm = item(objs, "ConfigMap", "kubeadm-config")
    kubeadm["data"]["ClusterConfiguration"] = kubeadm["data"]["ClusterConfiguration"].replace(
        "    authorization-mode: Node,RBAC\n",
        "    authorization-mode: Node,RBAC\n    service-node-port-range: 30000-32767\n",
    )
    npr = doc_of(objs)["nodePortRange"]
    assert ("kubeadm-config", "30000-32767") in {(s["kind"], s["value"]) for s in npr["sources"]}


def test_run_probes_with_a_live_style_create():
    """What the live module will do: POST each needed body; the API's error (a Status) is the answer."""

    class FakeApiError(Exception):
        def __init__(self, status):
            super().__init__(status["message"])
            self.status, self.code, self.reason = status, status["code"], status["reason"]

    sent = []
    statuses = json.loads((FIX / "managed-dryrun" / "dryrun.json").read_text())["items"]

    def create(body, namespace):
        sent.append((body["spec"].get("clusterIP"), body["spec"]["type"], namespace))
        raise FakeApiError(statuses[len(sent) - 1])

    objs = [o for o in objects(FIX / "managed-dryrun") if "Status" not in json.dumps(o)]
    answers = run_probes(create, objs, namespace="probe-ns")
    assert sent == [
        ("192.0.2.1", "ClusterIP", "probe-ns"),
        ("100::1", "ClusterIP", "probe-ns"),
        (None, "NodePort", "probe-ns"),
    ]
    r = compute_ranges(objs, answers)
    assert [c.cidr for c in r.service_cidrs] == ["10.52.0.0/20"] and str(r.node_port_range) == "30000-32767"

    def refused(body, namespace):
        raise ConnectionError("connection refused")

    (a, b, c) = run_probes(refused, objs)
    assert a.failed and a.reason == "Error" and "connection refused" in a.message
    r = compute_ranges(objs, [a, b, c])
    assert r.status == ExitStatus.PARTIAL and r.service_cidrs == ()
    assert run_probes(create, objects(SEED)) == []  # the seed names every range: nothing to send
