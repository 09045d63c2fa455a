"""What kube-apiserver does to a created object before it stores it, for the two creates the tool
makes: a Service with dryRun=All (validation, then ClusterIP and NodePort allocation: the ranges
command reads the service CIDR from the refusal), and a debug Pod (PodSecurity admission)."""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tests.apiemu.status import invalid, pod_forbidden

Cause = Tuple[str, str, str]  # (field, body, type)
NOW = "2026-01-01T00:00:00Z"


def _go_value(v: Any) -> str:
    """How field.Invalid prints a value (%q for strings, %#v for slices, %v for numbers)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[]string{" + ", ".join('"' + str(x) + '"' for x in v) + "}"
    return str(v)


def _bad(path: str, value: Any, detail: str) -> Cause:
    return (path, f"Invalid value: {_go_value(value)}: {detail}", "FieldValueInvalid")


def _validate_service(spec: Dict[str, Any], name: str) -> List[Cause]:
    causes: List[Cause] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    typ = spec.get("type") or "ClusterIP"
    types = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    if typ not in types:
        causes.append(("spec.type", f'Unsupported value: "{typ}": supported values: '
                       + ", ".join(f'"{t}"' for t in types), "FieldValueNotSupported"))  # fmt: skip
    ips = _cluster_ips(spec)
    for i, ip in enumerate(ips):
        if ip == "None":
            continue
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            causes.append(_bad(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or "
                               "2001:db8::ffff)"))  # fmt: skip
    ports = spec.get("ports") or []
    if typ != "ExternalName" and not ports and ips != ["None"]:
        causes.append(("spec.ports", "Required value", "FieldValueRequired"))
    for i, p in enumerate(ports):
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            causes.append(_bad(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"))
        proto = p.get("protocol") or "TCP"
        if proto not in ("SCTP", "TCP", "UDP"):
            causes.append((f"spec.ports[{i}].protocol", f'Unsupported value: "{proto}": supported values: "SCTP", '
                           '"TCP", "UDP"', "FieldValueNotSupported"))  # fmt: skip
        if p.get("nodePort") and typ == "ClusterIP":
            causes.append((f"spec.ports[{i}].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'",
                           "FieldValueForbidden"))  # fmt: skip
    return causes


def _cluster_ips(spec: Dict[str, Any]) -> List[str]:
    ips = list(spec.get("clusterIPs") or [])
    if not ips and spec.get("clusterIP"):
        ips = [spec["clusterIP"]]
    return [str(i) for i in ips]


def create_service(doc: Dict[str, Any], ns: str, name: str, existing: Sequence[Dict[str, Any]],
                   cidrs: Sequence[Any], node_ports: Tuple[int, int],
                   range_in_message: bool = True) -> Tuple[int, Dict[str, Any]]:  # fmt: skip
    """A dry-run create: (201, the object) or (422, Status Invalid)."""
    spec = dict(doc.get("spec") or {})
    causes = _validate_service(spec, name)
    if causes:
        return 422, invalid("Service", name, causes)
    typ = spec.get("type") or "ClusterIP"
    used_ips = {ip for s in existing for ip in _cluster_ips(s.get("spec") or {})}
    used_ports = {p.get("nodePort") for s in existing for p in (s.get("spec") or {}).get("ports") or []}
    ips = _cluster_ips(spec)
    if typ != "ExternalName" and ips != ["None"]:
        if not ips:
            ips = [_allocate_ip(name, ns, cidrs[0], used_ips)]
        for ip in ips:
            addr = ipaddress.ip_address(ip)
            family = [c for c in cidrs if c.version == addr.version]
            if not any(addr in c for c in family):
                valid = family[0] if family else cidrs[0]
                if range_in_message:
                    why = f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {valid}"
                else:
                    why = f"provided IP {ip} is not in the valid range"
                return 422, invalid(
                    "Service", name, [_bad("spec.clusterIPs", ips, f"failed to allocate IP {ip}: {why}")]
                )
            if ip in used_ips:
                return 422, invalid("Service", name, [_bad("spec.clusterIPs", ips, f"failed to allocate IP {ip}: "
                                                           "provided IP is already allocated")])  # fmt: skip
        spec["clusterIP"], spec["clusterIPs"] = ips[0], ips
        spec.setdefault("ipFamilies", ["IPv6" if ipaddress.ip_address(i).version == 6 else "IPv4" for i in ips])
        spec.setdefault("ipFamilyPolicy", "SingleStack" if len(ips) == 1 else "RequireDualStack")
    lo, hi = node_ports
    ports = [dict(p) for p in spec.get("ports") or []]
    for i, p in enumerate(ports):
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
        if typ in ("NodePort", "LoadBalancer"):
            np = p.get("nodePort")
            if np:
                if not lo <= int(np) <= hi:
                    return 422, invalid("Service", name, [_bad(f"spec.ports[{i}].nodePort", np,
                                        f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}")])  # fmt: skip  # noqa: E501
                if np in used_ports:
                    return 422, invalid("Service", name, [_bad(f"spec.ports[{i}].nodePort", np,
                                        "provided port is already allocated")])  # fmt: skip
            else:
                free = next(n for n in range(lo, hi + 1) if n not in used_ports)
                p["nodePort"] = free
            used_ports.add(p["nodePort"])
    if ports:
        spec["ports"] = ports
    spec.setdefault("type", typ)
    spec.setdefault("sessionAffinity", "None")
    if typ != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if typ in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if typ == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    meta = dict(doc.get("metadata") or {}, name=name, namespace=ns)
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", NOW)
    return 201, {"kind": "Service", "apiVersion": "v1", "metadata": meta, "spec": spec,
                 "status": {"loadBalancer": {}}}  # fmt: skip


def _allocate_ip(name: str, ns: str, cidr: Any, used: set) -> str:
    size = cidr.num_addresses
    start = int(hashlib.sha1(f"{ns}/{name}".encode()).hexdigest(), 16) % max(size - 2, 1)
    for k in range(size - 2):
        ip = str(cidr.network_address + 1 + (start + k) % (size - 2))
        if ip not in used:
            return ip
    raise RuntimeError("range is full")


# -- PodSecurity admission (k8s.io/pod-security-admission/policy) --------------------------------------

_BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                  "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}  # fmt: skip


def _plural(one: str, many: str, n: int) -> str:
    return one if n == 1 else many


def _quote(items: Sequence[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [c for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []]


def _sc(c: Dict[str, Any]) -> Dict[str, Any]:
    return c.get("securityContext") or {}


def _checks(spec: Dict[str, Any], level: str) -> List[Tuple[str, str]]:
    """(reason, detail) of each failed check, in the policy package's order."""
    out: List[Tuple[str, str]] = []
    cs = _containers(spec)
    restricted = level == "restricted"
    if not restricted:
        bad, caps = [], set()
        for c in cs:
            add = set((_sc(c).get("capabilities") or {}).get("add") or []) - _BASELINE_CAPS
            if add:
                bad.append(c.get("name", ""))
                caps |= add
        if bad:
            out.append(("non-default capabilities", f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                        f"must not include {_quote(sorted(caps))} in securityContext.capabilities.add"))  # fmt: skip
    hostns = sorted(f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k))
    if hostns:
        out.append(("host namespaces", ", ".join(hostns)))
    vols = [v.get("name", "") for v in spec.get("volumes") or [] if "hostPath" in v]
    if vols and not restricted:
        out.append(("hostPath volumes", f"{_plural('volume', 'volumes', len(vols))} {_quote(vols)}"))
    bad, ports = [], []
    for c in cs:
        hp = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if hp:
            bad.append(c.get("name", ""))
            ports += hp
    if bad:
        out.append(("hostPort", f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                    f"{_plural('uses', 'use', len(bad))} {_plural('hostPort', 'hostPorts', len(ports))} "
                    f"{', '.join(ports)}"))  # fmt: skip
    priv = [c.get("name", "") for c in cs if _sc(c).get("privileged")]
    if priv:
        out.append(("privileged", f"{_plural('container', 'containers', len(priv))} {_quote(priv)} must not set "
                    "securityContext.privileged=true"))  # fmt: skip
    if not restricted:
        return out
    esc = [c.get("name", "") for c in cs if _sc(c).get("allowPrivilegeEscalation") is not False]
    if esc:
        out.append(("allowPrivilegeEscalation != false", f"{_plural('container', 'containers', len(esc))} "
                    f"{_quote(esc)} must set securityContext.allowPrivilegeEscalation=false"))  # fmt: skip
    nodrop = [c.get("name", "") for c in cs if "ALL" not in ((_sc(c).get("capabilities") or {}).get("drop") or [])]
    adds, caps = [], set()
    for c in cs:
        add = set((_sc(c).get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if add:
            adds.append(c.get("name", ""))
            caps |= add
    parts = []
    if nodrop:
        parts.append(f"{_plural('container', 'containers', len(nodrop))} {_quote(nodrop)} must set "
                     'securityContext.capabilities.drop=["ALL"]')  # fmt: skip
    if adds:
        parts.append(f"{_plural('container', 'containers', len(adds))} {_quote(adds)} must not include "
                     f"{_quote(sorted(caps))} in securityContext.capabilities.add")  # fmt: skip
    if parts:
        out.append(("unrestricted capabilities", "; ".join(parts)))
    if vols:
        out.append(("restricted volume types", f"{_plural('volume', 'volumes', len(vols))} {_quote(vols)} "
                    f"{_plural('uses', 'use', len(vols))} restricted volume type \"hostPath\""))  # fmt: skip
    pod_sc = spec.get("securityContext") or {}
    if not pod_sc.get("runAsNonRoot"):
        nonroot = [c.get("name", "") for c in cs if not _sc(c).get("runAsNonRoot")]
        if nonroot:
            out.append(("runAsNonRoot != true", f"pod or {_plural('container', 'containers', len(nonroot))} "
                        f"{_quote(nonroot)} must set securityContext.runAsNonRoot=true"))  # fmt: skip
    ok = ("RuntimeDefault", "Localhost")
    if (pod_sc.get("seccompProfile") or {}).get("type") not in ok:
        bad = [c.get("name", "") for c in cs if (_sc(c).get("seccompProfile") or {}).get("type") not in ok]
        if bad:
            out.append(("seccompProfile", f"pod or {_plural('container', 'containers', len(bad))} {_quote(bad)} "
                        'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'))  # fmt: skip
    return out


def pod_security(doc: Dict[str, Any], name: str, ns_labels: Dict[str, str]) -> Optional[Dict[str, Any]]:
    """The 403 Status PodSecurity answers when `doc` violates the namespace's enforced level, or None."""
    level = ns_labels.get("pod-security.kubernetes.io/enforce", "privileged")
    if level not in ("baseline", "restricted"):
        return None
    version = ns_labels.get("pod-security.kubernetes.io/enforce-version", "latest")
    failed = _checks(doc.get("spec") or {}, level)
    if not failed:
        return None
    detail = ", ".join(f"{reason} ({d})" for reason, d in failed)
    return pod_forbidden(name, f'violates PodSecurity "{level}:{version}": {detail}')


def default_pod(doc: Dict[str, Any], ns: str, name: str) -> Dict[str, Any]:
    meta = dict(doc.get("metadata") or {}, name=name, namespace=ns)
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", NOW)
    spec = dict(doc.get("spec") or {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    return {"metadata": meta, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}}
