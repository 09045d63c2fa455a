"""collect/api.py against the API emulator (tests/apiemu): kubeconfig loading as kubectl does it,
reading the seed cluster live, pagination, 410 restarts, RBAC refusals, fallbacks, timeouts, dry runs,
and that every failure is one ApiError line. Loopback only, no root."""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubectl_svcnet.collect import api, files
from kubectl_svcnet.errors import ApiError, InputError, SvcnetError, UsageError
from kubectl_svcnet.objects import build_cluster
from tests.apiemu import EXPIRED_CONTINUE, ApiEmulator, endpoints_from_slices, isolate_client_env

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-cluster"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    isolate_client_env(monkeypatch, home)


def seed_objects():
    return files.read_snapshot(str(SEED)).objects


def flat(objs):
    out = []
    for o in objs:
        out.extend(o["items"] if o.get("kind") == "List" else [o])
    return out


@pytest.fixture
def emu(tmp_path):
    with ApiEmulator.from_dir(SEED, tmp_path / "emu") as e:
        yield e


def bulk_pods(n, namespace="bulk"):
    """n pods shaped like the seed's application pods, with distinct names and IPs."""
    base = next(p for p in flat(seed_objects()) if p["kind"] == "Pod" and p["metadata"]["name"] == "db")
    out = []
    for i in range(n):
        p = copy.deepcopy(base)
        p["metadata"].update(name=f"pod-{i:05d}", namespace=namespace, uid=f"uid-{i}")
        ip = f"10.250.{i // 250}.{i % 250 + 1}"
        p["status"].update(podIP=ip, podIPs=[{"ip": ip}])
        out.append(p)
    return out


@pytest.fixture
def big_emu(tmp_path):
    """The seed plus 1,200 pods: more than two pages of 500."""
    with ApiEmulator.from_dir(SEED, tmp_path / "emu") as e:
        e.add_all(bulk_pods(1200))
        yield e


def connect(emu, **kw):
    return api.connect(kubeconfig=str(emu.kubeconfig), **kw)


def key(o):
    m = o["metadata"]
    return o["kind"], m.get("namespace"), m["name"]


# ----------------------------------------------------------------------------------------------
# Configuration, as kubectl finds it


def write_config(path, clusters, users, contexts, current=None):
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
    }
    if current is not None:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def bearer(session):
    return session.api.configuration.auth_settings()["BearerToken"]["value"].split()[-1]


def test_kubeconfig_files_are_merged_like_kubectl(tmp_path, monkeypatch):
    one = write_config(
        tmp_path / "one",
        {"a": {"server": "https://127.0.0.1:6441"}},
        {"ua": {"token": "token-a"}},
        {"ca": {"cluster": "a", "user": "ua", "namespace": "team-a"}},
        current="ca",
    )
    two = write_config(
        tmp_path / "two",
        {"a": {"server": "https://127.0.0.1:9999"}, "b": {"server": "https://127.0.0.1:6442"}},
        {"ub": {"token": "token-b"}},
        {"cb": {"cluster": "b", "user": "ub"}},
        current="cb",
    )
    monkeypatch.setenv("KUBECONFIG", f"{one}:{tmp_path / 'missing'}:{two}:{one}")
    assert api.kubeconfig_files() == [str(one), str(two)]

    # The first file to set a name or the current-context wins.
    with api.connect() as s:
        assert (s.server, s.context, s.namespace, s.user) == ("https://127.0.0.1:6441", "ca", "team-a", "ua")
        assert bearer(s) == "token-a"
    # --context picks from the second file; its context has no namespace: "default".
    with api.connect(context="cb") as s:
        assert (s.server, s.namespace, s.user) == ("https://127.0.0.1:6442", "default", "ub")
    # -n, --cluster and --user override the context's choices.
    with api.connect(context="ca", cluster="b", user="ub", namespace="prod") as s:
        assert (s.server, s.namespace, s.user, s.cluster) == ("https://127.0.0.1:6442", "prod", "ub", "b")
        assert bearer(s) == "token-b"
    with api.connect(all_namespaces=True) as s:
        assert s.list_namespace is None

    with pytest.raises(UsageError) as e:
        api.connect(context="nope")
    assert e.value.one_line() == f'context "nope" not found in kubeconfig ({one}, {two})'
    assert e.value.hint == "contexts: ca, cb"
    with pytest.raises(UsageError, match='cluster "zz" not found'):
        api.connect(cluster="zz")
    with pytest.raises(UsageError, match='user "zz" not found'):
        api.connect(user="zz")


def test_kubeconfig_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(UsageError) as e:
        api.connect()
    assert "no cluster configured" in e.value.one_line() and "--kubeconfig" in e.value.hint
    with pytest.raises(UsageError, match="does not exist"):
        api.connect(kubeconfig=str(tmp_path / "nope"))
    cfg = write_config(tmp_path / "c", {"a": {"server": "https://127.0.0.1:1"}}, {}, {"x": {"cluster": "a"}})
    with pytest.raises(UsageError, match="no current-context") as e:
        api.connect(kubeconfig=str(cfg))
    assert e.value.hint == "choose one with --context (x)"
    cfg = write_config(tmp_path / "d", {"a": {"server": "https://127.0.0.1:1"}}, {}, {"x": {"cluster": "a"}}, "y")
    with pytest.raises(InputError, match='current-context "y" is not a context'):
        api.connect(kubeconfig=str(cfg))
    (tmp_path / "bad").write_text("clusters: [oops")
    with pytest.raises(InputError, match="invalid kubeconfig"):
        api.connect(kubeconfig=str(tmp_path / "bad"))
    # ~/.kube/config is the default.
    kube = Path.home() / ".kube"
    kube.mkdir()
    write_config(kube / "config", {"h": {"server": "https://127.0.0.1:7"}}, {}, {"hc": {"cluster": "h"}}, "hc")
    with api.connect() as s:
        assert s.server == "https://127.0.0.1:7" and s.context == "hc"


@pytest.mark.parametrize(
    "text, seconds",
    [(None, None), ("0", None), ("5", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), (1.5, 1.5)],
)
def test_request_timeout_is_parsed_like_kubectl(text, seconds):
    assert api.parse_request_timeout(text) == seconds


@pytest.mark.parametrize("text", ["abc", "5x", "-1s", "1.2.3s", ""])
def test_bad_request_timeout_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--request-timeout"):
        api.parse_request_timeout(text)


def test_relative_certificate_paths_resolve_against_their_file(emu, tmp_path, monkeypatch):
    """Each file's relative paths are its own (the client itself would use the cluster's file for all)."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    shutil.copy(emu.ca_file, d1 / "ca.crt")
    cert, key_pem = emu.client_cert()
    (d2 / "admin.crt").write_bytes(cert)
    (d2 / "admin.key").write_bytes(key_pem)
    write_config(d1 / "config", {"e": {"server": emu.url, "certificate-authority": "ca.crt"}}, {},
                 {"e": {"cluster": "e", "user": "admin"}}, "e")  # fmt: skip
    write_config(d2 / "config", {}, {"admin": {"client-certificate": "admin.crt", "client-key": "admin.key"}}, {})
    monkeypatch.setenv("KUBECONFIG", f"{d1 / 'config'}:{d2 / 'config'}")
    monkeypatch.chdir(tmp_path)
    with api.connect() as s:
        assert api.server_version(s)["gitVersion"] == "v1.29.6"
    assert emu.requests[-1].user == ApiEmulator.CERT_USER


def test_client_certificate_user(emu, tmp_path):
    cfg = emu.write_kubeconfig(tmp_path / "cert.kubeconfig", user="cert")
    with api.connect(kubeconfig=str(cfg)) as s:
        objs, warnings = api.read_cluster(s)
    assert warnings == [] and len(objs) == 28
    assert {r.user for r in emu.requests} == {"kubernetes-admin"}


def test_exec_credential_plugin(emu, tmp_path):
    cred = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
            "status": {"token": ApiEmulator.DEFAULT_TOKEN}}  # fmt: skip
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                          "args": ["-c", f"print({json.dumps(json.dumps(cred))})"]}}  # fmt: skip
    cfg = emu.write_kubeconfig(tmp_path / "exec.kubeconfig", user_entry=exec_user)
    with api.connect(kubeconfig=str(cfg)) as s:
        assert api.server_version(s)["minor"] == "29"
    assert emu.requests[-1].user == ApiEmulator.DEFAULT_USER

    failing = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                        "args": ["-c", "import sys; sys.exit('no credentials for you')"]}}  # fmt: skip
    cfg = emu.write_kubeconfig(tmp_path / "fail.kubeconfig", user_entry=failing)
    with pytest.raises(ApiError, match='cannot load credentials of user "emu-user"'):
        api.connect(kubeconfig=str(cfg))


def test_in_cluster_configuration(emu, tmp_path, monkeypatch):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(ApiEmulator.DEFAULT_TOKEN)
    shutil.copy(emu.ca_file, sa / "ca.crt")
    (sa / "namespace").write_text("prod\n")
    monkeypatch.setattr(api, "SERVICE_ACCOUNT_DIR", str(sa))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(emu.port))
    with api.connect() as s:
        assert s.in_cluster and s.namespace == "prod" and s.server == emu.url
        assert api.server_version(s)["gitVersion"] == "v1.29.6"
    with api.connect(namespace="other") as s:
        assert s.namespace == "other"
    # A kubeconfig, when there is one, wins over the pod's service account; an empty one does not.
    with connect(emu) as s:
        assert not s.in_cluster
    (tmp_path / "empty").write_text("apiVersion: v1\nkind: Config\n")
    with api.connect(kubeconfig=str(tmp_path / "empty")) as s:
        assert s.in_cluster


# ----------------------------------------------------------------------------------------------
# Reading the seed cluster


def test_seed_cluster_read_live_equals_the_snapshot(emu):
    with connect(emu) as s:
        objs, warnings = api.read_cluster(s)
    assert warnings == []
    on_disk = {key(o): o for o in flat(seed_objects()) if o["kind"] != "ConfigMap"}
    live = {key(o): o for o in objs}
    assert live == on_disk  # the exact objects kubectl prints, kind and apiVersion included
    assert build_cluster(objs) == build_cluster(seed_objects())
    assert [(r.method, r.path, r.q("limit")) for r in emu.requests] == [
        ("GET", "/api/v1/services", "500"),
        ("GET", "/apis/discovery.k8s.io/v1/endpointslices", "500"),
        ("GET", "/api/v1/nodes", "500"),
        ("GET", "/api/v1/pods", "500"),
    ]


def test_trace_reads_one_service_and_its_slices_and_answers_like_the_snapshot(emu):
    from kubectl_svcnet.app import build_map
    from kubectl_svcnet.render import render

    with connect(emu) as s:
        objs, warnings = api.read_cluster(s, "default", "db-service")
    assert warnings == []
    assert [key(o) for o in objs if o["kind"] in ("Service", "EndpointSlice")] == [
        ("Service", "default", "db-service"),
        ("EndpointSlice", "default", "db-service-s8x2d"),
    ]
    got = [(r.path, r.raw_query) for r in emu.requests]
    assert got == [
        ("/api/v1/namespaces/default/services/db-service", ""),
        ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
         "labelSelector=kubernetes.io%2Fservice-name%3Ddb-service&limit=500"),
        ("/api/v1/nodes", "limit=500"),
        ("/api/v1/namespaces/default/pods", "limit=500"),
    ]  # fmt: skip

    def trace_json(objects):
        snap = files.read_snapshot(str(SEED))
        snap.objects = objects
        out = io.StringIO()
        render(build_map(snap, only="default/db-service").service_map, out, "json", False, err=io.StringIO())
        return json.loads(out.getvalue())

    assert trace_json(objs) == trace_json(seed_objects())


def test_small_helpers(emu):
    with connect(emu) as s:
        by_node = api.kube_proxy_pods_by_node(s)
        assert sorted(by_node) == ["controlplane", "node01", "node02"]
        assert all(p["kind"] == "Pod" and p["metadata"]["labels"]["k8s-app"] == "kube-proxy" for p in by_node.values())
        cm = api.get_configmap(s, "kube-system", "kube-proxy")
        assert cm["kind"] == "ConfigMap" and "config.conf" in cm["data"]
        assert api.server_version(s)["gitVersion"] == "v1.29.6"
        assert api.list_objects(s, "nodes", field_selector="metadata.name=node01")[0]["metadata"]["name"] == "node01"
    kp = [r for r in emu.requests if r.path == "/api/v1/namespaces/kube-system/pods"]
    assert kp and kp[0].q("labelSelector") == "k8s-app=kube-proxy"
    lst = api.kubectl_list([cm])
    assert lst == {"apiVersion": "v1", "items": [cm], "kind": "List", "metadata": {"resourceVersion": ""}}


# ----------------------------------------------------------------------------------------------
# Pagination


def test_large_lists_come_in_pages(big_emu):
    with connect(big_emu) as s:
        pods = api.list_objects(s, "pods")
    names = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]
    assert len(names) == 1213 and len(set(names)) == 1213
    pages = big_emu.requests_to("/api/v1/pods")
    assert [r.q("limit") for r in pages] == ["500", "500", "500"]
    assert [r.q("continue") is not None for r in pages] == [False, True, True]
    assert all(r.status == 200 for r in pages)


def test_expired_continue_token_restarts_the_list(big_emu):
    big_emu.expire_after_pages = 2  # the token for the third page is too old ...
    big_emu.expire_times = 1  # ... once
    with connect(big_emu) as s:
        pods = api.list_objects(s, "pods")
    names = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]
    assert len(names) == 1213 and len(set(names)) == 1213  # every object exactly once
    pages = big_emu.requests_to("/api/v1/pods")
    assert [r.status for r in pages] == [200, 200, 410, 200, 200, 200]
    assert [r.q("continue") is not None for r in pages] == [False, True, True, False, True, True]


def test_a_list_that_keeps_expiring_fails_after_bounded_restarts(big_emu):
    big_emu.expire_after_pages = 1
    with connect(big_emu) as s, pytest.raises(ApiError) as e:
        api.list_objects(s, "pods")
    assert e.value.one_line() == (
        "the list of pods kept changing: its continue token expired 4 times (list pods in all namespaces)"
    )
    assert e.value.code == 410 and e.value.status["message"] == EXPIRED_CONTINUE
    assert len(big_emu.requests_to("/api/v1/pods")) == 2 * (api.MAX_LIST_RESTARTS + 1)


def test_server_error_mid_pagination(big_emu):
    big_emu.fault("/api/v1/pods", 500, nth=2, message="etcdserver: request timed out")
    with connect(big_emu) as s, pytest.raises(ApiError) as e:
        api.read_cluster(s)
    assert e.value.one_line() == (
        "server error (500): Internal error occurred: etcdserver: request timed out (list pods in all namespaces)"
    )
    assert e.value.code == 500 and e.value.reason == "InternalError"


# ----------------------------------------------------------------------------------------------
# Refusals


def test_forbidden_pods_degrade_to_a_warning(emu):
    emu.forbid("pods", "prod", "list")
    with connect(emu) as s:
        objs, warnings = api.read_cluster(s, "prod")
    assert warnings == ['forbidden: cannot list pods in namespace "prod": backends are shown unnamed']
    assert {o["kind"] for o in objs} == {"Node"}  # prod has no services; the nodes are still read
    with connect(emu) as s:
        objs, warnings = api.read_cluster(s)  # all namespaces include prod: forbidden too
    assert warnings == ["forbidden: cannot list pods in all namespaces: backends are shown unnamed"]
    cluster = build_cluster(objs)
    assert not cluster.has_pods and cluster.has_services and cluster.has_endpoints and len(cluster.nodes) == 3


def test_forbidden_services_are_an_error(emu):
    emu.forbid("services", "prod")
    with connect(emu) as s, pytest.raises(ApiError) as e:
        api.read_cluster(s, "prod")
    assert e.value.one_line() == 'forbidden: cannot list services in namespace "prod" (RBAC)'
    assert e.value.hint == (
        'services is forbidden: User "system:serviceaccount:default:svcnet" cannot list resource "services" in '
        'API group "" in the namespace "prod"; check with: kubectl auth can-i list services -n prod'
    )
    assert e.value.code == 403 and e.value.reason == "Forbidden"
    assert e.value.status["details"] == {"kind": "services"}


def test_forbidden_nodes_are_an_error(emu):
    emu.forbid("nodes")
    with connect(emu) as s, pytest.raises(ApiError, match=r"^forbidden: cannot list nodes at the cluster scope$"):
        api.read_cluster(s)


def test_missing_service(emu):
    with connect(emu) as s, pytest.raises(ApiError) as e:
        api.read_cluster(s, "default", "nope")
    assert e.value.one_line() == 'not found: services "nope" in namespace "default"'
    assert e.value.code == 404


def test_endpoints_fallback_without_discovery_v1(tmp_path):
    objs = flat(seed_objects())
    slices = [o for o in objs if o["kind"] == "EndpointSlice"]
    rest = [o for o in objs if o["kind"] not in ("EndpointSlice", "ConfigMap")]
    with ApiEmulator(rest + endpoints_from_slices(slices), tmp_path / "emu", disabled={"discovery.k8s.io/v1"}) as e:
        with connect(e) as s:
            live, warnings = api.read_cluster(s)
            assert s.endpoint_kind == "Endpoints"
            one, _ = api.read_cluster(s, "default", "db-service")  # remembers: no second try of slices
        paths = [r.path for r in e.requests]
    assert warnings == ["the API server has no discovery.k8s.io/v1 EndpointSlices: read core/v1 Endpoints"]
    assert "EndpointSlice" not in {o["kind"] for o in live} and "Endpoints" in {o["kind"] for o in live}
    assert paths.count("/apis/discovery.k8s.io/v1/endpointslices") == 1
    assert "/api/v1/endpoints" in paths and "/api/v1/namespaces/default/endpoints/db-service" in paths
    assert [key(o) for o in one if o["kind"] == "Endpoints"] == [("Endpoints", "default", "db-service")]

    def eps(cluster):
        return {k: sorted((e.ip, e.port, e.ready, e.pod) for e in v) for k, v in cluster.endpoints.items() if v}

    assert eps(build_cluster(live)) == eps(build_cluster(seed_objects()))


# ----------------------------------------------------------------------------------------------
# Timeouts, dry runs, and no client exception escapes


def test_request_timeout_is_honoured(emu):
    emu.fault("/api/v1/nodes", delay=5.0, times=None)
    t = time.monotonic()
    with connect(emu, request_timeout="500ms") as s, pytest.raises(ApiError) as e:
        api.read_cluster(s)
    assert time.monotonic() - t < 3
    assert e.value.one_line() == f"timeout: the API server did not answer within 0.5s (list nodes, {emu.url})"
    assert len(emu.requests_to("/api/v1/nodes")) == 1  # a timed-out read is not retried


def test_dry_run_create_reports_the_service_range(emu):
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svcnet-probe", "labels": {"app.kubernetes.io/name": "kubectl-svcnet"}},
            "spec": {"clusterIP": "1.1.1.1", "ports": [{"port": 80}]}}  # fmt: skip
    with connect(emu) as s:
        with pytest.raises(ApiError) as e:
            api.create_service_dry_run(s, body)
        assert e.value.code == 422 and e.value.reason == "Invalid"
        assert e.value.status["message"] == (
            'Service "svcnet-probe" is invalid: spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: failed to '
            "allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is "
            "10.96.0.0/12"
        )
        assert e.value.one_line().startswith('invalid: Service "svcnet-probe" is invalid: ')
        np = dict(body, spec={"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]})
        with pytest.raises(ApiError) as e:
            api.create_service_dry_run(s, np)
        assert e.value.status["message"].endswith(
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
            "The range of valid ports is 30000-32767"
        )
        ok = api.create_service_dry_run(s, dict(body, spec={"ports": [{"port": 80}]}))
        assert ok["kind"] == "Service" and ok["spec"]["clusterIP"].startswith("10.")
    posts = [r for r in emu.requests if r.method == "POST"]
    assert [(r.path, r.raw_query) for r in posts] == [("/api/v1/namespaces/default/services", "dryRun=All")] * 3
    assert posts[0].body == body  # sent verbatim, no client-side model in between
    assert "svcnet-probe" not in {o["metadata"]["name"] for o in emu.objects("Service")}


def closed_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def scenario(emu, tmp_path, name):
    """-> (kubeconfig path, connect kwargs, call) for one way of failing."""
    kc, kw = emu.kubeconfig, {}
    call = api.read_cluster
    if name == "connection refused":
        kc = emu.write_kubeconfig(tmp_path / "k", server=f"https://127.0.0.1:{closed_port()}")
    elif name == "wrong CA":
        other = ApiEmulator(workdir=tmp_path / "other")
        kc = other.write_kubeconfig(tmp_path / "k", server=emu.url)
    elif name == "bad token":
        kc = emu.write_kubeconfig(tmp_path / "k", token="wrong")
    elif name == "no credentials":
        kc = emu.write_kubeconfig(tmp_path / "k", user="none")
    elif name == "timeout":
        emu.fault("/api/v1/services", delay=3.0)
        kw = {"request_timeout": 0.3}
    elif name == "dropped connection":
        emu.fault("/api/v1/services", drop=True, times=None)
    elif name == "not JSON":
        emu.fault("/api/v1/services", 200, body=b"<html>hello</html>", content_type="text/html")
    elif name == "HTML 503":
        emu.fault("/api/v1/services", 503, body=b"<html>Service Unavailable</html>", content_type="text/html")
    elif name == "500":
        emu.fault("/api/v1/services", 500)
    elif name == "403":
        emu.forbid("services")
    elif name == "404":
        call = lambda s: api.read_cluster(s, "default", "nope")  # noqa: E731
    elif name == "410":
        emu.fault("/api/v1/services", 410, reason="Expired", message="too old resource version: 1 (2)")
    elif name == "429":
        emu.fault("/api/v1/services", 429, message="too many requests")
    return kc, kw, call


SCENARIOS = {
    "connection refused": r"^cannot connect to the API server: connection refused \(https://127\.0\.0\.1:\d+\)$",
    "wrong CA": r"^TLS error: certificate verify failed: .+ \(https://127\.0\.0\.1:\d+\)$",
    "bad token": r'^unauthorized: the API server rejected the credentials of user "emu-user" \(https://127',
    "no credentials": r'^unauthorized: the API server wants credentials and user "emu-user" has none \(https://',
    "timeout": r"^timeout: the API server did not answer within 0\.3s \(list services in all namespaces, https://",
    "dropped connection": r"^connection to the API server failed: the server closed the connection without an "
    r"answer \(list services in all namespaces, https://",
    "not JSON": r"^the API server's answer is not JSON: '<html>hello</html>' \(list services in all namespaces",
    "HTML 503": r"^server error \(503\): <html>Service Unavailable</html> \(list services in all namespaces\)$",
    "500": r"^server error \(500\): Internal error occurred: injected fault \(list services in all namespaces\)$",
    "403": r"^forbidden: cannot list services in all namespaces \(RBAC\)$",
    "404": r'^not found: services "nope" in namespace "default"$',
    "410": r"^expired: too old resource version: 1 \(2\) \(list services in all namespaces\)$",
    "429": r"^too many requests: too many requests \(list services in all namespaces\)$",
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_failure_is_one_api_error_line(emu, tmp_path, name):
    kc, kw, call = scenario(emu, tmp_path, name)
    t = time.monotonic()
    with api.connect(kubeconfig=str(kc), **kw) as s:
        # pytest.raises(SvcnetError) fails the test if any other type (kubernetes', urllib3's) escapes.
        with pytest.raises(SvcnetError) as e:
            call(s)
    assert time.monotonic() - t < 5
    err = e.value
    assert type(err) is ApiError
    line = err.one_line()
    assert "\n" not in line and "Traceback" not in line and "HTTPResponse" not in line
    assert re.search(SCENARIOS[name], line), line
    print(f"{name}: error: {line}" + (f"\n  hint: {err.hint}" if err.hint else ""))
    # A client exception is kept as the cause (for --debug), never raised itself.
    cause = err.__cause__
    client = ("kubernetes", "urllib3")
    assert cause is None or isinstance(cause, ValueError) or type(cause).__module__.startswith(client)


def test_a_failing_clean_up_step_is_logged_not_raised(caplog):
    """Closing the client or releasing a connection after the answer is read never fails the run; what
    went wrong is kept as a debug log line (not swallowed)."""
    import logging

    from kubectl_svcnet.collect.api import _best_effort

    def broken() -> None:
        raise OSError("connection reset")

    with caplog.at_level(logging.DEBUG, logger="kubectl_svcnet.collect.api"):
        _best_effort(broken, "closing the API client")
    (rec,) = [r for r in caplog.records if r.name == "kubectl_svcnet.collect.api"]
    assert rec.getMessage() == "closing the API client failed" and "connection reset" in caplog.text
