"""Proxmox's `status/current` list, with its lines made by the core's pure formatter.

The text of every line comes from `harepl.core.status_view.format_status` (the same view
`harepl demo` prints from the simulator); this module only wraps the lines into
Proxmox's API entries (`{"id", "type", "status", ...}`) and adds the structured fields
a TUI wants. `ha-manager status` prints `"{type} {status}"` per entry.

Wall-clock time is used for display only (the time shown, and "old timestamp - dead?"
for a status not refreshed in DEAD_AFTER_S), never for a decision.
"""

from __future__ import annotations

import time
from typing import Any, cast

from harepl.core.status_view import format_status
from harepl.runtime.api.backend import ClusterState

DEAD_AFTER_S = 30.0      # Proxmox: a status older than this reads "old timestamp - dead?"


def status_entries(state: ClusterState, now_wall_s: float) -> list[dict[str, Any]]:
    manager = state.manager_status or {}
    timestamp = manager.get("timestamp")
    master_fresh = timestamp is not None and now_wall_s - float(timestamp) <= DEAD_AFTER_S
    lines = format_status(
        state.quorate, cast(Any, manager), cast(Any, state.lrm_status), cast(Any, state.resources),
        fmt_time=time.ctime,
        # Proxmox shows an idle CRM (stale timestamp, nothing to manage) as 'idle'
        crm_active=master_fresh or bool(state.resources),
        now=now_wall_s, stale_after_s=DEAD_AFTER_S)

    # the quorum line names this node, as Proxmox's does
    quorum: dict[str, Any] = {"id": "quorum", "type": "quorum", "node": state.node,
                              "status": "OK" if state.quorate else f"No quorum on node '{state.node}'!",
                              "quorate": 1 if state.quorate else 0}
    out = [quorum]
    service_status = manager.get("service_status") or {}
    for line in lines[1:]:
        kind, _, text = line.partition(" ")
        name = text.split(" (", 1)[0]
        entry: dict[str, Any] = {"type": kind, "status": text}
        if kind == "master":
            entry.update(id="master", node=name, timestamp=timestamp)
        elif kind == "lrm":
            entry.update(id=f"lrm:{name}", node=name,
                         timestamp=(state.lrm_status.get(name) or {}).get("timestamp"))
        elif kind == "service":
            sd = service_status.get(name)
            config = state.resources.get(name) or {}
            node_and_state = text[len(name) + 2:-1]
            entry.update(id=f"service:{name}", sid=name,
                         node=(sd or config).get("node"),
                         state=node_and_state.split(", ", 1)[1] if ", " in node_and_state else None)
            if sd is not None:
                entry["crm_state"] = sd.get("state")
            if config:
                entry["request_state"] = config.get("state")
                for key in ("group", "max_restart", "max_relocate", "comment"):
                    if config.get(key) is not None:
                        entry[key] = config[key]
        out.append(entry)
    return out
