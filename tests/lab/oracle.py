"""What the tool says: `python -m kubectl_svcnet map --from-file NODE=DUMP -o json`.

The lab tests take the tool's JSON ServiceMap as the prediction and check it against real packets.
`predictions_from_expected()` is a DEVELOPMENT AID ONLY: it writes the same JSON from a fixture's
expected.json (via tests/golden.py), for working on the lab while the CLI is unfinished. The tests use
it only when SVCNET_LAB_ORACLE=expected is set; by default they run the real CLI, and fail if it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[2]
LAB_NODE = "labnode"
ORACLE_ENV = "SVCNET_LAB_ORACLE"


class ToolError(AssertionError):
    """The tool failed or printed something that is not its JSON contract (a test failure)."""


def run_tool(dump: Path, node: str = LAB_NODE, timeout: float = 120.0) -> Dict[str, Any]:
    argv = [sys.executable, "-m", "kubectl_svcnet", "map", "--from-file", f"{node}={dump}", "-o", "json"]
    try:
        proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ToolError(f"{' '.join(argv)} timed out after {timeout}s") from e
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.strip()[-3000:]}")
    try:
        out = json.loads(proc.stdout)
    except ValueError as e:
        raise ToolError(f"{' '.join(argv)} printed no JSON: {e}\n{proc.stdout[:2000]}") from e
    check_contract(out, node)
    return out


def check_contract(out: Dict[str, Any], node: str) -> None:
    """The parts of the JSON contract the lab relies on."""
    problems: List[str] = []
    if out.get("kind") != "ServiceMap" or not str(out.get("apiVersion", "")).startswith("svcnet/"):
        problems.append(f"not a ServiceMap: apiVersion={out.get('apiVersion')!r} kind={out.get('kind')!r}")
    nodes = [n for n in out.get("nodes") or [] if n.get("name") == node]
    if len(nodes) != 1:
        problems.append(f"nodes[] should list node {node!r} once: {out.get('nodes')!r}")
    elif nodes[0].get("error"):
        problems.append(f"node {node} has an error: {nodes[0]['error']}")
    for svc in out.get("services") or []:
        for key in ("namespace", "name", "portName", "protocol", "frontends"):
            if key not in svc:
                problems.append(f"service without {key!r}: {svc!r}"[:300])
        for fe in svc.get("frontends", []):
            for key in ("type", "ip", "port", "node", "routes"):
                if key not in fe:
                    problems.append(f"frontend without {key!r}: {fe!r}"[:300])
            for r in fe.get("routes", []):
                for key in ("from", "verdict", "backends", "affinity"):
                    if key not in r:
                        problems.append(f"route without {key!r}: {r!r}"[:300])
    if problems:
        raise ToolError("tool JSON breaks the contract:\n  " + "\n  ".join(problems))


def node_info(service_map: Dict[str, Any], node: str = LAB_NODE) -> Dict[str, Any]:
    return next(n for n in service_map["nodes"] if n["name"] == node)


# ---------------------------------------------------------------------------------------------
# DEVELOPMENT AID ONLY (see the module docstring): predictions written from expected.json.


def predictions_from_expected(fixture: Path, node: str = LAB_NODE) -> Dict[str, Any]:
    from tests.golden import expected_services, load_expected

    expected = load_expected(fixture)
    normal = expected_services(expected)
    services = []
    for svc in expected["services"]:
        ns, name = svc["service"].split("/", 1)
        port_name, proto = svc["port_name"], svc["protocol"]
        key = f"{svc['service']}:{port_name}/{proto}" if port_name else f"{svc['service']}/{proto}"
        frontends = []
        for kind, ip, port, routes in normal[key]:
            frontends.append(
                {
                    "type": kind,
                    "ip": ip,
                    "port": port,
                    "node": node,
                    "routes": [
                        {
                            "from": source,
                            "verdict": verdict,
                            "backends": [
                                {"ip": b_ip, "port": b_port, "probability": prob, "local": None, "pod": None}
                                for b_ip, b_port, prob in backends
                            ],
                            "affinity": {"type": "ClientIP", "timeoutSeconds": timeout} if timeout else None,
                        }
                        for source, verdict, backends, timeout in routes
                    ],
                }
            )
        services.append(
            {
                "namespace": ns,
                "name": name,
                "portName": port_name,
                "protocol": proto,
                "frontends": frontends,
                "findings": [],
            }
        )
    mode = expected.get("mode", "iptables")
    return {
        "apiVersion": "svcnet/v1alpha1",
        "kind": "ServiceMap",
        "nodes": [
            {
                "name": node,
                "source": "file",
                "proxyMode": mode,
                "iptablesBackend": "nft" if mode == "iptables" else None,
                "error": None,
            }
        ],
        "services": services,
    }


def service_map_for(fixture: Path, dump: Path, node: str = LAB_NODE) -> Dict[str, Any]:
    """The tool's answer (or, with SVCNET_LAB_ORACLE=expected, the development stand-in)."""
    if os.environ.get(ORACLE_ENV) == "expected":
        return predictions_from_expected(fixture, node)
    return run_tool(dump, node)
