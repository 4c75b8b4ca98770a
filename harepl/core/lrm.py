"""The LRM's decisions (the semantics of Proxmox's LRM.pm), as pure functions.

The loop that applies them (locks, watchdog, workers) is `harepl.roles.lrm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harepl.core.types import ERROR, ETRY_AGAIN, SUCCESS, ServiceStatus

# ~10 s per active round: after 60 rounds without a configured service the LRM gives its
# lease and watchdog up voluntarily.
MAX_ACTIVE_IDLE_ROUNDS = 60


def count_fenced_services(ss: Mapping[str, ServiceStatus], node: str) -> int:
    return sum(1 for sd in ss.values() if sd.get("node") == node and sd.get("state") == "fence")


def active_service_count(ss: Mapping[str, ServiceStatus], node: str) -> int:
    """Services on `node` that need the node's protection (watchdog + lease)."""
    return sum(
        1 for sd in ss.values()
        if sd.get("node") == node and sd.get("state") not in (None, "stopped", "freeze", "error")
    )


def guarded_service_count(ss: Mapping[str, ServiceStatus], node: str, guard_frozen: bool) -> int:
    """Services on `node` that may run and need its lease and armed watchdog before the
    LRM goes on: the active ones and, with `guard_frozen`, the frozen ones (left running
    by an LRM restart; "frozen" means "not touched", never "unguarded"), and those in
    'error' whose stop was not confirmed (they may still run; and only an LRM holding its
    lease answers the check that clears them)."""
    here = [sd for sd in ss.values() if sd.get("node") == node]
    frozen = sum(1 for sd in here if sd.get("state") == "freeze")
    unconfirmed = sum(1 for sd in here if sd.get("state") == "error" and sd.get("stop_unconfirmed"))
    return active_service_count(ss, node) + (frozen if guard_frozen else 0) + unconfirmed


def has_configured_service_on_node(ss: Mapping[str, ServiceStatus], node: str) -> bool:
    return any(sd.get("node") == node for sd in ss.values())


def is_fence_requested(ss: Mapping[str, ServiceStatus], node: str, node_state: str) -> bool:
    return count_fenced_services(ss, node) > 0 or node_state == "fence"


@dataclass(frozen=True)
class ShutdownDecision:
    mode: str  # restart | shutdown | maintenance
    stop_all: bool  # queue stop jobs for every local service
    log: tuple[tuple[str, str], ...]


def decide_shutdown(
    shutdown: bool, reboot: bool, policy: str | None, manual_maintenance: bool = False
) -> ShutdownDecision:
    """What the LRM does on a shutdown request (node shutdown/reboot or LRM restart).
    A node in manually requested maintenance stays in maintenance whatever the policy."""
    logs: list[tuple[str, str]] = []
    policy = policy or "conditional"
    if shutdown:
        logs.append(("info", f"got shutdown request with shutdown policy '{policy}'"))
    freeze_all = False
    maintenance = False
    if policy == "conditional":
        freeze_all = reboot
    elif policy == "freeze":
        freeze_all = True
    elif policy == "failover":
        freeze_all = False
    elif policy == "migrate":
        maintenance = True
    else:
        logs.append(("err", f"unknown shutdown policy '{policy}', fall back to conditional"))
        freeze_all = reboot
    if shutdown and manual_maintenance:
        kind = "reboot" if reboot else "shutdown"
        logs.append(("info", f"{kind} LRM, ignore {policy} policy as manual maintenance mode is enabled"))
        return ShutdownDecision("maintenance", False, tuple(logs))
    stop_all = shutdown and not maintenance
    if shutdown:
        kind = "reboot" if reboot else "shutdown"
        if maintenance:
            logs.append(("info", f"{kind} LRM, doing maintenance, removing this node from active list"))
            mode = "maintenance"
        elif freeze_all:
            logs.append(("info", f"{kind} LRM, stop and freeze all services"))
            mode = "restart"
        else:
            logs.append(("info", "shutdown LRM, stop all services"))
            mode = "shutdown"
    else:
        logs.append(("info", "restart LRM, freeze all services"))
        mode = "restart"
    return ShutdownDecision(mode, stop_all, tuple(logs))


def handle_service_exitcode(
    cmd: str, exit_code: int, tries: int, max_restart: int
) -> tuple[int, int, tuple[str, str] | None]:
    """Apply the restart policy to a finished start: (exit code to report, new try count,
    log line). ETRY_AGAIN means: tell nobody, the LRM retries the start itself."""
    if cmd != "started":
        return exit_code, tries, None
    if exit_code == SUCCESS:
        return SUCCESS, 0, None
    if exit_code == ERROR:
        if tries >= max_restart:
            return ERROR, 0, ("err", f"unable to start service {{sid}} on local node after {tries} retries")
        return ETRY_AGAIN, tries + 1, ("warning", f"restart policy: retry number {tries + 1} for service '{{sid}}'")
    return exit_code, tries, None


def services_to_run(ss: Mapping[str, ServiceStatus], node: str) -> list[tuple[str, str, str, dict[str, object]]]:
    """(sid, uid, requested state, params) for every local service the LRM must act on."""
    out: list[tuple[str, str, str, dict[str, object]]] = []
    for sid in sorted(ss):
        sd = ss[sid]
        if not sd.get("node") or not sd.get("uid") or sd["node"] != node:
            continue
        state = sd.get("state")
        # 'recovery': let the master finish first; 'freeze': leave it alone
        if state is None or state in ("recovery", "freeze"):
            continue
        params: dict[str, object] = {}
        if "target" in sd:
            params["target"] = sd["target"]
        if "timeout" in sd:
            params["timeout"] = sd["timeout"]
        if sd.get("stop_unconfirmed"):
            params["stop_unconfirmed"] = 1
        out.append((sid, sd["uid"], state, params))
    return out
