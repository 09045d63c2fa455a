"""The prober: opens new TCP connections and reports where each one landed.

Run inside a client namespace:

    ip netns exec NS python3 probe.py '{"timeout": 1.5, "parallel": 32, "targets": [
        {"id": "a", "ip": "172.30.0.41", "port": 80, "count": 300, "src": null, "max_timeouts": 20,
         "group": null}]}'

Every attempt is a new socket with a kernel-chosen source port, so each one is a new conntrack entry
and takes the Service rules afresh. Attempts of all targets are interleaved, at most `parallel` in
flight, each bounded by `timeout` seconds (connect plus reply). A target stops early once it has
`max_timeouts` timed-out attempts (the rest are counted as `skipped`), so a dropped route costs one
timeout, not `count` of them. Targets sharing a `group` have at most one attempt in flight between
them: with session affinity the first connection's choice must be recorded before the next one is
made, or two racing first connections could pick different backends.

Prints one JSON object: ``{"results": {id: {"attempts", "answers": {"ip:port": n}, "peers": {ip: n},
"refused", "timeout", "unreachable", "skipped", "other": {reason: n}}}}``. `refused` is a TCP RST or an
ICMP port-unreachable (ECONNREFUSED), `timeout` no answer to the SYN (a drop), `unreachable` an ICMP
host/net unreachable.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import sys
import time
from collections import Counter, deque
from typing import Any, Dict

IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the source port at connect() time, not bind() time
MAX_REPLY = 4096


def _new_result() -> Dict[str, Any]:
    return {
        "attempts": 0,
        "answers": Counter(),
        "peers": Counter(),
        "refused": 0,
        "timeout": 0,
        "unreachable": 0,
        "skipped": 0,
        "other": Counter(),
    }


def _classify(res: Dict[str, Any], err: int) -> None:
    if err == errno.ECONNREFUSED:
        res["refused"] += 1
    elif err in (errno.ETIMEDOUT,):
        res["timeout"] += 1
    elif err in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        res["unreachable"] += 1
    else:
        res["other"][errno.errorcode.get(err, str(err))] += 1


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    timeout = float(spec.get("timeout", 1.5))
    parallel = max(1, int(spec.get("parallel", 16)))
    targets = {t["id"]: t for t in spec["targets"]}
    results = {tid: _new_result() for tid in targets}

    # Round-robin order of attempts across targets.
    queues = {tid: int(t["count"]) for tid, t in targets.items()}
    pending: deque = deque()
    while any(queues.values()):
        for tid in targets:
            if queues[tid] > 0:
                queues[tid] -= 1
                pending.append(tid)

    sel = selectors.DefaultSelector()
    inflight: Dict[socket.socket, Dict[str, Any]] = {}
    busy_groups: set = set()

    def group_of(tid: str) -> Any:
        return targets[tid].get("group")

    def next_startable() -> Any:
        for i, tid in enumerate(pending):
            if group_of(tid) is None or group_of(tid) not in busy_groups:
                del pending[i]
                return tid
        return None

    def finish(sock: socket.socket) -> None:
        st = inflight.pop(sock, None)
        if st is not None:
            busy_groups.discard(group_of(st["tid"]))
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def start(tid: str) -> None:
        t = targets[tid]
        res = results[tid]
        max_to = t.get("max_timeouts")
        if max_to is not None and res["timeout"] >= int(max_to):
            res["skipped"] += 1
            return
        res["attempts"] += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if t.get("src"):
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((t["src"], 0))
            err = sock.connect_ex((t["ip"], int(t["port"])))
        except OSError as e:
            sock.close()
            _classify(res, e.errno or 0)
            return
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            _classify(res, err)
            return
        inflight[sock] = {"tid": tid, "phase": "connect", "deadline": time.monotonic() + timeout, "buf": b""}
        if group_of(tid) is not None:
            busy_groups.add(group_of(tid))
        sel.register(sock, selectors.EVENT_WRITE)

    while pending or inflight:
        while pending and len(inflight) < parallel:
            tid = next_startable()
            if tid is None:
                break
            start(tid)
        if not inflight:
            continue
        now = time.monotonic()
        wait = max(0.0, min(st["deadline"] for st in inflight.values()) - now)
        for key, _ in sel.select(timeout=min(wait, timeout)):
            sock = key.fileobj
            st = inflight.get(sock)
            if st is None:
                continue
            res = results[st["tid"]]
            if st["phase"] == "connect":
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    _classify(res, err)
                    finish(sock)
                    continue
                st["phase"] = "read"
                sel.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(MAX_REPLY)
            except OSError as e:
                res["other"]["read-" + errno.errorcode.get(e.errno or 0, "error")] += 1
                finish(sock)
                continue
            st["buf"] += data
            if data and b"\n" not in st["buf"] and len(st["buf"]) < MAX_REPLY:
                continue
            try:
                reply = json.loads(st["buf"].split(b"\n", 1)[0])
                res["answers"][f"{reply['ip']}:{reply['port']}"] += 1
                res["peers"][reply["peer"]] += 1
            except (ValueError, KeyError, TypeError):
                res["other"]["bad-reply"] += 1
            finish(sock)
        now = time.monotonic()
        for sock, st in list(inflight.items()):
            if st["deadline"] <= now:
                res = results[st["tid"]]
                if st["phase"] == "connect":
                    res["timeout"] += 1
                else:
                    res["other"]["no-reply"] += 1
                finish(sock)
    return {"results": results}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0] if argv else sys.stdin.read())
    json.dump(run(spec), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
