#!/usr/bin/env python3
"""Write examples/seed-cluster/ — the README's demo snapshot — from one description of the cluster.

    sudo python3 tools/make_seed_cluster.py [OUT_DIR]      # default: examples/seed-cluster
    python3 tools/make_seed_cluster.py --json-only [OUT]   # the API objects only (no root needed)

The cluster is the textbook kubeadm one: controlplane, node01, node02 (192.168.56.10-12, pod CIDRs
10.244.{0,1,2}.0/24), service range 10.96.0.0/12, pod range 10.244.0.0/16, kube-proxy in iptables mode.
Everything is derived from `CLUSTER` below, deterministically (UIDs are uuid5 of the object's name,
timestamps fixed):

- ``*.json`` — the API objects as ``kubectl get ... -o json`` prints them (``"kind": "List"``).
- ``nodes/<node>/iptables-save.txt`` — real ``iptables-save`` output (this machine's iptables, the
  nf_tables backend) of a throw-away network namespace loaded the way a node's kube-proxy v1.29+
  loads it: canary chains and jump rules, then the rules `tests.kpwriter.write_iptables` writes for
  that node (an endpoint is local when its nodeName is that node; the local-traffic detector is the
  cluster CIDR). kubelet's KUBE-KUBELET-CANARY chains are there too, as on a node. Timestamps fixed.

Needs root for the namespaces (``ip netns``); it never touches the root namespace's rules.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "examples" / "seed-cluster"
K8S_VERSION = "v1.29.6"
UID_NS = uuid.UUID("6f1c2a8e-5b7d-4e21-9d3a-2c4b8e9f0a11")

# ---- the one description of the cluster -----------------------------------------------------------

CLUSTER: Dict[str, Any] = {
    "service_cidr": "10.96.0.0/12",
    "pod_cidr": "10.244.0.0/16",
    "dns_domain": "cluster.local",
    "nodes": [
        {"name": "controlplane", "ip": "192.168.56.10", "pod_cidr": "10.244.0.0/24", "control_plane": True},
        {"name": "node01", "ip": "192.168.56.11", "pod_cidr": "10.244.1.0/24"},
        {"name": "node02", "ip": "192.168.56.12", "pod_cidr": "10.244.2.0/24"},
    ],
    # Application and add-on pods (the control plane's static pods and kube-proxy are added below).
    "pods": [
        {"ns": "kube-system", "name": "coredns-76f75df574-8xk2p", "node": "controlplane", "ip": "10.244.0.2",
         "labels": {"k8s-app": "kube-dns", "pod-template-hash": "76f75df574"},
         "owner": ("ReplicaSet", "coredns-76f75df574"), "image": "registry.k8s.io/coredns/coredns:v1.11.1",
         "ports": [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]},
        {"ns": "kube-system", "name": "coredns-76f75df574-q7wzd", "node": "controlplane", "ip": "10.244.0.3",
         "labels": {"k8s-app": "kube-dns", "pod-template-hash": "76f75df574"},
         "owner": ("ReplicaSet", "coredns-76f75df574"), "image": "registry.k8s.io/coredns/coredns:v1.11.1",
         "ports": [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]},
        {"ns": "default", "name": "db", "node": "node01", "ip": "10.244.1.2", "labels": {"app": "db"},
         "image": "mysql:8.0", "ports": [("", 3306, "TCP")]},
        {"ns": "default", "name": "web-7c5ddbdf54-2lq9v", "node": "node01", "ip": "10.244.1.3",
         "labels": {"app": "web", "pod-template-hash": "7c5ddbdf54"},
         "owner": ("ReplicaSet", "web-7c5ddbdf54"), "image": "nginxdemos/hello:plain-text",
         "ports": [("", 8080, "TCP")]},
        {"ns": "default", "name": "web-7c5ddbdf54-h8r4m", "node": "node02", "ip": "10.244.2.2",
         "labels": {"app": "web", "pod-template-hash": "7c5ddbdf54"},
         "owner": ("ReplicaSet", "web-7c5ddbdf54"), "image": "nginxdemos/hello:plain-text",
         "ports": [("", 8080, "TCP")]},
        {"ns": "default", "name": "web-7c5ddbdf54-x6tcn", "node": "node02", "ip": "10.244.2.3",
         "labels": {"app": "web", "pod-template-hash": "7c5ddbdf54"},
         "owner": ("ReplicaSet", "web-7c5ddbdf54"), "image": "nginxdemos/hello:plain-text",
         "ports": [("", 8080, "TCP")]},
    ],
    "services": [
        {"ns": "default", "name": "kubernetes", "type": "ClusterIP", "cluster_ip": "10.96.0.1",
         "labels": {"component": "apiserver", "provider": "kubernetes"},
         "ports": [{"name": "https", "port": 443, "target": 6443, "protocol": "TCP"}],
         # no selector: the apiserver keeps its own EndpointSlice
         "endpoints": [{"ip": "192.168.56.10", "node": None, "pod": None}]},
        {"ns": "kube-system", "name": "kube-dns", "type": "ClusterIP", "cluster_ip": "10.96.0.10",
         "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS"},
         "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
         "selector": {"k8s-app": "kube-dns"},
         "ports": [{"name": "dns", "port": 53, "target": 53, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 53, "target": 53, "protocol": "TCP"},
                   {"name": "metrics", "port": 9153, "target": 9153, "protocol": "TCP"}]},
        {"ns": "default", "name": "db-service", "type": "ClusterIP", "cluster_ip": "10.103.132.104",
         "selector": {"app": "db"},
         "ports": [{"name": "", "port": 3306, "target": 3306, "protocol": "TCP"}]},
        {"ns": "default", "name": "web", "type": "NodePort", "cluster_ip": "10.104.20.30",
         "selector": {"app": "web"},
         "ports": [{"name": "", "port": 80, "target": 8080, "protocol": "TCP", "node_port": 30080}]},
        {"ns": "default", "name": "cache", "type": "ClusterIP", "cluster_ip": "10.109.5.5",
         "selector": {"app": "cache"},
         "ports": [{"name": "", "port": 6379, "target": 6379, "protocol": "TCP"}]},
        # externalTrafficPolicy Local: traffic from outside is served only by the node's own web pods
        # (none on controlplane: dropped there), clients inside the cluster reach all three.
        {"ns": "default", "name": "web-lb", "type": "LoadBalancer", "cluster_ip": "10.98.77.40",
         "selector": {"app": "web"}, "external_traffic_policy": "Local", "lb_ip": "192.168.56.240",
         "health_check_node_port": 31452,
         "ports": [{"name": "http", "port": 80, "target": 8080, "protocol": "TCP", "node_port": 31380}]},
    ],
}

# ---- deterministic metadata --------------------------------------------------------------------------

_rv = [4000]


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(UID_NS, "/".join(parts)))


def _resource_version() -> str:
    _rv[0] += 37
    return str(_rv[0])


CREATED_CLUSTER = "2025-01-06T09:00:00Z"
CREATED_WORKERS = "2025-01-06T09:04:12Z"
CREATED_APPS = "2025-01-06T09:20:31Z"


def _meta(kind: str, name: str, ns: Optional[str] = None, created: str = CREATED_APPS,
          labels: Optional[Dict[str, str]] = None, annotations: Optional[Dict[str, str]] = None,
          **extra: Any) -> Dict[str, Any]:
    m: Dict[str, Any] = {}
    if annotations:
        m["annotations"] = dict(annotations)
    m["creationTimestamp"] = created
    m.update({k: v for k, v in extra.items() if k in ("generateName",)})
    if labels:
        m["labels"] = dict(labels)
    m["name"] = name
    if ns:
        m["namespace"] = ns
    if "ownerReferences" in extra:
        m["ownerReferences"] = extra["ownerReferences"]
    m["resourceVersion"] = _resource_version()
    m["uid"] = _uid(kind, ns or "", name)
    return dict(sorted(m.items()))


def _list(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def _node_by_name(name: str) -> Dict[str, Any]:
    return next(n for n in CLUSTER["nodes"] if n["name"] == name)


def _matches(selector: Optional[Dict[str, str]], labels: Dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---- objects ----------------------------------------------------------------------------------------


def make_nodes() -> List[Dict[str, Any]]:
    out = []
    for n in CLUSTER["nodes"]:
        cp = n.get("control_plane", False)
        labels = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": n["name"],
            "kubernetes.io/os": "linux",
        }
        if cp:
            labels["node-role.kubernetes.io/control-plane"] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        spec: Dict[str, Any] = {"podCIDR": n["pod_cidr"], "podCIDRs": [n["pod_cidr"]]}
        if cp:
            spec["taints"] = [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}]
        created = CREATED_CLUSTER if cp else CREATED_WORKERS
        hb = "2025-01-08T14:32:05Z"
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        out.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": _meta("Node", n["name"], created=created, labels=labels, annotations={
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            }),
            "spec": spec,
            "status": {
                "addresses": [{"address": n["ip"], "type": "InternalIP"},
                              {"address": n["name"], "type": "Hostname"}],
                "allocatable": {"cpu": "2", "ephemeral-storage": "37569620724", "hugepages-2Mi": "0",
                                "memory": "3922456Ki", "pods": "110"},
                "capacity": {"cpu": "2", "ephemeral-storage": "40764900Ki", "hugepages-2Mi": "0",
                             "memory": "4024856Ki", "pods": "110"},
                "conditions": [
                    {"lastHeartbeatTime": hb, "lastTransitionTime": created, "message": msg, "reason": reason,
                     "status": status, "type": typ}
                    for typ, status, reason, msg in conditions
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": _uid("boot", n["name"]),
                    "containerRuntimeVersion": "containerd://1.7.12",
                    "kernelVersion": "5.15.0-119-generic",
                    "kubeProxyVersion": K8S_VERSION,
                    "kubeletVersion": K8S_VERSION,
                    "machineID": _uid("machine", n["name"]).replace("-", ""),
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 22.04.4 LTS",
                    "systemUUID": _uid("system", n["name"]),
                },
            },
        })
    return out


def _container(name: str, image: str, command: Optional[List[str]] = None,
               ports: Optional[List[Any]] = None) -> Dict[str, Any]:
    c: Dict[str, Any] = {}
    if command:
        c["command"] = command
    c["image"] = image
    c["imagePullPolicy"] = "IfNotPresent"
    c["name"] = name
    if ports:
        c["ports"] = [dict(sorted({"containerPort": p, "protocol": proto, **({"name": pn} if pn else {})}.items()))
                      for pn, p, proto in ports]
    c["resources"] = {}
    c["terminationMessagePath"] = "/dev/termination-log"
    c["terminationMessagePolicy"] = "File"
    return c


def _pod(ns: str, name: str, node: str, ip: str, containers: List[Dict[str, Any]], labels: Dict[str, str],
         owner: Optional[Any] = None, host_network: bool = False, created: str = CREATED_APPS,
         priority_class: Optional[str] = None, annotations: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    extra: Dict[str, Any] = {}
    if owner:
        kind, oname = owner
        api = "apps/v1" if kind in ("ReplicaSet", "DaemonSet") else "v1"
        extra["ownerReferences"] = [{"apiVersion": api, "blockOwnerDeletion": True, "controller": True,
                                     "kind": kind, "name": oname, "uid": _uid(kind, ns, oname)}]
        extra["generateName"] = name[: name.rfind("-") + 1]
    spec: Dict[str, Any] = {
        "containers": containers,
        "dnsPolicy": "ClusterFirstWithHostNet" if host_network else "ClusterFirst",
        "enableServiceLinks": True,
    }
    if host_network:
        spec["hostNetwork"] = True
    spec["nodeName"] = node
    spec["preemptionPolicy"] = "PreemptLowerPriority"
    spec["priority"] = 2000001000 if priority_class == "system-node-critical" else (
        2000000000 if priority_class == "system-cluster-critical" else 0)
    if priority_class:
        spec["priorityClassName"] = priority_class
    spec["restartPolicy"] = "Always"
    spec["schedulerName"] = "default-scheduler"
    spec["securityContext"] = {}
    spec["terminationGracePeriodSeconds"] = 30
    spec["tolerations"] = [
        {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
         "tolerationSeconds": 300},
        {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
         "tolerationSeconds": 300},
    ]
    host_ip = _node_by_name(node)["ip"]
    started = created.replace(":00Z", ":09Z") if created.endswith(":00Z") else created
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta("Pod", name, ns, created=created, labels=labels, annotations=annotations, **extra),
        "spec": spec,
        "status": {
            "conditions": [
                {"lastProbeTime": None, "lastTransitionTime": started, "status": "True", "type": t}
                for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {"containerID": "containerd://" + uuid.uuid5(UID_NS, f"ctr/{ns}/{name}/{c['name']}").hex * 2,
                 "image": c["image"], "imageID": c["image"].split(":")[0] + "@sha256:"
                 + uuid.uuid5(UID_NS, "img/" + c["image"]).hex * 2,
                 "lastState": {}, "name": c["name"], "ready": True, "restartCount": 0, "started": True,
                 "state": {"running": {"startedAt": started}}}
                for c in containers
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "qosClass": "BestEffort",
            "startTime": created,
        },
    }


def make_pods() -> List[Dict[str, Any]]:
    cp = next(n for n in CLUSTER["nodes"] if n.get("control_plane"))
    cp_ip = cp["ip"]
    static = {"kubernetes.io/config.source": "file", "kubernetes.io/config.seen": CREATED_CLUSTER}
    pods = [
        _pod("kube-system", "etcd-controlplane", cp["name"], cp_ip,
             [_container("etcd", "registry.k8s.io/etcd:3.5.12-0", [
                 "etcd", f"--advertise-client-urls=https://{cp_ip}:2379", "--data-dir=/var/lib/etcd",
                 f"--listen-client-urls=https://127.0.0.1:2379,https://{cp_ip}:2379", "--name=controlplane"])],
             {"component": "etcd", "tier": "control-plane"}, owner=("Node", cp["name"]), host_network=True,
             created=CREATED_CLUSTER, priority_class="system-node-critical",
             annotations={"kubeadm.kubernetes.io/etcd.advertise-client-urls": f"https://{cp_ip}:2379", **static}),
        _pod("kube-system", "kube-apiserver-controlplane", cp["name"], cp_ip,
             [_container("kube-apiserver", f"registry.k8s.io/kube-apiserver:{K8S_VERSION}", [
                 "kube-apiserver", f"--advertise-address={cp_ip}", "--allow-privileged=true",
                 "--authorization-mode=Node,RBAC", "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                 "--enable-admission-plugins=NodeRestriction", "--enable-bootstrap-token-auth=true",
                 "--etcd-servers=https://127.0.0.1:2379", "--secure-port=6443",
                 "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                 "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
                 "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
                 f"--service-cluster-ip-range={CLUSTER['service_cidr']}",
                 "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
                 "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key"])],
             {"component": "kube-apiserver", "tier": "control-plane"}, owner=("Node", cp["name"]),
             host_network=True, created=CREATED_CLUSTER, priority_class="system-node-critical",
             annotations={"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{cp_ip}:6443",
                          **static}),
        _pod("kube-system", "kube-controller-manager-controlplane", cp["name"], cp_ip,
             [_container("kube-controller-manager", f"registry.k8s.io/kube-controller-manager:{K8S_VERSION}", [
                 "kube-controller-manager", "--allocate-node-cidrs=true",
                 "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
                 "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
                 "--bind-address=127.0.0.1", f"--cluster-cidr={CLUSTER['pod_cidr']}",
                 "--cluster-name=kubernetes", "--kubeconfig=/etc/kubernetes/controller-manager.conf",
                 "--leader-elect=true", f"--service-cluster-ip-range={CLUSTER['service_cidr']}",
                 "--use-service-account-credentials=true"])],
             {"component": "kube-controller-manager", "tier": "control-plane"}, owner=("Node", cp["name"]),
             host_network=True, created=CREATED_CLUSTER, priority_class="system-node-critical",
             annotations=static),
        _pod("kube-system", "kube-scheduler-controlplane", cp["name"], cp_ip,
             [_container("kube-scheduler", f"registry.k8s.io/kube-scheduler:{K8S_VERSION}", [
                 "kube-scheduler", "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
                 "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf", "--bind-address=127.0.0.1",
                 "--kubeconfig=/etc/kubernetes/scheduler.conf", "--leader-elect=true"])],
             {"component": "kube-scheduler", "tier": "control-plane"}, owner=("Node", cp["name"]),
             host_network=True, created=CREATED_CLUSTER, priority_class="system-node-critical",
             annotations=static),
    ]
    suffixes = {"controlplane": "7xkqp", "node01": "b2n9w", "node02": "m4zjt"}
    for n in CLUSTER["nodes"]:
        created = CREATED_CLUSTER if n.get("control_plane") else CREATED_WORKERS
        kp = _container("kube-proxy", f"registry.k8s.io/kube-proxy:{K8S_VERSION}", [
            "/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
            "--hostname-override=$(NODE_NAME)"])
        kp["env"] = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                       "fieldPath": "spec.nodeName"}}}]
        kp["securityContext"] = {"privileged": True}
        kp = dict(sorted(kp.items()))
        pods.append(_pod("kube-system", f"kube-proxy-{suffixes.get(n['name'], 'x0x0x')}", n["name"], n["ip"],
                         [kp], {"controller-revision-hash": "7d4c5b9f6", "k8s-app": "kube-proxy",
                                "pod-template-generation": "1"},
                         owner=("DaemonSet", "kube-proxy"), host_network=True, created=created,
                         priority_class="system-node-critical"))
    for p in CLUSTER["pods"]:
        name = p["name"].split("-")[0]
        pods.append(_pod(p["ns"], p["name"], p["node"], p["ip"],
                         [_container(name, p["image"], ports=p.get("ports"))], p["labels"],
                         owner=p.get("owner"),
                         priority_class="system-cluster-critical" if p["ns"] == "kube-system" else None))
    return pods


def _service_pods(svc: Dict[str, Any]) -> List[Dict[str, Any]]:
    return sorted((p for p in CLUSTER["pods"] if p["ns"] == svc["ns"] and _matches(svc.get("selector"),
                                                                                    p["labels"])),
                  key=lambda p: p["name"])


def _endpoints(svc: Dict[str, Any]) -> List[Dict[str, Any]]:
    """[{ip, node, pod}] of a service: its pods, or the given endpoints (selector-less services)."""
    if "endpoints" in svc:
        return svc["endpoints"]
    return [{"ip": p["ip"], "node": p["node"], "pod": p["name"]} for p in _service_pods(svc)]


def make_services() -> List[Dict[str, Any]]:
    out = []
    for s in CLUSTER["services"]:
        created = CREATED_CLUSTER if s["ns"] != "default" or s["name"] == "kubernetes" else CREATED_APPS
        ports = []
        for p in s["ports"]:
            sp: Dict[str, Any] = {}
            if p["name"]:
                sp["name"] = p["name"]
            if p.get("node_port"):
                sp["nodePort"] = p["node_port"]
            sp["port"] = p["port"]
            sp["protocol"] = p["protocol"]
            sp["targetPort"] = p["target"]
            ports.append(sp)
        spec: Dict[str, Any] = {"clusterIP": s["cluster_ip"], "clusterIPs": [s["cluster_ip"]]}
        if s.get("external_traffic_policy") or s["type"] in ("NodePort", "LoadBalancer"):
            spec["externalTrafficPolicy"] = s.get("external_traffic_policy", "Cluster")
        if s.get("health_check_node_port"):
            spec["healthCheckNodePort"] = s["health_check_node_port"]
        spec["internalTrafficPolicy"] = s.get("internal_traffic_policy", "Cluster")
        spec["ipFamilies"] = ["IPv4"]
        spec["ipFamilyPolicy"] = "SingleStack"
        spec["ports"] = ports
        if s.get("selector"):
            spec["selector"] = s["selector"]
        spec["sessionAffinity"] = "None"
        spec["type"] = s["type"]
        if s["type"] == "LoadBalancer":
            spec["allocateLoadBalancerNodePorts"] = True
        status: Dict[str, Any] = {"loadBalancer": {}}
        if s.get("lb_ip"):
            status = {"loadBalancer": {"ingress": [{"ip": s["lb_ip"], "ipMode": "VIP"}]}}
        out.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": _meta("Service", s["name"], s["ns"], created=created, labels=s.get("labels"),
                                      annotations=s.get("annotations")),
                    "spec": dict(sorted(spec.items())), "status": status})
    return out


def make_endpointslices() -> List[Dict[str, Any]]:
    suffixes = {"kube-dns": "zq4vk", "db-service": "s8x2d", "web": "t6wrn", "cache": "p9hlc", "web-lb": "c3fjm"}
    out = []
    for s in CLUSTER["services"]:
        eps = _endpoints(s)
        is_apiserver = "endpoints" in s and not s.get("selector")
        name = s["name"] if is_apiserver else f"{s['name']}-{suffixes[s['name']]}"
        labels = {"kubernetes.io/service-name": s["name"]}
        if not is_apiserver:
            labels = {**(s.get("labels") or {}),
                      "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                      "kubernetes.io/service-name": s["name"]}
        extra: Dict[str, Any] = {}
        if not is_apiserver:
            extra["generateName"] = f"{s['name']}-"
            extra["ownerReferences"] = [{"apiVersion": "v1", "blockOwnerDeletion": True, "controller": True,
                                         "kind": "Service", "name": s["name"],
                                         "uid": _uid("Service", s["ns"], s["name"])}]
        annotations = None if is_apiserver else {
            "endpoints.kubernetes.io/last-change-trigger-time": CREATED_APPS}
        endpoints = []
        for e in eps:
            ep: Dict[str, Any] = {"addresses": [e["ip"]],
                                  "conditions": {"ready": True, "serving": True, "terminating": False}}
            if e.get("node"):
                ep["nodeName"] = e["node"]
            if e.get("pod"):
                ep["targetRef"] = {"kind": "Pod", "name": e["pod"], "namespace": s["ns"],
                                   "uid": _uid("Pod", s["ns"], e["pod"])}
            endpoints.append(ep)
        if eps:
            ports = [dict(sorted({"name": p["name"], "port": p["target"], "protocol": p["protocol"]}.items()))
                     for p in s["ports"]]
        else:
            ports = None  # the controller's placeholder slice for a service without pods
        created = CREATED_CLUSTER if s["ns"] != "default" or s["name"] == "kubernetes" else CREATED_APPS
        out.append({
            "addressType": "IPv4",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": endpoints or None,
            "kind": "EndpointSlice",
            "metadata": _meta("EndpointSlice", name, s["ns"], created=created, labels=labels,
                              annotations=annotations, **extra),
            "ports": ports,
        })
    return out


def make_configmaps() -> List[Dict[str, Any]]:
    cp = next(n for n in CLUSTER["nodes"] if n.get("control_plane"))
    cluster_config = (
        "apiServer:\n"
        "  extraArgs:\n"
        "    authorization-mode: Node,RBAC\n"
        "  timeoutForControlPlane: 4m0s\n"
        "apiVersion: kubeadm.k8s.io/v1beta3\n"
        "certificatesDir: /etc/kubernetes/pki\n"
        "clusterName: kubernetes\n"
        "controllerManager: {}\n"
        "dns: {}\n"
        "etcd:\n"
        "  local:\n"
        "    dataDir: /var/lib/etcd\n"
        "imageRepository: registry.k8s.io\n"
        "kind: ClusterConfiguration\n"
        f"kubernetesVersion: {K8S_VERSION}\n"
        "networking:\n"
        f"  dnsDomain: {CLUSTER['dns_domain']}\n"
        f"  podSubnet: {CLUSTER['pod_cidr']}\n"
        f"  serviceSubnet: {CLUSTER['service_cidr']}\n"
        "scheduler: {}\n"
    )
    proxy_config = (
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
        "bindAddress: 0.0.0.0\n"
        "bindAddressHardFail: false\n"
        "clientConnection:\n"
        "  acceptContentTypes: \"\"\n"
        "  burst: 0\n"
        "  contentType: \"\"\n"
        "  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n"
        "  qps: 0\n"
        f"clusterCIDR: {CLUSTER['pod_cidr']}\n"
        "configSyncPeriod: 0s\n"
        "conntrack:\n"
        "  maxPerCore: null\n"
        "  min: null\n"
        "  tcpBeLiberal: false\n"
        "  tcpCloseWaitTimeout: null\n"
        "  tcpEstablishedTimeout: null\n"
        "  udpStreamTimeout: 0s\n"
        "  udpTimeout: 0s\n"
        "detectLocal:\n"
        "  bridgeInterface: \"\"\n"
        "  interfaceNamePrefix: \"\"\n"
        "detectLocalMode: \"\"\n"
        "enableProfiling: false\n"
        "healthzBindAddress: \"\"\n"
        "hostnameOverride: \"\"\n"
        "iptables:\n"
        "  localhostNodePorts: null\n"
        "  masqueradeAll: false\n"
        "  masqueradeBit: null\n"
        "  minSyncPeriod: 0s\n"
        "  syncPeriod: 0s\n"
        "ipvs:\n"
        "  excludeCIDRs: null\n"
        "  minSyncPeriod: 0s\n"
        "  scheduler: \"\"\n"
        "  strictARP: false\n"
        "  syncPeriod: 0s\n"
        "  tcpFinTimeout: 0s\n"
        "  tcpTimeout: 0s\n"
        "  udpTimeout: 0s\n"
        "kind: KubeProxyConfiguration\n"
        "logging:\n"
        "  flushFrequency: 0\n"
        "  options:\n"
        "    json:\n"
        "      infoBufferSize: \"0\"\n"
        "  verbosity: 0\n"
        "metricsBindAddress: \"\"\n"
        "mode: \"\"\n"
        "nftables:\n"
        "  masqueradeAll: false\n"
        "  masqueradeBit: null\n"
        "  minSyncPeriod: 0s\n"
        "  syncPeriod: 0s\n"
        "nodePortAddresses: null\n"
        "oomScoreAdj: null\n"
        "portRange: \"\"\n"
        "showHiddenMetricsForVersion: \"\"\n"
        "winkernel:\n"
        "  enableDSR: false\n"
        "  forwardHealthCheckVip: false\n"
        "  networkName: \"\"\n"
        "  rootHnsEndpointName: \"\"\n"
        "  sourceVip: \"\"\n"
    )
    kubeconfig = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- cluster:\n"
        "    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n"
        f"    server: https://{cp['ip']}:6443\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    namespace: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n"
    )
    return [
        {"apiVersion": "v1", "data": {"ClusterConfiguration": cluster_config}, "kind": "ConfigMap",
         "metadata": _meta("ConfigMap", "kubeadm-config", "kube-system", created=CREATED_CLUSTER)},
        {"apiVersion": "v1", "data": {"config.conf": proxy_config, "kubeconfig.conf": kubeconfig},
         "kind": "ConfigMap",
         "metadata": _meta("ConfigMap", "kube-proxy", "kube-system", created=CREATED_CLUSTER,
                           labels={"app": "kube-proxy"},
                           annotations={"kubeadm.kubernetes.io/component-config.hash":
                                        "sha256:" + uuid.uuid5(UID_NS, "kube-proxy-config").hex * 2})},
    ]


def make_objects() -> Dict[str, Dict[str, Any]]:
    """File name -> the List object it holds."""
    _rv[0] = 4000
    nodes = make_nodes()
    configmaps = make_configmaps()
    pods = make_pods()
    services = make_services()
    slices = make_endpointslices()
    return {
        "nodes.json": _list(nodes),
        "pods.json": _list(pods),
        "services.json": _list(services),
        "endpointslices.json": _list(slices),
        "configmaps.json": _list(configmaps),
    }


# ---- per-node kube-proxy view ------------------------------------------------------------------------


def node_spec(node: str) -> Dict[str, Any]:
    """The kpwriter input (expected.json schema) for one node's kube-proxy."""
    services = []
    for s in CLUSTER["services"]:
        eps = _endpoints(s)
        for p in s["ports"]:
            fronts = [{"kind": "ClusterIP", "ip": s["cluster_ip"], "port": p["port"]}]
            if p.get("node_port"):
                fronts.append({"kind": "NodePort", "ip": None, "port": p["node_port"]})
            if s.get("lb_ip"):
                fronts.append({"kind": "LoadBalancer", "ip": s["lb_ip"], "port": p["port"]})
            services.append({
                "service": f"{s['ns']}/{s['name']}",
                "port_name": p["name"],
                "protocol": p["protocol"],
                "type": s["type"],
                "frontends": fronts,
                "external_traffic_policy": s.get("external_traffic_policy", "Cluster"),
                "internal_traffic_policy": s.get("internal_traffic_policy", "Cluster"),
                "session_affinity": None,
                "load_balancer_source_ranges": [],
                "health_check_node_port": s.get("health_check_node_port"),
                "endpoints": [{"ip": e["ip"], "port": p["target"], "local": e.get("node") == node,
                               "ready": True, "serving": True, "terminating": False} for e in eps],
            })
    return {"node_name": node, "node_ip": _node_by_name(node)["ip"], "pod_cidr": CLUSTER["pod_cidr"],
            "services": services}


KUBELET_CANARY = "KUBE-KUBELET-CANARY"


def node_iptables_save(node: str) -> str:
    """Real iptables-save of a namespace loaded as `node`'s kube-proxy (and kubelet) would load it."""
    from tests.kpwriter import REAL_NODE, iptables_setup_text, write_iptables
    from tests.kpwriter.netns import load_into_netns, load_iptables_node, netns, save_from_netns

    kubelet_canaries = "".join(f"*{t}\n:{KUBELET_CANARY} - [0:0]\nCOMMIT\n" for t in ("mangle", "filter", "nat"))
    with netns("seed") as ns:
        load_iptables_node(ns, [], setup=iptables_setup_text())
        load_into_netns(ns, kubelet_canaries, noflush=True)
        load_into_netns(ns, write_iptables(node_spec(node), **REAL_NODE), noflush=True)
        return save_from_netns(ns)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=str(DEFAULT_OUT))
    ap.add_argument("--json-only", action="store_true", help="write the API objects only (no root needed)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in make_objects().items():
        (out / name).write_text(dump_json(obj))
    if not args.json_only:
        for n in CLUSTER["nodes"]:
            d = out / "nodes" / n["name"]
            d.mkdir(parents=True, exist_ok=True)
            (d / "iptables-save.txt").write_text(node_iptables_save(n["name"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
