"""agent_for: service config -> agent, with one-line errors; the vm/ct mapping."""

from __future__ import annotations

import pytest

from harepl.runtime.agents import (
    AgentConfigError,
    AgentContext,
    ExecAgent,
    OcfAgent,
    Status,
    SystemdAgent,
    agent_for,
)


@pytest.fixture
def ctx(tmp_path):
    return AgentContext("node1", tmp_path)


def err(ctx, sid, cfg):
    with pytest.raises(AgentConfigError) as e:
        agent_for(sid, cfg, ctx)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_types(ctx):
    assert isinstance(agent_for("exec:a", {"type": "exec", "params": {"command": "true"}}, ctx), ExecAgent)
    assert isinstance(agent_for("ocf:a", {"params": {"agent": "heartbeat/Dummy"}}, ctx), OcfAgent)
    assert isinstance(agent_for("systemd:nginx", {}, ctx), SystemdAgent)
    fa = agent_for("fa:1", {"type": "fa"}, ctx)
    assert isinstance(fa, OcfAgent) and fa.rtype == "Dummy"


def test_vm_ct_mapping(ctx, tmp_path):
    vm = agent_for("vm:100", {"type": "vm", "params": {"config": str(tmp_path / "vm100.xml")}}, ctx)
    assert isinstance(vm, OcfAgent) and vm.rtype == "VirtualDomain"
    assert vm.supports_live_migration
    assert vm.reskeys["config"].endswith("vm100.xml") and "backend" not in vm.reskeys
    ct = agent_for("ct:200", {"type": "ct", "params": {"image": "docker.io/library/nginx"}}, ctx)
    assert isinstance(ct, OcfAgent) and ct.rtype == "podman" and ct.reskeys["name"] == "harepl-ct-200"
    assert not ct.supports_live_migration
    lxc = agent_for("ct:201", {"params": {"backend": "lxc", "container": "c1", "config": "/x"}}, ctx)
    assert lxc.rtype == "lxc"
    ex = agent_for("vm:101", {"params": {"backend": "exec", "command": "sleep 1000"}}, ctx)
    assert isinstance(ex, ExecAgent)
    try:
        assert ex.start().ok and ex.status() is Status.RUNNING
    finally:
        assert ex.stop().ok


def test_config_errors_are_one_line(ctx):
    assert "type:name" in err(ctx, "web", {})
    assert "unknown service type 'foo'" in err(ctx, "foo:1", {})
    assert "numeric" in err(ctx, "vm:abc", {})
    assert "does not match" in err(ctx, "exec:a", {"type": "ocf", "params": {"command": "x"}})
    assert "needs a non-empty parameter 'command'" in err(ctx, "exec:a", {"params": {}})
    assert "needs parameter(s) config" in err(ctx, "vm:100", {"params": {}})
    assert "needs parameter(s) image" in err(ctx, "ct:100", {})
    assert "unknown vm backend 'qemu'" in err(ctx, "vm:100", {"params": {"backend": "qemu"}})
    assert "'params' must be a mapping" in err(ctx, "exec:a", {"params": ["x"]})
    assert "must be > 0" in err(ctx, "exec:a", {"params": {"command": "x", "timeout_start_s": 0}})
    assert "must be a number" in err(ctx, "exec:a", {"params": {"command": "x", "stop_timeout_s": "soon"}})
    assert "valid parameter 'unit'" in err(ctx, "systemd:a", {"params": {"unit": "-rf /"}})
    assert "start_grace_s' must be >= 0" in err(ctx, "exec:a", {"params": {"command": "x", "start_grace_s": -1}})
    assert "must be a string or number" in err(ctx, "ocf:a", {"params": {"agent": "heartbeat/Dummy", "k": [1]}})
    assert err(ctx, "exec:a", {"params": {}}).startswith("exec:a: ")
