"""Service states as kept by the CRM master (Proxmox's `$ss`, with the one way to change
one: `change_state`).

`ServiceTable` holds every tracked service's status (`ss`: sid -> sd), hands out the uids
(a fresh one for every state change, so the LRM answers each command at most once) and
keeps the node usage the scheduler places services by in step with the states.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping

from harepl.core.manager_io import ManagerView
from harepl.core.placement import BasicUsage, StaticUsage
from harepl.core.types import SERVICE_STATES, ServiceStatus

Log = Callable[[str, str], None]


class ServiceTable:
    def __init__(self, ss: Mapping[str, ServiceStatus], uid_seed: str) -> None:
        self.ss: dict[str, ServiceStatus] = dict(ss)
        self.uid_seed = uid_seed
        self.uid_counter = 0
        # the seed names every tracked service: hash it once, not for every uid (the
        # digests are the same as new_uid's; a recovery round was quadratic in services)
        self._uid_prefix = hashlib.md5(f"{uid_seed}|".encode())
        self.usage = BasicUsage([])

    def new_uid(self, state: str) -> str:
        self.uid_counter += 1
        h = self._uid_prefix.copy()
        h.update(f"{state}|{self.uid_counter}".encode())
        return base64.b64encode(h.digest()).decode().rstrip("=")

    def change_state(self, sid: str, new_state: str, log: Log, **params: str | int) -> None:
        """A fresh uid; the fields that survive every change (failed nodes, maintenance
        fallback, an unconfirmed stop into 'error'); the given ones (node, target,
        timeout); the usage moved along."""
        sd = self.ss[sid]
        old_state = sd["state"]
        assert old_state != new_state, "no state change"
        assert new_state in SERVICE_STATES, new_state
        new: ServiceStatus = {"state": new_state, "node": sd["node"], "uid": ""}
        if "failed_nodes" in sd:
            new["failed_nodes"] = sd["failed_nodes"]
        if "maintenance_node" in sd:
            new["maintenance_node"] = sd["maintenance_node"]
        if new_state == "error" and sd.get("stop_unconfirmed"):
            new["stop_unconfirmed"] = 1
        text = ", ".join(f"{k} = {params[k]}" for k in sorted(params))
        for k in sorted(params):
            new[k] = params[k]  # type: ignore[literal-required]
        new["uid"] = self.new_uid(new_state)
        self.ss[sid] = new
        self.usage.remove_service_usage(sid)
        self.usage.add_service_usage(sid, new)  # type: ignore[arg-type,unused-ignore]
        suffix = f"  ({text})" if text else ""
        log("info", f"service '{sid}': state changed from '{old_state}' to '{new_state}'{suffix}")

    def pop_command(self, sid: str) -> tuple[str, str]:
        """The service's queued command as (task, argument), removed from it."""
        cmd = list(self.ss[sid].pop("cmd"))
        return (cmd[0] if cmd else "", cmd[1] if len(cmd) > 1 else "")

    def recompute_usage(self, online: list[str], scheduler: str | None, view: ManagerView | None,
                        log: Log) -> None:
        """The online nodes' usage with every service counted, for the scheduler mode."""
        usage = BasicUsage(online)
        if scheduler in ("static", "dynamic") and view is not None:
            try:
                usage = StaticUsage(online, view.node_stats, view.service_stats)
            except ValueError as exc:
                log("warning", f"fallback to 'basic' scheduler mode, init for '{scheduler}' failed - {exc}")
        for sid in sorted(self.ss):
            usage.add_service_usage(sid, self.ss[sid])  # type: ignore[arg-type,unused-ignore]
        self.usage = usage
