"""A node counts as offline (and, with fence devices, may be powered off soon after) only
when it missed renewals while other renewals committed: a Raft leader change or a stalled
store, during which no lease changes at all, never makes a node look dead (issue 10)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from harepl.runtime.env import RuntimeEnv


def env(ages: dict[str, float | None]) -> RuntimeEnv:
    def lease_seen(name: str) -> tuple[str | None, int, int, float | None]:
        node = name.split(":", 1)[1]
        return (node, 1, 1, ages[node])

    ctx: Any = SimpleNamespace(
        node="node1", online_window_s=2.0, quorate=lambda: True, lease_seen=lease_seen,
        client=SimpleNamespace(read=lambda *a, **k: {}),
        cfg=SimpleNamespace(members=[SimpleNamespace(name=n) for n in ages]), manager_timeout_s=2.5)
    return RuntimeEnv(ctx, "crm", lambda level, msg: None)


def online(ages: dict[str, float | None]) -> dict[str, bool]:
    info, _ = env(ages).get_node_info()
    return {n: bool(i["online"]) for n, i in info.items()}


def test_a_node_that_stopped_renewing_while_others_renew_is_offline() -> None:
    assert online({"node1": 0.2, "node2": 0.3, "node3": 2.6}) == {"node1": True, "node2": True, "node3": False}


def test_nobody_renewing_for_a_while_is_a_stalled_store_not_dead_nodes() -> None:
    # a 3 s leader election: every lease is 3+ s old, node3's a little older
    assert online({"node1": 3.1, "node2": 3.2, "node3": 3.6}) == {"node1": True, "node2": True, "node3": True}
    # once renewals commit again, node3 that did not renew is offline
    assert online({"node1": 0.1, "node2": 0.2, "node3": 3.9})["node3"] is False
