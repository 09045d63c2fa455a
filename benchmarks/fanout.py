#!/usr/bin/env python3
"""Fan-out benchmark: `map` of N nodes over SSH against fetching one, in the lab (root). Prints figures.

    sudo python3 benchmarks/fanout.py                       # 24 nodes, 1,000 services x 10 endpoints, 3 repeats
    sudo python3 benchmarks/fanout.py --nodes 8 --services 200 --repeat 1 --modes replay

Builds tests/lab/cluster.py's lab with N extra node namespaces (`ClusterSpec.extra_nodes`), each with a
real sshd and a copy of benchmarks/out/dump-<S>x<E>.txt (gen_dump.py, made when missing) loaded into its
iptables-nft backend. From the lab's client namespace, a fresh process per run does one of (--paths):

- `fetch`: the live path's collector alone (`collect.live.collect_ssh`: fanout + ssh + nodecmds), every
  node's dump text kept in Inputs — what "fetching" means in the goal.
- `map`: the whole `map` after the API read (there is no API server in this lab, so no objects): the
  collector resolving each node as its dumps arrive (`collect_ssh(..., resolve=True)`, what `map`,
  `trace` and `nodes` run), then `app.build_map` and the JSON rendering (to /dev/null).
- `map-text`: the same map the way it ran before, and as `--snapshot` still does: every node's text
  collected first, then `build_map` parses and resolves them one after the other.

Each for 1 node, then for all N with each --parallel value (default 16,24); medians of --repeat runs,
round-robin. "x fetch 1" compares each run with fetching one node (the goal: map of N nodes <= 2x that).

Two modes, both measured:

- `kernel`: every node runs the real `iptables-nft-save` (about 1.9 s of CPU for 43,560 rules, plus
  gzip). The lab's nodes share this machine's CPUs, so N nodes' own work runs N/CPUs times longer here
  than on N real machines; the node-side CPU (all sshd session processes, from /proc) is shown.
- `replay`: each node's `iptables-nft-save` prints the copy of its own kernel rules taken at build time
  (a shim first in its sessions' PATH): nodes that answer almost at once. What is left is the fan-out's
  own cost — connections, commands, transfer, gzip/gunzip, decoding, threads — though the nodes' part
  of it (sshd, gzip) still shares this machine's CPUs.
- `replay+wait`: `replay`, each node sleeping --node-wait seconds (default 2) before it prints: a node
  as slow as the real save, but on CPUs of its own, as 24 real nodes are. Only here can the client's
  work on one node's answer overlap with the other nodes' waits, as it would in a real cluster.
- `+nodelay` (either mode): the same with TCP_NODELAY on the client's sockets, patched in the measuring
  process only — what collect/ssh.py would gain (each command otherwise waits ~40 ms: Nagle's algorithm
  against the node's delayed ACK).

The extra nodes' sessions skip root's ~/.bashrc (`ClusterSpec.skip_shell_rc`): on the CI machine it runs
`pyenv init`, 0.1 s of CPU per command, which a node does not.

Per run: wall time, the client's CPU time, its peak RSS (VmHWM) and its RSS before (after imports),
the bytes of dump text still held in Inputs at the end, and the sshds' CPU. Results also go to
benchmarks/out/fanout-<N>x<S>x<E>.json. The lab is removed at the end, on errors and on ^C/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

GOAL = 2.0  # N-node fan-out <= 2x the time of one node
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- child


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _tcp_nodelay() -> None:
    """What-if for collect/ssh.py: its sockets with TCP_NODELAY (Nagle off). Patched in this child only."""
    import socket

    create = socket.create_connection

    def create_nodelay(*args: Any, **kwargs: Any) -> socket.socket:
        sock = create(*args, **kwargs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    socket.create_connection = create_nodelay  # type: ignore[assignment]


def child(request: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in the client namespace: one fetch or map (request["path"]), measured."""
    import kubectl_svcnet.analyze  # noqa: F401 - imports before the baseline
    import kubectl_svcnet.collect.fanout  # noqa: F401
    import kubectl_svcnet.collect.nodecmds  # noqa: F401
    import kubectl_svcnet.collect.ssh  # noqa: F401
    import kubectl_svcnet.dataplane.iptables  # noqa: F401
    import kubectl_svcnet.render  # noqa: F401
    from kubectl_svcnet.app import build_map
    from kubectl_svcnet.collect.files import Inputs
    from kubectl_svcnet.collect.live import LiveOptions, collect_ssh
    from kubectl_svcnet.render import render

    if request.get("nodelay"):
        _tcp_nodelay()
    ssh = dict(request["ssh"])
    for k in ("key_files", "known_hosts"):
        ssh[k] = tuple(ssh.get(k, ()))
    opts = LiveOptions(parallel=request["parallel"], ssh=ssh, node_timeout=600.0)
    inputs = Inputs()
    rss0 = _status_kb("VmRSS")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    path = request.get("path", "fetch")
    t0 = time.perf_counter()
    if path == "map":
        collect_ssh(inputs, request["addresses"], opts, None, resolve=True)
    else:  # (also runs on the code before `resolve` existed, for before/after figures)
        collect_ssh(inputs, request["addresses"], opts, None)
    kept = sum(len(text.encode()) for dumps in inputs.nodes.values() for text, _ in dumps)
    services = None
    if path != "fetch":
        result = build_map(inputs)
        with open(os.devnull, "w") as out:
            render(result.service_map, out, "json", False, err=sys.stderr)
        services = len(result.service_map.services)
        if result.problems:
            raise RuntimeError(f"map: {result.problems}")
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall": wall,
        "cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "rss_before_kb": rss0,
        "peak_rss_kb": _status_kb("VmHWM"),
        "kept_bytes": kept,
        "services": services,
        "ok": sorted(n for n in inputs.nodes if n not in inputs.errors and (inputs.nodes[n] or n in inputs.resolved)),
        "errors": dict(inputs.errors),
    }


# ---------------------------------------------------------------------------------------------- parent


def _proc_cpu(pid: int) -> float:
    """utime+stime+cutime+cstime of a process (seconds): an sshd and every session it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / CLK


def run_once(lab: Any, names: List[str], parallel: int, nodelay: bool = False, path: str = "fetch") -> Dict[str, Any]:
    request = {"addresses": lab.addresses(names), "parallel": parallel, "nodelay": nodelay, "path": path,
               "ssh": lab.ssh_options(connect_timeout=30.0, command_timeout=300.0)}  # fmt: skip
    pids = [lab.sshd[n].pid for n in lab.extra_node_names()]
    node0 = sum(_proc_cpu(p) for p in pids)
    argv = ["ip", "netns", "exec", lab.client_ns, sys.executable, str(Path(__file__).resolve()), "--child"]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "PYTHONPATH": str(ROOT),
           "HOME": str(lab.tmp)}  # fmt: skip
    proc = subprocess.run(argv, input=json.dumps(request), capture_output=True, text=True, timeout=900,
                          cwd=str(ROOT), env=env)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout)
    time.sleep(0.3)  # let each sshd reap its finished sessions
    out["node_cpu"] = sum(_proc_cpu(p) for p in pids) - node0
    if sorted(out["ok"]) != sorted(names):
        raise RuntimeError(f"not every node answered: {out['errors']}")
    return out


def main(argv: List[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(child(json.load(sys.stdin))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=24)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallel", default="16,24", help="comma-separated --parallel values for the N-node runs")
    ap.add_argument("--modes", default="replay,replay+nodelay,kernel",
                    help="comma-separated: replay, replay+wait, kernel, and any with +nodelay")  # fmt: skip
    ap.add_argument("--node-wait", type=float, default=2.0, help="seconds each node waits in replay+wait mode")
    ap.add_argument("--paths", default="fetch,map,map-text", help="comma-separated: fetch, map, map-text")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("fanout.py needs root (it builds network namespaces): sudo python3 benchmarks/fanout.py",
              file=sys.stderr)  # fmt: skip
        return 2
    from run import compile_package

    from tests.lab.cluster import ClusterLab, ClusterSpec, cluster_skip_reason

    compile_package()

    reason = cluster_skip_reason()
    if reason:
        print(f"fanout.py cannot run here: {reason}", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # cleaned up like ^C

    import gen_dump

    dump = OUT / f"dump-{args.services}x{args.endpoints}.txt"
    if not dump.exists():
        gen_dump.write_dump(args.services, args.endpoints, str(dump))
    lines = dump.read_bytes().count(b"\n")
    size = dump.stat().st_size
    N = args.nodes
    parallels = [int(x) for x in args.parallel.split(",") if x.strip()] or [16, N]
    sizes: List[Tuple[str, int, int]] = [("1 node", 1, 16)] + [(f"{N} nodes", N, p) for p in parallels]
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    if "fetch" not in paths:
        paths.insert(0, "fetch")  # the reference: fetching one node
    configs: List[Tuple[str, int, int]] = [(f"{path} {label}", n, p) for path in paths for label, n, p in sizes]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"dump {dump.name}: {lines:,} lines, {size / 1e6:.1f} MB per node; {N} nodes; "
          f"{os.cpu_count()} CPUs shared by the client and every node; {platform.python_implementation()} "
          f"{platform.python_version()}", flush=True)  # fmt: skip
    t_build = time.monotonic()
    spec = ClusterSpec(silent=False, private=False, user=False, pods=False, extra_nodes=N, extra_rules=dump,
                       replay_saves=True, skip_shell_rc=True)  # fmt: skip
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    try:
        with ClusterLab(spec) as lab:
            print(f"lab built in {time.monotonic() - t_build:.1f}s", flush=True)
            names = lab.extra_node_names()
            for mode in modes:
                lab.replay_saves(mode.startswith("replay"), wait=args.node_wait if "+wait" in mode else 0.0)
                nodelay = "+nodelay" in mode
                run_once(lab, names[:1], 16, nodelay)  # warm-up (page cache, sshd, each program's first exec)
                runs: Dict[str, List[Dict[str, Any]]] = {f"{label} p{p}": [] for label, _, p in configs}
                for _ in range(args.repeat):
                    for label, n, p in configs:
                        runs[f"{label} p{p}"].append(run_once(lab, names[:n], p, nodelay, label.split()[0]))
                results[mode] = runs
                _print_mode(mode, runs, configs, N)
    except KeyboardInterrupt:
        print("interrupted: the lab was removed", file=sys.stderr)
        return 130
    path = OUT / f"fanout-{N}x{args.services}x{args.endpoints}.json"
    path.write_text(json.dumps({"nodes": N, "services": args.services, "endpoints": args.endpoints,
                                "dump_bytes": size, "dump_lines": lines, "cpus": os.cpu_count(),
                                "results": results}, indent=1) + "\n")  # fmt: skip
    print(f"\nraw results: {path.relative_to(ROOT)}")
    return 0


def _print_mode(mode: str, runs: Dict[str, List[Dict[str, Any]]], configs: List[Tuple[str, int, int]], n: int) -> None:
    def med(key: str, rs: List[Dict[str, Any]]) -> float:
        return statistics.median(r[key] for r in rs)

    one = med("wall", runs[f"fetch 1 node p{configs[0][2]}"])
    print(f"\n[{mode}] median of {len(next(iter(runs.values())))}")
    print(f"{'run':<24}{'wall':>9}{'x fetch 1':>10}{'client CPU':>12}{'node CPU':>10}{'RSS before':>12}"
          f"{'peak RSS':>10}{'peak-before':>13}{'text kept':>11}")  # fmt: skip
    for label, _, p in configs:
        rs = runs[f"{label} p{p}"]
        wall = med("wall", rs)
        before = med("rss_before_kb", rs) / 1024
        peak = med("peak_rss_kb", rs) / 1024
        kept = med("kept_bytes", rs) / 2**20
        print(f"{label + ' p' + str(p):<24}{wall:>8.2f}s{wall / one:>9.2f}x{med('cpu', rs):>11.2f}s"
              f"{med('node_cpu', rs):>9.1f}s{before:>10.0f}MB{peak:>8.0f}MB{peak - before:>11.0f}MB"
              f"{kept:>9.0f}MB")  # fmt: skip
    for path in sorted({label.split()[0] for label, _, _ in configs}):
        mine = [f"{label} p{p}" for label, k, p in configs if k == n and label.startswith(path + " ")]
        worst = max(med("wall", runs[key]) for key in mine)
        verdict = "met" if worst <= GOAL * one else "not met"
        print(f"goal: {path} of {n} nodes <= {GOAL:g}x fetching one node ({GOAL * one:.2f}s): {verdict} "
              f"({worst / one:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
