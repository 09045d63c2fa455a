"""Pure rendering: ServiceMap -> table, wide, json or yaml, written to a stream it is given.

The JSON form is the stable contract (apiVersion svcnet/v1alpha1, kind ServiceMap; see README).
Tables answer "where does SERVICE-IP:PORT go" at a glance: one row per backend, frontends that
behave the same on every node shown once.
"""

from __future__ import annotations

from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

from kubectl_svcnet.model import (
    CLUSTER_IP,
    EXTERNAL_IP,
    FORWARD,
    FROM_ANY,
    FROM_CLUSTER,
    FROM_EXTERNAL,
    FROM_OTHER,
    LOAD_BALANCER,
    NODE_PORT,
    Backend,
    Finding,
    Frontend,
    Hop,
    Route,
    ServiceMap,
    ServiceView,
)

API_VERSION = "svcnet/v1alpha1"
FORMATS = ("table", "wide", "json", "yaml")


# -- the contract ---------------------------------------------------------------------------------
def _finding(f: Finding) -> Dict[str, Any]:
    return {"severity": f.severity, "code": f.code, "message": f.message, "node": f.node}


def _backend(b: Backend) -> Dict[str, Any]:
    return {"ip": b.ip, "port": b.port, "probability": round(b.probability, 6), "local": b.local, "pod": b.pod}


def _route(r: Route) -> Dict[str, Any]:
    return {
        "from": r.source,
        "verdict": r.verdict,
        "backends": [_backend(b) for b in r.backends],
        "affinity": {"type": r.affinity.type, "timeoutSeconds": r.affinity.timeout_seconds} if r.affinity else None,
    }


def _service(v: ServiceView) -> Dict[str, Any]:
    return {
        "namespace": v.key.namespace,
        "name": v.key.name,
        "portName": v.key.port_name,
        "protocol": v.key.protocol,
        "frontends": [
            {"type": f.type, "ip": f.ip, "port": f.port, "node": f.node, "routes": [_route(r) for r in f.routes]}
            for f in v.frontends
        ],
        "findings": [_finding(f) for f in v.findings],
    }


def to_dict(m: ServiceMap, lazy: bool = False) -> Dict[str, Any]:
    """The ServiceMap as the JSON contract says. `lazy`: services as a generator, so a writer can
    stream them one at a time instead of holding the whole document."""
    services = (_service(v) for v in m.services)
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMap",
        "nodes": [
            {
                "name": n.name,
                "source": n.source,
                "proxyMode": n.proxy_mode,
                "iptablesBackend": n.iptables_backend,
                "error": n.error,
            }
            for n in m.nodes
        ],
        "services": services if lazy else list(services),
        "findings": [_finding(f) for f in m.findings],
    }


def write_json(doc: Dict[str, Any], out: IO[str]) -> None:
    """The document with one list item per line: readable, diffable, and encoded by json's C
    encoder (an indented dump of a 10,000-service map takes the pure-Python one, 20x slower)."""
    import json

    out.write("{\n")
    keys = list(doc)
    for n, k in enumerate(keys):
        v = doc[k]
        sep = "," if n < len(keys) - 1 else ""
        if isinstance(v, list) and not v:
            out.write(f"  {json.dumps(k)}: []{sep}\n")
        elif isinstance(v, list) or not isinstance(v, (dict, str, int, float, bool, type(None))):
            # A list, or a generator of items streamed one at a time.
            out.write(f"  {json.dumps(k)}: [")
            first = True
            for item in v:
                out.write(("\n    " if first else ",\n    ") + json.dumps(item))
                first = False
            out.write(("\n  ]" if not first else "]") + f"{sep}\n")
        else:
            out.write(f"  {json.dumps(k)}: {json.dumps(v)}{sep}\n")
    out.write("}\n")


# -- tables ---------------------------------------------------------------------------------------
_TYPE_TAG = {CLUSTER_IP: "", NODE_PORT: " (NodePort)", EXTERNAL_IP: " (ExternalIP)", LOAD_BALANCER: " (LB)"}
_FROM_WORDS = {FROM_ANY: "", FROM_CLUSTER: "from pods/nodes", FROM_EXTERNAL: "from outside", FROM_OTHER: "from others"}


def _addr(ip: Optional[str], port: int) -> str:
    if ip is None:
        return f"*:{port}"
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def frontend_text(f: Frontend) -> str:
    return _addr(f.ip, f.port) + _TYPE_TAG.get(f.type, f" ({f.type})")


def _share(p: float) -> str:
    pct = p * 100
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"


def _route_sig(routes: Sequence[Route]) -> Tuple:
    return tuple(
        (r.source, r.verdict, tuple((b.ip, b.port, round(b.probability, 6), b.pod) for b in r.backends), r.affinity)
        for r in routes
    )


def group_nodes(view: ServiceView, all_nodes: Sequence[str]) -> List[Tuple[Frontend, str]]:
    """Frontends of one service, with the nodes where each behaves the same way ("*" = every node)."""
    groups: Dict[Tuple, List[Frontend]] = {}
    order: List[Tuple] = []
    for f in view.frontends:
        k = (f.type, f.ip, f.port, _route_sig(f.routes))
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(f)
    out = []
    for k in order:
        fes = groups[k]
        nodes = sorted({f.node for f in fes})
        label = "*" if len(all_nodes) > 1 and len(nodes) == len(all_nodes) else ",".join(nodes)
        out.append((fes[0], label))
    return out


def _pod_text(b: Backend, namespace: str) -> str:
    if not b.pod:
        return ""
    ns, _, name = b.pod.partition("/")
    return name if ns == namespace else b.pod


def _from_words(source: str) -> str:
    """Who a route is for, in the plain table's words ("from pods/nodes"; "" for every client)."""
    return _FROM_WORDS.get(source, f"from {source}")


def _note(route: Route, b: Optional[Backend], wide: bool, one_node: bool = True) -> str:
    parts = []
    if not wide:
        src = _from_words(route.source)
        if src:
            parts.append(src)
    if route.verdict != FORWARD:
        parts.append(route.verdict.upper())
    elif not route.backends:
        parts.append("not translated")
    if b is not None and b.local and one_node and not wide:
        parts.append("local")
    if route.affinity and not wide:
        parts.append(f"sticky {route.affinity.timeout_seconds}s")
    return ", ".join(parts)


def table_rows(m: ServiceMap, wide: bool = False) -> List[List[str]]:
    all_nodes = [n.name for n in m.nodes]
    rows: List[List[str]] = []
    for v in m.services:
        port = f"{v.key.port_name}/{v.key.protocol}" if v.key.port_name else v.key.protocol
        svc = v.key.service
        if not v.frontends:
            blank = ["", "-"] + [""] * 7 if wide else ["-"] + [""] * 4
            rows.append([svc, port] + blank + ["no rules on any node"])
            continue
        for fe, nodes in group_nodes(v, all_nodes):
            one_node = nodes != "*" and "," not in nodes  # "local" means local to one node
            for r in fe.routes:
                items: List[Optional[Backend]] = list(r.backends) or [None]
                for b in items:
                    backend = _addr(b.ip, b.port) if b else "-"
                    share = _share(b.probability) if b else ""
                    pod = _pod_text(b, v.key.namespace) if b else ""
                    if wide:
                        local = "" if b is None or b.local is None or not one_node else ("yes" if b.local else "no")
                        aff = f"ClientIP {r.affinity.timeout_seconds}s" if r.affinity else ""
                        rows.append(
                            [
                                svc,
                                port,
                                fe.type,
                                _addr(fe.ip, fe.port),
                                nodes,
                                r.source,
                                backend,
                                pod,
                                local,
                                share,
                                aff,
                                _note(r, b, True),
                            ]
                        )
                    else:
                        rows.append(
                            [svc, port, frontend_text(fe), nodes, backend, pod, share, _note(r, b, False, one_node)]
                        )
    return rows


HEADERS = ["SERVICE", "PORT", "FRONTEND", "NODE", "BACKEND", "POD", "SHARE", "NOTE"]
WIDE_HEADERS = [
    "SERVICE",
    "PORT",
    "TYPE",
    "FRONTEND",
    "NODE",
    "FROM",
    "BACKEND",
    "POD",
    "LOCAL",
    "SHARE",
    "AFFINITY",
    "NOTE",
]


def _table(rows: List[List[str]], headers: Optional[List[str]]) -> str:
    """kubectl's plain style: left-aligned columns, no borders."""
    if not rows:
        return ""
    return plain_table(rows, headers)


def _plain(cell: object) -> bool:
    return type(cell) is str and cell.isascii() and cell.isprintable()


def plain_table(rows: Sequence[Sequence[str]], headers: Optional[Sequence[str]]) -> str:
    """`rows` as tabulate's "plain" table (no number parsing, left-aligned), each line right-stripped.

    Laid out here when every cell is printable ASCII text and the rows are even, as tabulate lays
    them out: a column is as wide as its widest cell (stripped of surrounding spaces), and at least
    its header + 2; columns are joined by two spaces. Importing tabulate (with wcwidth and
    importlib.metadata) costs 60 ms, a fifth of a trace. Anything else (wide or combining characters,
    escape codes, line breaks, ragged rows, no rows) is left to tabulate."""
    ncols = len(headers) if headers else len(rows[0]) if rows else 0
    if rows and all(len(r) == ncols and all(map(_plain, r)) for r in rows) and all(map(_plain, headers or ())):
        cells = [[c.strip() for c in r] for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(ncols)]
        if headers:
            widths = [max(w, len(h) + 2) for w, h in zip(widths, headers)]
            cells.insert(0, list(headers))
        text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)
    else:
        from tabulate import tabulate

        text = tabulate(rows, headers=headers or (), tablefmt="plain", disable_numparse=True, stralign="left")
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def finding_line(f: Finding) -> str:
    return f"{f.severity}: {f.message}"


def render(
    m: ServiceMap,
    out: IO[str],
    fmt: str = "table",
    no_headers: bool = False,
    err: Optional[IO[str]] = None,
    paths: bool = False,
    namespace: Optional[str] = None,
) -> None:
    """Write the map to `out` in `fmt`. In table forms, the chain paths (`paths`, trace) and the findings
    follow the table (on `err` with --no-headers, so stdout stays one row per line). No rows is said as
    kubectl says "No resources found": on `err`, naming `namespace` when the map is of one."""
    if fmt == "json":
        write_json(to_dict(m, lazy=True), out)
        return
    if fmt == "yaml":
        import yaml

        yaml.safe_dump(to_dict(m), out, sort_keys=False, default_flow_style=False)
        return
    wide = fmt == "wide"
    rows = table_rows(m, wide)
    after = err if (no_headers and err is not None) else out  # where the sections after the table go
    if rows:
        out.write(_table(rows, None if no_headers else (WIDE_HEADERS if wide else HEADERS)))
    else:
        where = f" in namespace {namespace}" if namespace else ""
        (err or out).write(f"No services found{where}.\n")
    if paths:
        after.write(render_paths(m, wide))
    findings = list(m.findings) + [f for v in m.services for f in v.findings]
    if findings:
        if after is out:
            out.write("\nFINDINGS\n" if rows or paths else "FINDINGS\n")
        for f in findings:
            after.write(finding_line(f) + "\n")


def _hop(h: Hop) -> str:
    return f"{h.chain}:{h.line}" if h.line else h.chain


def _last_step(route: Route, b: Optional[Backend]) -> str:
    if b is not None:
        return f"DNAT {_addr(b.ip, b.port)}"
    return route.verdict.upper() if route.verdict != FORWARD else "no rule (untranslated)"


def render_paths(m: ServiceMap, wide: bool = False) -> str:
    """The chain path per node, as `trace` shows it: each hop is CHAIN:LINE of the rule taken, so
    it can be matched line by line against the node's own iptables-save / nft output. Who each route
    is for is worded as the table above says it (NOTE, or -o wide's FROM column)."""
    lines: List[str] = []
    for v in m.services:
        by_node: Dict[str, List[Frontend]] = {}
        for f in v.frontends:
            by_node.setdefault(f.node, []).append(f)
        for node in sorted(by_node):
            lines.append(f"\n{v.key} on {node}:")
            for f in by_node[node]:
                for r in f.routes:
                    who = "" if r.source == FROM_ANY else f" from {r.source}" if wide else f" {_from_words(r.source)}"
                    lines.append(f"  {frontend_text(f)}{who}:")
                    prefix = [_hop(h) for h in r.path]
                    items: List[Optional[Backend]] = list(r.backends) or [None]
                    for b in items:
                        hops = prefix + ([_hop(h) for h in b.path] if b else [])
                        share = f"  ({_share(b.probability)})" if b else ""
                        lines.append("    " + " -> ".join(hops + [_last_step(r, b)]) + share)
    return "\n".join(lines) + ("\n" if lines else "")


# IPTABLES, not BACKEND: in map and trace a backend is where a connection goes (a pod IP:port).
NODE_HEADERS = ["NODE", "SOURCE", "PROXY MODE", "IPTABLES", "KUBE-PROXY", "SERVICE PORTS", "ENDPOINTS", "LAST SYNC",
                "NOTE", "ERROR"]  # fmt: skip


def human_age(seconds: float) -> str:
    """A duration as kubectl prints ages (apimachinery's duration.HumanDuration): 45s, 5m2s, 2h10m, 3d4h."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def last_sync_text(row: Dict[str, Any]) -> str:
    """LAST SYNC of `nodes`: the age of kube-proxy's last sync ("12s ago"), "(stale)" when its healthz
    says unhealthy, "(not eligible)" when that is because the node is being deleted; "-" unknown."""
    age, healthy = row.get("syncAgeSeconds"), row.get("healthy")
    if age is not None:
        text = f"{human_age(age)} ago"
    elif row.get("lastSync"):
        text = str(row["lastSync"])
    else:
        text = ""  # unknown, or kube-proxy has not synced since it started (Go's zero time)
    if healthy is False:
        why = "not eligible" if row.get("nodeEligible") is False else "stale"
        text = f"{text} ({why})" if text else why
    return text or "-"


def render_nodes(rows: List[Dict[str, Any]], out: IO[str], fmt: str = "table", no_headers: bool = False) -> None:
    """`kubectl svcnet nodes` in any output format (JSON: kind NodeList, one item per node)."""
    if fmt in ("json", "yaml"):
        doc = {"apiVersion": API_VERSION, "kind": "NodeList", "items": rows}
        if fmt == "json":
            write_json(doc, out)
        else:
            import yaml

            yaml.safe_dump(doc, out, sort_keys=False)
        return
    table = [
        [r["name"], r["source"], r["proxyMode"], r["iptablesBackend"] or "-", r["kubeProxyVersion"] or "-",
         str(r["servicePorts"]), str(r["endpoints"]), last_sync_text(r),
         "rules in both iptables backends" if r.get("backendWarning") else "", r["error"] or ""]
        for r in rows
    ]  # fmt: skip
    headers = NODE_HEADERS
    if fmt == "wide":  # as kubectl get nodes -o wide: the address, then what to look at next
        headers = NODE_HEADERS[:1] + ["INTERNAL-IP"] + NODE_HEADERS[1:-1] + NODE_WIDE_HEADERS + NODE_HEADERS[-1:]
        table = [
            row[:1] + [r.get("internalIP") or "-"] + row[1:-1] + [r.get("kubeProxyPod") or "-", _findings_text(r)]
            + row[-1:]
            for row, r in zip(table, rows)
        ]  # fmt: skip
    out.write(_table(table, None if no_headers else headers))


NODE_WIDE_HEADERS = ["KUBE-PROXY POD", "FINDINGS"]


def _findings_text(row: Dict[str, Any]) -> str:
    """A node's findings as counts: "1 error, 2 warnings" ("-" for none)."""
    counts = row.get("findings") or {}
    parts = [f"{n} {sev}{'s' if n != 1 else ''}" for sev in ("error", "warning", "info") if (n := counts.get(sev))]
    return ", ".join(parts) or "-"


# -- trace --logs ---------------------------------------------------------------------------------
def logs_section(logs: Dict[str, Sequence[str]]) -> str:
    """`trace --logs` in table forms: per node, kube-proxy's log lines about the Service or a failed
    sync (already filtered, oldest first)."""
    lines = ["", "KUBE-PROXY LOGS"]
    for node in sorted(logs):
        lines.append(f"{node}:")
        lines.extend(f"  {line}" for line in logs[node] or ["(no matching lines)"])
    return "\n".join(lines) + "\n"


def render_logs(
    m: ServiceMap,
    logs: Dict[str, Sequence[str]],
    out: IO[str],
    fmt: str = "table",
    no_headers: bool = False,
    err: Optional[IO[str]] = None,
) -> None:
    """`trace --logs`: the map as `render` prints it (with the chain paths), then the logs — in
    json/yaml as a top-level "logs": {node: [lines]}, in tables as a KUBE-PROXY LOGS section (on `err`
    with --no-headers, like the findings)."""
    if fmt in ("json", "yaml"):
        doc = to_dict(m)
        doc["logs"] = {node: list(logs[node]) for node in sorted(logs)}
        if fmt == "json":
            write_json(doc, out)
        else:
            import yaml

            yaml.safe_dump(doc, out, sort_keys=False, default_flow_style=False)
        return
    render(m, out, fmt, no_headers, err=err, paths=True)
    if logs:
        (err if (no_headers and err is not None) else out).write(logs_section(logs))
