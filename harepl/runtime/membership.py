"""Cluster membership of a running cluster (`harepl cluster add-node|remove-node|members`,
the API's /cluster/members): Proxmox's `pvecm add` / `pvecm delnode`.

Two lists change together, Raft first:

- the Raft membership (pysyncobj's dynamic membership, one change at a time, refused
  when it would lose quorum: `Client.add_member` / `remove_member`);
- the store's `nodes` table (name -> Raft address), which the CRM reads as the cluster's
  node list (`RuntimeEnv.get_node_info`): a removed node vanishes from it, so the master
  marks it 'gone' (and forgets it later, as Proxmox does).

Until the first change the `nodes` table is empty and every node uses its config's
[[nodes]]; the first change copies that list into the table. If a daemon dies between
the two steps, the lists disagree; the next change is refused ("in progress") except the
same add or remove again, which completes it.

A change is refused with a `MembershipError` (HTTP status + one line) when:
- a member joined but has not caught up yet (added, never seen holding its node lease,
  and not answering): start it or remove it first -- one change at a time also means the
  last one has finished;
- another change runs on this node, or the Raft layer still holds an uncommitted one;
- it would lose quorum (counted from the members that answer now);
- removing: the node is unknown, it is the node serving the request, it is the Raft
  leader (pysyncobj cannot remove its leader: stop that node first, a new leader is
  elected), or HA services are still on it (migrate them away first; Proxmox asks for
  the node to be emptied and powered off before `pvecm delnode`).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from harepl.core.vocabulary import COMMITTED_NAME_RE, NODE_NAME_RULE, is_node_name
from harepl.runtime.api.errors import ApiError
from harepl.runtime.config import ConfigError, Member, _hostport
from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.client import Client, Rejected, StoreUnavailable


class MembershipError(ApiError):
    """A refused change: HTTP status + one line (the API answers it as is)."""


def check_name(node: Any) -> str:
    """A name that may name a node of the store's list (`COMMITTED_NAME_RE`: nodes named
    before the node-name rule was Proxmox's stay reachable); a new node is also held to
    `check_new_name`."""
    if not isinstance(node, str) or not COMMITTED_NAME_RE.match(node):
        raise MembershipError(400, f"invalid node name {node!r} ({NODE_NAME_RULE})")
    return node


def check_new_name(node: str) -> str:
    """A node name new to the cluster: Proxmox's rule (harepl.core.vocabulary.NODE_NAME_RE:
    no '_' or '.')."""
    if not is_node_name(node):
        raise MembershipError(400, f"invalid node name {node!r} ({NODE_NAME_RULE})")
    return node


def check_addr(addr: Any) -> str:
    try:
        host, port = _hostport(addr, "addr")
    except ConfigError as exc:
        raise MembershipError(400, str(exc)) from None
    return f"{host}:{port}"


class Membership:
    """Membership changes for the daemon's API (thread-safe; one change at a time)."""

    def __init__(self, node: str, config_members: tuple[Member, ...], client: Client,
                 timeout_s: float = 10.0) -> None:
        self.node = node
        self.config_members = config_members
        self.client = client
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    # --- views ---------------------------------------------------------------------------
    def _table(self, fresh: bool) -> tuple[dict[str, str | None], dict[str, dict[str, Any]]]:
        """(HA node list name -> addr, agent leases) from the store (the config's list
        while the table is empty)."""
        def read(conn: sqlite3.Connection) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
            return reads.nodes(conn), reads.leases(conn)
        try:
            table, leases = self.client.read(read, linearizable=fresh, timeout_s=self.timeout_s)
        except StoreUnavailable as exc:
            raise MembershipError(503, f"cluster not ready - {exc}") from None
        nodes = {n: row.get("addr") for n, row in table.items()}
        if not nodes:
            nodes = {m.name: m.raft_addr for m in self.config_members}
        return nodes, leases

    def view(self) -> dict[str, Any]:
        """Raft members, the leader, which members answer, and the HA node list."""
        store = self.client.node
        st = store.status()
        alive = store._responsive() if st["quorum"] else {store.self_addr}
        nodes, leases = self._table(fresh=False)
        by_addr = {a: n for n, a in nodes.items() if a}
        for m in self.config_members:
            by_addr.setdefault(m.raft_addr, m.name)
        rows = []
        for addr in sorted(set(st["members"]) | {a for a in nodes.values() if a}):
            name = by_addr.get(addr)
            rows.append({"node": name, "addr": addr, "raft_member": addr in st["members"],
                         "ha_node": name in nodes, "responds": addr in alive,
                         "leader": addr == st["leader"], "local": addr == store.self_addr,
                         "joining": self._joining(name, addr, alive, leases)})
        rows.sort(key=lambda r: (r["node"] is None, r["node"] or "", r["addr"]))
        return {"node": self.node, "quorate": bool(st["quorum"]), "leader": by_addr.get(st["leader"] or ""),
                "leader_addr": st["leader"], "members": rows}

    @staticmethod
    def _joining(name: str | None, addr: str, alive: set[str], leases: dict[str, dict[str, Any]]) -> bool:
        """Added, not answering and never seen holding its node lease: not caught up."""
        if addr in alive:
            return False
        lease = leases.get(C.agent_lease(name)) if name else None
        return not lease or not lease.get("epoch")

    # --- changes --------------------------------------------------------------------------
    def _begin(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise MembershipError(409, "another membership change is in progress on this node; retry when it "
                                       "has finished")

    def _precheck(self, doing: tuple[str, str]) -> tuple[dict[str, str | None], list[str]]:
        """Fresh lists; refuse when a previous change is not finished (other than `doing`,
        which completes it)."""
        if not self.client.quorate():
            raise MembershipError(503, f"cluster not ready - no quorum on node '{self.node}'")
        nodes, leases = self._table(fresh=True)
        store = self.client.node
        raft = store.members()
        alive = store._responsive()
        ha_addrs = {a for a in nodes.values() if a}
        for n, a in sorted(nodes.items()):
            if a and a in raft and self._joining(n, a, alive, leases) and doing != ("remove", n):
                raise MembershipError(409, f"a membership change is in progress: node '{n}' ({a}) joined but has "
                                           "not caught up yet - start its daemon, or remove it first")
        half = sorted((set(raft) - ha_addrs) | (ha_addrs - set(raft)))
        by_addr = {a: n for n, a in nodes.items()}
        for a in half:
            name = by_addr.get(a)
            if doing[0] == "add" and a == doing[1]:
                continue
            if doing[0] == "remove" and name == doing[1]:
                continue
            raise MembershipError(409, f"a membership change is in progress: {a} ({name or 'unnamed'}) is "
                                       f"{'a Raft member but not an HA node' if a in raft else 'an HA node but not a Raft member'}"
                                       " - repeat that add-node or remove-node to complete it")
        return nodes, raft

    def _seed(self, nodes: dict[str, str | None]) -> None:
        """The first change copies the config's node list into the store's table."""
        if self.client.nodes(timeout_s=self.timeout_s):
            return
        for name, addr in sorted(nodes.items()):
            self._commit(C.node_add(name, addr), ok_reasons=("exists",))

    def _commit(self, cmd: dict[str, Any], ok_reasons: tuple[str, ...] = ()) -> None:
        try:
            r = self.client.submit(cmd, self.timeout_s)
        except StoreUnavailable as exc:
            raise MembershipError(503, f"cluster not ready - {exc}") from None
        if not r.get("ok") and r.get("reason") not in ok_reasons:
            raise MembershipError(409, str(Rejected(r)))

    def _raft(self, action: str, addr: str) -> None:
        try:
            (self.client.add_member if action == "add" else self.client.remove_member)(addr, self.timeout_s)
        except ValueError as exc:
            raise MembershipError(409, str(exc)) from None
        except StoreUnavailable as exc:
            raise MembershipError(503, f"cluster not ready - {exc}") from None

    def add(self, node: Any, addr: Any) -> dict[str, Any]:
        node, addr = check_name(node), check_addr(addr)
        self._begin()
        try:
            nodes, raft = self._precheck(("add", addr))
            if node not in nodes:
                check_new_name(node)
            if node in nodes and nodes[node] != addr:
                raise MembershipError(409, f"node '{node}' already exists (raft address {nodes[node]})")
            other = next((n for n, a in nodes.items() if a == addr and n != node), None)
            if other is not None:
                raise MembershipError(409, f"raft address {addr} is already used by node '{other}'")
            if node in nodes and addr in raft:
                raise MembershipError(409, f"node '{node}' is already a cluster member ({addr})")
            self._seed(nodes)
            if addr not in raft:
                self._raft("add", addr)
            self._commit(C.node_add(node, addr), ok_reasons=("exists",))
            return {"node": node, "addr": addr, "added": True}
        finally:
            self._lock.release()

    def remove(self, node: Any) -> dict[str, Any]:
        node = check_name(node)
        self._begin()
        try:
            nodes, raft = self._precheck(("remove", node))
            if node not in nodes:
                raise MembershipError(404, f"no such cluster node '{node}'")
            addr = nodes[node] or ""
            if node == self.node:
                raise MembershipError(409, f"cannot remove '{node}': it serves this request - run remove-node "
                                           "on another node")
            if addr in raft and addr == self.client.node.leader():
                raise MembershipError(409, f"cannot remove '{node}' while it is the Raft leader - stop its "
                                           "daemon first (a new leader is elected), then retry")
            on_it = self._services_on(node)
            if on_it:
                raise MembershipError(409, f"node '{node}' still has HA services ({', '.join(on_it)}) - migrate "
                                           "or remove them first")
            self._seed(nodes)
            if addr in raft:
                self._raft("remove", addr)
            self._commit(C.node_remove(node), ok_reasons=("missing",))
            return {"node": node, "addr": addr, "removed": True}
        finally:
            self._lock.release()

    def _services_on(self, node: str) -> list[str]:
        """Services the CRM places on `node` (its manager status), or configured there and
        not yet seen by a CRM."""
        status = self.client.manager_status(linearizable=False, timeout_s=self.timeout_s)
        ss = status.get("service_status", {}) if isinstance(status, dict) else {}
        on = {sid for sid, sd in ss.items() if isinstance(sd, dict) and sd.get("node") == node}
        config = self.client.service_config(linearizable=False, timeout_s=self.timeout_s)
        on |= {sid for sid, c in config.items() if sid not in ss and c.get("node") == node}
        return sorted(on)


def config_drift(config_members: tuple[Member, ...], table: dict[str, dict[str, Any]]) -> str | None:
    """One line if the config's [[nodes]] differ from the committed node list (None if
    they agree or the table is still empty)."""
    if not table:
        return None
    want = {n: row.get("addr") for n, row in table.items()}
    have = {m.name: m.raft_addr for m in config_members}
    if want == have:
        return None
    missing = sorted(f"{n} ({a})" for n, a in want.items() if have.get(n) != a)
    extra = sorted(n for n in have if n not in want)
    parts = []
    if missing:
        parts.append(f"add {', '.join(missing)}")
    if extra:
        parts.append(f"remove {', '.join(extra)}")
    return ("config [[nodes]] differ from the cluster's committed membership - the committed membership is "
            f"used; update [[nodes]] in this node's config: {'; '.join(parts)}")


def watch_config_drift(client: Client, config_members: tuple[Member, ...], log: Any,
                       stop: threading.Event, every_s: float = 5.0) -> None:
    """Daemon thread: once quorate (the local replica caught up), say in the log when this
    node's [[nodes]] differ from the committed node list (once per distinct difference)."""
    said = None
    while not stop.wait(1.0 if said is None else every_s):
        if not client.quorate():
            continue
        try:
            line = config_drift(config_members, client.nodes(linearizable=False))
        except Exception:  # noqa: BLE001 - informational only
            continue
        if line and line != said:
            log("warn", line)
        said = line or ""
