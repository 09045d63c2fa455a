"""Many nodes at once: bounded parallelism, one result or one error per node, bounded time.

    results = collect_nodes({"node01": "10.0.0.11", ...}, SSHRunnerFactory(opts), parallel=16,
                            timeout=300, progress=terminal_progress(sys.stderr))
    for name, r in results.items():
        r.value (NodeDumps) if r.ok else r.error (NodeAccessError)

Threads (paramiko is blocking). Workers are daemon threads fed from a queue; the calling thread
waits for their answers, calls `handle` and `progress` on each as it arrives (always from the calling
thread), and stops waiting at the overall deadline: a node without an answer by then gets an error, its
runner is closed (which ends its blocked I/O), and nothing waits for it. One node's error, hang or crash
never touches another's.

`handle` is where a live `map` resolves each node while the others are still being read: in the calling
thread, one node at a time. Resolving is CPU work under the GIL, so threads would not run two at once
anyway, and two at once would each hold a dump and its parse; in one thread the cyclic GC can be turned
off around it (app.no_cyclic_gc; gc.disable is process-wide) without another thread turning it back on.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, Iterable, Iterator, List, Mapping, Optional, TextIO, TypeVar

from kubectl_svcnet.collect.runner import Runner
from kubectl_svcnet.errors import NodeAccessError, SvcnetError

DEFAULT_PARALLEL = 16
DEFAULT_TIMEOUT = 300.0  # seconds for the whole fan-out

T = TypeVar("T")


@dataclass
class NodeResult(Generic[T]):
    node: str
    value: Optional[T] = None
    error: Optional[SvcnetError] = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Progress:
    """One node finished: how far the fan-out is."""

    done: int
    total: int
    failed: int
    node: str
    ok: bool
    seconds: float

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"reading nodes: {self.done}/{self.total}{failed}"


ProgressFn = Callable[[Progress], None]


def terminal_progress(stream: TextIO) -> Optional[ProgressFn]:
    """A progress callback that rewrites one line on `stream`, or None when it is not a terminal."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None

    def show(p: Progress) -> None:
        end = "\n" if p.done == p.total else ""
        stream.write("\r\x1b[K" + p.line() + end)
        stream.flush()

    return show


def _as_error(e: BaseException, node: str) -> SvcnetError:
    if isinstance(e, SvcnetError):
        if e.where is None:
            e.where = node
        return e
    err = NodeAccessError(f"unexpected {type(e).__name__}: {e}", where=node)
    err.__cause__ = e
    return err


def run_all(
    nodes: Iterable[str],
    work: Callable[[str], T],
    parallel: int = DEFAULT_PARALLEL,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[Callable[[str], None]] = None,
    handle: Optional[Callable[[NodeResult[T]], NodeResult[Any]]] = None,
) -> Dict[str, NodeResult[Any]]:
    """`work(node)` for every node, at most `parallel` at a time, all within `timeout` seconds.
    Returns one NodeResult per node, in the order given. `cancel(node)` is called for every node still
    running at the deadline (to close its connection).

    `handle(result)`, in the calling thread, takes each result as it arrives and returns what is kept
    instead (a live map resolves the node's dumps there and drops their text). The other nodes' reads go
    on meanwhile (their waits on the network release the GIL); its time is not counted against
    `timeout`, which bounds the wait for nodes, not the client's own work; and a node is started only
    while fewer than `parallel` are started and not yet handled, so answers never pile up beyond
    `parallel` whatever the node count."""
    names: List[str] = list(dict.fromkeys(nodes))
    results: Dict[str, NodeResult[T]] = {}
    if not names:
        return results
    parallel = max(1, min(int(parallel), len(names)))
    todo: queue.Queue = queue.Queue()
    for n in names:
        todo.put(n)
    done: queue.Queue = queue.Queue()
    started: Dict[str, float] = {}
    stop = threading.Event()
    slots = threading.Semaphore(parallel)  # nodes started and not yet handled

    def worker() -> None:
        while not stop.is_set():
            if not slots.acquire(timeout=1.0):  # (the stop check: rarely, not to take the GIL from the handler)
                continue
            try:
                node = todo.get_nowait()
            except queue.Empty:
                slots.release()
                return
            t0 = time.monotonic()
            started[node] = t0
            try:
                # (no local keeps the value: an idle worker must not pin the last node's dumps)
                done.put(NodeResult(node, value=work(node), seconds=time.monotonic() - t0))
            except BaseException as e:  # noqa: BLE001 - every failure becomes this node's error
                done.put(NodeResult(node, error=_as_error(e, node), seconds=time.monotonic() - t0))

    threads = [threading.Thread(target=worker, name=f"svcnet-node-{i}", daemon=True) for i in range(parallel)]
    for t in threads:
        t.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    failed = 0
    try:
        while len(results) < len(names):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                r = done.get(timeout=left if left is not None else 1.0)
            except queue.Empty:
                continue
            if handle is not None:
                t0 = time.monotonic()
                r = handle(r)
                if deadline is not None:
                    deadline += time.monotonic() - t0
            results[r.node] = r
            slots.release()
            failed += 0 if r.ok else 1
            if progress is not None:
                progress(Progress(len(results), len(names), failed, r.node, r.ok, r.seconds))
    finally:
        stop.set()
        late = [n for n in names if n not in results]
        now = time.monotonic()
        with interrupts_held():  # a second Ctrl-C must not cut the clean-up short (debug pods left)
            for n in late:
                how = "still running" if n in started else "never started"
                if n in started and cancel is not None:
                    try:
                        cancel(n)
                    except Exception as e:  # noqa: BLE001 - closing is best effort; the node fails anyway
                        how += f"; closing it failed: {type(e).__name__}: {e}"
                results[n] = NodeResult(
                    n,
                    error=NodeAccessError(f"no answer within {timeout:g}s for all nodes ({how})", where=n),
                    seconds=now - started.get(n, now),
                )
    return {n: results[n] for n in names}


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored inside the block (in the main thread; elsewhere signals cannot be
    set and nothing changes): for clean-up that must finish, such as deleting debug pods. Everything
    done inside is bounded by its own timeouts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


RunnerFactory = Callable[[str, str], Runner]  # (node name, address) -> Runner


def collect_nodes(
    nodes: Mapping[str, str],
    runner_factory: RunnerFactory,
    parallel: int = DEFAULT_PARALLEL,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    progress: Optional[ProgressFn] = None,
    collect: Optional[Callable[[Runner, str], Any]] = None,
    handle: Optional[Callable[[NodeResult[Any]], NodeResult[Any]]] = None,
) -> Dict[str, NodeResult[Any]]:
    """`nodecmds.collect_node` on every node (name -> address), each through its own runner, which
    is always closed. Returns name -> NodeResult(value=NodeDumps | error=NodeAccessError), each as
    `handle` (run_all) turned it, when given."""
    if collect is None:
        from kubectl_svcnet.collect.nodecmds import collect_node as collect
    runners: Dict[str, Runner] = {}
    lock = threading.Lock()

    def work(node: str) -> Any:
        runner = runner_factory(node, nodes[node])
        with lock:
            runners[node] = runner
        try:
            return collect(runner, node)
        finally:
            runner.close()

    def cancel(node: str) -> None:
        with lock:
            runner = runners.get(node)
        if runner is not None:
            runner.close()

    return run_all(list(nodes), work, parallel=parallel, timeout=timeout, progress=progress, cancel=cancel,
                   handle=handle)  # fmt: skip
