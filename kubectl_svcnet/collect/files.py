"""Offline inputs: dump files (`--from-file [NODE=]PATH`) and snapshot directories (`--snapshot DIR`).

A snapshot holds the cluster's objects as `kubectl get ... -o json` (or yaml) prints them — any number
of files at its top level — and one folder per node under `nodes/` with that node's dumps:

    DIR/services.json  DIR/endpointslices.yaml  ...  DIR/nodes/<node>/iptables-save.txt

Any file name will do for a dump: its format is read from its content. `kubectl svcnet snapshot` names
them after the command that printed them (iptables-nft-save.txt, nft-ip-kube-proxy.txt, ...).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from kubectl_svcnet.dumptext import DumpBytes
from kubectl_svcnet.errors import InputError, UsageError

OBJECT_SUFFIXES = (".json", ".yaml", ".yml")
SKIP_NAMES = ("README", "readme", ".")
HEALTHZ_FILE = "healthz.json"  # nodes/<node>/healthz.json: kube-proxy's /healthz answer, not a dump


@dataclass
class Inputs:
    """Everything a run read: API objects, and per node its dumps as (text, source name)."""

    objects: List[Dict[str, Any]] = field(default_factory=list)
    # (a dump's text may be dumptext.DumpBytes, read for a trace: read_from_files(lazy=True))
    nodes: Dict[str, List[Tuple[str, str]]] = field(default_factory=dict)
    source_kind: Dict[str, str] = field(default_factory=dict)
    errors: Dict[str, str] = field(default_factory=dict)  # node -> why its dumps could not be read
    warnings: List[str] = field(default_factory=list)  # said on stderr, the answer still comes
    # node -> what else was read about it, for `nodes`: "healthz" ({"statusCode": int | None, "body": str},
    # kube-proxy's /healthz answer), "backendWarning" (str: rules also sit in the other iptables backend).
    node_info: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    # node -> kube-proxy's log text (a snapshot's nodes/<node>/*.log, or read live by `trace --logs`).
    logs: Dict[str, str] = field(default_factory=dict)
    # node -> app.ResolvedNode: its dumps resolved already, their text dropped (its `nodes` entry is then
    # []). A live `map`/`trace`/`nodes` resolves each node as its dumps arrive, so what it holds grows with
    # the resolved planes, not with every node's dump text; build_map takes these as they are.
    resolved: Dict[str, Any] = field(default_factory=dict)
    cluster: Any = None  # model.Cluster of `objects` when built already (a live run, before its fan-out)


def _read_text(path: Path, lazy: bool = False) -> Union[str, DumpBytes]:
    """The file's text, strictly UTF-8, newlines as they are. A file that cannot be read, or bytes that
    are not UTF-8 (the error names the line), is an InputError.

    (Not from a memory map, which would save a copy of a 48 MB dump, 30 ms: a file another process
    rewrites meanwhile, as `iptables-save > dump.txt` does, would kill the process with SIGBUS instead
    of giving an answer or an error.) `lazy`: an ASCII file is returned as its bytes (DumpBytes)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", where=str(path)) from e
    if lazy and data.isascii():  # (ASCII is UTF-8: decoding it later cannot fail)
        return DumpBytes(data)
    return _decode(data, path)


def _read_node_text(path: Path, node: str, lazy: bool = False) -> Union[str, DumpBytes]:
    """_read_text of one of a node's dumps; its error names the node. `lazy` (a trace, which reads a few
    lines of a big dump): an ASCII file stays bytes until something needs its whole text (DumpBytes);
    any other file is decoded now, so a file that is not UTF-8 is the same error as ever."""
    try:
        return _read_text(path, lazy)
    except InputError as e:
        raise InputError(f"node {node}: {e.message}", where=e.where, hint=e.hint) from e


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 bytes -> str; not UTF-8 is an InputError at its line (with a hint for compressed files)."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        hint = None
        for magic, name, tool in _COMPRESSED:
            if data.startswith(magic):
                hint = f"the file is {name}-compressed: decompress it first ({tool} {path})"
                break
        raise InputError("not text (invalid UTF-8)", where=f"{path}:{line}", hint=hint) from e


# Compressed files as people save dumps (`iptables-save | gzip > dump.gz`): named in the error's hint.
_COMPRESSED = ((b"\x1f\x8b", "gzip", "zcat"), (b"\x28\xb5\x2f\xfd", "zstd", "zstdcat"), (b"\xfd7zXZ", "xz", "xzcat"),
               (b"BZh", "bzip2", "bzcat"))  # fmt: skip


def parse_from_file(spec: str) -> Tuple[Optional[str], str]:
    """`[NODE=]PATH` -> (node or None, path)."""
    node, sep, path = spec.partition("=")
    if sep and node and "/" not in node and not Path(spec).exists():
        return node, path
    return None, spec


def read_from_files(specs: List[str], stdin_text: Optional[str] = None, lazy: bool = False) -> Inputs:
    """`--from-file [NODE=]PATH` ...: each file's text under its node (files with the same NODE are one
    node). A file that is not there, a directory, stdin twice, or two different files that would both
    be named after their file name are usage errors; an empty file is its node's error (read_node).
    `lazy`: ASCII files are kept as DumpBytes (see _read_node_text)."""
    inputs = Inputs()
    named_after: Dict[str, Path] = {}  # node -> the file it was named after (no NODE=)
    stdin_read = False
    for spec in specs:
        node, path = parse_from_file(spec)
        if spec.startswith("=") and not Path(spec).exists():
            raise UsageError(
                f"--from-file {spec}: the node name before '=' is empty", hint="--from-file takes [NODE=]PATH"
            )
        if path == "-":
            if stdin_read:
                raise UsageError("--from-file -: stdin can be read only once", hint="save the other dumps to files")
            stdin_read = True
            text = stdin_text if stdin_text is not None else sys.stdin.read()
            source = "<stdin>"
            node = node or "stdin"
        else:
            p = Path(path)
            if p.is_dir():
                raise UsageError(f"--from-file {path}: is a directory, not a dump file",
                                 hint=f"a snapshot directory is read with --snapshot {path}")  # fmt: skip
            if not p.is_file():
                raise UsageError(f"no such file: {path}", hint="--from-file takes [NODE=]PATH")
            text = _read_node_text(p, node or p.name.split(".")[0] or p.name, lazy)
            source = str(p)
            if node is None:
                node = p.name.split(".")[0] or p.name
                other = named_after.setdefault(node, p)
                if other.resolve() != p.resolve() and other.name == p.name:
                    # node01/dump.txt and node02/dump.txt are two nodes, not one node's IPv4 and IPv6 dumps.
                    a, b = other.parent.name, p.parent.name
                    if not a or not b or a == b:
                        a, b = "NODE1", "NODE2"
                    raise UsageError(
                        f"--from-file {other} and {p} would both be node {node}",
                        hint=f"name each file's node: --from-file {a}={other} --from-file {b}={p}",
                    )
        inputs.nodes.setdefault(node, []).append((text, source))
        inputs.source_kind[node] = "file"
    return inputs


def load_objects(path: Path) -> List[Dict[str, Any]]:
    """One file of API objects: JSON (one object, or several concatenated) or YAML (multi-document)."""
    text = _read_text(path)
    if path.suffix == ".json" or text.lstrip().startswith(("{", "[")):
        import json

        dec = json.JSONDecoder()
        out, i, n = [], 0, len(text)
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                break
            try:
                obj, i = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}") from e
            out.extend(obj if isinstance(obj, list) else [obj])
        return out
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise InputError(f"invalid YAML: {getattr(e, 'problem', None) or e}", where=f"{path}:{line}") from e


def _read_healthz_file(inputs: Inputs, node: str, path: Path) -> None:
    """nodes/<node>/healthz.json as `kubectl svcnet snapshot` writes it; a damaged one is a warning."""
    import json

    try:
        doc = json.loads(_read_text(path))
        status, body = doc.get("statusCode"), doc.get("body")
        if not isinstance(body, str) or not (status is None or isinstance(status, int)):
            raise ValueError('expected {"statusCode": int | null, "body": str}')
    except (ValueError, AttributeError, InputError) as e:
        inputs.warnings.append(f"{path}: not read ({e})")
        return
    inputs.node_info.setdefault(node, {})["healthz"] = {"statusCode": status, "body": body}


def read_snapshot(directory: str, lazy: bool = False) -> Inputs:
    """A snapshot directory's objects and node dumps (`lazy`: as read_from_files)."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"no such snapshot directory: {directory}")
    inputs = Inputs()
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix in OBJECT_SUFFIXES:
            objs = load_objects(p)
            if not any(isinstance(o, dict) and o.get("kind") for o in objs):
                # Empty, or JSON/YAML that is no Kubernetes object: nothing of it is read; say so.
                what = "is empty" if not objs else "holds no Kubernetes objects (no kind)"
                inputs.warnings.append(f"{p}: {what}; not read")
            inputs.objects.extend(objs)
    nodes_dir = root / "nodes"
    if nodes_dir.is_dir():
        for nd in sorted(nodes_dir.iterdir()):
            if not nd.is_dir():
                continue
            dumps = []
            for f in sorted(nd.iterdir()):
                if f.is_file() and f.name == HEALTHZ_FILE:
                    _read_healthz_file(inputs, nd.name, f)
                    continue
                if f.is_file() and f.suffix == ".log":  # kube-proxy's log (e.g. kube-proxy.log), not a dump
                    try:
                        text = f.read_bytes().decode("utf-8", "replace")
                    except OSError as e:
                        inputs.warnings.append(f"{f}: not read ({e.strerror or e})")
                        continue
                    inputs.logs[nd.name] = inputs.logs.get(nd.name, "") + text
                    continue
                if f.is_file() and not f.name.startswith(SKIP_NAMES) and f.suffix != ".md":
                    text = _read_node_text(f, nd.name, lazy)
                    dumps.append((text, str(f)))
            inputs.nodes[nd.name] = dumps
            inputs.source_kind[nd.name] = "snapshot"
            if not dumps:
                inputs.errors[nd.name] = f"no dumps in {nd}"
    if not inputs.objects and not inputs.nodes:
        raise InputError("snapshot has neither API objects nor node dumps", where=str(root))
    return inputs
