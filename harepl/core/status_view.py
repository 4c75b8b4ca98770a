"""The `ha-manager status` view (Proxmox's format), as a pure function.

    quorum OK
    master node1 (active, Tue Nov 24 20:00:00 2026)
    lrm node1 (active, Tue Nov 24 20:00:00 2026)
    lrm node2 (idle, Tue Nov 24 20:00:00 2026)
    service vm:101 (node1, started)

Times are formatted by the caller (`fmt_time`), so the core never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from harepl.core.types import LrmStatus, ManagerStatus, ServiceConfig


def lrm_summary(lrm: LrmStatus) -> str:
    state = lrm.get("state")
    mode = lrm.get("mode", "active")
    if not state:
        return "unknown"
    if mode == "maintenance" or state == "maintenance":
        return "maintenance mode"
    if state == "wait_for_agent_lock":
        return "idle" if mode == "active" else f"{mode}, idle"
    if state == "active":
        return "active" if mode == "active" else mode
    return state


def _cannot_run(lrm: LrmStatus) -> bool:
    """The LRM says it cannot arm its watchdog and has not: it started nothing."""
    return bool(lrm.get("watchdog_error")) and lrm.get("state") == "wait_for_agent_lock"


def format_status(
    quorate: bool,
    manager_status: ManagerStatus,
    lrm_status: Mapping[str, LrmStatus],
    service_config: Mapping[str, ServiceConfig],
    fmt_time: Callable[[float], str],
    crm_active: bool = True,
    now: float | None = None,
    stale_after_s: float | None = None,
) -> list[str]:
    lines = [f"quorum {'OK' if quorate else 'No quorum on node'}"]
    master = manager_status.get("master_node")
    if master:
        ts = manager_status.get("timestamp")
        when = fmt_time(ts) if ts is not None else "unknown"
        lines.append(f"master {master} ({'active' if crm_active else 'idle'}, {when})")
    nodes = sorted(set(manager_status.get("node_status", {})) | set(lrm_status))
    for node in nodes:
        lrm = lrm_status.get(node, {})
        ts = lrm.get("timestamp")
        when = fmt_time(ts) if ts is not None else "unknown"
        summary = lrm_summary(lrm)
        if now is not None and stale_after_s is not None and ts is not None and now - ts > stale_after_s:
            summary = "old timestamp - dead?"
        elif lrm.get("watchdog_error"):
            summary = f"{summary}, cannot arm watchdog: {lrm['watchdog_error']}"
        lines.append(f"lrm {node} ({summary}, {when})")
    for node, text in sorted(manager_status.get("fence_status", {}).items()):
        lines.append(f"fence {node} ({text})")  # hardware fencing: what its devices did
    ss = manager_status.get("service_status", {})
    for sid in sorted(set(ss) | set(service_config)):
        if sid in ss:
            sd = ss[sid]
            node = sd.get("node", "")
            state = sd.get("state", "")
            if state in ("migrate", "relocate") and sd.get("target"):
                state = f"{state} to {sd['target']}"
            elif state == "started" and _cannot_run(lrm_status.get(node, {})):
                # asked to run, but its LRM cannot arm its watchdog: it runs nothing new
                state = "start pending: its lrm cannot arm the watchdog"
        else:
            cd = service_config[sid]
            node = cd.get("node", "")
            state = "ignored" if cd.get("state") == "ignored" else "queued"
        lines.append(f"service {sid} ({node}, {state})")
    return lines
