"""The roles' own LRM.exec_resource_agent (Proxmox's command semantics) driving real agents
through AgentPlugin. The Env here is a thin harness exposing only what exec_resource_agent
uses (node name, log, clock, resource_agent, node_lease_valid); the replicated store is not involved — the
runtime's RuntimeEnv covers that in tests/cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harepl.core.types import EINVALID_PARAMETER, ERROR, ETRY_AGAIN, EUNKNOWN_SERVICE, EWRONG_NODE, SUCCESS
from harepl.roles.lrm import LRM
from harepl.runtime.agents import AgentContext, AgentPlugin, Status


class AgentEnv:
    def __init__(self, node: str, run_dir: Path) -> None:
        self.node = node
        self.configs: dict[str, dict] = {}
        self.lines: list[str] = []
        self.lease_valid = True
        self.plugin = AgentPlugin(AgentContext(node, run_dir), self.configs.get, self.move,
                                  log=lambda lvl, msg: self.lines.append(f"{lvl}: {msg}"))

    def move(self, sid: str, target: str) -> None:
        self.configs[sid]["node"] = target

    def nodename(self) -> str:
        return self.node

    def get_time(self) -> float:
        return time.monotonic()

    def log(self, level: str, msg: str) -> None:
        self.lines.append(f"{level}: {msg}")

    def node_lease_valid(self) -> bool:
        return self.lease_valid

    def resource_agent(self, sid: str):
        return self.plugin if sid.split(":")[0] in ("exec", "ocf", "fa", "vm", "ct", "systemd") else None


@pytest.fixture
def lrm(tmp_path):
    env = AgentEnv("node1", tmp_path / "run")
    lrm = LRM(env)  # type: ignore[arg-type]
    yield lrm, env
    for sid in list(env.configs):
        try:
            env.plugin.agent(sid).stop(0)
        except Exception:
            pass


def run(lrm, env, sid, cmd, **params):
    return lrm.exec_resource_agent(sid, env.configs.get(sid), cmd, params)


def test_started_stopped_idempotent(lrm):
    lrm, env = lrm
    env.configs["exec:web"] = {"type": "exec", "node": "node1", "params": {"command": "sleep 1000"}}
    assert run(lrm, env, "exec:web", "started") == SUCCESS
    assert "info: service status exec:web started" in env.lines
    pid = env.plugin.agent("exec:web").pid()
    assert run(lrm, env, "exec:web", "started") == SUCCESS
    assert env.plugin.agent("exec:web").pid() == pid
    assert run(lrm, env, "exec:web", "request_stop") == SUCCESS
    assert "info: service status exec:web stopped" in env.lines
    assert run(lrm, env, "exec:web", "stopped") == SUCCESS
    assert env.plugin.agent("exec:web").status() is Status.STOPPED


def test_failed_start_is_error(lrm):
    lrm, env = lrm
    env.configs["exec:bad"] = {"type": "exec", "node": "node1", "params": {"command": "exit 1"}}
    assert run(lrm, env, "exec:bad", "started") == ERROR
    assert "warning: unable to start service exec:bad" in env.lines


def test_hanging_start_is_error_and_leaves_nothing(lrm):
    lrm, env = lrm
    env.configs["exec:hang"] = {"type": "exec", "node": "node1",
                                "params": {"command": "sleep 1000", "check": "false", "timeout_start_s": 0.5}}
    assert run(lrm, env, "exec:hang", "started") == ERROR
    assert any("timed out after 0.5 s" in line for line in env.lines)
    assert env.plugin.agent("exec:hang").status() is Status.STOPPED


def test_relocate_moves_config_and_stops_here(lrm):
    lrm, env = lrm
    env.configs["exec:r"] = {"type": "exec", "node": "node1", "params": {"command": "sleep 1000"}}
    assert run(lrm, env, "exec:r", "started") == SUCCESS
    assert run(lrm, env, "exec:r", "relocate", target="node2") == SUCCESS
    assert env.configs["exec:r"]["node"] == "node2"
    assert env.plugin.agent("exec:r").status() is Status.STOPPED
    # now the service is not ours any more
    assert run(lrm, env, "exec:r", "started") == EWRONG_NODE


@pytest.mark.skipif(not Path("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists(), reason="no resource-agents")
def test_ocf_dummy_migrate(lrm):
    lrm, env = lrm
    env.configs["ocf:d"] = {"type": "ocf", "node": "node1", "params": {"agent": "heartbeat/Dummy"}}
    assert run(lrm, env, "ocf:d", "started") == SUCCESS
    assert run(lrm, env, "ocf:d", "migrate", target="node2") == SUCCESS
    assert env.configs["ocf:d"]["node"] == "node2"
    assert env.plugin.agent("ocf:d").status() is Status.STOPPED


def test_bad_requests(lrm):
    lrm, env = lrm
    env.configs["exec:x"] = {"type": "exec", "node": "node1", "params": {"command": "sleep 1000"}}
    assert run(lrm, env, "exec:x", "migrate") == EINVALID_PARAMETER
    assert run(lrm, env, "exec:none", "started") == EUNKNOWN_SERVICE


def test_no_start_without_a_valid_node_lease(lrm):
    """A start job that runs after the lease lapsed (queued before) starts nothing."""
    lrm, env = lrm
    env.configs["exec:web"] = {"type": "exec", "node": "node1", "params": {"command": "sleep 1000"}}
    env.lease_valid = False
    assert run(lrm, env, "exec:web", "started") == ETRY_AGAIN
    assert env.plugin.agent("exec:web").status() is Status.STOPPED
    env.lease_valid = True
    assert run(lrm, env, "exec:web", "started") == SUCCESS


def test_stop_unconfirmed_error_answers_whether_it_still_runs(lrm):
    """'error' after a failed stop: SUCCESS only once the service no longer runs here."""
    lrm, env = lrm
    env.configs["exec:web"] = {"type": "exec", "node": "node1", "params": {"command": "sleep 1000"}}
    assert run(lrm, env, "exec:web", "started") == SUCCESS
    assert run(lrm, env, "exec:web", "error", stop_unconfirmed=1) == ERROR
    assert any("still running here (stop not confirmed)" in line for line in env.lines)
    env.plugin.agent("exec:web").stop(0)
    assert run(lrm, env, "exec:web", "error", stop_unconfirmed=1) == SUCCESS


def test_lost_migration_result_is_resolved_by_where_the_service_is(lrm):
    """A migrate re-run after its result was lost: the configuration is already on the
    target and nothing runs here, so the move succeeded (Proxmox: EWRONG_NODE -> error)."""
    lrm, env = lrm
    env.configs["exec:web"] = {"type": "exec", "node": "node2", "params": {"command": "sleep 1000"}}
    assert run(lrm, env, "exec:web", "migrate", target="node2") == SUCCESS
    assert run(lrm, env, "exec:web", "migrate", target="node3") == EWRONG_NODE
