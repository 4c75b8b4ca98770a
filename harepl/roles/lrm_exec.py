"""Running one resource command through the service's agent (Proxmox's
`LRM::exec_resource_agent`): the job a worker runs for a requested service state.

`exec_resource_agent` returns one of the exit codes in core/types.py, which the LRM
reports to the master under the command's uid (after its restart policy, roles/lrm_workers.py).
It reaches the world only through the `Env` (log, clock, lease) and the agent the `Env`
hands out.
"""

from __future__ import annotations

from harepl.core.policy import SafetyPolicy
from harepl.core.types import (
    EINVALID_PARAMETER,
    ERROR,
    ETRY_AGAIN,
    EUNKNOWN_COMMAND,
    EUNKNOWN_SERVICE,
    EUNKNOWN_SERVICE_TYPE,
    EWRONG_NODE,
    IGNORED,
    SUCCESS,
    ServiceConfig,
)
from harepl.roles.env import Env, ResourceAgent

Params = dict[str, object]


def exec_resource_agent(env: Env, policy: SafetyPolicy, sid: str, cd: ServiceConfig | None, cmd: str,
                        params: Params) -> int:
    """Carry out the requested state `cmd` ('started', 'request_stop', 'stopped',
    'migrate', 'relocate', 'request_start_balance', 'error') for `sid` on this node."""
    agent = env.resource_agent(sid)
    if agent is None:
        env.log("err", f"service type '{sid.split(':')[0]}' not implemented")
        return EUNKNOWN_SERVICE_TYPE
    if cd is None:
        env.log("err", f"missing resource configuration for '{sid}'")
        return EUNKNOWN_SERVICE
    if cmd == "error":
        return _error(env, policy, agent, sid, params)
    if cd.get("node") != env.nodename():
        return _not_here(env, policy, agent, sid, cd, cmd, params)
    running = agent.check_running(sid)
    if cmd == "started":
        return _start(env, policy, agent, sid, running)
    if cmd in ("request_stop", "stopped"):
        return _stop(env, agent, sid, running, params)
    if cmd in ("migrate", "relocate", "request_start_balance"):
        return _move(env, agent, sid, cd, cmd, running, params)
    env.log("err", f"implement me (cmd '{cmd}')")
    return EUNKNOWN_COMMAND


def _error(env: Env, policy: SafetyPolicy, agent: ResourceAgent, sid: str, params: Params) -> int:
    if policy.confirm_stop and params.get("stop_unconfirmed"):
        # the CRM asks whether a service whose stop failed still runs here
        if agent.check_running(sid):
            env.log("err", f"service {sid} is in an error state and still running here (stop not "
                    "confirmed) - stop it by hand; look up 'ERROR RECOVERY' in the documentation.")
            return ERROR
        return SUCCESS
    env.log("err", f"service {sid} is in an error state and needs manual intervention. "
            "Look up 'ERROR RECOVERY' in the documentation.")
    return SUCCESS  # error always succeeds


def _not_here(env: Env, policy: SafetyPolicy, agent: ResourceAgent, sid: str, cd: ServiceConfig, cmd: str,
              params: Params) -> int:
    """The configuration names another node: a move that already happened, or the wrong
    node."""
    target = params.get("target")
    if (policy.resolve_lost_migration and cmd in ("migrate", "relocate") and cd.get("node") == target
            and not agent.check_running(sid)):
        # this move already happened (its result was lost with an earlier LRM): the
        # agent moved the configuration, and the service no longer runs here
        env.log("info", f"service {sid} already moved to node '{target}' (result of an earlier {cmd} lost)")
        return SUCCESS
    env.log("err", f"service '{sid}' not on this node")
    return EWRONG_NODE


def _start(env: Env, policy: SafetyPolicy, agent: ResourceAgent, sid: str, running: bool) -> int:
    if running:
        return SUCCESS
    if policy.start_needs_lease and not env.node_lease_valid():
        env.log("warn", f"not starting service {sid} - the node lease is not valid (retrying)")
        return ETRY_AGAIN
    env.log("info", f"starting service {sid}")
    agent.start(sid)
    if agent.check_running(sid):
        env.log("info", f"service status {sid} started")
        return SUCCESS
    env.log("warning", f"unable to start service {sid}")
    return ERROR


def _stop(env: Env, agent: ResourceAgent, sid: str, running: bool, params: Params) -> int:
    if not running:
        return SUCCESS
    timeout = params.get("timeout")
    if timeout is not None:
        env.log("info", f"stopping service {sid} (timeout={timeout})")
    else:
        env.log("info", f"stopping service {sid}")
    agent.shutdown(sid, float(timeout) if timeout is not None else None)  # type: ignore[arg-type]
    if not agent.check_running(sid):
        env.log("info", f"service status {sid} stopped")
        return SUCCESS
    env.log("info", f"unable to stop service {sid} (still running)")
    return ERROR


def _move(env: Env, agent: ResourceAgent, sid: str, cd: ServiceConfig, cmd: str, running: bool,
          params: Params) -> int:
    target = params.get("target")
    if not isinstance(target, str):
        env.log("err", f"{cmd} '{sid}' failed - missing target")
        return EINVALID_PARAMETER
    if cmd == "request_start_balance" and running:
        return IGNORED
    if cd.get("node") == target:
        return SUCCESS  # already there
    online = cmd == "migrate" or (cmd == "request_start_balance" and cd.get("type") == "vm")
    if not agent.migrate(sid, target, online):
        env.log("err", f"service {sid} not moved (migration error)")
        return ERROR
    return SUCCESS
