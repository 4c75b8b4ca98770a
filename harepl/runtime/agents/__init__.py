"""Resource agents: start/stop/monitor/migrate/validate services on this node.

API (everything here is importable from ``harepl.runtime.agents``):

- ``agent_for(sid, resource_config, AgentContext(node, run_dir)) -> Agent`` — build the agent
  for a service config (harepl.core.types shape); raises ``AgentConfigError`` (one line) on bad
  config. Types: ``exec``, ``ocf``, ``systemd``, ``fa`` (OCF Dummy), ``vm``/``ct`` (mapping in
  ``factory``).
- ``Agent``: ``start()``, ``stop()``, ``migrate(target)``, ``validate()`` and ``monitor()``
  return an ``ActionResult`` (``exit_code`` is a Proxmox code: ``SUCCESS``, ``ERROR``,
  ``EINVALID_PARAMETER``...); ``status() -> Status`` (RUNNING, STOPPED, FAILED, UNKNOWN);
  ``run(action, target=None)`` dispatches by name; ``supports_live_migration``.
  Idempotent: start on a running service and stop on a stopped one succeed. Every action
  is bounded by ``agent.timeouts`` (params ``timeout_<action>_s``).
- ``ActionRunner(max_workers=4, on_result=None)``: ``submit(sid, action, fn, uid)``,
  ``submit_agent(agent, action, uid, target)``, ``collect() -> [ActionResult]`` (non-blocking),
  ``busy(sid)``, ``drop_pending()``, ``shutdown()``.
- ``ServiceMonitor(runner, interval_s)``: ``watch(sid, agent)``, ``unwatch(sid)``,
  ``poll() -> [ActionResult]`` (services found not running).
- ``AgentPlugin(ctx, get_config, move_service, log, on_result)``: the roles' ``ResourceAgent``
  protocol (``check_running``/``start``/``shutdown``/``migrate``/``remove_locks``) for every
  service type; ``RunnerWorkers(runner)``: ``Env.start_worker``/``poll_worker`` (see ``plugin``).
- ``systemd_available()``; ``reap_children()`` (called by the exec agent itself).

Per-node state lives in ``run_dir`` (``exec/``, ``ocf/``): give each node its own.
"""

from harepl.core.vocabulary import SERVICE_TYPES

from .base import (
    CODE_NAMES,
    EINVALID_PARAMETER,
    ERROR,
    ETRY_AGAIN,
    EUNKNOWN_COMMAND,
    EUNKNOWN_SERVICE,
    EUNKNOWN_SERVICE_TYPE,
    EWRONG_NODE,
    IGNORED,
    SUCCESS,
    ActionResult,
    Agent,
    AgentConfigError,
    Status,
    Timeouts,
)
from .exec_agent import ExecAgent, reap_children
from .factory import AgentContext, agent_for, split_sid
from .ocf import OcfAgent
from .plugin import AgentPlugin, RunnerWorkers
from .runner import ActionRunner, ServiceMonitor
from .systemd import SystemdAgent, systemd_available

__all__ = [
    "CODE_NAMES", "EINVALID_PARAMETER", "ERROR", "ETRY_AGAIN", "EUNKNOWN_COMMAND", "EUNKNOWN_SERVICE",
    "EUNKNOWN_SERVICE_TYPE", "EWRONG_NODE", "IGNORED", "SUCCESS", "SERVICE_TYPES",
    "ActionResult", "ActionRunner", "Agent", "AgentPlugin", "RunnerWorkers", "AgentConfigError", "AgentContext", "ExecAgent", "OcfAgent",
    "ServiceMonitor", "Status", "SystemdAgent", "Timeouts", "agent_for", "reap_children", "split_sid",
    "systemd_available",
]
