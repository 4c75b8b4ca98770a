"""A data source with fixed answers (no clock, no socket): what the snapshot tests
render, so that every cell of the screen is the same on every run."""

from __future__ import annotations

import copy
from typing import Any

from harepl.runtime.api.client import ApiClientError
from tui.model import Snapshot
from tui.source import DataSource

T0 = 1_800_000_000.0        # a fixed wall clock (2027-01-15 08:00 UTC)
NODES = ("node1", "node2", "node3")
SERVICES = {"vm:100": "node1", "vm:101": "node2", "ct:102": "node3", "exec:web": "node3",
            "exec:db": "node1", "vm:200": "node2"}


def manager(node_status: dict[str, str] | None = None, service_status: dict[str, dict[str, Any]] | None = None,
            lrm_age: dict[str, float] | None = None, disarm: dict[str, str] | None = None,
            at: float = T0) -> dict[str, Any]:
    ss = service_status or {sid: {"state": "started", "node": node, "uid": f"u-{sid}", "running": 1}
                            for sid, node in SERVICES.items()}
    ms: dict[str, Any] = {"master_node": "node1", "node_status": node_status or {n: "online" for n in NODES},
                          "service_status": ss, "timestamp": at}
    if disarm:
        ms["disarm"] = disarm
    return {"manager_status": ms, "quorum": {"node": "node1", "quorate": True},
            "lrm_status": {n: {"mode": "active", "state": "active", "results": {},
                               "timestamp": at - (lrm_age or {}).get(n, 1.5)} for n in NODES}}


def snapshot(man: dict[str, Any], at: float = T0, requested: dict[str, str] | None = None) -> Snapshot:
    ms = man["manager_status"]
    nodes = [{"node": n, "status": ms["node_status"].get(n), "master": n == "node1",
              "lrm_mode": man["lrm_status"][n]["mode"], "lrm_state": man["lrm_status"][n]["state"]} for n in NODES]
    resources = [{"sid": sid, "type": sid.split(":")[0], "state": (requested or {}).get(sid, "started"),
                  "node": node, "max_restart": 1, "max_relocate": 1, "failback": True}
                 for sid, node in sorted(SERVICES.items())]
    return Snapshot(status=[], manager=man, nodes=nodes, resources=resources, wall_time_s=at,
                    lease_age={n: 1.5 for n in NODES}, via="node1")


def normal(at: float = T0) -> Snapshot:
    return snapshot(manager(at=at), at)


def degraded() -> Snapshot:
    """node3 fenced: its services in fence, its LRM silent, its lease lapsing."""
    at = T0 + 40
    ss = {sid: {"state": "fence" if node == "node3" else "started", "node": node, "uid": f"u-{sid}",
                **({} if node == "node3" else {"running": 1})} for sid, node in SERVICES.items()}
    snap = snapshot(manager({"node1": "online", "node2": "online", "node3": "fence"}, ss, {"node3": 38.0}, at=at),
                    at)
    return Snapshot(snap.status, snap.manager, snap.nodes, snap.resources, at,
                    lease_age={"node1": 1.5, "node2": 1.5, "node3": 38.0}, via="node1")


def disarmed() -> Snapshot:
    at = T0 + 40
    ss = {sid: {"state": "freeze", "node": node, "uid": f"u-{sid}"} for sid, node in SERVICES.items()}
    return snapshot(manager(service_status=ss, disarm={"mode": "freeze", "state": "disarmed"}, at=at), at)


EVENTS = [
    {"seq": 10, "ts": T0 - 30, "op": "resource_add", "ok": True,
     "detail": '{"sid":"exec:web","config":{"node":"node3","state":"started"}}'},
    {"seq": 11, "ts": T0 - 20, "op": "crm_command_enqueue", "ok": True, "detail": '{"cmd":"migrate vm:101 node2"}'},
]


class FakeSource(DataSource):
    """Answers `snapshots` in turn (the last one again and again), and EVENTS."""

    def __init__(self, *snapshots: Snapshot) -> None:
        self.snapshots = list(snapshots)
        self.sent: list[tuple[str, str, Any]] = []

    @property
    def target(self) -> str:
        return "node1 (fixed answers)"

    def fetch(self, on_switch: Any = None) -> Snapshot:
        snap = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        return copy.deepcopy(snap)

    def events(self, after_seq: int | None) -> list[dict[str, Any]]:
        return [e for e in EVENTS if after_seq is None or e["seq"] > after_seq]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        if method == "GET":
            return []
        self.sent.append((method, path, body))
        raise ApiClientError("fixed answers: nothing is written", 409)
