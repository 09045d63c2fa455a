"""`python -m tests.apiemu serve DIR WORKDIR`: serve a snapshot's objects until stdin closes.

For lab tests that run the CLI inside a network namespace: started there with `ip netns exec`, it
listens on that namespace's loopback, writes WORKDIR/kubeconfig, prints one line `READY <url>`, and
stops when its parent closes stdin (or dies), so it never outlives the test.
"""

from __future__ import annotations

import sys

from tests.apiemu.server import ApiEmulator


def main(argv: list) -> int:
    if len(argv) != 3 or argv[0] != "serve":
        print("usage: python -m tests.apiemu serve SNAPSHOT_DIR WORKDIR", file=sys.stderr)
        return 2
    with ApiEmulator.from_dir(argv[1], workdir=argv[2]) as emu:
        print(f"READY {emu.url}", flush=True)
        sys.stdin.read()  # until the parent closes our stdin or goes away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
