"""The kubelet's part of the emulator: created pods start, and pods/exec runs commands over a websocket.

Pods: a created pod with ``spec.nodeName`` becomes Running ``ApiEmulator.pod_start_delay`` seconds
after its creation (None: it stays Pending, ContainerCreating — a pull that never ends), and Failed with
reason DeadlineExceeded once its ``activeDeadlineSeconds`` are up, as the kubelet reports them.

Exec (GET .../pods/<name>/exec?command=…&container=…&stdout=true&stderr=true, ``Upgrade: websocket``), as
kube-apiserver and the kubelet answer it (k8s.io/apimachinery/pkg/util/httpstream/wsstream, and
remotecommand's v4 error channel):

- subprotocols ``v5.channel.k8s.io`` and ``v4.channel.k8s.io`` (the server picks the first of
  `ApiEmulator.exec_protocols` the client offers); binary frames whose first byte is the channel: 1
  stdout, 2 stderr, 3 the Status as JSON: ``{"metadata":{},"status":"Success"}``, or for exit code N
  ``{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode",
  "message":"N"}]}}``; a program the container does not have is a Failure with reason InternalError and
  the container runtime's "executable file not found in $PATH" message. v5 adds channel 255 (a client
  closing one of its channels: ``[255, channel]``). Then a close frame.
- refusals before the upgrade are plain HTTP Status answers: 400 without ``Upgrade``, without a command
  or for a container that is not running, 403 without RBAC for pods/exec, 404 for no such pod.

What runs: ``ApiEmulator.exec_handler(call) -> (stdout, stderr, exit code)`` when set (unit tests:
canned answers); else, for a node in ``ApiEmulator.exec_netns`` (node name -> network namespace), the
argv itself, inside that namespace (``ip netns exec NS argv…``: the lab, as root). Every exec is
recorded in ``ApiEmulator.execs``. A client that goes away ends the exec (its process is killed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"
STDOUT, STDERR, ERROR, CLOSE = 1, 2, 3, 255
FRAME = 32 * 1024  # bytes of output per frame
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10


@dataclass
class ExecCall:
    """One exec as the kubelet received it (and, once finished, how it ended)."""

    namespace: str
    pod: str
    node: str
    container: str
    argv: List[str]
    protocol: str = ""
    exit_code: Optional[int] = None
    error: str = ""
    client_closed: bool = False
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)


ExecHandler = Callable[[ExecCall], Tuple[bytes, bytes, int]]


class Upgrade(Exception):
    """Raised by the router for an exec it accepts: the HTTP handler switches to the websocket."""

    def __init__(self, call: ExecCall):
        super().__init__(call.pod)
        self.call = call


# -- pods --------------------------------------------------------------------------------------------


def sync_pod(pod: Dict[str, Any], age: float, delay: Optional[float], node_ip: str,
             unpullable: Optional[Dict[str, str]] = None) -> bool:  # fmt: skip
    """Move `pod` on as its kubelet would, `age` seconds after its creation: Pending, Running after
    `delay` (None: never), Failed when its activeDeadlineSeconds are up; a container whose image is in
    `unpullable` (image -> the registry's answer) stays waiting in ErrImagePull. True when it changed."""
    spec = pod.get("spec") or {}
    status = pod.setdefault("status", {})
    phase = status.get("phase")
    if not spec.get("nodeName") or phase in ("Failed", "Succeeded"):
        return False
    deadline = spec.get("activeDeadlineSeconds")
    names = [str(c.get("name")) for c in spec.get("containers") or []]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if phase == "Running" and deadline is not None and delay is not None and age - delay >= float(deadline):
        status.update(phase="Failed", reason="DeadlineExceeded",
                      message="Pod was active on the node longer than the specified deadline")  # fmt: skip
        status["containerStatuses"] = [{"name": n, "ready": False, "restartCount": 0,
                                        "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}
                                       for n in names]  # fmt: skip
        return True
    if phase == "Running":
        return False
    bad = {str(c.get("name")): (unpullable or {})[c.get("image")] for c in spec.get("containers") or []
           if c.get("image") in (unpullable or {})}  # fmt: skip
    if bad:
        status["containerStatuses"] = [
            {"name": n, "ready": False, "restartCount": 0, "image": "",
             "state": {"waiting": {"reason": "ErrImagePull", "message": bad[n]} if n in bad else
                       {"reason": "ContainerCreating"}}} for n in names]  # fmt: skip
        return True
    if delay is None or age < delay:
        if not status.get("containerStatuses"):
            status["containerStatuses"] = [{"name": n, "ready": False, "restartCount": 0,
                                            "state": {"waiting": {"reason": "ContainerCreating"}}}
                                           for n in names]  # fmt: skip
            return True
        return False
    ip = node_ip if spec.get("hostNetwork") else status.get("podIP") or node_ip
    status.update(phase="Running", hostIP=node_ip, podIP=ip, podIPs=[{"ip": ip}], startTime=stamp)
    status["conditions"] = [{"type": t, "status": "True", "lastTransitionTime": stamp}
                            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]  # fmt: skip
    status["containerStatuses"] = [{"name": n, "ready": True, "restartCount": 0, "started": True,
                                    "state": {"running": {"startedAt": stamp}}} for n in names]  # fmt: skip
    return True


# -- websocket frames ----------------------------------------------------------------------------------


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """A server frame (never masked)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def read_frame(sock: Any) -> Tuple[int, bytes]:
    """One client frame (masked, as RFC 6455 requires of clients): (opcode, payload)."""

    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("client closed the connection")
            buf += chunk
        return buf

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    mask = exact(4) if b1 & 0x80 else b""
    data = exact(n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


def exec_status(code: int, argv: List[str], error: str = "") -> Dict[str, Any]:
    """What the kubelet's remotecommand server writes on the error channel."""
    if error:
        return {"metadata": {}, "status": "Failure", "message": error, "reason": "InternalError",
                "details": {"causes": [{"message": error}]}, "code": 500}  # fmt: skip
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    command = "[" + " ".join(argv) + "]"
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {command}, exit code "
                       f"{code}", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}  # fmt: skip


def not_found_message(program: str) -> str:
    return (f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{program}": '
            "executable file not found in $PATH: unknown")  # fmt: skip


# -- running an exec ---------------------------------------------------------------------------------------


class WebSocketExec:
    """Serve one upgraded exec connection: run the command (in a thread), meanwhile answer the client's
    frames, then stream the output, send the Status and close. All socket I/O happens in the serving
    thread (a TLS connection must not be read and written from two threads at once)."""

    def __init__(self, sock: Any, call: ExecCall, handler: Optional[ExecHandler], netns: Optional[str],
                 stopping: threading.Event):  # fmt: skip
        self.sock = sock
        self.call = call
        self.handler = handler
        self.netns = netns
        self.stopping = stopping
        self.cancel = threading.Event()  # the client went away: stop the command
        self._result: List[Any] = []

    def send(self, channel: int, data: bytes) -> None:
        for i in range(0, len(data), FRAME):
            self.sock.sendall(frame(bytes([channel]) + data[i : i + FRAME]))

    def _readable(self, timeout: float) -> bool:
        if hasattr(self.sock, "pending") and self.sock.pending():
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def _client_frame(self) -> bool:
        """Handle one client frame; False when the client closed."""
        op, data = read_frame(self.sock)
        if op == OP_CLOSE:
            self.call.client_closed = True
            self.sock.sendall(frame(data[:2], OP_CLOSE))
            return False
        if op == OP_PING:
            self.sock.sendall(frame(data, OP_PONG))
        return True  # data frames: stdin, or v5's [255, channel] close of a client channel

    def serve(self) -> None:
        call = self.call
        worker = threading.Thread(target=self._work, name="apiemu-exec", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                if self.stopping.is_set():
                    self.cancel.set()
                    return
                if self._readable(0.05) and not self._client_frame():
                    self.cancel.set()
                    return
            out, err, code = self._result[0] if self._result else (b"", b"", -1)
            if out:
                self.send(STDOUT, out)
            if err:
                self.send(STDERR, err)
            call.exit_code = None if call.error else code
            self.send(ERROR, json.dumps(exec_status(code, call.argv, call.error)).encode())
            self.sock.sendall(frame(struct.pack("!H", 1000), OP_CLOSE))
            end = time.monotonic() + 2.0
            while time.monotonic() < end and self._readable(0.05):  # the client's close reply
                if not self._client_frame():
                    break
        except (OSError, EOFError, ValueError):
            call.client_closed = True
            self.cancel.set()
        finally:
            worker.join(5)
            call.done.set()

    def _work(self) -> None:
        try:
            if self.handler is not None:
                out, err, code = self.handler(self.call)
                out = out.encode() if isinstance(out, str) else out
                err = err.encode() if isinstance(err, str) else err
                self._result.append((out, err, int(code)))
            elif self.netns is not None:
                self._result.append(self._run_in_netns())
            else:
                self.call.error = f"apiemu: no exec handler and no network namespace for node {self.call.node!r}"
                self._result.append((b"", b"", -1))
        except Exception as e:  # noqa: BLE001 - a test's handler failing is this exec's error
            self.call.error = f"apiemu exec handler: {type(e).__name__}: {e}"
            self._result.append((b"", b"", -1))

    def _run_in_netns(self) -> Tuple[bytes, bytes, int]:
        """The argv in the node's network namespace, as the privileged hostNetwork container would run it."""
        argv = self.call.argv
        if shutil.which(argv[0]) is None:
            self.call.error = not_found_message(argv[0])
            return b"", b"", -1
        proc = subprocess.Popen(["ip", "netns", "exec", str(self.netns), *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        outs: Dict[str, bytes] = {}
        readers = [threading.Thread(target=lambda k=k, f=f: outs.__setitem__(k, f.read()), daemon=True)
                   for k, f in (("out", proc.stdout), ("err", proc.stderr))]  # fmt: skip
        for t in readers:
            t.start()
        while proc.poll() is None:
            if self.cancel.wait(0.02):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
                break
        for t in readers:
            t.join(5)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return outs.get("out", b""), outs.get("err", b""), code


def handshake(handler: Any, call: ExecCall) -> None:
    """Answer the upgrade (101 Switching Protocols with the chosen subprotocol) on `handler`'s socket."""
    key = handler.headers.get("Sec-WebSocket-Key") or ""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(key)}", f"Sec-WebSocket-Protocol: {call.protocol}"]  # fmt: skip
    handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    handler.wfile.flush()


def choose_protocol(offered: str, supported: Tuple[str, ...]) -> Optional[str]:
    wanted = [p.strip() for p in offered.split(",") if p.strip()]
    for p in supported:
        if p in wanted:
            return p
    return None


def socket_of(handler: Any) -> socket.socket:
    return handler.connection
