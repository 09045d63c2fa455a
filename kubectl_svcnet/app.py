"""What a command does, between the click layer and the core: read inputs, resolve each node,
analyse, and say how the run went. Every node gets a result or an error; one bad node never hides
the others."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional

from kubectl_svcnet.collect.files import Inputs
from kubectl_svcnet.errors import DumpParseError, ExitStatus, NotFoundError
from kubectl_svcnet.model import ERROR, NodeDataPlane, NodeInfo, ServiceMap


@dataclass
class RunResult:
    service_map: ServiceMap
    status: ExitStatus
    problems: List[str]  # one line each, for stderr


def build_map(inputs: Inputs, only: Optional[str] = None, namespace: Optional[str] = None) -> RunResult:
    from kubectl_svcnet.analyze import analyze
    from kubectl_svcnet.dataplane import read_node

    cluster = None
    if inputs.objects:
        from kubectl_svcnet.objects import build_cluster

        cluster = build_cluster(inputs.objects)
    planes: List[NodeDataPlane] = []
    problems: List[str] = []
    status = ExitStatus.OK
    for node, dumps in inputs.nodes.items():
        kind = inputs.source_kind.get(node, "file")
        if node in inputs.errors:
            planes.append(NodeDataPlane(NodeInfo(node, kind, error=inputs.errors[node])))
            problems.append(f"node {node}: {inputs.errors[node]}")
            status = ExitStatus.PARTIAL
            continue
        try:
            plane = read_node(dumps, node, kind, only, cluster)
        except DumpParseError as e:
            planes.append(NodeDataPlane(NodeInfo(node, kind, error=e.one_line())))
            problems.append(f"node {node}: {e.one_line()}")
            status = ExitStatus.INPUT
            continue
        errors = [f for f in plane.findings if f.severity == ERROR]
        if errors:
            # Read what could be read; the dump itself is damaged, which the exit status says.
            plane = replace(plane, info=replace(plane.info, error=errors[0].message))
            problems.extend(f"node {node}: {f.message}" for f in errors)
            status = ExitStatus.INPUT
        planes.append(plane)
    smap = analyze(planes, cluster, only=only, namespace=namespace)
    if only is not None and not smap.services:
        ns, _, name = only.partition("/")
        raise NotFoundError(
            f'service "{name}" not found in namespace "{ns}"',
            where=", ".join(sorted(inputs.nodes)) or None,
            hint="check -n/--namespace, or list services with `kubectl svcnet map`",
        )
    return RunResult(smap, status, problems)
