"""exec agent tracking on real processes, real mounts and real cgroups.

- A service is recorded before it runs: if its state file cannot be written at start (a
  full tmpfs mounted on the state dir, or a read-only bind mount), the start fails and no
  process of it is left — it never ran its command.
- Its whole tree is tracked: a child that forks away (``setsid``) dies with ``stop`` and
  keeps ``status`` from reading ``stopped`` while it lives.

Every check of "gone" looks at /proc: any process whose environment carries this test's
unique ``HAREPL_NODE`` is the service's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from harepl.runtime.agents import ERROR, ExecAgent, Status, proc
from tests.support import wait_until


def _v2_mount() -> Path | None:
    """A writable cgroup2 mount, found independently of the code under test."""
    with open("/proc/self/mountinfo") as fh:
        mounts = [Path(line.split(" - ")[0].split(" ")[4]) for line in fh if " - cgroup2 " in line]
    for m in mounts:
        probe = m / "harepl" / f".test-{os.getpid()}"
        try:
            probe.mkdir(parents=True, exist_ok=True)
            probe.rmdir()
            return m
        except OSError:
            continue
    return None


V2 = _v2_mount()
needs_cgroup = pytest.mark.skipif(V2 is None, reason="no writable cgroup v2 on this machine")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def node_procs(node: str) -> list[int]:
    """Live (non-zombie) processes of the services of ``node``, from /proc."""
    mark = f"HAREPL_NODE={node}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if mark in env and proc.alive(int(name)):
            found.append(int(name))
    return found


@pytest.fixture
def node():
    name = f"t{uuid.uuid4().hex[:10]}"  # unique: concurrent test runs never share a cgroup
    yield name
    for _ in range(100):
        left = node_procs(name)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if V2 is not None:
        subprocess.run(["find", str(V2 / "harepl" / name), "-depth", "-type", "d", "-delete"],
                       stderr=subprocess.DEVNULL)


@pytest.fixture(params=["cgroup", "process-group"])
def mode(request, monkeypatch):
    if request.param == "cgroup":
        if V2 is None:
            pytest.skip("no writable cgroup v2 on this machine")
    else:
        from harepl.runtime.agents import cgroup
        monkeypatch.setattr(cgroup, "v2_root", lambda: None)
    return request.param


@pytest.fixture
def mounted():
    points: list[Path] = []

    def mount(*argv: str) -> None:
        subprocess.run(["mount", *argv], check=True)
        points.append(Path(argv[-1]))

    yield mount
    for p in reversed(points):
        subprocess.run(["umount", "-l", str(p)], check=False)


def test_full_state_dir_at_start_kills_the_child_before_it_runs(tmp_path, node, mode, mounted):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    run, ran = tmp_path / "run", tmp_path / "ran"
    state_dir = run / "exec"
    state_dir.mkdir(parents=True)
    mounted("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state_dir))
    fd = os.open(state_dir / "fill", os.O_WRONLY | os.O_CREAT)
    try:  # fill it: the next write gets ENOSPC
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    a = ExecAgent("exec:full", {"command": f"touch {ran}; exec sleep 1000"}, run, node)
    res = a.start()
    assert res.exit_code == ERROR
    assert "No space left on device" in res.message and "killed before it ran" in res.message
    assert node_procs(node) == [], "no process of a failed start may survive"
    assert not ran.exists(), "the command never ran"
    assert a.status() is Status.STOPPED
    assert a.stop().message == "already stopped"
    # space again (the operator's fix): a start runs exactly one instance
    (state_dir / "fill").unlink()
    assert a.start().ok
    wait_until(ran.exists)
    wait_until(lambda: node_procs(node) == [a.pid()])
    assert a.stop().ok
    assert node_procs(node) == []


@needs_root
def test_read_only_state_dir_at_start_fails_and_runs_nothing(tmp_path, node, mounted):
    run, ran = tmp_path / "run", tmp_path / "ran"
    state_dir = run / "exec"
    state_dir.mkdir(parents=True)
    mounted("--bind", str(state_dir), str(state_dir))
    subprocess.run(["mount", "-o", "remount,bind,ro", str(state_dir)], check=True)
    a = ExecAgent("exec:ro", {"command": f"touch {ran}; exec sleep 1000"}, run, node)
    res = a.start()
    assert res.exit_code == ERROR and "Read-only file system" in res.message
    assert node_procs(node) == []
    assert not ran.exists()
    assert a.status() is Status.STOPPED


FORK_AWAY = "setsid sh -c 'trap \"\" TERM; echo $$ > {away}; exec sleep 1000' & exec sleep 1000"


def _start_fork_away(tmp_path: Path, node: str, sid: str = "exec:away") -> tuple[ExecAgent, int, int]:
    away_file = tmp_path / "away.pid"
    a = ExecAgent(sid, {"command": FORK_AWAY.format(away=away_file), "stop_timeout_s": 0.3},
                  tmp_path / "run", node)
    res = a.start()
    assert res.ok, res.message
    away = int(wait_until(lambda: away_file.exists() and away_file.read_text().strip()))  # type: ignore[arg-type]
    leader = a.pid()
    assert leader is not None
    wait_until(lambda: sorted(node_procs(node)) == sorted([leader, away]))
    st, lst = proc.read_stat(away), proc.read_stat(leader)
    assert st is not None and lst is not None
    assert st.session != lst.session and st.pgrp != lst.pgrp, "it left the service's group and session"
    return a, leader, away


@needs_cgroup
def test_forked_away_child_dies_with_stop(tmp_path, node):
    a, leader, away = _start_fork_away(tmp_path, node)
    res = a.stop()
    assert res.ok, res.message
    assert node_procs(node) == [], "stop must leave no process of the service alive"
    assert not proc.alive(away) and not proc.alive(leader)
    assert a.status() is Status.STOPPED
    assert V2 is not None and not [p for p in (V2 / "harepl" / node).glob("*@*") if p.is_dir()], \
        "its cgroup is removed"


@needs_cgroup
def test_the_whole_tree_is_in_the_services_cgroup(tmp_path, node):
    # The leader joined at the barrier, before the command ran: what it forks is born there,
    # even a child that escapes its group and session.
    a, leader, away = _start_fork_away(tmp_path, node)
    state = a._read_state()
    assert state is not None and V2 is not None
    cg = Path(state["cgroup"])
    assert cg.parent == V2 / "harepl" / node
    with open(cg / "cgroup.procs") as fh:
        assert sorted(int(x) for x in fh.read().split()) == sorted([leader, away])
    assert a.stop().ok


@needs_cgroup
def test_status_is_stopped_only_when_every_process_is_gone(tmp_path, node):
    a, leader, away = _start_fork_away(tmp_path, node)
    os.kill(leader, signal.SIGKILL)
    wait_until(lambda: not proc.alive(leader))
    assert proc.alive(away)
    assert a.status() is Status.FAILED, "not stopped while a process of it lives"
    # a restart first clears what is left of the dead instance: never two copies
    assert a.start().ok
    wait_until(lambda: not proc.alive(away))
    wait_until(lambda: node_procs(node) and len(node_procs(node)) == 2)  # the new leader and its child
    assert a.stop().ok
    assert node_procs(node) == []
    assert a.status() is Status.STOPPED


@needs_cgroup
def test_relocate_leaves_nothing_to_run_twice(tmp_path, node):
    a, leader, away = _start_fork_away(tmp_path, node)
    res = a.migrate("elsewhere")  # offline: stop here, the target starts it
    assert res.ok, res.message
    assert node_procs(node) == []
    assert a.status() is Status.STOPPED


@needs_cgroup
def test_lost_state_file_still_finds_and_stops_the_service(tmp_path, node):
    # The cgroup is the ground truth: with its record gone the service is neither "stopped"
    # nor started a second time.
    a, leader, away = _start_fork_away(tmp_path, node)
    a.state_path.unlink()
    assert a.status() is Status.FAILED
    assert a.stop().ok
    assert node_procs(node) == []
    assert a.status() is Status.STOPPED


def test_no_cgroup_v2_falls_back_to_the_process_group_and_says_so(tmp_path, node, monkeypatch, caplog):
    from harepl.runtime.agents import cgroup, exec_agent
    monkeypatch.setattr(cgroup, "v2_root", lambda: None)
    monkeypatch.setattr(exec_agent, "_fallback_logged", False)
    agents = [ExecAgent(f"exec:fb{i}", {"command": "sleep 1000"}, tmp_path / "run", node) for i in range(2)]
    with caplog.at_level("WARNING", logger="harepl.agents.exec"):
        for a in agents:
            res = a.start()
            assert res.ok and res.extra["cgroup"] is None
    lines = [r.getMessage() for r in caplog.records if "no writable cgroup v2" in r.getMessage()]
    assert len(lines) == 1, "said once, in one line"
    pid = agents[0].pid()
    assert pid is not None and proc.read_stat(pid).pgrp == pid  # type: ignore[union-attr]
    for a in agents:
        assert a.stop().ok
    assert node_procs(node) == []
