"""From "what happens to each class of client" to the routes of the JSON contract.

A resolver evaluates a frontend once per class of client (a pod, the node itself, an external client,
an external client inside each allowed load-balancer source range) and hands the results here. Classes
that end the same way are merged into the fewest routes: `any` when all agree, else `cluster` and
`external`, with `<CIDR>` routes and `other` when source ranges decide. `cluster` is one route for two
classes, pods and the node itself; where they part (see group_routes), an info finding says which
one it shows, as nft.py's `_combine` does.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Sequence, Tuple

from kubectl_svcnet.model import (
    DROP,
    FORWARD,
    FROM_ANY,
    FROM_CLUSTER,
    FROM_EXTERNAL,
    FROM_OTHER,
    Affinity,
    Backend,
    Hop,
    Route,
)

POD, LOCAL, EXTERNAL = "pod", "node", "external"
RANGE_PREFIX = "range:"


class End:
    """One way a new connection ends: a verdict, the backend it is DNATed to, its share, and the
    hops that took it there. (A plain slotted class: a big node makes one per backend, frontend and
    class of client, and a frozen dataclass's __init__ costs several times more.)"""

    __slots__ = ("verdict", "ip", "port", "prob", "path", "affinity")

    def __init__(
        self, verdict: str, ip: Optional[str], port: Optional[int], prob: float, path: Tuple[Hop, ...],
        affinity: Optional[int] = None,
    ):  # fmt: skip
        self.verdict, self.ip, self.port, self.prob, self.path, self.affinity = verdict, ip, port, prob, path, affinity

    def _key(self) -> tuple:
        return (self.verdict, self.ip, self.port, self.prob, self.path, self.affinity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, End) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"End({self.verdict}, {self.ip}:{self.port}, {self.prob:.6g}, {len(self.path)} hops)"


def _merge(ends: Sequence[End]) -> List[End]:
    """Sum the shares of ends that reach the same place (e.g. two paths to one backend)."""
    acc: Dict[tuple, End] = {}
    for e in ends:
        k = (e.verdict, e.ip, e.port)
        if k in acc:
            prev = acc[k]
            acc[k] = End(prev.verdict, prev.ip, prev.port, prev.prob + e.prob, prev.path,
                         prev.affinity or e.affinity)  # fmt: skip
        else:
            acc[k] = e
    return list(acc.values())


def _signature(ends: Sequence[End]) -> tuple:
    return tuple(sorted((e.verdict, e.ip or "", e.port or 0, round(e.prob, 6), e.affinity or 0) for e in ends))


def _common_prefix(paths: Sequence[Tuple[Hop, ...]]) -> Tuple[Hop, ...]:
    if not paths:
        return ()
    first = paths[0]
    n = min(len(p) for p in paths)
    i = 0
    while i < n and all(p[i] == first[i] for p in paths):
        i += 1
    return first[:i]


def make_route(source: str, ends: Sequence[End], paths: bool = True) -> Route:
    """One route from the merged ends of one class of client. `paths` False: the route and its
    backends keep no hops (their order still follows the rules)."""
    forward = [e for e in ends if e.verdict == FORWARD and e.ip is not None]
    others = [e for e in ends if not (e.verdict == FORWARD and e.ip is not None)]
    if not forward:
        # Nothing is DNATed: the largest share decides (reject, drop, or passes untranslated).
        main = max(others, key=lambda e: e.prob) if others else End(DROP, None, None, 1.0, ())
        return Route(source=source, verdict=main.verdict, path=main.path if paths else ())
    prefix = _common_prefix([e.path for e in forward])
    # Real shares, not renormalised: if some connections end elsewhere (a damaged chain), the
    # backends' shares sum to less than 1 and the resolver says so in a finding.
    backends = tuple(
        Backend(ip=e.ip, port=e.port, probability=e.prob, path=e.path[len(prefix) :] if paths else ())
        for e in sorted(forward, key=lambda e: e.path[len(prefix)].line if len(e.path) > len(prefix) else 0)
    )  # type: ignore[arg-type]
    timeouts = [e.affinity for e in forward if e.affinity]
    affinity = Affinity(timeout_seconds=max(timeouts)) if timeouts else None
    return Route(source=source, verdict=FORWARD, backends=backends, affinity=affinity, path=prefix if paths else ())


def group_routes(
    per_class: Dict[str, Sequence[End]],
    paths: bool = True,
    notes: Optional[List[Tuple[str, str, str]]] = None,
    where: str = "",
) -> Tuple[Route, ...]:
    """Merge per-class results into the fewest routes the contract can say (`paths`: see make_route).

    Where pods and the node itself are routed differently, `cluster` shows the node if pods are routed
    as external clients are (no local-traffic detector: `external` already says what pods get), else
    the pods; `notes`, if given, gets an info finding (severity, code, message about `where`) that says so.
    """
    merged: Dict[str, List[End]] = {}
    sig: Dict[str, tuple] = {}
    done: Dict[int, Tuple[Sequence[End], List[End], tuple]] = {}
    for cls, ends in per_class.items():
        # Classes often share one list of ends (the same memoised walk): merge and sign it once.
        hit = done.get(id(ends))
        if hit is None or hit[0] is not ends:
            m = _merge(ends)
            hit = done[id(ends)] = (ends, m, _signature(m))
        merged[cls], sig[cls] = hit[1], hit[2]
    ext = sig.get(EXTERNAL)
    ranges = [c for c in per_class if c.startswith(RANGE_PREFIX) and sig[c] != ext]
    cluster_same = sig.get(POD) == sig.get(LOCAL)
    if len(set(sig.values())) == 1:
        return (make_route(FROM_ANY, merged[EXTERNAL if EXTERNAL in merged else next(iter(merged))], paths),)
    routes: List[Route] = []
    cluster_cls = POD if POD in merged else LOCAL
    if not cluster_same and POD in merged and LOCAL in merged:
        pods_external = sig[POD] == ext
        if pods_external:
            cluster_cls = LOCAL
        if notes is not None:
            shows = "the node (pods are treated as external clients)" if pods_external else "pods"
            msg = f"{where}: pods and the node itself are routed differently; 'cluster' shows {shows}"
            notes.append(("info", "cluster-sources-differ", msg))
    if sig.get(cluster_cls) != ext or not cluster_same:
        routes.append(make_route(FROM_CLUSTER, merged[cluster_cls], paths))
    for c in ranges:
        routes.append(make_route(c[len(RANGE_PREFIX) :], merged[c], paths))
    routes.append(make_route(FROM_OTHER if ranges else FROM_EXTERNAL, merged[EXTERNAL], paths))
    return tuple(routes)


def cidr_contains(outer: str, inner: str) -> bool:
    """Whether address or CIDR `inner` lies inside CIDR `outer` (False for anything unreadable): a
    source range that lets in the pod CIDR or a node's address."""
    try:
        a, b = ipaddress.ip_network(outer, strict=False), ipaddress.ip_network(inner, strict=False)
    except ValueError:
        return False
    return a.version == b.version and b.subnet_of(a)  # type: ignore[arg-type]
