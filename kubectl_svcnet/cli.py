"""The click layer: options, one call into the core, errors -> one stderr line and an exit status.

Start-up time counts (kubectl runs the plugin for every call): the offline path imports neither
`kubernetes` nor `paramiko`, and heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import click

from kubectl_svcnet import __version__
from kubectl_svcnet.errors import ExitStatus, SvcnetError, UsageError

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
                 help="--via pod: the debug pod's image (needs iptables-save, nft, ipvsadm, ipset, gzip)."),
    click.option("--pod-namespace", metavar="NS",
                 help="--via pod: where debug pods run (default: the context's namespace; must allow privileged)."),
    click.option("--pod-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
                 help="--via pod: seconds for a debug pod to start running."),
    click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True,
                 help="Output format."),
    click.option("--no-headers", is_flag=True, help="Print tables without headers (findings go to stderr)."),
    click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors."),
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
    if o["snapshot"]:
        return files.read_snapshot(o["snapshot"]), namespace
    if o["from_file"]:
        return files.read_from_files(list(o["from_file"])), namespace
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


def _emit(result, output: str, no_headers: bool, paths: bool = False) -> None:
    from kubectl_svcnet.render import render

    render(result.service_map, sys.stdout, output, no_headers, err=sys.stderr, paths=paths)
    _finish(result.problems, result.status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def svcnet() -> None:
    """Where does SERVICE-IP:PORT go? kube-proxy's rules on every node, mapped to pods."""


@svcnet.command()
def version() -> None:
    """Print the plugin's version."""
    click.echo(f"kubectl-svcnet {__version__}")


@svcnet.command("map")
@_input_options
@click.option("-n", "--namespace", metavar="NS", help="Only services in this namespace (live: the context's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Services in every namespace (the default offline).")
def map_cmd(namespace, all_namespaces, **o) -> None:
    """Map every Service IP:port to pod IP:port, on every node."""
    from kubectl_svcnet.app import build_map

    inputs, ns = _read_inputs(o, namespace, all_namespaces)
    _warn(inputs)
    result = build_map(inputs, namespace=None if all_namespaces else ns)
    _emit(result, o["output"], o["no_headers"])


@svcnet.command()
@click.argument("name")
@_input_options
@click.option("-n", "--namespace", metavar="NS", help="The Service's namespace (default: the context's, or default).")
@click.option("--logs", is_flag=True, help="Add kube-proxy's recent log lines on this Service or a failed sync.")
@click.option("--log-lines", type=click.IntRange(1, 10000), default=20, show_default=True, metavar="N",
              help="With --logs: at most N lines per node (the most recent).")  # fmt: skip
def trace(name, namespace, logs, log_lines, **o) -> None:
    """One Service: all its ports, on every node, with the chain path each connection takes."""
    from kubectl_svcnet.app import build_map

    if "/" in name:
        namespace, _, name = name.partition("/")
    inputs, ns = _read_inputs(o, namespace, service=name)
    _warn(inputs)
    service = f"{ns or 'default'}/{name}"
    result = build_map(inputs, only=service)
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


@svcnet.command()
@_input_options
def nodes(**o) -> None:
    """Per node: proxy mode, iptables backend, kube-proxy version, what its rules hold, and its error."""
    from kubectl_svcnet.app import build_map, node_rows
    from kubectl_svcnet.render import render_nodes

    inputs, _ = _read_inputs(dict(o, healthz=True), all_namespaces=True)  # live: also kube-proxy's /healthz
    _warn(inputs)
    result = build_map(inputs)
    rows = node_rows(result.service_map, inputs.objects, inputs.node_info)
    render_nodes(rows, sys.stdout, o["output"], o["no_headers"])
    _finish(result.problems, result.status)


@svcnet.command()
@click.argument("directory", metavar="DIR")
@_input_options
@click.option("-n", "--namespace", metavar="NS", help="Only this namespace's services (default: every namespace).")
def snapshot(directory, namespace, **o) -> None:
    """Write everything a live run reads (API objects, each node's dumps) to DIR, to replay with --snapshot."""
    from kubectl_svcnet.app import write_snapshot
    from kubectl_svcnet.collect.live import add_range_objects

    if o["from_file"] or o["snapshot"]:
        raise UsageError("snapshot reads a live cluster: drop --from-file/--snapshot")
    inputs, _ = _read_inputs(dict(o, healthz=True), namespace, all_namespaces=namespace is None, resolve=False)
    add_range_objects(inputs, _live_options(o, namespace, False))  # so `ranges --snapshot` answers as live
    _warn(inputs)
    written = write_snapshot(inputs, directory)
    click.echo(f"wrote {written} files to {directory}", err=True)
    failed = [f"node {n}: {why}" for n, why in sorted(inputs.errors.items())]
    _finish(failed, ExitStatus.PARTIAL if failed else ExitStatus.OK)


@svcnet.command("ranges")
@_input_options
def ranges_cmd(**o) -> None:
    """The cluster's service and pod ranges and node-port range, each with its source, and their overlaps."""
    from kubectl_svcnet.collect import files
    from kubectl_svcnet.errors import InputError
    from kubectl_svcnet.ranges import answers_from_objects, compute_ranges
    from kubectl_svcnet.render_ranges import render_ranges

    from_file, snapshot, output, no_headers = o["from_file"], o["snapshot"], o["output"], o["no_headers"]
    if from_file:
        raise UsageError("ranges reads API objects, not node dumps: give --snapshot DIR, or read the live cluster")
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
