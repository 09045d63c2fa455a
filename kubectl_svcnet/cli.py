"""The click layer: options, one call into the core, errors -> one stderr line and an exit status.

Start-up time counts (kubectl runs the plugin for every call): the offline path imports neither
`kubernetes` nor `paramiko`, and heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence

import click

from kubectl_svcnet import __version__
from kubectl_svcnet.errors import ExitStatus, SvcnetError, UsageError

OUTPUTS = ("table", "wide", "json", "yaml")


def _input_options(f):
    f = click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")(f)
    f = click.option("--no-headers", is_flag=True, help="Print tables without headers (findings go to stderr).")(f)
    f = click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True,
                     help="Output format.")(f)  # fmt: skip
    f = click.option("--context", "context", metavar="NAME", help="kubeconfig context (live clusters).")(f)
    f = click.option("--kubeconfig", metavar="PATH", help="kubeconfig file (live clusters).")(f)
    f = click.option(
        "--snapshot", metavar="DIR", help="Read a snapshot directory (API objects + nodes/<node>/ dumps)."
    )(f)
    f = click.option("--from-file", "from_file", multiple=True, metavar="[NODE=]PATH",
                     help="A node's iptables-save / nft dump; repeatable; '-' reads stdin.")(f)  # fmt: skip
    return f


def _read_inputs(from_file: Sequence[str], snapshot: Optional[str], kubeconfig: Optional[str], context: Optional[str]):
    from kubectl_svcnet.collect import files

    if from_file and snapshot:
        raise UsageError("use either --from-file or --snapshot, not both")
    if snapshot:
        return files.read_snapshot(snapshot)
    if from_file:
        return files.read_from_files(list(from_file))
    raise UsageError(
        "no input: give --snapshot DIR or --from-file [NODE=]PATH",
        hint="reading a live cluster (API + SSH) is not available in this version",
    )


def _emit(result, output: str, no_headers: bool, paths: bool = False) -> None:
    from kubectl_svcnet.render import render

    render(result.service_map, sys.stdout, output, no_headers, err=sys.stderr, paths=paths)
    sys.stdout.flush()
    for line in result.problems:
        click.echo(f"error: {line}", err=True)
    if result.status != ExitStatus.OK:
        raise SystemExit(int(result.status))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def svcnet() -> None:
    """Where does SERVICE-IP:PORT go? kube-proxy's rules on every node, mapped to pods."""


@svcnet.command()
def version() -> None:
    """Print the plugin's version."""
    click.echo(f"kubectl-svcnet {__version__}")


@svcnet.command("map")
@_input_options
@click.option("-n", "--namespace", metavar="NS", help="Only services in this namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Services in every namespace (the default offline).")
def map_cmd(from_file, snapshot, kubeconfig, context, output, no_headers, debug, namespace, all_namespaces) -> None:
    """Map every Service IP:port to pod IP:port, on every node."""
    from kubectl_svcnet.app import build_map

    inputs = _read_inputs(from_file, snapshot, kubeconfig, context)
    result = build_map(inputs, namespace=None if all_namespaces else namespace)
    _emit(result, output, no_headers)


@svcnet.command()
@click.argument("name")
@_input_options
@click.option("-n", "--namespace", metavar="NS", default="default", show_default=True, help="The Service's namespace.")
def trace(name, from_file, snapshot, kubeconfig, context, output, no_headers, debug, namespace) -> None:
    """One Service: all its ports, on every node, with the chain path each connection takes."""
    from kubectl_svcnet.app import build_map

    if "/" in name:
        namespace, _, name = name.partition("/")
    inputs = _read_inputs(from_file, snapshot, kubeconfig, context)
    result = build_map(inputs, only=f"{namespace}/{name}")
    _emit(result, output, no_headers, paths=output in ("table", "wide"))


@svcnet.command("ranges")
@_input_options
def ranges_cmd(from_file, snapshot, kubeconfig, context, output, no_headers, debug) -> None:
    """The cluster's service and pod ranges and node-port range, each with its source, and their overlaps."""
    from kubectl_svcnet.collect import files
    from kubectl_svcnet.errors import InputError
    from kubectl_svcnet.ranges import answers_from_objects, compute_ranges
    from kubectl_svcnet.render_ranges import render_ranges

    if from_file:
        raise UsageError("ranges reads API objects, not node dumps: give --snapshot DIR")
    if not snapshot:
        raise UsageError(
            "no input: give --snapshot DIR",
            hint="reading a live cluster (API + SSH) is not available in this version",
        )
    inputs = files.read_snapshot(snapshot)
    if not inputs.objects:
        raise InputError("snapshot has no API objects (ranges reads Nodes, Pods, ConfigMaps …)", where=snapshot)
    result = compute_ranges(inputs.objects, answers_from_objects(inputs.objects))
    render_ranges(result, sys.stdout, output, no_headers, err=sys.stderr)
    sys.stdout.flush()
    for line in result.problems:
        click.echo(f"error: {line}", err=True)
    if result.status != ExitStatus.OK:
        raise SystemExit(int(result.status))


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
