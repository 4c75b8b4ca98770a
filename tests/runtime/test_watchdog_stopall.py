"""stop_all_and_close: quorum loss stops local services at once and disarms the watchdog only
when every one is confirmed stopped before it would fire. The watchdog is a real process
watchdog guarding a separate throw-away session (a `sleep` started with setsid), never the
test runner's; the services are real exec agents."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from harepl.runtime.agents import ActionRunner, AgentContext, Status, agent_for, proc
from harepl.runtime.watchdog import ProcessWatchdog, stop_all_and_close
from tests.support import wait_until


@pytest.fixture
def guarded(tmp_path):
    """A session for the watchdog to guard, and the watchdog's log path."""
    victim = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    yield victim, tmp_path / "wd.log"
    victim.kill()
    victim.wait()


@pytest.fixture
def services(tmp_path):
    made = []

    def make(sid, **params):
        a = agent_for(sid, {"params": params}, AgentContext("n1", tmp_path / "run"))
        made.append(a)
        return a

    yield make
    for a in made:
        state = a._read_state()
        if state:
            proc.kill_group(state["pgid"], 0.1, state.get("session"))
        a.stop()


def test_all_stopped_in_time_closes_cleanly(guarded, services):
    victim, log = guarded
    agents = [services(f"exec:s{i}", command="sleep 1000") for i in range(3)]
    assert all(a.start().ok for a in agents)
    wd = ProcessWatchdog("n1", 3.0, session_id=victim.pid, log_path=log)
    wd.open()
    wd.feed()
    res = stop_all_and_close(wd, agents)
    assert res.closed_clean, res
    assert res.stopped == ["exec:s0", "exec:s1", "exec:s2"] and res.not_stopped == []
    assert all(a.status() is Status.STOPPED for a in agents)
    wait_until(lambda: "closed cleanly, disarmed" in log.read_text())
    assert wd.proc.wait(timeout=30) == 0
    assert proc.alive(victim.pid), "a disarmed watchdog never fires"


def test_service_not_stopped_in_time_leaves_watchdog_armed(guarded, services):
    victim, log = guarded
    ok = services("exec:ok", command="sleep 1000")
    stuck = services("exec:stuck", command="trap '' TERM; sleep 1000 & wait; sleep 1000", stop_timeout_s=60)
    assert ok.start().ok and stuck.start().ok
    wd = ProcessWatchdog("n1", 1.0, session_id=victim.pid, log_path=log)
    wd.open()
    wd.feed()
    res = stop_all_and_close(wd, [ok, stuck], margin_s=0.2)
    assert not res.closed_clean
    assert res.stopped == ["exec:ok"] and res.not_stopped == ["exec:stuck"]
    # left armed: it fires and kills the guarded session
    wait_until(lambda: not proc.alive(victim.pid))
    assert re.search(rf"watchdog: node n1 not fed for \d+\.\d s, killing session {victim.pid} \(1 processes\)",
                     log.read_text())


def test_waits_for_running_start_before_stopping(guarded, services, tmp_path):
    victim, log = guarded
    flag = tmp_path / "ready"
    slow = services("exec:slow", command=f"sleep 0.5; touch {flag}; sleep 1000", check=f"test -f {flag}")
    runner = ActionRunner()
    wd = ProcessWatchdog("n1", 10.0, session_id=victim.pid, log_path=log)
    wd.open()
    wd.feed()
    assert runner.submit_agent(slow, "start", uid="u1")
    wait_until(lambda: runner.running_count() == 1)
    res = stop_all_and_close(wd, [slow], runner=runner)
    assert res.closed_clean, res
    started = runner.collect()
    assert [r.uid for r in started] == ["u1"] and started[0].ok, "the start finished first"
    assert slow.status() is Status.STOPPED
    assert os.path.exists(flag)
