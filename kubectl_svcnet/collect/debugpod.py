"""Reach a node through a short-lived privileged pod (``--via pod``), for clusters without SSH.

    factory = PodRunnerFactory(session, PodOptions(namespace="default"))
    with factory(node="node01", address="") as runner:   # no pod yet
        collect_node(runner, "node01")                    # first run(): create, wait Running, exec
    # closed: the pod is deleted (grace period 0)

The pod is what ``kubectl debug node/NAME`` would make, narrowed to what reading kube-proxy's rules
needs: ``spec.nodeName`` (no scheduler), ``hostNetwork: true`` (the node's netfilter and its
127.0.0.1:10256 healthz), no host PID/IPC namespace and no host filesystem, one ``privileged`` container
(iptables-save needs CAP_NET_ADMIN; nft and ipvsadm read through netlink) that only sleeps,
tolerations ``operator: Exists`` (control-plane and tainted nodes too), ``restartPolicy: Never`` and
``activeDeadlineSeconds``, so even a pod this tool could not delete (the process was killed with
SIGKILL) stops by itself. Commands run through the pods/exec API as argv lists (`nodecmds.py`'s fixed
list): nothing from the API is ever made into a command, and no shell text is built here.

Deletion is the point of this module (habit 8: kvaps/kubectl-node-shell's ``trap``): `PodRunner.close`
deletes the pod, from `finally` in fanout's worker, from fanout's cancel (the main thread on Ctrl-C, or
at the overall deadline) and from `PodRunnerFactory.close`; it waits for a create still in flight, so a
pod created while the run was being stopped is deleted too. `sigterm_raises` turns SIGTERM into an
exception while pods exist, so ``kill`` cleans up like Ctrl-C. A pod that could not be deleted is
named in a warning with the command that deletes it.

Only collect/api.py talks to the API; every API failure leaves here as a NodeAccessError of the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import signal
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from kubectl_svcnet.collect import api
from kubectl_svcnet.collect.runner import DEFAULT_TIMEOUT, CommandTimeout, Result, Runner, quote_argv
from kubectl_svcnet.errors import ApiError, NodeAccessError

DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"  # iptables(-nft/-legacy)-save, nft, ipvsadm, ipset, gzip, curl
CONTAINER = "svcnet"
MANAGED_BY = ("app.kubernetes.io/managed-by", "kubectl-svcnet")
NODE_ANNOTATION = "kubectl-svcnet/node"  # a node name can be longer than a label value may be
DEFAULT_START_TIMEOUT = 120.0  # seconds for the pod to run (an image pull on a fresh node counts)
DEFAULT_DEADLINE = 900  # activeDeadlineSeconds: the kubelet stops the pod after this, whatever happens here
DEFAULT_MAX_OUTPUT = 512 * 1024 * 1024
CREATE_WAIT = 15.0  # seconds close() waits for a create in flight before deleting its pod


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised by `sigterm_raises`): cleans up as Ctrl-C does."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While in the block, SIGTERM raises `Terminated` in the main thread (Python's default would end
    the process without running any `finally`, leaving pods behind); the old handler is restored after.
    Off the main thread signals cannot be handled: then nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass(frozen=True)
class PodOptions:
    """How debug pods are made; one value for a whole run (the CLI builds it from --image, --pod-*)."""

    namespace: Optional[str] = None  # None: the kubeconfig context's namespace, as `kubectl debug node`
    image: str = DEFAULT_IMAGE
    start_timeout: float = DEFAULT_START_TIMEOUT
    command_timeout: float = DEFAULT_TIMEOUT
    deadline_seconds: int = DEFAULT_DEADLINE
    max_output: int = DEFAULT_MAX_OUTPUT


def pod_name(node: str) -> str:
    """``svcnet-<node hash>-<random>``: valid whatever the node is called, and never reused, so two
    runs (or a leftover pod) cannot collide."""
    digest = hashlib.sha256(node.encode("utf-8")).hexdigest()[:8]
    return f"svcnet-{digest}-{secrets.token_hex(3)}"


def pod_manifest(name: str, node: str, namespace: str, options: PodOptions) -> Dict[str, Any]:
    """The debug pod for `node` (see the module docstring for why each field is there)."""
    deadline = max(1, int(options.deadline_seconds))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY[0]: MANAGED_BY[1]},
            "annotations": {NODE_ANNOTATION: node},
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "hostPID": False,
            "hostIPC": False,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": CONTAINER,
                    "image": options.image,
                    "imagePullPolicy": "IfNotPresent",
                    # Sleeps no longer than the deadline; the work arrives through exec.
                    "command": ["sleep", str(deadline)],
                    "securityContext": {"privileged": True},
                }
            ],
        },
    }


def delete_hint(namespace: str, name: str) -> str:
    return f"kubectl delete pod {name} -n {namespace} --grace-period=0"


class PodRunner(Runner):
    """Runs argv lists on one node through a debug pod, created on the first `run` and deleted by
    `close` (idempotent, from any thread). Every failure is a NodeAccessError of the node."""

    remote = True  # the output crosses the API server: worth compressing (when exec carries bytes)

    def __init__(self, node: str, session: Any, namespace: str, options: Optional[PodOptions] = None,
                 leftovers: Optional[List[str]] = None):  # fmt: skip
        opts = options or PodOptions()
        super().__init__(node, sudo=False, timeout=opts.command_timeout)
        self.options = opts
        self.session = session
        self.namespace = namespace
        self.pod: Optional[str] = None  # the name, once a create was sent (it may have succeeded)
        self.remote = api.exec_supports_binary()
        self._leftovers = leftovers if leftovers is not None else []
        self._lock = threading.Lock()  # state: closed, the current exec stream
        self._delete_lock = threading.Lock()  # one deletion at a time; a second close waits for it
        self._created = threading.Event()  # set when no create is in flight
        self._created.set()
        self._running = False
        self._closed = False
        self._deleted = False
        self._stream: Any = None

    # -- the pod -------------------------------------------------------------------------------

    def _fail(self, e: ApiError) -> NodeAccessError:
        return NodeAccessError(e.message, where=self.name, hint=e.hint)

    def _cancelled(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Create the pod and wait until it runs (what the first `run` does)."""
        with self._lock:
            if self._closed:
                raise NodeAccessError("cancelled before its debug pod was created", where=self.name)
            if self._running:
                return
            first = self.pod is None
            if first:
                self.pod = pod_name(self.name)
                self._created.clear()
        name = self.pod
        assert name is not None
        if first:
            try:
                api.create_pod(
                    self.session, self.namespace, pod_manifest(name, self.name, self.namespace, self.options)
                )
            except ApiError as e:
                if getattr(e, "code", 0) in (403, 409, 422, 400, 404):  # refused: nothing was created
                    with self._lock:
                        self._deleted = True
                raise self._fail(e) from None
            finally:
                self._created.set()
        try:
            api.wait_pod_running(self.session, self.namespace, name, self.options.start_timeout, self._cancelled)
        except ApiError as e:
            if getattr(e, "reason", "") == "Cancelled":
                raise NodeAccessError("cancelled while its debug pod was starting", where=self.name) from None
            raise self._fail(e) from None
        with self._lock:
            self._running = True

    def _opened(self, handle: Any) -> None:
        with self._lock:
            self._stream = handle
            closed = self._closed
        if closed:
            api.close_exec(handle)

    def _run(self, argv: List[str], timeout: float) -> Result:
        self.start()
        command = quote_argv(argv)
        assert self.pod is not None
        try:
            res = api.exec_pod(self.session, self.namespace, self.pod, CONTAINER, argv, timeout,
                               self.options.max_output, opened=self._opened)  # fmt: skip
        except ApiError as e:
            raise self._fail(e) from None
        finally:
            with self._lock:
                self._stream = None
        if res.cancelled:
            raise NodeAccessError(f"cancelled while running {command}", where=self.name)
        if res.timed_out:
            raise CommandTimeout(command, timeout, where=self.name)
        if res.exit_code is None:
            raise NodeAccessError(f"exec of {command} in pod {self.pod} ended without an exit status", where=self.name)
        return Result(res.stdout, res.stderr, res.exit_code, command)

    def close(self) -> None:
        """Stop a running exec and delete the pod (grace period 0), once, whatever state it is in.
        Never raises: a pod that cannot be deleted is added to the leftovers (a warning)."""
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            api.close_exec(stream)
        self._created.wait(CREATE_WAIT)  # a create that never answers: delete anyway (404 if it never landed)
        if not self._delete_lock.acquire(timeout=CREATE_WAIT + 30):
            return  # another close is deleting it, and hangs: that one reports
        try:
            with self._lock:
                name, done = self.pod, self._deleted
            if name is None or done:
                return
            try:
                api.delete_pod(self.session, self.namespace, name, grace_period_seconds=0)
            except ApiError as e:
                self._leftovers.append(
                    f"node {self.name}: debug pod {name} in namespace {self.namespace} was not deleted "
                    f"({e.one_line()}); delete it with: {delete_hint(self.namespace, name)}"
                )
            with self._lock:
                self._deleted = True
        finally:
            self._delete_lock.release()


class PodRunnerFactory:
    """Makes a PodRunner per node (for fanout), all in one namespace through one API session. `close()`
    deletes any pod a runner still holds; `leftovers` lists pods that could not be deleted."""

    def __init__(self, session: Any, options: Optional[PodOptions] = None):
        self.options = options or PodOptions()
        self.session = session
        self.namespace = self.options.namespace or session.namespace or "default"
        self.leftovers: List[str] = []
        self._runners: List[PodRunner] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, address: str = "") -> PodRunner:
        runner = PodRunner(name, self.session, self.namespace, self.options, self.leftovers)
        with self._lock:
            self._runners.append(runner)
        return runner

    def close(self) -> None:
        with self._lock:
            runners = list(self._runners)
        for r in runners:
            r.close()
