"""The emulator: answers like kube-apiserver over HTTPS on 127.0.0.1 (tests only).

    with ApiEmulator.from_dir("examples/seed-cluster", workdir=tmp_path) as emu:
        session = api.connect(kubeconfig=emu.kubeconfig)
        ...
        assert emu.requests_to("/api/v1/pods")[0].query["limit"] == ["500"]

What it serves: GET list and get for core/v1 services, pods, nodes, endpoints, configmaps, namespaces,
discovery.k8s.io/v1 endpointslices, networking.k8s.io/v1 servicecidrs and apps/v1 daemonsets (served,
but not listed in /apis), cluster-wide and per namespace; pod logs (GET .../pods/<pod>/log with
container, tailLines, limitBytes; the text set with `set_pod_log`, RBAC on "pods/log"); discovery
(/api, /apis, /api/v1, /apis/<group>/<version>) and /version; label and field
selectors; limit/continue pagination with opaque tokens and remainingItemCount; 410 Expired for
expired continue tokens; bearer-token and client-certificate users, 401 for anyone else; an
authorization table (403 with RBAC's message); injected faults (status codes, delays, dropped
connections) on the Nth matching request; POST of Services (only with dryRun=All: validated and
allocated like the apiserver, nothing stored) and of Pods (PodSecurity admission by namespace
label, and an optional admission hook); DELETE of pods; the kubelet's part for pods (kubelet.py): a
created pod becomes Running after `pod_start_delay`, and pods/exec over a websocket (v5/v4.channel.k8s.io)
runs `exec_handler` or the argv in the node's network namespace (`exec_netns`). Every request is logged
(method, path, query, user, status).
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Pattern, Sequence, Set, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

from tests.apiemu import admission, kubelet
from tests.apiemu.certs import Pki
from tests.apiemu.selectors import SelectorError, parse_field_selector, parse_label_selector
from tests.apiemu.status import (
    EXPIRED_CONTINUE,
    already_exists,
    bad_request,
    forbidden,
    internal_error,
    method_not_supported,
    not_found,
    path_not_found,
    pod_forbidden,
    status,
    unauthorized,
)

GZIP_THRESHOLD = 128 * 1024  # kube-apiserver compresses answers larger than this when asked to


@dataclass(frozen=True)
class Resource:
    group_version: str  # "v1", "discovery.k8s.io/v1"
    plural: str
    kind: str
    namespaced: bool
    verbs: Tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
    short_names: Tuple[str, ...] = ()
    # False: served, but left out of /apis discovery (which older tests pin to the groups it listed).
    discovered: bool = True

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    @property
    def qualified(self) -> str:
        """`pods`, `endpointslices.discovery.k8s.io` (schema.GroupResource.String())."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: Tuple[Resource, ...] = (
    Resource("v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
    Resource("v1", "endpoints", "Endpoints", True, short_names=("ep",)),
    Resource("v1", "namespaces", "Namespace", False, short_names=("ns",)),
    Resource("v1", "nodes", "Node", False, short_names=("no",)),
    Resource("v1", "pods", "Pod", True, short_names=("po",)),
    Resource("v1", "services", "Service", True, short_names=("svc",)),
    Resource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True),
    Resource("networking.k8s.io/v1", "servicecidrs", "ServiceCIDR", False),
    Resource("apps/v1", "daemonsets", "DaemonSet", True, short_names=("ds",), discovered=False),
)
BY_KIND = {r.kind: r for r in RESOURCES}
BY_PATH = {(r.group_version, r.plural): r for r in RESOURCES}


@dataclass
class Request:
    """One logged request. `query` maps each parameter to its values, decoded; `raw_query` is the
    query string as sent (still percent-encoded)."""

    method: str
    path: str
    raw_query: str
    query: Dict[str, List[str]]
    user: Optional[str] = None
    status: Optional[int] = None
    body: Optional[Any] = None
    headers: Dict[str, str] = field(default_factory=dict)

    def q(self, name: str) -> Optional[str]:
        vals = self.query.get(name)
        return vals[0] if vals else None


@dataclass
class Fault:
    """Answer matching requests differently: from the `nth` match on, `times` times (None: always).

    `path` is an exact path or a compiled regex; `when` can look at the Request (e.g. only pages with a
    continue token). The answer is `status` with a Status body (`message`, `reason` defaults per code)
    or `body` verbatim; `delay` seconds first (delay alone = slow but normal answer); `drop` closes the
    connection without an answer."""

    path: Union[str, Pattern[str]]
    status: Optional[int] = None
    nth: int = 1
    times: Optional[int] = 1
    method: str = "GET"
    when: Optional[Callable[[Request], bool]] = None
    message: Optional[str] = None
    reason: Optional[str] = None
    body: Optional[Union[bytes, Dict[str, Any]]] = None
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False
    seen: int = 0
    fired: int = 0

    def matches(self, req: Request) -> bool:
        if self.method not in ("*", req.method):
            return False
        if isinstance(self.path, str):
            if self.path != req.path:
                return False
        elif not self.path.search(req.path):
            return False
        return self.when is None or bool(self.when(req))


@dataclass
class Rule:
    """An authorization rule; None matches anything. A rule for namespaces also covers the
    cluster-wide form of a namespaced request (listing pods in all namespaces includes "prod")."""

    users: Optional[Set[str]] = None
    verbs: Optional[Set[str]] = None
    resources: Optional[Set[str]] = None
    namespaces: Optional[Set[str]] = None

    def matches(self, user: str, verb: str, resource: str, namespace: str, deny: bool) -> bool:
        if self.users is not None and user not in self.users:
            return False
        if self.verbs is not None and verb not in self.verbs:
            return False
        if self.resources is not None and resource not in self.resources:
            return False
        if self.namespaces is not None:
            if namespace:
                return namespace in self.namespaces
            return deny  # cluster-wide: denied if any namespace is; allowed only by an unrestricted rule
        return True


Names = Union[None, str, Iterable[str]]


def _set(v: Names) -> Optional[Set[str]]:
    if v is None:
        return None
    return {v} if isinstance(v, str) else set(v)


@dataclass
class _Snapshot:
    items: List[Dict[str, Any]]
    rv: int
    created: float
    kind: str
    filtered: bool = False


class ApiEmulator:
    """A kube-apiserver stand-in. Start with `with` (or start()/stop()); `kubeconfig` is then a real
    kubeconfig file (bearer-token user); `write_kubeconfig(path, user="cert")` writes others."""

    DEFAULT_TOKEN = "svcnet-token"
    DEFAULT_USER = "system:serviceaccount:default:svcnet"
    CERT_USER = "kubernetes-admin"

    def __init__(
        self,
        objects: Iterable[Dict[str, Any]] = (),
        workdir: Optional[Union[str, Path]] = None,
        *,
        service_cidrs: Sequence[str] = ("10.96.0.0/12",),
        node_port_range: Tuple[int, int] = (30000, 32767),
        version: str = "v1.29.6",
        disabled: Iterable[str] = (),
        max_threads: int = 32,
        ip_range_in_message: bool = True,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir if workdir is not None else tempfile.mkdtemp(prefix="apiemu-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.service_cidrs = [ipaddress.ip_network(c) for c in service_cidrs]
        self.node_port_range = node_port_range
        self.version = version
        self.disabled: Set[str] = set(disabled)  # group versions not served, e.g. "discovery.k8s.io/v1"
        self.ip_range_in_message = ip_range_in_message  # False: v1.31+ allocator message without the range
        self.max_threads = max_threads
        self.tokens: Dict[str, Tuple[str, List[str]]] = {
            self.DEFAULT_TOKEN: (self.DEFAULT_USER, ["system:serviceaccounts", "system:authenticated"]),
        }
        self.allow_rules: Optional[List[Rule]] = None  # None: everyone may do everything not denied
        self.deny_rules: List[Rule] = []
        self.faults: List[Fault] = []
        # Continue tokens: expire after this many pages of one list, or when older than this (seconds);
        # `expire_times` bounds how often (None: every time). `expired_continue_token` adds the
        # inconsistent-continue token to the 410 Status, as etcd3's store does.
        self.expire_after_pages: Optional[int] = None
        self.continue_ttl: Optional[float] = None
        self.expire_times: Optional[int] = None
        self.expired_continue_token = False
        self._expired = 0
        self._lock = threading.RLock()
        self._store: Dict[Resource, Dict[Tuple[str, str], Dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._rv = 1000
        self._snapshots: Dict[str, _Snapshot] = {}
        self._log: List[Request] = []
        # Pod logs: (namespace, pod, container or "") -> text, served at .../pods/<pod>/log (set_pod_log).
        self._pod_logs: Dict[Tuple[str, str, str], str] = {}
        self.errors: List[str] = []  # handler failures (TLS handshakes refused by clients, ...)
        # The kubelet (kubelet.py): pods start `pod_start_delay` s after creation (None: never); exec runs
        # `exec_handler(call)` if set, else the argv in `exec_netns[node]` (lab, root); `execs` records each.
        self.pod_start_delay: Optional[float] = 0.0
        self.exec_handler: Optional[kubelet.ExecHandler] = None
        self.exec_netns: Dict[str, str] = {}
        self.unpullable: Dict[str, str] = {}  # image -> the registry's refusal (the pod stays in ErrImagePull)
        self.exec_protocols: Tuple[str, ...] = (kubelet.V5, kubelet.V4)
        self.execs: List[kubelet.ExecCall] = []
        # An extra admission step for pods (a validating webhook): (pod, namespace, name) -> a Status to
        # refuse with, or None.
        self.pod_admission: Optional[Callable[[Dict[str, Any], str, str], Optional[Dict[str, Any]]]] = None
        self._pod_created: Dict[Tuple[str, str], float] = {}
        self._pki = Pki.create()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._ensure_namespace(ns)
        self.add_all(objects)

    # -- objects ---------------------------------------------------------------------------------

    @classmethod
    def from_dir(cls, directory: Union[str, Path], workdir: Optional[Union[str, Path]] = None,
                 **kw: Any) -> ApiEmulator:  # fmt: skip
        """Objects from every *.json file of a snapshot directory (kubectl List files)."""
        objs: List[Dict[str, Any]] = []
        for p in sorted(Path(directory).glob("*.json")):
            doc = json.loads(p.read_text(encoding="utf-8"))
            objs.extend(doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc])
        return cls(objs, workdir, **kw)

    def add_all(self, objects: Iterable[Dict[str, Any]]) -> None:
        for o in objects:
            self.add(o)

    def add(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        """Store an object (as given; `kind` picks the resource). Returns the stored copy."""
        res = BY_KIND.get(str(obj.get("kind")))
        if res is None:
            raise ValueError(f"apiemu serves no kind {obj.get('kind')!r}")
        meta = dict(obj.get("metadata") or {})
        name = meta.get("name")
        if not name:
            raise ValueError("object without metadata.name")
        ns = (meta.get("namespace") or "default") if res.namespaced else ""
        with self._lock:
            self._rv += 1
            if res.namespaced:
                meta["namespace"] = ns
                self._ensure_namespace(ns)
            meta.setdefault("resourceVersion", str(self._rv))
            meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{res.qualified}/{ns}/{name}")))
            body = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion", "metadata")}
            stored = {"metadata": meta, **body}
            self._store[res][(ns, name)] = stored
            return stored

    def remove(self, kind: str, name: str, namespace: str = "default") -> None:
        res = BY_KIND[kind]
        with self._lock:
            self._store[res].pop((namespace if res.namespaced else "", name), None)

    def set_pod_log(self, namespace: str, pod: str, text: str, container: str = "") -> None:
        """What GET .../namespaces/<namespace>/pods/<pod>/log answers (for `container`, or for any
        container when ""). The pod must exist when the log is read (else 404, as the apiserver)."""
        with self._lock:
            self._pod_logs[(namespace, pod, container)] = text

    def objects(self, kind: str) -> List[Dict[str, Any]]:
        res = BY_KIND[kind]
        with self._lock:
            return [self._wire(res, o) for _, o in sorted(self._store[res].items())]

    def label_namespace(self, namespace: str, labels: Dict[str, str]) -> None:
        with self._lock:
            ns = self._ensure_namespace(namespace)
            ns["metadata"].setdefault("labels", {}).update(labels)

    def _ensure_namespace(self, ns: str) -> Dict[str, Any]:
        res = BY_KIND["Namespace"]
        got = self._store[res].get(("", ns))
        if got is None:
            got = self._store[res][("", ns)] = {
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns},
                             "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"namespaces/{ns}")),
                             "resourceVersion": "1", "creationTimestamp": "2025-01-06T09:00:00Z"},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }  # fmt: skip
        return got

    @staticmethod
    def _wire(res: Resource, obj: Dict[str, Any]) -> Dict[str, Any]:
        return {"kind": res.kind, "apiVersion": res.group_version, **obj}

    # -- policy and faults -----------------------------------------------------------------------

    def forbid(self, resources: Names = None, namespaces: Names = None, verbs: Names = None,
               users: Names = None) -> None:  # fmt: skip
        """Deny (403) e.g. `forbid("pods", "prod", "list")`; a namespace also denies the all-namespaces form."""
        self.deny_rules.append(Rule(_set(users), _set(verbs), _set(resources), _set(namespaces)))

    def allow(self, resources: Names = None, namespaces: Names = None, verbs: Names = None,
              users: Names = None) -> None:  # fmt: skip
        """Switch to an allow-list (the first call denies everything else) and allow this."""
        if self.allow_rules is None:
            self.allow_rules = []
        self.allow_rules.append(Rule(_set(users), _set(verbs), _set(resources), _set(namespaces)))

    def fault(self, path: Union[str, Pattern[str]], status: Optional[int] = None, **kw: Any) -> Fault:
        f = Fault(path, status, **kw)
        with self._lock:
            self.faults.append(f)
        return f

    # -- log ---------------------------------------------------------------------------------------

    @property
    def requests(self) -> List[Request]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str, method: str = "GET") -> List[Request]:
        return [r for r in self.requests if r.path == path and r.method == method]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the emulator is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def start(self) -> ApiEmulator:
        if self._server is not None:
            return self
        self.ca_file.write_bytes(self._pki.ca_pem)
        cert, key = self._pki.issue("kube-apiserver", server_names=("localhost", "kubernetes"),
                                    server_ips=("127.0.0.1",))  # fmt: skip
        (self.workdir / "apiserver.crt").write_bytes(cert)
        (self.workdir / "apiserver.key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.workdir / "apiserver.crt"), str(self.workdir / "apiserver.key"))
        ctx.load_verify_locations(str(self.ca_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # client certificates authenticate, tokens too
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self, ctx, self.max_threads)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="apiemu", daemon=True)  # fmt: skip
        self._thread.start()
        self.write_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ApiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- kubeconfig --------------------------------------------------------------------------------

    def client_cert(self, user: str = CERT_USER, groups: Sequence[str] = ("system:masters",)) -> Tuple[bytes, bytes]:
        return self._pki.issue(user, orgs=groups)

    def write_kubeconfig(
        self,
        path: Union[str, Path],
        user: str = "token",
        context: str = "emu",
        namespace: Optional[str] = None,
        cluster: str = "emu",
        token: Optional[str] = None,
        server: Optional[str] = None,
        user_entry: Optional[Dict[str, Any]] = None,
    ) -> Path:
        """A kubeconfig for this emulator: `user` "token" (bearer token), "cert" (client certificate
        and key, embedded) or "none"; `user_entry` replaces the user section (e.g. an exec plugin)."""
        import yaml

        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        if user_entry is not None:
            u: Dict[str, Any] = user_entry
        elif user == "token":
            u = {"token": token or self.DEFAULT_TOKEN}
        elif user == "cert":
            cert, key = self.client_cert()
            u = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
        else:
            u = {}
        user_name = f"{context}-user"
        ctx: Dict[str, Any] = {"cluster": cluster, "user": user_name}
        if namespace:
            ctx["namespace"] = namespace
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": server or self.url,
                                                       "certificate-authority-data": b64(self._pki.ca_pem)}}],
            "users": [{"name": user_name, "user": u}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
            "preferences": {},
        }  # fmt: skip
        path = Path(path)
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        os.chmod(path, 0o600)
        return path

    # -- request handling (called from handler threads) ----------------------------------------------

    def _authenticate(self, headers: Any, peercert: Optional[Dict[str, Any]]) -> Optional[Tuple[str, List[str]]]:
        scheme, _, token = (headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() == "bearer":  # as the apiserver's bearer-token authenticator: any case
            return self.tokens.get(token.strip())
        if peercert:
            cn, orgs = None, []
            for rdn in peercert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
                    elif k == "organizationName":
                        orgs.append(v)
            if cn:
                return cn, orgs + ["system:authenticated"]
        return None

    def _authorized(self, user: str, groups: List[str], verb: str, res: Resource, namespace: str) -> bool:
        if "system:masters" in groups:
            return True
        if any(r.matches(user, verb, res.plural, namespace, True) for r in self.deny_rules):
            return False
        if self.allow_rules is None:
            return True
        return any(r.matches(user, verb, res.plural, namespace, False) for r in self.allow_rules)

    def _fault_for(self, req: Request) -> Optional[Fault]:
        with self._lock:
            for f in self.faults:
                if not f.matches(req):
                    continue
                f.seen += 1
                if f.seen >= f.nth and (f.times is None or f.fired < f.times):
                    f.fired += 1
                    return f
        return None

    def handle(self, req: Request, headers: Any, peercert: Optional[Dict[str, Any]],
               body: bytes) -> Tuple[int, Any, str]:  # fmt: skip
        """-> (status, body dict or bytes, content type). Runs in a handler thread."""
        who = self._authenticate(headers, peercert)
        if who is None:
            return 401, unauthorized(), "application/json"
        req.user = who[0]
        fault = self._fault_for(req)
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.drop:
                raise _Drop()
            if fault.status is not None:
                if fault.body is not None:
                    return fault.status, fault.body, fault.content_type
                if fault.status == 500 and fault.reason is None:
                    return 500, internal_error(fault.message or "injected fault"), "application/json"
                reason = fault.reason or _REASONS.get(fault.status, "")
                body_ = status(fault.status, reason, fault.message or f"injected {fault.status}")
                return fault.status, body_, "application/json"
        self._kubelet_sync()
        try:
            return self._route(req, who, body)
        except SelectorError as e:
            return 400, bad_request(str(e)), "application/json"

    def _route(self, req: Request, who: Tuple[str, List[str]], body: bytes) -> Tuple[int, Any, str]:
        path = req.path.rstrip("/") or "/"
        if req.method == "GET":
            if path == "/version":
                return 200, self._version(), "application/json"
            if path == "/api":
                return (
                    200,
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                        ],
                    },
                    "application/json",
                )
            if path == "/apis":
                return 200, self._group_list(), "application/json"
            m = re.fullmatch(r"/api/v1|/apis/([^/]+/[^/]+)", path)
            if m:
                gv = m.group(1) or "v1"
                if gv in self.disabled or not any(r.group_version == gv for r in RESOURCES):
                    return 404, path_not_found(), "application/json"
                return 200, self._resource_list(gv), "application/json"
        m = re.fullmatch(r"/api/v1(/.*)|/apis/([^/]+/[^/]+)(/.*)", path)
        if not m:
            return 404, path_not_found(), "application/json"
        gv, rest = ("v1", m.group(1)) if m.group(1) is not None else (m.group(2), m.group(3))
        if gv in self.disabled:
            return 404, path_not_found(), "application/json"
        parts = [unquote(p) for p in rest.strip("/").split("/")]
        ns = ""
        if len(parts) >= 3 and parts[0] == "namespaces":
            ns, parts = parts[1], parts[2:]
        if gv == "v1" and ns and len(parts) == 3 and parts[0] == "pods" and parts[2] == "log":
            return self._pod_log(req, who, ns, parts[1])
        if gv == "v1" and ns and len(parts) == 3 and parts[0] == "pods" and parts[2] == "exec":
            return self._pod_exec(req, who, ns, parts[1])
        if not parts or len(parts) > 2:
            return 404, path_not_found(), "application/json"
        res = BY_PATH.get((gv, parts[0]))
        if res is None or (ns and not res.namespaced):
            return 404, path_not_found(), "application/json"
        name = parts[1] if len(parts) == 2 else ""
        verb = {"GET": "get" if name else "list", "POST": "create", "DELETE": "delete"}.get(req.method, "")
        if not verb or (req.method == "POST" and name):
            return 405, method_not_supported(res, req.method.lower()), "application/json"
        if req.method == "POST" and not res.namespaced:
            return 405, method_not_supported(res, "create"), "application/json"
        if req.method == "POST" and not ns:
            return 404, path_not_found(), "application/json"
        if not self._authorized(who[0], who[1], verb, res, ns):
            return 403, forbidden(res, name, who[0], verb, ns), "application/json"
        if verb == "list":
            return self._list(req, res, ns)
        if verb == "get":
            with self._lock:
                obj = self._store[res].get((ns, name))
            if obj is None:
                return 404, not_found(res, name), "application/json"
            return 200, self._wire(res, obj), "application/json"
        if verb == "delete":
            with self._lock:
                obj = self._store[res].pop((ns, name), None)
            if obj is None:
                return 404, not_found(res, name), "application/json"
            return 200, self._wire(res, obj), "application/json"
        try:
            doc = json.loads(body or b"{}")
        except ValueError as e:
            return 400, bad_request(f"error decoding body: {e}"), "application/json"
        if not isinstance(doc, dict):
            return 400, bad_request("the body is not an object"), "application/json"
        req.body = doc
        return self._create(req, res, ns, doc, who)

    def _pod_log(self, req: Request, who: Tuple[str, List[str]], ns: str, name: str) -> Tuple[int, Any, str]:
        """GET pods/<name>/log: the text set with set_pod_log; `container` must name one of the pod's
        containers (and is required when it has several), `tailLines` keeps the last lines,
        `limitBytes` cuts the answer; RBAC on the subresource "pods/log"."""
        log_res = Resource("v1", "pods/log", "Pod", True)
        if req.method != "GET":
            return 405, method_not_supported(log_res, req.method.lower()), "application/json"
        if not self._authorized(who[0], who[1], "get", log_res, ns):
            why = f'User "{who[0]}" cannot get resource "pods/log" in API group "" in the namespace "{ns}"'
            return 403, pod_forbidden(name, why), "application/json"
        with self._lock:
            pod = self._store[BY_KIND["Pod"]].get((ns, name))
        if pod is None:
            return 404, not_found(BY_KIND["Pod"], name), "application/json"
        containers = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.q("container") or ""
        if not container:
            if len(containers) != 1:
                return 400, bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                        f"[{' '.join(containers)}]"), "application/json"  # fmt: skip
            container = containers[0]
        elif container not in containers:
            return 400, bad_request(f"container {container} is not valid for pod {name}"), "application/json"
        with self._lock:
            text = self._pod_logs.get((ns, name, container), self._pod_logs.get((ns, name, ""), ""))
        lines = text.splitlines(keepends=True)
        tail, limit = req.q("tailLines"), req.q("limitBytes")
        try:
            if tail is not None:
                lines = lines[max(len(lines) - int(tail), 0) :] if int(tail) > 0 else []
            data = "".join(lines).encode()
            if limit is not None:
                data = data[: int(limit)]
        except ValueError:
            return 400, bad_request("invalid tailLines or limitBytes"), "application/json"
        return 200, data, "text/plain"

    def _kubelet_sync(self) -> None:
        """Every created pod as its kubelet would have moved it on by now (kubelet.sync_pod)."""
        now = time.monotonic()
        with self._lock:
            pods = self._store[BY_KIND["Pod"]]
            for key, created in list(self._pod_created.items()):
                pod = pods.get(key)
                if pod is None:
                    del self._pod_created[key]
                    continue
                node = self._store[BY_KIND["Node"]].get(("", (pod.get("spec") or {}).get("nodeName") or ""))
                addrs = ((node or {}).get("status") or {}).get("addresses") or []
                ip = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), "") or "10.0.0.1"
                kubelet.sync_pod(pod, now - created, self.pod_start_delay, ip, self.unpullable)

    def _pod_exec(self, req: Request, who: Tuple[str, List[str]], ns: str, name: str) -> Tuple[int, Any, str]:
        """GET pods/<name>/exec with Upgrade: websocket: refusals as HTTP Status answers, else
        kubelet.Upgrade (the handler switches protocols and serves the exec). RBAC: "get" on pods/exec (a
        websocket exec is a GET), and "create" as well from v1.35 (AuthorizePodWebsocketUpgradeCreatePermission)."""
        exec_res = Resource("v1", "pods/exec", "Pod", True)
        if req.method not in ("GET", "POST"):
            return 405, method_not_supported(exec_res, req.method.lower()), "application/json"
        m = re.match(r"v(\d+)\.(\d+)", self.version)
        verbs = ["get", "create"] if m and (int(m.group(1)), int(m.group(2))) >= (1, 35) else ["get"]
        for verb in verbs:
            if not self._authorized(who[0], who[1], verb, exec_res, ns):
                why = f'User "{who[0]}" cannot {verb} resource "pods/exec" in API group "" in the namespace "{ns}"'
                return 403, pod_forbidden(name, why), "application/json"
        with self._lock:
            pod = copy.deepcopy(self._store[BY_KIND["Pod"]].get((ns, name)))
        if pod is None:
            return 404, not_found(BY_KIND["Pod"], name), "application/json"
        argv = req.query.get("command") or []
        if not argv:
            return 400, bad_request("you must specify at least 1 command"), "application/json"
        spec = pod.get("spec") or {}
        containers = [str(c.get("name")) for c in spec.get("containers") or []]
        container = req.q("container") or (containers[0] if len(containers) == 1 else "")
        if container not in containers:
            return 400, bad_request(f"container {container} is not valid for pod {name}"), "application/json"
        if (pod.get("status") or {}).get("phase") != "Running":
            return 400, bad_request(f'unable to upgrade connection: container not found ("{container}")'), \
                "application/json"  # fmt: skip
        if (req.headers.get("Upgrade") or req.headers.get("upgrade") or "").lower() != "websocket":
            return 400, bad_request("Upgrade request required"), "application/json"
        offered = req.headers.get("Sec-WebSocket-Protocol") or req.headers.get("sec-websocket-protocol") or ""
        protocol = kubelet.choose_protocol(offered, self.exec_protocols)
        if protocol is None:
            return 400, bad_request(f"unable to upgrade: unable to negotiate protocol: client supports {offered!r},"
                                    f" server supports {list(self.exec_protocols)}"), "application/json"  # fmt: skip
        call = kubelet.ExecCall(ns, name, str(spec.get("nodeName") or ""), container, list(argv), protocol)
        with self._lock:
            self.execs.append(call)
        raise kubelet.Upgrade(call)

    def _version(self) -> Dict[str, Any]:
        m = re.match(r"v(\d+)\.(\d+)", self.version)
        major, minor = (m.group(1), m.group(2)) if m else ("1", "29")
        return {"major": major, "minor": minor, "gitVersion": self.version,
                "gitCommit": hashlib.sha1(self.version.encode()).hexdigest(), "gitTreeState": "clean",
                "buildDate": "2024-06-11T20:22:13Z", "goVersion": "go1.21.11", "compiler": "gc",
                "platform": "linux/amd64"}  # fmt: skip

    def _group_list(self) -> Dict[str, Any]:
        groups: Dict[str, List[str]] = {}
        for r in RESOURCES:
            if r.group and r.group_version not in self.disabled and r.discovered:
                groups.setdefault(r.group, [])
                if r.group_version not in groups[r.group]:
                    groups[r.group].append(r.group_version)
        out = []
        for g, gvs in groups.items():
            versions = [{"groupVersion": gv, "version": gv.rpartition("/")[2]} for gv in gvs]
            out.append({"name": g, "versions": versions, "preferredVersion": versions[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}

    def _resource_list(self, gv: str) -> Dict[str, Any]:
        resources = [
            {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind,
             "verbs": list(r.verbs), **({"shortNames": list(r.short_names)} if r.short_names else {})}
            for r in RESOURCES if r.group_version == gv
        ]  # fmt: skip
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    # -- list with pagination ------------------------------------------------------------------------

    def _list(self, req: Request, res: Resource, ns: str) -> Tuple[int, Any, str]:
        limit_s = req.q("limit")
        try:
            limit = int(limit_s) if limit_s else 0
        except ValueError:
            return 400, bad_request(f"invalid limit: {limit_s!r}"), "application/json"
        token = req.q("continue")
        if token:
            snap, start, page = self._decode_continue(token)
            if snap is None:
                return 400, bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                        "(version meta.k8s.io/v1)"), "application/json"  # fmt: skip
            if self._continue_expired(snap, page):
                extra = {"continue": self._encode_continue(token, snap, start, page)} if self.expired_continue_token \
                    else {}  # fmt: skip
                return 410, status(410, "Expired", EXPIRED_CONTINUE, metadata=extra), "application/json"
            items, rv = snap.items, snap.rv
        else:
            labels = parse_label_selector(req.q("labelSelector"))
            fields = parse_field_selector(req.q("fieldSelector"), res.kind)
            with self._lock:
                rv = self._rv
                items = [
                    o for (ons, _), o in sorted(self._store[res].items())
                    if (not ns or ons == ns) and labels((o.get("metadata") or {}).get("labels") or {})
                    and fields(self._wire(res, o))
                ]  # fmt: skip
            start, page = 0, 0
            snap = _Snapshot(
                items, rv, time.monotonic(), res.kind, bool(req.q("labelSelector") or req.q("fieldSelector"))
            )
        meta: Dict[str, Any] = {"resourceVersion": str(rv)}
        end = len(items) if not limit else min(len(items), start + limit)
        if end < len(items):
            meta["continue"] = self._encode(self._remember(snap), end, page + 1)
            if not snap.filtered:  # with a selector the apiserver cannot know how many remain
                meta["remainingItemCount"] = len(items) - end
        body = {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta,
                "items": items[start:end]}  # fmt: skip
        return 200, body, "application/json"

    def _remember(self, snap: _Snapshot) -> str:
        with self._lock:
            for k, s in self._snapshots.items():
                if s is snap:
                    return k
            list_id = uuid.uuid4().hex[:12]
            self._snapshots[list_id] = snap
            while len(self._snapshots) > 64:
                self._snapshots.pop(next(iter(self._snapshots)))
            return list_id

    @staticmethod
    def _encode(list_id: str, start: int, page: int) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "list": list_id, "start": start, "page": page}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _encode_continue(self, token: str, snap: _Snapshot, start: int, page: int) -> str:
        fresh = _Snapshot(list(snap.items), self._rv, time.monotonic(), snap.kind, snap.filtered)
        return self._encode(self._remember(fresh), start, 0)

    def _decode_continue(self, token: str) -> Tuple[Optional[_Snapshot], int, int]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            doc = json.loads(raw)
            with self._lock:
                return self._snapshots.get(doc["list"]), int(doc["start"]), int(doc["page"])
        except (ValueError, KeyError, TypeError):
            return None, 0, 0

    def _continue_expired(self, snap: _Snapshot, page: int) -> bool:
        with self._lock:
            if self.expire_times is not None and self._expired >= self.expire_times:
                return False
            old = self.continue_ttl is not None and time.monotonic() - snap.created > self.continue_ttl
            late = self.expire_after_pages is not None and page >= self.expire_after_pages
            if old or late:
                self._expired += 1
                return True
            return False

    # -- create ----------------------------------------------------------------------------------------

    def _create(self, req: Request, res: Resource, ns: str, doc: Dict[str, Any],
                who: Tuple[str, List[str]]) -> Tuple[int, Any, str]:  # fmt: skip
        dry_run = req.query.get("dryRun", [])
        if any(v != "All" for v in dry_run):
            return 400, bad_request(f'Invalid dry run value: "{dry_run[0]}"'), "application/json"
        meta = dict(doc.get("metadata") or {})
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        if res.kind == "Service":
            if not dry_run:
                # The emulator never creates Services: the tool may only ask with dryRun=All.
                return 403, status(403, "Forbidden", f'services "{name}" is forbidden: apiemu refuses to create a '
                                   f"Service without dryRun=All", details={"name": name, "kind": "services"}), \
                    "application/json"  # fmt: skip
            with self._lock:
                existing = list(self._store[res].values())
                exists = (ns, name) in self._store[res]
            if exists:
                return 409, already_exists(res, name), "application/json"
            code, out = admission.create_service(doc, ns, name, existing, self.service_cidrs, self.node_port_range,
                                                 self.ip_range_in_message)  # fmt: skip
            return code, out, "application/json"
        if res.kind == "Pod":
            with self._lock:
                ns_obj = self._store[BY_KIND["Namespace"]].get(("", ns))
                exists = (ns, name) in self._store[res]
            if ns_obj is None:
                return 404, not_found(BY_KIND["Namespace"], ns), "application/json"
            rejection = admission.pod_security(doc, name, (ns_obj.get("metadata") or {}).get("labels") or {})
            if rejection is not None:
                return 403, rejection, "application/json"
            if self.pod_admission is not None:
                refused = self.pod_admission(doc, ns, name)
                if refused is not None:
                    return int(refused.get("code") or 403), refused, "application/json"
            if exists:
                return 409, already_exists(res, name), "application/json"
            obj = admission.default_pod(doc, ns, name)
            if not dry_run:
                obj = self.add(self._wire(res, obj))
                with self._lock:
                    self._pod_created[(ns, name)] = time.monotonic()
            return 201, self._wire(res, obj), "application/json"
        return 405, method_not_supported(res, "create"), "application/json"


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}  # fmt: skip


class _Drop(Exception):
    """Close the connection without an answer."""


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, addr: Tuple[str, int], handler: Any, emu: ApiEmulator, ctx: ssl.SSLContext,
                 max_threads: int) -> None:  # fmt: skip
        self.emu = emu
        self.ssl_ctx = ctx
        self._slots = threading.BoundedSemaphore(max_threads)
        self._conns: Set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def get_request(self) -> Tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # The handshake happens in the handler thread, so a stuck client never blocks accept().
        return self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.1):  # bounded: at most max_threads connections at once
            if self.emu._stopping.is_set():
                self.shutdown_request(request)
                return
        with self._conns_lock:
            self._conns.add(request)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: Any) -> None:
        with self._conns_lock:
            if request in self._conns:
                self._conns.discard(request)
                self._slots.release()

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.emu.errors.append(f"{type(sys.exc_info()[1]).__name__}: {sys.exc_info()[1]}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "apiemu"
    sys_version = ""
    timeout = 30
    server: _Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle/delayed-ACK stall
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        emu = self.server.emu
        parts = urlsplit(self.path)
        req = Request(method, parts.path, parts.query, parse_qs(parts.query, keep_blank_values=True),
                      headers={k: v for k, v in self.headers.items()})  # fmt: skip
        with emu._lock:
            emu._log.append(req)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            peer = self.connection.getpeercert()
        except (ValueError, ssl.SSLError):
            peer = None
        try:
            code, payload, ctype = emu.handle(req, self.headers, peer, body)
        except kubelet.Upgrade as up:  # pods/exec: switch to the websocket and serve the exec on it
            req.status = 101
            self.close_connection = True
            kubelet.handshake(self, up.call)
            self.connection.settimeout(30)
            kubelet.WebSocketExec(self.connection, up.call, emu.exec_handler, emu.exec_netns.get(up.call.node),
                                  emu._stopping).serve()  # fmt: skip
            return
        except _Drop:
            req.status = 0
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        except Exception as e:  # an emulator bug: answer like the apiserver would, and remember it
            emu.errors.append(f"{type(e).__name__}: {e}")
            code, payload, ctype = 500, internal_error(f"apiemu: {type(e).__name__}: {e}"), "application/json"
        req.status = code
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        if "gzip" in (self.headers.get("Accept-Encoding") or "") and len(data) > GZIP_THRESHOLD:
            data = gzip.compress(data, 1)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
