"""ActionRunner (bounded, non-blocking workers) and ServiceMonitor, with real agents."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from harepl.runtime.agents import (
    ERROR,
    SUCCESS,
    ActionResult,
    ActionRunner,
    AgentContext,
    ServiceMonitor,
    Status,
    agent_for,
)
from tests.support import wait_until


def blocking_job(sid, gate, entered, lock, peak):
    def fn():
        with lock:
            entered.append(sid)
            peak[0] = max(peak[0], len(entered) - peak[1])
        gate.wait()
        with lock:
            peak[1] += 1
        return ActionResult(sid, "start", SUCCESS)
    return fn


def test_max_workers_respected_and_submit_does_not_block():
    runner = ActionRunner(max_workers=2)
    gate = threading.Event()
    entered: list[str] = []
    lock = threading.Lock()
    peak = [0, 0]  # [max concurrently inside, finished]
    for i in range(10):
        assert runner.submit(f"exec:s{i}", "start", blocking_job(f"exec:s{i}", gate, entered, lock, peak),
                             uid=f"u{i}")
    # submit returned although every job blocks: the caller is never blocked
    wait_until(lambda: len(entered) == 2)
    assert runner.running_count() == 2
    assert runner.pending_count() == 8
    assert runner.collect() == []
    gate.set()
    results: list[ActionResult] = []
    wait_until(lambda: results.extend(runner.collect()) or len(results) == 10)
    assert sorted(r.uid for r in results) == sorted(f"u{i}" for i in range(10))
    assert runner.max_running_seen == 2
    assert peak[0] == 2
    assert all(r.exit_code == SUCCESS for r in results)
    assert entered == [f"exec:s{i}" for i in range(10)], "jobs start in submission order"


def test_one_action_per_sid_and_pending_replaced():
    runner = ActionRunner(max_workers=1)
    gate = threading.Event()
    ran: list[str] = []

    def job(name):
        def fn():
            if name == "first":
                gate.wait()
            ran.append(name)
            return ActionResult("exec:b" if name != "first" else "exec:a", name, SUCCESS)
        return fn

    assert runner.submit("exec:a", "first", job("first"))
    wait_until(lambda: runner.running_count() == 1)
    assert not runner.submit("exec:a", "again", job("again")), "a running sid refuses a new action"
    assert runner.submit("exec:b", "old", job("old"))
    assert runner.submit("exec:b", "new", job("new")), "a pending action is replaced"
    gate.set()
    wait_until(lambda: len(ran) == 2)
    runner.shutdown()
    assert ran == ["first", "new"]


def test_exception_becomes_error_result_and_durations_recorded():
    seen: list[ActionResult] = []
    runner = ActionRunner(max_workers=2, on_result=seen.append)

    def boom():
        raise RuntimeError("kaput")

    def slow():
        threading.Event().wait(0.2)
        return ActionResult("exec:slow", "start", SUCCESS)

    runner.submit("exec:x", "start", boom, uid="1")
    runner.submit("exec:slow", "start", slow, uid="2")
    results: list[ActionResult] = []
    wait_until(lambda: results.extend(runner.collect()) or len(results) == 2)
    by_uid = {r.uid: r for r in results}
    assert by_uid["1"].exit_code == ERROR and "kaput" in by_uid["1"].message
    assert by_uid["2"].duration_s >= 0.2
    assert "queue_wait_s" in by_uid["2"].extra
    assert len(seen) == 2


def test_runner_drives_real_exec_agents(tmp_path):
    ctx = AgentContext("n1", tmp_path)
    agents = [agent_for(f"exec:w{i}", {"params": {"command": "sleep 1000"}}, ctx) for i in range(6)]
    runner = ActionRunner(max_workers=4)
    try:
        for i, a in enumerate(agents):
            assert runner.submit_agent(a, "start", uid=f"s{i}")
        results: list[ActionResult] = []
        wait_until(lambda: results.extend(runner.collect()) or len(results) == 6)
        assert all(r.ok for r in results), [r.message for r in results]
        assert runner.max_running_seen <= 4
        assert all(a.status() is Status.RUNNING for a in agents)
    finally:
        for a in agents:
            a.stop()


@pytest.fixture
def watched(tmp_path):
    a = agent_for("exec:mon", {"params": {"command": "sleep 1000"}}, AgentContext("n1", tmp_path))
    yield a
    a.stop()


def test_monitor_detects_dead_process(watched):
    runner = ActionRunner()
    mon = ServiceMonitor(runner, interval_s=0.1)
    assert watched.start().ok
    mon.watch("exec:mon", watched)
    failures: list[ActionResult] = []
    # a few healthy rounds report nothing
    for _ in range(5):
        failures.extend(mon.poll())
        threading.Event().wait(0.1)
    assert failures == []
    os.kill(watched.pid(), signal.SIGKILL)
    wait_until(lambda: failures.extend(mon.poll()) or failures)
    assert failures[0].sid == "exec:mon" and failures[0].status is Status.FAILED


def test_monitor_drops_results_from_before_unwatch(watched):
    # The service is dead when the check runs, but the LRM unwatched it meanwhile (it is
    # stopping it): the stale FAILED must not be reported.
    runner = ActionRunner()
    mon = ServiceMonitor(runner, interval_s=0.0)
    assert watched.start().ok
    os.kill(watched.pid(), signal.SIGKILL)
    wait_until(lambda: watched.status() is Status.FAILED)
    mon.watch("exec:mon", watched)
    assert mon.poll() == []  # submits the check
    mon.unwatch("exec:mon")
    wait_until(lambda: not runner.busy("exec:mon"))
    assert mon.poll() == []
    # control: the same sequence without unwatch reports the death
    mon.watch("exec:mon", watched)
    failures: list[ActionResult] = []
    wait_until(lambda: failures.extend(mon.poll()) or failures)
    assert failures[0].status is Status.FAILED
