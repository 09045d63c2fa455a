"""Fan-out over many nodes with fake runners: one result or one error per node, bounded parallelism,
bounded time, progress from the calling thread, every runner closed."""

from __future__ import annotations

import io
import threading
import time
from typing import Dict, List

import pytest

from kubectl_svcnet.collect.fanout import NodeResult, Progress, collect_nodes, run_all, terminal_progress
from kubectl_svcnet.collect.runner import Result, Runner
from kubectl_svcnet.errors import NodeAccessError


class FakeRunner(Runner):
    """`behaviour`: "ok", "fail" (NodeAccessError), "crash" (ValueError), "hang" (until closed)."""

    def __init__(self, name: str, behaviour: str, delay: float = 0.0, gauge: Gauge | None = None):
        super().__init__(name)
        self.behaviour = behaviour
        self.delay = delay
        self.gauge = gauge
        self.closed = threading.Event()
        self.close_calls = 0

    def _run(self, argv: List[str], timeout: float) -> Result:
        if self.gauge:
            self.gauge.enter()
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.behaviour == "fail":
                raise NodeAccessError(f"connection refused (10.0.0.{len(self.name)}:22)", where=self.name)
            if self.behaviour == "crash":
                raise ValueError("a bug")
            if self.behaviour == "hang":
                self.closed.wait(30)  # a node that never answers; closing the runner ends it
                raise NodeAccessError("connection closed", where=self.name)
            return Result(f"answer from {self.name}".encode(), "", 0, "true")
        finally:
            if self.gauge:
                self.gauge.leave()

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


class Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def _collect(runner: Runner, node: str) -> str:
    return runner.run(["true"]).text


def test_one_result_or_one_error_per_node_and_a_hang_is_bounded() -> None:
    plan = {"a": "ok", "bad": "fail", "hung": "hang", "c": "ok", "bug": "crash", "d": "ok"}
    runners: Dict[str, FakeRunner] = {}

    def factory(name: str, address: str) -> FakeRunner:
        runners[name] = FakeRunner(name, plan[name])
        return runners[name]

    started = time.monotonic()
    res = collect_nodes({n: f"addr-{n}" for n in plan}, factory, parallel=3, timeout=1.0, collect=_collect)
    took = time.monotonic() - started
    assert took < 2.0, f"fan-out not bounded: {took:.1f}s"
    assert list(res) == list(plan)  # the order given
    for n in ("a", "c", "d"):
        assert res[n].ok and res[n].value == f"answer from {n}"
    assert res["bad"].error.message == "connection refused (10.0.0.3:22)" and res["bad"].error.where == "bad"
    assert isinstance(res["bug"].error, NodeAccessError) and "unexpected ValueError: a bug" in res["bug"].error.message
    assert "no answer within 1s" in res["hung"].error.message and res["hung"].error.where == "hung"
    assert all(r.close_calls >= 1 for r in runners.values())  # every runner closed (the hung one cancelled)


def test_parallelism_is_bounded() -> None:
    gauge = Gauge()
    names = [f"n{i}" for i in range(12)]
    res = collect_nodes(
        {n: n for n in names},
        lambda n, a: FakeRunner(n, "ok", delay=0.05, gauge=gauge),
        parallel=3,
        collect=_collect,
    )
    assert all(r.ok for r in res.values()) and len(res) == 12
    assert gauge.max == 3


def test_parallel_speeds_up_slow_nodes() -> None:
    names = [f"n{i}" for i in range(8)]
    started = time.monotonic()
    collect_nodes({n: n for n in names}, lambda n, a: FakeRunner(n, "ok", delay=0.3), parallel=8, collect=_collect)
    assert time.monotonic() - started < 8 * 0.3 / 2


def test_progress_is_reported_from_the_calling_thread() -> None:
    seen: List[Progress] = []
    threads = set()

    def progress(p: Progress) -> None:
        threads.add(threading.current_thread())
        seen.append(p)

    plan = {"a": "ok", "b": "fail", "c": "ok"}
    collect_nodes({n: n for n in plan}, lambda n, a: FakeRunner(n, plan[n]), progress=progress, collect=_collect)
    assert threads == {threading.main_thread()}
    assert [p.done for p in seen] == [1, 2, 3] and all(p.total == 3 for p in seen)
    assert seen[-1].failed == 1 and seen[-1].line() == "reading nodes: 3/3, 1 failed"


def test_terminal_progress_only_on_a_terminal() -> None:
    assert terminal_progress(io.StringIO()) is None

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    show = terminal_progress(tty)
    assert show is not None
    show(Progress(1, 2, 0, "a", True, 0.1))
    show(Progress(2, 2, 1, "b", False, 0.1))
    assert tty.getvalue() == "\r\x1b[Kreading nodes: 1/2\r\x1b[Kreading nodes: 2/2, 1 failed\n"


def test_run_all_edge_cases() -> None:
    assert run_all([], lambda n: n) == {}
    res = run_all(["x", "x", "y"], lambda n: n.upper(), parallel=0)
    assert list(res) == ["x", "y"] and res["y"] == NodeResult("y", value="Y", seconds=res["y"].seconds)


def test_nodes_queued_behind_a_hang_are_reported_not_lost() -> None:
    release = threading.Event()

    def work(n: str) -> str:
        if n == "slow":
            release.wait(10)
        return n

    try:
        res = run_all(["slow", "queued"], work, parallel=1, timeout=0.3)
    finally:
        release.set()
    assert "still running" in res["slow"].error.message
    assert "never started" in res["queued"].error.message


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_even_base_exceptions_in_a_worker_stay_with_their_node(exc: type) -> None:
    def work(n: str) -> str:
        if n == "b":
            raise exc()
        return n

    res = run_all(["a", "b", "c"], work)
    assert res["a"].ok and res["c"].ok and not res["b"].ok


def test_a_second_ctrl_c_does_not_cut_the_clean_up_short():
    """Ctrl-C while nodes run: every running node is still cancelled (its debug pod deleted) even when
    Ctrl-C arrives again during the clean-up, and the first interrupt still ends the run."""
    import os
    import signal

    cancelled: List[str] = []
    gate = threading.Event()

    def work(node: str) -> str:
        gate.wait(10)
        return node

    def cancel(node: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # impatient user: Ctrl-C again
        time.sleep(0.05)
        cancelled.append(node)

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_all(["a", "b", "c"], work, parallel=3, timeout=20, cancel=cancel)
    finally:
        gate.set()
        timer.cancel()
    assert sorted(cancelled) == ["a", "b", "c"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
