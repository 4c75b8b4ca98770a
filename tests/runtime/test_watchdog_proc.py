"""Process watchdog on real processes: a daemon-like node (own session, children, an exec
service in its own process group and cgroup) is killed whole when it stops feeding — a
service that left the session included, by its cgroup — and is not when it keeps feeding or
closes cleanly. Each node here runs in a session of its own (start_new_session), never the
test runner's, under a node name of its own (the watchdog kills that node's cgroups)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harepl.runtime.agents import cgroup, proc
from harepl.runtime.watchdog import ProcessWatchdog, WatchdogError
from tests.support import wait_until

NODE = r'''
import json, os, subprocess, sys, time
from harepl.runtime.agents import AgentContext, agent_for
from harepl.runtime.watchdog import ProcessWatchdog
mode, timeout_s, info, log, run_dir = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
node, command = sys.argv[6], sys.argv[7]
child = subprocess.Popen(["sleep", "1000"])
tree = subprocess.Popen(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
svc = agent_for("exec:svc", {"params": {"command": command}}, AgentContext(node, run_dir))
res = svc.start()
assert res.ok, res.message
def publish(path, data):
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.rename(path + ".tmp", path)
# 1) tell the test who we are, 2) wait until it has looked at our processes, 3) arm
publish(info, {"session": os.getsid(0), "daemon": os.getpid(), "service": svc.pid(),
               "cgroup": res.extra["cgroup"]})
while not os.path.exists(info + ".go"):
    time.sleep(0.01)
wd = ProcessWatchdog(node, timeout_s, log_path=log)
wd.open()
publish(info + ".armed", {"watchdog_pid": wd.pid})
if mode == "feed":
    while True:
        wd.feed(); time.sleep(0.05)
elif mode == "stop-feeding":
    for _ in range(5):
        wd.feed(); time.sleep(0.05)
    time.sleep(1000)
elif mode == "clean-close":
    wd.feed(); wd.close(clean=True)
    time.sleep(1000)
elif mode == "unclean-close":
    wd.feed(); wd.close(clean=False)
    time.sleep(1000)
elif mode == "die":
    wd.feed()
    os._exit(0)  # the daemon dies without closing; its children stay in the session
'''


NAME = f"wd{uuid.uuid4().hex[:10]}"  # this run's node: concurrent runs never share cgroups


class Node:
    def __init__(self, tmp_path, mode, timeout_s, command="sleep 1000", members=5):
        self.info_path = tmp_path / "info.json"
        self.log = tmp_path / "watchdog.log"
        self.n_members = members
        self.popen = subprocess.Popen(
            [sys.executable, "-c", NODE, mode, str(timeout_s), str(self.info_path), str(self.log),
             str(tmp_path / "run"), NAME, command], start_new_session=True)
        self.session = self.popen.pid  # setsid: the session id is the leader's pid
        self.info = {}
        try:
            self._start(tmp_path)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, tmp_path):
        wait_until(lambda: self.info_path.exists() or self.popen.poll() is not None)
        assert self.info_path.exists(), f"node helper failed (exit {self.popen.returncode})"
        self.info = json.loads(self.info_path.read_text())
        self.session = self.info["session"]
        assert self.session == self.popen.pid != os.getsid(0)
        wait_until(lambda: len(self.members()) >= self.n_members)  # daemon, sleep, sh + 2 sleeps, service
        self.initial = self.members()
        armed = tmp_path / "info.json.armed"
        (tmp_path / "info.json.go").touch()
        wait_until(lambda: armed.exists() or self.popen.poll() is not None)
        assert armed.exists(), f"node helper failed (exit {self.popen.returncode})"
        self.info.update(json.loads(armed.read_text()))

    def members(self):
        return proc.session_members(self.session)

    def watchdog_alive(self):
        return proc.alive(self.info["watchdog_pid"])

    def cleanup(self):
        for _ in range(50):
            left = self.members()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        try:
            os.kill(self.info["watchdog_pid"], signal.SIGKILL)
        except (ProcessLookupError, KeyError, AttributeError):
            pass
        cgroup.kill_node_tree(NAME)  # what the test's services left outside the session
        self.popen.poll()


@pytest.fixture
def node_factory(tmp_path):
    made = []

    def make(mode, timeout_s, **kw):
        n = Node(tmp_path, mode, timeout_s, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.cleanup()


FIRED = re.compile(rf"watchdog: node {NAME} not fed for (\d+\.\d) s, killing session (\d+) \((\d+) processes\)")


def assert_fired(node):
    wait_until(lambda: not node.members(), timeout_s=60)
    wait_until(lambda: not node.watchdog_alive())
    m = FIRED.search(node.log.read_text())
    assert m, node.log.read_text()
    assert int(m.group(2)) == node.session
    return m


def test_fires_and_kills_whole_session_when_not_fed(node_factory):
    node = node_factory("stop-feeding", 0.5)
    svc = node.info["service"]
    assert proc.read_stat(svc).pgrp == svc, "the service has its own group, in the node's session"
    m = assert_fired(node)
    assert int(m.group(3)) >= len(node.initial)
    assert float(m.group(1)) >= 0.5
    assert not any(proc.alive(p) for p in node.initial)


def test_does_not_fire_while_fed(node_factory):
    node = node_factory("feed", 1.5)
    time.sleep(4.5)  # three timeouts
    assert sorted(node.members()) == sorted(node.initial)
    assert node.watchdog_alive()
    log = node.log.read_text() if node.log.exists() else ""  # nothing to log while fed
    assert "not fed" not in log


def test_clean_close_disarms(node_factory):
    node = node_factory("clean-close", 0.5)
    wait_until(lambda: not node.watchdog_alive())
    time.sleep(1.5)  # three timeouts after the close
    assert sorted(node.members()) == sorted(node.initial)
    assert "closed cleanly, disarmed" in node.log.read_text()


def test_unclean_close_still_fires(node_factory):
    node = node_factory("unclean-close", 0.5)
    assert_fired(node)
    assert "client closed without magic close, still armed" in node.log.read_text()


def test_fires_after_daemon_dies_without_closing(node_factory):
    node = node_factory("die", 0.5)
    node.popen.wait(timeout=30)
    assert not proc.alive(node.info["daemon"])
    assert node.members(), "the daemon's children outlive it until the watchdog fires"
    m = assert_fired(node)
    assert int(m.group(3)) >= len(node.initial) - 1


def test_refuses_to_guard_own_session(tmp_path):
    # The watchdog runs in a new session; guarding its own session (or init's) is refused.
    wd = ProcessWatchdog("n", 1.0, session_id=1, log_path=tmp_path / "log")
    with pytest.raises(WatchdogError, match="did not start"):
        wd.open()
    assert "refusing to guard session 1" in (tmp_path / "log").read_text()


@pytest.mark.skipif(cgroup.v2_root() is None, reason="no writable cgroup v2 on this machine")
def test_fires_and_kills_services_that_left_the_session(node_factory, tmp_path):
    # A power-off kills the node's whole tree: a service child that left the session
    # (setsid) is not a session victim, but it is in its service's cgroup.
    away_file = tmp_path / "away.pid"
    cmd = f"setsid sh -c 'echo $$ > {away_file}; exec sleep 1000' & exec sleep 1000"
    node = node_factory("stop-feeding", 0.5, command=cmd)
    away = int(wait_until(lambda: away_file.exists() and away_file.read_text().strip()))
    assert away not in node.initial, "it is not in the node's session"
    cg = Path(node.info["cgroup"])
    assert cg.parent == cgroup.node_path(NAME)
    assert_fired(node)  # the watchdog exited: its kill is done
    assert not proc.alive(away)
    assert not cg.exists(), "the node's service cgroups are killed and removed"
    assert f"watchdog: node {NAME}: killed the service cgroups under {cg.parent}" in node.log.read_text()
