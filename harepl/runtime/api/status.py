"""Proxmox's `status/current` list from a ClusterState (pure; wall time passed in).

Each entry is `{"id", "type", "status", ...}` and `ha-manager status` prints
`"{type} {status}"` per entry, exactly as Proxmox's CLI does. Wall-clock timestamps are
used for display only ("active" vs "old timestamp - dead?"), never for a decision.

TODO(api): switch to harepl/core/status_view.py when the core helper lands it, so the
simulator's `make demo` view and the daemon's view are one function.
"""

from __future__ import annotations

import time
from typing import Any

from harepl.runtime.api.backend import ClusterState

DEAD_AFTER_S = 30.0      # Proxmox: a status older than this reads "old timestamp - dead?"
DRIFT_BEFORE_S = -2.0    # and one from the future "detected time drift!"


def timestamp_status(now_wall_s: float, timestamp: float) -> str:
    age_s = now_wall_s - timestamp
    if age_s > DEAD_AFTER_S:
        return "old timestamp - dead?"
    if age_s < DRIFT_BEFORE_S:
        return "detected time drift!"
    return "active"


def verbose_service_state(status: dict[str, Any] | None, config: dict[str, Any] | None) -> str:
    """What the operator sees for a service: the CRM state, with fast feedback on requests."""
    if not config:
        return "deleting"
    requested = config.get("state", "ignored")
    if requested == "ignored":
        return "ignored"
    if config.get("node") is None:
        return "not found"
    if status is None or status.get("state") is None:
        return "queued"
    current = str(status["state"])
    if current == "stopped":
        if requested == "started":
            return "starting"
        if requested == "disabled":
            return "disabled"
        return current
    if current == "started":
        shown = "stopping" if requested in ("stopped", "disabled") else current
        return "starting" if not status.get("running") else shown
    if current == "error" and requested == "disabled":
        return "clearing error flag"
    return current


def _format_time(timestamp: float) -> str:
    return time.ctime(timestamp)   # like Perl's scalar localtime: 'Tue Nov 24 19:50:00 2026'


def status_entries(state: ClusterState, now_wall_s: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if state.quorate:
        out.append({"id": "quorum", "type": "quorum", "node": state.node, "status": "OK", "quorate": 1})
    else:
        out.append({"id": "quorum", "type": "quorum", "node": state.node,
                    "status": f"No quorum on node '{state.node}'!", "quorate": 0})

    manager = state.manager_status or {}
    service_status: dict[str, dict[str, Any]] = manager.get("service_status") or {}
    master = manager.get("master_node")
    if master is not None and manager.get("timestamp") is not None:
        shown = timestamp_status(now_wall_s, float(manager["timestamp"]))
        if state.quorate and shown != "active" and not state.resources:
            shown = "idle"   # a CRM with nothing to manage goes idle
        out.append({"id": "master", "type": "master", "node": master,
                    "status": f"{master} ({shown}, {_format_time(float(manager['timestamp']))})",
                    "timestamp": manager["timestamp"]})

    active_count: dict[str, int] = {}
    for sd in service_status.values():
        node = sd.get("node")
        if not node:
            continue
        active_count.setdefault(node, 0)
        if sd.get("state") not in (None, "stopped", "freeze"):
            active_count[node] += 1

    for node in sorted(manager.get("node_status") or {}):
        lrm = state.lrm_status.get(node) or {}
        entry_id = f"lrm:{node}"
        if not lrm.get("timestamp"):
            out.append({"id": entry_id, "type": "lrm", "node": node,
                        "status": f"{node} (unable to read lrm status)"})
            continue
        shown = timestamp_status(now_wall_s, float(lrm["timestamp"]))
        if shown == "active":
            mode = lrm.get("mode") or "active"
            lrm_state = lrm.get("state") or "unknown"
            if mode != "active":
                shown = f"{mode} mode"
            elif lrm_state == "wait_for_agent_lock" and not active_count.get(node):
                shown = "idle"
            else:
                shown = lrm_state
        out.append({"id": entry_id, "type": "lrm", "node": node,
                    "status": f"{node} ({shown}, {_format_time(float(lrm['timestamp']))})",
                    "timestamp": lrm["timestamp"]})

    def add_service(sid: str, config: dict[str, Any] | None, status: dict[str, Any] | None) -> None:
        entry: dict[str, Any] = {"id": f"service:{sid}", "type": "service", "sid": sid}
        if status is not None:
            entry["node"] = status.get("node")
            entry["crm_state"] = status.get("state")
        else:
            entry["node"] = (config or {}).get("node")
        entry["state"] = verbose_service_state(status, config)
        entry["status"] = f"{sid} ({entry['node']}, {entry['state']})"
        if config is not None:
            entry["request_state"] = config.get("state")
            for key in ("group", "max_restart", "max_relocate", "comment"):
                if config.get(key) is not None:
                    entry[key] = config[key]
        out.append(entry)

    for sid in sorted(service_status):
        add_service(sid, state.resources.get(sid), service_status[sid])
    for sid in sorted(state.resources):
        if sid not in service_status:
            add_service(sid, state.resources[sid], None)
    return out
