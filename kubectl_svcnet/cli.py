"""The click layer: options, one call into the core, errors -> one stderr line and an exit status.

Start-up time counts (kubectl runs the plugin for every call): the offline path imports neither
`kubernetes` nor `paramiko`, and heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import click

from kubectl_svcnet import __version__
from kubectl_svcnet.errors import ExitStatus, NotFoundError, SvcnetError, UsageError

OUTPUTS = ("table", "wide", "json", "yaml")


# Every option of a data-reading command, in --help order (click applies decorators bottom-up).
_INPUT_OPTIONS = [
    click.option("--from-file", "from_file", multiple=True, metavar="[NODE=]PATH",
                 help="A node's iptables-save / nft / ipvsadm dump; repeatable; '-' reads stdin."),
    click.option("--snapshot", metavar="DIR", help="Read a snapshot directory (API objects + nodes/<node>/ dumps)."),
    click.option("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
    click.option("--context", metavar="NAME", help="kubeconfig context."),
    click.option("--cluster", metavar="NAME", help="kubeconfig cluster."),
    click.option("--user", metavar="NAME", help="kubeconfig user."),
    click.option("--request-timeout", metavar="DURATION", default="0", show_default=True,
                 help="API request timeout (0: none), e.g. 5s, 1m."),
    click.option("--node", "nodes", multiple=True, metavar="NAME", help="Only this node; repeatable."),
    click.option("-l", "--node-selector", metavar="SELECTOR", help="Only nodes with these labels (k=v,k!=v,k)."),
    click.option("--address-type", type=click.Choice(["InternalIP", "ExternalIP", "Hostname"]),
                 default="InternalIP", show_default=True, help="Which node address to SSH to."),
    click.option("--parallel", type=click.IntRange(1, 256), default=16, show_default=True,
                 help="Nodes read at once."),
    click.option("--ssh-user", metavar="USER", help="SSH user (default: ~/.ssh/config, else yours)."),
    click.option("--ssh-port", type=click.IntRange(1, 65535), help="SSH port (default: ~/.ssh/config, else 22)."),
    click.option("--ssh-key", "ssh_keys", multiple=True, metavar="PATH", help="SSH private key; repeatable."),
    click.option("--ssh-config", metavar="PATH", help="ssh_config file (default ~/.ssh/config; 'none' ignores it)."),
    click.option("--ssh-known-hosts", "ssh_known_hosts", multiple=True, metavar="PATH",
                 help="Extra known_hosts file; repeatable."),
    click.option("--ssh-jump", metavar="USER@HOST[:PORT]", help="Reach nodes through this bastion."),
    click.option("--sudo", is_flag=True, help="Run the node commands with sudo -n (for non-root SSH users)."),
    click.option("--ssh-insecure-skip-host-key-check", "ssh_insecure", is_flag=True,
                 help="Accept any host key (not safe: only for throwaway clusters)."),
    click.option("--ssh-connect-timeout", type=float, default=10.0, show_default=True, help="Seconds per node."),
    click.option("--ssh-timeout", type=float, default=60.0, show_default=True, help="Seconds per node command."),
    click.option("--via", type=click.Choice(["ssh", "pod"]), default="ssh", show_default=True,
                 help="Reach nodes over SSH, or through a short-lived privileged pod per node (deleted after)."),
    click.option("--image", default="nicolaka/netshoot:v0.13", show_default=True, metavar="IMAGE",
                 help="The debug pod's image (needs iptables-save, nft, ipvsadm, ipset, gzip)."),
    click.option("--pod-namespace", metavar="NS",
                 help="Where debug pods run (default: the context's namespace; must allow privileged)."),
    click.option("--pod-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
                 help="Seconds for a debug pod to start running."),
    click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True,
                 help="Output format."),
    click.option("--no-headers", is_flag=True,
                 help="Table rows only: no headers; trace's paths, findings, checks and logs go to stderr."),
    click.option("--debug", is_flag=True, help="Show a traceback with an error (for bug reports)."),
]  # fmt: skip


def _options(decorators: list) -> list:
    """The click.Option objects a list of click.option decorators makes, made once."""

    def holder() -> None: ...

    for opt in reversed(decorators):
        opt(holder)
    return holder.__click_params__  # type: ignore[attr-defined]


# Made once and shared by the five commands that take them (click keeps no state in an Option): 150
# options cost 3 ms of the plugin's start-up, and kubectl runs the plugin for every call.
_INPUT_PARAMS = _options(_INPUT_OPTIONS)


def _input_options(f):
    """Every input option, as applying _INPUT_OPTIONS' decorators to `f` would add them."""
    if not hasattr(f, "__click_params__"):
        f.__click_params__ = []
    f.__click_params__.extend(_INPUT_PARAMS)
    return f


# --help puts the shared options in sections, after the command's own ones (click keeps them in one list).
_SECTIONS = {
    "Input (default: the live cluster)": ("from_file", "snapshot"),
    "Cluster": ("kubeconfig", "context", "cluster", "user", "request_timeout"),
    "Nodes": ("nodes", "node_selector", "address_type", "parallel", "via"),
    "SSH (--via ssh)": ("ssh_user", "ssh_port", "ssh_keys", "ssh_config", "ssh_known_hosts", "ssh_jump", "sudo",
                        "ssh_insecure", "ssh_connect_timeout", "ssh_timeout"),
    "Debug pod (--via pod)": ("image", "pod_namespace", "pod_timeout"),
    "Output": ("output", "no_headers", "debug", "help"),
}  # fmt: skip
_CLUSTER = _SECTIONS["Cluster"]
_NODE_ACCESS = _SECTIONS["Nodes"] + _SECTIONS["SSH (--via ssh)"] + _SECTIONS["Debug pod (--via pod)"]


def _format_examples(examples: str, formatter: click.HelpFormatter) -> None:
    """kubectl's Examples section: `# what it does` above each command line, not rewrapped."""
    if examples:
        with formatter.section("Examples"):
            for line in examples.strip("\n").splitlines():
                formatter.write(" " * formatter.current_indent + line + "\n" if line else "\n")


class _Command(click.Command):
    """A command whose --help reads as kubectl's: what it does, Examples, then its options in sections.
    `unused`: shared options the command takes but does not use — left out of --help, and a warning
    when given (see _warn_unused)."""

    def __init__(self, *args, examples: str = "", unused: Sequence[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.examples = examples
        self.unused = frozenset(unused)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_examples(self.examples, formatter)
        records: dict = {}
        for param in self.get_params(ctx):
            rv = param.get_help_record(ctx)
            if rv is not None and param.name not in self.unused:
                section = next((k for k, names in _SECTIONS.items() if param.name in names), "Options")
                records.setdefault(section, []).append(rv)
        for section in ["Options", *_SECTIONS]:
            if records.get(section):
                with formatter.section(section):
                    formatter.write_dl(records[section])


class _Group(click.Group):
    """The plugin: Examples in its --help, and its commands in the README's order, not sorted."""

    command_class = _Command
    order = ("map", "trace", "nodes", "ranges", "snapshot", "version")
    examples = ""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(self.commands, key=lambda c: self.order.index(c) if c in self.order else len(self.order))

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_examples(self.examples, formatter)
        super().format_options(ctx, formatter)

    def invoke(self, ctx: click.Context) -> object:
        """A reader that stopped reading (`| head`) ends the run quietly and successfully; click would
        exit 1 without a word."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
            ctx.exit(0)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        formatter.write_text('Use "kubectl svcnet COMMAND --help" for more about a command.')


def _warn_unused(offline: bool) -> None:
    """One stderr warning naming the options given on the command line that this run does not use: the
    live cluster's and the nodes' options with --from-file/--snapshot, and a command's `unused` ones."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    unused = set(getattr(ctx.command, "unused", ()))
    if offline:
        unused.update(_CLUSTER + _NODE_ACCESS)
    given = [
        max(p.opts, key=len)
        for p in ctx.command.params
        if p.name in unused
        and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ]
    if given:
        why = "they are for reading a live cluster" if offline else f"`{ctx.info_name}` does not use them"
        click.echo(f"warning: ignored: {', '.join(given)} ({why})", err=True)


def _live_options(o: dict, namespace: Optional[str], all_namespaces: bool):
    from kubectl_svcnet.collect.live import LiveOptions

    ssh = {
        "user": o["ssh_user"],
        "port": o["ssh_port"],
        "key_files": tuple(o["ssh_keys"]),
        "known_hosts": tuple(o["ssh_known_hosts"]),
        "insecure_skip_host_key_check": o["ssh_insecure"],
        "jump": o["ssh_jump"],
        "sudo": o["sudo"],
        "connect_timeout": o["ssh_connect_timeout"],
        "command_timeout": o["ssh_timeout"],
    }
    if o["ssh_config"]:
        ssh["ssh_config"] = None if o["ssh_config"] == "none" else o["ssh_config"]
    return LiveOptions(
        kubeconfig=o["kubeconfig"], context=o["context"], cluster=o["cluster"], user=o["user"],
        namespace=namespace, all_namespaces=all_namespaces, request_timeout=o["request_timeout"],
        nodes=tuple(o["nodes"]), node_selector=o["node_selector"], address_type=o["address_type"],
        parallel=o["parallel"], ssh=ssh, healthz=bool(o.get("healthz")), via=o.get("via") or "ssh",
        pod={k: v for k, v in (("namespace", o.get("pod_namespace")), ("image", o.get("image")),
                                ("start_timeout", o.get("pod_timeout"))) if v is not None},
    )  # fmt: skip


def _read_inputs(o: dict, namespace: Optional[str] = None, all_namespaces: bool = False,
                 service: Optional[str] = None, resolve: bool = True):  # fmt: skip
    """The run's inputs and the namespace it is about: files, a snapshot, or the live cluster. Live,
    each node is resolved as it arrives and its dumps' text dropped, unless not `resolve` (snapshot)."""
    from kubectl_svcnet.collect import files

    if o["from_file"] and o["snapshot"]:
        raise UsageError("use either --from-file or --snapshot, not both")
    _warn_unused(offline=bool(o["from_file"] or o["snapshot"]))
    # A trace of one Service reads a few lines of each dump: files stay bytes until needed whole.
    lazy = service is not None
    if o["snapshot"]:
        return files.read_snapshot(o["snapshot"], lazy), namespace
    if o["from_file"]:
        return files.read_from_files(list(o["from_file"]), lazy=lazy), namespace
    from kubectl_svcnet.collect.live import read_live

    return read_live(_live_options(o, namespace, all_namespaces), service, progress=sys.stderr, resolve=resolve)


def _warn(inputs) -> None:
    for w in inputs.warnings:
        click.echo(f"warning: {w}", err=True)


def _finish(problems: List[str], status: ExitStatus) -> None:
    """After the answer is out: each problem one stderr line, and the run's exit status."""
    sys.stdout.flush()
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if status != ExitStatus.OK:
        raise SystemExit(int(status))


def _emit(result, output: str, no_headers: bool, paths: bool = False, namespace: Optional[str] = None) -> None:
    from kubectl_svcnet.render import render

    render(result.service_map, sys.stdout, output, no_headers, err=sys.stderr, paths=paths, namespace=namespace)
    _finish(result.problems, result.status)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def svcnet() -> None:
    """Where does SERVICE-IP:PORT go? kube-proxy's rules on every node, mapped to pods.

    Reads the live cluster (the API as kubectl does, then each node over SSH or through a debug pod),
    or offline a node's dump (--from-file) or a snapshot directory (--snapshot)."""


svcnet.examples = """
# Where the Service web's connections go, on every node, with the rules that send them
kubectl svcnet trace web -n shop
# Every Service IP:port on every node, from one node's iptables-save output
kubectl svcnet map --from-file node1=iptables-save.txt
# Each node's kube-proxy: mode, backend, last sync (no SSH: a debug pod per node)
kubectl svcnet nodes --via pod
"""


@svcnet.command(short_help="Print the plugin's version.")
def version() -> None:
    """Print the plugin's version."""
    click.echo(f"kubectl-svcnet {__version__}")


@svcnet.command(
    "map",
    short_help="Every Service IP:port and where it goes, on every node.",
    examples="""
# Every Service in the context's namespace, live (-A: every namespace)
kubectl svcnet map
# A node's dump, saved on the node with `iptables-save > node1.txt` (or nft, ipvsadm-save)
kubectl svcnet map --from-file node1=node1.txt
# A snapshot directory (`kubectl svcnet snapshot DIR`), one namespace, as JSON
kubectl svcnet map --snapshot ./snap -n kube-system -o json
""",
)
@_input_options
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help="Only Services in this namespace (default: live, the context's; offline, every namespace).",
)
@click.option("-A", "--all-namespaces", is_flag=True, help="Services in every namespace.")
def map_cmd(namespace, all_namespaces, **o) -> None:
    """Map every Service IP:port (ClusterIP, node port, external and load-balancer IP) to the pod IP:port
    it is translated to, on every node, with each backend's share of new connections."""
    from kubectl_svcnet.app import build_map

    inputs, ns = _read_inputs(o, namespace, all_namespaces)
    _warn(inputs)
    only_ns = None if all_namespaces else ns
    result = build_map(inputs, namespace=only_ns)
    _emit(result, o["output"], o["no_headers"], namespace=only_ns)


@svcnet.command(
    short_help="One Service: every port on every node, with the chain path.",
    examples="""
# Where db-service's connections go, on every node, and the rules that send them there
kubectl svcnet trace db-service
# A Service in another namespace (the same as: trace kube-dns -n kube-system)
kubectl svcnet trace kube-system/kube-dns
# From a dump read on stdin
ssh node1 sudo iptables-save | kubectl svcnet trace web -n shop --from-file node1=-
# From an address: the Service whose ClusterIP, external or load-balancer IP it is (or a node's IP and
# a node port), in any namespace; only its frontends at that address
kubectl svcnet trace 10.96.0.10:53
# By the DNS name an application connects to: its ClusterIP frontends (on that port)
kubectl svcnet trace db-service.shop.svc.cluster.local:3306
# With kube-proxy's recent log lines about the Service, from a snapshot
kubectl svcnet trace web --snapshot ./snap --logs
""",
)
@click.argument("name", metavar="[NAMESPACE/]NAME | ADDRESS[:PORT]")
@_input_options
@click.option("-n", "--namespace", metavar="NS",
              help="The Service's namespace (default: the context's, or default; for an address: any).")  # fmt: skip
@click.option("--logs", is_flag=True, help="Add kube-proxy's recent log lines on this Service or a failed sync.")
@click.option("--log-lines", type=click.IntRange(1, 10000), default=20, show_default=True, metavar="N",
              help="With --logs: at most N lines per node (the most recent).")  # fmt: skip
def trace(name, namespace, logs, log_lines, **o) -> None:
    """One Service: all its ports, on every node, with the chain path each connection takes (each hop
    CHAIN:LINE of the rule taken, to hold against the node's own iptables-save or nft output).

    ADDRESS is an IP (IP, IP:PORT, [IPv6]:PORT): the Service at it, in any namespace, and only its
    frontends there; or a Service's DNS name (NAME.NAMESPACE[.svc.cluster.local][:PORT]): its ClusterIP
    frontends (on that port)."""
    from kubectl_svcnet.address import parse_address, parse_dns_name
    from kubectl_svcnet.app import build_map

    target = name
    addr = parse_address(name)
    dns = parse_dns_name(name) if addr is None else None
    if dns is not None:
        if namespace and namespace != dns.namespace:
            raise UsageError(f"{name} is in namespace {dns.namespace}, but -n says {namespace}: give one of them")
        name, namespace = dns.name, dns.namespace
    if addr is not None:
        inputs, service = _inputs_at(addr, namespace, o)
    else:
        if not name.strip() or name.count("/") > 1 or name.strip().startswith("/") or name.strip().endswith("/"):
            raise UsageError(f"invalid Service name {name!r}: give NAME, NAMESPACE/NAME, IP[:PORT] or DNS-NAME[:PORT]")
        if "/" in name:
            ns, _, name = name.partition("/")
            if namespace and namespace != ns:
                raise UsageError(f"{ns}/{name} is in namespace {ns}, but -n says {namespace}: give one of them")
            namespace = ns
        inputs, ns = _read_inputs(o, namespace, service=name)
        service = f"{ns or 'default'}/{name}"
    _warn(inputs)
    try:
        result = build_map(inputs, only=service)
    except NotFoundError as e:  # where it was looked for: the snapshot (app.not_found counts many nodes)
        if o["snapshot"]:
            e.where = o["snapshot"]
        raise
    if addr is not None or dns is not None:
        result = _narrowed(result, inputs, addr, dns, target, service, o["snapshot"] or None)
    if not logs:
        _emit(result, o["output"], o["no_headers"], paths=o["output"] in ("table", "wide"))
        return
    # --logs: kube-proxy's log per node (a snapshot's nodes/<node>/*.log, else read live); a log that
    # cannot be read is a warning, never a failure of the trace.
    from kubectl_svcnet.proxymode import LOG_SCAN_LINES, filter_log
    from kubectl_svcnet.render import render_logs

    names = [n.name for n in result.service_map.nodes]
    if o["from_file"]:
        click.echo("warning: --logs: dump files carry no kube-proxy log (a snapshot's nodes/<node>/kube-proxy.log "
                   "does)", err=True)  # fmt: skip
    elif o["snapshot"]:
        for n in names:
            if n not in inputs.logs:
                click.echo(f"warning: --logs: node {n}: no kube-proxy log in the snapshot (nodes/{n}/kube-proxy.log)",
                           err=True)  # fmt: skip
    else:
        from kubectl_svcnet.collect.live import read_kube_proxy_logs

        # Every node, the unreachable ones too: their logs come through the API, not SSH.
        texts, warnings = read_kube_proxy_logs(_live_options(o, ns, False), names, LOG_SCAN_LINES)
        inputs.logs.update(texts)
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
    kept = {n: filter_log(inputs.logs[n], service, log_lines) for n in names if n in inputs.logs}
    render_logs(result.service_map, kept, sys.stdout, o["output"], o["no_headers"], err=sys.stderr)
    _finish(result.problems, result.status)


def _narrowed(result, inputs, addr, dns, target: str, service: str, where: Optional[str]):
    """`trace ADDRESS` / `trace DNS-NAME`: the result with only the Service's frontends there (its
    ClusterIP ones, for a DNS name); none in the nodes' rules is a NotFoundError that lists what is."""
    from dataclasses import replace

    from kubectl_svcnet.address import narrow, narrow_to_cluster_ip, node_addresses
    from kubectl_svcnet.model import CLUSTER_IP
    from kubectl_svcnet.objects import flatten, parse_node
    from kubectl_svcnet.render import frontend_text

    whole = result.service_map
    if addr is not None:
        if inputs.cluster is not None:
            nodes = list(inputs.cluster.nodes)
        else:
            nodes = [parse_node(x) for x in flatten(inputs.objects) if x.get("kind") == "Node"]
        smap = narrow(whole, addr, node_addresses(nodes))
    else:
        smap = narrow_to_cluster_ip(whole, dns.port)
    if smap.services:
        return replace(result, service_map=smap)
    ns, _, name = service.partition("/")
    what = "frontend" if addr is not None else "ClusterIP frontend"
    there = sorted({f"{v.key.protocol} {frontend_text(f)}" for v in whole.services for f in v.frontends
                    if addr is not None or f.type == CLUSTER_IP})  # fmt: skip
    raise NotFoundError(f'service "{name}" in namespace "{ns}" has no {what} at {target} in the nodes\' rules',
                        where=where, hint=f"its {what}s: {', '.join(there)}" if there else None)  # fmt: skip


def _inputs_at(addr, namespace: Optional[str], o: dict):
    """`trace ADDRESS[:PORT]`: the run's inputs and the one Service ("ns/name") at the address — from the
    API's Services (live, or a snapshot's objects), else from the rules (a map of every Service; seconds
    on a 10,000-service dump). `-n` narrows the search to one namespace; without it, every namespace."""
    from kubectl_svcnet.address import (
        Address,
        backends_in_cluster,
        backends_in_map,
        pick_service,
        services_at,
        services_in_map,
        why_none,
    )

    live = not (o["from_file"] or o["snapshot"])
    if live:
        from kubectl_svcnet.collect.live import service_at_address

        service, warnings = service_at_address(_live_options(o, namespace, False), addr)
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        ns, _, name = service.partition("/")
        inputs, _ = _read_inputs(o, ns, service=name)
        return inputs, service
    from kubectl_svcnet.app import build_map

    inputs, _ = _read_inputs(o, namespace)
    where = o["snapshot"] or None
    scope = f' in namespace "{namespace}"' if namespace else ""
    hits: List[Tuple[str, str]] = []
    cluster = None
    if inputs.objects:
        from kubectl_svcnet.objects import build_cluster

        cluster = inputs.cluster = build_cluster(inputs.objects)  # (build_map takes it as built)
        hits = services_at(cluster.services, cluster.nodes, addr, namespace)
    hint = ""
    if not hits:
        nodes = cluster.nodes if cluster is not None else ()
        same_ip = services_at(cluster.services, nodes, Address(addr.ip), namespace) if cluster is not None else []
        backend_of = backends_in_cluster(cluster, addr) if cluster is not None else []
        # Nothing in the API's objects (or there are none): what the nodes' rules say, stale rules too —
        # a map of every Service; with objects, only where the API knows nothing of the IP and a dump
        # holds the address's text.
        if cluster is None or (
            not same_ip and not backend_of and any(addr.ip in t for d in inputs.nodes.values() for t, _ in d)
        ):
            smap = build_map(inputs, namespace=namespace).service_map
            hits = services_in_map(smap, addr)
            same_ip = same_ip or services_in_map(smap, Address(addr.ip))
            backend_of = backend_of or backends_in_map(smap, addr)
        if not hits:
            pod = cluster.pods_by_ip.get(addr.ip) if cluster is not None else None
            hint = why_none(addr, same_ip, nodes, backend_of, pod)
    return inputs, pick_service(hits, addr, where, scope, hint)


@svcnet.command(
    short_help="Per node: proxy mode, iptables backend, kube-proxy, last sync.",
    examples="""
# Every node, live: is kube-proxy's rule set there, current, in the backend it uses?
kubectl svcnet nodes
# Without SSH to the nodes: a short-lived privileged pod per node
kubectl svcnet nodes --via pod
# From a snapshot, as JSON
kubectl svcnet nodes --snapshot ./snap -o json
""",
)
@_input_options
def nodes(**o) -> None:
    """Per node: proxy mode, iptables backend, kube-proxy version, how many Service ports and endpoints
    its rules hold, kube-proxy's last sync (its /healthz), and the node's error."""
    from kubectl_svcnet.app import build_map, node_rows
    from kubectl_svcnet.render import render_nodes

    inputs, _ = _read_inputs(dict(o, healthz=True), all_namespaces=True)  # live: also kube-proxy's /healthz
    _warn(inputs)
    result = build_map(inputs)
    rows = node_rows(result.service_map, inputs.objects, inputs.node_info)
    render_nodes(rows, sys.stdout, o["output"], o["no_headers"])
    _finish(result.problems, result.status)


@svcnet.command(
    short_help="Save a live cluster's objects and node dumps to replay offline.",
    examples="""
# Capture the cluster (objects and every node's dumps), e.g. to attach to a bug report
kubectl svcnet snapshot ./snap
# ... and read it back anywhere, without the cluster
kubectl svcnet map --snapshot ./snap
# Two nodes only, through debug pods
kubectl svcnet snapshot ./snap --via pod --node node01 --node node02
""",
    unused=("from_file", "snapshot", "output", "no_headers"),
)
@click.argument("directory", metavar="DIR")
@_input_options
@click.option("-n", "--namespace", metavar="NS", help="Only this namespace's services (default: every namespace).")
def snapshot(directory, namespace, **o) -> None:
    """Write everything a live run reads (API objects, each node's dumps, kube-proxy's /healthz) to DIR,
    to replay with --snapshot DIR."""
    from kubectl_svcnet.app import write_snapshot
    from kubectl_svcnet.collect.live import add_range_objects

    if o["from_file"] or o["snapshot"]:
        raise UsageError("snapshot reads a live cluster: drop --from-file/--snapshot")
    root = Path(directory)
    if root.exists() and not root.is_dir():  # said before the cluster is read, not after
        raise UsageError(f"snapshot {directory}: exists and is not a directory")
    earlier = {d.name for d in (root / "nodes").iterdir() if d.is_dir()} if (root / "nodes").is_dir() else set()
    inputs, _ = _read_inputs(dict(o, healthz=True), namespace, all_namespaces=namespace is None, resolve=False)
    add_range_objects(inputs, _live_options(o, namespace, False))  # so `ranges --snapshot` answers as live
    _warn(inputs)
    try:
        written = write_snapshot(inputs, directory)
    except OSError as e:
        raise SvcnetError(f"cannot write the snapshot: {e.strerror or e}", where=e.filename or directory) from e
    click.echo(f"wrote {written} files to {directory}", err=True)
    for name in sorted(earlier - set(inputs.nodes)):  # --snapshot would read them as nodes of this one
        click.echo(f"warning: {root / 'nodes' / name}: from an earlier snapshot, not this one; remove it", err=True)
    failed = [f"node {n}: {why}" for n, why in sorted(inputs.errors.items())]
    _finish(failed, ExitStatus.PARTIAL if failed else ExitStatus.OK)


@svcnet.command(
    "ranges",
    short_help="Service and pod CIDRs, node-port range, sources and overlaps.",
    examples="""
# The live cluster's ranges, and where each was read
kubectl svcnet ranges
# From a snapshot, with each source's value and every node's podCIDR
kubectl svcnet ranges --snapshot ./snap -o wide
""",
    unused=("from_file", *_NODE_ACCESS),
)
@_input_options
def ranges_cmd(**o) -> None:
    """The cluster's service CIDRs, pod CIDRs and node-port range, each with the sources it was read from,
    and checks: overlaps, node addresses inside them, sources that disagree."""
    from kubectl_svcnet.collect import files
    from kubectl_svcnet.errors import InputError
    from kubectl_svcnet.ranges import answers_from_objects, compute_ranges
    from kubectl_svcnet.render_ranges import render_ranges

    from_file, snapshot, output, no_headers = o["from_file"], o["snapshot"], o["output"], o["no_headers"]
    if from_file:
        raise UsageError("ranges reads API objects, not node dumps: give --snapshot DIR, or read the live cluster")
    _warn_unused(offline=bool(snapshot))
    if snapshot:
        inputs = files.read_snapshot(snapshot)
        if not inputs.objects:
            raise InputError("snapshot has no API objects (ranges reads Nodes, Pods, ConfigMaps …)", where=snapshot)
        result = compute_ranges(inputs.objects, answers_from_objects(inputs.objects))
    else:
        from kubectl_svcnet.collect.live import read_ranges

        objects, answers, warnings = read_ranges(_live_options(o, None, False))
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        result = compute_ranges(objects, answers)
    render_ranges(result, sys.stdout, output, no_headers, err=sys.stderr)
    _finish(result.problems, result.status)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: run the command, turn every error into one stderr line and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if not args:  # as kubectl does: the help, on stdout, and success
        args = ["--help"]
    try:
        svcnet.main(args=args, prog_name="kubectl svcnet", standalone_mode=False)
    except SvcnetError as e:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"error: {e.one_line()}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        sys.exit(int(e.status))
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(int(ExitStatus.USAGE))
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except SystemExit:
        raise
    except Exception as e:  # the single handler of last resort: one line, no traceback unless --debug
        if debug:
            raise
        click.echo(f"error: internal error: {type(e).__name__}: {e} (rerun with --debug for details)", err=True)
        sys.exit(int(ExitStatus.ERROR))
