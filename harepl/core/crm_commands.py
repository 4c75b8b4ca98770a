"""CRM commands: typed values, how each is applied, and the disarm and auto-rebalance
decisions that go with them (the master's inputs besides the configuration; manager.py).

A CRM command is a line queued by the API/CLI for the master (`ha-manager crm-command`,
`migrate`, `relocate`, ...). `parse_crm_command` turns it into one of the dataclasses
below, from one table of verbs; `apply_crm_command` dispatches on the type. A command never
changes a service's state itself: a move or stop is queued on the service (`sd['cmd']`)
and run by its transition; disarm/arm and maintenance requests change `HaRequests`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harepl.core import rebalance
from harepl.core.manager_io import ManagerView
from harepl.core.node_status import NodeStatus
from harepl.core.placement import CompiledRules
from harepl.core.types import ServiceConfig, ServiceStatus

Log = Callable[[str, str], None]


@dataclass(frozen=True)
class DisarmHa:
    """Take the HA stack out of action: freeze services (`freeze`) or stop tracking them
    (`ignore`), then release the watchdogs."""

    text: str
    mode: str  # freeze | ignore


@dataclass(frozen=True)
class ArmHa:
    """Put a disarmed HA stack back into action."""

    text: str


@dataclass(frozen=True)
class Move:
    """Queue an online migration (`migrate`) or a stop-move-start (`relocate`)."""

    text: str
    task: str  # migrate | relocate
    sid: str
    node: str


@dataclass(frozen=True)
class Stop:
    """Stop a service with a timeout (0: hard stop) and request `stopped` in its config."""

    text: str
    sid: str
    timeout: str  # as given; converted when the 'started' transition runs it


@dataclass(frozen=True)
class NodeMaintenance:
    """Request (`enable`) or clear a node's maintenance mode."""

    text: str
    node: str
    enable: bool


@dataclass(frozen=True)
class Unparsable:
    text: str


CrmCommand = DisarmHa | ArmHa | Move | Stop | NodeMaintenance | Unparsable

DISARM_MODES = ("freeze", "ignore")

_Make = Callable[[str, list[str]], CrmCommand | None]

# verb -> (number of arguments, constructor); None from a constructor: unparsable
VERBS: dict[str, tuple[int, _Make]] = {
    # disarm-ha freeze | disarm-ha ignore
    "disarm-ha": (1, lambda text, a: DisarmHa(text, a[0]) if a[0] in DISARM_MODES else None),
    # arm-ha
    "arm-ha": (0, lambda text, a: ArmHa(text)),
    # migrate vm:100 node2
    "migrate": (2, lambda text, a: Move(text, "migrate", a[0], a[1])),
    # relocate ct:101 node3
    "relocate": (2, lambda text, a: Move(text, "relocate", a[0], a[1])),
    # stop vm:100 30   (timeout in seconds; 0: hard stop)
    "stop": (2, lambda text, a: Stop(text, a[0], a[1])),
    # enable-node-maintenance node1
    "enable-node-maintenance": (1, lambda text, a: NodeMaintenance(text, a[0], True)),
    # disable-node-maintenance node1
    "disable-node-maintenance": (1, lambda text, a: NodeMaintenance(text, a[0], False)),
}


def parse_crm_command(raw: str) -> CrmCommand:
    text = raw.strip()
    parts = text.split()
    if parts and parts[0] in VERBS:
        nargs, make = VERBS[parts[0]]
        if len(parts) == nargs + 1:
            cmd = make(text, parts[1:])
            if cmd is not None:
                return cmd
    return Unparsable(text)


def _crs_float(crs: Mapping[str, object], key: str, default: float) -> float:
    value = crs.get(key)
    try:
        return default if value is None or value == "" else float(str(value))
    except ValueError:
        return default


def auto_rebalance(view: ManagerView, scheduler: str | None, ss: Mapping[str, ServiceStatus],
                   online: list[str], compiled: CompiledRules, rounds: int, log: Log) -> tuple[str | None, int]:
    """A 'migrate SID NODE' command when the cluster stayed imbalanced long enough, and the
    new count of rounds it stayed so (`rounds`: the count so far). Proxmox's load_balance:
    nothing while a move is running or queued; the count restarts once it reaches the
    hold duration, whether a move is found or not."""
    crs: dict[str, object] = dict(view.datacenter.get("crs", {}))  # type: ignore[arg-type,unused-ignore]
    if not crs.get("ha-auto-rebalance") or scheduler not in ("static", "dynamic"):
        return None, rounds
    if any(sd["state"] in rebalance.IN_FLIGHT for sd in ss.values()):
        return None, rounds
    if any(raw.split()[:1] in (["migrate"], ["relocate"]) for raw in view.crm_commands):
        return None, rounds
    if not online or any(not view.node_stats.get(n) for n in online):
        return None, rounds
    placed = {sid: sd["node"] for sid, sd in ss.items() if sd["state"] == "started"}
    static = scheduler == "static"
    level = rebalance.imbalance(
        rebalance.node_loads(placed, online, view.node_stats, view.service_stats, static))
    if level <= _crs_float(crs, "ha-auto-rebalance-threshold", rebalance.IMBALANCE_THRESHOLD):
        return None, 0
    rounds += 1
    hold = int(str(crs.get("ha-auto-rebalance-hold-duration") or rebalance.DEFAULT_HOLD_ROUNDS))
    if rounds < hold:
        return None, rounds
    method = str(crs.get("ha-auto-rebalance-method") or rebalance.DEFAULT_METHOD)
    if method not in rebalance.METHODS:
        return None, 0
    move = rebalance.best_migration(ss, online, compiled, view.node_stats, view.service_stats,
                                    margin=_crs_float(crs, "ha-auto-rebalance-margin", rebalance.DEFAULT_MARGIN),
                                    zero_cpu_is_unlimited=static, method=method)
    if move is None:
        return None, 0
    sid = move.sids[0]
    task = "migrate" if sid.split(":", 1)[0] == "vm" else "relocate"  # only VMs move live (Proxmox)
    log("info", f"auto rebalance - {task} {sid} to {move.target} (expected change for "
        f"imbalance from {move.before:.2f} to {move.after:.2f})")
    return f"{task} {sid} {move.target}", 0


# --- applying a command ---------------------------------------------------------------------

@dataclass
class HaRequests:
    """What commands change besides the services (kept in manager_status)."""

    node_request: dict[str, dict[str, int]] | None  # node -> {'maintenance': 1}
    disarm: dict[str, str] | None  # {'mode': freeze|ignore, 'state': disarming|disarmed}
    rearmed_this_round: bool = False


def apply_crm_command(cmd: CrmCommand, req: HaRequests, ss: dict[str, ServiceStatus],
                      sc: Mapping[str, ServiceConfig], ns: NodeStatus, compiled: CompiledRules,
                      log: Log) -> None:
    match cmd:
        case DisarmHa():
            if req.disarm is not None:
                log("notice", f"ignoring disarm-ha command - already in disarm state ({req.disarm.get('state')})")
            else:
                log("info", f"got crm command: {cmd.text}")
                req.disarm = {"mode": cmd.mode, "state": "disarming"}
        case ArmHa():
            _arm(cmd, req, ss, sc, log)
        case Move():
            _move(cmd, ss, ns, compiled, log)
        case Stop():
            if cmd.sid in ss:
                log("info", f"got crm command: {cmd.text}")
                ss[cmd.sid]["cmd"] = ["stop", cmd.timeout]
            else:
                log("err", f"crm command error - no such service: {cmd.text}")
        case NodeMaintenance():
            _maintenance(cmd, req, ns, log)
        case Unparsable():
            log("err", f"unable to parse crm command: {cmd.text}")


def _arm(cmd: ArmHa, req: HaRequests, ss: dict[str, ServiceStatus], sc: Mapping[str, ServiceConfig],
         log: Log) -> None:
    if req.disarm is None:
        log("notice", "ignoring arm-ha command - HA stack is not disarmed")
        return
    log("info", f"got crm command: {cmd.text}")
    if req.disarm.get("mode") == "ignore":
        for sid in sorted(ss):
            cd = sc.get(sid)
            if cd is not None and cd["node"] != ss[sid]["node"]:
                log("info", f"service '{sid}': updating node '{ss[sid]['node']}' => "
                    f"'{cd['node']}' (changed while disarmed)")
                ss[sid]["node"] = cd["node"]
    log("info", "re-arming HA stack")
    req.disarm = None
    req.rearmed_this_round = True


def _move(cmd: Move, ss: dict[str, ServiceStatus], ns: NodeStatus, compiled: CompiledRules, log: Log) -> None:
    """Queue a migrate/relocate on the service and on its positive-affinity partners,
    unless a negative-affinity partner is on (or moving to) the target."""
    sid, target = cmd.sid, cmd.node
    if sid not in ss:
        log("err", f"crm command error - no such service: {cmd.text}")
        return
    if not ns.node_is_online(target):
        log("err", f"crm command error - node not online: {cmd.text}")
        return
    if target == ss[sid]["node"]:
        log("info", f"ignore crm command - service already on target node: {cmd.text}")
        return
    for csid in sorted(compiled.negative.get(sid, ())):
        c = ss.get(csid)
        if c is None or (c.get("node") and c["node"] != target) or (c.get("target") and c.get("target") != target):
            continue
        log("err", f"crm command '{cmd.text}' error - service '{csid}' on node '{target}' in"
            f" negative affinity with service '{sid}'")
        return
    log("info", f"got crm command: {cmd.text}")
    ss[sid]["cmd"] = [cmd.task, target]
    for csid in sorted(compiled.positive.get(sid, ())):
        c = ss.get(csid)
        if c is None or c.get("node") == target or c.get("target") == target:
            continue
        log("info", f"crm command '{cmd.text}' - {cmd.task} service '{csid}' to node '{target}'"
            f" (service '{csid}' in positive affinity with service '{sid}')")
        c["cmd"] = [cmd.task, target]


def _maintenance(cmd: NodeMaintenance, req: HaRequests, ns: NodeStatus, log: Log) -> None:
    node = cmd.node
    state = ns.get_node_state(node)
    if not cmd.enable:
        if state != "maintenance":
            log("warn", f"clearing maintenance of node {node} requested, but it's in state {state}")
        if req.node_request is not None and node in req.node_request:
            req.node_request[node].pop("maintenance", None)
    elif state == "online":
        if req.node_request is None:
            req.node_request = {}
        req.node_request.setdefault(node, {})["maintenance"] = 1
    elif state == "maintenance":
        log("info", f"ignoring crm command - node {node} is already in maintenance state")
    else:
        log("err", f"crm command error - node not online: {cmd.text}")


# --- disarm ---------------------------------------------------------------------------------

def disarm_round(req: HaRequests, ss: dict[str, ServiceStatus], view: ManagerView, nodes: list[str],
                 new_uid: Callable[[str], str], log: Log) -> bool:
    """One round while disarming (rule 7): True if services in fence/recovery block it
    (the master then runs the service transitions so that fencing finishes first);
    otherwise freeze (or stop tracking) every service and, once no LRM holds its lease any
    more, mark the stack disarmed."""
    disarm = req.disarm
    if disarm is None or disarm.get("state") != "disarming":
        return False
    blocking = [s for s in sorted(ss) if ss[s]["state"] in ("fence", "recovery")]
    for sid in blocking:
        log("warn", f"deferring disarm - service '{sid}' is in '{ss[sid]['state']}' state")
    for sd in ss.values():
        sd.pop("cmd", None)  # disarm pre-empts pending migrate/relocate/stop commands
    if blocking:
        return True
    disarm_services(ss, disarm.get("mode", ""), new_uid, log)
    if lrms_disarmed(view, nodes):
        log("info", "all LRMs disarmed, HA stack is now fully disarmed")
        log("info", "HA stack fully disarmed, releasing CRM watchdog")
        disarm["state"] = "disarmed"
    return False


def disarm_services(ss: dict[str, ServiceStatus], mode: str, new_uid: Callable[[str], str], log: Log) -> None:
    """Freeze every service (mode 'freeze'; 'error' ones stay) or only say that HA stops
    tracking them (mode 'ignore')."""
    for sid in sorted(ss):
        sd = ss[sid]
        if mode == "ignore":
            log("info", f"disarm: suspending HA tracking for service '{sid}'")
        elif sd["state"] not in ("freeze", "error"):
            log("info", f"disarm: freezing service '{sid}' (was '{sd['state']}')")
            new: ServiceStatus = {"state": "freeze", "node": sd["node"], "uid": new_uid("freeze")}
            for keep in ("failed_nodes", "maintenance_node"):
                if keep in sd:
                    new[keep] = sd[keep]  # type: ignore[literal-required,unused-ignore]
            ss[sid] = new


def lrms_disarmed(view: ManagerView, nodes: list[str]) -> bool:
    """No online node's LRM is still 'active' (holding its lease and watchdog)."""
    for node in nodes:
        if not view.node_info.get(node, {"online": False})["online"]:
            continue
        if view.lrm_status.get(node, {}).get("state") == "active":
            return False
    return True
