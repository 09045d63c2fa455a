"""The bundled seed cluster, and drift made from it: pods named, node-local backends marked, and
every disagreement between the rules and the API (or between nodes) reported."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_svcnet.app import build_map
from kubectl_svcnet.collect.files import read_snapshot

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"


def codes(smap, key_name):
    view = next(v for v in smap.services if v.key.name == key_name)
    return sorted((f.code, f.node) for f in view.findings)


def test_db_service_goes_to_the_db_pod_on_every_node():
    res = build_map(read_snapshot(str(SEED)), only="default/db-service")
    (view,) = res.service_map.services
    assert {f.node for f in view.frontends} == {"controlplane", "node01", "node02"}
    for fe in view.frontends:
        assert (fe.type, fe.ip, fe.port) == ("ClusterIP", "10.103.132.104", 3306)
        (route,) = fe.routes
        (b,) = route.backends
        assert (b.ip, b.port, b.pod, b.probability) == ("10.244.1.2", 3306, "default/db", 1.0)
        assert b.local is (fe.node == "node01")
    assert view.findings == ()


def test_seed_cluster_findings():
    smap = build_map(read_snapshot(str(SEED))).service_map
    assert codes(smap, "cache") == [("no-endpoints", None)]
    assert codes(smap, "web-lb") == [("no-local-endpoints", "controlplane")] * 2
    assert codes(smap, "web") == []


@pytest.fixture
def drifted(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(SEED, snap)
    return snap


def _edit(path: Path, drop_containing: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(ln for ln in lines if drop_containing not in ln))


def test_node_missing_an_endpoint_is_reported(drifted):
    """node02's kube-proxy stopped syncing before web-...-x6tcn (10.244.2.3) was added."""
    dump = drifted / "nodes" / "node02" / "iptables-nft-save.txt"
    # What kube-proxy wrote for two endpoints: the last rule takes the rest, no statistic match.
    _edit(dump, '"default/web -> 10.244.2.3:8080"')
    text = dump.read_text()
    prev = next(ln for ln in text.splitlines() if '"default/web -> 10.244.2.2:8080"' in ln)
    dump.write_text(text.replace(prev, prev.replace(" -m statistic --mode random --probability 0.50000000000", "")))
    smap = build_map(read_snapshot(str(drifted))).service_map
    found = codes(smap, "web")
    assert ("missing-endpoint", "node02") in found
    assert ("nodes-disagree", None) in found
    assert "unreachable-chain" in {f.code for f in smap.findings}  # the orphaned KUBE-SEP chain


def test_stale_endpoint_and_unknown_service(drifted):
    """The API no longer lists db's endpoint, nor the cache Service, but the rules still have them."""
    eps = json.loads((drifted / "endpointslices.json").read_text())
    for item in eps["items"]:
        if item["metadata"]["labels"].get("kubernetes.io/service-name") == "db-service":
            item["endpoints"] = []
    (drifted / "endpointslices.json").write_text(json.dumps(eps))
    svcs = json.loads((drifted / "services.json").read_text())
    svcs["items"] = [s for s in svcs["items"] if s["metadata"]["name"] != "cache"]
    (drifted / "services.json").write_text(json.dumps(svcs))
    smap = build_map(read_snapshot(str(drifted))).service_map
    assert ("stale-endpoint", "node01") in codes(smap, "db-service")
    assert ("unknown-service", "node02") in codes(smap, "cache")


def test_node_without_the_service_at_all(drifted):
    _edit(drifted / "nodes" / "node01" / "iptables-nft-save.txt", "default/db-service")
    smap = build_map(read_snapshot(str(drifted)), only="default/db-service").service_map
    assert ("missing-service", "node01") in codes(smap, "db-service")


def _set_pod(snap: Path, name: str, edit) -> None:
    pods = json.loads((snap / "pods.json").read_text())
    edit(next(p for p in pods["items"] if p["metadata"]["name"] == name)["spec"])
    (snap / "pods.json").write_text(json.dumps(pods))


def test_a_target_port_the_pod_does_not_declare(drifted):
    """db's Service sends to 3306, but the pod says it listens on 5432: the classic targetPort slip."""
    _set_pod(drifted, "db", lambda spec: spec["containers"][0]["ports"][0].update(containerPort=5432))
    smap = build_map(read_snapshot(str(drifted)), only="default/db-service").service_map
    (view,) = smap.services
    assert [(f.severity, f.code, f.message) for f in view.findings] == [(
        "warning", "undeclared-target-port",
        "default/db-service: endpoint 10.244.1.2:3306 is pod default/db, whose containers declare 5432/TCP, not"
        " 3306/TCP: connections to it may be refused (check the Service's targetPort)",
    )]  # fmt: skip


@pytest.mark.parametrize(
    "edit",
    [
        lambda spec: spec["containers"][0].pop("ports"),  # declares nothing: not judged
        lambda spec: (
            spec["containers"][0]["ports"][0].update(containerPort=5432)
            or spec.setdefault("initContainers", []).append(  # a sidecar (restartPolicy Always) declares it
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always", "ports": [{"containerPort": 3306}]}
            )
        ),
    ],
    ids=["no-ports-declared", "sidecar-declares-it"],
)
def test_declared_ports_that_say_nothing_against_the_target_port(drifted, edit):
    _set_pod(drifted, "db", edit)
    smap = build_map(read_snapshot(str(drifted)), only="default/db-service").service_map
    assert smap.services[0].findings == ()


def test_session_affinity_the_rules_do_not_keep(drifted):
    svcs = json.loads((drifted / "services.json").read_text())
    db = next(s for s in svcs["items"] if s["metadata"]["name"] == "db-service")
    db["spec"].update(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    (drifted / "services.json").write_text(json.dumps(svcs))
    smap = build_map(read_snapshot(str(drifted)), only="default/db-service").service_map
    assert [(f.code, f.node, f.message) for f in smap.services[0].findings] == [
        ("affinity-drift", n, f"default/db-service asks for ClientIP session affinity (600s), but node {n}'s rules keep"
                              " none") for n in ("controlplane", "node01", "node02")
    ]  # fmt: skip


def test_a_service_of_another_service_proxy(drifted):
    """service.kubernetes.io/service-proxy-name: kube-proxy ignores the Service. Rules for it are stale;
    none is right, and a trace says why there is nothing to show."""
    from kubectl_svcnet.errors import NotFoundError

    svcs = json.loads((drifted / "services.json").read_text())
    db = next(s for s in svcs["items"] if s["metadata"]["name"] == "db-service")
    db["metadata"].setdefault("labels", {})["service.kubernetes.io/service-proxy-name"] = "cilium"
    (drifted / "services.json").write_text(json.dumps(svcs))
    smap = build_map(read_snapshot(str(drifted)), only="default/db-service").service_map
    assert codes(smap, "db-service") == [("other-proxy-service", n) for n in ("controlplane", "node01", "node02")]
    for node in ("controlplane", "node01", "node02"):
        _edit(drifted / "nodes" / node / "iptables-nft-save.txt", "default/db-service")
    smap = build_map(read_snapshot(str(drifted))).service_map
    assert not [v for v in smap.services if v.key.name == "db-service"]  # no missing-service for it
    with pytest.raises(NotFoundError) as e:
        build_map(read_snapshot(str(drifted)), only="default/db-service")
    assert e.value.message == (
        'service "db-service" in namespace "default" is for another service proxy, "cilium" (label'
        " service.kubernetes.io/service-proxy-name): kube-proxy writes no rules for it"
    )


def test_a_changed_node_port_left_in_the_rules(drifted):
    """web's node port moved from 30080 to 30081; the nodes' kube-proxies never heard of it."""
    svcs = json.loads((drifted / "services.json").read_text())
    web = next(s for s in svcs["items"] if s["metadata"]["name"] == "web")
    web["spec"]["ports"][0]["nodePort"] = 30081
    (drifted / "services.json").write_text(json.dumps(svcs))
    smap = build_map(read_snapshot(str(drifted)), only="default/web").service_map
    (view,) = smap.services
    assert sorted((f.code, f.node, f.message) for f in view.findings if f.node == "node01") == [
        ("missing-frontend", "node01", "node node01 has no rule for NodePort node port 30081"),
        ("stale-frontend", "node01", "node node01 still has rules for NodePort node port 30080, which default/web"
                                     " does not have (stale rules?)"),
    ]  # fmt: skip


def test_a_proxy_mode_load_balancer_ip_needs_no_rules(drifted):
    """ipMode Proxy: the load balancer proxies to the node ports, and kube-proxy writes nothing for its IP."""
    for node in ("controlplane", "node01", "node02"):
        _edit(drifted / "nodes" / node / "iptables-nft-save.txt", "192.168.56.240")
    smap = build_map(read_snapshot(str(drifted)), only="default/web-lb").service_map
    assert ("missing-frontend", "node01") in codes(smap, "web-lb")  # a VIP-mode IP without rules: drift
    svcs = json.loads((drifted / "services.json").read_text())
    lb = next(s for s in svcs["items"] if s["metadata"]["name"] == "web-lb")
    lb["status"]["loadBalancer"]["ingress"][0]["ipMode"] = "Proxy"
    (drifted / "services.json").write_text(json.dumps(svcs))
    smap = build_map(read_snapshot(str(drifted)), only="default/web-lb").service_map
    assert "missing-frontend" not in {code for code, _ in codes(smap, "web-lb")}


@pytest.mark.parametrize(
    "want, have, message",
    [
        (None, None, None),
        (10800, 10800, None),
        (None, 10800, "node n1's rules keep ClientIP session affinity (10800s) for ns/s:p, which asks for none"),
        (600, 10800, "ns/s:p asks for ClientIP session affinity for 600s, but node n1's rules keep it 10800s"),
    ],
)
def test_affinity_drift(want, have, message):
    from kubectl_svcnet.analyze import _affinity_drift
    from kubectl_svcnet.model import Affinity, Route, Service, ServiceKey

    route = Route("any", "forward", (), Affinity(have) if have else None)
    got = _affinity_drift(ServiceKey("ns", "s", "p"), "n1", Service("ns", "s", session_affinity_timeout=want), route)
    assert [f.message for f in got] == ([message] if message else [])


# -- topology-aware routing: EndpointSlice hints make nodes rightly use different endpoints ----------

WEB = {"10.244.1.3": "node01", "10.244.2.2": "node02", "10.244.2.3": "node02"}
WEB_RULE = '"default/web -> {}:8080"'


def _hint(snap: Path, zones: dict, nodes_hint: bool = False) -> None:
    """Zone labels on the Nodes (`zones`: node -> zone) and hints on web's endpoints: each endpoint for
    its own node's zone (or, with `nodes_hint`, for its own node)."""
    nodes = json.loads((snap / "nodes.json").read_text())
    for n in nodes["items"]:
        if n["metadata"]["name"] in zones:
            n["metadata"].setdefault("labels", {})["topology.kubernetes.io/zone"] = zones[n["metadata"]["name"]]
    (snap / "nodes.json").write_text(json.dumps(nodes))
    slices = json.loads((snap / "endpointslices.json").read_text())
    for sl in slices["items"]:
        if sl["metadata"]["labels"].get("kubernetes.io/service-name") == "web":
            for e in sl["endpoints"]:
                node = WEB[e["addresses"][0]]
                e["hints"] = {"forNodes": [{"name": node}]} if nodes_hint else {"forZones": [{"name": zones[node]}]}
    (snap / "endpointslices.json").write_text(json.dumps(slices))


def _keep_web(snap: Path, node: str, keep: list) -> None:
    """What kube-proxy on `node` writes when it uses only `keep` of web's endpoints (in the dump's order):
    the other endpoints' jumps dropped, each kept jump's probability 1/(n-i), the last one without."""
    dump = snap / "nodes" / node / "iptables-nft-save.txt"
    out, kept = [], 0
    for line in dump.read_text().splitlines(keepends=True):
        ip = next((ip for ip in WEB if WEB_RULE.format(ip) in line and line.startswith("-A KUBE-SVC-")), None)
        if ip is None:
            out.append(line)
            continue
        if ip not in keep:
            continue
        line = re.sub(r" -m statistic --mode random --probability [0-9.]+", "", line)
        left = len(keep) - kept
        if left > 1:
            prob = {2: "0.50000000000", 3: "0.33333333349"}[left]
            line = line.replace(" -j ", f" -m statistic --mode random --probability {prob} -j ")
        kept += 1
        out.append(line)
    dump.write_text("".join(out))


ZONES = {"controlplane": "zone-a", "node01": "zone-a", "node02": "zone-b"}


def web_findings(snap: Path):
    return codes(build_map(read_snapshot(str(snap)), only="default/web").service_map, "web")


def test_zone_hints_nodes_use_their_zones_endpoints(drifted):
    _hint(drifted, ZONES)
    for node in ("controlplane", "node01"):
        _keep_web(drifted, node, ["10.244.1.3"])
    _keep_web(drifted, "node02", ["10.244.2.2", "10.244.2.3"])
    assert web_findings(drifted) == []  # every node as its zone's hints say; nodes differ, rightly


def test_without_hints_the_same_rules_are_drift(drifted):
    for node in ("controlplane", "node01"):
        _keep_web(drifted, node, ["10.244.1.3"])
    found = web_findings(drifted)
    assert ("missing-endpoint", "node01") in found and ("nodes-disagree", None) in found


def test_zone_hints_a_node_missing_its_zones_endpoint(drifted):
    _hint(drifted, ZONES)
    for node in ("controlplane", "node01"):
        _keep_web(drifted, node, ["10.244.1.3"])
    _keep_web(drifted, "node02", ["10.244.2.2"])
    assert web_findings(drifted) == [("missing-endpoint", "node02")]


def test_zone_hints_a_kube_proxy_that_ignores_them_is_not_drift(drifted):
    """Older kube-proxy (or its feature gate off) uses every ready endpoint: also right."""
    _hint(drifted, ZONES)
    assert web_findings(drifted) == []


def test_node_hints_prefer_the_same_node(drifted):
    """PreferSameNode: node hints; a node no endpoint is hinted for (controlplane) uses them all."""
    _hint(drifted, ZONES, nodes_hint=True)
    _keep_web(drifted, "node01", ["10.244.1.3"])
    _keep_web(drifted, "node02", ["10.244.2.2", "10.244.2.3"])
    assert web_findings(drifted) == []
    _keep_web(drifted, "controlplane", ["10.244.1.3"])  # controlplane has no node hint: it must use all
    assert web_findings(drifted) == [("missing-endpoint", "controlplane")] * 2


def test_topology_mode():
    from kubectl_svcnet.analyze import topology_mode
    from kubectl_svcnet.model import Endpoint

    a = Endpoint("10.0.0.1", 80, zone_hints=("a",), node_hints=("n1",))
    b = Endpoint("10.0.0.2", 80, zone_hints=("b",), node_hints=("n2",))
    unhinted = Endpoint("10.0.0.3", 80)
    not_ready = Endpoint("10.0.0.4", 80, ready=False)  # only ready endpoints' hints count
    assert topology_mode([a, b, not_ready], "n1", "a") == "PreferSameNode"
    assert topology_mode([a, b], "n3", "b") == "PreferSameZone"  # no endpoint for n3: zones decide
    assert topology_mode([a, b], "n3", "c") is None  # none for its zone either
    assert topology_mode([a, b], "n3", None) is None  # a node without a zone label
    assert topology_mode([a, b, unhinted], "n1", "a") is None  # one ready endpoint without hints
    assert topology_mode([not_ready], "n1", "a") is None


def test_readme_main_job_command():
    r = subprocess.run(
        [sys.executable, "-m", "kubectl_svcnet", "trace", "db-service", "--snapshot", str(SEED)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "10.103.132.104:3306" in r.stdout and "10.244.1.2:3306" in r.stdout and " db " in r.stdout
    assert r.stdout.count("DNAT 10.244.1.2:3306") == 3  # one path per node


def test_broken_snapshot_file_names_file_and_line(drifted):
    (drifted / "pods.json").write_text('{"kind": "List",\n "items": [\n oops]}\n')
    r = subprocess.run(
        [sys.executable, "-m", "kubectl_svcnet", "map", "--snapshot", str(drifted)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 4
    assert r.stderr.startswith("error: invalid JSON") and r.stderr.splitlines()[0].endswith("pods.json:3)")
