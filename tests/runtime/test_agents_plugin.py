"""AgentPlugin (the roles' ResourceAgent protocol over our agents) and RunnerWorkers
(Env.start_worker/poll_worker over the ActionRunner), with real exec and OCF agents."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from harepl.roles.env import ResourceAgent
from harepl.runtime.agents import ActionRunner, AgentContext, AgentPlugin, RunnerWorkers, Status, proc
from tests.support import wait_until


class Cluster:
    """Service configs and the moves the plugin asked for (the store's part in the runtime)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.configs: dict[str, dict] = {}
        self.moves: list[tuple[str, str]] = []
        self.logs: list[tuple[str, str]] = []
        self.results: list = []
        self.fail_move = False

    def get(self, sid):
        return self.configs.get(sid)

    def move(self, sid, target):
        if self.fail_move:
            raise RuntimeError("store unavailable")
        self.moves.append((sid, target))
        self.configs[sid]["node"] = target


@pytest.fixture
def setup(tmp_path):
    c = Cluster("n1")
    plugin = AgentPlugin(AgentContext("n1", tmp_path / "run"), c.get, c.move,
                         log=lambda lvl, msg: c.logs.append((lvl, msg)), on_result=c.results.append)
    yield c, plugin
    for sid in list(c.configs):
        try:
            plugin.agent(sid).stop(0)
        except Exception:
            pass


def test_satisfies_roles_protocol(setup):
    _, plugin = setup
    assert isinstance(plugin, ResourceAgent)


def test_start_check_shutdown(setup):
    c, plugin = setup
    c.configs["exec:a"] = {"type": "exec", "node": "n1", "params": {"command": "trap '' TERM; sleep 1000"}}
    assert plugin.check_running("exec:a") is False
    plugin.start("exec:a")
    assert plugin.check_running("exec:a") is True
    plugin.shutdown("exec:a", 0)  # hard stop: SIGKILL at once despite the ignored SIGTERM
    assert plugin.check_running("exec:a") is False
    assert [r.action for r in c.results] == ["start", "stop"]
    assert all(r.duration_s >= 0 for r in c.results)


def test_dead_service_is_cleaned_up_before_restart(setup, tmp_path):
    c, plugin = setup
    pidfile = tmp_path / "child"
    c.configs["exec:d"] = {"type": "exec", "node": "n1",
                           "params": {"command": f"sleep 1000 & echo $! > {pidfile}; wait"}}
    plugin.start("exec:d")
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip())
    child = int(pidfile.read_text())
    agent = plugin.agent("exec:d")
    os.kill(agent.pid(), signal.SIGKILL)  # the leader dies; its child lingers in the group
    wait_until(lambda: agent.status() is Status.FAILED)
    assert proc.alive(child)
    assert plugin.check_running("exec:d") is False
    assert not proc.alive(child), "leftovers of a dead service are stopped before it counts as stopped"
    assert any("failed: stopping it to clean up" in m for _, m in c.logs)
    plugin.start("exec:d")
    assert plugin.check_running("exec:d") is True


def test_offline_migrate_moves_config(setup):
    c, plugin = setup
    c.configs["exec:m"] = {"type": "exec", "node": "n1", "params": {"command": "sleep 1000"}}
    plugin.start("exec:m")
    assert plugin.migrate("exec:m", "n2", online=True) is True  # exec has no live migration
    assert c.moves == [("exec:m", "n2")]
    assert plugin.agent("exec:m").status() is Status.STOPPED


def test_migrate_fails_when_config_cannot_move(setup):
    c, plugin = setup
    c.configs["exec:m"] = {"type": "exec", "node": "n1", "params": {"command": "sleep 1000"}}
    plugin.start("exec:m")
    c.fail_move = True
    assert plugin.migrate("exec:m", "n2", online=False) is False
    assert any("could not be moved" in m for _, m in c.logs)


@pytest.mark.skipif(not Path("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists(), reason="no resource-agents")
def test_live_migrate_ocf_dummy(setup):
    c, plugin = setup
    c.configs["ocf:d"] = {"type": "ocf", "node": "n1", "params": {"agent": "heartbeat/Dummy"}}
    plugin.start("ocf:d")
    assert plugin.check_running("ocf:d")
    assert plugin.migrate("ocf:d", "n2", online=True) is True
    assert [r.message for r in c.results if r.action == "migrate"] == ["live migrated to n2"]
    assert c.moves == [("ocf:d", "n2")]


def test_config_change_rebuilds_agent_and_bad_config_is_logged(setup):
    c, plugin = setup
    c.configs["exec:x"] = {"type": "exec", "node": "n1", "params": {"command": "sleep 1000"}}
    first = plugin.agent("exec:x")
    assert plugin.agent("exec:x") is first
    c.configs["exec:x"]["params"] = {"command": "sleep 999"}
    assert plugin.agent("exec:x") is not first
    c.configs["exec:bad"] = {"type": "exec", "node": "n1", "params": {}}
    assert plugin.check_running("exec:bad") is False
    plugin.start("exec:bad")
    assert ("err", "exec:bad: exec service needs a non-empty parameter 'command'") in c.logs


def test_runner_workers():
    runner = ActionRunner(max_workers=2)
    workers = RunnerWorkers(runner)

    def boom() -> int:
        raise RuntimeError("x")

    h1 = workers.start_worker("exec:a", lambda: 7)
    h2 = workers.start_worker("exec:b", boom)
    codes: dict[str, int] = {}

    def done():
        for h in (h1, h2):
            if h not in codes:
                code = workers.poll_worker(h)
                if code is not None:
                    codes[h] = code
        return len(codes) == 2

    wait_until(done)
    assert codes == {h1: 7, h2: -1}
    assert workers.poll_worker(h1) is None, "a finished handle is forgotten once polled"
