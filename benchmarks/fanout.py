#!/usr/bin/env python3
"""Fan-out benchmark: reading N nodes over SSH against reading one, in the lab (root). Prints figures.

    sudo python3 benchmarks/fanout.py                       # 24 nodes, 1,000 services x 10 endpoints, 3 repeats
    sudo python3 benchmarks/fanout.py --nodes 8 --services 200 --repeat 1

Builds tests/lab/cluster.py's lab with N extra node namespaces (`ClusterSpec.extra_nodes`), each with a
real sshd and a copy of benchmarks/out/dump-<S>x<E>.txt (gen_dump.py, made when missing) loaded into its
iptables-nft backend. From the lab's client namespace, a fresh process per run calls the live path's
collector (`collect.live.collect_ssh`: fanout + ssh + nodecmds, the code `map`/`trace` use) for 1 node,
then for all N with each --parallel value (default 16,24); medians of --repeat runs, round-robin.

Two modes, both measured:

- `kernel`: every node runs the real `iptables-nft-save` (about 1.9 s of CPU for 43,560 rules, plus
  gzip). The lab's nodes share this machine's CPUs, so N nodes' own work runs N/CPUs times longer here
  than on N real machines; the node-side CPU (all sshd session processes, from /proc) is shown.
- `replay`: each node's `iptables-nft-save` prints the copy of its own kernel rules taken at build time
  (a shim first in its sessions' PATH): nodes that answer almost at once. What is left is the fan-out's
  own cost — connections, commands, transfer, gzip/gunzip, decoding, threads — though the nodes' part
  of it (sshd, gzip) still shares this machine's CPUs.
- `+nodelay` (either mode): the same with TCP_NODELAY on the client's sockets, patched in the measuring
  process only — what collect/ssh.py would gain (each command otherwise waits ~40 ms: Nagle's algorithm
  against the node's delayed ACK).

The extra nodes' sessions skip root's ~/.bashrc (`ClusterSpec.skip_shell_rc`): on the CI machine it runs
`pyenv init`, 0.1 s of CPU per command, which a node does not.

Per run: wall time of the collection, the client's CPU time, its peak RSS (VmHWM) and its RSS before
(after imports), the bytes of dump text kept in Inputs, and the sshds' CPU. Results also go to
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
    """Runs in the client namespace: one collection, measured."""
    import kubectl_svcnet.collect.fanout  # noqa: F401 - imports before the baseline
    import kubectl_svcnet.collect.nodecmds  # noqa: F401
    import kubectl_svcnet.collect.ssh  # noqa: F401
    from kubectl_svcnet.collect.files import Inputs
    from kubectl_svcnet.collect.live import LiveOptions, collect_ssh

    if request.get("nodelay"):
        _tcp_nodelay()
    ssh = dict(request["ssh"])
    for k in ("key_files", "known_hosts"):
        ssh[k] = tuple(ssh.get(k, ()))
    opts = LiveOptions(parallel=request["parallel"], ssh=ssh, node_timeout=600.0)
    inputs = Inputs()
    rss0 = _status_kb("VmRSS")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    collect_ssh(inputs, request["addresses"], opts, None)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    kept = sum(len(text.encode()) for dumps in inputs.nodes.values() for text, _ in dumps)
    return {
        "wall": wall,
        "cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "rss_before_kb": rss0,
        "peak_rss_kb": _status_kb("VmHWM"),
        "kept_bytes": kept,
        "ok": sorted(n for n in inputs.nodes if n not in inputs.errors and inputs.nodes[n]),
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


def run_once(lab: Any, names: List[str], parallel: int, nodelay: bool = False) -> Dict[str, Any]:
    request = {"addresses": lab.addresses(names), "parallel": parallel, "nodelay": nodelay,
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
                    help="comma-separated: replay, kernel, and either with +nodelay")  # fmt: skip
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("fanout.py needs root (it builds network namespaces): sudo python3 benchmarks/fanout.py",
              file=sys.stderr)  # fmt: skip
        return 2
    from tests.lab.cluster import ClusterLab, ClusterSpec, cluster_skip_reason

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
    configs: List[Tuple[str, int, int]] = [("1 node", 1, 16)] + [(f"{N} nodes", N, p) for p in parallels]
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
                lab.replay_saves(mode.startswith("replay"))
                nodelay = mode.endswith("+nodelay")
                run_once(lab, names[:1], 16, nodelay)  # warm-up (page cache, sshd, each program's first exec)
                runs: Dict[str, List[Dict[str, Any]]] = {f"{label} p{p}": [] for label, _, p in configs}
                for _ in range(args.repeat):
                    for label, n, p in configs:
                        runs[f"{label} p{p}"].append(run_once(lab, names[:n], p, nodelay))
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

    one = med("wall", runs[f"1 node p{configs[0][2]}"])
    print(f"\n[{mode}] median of {len(next(iter(runs.values())))}")
    print(f"{'run':<16}{'wall':>9}{'x 1 node':>10}{'client CPU':>12}{'node CPU':>10}{'RSS before':>12}"
          f"{'peak RSS':>10}{'kept':>9}{'peak-before-kept':>18}")  # fmt: skip
    for label, _, p in configs:
        rs = runs[f"{label} p{p}"]
        wall = med("wall", rs)
        before = med("rss_before_kb", rs) / 1024
        peak = med("peak_rss_kb", rs) / 1024
        kept = med("kept_bytes", rs) / 2**20
        extra = peak - before - kept
        print(f"{label + ' p' + str(p):<16}{wall:>8.2f}s{wall / one:>9.2f}x{med('cpu', rs):>11.2f}s"
              f"{med('node_cpu', rs):>9.1f}s{before:>10.0f}MB{peak:>8.0f}MB{kept:>7.0f}MB{extra:>16.0f}MB")  # fmt: skip
    worst = max(med("wall", runs[f"{label} p{p}"]) for label, k, p in configs if k == n)
    verdict = "met" if worst <= GOAL * one else "not met"
    print(f"goal: {n} nodes <= {GOAL:g}x one node ({GOAL * one:.2f}s): {verdict} ({worst / one:.2f}x)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
