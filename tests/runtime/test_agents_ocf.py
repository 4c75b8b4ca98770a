"""OCF agents, run for real: Debian's heartbeat/Dummy and our harepl/process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harepl.runtime.agents import (
    EINVALID_PARAMETER,
    ERROR,
    SUCCESS,
    AgentConfigError,
    AgentContext,
    OcfAgent,
    Status,
    agent_for,
    proc,
)
from tests.support import WITNESS, wait_until, witness_check

DUMMY = Path("/usr/lib/ocf/resource.d/heartbeat/Dummy")
pytestmark = pytest.mark.skipif(not DUMMY.exists(), reason="resource-agents not installed (make system-deps)")


@pytest.fixture
def agents():
    made: list[OcfAgent] = []
    yield made
    for a in made:
        a.stop()


def ocf(agents, run_dir, sid, node="node1", **params):
    a = agent_for(sid, {"type": "ocf", "params": params}, AgentContext(node, run_dir))
    agents.append(a)
    return a


def test_dummy_lifecycle(tmp_path, agents):
    a = ocf(agents, tmp_path / "n1", "ocf:dummy", agent="heartbeat/Dummy")
    assert a.status() is Status.STOPPED  # OCF exit 7
    assert a.validate().exit_code == SUCCESS
    assert a.start().exit_code == SUCCESS
    assert a.start().exit_code == SUCCESS  # idempotent
    assert a.status() is Status.RUNNING
    assert a.monitor().exit_code == SUCCESS
    # Dummy keeps its state under HA_RSCTMP = <run_dir>/ocf
    assert (tmp_path / "n1" / "ocf" / "Dummy-ocf_dummy.state").exists()
    assert a.stop().exit_code == SUCCESS
    assert a.stop().exit_code == SUCCESS  # idempotent
    assert a.status() is Status.STOPPED


def test_dummy_state_is_per_node(tmp_path, agents):
    a1 = ocf(agents, tmp_path / "n1", "ocf:d", node="n1", agent="heartbeat/Dummy")
    a2 = ocf(agents, tmp_path / "n2", "ocf:d", node="n2", agent="heartbeat/Dummy")
    assert a1.start().ok
    assert a2.status() is Status.STOPPED


def test_dummy_live_migration(tmp_path, agents):
    src = ocf(agents, tmp_path / "n1", "ocf:m", node="n1", agent="heartbeat/Dummy")
    dst = ocf(agents, tmp_path / "n2", "ocf:m", node="n2", agent="heartbeat/Dummy")
    assert src.supports_live_migration  # Dummy's meta-data lists migrate_to/migrate_from
    assert src.start().ok
    res = src.migrate("n2")
    assert res.exit_code == SUCCESS and "live migrated to n2" in res.message
    assert "Migrating ocf_m to n2" in (tmp_path / "n1" / "ocf" / "ocf_m.log").read_text()
    assert src.status() is Status.STOPPED
    assert dst.start().ok
    assert dst.status() is Status.RUNNING


def test_invalid_dummy_parameter_is_reported(tmp_path, agents):
    a = ocf(agents, tmp_path / "n1", "ocf:bad", agent="heartbeat/Dummy", state="/nonexistent/dir/x.state")
    res = a.validate()
    assert res.exit_code == EINVALID_PARAMETER, res


def test_unknown_agent_is_one_line_config_error(tmp_path):
    with pytest.raises(AgentConfigError) as err:
        agent_for("ocf:x", {"params": {"agent": "heartbeat/NoSuchAgent"}}, AgentContext("n", tmp_path))
    assert "\n" not in str(err.value) and str(err.value).startswith("ocf:x: ")
    with pytest.raises(AgentConfigError, match="needs parameter 'agent'"):
        agent_for("ocf:x", {"params": {}}, AgentContext("n", tmp_path))
    with pytest.raises(AgentConfigError, match="provider/type"):
        agent_for("ocf:x", {"params": {"agent": "../../bin/sh"}}, AgentContext("n", tmp_path))


HANGING_AGENT = """#!/bin/sh
# test OCF agent whose start never returns (writes its pid first)
case "$1" in
start) echo $$ > "$OCF_RESKEY_pidfile"; sleep 1000 & echo $! >> "$OCF_RESKEY_pidfile"; wait; exit 0;;
stop) exit 0;;
monitor) exit 7;;
meta-data) echo '<resource-agent name="hang"/>'; exit 0;;
*) exit 3;;
esac
"""


def test_hanging_start_is_killed_and_reported(tmp_path, agents):
    script = tmp_path / "agents" / "test" / "hang"
    script.parent.mkdir(parents=True)
    script.write_text(HANGING_AGENT)
    script.chmod(0o755)
    pidfile = tmp_path / "hang.pids"
    a = ocf(agents, tmp_path / "n1", "ocf:hang", agent=str(script), pidfile=str(pidfile), timeout_start_s=0.5)
    res = a.start()
    assert res.exit_code == ERROR
    assert "start timed out after 0.5 s" in res.message
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    assert not any(proc.alive(p) for p in pids), "the timed-out action's group must be killed"


def test_process_agent_runs_witness_and_detects_double_start(tmp_path, agents):
    ledger, locks = tmp_path / "ledger", tmp_path / "locks"
    cmd = f"exec python3 {WITNESS} --name ocf:w --ledger {ledger} --lock-dir {locks}"
    a1 = ocf(agents, tmp_path / "n1", "ocf:w", node="n1", agent="harepl/process", command=cmd)
    a2 = ocf(agents, tmp_path / "n2", "ocf:w", node="n2", agent="harepl/process", command=cmd)
    assert a1.validate().ok
    assert a1.start().ok
    wait_until(lambda: witness_check.starts(ledger, "ocf:w"))
    assert a1.status() is Status.RUNNING
    st = proc.read_stat(int((tmp_path / "n1" / "ocf" / "harepl-process-ocf_w.pid").read_text().split()[0]))
    assert st.session == os.getsid(0), "the payload stays in the caller's session"
    # a second node starting the same service: the witness records a violation and exits
    a2.start()
    wait_until(lambda: witness_check.count_violations(ledger) == 1)
    wait_until(lambda: a2.status() is not Status.RUNNING)
    assert a1.stop().ok
    assert a1.status() is Status.STOPPED
    events = witness_check.read_ledger(ledger)
    assert [e["event"] for e in events] == ["start", "violation", "stop"]
    assert events[0]["node"] == "n1" and events[1]["node"] == "n2"
    assert witness_check.count_violations(ledger) == 1


def test_process_agent_monitor_detects_death(tmp_path, agents):
    a = ocf(agents, tmp_path / "n1", "ocf:p", agent="harepl/process", command="sleep 1000")
    assert a.start().ok
    pid = int((tmp_path / "n1" / "ocf" / "harepl-process-ocf_p.pid").read_text().split()[0])
    os.kill(pid, 9)
    wait_until(lambda: a.status() is Status.FAILED)
    assert a.stop().ok
    assert a.status() is Status.STOPPED


def test_process_agent_stop_escalates_to_sigkill(tmp_path, agents):
    pids = tmp_path / "pids"
    cmd = f"trap '' TERM; sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait; sleep 1000"
    a = ocf(agents, tmp_path / "n1", "ocf:stubborn", agent="harepl/process", command=cmd, stop_timeout=1)
    assert a.start().ok
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    started = [int(p) for p in pids.read_text().split()]
    res = a.stop()
    assert res.exit_code == SUCCESS, res.message
    assert not any(proc.alive(p) for p in started), "the whole payload group is gone"
    assert a.status() is Status.STOPPED
