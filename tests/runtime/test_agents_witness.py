"""The witness test service and its ledger checks (real processes, real flock)."""

from __future__ import annotations

import signal
import subprocess
import sys

from harepl.runtime.agents import ERROR, AgentContext, Status, agent_for
from tests.support import WITNESS, wait_until, witness_check


def spawn(tmp_path, name="exec:w", node="n1"):
    return subprocess.Popen([sys.executable, str(WITNESS), "--name", name, "--ledger", str(tmp_path / "ledger"),
                             "--lock-dir", str(tmp_path / "locks"), "--node", node],
                            stderr=subprocess.PIPE, text=True)


def test_two_instances_exactly_one_violation(tmp_path):
    ledger = tmp_path / "ledger"
    first = spawn(tmp_path, node="n1")
    try:
        wait_until(lambda: witness_check.starts(ledger))
        second = spawn(tmp_path, node="n2")
        assert second.wait(timeout=30) == 3
        assert "VIOLATION" in second.stderr.read()
        assert first.poll() is None, "the lock holder keeps running"
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    events = witness_check.read_ledger(ledger)
    assert [e["event"] for e in events] == ["start", "violation", "stop"]
    assert witness_check.count_violations(ledger) == 1
    v = witness_check.violations(ledger)[0]
    assert v["node"] == "n2" and "node=n1" in v["holder"]
    for e in events:
        assert {"sid", "node", "pid", "mono", "wall"} <= set(e)
    try:
        witness_check.assert_no_violations(ledger)
    except AssertionError as err:
        assert "1 witness violation" in str(err)
    else:
        raise AssertionError("assert_no_violations accepted a violation")


def test_sigkilled_holder_releases_lock(tmp_path):
    ledger = tmp_path / "ledger"
    first = spawn(tmp_path)
    wait_until(lambda: witness_check.starts(ledger))
    first.kill()
    first.wait()
    second = spawn(tmp_path, node="n2")
    try:
        wait_until(lambda: len(witness_check.starts(ledger)) == 2)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert witness_check.count_violations(ledger) == 0
    assert [e["node"] for e in witness_check.starts(ledger)] == ["n1", "n2"]
    assert len(witness_check.stops(ledger)) == 1  # the SIGKILLed one wrote none


def test_witness_as_exec_service_on_two_nodes(tmp_path):
    ledger, locks = tmp_path / "ledger", tmp_path / "locks"
    cmd = witness_check.witness_command("exec:w", ledger, locks)
    assert cmd == f"exec {sys.executable} {WITNESS} --name exec:w --ledger {ledger} --lock-dir {locks}"
    cfg = {"type": "exec", "params": {"command": cmd, "start_grace_s": 2}}
    a1 = agent_for("exec:w", cfg, AgentContext("n1", tmp_path / "n1"))
    a2 = agent_for("exec:w", cfg, AgentContext("n2", tmp_path / "n2"))
    try:
        assert a1.start().ok
        wait_until(lambda: witness_check.starts(ledger))
        res = a2.start()  # the node name comes from $HAREPL_NODE
        assert res.exit_code == ERROR and "exited with 3" in res.message
        assert a2.status() is Status.STOPPED
        assert a1.status() is Status.RUNNING
        assert a1.stop().ok
    finally:
        a1.stop()
        a2.stop()
    events = witness_check.read_ledger(ledger)
    assert [(e["event"], e["node"]) for e in events] == [("start", "n1"), ("violation", "n2"), ("stop", "n1")]
