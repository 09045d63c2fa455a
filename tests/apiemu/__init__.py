"""apiemu: a kube-apiserver stand-in for tests (HTTPS on 127.0.0.1, a CA of its own, a real
kubeconfig). Never part of the package: kubectl_svcnet must not import it. See server.py."""

from tests.apiemu.server import ApiEmulator, Fault, Request, Rule
from tests.apiemu.status import EXPIRED_CONTINUE

__all__ = ["ApiEmulator", "EXPIRED_CONTINUE", "Fault", "Request", "Rule", "endpoints_from_slices", "isolate_client_env"]

# What would send the kubernetes client elsewhere than the emulator: proxies, a real kubeconfig, the
# in-cluster environment of a pod.
CLIENT_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "KUBECONFIG",
              "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE")  # fmt: skip


def isolate_client_env(monkeypatch, home) -> None:
    """A test's client talks to the emulator only: no proxy (traffic stays on 127.0.0.1), no real
    kubeconfig, no in-cluster environment, and `home` (a directory) as HOME."""
    for var in CLIENT_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(home))


def endpoints_from_slices(slices):
    """core/v1 Endpoints for EndpointSlices, as the endpoint controllers keep them in step (for
    emulating a server without discovery.k8s.io/v1)."""
    by_svc = {}
    for s in slices:
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            continue
        ns = meta.get("namespace") or "default"
        ports = [{k: p[k] for k in ("name", "port", "protocol") if p.get(k) is not None} for p in s.get("ports") or []]
        ready, not_ready = [], []
        for e in s.get("endpoints") or []:
            ok = (e.get("conditions") or {}).get("ready", True) is not False
            for ip in e.get("addresses") or []:
                a = {"ip": ip}
                if e.get("nodeName"):
                    a["nodeName"] = e["nodeName"]
                if e.get("targetRef"):
                    a["targetRef"] = e["targetRef"]
                (ready if ok else not_ready).append(a)
        subsets = []
        if ports and (ready or not_ready):
            sub = {"ports": ports}
            if ready:
                sub["addresses"] = ready
            if not_ready:
                sub["notReadyAddresses"] = not_ready
            subsets.append(sub)
        key = (ns, svc)
        labels = dict(meta.get("labels") or {})
        ep = by_svc.setdefault(key, {"apiVersion": "v1", "kind": "Endpoints",
                                     "metadata": {"name": svc, "namespace": ns, "labels": labels},
                                     "subsets": []})  # fmt: skip
        ep["metadata"]["labels"].pop("kubernetes.io/service-name", None)
        ep["metadata"]["labels"].pop("endpointslice.kubernetes.io/managed-by", None)
        ep["subsets"].extend(subsets)
    for ep in by_svc.values():
        if not ep["subsets"]:
            del ep["subsets"]
    return list(by_svc.values())
