"""kube-proxy's chain names (pkg/proxy/iptables/proxier.go, pkg/proxy/nftables/proxier.go)."""

from __future__ import annotations

import base64
import hashlib


def _b32sha(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """iptables portProtoHash: base32(sha256(servicePortName + protocol))[:16], protocol lower-case."""
    return _b32sha(service_port_name + protocol.lower())[:16]


def svc_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVC-" + port_proto_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVL-" + port_proto_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    return "KUBE-FW-" + port_proto_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    return "KUBE-EXT-" + port_proto_hash(spn, protocol)


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """servicePortEndpointChainName: hash of servicePortName + protocol + "ip:port"."""
    return "KUBE-SEP-" + _b32sha(spn + protocol.lower() + endpoint)[:16]
