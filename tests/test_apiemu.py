"""The API emulator answers like kube-apiserver: shapes of lists, Status bodies, selectors,
pagination, discovery, admission. Plain HTTPS requests on 127.0.0.1, no kubernetes client."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.apiemu import EXPIRED_CONTINUE, ApiEmulator

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-cluster"


@pytest.fixture
def emu(tmp_path):
    with ApiEmulator.from_dir(SEED, tmp_path / "emu") as e:
        yield e


def call(emu, method, path, body=None, token=ApiEmulator.DEFAULT_TOKEN, headers=None):
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", emu.port, context=ctx, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.getheader("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        return resp.status, json.loads(raw), resp
    finally:
        conn.close()


def get(emu, path, **kw):
    return call(emu, "GET", path, **kw)[:2]


def names(doc):
    return [i["metadata"]["name"] for i in doc["items"]]


def test_lists_and_gets_have_the_apiservers_shape(emu):
    code, doc = get(emu, "/api/v1/namespaces/default/services")
    assert code == 200 and doc["kind"] == "ServiceList" and doc["apiVersion"] == "v1"
    assert set(doc["metadata"]) == {"resourceVersion"}
    assert names(doc) == ["cache", "db-service", "kubernetes", "web", "web-lb"]  # etcd order: by key
    assert all("kind" not in i for i in doc["items"])  # list items carry no kind (kubectl adds it)
    code, svc = get(emu, "/api/v1/namespaces/default/services/db-service")
    assert code == 200 and svc["kind"] == "Service" and svc["spec"]["clusterIP"] == "10.103.132.104"
    code, doc = get(emu, "/apis/discovery.k8s.io/v1/endpointslices")
    assert doc["kind"] == "EndpointSliceList" and doc["apiVersion"] == "discovery.k8s.io/v1" and len(doc["items"]) == 6
    assert names(get(emu, "/api/v1/nodes")[1]) == ["controlplane", "node01", "node02"]
    assert get(emu, "/api/v1/nodes/node01")[1]["metadata"]["name"] == "node01"
    assert get(emu, "/api/v1/namespaces/kube-system/configmaps/kube-proxy")[1]["kind"] == "ConfigMap"
    assert {"default", "kube-system"} <= set(names(get(emu, "/api/v1/namespaces")[1]))
    emu.add({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "kubernetes"},
             "spec": {"cidrs": ["10.96.0.0/12"]}})  # fmt: skip
    code, doc = get(emu, "/apis/networking.k8s.io/v1/servicecidrs")
    assert doc["items"][0]["spec"]["cidrs"] == ["10.96.0.0/12"]


def test_status_bodies_are_exact(emu):
    assert get(emu, "/api/v1/namespaces/default/services/x") == (404, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'services "x" not found', "reason": "NotFound", "details": {"name": "x", "kind": "services"},
        "code": 404})  # fmt: skip
    assert get(emu, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/x")[1]["details"] == {
        "name": "x", "group": "discovery.k8s.io", "kind": "endpointslices"}  # fmt: skip
    assert get(emu, "/apis/nope.example/v1/things") == (404, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound", "details": {},
        "code": 404})  # fmt: skip
    emu.forbid("pods", "prod", "list")
    assert get(emu, "/api/v1/namespaces/prod/pods") == (403, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods is forbidden: User "system:serviceaccount:default:svcnet" cannot list resource "pods" in '
                   'API group "" in the namespace "prod"',
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})  # fmt: skip
    code, doc = get(emu, "/api/v1/pods")  # all namespaces include prod
    assert code == 403 and doc["message"].endswith('cannot list resource "pods" in API group "" at the cluster scope')
    assert get(emu, "/api/v1/namespaces/default/pods")[0] == 200
    assert get(emu, "/api/v1/nodes", token="wrong") == (401, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
        "reason": "Unauthorized", "code": 401})  # fmt: skip
    emu.fault("/api/v1/nodes", 500, nth=2, message="etcdserver: leader changed")
    assert get(emu, "/api/v1/nodes")[0] == 200
    assert get(emu, "/api/v1/nodes") == (500, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Internal error occurred: etcdserver: leader changed", "reason": "InternalError",
        "details": {"causes": [{"message": "etcdserver: leader changed"}]}, "code": 500})  # fmt: skip
    assert get(emu, "/api/v1/nodes")[0] == 200  # times=1


def test_authorization_table(emu):
    emu.allow("services", "default", "list")
    emu.allow(["nodes", "pods"], verbs=["list", "get"], users=ApiEmulator.DEFAULT_USER)
    assert get(emu, "/api/v1/namespaces/default/services")[0] == 200
    assert get(emu, "/api/v1/services")[0] == 403  # only default was allowed
    assert get(emu, "/api/v1/namespaces/default/services/web")[0] == 403  # get was not
    assert get(emu, "/api/v1/pods")[0] == 200 and get(emu, "/api/v1/nodes/node01")[0] == 200
    assert get(emu, "/api/v1/namespaces/kube-system/configmaps")[0] == 403


def test_selectors(emu):
    def pods(query):
        code, doc = get(emu, "/api/v1/pods?" + query)
        assert code == 200, doc
        return names(doc)

    enc = lambda s: quote(s, safe="")  # noqa: E731
    assert pods("labelSelector=" + enc("k8s-app=kube-proxy")) == ["kube-proxy-7xkqp", "kube-proxy-b2n9w",
                                                                  "kube-proxy-m4zjt"]  # fmt: skip
    assert pods("labelSelector=" + enc("app in (db, web)")) == ["db", "web-7c5ddbdf54-2lq9v", "web-7c5ddbdf54-h8r4m",
                                                                "web-7c5ddbdf54-x6tcn"]  # fmt: skip
    assert pods("labelSelector=" + enc("app,app notin (web)")) == ["db"]
    assert pods("labelSelector=" + enc("app!=web,!k8s-app,!component")) == ["db"]
    # etcd's order: /registry/pods/<namespace>/<name>
    assert pods("fieldSelector=" + enc("spec.nodeName=node02")) == ["web-7c5ddbdf54-h8r4m", "web-7c5ddbdf54-x6tcn",
                                                                    "kube-proxy-m4zjt"]  # fmt: skip
    assert pods("fieldSelector=" + enc("metadata.namespace==default,metadata.name!=db")) == [
        "web-7c5ddbdf54-2lq9v", "web-7c5ddbdf54-h8r4m", "web-7c5ddbdf54-x6tcn"]  # fmt: skip
    code, doc = get(emu, "/api/v1/pods?fieldSelector=" + enc("spec.bogus=1"))
    assert code == 400 and doc["reason"] == "BadRequest" and "field label not supported: spec.bogus" in doc["message"]
    code, doc = get(emu, "/api/v1/pods?labelSelector=" + enc("app=(x"))
    assert code == 400


def test_pagination_tokens_and_expiry(emu):
    code, p1 = get(emu, "/api/v1/pods?limit=5")
    assert len(p1["items"]) == 5 and p1["metadata"]["remainingItemCount"] == 8
    token = p1["metadata"]["continue"]
    code, p2 = get(emu, f"/api/v1/pods?limit=5&continue={token}")
    code, p3 = get(emu, f"/api/v1/pods?limit=5&continue={p2['metadata']['continue']}")
    assert "continue" not in p3["metadata"] and len(p3["items"]) == 3
    all_names = names(p1) + names(p2) + names(p3)
    assert all_names == names(get(emu, "/api/v1/pods")[1])
    # With a selector the server cannot say how many remain.
    code, doc = get(emu, "/api/v1/pods?limit=1&labelSelector=k8s-app%3Dkube-proxy")
    assert "continue" in doc["metadata"] and "remainingItemCount" not in doc["metadata"]
    assert get(emu, "/api/v1/pods?limit=5&continue=garbage")[0] == 400
    emu.expire_after_pages = 1
    assert get(emu, f"/api/v1/pods?limit=5&continue={token}") == (410, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": EXPIRED_CONTINUE,
        "reason": "Expired", "code": 410})  # fmt: skip
    emu.expired_continue_token = True
    code, doc = get(emu, f"/api/v1/pods?limit=5&continue={token}")
    assert code == 410 and doc["metadata"]["continue"]  # etcd3's inconsistent-continue token
    emu.expire_after_pages, emu.continue_ttl = None, 0.05
    time.sleep(0.1)
    assert get(emu, f"/api/v1/pods?limit=5&continue={token}")[0] == 410


def test_discovery_and_version(tmp_path):
    with ApiEmulator.from_dir(SEED, tmp_path / "e", disabled={"discovery.k8s.io/v1"}, version="v1.20.15") as emu:
        assert get(emu, "/version")[1]["gitVersion"] == "v1.20.15"
        assert get(emu, "/api")[1]["versions"] == ["v1"]
        groups = [g["name"] for g in get(emu, "/apis")[1]["groups"]]
        assert groups == ["networking.k8s.io"]
        assert get(emu, "/apis/discovery.k8s.io/v1")[0] == 404
        assert get(emu, "/apis/discovery.k8s.io/v1/endpointslices")[0] == 404
        res = {r["name"]: r for r in get(emu, "/api/v1")[1]["resources"]}
        assert res["pods"]["namespaced"] and not res["nodes"]["namespaced"] and res["services"]["kind"] == "Service"


def test_services_are_only_created_as_dry_runs(emu):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe"},
           "spec": {"clusterIP": "10.96.0.77", "ports": [{"port": 80}]}}  # fmt: skip
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services", svc)
    assert code == 403 and "without dryRun=All" in doc["message"]
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All", svc)
    assert code == 201 and doc["spec"]["clusterIPs"] == ["10.96.0.77"] and doc["spec"]["type"] == "ClusterIP"
    assert "probe" not in {o["metadata"]["name"] for o in emu.objects("Service")}
    taken = dict(svc, spec={"clusterIP": "10.96.0.10", "ports": [{"port": 53}]})
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All", taken)
    assert code == 422 and doc["message"].endswith("failed to allocate IP 10.96.0.10: provided IP is already allocated")
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All",
                        dict(svc, spec={"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))  # fmt: skip
    assert code == 422 and doc["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "message": "Invalid value: 30080: provided port is already allocated",
        "field": "spec.ports[0].nodePort"}]  # fmt: skip
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All",
                        dict(svc, spec={"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}))  # fmt: skip
    assert code == 422 and doc["message"] == (
        'Service "probe" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid '
        "range. The range of valid ports is 30000-32767"
    )
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All",
                        dict(svc, spec={"clusterIP": "fd00::1", "ports": [{"port": 80}]}))  # fmt: skip
    assert code == 422 and doc["message"].endswith(
        "failed to allocate IP fd00::1: the provided IP (fd00::1) is not in the valid range. "
        "The range of valid IPs is 10.96.0.0/12"
    )
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All",
                        dict(svc, metadata={"name": "web"}))  # fmt: skip
    assert code == 409 and doc["reason"] == "AlreadyExists"


def test_newer_allocator_message_has_no_range(tmp_path):
    with ApiEmulator(workdir=tmp_path / "e", ip_range_in_message=False) as emu:
        svc = {"metadata": {"name": "p"}, "spec": {"clusterIP": "1.1.1.1", "ports": [{"port": 80}]}}
        code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/services?dryRun=All", svc)
        assert doc["message"].endswith("failed to allocate IP 1.1.1.1: provided IP 1.1.1.1 is not in the valid range")


DEBUG_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "svcnet-debug"},
    "spec": {
        "hostNetwork": True,
        "hostPID": True,
        "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
    },
}


def test_pod_security_admission(emu):
    emu.label_namespace("locked", {"pod-security.kubernetes.io/enforce": "baseline"})
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/locked/pods", DEBUG_POD)
    assert (code, doc) == (403, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "svcnet-debug" is forbidden: violates PodSecurity "baseline:latest": host namespaces '
                   '(hostNetwork=true, hostPID=true), privileged (container "c" must not set '
                   "securityContext.privileged=true)",
        "reason": "Forbidden", "details": {"name": "svcnet-debug", "kind": "pods"}, "code": 403})  # fmt: skip
    emu.label_namespace("strict", {"pod-security.kubernetes.io/enforce": "restricted",
                                   "pod-security.kubernetes.io/enforce-version": "v1.29"})  # fmt: skip
    plain = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "x"}]}}
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/strict/pods", plain)
    assert code == 403 and doc["message"] == (
        'pods "p" is forbidden: violates PodSecurity "restricted:v1.29": allowPrivilegeEscalation != false '
        '(container "app" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
        '(container "app" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
        'container "app" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "app" must '
        'set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
    # Unlabelled namespaces are privileged: the pod is created (and can be deleted).
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/pods", DEBUG_POD)
    assert code == 201 and doc["status"]["phase"] == "Pending"
    assert get(emu, "/api/v1/namespaces/default/pods/svcnet-debug")[0] == 200
    assert call(emu, "DELETE", "/api/v1/namespaces/default/pods/svcnet-debug")[0] == 200
    assert get(emu, "/api/v1/namespaces/default/pods/svcnet-debug")[0] == 404
    code, doc, _ = call(emu, "POST", "/api/v1/namespaces/default/pods?dryRun=All", DEBUG_POD)
    assert code == 201 and get(emu, "/api/v1/namespaces/default/pods/svcnet-debug")[0] == 404


def test_request_log_gzip_and_client_certificates(emu, tmp_path):
    emu.add_all({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}", "namespace": "default"},
                 "data": {"blob": "x" * 2000}} for i in range(100))  # fmt: skip
    code, doc, resp = call(emu, "GET", "/api/v1/configmaps?limit=500", headers={"Accept-Encoding": "gzip"})
    assert code == 200 and resp.getheader("Content-Encoding") == "gzip" and len(doc["items"]) == 102
    r = emu.requests[-1]
    assert (r.method, r.path, r.raw_query, r.query, r.user, r.status) == (
        "GET", "/api/v1/configmaps", "limit=500", {"limit": ["500"]}, ApiEmulator.DEFAULT_USER, 200)  # fmt: skip
    cert, key = emu.client_cert("alice", groups=["devs"])
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    ctx.load_cert_chain(str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", emu.port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/nodes")
    assert conn.getresponse().status == 200
    conn.close()
    assert emu.requests[-1].user == "alice"


def test_bounded_threads_and_clean_shutdown(tmp_path):
    emu = ApiEmulator.from_dir(SEED, tmp_path / "e", max_threads=2).start()
    emu.fault("/api/v1/nodes", delay=0.3, times=None)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get(emu, "/api/v1/nodes")[0])) for _ in range(4)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert results == [200] * 4 and time.monotonic() - t >= 0.55  # two at a time
    # An idle keep-alive connection and a request stuck in a slow answer do not hold up stop().
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    idle = http.client.HTTPSConnection("127.0.0.1", emu.port, context=ctx, timeout=10)
    idle.request("GET", "/version", headers={"Authorization": f"Bearer {ApiEmulator.DEFAULT_TOKEN}"})
    idle.getresponse().read()
    emu.fault("/api/v1/services", delay=30)
    cut: list = []

    def stuck() -> None:
        try:
            cut.append(call(emu, "GET", "/api/v1/services"))
        except OSError as e:  # stop() may close it before the answer: kept and checked below, not left
            cut.append(e)  # to surface in some later test as an unhandled thread exception

    slow = threading.Thread(target=stuck, daemon=True)
    slow.start()
    time.sleep(0.2)
    port = emu.port
    t = time.monotonic()
    emu.stop()
    assert time.monotonic() - t < 2
    slow.join(5)
    # stop() ended the request stuck in its slow answer (answered at once, or its connection closed,
    # whichever came first), rather than leaving it to its 30 s delay or the client's 10 s timeout.
    assert len(cut) == 1 and not isinstance(cut[0], TimeoutError), cut
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    idle.close()
