"""Node states as judged by the CRM master (Proxmox's NodeStatus.pm).

online      member of the quorate partition, LRM not in maintenance
maintenance member, but its LRM is in maintenance mode (or it went down in maintenance)
unknown     not a member of the quorate partition, possibly still running
fence       must be fenced before its services may be recovered
gone        vanished from the cluster's member list

Fencing is acknowledged only by taking the node's lease (`fence_lock`), which the store
grants only after the lease expired (docs/safety.md, "Leases").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from harepl.core.types import NodeInfo

FENCE_DELAY_S = 60.0
GONE_DELETE_DELAY_S = 3600.0

Log = Callable[[str, str], None]


class NodeStatus:
    def __init__(self, status: Mapping[str, str], fence_delay_s: float = FENCE_DELAY_S) -> None:
        self.status: dict[str, str] = dict(status)
        self.last_online: dict[str, float] = {}
        self.fence_delay_s = fence_delay_s

    def get_node_state(self, node: str) -> str:
        return self.status.setdefault(node, "unknown")

    def node_is_online(self, node: str) -> bool:
        return self.get_node_state(node) == "online"

    def node_is_operational(self, node: str) -> bool:
        return self.get_node_state(node) in ("online", "maintenance")

    def node_is_offline_delayed(self, node: str, now: float, delay_s: float | None = None) -> bool:
        """True once `node` has not been seen online for the fence delay."""
        delay = self.fence_delay_s if delay_s is None else delay_s
        if self.get_node_state(node) == "online":
            return False
        last = self.last_online.get(node)
        if last is None:
            # start counting from the first time we look (a new master starts its own clock)
            self.last_online[node] = now
            return False
        return (now - last) >= delay

    def list_nodes(self) -> list[str]:
        return sorted(self.status)

    def list_online_nodes(self) -> list[str]:
        return [n for n in sorted(self.status) if self.status[n] == "online"]

    def set_node_state(self, node: str, state: str, log: Log) -> None:
        last = self.get_node_state(node)
        if state == last:
            return
        self.status[node] = state
        log("info", f"node '{node}': state changed from '{last}' => '{state}'")

    def update(
        self, node_info: Mapping[str, NodeInfo], lrm_modes: Mapping[str, str], now: float, log: Log
    ) -> None:
        for node in sorted(node_info):
            if not node_info[node]["online"]:
                continue
            self.last_online[node] = now  # for the fence delay
            mode = lrm_modes.get(node, "unknown")
            state = self.get_node_state(node)
            if state == "online":
                if mode == "maintenance":
                    self.set_node_state(node, "maintenance", log)
            elif state == "maintenance":
                if mode != "maintenance":
                    self.set_node_state(node, "online", log)
            elif state in ("unknown", "gone"):
                self.set_node_state(node, "online", log)
            # 'fence': wait until fenced
        for node in sorted(self.status):
            info = node_info.get(node)
            if info is not None and info["online"]:
                continue
            state = self.get_node_state(node)
            if state == "online":
                self.set_node_state(node, "unknown", log)
            elif state == "maintenance":
                # a node that went down in maintenance (shutdown policy 'migrate') stays so
                if lrm_modes.get(node, "unknown") != "maintenance":
                    self.set_node_state(node, "unknown", log)
            elif state == "unknown":
                if info is None:
                    self.set_node_state(node, "gone", log)
            elif state == "gone":
                if self.node_is_offline_delayed(node, now, GONE_DELETE_DELAY_S):
                    self.last_online.pop(node, None)
                    del self.status[node]
                    log("notice", f"deleting gone node '{node}', not a cluster member anymore.")

    def fence_node(
        self,
        node: str,
        try_fence_lock: Callable[[str], bool],
        log: Log,
        sendmail: Callable[[str, str], None],
    ) -> bool:
        """Mark `node` for fencing and try to take its lease; True once fenced."""
        if self.get_node_state(node) != "fence":
            self.set_node_state(node, "fence", log)
            msg = f"Try to fence node '{node}'"
            sendmail(f"FENCE: {msg}", _fence_mail_text("FENCE", node))
        if try_fence_lock(node):
            msg = f"fencing: acknowledged - got agent lock for node '{node}'"
            log("info", msg)
            self.set_node_state(node, "unknown", log)
            sendmail(f"SUCCEED: {msg}", _fence_mail_text("SUCCEED", node))
            return True
        return False


def _fence_mail_text(prefix: str, node: str) -> str:
    return (
        f"The node '{node}' failed and needs manual intervention.\n\n"
        "The HA manager tries to fence it and recover the configured HA resources to a\n"
        f"healthy node if possible.\n\nCurrent fence status: {prefix}\n"
    )
