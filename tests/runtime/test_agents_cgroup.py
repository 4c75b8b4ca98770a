"""Service cgroups on real cgroup v2 (``harepl.runtime.agents.cgroup``) and the lab's
power-off: ``harepl lab kill`` kills a node's service cgroups too, so a service that left
the node's session *and* dropped the lab's environment mark still dies with its node.

Node names are unique per test (concurrent runs never share a subtree); "gone" is checked
in /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from harepl.runtime.agents import cgroup, proc
from harepl.runtime.lab import Lab
from tests.support import wait_until

pytestmark = pytest.mark.skipif(cgroup.v2_root() is None, reason="no writable cgroup v2 on this machine")


@pytest.fixture
def node():
    name = f"c{uuid.uuid4().hex[:10]}"
    yield name
    root = cgroup.v2_root()
    assert root is not None
    for scope in (root / cgroup.TOP).glob(f"{name}*"):  # the node, with or without a marker hash
        cgroup.kill(scope)


@pytest.fixture
def spawned():
    made: list[subprocess.Popen[bytes]] = []

    def spawn(cg: Path, *argv: str) -> int:
        cgroup.create(cg)
        # the child waits on stdin until it is in the cgroup (as the exec agent's barrier
        # does): a command that forks at once would leave its child outside otherwise
        p = subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "_", *(list(argv) or ["sleep", "1000"])],
                             stdin=subprocess.PIPE)
        made.append(p)
        cgroup.join(cg, p.pid)
        assert p.stdin is not None
        p.stdin.write(b"\n")
        p.stdin.close()
        return p.pid

    yield spawn
    for p in made:
        p.kill()
        p.wait()


def test_layout_is_node_scoped_and_separates_run_dirs(node):
    root = cgroup.v2_root()
    assert root is not None and (root / "cgroup.procs").exists()
    assert cgroup.node_path(node) == root / "harepl" / node
    lab = cgroup.node_path(node, "/tmp/lab-a/node1")
    assert lab is not None and lab.parent == root / "harepl" and lab.name.startswith(f"{node}-")
    assert lab != cgroup.node_path(node, "/tmp/lab-b/node1"), "every lab has a node1"
    a = cgroup.service_path(node, None, "/run/a", "exec:web")
    b = cgroup.service_path(node, None, "/run/b", "exec:web")
    assert a is not None and b is not None and a != b and a.parent == b.parent == root / "harepl" / node
    assert a.name.startswith("exec_web@")
    assert cgroup.service_path(node, None, "/run/a", "exec:a_b") != cgroup.service_path(node, None, "/run/a", "exec:a:b")


def test_stop_terms_then_kills_a_tree_that_ignores_sigterm(node, spawned):
    cg = cgroup.service_path(node, None, "/run/x", "exec:t")
    assert cg is not None
    polite = spawned(cg)
    stubborn = spawned(cg, "sh", "-c", "trap '' TERM; sleep 1000 & wait")
    wait_until(lambda: len(cgroup.pids(cg)) == 3)  # sleep, sh, its sleep
    members = cgroup.pids(cg)
    assert cgroup.populated(cg)
    assert cgroup.stop(cg, grace_s=0.3)
    assert not any(proc.alive(p) for p in members), members
    assert not proc.alive(polite) and not proc.alive(stubborn)
    assert not cg.exists() and not cgroup.populated(cg)
    assert cgroup.stop(cg, grace_s=0.3), "stopping a gone cgroup succeeds"


def test_kill_node_tree_kills_only_that_nodes_services(node, spawned):
    mine = [cgroup.service_path(node, None, "/run/x", f"exec:s{i}") for i in range(2)]
    other = cgroup.service_path(node, "/some/lab/node", "/run/x", "exec:s0")  # same name, other lab
    assert all(mine) and other is not None
    pids = [spawned(cg) for cg in mine]  # type: ignore[arg-type]
    survivor = spawned(other)
    assert cgroup.kill_node_tree(node) == []
    assert not any(proc.alive(p) for p in pids)
    assert not (cgroup.node_path(node) or Path("/nonexistent")).exists()
    assert proc.alive(survivor) and cgroup.populated(other)
    assert cgroup.kill_node_tree(f"{node}-none") == [], "no subtree: nothing to do"


# A lab node's "daemon": its own session, the lab's mark in its environment (as `lab start`
# sets it), and one exec service whose child leaves the session and clears its environment.
DAEMON = textwrap.dedent("""
    import json, os, sys, time
    from harepl.runtime.agents import AgentContext, agent_for
    node, run_dir, info = sys.argv[1], sys.argv[2], sys.argv[3]
    away = info + ".away"
    cmd = f"setsid env -i sh -c 'echo $$ > {away}; exec sleep 1000' & exec sleep 1000"
    svc = agent_for("exec:svc", {"params": {"command": cmd}}, AgentContext(node, run_dir))
    res = svc.start()
    assert res.ok, res.message
    while not os.path.exists(away) or not open(away).read().strip():
        time.sleep(0.01)
    with open(info + ".tmp", "w") as fh:
        json.dump({"service": svc.pid(), "away": int(open(away).read()), "cgroup": res.extra["cgroup"]}, fh)
    os.rename(info + ".tmp", info)
    time.sleep(1000)
""")


def test_lab_kill_kills_the_nodes_service_cgroups(tmp_path, node):
    lab_dir = tmp_path / "lab"
    (lab_dir / node).mkdir(parents=True)
    marker = str((lab_dir / node).resolve())
    env = dict(os.environ, HAREPL_LAB_NODE=marker)
    info = tmp_path / "info.json"
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON, node, str(lab_dir / node / "run"), str(info)],
                              env=env, start_new_session=True)
    try:
        (lab_dir / "lab.json").write_text(json.dumps(
            {"profile": "fast", "nodes": [{"name": node, "raft_port": 1}], "pids": {node: daemon.pid}}))
        wait_until(lambda: info.exists() or daemon.poll() is not None)
        assert info.exists(), f"daemon helper failed (exit {daemon.returncode})"
        got = json.loads(info.read_text())
        away = got["away"]
        st = proc.read_stat(away)
        assert st is not None and st.session != daemon.pid, "it left the node's session"
        with open(f"/proc/{away}/environ", "rb") as fh:
            assert b"HAREPL_LAB_NODE" not in fh.read(), "and it dropped the lab's mark"
        assert Path(got["cgroup"]).parent == cgroup.node_path(node, marker)
        Lab(lab_dir).load().kill(node)
        for pid in (daemon.pid, got["service"], away):
            assert not proc.alive(pid), pid
        assert not Path(got["cgroup"]).exists()
    finally:
        try:
            os.killpg(daemon.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        daemon.wait()
