"""Pure rendering of `kubectl svcnet ranges`: Ranges -> table, wide, json or yaml on a given stream.

The JSON form is a contract like the ServiceMap's (apiVersion svcnet/v1alpha1, kind Ranges; see the
README). The table puts each range on one row with its sources; `-o wide` adds each source's value and
every node's podCIDR (the plain table lists a node's podCIDR only when no cluster pod range holds it).
"""

from __future__ import annotations

from typing import IO, Any, Dict, List, Optional

from kubectl_svcnet.model import Finding
from kubectl_svcnet.ranges import FAILED, OK, SCOPE_CLUSTER, SCOPE_NODE, Check, CIDRRange, Ranges, Source
from kubectl_svcnet.render import API_VERSION, plain_table, write_json


# -- the contract ---------------------------------------------------------------------------------
def _source(s: Source) -> Dict[str, Any]:
    return s.to_dict()


def _cidr(r: CIDRRange, pod: bool) -> Dict[str, Any]:
    d: Dict[str, Any] = {"cidr": r.cidr, "family": r.family}
    if pod:
        d["scope"] = r.scope
        d["node"] = r.sources[0].name if r.scope == SCOPE_NODE and r.sources else None
    d["sources"] = [_source(s) for s in r.sources]
    d["size"] = r.size
    d["inUse"] = r.in_use
    if pod:
        n = r.node_subnets
        d["nodeSubnets"] = {"maskSize": n.mask_size, "total": n.total, "inUse": n.in_use} if n else None
    return d


def _check(c: Check) -> Dict[str, Any]:
    return {"code": c.code, "status": c.status, "description": c.description, "reason": c.reason or None}


def _finding(f: Finding) -> Dict[str, Any]:
    return {"severity": f.severity, "code": f.code, "message": f.message}


def to_dict(r: Ranges) -> Dict[str, Any]:
    p = r.node_port_range
    return {
        "apiVersion": API_VERSION,
        "kind": "Ranges",
        "serviceCIDRs": [_cidr(c, False) for c in r.service_cidrs],
        "podCIDRs": [_cidr(c, True) for c in r.pod_cidrs],
        "nodePortRange": {
            "from": p.lo,
            "to": p.hi,
            "size": p.size,
            "sources": [_source(s) for s in p.sources],
            "assumed": p.assumed,
            "inUse": p.in_use,
        },
        "checks": [_check(c) for c in r.checks],
        "findings": [_finding(f) for f in r.findings],
    }


# -- tables ---------------------------------------------------------------------------------------
def size_text(n: int) -> str:
    """1,048,574; IPv6-sized counts as powers of two (2^64-1, 2^72)."""
    if n >= 2**40:
        for k in range(40, 129):
            for d in (0, 1, 2):
                if n == 2**k - d:
                    return f"2^{k}" + (f"-{d}" if d else "")
    return f"{n:,}"


def _used(n: Optional[int]) -> str:
    return "" if n is None else f"{n:,}"


def _sources(sources, wide: bool) -> str:
    return ", ".join(s.long() if wide else s.short() for s in sources)


def table_rows(r: Ranges, wide: bool = False) -> List[List[str]]:
    rows: List[List[str]] = []
    for c in r.service_cidrs:
        row = ["service", c.cidr, c.family, size_text(c.size), _used(c.in_use)]
        rows.append(row + ([""] if wide else []) + [_sources(c.sources, wide)])
    cluster = [c for c in r.pod_cidrs if c.scope == SCOPE_CLUSTER]
    for c in r.pod_cidrs:
        if c.scope == SCOPE_CLUSTER:
            label = "pod"
        else:
            covered = any(k.family == c.family and c.net.subnet_of(k.net) for k in cluster)  # type: ignore[arg-type]
            if covered and not wide:
                continue
            label = "pod (node)"
        row = [label, c.cidr, c.family, size_text(c.size), _used(c.in_use)]
        if wide:
            n = c.node_subnets
            row.append(f"/{n.mask_size}: {n.in_use:,} of {n.total:,}" if n else "")
        rows.append(row + [_sources(c.sources, wide)])
    p = r.node_port_range
    row = ["node ports", str(p), "", f"{p.size:,}", _used(p.in_use)]
    rows.append(row + ([""] if wide else []) + [_sources(p.sources, wide)])
    return rows


HEADERS = ["RANGE", "CIDR", "FAMILY", "SIZE", "IN USE", "SOURCES"]
WIDE_HEADERS = ["RANGE", "CIDR", "FAMILY", "SIZE", "IN USE", "NODE SUBNETS", "SOURCES"]


def _table(rows: List[List[str]], headers: Optional[List[str]]) -> str:
    return plain_table(rows, headers)


def check_line(c: Check) -> str:
    word = {OK: "ok", FAILED: "FAILED"}.get(c.status, "unchecked")
    text = f"{word:<10}{c.description}"
    return text + (f" ({c.reason})" if c.reason else "")


def render_ranges(
    r: Ranges, out: IO[str], fmt: str = "table", no_headers: bool = False, err: Optional[IO[str]] = None
) -> None:
    """Write the ranges to `out` in `fmt`. In table forms the checks and findings follow the table (on
    `err` with --no-headers, so stdout stays one row per line)."""
    if fmt == "json":
        write_json(to_dict(r), out)
        return
    if fmt == "yaml":
        import yaml

        yaml.safe_dump(to_dict(r), out, sort_keys=False, default_flow_style=False)
        return
    wide = fmt == "wide"
    out.write(_table(table_rows(r, wide), None if no_headers else (WIDE_HEADERS if wide else HEADERS)))
    target = err if (no_headers and err is not None) else out
    if target is out:
        target.write("\nCHECKS\n")
    for c in r.checks:
        target.write(check_line(c) + "\n")
    if r.findings:
        if target is out:
            target.write("\nFINDINGS\n")
        for f in r.findings:
            target.write(f"{f.severity}: {f.message}\n")
