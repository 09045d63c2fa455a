"""A pod's listener: answers every TCP connection with the address it was accepted on.

Run inside a pod namespace (`ip netns exec POD python3 server.py --ports 80,8080`). For each accepted
connection it writes one JSON line ``{"ip": <local ip>, "port": <local port>, "peer": <client ip>}``
and closes, so the client learns which pod (and which port) the Service rules sent it to, and the
pod's view of the source address (masqueraded or not).

Standalone (stdlib only). It exits on SIGTERM, when its parent (the test process) dies, or after
--max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux/glibc: fall back to polling the parent below
        pass
    if parent_pid and os.getppid() != parent_pid:  # parent already gone before prctl took effect
        sys.exit(0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True, help="comma-separated TCP ports")
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    args = ap.parse_args(argv)
    _die_with_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    for port in sorted({int(p) for p in args.ports.split(",") if p}):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(512)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)

    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        if args.parent_pid and os.getppid() != args.parent_pid:
            return 0
        for key, _ in sel.select(timeout=1.0):
            lsock = key.fileobj
            for _ in range(64):  # drain the accept queue, bounded
                try:
                    conn, peer = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                try:
                    ip, port = conn.getsockname()[:2]
                    msg = json.dumps({"ip": ip, "port": port, "peer": peer[0]}) + "\n"
                    conn.setblocking(True)
                    conn.settimeout(1.0)
                    conn.sendall(msg.encode())
                except OSError:
                    pass
                finally:
                    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
