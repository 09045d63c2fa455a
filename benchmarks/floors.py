#!/usr/bin/env python3
"""The floors under the performance goals on this machine: what no Python program can beat here.

    python3 benchmarks/floors.py                      # 10,000 services x 10 endpoints, best of 5
    python3 benchmarks/floors.py --services 2000 --repeat 7

run.py measures kubectl-svcnet against its goals (trace <= 3x grep; map >= 300,000 dump lines/s).
This measures what any CPython program that does the same job must spend before doing it, on the
same dump, so a missed goal can be told apart from a slow implementation:

  trace  `grep -F NEEDLE DUMP` (the goal's unit) against interpreter start-up alone: `python -c pass`,
         without site (-S) and isolated (-I -S), and the plugin's own start-up (`version`).
  map    in-process, each with nothing else: read the dump; touch every line once in Python (split and
         a startswith); read every rule once with iptables._FAST (the parser's cheapest read of a rule,
         one regex match); encode the map's JSON with json's C encoder, one dumps per service as
         render.write_json does. Their sum, plus start-up, against the map goal's time for this dump.

Nothing here resolves a rule: the floors are far below a real map, and still above the goal.
Figures go to benchmarks/out/floors-<S>x<E>.json. Exit status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
sys.path.insert(0, HERE)

import gen_dump  # noqa: E402
from run import MAP_GOAL, TRACE_GOAL, compile_package, machine  # noqa: E402


def best_subprocess(argv: List[str], repeat: int, out_path: str) -> float:
    """Best wall time of argv, stdout to a file (GNU grep stops at the first match on /dev/null)."""
    best = float("inf")
    for _ in range(repeat):
        with open(out_path, "wb") as out:
            t0 = time.perf_counter()
            subprocess.run(argv, stdout=out, stderr=subprocess.DEVNULL, check=False)
            best = min(best, time.perf_counter() - t0)
    return best


def best_inprocess(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    tag = f"{args.services}x{args.endpoints}"
    dump = os.path.join(OUT, f"dump-{tag}.txt")
    if not os.path.exists(dump):
        with open(dump, "w") as f:
            f.write("\n".join(gen_dump.generate(args.services, args.endpoints)) + "\n")
    compile_package()
    py = sys.executable
    target = 1007 % args.services
    needle = f"ns{target % 50}/svc{target}:"
    sink = os.path.join(OUT, "floors.out")
    r = args.repeat

    trace: Dict[str, float] = {
        "grep -F NEEDLE DUMP": best_subprocess(["grep", "-F", needle, dump], r, sink),
        "python -c pass": best_subprocess([py, "-c", "pass"], r, sink),
        "python -S -c pass": best_subprocess([py, "-S", "-c", "pass"], r, sink),
        "python -I -S -c pass": best_subprocess([py, "-I", "-S", "-c", "pass"], r, sink),
        "kubectl-svcnet version": best_subprocess([py, "-m", "kubectl_svcnet", "version"], r, sink),
    }
    budget = TRACE_GOAL * trace["grep -F NEEDLE DUMP"]

    map_json = os.path.join(OUT, f"map-{tag}.json")
    if not os.path.exists(map_json) or os.path.getmtime(map_json) < os.path.getmtime(dump):
        with open(map_json, "wb") as out:
            subprocess.run([py, "-m", "kubectl_svcnet", "map", "--from-file", f"node1={dump}", "-o", "json"],
                           stdout=out, check=True)  # fmt: skip
    from kubectl_svcnet.dataplane.iptables import _FAST

    with open(dump, encoding="utf-8") as f:
        text = f.read()
    lines = text.count("\n")
    with open(map_json, encoding="utf-8") as f:
        services = json.load(f)["services"]

    def touch() -> int:
        n = 0
        for line in text.split("\n"):
            if line.startswith("-A "):
                n += 1
        return n

    def match_rules() -> int:
        match = _FAST.match
        n = 0
        for line in text.split("\n"):
            if line.startswith("-A "):
                n += match(line, line.find(" ", 3) + 1) is not None
        return n

    def read() -> int:
        with open(dump, encoding="utf-8") as f:
            return len(f.read())

    floors: Dict[str, float] = {
        "read the dump": best_inprocess(read, r),
        "touch every line once": best_inprocess(touch, r),
        "one _FAST match per rule": best_inprocess(match_rules, r),
        "encode the map's JSON (C encoder)": best_inprocess(lambda: [json.dumps(s) for s in services], r),
    }
    # The line loop is inside the match loop: count it once.
    work = floors["read the dump"] + floors["one _FAST match per rule"] + floors["encode the map's JSON (C encoder)"]
    startup = trace["kubectl-svcnet version"]
    goal_time = lines / MAP_GOAL

    print(f"machine: {machine()}")
    size = os.path.getsize(dump) / 1e6
    print(f"dump: {dump}: {lines:,} lines, {size:.0f} MB; {len(services):,} service ports mapped")
    print("\ntrace goal: <= 3x grep")
    for k, v in trace.items():
        print(f"  {k:<28} {v * 1000:7.1f} ms  {v / trace['grep -F NEEDLE DUMP']:5.2f}x grep")
    print(f"  {'budget (3x grep)':<28} {budget * 1000:7.1f} ms")
    print(f"\nmap goal: >= {MAP_GOAL:,} lines/s = {goal_time:.2f} s for this dump")
    for k, v in floors.items():
        print(f"  {k:<36} {v:6.3f} s")
    print(f"  {'start-up (version)':<36} {startup:6.3f} s")
    total = work + startup
    print(f"  {'floor: start-up + read + match + encode':<36} {total:6.3f} s = {lines / total:,.0f} lines/s, "
          f"{total / goal_time:.0%} of the goal's time, before any rule is resolved")  # fmt: skip
    with open(os.path.join(OUT, f"floors-{tag}.json"), "w") as f:
        json.dump({"machine": machine(), "lines": lines, "trace": trace, "map": floors, "startup": startup,
                   "map_floor": total, "map_goal_time": goal_time, "trace_budget": budget}, f, indent=2)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
