"""exec agent on real processes: idempotence, group kill, timeouts, supervision, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from harepl.runtime.agents import (
    EINVALID_PARAMETER,
    ERROR,
    SUCCESS,
    AgentContext,
    ExecAgent,
    Status,
    agent_for,
    proc,
)
from tests.support import wait_until


@pytest.fixture
def ctx(tmp_path):
    return AgentContext("node1", tmp_path / "run")


@pytest.fixture
def agents():
    made: list[ExecAgent] = []
    yield made
    for a in made:
        a.stop()


def make(agents, ctx, sid, **params):
    a = agent_for(sid, {"type": "exec", "params": params}, ctx)
    agents.append(a)
    return a


def test_start_stop_status_idempotent(ctx, agents):
    a = make(agents, ctx, "exec:web", command="sleep 1000")
    assert a.status() is Status.STOPPED
    r1 = a.start()
    assert r1.exit_code == SUCCESS, r1.message
    pid = a.pid()
    assert proc.alive(pid)
    r2 = a.start()
    assert r2.exit_code == SUCCESS and r2.message == "already running"
    assert a.pid() == pid, "a second start must not spawn a second instance"
    assert a.status() is Status.RUNNING
    assert a.stop().exit_code == SUCCESS
    assert not proc.alive(pid)
    s2 = a.stop()
    assert s2.exit_code == SUCCESS and s2.message == "already stopped"
    assert a.status() is Status.STOPPED


def test_service_gets_own_group_in_same_session(ctx, agents):
    # Own process group (stop kills it all) but the caller's session: the process watchdog
    # fences a node by killing its session, services included.
    a = make(agents, ctx, "exec:grp", command="sleep 1000")
    assert a.start().ok
    st = proc.read_stat(a.pid())
    assert st.pgrp == a.pid()
    assert st.session == os.getsid(0)
    assert os.getpgid(a.pid()) != os.getpgid(0)


def test_stop_kills_whole_group_with_sigkill_escalation(ctx, agents):
    # Children that ignore SIGTERM: stop must escalate to SIGKILL after stop_timeout_s.
    cmd = "trap '' TERM; (trap '' TERM; sleep 1000) & (sleep 1000) & sleep 1000"
    a = make(agents, ctx, "exec:tree", command=cmd, stop_timeout_s=0.5)
    assert a.start().ok
    pgid = a.pid()
    members = wait_until(lambda: len(proc.group_members(pgid)) >= 4 and proc.group_members(pgid))
    res = a.stop()
    assert res.exit_code == SUCCESS, res.message
    assert proc.group_members(pgid) == []
    assert not any(proc.alive(p) for p in members)


def test_start_that_hangs_is_killed_and_reported(ctx, agents, tmp_path):
    # The readiness check never passes: start must give up at its timeout, kill the group.
    pids = tmp_path / "pids"
    cmd = f"sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    a = make(agents, ctx, "exec:hang", command=cmd, check="false", timeout_start_s=0.5)
    res = a.start()
    assert res.exit_code == ERROR
    assert "timed out after 0.5 s" in res.message
    assert a.status() is Status.STOPPED
    assert a.pid() is None
    started = [int(x) for x in pids.read_text().split()]
    assert len(started) == 2
    assert not any(proc.alive(p) for p in started), "the hung start's processes must be gone"


def test_start_with_passing_check(ctx, agents, tmp_path):
    flag = tmp_path / "ready"
    a = make(agents, ctx, "exec:ready", command=f"sleep 0.3; touch {flag}; sleep 1000", check=f"test -f {flag}")
    res = a.start()
    assert res.ok, res.message
    assert flag.exists()
    assert a.status() is Status.RUNNING
    flag.unlink()
    assert a.status() is Status.FAILED, "a failing check means the service is not healthy"


def test_command_that_exits_at_once_fails_start(ctx, agents):
    a = make(agents, ctx, "exec:bad", command="echo boom; exit 3", start_grace_s=0.5)
    res = a.start()
    assert res.exit_code == ERROR
    assert "exited with 3" in res.message and "boom" in res.message
    assert a.status() is Status.STOPPED


def test_status_detects_dead_process(ctx, agents):
    a = make(agents, ctx, "exec:dies", command="sleep 1000")
    assert a.start().ok
    os.kill(a.pid(), signal.SIGKILL)
    wait_until(lambda: a.status() is Status.FAILED)
    # start after a death restarts it
    assert a.start().ok
    assert a.status() is Status.RUNNING


def test_restarted_daemon_finds_and_stops_its_services(tmp_path):
    # A first "daemon" process starts the service and exits; a new agent (a restarted daemon)
    # with the same run dir sees it running and stops it.
    run_dir = tmp_path / "run"
    code = textwrap.dedent(f"""
        from harepl.runtime.agents import agent_for, AgentContext
        a = agent_for("exec:svc", {{"params": {{"command": "sleep 1000"}}}}, AgentContext("node1", {str(run_dir)!r}))
        r = a.start(); assert r.ok, r.message
        print(a.pid())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pid = int(out.stdout.strip())
    a2 = agent_for("exec:svc", {"params": {"command": "sleep 1000"}}, AgentContext("node1", run_dir))
    try:
        assert proc.alive(pid)
        assert a2.status() is Status.RUNNING
        assert a2.start().message == "already running"
        assert a2.stop().ok
        assert not proc.alive(pid)
    finally:
        a2.stop()


def test_nodes_with_separate_run_dirs_are_independent(tmp_path, agents):
    a1 = make(agents, AgentContext("n1", tmp_path / "n1"), "exec:x", command="sleep 1000")
    a2 = make(agents, AgentContext("n2", tmp_path / "n2"), "exec:x", command="sleep 1000")
    assert a1.start().ok
    assert a2.status() is Status.STOPPED
    assert a2.start().ok
    assert a1.pid() != a2.pid()


def test_environment_names_sid_and_node(ctx, agents, tmp_path):
    out = tmp_path / "env.txt"
    a = make(agents, ctx, "exec:env", command=f'echo "$HAREPL_SID $HAREPL_NODE" > {out}; sleep 1000')
    assert a.start().ok
    wait_until(lambda: out.exists() and out.read_text().strip())
    assert out.read_text().strip() == "exec:env node1"


def test_offline_migrate_stops_here(ctx, agents):
    a = make(agents, ctx, "exec:mig", command="sleep 1000")
    assert a.start().ok
    assert not a.supports_live_migration
    res = a.migrate("node2")
    assert res.ok and res.action == "migrate" and "offline" in res.message
    assert a.status() is Status.STOPPED


def test_validate_is_a_syntax_check(ctx, agents, tmp_path):
    good = make(agents, ctx, "exec:good", command="sleep 1000", check="test -f /x")
    assert good.validate().exit_code == SUCCESS
    bad = make(agents, ctx, "exec:bad", command=f"touch {tmp_path}/ran; if then fi")
    res = bad.validate()
    assert res.exit_code == EINVALID_PARAMETER and res.message.startswith("command: ")
    assert not (tmp_path / "ran").exists(), "validate must not run the command"
    assert not (tmp_path / "run").exists(), "constructing and validating touch no files"


def test_hung_check_is_killed_with_its_children(ctx, agents, tmp_path):
    pids = tmp_path / "check.pids"
    a = make(agents, ctx, "exec:hcheck", command="sleep 1000",
             check=f"sleep 1000 & echo $! >> {pids}; wait", timeout_start_s=0.5)
    res = a.start()
    assert res.exit_code == ERROR and "timed out" in res.message
    checks = [int(p) for p in pids.read_text().split()]
    assert checks and not any(proc.alive(p) for p in checks), "a hung check leaves nothing behind"
    assert a.status() is Status.STOPPED
