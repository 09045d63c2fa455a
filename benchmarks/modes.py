#!/usr/bin/env python3
"""Benchmark kubectl-svcnet on kube-proxy's nftables and IPVS modes at scale (nft: run as root); print figures.

    sudo python3 benchmarks/modes.py                           # 10,000 services x 10 endpoints, 3 repeats
    sudo python3 benchmarks/modes.py --services 2000 --repeat 5
    python3 benchmarks/modes.py --modes ipvs                   # IPVS alone needs no root

Root: the nft modes need root the first time for a given size. Their input is real `nft` output: the
transaction tests/kpwriter writes for the generated services is loaded into a throwaway network
namespace (svcnet-bench-<pid>: `ip netns exec NS nft -f FILE`, then `nft list ruleset` and `nft -j list
ruleset`), which is deleted on the way out, also on Ctrl-C and SIGTERM. Nothing is sent and nothing in
the root namespace is read or changed. The listings are cached in benchmarks/out/ per size (--regen
makes them again); with them cached, no root is needed.

The services are gen_dump.py's (service i = ns{i%50}/svc{i}, port `http` 80/TCP, ClusterIP 10.96.0.16+i,
E pod IPs in 10.244.0.0/16 on 8080, every 10th a NodePort; here the first endpoint of each is local).
Modes (--modes):

  nft-text   `nft list ruleset` of that namespace                       benchmarks/out/nft-<N>x<E>.txt
  nft-json   `nft -j list ruleset` of it (one line)                     benchmarks/out/nft-<N>x<E>.json
  ipvs       `ipvsadm-save -n` (one rr virtual server per ClusterIP, E masq real servers), `ipset list`
             (KUBE-CLUSTER-IP and KUBE-IPVS-IPS hold every ClusterIP) and `iptables-save`, both from
             tests/fixtures/kube-proxy/ipvs/affinity; pure text, no root   benchmarks/out/ipvs-<N>x<E>/

Measured side by side, round-robin over --repeat (medians; peak RSS is the largest of the rounds,
ru_maxrss of the command alone, through run.py's launcher):

  map    `python -m kubectl_svcnet map --from-file node1=INPUT... -o json`   (wall, input lines/s and MB/s,
         peak RSS, peak RSS / input size)
  trace  nft: `python -m kubectl_svcnet trace svc1007 -n ns7 --from-file node1=INPUT -o json`;
         ipvs: the same trace with `--snapshot` of benchmarks/out/ipvs-<N>x<E>/, which holds the dumps
         and every Service (ClusterIP) with its EndpointSlice (IPVS rules carry no service names)
  grep   the manual method: nft-text `grep -F 'ns7/svc1007/' FILE`; ipvs `grep -F -- '-t CLUSTERIP:80 '
         ipvsadm-save.txt`; none for nft-json (one 90 MB line)

Checked: the map has N services, each with a ClusterIP frontend whose every route lists that service's
E generated pod IPs with probabilities summing to 1 (and, for nft, N/10 NodePort frontends); the trace
holds ns7/svc1007 with its E backends (run.py's check). Raw results: benchmarks/out/modes-<N>x<E>.json.
Exit status: 0 when every check passes, 1 when one fails, 2 when root is needed and missing.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import gen_dump  # noqa: E402
from run import OUT, check_trace, compile_package, fmt_bytes, fmt_time, machine, run_child  # noqa: E402

MODES = ("nft-text", "nft-json", "ipvs")
IPVS_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "kube-proxy", "ipvs", "affinity")
NODE_IP = "192.168.0.2"  # the node's IP in kube-proxy's unit tests: the nodeport-ips set
SERVICE_CIDR = "10.96.0.0/12"


# ---------------------------------------------------------------------------------------------- inputs


def nft_spec(n: int, e: int) -> Dict[str, Any]:
    """gen_dump.py's services in tests/kpwriter's spec format (tests/fixtures/kube-proxy/nftables/*/expected.json)."""
    services = []
    for i in range(n):
        fronts: List[Dict[str, Any]] = [{"kind": "ClusterIP", "ip": gen_dump.cluster_ip(i), "port": gen_dump.PORT}]
        if gen_dump.is_nodeport(i):
            fronts.append({"kind": "NodePort", "ip": None, "port": gen_dump.node_port(i)})
        eps = [{"ip": ip, "port": gen_dump.TARGET_PORT, "local": j == 0, "ready": True}
               for j, ip in enumerate(gen_dump.endpoint_ips(i, e))]  # fmt: skip
        services.append({
            "service": f"{gen_dump.namespace(i)}/{gen_dump.service_name(i)}", "port_name": gen_dump.PORT_NAME,
            "protocol": "TCP", "type": "NodePort" if gen_dump.is_nodeport(i) else "ClusterIP", "frontends": fronts,
            "external_traffic_policy": "Cluster", "internal_traffic_policy": "Cluster", "endpoints": eps,
        })  # fmt: skip
    return {"node_name": "node1", "pod_cidr": gen_dump.POD_CIDR, "services": services,
            "kube_proxy": {"node_ip": NODE_IP, "service_cidrs": [SERVICE_CIDR]}}  # fmt: skip


def _sh(argv: List[str], stdout_path: Optional[str] = None) -> None:
    """Run argv; stdout to a file (written to .tmp, then renamed, so that no half file is cached)."""
    tmp = stdout_path + ".tmp" if stdout_path else None
    with open(tmp or os.devnull, "wb") as out:
        p = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        if tmp:
            os.unlink(tmp)
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    if tmp and stdout_path:
        os.replace(tmp, stdout_path)


def build_nft(n: int, e: int, tx_path: str, text_path: str, json_path: str) -> None:
    """Write the transaction, load it into a fresh namespace, list it twice; the namespace always goes."""
    from tests.kpwriter.nft import write_nft

    t0 = time.perf_counter()
    with open(tx_path, "w") as f:
        f.write(write_nft(nft_spec(n, e)))
    print(f"wrote {os.path.relpath(tx_path)} ({fmt_bytes(os.path.getsize(tx_path))}) in "
          f"{fmt_time(time.perf_counter() - t0)}", flush=True)  # fmt: skip
    ns = f"svcnet-bench-{os.getpid()}"
    _sh(["ip", "netns", "add", ns])
    try:
        for what, argv, path in (("nft -f", ["nft", "-f", tx_path], None),
                                 ("nft list ruleset", ["nft", "list", "ruleset"], text_path),
                                 ("nft -j list ruleset", ["nft", "-j", "list", "ruleset"], json_path)):  # fmt: skip
            t0 = time.perf_counter()
            _sh(["ip", "netns", "exec", ns, *argv], path)
            print(f"{what} in namespace {ns}: {fmt_time(time.perf_counter() - t0)}", flush=True)
    finally:
        p = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"warning: ip netns del {ns} failed: {p.stderr.strip()}", file=sys.stderr)


def _replace_members(text: str, set_name: str, members: List[str]) -> str:
    """Give one set of an `ipset list` output these members (and the matching 'Number of entries')."""
    block = re.compile(rf"(Name: {re.escape(set_name)}\n(?:(?!Members:).*\n)*?Number of entries: )\d+\n"
                       rf"((?:(?!Members:).*\n)*?Members:\n)(?:.+\n)*", re.M)  # fmt: skip
    new, count = block.subn(lambda m: m.group(1) + f"{len(members)}\n" + m.group(2)
                            + "".join(x + "\n" for x in members), text, count=1)  # fmt: skip
    if count != 1:
        raise RuntimeError(f"set {set_name} not found in the ipset list template")
    return new


def build_ipvs(n: int, e: int, snap: str) -> List[str]:
    """The IPVS input as a snapshot directory: nodes/node1/ with the dumps, and the API objects."""
    node_dir = os.path.join(snap, "nodes", "node1")
    os.makedirs(node_dir, exist_ok=True)
    save = os.path.join(node_dir, "ipvsadm-save.txt")
    with open(save + ".tmp", "w") as f:
        for i in range(n):
            vs = f"{gen_dump.cluster_ip(i)}:{gen_dump.PORT}"
            f.write(f"-A -t {vs} -s rr\n")
            for ip in gen_dump.endpoint_ips(i, e):
                f.write(f"-a -t {vs} -r {ip}:{gen_dump.TARGET_PORT} -m -w 1\n")
    os.replace(save + ".tmp", save)
    with open(os.path.join(IPVS_FIXTURE, "ipset-list.txt")) as f:
        ipset = f.read()
    cips = [gen_dump.cluster_ip(i) for i in range(n)]
    ipset = _replace_members(ipset, "KUBE-CLUSTER-IP", [f"{ip},tcp:{gen_dump.PORT}" for ip in cips])
    ipset = _replace_members(ipset, "KUBE-IPVS-IPS", cips)  # what kube-ipvs0 holds
    ipset = _replace_members(ipset, "KUBE-EXTERNAL-IP", [])  # the fixture's external IP and node port: none here
    ipset = _replace_members(ipset, "KUBE-NODE-PORT-TCP", [])
    with open(os.path.join(node_dir, "ipset-list.txt"), "w") as f:
        f.write(ipset)
    shutil.copyfile(os.path.join(IPVS_FIXTURE, "iptables-save.txt"), os.path.join(node_dir, "iptables-save.txt"))

    # The API objects, for `trace --snapshot`: every Service (ClusterIP: the dump has no node ports) and its
    # EndpointSlice, the first endpoint on node1. With the traced Service alone, every other virtual server
    # would be a finding ("matches no Service: stale?") in the trace's output.
    services, slices = [], []
    for i in range(n):
        ns, name, ip = gen_dump.namespace(i), gen_dump.service_name(i), gen_dump.cluster_ip(i)
        services.append({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "uid": f"uid-{i}"},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                     "ports": [{"name": gen_dump.PORT_NAME, "port": gen_dump.PORT, "protocol": "TCP",
                                "targetPort": gen_dump.TARGET_PORT}],
                     "selector": {"app": name}, "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
        })  # fmt: skip
        eps = [{"addresses": [ep], "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "node1" if j == 0 else "node2"}
               for j, ep in enumerate(gen_dump.endpoint_ips(i, e))]  # fmt: skip
        slices.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-abcde", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "endpoints": eps, "ports": [{"name": gen_dump.PORT_NAME, "port": gen_dump.TARGET_PORT, "protocol": "TCP"}],
        })  # fmt: skip
    for fname, items in (("services.json", services), ("endpointslices.json", slices)):
        with open(os.path.join(snap, fname), "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f, separators=(",", ":"))
    return [os.path.join(node_dir, x) for x in ("ipvsadm-save.txt", "ipset-list.txt", "iptables-save.txt")]


# ---------------------------------------------------------------------------------------------- checks


def check_map(path: str, n: int, e: int, nodeports: bool) -> Tuple[bool, str]:
    """N services, each with its ClusterIP frontend's every route on its E generated pods, shares summing to 1."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as ex:
        return False, f"not JSON: {ex}"
    svcs = doc.get("services", [])
    if len(svcs) != n:
        return False, f"{len(svcs)} services, want {n}"
    base = int(ipaddress.IPv4Address(gen_dump.cluster_ip(0)))
    seen = set()
    worst = 0.0
    n_np = 0
    for s in svcs:
        fronts = s.get("frontends", [])
        cips = [f for f in fronts if f.get("type") == "ClusterIP"]
        n_np += sum(1 for f in fronts if f.get("type") == "NodePort")
        if len(cips) != 1:
            return False, f"{s.get('namespace')}/{s.get('name')} {s.get('portName')}: {len(cips)} ClusterIP frontends"
        i = int(ipaddress.IPv4Address(cips[0]["ip"])) - base
        if not 0 <= i < n or i in seen:
            return False, f"unexpected or repeated ClusterIP {cips[0]['ip']}"
        seen.add(i)
        want = sorted(gen_dump.endpoint_ips(i, e))
        routes = cips[0].get("routes", [])
        if not routes:
            return False, f"{cips[0]['ip']}: no routes"
        for r in routes:
            bs = r.get("backends", [])
            if sorted(b["ip"] for b in bs) != want or any(b["port"] != gen_dump.TARGET_PORT for b in bs):
                return False, f"{cips[0]['ip']} route {r.get('from')}: {len(bs)} backends, not the generated {e}"
            worst = max(worst, abs(sum(b["probability"] for b in bs) - 1.0))
    if worst > 1e-6:
        return False, f"shares sum off by {worst:.1e}"
    want_np = sum(1 for i in range(n) if gen_dump.is_nodeport(i)) if nodeports else 0
    if n_np != want_np:
        return False, f"{n_np} NodePort frontends, want {want_np}"
    extra = f", {n_np:,} NodePorts" if nodeports else ""
    return True, f"{n:,} svc x {e} ep{extra}, |sum-1| <= {worst:.0e}"


# ---------------------------------------------------------------------------------------------- main


def file_stats(paths: List[str]) -> Tuple[int, int]:
    lines = size = 0
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        lines += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        size += len(data)
    return lines, size


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--services", type=int, default=10_000, help="services (default 10000)")
    ap.add_argument("--endpoints", type=int, default=10, help="endpoints per service (default 10)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every measurement; medians (default 3)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default all)")
    ap.add_argument("--regen", action="store_true", help="rebuild the inputs even if cached (nft: needs root)")
    args = ap.parse_args(argv)
    N, E = args.services, args.endpoints
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        ap.error(f"--modes: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    if N < 1 or E < 1:
        ap.error("--services and --endpoints must be at least 1")
    target = min(1007, N - 1)
    if gen_dump.is_nodeport(target) and target > 0:
        target -= 1  # a ClusterIP-only service: the IPVS input has no node ports
    repeat = max(1, args.repeat)

    os.makedirs(OUT, exist_ok=True)
    tag = f"{N}x{E}"
    o = lambda name: os.path.join(OUT, name)  # noqa: E731
    tx, nft_text, nft_json = o(f"nft-{tag}.nft"), o(f"nft-{tag}.txt"), o(f"nft-{tag}.json")
    snap = o(f"ipvs-{tag}")
    need_nft = any(m.startswith("nft") for m in modes) and (
        args.regen or not (os.path.exists(nft_text) and os.path.exists(nft_json))
    )
    if need_nft and os.geteuid() != 0:
        print("modes.py needs root for the nft modes: it loads the rules into a throwaway network namespace "
              f"(not cached yet for {tag}).\n  sudo python3 benchmarks/modes.py ...   or   --modes ipvs",
              file=sys.stderr)  # fmt: skip
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # The namespace is deleted as on ^C; SIGINT too when started in the background (where it is ignored).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)

    if need_nft:
        if not shutil.which("nft") or not shutil.which("ip"):
            print("modes.py: the nft modes need `nft` and `ip` (iproute2) installed", file=sys.stderr)
            return 2
        build_nft(N, E, tx, nft_text, nft_json)
    inputs: Dict[str, List[str]] = {"nft-text": [nft_text], "nft-json": [nft_json]}
    ipvs_files = [os.path.join(snap, "nodes", "node1", x) for x in ("ipvsadm-save.txt", "ipset-list.txt",
                                                                    "iptables-save.txt")]  # fmt: skip
    if "ipvs" in modes:
        if args.regen or not all(os.path.exists(p) for p in ipvs_files) or not os.path.exists(
                os.path.join(snap, "services.json")):  # fmt: skip
            t0 = time.perf_counter()
            ipvs_files = build_ipvs(N, E, snap)
            print(f"wrote {os.path.relpath(snap)}/ in {fmt_time(time.perf_counter() - t0)}", flush=True)
    inputs["ipvs"] = ipvs_files
    stats = {m: file_stats(inputs[m]) for m in modes}
    for m in modes:
        lines, size = stats[m]
        print(f"{m}: {', '.join(os.path.relpath(p) for p in inputs[m])}: {lines:,} lines, {fmt_bytes(size)}")

    compile_package()
    info = machine()
    load_before = os.getloadavg()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)

    py = sys.executable
    ns, name = gen_dump.namespace(target), gen_dump.service_name(target)
    cip = gen_dump.cluster_ip(target)
    grep_argv = {
        "nft-text": ["grep", "-F", f"{ns}/{name}/", nft_text],
        "ipvs": ["grep", "-F", "--", f"-t {cip}:{gen_dump.PORT} ", inputs["ipvs"][0]],
    }
    jobs: List[Tuple[str, str, Callable[[], Tuple[float, int, int]]]] = []
    for m in modes:
        ff = [a for p in inputs[m] for a in ("--from-file", f"node1={p}")]
        trace_in = ["--snapshot", snap] if m == "ipvs" else ff
        argvs = {
            "grep": grep_argv.get(m),
            "trace": [py, "-m", "kubectl_svcnet", "trace", name, "-n", ns, *trace_in, "-o", "json"],
            "map": [py, "-m", "kubectl_svcnet", "map", *ff, "-o", "json"],
        }
        for what, argv in argvs.items():
            if argv:
                out = o(f"modes-{what}-{m}.{'out' if what == 'grep' else 'json'}")
                jobs.append((m, what, lambda a=argv, out=out: run_child(a, out)))

    times: Dict[str, Dict[str, List[float]]] = {m: {} for m in modes}
    rss: Dict[str, Dict[str, int]] = {m: {} for m in modes}
    t_all = time.perf_counter()
    for r in range(repeat):
        print(f"round {r + 1}/{repeat}:", end="", flush=True)
        for m, what, job in jobs:
            wall, peak, _ = job()
            times[m].setdefault(what, []).append(wall)
            rss[m][what] = max(rss[m].get(what, 0), peak)
            print(f" {m} {what} {fmt_time(wall)},", end="", flush=True)
        print(flush=True)
    elapsed = time.perf_counter() - t_all
    load_after = os.getloadavg()

    med = {m: {k: statistics.median(v) for k, v in times[m].items()} for m in modes}
    checks: Dict[str, Dict[str, Tuple[bool, str]]] = {}
    grep_lines: Dict[str, int] = {}
    for m in modes:
        checks[m] = {"map": check_map(o(f"modes-map-{m}.json"), N, E, nodeports=m != "ipvs")}
        with open(o(f"modes-trace-{m}.json")) as f:
            checks[m]["trace"] = check_trace(f.read(), target, E)
        if "grep" in med[m]:
            with open(o(f"modes-grep-{m}.out"), "rb") as f:
                grep_lines[m] = f.read().count(b"\n")

    def cell(m: str, key: str) -> str:
        lines, size = stats[m]
        mt = med[m].get("map")
        if key == "input":
            return f"{lines:,} line{'s' if lines != 1 else ''}, {fmt_bytes(size)}"
        if key == "map":
            return fmt_time(mt)
        if key == "rate":
            per_line = f"{lines / mt:,.0f} lines/s, " if lines > 1 else ""
            return f"{per_line}{size / mt / 1e6:.1f} MB/s"
        if key == "map_rss":
            return f"{fmt_bytes(rss[m]['map'])} = {rss[m]['map'] / size:.1f}x input"
        if key == "trace":
            how = " (--snapshot)" if m == "ipvs" else ""
            return f"{fmt_time(med[m]['trace'])}{how}"
        if key == "trace_rss":
            return fmt_bytes(rss[m]["trace"])
        if key == "grep":
            return f"{fmt_time(med[m]['grep'])} ({grep_lines[m]} lines)" if "grep" in med[m] else "-"
        if key == "ratio":
            return f"{med[m]['trace'] / med[m]['grep']:.1f}x grep" if "grep" in med[m] else "-"
        return "PASS" if checks[m][key.split("_")[0]][0] else "FAIL"

    rows = [
        ("input", "input"), ("map -o json (subprocess)", "map"), ("  map rate", "rate"), ("  map peak RSS", "map_rss"),
        (f"trace {name} -n {ns} -o json", "trace"), ("  trace peak RSS", "trace_rss"),
        ("grep (manual method)", "grep"), ("  trace / grep", "ratio"), ("map check", "map_check"),
        ("trace check", "trace_check"),
    ]  # fmt: skip
    table = [("measurement", *modes)] + [(label, *(cell(m, key) for m in modes)) for label, key in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    fl = lambda la: " ".join(f"{x:.2f}" for x in la)  # noqa: E731
    print(f"\n{N:,} services x {E} endpoints; medians of {repeat} round-robin rounds, {fmt_time(elapsed)} in all; "
          f"load average {fl(load_before)} before, {fl(load_after)} after; {info.get('nproc')} CPUs, "
          f"{info.get('cpu')}, {info.get('python')}, kubectl-svcnet {info.get('kubectl_svcnet')} "
          f"({info.get('git', '?')})\n")  # fmt: skip
    print(line(table[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table[1:]:
        print(line(r))
    print()
    for m in modes:
        for what, (ok, why) in checks[m].items():
            print(f"{m} {what} check: {'PASS' if ok else 'FAIL'}: {why}")
    greps = "; ".join(
        f"{m} `{shlex.join([*a[:-1], os.path.basename(a[-1])])}`" for m, a in grep_argv.items() if m in modes
    )
    print(f"grep: {greps or '-'} (nft-json is one line: no grep). ipvs trace: --snapshot, all Services and slices")

    results = {
        "services": N, "endpoints": E, "target": f"{ns}/{name}", "repeat": repeat, "machine": info,
        "loadavg_before": load_before, "loadavg_after": load_after, "elapsed_seconds": elapsed,
        "inputs": {m: {"files": [os.path.relpath(p, ROOT) for p in inputs[m]], "lines": stats[m][0],
                       "bytes": stats[m][1]} for m in modes},
        "seconds": times, "median_seconds": med, "peak_rss_bytes": rss, "grep_lines": grep_lines,
        "checks": {m: {k: {"ok": ok, "detail": why} for k, (ok, why) in c.items()} for m, c in checks.items()},
    }  # fmt: skip
    with open(o(f"modes-{tag}.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"results: {os.path.relpath(o(f'modes-{tag}.json'))}")
    return 0 if all(ok for c in checks.values() for ok, _ in c.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
